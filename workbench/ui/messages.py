"""Messages that cross from core services and workers to the widgets."""

from __future__ import annotations

from textual.message import Message


class ImportProgress(Message):
    """Progress of the first-start import of the default chat model."""

    def __init__(self, stage: str, fraction: float) -> None:
        super().__init__()
        self.stage = stage
        self.fraction = fraction
