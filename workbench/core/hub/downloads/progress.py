"""How a download's progress is measured and told: the speed meter a transfer thread feeds, and the feed that hands
job snapshots to listeners on the loop (state changes at once, byte counts at most one per PROGRESS_INTERVAL_S)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Container
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.core.hub.downloads.jobs import JobSnapshot

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # listeners hear about a job's bytes at most this often
SPEED_WINDOW_S = 5.0


class Meter:
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


class ProgressFeed:
    """The listeners of the queue and what they are told. Use it on the loop.

    ``jobs``: the ids of the jobs there are; ``snapshot`` gives one's snapshot; ``clock`` spaces the byte updates."""

    def __init__(self, jobs: Container[int], snapshot: Callable[[int], JobSnapshot],
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self._jobs = jobs
        self._snapshot = snapshot
        self._clock = clock
        self._listeners: list[Callable[[JobSnapshot], None]] = []
        self._last_delivery: dict[int, float] = {}
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the queue starts; until then all go at once

    def subscribe(self, listener: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, job_id: int, force: bool = False) -> None:
        """Tell listeners; byte updates are coalesced to one per PROGRESS_INTERVAL_S, state changes go at once."""
        if job_id not in self._jobs or not self._listeners:
            return
        if force or self.loop is None:
            if handle := self._pending.pop(job_id, None):
                handle.cancel()
            self._deliver(job_id)
            return
        if job_id in self._pending:
            return
        wait = self._last_delivery.get(job_id, -math.inf) + PROGRESS_INTERVAL_S - self._clock()
        if wait > 0:
            self._pending[job_id] = self.loop.call_later(wait, self._deliver, job_id)
        else:
            self._deliver(job_id)

    def cancel_pending(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    def _deliver(self, job_id: int) -> None:
        self._pending.pop(job_id, None)
        if job_id not in self._jobs:
            return
        self._last_delivery[job_id] = self._clock()
        snapshot = self._snapshot(job_id)
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("download listener failed")
