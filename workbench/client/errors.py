"""What a call to the engine can fail with, in a module without aiohttp (the blocking calls use it before the
client's imports are loaded)."""

from __future__ import annotations

from typing import Any


class EngineRequestError(Exception):
    """The engine refused a request (a 4xx or 5xx); the message is the engine's, ``document`` its whole answer
    (a route may add fields to its ``error``: the known ids of an unknown model, notes)."""

    def __init__(self, status: int, message: str, document: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.document = document or {}


class EngineNotRunning(Exception):
    """No engine answers on the socket (for the streamed calls; the plain ones answer None)."""


class EngineGone(Exception):
    """The engine went away in the middle of a streamed answer (killed, stopped, or silent past the timeout)."""
