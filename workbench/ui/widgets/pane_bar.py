"""The row of pane names at the top, with their keys; the current pane is highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

PANES: list[tuple[str, str, str]] = [
    ("catalog", "1", "Catalog"),
    ("downloads", "2", "Downloads"),
    ("chat", "3", "Chat"),
    ("compare", "4", "Compare"),
    ("embeddings", "5", "Embeddings"),
    ("models", "6", "Models"),
]


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
        for mode, default_key, title in PANES:
            key = keys.get(mode, default_key)
            style = "bold reverse" if mode == self.current else ""
            text.append(f" {key} {title} ", style=style)
        self.update(text)
