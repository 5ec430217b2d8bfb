"""The Compare pane's two model choosers and each side's own settings: together they make the two contenders.

One line high (compact selects). In blind mode the choosers hide behind "model ?" until the vote.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Select, Static

from workbench.api import WorkbenchApi
from workbench.core.chat.model_sampling import chat_sampling, model_sampling_by_id
from workbench.core.chat.sampling import SamplingChoice
from workbench.core.compare.run import SIDES, Contender, MemoryPlan, plan_memory
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.ui.services import services_of


class ContenderPicker(Horizontal):
    """Model A and model B (Selects ``#model-a``, ``#model-b``), and the sampling and system prompt of each side."""

    DEFAULT_CSS = """
    ContenderPicker { height: 1; }
    ContenderPicker Select { width: 1fr; }
    ContenderPicker .side-label { width: 3; padding-left: 1; text-style: bold; }
    ContenderPicker .hidden-model { width: 1fr; padding: 0 2; color: $text-muted; display: none; }
    ContenderPicker.-blind Select { display: none; }
    ContenderPicker.-blind .hidden-model { display: block; }
    """

    def __init__(self, preset: str | None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.settings = {side: SamplingChoice(preset) for side in SIDES}  # the model's defaults fill the rest
        self.system_prompts = {side: "" for side in SIDES}

    @property
    def services(self) -> WorkbenchApi:
        return services_of(self)

    @property
    def manager(self) -> ModelManager:
        return self.services.manager

    def compose(self) -> ComposeResult:
        for side in SIDES:
            yield Static(side.upper(), classes="side-label")
            yield Select[str]([], prompt=f"Model {side.upper()}", id=f"model-{side}", allow_blank=True, compact=True)
            yield Static("model ? (hidden until the vote)", classes="hidden-model")

    def set_blind(self, blind: bool) -> None:
        """Hide which models are chosen (blind mode before the vote), or show them again."""
        self.set_class(blind, "-blind")

    def pick(self, side: str) -> bool:
        """Open the model list of ``side``; False (nothing opened) while blind mode hides the models."""
        if self.has_class("-blind"):
            return False
        select = self.query_one(f"#model-{side}", Select)
        select.focus()
        select.expanded = True
        return True

    def model_id(self, side: str) -> str | None:
        value = self.query_one(f"#model-{side}", Select).value
        return None if value is Select.NULL else str(value)

    def refresh_models(self, ids: list[str]) -> None:
        """Offer the chat models ``ids``; a side keeps its choice while it is offered, else gets the default."""
        options = [(self.manager.info(i).spec.name, i) for i in ids]
        default = DEFAULT_CHAT_ID if DEFAULT_CHAT_ID in ids else (ids[0] if ids else None)
        for side in SIDES:
            select = self.query_one(f"#model-{side}", Select)
            current = select.value if select.value is not Select.NULL else None
            if [v for _, v in select._options if v is not Select.NULL] != ids:
                select.set_options(options)
            wanted = current if current in ids else default
            if wanted is not None and select.value != wanted:
                select.value = wanted

    def contender(self, side: str) -> Contender | None:
        model_id = self.model_id(side)
        if model_id is None:
            return None
        sampling = chat_sampling(self.services.settings, self.manager, model_id, self.settings[side]).settings
        label = f"{self.manager.info(model_id).spec.name} · T {sampling.temperature:g}"
        if self.system_prompts[side]:
            label += " · own prompt"
        return Contender(model_id, label, sampling, self.system_prompts[side])

    def plan(self) -> MemoryPlan | None:
        """How the two contenders would run (None until both sides have a model)."""
        a, b = self.contender("a"), self.contender("b")
        return None if a is None or b is None else plan_memory(self.manager, a, b)

    def edit_settings(self, side: str, changed: Callable[[], None]) -> None:
        """Open the settings of one side (its model named unless blind); ``changed`` runs when new ones were
        applied."""
        from workbench.ui.screens.chat_settings import ChatSettings, SettingsScreen

        def applied(result: ChatSettings | None) -> None:
            if result is not None:
                self.settings[side], self.system_prompts[side] = result.sampling, result.system_prompt
                changed()

        current = ChatSettings(self.system_prompts[side], self.settings[side])
        model = model_sampling_by_id(self.manager, self.model_id(side))
        title = f"Settings of side {side.upper()}"
        model_id = self.model_id(side)
        if model_id is not None and not self.has_class("-blind"):
            title += f" · {self.manager.info(model_id).spec.name}"
        self.app.push_screen(SettingsScreen(self.services, current, model, title=title), applied)
