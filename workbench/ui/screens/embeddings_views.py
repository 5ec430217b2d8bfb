"""What the Embeddings pane shows, as plain functions of its state: the corpus line, the progress label, the hint
in the Compare tab, each model's neighbour list and the passages the heatmap compares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.text import Text

from workbench.core.embeddings.analysis import CorpusMap
from workbench.core.embeddings.corpus import Corpus, neighbours_of, top_k
from workbench.ui.screens.embeddings_work import OVERLAP_K

HEATMAP_MAX = 10
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
