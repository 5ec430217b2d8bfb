"""The queue's jobs in memory, mirrored to the store: every change to a job or a file is written through to its row
and told to listeners (through the :class:`~workbench.core.hub.downloads.progress.ProgressFeed` it owns). Use it
on the asyncio loop. It decides nothing about a job's course (the queue's state machine does) beyond the one rule
that an active job's phase follows its files': verifying while one of them is."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workbench.core.hub.downloads.jobs import ACTIVE, FileState, Job, JobFile, JobSnapshot, JobState
from workbench.core.hub.downloads.progress import ProgressFeed
from workbench.core.storage.store import Store

KEEP: Any = object()  # "leave this field as it is"


class JobLedger:
    """The jobs by id (loaded from ``store``), their queue order, their snapshots and their writes."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock
        rows = store.downloads
        self.jobs: dict[int, Job] = {
            record.id: Job.from_record(record, rows.download_files(record.id)) for record in rows.download_jobs()
        }
        self.feed = ProgressFeed(self.jobs, lambda job_id: self.snapshot(self.jobs[job_id]), clock)

    # --- reading ---

    def ordered(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: (-j.priority, j.id))

    def require(self, job_id: int) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise KeyError(f"no download job with id {job_id}") from None

    def snapshot(self, job: Job) -> JobSnapshot:
        return job.snapshot(self.ordered().index(job), self._clock)

    def snapshots(self) -> list[JobSnapshot]:
        return [job.snapshot(position, self._clock) for position, job in enumerate(self.ordered())]

    # --- jobs ---

    def find(self, repo_id: str, revision: str, files: list[str] | None, include: list[str] | None,
             all_files: bool) -> Job | None:  # fmt: skip
        """The newest job (not cancelled) of this repo and revision that fetches these files; without ``files``,
        ``include`` or ``all_files``, whatever it fetches."""
        explicit = bool(files or include or all_files)
        wanted = (sorted(files or []), sorted(include or []), all_files)
        for job in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True):
            if job.repo_id != repo_id or job.revision != revision or job.state is JobState.CANCELLED:
                continue
            if explicit and (sorted(job.requested), sorted(job.include), job.all_files) != wanted:
                continue
            return job
        return None

    def add(self, repo_id: str, revision: str, files: list[str] | None, include: list[str] | None,
            all_files: bool) -> Job:  # fmt: skip
        record = self.store.downloads.add_download_job(repo_id, revision, files, include, all_files)
        job = self.jobs[record.id] = Job.from_record(record, [])
        self.feed.emit(job.id, force=True)
        return job

    def remove(self, job_id: int) -> None:
        self.store.downloads.delete_download_job(job_id)
        del self.jobs[job_id]

    def move(self, job: Job, delta: int) -> bool:
        """Move ``job`` ``delta`` places in the queue order (negative: sooner); False if it stays where it is."""
        order = self.ordered()
        index = order.index(job)
        target = max(0, min(len(order) - 1, index + delta))
        if target == index:
            return False
        order.insert(target, order.pop(index))
        for position, item in enumerate(order):
            item.priority = len(order) - position
        self.store.downloads.reorder_download_jobs([item.id for item in order])
        for item in order[min(index, target) : max(index, target) + 1]:
            self.feed.emit(item.id, force=True)
        return True

    def set_state(self, job: Job, state: JobState, *, error: Any = KEEP, message: Any = KEEP) -> None:
        job.state = state
        if error is not KEEP:
            job.error = error
        if message is not KEEP:
            job.message = message
        if state is not JobState.PAUSED:  # only a paused job waits out a rate limit
            job.resume_at = None
        job.updated = time.time()
        self.store.downloads.update_download_job(job.id, state=state.value, error=job.error, message=job.message,
                                       resume_at=job.resume_at)  # fmt: skip
        self.feed.emit(job.id, force=True)

    def sync_phase(self, job_id: int) -> None:
        """After a file's state changed: an active job is verifying while one of its files is, else downloading."""
        job = self.jobs.get(job_id)
        if job is None or job.state not in ACTIVE:
            return
        verifying = any(f.state is FileState.VERIFYING for f in job.files)
        wanted = JobState.VERIFYING if verifying else JobState.DOWNLOADING
        if job.state is not wanted:
            self.set_state(job, wanted)
        else:
            self.feed.emit(job_id, force=True)

    def set_message(self, job_id: int, message: str | None) -> None:
        """A note on an active job (what it retries, what it waits for); ignored once the job is not active."""
        job = self.jobs.get(job_id)
        if job is None or job.state not in ACTIVE or job.message == message:
            return
        job.message = message
        self.store.downloads.update_download_job(job_id, message=message)
        self.feed.emit(job_id, force=True)

    # --- files ---

    def apply_plan(self, job: Job, commit: str, files: list[JobFile]) -> None:
        job.commit, job.files = commit, files
        job.total_bytes = sum(f.size or 0 for f in files)
        self.store.downloads.set_download_files(job.id, [f.record(job.id) for f in files])
        self.store.downloads.update_download_job(job.id, commit=commit, total_bytes=job.total_bytes)
        self.feed.emit(job.id, force=True)

    def forget_plan(self, job: Job) -> None:
        """The job lists its repo again when it next runs (its files left the cache)."""
        job.commit, job.files, job.total_bytes = None, [], None
        self.store.downloads.set_download_files(job.id, [])
        self.store.downloads.update_download_job(job.id, commit=None, total_bytes=None, done_bytes=0)

    def reset_failed_files(self, job: Job) -> None:
        for f in job.files:
            if f.state is FileState.FAILED:
                f.state, f.error = FileState.PENDING, None
                self.store.downloads.update_download_file(job.id, f.path, state=f.state.value, error=None)

    def persist_file(self, job: Job, f: JobFile) -> None:
        self.store.downloads.update_download_file(job.id, f.path, size=f.size, etag=f.etag, hash_kind=f.hash_kind,
                                        expected_hash=f.expected_hash, done_bytes=f.done_bytes, state=f.state.value,
                                        error=f.error)  # fmt: skip

    def persist_progress(self, job: Job) -> None:
        for f in job.files:
            if f.state is not FileState.DONE:
                self.persist_file(job, f)
        self.store.downloads.update_download_job(job.id, done_bytes=sum(f.done_bytes for f in job.files))
