"""The row of pane names at the top, with their keys; the current pane is highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from workbench.ui.panes import PANES


class PaneBar(Static):
    DEFAULT_CSS = """
    PaneBar {
        dock: top;
        height: 1;
        background: $panel;
    }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def on_mount(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        keys = getattr(self.app, "pane_keys", {})
        for pane in PANES:
            key = keys.get(pane.mode, pane.key)
            style = "bold reverse" if pane.mode == self.current else ""
            text.append(f" {key} {pane.title} ", style=style)
        self.update(text)
