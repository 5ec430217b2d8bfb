"""The engine's download routes: ``POST /v1/downloads`` queues a repo, ``GET /v1/downloads`` lists the jobs.

The engine owns the queue (``services.downloads``): it starts it when it starts, which resumes what an earlier
engine left queued or downloading (from the bytes on disk, after a stop or a kill -9 alike), and closes it when it
stops (the transfers stop at once and keep their bytes and states for the next start). A user's pause stays paused.

Which hub: the engine's own ``HF_ENDPOINT`` (read when the engine starts; the face that started it passed its
environment on). A request may not name another hub or carry a token yet: both are unknown keys, refused.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.hub import names as hub_names
from workbench.server.bodies import read_bounded

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.hub.downloads.jobs import JobSnapshot

MAX_BODY_BYTES = 16 * 1024
MAX_PATTERNS = 64
MAX_PATTERN_CHARS = 1024
KEYS = frozenset({"repo", "revision", "include"})


class BadRequest(ValueError):
    """A body the route refuses; the message says why (answered as 400)."""


def parse_download(body: bytes) -> tuple[str, str, list[str] | None]:
    """``(repo, revision, include)`` from a ``POST /v1/downloads`` body, or BadRequest."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest('the body must be a JSON object: {"repo": "org/name", "revision"?: ..., "include"?: [...]}')
    if unknown := sorted(set(document) - KEYS):
        raise BadRequest(f"unknown key(s): {', '.join(repr(k)[:60] for k in unknown[:5])} (known: include, repo, "
                         "revision)")  # fmt: skip
    if "repo" not in document:
        raise BadRequest("'repo' is missing (org/name)")
    try:
        repo = hub_names.check_repo_id(document["repo"])
        revision = hub_names.check_revision(document.get("revision", "main"))
    except hub_names.BadName as exc:
        raise BadRequest(str(exc)) from None
    include = document.get("include")
    if include is not None:
        if not isinstance(include, list) or not include or not all(isinstance(p, str) and p for p in include):
            raise BadRequest("'include' must be a non-empty list of glob patterns (strings)")
        if len(include) > MAX_PATTERNS:
            raise BadRequest(f"'include' holds more than {MAX_PATTERNS} patterns")
        for pattern in include:
            if len(pattern) > MAX_PATTERN_CHARS or any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
                raise BadRequest(f"the pattern {pattern[:80]!r} is too long or holds a control character")
    return repo, revision, include


def job_row(job: JobSnapshot) -> dict[str, Any]:
    return {"id": job.id, "repo": job.repo_id, "state": str(job.state), "done_bytes": job.done_bytes,
            "total_bytes": job.total_bytes}  # fmt: skip


class DownloadRoutes:
    """The routes over the engine's queue (the engine starts and closes the queue itself)."""

    def __init__(self, services: Services) -> None:
        self.services = services  # its queue is built on first use, on the loop

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/downloads", self.queue), web.get("/v1/downloads", self.list)]

    async def queue(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
        body = await read_bounded(request, MAX_BODY_BYTES)
        try:
            repo, revision, include = parse_download(body)
        except BadRequest as exc:
            return _refused(str(exc), 413 if len(body) > MAX_BODY_BYTES else 400)
        job = self.services.downloads.enqueue(repo, revision, include=include)
        return web.json_response({"id": job.id, "repo": job.repo_id, "state": str(job.state)})

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": [job_row(job) for job in self.services.downloads.jobs()]})


def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
