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

from workbench.client.errors import EngineGone, EngineNotRunning, EngineRequestError

if TYPE_CHECKING:
    import aiohttp

# aiohttp (~0.13 s to import) is imported by the calls, not here: the TUI builds its engine client before its first
# frame and makes the first call after it.
TIMEOUT_S = 5.0
STREAM_READ_TIMEOUT_S = 20.0  # the engine sends a heartbeat line every 5 s while a stream is open
MAX_LINE_BYTES = 4 * 1024 * 1024
LISTENER_OPEN_TIMEOUT_S = 180.0  # on first use the engine imports the default chat model (about 10 s) first
LISTENER_CLOSE_TIMEOUT_S = 20.0  # running generations are stopped, then the port closes


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
                        raise await _refusal(response)
                    document: dict[str, Any] = await response.json()
                    return document
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError):
            return None

    _call = call_json

    async def call_bytes(self, method: str, route: str, max_bytes: int,
                         timeout_s: float | None = None) -> tuple[bytes, dict[str, str]] | None:  # fmt: skip
        """One request and its body as bytes with its headers (a binary answer: vectors); None when no engine
        answers, EngineRequestError when it refuses or the body is larger than ``max_bytes``."""
        import aiohttp

        if not self.socket.exists():
            return None
        connector = aiohttp.UnixConnector(path=str(self.socket))
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s, connect=self.timeout_s)
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.request(method, f"http://engine{route}") as response:
                    if response.status >= 400:
                        raise await _refusal(response)
                    if response.content_length is None or response.content_length > max_bytes:
                        raise EngineRequestError(response.status, f"the answer is larger than {max_bytes} bytes "
                                                 "(or of no stated length)")  # fmt: skip
                    return await response.read(), dict(response.headers)
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionRefusedError):
            return None

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
                    raise await _refusal(response)
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

    async def queue_download(self, repo: str, revision: str | None = None, include: list[str] | None = None, *,
                             files: list[str] | None = None, all_files: bool = False, endpoint: str | None = None,
                             token: str | None = None) -> dict[str, Any] | None:  # fmt: skip
        """Queue ``repo`` in the engine's download queue; its row (workbench.server.engine_downloads: id, repo,
        state, ...), the existing job's when the repo is queued already. EngineRequestError when the engine refuses
        it, None when no engine runs.

        ``endpoint`` / ``token``: the face's own HF_ENDPOINT / HF_TOKEN, for this job only (the engine keeps them in
        memory, never on disk); without them the engine uses its own environment."""
        body: dict[str, Any] = {"repo": repo}
        if revision is not None:
            body["revision"] = revision
        if include is not None:
            body["include"] = include
        if files is not None:
            body["files"] = files
        if all_files:
            body["all_files"] = True
        if endpoint is not None:
            body["endpoint"] = endpoint
        if token is not None:
            body["token"] = token
        return await self._call("POST", "/v1/downloads", body)

    async def downloads(self) -> list[dict[str, Any]] | None:
        """The engine's download jobs in queue order (rows: id, repo, state, done_bytes, total_bytes, ...); None: no
        engine."""
        document = await self._call("GET", "/v1/downloads")
        return None if document is None else list(document["jobs"])

    async def download(self, job_id: int) -> dict[str, Any] | None:
        """One download job's row; EngineRequestError (404) when the engine has no such job, None: no engine."""
        return await self._call("GET", f"/v1/downloads/{int(job_id)}")

    async def download_action(self, job_id: int, action: str, by: int | None = None) -> dict[str, Any] | None:
        """``pause``, ``resume``, ``cancel``, ``retry`` or ``move`` (``by`` places; negative: sooner) one job; its
        row after. EngineRequestError: 404 no such job, 409 its state does not allow it."""
        if action not in ("pause", "resume", "cancel", "retry", "move"):
            raise ValueError(f"no download action {action!r}")
        body = {"by": by} if action == "move" else None
        return await self._call("POST", f"/v1/downloads/{int(job_id)}/{action}", body)

    async def downloads_action(self, action: str) -> dict[str, Any] | None:
        """``pause-all`` or ``resume-all`` (``{"jobs": [row, ...]}`` after) or ``forget-finished``
        (``{"forgotten": N}``); None: no engine."""
        if action not in ("pause-all", "resume-all", "forget-finished"):
            raise ValueError(f"no downloads action {action!r}")
        return await self._call("POST", f"/v1/downloads/{action}")

    async def cancel_downloads(self, repo: str, revision: str | None = None) -> list[dict[str, Any]] | None:
        """Cancel the repo's unfinished jobs (of ``revision`` only, when given); their rows. EngineRequestError
        (404) when it has none, None: no engine."""
        body: dict[str, Any] = {"repo": repo}
        if revision is not None:
            body["revision"] = revision
        document = await self._call("POST", "/v1/downloads/cancel", body)
        return None if document is None else list(document["cancelled"])

    # --- the OpenAI-compatible listeners (workbench.server.engine_listeners) ---------------------------

    async def open_listener(self, host: str, port: int, api_key: str | None = None, keep: bool = False,
                            timeout_s: float = LISTENER_OPEN_TIMEOUT_S) -> dict[str, Any] | None:  # fmt: skip
        """Ask the engine to serve its OpenAI-compatible API on ``host:port``: the listener's row (``id``, ``url``,
        ...); EngineRequestError when refused (409: the port is taken), None when no engine runs. Unless ``keep``,
        it closes when no face reads its :meth:`listener_requests` any more. On first use the engine imports the
        default chat model before it listens, hence the longer timeout."""
        body: dict[str, Any] = {"host": host, "port": port}
        if api_key is not None:
            body["api_key"] = api_key
        if keep:
            body["keep"] = True
        return await EngineClient(self.socket, max(self.timeout_s, timeout_s))._call("POST", "/v1/listeners", body)

    async def listeners(self) -> dict[str, Any] | None:
        """``{"listeners": [row, ...], "config_error": str | None}``; None when no engine runs."""
        return await self._call("GET", "/v1/listeners")

    async def close_listener(self, listener_id: str) -> dict[str, Any] | None:
        """Close a listener (answers once its port is closed); EngineRequestError(404) when there is none."""
        return await EngineClient(self.socket, max(self.timeout_s, LISTENER_CLOSE_TIMEOUT_S))._call(
            "DELETE", f"/v1/listeners/{listener_id}")  # fmt: skip

    def listener_requests(self, listener_id: str) -> AsyncIterator[dict[str, Any]]:
        """A listener's stream: its row (type "listener"), a line per answered request (type "request"), and
        "closed" with the reason when it closes; the stream just ends when the engine stops."""
        return self.stream("GET", f"/v1/listeners/{listener_id}/requests")

    def chat(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One answer streamed (workbench.server.engine_chat): job, note, trimmed, token, then finished or error."""
        return self.stream("POST", "/v1/chat", body)

    def compare(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Two answers streamed (workbench.server.engine_compare_once): job, note, plan, then per side token, trimmed,
        finished or error; stopped as an answer is (:meth:`stop_chat`)."""
        return self.stream("POST", "/v1/compare", body)

    async def stop_chat(self, job: str) -> dict[str, Any] | None:
        """Stop a streamed answer cleanly (it ends within a token, with its figures); None when no engine runs."""
        return await self._call("POST", f"/v1/chat/{job}/stop")

    async def wait_gone(self, timeout_s: float, poll_s: float = 0.05) -> bool:
        """True once the socket file is gone (the engine removes it last, before releasing its lock)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.socket.exists():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True


async def _refusal(response: aiohttp.ClientResponse) -> EngineRequestError:
    import aiohttp

    try:
        document = await response.json()
    except (aiohttp.ContentTypeError, ValueError):
        return EngineRequestError(response.status, f"the engine answered {response.status}")
    if not isinstance(document, dict):
        return EngineRequestError(response.status, f"the engine answered {response.status}")
    message = document.get("error")
    return EngineRequestError(response.status, str(message) if message else f"the engine answered {response.status}",
                              document)  # fmt: skip


def same_code(info: dict[str, Any]) -> bool:
    """Whether the engine that answered runs this face's code (editable installs keep the version across changes,
    so the handshake compares a fingerprint of the code): a face meeting another engine's code says so."""
    from workbench.core.engine_home import code_fingerprint

    return info.get("fingerprint") == code_fingerprint()


def engine_info_sync(socket: Path, timeout_s: float = TIMEOUT_S) -> dict[str, Any] | None:
    """:meth:`EngineClient.engine_info` from code without an event loop (a starter, a thread)."""
    return asyncio.run(EngineClient(socket, timeout_s).engine_info())
