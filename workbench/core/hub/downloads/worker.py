"""A job's work off the asyncio loop: its repo listed once (the plan), then its files fetched one by one, each step
on a daemon thread (never the MLX inference thread, never holding up interpreter exit); and the way back from those
threads to the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from workbench.core.hub.downloads.jobs import FileState, Job
from workbench.core.hub.downloads.ledger import JobLedger
from workbench.core.hub.downloads.plan import Planner, check_names
from workbench.core.hub.downloads.retry import Control
from workbench.core.hub.downloads.transfer import Transfer

T = TypeVar("T")


async def fetch_job(job: Job, control: Control, ledger: JobLedger, planner: Planner, transfer: Transfer) -> None:
    """Plan the job if it has no plan yet, then fetch each file it still lacks; each file's outcome is written to
    ``ledger``. Raises what ends the job early (Stopped, DiskLow, RateLimited, DownloadFailure, ...)."""
    check_names(job, ledger.persist_file)
    if job.commit is None or not job.files:
        commit, files = await in_thread(job, planner.plan, job, control)
        ledger.apply_plan(job, commit, files)
        check_names(job, ledger.persist_file)
    await in_thread(job, transfer.prepare, job)
    for f in job.files:
        if f.state is FileState.DONE:
            continue
        control.check()
        try:
            await in_thread(job, transfer.fetch_file, job, f, control)
        finally:
            ledger.persist_file(job, f)


def in_thread(job: Job, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
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


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """From a transfer thread: run ``fn`` on ``loop`` (nothing once the loop is gone)."""
    if loop is None or loop.is_closed():
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
