"""The engine runs compare turns (issue 16 points 1 and 3): a RemoteCompareSession against an in-process engine with
two scripted fake models ("model-a", "model-b": each its own backend kind and script). Both sides stream, the run and
its votes are stored by the engine, blind mode shuffles, stop stops, a face that leaves mid-turn does not stop it,
a second ask is refused, and the routes refuse what they should. The session's intents are blocking calls: the tests
make them from a thread (the engine serves on the test's loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import FakeChatBackend, Script, fake_spec, services_with_fake
from workbench.bootstrap import Services
from workbench.client.compare_session import RemoteCompareSession, RemoteCompareTurn
from workbench.client.engine import EngineClient
from workbench.core.chat.run import Finished, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.compare.ratings import blind_order
from workbench.core.compare.run import Contender, MemoryPlan, PlanKind
from workbench.core.compare.session import CompareSession, SideUpdate
from workbench.core.engine_home import EngineHome, engine_home
from workbench.core.models.spec import UnknownModelError
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine

WAIT_S = 30.0  # every wait in this file is bounded by it
WORDS = 100  # a slow answer: 10 ms a word
T = TypeVar("T")
ALPHA = Contender("model-a", "alpha", SamplingSettings(temperature=0.0))
BETA = Contender("model-b", "beta", SamplingSettings(temperature=0.0))


@dataclass
class Rig:
    services: Services
    engine: Engine
    home: EngineHome
    a: FakeChatBackend  # serves "model-a"
    b: FakeChatBackend  # serves "model-b"

    def session(self, seed: int | None = None, session_id: str | None = None) -> RemoteCompareSession:
        return RemoteCompareSession(self.home.socket, session_id=session_id, seed=seed)

    def stored(self) -> Any:
        (run,) = self.services.store.compare_runs.compare_runs()
        return run


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    a = FakeChatBackend(Script(tokens=["Paris ", "is ", "big."]), kind="fake-a")
    b = FakeChatBackend(Script(tokens=["Paris ", "is ", "old."]), kind="fake-b")
    for backend in (a, b):
        services.manager.add_backend(backend)
        services.manager.register(fake_spec(f"model-{backend.kind[-1]}", kind=backend.kind))
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    try:
        yield Rig(services, engine, home, a, b)
    finally:
        for backend in (a, b):  # a held script lets go, so the engine's stop is not kept waiting
            if backend.script.hold is not None:
                backend.script.hold.set()
        engine.request_stop("test over")
        await asyncio.wait_for(task, WAIT_S)


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """A blocking call of the face, from a thread: the engine answers on this loop."""
    return await asyncio.wait_for(asyncio.to_thread(function, *args), WAIT_S)


async def drain(turn: RemoteCompareTurn) -> list[SideUpdate]:
    async def collect() -> list[SideUpdate]:
        return [update async for update in turn.events()]

    return await asyncio.wait_for(collect(), WAIT_S)


async def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def raw(home: EngineHome, method: str, route: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(home.socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, f"http://engine{route}", data=body,
                                   headers={"Content-Type": "application/json"}) as response:  # fmt: skip
            return response.status, await response.json()


def slow(word: str) -> Script:
    return Script(tokens=[f"{word}{i} " for i in range(WORDS)], delay_s=0.01)


# --- a turn --------------------------------------------------------------------------------------------


async def test_a_remote_session_asks_both_sides_stream_and_the_engine_stores_the_run(rig: Rig) -> None:
    hold = threading.Event()
    rig.a.script.hold = hold
    session = rig.session()
    assert (await off_loop(session.plan, ALPHA, BETA)).kind is PlanKind.TOGETHER
    turn = await off_loop(session.ask, "capital?", ALPHA, BETA)
    assert session.running and not turn.blind and not turn.swapped and turn.plan.kind is PlanKind.TOGETHER
    [job] = rig.engine.board.rows()  # the turn is the engine's job, in ps, while it runs
    assert (job["kind"], job["what"], job["face"], job["turn"]) == ("generation", "compare alpha vs beta", "tui",
                                                                    turn.run_id)  # fmt: skip
    stored = rig.stored()
    assert (stored.id, stored.prompt, stored.answer_a, stored.plan) == (turn.run_id, "capital?", "", "together")
    hold.set()
    updates = await drain(turn)
    assert not session.running and not session.awaiting_vote and rig.engine.board.rows() == []
    assert (turn.results["a"].text, turn.results["b"].text) == ("Paris is big.", "Paris is old.")
    last = {update.side: update for update in updates}
    assert isinstance(last["a"].event, Finished) and last["a"].result is turn.results["a"]
    assert turn.results["b"].figures is not None and turn.results["b"].figures.generation_tokens == 3
    stored = rig.stored()
    assert (stored.answer_a, stored.answer_b, stored.error_a, stored.error_b) == ("Paris is big.", "Paris is old.",
                                                                                  None, None)  # fmt: skip
    assert stored.figures_a is not None and stored.figures_a["generation_tokens"] == 3

    await drain(await off_loop(session.ask, "and rome?", ALPHA, BETA))  # the engine keeps both histories
    assert [(m["role"], m["content"]) for m in rig.a.calls[-1]] == [
        ("user", "capital?"), ("assistant", "Paris is big."), ("user", "and rome?")]  # fmt: skip
    assert rig.b.calls[-1][1]["content"] == "Paris is old."
    await off_loop(session.clear)
    await drain(await off_loop(session.ask, "again", ALPHA, BETA))
    assert [m["content"] for m in rig.a.calls[-1]] == ["again"]
    assert len(rig.services.store.compare_runs.compare_runs()) == 3


async def test_one_model_twice_and_one_after_the_other_run_as_in_process(rig: Rig) -> None:
    session = rig.session()
    warm = Contender("model-a", "warm", SamplingSettings(temperature=1.0))
    plan = await off_loop(session.plan, ALPHA, warm)
    assert plan.kind is PlanKind.TOGETHER and "one model" in plan.reason
    await drain(await off_loop(session.ask, "q", ALPHA, warm))
    assert rig.stored().answer_b == "Paris is big."
    sequential = MemoryPlan(PlanKind.SEQUENTIAL, "asked for")  # the face's plan is the one run
    turn = await off_loop(session.ask, "q2", ALPHA, BETA, sequential)
    await drain(turn)
    assert turn.plan == sequential and rig.services.store.compare_runs.compare_runs(limit=1)[0].plan == "sequential"
    assert (turn.results["a"].text, turn.results["b"].text) == ("Paris is big.", "Paris is old.")
    with pytest.raises(UnknownModelError):
        await off_loop(session.plan, ALPHA, Contender("model-z", "zed", SamplingSettings()))


async def test_stop_stops_both_sides_and_what_came_is_stored(rig: Rig) -> None:
    rig.a.script, rig.b.script = slow("a"), slow("b")
    session = rig.session()
    turn = await off_loop(session.ask, "go", ALPHA, BETA)
    seen: list[SideUpdate] = []

    async def follow() -> None:
        async with contextlib.aclosing(turn.events()) as updates:
            async for update in updates:
                seen.append(update)
                if len(seen) == 3:
                    await asyncio.to_thread(session.stop)

    await asyncio.wait_for(follow(), WAIT_S)
    ends = {u.side: u.event for u in seen if isinstance(u.event, Finished)}
    assert ends.keys() == {"a", "b"} and all(end.stopped for end in ends.values())
    stored = rig.stored()
    words = len(stored.answer_a.split()), len(stored.answer_b.split())
    assert sum(words) > 0 and max(words) < WORDS
    assert stored.answer_a == turn.results["a"].text and not session.running and rig.engine.board.rows() == []


# --- blind mode and votes ------------------------------------------------------------------------------


async def test_blind_mode_shuffles_by_the_coin_and_a_vote_reveals_and_is_stored(rig: Rig) -> None:
    seed = next(s for s in range(100) if blind_order(s))  # a seed that shows B first
    session = rig.session(seed)
    await off_loop(session.set_blind, True)
    assert session.blind
    hold = threading.Event()
    rig.a.script.hold = hold
    turn = await off_loop(session.ask, "which?", ALPHA, BETA)
    assert turn.blind and turn.swapped and turn.shown("b") == "a" and not session.awaiting_vote
    assert [row["what"] for row in rig.engine.board.rows()] == ["compare (blind)"]  # ps does not tell the names
    hold.set()
    await drain(turn)
    assert session.awaiting_vote and rig.stored().swapped and rig.stored().blind
    reveal = await off_loop(session.vote, "a")  # the first column: contender B's answer
    assert (reveal.first, reveal.second, reveal.labels) == ("beta", "alpha", {"a": "alpha", "b": "beta"})
    assert rig.services.store.votes.compare_votes() == [("alpha", "beta", "b")]
    assert not session.awaiting_vote
    with pytest.raises(RuntimeError, match="awaits a vote"):
        await off_loop(session.vote, "a")
    status, document = await raw(rig.home, "POST", f"{session.route}/vote", b'{"outcome": "a"}')
    assert status == 409 and "awaits a vote" in document["error"]  # the engine refuses it too
    second = await off_loop(session.ask, "again?", ALPHA, BETA)
    assert second.swapped is blind_order(seed + 1)  # the n-th blind turn uses seed + n, as in-process
    await drain(second)
    assert session.awaiting_vote
    await off_loop(session.set_blind, False)  # blind off drops the pending vote, here and in the engine
    assert not session.awaiting_vote and not session.blind
    status, document = await raw(rig.home, "GET", session.route)
    assert status == 200 and document["awaiting_vote"] is False and document["blind"] is False


# --- detach: the face leaves, the turn goes on --------------------------------------------------------


async def test_a_face_that_leaves_mid_turn_does_not_stop_it_and_the_run_is_stored_complete(rig: Rig) -> None:
    rig.a.script, rig.b.script = slow("a"), slow("b")
    session = rig.session()
    turn = await off_loop(session.ask, "go", ALPHA, BETA)

    async def first_word() -> None:
        async with contextlib.aclosing(turn.events()) as updates:
            async for update in updates:
                if isinstance(update.event, Token):
                    return  # the face goes: its stream closes

    await asyncio.wait_for(first_word(), WAIT_S)
    assert len(rig.engine.board) == 1 and rig.a.emitted < WORDS  # still answering, in the engine
    await until(lambda: len(rig.engine.board) == 0, "the engine to finish the turn")
    stored = rig.stored()
    assert stored.answer_a == "".join(f"a{i} " for i in range(WORDS)) and stored.error_a is None
    assert stored.answer_b == "".join(f"b{i} " for i in range(WORDS)) and stored.figures_b is not None

    lines = [line async for line in EngineClient(rig.home.socket).stream(
        "GET", f"{session.route}/turns/{turn.run_id}/events")]  # fmt: skip
    text = {side: "".join(line["event"]["text"] for line in lines
                          if line.get("side") == side and line["event"]["type"] == "token")
            for side in "ab"}  # fmt: skip
    assert text == {"a": stored.answer_a, "b": stored.answer_b}  # a face that comes back catches up
    assert lines[-1] == {"type": "end", "awaiting_vote": False, "error": None}


async def test_an_engine_that_stops_mid_turn_stores_what_came_and_tells_the_face(rig: Rig) -> None:
    rig.a.script, rig.b.script = slow("a"), slow("b")
    session = rig.session()
    turn = await off_loop(session.ask, "go", ALPHA, BETA)
    seen: list[SideUpdate] = []
    with pytest.raises(RuntimeError) as failed:
        async with contextlib.aclosing(turn.events()) as updates:
            async for update in updates:
                seen.append(update)
                if len(seen) == 4:
                    rig.engine.request_stop("asked to stop")
    assert str(failed.value) == "the engine stopped before the comparison ended"  # its last line says so
    stored = rig.stored()
    assert 0 < len(stored.answer_a.split()) + len(stored.answer_b.split()) < 2 * WORDS
    assert not session.running and not session.awaiting_vote


async def test_a_face_that_comes_late_catches_up_then_follows_live(rig: Rig) -> None:
    hold = threading.Event()
    rig.b.script = Script(tokens=["one ", "two ", "three"], hold=hold)
    session = rig.session()  # one after the other: A answers while B's model waits (one inference thread)
    turn = await off_loop(session.ask, "go", ALPHA, BETA, MemoryPlan(PlanKind.SEQUENTIAL, "asked for"))
    await until(lambda: rig.a.emitted == 3, "side A to answer")
    other = EngineClient(rig.home.socket).stream("GET", f"{session.route}/turns/{turn.run_id}/events")
    first = await asyncio.wait_for(anext(other), WAIT_S)  # side A, from where it is: its text in one piece
    assert first == {"type": "update", "side": "a", "event": {"type": "token", "text": "Paris is big."}}
    hold.set()
    rest = await asyncio.wait_for(_rest(other), WAIT_S)
    assert rest[-1]["type"] == "end"
    assert "".join(line["event"].get("text", "") for line in rest if line.get("side") == "b") == "one two three"
    await drain(turn)


async def _rest(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line async for line in stream]


# --- one turn at a time, and what the routes refuse ---------------------------------------------------


async def test_a_second_ask_is_refused_while_a_turn_runs(rig: Rig) -> None:
    hold = threading.Event()
    rig.a.script.hold = hold
    session = rig.session()
    turn = await off_loop(session.ask, "one", ALPHA, BETA)
    with pytest.raises(RuntimeError, match="still answering"):
        await off_loop(session.ask, "two", ALPHA, BETA)
    other_face = rig.session(session_id=session.session_id)  # the same conversation from a face that did not ask
    with pytest.raises(RuntimeError, match="still answering"):
        await off_loop(other_face.ask, "two", ALPHA, BETA)
    for route, body in (("/ask", {"prompt": "two", "a": ALPHA.to_dict(), "b": BETA.to_dict()}),
                        ("/blind", {"on": True}), ("/clear", {})):  # fmt: skip
        status, document = await raw(rig.home, "POST", session.route + route, json.dumps(body).encode())
        assert status == 409 and "still answering" in document["error"], route
    status, _document = await raw(rig.home, "DELETE", session.route)
    assert status == 409
    hold.set()
    await drain(turn)
    assert len(rig.services.store.compare_runs.compare_runs()) == 1


async def test_the_compare_routes_refuse_bad_requests_with_a_message(rig: Rig) -> None:
    rig.engine.compare.max_body_bytes = 64 * 1024  # a body past 4 MiB would keep the engine's stop waiting for it
    session = rig.session()
    await off_loop(session._create)
    ask = f"{session.route}/ask"
    good = {"prompt": "q", "a": ALPHA.to_dict(), "b": BETA.to_dict()}
    refused: list[tuple[str, str, Any, int, str]] = [
        ("POST", ask, b"not json", 400, "not JSON"),
        ("POST", ask, [1, 2], 400, "JSON object"),
        ("POST", ask, {**good, "token": "x"}, 400, "unknown key(s): 'token'"),
        ("POST", ask, {**good, "prompt": "  "}, 400, "'prompt'"),
        ("POST", ask, {**good, "prompt": 3}, 400, "'prompt'"),
        ("POST", ask, {**good, "face": "A Face!"}, 400, "'face'"),
        ("POST", ask, {**good, "a": "model-a"}, 400, "'a' must be an object"),
        ("POST", ask, {**good, "a": {**ALPHA.to_dict(), "path": "/etc"}}, 400, "'a': unknown key(s): 'path'"),
        ("POST", ask, {**good, "b": {"model_id": ""}}, 400, "'b.model_id'"),
        ("POST", ask, {**good, "a": {"model_id": "model-a", "sampling": {"temperature": -1}}}, 400, "temperature"),
        ("POST", ask, {**good, "a": {"model_id": "model-a", "sampling": {"nope": 1}}}, 400, "nope"),
        ("POST", ask, {**good, "a": {"model_id": "model-z"}}, 404, "no model called 'model-z'"),
        ("POST", ask, {**good, "plan": {"kind": "sideways", "reason": ""}}, 400, "'plan.kind'"),
        ("POST", ask, {**good, "plan": "together"}, 400, "'plan'"),
        ("POST", "/v1/compare/sessions/nobody/ask", good, 404, "no compare session 'nobody'"),
        ("POST", f"{session.route}/vote", {"outcome": "c"}, 400, "'outcome' must be one of"),
        ("POST", f"{session.route}/vote", {"outcome": "a"}, 409, "awaits a vote"),
        ("POST", f"{session.route}/blind", {"on": "yes"}, 400, "'on' must be true or false"),
        ("POST", f"{session.route}/clear", {"all": True}, 400, "unknown key(s): 'all'"),
        ("POST", f"{session.route}/stop", {"now": True}, 400, "unknown key(s): 'now'"),
        ("PUT", "/v1/compare/sessions/seeded", {"seed": "x"}, 400, "'seed'"),
        ("GET", f"{session.route}/turns/7/events", None, 404, "no turn 7"),
        ("POST", "/v1/compare/plan", {"a": ALPHA.to_dict()}, 400, "'b' must be an object"),
        ("POST", ask, {**good, "prompt": "x" * 64 * 1024}, 413, "larger than 65536 bytes"),
    ]
    for method, route, body, status, message in refused:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        got, document = await raw(rig.home, method, route, data)
        assert (got, message in document.get("error", "")) == (status, True), (route, body, document)
    assert rig.services.store.compare_runs.compare_runs() == [] and rig.engine.board.rows() == []


async def test_the_engine_keeps_a_bounded_number_of_sessions(rig: Rig) -> None:
    rig.engine.compare.max_sessions = 2
    for sid in ("one", "two"):
        status, document = await raw(rig.home, "PUT", f"/v1/compare/sessions/{sid}", b"{}")
        assert status == 200 and document["created"] and document["id"] == sid
    status, document = await raw(rig.home, "PUT", "/v1/compare/sessions/one", b"{}")
    assert status == 200 and not document["created"]  # there already; and now the most recently used
    status, _document = await raw(rig.home, "PUT", "/v1/compare/sessions/three", b"{}")
    assert status == 200 and set(rig.engine.compare.sessions) == {"one", "three"}  # "two" was forgotten
    assert (await raw(rig.home, "GET", "/v1/compare/sessions/two"))[0] == 404
    # a face whose session the engine forgot makes it again on its next intent (its histories are gone)
    session = rig.session(session_id="two")
    session._created = True
    await drain(await off_loop(session.ask, "back?", ALPHA, BETA))
    assert rig.stored().answer_a == "Paris is big." and "two" in rig.engine.compare.sessions
    await off_loop(session.close)  # the face lets the engine forget it
    assert "two" not in rig.engine.compare.sessions


def test_the_in_process_services_make_an_in_process_compare_session(tmp_path: Path) -> None:
    services, _backend = services_with_fake(AppPaths.under(tmp_path))
    try:
        session = services.compare_session()
        assert isinstance(session, CompareSession) and session.store is services.store
    finally:
        asyncio.run(services.aclose())
