"""Stopping and retrying on a transfer thread: the flag checked between chunks, the ways a try ends, and the retry
policy (exponential backoff with jitter, the hub's Retry-After, a long one turned into a pause until then)."""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from workbench.core.hub.downloads.jobs import DownloadFailure, FileState, Job, JobFile
from workbench.core.hub.errors import translate_error

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_WAIT_S = 600.0  # a Retry-After up to this long is waited; a longer one pauses the job until then
MAX_RATE_LIMIT_PAUSE_S = 7 * 24 * 3600.0  # a later Retry-After is taken as this (then the hub is asked again)


class Stopped(Exception):
    """Paused, cancelled or shutting down (the flag was seen between reads, or the read was aborted)."""


class RateLimited(Exception):
    """The hub asked to wait longer than the queue waits in place: the job pauses until ``until`` (wall clock)."""

    def __init__(self, until: float) -> None:
        super().__init__(until)
        self.until = until


class DiskLow(Exception):
    """Free space would drop below the floor: the job pauses with this message."""


class HashMismatch(Exception):
    pass


class Truncated(Exception):
    """The body ended (cleanly or not) before the file's size."""


class Control:
    """The flag a transfer thread checks between reads, and the way to abort the read it is blocked in."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._abort: Callable[[], None] | None = None

    def stop(self, reason: str) -> None:
        if self.reason != "cancel":  # a cancel must not be downgraded (its partial files are removed)
            self.reason = reason
        self.event.set()
        with self._lock:  # under the lock: once ``aborting`` has let go, the abort is never called
            abort, self._abort = self._abort, None
            if abort is not None:
                try:
                    abort()
                except OSError as exc:
                    log.debug("aborting a read: %s", exc)

    @contextlib.contextmanager
    def aborting(self, abort: Callable[[], None]) -> Iterator[None]:
        """While inside, ``stop`` also calls ``abort`` (which must make a blocked read return at once); raises
        Stopped on entry if the flag is already set."""
        with self._lock:
            self._abort = abort
        try:
            self.check()
            yield
        finally:
            with self._lock:
                self._abort = None

    def check(self) -> None:
        if self.event.is_set():
            raise Stopped(self.reason)

    def sleep(self, seconds: float) -> None:
        if self.event.wait(max(0.0, seconds)):
            raise Stopped(self.reason)


class RetryPolicy:
    """When a failed try is worth another, and how long to wait first. ``note(job_id, text)`` tells the queue
    what is being retried (called on the transfer thread)."""

    def __init__(
        self,
        note: Callable[[int, str | None], None],
        endpoint: str | None,
        stall_timeout_s: float,
        max_attempts: int,
        backoff_base_s: float,
        backoff_max_s: float,
        max_retry_wait_s: float = MAX_RETRY_WAIT_S,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._note = note
        self.endpoint = endpoint
        self.stall_timeout_s = stall_timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_wait_s = max_retry_wait_s
        self._wall_clock = wall_clock

    def run(self, job: Job, f: JobFile | None, control: Control, action: Callable[[], T]) -> T:
        """Run ``action``; retry resets, stalls, truncated bodies, 5xx and 429 with exponential backoff and jitter
        (Retry-After wins); a try that brought new bytes starts the count again."""
        attempts = 0
        while True:
            control.check()
            before = job.transferred
            try:
                return action()
            except (Stopped, DiskLow, RateLimited, DownloadFailure, HashMismatch):
                raise
            except Exception as exc:
                retry_after, reason = self.classify(exc, job, f)
                if job.transferred > before:
                    attempts = 0
                attempts += 1
                if attempts >= self.max_attempts:
                    if f is not None:
                        f.state, f.error = FileState.FAILED, reason
                    raise DownloadFailure(f"{reason} (gave up after {attempts} tries)") from exc
                if retry_after is not None and retry_after > self.max_retry_wait_s:
                    log.info("download %s: %s; Retry-After %.0f s: pausing", job.repo_id, reason, retry_after)
                    raise RateLimited(self._wall_clock() + min(retry_after, MAX_RATE_LIMIT_PAUSE_S)) from exc
                delay = retry_after if retry_after is not None else self.backoff(attempts)
                log.info("download %s: %s; retrying in %.1f s", job.repo_id, reason, delay)
                self._note(job.id, f"{reason}; retrying in {delay:.0f} s (try {attempts + 1} of {self.max_attempts})")
                control.sleep(delay)

    def backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # jitter: many clients do not retry in step

    def classify(self, exc: Exception, job: Job, f: JobFile | None) -> tuple[float | None, str]:
        """``(retry_after, reason)`` for an error worth retrying; raises DownloadFailure (or DiskLow) otherwise."""
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
        if isinstance(exc, Truncated):
            return None, f"{what}: {exc}"
        if isinstance(exc, httpx2.ReadTimeout):
            return None, f"{what}: no data for {self.stall_timeout_s:g} s (stalled); reconnecting"
        if isinstance(exc, httpx2.TimeoutException):
            return None, f"{what}: the hub did not answer in time"
        if isinstance(exc, httpx2.ConnectError):
            return None, f"cannot connect to the hub ({job.endpoint(self.endpoint) or 'huggingface.co'})"
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
            raise DiskLow("paused: the disk is full") from exc
        if isinstance(exc, OSError):
            raise DownloadFailure(f"{what}: cannot write to the cache: {exc.strerror or exc}") from exc
        log.error("download %s: unexpected %r", job.repo_id, exc)
        raise DownloadFailure(f"{what}: {type(exc).__name__}: {exc}") from exc
