"""A face's link to its engine (workbench/client/link.py) against a small engine stand-in on a real Unix socket:
it attaches, hands on events, starts a new engine when the stream breaks off, and stays down after a stop."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from workbench.client.engine import EngineClient
from workbench.client.link import EngineLink, LinkState, LinkStatus
from workbench.core.engine_home import code_fingerprint
from workbench.server.ndjson import NdjsonStream

WAIT_S = 10.0


class StandIn:
    """Answers /v1/events like the engine: hello, then what the test queues; ``die()`` drops every stream."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.attached: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_get("/v1/events", self.events)
        self.runner: web.AppRunner | None = None
        self.transports: list[asyncio.BaseTransport] = []

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.attached.append(dict(request.query))
        assert request.transport is not None
        self.transports.append(request.transport)
        async with NdjsonStream(request, heartbeat_s=60) as stream:
            await stream.send({"type": "event", "topic": "hello",
                               "payload": {"engine": {"fingerprint": self.fingerprint}}})
            while (document := await self.outbox.get()) is not None:
                await stream.send(document)
                if document.get("topic") == "stopping":
                    break
        return stream.response

    async def start(self, socket: Path) -> None:
        self.runner = web.AppRunner(self.app, handler_cancellation=True)
        await self.runner.setup()
        await web.UnixSite(self.runner, str(socket)).start()

    async def die(self) -> None:
        """As a kill -9 does: every connection closes at once."""
        assert self.runner is not None
        for transport in self.transports:
            transport.close()
        await self.runner.shutdown()
        await self.runner.cleanup()


@contextlib.asynccontextmanager
async def linked(fingerprint: str = "") -> AsyncIterator[tuple[EngineLink, list[Any], list[LinkStatus], list[StandIn]]]:
    with tempfile.TemporaryDirectory() as folder:
        socket = Path(folder) / "engine.sock"
        engines: list[StandIn] = []
        loop = asyncio.get_running_loop()

        def start() -> dict[str, Any]:  # called from a thread, as start_engine is
            if not engines or engines[-1].runner is None:
                engine = StandIn(fingerprint or code_fingerprint())
                asyncio.run_coroutine_threadsafe(engine.start(socket), loop).result(WAIT_S)
                engines.append(engine)
            return {"fingerprint": engines[-1].fingerprint}

        events: list[Any] = []
        statuses: list[LinkStatus] = []
        link = EngineLink(EngineClient(socket), start, "tui", lambda topic, payload: events.append((topic, payload)),
                          statuses.append, retry_s=(0.05,), max_failures=3)  # fmt: skip
        task = asyncio.create_task(link.run())
        try:
            yield link, events, statuses, engines
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for engine in engines:
                if engine.runner is not None:
                    await engine.die()


async def until(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"waited {WAIT_S} s for {what}")
        await asyncio.sleep(0.01)


async def test_the_link_attaches_and_hands_on_events() -> None:
    async with linked() as (link, events, _, engines):
        await until(lambda: link.status.state is LinkState.ATTACHED, "attached")
        assert engines[0].attached[0]["face"] == "tui" and engines[0].attached[0]["pid"].isdigit()
        assert not link.status.other_code
        await engines[0].outbox.put({"type": "event", "topic": "models", "payload": [{"id": "a"}]})
        await until(lambda: events, "the event")
        assert events == [("models", [{"id": "a"}])]


async def test_a_killed_engine_is_replaced_and_the_link_attaches_to_the_new_one() -> None:
    async with linked() as (link, _, statuses, engines):
        await until(lambda: link.status.state is LinkState.ATTACHED, "attached")
        first = engines[0]
        await first.die()
        first.runner = None  # the next start makes a new engine
        await until(lambda: len(engines) == 2 and link.status.state is LinkState.ATTACHED, "attached again")
        states = [status.state for status in statuses]
        assert states[:3] == [LinkState.ATTACHED, LinkState.LOST, LinkState.ATTACHED]
        assert statuses[1].detail == "engine lost: starting a new one"


async def test_a_stopped_engine_is_not_restarted_until_the_person_acts() -> None:
    async with linked() as (link, _, _, engines):
        await until(lambda: link.status.state is LinkState.ATTACHED, "attached")
        await engines[0].outbox.put({"type": "event", "topic": "stopping", "payload": {"reason": "asked to stop"}})
        await until(lambda: link.status.state is LinkState.STOPPED, "stopped")
        assert link.status.detail == "engine stopped (asked to stop)"
        await engines[0].die()
        engines[0].runner = None
        await asyncio.sleep(0.3)  # a negative check: a link that restarts would have by now (its retry is 0.05 s)
        assert len(engines) == 1 and link.status.state is LinkState.STOPPED
        link.reconnect()
        await until(lambda: len(engines) == 2 and link.status.state is LinkState.ATTACHED, "attached after asking")


async def test_an_engine_that_cannot_be_started_is_given_up_on_with_the_reason() -> None:
    calls = 0

    def start() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise RuntimeError("the engine exited at start (status 1); see engine.out")

    statuses: list[LinkStatus] = []
    with tempfile.TemporaryDirectory() as folder:
        link = EngineLink(EngineClient(Path(folder) / "engine.sock"), start, "tui", lambda *_: None, statuses.append,
                          retry_s=(0.01,), max_failures=3)  # fmt: skip
        task = asyncio.create_task(link.run())
        await until(lambda: link.status.state is LinkState.FAILED, "failed")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert calls == 3
    assert "the engine exited at start" in link.status.detail


async def test_an_engine_running_other_code_is_named() -> None:
    async with linked(fingerprint="0" * 64) as (link, _, _, _):
        await until(lambda: link.status.state is LinkState.ATTACHED, "attached")
        assert link.status.other_code
