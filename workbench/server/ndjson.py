"""Streamed answers of the engine's native API: one JSON document per line (application/x-ndjson).

A ``{"type": "alive"}`` line goes out every ``heartbeat_s`` besides the answer's own lines, so a face can bound its
wait for the next line (workbench.client.engine reads with a timeout of a few heartbeats) and tell a busy engine
from a dead link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

HEARTBEAT_S = 5.0
CONTENT_TYPE = "application/x-ndjson"


class PeerGone(Exception):
    """The face that asked is gone (its connection closed): nobody reads what follows."""


class NdjsonStream:
    """``async with NdjsonStream(request) as stream: await stream.send({...})``."""

    def __init__(self, request: web.Request, heartbeat_s: float | None = HEARTBEAT_S) -> None:
        """``heartbeat_s`` None sends no ``alive`` lines (Ollama's clients read every line as part of the answer)."""
        self.request = request
        self.heartbeat_s = heartbeat_s
        self.response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
        self._lock = asyncio.Lock()
        self._beating: asyncio.Task[None] | None = None
        self.gone = False

    async def __aenter__(self) -> NdjsonStream:
        await self.response.prepare(self.request)
        if self.heartbeat_s is not None:
            self._beating = asyncio.create_task(self._beat(self.heartbeat_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        if not self.gone:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.response.write_eof()

    async def send(self, document: dict[str, Any]) -> None:
        """Send one line; PeerGone when the face has left."""
        line = (json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        async with self._lock:
            if self.gone:
                raise PeerGone()
            try:
                await self.response.write(line)
            except (ConnectionError, RuntimeError) as exc:  # RuntimeError: aiohttp's "connection lost"
                self.gone = True
                raise PeerGone() from exc

    async def _beat(self, every_s: float) -> None:
        with contextlib.suppress(PeerGone):
            while True:
                await asyncio.sleep(every_s)
                await self.send({"type": "alive"})
