"""What the server lets in: the body size and the number of chat requests at once (:class:`ServeLimits`,
[serve] in config.toml; past them 413, or 503 with Retry-After), the API key check (401) and whether a host is
loopback only (:func:`is_loopback`: beyond it, serving needs a key)."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from workbench.server.errors import ApiError

MB = 1024 * 1024
RETRY_AFTER_S = 5  # what a 503 for a full queue suggests; a short answer of a small model takes about that


@dataclass(frozen=True)
class ServeLimits:
    """How much the server takes at once ([serve] in config.toml)."""

    max_body_bytes: int = 8 * MB
    max_waiting: int = 32  # chat requests answered or waiting for a model at once


class WaitingRequests:
    """Counts the chat requests in progress; past the limit a request is refused at once (503), never queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.count >= self.limit:
            raise ApiError(503, f"the server is busy: {self.limit} requests are already waiting for an answer; "
                           f"try again in {RETRY_AFTER_S} s", "server_error", code="server_busy",
                           headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


def require_key(key: str) -> Callable[[web.Request, Handler], Any]:
    """A middleware that answers 401 unless the request carries ``Authorization: Bearer KEY`` (compared in
    constant time, so the answer's timing does not tell how much of a guess was right)."""
    expected = key.encode()

    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given_bytes = given.strip().encode("utf-8", "backslashreplace")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(given_bytes, expected)):
            raise ApiError(401, "a valid API key is required: send it as 'Authorization: Bearer KEY'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return await handler(request)

    return check_key


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only: ``localhost`` or a loopback address. Any other name may
    resolve to an address others reach, and "" or 0.0.0.0 listen everywhere."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class KeyRequiredError(ValueError):
    """Serving beyond loopback without an API key."""


__all__ = ["MB", "RETRY_AFTER_S", "KeyRequiredError", "ServeLimits", "WaitingRequests", "is_loopback", "require_key"]
