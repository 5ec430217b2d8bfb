"""Writing settings back into ``config.toml``: one setting, a key binding or a sampling preset at a time, through
tomlkit so the user's comments and layout survive, replacing the file atomically. A new file starts from
:func:`default_config_text`, the commented template with every setting at its default."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from workbench.core.chat.sampling import Preset, validate_sampling
from workbench.core.settings.config import SETTING_FIELDS, check_binding, check_setting
from workbench.core.settings.toml_text import BARE_KEY, describe


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
# Gigabytes of prompt (KV) caches kept for reuse on top of the models; unset: 10 % of the budget; 0 = no reuse.
# prompt_cache_gb = 1.5

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
# Open the API whenever the engine starts, on this address (either line does; the other keeps its default,
# 127.0.0.1 / 8000). Such an engine stays running (it does not exit when idle) until `workbench stop`.
# The key rule above holds: beyond 127.0.0.1 the engine reads the key from its own environment.
# host = "127.0.0.1"
# port = 8000

[engine]
# `workbench engine`, the background process that holds the models (see `workbench ps`, `workbench stop`).
# It exits by itself after this many minutes with no request, no running download and no loaded model; 0 = never.
# idle_exit_minutes = 30

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
    spec = SETTING_FIELDS.get(parts)
    if spec is None:
        raise ValueError(f"unknown setting: {dotted_key}")
    if value is not None and check_setting(spec, value) is None:
        raise ValueError(f"{dotted_key}: expected {spec.expect}, got {describe(value)}")
    _update(path, parts, value)


def save_key_binding(path: Path, binding_id: str, keys: str | None) -> None:
    """Write ``"binding.id" = "keys"`` into the ``[keys]`` table; None removes the override."""
    if not binding_id:
        raise ValueError("empty binding id")
    if keys is not None:
        checked = check_binding(keys)
        if checked is None:
            raise ValueError(f"{binding_id}: expected keys as text, got {describe(keys)}")
        keys = checked
    _update(path, ("keys", binding_id), keys)


def save_preset(path: Path, name: str, values: Preset) -> None:
    """Write ``[chat.presets.NAME]`` with ``values`` (validated sampling fields; a None seed is left out),
    replacing any table of that name.

    ``name`` is letters, digits, ``_`` and ``-``; anything else raises ValueError.
    """
    if not BARE_KEY.fullmatch(name):
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
