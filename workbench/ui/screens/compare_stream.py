"""From a compare turn's side events to the Compare pane's messages: each side's text and its reading progress
painted at most every PAINT_INTERVAL_S, every message tagged with the run's generation so the pane can drop a late
one; and the messages of a prompt that waits for the default model."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from textual.message import Message

from workbench.api import CompareTurnApi
from workbench.core.chat.run import ContextTrimmed, Reading, Token
from workbench.core.compare.session import SideUpdate
from workbench.ui.widgets.compare_sides import PaintThrottle, SideChange

log = logging.getLogger(__name__)

PAINT_INTERVAL_S = 1 / 30


class SideUpdated(Message):
    """A side's answer changed: ``text`` is all of it so far, ``event`` what changed it."""

    def __init__(self, generation: int, side: str, text: str, event: SideChange, elapsed_s: float) -> None:
        super().__init__()
        self.generation, self.side, self.text, self.event, self.elapsed_s = generation, side, text, event, elapsed_s

    def can_replace(self, message: Message) -> bool:
        """A newer update of the same side that paints its text (or progress) carries all of this one's: skip this
        paint."""
        return (isinstance(self.event, Token | Reading) and isinstance(message, SideUpdated)
                and not isinstance(message.event, ContextTrimmed)
                and (message.generation, message.side) == (self.generation, self.side))  # fmt: skip


class CompareEnded(Message):
    """Both sides of run ``generation`` have ended (``error``: the whole run failed, for people)."""

    def __init__(self, generation: int, error: str | None = None) -> None:
        super().__init__()
        self.generation, self.error = generation, error


class WaitChanged(Message):
    """What a prompt sent before the default model was there waits for now."""

    def __init__(self, generation: int, what: str) -> None:
        super().__init__()
        self.generation, self.what = generation, what


class WaitOver(Message):
    """The default model is ready for ``prompt`` (``error``: it will not come)."""

    def __init__(self, generation: int, prompt: str, error: str | None = None) -> None:
        super().__init__()
        self.generation, self.prompt, self.error = generation, prompt, error


async def stream_turn(turn: CompareTurnApi, generation: int, post: Callable[[Message], object]) -> None:
    """Post the answers of ``turn`` as they grow (for a worker: it touches no widget), then CompareEnded."""
    throttle = PaintThrottle(PAINT_INTERVAL_S)
    started = time.monotonic()
    error: str | None = None
    try:
        update: SideUpdate
        async with contextlib.aclosing(turn.events()) as updates:
            async for update in updates:
                now = time.monotonic()
                if throttle.due(update.side, update.event, now):
                    post(SideUpdated(generation, update.side, update.result.text, update.event, now - started))
    except Exception as exc:
        log.exception("compare run failed")
        error = f"The comparison failed: {exc}"
    finally:
        post(CompareEnded(generation, error))
