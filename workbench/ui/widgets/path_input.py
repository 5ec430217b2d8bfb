"""A one-line box for a path: Tab completes it (see core/settings/path_completion.py) instead of moving on;
what it could not decide (several matches, an unreadable folder) is posted for the dialog to show."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from workbench.core.settings.path_completion import PathCompletion, complete_path

SHOWN_CANDIDATES = 12


def describe(done: PathCompletion) -> str:
    """The line under the box: the candidates (the first few, then how many more), or why nothing matched."""
    if done.problem:
        return done.problem
    shown = "  ".join(done.candidates[:SHOWN_CANDIDATES])
    more = len(done.candidates) - SHOWN_CANDIDATES
    return shown + (f"  … and {more} more" if more > 0 else "")


class PathInput(Input):
    BINDINGS = [Binding("tab", "complete", "Complete", id="path.complete", show=False)]

    class Completed(Message):
        def __init__(self, note: str) -> None:
            super().__init__()
            self.note = note  # "" when the path was completed without a question

    def __init__(self, value: str = "", placeholder: str = "", cwd: Path | None = None, **kwargs: object) -> None:
        super().__init__(value, placeholder=placeholder, **kwargs)  # type: ignore[arg-type]
        self.cwd = cwd

    def action_complete(self) -> None:
        if "::" in self.value:  # PATH::COLUMN: a column is not a path
            self.post_message(self.Completed("Tab completes the path before ::, not the column"))
            return
        done = complete_path(self.value, cwd=self.cwd)
        if done.text != self.value:
            self.value = done.text
            self.cursor_position = len(done.text)
        self.post_message(self.Completed(describe(done)))
