"""What every pane has: the pane bar on top, the memory strip and the footer at the bottom, and a way out of
its text box.

A pane names its main view (the table, list or transcript) and its text box. Esc in a text box with nothing
running focuses the main view, where the digits switch panes (the app's Esc binding calls ``leave_text_box``:
a pane's own Esc binding would replace one declared here); `i` there goes back to the box. While the pane runs
something (``running`` says what), Esc keeps the pane's own meaning: stop it.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Select, TextArea

from workbench.ui.widgets.footer import KeyFooter
from workbench.ui.widgets.memory_strip import MemoryStrip
from workbench.ui.widgets.pane_bar import PaneBar


@runtime_checkable
class HandsOnFocus(Protocol):
    """A main view that passes the focus on to one of its parts (the chat transcript to a message)."""

    def focus_target(self) -> Widget: ...


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

    # Priority, so the focus moves before the next key is read: "ix" typed fast puts the x in the box. The action
    # skips (the key goes on as usual) while the focus is in a box or a picker.
    BINDINGS = [Binding("i", "focus_text_box", "Type", id="pane.type", show=False, priority=True)]

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

    def main_focus(self) -> Widget | None:
        """What takes the focus for the main view: the view, or the part it hands the focus to (the chat
        transcript's current message); None when nothing there can take it."""
        view = self.main_view()
        if view is None:
            return None
        target = view.focus_target() if isinstance(view, HandsOnFocus) else view
        return target if target.focusable else None

    def show_main_view(self) -> None:
        """Focus the main view (the pane's table, list or transcript)."""
        if (target := self.main_focus()) is not None:
            self.set_focus(target)

    def focus_takes_letters(self) -> bool:
        """The focus is in a text box, or in a picker that jumps to what is typed."""
        focused = self.focused
        return focused is not None and any(isinstance(node, (Input, TextArea, Select))
                                           for node in (focused, *focused.ancestors))  # fmt: skip

    def action_focus_text_box(self) -> None:
        if not self.TEXT_BOX or self.focus_takes_letters():
            raise SkipAction()  # `i` goes on as usual: text in a box, type-to-search in a picker
        self.to_text_box()

    def to_text_box(self) -> None:
        # set_focus, not focus(): focus() waits for the keys already read, so "ix" typed fast would lose the x
        self.set_focus(self.query_one(self.TEXT_BOX))

    def can_leave_text_box(self) -> bool:
        """Whether Esc (the app's binding) leaves the box: in a text box, with nothing running (else Esc stops it)."""
        return isinstance(self.focused, (Input, TextArea)) and not self.running() and self.main_focus() is not None

    def leave_text_box(self) -> None:
        self.show_main_view()
