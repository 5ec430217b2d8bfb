"""The Map tab: the scatter plot, the cluster list with sizes and labels, the chosen cluster's passages,
and the selected passage with its nearest neighbours."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from workbench.core.embeddings.analysis import CorpusMap, members_by_centrality, neighbours_of
from workbench.core.embeddings.corpus import Corpus
from workbench.ui.widgets.cluster_map import ClusterMap, cluster_colour
from workbench.ui.widgets.passages import PassageSelected, snippet

NEIGHBOURS_SHOWN = 3
PICK_HINT = "Select a passage (clusters on the right, or click the map) to read it and its neighbours."


class MapView(Vertical):
    DEFAULT_CSS = """
    MapView #map-status { height: 1; color: $text-muted; padding: 0 1; }
    MapView #map { width: 3fr; height: 1fr; }
    MapView #map-side { width: 2fr; }
    MapView #clusters { height: auto; max-height: 45%; }
    MapView #members { height: 1fr; }
    MapView #point-detail { height: auto; max-height: 7; padding: 0 1; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.corpus: Corpus | None = None
        self.vectors: np.ndarray | None = None
        self.corpus_map: CorpusMap | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="map-status")
        with Horizontal():
            yield ClusterMap(id="map")
            with Vertical(id="map-side"):
                yield DataTable(id="clusters", cursor_type="row")
                yield DataTable(id="members", cursor_type="row")
        yield Static("", id="point-detail", markup=False)

    def on_mount(self) -> None:
        self.query_one("#clusters", DataTable).add_columns("", "size", "label")
        self.query_one("#members", DataTable).add_columns("passage")

    def set_status(self, text: str) -> None:
        self.query_one("#map-status", Static).update(text)

    def show(self, corpus: Corpus | None, vectors: np.ndarray | None, corpus_map: CorpusMap | None,
             selected: int | None) -> None:  # fmt: skip
        self.corpus, self.vectors, self.corpus_map = corpus, vectors, corpus_map
        clusters = self.query_one("#clusters", DataTable)
        clusters.clear()
        self.query_one("#members", DataTable).clear()
        if corpus_map is None or corpus is None:
            self.query_one(ClusterMap).show(np.zeros((0, 2)), np.zeros(0, dtype=int))
            self.set_status("" if corpus is None else "the map appears once the corpus is embedded")
            self.select(None)
            return
        self.set_status(f"{corpus_map.projection.method.upper()} · {corpus_map.clustering.k} k-means clusters · "
                        f"{corpus_map.seconds:.2f} s · [ ] fewer/more · p PCA/UMAP")  # fmt: skip
        self.query_one(ClusterMap).show(corpus_map.projection.points, corpus_map.clustering.labels, selected)
        for label in corpus_map.labels:
            name = ", ".join(label.terms) or snippet(corpus.passages[label.central].text, 40)
            clusters.add_row(Text("●", style=cluster_colour(label.cluster)), str(label.size), name,
                             key=str(label.cluster))  # fmt: skip
        self.select(selected)

    def select(self, row: int | None) -> None:
        """Mark a passage on the map and show it with its nearest neighbours."""
        self.query_one(ClusterMap).select(row)
        detail = self.query_one("#point-detail", Static)
        if self.corpus is None or self.vectors is None or row is None:
            detail.update(PICK_HINT)
            return
        passage = self.corpus.passages[row]
        text = Text()
        text.append(f"{passage.id}: ", style="bold")
        text.append(snippet(passage.text, 300))
        for neighbour, score in neighbours_of(self.vectors, row, NEIGHBOURS_SHOWN):
            text.append(f"\n  {score:.3f} ", style="dim")
            text.append(snippet(self.corpus.passages[neighbour].text, 120))
        detail.update(text)

    @on(DataTable.RowHighlighted, "#clusters")
    def cluster_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if self.corpus_map is None or self.corpus is None or self.vectors is None or event.row_key.value is None:
            return
        table = self.query_one("#members", DataTable)
        table.clear()
        for row in members_by_centrality(self.corpus_map, self.vectors, int(event.row_key.value)):
            table.add_row(snippet(self.corpus.passages[row].text, 80), key=str(row))

    @on(DataTable.RowHighlighted, "#members")
    def member_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(PassageSelected(int(event.row_key.value), "map"))

    @on(ClusterMap.PointClicked)
    def point_clicked(self, event: ClusterMap.PointClicked) -> None:
        event.stop()
        self.post_message(PassageSelected(event.row, "map"))
