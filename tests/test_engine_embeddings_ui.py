"""The Embeddings pane in the app as `workbench` builds it (RemoteServices: its embedder a RemoteEmbedder): the
corpus is embedded by an engine (in-process, on its temporary socket, with the fake embedder backend), and the
pane shows progress, cancels and searches as before; the engine remembers the corpus in its history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.corpora import TOPICS, write_notes_folder
from tests.support.engines import serving
from tests.support.fake_embedder import FakeEmbeddingBackend, services_with_fake_embedders
from tests.support.waits import wait_for
from tests.test_embeddings_ui import SIZE, corpus_prompt, open_corpus, open_pane, search, text_of
from workbench.client.embedder import RemoteEmbedder
from workbench.client.engine import EngineNotRunning, engine_info_sync
from workbench.client.remote_services import RemoteServices
from workbench.core.engine_home import engine_home
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine
from workbench.ui.app import WorkbenchApp

NOTES = sum(len(notes) for notes in TOPICS.values())


@contextlib.asynccontextmanager
async def app_on_an_engine(tmp_path: Path) -> AsyncIterator[tuple[WorkbenchApp, Engine, FakeEmbeddingBackend]]:
    """The app with its embedder replaced by a RemoteEmbedder; yields (app, the engine, the engine's backend)."""
    engine_paths = AppPaths.under(tmp_path / "engine-home")
    engine_services, backend = services_with_fake_embedders(engine_paths)
    home = engine_home(engine_paths)
    engine = Engine(engine_services, home, find_models=False)
    task = await serving(engine, home)
    try:
        def start() -> dict[str, Any]:
            info = engine_info_sync(home.socket)
            if info is None:
                raise EngineNotRunning("no engine (the test runs it)")
            return info

        services = RemoteServices(engine_paths, start=start)  # the app as `workbench` builds it, attached
        assert isinstance(services.embedder, RemoteEmbedder)
        yield WorkbenchApp(services, import_defaults=False), engine, backend
    finally:
        backend.gate.set()
        engine.request_stop()
        await asyncio.wait_for(task, 30)


async def test_the_pane_embeds_and_searches_through_the_engine(tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    async with app_on_an_engine(tmp_path) as (app, _engine, backend):
        async with app.run_test(size=SIZE) as pilot:
            pane = await open_pane(app, pilot)
            await open_corpus(pilot, pane, str(notes))
            assert pane.vectors_a is not None and pane.vectors_a.shape[0] == NOTES
            assert backend.encoded == NOTES  # the engine's model did the work
            await search(pilot, pane, "bread dough oven")
            assert pane.corpus is not None and pane.corpus.passages[pane.hits[0][0]].source == "baking.md"
            sets = app.services.store.embedding_sets
            await wait_for(pilot, lambda: [s.model_id for s in sets.embedding_sets()] == [pane.model_a],
                           "the engine to remember the corpus")  # fmt: skip


async def test_the_pane_s_progress_and_cancel_reach_the_engine(tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    async with app_on_an_engine(tmp_path) as (app, engine, backend):
        engine.services.embedder.batch_size = 8
        backend.free_batches = 1
        backend.gate.clear()  # the second batch waits until the test lets it go
        async with app.run_test(size=SIZE) as pilot:
            pane = await open_pane(app, pilot)
            (await corpus_prompt(pilot)).value = str(notes)
            await pilot.press("enter")
            await wait_for(pilot, lambda: "A 8/32" in text_of(pane, "#progress-label"), "progress after one batch")
            await pilot.press("escape")
            jobs = list(engine.embeddings.jobs.values())
            assert len(jobs) == 1
            await wait_for(pilot, jobs[0].cancel.is_set, "the engine to hear of the cancel")
            backend.gate.set()  # the batch under way finishes; the cancel is seen before the next one
            await wait_for(pilot, lambda: "cancelled" in text_of(pane, "#corpus-line"), "the cancel")
            assert len(backend.batches) == 2
            assert pane.model_a is not None and engine.services.embedder.cache.count(pane.model_a) == 16
