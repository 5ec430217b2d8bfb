"""The curated model catalog: the ``catalog.toml`` shipped with the app, with the user's own ``catalog.toml`` in the
config folder laid over it by repo_id (:func:`load_effective_catalog`). The Catalog pane lists these entries on its
first page, above the Hugging Face search results (workbench.core.hub.client); nothing here reaches the network.

Each ``[[model]]`` block is one entry. A bad entry, or a repo_id listed twice in one file, is skipped and reported
with its index, key and line (``model[3].size_gb``); the rest of the file still loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.settings.toml_text import ConfigIssue, check_value, describe, format_key, locate_key, read_toml

KINDS = ("chat", "embedding")
_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class CatalogEntry:
    repo_id: str
    name: str
    kind: str  # "chat" or "embedding"
    params: str  # "3B"
    quantization: str  # "4-bit", "fp16"
    size_gb: float  # download size
    memory_gb: float  # memory to run it at the default context
    note: str = ""


def _text(value: str) -> bool:
    return bool(value.strip())


# key -> (type, what the issue says is expected, extra check)
_FIELDS: dict[str, tuple[type, str, Callable[[Any], object]]] = {
    "repo_id": (str, 'a Hugging Face repo id like "owner/name"', lambda v: _REPO_ID.fullmatch(v)),
    "name": (str, "a display name", _text),
    "kind": (str, " or ".join(f'"{k}"' for k in KINDS), lambda v: v in KINDS),
    "params": (str, 'a parameter count like "3B"', _text),
    "quantization": (str, 'a quantization like "4-bit" or "fp16"', _text),
    "size_gb": (float, "a download size in GB > 0", lambda v: v > 0),
    "memory_gb": (float, "a memory need in GB > 0", lambda v: v > 0),
    "note": (str, "text", lambda _v: True),
}
_OPTIONAL = {"note": ""}


def load_catalog(path: Path) -> tuple[list[CatalogEntry], list[ConfigIssue]]:
    """Entries of one catalog file; a missing file is an empty catalog with no issues."""
    text, data, issues = read_toml(path)
    if data is None:
        return [], issues

    def issue(parts: tuple[str | int, ...], message: str) -> None:
        issues.append(ConfigIssue(path, locate_key(text, parts), format_key(parts), message))

    for name in data:
        if name != "model":
            issue((name,), "unknown key (each entry is a [[model]] block)")
    blocks = data.get("model", [])
    if not isinstance(blocks, list):
        issue(("model",), f"expected [[model]] blocks, got {describe(blocks)}")
        return [], issues

    entries: list[CatalogEntry] = []
    seen: set[str] = set()
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            issue(("model", index), f"expected a table, got {describe(block)}")
            continue
        values: dict[str, Any] = dict(_OPTIONAL)
        valid = True
        for key in block:
            if key not in _FIELDS:
                issue(("model", index, key), "unknown key")
        for key, (kind, expect, ok) in _FIELDS.items():
            if key not in block:
                if key not in _OPTIONAL:
                    issue(("model", index), f"missing {key} ({expect})")
                    valid = False
                continue
            checked = check_value(kind, block[key], ok)
            if checked is None:
                issue(("model", index, key), f"expected {expect}, got {describe(block[key])}")
                valid = False
            else:
                values[key] = checked
        if not valid:
            continue
        entry = CatalogEntry(**values)
        if entry.repo_id in seen:
            issue(("model", index, "repo_id"), f"{entry.repo_id} is already listed earlier; skipped")
            continue
        seen.add(entry.repo_id)
        entries.append(entry)
    return entries, issues


def load_effective_catalog(shipped: Path, user: Path) -> tuple[list[CatalogEntry], list[ConfigIssue]]:
    """The shipped catalog with the user's copy laid over it by repo_id.

    A user entry replaces the shipped one with the same repo_id in place; new ones come after.
    """
    base, issues = load_catalog(shipped)
    overrides, user_issues = load_catalog(user)
    merged = {entry.repo_id: entry for entry in base}
    for entry in overrides:
        merged[entry.repo_id] = entry
    return list(merged.values()), issues + user_issues


TASK_KINDS = {"text-generation": "chat", "feature-extraction": "embedding", "sentence-similarity": "embedding"}


def entry_matches(entry: CatalogEntry, text: str, task: str | None, author: str | None, mlx_only: bool) -> bool:
    """Whether the Catalog's filters let a curated entry through, as they do a search result: every word of the
    text in its repo id, name or note; its kind the task's (a task curated entries have none of lets none through);
    its org the author (case-insensitive). MLX builds are the chat entries; the embedding entries
    (sentence-transformers, what the Embeddings pane runs) stay with MLX-only unless a search text asks for more."""
    haystack = f"{entry.repo_id} {entry.name} {entry.note}".lower()
    if not all(word in haystack for word in text.lower().split()):
        return False
    if task is not None and TASK_KINDS.get(task) != entry.kind:
        return False
    if author and entry.repo_id.partition("/")[0].lower() != author.lower():
        return False
    return not mlx_only or entry.kind == "chat" or not text.strip()
