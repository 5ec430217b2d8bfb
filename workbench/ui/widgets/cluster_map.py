"""The corpus as a 2-D scatter plot: one colour per cluster, the selected passage marked, a click selects."""

from __future__ import annotations

import numpy as np
from textual import on
from textual.events import Click
from textual.message import Message
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, PlotWidget

# Tableau 10: distinct on dark and light backgrounds; cluster 0 (the largest) gets the first colour.
CLUSTER_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip
SELECTED_STYLE = "bold reverse"


def cluster_colour(cluster: int) -> str:
    return CLUSTER_COLOURS[cluster % len(CLUSTER_COLOURS)]


class ClusterMap(PlotWidget):
    """Keys from PlotWidget: + / - zoom, arrows pan, r resets the view."""

    class PointClicked(Message):
        def __init__(self, row: int) -> None:
            super().__init__()
            self.row = row

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.points = np.zeros((0, 2), dtype=np.float32)
        self.labels = np.zeros(0, dtype=int)
        self.selected: int | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.margin_left = 1
        self.margin_bottom = 1
        self.margin_top = 0
        self.set_xticks([])  # a projection's axes have no units worth reading
        self.set_yticks([])

    def show(self, points: np.ndarray, labels: np.ndarray, selected: int | None = None) -> None:
        self.points = np.asarray(points, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=int)
        self.selected = selected
        self.redraw()

    def select(self, row: int | None) -> None:
        if row != self.selected:
            self.selected = row
            self.redraw()

    def redraw(self) -> None:
        self.clear()
        if len(self.points) == 0:
            return
        for cluster in range(int(self.labels.max()) + 1 if len(self.labels) else 0):
            members = self.points[self.labels == cluster]
            if len(members):
                self.scatter(members[:, 0], members[:, 1], hires_mode=HiResMode.BRAILLE,
                             marker_style=cluster_colour(cluster))  # fmt: skip
        if self.selected is not None and 0 <= self.selected < len(self.points):
            x, y = self.points[self.selected]
            self.scatter([float(x)], [float(y)], marker="◉", marker_style=SELECTED_STYLE)

    def nearest(self, x: float, y: float) -> int | None:
        """The point closest to a data coordinate, measured in the plot's own scale."""
        if len(self.points) == 0:
            return None
        span_x = max(self._x_max - self._x_min, 1e-9)
        span_y = max(self._y_max - self._y_min, 1e-9)
        distance = ((self.points[:, 0] - x) / span_x) ** 2 + ((self.points[:, 1] - y) / span_y) ** 2
        return int(np.argmin(distance))

    @on(Click)
    def clicked(self, event: Click) -> None:
        canvas = self.query_one("#plot", Canvas)
        offset = event.screen_offset - self.screen.get_offset(canvas)
        row = self.nearest(*self.get_coordinate_from_pixel(offset.x, offset.y))
        if row is not None:
            self.post_message(self.PointClicked(row))
