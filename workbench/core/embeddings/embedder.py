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


class InputTooLongError(ValueError):
    """A text longer than the embedding model reads, where cutting it was not allowed."""


def count_tokens(model: Any, texts: list[str]) -> tuple[list[int], int | None]:
    """The token count of each text and the most the model reads (None: unknown); by words for a model without a
    tokenizer."""
    tokenizer = getattr(model, "tokenizer", None)
    found = getattr(model, "max_seq_length", None)
    limit = found if isinstance(found, int) else None
    if tokenizer is None:
        preprocess = getattr(model, "preprocess", None)  # a model without a tokenizer may still mask its input
        if preprocess is not None and texts:
            return [int(row.sum()) for row in preprocess(texts)["attention_mask"]], limit
        return [len(text.split()) for text in texts], limit
    ids = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    return [len(row) for row in ids], limit


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

    async def encode_texts(self, model_id: str, texts: list[str], truncate: bool = True,
                           holder: str = "an API request") -> tuple[np.ndarray, int]:  # fmt: skip
        """Normalised vectors for ``texts`` (an API request: nothing cached) and how many tokens they hold. Each text
        is cut to the model's longest input, unless ``truncate`` is False: then a longer one raises
        InputTooLongError."""
        async with await self.manager.acquire(model_id, holder=holder) as lease:
            counts, limit = await self.manager.inference.run(count_tokens, lease.handle, texts)
            if not truncate and limit is not None and (longest := max(counts, default=0)) > limit:
                raise InputTooLongError(f"an input is {longest} tokens, more than the {limit} that {model_id} reads "
                                        "(send truncate: true to cut it)")  # fmt: skip
            rows = [await self.manager.inference.run(encode_batch, lease.handle, texts[i : i + self.batch_size])
                    for i in range(0, len(texts), self.batch_size)]  # fmt: skip
        vectors = np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)
        return normalise(vectors), sum(min(c, limit) if limit else c for c in counts)

    async def encode_query(self, model_id: str, text: str) -> np.ndarray:
        """One normalised vector for a search query."""
        async with await self.manager.acquire(model_id, holder="Embeddings") as lease:
            vectors = await self.manager.inference.run(encode_batch, lease.handle, [text])
        return normalise(vectors)[0]
