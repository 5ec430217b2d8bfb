"""The one reducer of compare events: :class:`SideEvent` s in, each side's answer so far out.

The Compare pane, the prompt-set runner and ``workbench compare`` all read a side's text, figures, error and
whether it has ended from here, so the three faces cannot disagree on what an event means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.core.chat.run import ContextTrimmed, Finished, GenerationFigures, Token
from workbench.core.compare.run import SIDES, SideEvent, SideFailed


@dataclass
class SideResult:
    """One side's answer so far: the text, how it ended (``end``, with the figures) or why it failed (``error``),
    and the last trimming of its history when the conversation outgrew the model's context."""

    pieces: list[str] = field(default_factory=list)
    end: Finished | None = None
    error: str | None = None
    trimmed: ContextTrimmed | None = None
    _joined: str = field(default="", repr=False)
    _joined_count: int = field(default=0, repr=False)

    @property
    def text(self) -> str:
        if self._joined_count != len(self.pieces):  # joined only when read: a long answer is not copied per token
            self._joined, self._joined_count = "".join(self.pieces), len(self.pieces)
        return self._joined

    @property
    def figures(self) -> GenerationFigures | None:
        return self.end.figures if self.end is not None else None

    @property
    def finished(self) -> bool:
        """Whether the side has ended, answered, stopped or failed."""
        return self.end is not None or self.error is not None

    @property
    def stopped(self) -> bool:
        return self.end is not None and self.end.stopped

    @property
    def finish_reason(self) -> str | None:
        return self.end.finish_reason if self.end is not None else None


class CompareResults:
    """Both sides' results; :meth:`apply` folds in one event at a time, in the order the run gave them."""

    def __init__(self) -> None:
        self.sides: dict[str, SideResult] = {side: SideResult() for side in SIDES}

    def __getitem__(self, side: str) -> SideResult:
        return self.sides[side]

    def apply(self, item: SideEvent) -> SideResult:
        """Fold in one event; returns the side it changed."""
        result = self.sides[item.side]
        event = item.event
        if isinstance(event, Token):
            result.pieces.append(event.text)
        elif isinstance(event, ContextTrimmed):
            result.trimmed = event
        elif isinstance(event, Finished):
            result.end = event
        elif isinstance(event, SideFailed):
            result.error = event.error
        return result

    @property
    def finished(self) -> bool:
        return all(result.finished for result in self.sides.values())

    @property
    def errors(self) -> dict[str, str]:
        """The sides that failed, with why."""
        return {side: result.error for side, result in self.sides.items() if result.error is not None}

    def answered(self) -> bool:
        """Whether either side gave any text."""
        return any(result.text for result in self.sides.values())

    def stored_fields(self) -> dict[str, Any]:
        """The answers, figures and errors as the store's compare run keeps them (``answer_a`` … ``error_b``)."""
        fields: dict[str, Any] = {}
        for side, result in self.sides.items():
            figures = result.figures
            fields[f"answer_{side}"] = result.text
            fields[f"figures_{side}"] = figures.to_dict() if figures is not None else None
            fields[f"error_{side}"] = result.error
        return fields
