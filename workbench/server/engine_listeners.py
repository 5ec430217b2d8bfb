"""The engine's OpenAI-compatible listeners: the API of workbench.server.openai served on TCP addresses from the
engine's own event loop, over the engine's one model manager (a model any face loaded answers without a second
load, and what the API loads counts in the same memory budget).

Routes on the engine's socket:
- ``POST /v1/listeners`` ``{"host"?, "port"?, "api_key"?, "keep"?}`` opens one and answers its row
  (``{"id", "url", "host", "port", "origin", "keep", "key", "watchers", "requests", "opened_at"}``); 409 when the
  address is taken, 400 for a bad body or a host beyond loopback without a key. The key travels with the request
  (the face read it from its environment); it is held in memory only and never answered back.
- ``GET /v1/listeners``: ``{"listeners": [row, ...], "config_error": str | null}``.
- ``DELETE /v1/listeners/{id}``: ``{"id", "closed": true}`` once the port is closed; 404 for an unknown id.
- ``GET /v1/listeners/{id}/requests``: NDJSON (workbench.server.ndjson): ``{"type": "listener", ...row}`` first, then
  ``{"type": "request", "method", "path", "status", "duration_s", "model", "stream", "prompt_tokens",
  "completion_tokens", "cached_tokens", "figures", "remote", "at"}`` per answered request (status 499: the client
  left first), ``{"type": "dropped", "events": n}`` when the face fell behind, and ``{"type": "closed", "reason"}``
  last when the listener closed. The lines come through ``engine.events`` (ordered topic "request"; the state topic
  "listeners" carries the rows for any face that shows them).

Lifetimes: a listener a face opened lives while a face reads its request stream. When the last reader leaves
(ctrl+c, or a kill -9 that drops the connection) or none comes within ATTACH_GRACE_S, it closes, unless it was
opened with ``"keep": true``: then it stays until DELETE or the engine stops, like the one config.toml's
``[serve] host / port`` opens when the engine starts. Kept and configured listeners keep the engine resident (no
idle exit); a face's listener keeps it alive through the face's open stream anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from workbench.core.settings.config import is_host
from workbench.server.bodies import BadRequest, parse_json_object, read_bounded
from workbench.server.engine_events import Subscription
from workbench.server.limits import MB, ServeLimits, is_loopback
from workbench.server.ndjson import NdjsonStream, PeerGone
from workbench.server.openai import REQUEST_FIGURES, REQUEST_MODEL, REQUEST_STREAM, build_app, listen

if TYPE_CHECKING:
    from workbench.server.engine import Engine

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_KEY_CHARS = 4096
KEYS = frozenset({"host", "port", "api_key", "keep"})
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
ATTACH_GRACE_S = 15.0  # a face's listener nobody reads within this long after it opened closes
WATCH_POLL_S = 0.5  # how often a request stream with nothing to send looks whether its face is still there
MAX_PATH_CHARS = 200
REQUEST_TOPIC = "request"
LISTENER_TOPIC = "listener"  # ordered: {"id", "event": "closed", "reason"}
LISTENERS_TOPIC = "listeners"  # state: every open listener's row


class ListenerError(Exception):
    """A listener that cannot be opened (or found); answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ListenerRequest:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = field(default=None, repr=False)
    keep: bool = False


def parse_listener(body: bytes) -> ListenerRequest:
    """A ``POST /v1/listeners`` body, or ListenerError(400/413). Messages never quote the key."""
    try:
        document = parse_json_object(body, KEYS, MAX_BODY_BYTES, '{"host"?, "port"?, "api_key"?, "keep"?}',
                                     empty_is_object=True)  # fmt: skip
    except BadRequest as exc:
        raise ListenerError(exc.status, str(exc)) from None
    host = document.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not is_host(host):
        raise ListenerError(400, "'host' must be a host name or address without spaces (127.0.0.1, ::1, 0.0.0.0)")
    port = document.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ListenerError(400, "'port' must be a port number (0-65535; 0 picks a free one)")
    key = document.get("api_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS
                            or any(c.isspace() or not c.isprintable() for c in key)):  # fmt: skip
        raise ListenerError(400, f"'api_key' must be the key itself: 1 to {MAX_KEY_CHARS} printable characters "
                                 "without spaces")  # fmt: skip
    keep = document.get("keep", False)
    if not isinstance(keep, bool):
        raise ListenerError(400, "'keep' must be true or false")
    return ListenerRequest(host, port, key, keep)


@dataclass
class Listener:
    id: str
    host: str
    port: int
    url: str
    origin: str  # "face" or "config"
    keep: bool
    key: bool
    runner: web.AppRunner = field(repr=False)
    opened_at: float = field(default_factory=time.time)
    watchers: int = 0
    requests: int = 0
    stays: bool = field(init=False)

    def __post_init__(self) -> None:
        self.stays = self.keep or self.origin == "config"  # closed only by DELETE or the engine's stop

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "host": self.host, "port": self.port, "origin": self.origin,
                "keep": self.stays, "key": self.key, "watchers": self.watchers, "requests": self.requests,
                "opened_at": self.opened_at}  # fmt: skip


class EngineListeners:
    """The engine's listeners and their routes; ``start()`` opens config.toml's listener in the background,
    ``aclose()`` closes every one (before the services close)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.services = engine.services
        self.events = engine.events
        self._listeners: dict[str, Listener] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opening = asyncio.Lock()  # one open at a time: a second one for the same address is told whose it is
        self._closing = False
        self.in_flight = 0  # API requests being answered on any listener
        self.config_error: str | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/listeners", self._open_route), web.get("/v1/listeners", self._list_route),
                web.delete("/v1/listeners/{id}", self._delete_route),
                web.get("/v1/listeners/{id}/requests", self._requests_route)]  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        return [listener.row() for listener in self._listeners.values()]

    def busy(self) -> bool:
        """Whether the listeners keep the engine alive: a request being answered, or a listener that stays."""
        return bool(self.in_flight) or any(listener.stays for listener in self._listeners.values())

    # --- opening and closing ---------------------------------------------------------------------

    async def open(self, wanted: ListenerRequest, origin: str = "face") -> Listener:
        async with self._opening:
            return await self._open(wanted, origin)

    async def _open(self, wanted: ListenerRequest, origin: str) -> Listener:
        if self._closing:
            raise ListenerError(503, "the engine is stopping")
        if (other := self._holding(wanted.port, wanted.host)) is not None:
            raise _already(other)
        if not wanted.api_key and not is_loopback(wanted.host):
            raise ListenerError(400, f"serving on {wanted.host} needs an API key: anyone who reaches it could use "
                                     "the models")  # fmt: skip
        await self._prepare_models()
        settings = self.services.settings
        limits = ServeLimits(int(settings.serve_max_body_mb * MB), settings.serve_max_waiting)
        listener_id = uuid.uuid4().hex[:12]
        app = build_app(self.services, limits, wanted.api_key, outer=[self._recorder(listener_id)])
        try:
            runner, url = await listen(app, wanted.host, wanted.port)
        except OSError as exc:
            where = f"{wanted.host}:{wanted.port}"
            if exc.errno == errno.EADDRINUSE:
                if (other := self._holding(wanted.port)) is not None:
                    raise _already(other) from None
                raise ListenerError(409, f"cannot serve on {where}: the port is in use (another program, or "
                                         "another listener: `workbench serve --port N` picks another)") from None
            raise ListenerError(400, f"cannot serve on {where}: {exc.strerror or exc}") from None
        listener = Listener(listener_id, wanted.host, runner.addresses[0][1], url, origin, wanted.keep,
                            wanted.api_key is not None, runner)  # fmt: skip
        if self._closing:  # the engine began to stop while this one was binding
            await runner.cleanup()
            raise ListenerError(503, "the engine is stopping")
        self._listeners[listener_id] = listener
        log.info("listener %s (%s) serving the OpenAI-compatible API at %s%s", listener_id, origin, url,
                 " (API key required)" if wanted.api_key else "")  # fmt: skip
        self._publish_rows()
        if not listener.stays:
            self._spawn(self._close_unless_watched(listener_id))
        return listener

    def _holding(self, port: int, host: str | None = None) -> Listener | None:
        """The listener of this engine on ``port`` (and ``host``, when given); None for port 0 (a free one)."""
        return next((listener for listener in self._listeners.values() if port and listener.port == port
                     and (host is None or listener.host == host)), None)  # fmt: skip

    async def close(self, listener_id: str, reason: str) -> bool:
        """Close a listener (running generations stop, the port closes); False when there is none by that id."""
        listener = self._listeners.pop(listener_id, None)
        if listener is None:
            return False
        try:
            await listener.runner.cleanup()
        finally:
            log.info("listener %s at %s closed (%s)", listener_id, listener.url, reason)
            self.events.publish(LISTENER_TOPIC, {"id": listener_id, "event": "closed", "reason": reason})
            self._publish_rows()
        return True

    def start(self) -> None:
        """Open config.toml's listener ([serve] host / port), in the background: the engine answers at once."""
        settings = self.services.settings
        if settings.serve_host is None and settings.serve_port is None:
            return
        self._spawn(self._open_configured(settings.serve_host or DEFAULT_HOST, settings.serve_port or DEFAULT_PORT,
                                          settings.serve_api_key_env))  # fmt: skip

    async def aclose(self, reason: str = "the engine stopped") -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for listener_id in list(self._listeners):
            with contextlib.suppress(Exception):
                await self.close(listener_id, reason)

    async def _open_configured(self, host: str, port: int, key_env: str) -> None:
        key = os.environ.get(key_env, "").strip() if key_env else ""
        try:
            if key_env and not key:
                raise ListenerError(400, f"[serve] api_key_env names ${key_env}, which is empty or not set in the "
                                         "engine's environment")  # fmt: skip
            await self.open(ListenerRequest(host, port, key or None), origin="config")
        except ListenerError as exc:
            self.config_error = f"config.toml's [serve] {host}:{port} is not served: {exc}"
            log.error("%s", self.config_error)

    async def _close_unless_watched(self, listener_id: str) -> None:
        await asyncio.sleep(ATTACH_GRACE_S)
        listener = self._listeners.get(listener_id)
        if listener is not None and not listener.stays and listener.watchers == 0:
            await self.close(listener_id, "no face read its requests")

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prepare_models(self) -> None:
        """What today's `workbench serve` did before listening: import the embedded default chat model on first use
        (so the first GET /v1/models lists it; clients such as Open WebUI read the list once) and register
        everything loadable, the Hugging Face cache and remote endpoints too (blocking: in a thread)."""
        from workbench.core.models.gguf_import import GgufImportError

        services = self.services
        try:
            await services.bring_in_embedded_defaults()
        except (GgufImportError, OSError):
            log.exception("importing the default chat model failed; serving the other models")

        def loadable() -> list[Any]:
            remote, _problems = services.discover_remote_models()
            return services.registry.loadable_specs() + remote

        specs = await asyncio.to_thread(loadable)
        known = {info.spec.id for info in services.manager.models()}
        for spec in specs:
            if spec.id not in known:
                services.manager.register(spec)

    def _publish_rows(self) -> None:
        self.events.publish(LISTENERS_TOPIC, self.rows(), state=True)

    # --- one line per request ----------------------------------------------------------------------

    def _recorder(self, listener_id: str) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.in_flight += 1
            started = time.monotonic()
            status = 499  # the client left before the answer was complete (its handler was cancelled)
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                self.in_flight -= 1
                self.engine.last_activity = self.engine.clock()
                self._publish_request(listener_id, request, status, time.monotonic() - started)

        return record

    def _publish_request(self, listener_id: str, request: web.Request, status: int, duration_s: float) -> None:
        listener = self._listeners.get(listener_id)
        if listener is not None:
            listener.requests += 1
        figures = request.get(REQUEST_FIGURES)
        self.events.publish(REQUEST_TOPIC, {
            "listener": listener_id, "method": request.method, "path": request.path[:MAX_PATH_CHARS],
            "status": status, "duration_s": round(duration_s, 3), "model": request.get(REQUEST_MODEL),
            "stream": request.get(REQUEST_STREAM), "remote": request.remote, "at": time.time(),
            "prompt_tokens": figures.prompt_tokens if figures else None,
            "completion_tokens": figures.generation_tokens if figures else None,
            "cached_tokens": figures.cached_tokens if figures else None,
            "figures": figures.summary() if figures else None,
        })  # fmt: skip

    # --- routes ----------------------------------------------------------------------------------

    async def _open_route(self, request: web.Request) -> web.Response:
        try:
            if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                raise ListenerError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
            wanted = parse_listener(await read_bounded(request, MAX_BODY_BYTES))
            listener = await self.open(wanted)
        except ListenerError as exc:
            return _refused(exc)
        return web.json_response(listener.row())

    async def _list_route(self, request: web.Request) -> web.Response:
        return web.json_response({"listeners": self.rows(), "config_error": self.config_error})

    async def _delete_route(self, request: web.Request) -> web.Response:
        listener_id = request.match_info["id"]
        if not await self.close(listener_id, "closed on request"):
            return _refused(ListenerError(404, f"no listener {listener_id[:40]!r}"))
        return web.json_response({"id": listener_id, "closed": True})

    async def _requests_route(self, request: web.Request) -> web.StreamResponse:
        listener_id = request.match_info["id"]
        listener = self._listeners.get(listener_id)
        if listener is None:
            return _refused(ListenerError(404, f"no listener {listener_id[:40]!r}"))
        subscription = self.events.subscribe(frozenset({REQUEST_TOPIC, LISTENER_TOPIC}))
        listener.watchers += 1
        face = self.engine.stream.attach("serve", None, request)  # an attached face, in ps
        self._publish_rows()
        stream = NdjsonStream(request)
        try:
            async with stream:
                await stream.send({"type": "listener", **listener.row()})
                await self._relay(request, stream, subscription, listener_id)
        except ConnectionError:
            pass  # the face left while the stream opened
        finally:
            self.events.unsubscribe(subscription)
            listener.watchers -= 1
            self.engine.stream.detach(face)
            if self._listeners.get(listener_id) is listener:
                self._publish_rows()
                if listener.watchers == 0 and not listener.stays:
                    await self.close(listener_id, "its face left")
        return stream.response

    async def _relay(self, request: web.Request, stream: NdjsonStream, subscription: Subscription,
                     listener_id: str) -> None:  # fmt: skip
        """This listener's request lines until it closes, the engine stops, or the face is gone."""
        with contextlib.suppress(PeerGone):
            while True:
                try:
                    event = await asyncio.wait_for(subscription.next(), WATCH_POLL_S)
                except TimeoutError:
                    transport = request.transport
                    if stream.gone or transport is None or transport.is_closing():
                        return
                    continue
                if event is None:
                    return  # the engine is stopping: the stream ends without "closed"
                if event.topic == "dropped":
                    await stream.send({"type": "dropped", **event.payload})
                elif event.payload.get("listener", event.payload.get("id")) != listener_id:
                    continue
                elif event.topic == REQUEST_TOPIC:
                    line = {key: value for key, value in event.payload.items() if key != "listener"}
                    await stream.send({"type": "request", **line})
                elif event.topic == LISTENER_TOPIC and event.payload.get("event") == "closed":
                    await stream.send({"type": "closed", "reason": event.payload.get("reason")})
                    return


def _already(other: Listener) -> ListenerError:
    by = "config.toml's [serve] host/port" if other.origin == "config" else f"listener {other.id}"
    return ListenerError(409, f"the engine already serves the API on {other.url} ({by}); use another port, or that "
                              "one")  # fmt: skip


def _refused(error: ListenerError) -> web.Response:
    return web.json_response({"error": str(error)}, status=error.status)
