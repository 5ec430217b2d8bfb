"""The download queue: persistent, resumable, verified downloads into the standard Hugging Face cache.

:class:`DownloadManager` is the queue's state machine. Jobs and their files live in SQLite (the store), mirrored
here in memory, so the queue survives restarts. A job lists its repo once and pins that commit
(:mod:`~workbench.core.hub.downloads.plan`); its files are then fetched one by one
(:mod:`~workbench.core.hub.downloads.transfer`) and linked into the cache as huggingface_hub lays it out
(:mod:`~workbench.core.hub.downloads.layout`); listeners hear of it through
:class:`~workbench.core.hub.downloads.progress.ProgressFeed`.

Transfers are blocking I/O on daemon threads (one per active job, never the MLX inference thread); pause, cancel
and shutdown are a flag checked after every socket read, and they shut the socket down to end a read still
waiting. Everything that touches the store or calls listeners runs on the asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from workbench.core.hub import cache as hf_cache
from workbench.core.hub import names as hub_names
from workbench.core.hub.downloads.jobs import (
    ACTIVE,
    SETTLED,
    DownloadFailure,
    FileState,
    HubAccess,
    Job,
    JobSnapshot,
    JobState,
    clock_time,
)
from workbench.core.hub.downloads.layout import CacheLayout
from workbench.core.hub.downloads.ledger import KEEP, JobLedger
from workbench.core.hub.downloads.plan import Planner
from workbench.core.hub.downloads.ratelimit import ResumeTimers
from workbench.core.hub.downloads.retry import MAX_RETRY_WAIT_S, Control, DiskLow, RateLimited, RetryPolicy, Stopped
from workbench.core.hub.downloads.transfer import Transfer, TransferEvents
from workbench.core.hub.downloads.worker import call_on_loop, fetch_job
from workbench.core.hub.errors import quiet_hub_logging
from workbench.core.storage.store import Store

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
RESUME_CHECK_S = 60.0  # a rate-limited job looks at the wall clock this often (a laptop may sleep meanwhile)


class DownloadManager:
    """The queue. Use it from one asyncio loop; ``start()`` it to download, ``aclose()`` it to stop.

    Controls (``enqueue``, ``pause``, ``resume``, ``cancel``, ``retry``, ``move``, ...) are plain methods that
    return at once; what they set in motion shows in the snapshots that ``jobs()`` returns and ``subscribe``
    delivers (at most ~10 a second per job for bytes; every state change at once).
    """

    def __init__(self, store: Store, cache_dir: Path | None = None, endpoint: str | None = None, concurrency: int = 2,
                 bandwidth_bps: int | None = None,
                 chunk_size: int = 64 * 1024,  # bytes held before they are written (a killed process loses them)
                 stall_timeout_s: float = 30.0, max_attempts: int = 6, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0, min_free_bytes: int = 1 << 30,
                 clock: Callable[[], float] = time.monotonic,
                 max_retry_wait_s: float = MAX_RETRY_WAIT_S, wall_clock: Callable[[], float] = time.time,
                 resume_check_s: float = RESUME_CHECK_S) -> None:  # fmt: skip
        self.store = store
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.concurrency = max(1, concurrency)
        self._clock = clock
        self._wall_clock = wall_clock  # for rate-limit pauses, which outlive the process
        self._layout = CacheLayout(cache_dir)
        self._ledger = ledger = JobLedger(store, clock)
        events = TransferEvents(  # each hands over from the transfer thread to the loop
            note=lambda job_id, message: call_on_loop(self._loop, ledger.set_message, job_id, message),
            file_phase=lambda job_id: call_on_loop(self._loop, ledger.sync_phase, job_id),
            file_named=lambda job, f: call_on_loop(self._loop, ledger.persist_file, job, f),
            progressed=lambda job_id: call_on_loop(self._loop, ledger.feed.emit, job_id),
        )
        retry = RetryPolicy(events.note, self.endpoint, stall_timeout_s, max_attempts, backoff_base_s, backoff_max_s,
                            max_retry_wait_s, wall_clock)  # fmt: skip
        self._planner = Planner(self._layout, retry, self.endpoint, stall_timeout_s)
        self._transfer = Transfer(self._layout, retry, events, self.endpoint, chunk_size, stall_timeout_s,
                                  min_free_bytes, clock, bandwidth_bps)  # fmt: skip
        self._resume_timers = ResumeTimers(ledger.jobs, self.resume, self._runs_now, wall_clock, resume_check_s)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._controls: dict[int, Control] = {}
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._only: set[int] | None = None
        self._started = False
        self._closing = False

    # --- settings ---

    @property
    def cache_dir(self) -> Path:
        return self._layout.root

    @property
    def bandwidth_bps(self) -> int | None:
        return self._transfer.bandwidth_bps

    @bandwidth_bps.setter
    def bandwidth_bps(self, value: int | None) -> None:
        self._transfer.bandwidth_bps = value

    # --- life ---

    async def start(self, only: Iterable[int] | None = None) -> None:
        """Resume what was running when the app last stopped (from the bytes on disk) and start queued jobs.

        ``only``: run just these jobs (``workbench pull`` runs its own job, not the whole queue)."""
        if self._started:
            return
        self._loop = self._ledger.feed.loop = asyncio.get_running_loop()
        self._only = None if only is None else set(only)
        self._closing = False
        quiet_hub_logging()
        for job in self._ledger.ordered():
            if self._only is not None and job.id not in self._only:
                continue
            if job.state in ACTIVE:  # the process stopped (or died) mid-download
                self._set_state(job, JobState.QUEUED, message=None)
            if job.state is not JobState.DONE and any(f.etag and f.state is not FileState.DONE for f in job.files):
                self._layout.measure_partials(job)
        self._started = True
        for job in self._ledger.ordered():
            if job.state is JobState.PAUSED and job.resume_at is not None:
                self._resume_timers.arm(job)
        self._schedule()

    async def aclose(self) -> None:
        """Stop every transfer at once, keeping partial files and states for the next start."""
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
        self._ledger.feed.cancel_pending()
        self._resume_timers.cancel_all()
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        self._started = False

    # --- reading ---

    def jobs(self) -> list[JobSnapshot]:
        """Every job in queue order, with per-file progress, speed and ETA."""
        return self._ledger.snapshots()

    def job(self, job_id: int) -> JobSnapshot:
        return self._ledger.snapshot(self._ledger.require(job_id))

    def snapshot_path(self, job_id: int) -> Path | None:
        """The job's snapshot folder in the cache (where ``mlx_lm.load`` can read it), once it knows its commit."""
        job = self._ledger.require(job_id)
        if job.commit is None:
            return None
        return self._layout.snapshot_dir(job.repo_id, job.commit)

    def subscribe(self, listener: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        """Call ``listener`` on the loop with a job's snapshot when it changes; returns the unsubscribe function."""
        return self._ledger.feed.subscribe(listener)

    async def wait(self, job_id: int, timeout: float | None = None) -> JobSnapshot:
        """The job's snapshot once it settles (done, failed, cancelled or paused) and its transfer has let go of
        its files, or once the manager closes; raises TimeoutError after ``timeout`` seconds."""
        job = self._ledger.require(job_id)
        if not self._settled(job):
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(job_id, []).append(future)
            try:
                await asyncio.wait_for(future, timeout)
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.get(job_id, []).remove(future)
        return self._ledger.snapshot(job)

    # --- controls ---

    def enqueue(self, repo_id: str, revision: str = "main", files: list[str] | None = None, *,
                include: list[str] | None = None, all_files: bool = False,
                hub: HubAccess | None = None) -> JobSnapshot:  # fmt: skip
        """Queue a repo: ``files`` (exact paths), ``include`` (glob patterns), ``all_files``, or by default the files
        an MLX model needs. Queuing a repo that already has a job returns that job (a paused or failed one is
        queued again, a done one is fetched again only if its files left the cache).

        ``hub``: the endpoint and token this job uses instead of the queue's (kept in memory only: see
        :class:`~workbench.core.hub.downloads.jobs.HubAccess`); given for an existing job, it replaces that job's
        from its next request on."""
        if (job := self._ledger.find(repo_id, revision, files, include, all_files)) is not None:
            job.hub = hub or job.hub
            self._revive(job)
            return self._ledger.snapshot(job)
        job = self._ledger.add(repo_id, revision, files, include, all_files)
        job.hub = hub
        self._schedule()
        return self._ledger.snapshot(job)

    def pause(self, job_id: int) -> None:
        """Stop the transfer at once (the read under way is aborted), keeping the bytes received; a queued job
        just waits."""
        job = self._ledger.require(job_id)
        if job.state is JobState.QUEUED or job.state in ACTIVE:
            if control := self._controls.get(job_id):
                control.stop("pause")
            self._set_state(job, JobState.PAUSED, message=None)

    def resume(self, job_id: int) -> None:
        job = self._ledger.require(job_id)
        if job.state is JobState.PAUSED:
            self._set_state(job, JobState.QUEUED, message=None)
            self._schedule()

    def retry(self, job_id: int) -> bool:
        """A failed job goes back in the queue (its partial files are kept and resumed), a cancelled one too (from
        its finished files); False for a job in another state (nothing to retry)."""
        job = self._ledger.require(job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED) or job_id in self._tasks:
            return False
        self._ledger.reset_failed_files(job)
        self._set_state(job, JobState.QUEUED, error=None, message=None)
        self._schedule()
        return True

    def cancel(self, job_id: int) -> None:
        """Stop the job and delete its partial files (finished files stay in the cache)."""
        job = self._ledger.require(job_id)
        if job.state in (JobState.DONE, JobState.CANCELLED):
            return
        if control := self._controls.get(job_id):
            control.stop("cancel")
        self._set_state(job, JobState.CANCELLED, message=None)
        if job_id not in self._tasks:  # else the transfer removes them when it lets go
            self._layout.remove_partials(job)

    def forget(self, job_id: int) -> None:
        """Remove a settled job from the list (its files in the cache stay)."""
        job = self._ledger.require(job_id)
        if job_id in self._tasks or job.state not in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            raise ValueError(f"job {job_id} is {job.state}: cancel it first")
        self._ledger.remove(job_id)

    def forget_finished(self) -> int:
        """Remove done and cancelled jobs from the list (their files in the cache stay); returns how many."""
        gone = [job.id for job in self._ledger.ordered()
                if job.state in (JobState.DONE, JobState.CANCELLED) and job.id not in self._tasks]  # fmt: skip
        for job_id in gone:
            self.forget(job_id)
        return len(gone)

    def in_cache(self, job_id: int) -> bool:
        """Whether every file of the job is in the cache's snapshot folder (a done job's repo may be deleted)."""
        return self._layout.all_linked(self._ledger.require(job_id))

    def move(self, job_id: int, delta: int) -> None:
        """Move a job ``delta`` places in the queue order: negative is toward the front (sooner)."""
        if self._ledger.move(self._ledger.require(job_id), delta):
            self._schedule()

    def pause_all(self) -> None:
        for job in self._ledger.ordered():
            self.pause(job.id)

    def resume_all(self) -> None:
        for job in self._ledger.ordered():
            self.resume(job.id)

    def clean_partial_files(self) -> list[hf_cache.PartialFile]:
        """Delete ``*.incomplete`` blobs no job owns (huggingface_hub's leftovers included); returns them."""
        owned = self._layout.owned_partials(self._ledger.jobs.values())
        return hf_cache.clean_partial_files(self.cache_dir, keep=owned)

    # --- scheduling (on the loop) ---

    def _settled(self, job: Job) -> bool:
        return job.state in SETTLED and job.id not in self._tasks

    def _revive(self, job: Job) -> None:
        if job.state is JobState.PAUSED:
            self.resume(job.id)
        elif job.state is JobState.FAILED:
            self.retry(job.id)
        elif job.state is JobState.DONE and not self._layout.all_linked(job):
            self._ledger.forget_plan(job)
            self._set_state(job, JobState.QUEUED, error=None, message=None)
            self._schedule()

    def _runs_now(self, job: Job) -> bool:
        """Whether this run of the queue looks after ``job`` (it is started, not closing, and not left out)."""
        return self._loop is not None and not self._closing and (self._only is None or job.id in self._only)

    def _schedule(self) -> None:
        if not self._started or self._closing or self._loop is None:
            return
        for job in self._ledger.ordered():
            if len(self._tasks) >= self.concurrency:
                return
            if job.state is not JobState.QUEUED or job.id in self._tasks:
                continue
            if self._only is not None and job.id not in self._only:
                continue
            control = self._controls[job.id] = Control()
            self._set_state(job, JobState.DOWNLOADING, message=None)
            self._tasks[job.id] = self._loop.create_task(self._run(job, control), name=f"download-{job.id}")

    async def _run(self, job: Job, control: Control) -> None:
        job.transferred = 0
        job.meter.reset(self._clock())
        try:
            await fetch_job(job, control, self._ledger, self._planner, self._transfer)
            if job.state is not JobState.CANCELLED:
                self._set_state(job, JobState.DONE, error=None, message=None)
        except Stopped:
            pass  # pause and cancel set the state themselves; a shutdown keeps it for the next start
        except DiskLow as exc:
            if job.state in ACTIVE:
                self._set_state(job, JobState.PAUSED, message=str(exc))
        except RateLimited as limited:
            if job.state in ACTIVE:
                job.resume_at = limited.until
                until = clock_time(limited.until, self._wall_clock())
                self._set_state(job, JobState.PAUSED, message=f"rate limited until {until}")
                self._resume_timers.arm(job)
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
                self._layout.remove_partials(job)
            self._ledger.persist_progress(job)
            self._release_waiters(job.id)
            self._ledger.feed.emit(job.id, force=True)
            self._schedule()

    # --- state (on the loop) ---

    def _set_state(self, job: Job, state: JobState, *, error: Any = KEEP, message: Any = KEEP) -> None:
        if state is not JobState.PAUSED:  # only a paused job waits out a rate limit
            self._resume_timers.cancel(job.id)
        self._ledger.set_state(job, state, error=error, message=message)
        self._release_waiters(job.id)

    def _release_waiters(self, job_id: int) -> None:
        job = self._ledger.jobs.get(job_id)
        if job is None or not self._settled(job):
            return
        for future in self._waiters.pop(job_id, []):
            if not future.done():
                future.set_result(None)
