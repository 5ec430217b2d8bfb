"""The one table of panes: each pane's mode, default key, title and screen class.

The app's modes, its pane keys (and their ``alt+N`` twins), the pane bar and the palette's "Go to" commands
all read this table. A pane's module is imported when the pane is first shown, so start-up pays only for
the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.screen import Screen


@dataclass(frozen=True)
class Pane:
    mode: str
    key: str  # the default key; [keys] "pane.<mode>" remaps it
    title: str
    screen: str  # "module:Class", imported on first use

    def screen_class(self) -> type[Screen]:
        module, name = self.screen.split(":")
        return getattr(import_module(module), name)


PANES: tuple[Pane, ...] = (
    Pane("catalog", "1", "Catalog", "workbench.ui.screens.catalog:CatalogPane"),
    Pane("downloads", "2", "Downloads", "workbench.ui.screens.downloads:DownloadsPane"),
    Pane("chat", "3", "Chat", "workbench.ui.screens.chat:ChatPane"),
    Pane("compare", "4", "Compare", "workbench.ui.screens.compare:ComparePane"),
    Pane("embeddings", "5", "Embeddings", "workbench.ui.screens.embeddings:EmbeddingsPane"),
    Pane("models", "6", "Models", "workbench.ui.screens.models:ModelsPane"),
)
MODES: tuple[str, ...] = tuple(pane.mode for pane in PANES)


def pane(mode: str) -> Pane:
    for candidate in PANES:
        if candidate.mode == mode:
            return candidate
    raise KeyError(mode)


def pane_screens() -> dict[str, type[Screen]]:
    """Every pane's screen class, by mode (imports every pane module)."""
    return {pane.mode: pane.screen_class() for pane in PANES}
