"""From a ChatSession's answer events to the Chat pane's messages: tokens (and the progress of reading the prompt)
coalesced to at most one paint per PAINT_INTERVAL_S, every message tagged with the answer's generation so the pane
can drop a late one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable

from textual.message import Message

from workbench.core.chat.run import ContextTrimmed, Reading, Token
from workbench.core.chat.session import AnswerEnded, ModelChosen, SessionEvent
from workbench.core.models.wait import Waiting
from workbench.ui.widgets.chat_message import reading_note, reading_progress

PAINT_INTERVAL_S = 1 / 30  # the transcript repaints at most this often, however fast tokens come


class AnswerMessage(Message):
    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class AnswerWaiting(AnswerMessage):
    """The answer waits for its model ("importing SmolLM2 · 40 %"); "" when the wait is over."""

    def __init__(self, generation: int, what: str) -> None:
        super().__init__(generation)
        self.what = what


class AnswerReading(AnswerMessage):
    """How far the model has read the prompt; None once it is over (the first token came, or the answer ended)."""

    def __init__(self, generation: int, reading: Reading | None) -> None:
        super().__init__(generation)
        self.reading = reading

    @property
    def note(self) -> str:
        """For the answer: "reading the prompt · 40 % · 420 of 440 tokens cached"; "" once it is over."""
        return reading_note(self.reading) if self.reading else ""

    @property
    def status(self) -> str:
        """For the status line, short: "reading the prompt · 40 %"; "" once it is over."""
        return reading_progress(self.reading) if self.reading else ""


class AnswerText(AnswerMessage):
    """More of the answer, to append to its Markdown."""

    def __init__(self, generation: int, text: str) -> None:
        super().__init__(generation)
        self.text = text


class AnswerTrimmed(AnswerMessage):
    """The oldest messages were not sent: the conversation outgrew the model's context."""

    def __init__(self, generation: int, trimmed: ContextTrimmed) -> None:
        super().__init__(generation)
        self.trimmed = trimmed

    @property
    def note(self) -> str:
        return (f"The conversation is longer than the model's context ({self.trimmed.window} tokens): "
                f"the oldest {self.trimmed.dropped} message(s) were not sent.")  # fmt: skip


class AnswerModelChosen(AnswerMessage):
    """The answer went to another model than the one shown (the default model arrived)."""

    def __init__(self, generation: int, model_id: str) -> None:
        super().__init__(generation)
        self.model_id = model_id


class AnswerOver(AnswerMessage):
    """The answer ended (saved as ``ended.status``); ``rendered`` is set once the pane has shown it."""

    def __init__(self, generation: int, ended: AnswerEnded) -> None:
        super().__init__(generation)
        self.ended = ended
        self.rendered = asyncio.Event()


async def relay(events: AsyncGenerator[SessionEvent, None], generation: int, post: Callable[[Message], bool]) -> None:
    """Post ``events`` as messages until they end (the session's AnswerEnded is left to the caller, who reports the
    end however it came). ``events`` is closed when this returns or is cancelled."""
    pending, last_paint = "", time.monotonic()
    reading, last_reading = False, float("-inf")  # the first progress shows at once
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, Reading):
                    now = time.monotonic()
                    if now - last_reading >= PAINT_INTERVAL_S:
                        post(AnswerReading(generation, event))
                        reading, last_reading = True, now
                    continue
                if reading:
                    post(AnswerReading(generation, None))
                    reading = False
                if isinstance(event, Token):
                    pending += event.text
                    now = time.monotonic()
                    if now - last_paint >= PAINT_INTERVAL_S:
                        post(AnswerText(generation, pending))
                        pending, last_paint = "", now
                elif isinstance(event, Waiting):
                    post(AnswerWaiting(generation, event.what))
                elif isinstance(event, ContextTrimmed):
                    post(AnswerTrimmed(generation, event))
                elif isinstance(event, ModelChosen):
                    post(AnswerModelChosen(generation, event.model_id))
    finally:
        if reading:
            post(AnswerReading(generation, None))
        if pending:
            post(AnswerText(generation, pending))
