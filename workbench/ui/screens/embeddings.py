"""The Embeddings pane: open a corpus, embed it, search it as you type, map and cluster it, compare two embedders.

This module lays the pane out and keeps what its tabs derive from the vectors (the search hits, the map, the
overlap, the marks); the corpus and its vectors are CorpusPane's (embeddings_corpus.py), the work runs in
embeddings_work.py (workers that post messages) and embeddings_views.py paints the widgets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, ProgressBar, Select, Static, TabbedContent, TabPane

from workbench.core.embeddings.analysis import (
    CorpusMap,
    Overlap,
    default_cluster_count,
    umap_available,
)
from workbench.ui.screens.base import PaneScreen
from workbench.ui.screens.embeddings_corpus import CorpusPane
from workbench.ui.screens.embeddings_views import (
    HEATMAP_MAX,
    NO_CORPUS,
    OPEN_HINT,
    EmbeddingsView,
)
from workbench.ui.screens.embeddings_work import (
    MapReady,
    OverlapReady,
    QueryEncodedB,
    SearchAnswered,
    SearchInputs,
    SearchNote,
)
from workbench.ui.services import services_of
from workbench.ui.widgets.embedder_comparison import EmbedderComparison
from workbench.ui.widgets.heatmap import HeatmapView
from workbench.ui.widgets.map_view import MapView
from workbench.ui.widgets.passages import PassageSelected


class EmbeddingsPane(CorpusPane, PaneScreen):
    MODE = "embeddings"
    MAIN_VIEW, TEXT_BOX = "#results", "#query"
    RUNNING = {"cancels": "a corpus is being embedded"}

    BINDINGS = [
        Binding("ctrl+o", "open_corpus", "Open", id="embeddings.open"),
        Binding("escape", "cancel", "Cancel", id="embeddings.cancel"),
        Binding("slash", "focus_query", "Search", id="embeddings.search"),
        Binding("m", "show_tab('map')", "Map", id="embeddings.map"),
        Binding("c", "show_tab('compare')", "Compare", id="embeddings.compare"),
        Binding("h", "show_tab('heatmap')", "Heatmap", id="embeddings.heatmap"),
        Binding("s", "show_tab('search')", "Search tab", id="embeddings.search_tab", show=False),
        Binding("space", "mark", "Mark", id="embeddings.mark", show=False),
        Binding("x", "clear_marks", "Clear marks", id="embeddings.clear_marks", show=False),
        Binding("left_square_bracket", "clusters(-1)", "Fewer clusters", id="embeddings.fewer", show=False),
        Binding("right_square_bracket", "clusters(1)", "More clusters", id="embeddings.more", show=False),
        Binding("p", "toggle_projection", "PCA/UMAP", id="embeddings.projection", show=False),
        Binding("ctrl+l", "choose_model", "Model", id="embeddings.model", show=False),
    ]

    DEFAULT_CSS = """
    EmbeddingsPane #emb-top { height: 3; }
    EmbeddingsPane #model-a, EmbeddingsPane #model-b { width: 38; }
    EmbeddingsPane #corpus-line { width: 1fr; padding: 1 1 0 1; }
    EmbeddingsPane #progress-row { height: 1; display: none; padding: 0 1; }
    EmbeddingsPane #progress-row.running { display: block; }
    EmbeddingsPane #embed-progress { width: 30; }
    EmbeddingsPane #progress-label { width: 1fr; color: $text-muted; }
    EmbeddingsPane TabbedContent { height: 1fr; }
    EmbeddingsPane TabPane { padding: 0; }
    EmbeddingsPane #results { height: 1fr; }
    EmbeddingsPane #search-status { height: 1; color: $text-muted; padding: 0 1; }
    EmbeddingsPane #detail { height: auto; max-height: 6; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.query_a: np.ndarray | None = None
        self.query_b: np.ndarray | None = None
        self.query_text = ""
        self.hits: list[tuple[int, float]] = []
        self.hits_for = ""  # the query the shown hits answer
        self.map_result: CorpusMap | None = None
        self.cluster_count: int | None = None
        self.projection_method = "pca"
        self.overlap: Overlap | None = None
        self.selected: int | None = None
        self.marked: list[int] = []
        self.view = EmbeddingsView(self)

    # --- layout ----------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="emb-top"):
            yield Static(NO_CORPUS, id="corpus-line", markup=False)
            yield Select[str]([], prompt="Embedding model (ctrl+l)", id="model-a", allow_blank=True)
        with Horizontal(id="progress-row"):
            yield ProgressBar(id="embed-progress", show_eta=False)
            yield Static("", id="progress-label")
        with TabbedContent(initial="search"):
            with TabPane("Search", id="search"):
                yield Input(placeholder="Type to search the corpus (/ from anywhere)", id="query")
                yield Static("", id="search-status")
                yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
                yield Static(OPEN_HINT, id="detail", markup=False)
            with TabPane("Map", id="map-tab"):
                yield MapView()
            with TabPane("Compare", id="compare"):
                yield Select[str]([], prompt="Second model (B)", id="model-b", allow_blank=True)
                yield EmbedderComparison()
            with TabPane("Heatmap", id="heatmap-tab"):
                yield HeatmapView(id="heatmap-scroll")

    def on_mount(self) -> None:
        self.query_one("#results", DataTable).add_columns("#", "score", "source", "passage")
        self.watch(self.app, "models_version", lambda _v: self.refresh_models())
        self.refresh_models()
        self.show_compare_hint()
        self.query_one("#query", Input).focus()
        recent = services_of(self).store.embedding_sets.embedding_sets(limit=1)
        if recent and Path(recent[0].path).exists():
            last = recent[0]
            if last.model_id in self.embedder.model_ids():
                self.model_a = last.model_id
                self.query_one("#model-a", Select).value = last.model_id
            self.open_corpus(Path(last.path), last.column)

    # --- the corpus and its vectors changed (CorpusPane's hooks) ----------------------------------

    def forget(self, side: str) -> None:
        self.overlap = None
        if side == "a":
            self.query_a, self.map_result = None, None
        else:
            self.query_b = None
        self.view.overlap()
        self.show_compare_hint()

    def corpus_opened(self) -> None:
        self.query_a = self.query_b = None
        self.map_result, self.overlap, self.selected, self.hits = None, None, None, []
        self.marked.clear()
        self.view.results()
        self.view.map()
        self.view.overlap()
        if self.focused is self.query_one("#query"):
            self.show_main_view()  # so m, c, h switch tabs instead of typing

    def embedded(self, side: str) -> None:
        if side == "a":
            self.compute_map()
            if self.query_text:
                self.search(self.query_text)
        self.show_compare_hint()
        if self.vectors_a is not None and self.vectors_b is not None:
            self.compute_overlap()
            if self.query_text:
                self.search(self.query_text)

    def to_text_box(self) -> None:
        self.action_focus_query()

    def action_cancel(self) -> None:
        if self.cancels:
            for side in list(self.cancels):
                self.cancel_side(side)
        elif self.focused is self.query_one("#query"):
            self.query_one("#results").focus()

    # --- search ----------------------------------------------------------------------------------

    def action_focus_query(self) -> None:
        self.set_focus(None)
        self.query_one(TabbedContent).active = "search"
        self.query_one("#query", Input).focus()

    @on(Input.Changed, "#query")
    def query_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.search(self.query_text)

    @on(Input.Submitted, "#query")
    def query_submitted(self) -> None:
        self.query_one("#results").focus()

    def search(self, text: str) -> None:
        self.jobs.search(text, lambda: SearchInputs(self.generation, self.model_a, self.vectors_a, self.model_b,
                                                    self.vectors_b))  # fmt: skip

    def on_search_note(self, message: SearchNote) -> None:
        self.view.search_note(message.text)

    def on_search_answered(self, message: SearchAnswered) -> None:
        if message.generation != self.generation or (message.text and self.vectors_a is None):
            return
        self.hits, self.hits_for, self.query_a = message.hits, message.text, message.query
        self.query_b = None
        self.view.results(message.timing)

    def on_query_encoded_b(self, message: QueryEncodedB) -> None:
        if message.generation == self.generation:
            self.query_b = message.query
        self.view.neighbour_lists()

    @on(DataTable.RowHighlighted, "#results")
    def result_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            row = int(event.row_key.value)
            if self.corpus is not None:
                self.view.detail(self.corpus.passages[row].text)
            self.select_passage(row)

    def select_passage(self, row: int) -> None:
        self.selected = row
        self.view.select(row)

    def on_passage_selected(self, message: PassageSelected) -> None:
        self.select_passage(message.row)
        if message.source == "compare":
            self.view.neighbour_lists(prefer_item=True)

    # --- the map ---------------------------------------------------------------------------------

    def compute_map(self) -> None:
        if self.vectors_a is None or self.corpus is None:
            return
        self.view.map_status("projecting and clustering…")
        k = self.cluster_count or default_cluster_count(len(self.vectors_a))
        self.jobs.project(self.vectors_a, self.corpus.texts, k, self.projection_method, self.generation)

    def on_map_ready(self, message: MapReady) -> None:
        if message.generation != self.generation:
            return
        if message.result is None:
            self.view.map_status(f"map failed: {message.error}")
            return
        self.map_result = message.result
        self.view.map()

    def action_clusters(self, step: int) -> None:
        if self.vectors_a is None:
            return
        current = self.cluster_count or default_cluster_count(len(self.vectors_a))
        self.cluster_count = max(2, min(len(self.vectors_a), current + step, 20))
        if self.cluster_count != current:
            self.compute_map()

    def action_toggle_projection(self) -> None:
        if self.projection_method == "pca" and not umap_available():
            self.notify("UMAP needs the umap-learn package: .venv/bin/pip install -e '.[umap]'", severity="warning")
            return
        self.projection_method = "umap" if self.projection_method == "pca" else "pca"
        self.compute_map()

    # --- two embedders ---------------------------------------------------------------------------

    def show_compare_hint(self) -> None:
        self.view.compare_hint(any(i != self.model_a for i in self.embedder.model_ids()))

    def compute_overlap(self) -> None:
        if self.vectors_a is None or self.vectors_b is None:
            return
        self.view.compare_line("comparing neighbours…")
        self.jobs.compare(self.vectors_a, self.vectors_b, self.generation)

    def on_overlap_ready(self, message: OverlapReady) -> None:
        if message.generation != self.generation:
            return
        if message.overlap is None:
            self.view.compare_line(f"comparison failed: {message.error}")
            return
        self.overlap = message.overlap
        self.view.overlap()

    # --- marks and the heatmap -------------------------------------------------------------------

    def action_mark(self) -> None:
        row = self.view.focused_row()
        if row is None:
            return
        if row in self.marked:
            self.marked.remove(row)
        elif len(self.marked) >= HEATMAP_MAX:
            self.notify(f"The heatmap shows up to {HEATMAP_MAX} passages; x clears the marks.", severity="warning")
            return
        else:
            self.marked.append(row)
        self.show_status(self.status)
        self.view.heatmap()

    def action_clear_marks(self) -> None:
        self.marked.clear()
        self.show_status(self.status)
        self.view.heatmap()

    # --- tabs ------------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.view.show_tab(tab)

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self.view.tab_shown(event.pane.id)
