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
