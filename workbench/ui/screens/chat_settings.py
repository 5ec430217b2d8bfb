"""A chat's system prompt and sampling settings: pick a preset, edit, apply or save as a new preset."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Select, Static, TextArea
from textual.widgets.select import NoSelection

from workbench.core.config import presets, save_preset
from workbench.core.sampling import SamplingSettings, validate_sampling
from workbench.core.services import Services
from workbench.ui.screens.dialogs import ConfirmScreen, PromptScreen


@dataclass(frozen=True)
class ChatSettings:
    system_prompt: str
    sampling: SamplingSettings


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
    """Dismisses with the new settings, or None when cancelled."""

    BINDINGS = [
        Binding("ctrl+s", "apply", "Apply", id="chat-settings.apply"),
        Binding("ctrl+t", "save_preset", "Save as preset", id="chat-settings.save-preset"),
        Binding("escape", "cancel", "Cancel", id="chat-settings.cancel"),
    ]
    # The fields' grid is 4 rows of 4 lines (height: auto leaves blank rows below it).
    DEFAULT_CSS = """
    SettingsScreen { align: center middle; }
    SettingsScreen #settings {
        width: 78; max-width: 100%; height: 22; max-height: 100%;
        border: round $primary; background: $surface;
    }
    SettingsScreen #settings-scroll { height: 1fr; padding: 0 1; }
    SettingsScreen .row { height: 3; }
    SettingsScreen .label { width: 13; padding-top: 1; }
    SettingsScreen #preset { width: 1fr; }
    SettingsScreen #prompt-label { color: $text-muted; }
    SettingsScreen #system-prompt { height: 5; }
    SettingsScreen #fields { grid-size: 2; grid-columns: 1fr 1fr; grid-rows: 4; grid-gutter: 0 2; height: 16; }
    SettingsScreen .field-input { width: 1fr; }
    SettingsScreen .hint { color: $text-muted; padding-left: 13; }
    SettingsScreen .hint.-error { color: $error; }
    """

    def __init__(self, services: Services, current: ChatSettings) -> None:
        super().__init__()
        self.services = services
        self.current = current

    def compose(self) -> ComposeResult:
        sampling = self.current.sampling
        with Vertical(id="settings") as box:
            box.border_title = "Chat settings"
            with VerticalScroll(id="settings-scroll", can_focus=False):
                with Horizontal(classes="row"):
                    yield Label("Preset", classes="label")
                    yield Select[str](self.preset_options(), prompt="Custom", value=self.matching_preset(sampling),
                                 id="preset")  # fmt: skip
                yield Label("System prompt (blank = the model's default)", id="prompt-label")
                yield TextArea(self.current.system_prompt, id="system-prompt", soft_wrap=True)
                with Grid(id="fields"):
                    for name, label, hint in FIELDS:
                        with Vertical():
                            with Horizontal(classes="row"):
                                yield Label(label, classes="label")
                                yield Input(show_value(getattr(sampling, name)), id=name, classes="field-input")
                            yield Static(hint, id=f"{name}-hint", classes="hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#preset", Select).focus()

    # --- presets -----------------------------------------------------------------------------------

    def preset_options(self) -> list[tuple[str, str]]:
        mine = self.services.settings.chat_presets
        return [(f"{name} (yours)" if name in mine else name, name) for name in presets(self.services.settings)]

    def matching_preset(self, sampling: SamplingSettings) -> str | NoSelection:
        found = [name for name, preset in presets(self.services.settings).items() if preset == sampling]
        return found[0] if found else Select.NULL

    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        preset = presets(self.services.settings).get(str(event.value))
        if event.value is Select.NULL or preset is None:
            return
        for name, _label, _hint in FIELDS:
            self.query_one(f"#{name}", Input).value = show_value(getattr(preset, name))
        self.show_problems([])

    @on(Input.Changed, ".field-input")
    def field_edited(self) -> None:
        """An edit that leaves the chosen preset's values shows the preset as "Custom"."""
        select = self.query_one("#preset", Select)
        if select.value is not Select.NULL and self.read_form()[0] != presets(self.services.settings).get(
            str(select.value)
        ):
            select.clear()

    # --- the form ----------------------------------------------------------------------------------

    def read_form(self) -> tuple[SamplingSettings | None, list[tuple[str, str]]]:
        """The sampling settings the fields describe (None if any is bad) and a ``(field, problem)`` per bad one."""
        data = {}
        for name, _label, _hint in FIELDS:
            text = self.query_one(f"#{name}", Input).value
            data[name] = None if name == "seed" and not text.strip() else parse_value(text)
        clean, problems = validate_sampling(data)
        return (None if problems else SamplingSettings(**clean)), problems

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

    def checked(self) -> SamplingSettings | None:
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
        sampling = self.checked()
        if sampling is None:
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

    def save_preset(self, name: str, sampling: SamplingSettings) -> None:
        config_file = self.services.paths.config_file
        try:
            save_preset(config_file, name, sampling)
        except ValueError as exc:
            self.notify(str(exc), title="Preset not saved", severity="error")
            return
        except OSError as exc:
            self.notify(f"Could not write {config_file}: {exc.strerror or exc}", severity="error")
            return
        self.services.settings.chat_presets[name] = sampling
        select = self.query_one("#preset", Select)
        select.set_options(self.preset_options())
        select.value = name
        self.notify(f"Saved the preset “{name}” to {config_file}.")
