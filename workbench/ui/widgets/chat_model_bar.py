"""The Chat pane's top line: the model box (or what is on its way) and the status of the model and sampling."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Select, Static

from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.spec import ModelInfo, ModelState

CHOOSE = "Choose a model (ctrl+l)"


def status_line(info: ModelInfo | None, sampling: SamplingSettings, activity: str = "") -> str:
    """The status line ("loading… · T 0.7 · max 512"): what the answer does ("reading the prompt · 40 %") or else
    the model's state when it says something, the sampling."""
    parts = []
    if activity:
        parts.append(activity)
    elif info is not None:
        if info.state is ModelState.LOADING:
            parts.append("loading…")
        elif info.state is ModelState.FAILED or (info.state is ModelState.UNLOADED and info.error):
            parts.append("not loaded (see Models, 6)")
        elif info.state is not ModelState.UNLOADED:
            parts.append(info.state.value)
    parts.append(f"T {sampling.temperature:g} · max {sampling.max_tokens}")
    return " · ".join(parts)


class ChatModelBar(Horizontal):
    # one line: a long status ("reading the prompt · 40 % · T 0 · max 512") ends in "…" rather than wrapping
    DEFAULT_CSS = """
    ChatModelBar #chat-status {
        width: auto; max-width: 40%; padding: 1 1 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._info: ModelInfo | None = None
        self._sampling: SamplingSettings | None = None
        self._activity = ""

    def compose(self) -> ComposeResult:
        yield Select[str]([], prompt=CHOOSE, id="model-select", allow_blank=True)
        yield Static("", id="chat-status")

    @property
    def select(self) -> Select[str]:
        return self.query_one("#model-select", Select)

    def set_models(self, options: list[tuple[str, str]], chosen: str | None) -> None:
        """The models to choose from as (name, id), and the one chosen; the box changes only what differs."""
        select = self.select
        if [value for _, value in select._options if value is not Select.NULL] != [i for _, i in options]:
            select.set_options(options)
        if chosen is not None and select.value != chosen:
            select.value = chosen

    def show_coming(self, what: str | None) -> None:
        """While a model is on its way and none is there, the empty box says what comes ("importing …")."""
        self.select.prompt = f"{what} (ctrl+l)" if what else CHOOSE

    def show_status(self, info: ModelInfo | None, sampling: SamplingSettings) -> None:
        self._info, self._sampling = info, sampling
        self.query_one("#chat-status", Static).update(status_line(info, sampling, self._activity))

    def show_activity(self, what: str) -> None:
        """What the answer does now, said instead of the model's state ("busy"); "" when it says nothing more."""
        if what != self._activity:
            self._activity = what
            if self._sampling is not None:
                self.show_status(self._info, self._sampling)

    def open(self) -> None:
        select = self.select
        select.focus()
        select.expanded = True
