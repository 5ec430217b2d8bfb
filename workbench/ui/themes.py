"""Textual themes read from TOML files.

One file describes one theme::

    name = "workbench-dark"        # required
    dark = true                    # optional, default true
    primary = "#2AB7AE"            # required
    secondary = "#..."             # optional; so are accent, foreground, background, surface,
                                   # panel, success, warning, error, boost
    luminosity_spread = 0.15       # optional float, as textual.theme.Theme
    text_alpha = 0.95              # optional float in [0, 1]
    [variables]                    # optional: Textual design variables
    "footer-key-foreground" = "#2AB7AE"

Colours are anything ``textual.color.Color.parse`` reads (``#RGB``, ``#RRGGBB``, ``rgb(...)``,
``hsl(...)``, CSS names, ``ansi_*``). A variable may add an alpha (``"#2AB7AE 30%"``) or be ``auto``;
a variable whose name ends in ``-style`` holds text-style words (``bold``, ``underline``, ``none``...).

Shipped themes live in ``themes/`` (``workbench.resources.shipped_path("themes")``); users add their own
in a second folder, and a user theme with the same name replaces the shipped one.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.css.constants import VALID_STYLE_FLAGS
from textual.theme import Theme

__all__ = ["FALLBACK_THEME", "ThemeFileError", "load_theme_dirs", "load_theme_file"]

FALLBACK_THEME = "textual-dark"
"""A built-in Textual theme that always exists: used when the configured theme is unknown or broken."""

_COLOUR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
    "boost",
)
_FLOAT_KEYS = ("luminosity_spread", "text_alpha")
_KNOWN_KEYS = frozenset({"name", "dark", "variables", *_COLOUR_KEYS, *_FLOAT_KEYS})
_VARIABLE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")
_ALPHA_SUFFIX = re.compile(r"^(?P<colour>.*?)\s+(?P<alpha>\d+(?:\.\d+)?)%$")


class ThemeFileError(Exception):
    """A theme file that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _type_name(value: object) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        dict: "a table",
        list: "an array",
    }.get(type(value), type(value).__name__)


def _check_colour(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ThemeFileError(path, f"{where} must be a colour string, not {_type_name(value)}")
    try:
        Color.parse(value.strip())
    except ColorParseError as exc:
        raise ThemeFileError(path, f"{where} = {value!r} is not a colour ({exc})") from None
    return value.strip()


def _check_variable(path: Path, name: str, value: object) -> str:
    where = f"variables.{name}"
    if not _VARIABLE_NAME.match(name):
        raise ThemeFileError(path, f"variable name {name!r} is not a valid CSS variable name")
    if not isinstance(value, str):
        raise ThemeFileError(path, f"{where} must be a string, not {_type_name(value)}")
    text = value.strip()
    if not text:
        raise ThemeFileError(path, f"{where} is empty")
    if name.endswith("-style"):
        bad = [word for word in text.split() if word not in VALID_STYLE_FLAGS]
        if bad:
            valid = ", ".join(sorted(VALID_STYLE_FLAGS))
            raise ThemeFileError(path, f"{where} = {value!r}: unknown style {bad[0]!r} (use {valid})")
        return text
    colour = text
    match = _ALPHA_SUFFIX.match(text)
    if match:
        colour = match["colour"]
        if float(match["alpha"]) > 100:
            raise ThemeFileError(path, f"{where} = {value!r}: alpha above 100%")
    if colour == "auto":
        return text
    try:
        Color.parse(colour)
    except ColorParseError as exc:
        raise ThemeFileError(path, f"{where} = {value!r} is not a colour ({exc})") from None
    return text


def _theme_from_data(path: Path, data: dict[str, Any]) -> Theme:
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(_KNOWN_KEYS))
        raise ThemeFileError(path, f"unknown key {unknown[0]!r} (known keys: {known})")

    if "name" not in data:
        raise ThemeFileError(path, "missing required key 'name'")
    name = data["name"]
    if not isinstance(name, str):
        raise ThemeFileError(path, f"'name' must be a string, not {_type_name(name)}")
    name = name.strip()
    if not name:
        raise ThemeFileError(path, "'name' is empty")

    if "primary" not in data:
        hint = ""
        if isinstance(data.get("variables"), dict) and "primary" in data["variables"]:
            hint = " (it is inside [variables]: move it above that table)"
        raise ThemeFileError(path, f"missing required key 'primary'{hint}")

    kwargs: dict[str, Any] = {"name": name}
    for key in _COLOUR_KEYS:
        if key in data:
            kwargs[key] = _check_colour(path, key, data[key])

    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeFileError(path, f"'dark' must be true or false, not {_type_name(dark)}")
    kwargs["dark"] = dark

    for key in _FLOAT_KEYS:
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ThemeFileError(path, f"{key!r} must be a number, not {_type_name(value)}")
        if key == "text_alpha" and not 0.0 <= value <= 1.0:
            raise ThemeFileError(path, f"'text_alpha' = {value} must be between 0 and 1")
        if key == "luminosity_spread" and not 0.0 <= value <= 1.0:
            raise ThemeFileError(path, f"'luminosity_spread' = {value} must be between 0 and 1")
        kwargs[key] = float(value)

    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ThemeFileError(path, f"'variables' must be a table, not {_type_name(variables)}")
    kwargs["variables"] = {var: _check_variable(path, var, value) for var, value in variables.items()}

    return Theme(**kwargs)


def load_theme_file(path: Path) -> Theme:
    """Read and validate one theme file; raises `ThemeFileError` naming the file and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ThemeFileError(path, f"TOML syntax error: {exc}") from None
    except OSError as exc:
        raise ThemeFileError(path, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ThemeFileError(path, f"not UTF-8 text: {exc}") from None
    return _theme_from_data(path, data)


def load_theme_dirs(dirs: Iterable[Path]) -> tuple[list[Theme], list[str]]:
    """Load every ``*.toml`` in each existing folder, in sorted order.

    A later folder's theme replaces an earlier one of the same name (user themes override shipped
    ones); within a folder, a later file wins too. Broken files never raise: each gives one
    human-readable error string, and the other themes still load. Themes come back in the order
    their names were first seen.
    """
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            if not path.is_file():
                continue
            try:
                theme = load_theme_file(path)
            except ThemeFileError as exc:
                errors.append(str(exc))
                continue
            themes[theme.name] = theme
    return list(themes.values()), errors
