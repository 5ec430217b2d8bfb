"""Tab completion of a typed path, as a shell does it: the longest common start of the entries that match, "/"
after a directory, "~" understood (and kept as typed), and the candidates when more than one match."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PathCompletion:
    text: str  # what the box holds after Tab (the typed text itself when nothing could be added)
    candidates: list[str] = field(default_factory=list)  # entry names ("notes/" for a folder) when several match
    problem: str | None = None  # why nothing matched: "no such folder", "cannot read ~/secret/", "nothing matches"


def _typable(name: str) -> bool:
    """A name a person could type into a one-line box: no control characters, and valid text (os.scandir hands
    undecodable bytes over as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(c) == "Cc" for c in name)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links: a link to a folder completes as a folder
    except OSError:
        return False


def _common_start(names: list[str]) -> str:
    first, last = min(names), max(names)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:size]


def complete_path(typed: str, cwd: Path | None = None) -> PathCompletion:
    """Complete the last part of ``typed``; a relative path is taken from ``cwd`` (the working folder)."""
    folder_text, slash, start = typed.rpartition("/")
    folder_text += slash  # "" when nothing but a name was typed
    if not folder_text and start == "~":
        return PathCompletion("~/")
    folder = Path(os.path.expanduser(folder_text or "."))
    if not folder.is_absolute():
        folder = (cwd if cwd is not None else Path.cwd()) / folder
    try:
        with os.scandir(folder) as entries:
            found = [(e.name, _is_dir(e)) for e in entries if _typable(e.name)]
    except FileNotFoundError:
        return PathCompletion(typed, problem=f"no such folder: {folder_text or '.'}")
    except NotADirectoryError:
        return PathCompletion(typed, problem=f"not a folder: {folder_text}")
    except OSError as exc:
        return PathCompletion(typed, problem=f"cannot read {folder_text or '.'}: {exc.strerror or exc}")
    if not start.startswith("."):
        found = [(name, is_dir) for name, is_dir in found if not name.startswith(".")]
    matches = [(name, is_dir) for name, is_dir in found if name.startswith(start)]
    if not matches:  # "readme" finds README.md
        matches = [(name, is_dir) for name, is_dir in found if name.lower().startswith(start.lower())]
    if not matches:
        return PathCompletion(typed, problem=f"nothing in {folder_text or '.'} starts with {start!r}")
    if len(matches) == 1:
        name, is_dir = matches[0]
        return PathCompletion(folder_text + name + ("/" if is_dir else ""))
    names = sorted(matches, key=lambda match: match[0].lower())
    common = _common_start([name for name, _ in names])
    if len(common) < len(start):  # matched without case: keep what was typed
        common = start
    return PathCompletion(folder_text + common, [name + ("/" if is_dir else "") for name, is_dir in names])
