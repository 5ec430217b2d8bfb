"""The TUI as a face of the engine (issue 16, points 1, 3, 7, 8): the app on RemoteServices, attached to a REAL
engine served in the test's loop on its temporary socket (the real services with the scripted chat model): the
Models view shows the engine's models and loads through it, the memory strip shows the engine's samples, a download
queued in the engine shows in the Downloads pane, two apps see the same state live, and a stopped engine is said so
and not started again until the person asks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from tests.support.hub_repos import write_repo
from tests.support.hub_server import LoopbackHub
from tests.support.waits import wait_for
from workbench.client.engine import EngineClient, EngineNotRunning, engine_info_sync
from workbench.client.link import LinkState
from workbench.client.remote_services import RemoteServices
from workbench.core.engine_home import engine_home
from workbench.core.hub.downloads.jobs import JobState
from workbench.core.models.spec import ModelState
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.memory_strip import MemoryStrip

WAIT_S = 30.0
SIZE = (80, 24)


class Engines:
    """In-process engines on one data folder's socket, one after another; ``start`` is the faces' starter: it finds
    the running one and never starts one itself (counted, so a test sees a face that tried)."""

    def __init__(self, paths: AppPaths, cache: Path | None = None, hub_url: str | None = None) -> None:
        self.paths = paths
        self.home = engine_home(paths)
        self.cache = cache
        self.hub_url = hub_url
        self.engine: Engine | None = None
        self.task: asyncio.Task[str] | None = None
        self.starts = 0

    async def up(self) -> Engine:
        services, _backend = services_with_fake(self.paths)
        if self.cache is not None:
            from workbench.core.hub.downloads.queue import DownloadManager

            cache, url = self.cache, self.hub_url
            services.hf_cache = cache  # where the engine looks for models after a download
            services.downloads_factory = lambda: DownloadManager(services.store, cache_dir=cache, endpoint=url,
                                                                 chunk_size=16 * 1024, min_free_bytes=0)  # fmt: skip
        self.engine = Engine(services, self.home)
        self.task = await serving(self.engine, self.home)
        return self.engine

    def start(self) -> dict[str, Any]:
        self.starts += 1
        info = engine_info_sync(self.home.socket)
        if info is None:
            raise EngineNotRunning("no engine (the test starts them)")
        return info

    def face(self, import_defaults: bool = False) -> WorkbenchApp:
        services = RemoteServices(self.paths, start=self.start, hf_cache_dir=self.cache)
        return WorkbenchApp(services, import_defaults=import_defaults)

    async def down(self) -> None:
        if self.task is not None and not self.task.done():
            await EngineClient(self.home.socket).stop()
            await asyncio.wait_for(self.task, WAIT_S)


@contextlib.asynccontextmanager
async def engines(paths: AppPaths, cache: Path | None = None, hub_url: str | None = None) -> AsyncIterator[Engines]:
    running = Engines(paths, cache, hub_url)
    await running.up()
    try:
        yield running
    finally:
        await running.down()


def attached(app: WorkbenchApp) -> bool:
    return app.engine_face is not None and app.engine_face.state == LinkState.ATTACHED


def cell(app: WorkbenchApp, row: str, column: str) -> str:
    table = app.screen.query_one(DataTable)
    return str(table.get_cell(row, column))


def rows(app: WorkbenchApp) -> list[str]:
    table = app.screen.query_one(DataTable)
    return [str(row.value) for row in table.rows]


async def select(pilot: Any, app: WorkbenchApp, key: str) -> None:
    table = app.screen.query_one(DataTable)
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


def notes(app: WorkbenchApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def strip_text(app: WorkbenchApp) -> str:
    return str(app.screen.query_one(MemoryStrip).render())


async def test_the_models_view_shows_the_engine_s_models_and_l_loads_through_it(app_paths: AppPaths) -> None:
    async with engines(app_paths) as running:
        engine = running.engine
        assert engine is not None
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            assert app.services.attached and engine.clients == 1
            await pilot.press("6")
            await wait_for(pilot, lambda: "fake-chat" in rows(app), "the engine's model in the view")
            assert [info.spec.id for info in app.services.manager.models()] == rows(app)  # the engine's list
            assert rows(app) == [info.spec.id for info in engine.services.manager.models()]
            assert cell(app, "fake-chat", "State") == "unloaded"
            await select(pilot, app, "fake-chat")
            await pilot.press("l")
            await wait_for(pilot, lambda: engine.services.manager.info("fake-chat").state is ModelState.READY,
                           "the engine to load the model", WAIT_S)  # fmt: skip
            await wait_for(pilot, lambda: cell(app, "fake-chat", "State") == "ready", "the view to show it ready")
            assert app.services.manager.info("fake-chat").state is ModelState.READY
            await wait_for(pilot, lambda: "fake-chat" in strip_text(app), "the strip to name the loaded model")
            await pilot.press("u")
            await wait_for(pilot, lambda: engine.services.manager.info("fake-chat").state is ModelState.UNLOADED,
                           "the engine to unload it")  # fmt: skip
            await wait_for(pilot, lambda: cell(app, "fake-chat", "State") == "unloaded", "the view to follow")


async def test_the_memory_strip_shows_the_engine_s_samples(app_paths: AppPaths) -> None:
    async with engines(app_paths) as running:
        engine = running.engine
        assert engine is not None
        engine.publisher.memory_every_s = 0.05
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            services = app.services
            assert isinstance(services, RemoteServices)
            await wait_for(pilot, lambda: engine.publisher.samples >= 3, "three samples from the engine", WAIT_S)
            await wait_for(pilot, lambda: app.memory_snapshot is not None and app.memory_snapshot.system_total > 0,
                           "the app to show a sample")  # fmt: skip
            app.sample_memory()  # what the app does each second: nothing awaited between this and the check
            # the engine's sample, not one the app took (equal, not the same object: a reactive keeps the old value
            # when the new one is equal)
            assert app.memory_snapshot == services.probe.latest
            assert "RAM " in strip_text(app) and "budget 0/" in strip_text(app)
            budget = engine.services.manager.budget.bytes
            assert services.manager.budget.bytes == budget  # the engine's budget, from its models document


REPO = "test-org/attach-blob"
WEIGHTS = random.Random(3).randbytes(1024 * 1024)


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # to 127.0.0.1 only
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = tmp_path_factory.mktemp("attach-hub")
    write_repo(root, REPO, {"model.safetensors": WEIGHTS, "config.json": json.dumps({"model_type": "llama"})},
               {"library_name": "mlx", "tags": ["mlx"]})  # fmt: skip
    with LoopbackHub(root) as server:
        server.faults.bandwidth_bps = 512 * 1024  # ~2 s: progress shows on the way
        yield server


async def test_a_download_queued_in_the_engine_shows_in_the_downloads_pane_of_two_apps(
    tmp_path: Path, hub: LoopbackHub
) -> None:
    paths = AppPaths.under(tmp_path / "home")
    async with engines(paths, tmp_path / "hf", hub.url) as running:
        first, second = running.face(), running.face()
        async with first.run_test(size=SIZE) as one, second.run_test(size=SIZE) as two:
            for pilot, app in ((one, first), (two, second)):
                await wait_for(pilot, lambda app=app: attached(app), "both apps to attach", WAIT_S)
                await pilot.press("2")
            queued = await EngineClient(running.home.socket).queue_download(REPO)  # as `workbench pull` does
            assert queued is not None

            def progress(app: WorkbenchApp) -> str:
                table = app.screen.query_one(DataTable)
                return str(table.get_cell(str(queued["id"]), "progress")) if table.row_count else ""

            for pilot, app in ((one, first), (two, second)):
                await wait_for(pilot, lambda app=app: "█" in progress(app) and "░" in progress(app),
                               "the bar to move part way", WAIT_S)  # fmt: skip
                assert cell(app, str(queued["id"]), "state") == "downloading"
            await wait_for(one, lambda: cell(first, str(queued["id"]), "state") == "done", "the download to end",
                           WAIT_S)  # fmt: skip
            await wait_for(two, lambda: cell(second, str(queued["id"]), "state") == "done", "the second to see it")
            assert first.services.downloads.in_cache(queued["id"])  # read here, from the files the engine wrote

            await one.press("6")  # the engine found the new model: both apps list it
            await two.press("6")
            for pilot, app in ((one, first), (two, second)):
                await wait_for(pilot, lambda app=app: REPO in [i.spec.id for i in app.services.manager.models()],
                               "the downloaded model to be listed", WAIT_S)  # fmt: skip
            await wait_for(one, lambda: REPO in rows(first), "the first app's view to list it")
            await select(one, first, "fake-chat")
            await one.press("l")  # loads through the engine from the first app…
            await wait_for(two, lambda: second.services.manager.info("fake-chat").state is ModelState.READY,
                           "…and the second app sees it ready", WAIT_S)  # fmt: skip
            await wait_for(two, lambda: cell(second, "fake-chat", "State") == "ready", "in its Models view too")


async def test_a_download_queued_from_the_catalog_goes_to_the_engine(tmp_path: Path, hub: LoopbackHub) -> None:
    paths = AppPaths.under(tmp_path / "home")
    async with engines(paths, tmp_path / "hf", hub.url) as running:
        engine = running.engine
        assert engine is not None
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            task = app.services.downloads.enqueue(REPO)
            job = await asyncio.wait_for(task, WAIT_S)  # type: ignore[arg-type]
            assert job.repo_id == REPO and [j.repo_id for j in engine.services.downloads.jobs()] == [REPO]
            await wait_for(pilot, lambda: [j.state for j in app.services.downloads.jobs()] == [JobState.DONE],
                           "the mirror to see it done", WAIT_S)  # fmt: skip
            await pilot.press("2")
            await wait_for(pilot, lambda: cell(app, str(job.id), "state") == "done", "the pane to show it")
            await pilot.press("x")  # clear finished: through the engine
            await wait_for(pilot, lambda: engine.services.downloads.jobs() == [], "the engine to forget it")
            await wait_for(pilot, lambda: app.services.downloads.jobs() == [], "the mirror to follow")


async def test_stop_says_engine_stopped_and_nothing_restarts_it_until_asked(app_paths: AppPaths) -> None:
    async with engines(app_paths) as running:
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            starts = running.starts
            assert await EngineClient(running.home.socket).stop() is not None  # `workbench stop`
            await wait_for(pilot, lambda: app.engine_face is not None and app.engine_face.state == "stopped",
                           "the app to hear the engine stopped", WAIT_S)  # fmt: skip
            await wait_for(pilot, lambda: "Engine stopped (asked to stop)" in notes(app), "the notification")
            assert running.task is not None
            await asyncio.wait_for(running.task, WAIT_S)
            assert "engine stopped" in strip_text(app)
            for _ in range(10):  # a negative check: a face that restarts would have tried by now (it retries at 0.1 s)
                await pilot.pause(0.05)
            assert running.starts == starts and app.engine_face.state == "stopped"
            commands = [command.title for command in app.get_system_commands(app.screen)]
            assert "Start the engine" in commands

            await running.up()  # the person asks: the palette's command
            app.engine_face.start_again()
            await wait_for(pilot, lambda: attached(app), "the app to attach to the new engine", WAIT_S)
            await wait_for(pilot, lambda: "Attached to a new engine." in notes(app), "the notification")
            assert running.engine is not None and running.engine.clients == 1


async def test_q_quits_at_once_while_the_engine_downloads_and_says_it_goes_on(tmp_path: Path,
                                                                              hub: LoopbackHub) -> None:  # fmt: skip
    paths = AppPaths.under(tmp_path / "home")
    hub.faults.bandwidth_bps = 64 * 1024  # ~16 s: still running when the app quits
    async with engines(paths, tmp_path / "hf", hub.url) as running:
        engine = running.engine
        assert engine is not None
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            queued = await EngineClient(running.home.socket).queue_download(REPO)
            assert queued is not None
            await wait_for(pilot, lambda: [j.state for j in app.services.downloads.jobs()] == [JobState.DOWNLOADING],
                           "the download to run", WAIT_S)  # fmt: skip
            assert app.work_running() == []  # the engine's work does not stop with the app: no question
            assert app.engine_face is not None
            assert "1 download in progress go on in the engine" in app.engine_face.exit_note()
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to quit", WAIT_S)
        await asyncio.sleep(0.2)
        assert engine.clients == 0
        assert [j.state for j in engine.services.downloads.jobs()] == [JobState.DOWNLOADING]  # it goes on


async def test_the_history_renames_and_deletes_through_the_engine(app_paths: AppPaths) -> None:
    """On an engine on its own thread: the Chat pane under the history makes blocking calls to it."""
    from tests.support.engines import engine_thread
    from workbench.ui.screens.chat_history import HistoryScreen
    from workbench.ui.screens.dialogs import ConfirmScreen, PromptScreen

    home = engine_home(app_paths)
    with engine_thread(lambda: services_with_fake(app_paths), home) as running:

        def engine_chats() -> Any:
            return running.services.store.chats  # the engine's own (read-write) store, used on its thread

        def first_chat() -> int:
            conversation = engine_chats().create_conversation("alpha", model_id="fake-chat")
            engine_chats().add_message(conversation.id, "user", "hello")
            return conversation.id

        first = running.call(first_chat)
        app = WorkbenchApp(RemoteServices(app_paths, start=lambda: engine_info_sync(home.socket) or {}),
                           import_defaults=False)  # fmt: skip
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            await pilot.press("3", "ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), "the history")
            screen = app.screen
            assert isinstance(screen, HistoryScreen)
            await wait_for(pilot, lambda: [c.title for c in screen.rows] == ["alpha"], "the engine's chat")
            await pilot.press("down", "r")
            await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the rename dialog")
            await pilot.press("ctrl+u", *"beta", "enter")
            await wait_for(pilot, lambda: [c.title for c in screen.rows] == ["beta"], "the new title", WAIT_S)
            renamed = running.call(lambda: engine_chats().get_conversation(first))
            assert renamed is not None and renamed.title == "beta"  # written by the engine
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("y")
            await wait_for(pilot, lambda: screen.rows == [], "the chat to go", WAIT_S)
            assert running.call(lambda: engine_chats().get_conversation(first)) is None
            assert "Deleted “beta”." in notes(app)


async def test_an_engine_running_other_code_is_named_and_restarted_on_request(
    app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbench.client.link as link_module

    monkeypatch.setattr(link_module, "same_code", lambda info: False)  # the engine or this face changed since
    async with engines(app_paths) as running:
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            await wait_for(pilot, lambda: "The engine runs other code than this workbench" in notes(app),
                           "the app to say so")  # fmt: skip
            assert "Restart the engine" in [command.title for command in app.get_system_commands(app.screen)]
            assert app.engine_face is not None
            old = running.task
            app.engine_face.restart()  # the palette's command (no download runs: no question)
            assert old is not None
            assert await asyncio.wait_for(old, WAIT_S) == "asked to stop"  # stopped…
            await running.up()  # …and, as start_engine would, a new one answers
            await wait_for(pilot, lambda: attached(app) and running.engine is not None and running.engine.clients == 1,
                           "the app to attach to the new engine", WAIT_S)  # fmt: skip
            assert "Engine stopped" not in notes(app)  # a restart asked for is not news
            assert "Attached to a new engine." in notes(app)


async def test_a_download_action_the_engine_refuses_is_said(app_paths: AppPaths) -> None:
    """Until the engine's per-job routes land (pause, resume, cancel, retry, move), an action it cannot take is
    said in words; once they do, the same path carries their refusals."""
    from workbench.core.hub.downloads.jobs import JobState as State
    from workbench.core.wire import job_to_wire

    async with engines(app_paths) as running:
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            services = app.services
            assert isinstance(services, RemoteServices)
            from workbench.client.remote_services import placeholder_job

            job = placeholder_job(7, "org/none", "main", State.QUEUED)
            services.downloads.apply({"jobs": [job_to_wire(job)]})  # as a downloads event would
            services.downloads.move(7, -1)
            await wait_for(pilot, lambda: "The engine did not move job 7" in notes(app), "the refusal in words")


async def test_serve_and_the_tui_share_one_loaded_model(app_paths: AppPaths) -> None:
    """A model the TUI loaded answers the engine's OpenAI API with no second load; ps lists it once."""
    import aiohttp

    async with engines(app_paths) as running:
        engine = running.engine
        assert engine is not None
        backend = engine.services.manager.backend_for("fake-chat")
        loads: list[str] = []
        real_load = backend.load
        backend.load = lambda spec: (loads.append(spec.id), real_load(spec))[1]  # type: ignore[method-assign]
        app = running.face()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: attached(app), "the app to attach", WAIT_S)
            await pilot.press("6")
            await wait_for(pilot, lambda: "fake-chat" in rows(app), "the engine's model in the view")
            await select(pilot, app, "fake-chat")
            await pilot.press("l")
            await wait_for(pilot, lambda: cell(app, "fake-chat", "State") == "ready", "the TUI's load")
            client = EngineClient(running.home.socket)
            listener = await client.open_listener("127.0.0.1", 0, keep=True)
            assert listener is not None
            body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{listener['url']}/chat/completions", json=body) as response:
                    assert response.status == 200
                    answer = await response.json()
            assert answer["choices"][0]["message"]["content"] == "Hello there!"
            assert loads == ["fake-chat"]  # the API used the model the TUI loaded
            ps = await client.ps()
            assert ps is not None and [model["id"] for model in ps["models"]] == ["fake-chat"]
            await client.close_listener(listener["id"])
