"""A DataTable of rows where Home and End go to the first and last row (not the first and last column)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable


class RowTable(DataTable[str | Text]):
    def action_scroll_home(self) -> None:
        self.action_scroll_top()

    def action_scroll_end(self) -> None:
        self.action_scroll_bottom()
