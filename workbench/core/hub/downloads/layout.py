"""Where a job's files lie in the Hugging Face cache, laid out exactly as huggingface_hub lays them out (see
:mod:`workbench.core.hub.cache`): the repo folder, ``refs/<branch>``, the cache tag, the resumable
``blobs/<etag>.incomplete`` of each file, and the relative ``snapshots/<commit>/<path>`` link to its blob."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from workbench.core.hub import cache as hf_cache
from workbench.core.hub import names as hub_names
from workbench.core.hub.downloads.jobs import FileState, Job, JobFile, JobState

log = logging.getLogger(__name__)

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# A Hugging Face hub cache: backup tools may skip it (https://bford.info/cachedir/)\n"
)


class CacheLayout:
    """Paths and folders of jobs in one cache folder (huggingface_hub's own, unless one is given)."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self._root = Path(cache_dir) if cache_dir is not None else None

    @property
    def root(self) -> Path:
        if self._root is None:  # asked late: huggingface_hub is imported on first use
            self._root = hf_cache.hub_cache_dir()
        return self._root

    def repo_folder(self, repo_id: str) -> Path:
        return hf_cache.repo_dir(self.root, repo_id)

    def snapshot_dir(self, repo_id: str, commit: str) -> Path:
        return self.repo_folder(repo_id) / "snapshots" / commit

    def incomplete_path(self, job: Job, f: JobFile) -> Path | None:
        """``blobs/<etag>.incomplete``; None while the file has no ETag (or a bad one)."""
        if f.etag is None or not hub_names.ETAG.fullmatch(f.etag):
            return None
        return self.repo_folder(job.repo_id) / "blobs" / f"{f.etag}{hf_cache.INCOMPLETE_SUFFIX}"

    def all_linked(self, job: Job) -> bool:
        """Every file of the job is in its snapshot folder (so a done job need not be fetched again)."""
        if job.commit is None or not job.files:
            return False
        if not hub_names.COMMIT.fullmatch(job.commit) or any(f.name_problem() for f in job.files):
            return False
        snapshot = self.snapshot_dir(job.repo_id, job.commit)
        return all((snapshot / f.path).exists() for f in job.files)

    def owned_partials(self, jobs: Iterable[Job]) -> list[Path]:
        """The ``*.incomplete`` blobs that jobs still to finish will resume."""
        return [
            path
            for job in jobs
            if job.state not in (JobState.DONE, JobState.CANCELLED)
            for f in job.files
            if f.state is not FileState.DONE and (path := self.incomplete_path(job, f)) is not None
        ]

    def measure_partials(self, job: Job) -> None:
        """Progress after a restart is what is on disk."""
        for f in job.files:
            if f.state is not FileState.DONE and (path := self.incomplete_path(job, f)) is not None:
                try:
                    f.done_bytes = path.stat().st_size
                except OSError:
                    f.done_bytes = 0

    def remove_partials(self, job: Job) -> None:
        """Delete the job's partial files (those another download holds the lock of stay)."""
        folder = hf_cache.repo_folder_name(job.repo_id)
        for f in job.files:
            path = self.incomplete_path(job, f)
            if path is None or f.state is FileState.DONE:
                continue
            if path.exists():
                partial = hf_cache.PartialFile(path, 0, folder, path.name.removesuffix(hf_cache.INCOMPLETE_SUFFIX),
                                               from_library=False)  # fmt: skip
                if not hf_cache.remove_partial(self.root, partial):
                    log.info("kept %s: another download holds its lock", path)
            f.done_bytes, f.state = 0, FileState.PENDING

    def prepare_repo_folder(self, repo_id: str, revision: str, commit: str) -> None:
        """What huggingface_hub makes before a download: blobs/, the snapshot folder, refs/<branch>, the cache tag."""
        folder = hf_cache.repo_dir(self.root, hub_names.check_repo_id(repo_id))
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        (folder / "snapshots" / hub_names.check_commit(commit)).mkdir(parents=True, exist_ok=True)
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            with contextlib.suppress(OSError):
                tag.write_text(CACHEDIR_TAG)
        if revision != commit:
            ref = folder / "refs" / hub_names.check_revision(revision)
            ref.parent.mkdir(parents=True, exist_ok=True)
            if not ref.exists() or ref.read_text() != commit:
                staged = ref.with_name(f"{ref.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                staged.write_text(commit)
                os.replace(staged, ref)


def link(blob: Path, pointer: Path) -> None:
    """``snapshots/<commit>/<path>`` → ``../../blobs/<etag>`` (relative, as huggingface_hub links)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(pointer):
        if pointer.exists():
            return
        pointer.unlink()  # a dangling link: its blob was deleted
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except FileExistsError:
        pass
    except OSError:  # no symlinks here (some Windows set-ups): a copy, as huggingface_hub falls back to
        shutil.copyfile(blob, pointer)
