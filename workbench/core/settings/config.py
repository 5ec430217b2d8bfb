"""User settings in ``config.toml``: :class:`Settings`, read strictly with tomllib by :func:`load_settings`.

A bad file never stops the app: every problem becomes a :class:`ConfigIssue` that names the file,
line and key, and the setting it concerns keeps its default. Writing a setting back (tomlkit, keeping the
user's comments, atomically) is :mod:`workbench.core.settings.write`; finding lines and wording problems is
:mod:`workbench.core.settings.toml_text`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.chat.sampling import BUILTIN_PRESETS, Preset, validate_sampling
from workbench.core.models.endpoints import ENV_NAME, Endpoint, parse_endpoints
from workbench.core.settings.toml_text import (
    ConfigIssue,
    KeyPath,
    check_value,
    describe,
    format_key,
    locate_key,
    read_toml,
)


@dataclass
class Settings:
    theme: str = "workbench-dark"
    budget_gb: float | None = None
    budget_fraction: float = 0.6
    context_length: int = 4096
    idle_unload_minutes: float = 15.0
    keys: dict[str, str] = field(default_factory=dict)
    chat_system_prompt: str = ""
    # None: no preset chosen, so each model's own defaults (generation_config.json) apply, then the built-in ones.
    # Only a preset named in config.toml outranks the model: that is how a choice is told from the default.
    chat_preset: str | None = None
    chat_presets: dict[str, Preset] = field(default_factory=dict)  # the user's own only
    endpoints: list[Endpoint] = field(default_factory=list)
    serve_api_key_env: str = ""  # the variable holding the key `serve` asks for; "" = none (loopback only)
    serve_max_body_mb: float = 8.0
    serve_max_waiting: int = 32
    # where the engine opens the API whenever it starts; neither set: nowhere (only `workbench serve` opens one)
    serve_host: str | None = None
    serve_port: int | None = None
    # the prompt (KV) caches kept for reuse, on top of the models; None: 10 % of the budget, 0: no reuse
    prompt_cache_gb: float | None = None
    engine_idle_exit_minutes: float = 30.0  # the engine exits after this long with nothing to do; 0 = never


def is_host(value: str) -> bool:
    """A host to listen on as config.toml may name it: not empty, at most 253 characters, no blank or control
    character (whether it resolves is found out when the engine binds it)."""
    return 0 < len(value) <= 253 and not any(c.isspace() or not c.isprintable() for c in value)


def presets(settings: Settings) -> dict[str, Preset]:
    """Every sampling preset by name: the built-in ones, overridden and extended by the user's."""
    return {**BUILTIN_PRESETS, **settings.chat_presets}


# --- validating settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingField:
    """One scalar setting: the Settings attribute it fills, its type, what it expects (for messages), its check."""

    attr: str
    kind: type
    expect: str
    ok: Callable[[Any], bool] = lambda _value: True


SETTING_FIELDS: dict[tuple[str, ...], SettingField] = {
    ("theme",): SettingField("theme", str, "a theme name", lambda v: bool(v.strip())),
    ("memory", "budget_gb"): SettingField("budget_gb", float, "a number of gigabytes > 0", lambda v: v > 0),
    ("memory", "budget_fraction"): SettingField(
        "budget_fraction", float, "a number greater than 0 and at most 1", lambda v: 0 < v <= 1
    ),
    ("models", "context_length"): SettingField(
        "context_length", int, "a whole number of tokens >= 256", lambda v: v >= 256
    ),
    ("models", "idle_unload_minutes"): SettingField(
        "idle_unload_minutes", float, "a number of minutes >= 0 (0 = never)", lambda v: v >= 0
    ),
    ("models", "prompt_cache_gb"): SettingField(
        "prompt_cache_gb", float, "a number of gigabytes >= 0 (0 = no reuse)", lambda v: v >= 0
    ),
    ("chat", "system_prompt"): SettingField("chat_system_prompt", str, 'text ("" = the model\'s default)'),
    ("chat", "preset"): SettingField("chat_preset", str, "a preset name", lambda v: bool(v.strip())),
    ("serve", "api_key_env"): SettingField(
        "serve_api_key_env", str, "the name of an environment variable (letters, digits, _)",
        lambda v: bool(ENV_NAME.fullmatch(v)),
    ),
    ("serve", "max_body_mb"): SettingField(
        "serve_max_body_mb", float, "a number of megabytes greater than 0 and at most 1024", lambda v: 0 < v <= 1024
    ),
    ("serve", "max_waiting"): SettingField(
        "serve_max_waiting", int, "a whole number of requests from 1 to 10000", lambda v: 1 <= v <= 10_000
    ),
    ("serve", "host"): SettingField(
        "serve_host", str, "a host name or address without spaces (127.0.0.1, ::1, 0.0.0.0, …)", is_host
    ),
    ("serve", "port"): SettingField("serve_port", int, "a port number from 1 to 65535", lambda v: 1 <= v <= 65535),
    ("engine", "idle_exit_minutes"): SettingField(
        "engine_idle_exit_minutes", float, "a number of minutes >= 0 (0 = never)", lambda v: v >= 0
    ),
}
_TABLES = {"memory", "models", "keys", "chat", "serve", "engine"}
_KNOWN_NAMES = [".".join(path) for path in SETTING_FIELDS] + ["keys", "chat.presets", "endpoints"]


def check_setting(spec: SettingField, value: object) -> object | None:
    """The value as the setting takes it, or None if it has the wrong type or fails the setting's check."""
    return check_value(spec.kind, value, spec.ok)


def check_binding(value: object) -> str | None:
    """A key binding's keys without surrounding blanks, or None unless they are non-empty text."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def load_settings(path: Path) -> tuple[Settings, list[ConfigIssue]]:
    """Settings from ``path``; anything missing or wrong keeps its default and is reported."""
    settings = Settings()
    text, data, issues = read_toml(path)
    if data is None:
        return settings, issues

    def issue(parts: KeyPath, message: str) -> None:
        # A key inside an inline table has no line of its own: point at the nearest enclosing one.
        lines = (locate_key(text, parts[:end]) for end in range(len(parts), 0, -1))
        line = next((found for found in lines if found is not None), None)
        issues.append(ConfigIssue(path, line, format_key(parts), message))

    def unknown(parts: tuple[str, ...]) -> None:
        close = difflib.get_close_matches(".".join(parts), _KNOWN_NAMES, n=1)
        issue(parts, "unknown setting" + (f" (did you mean {close[0]}?)" if close else ""))

    def apply(parts: tuple[str, ...], value: object) -> None:
        spec = SETTING_FIELDS.get(parts)
        if spec is None:
            unknown(parts)
        elif (checked := check_setting(spec, value)) is None:
            issue(parts, f"expected {spec.expect}, got {describe(value)}")
        else:
            setattr(settings, spec.attr, checked)

    for name, value in data.items():
        if name == "endpoints":
            settings.endpoints = parse_endpoints(value, issue)
        elif name not in _TABLES:
            apply((name,), value)
        elif not isinstance(value, dict):
            issue((name,), f"expected a table ([{name}]), got {describe(value)}")
        elif name == "keys":
            for binding, keys in value.items():
                if (checked := check_binding(keys)) is None:
                    expect = 'expected keys as text like "ctrl+k" or "f1,ctrl+p"'
                    issue((name, binding), f"{expect}, got {describe(keys)}")
                else:
                    settings.keys[binding] = checked
        else:
            for sub, sub_value in value.items():
                if (name, sub) == ("chat", "presets"):
                    settings.chat_presets = _load_presets(sub_value, issue)
                else:
                    apply((name, sub), sub_value)

    if settings.chat_preset is not None and settings.chat_preset not in presets(settings):
        known = ", ".join(presets(settings))
        issue(("chat", "preset"), f"unknown preset {describe(settings.chat_preset)} (known: {known})")
        settings.chat_preset = None
    return settings, issues


def _load_presets(value: object, issue: Callable[[KeyPath, str], None]) -> dict[str, Preset]:
    """The user's ``[chat.presets.NAME]`` tables; a bad value is reported and left out (the model's or the
    built-in default applies to it)."""
    if not isinstance(value, dict):
        issue(("chat", "presets"), f"expected a table of presets ([chat.presets.NAME]), got {describe(value)}")
        return {}
    loaded: dict[str, Preset] = {}
    for name, fields in value.items():
        where = ("chat", "presets", name)
        if not isinstance(fields, dict):
            issue(where, f"expected a table of sampling settings ([{format_key(where)}]), got {describe(fields)}")
            continue
        clean, problems = validate_sampling(fields)
        for key, message in problems:
            issue((*where, key), message)
        loaded[name] = clean
    return loaded
