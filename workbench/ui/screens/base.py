"""What every pane has: the pane bar on top, the memory strip and the footer at the bottom."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen

from workbench.ui.widgets.footer import KeyFooter
from workbench.ui.widgets.memory_strip import MemoryStrip
from workbench.ui.widgets.pane_bar import PaneBar


class PaneScreen(Screen):
    DEFAULT_CSS = """
    PaneScreen #pane-body { height: 1fr; }
    """
    MODE = ""
    TITLE = ""

    def compose(self) -> ComposeResult:
        yield PaneBar(self.MODE)
        with Vertical(id="pane-body"):
            yield from self.compose_body()
        yield MemoryStrip()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()
