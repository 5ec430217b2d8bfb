"""One message of a chat transcript: who said it, the Markdown, and (for answers) status and figures."""

from __future__ import annotations

from typing import Self

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Markdown, Static

from workbench.core.chat.run import GenerationFigures, Reading
from workbench.core.storage.chats import MessageStatus

ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System"}
STATUS_NOTES = {
    MessageStatus.STOPPED: "stopped",
    MessageStatus.INCOMPLETE: "incomplete: the app stopped mid-answer",
}
STOPPED_READING = "stopped while reading the prompt"


def reading_progress(reading: Reading) -> str:
    """How far the model has read the prompt: "reading the prompt · 40 %"."""
    return f"reading the prompt · {reading.percent} %"


def reading_note(reading: Reading) -> str:
    """The progress and what a kept prompt cache served: "reading the prompt · 40 % · 420 of 440 tokens cached"."""
    cached = f" · {reading.cached:,} of {reading.total:,} tokens cached" if reading.cached else ""
    return reading_progress(reading) + cached


class MessageView(Vertical, can_focus=True):
    """Focusable, so a person can move to a message and copy it. Its transcript is one Tab stop: only one message,
    ``tab_stop``, is in the Tab order; up/down move between messages."""

    BINDINGS = [
        Binding("up", "move(-1)", "Previous message", id="chat.previous-message", show=False),
        Binding("down", "move(1)", "Next message", id="chat.next-message", show=False),
    ]

    # The left border is blank until focus, so focusing shifts nothing; the bar and the tint work in every theme.
    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1 0 0; margin: 0 0 1 0; border-left: blank; }
    MessageView:focus { background: $primary 15%; border-left: thick $primary; }
    MessageView .role { color: $text-muted; text-style: bold; }
    MessageView.-user .role { color: $secondary; }
    MessageView.-assistant .role { color: $primary; }
    MessageView Markdown { margin: 0; padding: 0; }
    MessageView .figures { color: $text-muted; }
    MessageView .note { color: $warning; }
    MessageView .error { color: $error; }
    """

    def __init__(
        self,
        role: str,
        content: str,
        message_id: int | None = None,
        status: MessageStatus = MessageStatus.COMPLETE,
        error: str | None = None,
        figures: GenerationFigures | None = None,
    ) -> None:
        super().__init__(classes=f"-{role}")
        self.role = role
        self.content = content
        self.message_id = message_id
        self._status = status
        self._error = error
        self._figures = figures
        self._context_note = ""
        self._waiting = ""
        self._reading = ""
        self._was_reading = False  # a stop before the first token then says it came while reading
        self.tab_stop = True  # the transcript keeps this True for one message only

    def allow_focus(self) -> bool:
        return self.can_focus and (self.tab_stop or self.has_focus)

    def siblings(self) -> list[MessageView]:
        return list(self.parent.query_children(MessageView)) if self.parent is not None else [self]

    def focus(self, scroll_visible: bool = True) -> Self:
        """Focused on purpose (a key, a click, code), this message becomes its transcript's Tab stop."""
        for view in self.siblings():
            view.tab_stop = view is self
        return super().focus(scroll_visible)

    def on_click(self, event: events.Click) -> None:
        if not self.has_focus:
            self.focus()

    def action_move(self, step: int) -> None:
        views = self.siblings()
        index = views.index(self) + step
        if 0 <= index < len(views):
            views[index].focus()

    def compose(self) -> ComposeResult:
        yield Static(ROLE_TITLES.get(self.role, self.role), classes="role")
        yield Markdown(self.content)
        yield Static("", classes="note")
        yield Static("", classes="figures")

    def on_mount(self) -> None:
        self._show_footer()

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def set_result(
        self, status: MessageStatus, figures: GenerationFigures | None = None, error: str | None = None
    ) -> None:
        self._status, self._figures, self._error = status, figures, error
        self._show_footer()

    def set_context_note(self, note: str) -> None:
        self._context_note = note
        self._show_footer()

    def set_waiting(self, what: str) -> None:
        """An answer that waits for its model says for what ("importing SmolLM2 · 40 %"); "" when it stops."""
        if what != self._waiting:
            self._waiting = what
            if self.is_mounted:  # else on_mount shows it
                self._show_footer()

    def set_reading(self, what: str) -> None:
        """While the model reads the prompt, how far ("reading the prompt · 40 %"); "" once it is over."""
        if what != self._reading:
            self._reading = what
            self._was_reading = self._was_reading or bool(what)
            if self.is_mounted:  # else on_mount shows it
                self._show_footer()

    def _status_note(self) -> str | None:
        if self._status is MessageStatus.STOPPED and self._was_reading and not self.content:
            return STOPPED_READING
        return STATUS_NOTES.get(self._status)

    def _show_footer(self) -> None:
        parts = [self._context_note] if self._context_note else []
        if self._waiting:
            parts.append(f"waiting: {self._waiting}")
        if self._reading:
            parts.append(self._reading)
        status_note = self._status_note()
        if self._error:
            parts.append(f"Error: {self._error}")
        elif status_note:
            parts.append(f"({status_note})")
        note = self.query_one(".note", Static)
        note.set_class(bool(self._error), "error")
        note.update("\n".join(parts))
        self.query_one(".figures", Static).update(self._figures.summary() if self._figures else "")
