"""The explorer's embedding path: the real all-MiniLM-L6-v2 leased from the ModelManager, encoding on its thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from workbench.core.embeddings.cache import Cancelled, EmbeddingCache, normalise
from workbench.core.embeddings.embedder import Embedder
from workbench.core.models.backends.sentence_transformers import SentenceTransformerBackend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_EMBEDDER_ID, default_embedder_spec
from workbench.core.models.memory import Budget
from workbench.core.models.spec import ModelState

pytestmark = pytest.mark.real_model

SENTENCES = [f"Note {n} is about {topic}." for n in range(30) for topic in ("rivers", "violins")]


@pytest.fixture
async def embedder(tmp_path: Path):
    manager = ModelManager(
        backends={"sentence-transformers": SentenceTransformerBackend()},
        budget=Budget(1 << 32, "test"),
        inference=InferenceThread(),
        idle_unload_s=None,
    )
    manager.register(default_embedder_spec())
    yield Embedder(manager, EmbeddingCache(tmp_path / "cache"), batch_size=16)
    await manager.aclose()


async def test_vectors_equal_a_direct_encode_and_the_model_is_released(embedder: Embedder) -> None:
    progress: list[tuple[int, int]] = []
    vectors = await embedder.embed(DEFAULT_EMBEDDER_ID, SENTENCES, progress=lambda d, t: progress.append((d, t)))
    async with await embedder.manager.acquire(DEFAULT_EMBEDDER_ID) as lease:
        direct = lease.handle.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, normalise(direct), atol=1e-5)
    assert progress[0] == (0, 60) and progress[-1] == (60, 60)
    assert embedder.manager.info(DEFAULT_EMBEDDER_ID).state is ModelState.READY  # leased, then given back
    assert embedder.model_ids() == [DEFAULT_EMBEDDER_ID]


async def test_query_vector_finds_its_own_sentence(embedder: Embedder) -> None:
    vectors = await embedder.embed(DEFAULT_EMBEDDER_ID, SENTENCES)
    query = await embedder.encode_query(DEFAULT_EMBEDDER_ID, SENTENCES[7])
    assert abs(float(np.linalg.norm(query)) - 1) < 1e-5
    assert int(np.argmax(vectors @ query)) == 7


async def test_cancel_event_stops_and_keeps_finished_batches(embedder: Embedder) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 16:
            cancel.set()

    with pytest.raises(Cancelled):
        await embedder.embed(DEFAULT_EMBEDDER_ID, SENTENCES, progress=progress, cancel=cancel)
    assert 16 <= embedder.cache.count(DEFAULT_EMBEDDER_ID) < 60
    assert embedder.manager.info(DEFAULT_EMBEDDER_ID).state is ModelState.READY


async def test_cancelling_the_task_waits_for_the_batch_then_releases(embedder: Embedder) -> None:
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    texts = [f"{sentence} Again." for sentence in SENTENCES] + SENTENCES
    notify = lambda done, total: done and loop.call_soon_threadsafe(started.set)  # noqa: E731
    task = asyncio.ensure_future(embedder.embed(DEFAULT_EMBEDDER_ID, texts, progress=notify))
    await asyncio.wait_for(started.wait(), timeout=60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert embedder.manager.info(DEFAULT_EMBEDDER_ID).state is ModelState.READY
    assert 0 < embedder.cache.count(DEFAULT_EMBEDDER_ID) < 120


async def test_a_fully_cached_corpus_needs_no_model(embedder: Embedder) -> None:
    first = await embedder.embed(DEFAULT_EMBEDDER_ID, SENTENCES)
    await embedder.manager.unload(DEFAULT_EMBEDDER_ID)
    reopened = Embedder(embedder.manager, type(embedder.cache)(embedder.cache.folder))
    again = await reopened.embed(DEFAULT_EMBEDDER_ID, SENTENCES)
    np.testing.assert_array_equal(again, first)
    assert embedder.manager.info(DEFAULT_EMBEDDER_ID).state is ModelState.UNLOADED
