"""One message of a chat transcript: who said it, the Markdown, and (for answers) status and figures."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static

from workbench.core.chat.run import GenerationFigures
from workbench.core.storage.chats import MessageStatus

ROLE_TITLES = {"user": "You", "assistant": "Assistant", "system": "System"}
STATUS_NOTES = {
    MessageStatus.STOPPED: "stopped",
    MessageStatus.INCOMPLETE: "incomplete: the app stopped mid-answer",
}


class MessageView(Vertical, can_focus=True):
    """Focusable, so a person can move to a message and copy it."""

    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin: 0 0 1 0; }
    MessageView:focus { background: $boost; }
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

    def _show_footer(self) -> None:
        parts = [self._context_note] if self._context_note else []
        if self._waiting:
            parts.append(f"waiting: {self._waiting}")
        if self._error:
            parts.append(f"Error: {self._error}")
        elif self._status in STATUS_NOTES:
            parts.append(f"({STATUS_NOTES[self._status]})")
        note = self.query_one(".note", Static)
        note.set_class(bool(self._error), "error")
        note.update("\n".join(parts))
        self.query_one(".figures", Static).update(self._figures.summary() if self._figures else "")
