"""The engine's download routes, over the engine's queue (``services.downloads``).

- ``POST /v1/downloads`` ``{"repo", "revision"?, "files"? | "include"? | "all_files"?, "endpoint"?, "token"?}``
  queues a repo (the existing job when it is queued already) and answers its row;
- ``GET /v1/downloads`` ``{"jobs": [row, ...]}`` in queue order; ``GET /v1/downloads/{id}`` one row;
- ``POST /v1/downloads/{id}/pause|resume|cancel|retry`` (no body, or ``{}``) and ``POST /v1/downloads/{id}/move``
  ``{"by": -1 | 1 | ...}`` act on one job and answer its row; 409 when the job's state does not allow it;
- ``POST /v1/downloads/cancel`` ``{"repo", "revision"?}`` cancels that repo's unfinished jobs (what
  ``workbench pull --cancel`` sends): ``{"cancelled": [row, ...]}``, 404 when it has none;
- ``POST /v1/downloads/pause-all|resume-all`` ``{"jobs": [row, ...]}``; ``POST /v1/downloads/forget-finished``
  (done and cancelled jobs leave the list, their files stay) ``{"forgotten": N}``.

A row (:func:`job_row`): ``id, repo, revision, state, position, done_bytes, total_bytes, speed_bps, eta_s,
files_done, files_total, error, message, resume_at, commit, snapshot, in_cache, files: [{path, size, done_bytes,
state, error}]``. Errors are ``{"error": "..."}``: 400 a bad body or id, 404 an unknown job, 409 a state that
refuses the action, 413 a body over MAX_BODY_BYTES.

The engine owns the queue: it starts it when it starts, which resumes what an earlier engine left queued or
downloading (from the bytes on disk, after a stop or a kill -9 alike), and closes it when it stops (the transfers
stop at once and keep their bytes and states for the next start). A user's pause stays paused.

Which hub: the face's own ``HF_ENDPOINT`` / ``HF_TOKEN`` when it sends them (``endpoint``, ``token``), for that job
only and in memory only (never written to SQLite, never logged: see HubAccess); else the engine's own environment.
A job resumed by a later engine (after a stop or a crash) uses that engine's environment, until a face queues the
repo again with its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from workbench.core.hub import names as hub_names
from workbench.core.hub.downloads.jobs import ACTIVE, HubAccess, JobState
from workbench.server.bodies import BadRequest, parse_json_object, read_bounded

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.hub.downloads.jobs import JobSnapshot
    from workbench.core.hub.downloads.queue import DownloadManager

MAX_BODY_BYTES = 16 * 1024
MAX_PATTERNS = 64
MAX_FILES = 1024
MAX_PATTERN_CHARS = 1024
MAX_ENDPOINT_CHARS = 2048
MAX_TOKEN_CHARS = 4096
MAX_MOVE = 10_000
SETTLE_WAIT_S = 5.0  # a retry right after a cancel waits this long at most for the transfer to let go
KEYS = frozenset({"repo", "revision", "files", "include", "all_files", "endpoint", "token"})
CANCEL_KEYS = frozenset({"repo", "revision"})
ACTIONS = ("pause", "resume", "cancel", "retry")


class Refused(Exception):
    """An action the job's state does not allow (answered as 409)."""


@dataclass(frozen=True)
class QueueRequest:
    """A checked ``POST /v1/downloads`` body. ``hub`` is None unless the face sent an endpoint or a token."""

    repo: str
    revision: str
    files: list[str] | None
    include: list[str] | None
    all_files: bool
    hub: HubAccess | None  # its repr leaves the token out


def parse_queue(body: bytes) -> QueueRequest:
    """The checked body of ``POST /v1/downloads``, or BadRequest (whose message never holds the token)."""
    shape = '{"repo": "org/name", "revision"?: ..., "include"?: [...]}'
    document = parse_json_object(body, KEYS, MAX_BODY_BYTES, shape)
    repo, revision = _repo(document)
    include = document.get("include")
    if include is not None:
        if not isinstance(include, list) or not include or not all(isinstance(p, str) and p for p in include):
            raise BadRequest("'include' must be a non-empty list of glob patterns (strings)")
        if len(include) > MAX_PATTERNS:
            raise BadRequest(f"'include' holds more than {MAX_PATTERNS} patterns")
        for pattern in include:
            if len(pattern) > MAX_PATTERN_CHARS or any(ord(c) < 0x20 or ord(c) == 0x7F for c in pattern):
                raise BadRequest(f"the pattern {pattern[:80]!r} is too long or holds a control character")
    files = document.get("files")
    if files is not None:
        if not isinstance(files, list) or not files or len(files) > MAX_FILES:
            raise BadRequest(f"'files' must be a non-empty list of at most {MAX_FILES} file paths of the repo")
        try:
            files = [hub_names.check_file_name(name) for name in files]
        except hub_names.BadName as exc:
            raise BadRequest(f"'files': {exc}") from None
    all_files = document.get("all_files", False)
    if not isinstance(all_files, bool):
        raise BadRequest("'all_files' must be true or false")
    if sum((files is not None, include is not None, all_files)) > 1:
        raise BadRequest("'files', 'include' and 'all_files' exclude each other")
    endpoint = _endpoint(document.get("endpoint"))
    token = _token(document.get("token"))
    hub = HubAccess(endpoint, token) if endpoint is not None or token is not None else None
    return QueueRequest(repo, revision, files, include, all_files, hub)


def parse_cancel(body: bytes) -> tuple[str, str | None]:
    """``(repo, revision or None)`` from a ``POST /v1/downloads/cancel`` body, or BadRequest."""
    document = parse_json_object(body, CANCEL_KEYS, MAX_BODY_BYTES, '{"repo": "org/name", "revision"?: ...}')
    repo, revision = _repo(document)
    return repo, revision if "revision" in document else None


def parse_move(body: bytes) -> int:
    """The ``by`` of a ``POST /v1/downloads/{id}/move`` body (negative: sooner), or BadRequest."""
    document = parse_json_object(body, frozenset({"by"}), MAX_BODY_BYTES, '{"by": -1 | 1}')
    by = document.get("by")
    if not isinstance(by, int) or isinstance(by, bool) or by == 0 or abs(by) > MAX_MOVE:
        raise BadRequest(f"'by' must be a non-zero whole number of places, at most {MAX_MOVE} either way "
                         "(-1: one place sooner)")  # fmt: skip
    return by


def parse_empty(body: bytes) -> None:
    """A control's body: nothing, or ``{}``."""
    parse_json_object(body, frozenset(), MAX_BODY_BYTES, "no body, or {}", empty_is_object=True)


def _repo(document: dict[str, Any]) -> tuple[str, str]:
    if "repo" not in document:
        raise BadRequest("'repo' is missing (org/name)")
    try:
        return hub_names.check_repo_id(document["repo"]), hub_names.check_revision(document.get("revision", "main"))
    except hub_names.BadName as exc:
        raise BadRequest(str(exc)) from None


def _endpoint(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ENDPOINT_CHARS:
        raise BadRequest(f"'endpoint' must be an http(s) URL of at most {MAX_ENDPOINT_CHARS} characters")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value):
        raise BadRequest("'endpoint' holds a space, a control character or a non-ASCII character")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as exc:
        raise BadRequest(f"'endpoint' is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise BadRequest(f"'endpoint' must be an http(s) URL such as https://huggingface.co, not {value[:80]!r}")
    return value.rstrip("/")


def _token(value: Any) -> str | None:
    """A token: 1..MAX_TOKEN_CHARS printable ASCII characters, no space. Never quoted back."""
    if value is None:
        return None
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_TOKEN_CHARS
            or any(not 0x21 <= ord(c) <= 0x7E for c in value)):  # fmt: skip
        raise BadRequest(f"'token' must be 1 to {MAX_TOKEN_CHARS} printable ASCII characters without spaces")
    return value


def job_row(job: JobSnapshot, snapshot: str | None = None, in_cache: bool | None = None) -> dict[str, Any]:
    """What the routes say about a job (see the module's docstring); ``snapshot``: its folder in the cache and
    ``in_cache``: whether all its files are still there (both for a done job, else None)."""
    files = [{"path": f.path, "size": f.size, "done_bytes": f.done_bytes, "state": str(f.state), "error": f.error}
             for f in job.file_progress]  # fmt: skip
    return {"id": job.id, "repo": job.repo_id, "revision": job.revision, "state": str(job.state),
            "position": job.position, "done_bytes": job.done_bytes, "total_bytes": job.total_bytes,
            "speed_bps": round(job.speed_bps, 1), "eta_s": None if job.eta_s is None else round(job.eta_s, 1),
            "files_done": job.files_done, "files_total": job.files_total, "error": job.error, "message": job.message,
            "resume_at": job.resume_at, "commit": job.commit, "snapshot": snapshot, "in_cache": in_cache,
            "files": files}  # fmt: skip


class DownloadRoutes:
    """The routes over the engine's queue (the engine starts and closes the queue itself)."""

    def __init__(self, services: Services, queue_changed: Callable[[], None] = lambda: None) -> None:
        """``queue_changed``: the queue's list changed in a way its listeners do not hear (jobs forgotten)."""
        self.services = services  # its queue is built on first use, on the loop
        self.queue_changed = queue_changed

    @property
    def downloads(self) -> DownloadManager:
        return self.services.downloads

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/downloads", self.queue),
            web.get("/v1/downloads", self.list),
            web.post("/v1/downloads/cancel", self.cancel_repo),
            web.post("/v1/downloads/pause-all", self.every),
            web.post("/v1/downloads/resume-all", self.every),
            web.post("/v1/downloads/forget-finished", self.every),
            web.get("/v1/downloads/{id}", self.one),
            web.post("/v1/downloads/{id}/move", self.move),
            *(web.post(f"/v1/downloads/{{id}}/{action}", self.control) for action in ACTIONS),
        ]

    def row(self, job_id: int) -> dict[str, Any]:
        return self._row(self.downloads.job(job_id))

    def _row(self, job: JobSnapshot) -> dict[str, Any]:
        if job.state is not JobState.DONE:
            return job_row(job)
        snapshot = self.downloads.snapshot_path(job.id)
        return job_row(job, None if snapshot is None else str(snapshot), self.downloads.in_cache(job.id))

    async def queue(self, request: web.Request) -> web.Response:
        body, refused = await _body(request)
        if refused is not None:
            return refused
        try:
            asked = parse_queue(body)
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        job = self.downloads.enqueue(asked.repo, asked.revision, asked.files, include=asked.include,
                                     all_files=asked.all_files, hub=asked.hub)  # fmt: skip
        return web.json_response(self.row(job.id))

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": [self._row(job) for job in self.downloads.jobs()]})

    async def one(self, request: web.Request) -> web.Response:
        job_id, refused = self._job_id(request)
        if refused is not None:
            return refused
        return web.json_response(self.row(job_id))

    async def control(self, request: web.Request) -> web.Response:
        job_id, refused = self._job_id(request)
        if refused is not None:
            return refused
        body, refused = await _body(request)
        if refused is not None:
            return refused
        action = request.path.rsplit("/", 1)[1]
        try:
            parse_empty(body)
            if action == "retry" and self.downloads.job(job_id).state in (JobState.FAILED, JobState.CANCELLED):
                with contextlib.suppress(TimeoutError):  # just cancelled: its transfer lets go of its files first
                    await self.downloads.wait(job_id, SETTLE_WAIT_S)
            _act(self.downloads, job_id, action)
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        except Refused as exc:
            return _refused(str(exc), 409)
        return web.json_response(self.row(job_id))

    async def move(self, request: web.Request) -> web.Response:
        job_id, refused = self._job_id(request)
        if refused is not None:
            return refused
        body, refused = await _body(request)
        if refused is not None:
            return refused
        try:
            by = parse_move(body)
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        self.downloads.move(job_id, by)
        return web.json_response(self.row(job_id))

    async def cancel_repo(self, request: web.Request) -> web.Response:
        body, refused = await _body(request)
        if refused is not None:
            return refused
        try:
            repo, revision = parse_cancel(body)
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        queue = self.downloads
        jobs = [job for job in queue.jobs() if job.repo_id == repo and (revision is None or job.revision == revision)
                and job.state not in (JobState.DONE, JobState.CANCELLED)]  # fmt: skip
        if not jobs:
            where = repo if revision is None else f"{repo}@{revision}"
            return _refused(f"no unfinished download of {where}", 404)
        for job in jobs:
            queue.cancel(job.id)
        return web.json_response({"cancelled": [self.row(job.id) for job in jobs]})

    async def every(self, request: web.Request) -> web.Response:
        """pause-all, resume-all (every job's row after) and forget-finished (``{"forgotten": N}``)."""
        body, refused = await _body(request)
        if refused is not None:
            return refused
        try:
            parse_empty(body)
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        action = request.path.rsplit("/", 1)[1]
        if action == "forget-finished":
            forgotten = self.downloads.forget_finished()
            if forgotten:
                self.queue_changed()
            return web.json_response({"forgotten": forgotten})
        if action == "pause-all":
            self.downloads.pause_all()
        else:
            self.downloads.resume_all()
        return web.json_response({"jobs": [self._row(job) for job in self.downloads.jobs()]})

    def _job_id(self, request: web.Request) -> tuple[int, web.Response | None]:
        text = request.match_info["id"]
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            return 0, _refused(f"{text[:40]!r} is not a download job id (a whole number)")
        try:
            return self.downloads.job(int(text)).id, None
        except KeyError:
            return 0, _refused(f"no download job with id {int(text)}", 404)


def _act(queue: DownloadManager, job_id: int, action: str) -> None:
    """Pause, resume, cancel or retry a job; Refused when its state does not allow it (a repeat is no error)."""
    state = queue.job(job_id).state
    if action == "pause":
        if state is not JobState.QUEUED and state is not JobState.PAUSED and state not in ACTIVE:
            raise Refused(f"download job {job_id} is {state}: only a queued or running job pauses")
        queue.pause(job_id)
    elif action == "resume":
        if state in (JobState.FAILED, JobState.CANCELLED, JobState.DONE):
            raise Refused(f"download job {job_id} is {state}: nothing to resume" +
                          ("" if state is JobState.DONE else " (retry it)"))  # fmt: skip
        queue.resume(job_id)
    elif action == "cancel":
        if state is JobState.DONE:
            raise Refused(f"download job {job_id} is done: nothing to cancel")
        queue.cancel(job_id)
    elif not queue.retry(job_id):
        raise Refused(f"download job {job_id} is {state}: only a failed or cancelled job is retried")


async def _body(request: web.Request) -> tuple[bytes, web.Response | None]:
    """The body, read bounded; or the 413 answer when it is larger than MAX_BODY_BYTES."""
    too_big = _refused(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return b"", too_big
    body = await read_bounded(request, MAX_BODY_BYTES)
    return (b"", too_big) if len(body) > MAX_BODY_BYTES else (body, None)


def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
