"""Two small reusable modals: a yes/no question and a one-line text prompt."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from workbench.ui.widgets.path_input import PathInput

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 64; max-width: 100%; height: auto;
    border: thick $primary; background: $surface; padding: 1 2;
}}
{name} .dialog-title {{ text-style: bold; margin-bottom: 1; }}
{name} .dialog-keys {{ color: $text-muted; margin-top: 1; }}
{name} .dialog-candidates {{ color: $text-muted; height: auto; max-height: 6; }}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question: y or enter confirms, n or escape cancels."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")

    def __init__(self, question: str, confirm_label: str = "Delete", cancel_label: str = "cancel") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label
        self.cancel_label = cancel_label  # say what "no" keeps when "cancel" would read as the other choice

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="dialog-title", markup=False)
            yield Static(
                f"y / enter: {self.confirm_label}    n / esc: {self.cancel_label}", markup=False, classes="dialog-keys"
            )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text: enter returns it stripped (None when blank), escape returns None. With
    ``path=True`` the line is a path and Tab completes it, listing the candidates under the box."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="PromptScreen")

    def __init__(self, title: str, value: str = "", placeholder: str = "", path: bool = False) -> None:
        super().__init__()
        self.prompt_title = title
        self.value = value
        self.placeholder = placeholder
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.prompt_title, classes="dialog-title", markup=False)
            if self.path:
                yield PathInput(self.value, placeholder=self.placeholder)
                yield Static("", classes="dialog-candidates", markup=False)
                yield Static("tab: complete    enter: OK    esc: cancel", classes="dialog-keys")
            else:
                yield Input(self.value, placeholder=self.placeholder)
                yield Static("enter: OK    esc: cancel", classes="dialog-keys")

    def on_path_input_completed(self, event: PathInput.Completed) -> None:
        self.query_one(".dialog-candidates", Static).update(event.note)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
