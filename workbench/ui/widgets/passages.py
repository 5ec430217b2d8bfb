"""What the Embeddings views share: a one-line snippet of a passage and the message that one was picked."""

from __future__ import annotations

from textual.message import Message

SNIPPET = 160


def snippet(text: str, length: int = SNIPPET) -> str:
    line = " ".join(text.split())
    return line if len(line) <= length else line[: length - 1] + "…"


class PassageSelected(Message):
    """A view's cursor (or a click on the map) is on a passage of the corpus (its row number)."""

    def __init__(self, row: int, source: str) -> None:
        super().__init__()
        self.row = row
        self.source = source  # "map" or "compare"
