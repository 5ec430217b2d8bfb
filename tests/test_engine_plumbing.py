"""The engine's plumbing every face builds on: the event hub (state topics coalesce, ordered ones are bounded), the
job board behind `ps`, and streamed NDJSON answers read by the client over a real Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from workbench.client.engine import EngineClient, EngineGone, EngineNotRunning, EngineRequestError
from workbench.server.engine_events import EventHub
from workbench.server.engine_jobs import JobBoard
from workbench.server.ndjson import NdjsonStream, PeerGone


def test_a_state_topic_keeps_only_its_latest_event_for_a_slow_subscriber() -> None:
    hub = EventHub()
    subscription = hub.subscribe()
    for n in range(50):
        hub.publish("memory", {"n": n}, state=True)
    hub.publish("downloads", {"n": 0}, state=True)
    assert subscription.pending() == 2
    first, second = subscription.take(), subscription.take()
    assert first is not None and first.document() == {"topic": "memory", "payload": {"n": 49}}
    assert second is not None and second.topic == "downloads"
    assert subscription.take() is None


def test_ordered_events_are_bounded_and_the_subscriber_hears_what_it_missed() -> None:
    hub = EventHub(max_pending=10)
    subscription = hub.subscribe(frozenset({"request"}))
    for n in range(25):
        hub.publish("request", {"n": n})
    hub.publish("memory", {"ignored": True}, state=True)  # not a topic it wants
    dropped = subscription.take()
    assert dropped is not None and dropped.topic == "dropped" and dropped.payload == {"events": 15}
    rest = [event.payload["n"] for event in iter(subscription.take, None)]
    assert rest == list(range(15, 25))


def test_a_face_that_attaches_later_starts_from_the_latest_states() -> None:
    hub = EventHub()
    hub.publish("models", [{"id": "a"}], state=True)
    hub.publish("request", {"line": "gone by"})
    hub.publish("models", [{"id": "b"}], state=True)
    late = hub.subscribe()
    event = late.take()
    assert event is not None and event.payload == [{"id": "b"}]
    assert late.take() is None


async def test_closing_the_hub_ends_every_wait_after_what_was_pending() -> None:
    hub = EventHub()
    subscription = hub.subscribe()
    waiting = asyncio.create_task(subscription.next())
    await asyncio.sleep(0)
    hub.publish("stopping", {"reason": "asked"})
    first = await asyncio.wait_for(waiting, 5)
    assert first is not None and first.topic == "stopping"
    hub.close()
    assert await asyncio.wait_for(subscription.next(), 5) is None
    assert hub.subscribers == 0


def test_the_job_board_lists_running_work_and_forgets_it_however_it_ends() -> None:
    changes: list[int] = []
    board = JobBoard(clock=lambda: 100.0)
    board.on_change = lambda: changes.append(len(board))
    first = board.start("generation", "SmolLM2", face="cli")
    with pytest.raises(RuntimeError), board.running("embedding", "corpus.txt") as second:
        board.update(second, progress=1.5)
        assert board.rows()[1] == {"kind": "embedding", "id": second.id, "what": "corpus.txt", "progress": 1.0,
                                   "started_at": 100.0}  # fmt: skip
        raise RuntimeError("the embedder failed")
    assert board.rows() == [{"kind": "generation", "id": first.id, "what": "SmolLM2", "progress": None,
                             "started_at": 100.0, "face": "cli"}]  # fmt: skip
    assert first.id != second.id
    board.end(first)
    board.end(first)  # twice is harmless
    assert len(board) == 0 and changes == [1, 2, 2, 1, 0]


@contextlib.asynccontextmanager
async def unix_app(app: web.Application) -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        socket = Path(folder) / "engine.sock"
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, str(socket)).start()
        try:
            yield socket
        finally:
            await runner.cleanup()


async def test_a_streamed_answer_arrives_line_by_line_without_its_heartbeats() -> None:
    async def lines(request: web.Request) -> web.StreamResponse:
        async with NdjsonStream(request, heartbeat_s=0.01) as stream:
            for n in range(3):
                await stream.send({"type": "token", "text": f"t{n}", "asked": (await request.json())["q"]})
                await asyncio.sleep(0.03)  # heartbeats go out meanwhile
        return stream.response

    app = web.Application()
    app.router.add_post("/v1/lines", lines)
    async with unix_app(app) as socket:
        got = [doc async for doc in EngineClient(socket).stream("POST", "/v1/lines", {"q": "hi"})]
    assert got == [{"type": "token", "text": f"t{n}", "asked": "hi"} for n in range(3)]


async def test_a_refusal_a_missing_engine_and_a_broken_stream_are_told_apart(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "no such model"}, status=404)

    async def break_off(request: web.Request) -> web.StreamResponse:
        async with NdjsonStream(request, heartbeat_s=60) as stream:
            await stream.send({"type": "token", "text": "a"})
            await release.wait()
            assert request.transport is not None
            request.transport.close()  # the engine dies mid-answer
        return stream.response

    app = web.Application()
    app.router.add_post("/v1/refuse", refuse)
    app.router.add_post("/v1/break", break_off)
    async with unix_app(app) as socket:
        client = EngineClient(socket)
        with pytest.raises(EngineRequestError, match="no such model") as refused:
            async for _ in client.stream("POST", "/v1/refuse"):
                pass
        assert refused.value.status == 404
        got = []
        with pytest.raises(EngineGone):
            async for document in client.stream("POST", "/v1/break"):
                got.append(document)
                release.set()
        assert got == [{"type": "token", "text": "a"}]
    with pytest.raises(EngineNotRunning):
        async for _ in EngineClient(tmp_path / "none.sock").stream("GET", "/v1/events"):
            pass


async def test_a_silent_engine_is_given_up_on_after_the_read_timeout() -> None:
    done = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await done.wait()
        return response

    app = web.Application()
    app.router.add_get("/v1/silent", silent)
    async with unix_app(app) as socket:
        with pytest.raises(EngineGone):
            async for _ in EngineClient(socket).stream("GET", "/v1/silent", read_timeout_s=0.2):
                pass
        done.set()


async def test_sending_to_a_face_that_left_raises_peer_gone() -> None:
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def talk(request: web.Request) -> web.StreamResponse:
        async with NdjsonStream(request, heartbeat_s=60) as stream:
            try:
                for _ in range(10_000):
                    await stream.send({"type": "token", "text": "x" * 1000})
                    await asyncio.sleep(0.001)
                outcome.set_result("never noticed")
            except PeerGone:
                outcome.set_result("gone")
        return stream.response

    app = web.Application()
    app.router.add_get("/v1/talk", talk)
    async with unix_app(app) as socket:
        async for _ in EngineClient(socket).stream("GET", "/v1/talk"):
            break  # the face leaves after the first line
        assert await asyncio.wait_for(outcome, 10) == "gone"


async def test_a_body_larger_than_one_socket_read_is_read_whole_and_a_bound_holds() -> None:
    from workbench.server.bodies import read_bounded

    sizes: list[int] = []

    async def measure(request: web.Request) -> web.Response:
        sizes.append(len(await read_bounded(request, 2_000_000)))
        sizes.append(len(await read_bounded(request, 10)))  # already read: nothing more
        return web.json_response({})

    async def bounded(request: web.Request) -> web.Response:
        sizes.append(len(await read_bounded(request, 1000)))
        return web.json_response({})

    app = web.Application(client_max_size=4_000_000)
    app.router.add_post("/v1/measure", measure)
    app.router.add_post("/v1/bounded", bounded)
    async with unix_app(app) as socket:
        client = EngineClient(socket)
        await client.call_json("POST", "/v1/measure", {"text": "x" * 1_000_000})
        await client.call_json("POST", "/v1/bounded", {"text": "x" * 1_000_000})
    assert sizes == [1_000_012, 0, 1001]


async def test_a_large_json_body_is_parsed_whole_and_unknown_keys_and_sizes_are_refused() -> None:
    from workbench.server.bodies import BadRequest, read_json_object

    outcomes: list[object] = []

    async def parse(request: web.Request) -> web.Response:
        try:
            document = await read_json_object(request, frozenset({"text"}), 2_000_000)
            outcomes.append(len(document["text"]))
        except BadRequest as exc:
            outcomes.append((exc.status, str(exc)[:30]))
        return web.json_response({})

    app = web.Application(client_max_size=8_000_000)
    app.router.add_post("/v1/parse", parse)
    async with unix_app(app) as socket:
        client = EngineClient(socket)
        await client.call_json("POST", "/v1/parse", {"text": "x" * 1_500_000})  # many socket reads
        await client.call_json("POST", "/v1/parse", {"text": "x", "other": 1})
        await client.call_json("POST", "/v1/parse", {"text": "x" * 3_000_000})
    assert outcomes == [1_500_000, (400, "unknown key(s): 'other' (known"), (413, "the body is larger than 200000")]
