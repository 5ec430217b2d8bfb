"""The engine's embedder as a face sees it: the public face of core/embeddings/embedder.py's Embedder (model_ids,
embed with progress and cancel, encode_query, ``manager``), with the work done by the engine
(workbench/server/engine_embeddings.py), so an embedding job goes on when the face is gone.

``embed`` starts a job, follows its events (progress), and fetches the finished job's vectors as float32 bytes.
Setting ``cancel`` or cancelling the awaiting task cancels the engine's job (it stops before its next batch; the
batches done stay in the engine's cache) — a face that merely goes away (killed, its link dropped) leaves the job
running, and the same texts asked again later come back from the cache at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workbench.client.engine import EngineClient, EngineGone, EngineNotRunning, EngineRequestError
from workbench.client.remote_models import ACTION_TIMEOUT_S, EngineUnavailableError, RemoteModels
from workbench.core.embeddings.cache import Cancelled
from workbench.core.models.spec import ModelManagerError, ModelRole, UnknownModelError

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.05  # how often the cancel flag is looked at while a job runs (a batch takes longer)
START_TIMEOUT_S = 60.0  # a large corpus travels and is hashed before the engine answers
MAX_VECTOR_BYTES = 2 * 1024 * 1024 * 1024


class RemoteEmbedder:
    def __init__(self, client: EngineClient, models: RemoteModels, face: str = "tui") -> None:
        self.client = client
        self.manager = models  # what the pane reads of the models (info, ids): the face's mirror of the engine's
        self.face = face

    def model_ids(self) -> list[str]:
        """The registered embedding models (as the mirror last heard from the engine)."""
        return self.manager.ids(ModelRole.EMBED)

    async def embed(
        self,
        model_id: str,
        texts: list[str],
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
        label: str | None = None,
    ) -> np.ndarray:
        """Vectors for ``texts`` (L2-normalised float32, in order), embedded by the engine; as Embedder.embed.

        ``progress(done, total)`` is called on the event loop. Setting ``cancel`` (or cancelling the awaiting task)
        cancels the engine's job before its next batch and raises ``cache.Cancelled``; finished batches stay
        cached. ``label`` is what ``workbench ps`` shows for the job (the corpus's name)."""
        if not texts:  # as Embedder: nothing to embed needs no engine
            return np.zeros((0, 0), dtype=np.float32)
        body: dict[str, Any] = {"model": model_id, "texts": texts, "face": self.face}
        if label:
            body["label"] = label
        return await self._run(body, progress, cancel)

    async def embed_corpus(
        self,
        model_id: str,
        path: Path,
        column: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> np.ndarray:
        """The vectors of the corpus at ``path`` (read by the engine with core/embeddings/corpus.py), in the
        corpus's order; as :meth:`embed` otherwise."""
        corpus: dict[str, Any] = {"path": str(Path(path).expanduser().absolute())}
        if column is not None:
            corpus["column"] = column
        return await self._run({"model": model_id, "corpus": corpus, "face": self.face}, progress, cancel)

    async def encode_query(self, model_id: str, text: str) -> np.ndarray:
        """One normalised vector for a search query (the first query loads the model: a long timeout)."""
        document = await self._call("POST", "/v1/embeddings/query", {"model": model_id, "text": text},
                                    ACTION_TIMEOUT_S)  # fmt: skip
        return np.asarray(document["vector"], dtype=np.float32)

    # --- a job -----------------------------------------------------------------------------------

    async def _call(self, method: str, route: str, body: dict[str, Any] | None = None,
                    timeout_s: float | None = None) -> dict[str, Any]:  # fmt: skip
        try:
            document = await self.client.call_json(method, route, body, timeout_s=timeout_s)
        except EngineRequestError as exc:
            raise _refusal(exc) from None
        if document is None:
            raise EngineUnavailableError("no engine answers: it is starting again, or was stopped")
        return document

    async def _run(self, body: dict[str, Any], progress: Callable[[int, int], None] | None,
                   cancel: threading.Event | None) -> np.ndarray:  # fmt: skip
        cancel = cancel or threading.Event()
        started = await self._call("POST", "/v1/embeddings/jobs", body, START_TIMEOUT_S)
        job_id = str(started["id"])
        watcher = asyncio.create_task(self._watch(job_id, cancel))
        try:
            end = await self._follow(job_id, progress)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cancel(job_id))
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        state = end.get("state")
        if state == "cancelled":
            raise Cancelled(str(end.get("message") or "cancelled"))
        if state == "error":
            message = str(end.get("error") or "the engine's embedding failed")
            if end.get("kind") == "unknown_model":
                raise UnknownModelError(message)
            if end.get("kind") == "model":
                raise ModelManagerError(message)
            raise RuntimeError(f"the engine's embedding failed: {message}")
        return await self._vectors(job_id)

    async def _follow(self, job_id: str, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        """The job's events until its end (which is returned), each progress passed on."""
        try:
            async for event in self.client.stream("GET", f"/v1/embeddings/jobs/{job_id}/events"):
                if event.get("type") == "end":
                    return event
                if event.get("type") == "progress" and progress is not None:
                    progress(int(event["done"]), int(event["total"]))
        except EngineRequestError as exc:
            raise _refusal(exc) from None
        except (EngineNotRunning, EngineGone) as exc:
            raise EngineUnavailableError(f"the engine went away during the embedding ({exc})") from None
        raise EngineUnavailableError("the engine's answer ended before the job did")

    async def _watch(self, job_id: str, cancel: threading.Event) -> None:
        """Tell the engine as soon as ``cancel`` is set (the pane sets it from its own thread or the loop)."""
        while not cancel.is_set():
            await asyncio.sleep(CANCEL_POLL_S)
        await self._cancel(job_id)

    async def _cancel(self, job_id: str) -> None:
        try:
            await self.client.call_json("POST", f"/v1/embeddings/jobs/{job_id}/cancel")
        except EngineRequestError as exc:  # ended and forgotten already
            log.info("cancelling embedding job %s: %s", job_id, exc)

    async def _vectors(self, job_id: str) -> np.ndarray:
        try:
            answer = await self.client.call_bytes("GET", f"/v1/embeddings/jobs/{job_id}/vectors", MAX_VECTOR_BYTES,
                                                  timeout_s=START_TIMEOUT_S)  # fmt: skip
        except EngineRequestError as exc:
            raise _refusal(exc) from None
        if answer is None:
            raise EngineUnavailableError("no engine answers: it is starting again, or was stopped")
        body, headers = answer
        rows, dimensions = int(headers.get("X-Rows", "0")), int(headers.get("X-Dimensions", "0"))
        if len(body) != rows * dimensions * 4:
            raise EngineUnavailableError(f"the engine sent {len(body)} bytes for {rows}x{dimensions} float32")
        return np.frombuffer(body, dtype="<f4").astype(np.float32).reshape(rows, dimensions)


def _refusal(exc: EngineRequestError) -> ModelManagerError:
    """The engine's refusal as the error the pane shows (ModelManagerError: a note and an alert)."""
    if exc.status == 404:
        return UnknownModelError(str(exc))
    return ModelManagerError(str(exc))
