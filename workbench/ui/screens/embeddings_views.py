"""What the Embeddings pane shows: plain functions of its state (the corpus line, the progress label, the hint in
the Compare tab, each model's neighbour list, the passages the heatmap compares) and EmbeddingsView, which paints
the pane's widgets from that state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.text import Text
from textual.widgets import DataTable, ProgressBar, Select, Static, TabbedContent

from workbench.core.embeddings.analysis import CorpusMap, neighbours_of, similarity_matrix, top_k
from workbench.core.embeddings.corpus import Corpus
from workbench.ui.screens.embeddings_work import OVERLAP_K
from workbench.ui.widgets.embedder_comparison import EmbedderComparison
from workbench.ui.widgets.heatmap import HeatmapView
from workbench.ui.widgets.map_view import MapView
from workbench.ui.widgets.passages import snippet

if TYPE_CHECKING:
    from workbench.ui.screens.embeddings import EmbeddingsPane

HEATMAP_MAX = 10
PASSAGE_TABLES = ("results", "members", "disagreements", "neighbours-a", "neighbours-b")  # rows keyed by passage
PROBLEMS_SHOWN = 4

KEYS_HINT = ("Type to search · enter: to the results · m map · c compare two models · h heatmap · "
             "space marks a passage for the heatmap · esc leaves the search box")  # fmt: skip
NO_CORPUS = "No corpus open · ctrl+o opens one"
OPEN_HINT = (
    "Open a corpus with ctrl+o: a .txt file (one item a line), a folder of .txt/.md notes (split into passages), "
    "or a .csv / .jsonl file (add ::column to pick the text column, e.g. data.csv::title)."
)
EMPTY_HEATMAP = ("Mark two or more passages with space (in search results or cluster members), "
                 "or search for something, to compare them here.")  # fmt: skip


def parse_corpus_spec(spec: str) -> tuple[Path, str | None]:
    """`PATH` or `PATH::COLUMN`, with ~ expanded."""
    path, _, column = spec.partition("::")
    return Path(path.strip()).expanduser(), column.strip() or None


def corpus_label(path: Path, column: str | None) -> str:
    return path.name + ("/" if path.is_dir() else "") + (f" [{column}]" if column else "")


def corpus_line(corpus: Corpus | None, label: str, marked: int, status: str) -> Text:
    line = Text()
    if corpus is None:
        line.append(NO_CORPUS)
    else:
        line.append(label, style="bold")
        line.append(f" · {len(corpus.passages)} passages")
        if corpus.problems:
            line.append(f" · {len(corpus.problems)} skipped", style="yellow")
        if marked:
            line.append(f" · {marked} marked")
    if status:
        line.append(f" · {status}", style="italic")
    return line


def skipped_note(problems: list[str]) -> str:
    shown = "\n".join(problems[:PROBLEMS_SHOWN])
    if len(problems) > PROBLEMS_SHOWN:
        shown += f"\n… and {len(problems) - PROBLEMS_SHOWN} more (in the log)"
    return f"Skipped {len(problems)}:\n{shown}"


def progress_label(progress: dict[str, tuple[int, int]]) -> str:
    parts = [f"{side.upper()} {done}/{total}" for side, (done, total) in sorted(progress.items())]
    return f"embedding {' · '.join(parts)} · esc cancels"


def compare_hint(other_models: bool, model_b: str | None, b_embedded: bool, corpus_open: bool) -> str:
    if not other_models:
        return ("Only one embedding model is on this machine. Find another in the Catalog (key 1, t for the "
                "sentence-similarity task), e.g. BAAI/bge-small-en-v1.5; once downloaded it appears here.")
    if model_b is None:
        return "Choose a second model (B) to embed the same corpus and see where their neighbours differ."
    if not b_embedded:
        return f"B ({model_b}) is embedding the corpus…" if corpus_open else "Open a corpus first."
    return ("Left: items whose neighbours differ most. Right: each model's neighbours of the highlighted "
            "item, or of the search query; ● marks neighbours both models share.")


def neighbour_lists(a: np.ndarray | None, b: np.ndarray | None, query_a: np.ndarray | None,
                    query_b: np.ndarray | None, selected: int | None,
                    prefer_item: bool = False) -> list[list[tuple[int, float]]]:  # fmt: skip
    """A's and B's neighbours of the query (when there is one) or of the selected item."""
    if a is None or b is None:
        return []
    if query_a is not None and query_b is not None and not prefer_item:
        return [top_k(a, query_a, OVERLAP_K), top_k(b, query_b, OVERLAP_K)]
    if selected is not None:
        return [neighbours_of(vectors, selected, OVERLAP_K) for vectors in (a, b)]
    return []


def heatmap_rows(marked: list[int], hits: list[tuple[int, float]], query_text: str,
                 corpus_map: CorpusMap | None) -> tuple[str, list[int]]:  # fmt: skip
    """The heatmap's title and passages: the marked ones, else the top results, else each cluster's centre."""
    if len(marked) >= 2:
        return "Marked passages (space marks or unmarks, x clears)", list(marked)
    if len(hits) >= 2:
        return f"Top results for “{query_text}” (space marks your own choice)", \
            [row for row, _ in hits[:HEATMAP_MAX]]  # fmt: skip
    if corpus_map is not None and len(corpus_map.labels) >= 2:
        return "The central passage of each cluster (space marks your own choice)", \
            [label.central for label in corpus_map.labels][:HEATMAP_MAX]  # fmt: skip
    return "", []


class EmbeddingsView:
    """Paints the Embeddings pane's widgets from its state: the pane decides what changes, this shows it."""

    def __init__(self, pane: EmbeddingsPane) -> None:
        self.pane = pane

    def models(self, ids: list[str], names: dict[str, str], model_a: str | None) -> None:
        """Both model choosers list ``ids``; A shows ``model_a``."""
        query_one = self.pane.query_one
        for select_id in ("#model-a", "#model-b"):
            select = query_one(select_id, Select)
            if [value for _, value in select._options if value is not Select.NULL] != ids:
                current = select.value
                select.set_options([(names[i], i) for i in ids])
                if current in ids:
                    select.value = current
        if model_a is not None and query_one("#model-a", Select).value != model_a:
            query_one("#model-a", Select).value = model_a

    def status(self) -> None:
        pane = self.pane
        line = corpus_line(pane.corpus, pane.corpus_label, len(pane.marked), pane.status)
        pane.query_one("#corpus-line", Static).update(line)

    def progress(self) -> None:
        progress = self.pane.progress
        self.pane.query_one("#progress-row").set_class(bool(progress), "running")
        if not progress:
            return
        done = sum(d for d, _ in progress.values())
        total = sum(t for _, t in progress.values())
        self.pane.query_one("#embed-progress", ProgressBar).update(total=max(total, 1), progress=done)
        self.pane.query_one("#progress-label", Static).update(progress_label(progress))

    def detail(self, text: str) -> None:
        self.pane.query_one("#detail", Static).update(text)

    def search_note(self, text: str) -> None:
        self.pane.query_one("#search-status", Static).update(text)

    def results(self, timing: str = "") -> None:
        pane = self.pane
        table = pane.query_one("#results", DataTable)
        table.clear()
        if pane.corpus is None or not pane.hits:
            self.search_note("" if pane.corpus is None or not pane.query_text else "no results yet")
            return
        passages = pane.corpus.passages
        for rank, (row, score) in enumerate(pane.hits, start=1):
            mark = "•" if row in pane.marked else ""
            table.add_row(f"{mark}{rank}", f"{score:.3f}", passages[row].id, snippet(passages[row].text), key=str(row))
        self.search_note(f"top {len(pane.hits)} of {len(passages)} · {timing}" if timing else "")

    def map(self) -> None:
        pane = self.pane
        pane.query_one(MapView).show(pane.corpus, pane.vectors_a, pane.map_result, pane.selected)

    def map_status(self, text: str) -> None:
        self.pane.query_one(MapView).set_status(text)

    def select(self, row: int) -> None:
        self.pane.query_one(MapView).select(row)

    def compare_hint(self, other_models: bool) -> None:
        pane = self.pane
        hint = compare_hint(other_models, pane.model_b, pane.vectors_b is not None, pane.corpus is not None)
        pane.query_one(EmbedderComparison).set_hint(hint)

    def compare_line(self, text: str) -> None:
        self.pane.query_one(EmbedderComparison).set_line(text)

    def overlap(self) -> None:
        self.pane.query_one(EmbedderComparison).show_overlap(self.pane.overlap, self.pane.corpus)
        self.neighbour_lists()

    def neighbour_lists(self, prefer_item: bool = False) -> None:
        pane = self.pane
        lists = neighbour_lists(pane.vectors_a, pane.vectors_b, pane.query_a, pane.query_b, pane.selected, prefer_item)
        pane.query_one(EmbedderComparison).show_lists(pane.corpus, lists)

    def heatmap(self) -> None:
        pane = self.pane
        title, rows = heatmap_rows(pane.marked, pane.hits, pane.query_text, pane.map_result)
        view = pane.query_one(HeatmapView)
        if pane.vectors_a is None or pane.corpus is None or len(rows) < 2:
            view.show_empty(EMPTY_HEATMAP)
            return
        labels = [snippet(pane.corpus.passages[row].text, 60) for row in rows]
        view.show(f"{title} · cosine similarity, model A", labels, similarity_matrix(pane.vectors_a, rows))

    def focused_row(self) -> int | None:
        """The passage under the cursor of the focused passage table, else the selected one."""
        focused = self.pane.focused
        if isinstance(focused, DataTable) and focused.id in PASSAGE_TABLES and focused.row_count:
            key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key.value
            return int(key) if key is not None else None
        return self.pane.selected

    def show_tab(self, tab: str) -> None:
        self.pane.set_focus(None)  # a focused widget in the old tab would pull TabbedContent back to it
        self.pane.query_one(TabbedContent).active = {"map": "map-tab", "heatmap": "heatmap-tab"}.get(tab, tab)

    def tab_shown(self, tab: str) -> None:
        """Focus what a newly shown tab is for (and paint the heatmap, which is built when shown)."""
        query_one = self.pane.query_one
        if tab == "search":
            query_one("#query").focus()
        elif tab == "heatmap-tab":
            self.heatmap()
            query_one("#heatmap-scroll").focus()
        elif tab == "map-tab":
            query_one("#clusters").focus()
        elif tab == "compare":
            query_one("#disagreements" if self.pane.overlap is not None else "#model-b").focus()
