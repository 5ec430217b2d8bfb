"""A chat's transcript: its messages (or the hint of an empty chat), and the answer streaming into the last one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from textual import events
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static
from textual.widgets.markdown import MarkdownStream

from workbench.core.chat.run import GenerationFigures
from workbench.core.chat.session import AnswerEnded
from workbench.core.storage.chats import StoredMessage
from workbench.ui.widgets.chat_message import MessageView

EMPTY_HINT = (  # one line per topic, each wrapped to the pane's width
    "Type a message and press Enter to send; ctrl+j adds a newline, Esc stops an answer.\n"
    "ctrl+r answers again, F2 edits your last message, ctrl+y copies the last answer "
    "(shift+Tab to the messages, ↑ ↓ between them, ctrl+y copies that one, Tab back).\n"
    "ctrl+o opens earlier chats, ctrl+s the system prompt and sampling settings, ctrl+l chooses the model."
)


def view_for(message: StoredMessage) -> MessageView:
    figures = GenerationFigures.from_dict(message.figures) if message.figures else None
    return MessageView(message.role, message.content, message.id, message.status, message.error, figures)


class ChatTranscript(VerticalScroll):
    """One Tab stop, whatever its length: of its messages only one (the one focused last while focus was inside,
    else the newest) is in the Tab order, so Tab from a message reaches the input. A key that types, pressed on a
    message, is posted as ``Typed`` for the input to take, unless a binding wants it."""

    class Typed(Message):
        def __init__(self, character: str) -> None:
            super().__init__()
            self.character = character

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.streaming: MessageView | None = None
        self._stream: MarkdownStream | None = None

    def allow_focus(self) -> bool:
        return self.can_focus and not self.views()  # with messages, they take the focus

    def focus_target(self) -> Widget:
        """What takes the focus when the transcript is focused: its Tab stop when it has messages, else itself."""
        return next((view for view in self.views() if view.tab_stop), self)

    def focus(self, scroll_visible: bool = True) -> Self:
        """Focusing the transcript focuses its Tab stop, when it has messages."""
        target = self.focus_target()
        if target is not self:
            target.focus(scroll_visible)
            return self
        return super().focus(scroll_visible)

    def on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character and event.key not in self.screen.active_bindings:
            event.stop()
            event.prevent_default()
            self.post_message(self.Typed(event.character))

    def show_empty_hint(self) -> None:
        self.remove_children()
        self.mount(Static(EMPTY_HINT, id="empty-hint"))

    def show(self, messages: list[StoredMessage]) -> None:
        self.remove_children()
        self.mount_all([view_for(m) for m in messages])
        self.keep_one_stop()
        self.scroll_end(animate=False)

    def add(self, message: StoredMessage) -> None:
        self.mount(view_for(message))
        self.keep_one_stop()

    def views(self) -> list[MessageView]:
        return list(self.query_children(MessageView))

    def remove_views(self, message_ids: list[int]) -> None:
        for view in self.views():
            if view.message_id in message_ids:
                view.remove()
        self.keep_one_stop([view for view in self.views() if view.message_id not in message_ids])

    def keep_one_stop(self, views: list[MessageView] | None = None) -> None:
        """The focused message stays the Tab stop; with focus elsewhere, the newest message becomes it."""
        views = self.views() if views is None else views
        focused = self.screen.focused if self.is_attached else None
        stop = focused if focused in views else (views[-1] if views else None)
        for view in views:
            view.tab_stop = view is stop

    def to_copy(self, focused: object) -> MessageView | None:
        """What ctrl+y copies: the focused message, else the last answer with text."""
        if isinstance(focused, MessageView):
            return focused
        return next((v for v in reversed(self.views()) if v.role == "assistant" and v.content), None)

    # --- the answer streaming in ---------------------------------------------------------------

    async def start_answer(self, message: StoredMessage) -> None:
        view = view_for(message)
        await self.mount(view)
        self.keep_one_stop()
        self.scroll_end(animate=False)
        self.streaming, self._stream = view, view.markdown.get_stream(view.markdown)

    def set_waiting(self, what: str) -> None:
        if self.streaming is not None:
            self.streaming.set_waiting(what)

    def set_reading(self, what: str) -> None:
        if self.streaming is not None:
            self.streaming.set_reading(what)

    def set_context_note(self, note: str) -> None:
        if self.streaming is not None:
            self.streaming.set_context_note(note)

    async def append(self, text: str) -> None:
        if self._stream is not None:
            await self._stream.write(text)
            self.scroll_end(animate=False)

    async def end_answer(self, ended: AnswerEnded) -> None:
        view, stream = self.streaming, self._stream
        self.streaming = self._stream = None
        if view is not None:
            view.content = ended.text
            view.set_waiting("")
            view.set_reading("")
            view.set_result(ended.status, ended.figures, ended.error)
        if stream is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await stream.stop()
        self.scroll_end(animate=False)
