"""The Compare tab's body: how much two embedders agree (neighbour overlap at k), the items they disagree on
most, and both models' neighbour lists side by side."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from workbench.core.embeddings.analysis import Overlap, least_agreeing
from workbench.core.embeddings.corpus import Corpus
from workbench.ui.widgets.passages import PassageSelected, snippet

DISAGREEMENTS_SHOWN = 200
LOW_OVERLAP = 0.3


class EmbedderComparison(Vertical):
    DEFAULT_CSS = """
    EmbedderComparison #overlap-line { height: 1; color: $text-muted; padding: 0 1; }
    EmbedderComparison #compare-hint { height: auto; padding: 0 1; color: $text-muted; }
    EmbedderComparison DataTable { width: 1fr; height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="overlap-line")
        yield Static("", id="compare-hint", markup=False)
        with Horizontal():
            yield DataTable(id="disagreements", cursor_type="row")
            yield DataTable(id="neighbours-a", cursor_type="row")
            yield DataTable(id="neighbours-b", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#disagreements", DataTable).add_columns("overlap", "passage")
        self.query_one("#neighbours-a", DataTable).add_columns("A", "passage")
        self.query_one("#neighbours-b", DataTable).add_columns("B", "passage")

    def set_hint(self, text: str) -> None:
        self.query_one("#compare-hint", Static).update(text)

    def set_line(self, text: str) -> None:
        self.query_one("#overlap-line", Static).update(text)

    def show_overlap(self, overlap: Overlap | None, corpus: Corpus | None) -> None:
        table = self.query_one("#disagreements", DataTable)
        table.clear()
        if overlap is None or corpus is None:
            self.set_line("")
            return
        low = int(np.sum(overlap.per_item <= LOW_OVERLAP))
        self.set_line(f"neighbour overlap at {overlap.k}: {overlap.mean:.2f} on average · "
                      f"{low} of {len(overlap.per_item)} items share ≤ {LOW_OVERLAP:.0%}")  # fmt: skip
        for row in least_agreeing(overlap, DISAGREEMENTS_SHOWN):
            table.add_row(f"{overlap.per_item[row]:.1f}", snippet(corpus.passages[row].text, 80), key=str(row))

    def show_lists(self, corpus: Corpus | None, lists: list[list[tuple[int, float]]]) -> None:
        """Model A's and model B's neighbours side by side; ● marks the ones both lists have."""
        tables = self.query_one("#neighbours-a", DataTable), self.query_one("#neighbours-b", DataTable)
        for table in tables:
            table.clear()
        if corpus is None or len(lists) != 2:
            return
        shared = {row for row, _ in lists[0]} & {row for row, _ in lists[1]}
        for table, hits in zip(tables, lists, strict=True):
            for row, score in hits:
                table.add_row(Text(("● " if row in shared else "  ") + f"{score:.2f}"),
                              snippet(corpus.passages[row].text, 60), key=str(row))  # fmt: skip

    @on(DataTable.RowHighlighted, "#disagreements")
    def disagreement_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(PassageSelected(int(event.row_key.value), "compare"))
