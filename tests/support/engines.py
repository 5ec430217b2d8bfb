"""An engine served in the test's own event loop, on its temporary socket."""

from __future__ import annotations

import asyncio
from typing import Any

from workbench.core.engine_home import EngineLock
from workbench.server.engine import Engine


async def serving(engine: Engine, home: Any) -> asyncio.Task[str]:
    """Start ``engine`` on ``home``'s socket (holding its lock, as a real engine does); returns once it answers."""
    lock = EngineLock(home.lock)
    assert lock.try_acquire()
    ready = asyncio.Event()
    task = asyncio.create_task(engine.serve(lock, ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    return task


def stop_engine_of(paths: Any, timeout_s: float = 20.0) -> int | None:
    """Stop the engine that faces started for ``paths``'s data folder, if one runs (bounded: killed when it does not
    stop in ``timeout_s``). Returns its pid, or None when none ran. For the fixtures of tests whose faces start one."""
    import os
    import signal
    import time

    import psutil

    from workbench.client.engine import EngineClient, engine_info_sync
    from workbench.core.engine_home import EngineHomeError, engine_home

    try:
        socket = engine_home(paths).socket
    except (EngineHomeError, OSError):
        return None
    info = engine_info_sync(socket)
    if info is None:
        return None
    pid = int(info["pid"])
    asyncio.run(EngineClient(socket).stop())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    return pid
