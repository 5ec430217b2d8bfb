"""A chat's system prompt and sampling settings: pick a preset, edit, apply or save as a new preset.

Each value says where it comes from: "you" (typed here), "preset NAME", the model's own defaults
("model (generation_config.json)") or "built-in", in that order of precedence.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Select, Static, TextArea

from workbench.api import WorkbenchApi
from workbench.core.chat.sampling import (
    FROM_USER,
    ResolvedSampling,
    SamplingChoice,
    SamplingLayer,
    preset_source,
    resolve_sampling,
    validate_sampling,
)
from workbench.core.settings.config import presets
from workbench.core.settings.write import save_preset
from workbench.ui.screens.dialogs import ConfirmScreen, PromptScreen


@dataclass(frozen=True)
class ChatSettings:
    system_prompt: str
    sampling: SamplingChoice


# (field, label, one-line hint of the valid range), in the order shown.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("temperature", "Temperature", "≥ 0; 0 = greedy"),
    ("top_p", "Top p", "above 0, at most 1"),
    ("min_p", "Min p", "0 up to (not incl.) 1"),
    ("top_k", "Top k", "whole ≥ 0; 0 = off"),
    ("max_tokens", "Max tokens", "whole number ≥ 1"),
    ("repetition_penalty", "Rep. penalty", "≥ 1; 1 = off"),
    ("seed", "Seed", "≥ 0; blank = random"),
)
HINTS = {name: hint for name, _label, hint in FIELDS}


def show_value(value: object) -> str:
    """A field's text: ``""`` for None, ``1`` rather than ``1.0``."""
    if value is None:
        return ""
    text = repr(value)
    return text.removesuffix(".0") if isinstance(value, float) else text


def parse_value(text: str) -> object:
    """An int or float when the text is one, else the text itself (validation then names it)."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class SettingsScreen(ModalScreen[ChatSettings | None]):
    """Dismisses with the new settings, or None when cancelled. ``model`` is the chat model's own defaults;
    ``title`` says whose settings they are ("Settings of side A · …" in Compare)."""

    BINDINGS = [
        Binding("ctrl+s", "apply", "Apply", id="chat-settings.apply"),
        # Not ctrl+t: in Compare that opens side B's settings, so pressing it twice would save a preset.
        Binding("ctrl+r", "save_preset", "Save as preset", id="chat-settings.save-preset"),
        Binding("escape", "cancel", "Cancel", id="chat-settings.cancel"),
    ]
    # The fields' grid is 4 rows of 5 lines (height: auto leaves blank rows below it).
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen #settings {
        width: 80; max-width: 100%; height: 26; max-height: 100%;
        border: round $primary; background: $surface;
    }
    SettingsScreen #settings-scroll { height: 1fr; padding: 0 1; }
    SettingsScreen .row { height: 3; }
    SettingsScreen .label { width: 13; padding-top: 1; }
    SettingsScreen #preset { width: 1fr; }
    SettingsScreen #prompt-label { color: $text-muted; }
    SettingsScreen #system-prompt { height: 5; }
    SettingsScreen #fields { grid-size: 2; grid-columns: 1fr 1fr; grid-rows: 5; grid-gutter: 0 2; height: 20; }
    SettingsScreen .field-input { width: 1fr; }
    SettingsScreen .hint { color: $text-muted; padding-left: 13; }
    SettingsScreen .hint.-error { color: $error; }
    SettingsScreen .source { color: $text-muted; text-style: italic; padding-left: 13; }
    SettingsScreen .source.-yours { color: $accent; }
    """

    def __init__(self, services: WorkbenchApi, current: ChatSettings, model: SamplingLayer | None = None,
                 title: str = "Chat settings") -> None:  # fmt: skip
        super().__init__()
        self.dialog_title = title
        self.services = services
        self.current = current
        self.model = model
        known = presets(services.settings)
        self.preset = current.sampling.preset if current.sampling.preset in known else None

    def compose(self) -> ComposeResult:
        shown = self.current.sampling.resolve(presets(self.services.settings), self.model)
        with Vertical(id="settings") as box:
            box.border_title = self.dialog_title
            with VerticalScroll(id="settings-scroll", can_focus=False):
                with Horizontal(classes="row"):
                    yield Label("Preset", classes="label")
                    yield Select[str](self.preset_options(), prompt="none (the model's defaults)",
                                      value=self.preset or Select.NULL, id="preset")  # fmt: skip
                yield Label("System prompt (blank = the model's default)", id="prompt-label")
                yield TextArea(self.current.system_prompt, id="system-prompt", soft_wrap=True)
                with Grid(id="fields"):
                    for name, label, hint in FIELDS:
                        with Vertical():
                            with Horizontal(classes="row"):
                                yield Label(label, classes="label")
                                yield Input(show_value(getattr(shown.settings, name)), id=name,
                                            classes="field-input")  # fmt: skip
                            yield Static(hint, id=f"{name}-hint", classes="hint", markup=False)
                            yield Static("", id=f"{name}-source", classes="source", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.show_sources()
        self.query_one("#preset", Select).focus()

    # --- presets -----------------------------------------------------------------------------------

    def preset_options(self) -> list[tuple[str, str]]:
        mine = self.services.settings.chat_presets
        return [(f"{name} (yours)" if name in mine else name, name) for name in presets(self.services.settings)]

    def below_yours(self) -> ResolvedSampling:
        """What each field is without your own values: the chosen preset's, the model's or the built-in one."""
        preset = presets(self.services.settings).get(self.preset) if self.preset else None
        layer = SamplingLayer(preset_source(self.preset), preset) if self.preset and preset is not None else None
        return resolve_sampling(layer, self.model)

    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        """Choosing a preset (or none) sets every field to what it gives, dropping your own values."""
        chosen = None if event.value is Select.NULL else str(event.value)
        if chosen == self.preset:
            return  # the initial value, or one set from code
        self.preset = chosen
        below = self.below_yours().settings
        with self.prevent(Input.Changed):
            for name, _label, _hint in FIELDS:
                self.query_one(f"#{name}", Input).value = show_value(getattr(below, name))
        self.show_problems([])
        self.show_sources()

    @on(Input.Changed, ".field-input")
    def field_edited(self) -> None:
        self.show_sources()

    def show_sources(self) -> None:
        """Under each field, where its value comes from: "you" for a valid value that differs from the rest."""
        below = self.below_yours()
        yours = self.yours()
        for name, _label, _hint in FIELDS:
            source = FROM_USER if name in yours else below.sources[name]
            widget = self.query_one(f"#{name}-source", Static)
            widget.update(f"from {source}")
            widget.set_class(name in yours, "-yours")

    # --- the form ----------------------------------------------------------------------------------

    def form_values(self) -> tuple[dict[str, object], list[tuple[str, str]]]:
        """The valid values the fields hold and a ``(field, problem)`` per bad one."""
        data = {}
        for name, _label, _hint in FIELDS:
            text = self.query_one(f"#{name}", Input).value
            data[name] = None if name == "seed" and not text.strip() else parse_value(text)
        return validate_sampling(data)

    def yours(self) -> dict[str, object]:
        """The valid field values that differ from what the preset, the model or the built-ins give."""
        below = self.below_yours().settings
        return {name: value for name, value in self.form_values()[0].items() if value != getattr(below, name)}

    def read_form(self) -> tuple[SamplingChoice | None, list[tuple[str, str]]]:
        """The choice the form describes (None if any field is bad) and a ``(field, problem)`` per bad one."""
        _clean, problems = self.form_values()
        return (None if problems else SamplingChoice(self.preset, self.yours())), problems

    def show_problems(self, problems: list[tuple[str, str]]) -> None:
        bad = dict(problems)
        for name, _label, hint in FIELDS:
            self.query_one(f"#{name}", Input).set_class(name in bad, "-invalid")
            note = self.query_one(f"#{name}-hint", Static)
            note.set_class(name in bad, "-error")
            note.update(f"✗ {hint}" if name in bad else hint)
        if problems:
            self.query_one(f"#{problems[0][0]}", Input).focus()
            self.notify("\n".join(f"{name}: {problem}" for name, problem in problems),
                        title="Check the settings", severity="error")  # fmt: skip

    def checked(self) -> SamplingChoice | None:
        sampling, problems = self.read_form()
        self.show_problems(problems)
        return sampling

    # --- actions -----------------------------------------------------------------------------------

    def action_apply(self) -> None:
        sampling = self.checked()
        if sampling is not None:
            self.dismiss(ChatSettings(self.query_one(TextArea).text.strip(), sampling))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save_preset(self) -> None:
        """Save the values that are yours or the preset's (the model's and the built-in ones stay out, so
        the preset leaves them to whichever model it is used with)."""
        choice = self.checked()
        if choice is None:
            return
        below = self.below_yours()
        preset_fields = [name for name, source in below.sources.items() if source == preset_source(self.preset or "")]
        sampling = {**{name: getattr(below.settings, name) for name in preset_fields}, **choice.values}
        if not sampling:
            self.notify("Nothing to save: every value comes from the model or the built-in defaults.",
                        severity="warning")  # fmt: skip
            return

        def named(name: str | None) -> None:
            if name is None:
                return
            if name not in presets(self.services.settings):
                self.save_preset(name, sampling)
                return

            def replace(yes: bool | None) -> None:
                if yes:
                    self.save_preset(name, sampling)

            self.app.push_screen(ConfirmScreen(f"Replace the preset “{name}”?", "Replace"), replace)

        prompt = PromptScreen("Save these sampling settings as a preset", placeholder="name: letters, digits, _ and -")
        self.app.push_screen(prompt, named)

    def save_preset(self, name: str, sampling: dict[str, object]) -> None:
        config_file = self.services.paths.config_file
        try:
            save_preset(config_file, name, sampling)
        except ValueError as exc:
            self.notify(str(exc), title="Preset not saved", severity="error")
            return
        except OSError as exc:
            self.notify(f"Could not write {config_file}: {exc.strerror or exc}", severity="error")
            return
        self.services.settings.chat_presets[name] = dict(sampling)
        self.preset = name  # set first: the select's change below is then not a new choice
        select = self.query_one("#preset", Select)
        select.set_options(self.preset_options())
        select.value = name
        self.show_sources()
        self.notify(f"Saved the preset “{name}” ({', '.join(sampling)}) to {config_file}.")
