"""What the engine tells its faces: the state topics of its event hub, each published latest-wins and at most once
per ``interval_s`` however many changes come (a download's progress, a storm of model events).

``models``: workbench.server.engine_models.models_document (every ModelInfo as core/wire.py writes it, the budget,
what models and prompt caches hold, the context length); ``memory``: the memory probe's snapshot (core/wire.py) with
the budget and what is held against it, sampled every ``memory_every_s`` only while a face is attached (the caches
change without an event); ``downloads``: ``{"jobs": [JobSnapshot on the wire ...]}``; ``jobs``: ``engine.jobs()``
(ps's rows); ``faces``: the attached faces. A model's ``last_used`` is the manager's monotonic clock (one clock for
every process of the machine); other times are seconds since the epoch. A topic that changes while no face listens
is published when one attaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workbench.core.wire import job_to_wire, memory_to_wire
from workbench.server.engine_models import models_document

if TYPE_CHECKING:
    from workbench.core.hub.downloads.jobs import JobSnapshot
    from workbench.server.engine import Engine

INTERVAL_S = 0.1  # at most ~10 events a second per topic
MEMORY_EVERY_S = 1.0


class EnginePublisher:
    """Publishes the engine's state topics on ``engine.events``; ``start`` once the download queue runs, ``stop``
    before the services close."""

    def __init__(self, engine: Engine, interval_s: float = INTERVAL_S, memory_every_s: float = MEMORY_EVERY_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.memory_every_s = memory_every_s
        self.samples = 0  # memory samples taken (tests count them)
        self._builders: dict[str, Callable[[], Any]] = {
            "models": lambda: models_document(engine.services.manager),
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
        return {"jobs": [job_to_wire(job) for job in services.downloads.jobs()] if services.downloads_started else []}

    def _memory(self) -> dict[str, Any]:
        snapshot = self.engine.services.probe.snapshot()
        manager = self.engine.services.manager
        self.samples += 1
        return {**memory_to_wire(snapshot), "budget_bytes": manager.budget.bytes, "held_bytes": manager.held_bytes(),
                "sampled_at": time.time()}  # fmt: skip

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
