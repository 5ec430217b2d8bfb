"""The two columns of the Compare pane: each side's title, live figures, error and answer (or its word diff)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Markdown, Static

from workbench.core.chat.run import ContextTrimmed, Finished, Reading, Token
from workbench.core.compare.run import SideFailed
from workbench.ui.widgets.chat_message import STOPPED_READING, reading_note

SideChange = Token | ContextTrimmed | Reading | Finished | SideFailed


class PaintThrottle:
    """Which changes of a side to paint: its text, and apart from that its reading progress, each at most every
    ``interval_s`` (the first one at once); every other change at once."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._painted: dict[tuple[str, bool], float] = {}  # (side, reading progress?): when painted last

    def due(self, side: str, event: SideChange, now: float) -> bool:
        if not isinstance(event, Token | Reading):
            return True
        key = (side, isinstance(event, Reading))
        if now - self._painted.get(key, float("-inf")) < self.interval_s:
            return False
        self._painted[key] = now
        return True


class Side(Vertical):
    """One column: the model, its live figures, and the answers of this comparison."""

    DEFAULT_CSS = """
    Side { width: 1fr; height: 1fr; border: round $panel; padding: 0 1; }
    Side .side-title { text-style: bold; color: $primary; }
    Side .side-figures { color: $text-muted; height: auto; }
    Side .side-error { color: $error; height: auto; }
    Side VerticalScroll { height: 1fr; }
    """

    def __init__(self, side: str) -> None:
        super().__init__(id=f"side-{side}")
        self.side = side
        self.text = ""
        self.was_reading = False  # this answer read its prompt before any token: a stop then says so

    def compose(self) -> ComposeResult:
        yield Static(f"Model {self.side.upper()}", classes="side-title")
        yield Static("", classes="side-figures")
        yield Static("", classes="side-error")
        with VerticalScroll():
            yield Markdown("")

    def set_title(self, title: str) -> None:
        self.query_one(".side-title", Static).update(title)

    def set_figures(self, text: str) -> None:
        self.query_one(".side-figures", Static).update(text)

    def set_error(self, text: str) -> None:
        self.query_one(".side-error", Static).update(text)

    async def clear(self, figures: str = "") -> None:
        """Empty, before an answer (``figures`` says what it waits for) or for a new conversation."""
        await self.set_text("")
        self.set_error("")
        self.set_figures(figures)
        self.was_reading = False

    async def show_update(self, text: str, event: SideChange, elapsed_s: float) -> None:
        """Show the answer so far (``text``) after ``event``, ``elapsed_s`` into the run."""
        if isinstance(event, Reading):
            if not text:  # a side shows its progress until its first token
                self.was_reading = True
                self.set_figures(reading_note(event))
        elif isinstance(event, Token):
            await self.set_text(text)
            self.set_figures(f"streaming · {elapsed_s:.1f} s")
        elif isinstance(event, ContextTrimmed):
            self.set_error(f"oldest {event.dropped} message(s) not sent: longer than the context")
        elif isinstance(event, Finished):
            await self.set_text(text)
            summary = event.figures.summary() if event.figures else ""
            stopped = STOPPED_READING if self.was_reading and not text else "stopped"
            self.set_figures(" · ".join(part for part in (stopped if event.stopped else "", summary) if part))
        elif isinstance(event, SideFailed):
            await self.set_text(text)
            self.set_error(f"Error: {event.error}")
            self.set_figures("")

    async def set_text(self, text: str) -> None:
        self.text = text
        await self.query_one(Markdown).update(text)
        self.query_one(VerticalScroll).scroll_end(animate=False)

    def show_diff(self, ops: list[tuple[str, str]], mine: str) -> None:
        """Replace the Markdown with plain text in which the words only this answer has are highlighted."""
        rendered = Text()
        for op, text in ops:
            if op == "same":
                rendered.append(text)
            elif op == mine:
                rendered.append(text, style="bold black on yellow" if mine == "a" else "bold black on cyan")
        markdown = self.query_one(Markdown)
        markdown.display = False
        scroll = self.query_one(VerticalScroll)
        for old in scroll.query(".diff"):
            old.remove()
        scroll.mount(Static(rendered, classes="diff"))

    def hide_diff(self) -> None:
        for old in self.query(".diff"):
            old.remove()
        self.query_one(Markdown).display = True


class Sides(Horizontal, can_focus=True):
    """The two answers. Focused after each comparison, so d, b and the vote keys are not typed as text."""

    BINDINGS = [Binding("enter,i", "screen.focus_prompt", "Type", id="compare.type")]

    DEFAULT_CSS = """
    Sides:focus > Side { border: round $primary; }
    """
