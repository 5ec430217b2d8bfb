"""The engine's embedding routes: a corpus is embedded by the engine, so the job outlives the face that asked.

``POST /v1/embeddings/jobs`` starts a job: ``{"model": id, "texts": [...]}`` or ``{"model": id, "corpus": {"path":
ABSOLUTE, "column"?: name}}`` (the engine reads the corpus), with an optional ``label`` (what ``ps`` shows) and
``face``. The job runs in a task the engine owns (the engine's one Embedder: the model leased from its manager,
batches on its inference thread, vectors written to the EmbeddingCache under the data folder) and shows on the job
board while it runs. Jobs of one model take turns (the cache of a model has one writer at a time); a second request
for the same model and texts while a job runs joins that job (``"joined": true``).
``GET /v1/embeddings/jobs/{id}/events`` streams it (NDJSON): ``{"type": "progress", "state", "done", "total"}`` from
where it is, latest-wins, then ``{"type": "end", "state": "done" | "cancelled" | "error", ...}``. Closing that
stream does not stop the job: it finishes and every vector stays cached. ``POST .../cancel`` stops it before its
next batch (finished batches stay cached). ``GET .../vectors`` answers a finished job's vectors as little-endian
float32 rows (``X-Rows``, ``X-Dimensions``): a few recent results are kept; an older one is 404, and the same job
started again answers at once from the cache. ``GET /v1/embeddings/jobs/{id}`` is the job's state.
``POST /v1/embeddings/query`` ``{"model", "text"}`` answers one normalised vector (JSON numbers, exact float32).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.models.spec import ModelManagerError, ModelRole, UnknownModelError
from workbench.server.bodies import BadRequest, checked_keys, read_bounded
from workbench.server.ndjson import HEARTBEAT_S, NdjsonStream, PeerGone

if TYPE_CHECKING:
    import numpy as np

    from workbench.bootstrap import Services
    from workbench.core.embeddings.embedder import Embedder
    from workbench.server.engine_jobs import Job, JobBoard

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024  # a corpus of 100k passages of ~300 characters
MAX_TEXTS = 200_000
MAX_QUERY_BYTES = 256 * 1024
MAX_MODEL_CHARS = 512
MAX_LABEL_CHARS = 200
MAX_PROBLEMS = 1000  # the rows a job's end lists as skipped (problem_count says how many there were)
PARSE_IN_THREAD_BYTES = 512 * 1024  # a larger body is parsed (and its texts hashed) off the loop
KEEP_RESULTS = 8  # finished jobs whose vectors are kept for a face to fetch
KEEP_RESULT_S = 600.0
KEEP_RESULT_BYTES = 512 * 1024 * 1024
CLOSE_TIMEOUT_S = 10.0  # how long the engine's stop waits for the batches in flight
JOB_KEYS = frozenset({"model", "texts", "corpus", "label", "face"})
CORPUS_KEYS = frozenset({"path", "column"})
QUERY_KEYS = frozenset({"model", "text"})
FACE = re.compile(r"[a-z][a-z0-9-]{0,15}")
ID = r"{id:emb-\d{1,18}}"


# --- reading requests --------------------------------------------------------------------------------


async def read_json(request: web.Request, limit: int) -> Any:
    """The body's JSON (parsed in a thread when large); 413 past ``limit``, 400 when not JSON."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"the body is larger than {limit} bytes", 413)
    body = await read_bounded(request, limit)
    if len(body) > limit:
        raise BadRequest(f"the body is larger than {limit} bytes", 413)
    try:
        if len(body) > PARSE_IN_THREAD_BYTES:
            return await asyncio.to_thread(json.loads, body)
        return json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None


def checked_model(document: dict[str, Any]) -> str:
    model_id = document.get("model")
    if not isinstance(model_id, str) or not model_id or len(model_id) > MAX_MODEL_CHARS:
        raise BadRequest(f"'model' must be a model id (a string of at most {MAX_MODEL_CHARS} characters)")
    return model_id


def short_text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or any(ord(c) < 0x20 for c in value):
        raise BadRequest(f"'{name}' must be a line of at most {limit} characters")
    return value


class JobRequest:
    """What ``POST /v1/embeddings/jobs`` asked for, checked."""

    def __init__(self, document: Any) -> None:
        document = checked_keys(document, JOB_KEYS, '{"model": id, "texts": [...]} or {"model": id, "corpus": '
                                                       '{"path": ABSOLUTE, "column"?: name}}')  # fmt: skip
        self.model_id = checked_model(document)
        face = document.get("face", "tui")
        if not isinstance(face, str) or not FACE.fullmatch(face):
            raise BadRequest("'face' must be a short lowercase name (tui, cli, …)")
        self.face = face
        self.texts: list[str] | None = None
        self.corpus: tuple[Path, str | None] | None = None
        if ("texts" in document) == ("corpus" in document):
            raise BadRequest("give either 'texts' (a list of strings) or 'corpus' ({\"path\": ABSOLUTE})")
        if "texts" in document:
            texts = document["texts"]
            if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
                raise BadRequest("'texts' must be a non-empty list of strings")
            if len(texts) > MAX_TEXTS:
                raise BadRequest(f"'texts' holds {len(texts)} texts; the engine takes at most {MAX_TEXTS} a job", 413)
            self.texts = texts
            digest = hashlib.sha256()
            try:
                for text in texts:
                    digest.update(hashlib.sha256(text.encode("utf-8")).digest())
            except UnicodeEncodeError:
                raise BadRequest("a text holds a lone surrogate (not valid Unicode)") from None
            self.key = (self.model_id, "texts", digest.hexdigest())
            label = f"{len(texts)} texts"
        else:
            corpus = checked_keys(document["corpus"], CORPUS_KEYS, '{"path": ABSOLUTE, "column"?: name}')
            raw = corpus.get("path")
            if not isinstance(raw, str) or not raw or len(raw) > 4096 or "\0" in raw:
                raise BadRequest("'corpus.path' must be a path")
            path = Path(raw)
            if not path.is_absolute():
                raise BadRequest(f"'corpus.path' must be absolute (the face makes it so): {raw[:200]!r}")
            column = corpus.get("column")
            if column is not None:
                column = short_text(column, "corpus.column", MAX_LABEL_CHARS)
            self.corpus = (path, column)
            self.key = (self.model_id, "corpus", f"{path}::{column or ''}")
            label = f"{path.name}::{column}" if column else path.name
        self.label = short_text(document["label"], "label", MAX_LABEL_CHARS) if "label" in document else label


def parse_query(document: Any) -> tuple[str, str]:
    document = checked_keys(document, QUERY_KEYS, '{"model": id, "text": ...}')
    text = document.get("text")
    if not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    return checked_model(document), text


def refused(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, UnknownModelError):
        return "unknown_model"
    return "model" if isinstance(exc, ModelManagerError) else "failed"


# --- one job ----------------------------------------------------------------------------------------


class EmbeddingJob:
    """A job the engine runs: where it is (latest-wins: a late face needs only that), how it ended, its vectors
    once done (until the routes let go of them). Every change wakes the faces streaming it."""

    def __init__(self, request: JobRequest, board_job: Job) -> None:
        self.request = request
        self.board_job = board_job
        self.model_id = request.model_id
        self.texts = request.texts
        self.total = len(request.texts) if request.texts is not None else 0
        self.done = 0
        self.state = "queued"
        self.cancel = threading.Event()
        self.cancel_note = "cancelled"  # what the end says when the task itself is cancelled
        self.ended: dict[str, Any] | None = None
        self.ended_at = 0.0
        self.vectors: np.ndarray | None = None
        self.problems: list[str] = []
        self.problem_count = 0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.board_job.id

    def progress(self) -> dict[str, Any]:
        return {"type": "progress", "state": self.state, "done": self.done, "total": self.total}

    def document(self) -> dict[str, Any]:
        """``GET /v1/embeddings/jobs/{id}``."""
        return {"id": self.id, "model": self.model_id, "what": self.board_job.what, "state": self.state,
                "done": self.done, "total": self.total, "end": self.ended}  # fmt: skip

    def moved(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self._wake()

    def started(self) -> None:
        self.state = "running"
        self._wake()

    def end(self, state: str, **detail: Any) -> None:
        self.state = state
        self.ended = {"type": "end", "state": state, "done": self.done, "total": self.total, **detail}
        self.ended_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


# --- the routes --------------------------------------------------------------------------------------


class EmbeddingRoutes:
    """The embedding routes over the engine's Embedder; the jobs they start run until they end or the engine stops
    (``close``: on the app's shutdown, before the services close)."""

    def __init__(self, services: Services, board: JobBoard, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.services = services
        self.board = board
        self.heartbeat_s = heartbeat_s
        self.jobs: dict[str, EmbeddingJob] = {}  # running, and finished ones kept for their vectors
        self.running: dict[tuple[str, str, str], EmbeddingJob] = {}  # by what they embed: a repeat joins
        self.finished: OrderedDict[str, EmbeddingJob] = OrderedDict()
        self._turns: dict[str, asyncio.Lock] = {}  # one job per model at a time: its cache has one writer

    def install(self, app: web.Application) -> None:
        app.add_routes([
            web.post("/v1/embeddings/jobs", self.start),
            web.get(f"/v1/embeddings/jobs/{ID}", self.status),
            web.get(f"/v1/embeddings/jobs/{ID}/events", self.events),
            web.post(f"/v1/embeddings/jobs/{ID}/cancel", self.cancel),
            web.get(f"/v1/embeddings/jobs/{ID}/vectors", self.vectors),
            web.post("/v1/embeddings/query", self.query),
        ])  # fmt: skip
        app.on_shutdown.append(self.close)

    @property
    def embedder(self) -> Embedder:
        return self.services.embedder

    def _check_model(self, model_id: str) -> None:
        manager = self.services.manager
        try:
            role = manager.role_of(model_id)
        except UnknownModelError:
            raise BadRequest(f"no model called {model_id!r}", 404) from None
        if role is not ModelRole.EMBED:
            raise BadRequest(f"{model_id!r} is not an embedding model (it is a {role} model)")

    # --- jobs ------------------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        try:
            document = await read_json(request, MAX_BODY_BYTES)
            texts = document.get("texts") if isinstance(document, dict) else None
            many = isinstance(texts, list) and len(texts) > 1000  # checking and hashing them takes a while
            parsed = await asyncio.to_thread(JobRequest, document) if many else JobRequest(document)
            self._check_model(parsed.model_id)
            if parsed.corpus is not None and not parsed.corpus[0].exists():
                raise BadRequest(f"{parsed.corpus[0]}: no such file or folder")
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        job = self.running.get(parsed.key)
        joined = job is not None
        if job is None:
            job = self._run(parsed)
        return web.json_response({"id": job.id, "model": job.model_id, "state": job.state, "total": job.total,
                                  "joined": joined})  # fmt: skip

    def _run(self, request: JobRequest) -> EmbeddingJob:
        board_job = self.board.start("embedding", f"{request.label} · {request.model_id}", face=request.face,
                                     model=request.model_id)  # fmt: skip
        job = EmbeddingJob(request, board_job)
        self.board.update(board_job, progress=0.0)
        self.jobs[job.id] = job
        self.running[request.key] = job
        job.task = asyncio.create_task(self._embed(job), name=f"embedding-{job.id}")
        return job

    async def _embed(self, job: EmbeddingJob) -> None:
        """Run the job to its end (cached batches stay cached however it ends), telling the faces as it goes."""
        from workbench.core.embeddings.cache import Cancelled  # numpy: loaded with the first job, not at start

        loop = asyncio.get_running_loop()

        def moved(done: int, total: int) -> None:  # from the embedder's worker thread
            loop.call_soon_threadsafe(self._moved, job, done, total)

        try:
            async with self._turns.setdefault(job.model_id, asyncio.Lock()):
                if job.cancel.is_set():
                    raise Cancelled("cancelled before it started")
                job.started()
                if job.texts is None:
                    assert job.request.corpus is not None
                    from workbench.core.embeddings.corpus import load_corpus

                    corpus = await asyncio.to_thread(load_corpus, *job.request.corpus)
                    job.texts, job.problems = corpus.texts, corpus.problems[:MAX_PROBLEMS]
                    job.problem_count = len(corpus.problems)
                    job.moved(0, len(job.texts))
                vectors = await self.embedder.embed(job.model_id, job.texts, progress=moved, cancel=job.cancel)
            job.vectors = vectors
            job.end("done", rows=int(vectors.shape[0]), dimensions=int(vectors.shape[1]) if vectors.ndim == 2 else 0,
                    problems=job.problems, problem_count=job.problem_count)  # fmt: skip
        except Cancelled as exc:
            job.end("cancelled", message=str(exc))
        except asyncio.CancelledError:  # cancelled while waiting for its turn, or the engine stops
            job.end("cancelled", message=job.cancel_note)
        except Exception as exc:
            if error_kind(exc) == "failed":
                log.exception("embedding job %s with %s failed", job.id, job.model_id)
            job.end("error", error=str(exc) or type(exc).__name__, kind=error_kind(exc))
        finally:
            job.texts = job.request.texts = None  # the vectors are what a face fetches; the texts need not stay
            self.board.end(job.board_job)
            if self.running.get(job.request.key) is job:
                del self.running[job.request.key]
            self.finished[job.id] = job
            self._let_go()

    def _moved(self, job: EmbeddingJob, done: int, total: int) -> None:
        job.moved(done, total)
        self.board.update(job.board_job, progress=done / total if total else 1.0)

    def _let_go(self) -> None:
        """Forget finished jobs past the count, the age or the bytes kept (oldest first)."""
        now = time.monotonic()
        kept = sum(job.vectors.nbytes for job in self.finished.values() if job.vectors is not None)
        while self.finished:
            oldest = next(iter(self.finished.values()))
            if (len(self.finished) <= KEEP_RESULTS and now - oldest.ended_at <= KEEP_RESULT_S
                    and kept <= KEEP_RESULT_BYTES):  # fmt: skip
                break
            del self.finished[oldest.id]
            self.jobs.pop(oldest.id, None)
            kept -= oldest.vectors.nbytes if oldest.vectors is not None else 0

    def _job(self, request: web.Request) -> EmbeddingJob:
        self._let_go()
        job_id = request.match_info["id"]
        job = self.jobs.get(job_id)
        if job is None:
            raise BadRequest(f"no embedding job {job_id} (a finished job is kept for {KEEP_RESULT_S / 60:.0f} "
                             "minutes: start it again, its vectors come from the cache)", 404)  # fmt: skip
        return job

    async def status(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self._job(request).document())
        except BadRequest as exc:
            return refused(str(exc), exc.status)

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            job = self._job(request)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        async with NdjsonStream(request, self.heartbeat_s) as stream:
            with contextlib.suppress(PeerGone):
                await self._follow(job, stream)
        return stream.response

    async def _follow(self, job: EmbeddingJob, stream: NdjsonStream) -> None:
        """Send where the job is, then each move (latest-wins), until it ends or the face leaves (PeerGone)."""
        sent: dict[str, Any] | None = None
        while True:
            changed = job.changed
            progress = job.progress()
            if progress != sent:
                await stream.send(progress)
                sent = progress
            if job.ended is not None:
                await stream.send(job.ended)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.heartbeat_s)
            if stream.gone:
                return

    async def cancel(self, request: web.Request) -> web.Response:
        try:
            job = self._job(request)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        if job.ended is not None:
            return web.json_response({"cancelling": False, "state": job.state})
        job.cancel.set()  # checked before each batch
        if job.state == "queued" and job.task is not None:  # waiting for its turn: it need not wait to end
            job.cancel_note = "cancelled before it started"
            job.task.cancel()
        return web.json_response({"cancelling": True, "state": job.state})

    async def vectors(self, request: web.Request) -> web.Response:
        try:
            job = self._job(request)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        if job.vectors is None:
            return refused(f"embedding job {job.id} is {job.state}: only a finished job has vectors", 409)
        import numpy as np

        vectors = np.ascontiguousarray(job.vectors, dtype="<f4")
        rows, dimensions = (vectors.shape[0], vectors.shape[1]) if vectors.ndim == 2 else (0, 0)
        return web.Response(body=vectors.tobytes(), content_type="application/octet-stream",
                            headers={"X-Rows": str(rows), "X-Dimensions": str(dimensions)})  # fmt: skip

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop every job before the services close (what was encoded is cached; the batch in flight ends first)."""
        tasks = []
        for job in self.jobs.values():
            if job.task is not None and not job.task.done():
                job.cancel.set()
                job.cancel_note = "the engine stopped; the batches done so far are cached"
                job.task.cancel()
                tasks.append(job.task)
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)

    # --- a search query --------------------------------------------------------------------------

    async def query(self, request: web.Request) -> web.Response:
        try:
            model_id, text = parse_query(await read_json(request, MAX_QUERY_BYTES))
            self._check_model(model_id)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        try:
            vector = await self.embedder.encode_query(model_id, text)
        except UnknownModelError as exc:
            return refused(str(exc), 404)
        except ModelManagerError as exc:
            return refused(str(exc) or type(exc).__name__, 409)
        return web.json_response({"model": model_id, "vector": [float(x) for x in vector]})  # float32: exact
