"""The Compare pane with its compare session in the engine (issue 16): the app's services give a RemoteCompareSession
on an engine serving on its own thread (the pane's intents are blocking calls), the engine runs two scripted models
and keeps the store. Both sides stream into the pane, Esc stops both, a blind vote reveals the names and the engine
stores the run and the vote."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec
from tests.support.waits import wait_for
from workbench.bootstrap import Services, build_services
from workbench.client.compare_session import RemoteCompareSession
from workbench.client.engine import EngineNotRunning, engine_info_sync
from workbench.client.remote_services import RemoteServices
from workbench.core.compare.ratings import blind_order
from workbench.core.engine_home import EngineHome, EngineLock, engine_home
from workbench.core.models.spec import ModelRole
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.compare import ComparePane
from workbench.ui.widgets.chat_input import ChatInput

SIZE = (120, 34)
WAIT = 60  # a bound against hanging, not an expected duration
T = TypeVar("T")


def with_fakes(services: Services, script_a: Script, script_b: Script) -> tuple[FakeChatBackend, FakeChatBackend]:
    a, b = FakeChatBackend(script_a, kind="fake-a"), FakeChatBackend(script_b, kind="fake-b")
    for backend, name in ((a, "alpha"), (b, "beta")):
        services.manager.add_backend(backend)
        services.manager.register(fake_spec(name, kind=backend.kind))
    return a, b


class EngineOnThread:
    """An engine on a thread and loop of its own, its services built there (the store belongs to one thread)."""

    def __init__(self, paths: AppPaths, script_a: Script, script_b: Script) -> None:
        self.paths, self.scripts = paths, (script_a, script_b)
        self.home: EngineHome = engine_home(paths)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.engine: Engine | None = None
        self.backends: tuple[FakeChatBackend, FakeChatBackend] | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="test-engine", daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        services = build_services(self.paths)
        self.backends = with_fakes(services, *self.scripts)
        self.engine = Engine(services, self.home, find_models=False)
        lock = EngineLock(self.home.lock)
        assert lock.try_acquire()
        await self.engine.serve(lock, ready=self.ready.set)

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` on the engine's loop (its store is bound to that thread)."""
        assert self.loop is not None

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def runs(self) -> list[Any]:
        assert self.engine is not None
        store = self.engine.services.store
        return self.call(lambda: store.compare_runs.compare_runs())


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[Callable[[Script, Script], EngineOnThread]]:
    started: list[EngineOnThread] = []

    def start(script_a: Script, script_b: Script) -> EngineOnThread:
        running = EngineOnThread(AppPaths.under(tmp_path / "engine"), script_a, script_b)
        running.thread.start()
        assert running.ready.wait(WAIT), "the engine did not start"
        started.append(running)
        return running

    yield start
    for running in started:
        for script in running.scripts:
            if script.hold is not None:
                script.hold.set()
        if running.loop is not None and running.engine is not None:
            running.loop.call_soon_threadsafe(running.engine.request_stop, "test over")
        running.thread.join(WAIT)
        assert not running.thread.is_alive(), "the engine did not stop"


def face_app(tmp_path: Path, engine: EngineOnThread, seed: int | None = None) -> WorkbenchApp:
    """The app as `workbench` builds it, attached to the engine (its pickers list the engine's models); a ``seed``
    makes the blind coin repeatable."""

    def start() -> dict[str, Any]:
        info = engine_info_sync(engine.home.socket)
        if info is None:
            raise EngineNotRunning("no engine (the test runs it)")
        return info

    services = RemoteServices(engine.paths, start=start)
    if seed is not None:
        services.compare_session = lambda: RemoteCompareSession(engine.home.socket, seed=seed)  # type: ignore[method-assign]
    return WorkbenchApp(services, import_defaults=False)


async def open_compare(app: WorkbenchApp, pilot: Pilot) -> ComparePane:
    await pilot.press("4")
    await wait_for(pilot, lambda: isinstance(app.screen, ComparePane), "the Compare pane")
    pane = app.screen
    assert isinstance(pane, ComparePane)
    await wait_for(pilot, lambda: {"alpha", "beta"} <= set(app.services.manager.ids(ModelRole.CHAT)),
                   "the engine's models", timeout=WAIT)  # fmt: skip
    await pilot.pause()
    pane.query_one("#model-a").value = "alpha"  # type: ignore[attr-defined]
    pane.query_one("#model-b").value = "beta"  # type: ignore[attr-defined]
    await wait_for(pilot, lambda: pane.current_plan() is not None and "both at once" in str(
        pane.query_one("#compare-plan").render()), "the plan for alpha and beta")  # fmt: skip
    pane.query_one(ChatInput).focus()
    return pane


async def turn_over(pilot: Pilot, pane: ComparePane, engine: EngineOnThread, count: int) -> None:
    def over() -> bool:
        running = any(w.group == "compare-run" and not w.is_finished for w in pane.app.workers)
        return pane.run is None and not running

    await wait_for(pilot, over, "the comparison to end in the pane", timeout=WAIT)
    assert len(engine.runs()) == count


async def test_the_pane_streams_a_turn_the_engine_runs_and_stores(
    tmp_path: Path, engine_factory: Callable[[Script, Script], EngineOnThread]
) -> None:
    engine = engine_factory(Script(tokens=["Paris ", "is ", "big."], delay_s=0.02),
                            Script(tokens=["Paris ", "is ", "old."], delay_s=0.02))  # fmt: skip
    app = face_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        assert isinstance(pane.compare, RemoteCompareSession)
        await pilot.press(*"capital?", "enter")
        await turn_over(pilot, pane, engine, 1)
        assert pane.sides.column("a").text == "Paris is big." and pane.sides.column("b").text == "Paris is old."
        assert "tok/s" in str(pane.sides.column("a").query_one(".side-figures").render())
        (run,) = engine.runs()
        assert (run.prompt, run.answer_a, run.answer_b) == ("capital?", "Paris is big.", "Paris is old.")
        assert app.services.store.read_only  # the engine wrote the run; the face reads it
        assert [run.prompt for run in app.services.store.compare_runs.compare_runs()] == ["capital?"]


async def test_escape_stops_both_sides_in_the_engine(
    tmp_path: Path, engine_factory: Callable[[Script, Script], EngineOnThread]
) -> None:
    slow = [f"w{i} " for i in range(300)]
    engine = engine_factory(Script(tokens=slow, delay_s=0.02), Script(tokens=slow, delay_s=0.02))
    app = face_app(tmp_path, engine)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"go", "enter")
        await wait_for(pilot, lambda: pane.sides.column("a").text and pane.sides.column("b").text, "words")
        await pilot.press("escape")
        await turn_over(pilot, pane, engine, 1)
        assert engine.backends is not None and all(backend.emitted < 300 for backend in engine.backends)
        assert "stopped" in str(pane.sides.column("a").query_one(".side-figures").render())


async def test_a_blind_vote_in_the_pane_is_stored_by_the_engine(
    tmp_path: Path, engine_factory: Callable[[Script, Script], EngineOnThread]
) -> None:
    seed = next(s for s in range(100) if blind_order(s))  # B shows first
    engine = engine_factory(Script(tokens=["from ", "alpha"]), Script(tokens=["from ", "beta"]))
    app = face_app(tmp_path, engine, seed=seed)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        pane.sides.focus()
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.blind, "blind mode")
        pane.query_one(ChatInput).focus()
        await pilot.press(*"which?", "enter")
        await turn_over(pilot, pane, engine, 1)
        assert pane.swapped and pane.sides.column("a").text == "from beta"  # the first column is B's answer
        assert pane.awaiting_vote
        await pilot.press("1")
        await wait_for(pilot, lambda: not pane.awaiting_vote, "the vote")
        assert engine.engine is not None
        votes = engine.engine.services.store.votes
        [(label_a, label_b, outcome)] = engine.call(lambda: votes.compare_votes())
        assert (label_a.split()[0], label_b.split()[0], outcome) == ("alpha", "beta", "b")
