"""A face's live link to its engine: one event stream, kept up across the engine's death.

``run()`` starts the engine when none answers (the face's ``start``, e.g. workbench.engine_process.start_engine),
attaches to ``GET /v1/events`` and hands every event to ``on_event``. When the stream breaks off (the engine was
killed) the link says so, starts a new engine and attaches again, backing off while that fails. When the engine says
it is stopping (``workbench stop``, a signal) the link stays down and starts nothing until ``reconnect()`` — the
person acts. After ``max_failures`` failed starts in a row it gives up the same way and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from workbench.client.engine import EngineClient, EngineGone, EngineNotRunning, EngineRequestError, same_code

log = logging.getLogger(__name__)

RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)
MAX_FAILURES = 8
STEADY_S = 10.0  # attached this long, a loss starts the count of failures afresh


class LinkState(StrEnum):
    CONNECTING = "connecting"
    ATTACHED = "attached"
    LOST = "lost"  # the engine went away: a new one is on its way
    STOPPED = "stopped"  # the engine stopped on purpose: nothing restarts it until the person acts
    FAILED = "failed"  # no engine could be started: nothing more is tried until the person acts


@dataclass(frozen=True)
class LinkStatus:
    state: LinkState
    detail: str = ""  # in words, for the face to show
    engine: dict[str, Any] | None = None  # the handshake of the engine attached to
    other_code: bool = False  # the engine runs other code than this face (one of them changed since it started)


class EngineLink:
    def __init__(
        self,
        client: EngineClient,
        start: Callable[[], dict[str, Any]],
        face: str,
        on_event: Callable[[str, Any], None],
        on_status: Callable[[LinkStatus], None],
        topics: Sequence[str] | None = None,
        retry_s: Sequence[float] = RETRY_S,
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self.client = client
        self.start = start
        self.face = face
        self.on_event = on_event
        self.on_status = on_status
        self.topics = topics
        self.retry_s = tuple(retry_s)
        self.max_failures = max_failures
        self.status = LinkStatus(LinkState.CONNECTING)
        self._wake = asyncio.Event()
        self._attached_at: float | None = None

    def reconnect(self) -> None:
        """After a stop or a failure: start (or find) an engine and attach again."""
        self._wake.set()

    def _say(self, status: LinkStatus) -> None:
        self.status = status
        self.on_status(status)

    def _route(self) -> str:
        query: dict[str, str] = {"face": self.face, "pid": str(os.getpid())}
        if self.topics is not None:
            query["topics"] = ",".join(self.topics)
        return f"/v1/events?{urlencode(query)}"

    async def run(self) -> None:
        """Keep the link up until cancelled."""
        failures = 0
        while True:
            if self.status.state in (LinkState.STOPPED, LinkState.FAILED):
                self._wake.clear()
                await self._wake.wait()
                failures = 0
                self._say(LinkStatus(LinkState.CONNECTING))
            self._attached_at = None
            problem = "the engine's event stream ended"
            try:
                info = await asyncio.to_thread(self.start)
                stopping = await self._follow(info)
                if stopping is not None:
                    self._say(LinkStatus(LinkState.STOPPED, f"engine stopped ({stopping})"))
                    continue
            except (EngineGone, EngineNotRunning, EngineRequestError, OSError, RuntimeError) as exc:
                problem = str(exc) or type(exc).__name__
                log.info("engine link: %s", problem)
            loop_time = asyncio.get_running_loop().time()
            steady = self._attached_at is not None and loop_time - self._attached_at >= STEADY_S
            failures = 1 if steady else failures + 1
            if failures >= self.max_failures:
                self._say(LinkStatus(LinkState.FAILED, f"no engine could be reached: {problem}"))
                continue
            if self._attached_at is not None:
                self._say(LinkStatus(LinkState.LOST, "engine lost: starting a new one"))
            await asyncio.sleep(self.retry_s[min(failures, len(self.retry_s)) - 1])

    async def _follow(self, info: dict[str, Any]) -> str | None:
        """Attach and hand on events until the stream ends; the reason the engine gave if it was stopping."""
        async with contextlib.aclosing(self.client.stream("GET", self._route())) as documents:
            async for document in documents:
                topic, payload = document.get("topic"), document.get("payload")
                if not isinstance(topic, str):
                    continue
                if topic == "hello":
                    engine = payload.get("engine") if isinstance(payload, dict) else None
                    engine = engine if isinstance(engine, dict) else info
                    self._attached_at = asyncio.get_running_loop().time()
                    self._say(LinkStatus(LinkState.ATTACHED, "", engine, other_code=not same_code(engine)))
                elif topic == "stopping":
                    reason = payload.get("reason") if isinstance(payload, dict) else None
                    return str(reason or "asked to stop")
                else:
                    self.on_event(topic, payload)
        return None
