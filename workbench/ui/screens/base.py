"""What every pane has: the pane bar on top, the memory strip and the footer at the bottom, and a way out of
its text box.

A pane names its main view (the table, list or transcript) and its text box. Esc in a text box with nothing
running focuses the main view, where the digits switch panes; `i` there goes back to the box. While the pane
runs something (``running`` says what), Esc keeps the pane's own meaning: stop it.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, TextArea

from workbench.ui.widgets.footer import KeyFooter
from workbench.ui.widgets.memory_strip import MemoryStrip
from workbench.ui.widgets.pane_bar import PaneBar


class PaneScreen(Screen):
    DEFAULT_CSS = """
    PaneScreen #pane-body { height: 1fr; }
    """
    MODE = ""
    TITLE = ""
    MAIN_VIEW = ""  # selector of the pane's main view: where Esc from the text box goes
    TEXT_BOX = ""  # selector of the pane's text box: where `i` on the main view goes
    # attribute -> what it means while truthy: then Esc stops it (the pane's binding) and q asks before quitting
    RUNNING: ClassVar[dict[str, str]] = {}

    BINDINGS = [Binding("i", "focus_text_box", "Type", id="pane.type", show=False)]

    def compose(self) -> ComposeResult:
        yield PaneBar(self.MODE)
        with Vertical(id="pane-body"):
            yield from self.compose_body()
        yield MemoryStrip()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def running(self) -> str:
        """What the pane is doing that Esc stops and quitting would lose ("" when nothing)."""
        return next((text for attribute, text in self.RUNNING.items() if getattr(self, attribute, None)), "")

    def main_view(self) -> Widget | None:
        try:
            return self.query_one(self.MAIN_VIEW) if self.MAIN_VIEW else None
        except NoMatches:
            return None

    def show_main_view(self) -> None:
        """Focus the main view (the pane's table, list or transcript)."""
        view = self.main_view()
        if view is not None and view.focusable:
            view.focus()

    def action_focus_text_box(self) -> None:
        if not self.TEXT_BOX:
            raise SkipAction()  # a pane without a box: `i` goes on to whatever else binds it
        self.query_one(self.TEXT_BOX).focus()

    def on_key(self, event: events.Key) -> None:
        # A screen sees a key before the bindings do (they are checked once it reaches the app), so Esc here
        # comes before the pane's own Esc binding, which keeps it only while something runs.
        if event.key != "escape" or not isinstance(self.focused, (Input, TextArea)) or self.running():
            return
        view = self.main_view()
        if view is None or not view.focusable:
            return
        event.stop()
        event.prevent_default()
        view.focus()
