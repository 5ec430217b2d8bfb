"""A small async client of the engine's native API (workbench.server.engine) over its Unix socket.

Each call answers None when no engine runs: the socket is missing, or nothing listens on it (a stale socket file
from a dead engine refuses the connection).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    import aiohttp

# aiohttp (~0.13 s to import) is imported by the calls, not here: the TUI builds its engine client before its first
# frame and makes the first call after it.
TIMEOUT_S = 5.0
STREAM_READ_TIMEOUT_S = 20.0  # the engine sends a heartbeat line every 5 s while a stream is open
MAX_LINE_BYTES = 4 * 1024 * 1024


class EngineRequestError(Exception):
    """The engine refused a request (a 4xx or 5xx); the message is the engine's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EngineNotRunning(Exception):
    """No engine answers on the socket (for the streamed calls; the plain ones answer None)."""


class EngineGone(Exception):
    """The engine went away in the middle of a streamed answer (killed, stopped, or silent past the timeout)."""


class EngineClient:
    def __init__(self, socket: Path, timeout_s: float = TIMEOUT_S) -> None:
        self.socket = Path(socket)
        self.timeout_s = timeout_s

    async def call_json(self, method: str, route: str, body: dict[str, Any] | None = None,
                        timeout_s: float | None = None) -> dict[str, Any] | None:  # fmt: skip
        """One request and its JSON answer; None when no engine answers, EngineRequestError when it refuses.
        ``timeout_s`` bounds the whole call (default: the client's; a model load passes a longer one)."""
        if not self.socket.exists():
            return None
        import aiohttp

        connector = aiohttp.UnixConnector(path=str(self.socket))
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s, connect=self.timeout_s)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.request(method, f"http://engine{route}", json=body) as response:
                    if response.status >= 400:
                        raise EngineRequestError(response.status, await _error_of(response))
                    document: dict[str, Any] = await response.json()
                    return document
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError):
            return None

    _call = call_json

    async def stream(self, method: str, route: str, body: dict[str, Any] | None = None,
                     read_timeout_s: float = STREAM_READ_TIMEOUT_S) -> AsyncIterator[dict[str, Any]]:  # fmt: skip
        """The JSON lines of a streamed answer (workbench.server.ndjson), heartbeats left out. EngineNotRunning when
        no engine answers, EngineRequestError when it refuses, EngineGone when the stream breaks off."""
        if not self.socket.exists():
            raise EngineNotRunning(str(self.socket))
        import aiohttp

        connector = aiohttp.UnixConnector(path=str(self.socket))
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=read_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            try:
                response = await session.request(method, f"http://engine{route}", json=body)
            except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError) as exc:
                raise EngineNotRunning(str(self.socket)) from exc
            async with response:
                if response.status >= 400:
                    raise EngineRequestError(response.status, await _error_of(response))
                try:
                    while line := await response.content.readline(max_line_length=MAX_LINE_BYTES):
                        document = json.loads(line)
                        if not isinstance(document, dict):
                            raise EngineGone("the engine sent a line that is not a JSON object")
                        if document.get("type") != "alive":
                            yield document
                except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                        aiohttp.http_exceptions.HttpProcessingError, ValueError) as exc:  # fmt: skip
                    raise EngineGone(f"the engine's answer broke off: {type(exc).__name__}: {exc}") from exc

    async def events(self, face: str, topics: Iterable[str] | None = None, pid: int | None = None,
                     read_timeout_s: float = STREAM_READ_TIMEOUT_S) -> AsyncIterator[tuple[str, Any]]:  # fmt: skip
        """Attach to the engine's event stream as ``face`` (tui, cli, serve, pull; ``pid``: this process's unless
        given): ``(topic, payload)`` pairs, ``hello`` first, ``stopping`` last when the engine stops (then it ends).
        ``topics`` None: all of them. Raises what :meth:`stream` raises (EngineRequestError 400 for a bad face or
        topic)."""
        query: dict[str, str] = {"face": face, "pid": str(os.getpid() if pid is None else pid)}
        if topics is not None:
            query["topics"] = ",".join(topics)
        async for document in self.stream("GET", f"/v1/events?{urlencode(query)}", read_timeout_s=read_timeout_s):
            topic = document.get("topic")
            if document.get("type") == "event" and isinstance(topic, str):
                yield topic, document.get("payload")

    async def engine_info(self) -> dict[str, Any] | None:
        """The handshake: pid, version, fingerprint, socket, rss_bytes, uptime_s, clients."""
        return await self._call("GET", "/v1/engine")

    async def ps(self) -> dict[str, Any] | None:
        return await self._call("GET", "/v1/ps")

    async def stop(self) -> dict[str, Any] | None:
        """Ask the engine to stop (it answers first, then closes); None when none runs."""
        return await self._call("POST", "/v1/stop")

    async def queue_download(self, repo: str, revision: str | None = None,
                             include: list[str] | None = None) -> dict[str, Any] | None:  # fmt: skip
        """Queue ``repo`` in the engine's download queue: ``{"id", "repo", "state"}`` (the existing job when the repo
        is queued already); EngineRequestError when the engine refuses it, None when no engine runs.

        The engine downloads from its own HF_ENDPOINT (its environment at start); a per-request hub is not sent."""
        body: dict[str, Any] = {"repo": repo}
        if revision is not None:
            body["revision"] = revision
        if include is not None:
            body["include"] = include
        return await self._call("POST", "/v1/downloads", body)

    async def downloads(self) -> list[dict[str, Any]] | None:
        """The engine's download jobs in queue order (id, repo, state, done_bytes, total_bytes); None: no engine."""
        document = await self._call("GET", "/v1/downloads")
        return None if document is None else list(document["jobs"])

    async def wait_gone(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        """True once the socket file is gone (the engine removes it last, before releasing its lock)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.socket.exists():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True


async def _error_of(response: aiohttp.ClientResponse) -> str:
    import aiohttp

    try:
        document = await response.json()
    except (aiohttp.ContentTypeError, ValueError):
        return f"the engine answered {response.status}"
    message = document.get("error") if isinstance(document, dict) else None
    return str(message) if message else f"the engine answered {response.status}"


def same_code(info: dict[str, Any]) -> bool:
    """Whether the engine that answered runs this face's code (editable installs keep the version across changes,
    so the handshake compares a fingerprint of the code): a face meeting another engine's code says so."""
    from workbench.core.engine_home import code_fingerprint

    return info.get("fingerprint") == code_fingerprint()


def engine_info_sync(socket: Path, timeout_s: float = TIMEOUT_S) -> dict[str, Any] | None:
    """:meth:`EngineClient.engine_info` from code without an event loop (a starter, a thread)."""
    return asyncio.run(EngineClient(socket, timeout_s).engine_info())
