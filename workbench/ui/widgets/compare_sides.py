"""The answers' area of the Compare pane: each side's title, live figures, error and answer, and the word diff of
the two, which takes the whole area while it shows.

Below ``STACK_BELOW_COLUMNS`` the sides are stacked and a side's figures keep to one line (clipped), so the answers
get the height. In blind mode a side shows a neutral status instead of its figures (they tell the models apart)
until :meth:`Side.reveal`.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Markdown, Static

from workbench.core.chat.run import ContextTrimmed, Finished, Reading, Token
from workbench.core.compare.run import SIDES, SideFailed
from workbench.core.words import counted
from workbench.ui.widgets.chat_message import STOPPED_READING, reading_note

SideChange = Token | ContextTrimmed | Reading | Finished | SideFailed
STACK_BELOW_COLUMNS = 100
DIFF_STYLES = {"a": "bold black on yellow", "b": "bold black on cyan"}


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
    """One column: the model (in the border's title), its live figures, and the answers of this comparison."""

    DEFAULT_CSS = """
    Side { width: 1fr; height: 1fr; border: round $panel; border-title-color: $primary;
           border-title-style: bold; padding: 0 1; }
    Side .side-figures { color: $text-muted; height: auto; }
    Side .side-error { color: $error; height: auto; display: none; }
    Side VerticalScroll { height: 1fr; }
    Side Markdown { margin: 0; padding: 0; }
    Side Markdown > MarkdownBlock:last-child { margin-bottom: 0; }
    """

    def __init__(self, side: str) -> None:
        super().__init__(id=f"side-{side}")
        self.side = side
        self.text = ""
        self.title = f"Model {side.upper()}"
        self.figures = ""  # what the side's figures line says when it is not masked
        self.status = ""  # the same without anything that tells the models apart: waiting, answering, done
        self.masked = False  # blind mode before the vote: the status shows instead of the figures
        self.was_reading = False  # this answer read its prompt before any token: a stop then says so

    def compose(self) -> ComposeResult:
        yield Static("", classes="side-figures", markup=False)
        yield Static("", classes="side-error", markup=False)
        with VerticalScroll():
            yield Markdown("")

    def on_mount(self) -> None:
        self.border_title = self.title

    def set_title(self, title: str) -> None:
        self.title = title
        self.border_title = title

    def set_figures(self, text: str, status: str | None = None) -> None:
        """``text`` for the figures line; ``status`` (default: ``text``) is what blind mode shows instead."""
        self.figures, self.status = text, text if status is None else status
        self.query_one(".side-figures", Static).update(self.status if self.masked else text)

    def mask(self, masked: bool) -> None:
        """Blind mode: show the neutral status until :meth:`reveal`."""
        self.masked = masked
        self.set_figures(self.figures, self.status)

    def reveal(self, title: str) -> None:
        self.set_title(title)
        self.mask(False)

    def set_error(self, text: str) -> None:
        error = self.query_one(".side-error", Static)
        error.update(text)
        error.display = bool(text)  # an empty line would take a line of the answer

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
                self.set_figures(reading_note(event), "reading the prompt")
        elif isinstance(event, Token):
            await self.set_text(text)
            self.set_figures(f"streaming · {elapsed_s:.1f} s", "answering…")
        elif isinstance(event, ContextTrimmed):
            self.set_error(f"oldest {counted(event.dropped, 'message')} not sent: longer than the context")
        elif isinstance(event, Finished):
            await self.set_text(text)
            summary = event.figures.summary() if event.figures else ""
            stopped = STOPPED_READING if self.was_reading and not text else "stopped"
            self.set_figures(" · ".join(part for part in (stopped if event.stopped else "", summary) if part),
                             stopped if event.stopped else "done")  # fmt: skip
        elif isinstance(event, SideFailed):
            await self.set_text(text)
            self.set_error(f"Error: {event.error}")
            self.set_figures("")

    async def set_text(self, text: str) -> None:
        self.text = text
        await self.query_one(Markdown).update(text)
        self.query_one(VerticalScroll).scroll_end(animate=False)


def diff_text(ops: list[tuple[str, str]], mine: str) -> Text:
    """One answer's text from the word diff ``ops``, the words only it has highlighted."""
    rendered = Text()
    for op, text in ops:
        if op == "same":
            rendered.append(text)
        elif op == mine:
            rendered.append(text, style=DIFF_STYLES[mine])
    return rendered


class DiffView(VerticalScroll):
    """The word diff of the two answers in the whole answers' area: stacked like the sides, scrolled as one."""

    BINDINGS = [Binding("enter,i", "screen.focus_prompt", "Type", id="compare.type")]

    DEFAULT_CSS = """
    DiffView { width: 1fr; height: 1fr; border: round $primary; padding: 0 1; display: none; }
    DiffView #diff-columns { height: auto; }
    DiffView .diff-side { width: 1fr; height: auto; padding-right: 1; }
    DiffView .diff-heading { text-style: bold; color: $primary; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal(id="diff-columns"):
            for side in SIDES:
                with Vertical(classes="diff-side"):
                    yield Static("", id=f"diff-heading-{side}", classes="diff-heading", markup=False)
                    yield Static("", id=f"diff-{side}", classes="diff")

    def show(self, ops: list[tuple[str, str]], titles: dict[str, str]) -> None:
        """Show both answers of ``ops`` under the column titles ``titles`` (by column, "a" first)."""
        self.border_title = "word diff: highlighted words are only in that answer · d closes"
        for side in SIDES:
            self.query_one(f"#diff-heading-{side}", Static).update(titles[side])
            self.query_one(f"#diff-{side}", Static).update(diff_text(ops, side))
        self.scroll_home(animate=False)


class Sides(Horizontal, can_focus=True):
    """The two answers and their diff. Focused after each comparison, so d, b and the vote keys are not typed as
    text."""

    BINDINGS = [Binding("enter,i", "screen.focus_prompt", "Type", id="compare.type")]

    DEFAULT_CSS = """
    Sides:focus > Side { border: round $primary; }
    Sides.-stacked { layout: vertical; }
    Sides.-stacked .side-figures { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    Sides.-stacked #diff-columns { layout: vertical; }
    Sides.-stacked .diff-side { margin-bottom: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Side("a")
        yield Side("b")
        yield DiffView(id="compare-diff")

    def on_resize(self) -> None:
        self.set_class(self.app.size.width < STACK_BELOW_COLUMNS, "-stacked")

    def column(self, side: str) -> Side:
        """The column ``side`` ("a" shows first)."""
        return self.query_one(f"#side-{side}", Side)

    @property
    def diffing(self) -> bool:
        return self.query_one(DiffView).display

    def show_diff(self, ops: list[tuple[str, str]]) -> None:
        """The word diff of the columns' answers (``ops``, "a" the first column) in place of the columns."""
        view = self.query_one(DiffView)
        view.show(ops, {side: self.column(side).title for side in SIDES})
        for side in SIDES:
            self.column(side).display = False
        view.display = True
        view.focus()

    def hide_names(self, hidden: bool) -> None:
        """Blind mode before the vote: neutral titles and statuses instead of the models and their figures."""
        for number, side in enumerate(SIDES, 1):
            self.column(side).mask(hidden)
            if hidden:
                self.column(side).set_title(f"Answer {number}")

    def hide_diff(self) -> None:
        view = self.query_one(DiffView)
        had_focus = view.has_focus
        view.display = False
        for side in SIDES:
            self.column(side).display = True
        if had_focus:
            self.focus()
