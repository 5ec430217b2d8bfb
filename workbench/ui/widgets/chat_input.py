"""The prompt box: Enter sends, ctrl+j (or shift+enter where the terminal reports it) adds a newline."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class ChatInput(TextArea):
    BINDINGS = [
        Binding("enter", "submit", "Send", id="chat.send"),
        Binding("ctrl+j,shift+enter", "newline", "Newline", id="chat.newline"),
        # TextArea binds ctrl+y to redo; in a prompt box copying the answer matters more. Same id as the
        # pane's binding, so remapping "chat.copy" moves both.
        Binding("ctrl+y", "screen.copy", "Copy", id="chat.copy", show=False),
    ]

    DEFAULT_CSS = """
    ChatInput { height: auto; min-height: 3; max-height: 10; border: tall $panel; }
    ChatInput:focus { border: tall $primary; }
    """

    class Submitted(Message):
        def __init__(self, text: str, prompt: ChatInput | None = None) -> None:
            super().__init__()
            self.text = text
            self.prompt = prompt

        @property
        def control(self) -> ChatInput | None:  # lets @on(ChatInput.Submitted, "#id") select the box
            return self.prompt

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)  # type: ignore[arg-type]

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            # Textual calls the handler of every class in the MRO; prevent_default keeps TextArea's from
            # inserting a newline and leaves the key to the "chat.send" binding.
            event.prevent_default()

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self.text, self))

    def take(self, character: str) -> None:
        """A character typed elsewhere (on a message) that was meant for the box."""
        self.focus()
        self.insert(character)

    def action_newline(self) -> None:
        self.insert("\n")
