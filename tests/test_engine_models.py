"""The engine's model routes and a face's mirror of them (RemoteModels), in-process against the real services with a
scripted backend: the mirror shows what the engine's manager holds, and load / unload / pin act on the engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from workbench.client.engine import EngineClient
from workbench.client.remote_models import RemoteModels
from workbench.core.engine_home import engine_home
from workbench.core.models.lifecycle import ManagerEvent
from workbench.core.models.spec import ModelManagerError, ModelRole, ModelState, UnknownModelError
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine
from workbench.server.engine_models import models_document


@contextlib.asynccontextmanager
async def engine_and_mirror(tmp_path: Path) -> AsyncIterator[tuple[Any, RemoteModels, Path]]:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    engine = Engine(services, home)
    task = await serving(engine, home)
    # the engine registers what the Hugging Face cache holds in a thread once it serves: a model another test left
    # there would otherwise appear in the manager between the mirror's refresh and the comparison
    await engine.startup.scanned(after=0, timeout_s=30)
    mirror = RemoteModels(EngineClient(home.socket))
    try:
        yield services, mirror, home.socket
    finally:
        engine.request_stop()
        await asyncio.wait_for(task, 30)


async def test_the_mirror_shows_what_the_engine_s_manager_holds(tmp_path: Path) -> None:
    async with engine_and_mirror(tmp_path) as (services, mirror, _):
        await mirror.refresh()
        manager = services.manager
        assert mirror.models() == manager.models()
        assert mirror.info("fake-chat") == manager.info("fake-chat")
        assert mirror.ids(ModelRole.CHAT) == manager.ids(ModelRole.CHAT)
        assert mirror.budget == manager.budget and mirror.context_length == manager.context_length
        with pytest.raises(UnknownModelError):
            mirror.info("nope")


async def test_load_unload_and_pin_act_on_the_engine_and_listeners_hear_of_it(tmp_path: Path) -> None:
    async with engine_and_mirror(tmp_path) as (services, mirror, _):
        await mirror.refresh()
        heard: list[ManagerEvent] = []
        mirror.subscribe(heard.append)
        info = await mirror.load("fake-chat")
        assert info.state is ModelState.READY and services.manager.info("fake-chat").state is ModelState.READY
        assert heard[-1].model == info and mirror.info("fake-chat") == info

        pinned = await mirror.set_pinned("fake-chat", True)
        assert pinned.pinned and services.manager.info("fake-chat").pinned
        await mirror.set_pinned("fake-chat", False)
        await mirror.unload("fake-chat")
        assert services.manager.info("fake-chat").state is ModelState.UNLOADED
        assert mirror.info("fake-chat").state is ModelState.UNLOADED

        mirror.apply(models_document(services.manager))  # what the event stream carries
        assert mirror.held_bytes() == services.manager.held_bytes()

        with pytest.raises(UnknownModelError, match="no model called 'ghost'"):
            await mirror.load("ghost")


async def test_a_refusal_comes_back_as_the_manager_s_error(tmp_path: Path) -> None:
    async with engine_and_mirror(tmp_path) as (services, mirror, _):
        await mirror.refresh()
        lease = await services.manager.acquire("fake-chat", holder="a test")
        with pytest.raises(ModelManagerError, match="in use"):
            await mirror.unload("fake-chat")
        await lease.release()


async def test_a_model_that_went_away_is_heard_of(tmp_path: Path) -> None:
    async with engine_and_mirror(tmp_path) as (services, mirror, _):
        await mirror.refresh()
        heard: list[ManagerEvent] = []
        mirror.subscribe(heard.append)
        await services.manager.unregister("fake-chat")
        mirror.apply(models_document(services.manager))
        assert "fake-chat" not in {info.spec.id for info in mirror.models()}
        assert (heard[-1].model.spec.id, heard[-1].message) == ("fake-chat", "removed")


@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400),
    (b"[]", 400),
    (b'{"model": 3}', 400),
    (b'{"model": "fake-chat", "extra": 1}', 400),
    (b'{"model": "' + b"x" * 600 + b'"}', 400),
    (b'{"model": "fake-chat", "pinned": "yes"}', 400),
    (b'{"model": "' + b"x" * 5000 + b'"}', 413),
    (b'{"model": "ghost"}', 404),
])  # fmt: skip
async def test_bad_requests_are_refused_with_a_reason(tmp_path: Path, body: bytes, status: int) -> None:
    async with engine_and_mirror(tmp_path) as (_, _, socket):
        connector = aiohttp.UnixConnector(path=str(socket))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post("http://engine/v1/models/pin", data=body) as response:
                assert response.status == status
                assert (await response.json())["error"]


async def test_the_engine_finds_the_cached_models_at_start_and_after_a_download(tmp_path: Path) -> None:
    from tests.support.hf_cache import add_snapshot, folder_files
    from tests.support.tiny_models import make_tiny_llama
    from workbench.core.hub.downloads.jobs import JobSnapshot, JobState

    paths = AppPaths.under(tmp_path / "home")
    cache = tmp_path / "hf-cache"
    llama = folder_files(make_tiny_llama(tmp_path / "tiny"))
    add_snapshot(cache, "org/first", llama, "a" * 40)
    services, _backend = services_with_fake(paths)
    services.hf_cache = cache
    home = engine_home(paths)
    engine = Engine(services, home)
    task = await serving(engine, home)
    try:
        assert engine.startup is not None
        await engine.startup.scanned(after=0, timeout_s=30)
        ids = {info.spec.id for info in services.manager.models()}
        assert any("org/first" in model_id for model_id in ids), ids

        add_snapshot(cache, "org/second", llama, "b" * 40)  # as a finished download leaves it
        done = JobSnapshot(1, "org/second", "main", JobState.DONE, 0, [], [], True, "b" * 40, None, None, [], 0,
                           None, 0.0, None, 0.0, 0.0)  # fmt: skip
        engine.startup._on_download(done)
        await engine.startup.scanned(after=1, timeout_s=30)
        assert any("org/second" in info.spec.id for info in services.manager.models())
    finally:
        engine.request_stop()
        await asyncio.wait_for(task, 30)
