"""The TUI attached to a real `workbench engine` process (issue 16, points 7 and 8): the app (in-process, on
RemoteServices) starts the engine when none runs; kill -9 the engine and the app says so, starts a new one and is
attached again within 5 s. And the engine's cache routes a face's cache view uses (workbench/server/engine_cache.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import fake_spec, services_with_fake
from tests.support.hf_cache import add_snapshot
from tests.support.waits import wait_for
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.client.link import LinkState
from workbench.client.remote_services import RemoteRegistry, RemoteServices
from workbench.core.engine_home import engine_home
from workbench.core.models.spec import ModelManagerError
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine
from workbench.ui.app import WorkbenchApp

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 30.0
REATTACH_S = 5.0  # the bound: killed -9 → a new engine, attached


def engine_pid(app: WorkbenchApp) -> int | None:
    face = app.engine_face
    if face is None or face.status is None or face.status.state is not LinkState.ATTACHED:
        return None
    pid = (face.status.engine or {}).get("pid")
    return pid if isinstance(pid, int) else None


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_killed_engine_is_replaced_and_the_app_reattached_within_5_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    paths = AppPaths.from_env()
    app = WorkbenchApp(RemoteServices(paths), import_defaults=False)
    client = EngineClient(engine_home(paths).socket)
    pids: list[int] = []
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: engine_pid(app) is not None, "the app to start an engine and attach", WAIT_S)
            first = engine_pid(app)
            assert first is not None and first != os.getpid()
            pids.append(first)
            ps = await client.ps()
            assert ps is not None and [face["name"] for face in ps["faces"]] == ["tui"]  # `workbench ps` shows it

            os.kill(first, signal.SIGKILL)
            killed = time.monotonic()
            await wait_for(pilot, lambda: (pid := engine_pid(app)) is not None and pid != first,
                           "a new engine, attached", REATTACH_S)  # fmt: skip
            took = time.monotonic() - killed
            second = engine_pid(app)
            assert second is not None
            pids.append(second)
            assert gone(first) and not gone(second)
            assert "Engine lost: starting a new one." in "\n".join(str(n.message) for n in app._notifications)
            await wait_for(pilot, lambda: "Attached to a new engine." in "\n".join(
                str(n.message) for n in app._notifications), "the app to say it is attached again")  # fmt: skip
            assert took <= REATTACH_S
            assert app.services.manager.models()  # the new engine's models arrived
    finally:
        if await client.stop() is not None:
            await client.wait_gone(WAIT_S)
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


# --- the cache routes ----------------------------------------------------------------------------------------

COMMIT = "a" * 40
OLDER = "b" * 40
FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"\0" * 64}


async def test_a_face_deletes_from_the_cache_through_the_engine_which_refuses_while_a_model_is_used(
    tmp_path: Path,
) -> None:
    paths = AppPaths.under(tmp_path / "home")
    cache = tmp_path / "hf"
    add_snapshot(cache, "org/kept", FILES, OLDER)
    snapshot = add_snapshot(cache, "org/gone", FILES, COMMIT)
    services, _backend = services_with_fake(paths)
    services.hf_cache = cache
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    spec = fake_spec("org/gone")
    services.manager.register(type(spec)(spec.id, spec.name, spec.kind, snapshot))  # its files are the repo's
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    registry = RemoteRegistry(paths, lambda: cache, client)
    try:
        assert {r.repo_id for r in registry.cache_contents().repos} == {"org/kept", "org/gone"}  # read here
        lease = await services.manager.acquire("org/gone")
        with pytest.raises(ModelManagerError):
            await registry.delete_repo("org/gone")  # in use in the engine: refused, in the manager's words
        assert snapshot.exists()
        await lease.release()
        freed = await registry.delete_repo("org/gone")
        assert freed > 0 and not snapshot.exists()
        assert "org/gone" not in [info.spec.id for info in services.manager.models()]  # unregistered first
        await registry.delete_revision("org/kept", OLDER)
        assert {r.repo_id for r in registry.cache_contents().repos} == set()
    finally:
        await client.stop()
        await asyncio.wait_for(task, WAIT_S)


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("/v1/cache/delete", {}, "'repo' is missing"),
        ("/v1/cache/delete", {"repo": "org/x", "what": 1}, "unknown key(s): 'what'"),
        ("/v1/cache/delete", {"repo": "../x"}, ""),
        ("/v1/cache/delete", {"repo": "org/x", "revision": "main"}, "commit hash"),
        ("/v1/cache/clean-partials", {"all": True}, "unknown key(s): 'all'"),
        ("/v1/downloads/forget-finished", {"x": 1}, "unknown key(s): 'x'"),
    ],
)
async def test_the_cache_routes_refuse_a_bad_body_with_400(tmp_path: Path, route: str, body: dict[str, Any],
                                                            message: str) -> None:  # fmt: skip
    paths = AppPaths.under(tmp_path / "home")
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    try:
        with pytest.raises(EngineRequestError) as refused:
            await client.call_json("POST", route, body)
        assert refused.value.status == 400 and message in str(refused.value)
    finally:
        await client.stop()
        await asyncio.wait_for(task, WAIT_S)
