"""Engines that faces (`workbench pull`, ...) start as subprocesses in end-to-end tests: the faces' environment, the
engine's socket for it, and the stop every test owes at its end (bounded; kill -9 when it does not go)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil

from workbench.client.engine import EngineClient, engine_info_sync
from workbench.core.engine_home import engine_home
from workbench.core.settings.paths import AppPaths

ROOT = Path(__file__).resolve().parents[2]
STOP_WAIT_S = 20.0


def face_env(tmp_path: Path, hub_url: str, **extra: str) -> dict[str, str]:
    """A face's environment: its data under ``tmp_path`` (home, HF cache), the loopback hub, online, no token."""
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": hub_url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_CACHE", None)
    env.update(extra)
    return env


def engine_socket(env: dict[str, str]) -> Path:
    return engine_home(AppPaths.under(Path(env["WORKBENCH_HOME"]))).socket


def engine_pid(env: dict[str, str]) -> int | None:
    """The pid of the engine answering for this environment's data folder; None when none answers."""
    info = engine_info_sync(engine_socket(env))
    return None if info is None else int(info["pid"])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not gone(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_engine(env: dict[str, str], timeout_s: float = STOP_WAIT_S) -> None:
    """Stop the engine of this environment, if one answers: asked first, killed when it does not go in time."""
    pid = engine_pid(env)
    if pid is None:
        return
    asyncio.run(EngineClient(engine_socket(env)).stop())
    if not wait_gone(pid, timeout_s):
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5)
        raise AssertionError(f"the engine {pid} did not stop within {timeout_s} s: killed")
