"""A chat's transcript: its messages (or the hint of an empty chat), and the answer streaming into the last one."""

from __future__ import annotations

import asyncio
import contextlib

from textual.containers import VerticalScroll
from textual.widgets import Static
from textual.widgets.markdown import MarkdownStream

from workbench.core.chat.run import GenerationFigures
from workbench.core.chat.session import AnswerEnded
from workbench.core.storage.chats import StoredMessage
from workbench.ui.widgets.chat_message import MessageView

EMPTY_HINT = (  # one line per topic, each wrapped to the pane's width
    "Type a message and press Enter to send; ctrl+j adds a newline, Esc stops an answer.\n"
    "ctrl+r answers again, F2 edits your last message, ctrl+y copies the last answer "
    "(Tab to a message and ctrl+y copies that one).\n"
    "ctrl+o opens earlier chats, ctrl+s the system prompt and sampling settings, ctrl+l chooses the model."
)


def view_for(message: StoredMessage) -> MessageView:
    figures = GenerationFigures.from_dict(message.figures) if message.figures else None
    return MessageView(message.role, message.content, message.id, message.status, message.error, figures)


class ChatTranscript(VerticalScroll):
    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.streaming: MessageView | None = None
        self._stream: MarkdownStream | None = None

    def show_empty_hint(self) -> None:
        self.remove_children()
        self.mount(Static(EMPTY_HINT, id="empty-hint"))

    def show(self, messages: list[StoredMessage]) -> None:
        self.remove_children()
        self.mount_all([view_for(m) for m in messages])
        self.scroll_end(animate=False)

    def add(self, message: StoredMessage) -> None:
        self.mount(view_for(message))

    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    def remove_views(self, message_ids: list[int]) -> None:
        for view in self.views():
            if view.message_id in message_ids:
                view.remove()

    # --- the answer streaming in ---------------------------------------------------------------

    async def start_answer(self, message: StoredMessage) -> None:
        view = view_for(message)
        await self.mount(view)
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
