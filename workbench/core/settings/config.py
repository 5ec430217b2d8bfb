"""User settings in ``config.toml``: read strictly with tomllib, written back with tomlkit.

A bad file never stops the app: every problem becomes a :class:`ConfigIssue` that names the file,
line and key, and the setting it concerns keeps its default. Writing goes through tomlkit so the
user's comments and layout survive, and replaces the file atomically.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.chat.sampling import BUILTIN_PRESETS, Preset, validate_sampling
from workbench.core.models.endpoints import ENV_NAME, Endpoint, parse_endpoints

SYNTAX_KEY = "(syntax)"
FILE_KEY = "(file)"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a settings or catalog file, worded for the person who edits it."""

    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}"


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


def presets(settings: Settings) -> dict[str, Preset]:
    """Every sampling preset by name: the built-in ones, overridden and extended by the user's."""
    return {**BUILTIN_PRESETS, **settings.chat_presets}


# --- reading TOML for people ----------------------------------------------------------------------


def read_toml(path: Path) -> tuple[str, dict[str, Any] | None, list[ConfigIssue]]:
    """Text and parsed data of a TOML file; a missing file is ``("", {}, [])``.

    When the file cannot be read or parsed the data is None and one issue says why.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "", {}, []
    except UnicodeDecodeError:
        return "", None, [ConfigIssue(path, None, FILE_KEY, "not UTF-8 text")]
    except OSError as exc:
        return "", None, [ConfigIssue(path, None, FILE_KEY, f"cannot read: {exc.strerror or exc}")]
    try:
        return text, tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        line, reason = _decode_error_location(exc, text)
        return text, None, [ConfigIssue(path, line, SYNTAX_KEY, f"not valid TOML: {reason}")]


def _decode_error_location(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int | None, str]:
    # Python < 3.14 puts the position only in the message: "Invalid value (at line 3, column 5)".
    message = str(exc)
    if match := re.search(r"\s*\(at line (\d+), column (\d+)\)$", message):
        return int(match[1]), f"{message[: match.start()]} (column {match[2]})"
    if match := re.search(r"\s*\(at end of document\)$", message):
        return max(1, len(text.splitlines())), f"{message[: match.start()]} (at end of file)"
    return getattr(exc, "lineno", None), message


def describe(value: object) -> str:
    """A TOML-looking rendering of a parsed value, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


# --- finding the line of a key --------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
KeyPath = Sequence[str | int]


def format_key(parts: KeyPath) -> str:
    """Render key parts as text: ``memory.budget_gb``, ``keys."pane.chat"``, ``model[3].size_gb``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += f".{name}" if out else name
    return out


def locate_key(text: str, dotted_key: str | KeyPath) -> int | None:
    """1-based line where a key (or table header) is defined in hand-written TOML, or None.

    ``dotted_key`` is TOML key syntax (``memory.budget_gb``, ``keys."pane.chat"``) or a sequence of
    parts, where an int picks the n-th (0-based) block of an array of tables: ``("model", 3, "size_gb")``.
    """
    target = tuple(_split_key(dotted_key) or ()) if isinstance(dotted_key, str) else tuple(dotted_key)
    if not target:
        return None
    for line_no, path in _definitions(text):
        if path == target:
            return line_no
    return None


def _definitions(text: str) -> Iterator[tuple[int, tuple[str | int, ...]]]:
    """Every table header and key definition as (line, full path), in file order."""
    table: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str, ...], int] = {}
    in_multiline: str | None = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parts = _split_key(line[2:].split("]]", 1)[0])
            if parts is not None:
                index = array_counts.get(tuple(parts), -1) + 1
                array_counts[tuple(parts)] = index
                table = (*parts, index)
                yield line_no, table
            continue
        if line.startswith("["):
            parts = _split_key(line[1:].split("]", 1)[0])
            if parts is not None:
                table = tuple(parts)
                yield line_no, table
            continue
        key_text, value = _split_assignment(line)
        parts = _split_key(key_text) if key_text is not None else None
        if parts is None:
            continue
        yield line_no, (*table, *parts)
        for quote in ('"""', "'''"):
            if value.count(quote) % 2 == 1:
                in_multiline = quote


def _split_assignment(line: str) -> tuple[str | None, str]:
    """Split ``key = value`` at the first ``=`` outside quotes."""
    quote: str | None = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "=":
            return line[:i], line[i + 1 :]
    return None, ""


def _split_key(text: str) -> list[str] | None:
    """Parts of a TOML key (``a."b.c".d`` -> ``["a", "b.c", "d"]``), or None if it is not one."""
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if rest[0] == '"':
            match = re.match(r'"((?:[^"\\]|\\.)*)"', rest)
            if not match:
                return None
            try:
                parts.append(json.loads(match[0]))
            except ValueError:
                parts.append(match[1])
        elif rest[0] == "'":
            match = re.match(r"'([^']*)'", rest)
            if not match:
                return None
            parts.append(match[1])
        else:
            match = _BARE_KEY.match(rest)
            if not match:
                return None
            parts.append(match[0])
        rest = rest[match.end() :].lstrip()
        if not rest:
            break
        if rest[0] != ".":
            return None
        rest = rest[1:].lstrip()
        if not rest:
            return None
    return parts or None


# --- validating settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    attr: str
    kind: type
    expect: str
    ok: Callable[[Any], bool] = lambda _value: True


_FIELDS: dict[tuple[str, ...], _Field] = {
    ("theme",): _Field("theme", str, "a theme name", lambda v: bool(v.strip())),
    ("memory", "budget_gb"): _Field("budget_gb", float, "a number of gigabytes > 0", lambda v: v > 0),
    ("memory", "budget_fraction"): _Field(
        "budget_fraction", float, "a number greater than 0 and at most 1", lambda v: 0 < v <= 1
    ),
    ("models", "context_length"): _Field(
        "context_length", int, "a whole number of tokens >= 256", lambda v: v >= 256
    ),
    ("models", "idle_unload_minutes"): _Field(
        "idle_unload_minutes", float, "a number of minutes >= 0 (0 = never)", lambda v: v >= 0
    ),
    ("chat", "system_prompt"): _Field("chat_system_prompt", str, 'text ("" = the model\'s default)'),
    ("chat", "preset"): _Field("chat_preset", str, "a preset name", lambda v: bool(v.strip())),
    ("serve", "api_key_env"): _Field(
        "serve_api_key_env", str, "the name of an environment variable (letters, digits, _)",
        lambda v: bool(ENV_NAME.fullmatch(v)),
    ),
    ("serve", "max_body_mb"): _Field(
        "serve_max_body_mb", float, "a number of megabytes greater than 0 and at most 1024", lambda v: 0 < v <= 1024
    ),
    ("serve", "max_waiting"): _Field(
        "serve_max_waiting", int, "a whole number of requests from 1 to 10000", lambda v: 1 <= v <= 10_000
    ),
}
_TABLES = {"memory", "models", "keys", "chat", "serve"}
_KNOWN_NAMES = [".".join(path) for path in _FIELDS] + ["keys", "chat.presets", "endpoints"]


def check_value(kind: type, value: object, ok: Callable[[Any], object] = lambda _v: True) -> object | None:
    """``value`` converted to ``kind`` (str, int or float) if it has that type and passes ``ok``, else None.

    Booleans are never numbers; ints are accepted where a float is expected; floats must be finite.
    """
    if isinstance(value, bool):
        return None
    if kind is float and isinstance(value, int | float):
        value = float(value)
        if not math.isfinite(value):
            return None
    elif not isinstance(value, kind):
        return None
    return value if ok(value) else None


def _check_field(spec: _Field, value: object) -> object | None:
    return check_value(spec.kind, value, spec.ok)


def _check_binding(value: object) -> str | None:
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
        spec = _FIELDS.get(parts)
        if spec is None:
            unknown(parts)
        elif (checked := _check_field(spec, value)) is None:
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
                if (checked := _check_binding(keys)) is None:
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


# --- writing settings back ------------------------------------------------------------------------


def default_config_text() -> str:
    """The commented template a new ``config.toml`` starts from: every setting at its default."""
    return """\
# workbench settings. Uncomment a line to change it; the app also writes here when you change a
# setting inside it, and keeps your comments. A mistake here is reported when the app starts and
# that setting falls back to its default.

# Colour theme: a shipped theme or one from the themes/ folder next to this file.
# theme = "workbench-dark"

[memory]
# Memory budget for loaded models, in GB. When unset, budget_fraction of physical memory is used.
# budget_gb = 8.0
# Share of physical memory models may use when budget_gb is not set (greater than 0, at most 1).
# budget_fraction = 0.6

[models]
# Context length (tokens) used to size the KV cache and the memory estimate; at least 256.
# context_length = 4096
# Unload a model nobody has used for this many minutes; 0 = never.
# idle_unload_minutes = 15

[keys]
# Key bindings: binding id = key(s), comma-separated like Textual keymaps.
# "pane.chat" = "3"

[chat]
# Your own sampling presets are tables like the one below: any of temperature, top_p, min_p,
# top_k, max_tokens, repetition_penalty and seed; the ones left out take the model's defaults
# (its generation_config.json), then the built-in ones.
#     [chat.presets.mine]
#     temperature = 0.3
#     max_tokens = 1024
# System prompt for new chats; "" leaves the model's own default.
# system_prompt = ""
# Sampling preset new chats start with: balanced, precise, creative, greedy or one of yours. Unset, each
# model's own defaults apply (its generation_config.json), then the built-in ones (temperature 0.7).
# preset = "balanced"

[serve]
# `workbench serve`, the OpenAI-compatible API. Beyond 127.0.0.1 (--host 0.0.0.0) it asks every request for a
# key (Authorization: Bearer KEY) and refuses to start without one: api_key_env names the environment variable
# that holds it (the key itself is never written here; --api-key-env overrides this).
# api_key_env = "WORKBENCH_API_KEY"
# The largest request body, in MB; a larger one is refused with 413.
# max_body_mb = 8
# Chat requests answered or waiting at once; past it a request gets 503 with Retry-After.
# max_waiting = 32

# Models on other machines: any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server, mlx_lm.server).
# Their models appear in the Chat and Compare pickers as NAME:MODEL. The API key is never written here:
# api_key_env names the environment variable that holds it.
# [[endpoints]]
# name = "cluster"
# base_url = "http://gpu-box:8000/v1"
# api_key_env = "CLUSTER_API_KEY"
# models = ["meta-llama/Llama-3.3-70B-Instruct"]   # leave out to ask the server
# context_length = 32768
"""


def save_setting(path: Path, dotted_key: str, value: object) -> None:
    """Write one setting (``"theme"``, ``"memory.budget_gb"``) into ``path``, keeping comments.

    ``None`` removes the setting so its default applies again. Raises ValueError for an unknown key or
    a bad value, and tomlkit's ParseError (a ValueError) if the existing file is not valid TOML.
    Key bindings go through :func:`save_key_binding`.
    """
    parts = tuple(dotted_key.split("."))
    if parts[0] == "keys":
        raise ValueError("key bindings are saved with save_key_binding()")
    if parts[:2] == ("chat", "presets"):
        raise ValueError("sampling presets are saved with save_preset()")
    spec = _FIELDS.get(parts)
    if spec is None:
        raise ValueError(f"unknown setting: {dotted_key}")
    if value is not None and _check_field(spec, value) is None:
        raise ValueError(f"{dotted_key}: expected {spec.expect}, got {describe(value)}")
    _update(path, parts, value)


def save_key_binding(path: Path, binding_id: str, keys: str | None) -> None:
    """Write ``"binding.id" = "keys"`` into the ``[keys]`` table; None removes the override."""
    if not binding_id:
        raise ValueError("empty binding id")
    if keys is not None:
        checked = _check_binding(keys)
        if checked is None:
            raise ValueError(f"{binding_id}: expected keys as text, got {describe(keys)}")
        keys = checked
    _update(path, ("keys", binding_id), keys)


def save_preset(path: Path, name: str, values: Preset) -> None:
    """Write ``[chat.presets.NAME]`` with ``values`` (validated sampling fields; a None seed is left out),
    replacing any table of that name.

    ``name`` is letters, digits, ``_`` and ``-``; anything else raises ValueError.
    """
    if not _BARE_KEY.fullmatch(name):
        raise ValueError(f"preset name {name!r}: use only letters, digits, _ and -")
    import tomlkit

    table = tomlkit.table()
    clean, problems = validate_sampling({key: value for key, value in values.items() if value is not None})
    if problems:
        raise ValueError("; ".join(f"{key}: {message}" for key, message in problems))
    table.update(clean)
    _update(path, ("chat", "presets", name), table)


def _update(path: Path, parts: tuple[str, ...], value: object) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else default_config_text()
    import tomlkit  # only needed to write; keeps start-up light
    from tomlkit.items import Table

    doc = tomlkit.parse(text)
    container: Any = doc
    for name in parts[:-1]:
        if name not in container:
            if value is None:
                return
            container.add(name, tomlkit.table())
        container = container[name]
        if not isinstance(container, Table | dict):
            raise ValueError(f"{path}: {name} is not a table")
    if value is None:
        container.pop(parts[-1], None)
    else:
        container[parts[-1]] = value
    write_atomic(path, tomlkit.dumps(doc))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
