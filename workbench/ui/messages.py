"""Messages that cross from core services and workers to the widgets."""

from __future__ import annotations

from textual.message import Message

from workbench.core.models.wait import ImportStatus


class ImportProgress(Message):
    """Progress of the first-start import of the default chat model."""

    def __init__(self, status: ImportStatus) -> None:
        super().__init__()
        self.status = status
