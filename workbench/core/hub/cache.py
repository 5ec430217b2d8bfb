"""The standard Hugging Face cache: what is in it, deleting revisions and repos, cleaning partial downloads.

Layout (what ``hf``, ``mlx_lm`` and ``transformers`` share)::

    <cache>/models--org--name/blobs/<etag>                  file contents, named by their hash
    <cache>/models--org--name/blobs/<etag>.incomplete       a partial download of ours (stable name, resumable)
    <cache>/models--org--name/blobs/<etag>.<8 hex>.incomplete   a partial that huggingface_hub left behind
    <cache>/models--org--name/snapshots/<commit>/<path>     relative symlinks into blobs/
    <cache>/models--org--name/refs/<branch>                 the commit a branch pointed to
    <cache>/.locks/models--org--name/<etag>.lock             the per-file lock both we and huggingface_hub take

Everything here touches the disk: call it from a worker thread. huggingface_hub is imported on first use.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INCOMPLETE_SUFFIX = ".incomplete"


def hub_cache_dir() -> Path:
    from huggingface_hub import constants  # honours HF_HOME / HF_HUB_CACHE

    return Path(constants.HF_HUB_CACHE)


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """``models--org--name``, as huggingface_hub names a repo's folder."""
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def repo_dir(cache_dir: Path, repo_id: str, repo_type: str = "model") -> Path:
    return Path(cache_dir) / repo_folder_name(repo_id, repo_type)


def lock_path(cache_dir: Path, folder_name: str, etag: str) -> Path:
    return Path(cache_dir) / ".locks" / folder_name / f"{etag}.lock"


def acquire_lock(path: Path, timeout: float) -> Any:
    """Take huggingface_hub's kind of lock on ``path`` (flock, group-writable; a soft lock where the filesystem
    has no flock) and return it, held; raises ``filelock.Timeout`` after ``timeout`` seconds."""
    from filelock import FileLock, SoftFileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    lock: Any = FileLock(str(path), mode=0o664)
    try:
        lock.acquire(timeout=timeout)
    except NotImplementedError:  # pragma: no cover - filesystems without flock
        lock = SoftFileLock(str(path))
        lock.acquire(timeout=timeout)
    return lock


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Hold the lock if nobody else does: yields False (and holds nothing) when it is taken."""
    from filelock import Timeout

    try:
        lock = acquire_lock(path, timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


# --- what is in the cache ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedRevision:
    commit: str
    refs: tuple[str, ...]  # branches and tags pointing at it, e.g. ("main",)
    size_bytes: int
    files: int
    last_modified: float
    path: Path  # the snapshot folder


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    repo_type: str  # "model", "dataset", ...
    path: Path
    size_bytes: int  # blobs, each counted once
    files: int
    last_accessed: float
    last_modified: float
    revisions: tuple[CachedRevision, ...]  # newest first


@dataclass(frozen=True)
class PartialFile:
    path: Path
    size_bytes: int
    folder_name: str  # models--org--name
    etag: str
    from_library: bool  # named ``<etag>.<random>.incomplete`` by huggingface_hub (never resumable)

    @property
    def repo_id(self) -> str:
        return folder_repo_id(self.folder_name)


def folder_repo_id(folder_name: str) -> str:
    return "/".join(folder_name.split("--")[1:])


def scan(cache_dir: Path | None = None) -> list[CachedRepo]:
    """The repos in the cache, most recently used first (huggingface_hub's ``scan_cache_dir``)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    for warning in info.warnings:
        log.info("cache scan: %s", warning)
    repos = [
        CachedRepo(
            repo_id=repo.repo_id,
            repo_type=repo.repo_type,
            path=repo.repo_path,
            size_bytes=repo.size_on_disk,
            files=repo.nb_files,
            last_accessed=repo.last_accessed,
            last_modified=repo.last_modified,
            revisions=tuple(
                sorted(
                    (
                        CachedRevision(
                            commit=revision.commit_hash,
                            refs=tuple(sorted(revision.refs)),
                            size_bytes=revision.size_on_disk,
                            files=revision.nb_files,
                            last_modified=revision.last_modified,
                            path=revision.snapshot_path,
                        )
                        for revision in repo.revisions
                    ),
                    key=lambda r: r.last_modified,
                    reverse=True,
                )
            ),
        )
        for repo in info.repos
    ]
    return sorted(repos, key=lambda r: r.last_accessed, reverse=True)


def delete_revision(repo_id: str, commit: str, cache_dir: Path | None = None, repo_type: str = "model") -> int:
    """Delete one revision (its snapshot, refs, and blobs no other revision uses); returns the bytes freed.

    Deleting a repo's last revision deletes the whole repo folder, as huggingface_hub's strategy does."""
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(cache_dir)
    repo = _find(info, repo_id, repo_type)
    if repo is None or commit not in {r.commit_hash for r in repo.revisions}:
        raise KeyError(f"{repo_id}@{commit[:12]} is not in the cache")
    strategy = info.delete_revisions(commit)
    strategy.execute()
    return int(strategy.expected_freed_size)


def delete_repo(repo_id: str, cache_dir: Path | None = None, repo_type: str = "model") -> int:
    """Delete every revision of a repo and its folder (partial files included); returns the bytes freed.

    Cancel the repo's downloads first: their partial files go too."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    folder = repo_dir(cache, repo_id, repo_type)
    freed = 0
    try:
        info = scan_cache_dir(cache)
    except CacheNotFound:
        info = None
    repo = _find(info, repo_id, repo_type) if info is not None else None
    if info is not None and repo is not None and repo.revisions:
        strategy = info.delete_revisions(*(r.commit_hash for r in repo.revisions))
        strategy.execute()
        freed = int(strategy.expected_freed_size)
    if folder.exists():  # no revision yet (only partial files), or left over by the strategy
        freed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(folder, ignore_errors=True)
    return freed


def _find(info: Any, repo_id: str, repo_type: str) -> Any:
    return next((r for r in info.repos if r.repo_id == repo_id and r.repo_type == repo_type), None)


# --- partial files -----------------------------------------------------------------------------------


def partial_files(cache_dir: Path | None = None) -> list[PartialFile]:
    """Every ``*.incomplete`` blob in the cache, ours and huggingface_hub's."""
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    found = []
    for path in sorted(cache.glob(f"*/blobs/*{INCOMPLETE_SUFFIX}")):
        stem = path.name[: -len(INCOMPLETE_SUFFIX)]
        etag, _, random_part = stem.partition(".")
        try:
            size = path.stat().st_size
        except OSError:
            continue
        found.append(PartialFile(path, size, path.parent.parent.name, etag, from_library=bool(random_part)))
    return found


def remove_partial(cache_dir: Path, partial: PartialFile) -> bool:
    """Delete a partial file unless a download (ours or huggingface_hub's, any process) holds its lock."""
    with try_lock(lock_path(cache_dir, partial.folder_name, partial.etag)) as free:
        if not free:
            return False
        partial.path.unlink(missing_ok=True)
        return True


def clean_partial_files(cache_dir: Path | None = None, keep: Iterable[Path] = ()) -> list[PartialFile]:
    """Delete the partial files nobody owns: all but ``keep`` (the queue's own, resumable ones) and those whose
    download is running right now. Returns what was deleted."""
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    kept = {Path(p).resolve() for p in keep}
    removed = []
    for partial in partial_files(cache):
        if partial.path.resolve() in kept:
            continue
        if remove_partial(cache, partial):
            removed.append(partial)
    return removed
