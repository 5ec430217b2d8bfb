"""Plain JSON calls to the engine that block until answered (bounded by a timeout), over its Unix socket, with the
standard library only: for a face's synchronous code (the Chat pane's intents) and before aiohttp is loaded.

A call on the engine's socket takes a millisecond or two; call it from the face's loop only for requests the
engine answers at once (no model load, no generation).
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from workbench.client.errors import EngineNotRunning, EngineRequestError

TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a long conversation's messages, read back whole


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("engine", timeout=timeout_s)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def call(path: Path, method: str, route: str, body: dict[str, Any] | None = None,
         timeout_s: float = TIMEOUT_S) -> dict[str, Any]:  # fmt: skip
    """The engine's JSON answer; EngineNotRunning when nothing answers on ``path`` (or it breaks off or is silent
    past ``timeout_s``), EngineRequestError when it refuses (the engine's message)."""
    connection = UnixConnection(Path(path), timeout_s)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        connection.request(method, route, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:  # missing, refused, reset, timed out
        raise EngineNotRunning(f"no engine answers on {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
    try:
        document = json.loads(raw) if len(raw) <= MAX_ANSWER_BYTES else None
    except (ValueError, UnicodeDecodeError):
        document = None
    if response.status >= 400:
        message = document.get("error") if isinstance(document, dict) else None
        raise EngineRequestError(response.status, str(message) if message else f"the engine answered {response.status}")
    if not isinstance(document, dict):
        raise EngineRequestError(response.status, "the engine's answer is not a JSON object")
    return document
