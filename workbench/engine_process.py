"""Starting the engine in the background, once: ``start_engine`` takes the engine's lock, and when no engine
answers it spawns ``python -m workbench.cli engine`` in its own session (detached from the terminal, its output in
the log folder), hands it the lock and waits, bounded, until it answers the handshake."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from workbench.core.engine_home import EngineHome, EngineLock, engine_home
from workbench.core.settings.paths import AppPaths

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
LOCK_FD_ENV = "WORKBENCH_ENGINE_LOCK_FD"  # the fd of engine.lock, already locked, that a starter hands the engine


class EngineStartError(Exception):
    """The engine did not start; the message says where its log is."""


def engine_output_file(paths: AppPaths) -> Path:
    return paths.log_dir / "engine.out"


def start_engine(paths: AppPaths, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """The running engine's handshake, starting one first when none answers. Two callers at once start one engine:
    the second waits on the lock, and meanwhile for the first one's engine to answer."""
    from workbench.client.engine import engine_info_sync

    home = engine_home(paths)
    if (info := engine_info_sync(home.socket)) is not None:
        return info
    lock = EngineLock(home.lock)
    deadline = time.monotonic() + timeout_s
    while not lock.try_acquire():  # held by an engine (answering soon) or by another starter
        if (info := engine_info_sync(home.socket)) is not None:
            return info
        if time.monotonic() >= deadline:
            raise EngineStartError(f"the engine's lock {home.lock} is held, yet no engine answers on {home.socket}")
        time.sleep(0.05)
    handed = False
    try:
        if (info := engine_info_sync(home.socket)) is not None:  # started between our look and the lock
            return info
        home.socket.unlink(missing_ok=True)  # stale: a dead engine's (we hold the lock, so none runs)
        process = _spawn(paths, lock)
        handed = True
        return _wait_for_handshake(paths, home, process, deadline)
    finally:
        if handed:  # the engine holds the same open file: closing our copy leaves it locked
            lock.detach()
        else:
            lock.release()


def _spawn(paths: AppPaths, lock: EngineLock) -> subprocess.Popen[bytes]:
    assert lock.fd is not None
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, LOCK_FD_ENV: str(lock.fd)}
    with open(engine_output_file(paths), "ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "engine"], stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=output, env=env, start_new_session=True,
                                   pass_fds=(lock.fd,), close_fds=True)  # fmt: skip
    log.info("started the engine, pid %s", process.pid)
    # reaped when it exits, so a long-lived face that started it keeps no zombie
    threading.Thread(target=process.wait, name="engine-reaper", daemon=True).start()
    return process


def _wait_for_handshake(paths: AppPaths, home: EngineHome, process: subprocess.Popen[bytes],
                        deadline: float) -> dict[str, Any]:  # fmt: skip
    from workbench.client.engine import engine_info_sync

    while time.monotonic() < deadline:
        if (info := engine_info_sync(home.socket)) is not None:
            return info
        if process.poll() is not None:
            raise EngineStartError(f"the engine exited at start (status {process.returncode}); see "
                                   f"{engine_output_file(paths)} and {paths.log_dir / 'engine.log'}")  # fmt: skip
        time.sleep(0.05)
    raise EngineStartError(f"the engine did not answer in time; see {engine_output_file(paths)} and "
                           f"{paths.log_dir / 'engine.log'}")  # fmt: skip


def inherited_lock(home: EngineHome) -> EngineLock | None:
    """The lock a starter handed this engine process (already locked), or None when started by hand."""
    fd = os.environ.pop(LOCK_FD_ENV, None)
    if fd is None or not fd.isdigit():
        return None
    with contextlib.suppress(OSError):
        os.set_inheritable(int(fd), False)  # the engine's own children do not get it
    return EngineLock(home.lock, int(fd))
