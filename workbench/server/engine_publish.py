"""What the engine tells its faces: the state topics of its event hub, each published latest-wins and at most once
per ``interval_s`` however many changes come (a download's progress, a storm of model events).

``models``: ``{"models": [model_row ...], "budget": {"bytes", "source"}, "context_length"}``;
``memory``: the memory probe's snapshot with what the models and prompt caches hold against the budget (sampled
every ``memory_every_s``, only while a face is attached: the caches change without an event);
``downloads``: ``{"jobs": [download_row ...]}``; ``jobs``: ``engine.jobs()`` (ps's rows); ``faces``: the attached
faces. Times are seconds since the epoch. A topic that changes while no face listens is published when one attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workbench.core.models.spec import ModelInfo, ModelState

if TYPE_CHECKING:
    from workbench.core.hub.downloads.jobs import JobSnapshot
    from workbench.core.models.lifecycle import ModelManager
    from workbench.server.engine import Engine

INTERVAL_S = 0.1  # at most ~10 events a second per topic
MEMORY_EVERY_S = 1.0


def model_row(info: ModelInfo, manager: ModelManager, now: float) -> dict[str, Any]:
    """One model as the Models view shows it; ``now`` is ``time.time()``."""
    estimate = info.estimate
    last_used = None if info.last_used is None else now - (manager._clock() - info.last_used)
    unload_at = None
    if (info.state is ModelState.READY and not info.pinned and info.leases == 0 and manager.idle_unload_s
            and last_used is not None):  # fmt: skip
        unload_at = max(now, last_used + manager.idle_unload_s)
    return {
        "id": info.spec.id, "name": info.spec.name, "kind": info.spec.kind, "role": str(info.role),
        "path": str(info.spec.path), "state": str(info.state), "pinned": info.pinned, "leases": info.leases,
        "estimate": None if estimate is None else {"weights": estimate.weights, "kv_cache": estimate.kv_cache,
                                                   "overhead": estimate.overhead, "total": estimate.total},
        "measured_bytes": info.measured, "memory_bytes": manager.cost_of(info.spec.id), "last_used": last_used,
        "idle_unload_at": unload_at, "error": info.error,
    }  # fmt: skip


def models_payload(manager: ModelManager) -> dict[str, Any]:
    now = time.time()
    return {"models": [model_row(info, manager, now) for info in manager.models()],
            "budget": {"bytes": manager.budget.bytes, "source": manager.budget.source},
            "context_length": manager.context_length}  # fmt: skip


def download_row(job: JobSnapshot) -> dict[str, Any]:
    """One job as the Downloads view shows it (a superset of ``GET /v1/downloads``'s rows; no per-file list)."""
    return {"id": job.id, "repo": job.repo_id, "revision": job.revision, "state": str(job.state),
            "position": job.position, "done_bytes": job.done_bytes, "total_bytes": job.total_bytes,
            "fraction": job.fraction, "speed_bps": job.speed_bps, "eta_s": job.eta_s, "files_done": job.files_done,
            "files_total": job.files_total, "error": job.error, "message": job.message, "created": job.created,
            "updated": job.updated, "resume_at": job.resume_at}  # fmt: skip


class EnginePublisher:
    """Publishes the engine's state topics on ``engine.events``; ``start`` once the download queue runs, ``stop``
    before the services close."""

    def __init__(self, engine: Engine, interval_s: float = INTERVAL_S, memory_every_s: float = MEMORY_EVERY_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.memory_every_s = memory_every_s
        self.samples = 0  # memory samples taken (tests count them)
        self._builders: dict[str, Callable[[], Any]] = {
            "models": lambda: models_payload(engine.services.manager),
            "memory": self._memory,
            "downloads": self._downloads,
            "jobs": engine.jobs,
            "faces": lambda: engine.stream.faces(),
        }
        self._last: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._stale: set[str] = set()  # changed while nobody listened
        self._unsubscribe: list[Callable[[], None]] = []
        self._sampler: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False

    def start(self) -> None:
        """Call on the engine's loop."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._unsubscribe.append(self.engine.services.manager.subscribe(lambda _event: self.changed("models")))
        if self.engine.services.downloads_started:
            self._unsubscribe.append(self.engine.services.downloads.subscribe(self._download_changed))
        self._stale.update(("models", "downloads", "jobs", "faces"))

    async def stop(self) -> None:
        self._running = False
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._stop_sampler()

    def changed(self, topic: str) -> None:
        """``topic``'s state changed: publish it now, or once ``interval_s`` has passed since it last went out.
        Safe from any thread (a model registered by a scan in a worker thread tells the manager's listeners there)."""
        loop = self._loop
        if not self._running or loop is None or topic in self._timers:
            return
        if _running_loop() is not loop:
            loop.call_soon_threadsafe(self.changed, topic)
            return
        wait = self._last.get(topic, -math.inf) + self.interval_s - loop.time()
        self._timers[topic] = loop.call_later(max(0.0, wait), self._fire, topic)

    def faces_changed(self) -> None:
        """A face attached or left: publish what went unpublished, and sample memory while any is attached."""
        self.changed("faces")
        if self.engine.clients and self._running:
            for topic in self._stale - {"faces"}:
                self.changed(topic)
            if self._sampler is None:
                self._sampler = asyncio.create_task(self._sample())
        elif self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None

    def _fire(self, topic: str) -> None:
        self._timers.pop(topic, None)
        if not self.engine.events.subscribers:
            self._stale.add(topic)
            return
        self._stale.discard(topic)
        self._last[topic] = asyncio.get_running_loop().time()
        self.engine.events.publish(topic, self._builders[topic](), state=True)

    def _download_changed(self, _job: JobSnapshot) -> None:
        self.changed("downloads")
        self.changed("jobs")  # ps's rows carry the downloads' progress

    def _downloads(self) -> dict[str, Any]:
        services = self.engine.services
        return {"jobs": [download_row(job) for job in services.downloads.jobs()] if services.downloads_started else []}

    def _memory(self) -> dict[str, Any]:
        snapshot = self.engine.services.probe.snapshot()
        manager = self.engine.services.manager
        self.samples += 1
        return {"system_total": snapshot.system_total, "system_used": snapshot.system_used,
                "process_rss": snapshot.process_rss, "mlx_active": snapshot.mlx_active, "mlx_peak": snapshot.mlx_peak,
                "mlx_cache": snapshot.mlx_cache, "budget_bytes": manager.budget.bytes,
                "held_bytes": manager.held_bytes(), "sampled_at": time.time()}  # fmt: skip

    async def _sample(self) -> None:
        while True:
            self._fire("memory")
            await asyncio.sleep(self.memory_every_s)

    async def _stop_sampler(self) -> None:
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
