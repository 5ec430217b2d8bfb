"""The default chat model's first-start import, run by the engine once for every face: a face asks, every face
sees the same progress on the event stream, asking again changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.engines import serving
from tests.support.fake_chat import fake_spec, services_with_fake
from workbench.client.engine import EngineClient
from workbench.client.remote_import import RemoteImport
from workbench.core.engine_home import engine_home
from workbench.core.models.spec import ModelSpec
from workbench.core.models.wait import DefaultModelImport, ImportState, Progress
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine


async def test_a_face_starts_the_import_once_and_sees_its_progress(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    release = asyncio.Event()
    runs = 0

    async def importer(progress: Progress) -> ModelSpec:
        nonlocal runs
        runs += 1
        progress("converting", 0.5)
        await asyncio.wait_for(release.wait(), 30)
        return fake_spec()

    services.default_import = DefaultModelImport(importer, "Fake")
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    seen = engine.events.subscribe(frozenset({"import"}))
    face = RemoteImport(EngineClient(home.socket))
    states: list[ImportState] = []
    face.subscribe(lambda status: states.append(status.state))

    async def follow() -> None:
        while (event := await seen.next()) is not None:
            face.apply(event.payload)

    following = asyncio.create_task(follow())
    try:
        await face.start()
        await face.start()  # a second face asking changes nothing
        async with asyncio.timeout(30):
            while face.status.fraction < 0.5:
                await asyncio.sleep(0.01)
        assert face.status.state is ImportState.RUNNING and face.status.stage == "converting"
        assert face.describe() == "importing Fake · 50 %"
        release.set()
        await face.wait(timeout_s=30)
        assert face.status.state is ImportState.DONE and runs == 1
        assert states[-1] is ImportState.DONE and ImportState.RUNNING in states
    finally:
        following.cancel()
        engine.request_stop()
        await asyncio.wait_for(task, 30)


async def test_nothing_is_imported_when_the_default_model_is_there(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.server.engine_import as engine_import

    monkeypatch.setattr(engine_import, "default_chat_missing", lambda paths: False)
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    try:
        face = RemoteImport(EngineClient(home.socket))
        await face.start()
        assert face.status.state is ImportState.IDLE and not face.status.coming
    finally:
        engine.request_stop()
        await asyncio.wait_for(task, 30)
