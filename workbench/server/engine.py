"""The engine's native API: HTTP over a Unix socket in the engine's private folder (workbench.core.engine_home).

``GET /v1/engine`` is the handshake (pid, version, code fingerprint); ``GET /v1/ps`` what runs (the shape of
``workbench ps --json``); ``POST /v1/stop`` answers, then the engine closes its services and exits. With nothing to do
(no request, no face, no running download, no loaded model) for ``[engine] idle_exit_minutes`` it exits by itself.
``GET /v1/events`` is the one event stream the faces attach to (workbench.server.engine_stream).
The engine owns the download queue (workbench.server.engine_downloads): started with the engine, which resumes what
an earlier engine left running, and closed when it stops (transfers stop at once, keeping their bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psutil
from aiohttp import web

from workbench.core.engine_home import EngineHome, EngineLock, code_fingerprint
from workbench.core.models.spec import ModelState
from workbench.core.storage.writer_lock import HistoryWriterLock, claim_history
from workbench.server.engine_answers import AnswerRoutes
from workbench.server.engine_cache import CacheRoutes
from workbench.server.engine_chat import ChatRoutes
from workbench.server.engine_compare import CompareRoutes
from workbench.server.engine_compare_once import CompareRoutes as OneShotCompareRoutes
from workbench.server.engine_downloads import DownloadRoutes
from workbench.server.engine_embeddings import EmbeddingRoutes
from workbench.server.engine_events import EventHub
from workbench.server.engine_import import DefaultImportRoutes
from workbench.server.engine_jobs import JobBoard
from workbench.server.engine_listeners import EngineListeners
from workbench.server.engine_models import ModelDeleteRoutes, ModelRoutes
from workbench.server.engine_publish import EnginePublisher
from workbench.server.engine_startup import EngineStartup
from workbench.server.engine_store import StoreRoutes
from workbench.server.engine_stream import EventStream

if TYPE_CHECKING:
    from workbench.bootstrap import Services

log = logging.getLogger(__name__)

CHECK_S = 5.0  # how often the idle exit looks
RUNNING_JOBS = ("queued", "downloading", "verifying")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("workbench")
    except PackageNotFoundError:
        return "0.0.0"


class Engine:
    """One engine: the services behind the socket, until stopped or idle for ``idle_exit_s`` (None: never)."""

    def __init__(self, services: Services, home: EngineHome, idle_exit_s: float | None = None,
                 check_s: float = CHECK_S, clock: Callable[[], float] = time.monotonic,
                 find_models: bool = True, history_lock: HistoryWriterLock | None = None) -> None:  # fmt: skip
        """``history_lock``: the database's writer lock, taken before the services opened it (`workbench engine`);
        without one, :meth:`serve` takes it when it starts. Either way it is released after the database closed."""
        self.services = services
        self.history_lock = history_lock
        self.home = home
        self.idle_exit_s = idle_exit_s or None
        self.check_s = check_s
        self.clock = clock
        self.started = clock()
        self.last_activity = clock()
        self.in_flight = 0
        self.clients = 0  # attached faces: the event streams open now (workbench.server.engine_stream)
        self.events = EventHub()
        self.publisher = EnginePublisher(self)  # the state topics on self.events
        self.board = JobBoard(on_change=lambda: self.publisher.changed("jobs"))
        self.stream = EventStream(self)
        self.stop_reason: str | None = None
        self.startup = EngineStartup(services) if find_models else None
        self._stop = asyncio.Event()
        self.app = web.Application(middlewares=[self._activity])
        self.app.add_routes([web.get("/v1/engine", self._engine), web.get("/v1/ps", self._ps),
                             web.post("/v1/stop", self._stop_route)])  # fmt: skip
        self.app.add_routes(DownloadRoutes(services, lambda: self.publisher.changed("downloads")).routes())
        self.app.add_routes(CacheRoutes(services).routes())
        self.app.add_routes(ModelRoutes(services.manager).routes())
        self.app.add_routes(ModelDeleteRoutes(services.registry).routes())  # `workbench rm`
        self.default_import = DefaultImportRoutes(services, self.events)
        self.app.add_routes(self.default_import.routes())
        self.app.add_routes(StoreRoutes(services, self.events).routes())
        self.app.add_routes(self.stream.routes())
        self.listeners = EngineListeners(self)  # the OpenAI-compatible API on TCP ([serve], `workbench serve`)
        self.app.add_routes(self.listeners.routes())
        self.embeddings = EmbeddingRoutes(services, self.board)  # embedding jobs, run by the engine
        self.embeddings.install(self.app)
        self.compare = CompareRoutes(services, self.board)  # compare turns, run by the engine
        self.compare.install(self.app)
        self.answers = AnswerRoutes(services, self.board)  # chat answers, run by the engine
        self.answers.install(self.app)
        self.chat = ChatRoutes(services, self.board)  # POST /v1/chat: one-shot answers (workbench chat)
        self.chat.install(self.app)
        OneShotCompareRoutes(self.chat).install(self.app)  # POST /v1/compare (workbench compare)

    # --- what the routes answer --------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": engine_version(), "fingerprint": code_fingerprint(),
                "socket": str(self.home.socket), "rss_bytes": psutil.Process().memory_info().rss,
                "uptime_s": round(self.clock() - self.started, 3), "clients": self.clients}  # fmt: skip

    def models(self) -> list[dict[str, Any]]:
        manager = self.services.manager
        rows = []
        for info in manager.models():
            if not info.resident:
                continue
            unload_at = None
            if (info.state is ModelState.READY and not info.pinned and info.leases == 0 and manager.idle_unload_s
                    and info.last_used is not None):  # fmt: skip
                unload_at = time.time() + max(0.0, info.last_used + manager.idle_unload_s - manager._clock())
            rows.append({"id": info.spec.id, "state": str(info.state), "memory_bytes": manager.cost_of(info.spec.id),
                         "pinned": info.pinned, "leases": info.leases, "idle_unload_at": unload_at})  # fmt: skip
        return rows

    def jobs(self) -> list[dict[str, Any]]:
        """Running work: the queue's unfinished downloads, then the answers and embedding jobs (``self.board``)."""
        rows: list[dict[str, Any]] = []
        if not self.services.downloads_started:
            return self.board.rows()
        for job in self.services.downloads.jobs():
            if str(job.state) not in RUNNING_JOBS and str(job.state) != "paused":
                continue
            progress = job.done_bytes / job.total_bytes if job.total_bytes else 0.0
            rows.append({"kind": "download", "id": job.id, "what": job.repo_id, "progress": round(progress, 4),
                         "started_at": job.created, "state": str(job.state)})  # fmt: skip
        return rows + self.board.rows()

    def ps(self) -> dict[str, Any]:
        info = self.info()
        engine = {key: info[key] for key in ("pid", "version", "socket", "rss_bytes", "uptime_s")}
        return {"engine": engine, "models": self.models(), "jobs": self.jobs(), "clients": self.clients,
                "faces": self.stream.faces()}  # fmt: skip

    def busy(self) -> bool:
        """Anything that keeps the engine alive: a request, a face, a running download, a loaded model."""
        if self.in_flight or self.clients or len(self.board) or self.listeners.busy():
            return True
        if any(info.resident for info in self.services.manager.models()):
            return True
        return any(job.get("state") in RUNNING_JOBS for job in self.jobs())

    # --- routes ------------------------------------------------------------------------------

    @web.middleware
    async def _activity(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            self.last_activity = self.clock()

    async def _engine(self, request: web.Request) -> web.Response:
        return web.json_response(self.info())

    async def _ps(self, request: web.Request) -> web.Response:
        return web.json_response(self.ps())

    async def _stop_route(self, request: web.Request) -> web.Response:
        # answered first: the stop happens once this response is on its way
        asyncio.get_running_loop().call_soon(self.request_stop, "asked to stop")
        return web.json_response({"stopping": True, "pid": os.getpid()})

    def request_stop(self, reason: str = "asked to stop") -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    # --- running -----------------------------------------------------------------------------

    async def _watch_idle(self) -> None:
        assert self.idle_exit_s is not None
        while not self._stop.is_set():
            await asyncio.sleep(self.check_s)
            if self.busy():
                self.last_activity = self.clock()
            elif self.clock() - self.last_activity >= self.idle_exit_s:
                log.info("idle for %.0f s: exiting", self.clock() - self.last_activity)
                self.request_stop("idle")

    async def serve(self, lock: EngineLock, ready: Callable[[], None] | None = None) -> str:
        """Serve on the socket until stopped; the caller holds ``lock`` (released here, after the socket is gone).
        Returns why it stopped. A socket file left by a dead engine is removed first (the lock says none runs)."""
        socket = self.home.socket
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        watcher: asyncio.Task[None] | None = None
        finding: asyncio.Task[None] | None = None
        try:
            if self.history_lock is None:
                self.history_lock = claim_history(self.services.store.path)  # the engine is the history's one writer
            socket.unlink(missing_ok=True)
            await self.services.downloads.start()  # resumes what an earlier engine left running
            self.publisher.start()
            await runner.setup()
            await web.UnixSite(runner, str(socket)).start()
            os.chmod(socket, 0o600)
            if self.startup is not None:
                finding = asyncio.create_task(self.startup.run())
            self.listeners.start()  # config.toml's [serve] host/port, in the background
            log.info("engine %s serving on %s", os.getpid(), socket)
            if self.idle_exit_s is not None:
                watcher = asyncio.create_task(self._watch_idle())
            if ready is not None:
                ready()
            await self._stop.wait()
        finally:
            for task in (watcher, finding):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.chat.close()  # its streams end before the listener waits for the connections to close
            await self.listeners.aclose()  # before the events close: their faces hear "closed"
            await self.stream.end(self.stop_reason or "cancelled")  # the faces hear why, then their streams end
            await self.publisher.stop()
            await runner.cleanup()
            await self.default_import.aclose()
            try:
                await self.services.aclose()
            finally:
                socket.unlink(missing_ok=True)
                if self.history_lock is not None:
                    self.history_lock.release()
                lock.release()
                log.info("engine %s stopped (%s)", os.getpid(), self.stop_reason or "cancelled")
        return self.stop_reason or "cancelled"
