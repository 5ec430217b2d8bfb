"""Embedding through the ModelManager: the model is leased for each job and encodes on the inference thread.

The cache bookkeeping of a corpus runs in a worker thread; each batch's encode is a job on the manager's
inference thread, so an embedding run takes turns with a chat that is streaming at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from workbench.core.embeddings.cache import EmbeddingCache, embed_corpus, normalise
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.spec import ModelRole

DEFAULT_BATCH_SIZE = 64


def encode_batch(model: Any, texts: list[str]) -> np.ndarray:
    """One batch through a loaded SentenceTransformer (float32 rows, not yet normalised)."""
    vectors = model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def count_tokens(model: Any, texts: list[str]) -> int:
    """The tokens a loaded SentenceTransformer reads of ``texts`` (after its truncation, special tokens included):
    what an API reports as prompt tokens. 0 for a model that cannot say."""
    # sentence-transformers 5.2+ names it preprocess (tokenize warns); older ones only have tokenize
    tokenize = getattr(model, "preprocess", None) or getattr(model, "tokenize", None)
    if tokenize is None or not texts:
        return 0
    mask = tokenize(texts).get("attention_mask")
    return int(mask.sum()) if mask is not None else 0


def encode_counting(model: Any, texts: list[str]) -> tuple[np.ndarray, int]:
    """:func:`encode_batch` and :func:`count_tokens` in one job on the inference thread."""
    return encode_batch(model, texts), count_tokens(model, texts)


def _never_called(texts: list[str]) -> np.ndarray:
    raise AssertionError("every text was cached")


class Embedder:
    def __init__(self, manager: ModelManager, cache: EmbeddingCache, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.manager = manager
        self.cache = cache
        self.batch_size = batch_size

    def model_ids(self) -> list[str]:
        """The registered embedding models."""
        return self.manager.ids(ModelRole.EMBED)

    async def embed(
        self,
        model_id: str,
        texts: list[str],
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> np.ndarray:
        """Vectors for `texts` (L2-normalised, in order), encoding only what the cache lacks.

        `progress(done, total)` is called from a worker thread. Setting `cancel` (or cancelling the awaiting
        task) stops before the next batch and raises `cache.Cancelled`; finished batches stay cached.
        """
        cancel = cancel or threading.Event()
        # Hashing and looking up a corpus takes ~0.1 s per 5k texts: in a thread, off the loop (the engine's loop serves
        # every face).
        if await asyncio.to_thread(self.cache.missing, model_id, texts) == 0:  # reopening a corpus needs no model
            return await asyncio.to_thread(embed_corpus, _never_called, model_id, texts, self.cache,
                                           self.batch_size, progress)  # fmt: skip
        lease = await self.manager.acquire(model_id, holder="Embeddings")
        try:
            model = lease.handle
            inference = self.manager.inference

            def encode(batch: list[str]) -> np.ndarray:
                return inference.submit(encode_batch, model, batch).result()

            job = asyncio.ensure_future(asyncio.to_thread(
                embed_corpus, encode, model_id, texts, self.cache, self.batch_size, progress, cancel.is_set
            ))  # fmt: skip
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                cancel.set()
                with contextlib.suppress(BaseException):
                    await job  # the model stays leased until its last batch is done
                raise
        finally:
            await lease.release()

    async def encode_texts(self, model_id: str, texts: list[str], holder: str = "Embeddings") -> tuple[np.ndarray, int]:
        """Normalised vectors for ``texts`` (in order) and the tokens the model read, encoded as :meth:`embed`
        encodes (the same model, function, batch size and normalisation) but not cached: for an API request, whose
        texts would only grow the cache. Each batch is a job on the inference thread."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), 0
        rows: list[np.ndarray] = []
        tokens = 0
        async with await self.manager.acquire(model_id, holder=holder) as lease:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                vectors, count = await self.manager.inference.run(encode_counting, lease.handle, batch)
                rows.append(vectors)
                tokens += count
        return normalise(np.concatenate(rows)), tokens

    async def encode_query(self, model_id: str, text: str) -> np.ndarray:
        """One normalised vector for a search query."""
        async with await self.manager.acquire(model_id, holder="Embeddings") as lease:
            vectors = await self.manager.inference.run(encode_batch, lease.handle, [text])
        return normalise(vectors)[0]
