"""A similarity matrix as a Rich table: each cell's background runs from cold (dissimilar) to warm (similar)."""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

COLD = Color.from_rgb(40, 60, 120)
WARM = Color.from_rgb(230, 120, 40)


def cell_colour(value: float, low: float, high: float) -> Color:
    fraction = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    cold, warm = COLD.get_truecolor(), WARM.get_truecolor()
    return Color.from_rgb(*(round(c + (w - c) * fraction) for c, w in zip(cold, warm, strict=True)))


def similarity_text(value: float) -> str:
    """A similarity in three or four characters: ".82", "-.05", "1" (a row with itself)."""
    if value >= 0.995:
        return "1"
    text = f"{value:.2f}"
    return text.replace("0.", ".", 1) if abs(value) < 1 else text


def heatmap_table(labels: list[str], matrix: np.ndarray, width: int | None = None) -> Table:
    """Rows and columns are numbered; the row header carries the label. The scale spans the off-diagonal values.
    The number columns keep their width (a narrow screen shortens the labels, never the values)."""
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    cell_width = max([len(similarity_text(float(v))) for v in matrix.flat] + [len(str(len(labels)))])
    label_width = 36 if width is None else max(6, min(36, width - len(labels) * (cell_width + 2) - 1))
    table.add_column("", no_wrap=True, overflow="ellipsis", max_width=label_width)
    for number in range(1, len(labels) + 1):
        table.add_column(str(number), justify="right", no_wrap=True, min_width=cell_width)
    off_diagonal = matrix[~np.eye(len(labels), dtype=bool)] if len(labels) > 1 else np.array([0.0, 1.0])
    low, high = float(off_diagonal.min()), float(off_diagonal.max())
    for row, label in enumerate(labels):
        cells = [Text(f"{row + 1} {label}")]
        for column in range(len(labels)):
            value = float(matrix[row, column])
            colour = Color.from_rgb(90, 90, 90) if row == column else cell_colour(value, low, high)
            cells.append(Text(similarity_text(value), style=Style(bgcolor=colour, color="white")))
        table.add_row(*cells)
    return table


class HeatmapView(VerticalScroll):
    DEFAULT_CSS = """
    HeatmapView { height: 1fr; padding: 0 1; }
    HeatmapView #heatmap-title { height: 1; color: $text-muted; }
    """

    shown: tuple[list[str], np.ndarray] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="heatmap-title", markup=False)
        yield Static("", id="heatmap")

    def show(self, title: str, labels: list[str], matrix: np.ndarray) -> None:
        self.query_one("#heatmap-title", Static).update(title)
        self.shown = (labels, matrix)
        width = self.scrollable_content_region.width or self.app.size.width - 4
        self.query_one("#heatmap", Static).update(heatmap_table(labels, matrix, width))

    def on_resize(self) -> None:
        if self.shown is not None:
            self.show(str(self.query_one("#heatmap-title", Static).content), *self.shown)

    def show_empty(self, text: str) -> None:
        self.shown = None
        self.query_one("#heatmap-title", Static).update("")
        self.query_one("#heatmap", Static).update(text)
