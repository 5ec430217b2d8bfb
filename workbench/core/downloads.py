"""The download queue. For now the catalog's hand-off point: jobs are recorded in SQLite, in order.

The queue that fetches them (resume, verify, keys) is the Downloads issue; it reads these jobs.
"""

from __future__ import annotations

from workbench.core.store import DownloadJob, Store


class DownloadQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    def enqueue(self, repo_id: str, revision: str = "main", files: list[str] | None = None) -> DownloadJob:
        """Queue a repo (``files`` empty: the default selection for MLX repos). Queuing it twice is a no-op."""
        for job in self.store.download_jobs():
            if job.repo_id == repo_id and job.revision == revision and job.state in ("queued", "downloading"):
                return job
        return self.store.add_download_job(repo_id, revision, files)

    def jobs(self) -> list[DownloadJob]:
        return self.store.download_jobs()
