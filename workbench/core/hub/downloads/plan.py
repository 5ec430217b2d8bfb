"""Which files a job fetches: the repo is listed once at the job's revision and that commit is pinned; the files are
the exact paths asked for, the glob patterns, all of them, or by default the files an MLX model needs.

Every name the hub gives (here the commit, file names and listed hashes; the ETag where the file is fetched) is
checked by :mod:`~workbench.core.hub.names` before it becomes part of a path: a bad one fails its file (or, for the
commit, the job) with a message that names it, and nothing is written outside the cache."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from workbench.core.hub import names as hub_names
from workbench.core.hub.downloads.jobs import GIT_SHA1, SHA256, DownloadFailure, FileState, Job, JobFile
from workbench.core.hub.downloads.layout import CacheLayout
from workbench.core.hub.downloads.retry import Control, RetryPolicy
from workbench.core.hub.selection import default_selection, matches


def select(job: Job, paths: list[str]) -> list[str]:
    """The job's files among the repo's ``paths``; raises DownloadFailure when it asks for none there is."""
    where = f"{job.repo_id}@{job.revision}"
    if job.requested:
        missing = [p for p in job.requested if p not in paths]
        if missing:
            raise DownloadFailure(f"not in {where}: {', '.join(missing)}")
        return [p for p in paths if p in set(job.requested)]
    if job.include:
        chosen = [p for p in paths if any(matches(p, pattern) for pattern in job.include)]
        if not chosen:
            raise DownloadFailure(f"no file of {where} matches {' '.join(job.include)}")
        return chosen
    if job.all_files:
        return paths
    chosen = default_selection(paths)
    if not chosen:
        raise DownloadFailure(f"{where} has none of the files an MLX model needs (weights, configs, tokenizer): "
                              "choose files or patterns, or all files")  # fmt: skip
    return chosen


def check_names(job: Job, persist: Callable[[Job, JobFile], None]) -> None:
    """Refuse a job whose names would lead outside the cache: the repo id and revision it was given, the
    commit and the file names and hashes the hub listed. A bad file is failed with the reason (and ``persist``ed)."""
    try:
        hub_names.check_repo_id(job.repo_id)
        hub_names.check_revision(job.revision)
        if job.commit is not None:
            hub_names.check_commit(job.commit)
    except hub_names.BadName as exc:
        raise DownloadFailure(f"refused: {exc}") from exc
    bad = []
    for f in job.files:
        if f.state is FileState.DONE:
            continue
        problem = f.name_problem()
        if problem is not None:
            f.state, f.error = FileState.FAILED, problem
            persist(job, f)
            bad.append(problem)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DownloadFailure(f"{bad[0]}{more}")


class Planner:
    """Lists a job's repo (with retries) and makes its file records; runs on a transfer thread."""

    def __init__(self, layout: CacheLayout, retry: RetryPolicy, endpoint: str | None, stall_timeout_s: float) -> None:
        self.layout = layout
        self.retry = retry
        self.endpoint = endpoint
        self.stall_timeout_s = stall_timeout_s

    def plan(self, job: Job, control: Control) -> tuple[str, list[JobFile]]:
        """List the repo at the job's revision; pick the files; note what is already in the cache or partly there."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=job.endpoint(self.endpoint), token=job.token)
        timeout = max(self.stall_timeout_s, 1.0)

        def list_repo() -> Any:
            return api.model_info(job.repo_id, revision=job.revision, files_metadata=True, timeout=timeout)

        info = self.retry.run(job, None, control, list_repo)
        commit = info.sha
        if not commit:
            raise DownloadFailure(f"the hub did not say which commit {job.repo_id}@{job.revision} is")
        try:
            hub_names.check_commit(commit)
        except hub_names.BadName as exc:
            raise DownloadFailure(f"{job.repo_id}@{job.revision}: refused: {exc}") from exc
        siblings = {s.rfilename: s for s in info.siblings or []}
        files = []
        for path in select(job, list(siblings)):
            sibling = siblings[path]
            lfs = sibling.lfs
            if lfs is not None:
                kind, expected = SHA256, lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256
            else:
                kind, expected = GIT_SHA1, sibling.blob_id
            # the hub names a blob by its ETag: the sha256 of an LFS file, the git blob id of the rest
            files.append(JobFile(path, sibling.size, etag=expected, hash_kind=kind if expected else None,
                                 expected_hash=expected))  # fmt: skip
        snapshot = self.layout.snapshot_dir(job.repo_id, commit)
        for f in files:
            if f.name_problem() is not None:  # failed by check_names; never looked up on disk
                continue
            if (snapshot / f.path).exists():
                f.state, f.done_bytes = FileState.DONE, f.size or 0
            elif (partial := self.layout.incomplete_path(job, f)) is not None:
                with contextlib.suppress(OSError):
                    f.done_bytes = partial.stat().st_size
        return commit, files
