"""The engine owns the download queue (issue 16): the download routes in-process (their validation), and end to end
with `workbench engine` subprocesses against the loopback hub: a kill -9 or a `workbench stop` mid-download, and the
next engine resumes the job from the bytes on disk to a verified file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from tests.support.hub_repos import write_repo
from tests.support.hub_server import LoopbackHub
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.engine_home import engine_home
from workbench.core.hub import cache as hf_cache
from workbench.core.settings.paths import AppPaths
from workbench.engine_process import start_engine
from workbench.server.engine import Engine
from workbench.server.engine_downloads import MAX_BODY_BYTES

ROOT = Path(__file__).resolve().parents[1]
REPO = "test-org/engine-blob"
WEIGHTS = "model.safetensors"
WEIGHTS_DATA = random.Random(16).randbytes(3 * 1024 * 1024)
WEIGHTS_SHA = hashlib.sha256(WEIGHTS_DATA).hexdigest()
THROTTLE_BPS = 384 * 1024  # ~8 s for the weights: time to kill or stop the engine mid-transfer
WAIT_S = 60.0  # every wait in this file is bounded by it


# --- in-process: the routes refuse what they should -------------------------------------------------


async def _post_raw(socket: Path, body: bytes) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://engine/v1/downloads", data=body,
                                headers={"Content-Type": "application/json"}) as response:  # fmt: skip
            return response.status, await response.json()


async def test_the_download_routes_refuse_bad_bodies_with_a_message(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    task = await serving(Engine(services, home), home)
    client = EngineClient(home.socket)
    try:
        refused = {
            b"not json": "not JSON",
            b"[1, 2]": "JSON object",
            b"{}": "'repo' is missing",
            json.dumps({"repo": "org/name", "file": ["a"]}).encode(): "unknown key(s): 'file'",
            json.dumps({"repo": "org/name", "token": "hf x"}).encode(): "'token' must be",
            json.dumps({"repo": "org/name", "endpoint": "file:///x"}).encode(): "'endpoint' must be an http(s) URL",
            json.dumps({"repo": "../../etc"}).encode(): "is not a repo id",
            json.dumps({"repo": 42}).encode(): "is not a repo id",
            json.dumps({"repo": "org/name", "revision": "a..b"}).encode(): "not a valid revision",
            json.dumps({"repo": "org/name", "include": "*.json"}).encode(): "'include' must be",
            json.dumps({"repo": "org/name", "include": []}).encode(): "'include' must be",
            json.dumps({"repo": "org/name", "include": ["a\nb"]}).encode(): "control character",
            json.dumps({"repo": "org/name", "include": ["*"] * 65}).encode(): "more than 64 patterns",
        }
        for body, message in refused.items():
            status, document = await _post_raw(home.socket, body)
            assert status == 400 and message in document["error"], (body, document)
        status, document = await _post_raw(home.socket, json.dumps({"repo": "o/" + "n" * MAX_BODY_BYTES}).encode())
        assert status == 413 and "larger than" in document["error"]

        with pytest.raises(EngineRequestError, match="is not a repo id") as raised:
            await client.queue_download("no/such/repo")
        assert raised.value.status == 400
        assert await client.downloads() == []  # nothing was queued
    finally:
        await client.stop()
        await asyncio.wait_for(task, 10)
    assert await client.downloads() is None and await client.queue_download("org/name") is None  # no engine


# --- end to end: engines as subprocesses against the loopback hub -----------------------------------


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackHub]:
    root = tmp_path_factory.mktemp("engine-hub")
    write_repo(root, REPO, {WEIGHTS: WEIGHTS_DATA, "config.json": json.dumps({"model_type": "llama"})},
               {"library_name": "mlx", "tags": ["mlx"]})  # fmt: skip
    with LoopbackHub(root) as server:
        server.faults.bandwidth_bps = THROTTLE_BPS
        yield server


@pytest.fixture
def paths(tmp_path: Path, hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    """The engines this test starts: their data under tmp_path, the loopback hub as their hub, online."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return AppPaths.from_env()


def _client(paths: AppPaths) -> EngineClient:
    return EngineClient(engine_home(paths).socket)


def _job(paths: AppPaths) -> dict[str, Any] | None:
    jobs = asyncio.run(_client(paths).downloads())
    return jobs[0] if jobs else None


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _weights_ranges(hub: LoopbackHub) -> list[str | None]:
    return [r.headers.get("Range") for r in hub.requests if r.method == "GET" and r.path.endswith(f"/{WEIGHTS}")]


def _repo_folder() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub" / hf_cache.repo_folder_name(REPO)


def _downloading(paths: AppPaths) -> int:
    """Queue the repo on a fresh engine and wait until bytes of it are on their way; the engine's pid."""
    pid = start_engine(paths)["pid"]
    queued = asyncio.run(_client(paths).queue_download(REPO))
    assert queued is not None and queued["repo"] == REPO and queued["state"] in ("queued", "downloading")
    partial = _repo_folder() / "blobs" / f"{WEIGHTS_SHA}.incomplete"
    _wait_for(lambda: partial.exists() and partial.stat().st_size > 0, "bytes of the weights on disk")
    job = _job(paths)
    assert job is not None and job["state"] == "downloading" and 0 < job["done_bytes"] < job["total_bytes"]
    return pid


def _resumes_to_a_verified_file(paths: AppPaths, hub: LoopbackHub) -> None:
    """A new engine resumes the job from the bytes kept on disk (never from 0) to the weights' sha256."""
    pid = start_engine(paths)["pid"]
    try:
        seen: list[int] = []

        def done() -> bool:
            job = _job(paths)
            assert job is not None and job["repo"] == REPO and job["state"] not in ("failed", "cancelled"), job
            seen.append(job["done_bytes"])
            return bool(job["state"] == "done")

        _wait_for(done, "the job to finish")
        assert min(seen) > 0  # the second engine did not start over
        first, resumed = _weights_ranges(hub)
        assert first is None and resumed is not None and resumed.startswith("bytes=") and resumed != "bytes=0-"
        [weights] = list((_repo_folder() / "snapshots").glob(f"*/{WEIGHTS}"))
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == WEIGHTS_SHA
    finally:
        asyncio.run(_client(paths).stop())
        _wait_for(lambda: _gone(pid), "the engine to exit", 20)


def test_a_download_survives_a_kill_9_of_the_engine_and_resumes_from_the_bytes_on_disk(
    paths: AppPaths, hub: LoopbackHub
) -> None:
    pid = _downloading(paths)
    try:
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: _gone(pid), "the killed engine to go", 10)
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    _resumes_to_a_verified_file(paths, hub)


def test_workbench_stop_stops_the_transfer_at_once_and_the_next_engine_resumes_it(
    paths: AppPaths, hub: LoopbackHub
) -> None:
    pid = _downloading(paths)
    try:
        started = time.monotonic()
        stopped = subprocess.run([sys.executable, "-m", "workbench.cli", "stop"], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        assert stopped.returncode == 0 and "engine stopped" in stopped.stdout, stopped.stderr
        _wait_for(lambda: _gone(pid), "the engine to exit", 20)
        assert time.monotonic() - started < 8  # the transfer let go at once (the throttled file needs ~8 s)
        sent = hub.bytes_sent
        time.sleep(0.3)
        assert hub.bytes_sent == sent  # nothing is downloading any more
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    log = (Path(os.environ["WORKBENCH_HOME"]) / "logs" / "engine.log").read_text()
    assert f"engine {pid} stopped (asked to stop)" in log
    _resumes_to_a_verified_file(paths, hub)


async def test_a_job_the_user_paused_stays_paused_when_the_next_engine_starts(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    home = engine_home(paths)
    services, _backend = services_with_fake(paths)
    task = await serving(Engine(services, home), home)
    job = services.downloads.enqueue("org/paused-by-hand")
    services.downloads.pause(job.id)
    await EngineClient(home.socket).stop()
    await asyncio.wait_for(task, 10)

    services, _backend = services_with_fake(paths)
    task = await serving(Engine(services, home), home)
    client = EngineClient(home.socket)
    try:
        assert [(j["id"], j["state"]) for j in await client.downloads() or []] == [(job.id, "paused")]
    finally:
        await client.stop()
        await asyncio.wait_for(task, 10)
