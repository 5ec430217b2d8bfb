"""Pilot tests of the Embeddings pane with a fake embedder (fast, exact) on the real manager and inference thread."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from rich.text import Text
from textual.widgets import DataTable, Input, Static, TabbedContent

from tests.support.corpora import TOPICS, write_csv_with_bad_rows, write_notes_folder
from tests.support.fake_embedder import services_with_fake_embedders
from tests.support.waits import wait_for
from workbench.core.embeddings.analysis import top_k
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.core.models.spec import ModelState
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.embeddings import EmbeddingsPane
from workbench.ui.widgets.cluster_map import ClusterMap

SIZE = (100, 32)
NOTES = sum(len(notes) for notes in TOPICS.values())


def make_app(paths: AppPaths, *extra_models: str):
    services, backend = services_with_fake_embedders(paths, *extra_models)
    return WorkbenchApp(services, import_defaults=False, scan_cache=False), backend


def text_of(pane: EmbeddingsPane, selector: str) -> str:
    content = pane.query_one(selector, Static).content
    if isinstance(content, str | Text):
        return str(content)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(content)  # a Rich renderable such as the heatmap's table
    return console.export_text()


async def open_pane(app: WorkbenchApp, pilot) -> EmbeddingsPane:
    await pilot.press("5")
    await wait_for(pilot, lambda: isinstance(app.screen, EmbeddingsPane), "the Embeddings pane")
    return app.screen  # type: ignore[return-value]


async def corpus_prompt(pilot) -> Input:
    """Press ctrl+o and wait for the dialog that asks which corpus to open."""
    from workbench.ui.screens.dialogs import PromptScreen

    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PromptScreen), "the corpus dialog")
    return pilot.app.screen.query_one(Input)


async def open_corpus(pilot, pane: EmbeddingsPane, spec: str) -> None:
    prompt = await corpus_prompt(pilot)
    prompt.value = spec
    await pilot.press("enter")
    await wait_for(pilot, lambda: pane.vectors_a is not None, "the corpus to be embedded")


async def compare_tab(pilot, pane: EmbeddingsPane) -> None:
    await pilot.press("escape", "c")
    await wait_for(pilot, lambda: pane.app.focused is pane.query_one("#model-b"), "the Compare tab")


async def search(pilot, pane: EmbeddingsPane, text: str) -> None:
    pane.action_focus_query()
    pane.query_one("#query", Input).value = text
    await wait_for(pilot, lambda: pane.hits_for == text, f"results for {text!r}")


async def test_open_embed_and_search_as_you_type(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    app, backend = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, str(notes))
        assert f"{NOTES} passages" in text_of(pane, "#corpus-line")
        assert pane.vectors_a is not None and pane.vectors_a.shape[0] == NOTES
        assert backend.encoded == NOTES

        # typed key by key: each keystroke restarts the search; the last one wins
        pane.action_focus_query()
        await pilot.press(*"bread dough oven")
        await wait_for(pilot, lambda: pane.hits_for == "bread dough oven", "search results")
        scores = pane.vectors_a @ pane.query_a
        brute_force = sorted(range(NOTES), key=lambda i: -scores[i])[:10]
        assert [row for row, _ in pane.hits] == brute_force
        expected = pane.hits
        table = pane.query_one("#results", DataTable)
        assert table.row_count == 10
        best = pane.corpus.passages[expected[0][0]]
        assert best.source == "baking.md"
        assert "ms search" in text_of(pane, "#search-status")

        await pilot.press("enter")  # to the results; the highlighted passage is shown in full
        await wait_for(pilot, lambda: text_of(pane, "#detail") == best.text, "the best passage in full")


async def test_reopening_is_instant_and_needs_no_model(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    app, backend = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, str(notes))
        first = pane.vectors_a.copy()
    (notes / "sailing.md").write_text("A brand new note about knots and ropes.\n", encoding="utf-8")

    app, backend = make_app(app_paths)  # a new start: the pane reopens the last corpus by itself
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await wait_for(pilot, lambda: pane.vectors_a is not None, "the corpus to come back")
        assert backend.encoded == 1  # only the changed note was embedded again
        assert pane.vectors_a.shape[0] == NOTES - len(TOPICS["sailing"]) + 1
        unchanged = [i for i, p in enumerate(pane.corpus.passages) if p.source != "sailing.md"]
        np.testing.assert_array_equal(pane.vectors_a[unchanged], first[:24])  # sailing.md was the last file


async def test_progress_and_cancel_keep_what_was_done(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    app, backend = make_app(app_paths)
    app.services.embedder.batch_size = 8
    backend.free_batches = 1
    backend.gate.clear()  # the second batch waits until the test lets it go
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        (await corpus_prompt(pilot)).value = str(notes)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(backend.batches) == 2, "the second batch")
        await wait_for(pilot, lambda: "A 8/32" in text_of(pane, "#progress-label"), "progress after one batch")
        assert pane.query_one("#progress-row").has_class("running")
        await pilot.press("escape")
        backend.gate.set()  # the batch under way finishes; the cancel is seen before the next one
        await wait_for(pilot, lambda: "cancelled" in text_of(pane, "#corpus-line"), "the cancel")
        assert not pane.query_one("#progress-row").has_class("running")
        assert pane.vectors_a is None
        done = backend.encoded
        assert done == 16

        await open_corpus(pilot, pane, str(notes))  # the same corpus again: only the rest is embedded
        assert backend.encoded == NOTES


async def test_bad_rows_are_reported_not_fatal(app_paths: AppPaths, tmp_path: Path) -> None:
    data = write_csv_with_bad_rows(tmp_path / "notes.csv")
    app, _backend = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, f"{data}::text")
        line = text_of(pane, "#corpus-line")
        assert "12 passages" in line and "3 skipped" in line
        assert "empty 'text'" in text_of(pane, "#detail")


async def test_map_clusters_and_point_selection(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    app, _backend = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, str(notes))
        await pilot.press("escape", "m")
        await wait_for(pilot, lambda: pane.map_result is not None, "the map")
        assert pane.query_one(TabbedContent).active == "map-tab"
        clusters = pane.query_one("#clusters", DataTable)
        assert clusters.row_count == pane.map_result.clustering.k == 4  # sqrt(32 / 2)
        assert sum(int(clusters.get_row_at(i)[1]) for i in range(clusters.row_count)) == NOTES
        assert "PCA" in text_of(pane, "#map-status")
        cluster_map = pane.query_one(ClusterMap)
        assert len(cluster_map.points) == NOTES

        await pilot.press("tab")  # to the members of the highlighted cluster
        members = pane.query_one("#members", DataTable)
        await wait_for(pilot, lambda: app.focused is members, "the cluster's members")
        assert members.row_count == pane.map_result.clustering.sizes[0]

        def cursor_row() -> int:
            return int(members.coordinate_to_cell_key(members.cursor_coordinate).row_key.value)

        await pilot.press("down")
        await wait_for(pilot, lambda: members.cursor_row == 1 and cluster_map.selected == cursor_row(),
                       "the map to select the second member")  # fmt: skip
        row = cursor_row()
        assert cluster_map.selected == row == pane.selected
        detail = text_of(pane, "#point-detail")
        assert pane.corpus.passages[row].id in detail and detail.count("\n") == 3  # the passage and 3 neighbours

        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: pane.map_result.clustering.k == 5, "a fifth cluster")


async def test_heatmap_of_marked_passages(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    app, _backend = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, str(notes))
        await search(pilot, pane, "telescope stars moon")
        await wait_for(pilot, lambda: app.focused is pane.query_one("#query"), "the search box")
        await pilot.press("enter", "space", "down", "space", "down", "space")
        await wait_for(pilot, lambda: len(pane.marked) == 3, "three marks")
        assert pane.marked == [row for row, _ in pane.hits[:3]]
        assert "3 marked" in text_of(pane, "#corpus-line")
        await pilot.press("h")
        await wait_for(pilot, lambda: "Marked passages" in text_of(pane, "#heatmap-title"), "the heatmap of marks")
        rows = text_of(pane, "#heatmap").splitlines()[1:]
        assert [row.split()[-3:][i] for i, row in enumerate(rows)] == ["1", "1", "1"]  # the diagonal of a 3x3 matrix
        assert all(cell.startswith((".", "-.")) for i, row in enumerate(rows) for j, cell in enumerate(row.split()[-3:])
                   if i != j)  # fmt: skip
        await pilot.press("x")
        await wait_for(pilot, lambda: "Top results" in text_of(pane, "#heatmap-title"), "the heatmap of results")


async def test_two_embedders_overlap_and_side_by_side_neighbours(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    app, _backend = make_app(app_paths, "fake-b")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, str(notes))
        await compare_tab(pilot, pane)
        pane.query_one("#model-b").value = "fake-b"
        await wait_for(pilot, lambda: pane.overlap is not None, "the neighbour overlap")
        assert pane.model_a == DEFAULT_EMBEDDER_ID and pane.model_b == "fake-b"
        line = text_of(pane, "#overlap-line")
        assert f"{pane.overlap.mean:.2f}" in line and "neighbour overlap at 10" in line
        assert 0 < pane.overlap.mean < 1
        disagreements = pane.query_one("#disagreements", DataTable)
        assert disagreements.row_count == NOTES
        worst = int(disagreements.coordinate_to_cell_key((0, 0)).row_key.value)
        assert pane.overlap.per_item[worst] == pane.overlap.per_item.min()

        disagreements.focus()
        await wait_for(pilot, lambda: app.focused is disagreements, "focus on the disagreements")
        left, right = pane.query_one("#neighbours-a", DataTable), pane.query_one("#neighbours-b", DataTable)
        await wait_for(pilot, lambda: left.row_count == right.row_count == 10, "both neighbour lists")

        await search(pilot, pane, "knots ropes sail")
        await wait_for(pilot, lambda: pane.query_b is not None, "model B's query vector")
        await pilot.press("c")

        def a_rows() -> list[int]:
            return [int(left.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(left.row_count)]

        await wait_for(pilot, lambda: a_rows() == [row for row, _ in top_k(pane.vectors_a, pane.query_a, 10)],
                       "the query's neighbours under A")  # fmt: skip
        assert app.services.manager.info("fake-b").state is ModelState.READY


@pytest.mark.real_model
async def test_the_pane_with_the_real_minilm(app_paths: AppPaths, tmp_path: Path) -> None:
    from workbench.bootstrap import build_services

    notes = write_notes_folder(tmp_path / "notes")
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        assert pane.model_a == DEFAULT_EMBEDDER_ID
        await open_corpus(pilot, pane, str(notes))
        assert pane.vectors_a.shape == (NOTES, 384)
        await search(pilot, pane, "planets and galaxies in the night sky")
        scores = pane.vectors_a @ pane.query_a
        assert [row for row, _ in pane.hits] == sorted(range(NOTES), key=lambda i: -scores[i])[:10]
        assert {pane.corpus.passages[row].source for row, _ in pane.hits[:3]} == {"astronomy.md"}

        await pilot.press("escape", "m")
        await wait_for(pilot, lambda: pane.map_result is not None, "the map")
        clustering = pane.map_result.clustering
        topics = [passage.source for passage in pane.corpus.passages]
        majority = sum(Counter(topics[row] for row in np.flatnonzero(clustering.labels == number)).most_common(1)[0][1]
                       for number in range(clustering.k))  # fmt: skip
        assert clustering.k == 4 and majority / NOTES >= 0.8, majority  # the clusters follow the four topics


@pytest.mark.real_model
async def test_two_real_embedders_side_by_side(app_paths: AppPaths, tmp_path: Path) -> None:
    """MiniLM (mean pooling) against a second real embedder: the same weights read out with CLS pooling."""
    import json
    import shutil

    from workbench.bootstrap import build_services
    from workbench.core.models.backends.sentence_transformers import KIND
    from workbench.core.models.local import default_embedder_spec
    from workbench.core.models.spec import ModelSpec

    cls_model = tmp_path / "minilm-cls"
    shutil.copytree(default_embedder_spec().path, cls_model)
    pooling = cls_model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    services = build_services(app_paths)
    services.manager.register(ModelSpec(id="minilm-cls", name="minilm-cls", kind=KIND, path=cls_model))
    notes = write_notes_folder(tmp_path / "notes")
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        await open_corpus(pilot, pane, str(notes))
        await compare_tab(pilot, pane)
        pane.query_one("#model-b").value = "minilm-cls"
        await wait_for(pilot, lambda: pane.overlap is not None, "the neighbour overlap", timeout=120)
        assert pane.vectors_b.shape == (NOTES, 384)
        assert 0.2 < pane.overlap.mean < 1  # two different read-outs of one network: related, not the same
        await search(pilot, pane, "stars and galaxies")
        await wait_for(pilot, lambda: pane.query_b is not None, "model B's query vector")
        for vectors, query in ((pane.vectors_a, pane.query_a), (pane.vectors_b, pane.query_b)):
            top = [row for row, _ in top_k(vectors, query, 3)]
            assert {pane.corpus.passages[row].source for row in top} == {"astronomy.md"}
        side_by_side = pane.query_one("#neighbours-a", DataTable), pane.query_one("#neighbours-b", DataTable)
        assert [table.row_count for table in side_by_side] == [10, 10]  # the query's neighbours under A and B
