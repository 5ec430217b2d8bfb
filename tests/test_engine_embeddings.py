"""The engine's embedding jobs and a face's RemoteEmbedder, in-process against the real services with the fake
sentence-transformers backend: the same vectors as the in-process Embedder, progress, cancel between batches, a job
that outlives its face, the job in ps, and the routes' refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.support.engines import serving
from tests.support.fake_embedder import FakeEmbeddingBackend, services_with_fake_embedders
from workbench.client.embedder import RemoteEmbedder
from workbench.client.engine import EngineClient
from workbench.client.remote_models import RemoteModels
from workbench.core.embeddings.cache import Cancelled, EmbeddingCache
from workbench.core.embeddings.corpus import load_corpus
from workbench.core.engine_home import engine_home
from workbench.core.settings.paths import AppPaths
from workbench.server import engine_embeddings
from workbench.server.engine import Engine

MODEL = "fake/embed-a"
JOB = "/v1/embeddings/jobs"
TEXTS = [f"Note {n} is about {topic} and {n % 7} other things." for n in range(10) for topic in ("rivers", "violins")]


@dataclass
class Rig:
    engine: Engine
    services: Any
    backend: FakeEmbeddingBackend
    client: EngineClient
    embedder: RemoteEmbedder
    paths: AppPaths


@contextlib.asynccontextmanager
async def engine_and_face(tmp_path: Path) -> AsyncIterator[Rig]:
    paths = AppPaths.under(tmp_path / "home")
    services, backend = services_with_fake_embedders(paths, MODEL)
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    mirror = RemoteModels(client)
    try:
        await mirror.refresh()
        yield Rig(engine, services, backend, client, RemoteEmbedder(client, mirror), paths)
    finally:
        backend.gate.set()
        engine.request_stop()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[Any]:
    """The in-process Embedder over a data folder of its own (what the TUI used before the engine)."""
    services, _backend = services_with_fake_embedders(AppPaths.under(tmp_path / "in-process"), MODEL)
    try:
        yield services.embedder
    finally:
        await services.aclose()


async def until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def held_after_one_batch(rig: Rig, batch_size: int = 4) -> None:
    """Batches of ``batch_size``; the first is encoded, the next waits until the test opens the gate."""
    rig.services.embedder.batch_size = batch_size
    rig.backend.free_batches = 1
    rig.backend.gate.clear()


def embedding_jobs(ps: dict[str, Any] | None) -> list[dict[str, Any]]:
    assert ps is not None
    return [job for job in ps["jobs"] if job["kind"] == "embedding"]


async def test_remote_vectors_and_query_equal_the_in_process_ones_and_progress_arrives(tmp_path: Path) -> None:
    async with engine_and_face(tmp_path) as rig, in_process(tmp_path) as local:
        assert MODEL in rig.embedder.model_ids()
        assert rig.embedder.manager.info(MODEL).spec.id == MODEL  # what the pane reads for its model list
        progress: list[tuple[int, int]] = []
        vectors = await rig.embedder.embed(MODEL, TEXTS, progress=lambda d, t: progress.append((d, t)))
        expected = await local.embed(MODEL, TEXTS)
        assert vectors.dtype == np.float32 and vectors.shape == expected.shape == (len(TEXTS), 384)
        np.testing.assert_array_equal(vectors, expected)
        assert progress[0] == (0, len(TEXTS)) and progress[-1] == (len(TEXTS), len(TEXTS))

        query = await rig.embedder.encode_query(MODEL, TEXTS[3])
        np.testing.assert_array_equal(query, await local.encode_query(MODEL, TEXTS[3]))
        assert abs(float(np.linalg.norm(query)) - 1) < 1e-5

        encoded = rig.backend.encoded
        again = await rig.embedder.embed(MODEL, TEXTS)  # all cached: the engine encodes nothing
        np.testing.assert_array_equal(again, expected)
        assert rig.backend.encoded == encoded
        assert embedding_jobs(await rig.client.ps()) == []


async def test_the_job_shows_in_ps_and_cancel_stops_before_the_next_batch(tmp_path: Path) -> None:
    async with engine_and_face(tmp_path) as rig:
        held_after_one_batch(rig)
        cancel = threading.Event()
        progress: list[tuple[int, int]] = []
        task = asyncio.create_task(rig.embedder.embed(MODEL, TEXTS, progress=lambda d, t: progress.append((d, t)),
                                                      cancel=cancel, label="notes.txt"))  # fmt: skip
        await until(lambda: (4, len(TEXTS)) in progress, "the first batch's progress")
        [row] = embedding_jobs(await rig.client.ps())
        assert row["what"] == f"notes.txt · {MODEL}" and row["progress"] == pytest.approx(4 / len(TEXTS))
        assert row["face"] == "tui"
        [job] = rig.engine.embeddings.jobs.values()
        with pytest.raises(Exception, match="only a finished job has vectors"):
            await rig.client.call_bytes("GET", f"/v1/embeddings/jobs/{job.id}/vectors", 1 << 20)

        cancel.set()
        await until(job.cancel.is_set, "the engine to hear of the cancel")
        rig.backend.gate.set()  # the batch in flight finishes; the next one never starts
        with pytest.raises(Cancelled, match="cancelled after 8 of 20"):
            await asyncio.wait_for(task, 30)
        assert len(rig.backend.batches) == 2
        assert rig.services.embedder.cache.count(MODEL) == 8  # the finished batches stay cached
        assert embedding_jobs(await rig.client.ps()) == []


async def test_cancelling_the_face_s_task_cancels_the_engine_s_job(tmp_path: Path) -> None:
    async with engine_and_face(tmp_path) as rig:
        held_after_one_batch(rig)
        progress: list[tuple[int, int]] = []
        task = asyncio.create_task(rig.embedder.embed(MODEL, TEXTS, progress=lambda d, t: progress.append((d, t))))
        await until(lambda: (4, len(TEXTS)) in progress, "the first batch's progress")
        [job] = rig.engine.embeddings.jobs.values()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert job.cancel.is_set()
        rig.backend.gate.set()
        await until(lambda: job.ended is not None, "the job to end")
        assert job.ended is not None and job.ended["state"] == "cancelled"
        assert rig.services.embedder.cache.count(MODEL) == 8


async def test_a_face_that_goes_away_leaves_the_job_running_to_the_end(tmp_path: Path) -> None:
    async with engine_and_face(tmp_path) as rig, in_process(tmp_path) as local:
        held_after_one_batch(rig)
        started = await rig.client.call_json("POST", JOB, {"model": MODEL, "texts": TEXTS})
        assert started is not None and started["joined"] is False
        job_id = started["id"]
        async with contextlib.aclosing(rig.client.stream("GET", f"{JOB}/{job_id}/events")) as events:
            async for event in events:
                if event["type"] == "progress" and event["done"] >= 4:
                    break  # the face is gone: its connection closes with no word to the engine
        again = await rig.client.call_json("POST", JOB, {"model": MODEL, "texts": TEXTS})
        assert again is not None and (again["id"], again["joined"]) == (job_id, True)  # a face back: the same job

        rig.backend.gate.set()
        cache = rig.services.embedder.cache
        await until(lambda: cache.count(MODEL) == len(TEXTS) and not rig.engine.board, "the job to finish")
        assert EmbeddingCache(rig.paths.embeddings_dir).count(MODEL) == len(TEXTS)  # on disk, in the data folder
        expected = await local.embed(MODEL, TEXTS)

        answer = await rig.client.call_bytes("GET", f"/v1/embeddings/jobs/{job_id}/vectors", 1 << 24)
        assert answer is not None
        body, headers = answer
        assert (headers["X-Rows"], headers["X-Dimensions"]) == (str(len(TEXTS)), "384")
        np.testing.assert_array_equal(np.frombuffer(body, dtype="<f4").reshape(len(TEXTS), 384), expected)

        encoded = rig.backend.encoded
        later = await rig.embedder.embed(MODEL, TEXTS)  # a face attaching later: from the cache
        np.testing.assert_array_equal(later, expected)
        assert rig.backend.encoded == encoded


async def test_a_corpus_path_is_read_by_the_engine(tmp_path: Path) -> None:
    corpus = tmp_path / "notes.txt"
    corpus.write_text("\n".join(TEXTS[:6]) + "\n\n" + TEXTS[9] + "\n", encoding="utf-8")
    async with engine_and_face(tmp_path) as rig, in_process(tmp_path) as local:
        vectors = await rig.embedder.embed_corpus(MODEL, corpus)
        np.testing.assert_array_equal(vectors, await local.embed(MODEL, load_corpus(corpus).texts))


async def test_stopping_the_engine_ends_a_running_job_as_cancelled(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path / "home")
    services, backend = services_with_fake_embedders(paths, MODEL)
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    services.embedder.batch_size = 4
    backend.free_batches = 1
    backend.gate.clear()
    try:
        started = await EngineClient(home.socket).call_json("POST", JOB, {"model": MODEL, "texts": TEXTS})
        assert started is not None
        await until(lambda: len(backend.batches) == 2, "the second batch to start")
        job = engine.embeddings.jobs[started["id"]]
        engine.request_stop()
        # the gate opens once the stop has reached the job: opened sooner, a third batch could start before it
        await until(job.cancel.is_set, "the stop to reach the job")
    finally:
        engine.request_stop()
        backend.gate.set()  # the batch in flight ends; the stop waits for it, then the services close
        await asyncio.wait_for(task, 30)
    assert job.ended is not None and job.ended["state"] == "cancelled" and "engine stopped" in job.ended["message"]
    assert EmbeddingCache(paths.embeddings_dir).count(MODEL) == 8


@pytest.mark.parametrize(("route", "body", "status"), [
    (JOB, b"not json", 400),
    (JOB, b"[]", 400),
    (JOB, json.dumps({"model": MODEL}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "texts": []}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "texts": ["a", 1]}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "texts": ["a"], "extra": 1}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "texts": ["a"], "corpus": {"path": "/tmp"}}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "corpus": {"path": "notes/relative.txt"}}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "corpus": {"path": "/nonexistent/notes.txt"}}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "corpus": {"path": "/tmp", "sheet": 1}}).encode(), 400),
    (JOB, json.dumps({"model": MODEL, "texts": ["a"], "face": "Not A Face"}).encode(), 400),
    (JOB, json.dumps({"model": 3, "texts": ["a"]}).encode(), 400),
    (JOB, json.dumps({"model": "ghost", "texts": ["a"]}).encode(), 404),
    (JOB, json.dumps({"model": MODEL, "texts": ["a"] * 11}).encode(), 413),
    (JOB, json.dumps({"model": MODEL, "texts": ["a" * 5000]}).encode(), 413),
    ("/v1/embeddings/query", json.dumps({"model": MODEL}).encode(), 400),
    ("/v1/embeddings/query", json.dumps({"model": MODEL, "text": "x", "k": 3}).encode(), 400),
    ("/v1/embeddings/query", json.dumps({"model": "ghost", "text": "x"}).encode(), 404),
    ("/v1/embeddings/jobs/emb-999/cancel", b"", 404),
])  # fmt: skip
async def test_bad_requests_are_refused_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str,
                                                      body: bytes, status: int) -> None:  # fmt: skip
    monkeypatch.setattr(engine_embeddings, "MAX_TEXTS", 10)
    monkeypatch.setattr(engine_embeddings, "MAX_BODY_BYTES", 4096)
    async with engine_and_face(tmp_path) as rig:
        connector = aiohttp.UnixConnector(path=str(rig.client.socket))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"http://engine{route}", data=body) as response:
                assert response.status == status
                assert (await response.json())["error"]
            for path in ("emb-999", "emb-999/events", "emb-999/vectors"):
                async with session.get(f"http://engine{JOB}/{path}") as response:
                    assert response.status == 404 and "no embedding job" in (await response.json())["error"]


async def test_the_pane_s_errors_come_back_as_manager_errors(tmp_path: Path) -> None:
    from workbench.core.models.spec import UnknownModelError

    async with engine_and_face(tmp_path) as rig:
        with pytest.raises(UnknownModelError, match="ghost"):
            await rig.embedder.embed("ghost", ["a"])
        with pytest.raises(UnknownModelError, match="ghost"):
            await rig.embedder.encode_query("ghost", "a")
        empty = await rig.embedder.embed(MODEL, [])
        assert empty.shape == (0, 0)
