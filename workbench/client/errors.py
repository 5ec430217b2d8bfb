"""What a call to the engine can fail with, in a module without aiohttp (the blocking calls use it before the
client's imports are loaded)."""

from __future__ import annotations


class EngineRequestError(Exception):
    """The engine refused a request (a 4xx or 5xx); the message is the engine's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EngineNotRunning(Exception):
    """No engine answers on the socket (for the streamed calls; the plain ones answer None)."""


class EngineGone(Exception):
    """The engine went away in the middle of a streamed answer (killed, stopped, or silent past the timeout)."""
