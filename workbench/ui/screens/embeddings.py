"""The Embeddings pane: open a corpus, embed it, search it as you type, map and cluster it, compare two embedders."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Input, ProgressBar, Select, Static, TabbedContent, TabPane

from workbench.core.embeddings.analysis import (
    CorpusMap,
    Overlap,
    build_map,
    default_cluster_count,
    neighbour_overlap,
    neighbours_of,
    similarity_matrix,
    top_k,
    umap_available,
)
from workbench.core.embeddings.cache import Cancelled
from workbench.core.embeddings.corpus import Corpus, load_corpus
from workbench.core.embeddings.embedder import Embedder
from workbench.core.models.lifecycle import ModelManagerError
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.ui.screens.base import PaneScreen
from workbench.ui.screens.dialogs import PromptScreen
from workbench.ui.widgets.embedder_comparison import EmbedderComparison
from workbench.ui.widgets.heatmap import HeatmapView
from workbench.ui.widgets.map_view import MapView
from workbench.ui.widgets.passages import PassageSelected, snippet

log = logging.getLogger(__name__)

SEARCH_DEBOUNCE_S = 0.12
RESULTS = 10
OVERLAP_K = 10
HEATMAP_MAX = 10
PASSAGE_TABLES = ("results", "members", "disagreements", "neighbours-a", "neighbours-b")  # rows keyed by passage

KEYS_HINT = ("Type to search · enter: to the results · m map · c compare two models · h heatmap · "
             "space marks a passage for the heatmap · esc leaves the search box")  # fmt: skip
NO_CORPUS = "No corpus open · ctrl+o opens one"
OPEN_HINT = (
    "Open a corpus with ctrl+o: a .txt file (one item a line), a folder of .txt/.md notes (split into passages), "
    "or a .csv / .jsonl file (add ::column to pick the text column, e.g. data.csv::title)."
)


def parse_corpus_spec(spec: str) -> tuple[Path, str | None]:
    """`PATH` or `PATH::COLUMN`, with ~ expanded."""
    path, _, column = spec.partition("::")
    return Path(path.strip()).expanduser(), column.strip() or None



class EmbedProgress(Message):
    def __init__(self, side: str, done: int, total: int) -> None:
        super().__init__()
        self.side = side
        self.done = done
        self.total = total


class MapReady(Message):
    def __init__(self, generation: int, result: CorpusMap | None, error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.result = result
        self.error = error


class OverlapReady(Message):
    def __init__(self, generation: int, overlap: Overlap | None, error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.overlap = overlap
        self.error = error


class EmbeddingsPane(PaneScreen):
    MODE = "embeddings"

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
        self.corpus: Corpus | None = None
        self.corpus_label = ""
        self.corpus_spec = ""
        self.generation = 0  # bumped whenever the corpus or a model changes, so late results are dropped
        self.model_a: str | None = None
        self.model_b: str | None = None
        self.vectors_a: np.ndarray | None = None
        self.vectors_b: np.ndarray | None = None
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
        self.progress: dict[str, tuple[int, int]] = {}
        self.cancels: dict[str, threading.Event] = {}
        self.status = ""

    @property
    def embedder(self) -> Embedder:
        return self.app.services.embedder  # type: ignore[attr-defined]

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
        recent = self.app.services.store.embedding_sets(limit=1)  # type: ignore[attr-defined]
        if recent and Path(recent[0].path).exists():
            last = recent[0]
            if last.model_id in self.embedder.model_ids():
                self.model_a = last.model_id
                self.query_one("#model-a", Select).value = last.model_id
            self.open_corpus(Path(last.path), last.column)

    # --- models ----------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        ids = self.embedder.model_ids()
        manager = self.embedder.manager
        options = [(manager.info(i).spec.name, i) for i in ids]
        for select_id in ("#model-a", "#model-b"):
            select = self.query_one(select_id, Select)
            if [value for _, value in select._options if value is not Select.NULL] != ids:
                current = select.value
                select.set_options(options)
                if current in ids:
                    select.value = current
        if self.model_a not in ids:
            self.model_a = DEFAULT_EMBEDDER_ID if DEFAULT_EMBEDDER_ID in ids else (ids[0] if ids else None)
        if self.model_a is not None and self.query_one("#model-a", Select).value != self.model_a:
            self.query_one("#model-a", Select).value = self.model_a
        self.show_compare_hint()

    @on(Select.Changed, "#model-a")
    def model_a_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.model_a:
            return
        self.model_a = str(event.value)
        self.restart("a")

    @on(Select.Changed, "#model-b")
    def model_b_chosen(self, event: Select.Changed) -> None:
        value = None if event.value is Select.NULL else str(event.value)
        if value == self.model_b:
            return
        self.model_b = value
        self.restart("b")

    def restart(self, side: str) -> None:
        """A model changed: drop what the old one produced and embed again (cached vectors come back at once)."""
        self.generation += 1
        self.cancel_side(side)
        self.overlap = None
        if side == "a":
            self.vectors_a, self.query_a, self.map_result = None, None, None
        else:
            self.vectors_b, self.query_b = None, None
        self.show_overlap()
        self.show_compare_hint()
        if self.corpus is not None and self.corpus.passages:
            self.embed(side)

    def action_choose_model(self) -> None:
        select = self.query_one("#model-a", Select)
        select.focus()
        select.expanded = True

    # --- opening a corpus ------------------------------------------------------------------------

    def action_open_corpus(self) -> None:
        def chosen(spec: str | None) -> None:
            if spec:
                self.open_corpus(*parse_corpus_spec(spec))

        title = "Open a corpus: a file or folder (PATH, or PATH::COLUMN for CSV/JSONL)"
        self.app.push_screen(PromptScreen(title, self.corpus_spec, placeholder="~/notes  or  data.csv::text"), chosen)

    @work(group="corpus", exclusive=True, exit_on_error=False)
    async def open_corpus(self, path: Path, column: str | None = None) -> None:
        for side in ("a", "b"):
            self.cancel_side(side)
        path = path.resolve()
        self.corpus_spec = f"{path}::{column}" if column else str(path)
        self.show_status(f"reading {path.name}…")
        corpus = await asyncio.to_thread(load_corpus, path, column)
        self.generation += 1
        self.corpus = corpus
        self.corpus_label = path.name + ("/" if path.is_dir() else "") + (f" [{column}]" if column else "")
        self.vectors_a = self.vectors_b = self.query_a = self.query_b = None
        self.map_result, self.overlap, self.selected, self.hits = None, None, None, []
        self.marked.clear()
        self.show_results()
        self.show_map()
        self.show_overlap()
        problems = corpus.problems
        self.query_one("#detail", Static).update(KEYS_HINT)
        if problems:
            shown = "\n".join(problems[:4]) + (f"\n… and {len(problems) - 4} more (in the log)" if len(problems) > 4
                                               else "")  # fmt: skip
            self.query_one("#detail", Static).update(f"Skipped {len(problems)}:\n{shown}")
            for problem in problems:
                log.info("corpus %s: %s", path, problem)
        if not corpus.passages:
            self.show_status("nothing to embed")
            self.notify(f"No passages in {path.name}" + (f": {problems[0]}" if problems else ""), severity="warning")
            return
        self.show_status("")
        self.embed("a")
        if self.model_b is not None:
            self.embed("b")

    # --- embedding -------------------------------------------------------------------------------

    def embed(self, side: str) -> None:
        model_id = self.model_a if side == "a" else self.model_b
        if model_id is None or self.corpus is None:
            return
        self.run_worker(self.embed_side(side, model_id, self.corpus.texts, self.generation),
                        group=f"embed-{side}", exclusive=True, exit_on_error=False)  # fmt: skip

    async def embed_side(self, side: str, model_id: str, texts: list[str], generation: int) -> None:
        cancel = self.cancels[side] = threading.Event()
        self.progress[side] = (0, len(texts))
        self.show_progress()
        started = time.perf_counter()
        try:
            vectors = await self.embedder.embed(
                model_id, texts, progress=lambda done, total: self.post_message(EmbedProgress(side, done, total)),
                cancel=cancel,
            )
        except Cancelled as exc:
            self.show_status(f"{side.upper()}: {exc}; ctrl+o and enter continues where it stopped")
            return
        except ModelManagerError as exc:
            self.show_status(f"{side.upper()}: {exc}")
            self.notify(str(exc), severity="error", timeout=15)
            return
        except Exception as exc:
            log.exception("embedding with %s failed", model_id)
            self.show_status(f"{side.upper()}: embedding failed ({type(exc).__name__}: {exc})")
            return
        finally:
            self.progress.pop(side, None)
            if self.cancels.get(side) is cancel:
                del self.cancels[side]
            self.show_progress()
        if generation != self.generation:
            return
        seconds = time.perf_counter() - started
        self.show_status(f"{side.upper()} embedded {len(texts)} in {seconds:.1f} s")
        if side == "a":
            self.vectors_a = vectors
            if self.corpus_spec:
                path, column = parse_corpus_spec(self.corpus_spec)
                self.app.services.store.remember_embedding_set(  # type: ignore[attr-defined]
                    str(path), column, model_id, len(texts)
                )
            self.compute_map()
            if self.query_text:
                self.search(self.query_text)
        else:
            self.vectors_b = vectors
        self.show_compare_hint()
        if self.vectors_a is not None and self.vectors_b is not None:
            self.compute_overlap()
            if self.query_text:
                self.search(self.query_text)

    def on_embed_progress(self, message: EmbedProgress) -> None:
        if message.side in self.progress:
            self.progress[message.side] = (message.done, message.total)
            self.show_progress()

    def show_progress(self) -> None:
        row = self.query_one("#progress-row")
        row.set_class(bool(self.progress), "running")
        if not self.progress:
            return
        done = sum(d for d, _ in self.progress.values())
        total = sum(t for _, t in self.progress.values())
        self.query_one("#embed-progress", ProgressBar).update(total=max(total, 1), progress=done)
        parts = [f"{side.upper()} {d}/{t}" for side, (d, t) in sorted(self.progress.items())]
        self.query_one("#progress-label", Static).update(f"embedding {' · '.join(parts)} · esc cancels")

    def cancel_side(self, side: str) -> None:
        if side in self.cancels:
            self.cancels[side].set()

    def action_cancel(self) -> None:
        if self.cancels:
            for side in list(self.cancels):
                self.cancel_side(side)
        elif self.focused is self.query_one("#query"):
            self.query_one("#results").focus()

    def show_status(self, status: str) -> None:
        self.status = status
        line = Text()
        if self.corpus is None:
            line.append(NO_CORPUS)
        else:
            line.append(self.corpus_label, style="bold")
            line.append(f" · {len(self.corpus.passages)} passages")
            if self.corpus.problems:
                line.append(f" · {len(self.corpus.problems)} skipped", style="yellow")
            if self.marked:
                line.append(f" · {len(self.marked)} marked")
        if status:
            line.append(f" · {status}", style="italic")
        self.query_one("#corpus-line", Static).update(line)

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

    @work(group="search", exclusive=True, exit_on_error=False)
    async def search(self, text: str) -> None:
        await asyncio.sleep(SEARCH_DEBOUNCE_S)  # a newer keystroke cancels this worker first
        if not text or self.vectors_a is None or self.model_a is None:
            self.hits, self.hits_for, self.query_a, self.query_b = [], "", None, None
            self.show_results()
            self.show_neighbour_lists()
            return
        generation = self.generation
        started = time.perf_counter()
        if not self.embedder.manager.info(self.model_a).resident:  # the first query loads the model: seconds
            self.query_one("#search-status", Static).update(f"loading {self.model_a} to embed the query…")
        try:
            query = await self.embedder.encode_query(self.model_a, text)
        except ModelManagerError as exc:
            self.query_one("#search-status", Static).update(str(exc))
            return
        encoded = time.perf_counter()
        if generation != self.generation or self.vectors_a is None:
            return
        self.hits = top_k(self.vectors_a, query, RESULTS)
        searched = time.perf_counter()
        self.hits_for = text
        self.query_a = query
        self.show_results(f"{(searched - encoded) * 1000:.1f} ms search + {(encoded - started) * 1000:.0f} ms "
                          "to embed the query")  # fmt: skip
        self.query_b = None
        if self.model_b is not None and self.vectors_b is not None:
            query_b = await self.embedder.encode_query(self.model_b, text)
            if generation == self.generation:
                self.query_b = query_b
        self.show_neighbour_lists()

    def show_results(self, timing: str = "") -> None:
        table = self.query_one("#results", DataTable)
        table.clear()
        status = self.query_one("#search-status", Static)
        if self.corpus is None or not self.hits:
            status.update("" if self.corpus is None or not self.query_text else "no results yet")
            return
        passages = self.corpus.passages
        for rank, (row, score) in enumerate(self.hits, start=1):
            mark = "•" if row in self.marked else ""
            table.add_row(f"{mark}{rank}", f"{score:.3f}", passages[row].id, snippet(passages[row].text), key=str(row))
        status.update(f"top {len(self.hits)} of {len(passages)} · {timing}" if timing else "")

    @on(DataTable.RowHighlighted, "#results")
    def result_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            row = int(event.row_key.value)
            if self.corpus is not None:
                self.query_one("#detail", Static).update(self.corpus.passages[row].text)
            self.select_passage(row)

    # --- selection ------------------------------------------------------------------------------

    def select_passage(self, row: int) -> None:
        self.selected = row
        self.query_one(MapView).select(row)

    def on_passage_selected(self, message: PassageSelected) -> None:
        self.select_passage(message.row)
        if message.source == "compare":
            self.show_neighbour_lists(prefer_item=True)

    # --- the map ---------------------------------------------------------------------------------

    def compute_map(self) -> None:
        if self.vectors_a is None or self.corpus is None:
            return
        self.query_one(MapView).set_status("projecting and clustering…")
        k = self.cluster_count or default_cluster_count(len(self.vectors_a))
        self.map_worker(self.vectors_a, self.corpus.texts, k, self.projection_method, self.generation)

    @work(thread=True, group="map", exclusive=True, exit_on_error=False)
    def map_worker(self, vectors: np.ndarray, texts: list[str], k: int, method: str, generation: int) -> None:
        try:
            corpus_map = build_map(vectors, texts, k=k, method=method)
        except Exception as exc:
            log.exception("projecting the corpus failed")
            self.post_message(MapReady(generation, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(MapReady(generation, corpus_map))

    def on_map_ready(self, message: MapReady) -> None:
        if message.generation != self.generation:
            return
        if message.result is None:
            self.query_one(MapView).set_status(f"map failed: {message.error}")
            return
        self.map_result = message.result
        self.show_map()

    def show_map(self) -> None:
        self.query_one(MapView).show(self.corpus, self.vectors_a, self.map_result, self.selected)

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
        others = [i for i in self.embedder.model_ids() if i != self.model_a]
        if not others:
            hint = ("Only one embedding model is on this machine. Find another in the Catalog (key 1, t for the "
                    "sentence-similarity task), e.g. BAAI/bge-small-en-v1.5; once downloaded it appears here.")
        elif self.model_b is None:
            hint = "Choose a second model (B) to embed the same corpus and see where their neighbours differ."
        elif self.vectors_b is None:
            hint = f"B ({self.model_b}) is embedding the corpus…" if self.corpus else "Open a corpus first."
        else:
            hint = ("Left: items whose neighbours differ most. Right: each model's neighbours of the highlighted "
                    "item, or of the search query; ● marks neighbours both models share.")
        self.query_one(EmbedderComparison).set_hint(hint)

    def compute_overlap(self) -> None:
        if self.vectors_a is None or self.vectors_b is None:
            return
        self.query_one(EmbedderComparison).set_line("comparing neighbours…")
        self.overlap_worker(self.vectors_a, self.vectors_b, self.generation)

    @work(thread=True, group="overlap", exclusive=True, exit_on_error=False)
    def overlap_worker(self, a: np.ndarray, b: np.ndarray, generation: int) -> None:
        try:
            overlap = neighbour_overlap(a, b, k=OVERLAP_K)
        except Exception as exc:
            log.exception("comparing neighbours failed")
            self.post_message(OverlapReady(generation, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(OverlapReady(generation, overlap))

    def on_overlap_ready(self, message: OverlapReady) -> None:
        if message.generation != self.generation:
            return
        if message.overlap is None:
            self.query_one(EmbedderComparison).set_line(f"comparison failed: {message.error}")
            return
        self.overlap = message.overlap
        self.show_overlap()

    def show_overlap(self) -> None:
        self.query_one(EmbedderComparison).show_overlap(self.overlap, self.corpus)
        self.show_neighbour_lists()

    def show_neighbour_lists(self, prefer_item: bool = False) -> None:
        """A's and B's neighbours of the query (when there is one) or of the selected item."""
        lists: list[list[tuple[int, float]]] = []
        a, b = self.vectors_a, self.vectors_b
        if a is not None and b is not None:
            if self.query_a is not None and self.query_b is not None and not prefer_item:
                lists = [top_k(a, self.query_a, OVERLAP_K), top_k(b, self.query_b, OVERLAP_K)]
            elif self.selected is not None:
                lists = [neighbours_of(vectors, self.selected, OVERLAP_K) for vectors in (a, b)]
        self.query_one(EmbedderComparison).show_lists(self.corpus, lists)

    # --- marks and the heatmap -------------------------------------------------------------------

    def focused_row(self) -> int | None:
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id in PASSAGE_TABLES and focused.row_count:
            key = focused.coordinate_to_cell_key(focused.cursor_coordinate).row_key.value
            return int(key) if key is not None else None
        return self.selected

    def action_mark(self) -> None:
        row = self.focused_row()
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
        self.show_heatmap()

    def action_clear_marks(self) -> None:
        self.marked.clear()
        self.show_status(self.status)
        self.show_heatmap()

    def heatmap_rows(self) -> tuple[str, list[int]]:
        if len(self.marked) >= 2:
            return "Marked passages (space marks or unmarks, x clears)", list(self.marked)
        if len(self.hits) >= 2:
            return f"Top results for “{self.query_text}” (space marks your own choice)", \
                [row for row, _ in self.hits[:HEATMAP_MAX]]  # fmt: skip
        if self.map_result is not None and len(self.map_result.labels) >= 2:
            return "The central passage of each cluster (space marks your own choice)", \
                [label.central for label in self.map_result.labels][:HEATMAP_MAX]  # fmt: skip
        return "", []

    def show_heatmap(self) -> None:
        title, rows = self.heatmap_rows()
        view = self.query_one(HeatmapView)
        if self.vectors_a is None or self.corpus is None or len(rows) < 2:
            view.show_empty("Mark two or more passages with space (in search results or cluster members), "
                            "or search for something, to compare them here.")  # fmt: skip
            return
        labels = [snippet(self.corpus.passages[row].text, 60) for row in rows]
        view.show(f"{title} · cosine similarity, model A", labels, similarity_matrix(self.vectors_a, rows))

    # --- tabs ------------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.set_focus(None)  # a focused widget in the old tab would pull TabbedContent back to it
        self.query_one(TabbedContent).active = {"map": "map-tab", "heatmap": "heatmap-tab"}.get(tab, tab)

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        if pane == "search":
            self.query_one("#query").focus()
        elif pane == "heatmap-tab":
            self.show_heatmap()
            self.query_one("#heatmap-scroll").focus()
        elif pane == "map-tab":
            self.query_one("#clusters").focus()
        elif pane == "compare":
            self.query_one("#disagreements" if self.overlap is not None else "#model-b").focus()
