"""Reading TOML written by people, and saying where it is wrong: the text and data of a file with its problems as
:class:`ConfigIssue` (file, line, key, message), the line where a key is defined (:func:`locate_key`), keys and
values rendered for messages, and a strict value check. Shared by config.toml (settings) and catalog.toml (the
curated catalog)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNTAX_KEY = "(syntax)"
FILE_KEY = "(file)"
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
KeyPath = Sequence[str | int]


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



# --- finding the line of a key --------------------------------------------------------------------


def format_key(parts: KeyPath) -> str:
    """Render key parts as text: ``memory.budget_gb``, ``keys."pane.chat"``, ``model[3].size_gb``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
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
            match = BARE_KEY.match(rest)
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
