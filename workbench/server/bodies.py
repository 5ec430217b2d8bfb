"""Reading a request's body with a bound: ``content.read(n)`` answers what has arrived so far (a body larger than
one socket read comes in pieces), so read until the end or one byte past the limit."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is larger (the caller refuses it: 413)."""
    body = bytearray()
    while len(body) <= limit and (chunk := await request.content.read(limit + 1 - len(body))):
        body += chunk
    return bytes(body)


class BadRequest(ValueError):
    """A request a route refuses: ``status`` and why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_json_object(body: bytes, keys: frozenset[str], limit: int, shape: str = "",
                      empty_is_object: bool = False) -> dict[str, Any]:  # fmt: skip
    """The JSON object of a body read whole: at most ``limit`` bytes (413), an object (``shape`` says which), no key
    outside ``keys``; BadRequest otherwise. ``empty_is_object``: no body at all means ``{}``."""
    if len(body) > limit:
        raise BadRequest(f"the body is larger than {limit} bytes", 413)
    if empty_is_object and not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None
    return checked_keys(document, keys, shape)


def checked_keys(document: Any, keys: frozenset[str], shape: str = "") -> dict[str, Any]:
    """``document`` when it is an object holding none but ``keys``; BadRequest otherwise."""
    if not isinstance(document, dict):
        raise BadRequest(f"the body must be a JSON object{': ' + shape if shape else ''}")
    if unknown := sorted(set(document) - keys):
        known = ", ".join(sorted(keys)) or "none"
        raise BadRequest(f"unknown key(s): {', '.join(repr(k)[:60] for k in unknown[:5])} (known: {known})")
    return document


async def read_json_object(request: web.Request, keys: frozenset[str], limit: int, shape: str = "") -> dict[str, Any]:
    """The JSON object of a request's body (none: ``{}``), read with a bound: see :func:`parse_json_object`."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"the body is larger than {limit} bytes", 413)  # without reading it
    return parse_json_object(await read_bounded(request, limit), keys, limit, shape, empty_is_object=True)
