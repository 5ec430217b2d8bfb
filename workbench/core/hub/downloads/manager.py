"""The download queue: persistent, resumable, verified downloads into the standard Hugging Face cache.

Jobs and their files live in SQLite (the store), so the queue survives restarts. A job
lists its repo once (``model_info``) and pins that commit; each file then goes:

1. metadata by ``HEAD`` (``get_hf_file_metadata``): ETag, size, where to fetch it;
2. huggingface_hub's own per-file lock (``<cache>/.locks/models--org--name/<etag>.lock``), so ``hf download`` and
   the workbench never write the same blob at once;
3. ``GET`` with ``Range: bytes=N-`` into a *stable* ``blobs/<etag>.incomplete``: a pause, a dropped connection or a
   killed process resumes from the bytes on disk (which are hashed first);
4. hashing while writing (sha256 for LFS files, the git blob sha1 for the rest), compared with what the hub listed;
   a mismatch discards the file and fetches it once more;
5. ``os.replace`` into ``blobs/<etag>``, then the relative ``snapshots/<commit>/<path>`` link and ``refs/<branch>``,
   laid out exactly as huggingface_hub lays them out, so ``hf``, ``mlx_lm`` and ``transformers`` find the files.

Every name the hub gives (file names, ETags, listed hashes, the commit) is checked by
:mod:`~workbench.core.hub.names` before it becomes part of a path: a bad one fails its file (or, for the commit, the
job) with a message that names it, and nothing is written outside the cache.

Transfers are blocking I/O on daemon threads (one per active job, never the MLX inference thread), through
huggingface_hub's HTTP session and headers (the token is sent, never shown). Pause, cancel and shutdown are a flag
checked between chunks. Everything that touches the store or calls listeners runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import math
import os
import random
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from workbench.core.hub import cache as hf_cache
from workbench.core.hub import names as hub_names
from workbench.core.hub.client import default_selection, quiet_hub_logging, translate_error
from workbench.core.models.memory import format_bytes
from workbench.core.storage.download_jobs import DownloadFile, DownloadJob
from workbench.core.storage.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

PROGRESS_INTERVAL_S = 0.1  # listeners hear about a job's bytes at most this often
DISK_CHECK_BYTES = 16 * 1024 * 1024  # free space is checked again after this many bytes
SPEED_WINDOW_S = 5.0
HASH_BLOCK = 8 * 1024 * 1024
CLOSE_TIMEOUT_S = 5.0
MAX_RETRY_WAIT_S = 600.0  # a Retry-After up to this long is waited; a longer one pauses the job until then
MAX_RATE_LIMIT_PAUSE_S = 7 * 24 * 3600.0  # a later Retry-After is taken as this (then the hub is asked again)
RESUME_CHECK_S = 60.0  # a rate-limited job looks at the wall clock this often (a laptop may sleep meanwhile)
SHA256, GIT_SHA1 = "sha256", "git-sha1"
_KEEP: Any = object()  # "leave this field as it is"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# A Hugging Face hub cache: backup tools may skip it (https://bford.info/cachedir/)\n"
)


class JobState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FileState(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


ACTIVE = frozenset({JobState.DOWNLOADING, JobState.VERIFYING})
# Nothing more happens to a job in these states until someone acts on it.
SETTLED = frozenset({JobState.PAUSED, JobState.DONE, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class FileProgress:
    path: str
    size: int | None
    done_bytes: int
    state: FileState
    error: str | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """What a job looks like right now; ``files`` are the repo paths it fetches (once listed, all of them)."""

    id: int
    repo_id: str
    revision: str
    state: JobState
    position: int  # 0: first in the queue order
    files: list[str]
    include: list[str]
    all_files: bool
    commit: str | None
    error: str | None  # why it failed, in words
    message: str | None  # a note: why it is paused, what it is retrying
    file_progress: list[FileProgress]
    done_bytes: int
    total_bytes: int | None  # None until the repo is listed
    speed_bps: float  # over the last few seconds
    eta_s: float | None
    created: float
    updated: float
    resume_at: float | None = None  # rate limited: it resumes by itself then (seconds since the epoch)

    @property
    def files_total(self) -> int:
        return len(self.file_progress) or len(self.files)

    @property
    def files_done(self) -> int:
        return sum(1 for f in self.file_progress if f.state is FileState.DONE)

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return 1.0 if self.state is JobState.DONE else None
        return min(1.0, self.done_bytes / self.total_bytes)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


class DownloadFailure(Exception):
    """A job cannot go on; the message says why, for people."""


class _Stopped(Exception):
    """Paused, cancelled or shutting down (the flag was seen between chunks)."""


class _RateLimited(Exception):
    """The hub asked to wait longer than the queue waits in place: the job pauses until ``until`` (wall clock)."""

    def __init__(self, until: float) -> None:
        super().__init__(until)
        self.until = until


class _DiskLow(Exception):
    """Free space would drop below the floor: the job pauses with this message."""


class _HashMismatch(Exception):
    pass


class _Truncated(Exception):
    """The body ended (cleanly or not) before the file's size."""


# --- small parts ----------------------------------------------------------------------------------------


class _Control:
    """The flag a transfer thread checks between chunks."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        if self.reason != "cancel":  # a cancel must not be downgraded (its partial files are removed)
            self.reason = reason
        self.event.set()

    def check(self) -> None:
        if self.event.is_set():
            raise _Stopped(self.reason)

    def sleep(self, seconds: float) -> None:
        if self.event.wait(max(0.0, seconds)):
            raise _Stopped(self.reason)


class TokenBucket:
    """A shared bandwidth cap: every transfer thread takes its bytes from here before writing them."""

    def __init__(self, rate_bps: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.rate_bps = rate_bps
        self._tokens = rate_bps / 4
        self._last = clock()

    def set_rate(self, rate_bps: int) -> None:
        with self._lock:
            self.rate_bps = rate_bps

    def take(self, n: int, control: _Control) -> None:
        with self._lock:
            now = self._clock()
            burst = self.rate_bps / 4
            self._tokens = min(burst, self._tokens + (now - self._last) * self.rate_bps) - n
            self._last = now
            debt = -self._tokens
        if debt > 0:
            control.sleep(debt / self.rate_bps)


class _Meter:
    """Bytes per second over the last few seconds, from samples a transfer thread adds."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=128)

    def reset(self, now: float) -> None:
        self._samples.clear()
        self._samples.append((now, 0))

    def add(self, now: float, total: int) -> None:
        self._samples.append((now, total))

    def rate(self, now: float, total: int) -> float:
        for t, seen in list(self._samples):
            if now - t <= SPEED_WINDOW_S:
                elapsed = now - t
                return (total - seen) / elapsed if elapsed > 0.2 else 0.0
        return 0.0


@dataclass
class _File:
    path: str
    size: int | None
    etag: str | None = None
    hash_kind: str | None = None
    expected_hash: str | None = None
    done_bytes: int = 0
    state: FileState = FileState.PENDING
    error: str | None = None

    def record(self, job_id: int) -> DownloadFile:
        return DownloadFile(job_id, self.path, self.size, self.etag, self.hash_kind, self.expected_hash,
                            self.done_bytes, self.state.value, self.error)  # fmt: skip


@dataclass
class _Job:
    id: int
    repo_id: str
    revision: str
    requested: list[str]
    include: list[str]
    all_files: bool
    state: JobState
    priority: int
    error: str | None
    message: str | None
    commit: str | None
    total_bytes: int | None
    created: float
    updated: float
    files: list[_File] = field(default_factory=list)
    transferred: int = 0  # bytes received since it last started (for the speed)
    meter: _Meter = field(default_factory=_Meter)
    resume_at: float | None = None

    @classmethod
    def from_record(cls, record: DownloadJob, files: list[DownloadFile]) -> _Job:
        try:
            state = JobState(record.state)
        except ValueError:
            state = JobState.QUEUED
        return cls(
            id=record.id,
            repo_id=record.repo_id,
            revision=record.revision,
            requested=list(record.files),
            include=list(record.include),
            all_files=record.all_files,
            state=state,
            priority=record.priority,
            error=record.error,
            message=record.message,
            resume_at=record.resume_at,
            commit=record.commit,
            total_bytes=record.total_bytes,
            created=record.created,
            updated=record.updated,
            files=[_file_from_record(f) for f in files],
        )

    def remaining_bytes(self) -> int:
        return sum(max(0, (f.size or 0) - f.done_bytes) for f in self.files if f.state is not FileState.DONE)


def _done_bytes(f: _File) -> int:
    return (f.size or f.done_bytes) if f.state is FileState.DONE else f.done_bytes


def _file_from_record(record: DownloadFile) -> _File:
    try:
        state = FileState(record.state)
    except ValueError:
        state = FileState.PENDING
    return _File(record.path, record.size, record.etag, record.hash_kind, record.expected_hash, record.done_bytes,
                 state, record.error)  # fmt: skip


def clock_time(when: float, now: float) -> str:
    """``14:05`` (local time, rounded up to the minute), with ``tomorrow`` or the date when it is not today."""
    from datetime import datetime

    moment = datetime.fromtimestamp(math.ceil(when / 60) * 60)
    days = (moment.date() - datetime.fromtimestamp(now).date()).days
    text = moment.strftime("%H:%M")
    if days == 1:
        return f"{text} tomorrow"
    return text if days == 0 else f"{text} on {moment:%Y-%m-%d}"


def disk_free(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _matches(path: str, pattern: str) -> bool:
    """A glob on the repo path; a pattern without ``/`` also matches the file name in any folder."""
    return fnmatch(path, pattern) or ("/" not in pattern and fnmatch(path.rsplit("/", 1)[-1], pattern))


def _name_problem(f: _File) -> str | None:
    """Why the hub's names for this file must not touch the cache (its name, ETag or listed hash), or None."""
    try:
        hub_names.check_file_name(f.path)
        if f.etag is not None:
            hub_names.check_etag(f.etag, "listed hash", f.path)
        if f.expected_hash is not None:
            hub_names.check_etag(f.expected_hash, "listed hash", f.path)
    except hub_names.BadName as exc:
        return f"refused: {exc}"
    return None


def _new_hasher(kind: str, size: int) -> Any:
    if kind == SHA256:
        return hashlib.sha256()
    git = hashlib.sha1(usedforsecurity=False)
    git.update(b"blob %d\0" % size)  # git's blob id hashes a header, then the content
    return git


# --- the manager ----------------------------------------------------------------------------------------


class DownloadManager:
    """The queue. Use it from one asyncio loop; ``start()`` it to download, ``aclose()`` it to stop.

    Controls (``enqueue``, ``pause``, ``resume``, ``cancel``, ``retry``, ``move``, ...) are plain methods that
    return at once; what they set in motion shows in the snapshots that ``jobs()`` returns and ``subscribe``
    delivers (at most ~10 a second per job for bytes; every state change at once).
    """

    def __init__(
        self,
        store: Store,
        cache_dir: Path | None = None,
        endpoint: str | None = None,
        concurrency: int = 2,
        bandwidth_bps: int | None = None,
        chunk_size: int = 256 * 1024,
        stall_timeout_s: float = 30.0,
        max_attempts: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        min_free_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.monotonic,
        max_retry_wait_s: float = MAX_RETRY_WAIT_S,
        wall_clock: Callable[[], float] = time.time,
        resume_check_s: float = RESUME_CHECK_S,
    ) -> None:
        self.store = store
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.concurrency = max(1, concurrency)
        self.chunk_size = chunk_size
        self.stall_timeout_s = stall_timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.min_free_bytes = min_free_bytes
        self._clock = clock
        self.max_retry_wait_s = max_retry_wait_s
        self._wall_clock = wall_clock  # for rate-limit pauses, which outlive the process
        self.resume_check_s = resume_check_s
        self._resume_timers: dict[int, asyncio.TimerHandle] = {}
        self._bucket = TokenBucket(bandwidth_bps, clock) if bandwidth_bps else None
        self._jobs: dict[int, _Job] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._controls: dict[int, _Control] = {}
        self._listeners: list[Callable[[JobSnapshot], None]] = []
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._last_delivery: dict[int, float] = {}
        self._pending_delivery: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._only: set[int] | None = None
        self._started = False
        self._closing = False
        for record in store.downloads.download_jobs():
            self._jobs[record.id] = _Job.from_record(record, store.downloads.download_files(record.id))

    # --- settings ---

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = hf_cache.hub_cache_dir()
        return self._cache_dir

    @property
    def bandwidth_bps(self) -> int | None:
        return self._bucket.rate_bps if self._bucket else None

    @bandwidth_bps.setter
    def bandwidth_bps(self, value: int | None) -> None:
        if not value:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(value, self._clock)
        else:
            self._bucket.set_rate(value)

    # --- life ---

    async def start(self, only: Iterable[int] | None = None) -> None:
        """Resume what was running when the app last stopped (from the bytes on disk) and start queued jobs.

        ``only``: run just these jobs (``workbench pull`` runs its own job, not the whole queue)."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._only = None if only is None else set(only)
        self._closing = False
        quiet_hub_logging()
        for job in self._ordered():
            if self._only is not None and job.id not in self._only:
                continue
            if job.state in ACTIVE:  # the process stopped (or died) mid-download
                self._set_state(job, JobState.QUEUED, message=None)
            if job.state is not JobState.DONE and any(f.etag and f.state is not FileState.DONE for f in job.files):
                self._measure_partials(job)
        self._started = True
        for job in self._ordered():
            if job.state is JobState.PAUSED and job.resume_at is not None:
                self._arm_resume(job)
        self._schedule()

    async def aclose(self) -> None:
        """Stop every transfer within a chunk, keeping partial files and states for the next start."""
        self._closing = True
        for control in self._controls.values():
            control.stop("shutdown")
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for task in pending:  # a thread stuck in a stalled read lets go at the read timeout, on its own
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for handle in [*self._pending_delivery.values(), *self._resume_timers.values()]:
            handle.cancel()
        self._pending_delivery.clear()
        self._resume_timers.clear()
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        self._started = False

    # --- reading ---

    def jobs(self) -> list[JobSnapshot]:
        """Every job in queue order, with per-file progress, speed and ETA."""
        return [self._snapshot(job, position) for position, job in enumerate(self._ordered())]

    def job(self, job_id: int) -> JobSnapshot:
        return self._snapshot(self._require(job_id))

    def snapshot_path(self, job_id: int) -> Path | None:
        """The job's snapshot folder in the cache (where ``mlx_lm.load`` can read it), once it knows its commit."""
        job = self._require(job_id)
        if job.commit is None:
            return None
        return hf_cache.repo_dir(self.cache_dir, job.repo_id) / "snapshots" / job.commit

    def subscribe(self, listener: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        """Call ``listener`` on the loop with a job's snapshot when it changes; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    async def wait(self, job_id: int, timeout: float | None = None) -> JobSnapshot:
        """The job's snapshot once it settles (done, failed, cancelled or paused) and its transfer has let go of
        its files, or once the manager closes; raises TimeoutError after ``timeout`` seconds."""
        job = self._require(job_id)
        if not self._settled(job):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(job_id, []).append(future)
            try:
                await asyncio.wait_for(future, timeout)
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.get(job_id, []).remove(future)
        return self._snapshot(job)

    # --- controls ---

    def enqueue(
        self,
        repo_id: str,
        revision: str = "main",
        files: list[str] | None = None,
        *,
        include: list[str] | None = None,
        all_files: bool = False,
    ) -> JobSnapshot:
        """Queue a repo: ``files`` (exact paths), ``include`` (glob patterns), ``all_files``, or by default the files
        an MLX model needs. Queuing a repo that already has a job returns that job (a paused or failed one is
        queued again, a done one is fetched again only if its files left the cache)."""
        explicit = bool(files or include or all_files)
        wanted = (sorted(files or []), sorted(include or []), all_files)
        for job in sorted(self._jobs.values(), key=lambda j: j.id, reverse=True):
            if job.repo_id != repo_id or job.revision != revision or job.state is JobState.CANCELLED:
                continue
            if explicit and (sorted(job.requested), sorted(job.include), job.all_files) != wanted:
                continue
            self._revive(job)
            return self._snapshot(job)
        record = self.store.downloads.add_download_job(repo_id, revision, files, include, all_files)
        job = _Job.from_record(record, [])
        self._jobs[job.id] = job
        self._emit(job.id, force=True)
        self._schedule()
        return self._snapshot(job)

    def pause(self, job_id: int) -> None:
        """Stop within one chunk, keeping the partial file; a queued job just waits."""
        job = self._require(job_id)
        if job.state is JobState.QUEUED or job.state in ACTIVE:
            if control := self._controls.get(job_id):
                control.stop("pause")
            self._set_state(job, JobState.PAUSED, message=None)

    def resume(self, job_id: int) -> None:
        job = self._require(job_id)
        if job.state is JobState.PAUSED:
            self._set_state(job, JobState.QUEUED, message=None)
            self._schedule()

    def retry(self, job_id: int) -> None:
        """A failed job goes back in the queue (its partial files are kept and resumed)."""
        job = self._require(job_id)
        if job.state is not JobState.FAILED:
            return
        for f in job.files:
            if f.state is FileState.FAILED:
                f.state, f.error = FileState.PENDING, None
                self.store.downloads.update_download_file(job.id, f.path, state=f.state.value, error=None)
        self._set_state(job, JobState.QUEUED, error=None, message=None)
        self._schedule()

    def cancel(self, job_id: int) -> None:
        """Stop the job and delete its partial files (finished files stay in the cache)."""
        job = self._require(job_id)
        if job.state in (JobState.DONE, JobState.CANCELLED):
            return
        if control := self._controls.get(job_id):
            control.stop("cancel")
        self._set_state(job, JobState.CANCELLED, message=None)
        if job_id not in self._tasks:  # else the transfer removes them when it lets go
            self._remove_partials(job)

    def forget(self, job_id: int) -> None:
        """Remove a settled job from the list (its files in the cache stay)."""
        job = self._require(job_id)
        if job_id in self._tasks or job.state not in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            raise ValueError(f"job {job_id} is {job.state}: cancel it first")
        self.store.downloads.delete_download_job(job_id)
        del self._jobs[job_id]

    def move(self, job_id: int, delta: int) -> None:
        """Move a job ``delta`` places in the queue order: negative is toward the front (sooner)."""
        order = self._ordered()
        job = self._require(job_id)
        index = order.index(job)
        target = max(0, min(len(order) - 1, index + delta))
        if target == index:
            return
        order.insert(target, order.pop(index))
        for position, item in enumerate(order):
            item.priority = len(order) - position
        self.store.downloads.reorder_download_jobs([item.id for item in order])
        for item in order[min(index, target) : max(index, target) + 1]:
            self._emit(item.id, force=True)
        self._schedule()

    def pause_all(self) -> None:
        for job in self._ordered():
            self.pause(job.id)

    def resume_all(self) -> None:
        for job in self._ordered():
            self.resume(job.id)

    def clean_partial_files(self) -> list[hf_cache.PartialFile]:
        """Delete ``*.incomplete`` blobs no job owns (huggingface_hub's leftovers included); returns them."""
        owned = [
            path
            for job in self._jobs.values()
            if job.state not in (JobState.DONE, JobState.CANCELLED)
            for f in job.files
            if f.state is not FileState.DONE and (path := self._incomplete_path(job, f)) is not None
        ]
        return hf_cache.clean_partial_files(self.cache_dir, keep=owned)

    # --- scheduling (on the loop) ---

    def _ordered(self) -> list[_Job]:
        return sorted(self._jobs.values(), key=lambda j: (-j.priority, j.id))

    def _require(self, job_id: int) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"no download job with id {job_id}") from None

    def _settled(self, job: _Job) -> bool:
        return job.state in SETTLED and job.id not in self._tasks

    def _revive(self, job: _Job) -> None:
        if job.state is JobState.PAUSED:
            self.resume(job.id)
        elif job.state is JobState.FAILED:
            self.retry(job.id)
        elif job.state is JobState.DONE and not self._all_linked(job):
            job.commit, job.files, job.total_bytes = None, [], None
            self.store.downloads.set_download_files(job.id, [])
            self.store.downloads.update_download_job(job.id, commit=None, total_bytes=None, done_bytes=0)
            self._set_state(job, JobState.QUEUED, error=None, message=None)
            self._schedule()

    def _all_linked(self, job: _Job) -> bool:
        if job.commit is None or not job.files:
            return False
        if not hub_names.COMMIT.fullmatch(job.commit) or any(_name_problem(f) for f in job.files):
            return False
        snapshot = hf_cache.repo_dir(self.cache_dir, job.repo_id) / "snapshots" / job.commit
        return all((snapshot / f.path).exists() for f in job.files)

    def _arm_resume(self, job: _Job) -> None:
        """Look again at a rate-limited job when its time comes (at least every ``resume_check_s``)."""
        if (handle := self._resume_timers.pop(job.id, None)) is not None:
            handle.cancel()
        if self._loop is None or self._closing or job.resume_at is None:
            return
        if self._only is not None and job.id not in self._only:
            return
        delay = min(max(0.0, job.resume_at - self._wall_clock()), self.resume_check_s)
        self._resume_timers[job.id] = self._loop.call_later(delay, self._resume_when_due, job.id)

    def _resume_when_due(self, job_id: int) -> None:
        self._resume_timers.pop(job_id, None)
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.PAUSED or job.resume_at is None:
            return
        if self._wall_clock() >= job.resume_at:
            log.info("download %s: the rate limit is over; resuming", job.repo_id)
            self.resume(job_id)
        else:
            self._arm_resume(job)

    def _schedule(self) -> None:
        if not self._started or self._closing or self._loop is None:
            return
        for job in self._ordered():
            if len(self._tasks) >= self.concurrency:
                return
            if job.state is not JobState.QUEUED or job.id in self._tasks:
                continue
            if self._only is not None and job.id not in self._only:
                continue
            control = self._controls[job.id] = _Control()
            self._set_state(job, JobState.DOWNLOADING, message=None)
            self._tasks[job.id] = self._loop.create_task(self._run(job, control), name=f"download-{job.id}")

    async def _run(self, job: _Job, control: _Control) -> None:
        job.transferred = 0
        job.meter.reset(self._clock())
        try:
            self._check_names(job)
            if job.commit is None or not job.files:
                commit, files = await self._in_thread(job, self._plan, job, control)
                self._apply_plan(job, commit, files)
                self._check_names(job)
            await self._in_thread(job, self._prepare, job)
            for f in job.files:
                if f.state is FileState.DONE:
                    continue
                control.check()
                try:
                    await self._in_thread(job, self._fetch_file, job, f, control)
                finally:
                    self._persist_file(job, f)
            if job.state is not JobState.CANCELLED:
                self._set_state(job, JobState.DONE, error=None, message=None)
        except _Stopped:
            pass  # pause and cancel set the state themselves; a shutdown keeps it for the next start
        except _DiskLow as exc:
            if job.state in ACTIVE:
                self._set_state(job, JobState.PAUSED, message=str(exc))
        except _RateLimited as limited:
            if job.state in ACTIVE:
                job.resume_at = limited.until
                until = clock_time(limited.until, self._wall_clock())
                self._set_state(job, JobState.PAUSED, message=f"rate limited until {until}")
                self._arm_resume(job)
        except (DownloadFailure, hub_names.BadName) as exc:
            if job.state in ACTIVE:
                self._set_state(job, JobState.FAILED, error=str(exc), message=None)
        except Exception as exc:
            log.exception("download job %s (%s) failed", job.id, job.repo_id)
            if job.state in ACTIVE:
                self._set_state(job, JobState.FAILED, error=f"unexpected error: {type(exc).__name__}: {exc}",
                                message=None)  # fmt: skip
        finally:
            self._tasks.pop(job.id, None)
            self._controls.pop(job.id, None)
            for f in job.files:  # what was under way waits for the next start
                if f.state in (FileState.DOWNLOADING, FileState.VERIFYING):
                    f.state = FileState.PENDING
            if job.state is JobState.CANCELLED:
                self._remove_partials(job)
            self._persist_progress(job)
            self._release_waiters(job.id)
            self._emit(job.id, force=True)
            self._schedule()

    def _check_names(self, job: _Job) -> None:
        """Refuse a job whose names would lead outside the cache: the repo id and revision it was given, the
        commit and the file names and hashes the hub listed. A bad file is failed with the reason."""
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
            problem = _name_problem(f)
            if problem is not None:
                f.state, f.error = FileState.FAILED, problem
                self._persist_file(job, f)
                bad.append(problem)
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DownloadFailure(f"{bad[0]}{more}")

    def _in_thread(self, job: _Job, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run blocking ``fn`` on a daemon thread (it never holds up interpreter exit); await its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def runner() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, *outcome)

        threading.Thread(target=runner, name=f"download-{job.id}", daemon=True).start()
        return future

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a transfer thread: run ``fn`` on the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    # --- state and persistence (on the loop) ---

    def _set_state(self, job: _Job, state: JobState, *, error: Any = _KEEP, message: Any = _KEEP) -> None:
        job.state = state
        if error is not _KEEP:
            job.error = error
        if message is not _KEEP:
            job.message = message
        if state is not JobState.PAUSED:  # only a paused job waits out a rate limit
            job.resume_at = None
            if (handle := self._resume_timers.pop(job.id, None)) is not None:
                handle.cancel()
        job.updated = time.time()
        self.store.downloads.update_download_job(job.id, state=state.value, error=job.error, message=job.message,
                                                 resume_at=job.resume_at)  # fmt: skip
        self._emit(job.id, force=True)
        self._release_waiters(job.id)

    def _apply_plan(self, job: _Job, commit: str, files: list[_File]) -> None:
        job.commit, job.files = commit, files
        job.total_bytes = sum(f.size or 0 for f in files)
        self.store.downloads.set_download_files(job.id, [f.record(job.id) for f in files])
        self.store.downloads.update_download_job(job.id, commit=commit, total_bytes=job.total_bytes)
        self._emit(job.id, force=True)

    def _persist_file(self, job: _Job, f: _File) -> None:
        self.store.downloads.update_download_file(job.id, f.path, size=f.size, etag=f.etag, hash_kind=f.hash_kind,
                                                  expected_hash=f.expected_hash, done_bytes=f.done_bytes,
                                                  state=f.state.value, error=f.error)  # fmt: skip

    def _persist_progress(self, job: _Job) -> None:
        for f in job.files:
            if f.state is not FileState.DONE:
                self._persist_file(job, f)
        self.store.downloads.update_download_job(job.id, done_bytes=sum(f.done_bytes for f in job.files))

    def _sync_phase(self, job_id: int) -> None:
        """From a file state change: the job is verifying while one of its files is."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in ACTIVE:
            return
        verifying = any(f.state is FileState.VERIFYING for f in job.files)
        wanted = JobState.VERIFYING if verifying else JobState.DOWNLOADING
        if job.state is not wanted:
            self._set_state(job, wanted)
        else:
            self._emit(job_id, force=True)

    def _set_message(self, job_id: int, message: str | None) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state not in ACTIVE or job.message == message:
            return
        job.message = message
        self.store.downloads.update_download_job(job_id, message=message)
        self._emit(job_id, force=True)

    def _release_waiters(self, job_id: int) -> None:
        job = self._jobs.get(job_id)
        if job is None or not self._settled(job):
            return
        for future in self._waiters.pop(job_id, []):
            if not future.done():
                future.set_result(None)

    def _incomplete_path(self, job: _Job, f: _File) -> Path | None:
        """``blobs/<etag>.incomplete``; None while the file has no ETag (or a bad one)."""
        if f.etag is None or not hub_names.ETAG.fullmatch(f.etag):
            return None
        return hf_cache.repo_dir(self.cache_dir, job.repo_id) / "blobs" / f"{f.etag}{hf_cache.INCOMPLETE_SUFFIX}"

    def _measure_partials(self, job: _Job) -> None:
        """Progress after a restart is what is on disk."""
        for f in job.files:
            if f.state is not FileState.DONE and (path := self._incomplete_path(job, f)) is not None:
                try:
                    f.done_bytes = path.stat().st_size
                except OSError:
                    f.done_bytes = 0

    def _remove_partials(self, job: _Job) -> None:
        folder = hf_cache.repo_folder_name(job.repo_id)
        for f in job.files:
            path = self._incomplete_path(job, f)
            if path is None or f.state is FileState.DONE:
                continue
            if path.exists():
                partial = hf_cache.PartialFile(path, 0, folder, path.name.removesuffix(hf_cache.INCOMPLETE_SUFFIX),
                                               from_library=False)  # fmt: skip
                if not hf_cache.remove_partial(self.cache_dir, partial):
                    log.info("kept %s: another download holds its lock", path)
            f.done_bytes, f.state = 0, FileState.PENDING

    # --- listeners (on the loop) ---

    def _emit(self, job_id: int, force: bool = False) -> None:
        """Tell listeners; byte updates are coalesced to one per PROGRESS_INTERVAL_S, state changes go at once."""
        if job_id not in self._jobs or not self._listeners:
            return
        if force or self._loop is None:
            if handle := self._pending_delivery.pop(job_id, None):
                handle.cancel()
            self._deliver(job_id)
            return
        if job_id in self._pending_delivery:
            return
        wait = self._last_delivery.get(job_id, -math.inf) + PROGRESS_INTERVAL_S - self._clock()
        if wait > 0:
            self._pending_delivery[job_id] = self._loop.call_later(wait, self._deliver, job_id)
        else:
            self._deliver(job_id)

    def _deliver(self, job_id: int) -> None:
        self._pending_delivery.pop(job_id, None)
        job = self._jobs.get(job_id)
        if job is None:
            return
        self._last_delivery[job_id] = self._clock()
        snapshot = self._snapshot(job)
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("download listener failed")

    def _snapshot(self, job: _Job, position: int | None = None) -> JobSnapshot:
        if position is None:
            position = self._ordered().index(job)
        progress = [FileProgress(f.path, f.size, _done_bytes(f), f.state, f.error) for f in job.files]
        total = sum(f.size or 0 for f in job.files) if job.files else job.total_bytes
        done = sum(p.done_bytes for p in progress)
        speed = job.meter.rate(self._clock(), job.transferred) if job.state in ACTIVE else 0.0
        eta = (total - done) / speed if speed > 0 and total is not None else None
        return JobSnapshot(
            id=job.id,
            repo_id=job.repo_id,
            revision=job.revision,
            state=job.state,
            position=position,
            files=[f.path for f in job.files] if job.files else list(job.requested),
            include=list(job.include),
            all_files=job.all_files,
            commit=job.commit,
            error=job.error,
            message=job.message,
            file_progress=progress,
            done_bytes=done,
            total_bytes=total,
            speed_bps=speed,
            eta_s=eta,
            created=job.created,
            updated=job.updated,
            resume_at=job.resume_at,
        )

    # --- on a transfer thread ---

    def _plan(self, job: _Job, control: _Control) -> tuple[str, list[_File]]:
        """List the repo at the job's revision; pick the files; lay out the repo folder as huggingface_hub does."""
        from huggingface_hub import HfApi

        api, timeout = HfApi(endpoint=self.endpoint), max(self.stall_timeout_s, 1.0)

        def list_repo() -> Any:
            return api.model_info(job.repo_id, revision=job.revision, files_metadata=True, timeout=timeout)

        info = self._with_retries(job, None, control, list_repo)
        commit = info.sha
        if not commit:
            raise DownloadFailure(f"the hub did not say which commit {job.repo_id}@{job.revision} is")
        try:
            hub_names.check_commit(commit)
        except hub_names.BadName as exc:
            raise DownloadFailure(f"{job.repo_id}@{job.revision}: refused: {exc}") from exc
        siblings = {s.rfilename: s for s in info.siblings or []}
        files = []
        for path in self._select(job, list(siblings)):
            sibling = siblings[path]
            lfs = sibling.lfs
            if lfs is not None:
                kind, expected = SHA256, lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256
            else:
                kind, expected = GIT_SHA1, sibling.blob_id
            # the hub names a blob by its ETag: the sha256 of an LFS file, the git blob id of the rest
            files.append(_File(path, sibling.size, etag=expected, hash_kind=kind if expected else None,
                               expected_hash=expected))  # fmt: skip
        snapshot = hf_cache.repo_dir(self.cache_dir, job.repo_id) / "snapshots" / commit
        for f in files:
            if _name_problem(f) is not None:  # failed by _check_names; never looked up on disk
                continue
            if (snapshot / f.path).exists():
                f.state, f.done_bytes = FileState.DONE, f.size or 0
            elif (partial := self._incomplete_path(job, f)) is not None:
                with contextlib.suppress(OSError):
                    f.done_bytes = partial.stat().st_size
        return commit, files

    def _select(self, job: _Job, paths: list[str]) -> list[str]:
        where = f"{job.repo_id}@{job.revision}"
        if job.requested:
            missing = [p for p in job.requested if p not in paths]
            if missing:
                raise DownloadFailure(f"not in {where}: {', '.join(missing)}")
            return [p for p in paths if p in set(job.requested)]
        if job.include:
            chosen = [p for p in paths if any(_matches(p, pattern) for pattern in job.include)]
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

    def _prepare_repo_folder(self, repo_id: str, revision: str, commit: str) -> None:
        """What huggingface_hub makes before a download: blobs/, the snapshot folder, refs/<branch>, the cache tag."""
        folder = hf_cache.repo_dir(self.cache_dir, hub_names.check_repo_id(repo_id))
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        (folder / "snapshots" / hub_names.check_commit(commit)).mkdir(parents=True, exist_ok=True)
        tag = self.cache_dir / "CACHEDIR.TAG"
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

    def _prepare(self, job: _Job) -> None:
        assert job.commit is not None
        self._prepare_repo_folder(job.repo_id, job.revision, job.commit)
        self._check_disk(job)

    def _check_disk(self, job: _Job) -> None:
        remaining = job.remaining_bytes()
        if not remaining:
            return
        free = disk_free(self.cache_dir)
        if free - remaining < self.min_free_bytes:
            raise _DiskLow(f"paused: low disk space ({format_bytes(free)} free, {format_bytes(remaining)} still to "
                           f"download, keeping {format_bytes(self.min_free_bytes)} free)")  # fmt: skip

    def _fetch_file(self, job: _Job, f: _File, control: _Control) -> None:
        """One file into the cache, verified and linked, with retries; raises DownloadFailure when it gives up."""
        folder = hf_cache.repo_dir(self.cache_dir, job.repo_id)
        assert job.commit is not None
        try:
            pointer = hub_names.inside(folder / "snapshots" / hub_names.check_commit(job.commit), f.path)
        except hub_names.BadName as exc:
            f.state, f.error = FileState.FAILED, f"refused: {exc}"
            raise DownloadFailure(f.error) from exc
        if pointer.exists():  # already in the cache
            f.state, f.done_bytes = FileState.DONE, f.size or pointer.stat().st_size
            return
        mismatches = 0
        while True:
            try:
                self._with_retries(job, f, control, lambda: self._fetch_once(job, f, control, folder, pointer))
                break
            except DownloadFailure as exc:
                f.state, f.error = FileState.FAILED, f.error or str(exc)
                raise
            except _HashMismatch as exc:
                mismatches += 1
                if mismatches >= 2:
                    f.state, f.error = FileState.FAILED, f"{exc}, twice"
                    raise DownloadFailure(f"{f.path}: {exc}, twice: the download is corrupt (or the file changed "
                                          "on the hub)") from exc  # fmt: skip
                self._post(self._set_message, job.id, f"{f.path}: {exc}; fetching it once more")
        f.state, f.error = FileState.DONE, None
        f.done_bytes = f.size or 0
        self._post(self._sync_phase, job.id)
        self._post(self._set_message, job.id, None)

    def _with_retries(self, job: _Job, f: _File | None, control: _Control, action: Callable[[], T]) -> T:
        """Run ``action``; retry resets, stalls, truncated bodies, 5xx and 429 with exponential backoff and jitter
        (Retry-After wins); a try that brought new bytes starts the count again."""
        attempts = 0
        while True:
            control.check()
            before = job.transferred
            try:
                return action()
            except (_Stopped, _DiskLow, _RateLimited, DownloadFailure, _HashMismatch):
                raise
            except Exception as exc:
                retry_after, reason = self._classify(exc, job, f)
                if job.transferred > before:
                    attempts = 0
                attempts += 1
                if attempts >= self.max_attempts:
                    if f is not None:
                        f.state, f.error = FileState.FAILED, reason
                    raise DownloadFailure(f"{reason} (gave up after {attempts} tries)") from exc
                if retry_after is not None and retry_after > self.max_retry_wait_s:
                    log.info("download %s: %s; Retry-After %.0f s: pausing", job.repo_id, reason, retry_after)
                    raise _RateLimited(self._wall_clock() + min(retry_after, MAX_RATE_LIMIT_PAUSE_S)) from exc
                delay = retry_after if retry_after is not None else self._backoff(attempts)
                log.info("download %s: %s; retrying in %.1f s", job.repo_id, reason, delay)
                note = f"{reason}; retrying in {delay:.0f} s (try {attempts + 1} of {self.max_attempts})"
                self._post(self._set_message, job.id, note)
                control.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # jitter: many clients do not retry in step

    def _classify(self, exc: Exception, job: _Job, f: _File | None) -> tuple[float | None, str]:
        """``(retry_after, reason)`` for an error worth retrying; raises DownloadFailure (or _DiskLow) otherwise."""
        import httpx2
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RevisionNotFoundError,
        )

        what = f.path if f is not None else job.repo_id
        if isinstance(exc, OfflineModeIsEnabled):
            raise DownloadFailure("offline mode is on (HF_HUB_OFFLINE): turn it off to download") from exc
        if isinstance(exc, _Truncated):
            return None, f"{what}: {exc}"
        if isinstance(exc, httpx2.ReadTimeout):
            return None, f"{what}: no data for {self.stall_timeout_s:g} s (stalled); reconnecting"
        if isinstance(exc, httpx2.TimeoutException):
            return None, f"{what}: the hub did not answer in time"
        if isinstance(exc, httpx2.ConnectError):
            return None, f"cannot connect to the hub ({self.endpoint or 'huggingface.co'})"
        if isinstance(exc, httpx2.TransportError):
            return None, f"{what}: the connection dropped ({type(exc).__name__})"
        if isinstance(exc, RevisionNotFoundError):
            raise DownloadFailure(f"{job.repo_id} has no revision {job.revision!r}") from exc
        if isinstance(exc, EntryNotFoundError):
            raise DownloadFailure(f"{what} is not in {job.repo_id}@{job.revision}") from exc
        if isinstance(exc, HfHubHTTPError):
            status = getattr(exc.response, "status_code", None)
            error = translate_error(exc, job.repo_id)
            if status == 429:
                return error.retry_after_s, f"{what}: the hub asks to slow down (429)"
            if status == 408 or (status is not None and status >= 500):
                return None, f"{what}: the hub had an error ({status})"
            raise DownloadFailure(str(error)) from exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _DiskLow("paused: the disk is full") from exc
        if isinstance(exc, OSError):
            raise DownloadFailure(f"{what}: cannot write to the cache: {exc.strerror or exc}") from exc
        log.error("download %s: unexpected %r", job.repo_id, exc)
        raise DownloadFailure(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _fetch_once(self, job: _Job, f: _File, control: _Control, folder: Path, pointer: Path) -> None:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(job.repo_id, f.path, revision=job.commit, endpoint=self.endpoint)
        meta = get_hf_file_metadata(url, timeout=max(self.stall_timeout_s, 1.0), endpoint=self.endpoint)
        if not meta.etag:
            raise DownloadFailure(f"{f.path}: the hub sent no ETag, so the file cannot be named in the cache")
        try:
            hub_names.check_etag(meta.etag, "ETag", f.path)
        except hub_names.BadName as exc:
            raise DownloadFailure(f"refused: {exc}") from exc
        size = meta.size if meta.size is not None else f.size
        if size is None:
            raise DownloadFailure(f"{f.path}: the hub did not say how big the file is")
        if f.etag != meta.etag or f.size != size:
            f.etag, f.size = meta.etag, size
            self._post(self._persist_file, job, f)
        kind, expected = self._expected_hash(f, meta.etag)
        blob = folder / "blobs" / meta.etag
        with self._locked(job, f, control, folder.name, meta.etag):
            if not blob.exists():
                self._download_blob(job, f, control, meta.location, url, blob, size, kind, expected)
            _link(blob, pointer)

    @staticmethod
    def _expected_hash(f: _File, etag: str) -> tuple[str, str]:
        if f.hash_kind and f.expected_hash:
            return f.hash_kind, f.expected_hash
        if len(etag) == 64:
            return SHA256, etag
        if len(etag) == 40:
            return GIT_SHA1, etag
        raise DownloadFailure(f"{f.path}: no checksum is known to verify it against")

    @contextlib.contextmanager
    def _locked(self, job: _Job, f: _File, control: _Control, folder_name: str, etag: str) -> Iterator[None]:
        """huggingface_hub's lock for this blob, waited for in short steps so a pause still stops us."""
        from filelock import Timeout

        path = hf_cache.lock_path(self.cache_dir, folder_name, etag)
        noted = False
        while True:
            try:
                lock = hf_cache.acquire_lock(path, timeout=0.25)
                break
            except Timeout:
                control.check()
                if not noted:
                    noted = True
                    self._post(self._set_message, job.id, f"{f.path}: waiting for another download of this file")
        try:
            yield
        finally:
            lock.release()

    def _set_file_state(self, job: _Job, f: _File, state: FileState) -> None:
        if f.state is not state:
            f.state = state
            self._post(self._sync_phase, job.id)

    def _download_blob(self, job: _Job, f: _File, control: _Control, location: str, url: str, blob: Path,
                       size: int, kind: str, expected: str) -> None:  # fmt: skip
        """Resume (or start) ``<etag>.incomplete``, verify it, move it into place."""
        incomplete = blob.with_name(blob.name + hf_cache.INCOMPLETE_SUFFIX)
        hasher = _new_hasher(kind, size)
        with incomplete.open("ab") as out:
            offset = out.tell()
            if offset > size:  # not this file: start again
                out.truncate(0)
                offset = 0
            if offset:
                self._set_file_state(job, f, FileState.VERIFYING)
                _hash_file(incomplete, offset, hasher, control)
            f.done_bytes = offset
            if offset < size:
                self._set_file_state(job, f, FileState.DOWNLOADING)
                hasher = self._stream(job, f, control, location, url, out, offset, size, kind, hasher)
        self._set_file_state(job, f, FileState.VERIFYING)
        digest = hasher.hexdigest()
        if digest != expected:
            incomplete.unlink(missing_ok=True)
            f.done_bytes = 0
            label = "sha256" if kind == SHA256 else "git sha1"
            raise _HashMismatch(f"{label} mismatch (expected {expected[:12]}…, got {digest[:12]}…)")
        os.replace(incomplete, blob)

    def _stream(self, job: _Job, f: _File, control: _Control, location: str, url: str, out: BinaryIO, offset: int,
                size: int, kind: str, hasher: Any) -> Any:  # fmt: skip
        """GET the rest of the file from ``offset``, writing and hashing each chunk; returns the hasher."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"
        if urlsplit(location).netloc != urlsplit(url).netloc:  # a CDN: the token stays with the hub
            headers.pop("authorization", None)
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = httpx2.Timeout(self.stall_timeout_s)  # the stall watchdog: no byte for this long drops the link
        with get_session().stream("GET", location, headers=headers, timeout=timeout) as response:
            if response.status_code == 416:  # the partial file is longer than the file now: start again
                out.truncate(0)
                f.done_bytes = 0
                raise _Truncated("the hub refused the range; starting the file again")
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if offset and response.status_code != 206:  # the Range was ignored: the body is the whole file
                out.truncate(0)
                offset, hasher = 0, _new_hasher(kind, size)
                f.done_bytes = 0
            elif offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise _Truncated(f"the hub sent another range ({response.headers.get('Content-Range')})")
            bucket, write, update, clock = self._bucket, out.write, hasher.update, self._clock
            next_tick = 0.0
            next_disk_check = offset + DISK_CHECK_BYTES
            for chunk in response.iter_raw(self.chunk_size):
                # bytes received are kept: write first, then pace and look at the flag
                write(chunk)
                update(chunk)
                offset += len(chunk)
                f.done_bytes = offset
                job.transferred += len(chunk)
                if offset > size:
                    break
                now = clock()
                if now >= next_tick:
                    next_tick = now + PROGRESS_INTERVAL_S
                    job.meter.add(now, job.transferred)
                    self._post(self._emit, job.id)
                if offset >= next_disk_check:
                    next_disk_check = offset + DISK_CHECK_BYTES
                    self._check_disk(job)
                if bucket is not None:
                    bucket.take(len(chunk), control)
                if control.event.is_set():
                    raise _Stopped(control.reason)
        if offset < size:
            raise _Truncated(f"the download ended early ({format_bytes(offset)} of {format_bytes(size)})")
        if offset > size:
            raise _HashMismatch(f"the hub sent more than the file's {size} bytes")
        return hasher


def _hash_file(path: Path, length: int, hasher: Any, control: _Control) -> None:
    """Feed the first ``length`` bytes already on disk to ``hasher`` (a resumed file is verified whole)."""
    buffer = bytearray(min(HASH_BLOCK, max(1, length)))
    view = memoryview(buffer)
    remaining = length
    with path.open("rb") as source:
        while remaining:
            n = source.readinto(view[: min(len(buffer), remaining)])
            if not n:
                raise _Truncated("the partial file shrank while it was read")
            hasher.update(view[:n])
            remaining -= n
            control.check()


def _link(blob: Path, pointer: Path) -> None:
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


# The catalog's name for it before the queue could download.
DownloadQueue = DownloadManager
