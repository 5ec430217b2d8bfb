"""Panes whose issues are not built yet: they say so plainly and point at what works today."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from workbench.ui.screens.base import PaneScreen

_PLANNED = {
    "chat": (
        "Chat",
        "Stream answers from a local MLX model with stop, history, system prompt, sampling settings "
        "and speed figures.",
    ),
    "embeddings": (
        "Embeddings",
        "Embed a corpus, search neighbours and see it as a 2-D map with clusters.",
    ),
}


class PlaceholderPane(PaneScreen):
    DEFAULT_CSS = """
    PlaceholderPane #placeholder-text { padding: 1 2; }
    """

    def compose_body(self) -> ComposeResult:
        title, plan = _PLANNED[self.MODE]
        extra = self.extra_text()
        models_key = getattr(self.app, "pane_keys", {}).get("models", "6")
        text = Text()
        text.append(f"{title}\n\n", style="bold")
        text.append("Not built yet.", style="bold reverse")
        text.append(" This pane is coming in a later release.\n\n")
        text.append(f"What it will do: {plan}\n\n{extra}")
        text.append(f"Today the Models view (key {models_key}) shows the models this machine has, their memory, "
                    "and lets you load, unload and pin them.")  # fmt: skip
        with VerticalScroll():
            yield Static(text, id="placeholder-text")

    def extra_text(self) -> str:
        return ""


class EmbeddingsPane(PlaceholderPane):
    MODE = "embeddings"
