"""An engine served in the test's own event loop, on its temporary socket (``serving``), or on a thread of its own
(``engine_thread``) for faces that make blocking calls to it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from workbench.core.engine_home import EngineLock
from workbench.server.engine import Engine

T = TypeVar("T")


async def serving(engine: Engine, home: Any) -> asyncio.Task[str]:
    """Start ``engine`` on ``home``'s socket (holding its lock, as a real engine does); returns once it answers."""
    lock = EngineLock(home.lock)
    assert lock.try_acquire()
    ready = asyncio.Event()
    task = asyncio.create_task(engine.serve(lock, ready=ready.set))
    await asyncio.wait_for(ready.wait(), 10)
    return task


class EngineThread:
    """An engine on its own thread and event loop, for faces that make blocking calls to it from the test's loop
    (RemoteChatSession, the Chat pane). The services are built on that thread (the store belongs to one thread):
    read them with ``call``."""

    def __init__(self, make_services: Callable[[], tuple[Any, Any]], home: Any, **engine_options: Any) -> None:
        self.make_services = make_services
        self.home = home
        self.engine_options = engine_options
        self.services: Any = None
        self.backend: Any = None
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped: str | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="test-engine", daemon=True)

    def _main(self) -> None:
        async def serve() -> str:
            self.loop = asyncio.get_running_loop()
            self.services, self.backend = self.make_services()
            self.engine = Engine(self.services, self.home, **self.engine_options)
            lock = EngineLock(self.home.lock)
            assert lock.try_acquire()
            return await self.engine.serve(lock, ready=self._ready.set)

        try:
            self.stopped = asyncio.run(serve())
        except BaseException as exc:  # told to the test by start()
            self._failed = exc
            self._ready.set()

    def start(self, timeout_s: float = 10) -> EngineThread:
        self._thread.start()
        assert self._ready.wait(timeout_s), "the engine did not start"
        if self._failed is not None:
            raise self._failed
        return self

    def call(self, function: Callable[[], T], timeout_s: float = 10) -> T:
        """``function()`` run on the engine's loop (its store and manager belong there); its result."""
        assert self.loop is not None

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout_s)

    def stop(self, timeout_s: float = 20) -> None:
        if self.loop is not None and self.engine is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.engine.request_stop, "test over")
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the engine did not stop"


@contextlib.contextmanager
def engine_thread(make_services: Callable[[], tuple[Any, Any]], home: Any,
                  **engine_options: Any) -> Iterator[EngineThread]:  # fmt: skip
    """An EngineThread started, and stopped on the way out."""
    running = EngineThread(make_services, home, **engine_options).start()
    try:
        yield running
    finally:
        running.stop()


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
