"""The engine's one event stream: ``GET /v1/events?face=NAME[&topics=a,b][&pid=N]``, the faces' way to attach.

An NDJSON answer (workbench.server.ndjson) of ``{"type": "event", "topic": ..., "payload": ...}`` lines from the
engine's event hub. The first is ``hello`` (the engine's info and the face as the engine lists it); then the latest
of every state topic the face asked for, and what follows. While the stream is open the face counts in
``engine.clients`` (the engine does not idle out under it) and in the faces ``ps`` lists. When the engine stops,
every stream gets ``stopping`` (``{"reason": ...}``) and ends. ``hello``, ``stopping`` and ``dropped`` (ordered
events a slow face missed) come whatever topics were asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.server.ndjson import NdjsonStream, PeerGone

if TYPE_CHECKING:
    from workbench.server.engine import Engine

# latest-wins: workbench.server.engine_publish's, and the default model's import (workbench.server.engine_import)
STATE_TOPICS = ("models", "memory", "downloads", "jobs", "faces", "import")
ORDERED_TOPICS = ("chat", "compare", "embedding", "request", "history")  # in order, from the routes doing the work
TOPICS = frozenset(STATE_TOPICS + ORDERED_TOPICS)
CONTROL = frozenset({"dropped"})  # every face gets these (and hello, stopping: sent by the stream itself)
FACE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
QUERY_KEYS = frozenset({"face", "topics", "pid"})
PEER_CHECK_S = 0.5  # how often a quiet stream looks whether its face has gone
END_WAIT_S = 2.0  # how long a stopping engine waits for the streams to say goodbye


class BadQuery(ValueError):
    """A query the route refuses; the message says why (answered as 400)."""


@dataclass(frozen=True)
class Face:
    id: int
    name: str
    pid: int | None
    attached_at: float

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "pid": self.pid, "attached_at": self.attached_at}


def parse_query(query: Mapping[str, str]) -> tuple[str, int | None, frozenset[str] | None]:
    """``(face, pid, topics)`` from the query (topics None: all of them), or BadQuery."""
    if unknown := sorted(set(query) - QUERY_KEYS):
        raise BadQuery(f"unknown parameter(s): {', '.join(repr(k)[:40] for k in unknown[:5])} (known: face, pid, "
                       "topics)")  # fmt: skip
    keys = [key for key, _ in query.items()]  # a multidict's items list a repeated key as often as it is given
    if len(keys) != len(set(keys)):
        raise BadQuery("a parameter is given more than once")
    face = query.get("face", "")
    if not FACE_NAME.fullmatch(face):
        raise BadQuery(f"'face' must name the face in 1-32 of a-z, 0-9 and '-' (tui, cli, serve, pull), "
                       f"not {face[:40]!r}")  # fmt: skip
    pid = None
    if "pid" in query:
        text = query["pid"]
        if not (text.isascii() and text.isdigit() and 0 < len(text) <= 10 and int(text) > 0):
            raise BadQuery(f"'pid' must be a process id, not {text[:40]!r}")
        pid = int(text)
    topics = None
    if "topics" in query:
        names = [name.strip() for name in query["topics"].split(",")]
        if not all(names) or len(names) > len(TOPICS):
            raise BadQuery("'topics' must be a comma-separated list of topics")
        if unknown := sorted(set(names) - TOPICS):
            raise BadQuery(f"unknown topic(s): {', '.join(repr(t)[:40] for t in unknown[:5])} (known: "
                           f"{', '.join(sorted(TOPICS))})")  # fmt: skip
        topics = frozenset(names)
    return face, pid, topics


def event_line(topic: str, payload: Any) -> dict[str, Any]:
    return {"type": "event", "topic": topic, "payload": payload}


class EventStream:
    """The ``/v1/events`` route and the faces attached through it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._faces: dict[int, Face] = {}
        self._requests: dict[int, web.Request] = {}
        self._ids = itertools.count(1)
        self._none_left = asyncio.Event()
        self._none_left.set()
        self.ending: str | None = None  # why the engine stops, once it does

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/events", self.events)]

    def faces(self) -> list[dict[str, Any]]:
        return [face.row() for face in self._faces.values()]

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            name, pid, topics = parse_query(request.query)
        except BadQuery as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if self.ending is not None:
            return web.json_response({"error": "the engine is stopping"}, status=503)
        face = self.attach(name, pid, request)
        subscription = self.engine.events.subscribe(None if topics is None else topics | CONTROL)
        stream = NdjsonStream(request)
        try:
            async with stream:
                await stream.send(event_line("hello", {"engine": self.engine.info(), "face": face.row(),
                                                       "topics": sorted(topics or TOPICS)}))  # fmt: skip
                while not stream.gone and not _peer_gone(request):
                    try:
                        event = await asyncio.wait_for(subscription.next(), PEER_CHECK_S)
                    except TimeoutError:
                        continue
                    if event is None:  # the engine is stopping: the hub gave what was pending, now the reason
                        await stream.send(event_line("stopping", {"reason": self.ending or "stopping"}))
                        break
                    await stream.send(event_line(event.topic, event.payload))
        except PeerGone:
            pass
        finally:
            self.engine.events.unsubscribe(subscription)
            self.detach(face)
        return stream.response

    def attach(self, name: str, pid: int | None, request: web.Request) -> Face:
        """A face is attached (this stream, or another face's own stream such as `serve`'s request lines)."""
        face = Face(next(self._ids), name, pid, time.time())
        self._faces[face.id] = face
        self._requests[face.id] = request
        self._none_left.clear()
        self.engine.clients += 1
        self.engine.publisher.faces_changed()
        return face

    def detach(self, face: Face) -> None:
        if self._faces.pop(face.id, None) is None:
            return
        self._requests.pop(face.id, None)
        self.engine.clients = max(0, self.engine.clients - 1)
        if not self._faces:
            self._none_left.set()
        self.engine.publisher.faces_changed()

    async def end(self, reason: str) -> None:
        """The engine is stopping: every face hears ``stopping`` with ``reason``, then its stream ends (a face that
        does not read is cut off after END_WAIT_S). New faces are refused from here on."""
        self.ending = reason
        self.engine.events.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_left.wait(), END_WAIT_S)
        for request in list(self._requests.values()):
            if request.transport is not None:
                request.transport.close()


def _peer_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
