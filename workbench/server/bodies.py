"""Reading a request's body with a bound: ``content.read(n)`` answers what has arrived so far (a body larger than
one socket read comes in pieces), so read until the end or one byte past the limit."""

from __future__ import annotations

from aiohttp import web


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is larger (the caller refuses it: 413)."""
    body = bytearray()
    while len(body) <= limit and (chunk := await request.content.read(limit + 1 - len(body))):
        body += chunk
    return bytes(body)
