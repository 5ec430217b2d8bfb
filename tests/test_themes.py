"""Themes as TOML files: the shipped ones load, broken ones are reported by name, user themes override."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.color import Color
from textual.theme import BUILTIN_THEMES, Theme

from tests.support.waits import wait_for
from workbench.resources import shipped_path
from workbench.ui.themes import FALLBACK_THEME, ThemeFileError, load_theme_dirs, load_theme_file

SHIPPED = shipped_path("themes")

GOOD = """\
name = "my-theme"
dark = true
primary = "#2AB7AE"
foreground = "#EEEEEE"
background = "#101010"
[variables]
"footer-key-foreground" = "#2AB7AE"
"input-selection-background" = "#2AB7AE 30%"
"block-cursor-text-style" = "bold"
"""


def _relative_luminance(color: Color) -> float:
    """WCAG 2.x relative luminance of an opaque colour."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = color.rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(first: str, second: str) -> float:
    lighter, darker = sorted(
        (_relative_luminance(Color.parse(first)), _relative_luminance(Color.parse(second))), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


def _effective(theme: Theme) -> tuple[str, str]:
    """Foreground and background as Textual will use them (defaults filled in)."""
    colors = theme.to_color_system().generate()
    return colors["foreground"], colors["background"]


def _shipped() -> list[Theme]:
    themes, errors = load_theme_dirs([SHIPPED])
    assert errors == []
    return themes


def test_contrast_ratio_helper_matches_wcag() -> None:
    assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#123456", "#123456") == pytest.approx(1.0)


def test_shipped_themes_load_without_errors() -> None:
    files = sorted(SHIPPED.glob("*.toml"))
    assert len(files) >= 4
    themes = _shipped()
    names = [theme.name for theme in themes]
    assert len(names) == len(files) == len(set(names))
    assert "workbench-dark" in names
    assert any(not theme.dark for theme in themes)
    assert any("high-contrast" in theme.name for theme in themes)
    for theme in themes:
        assert isinstance(theme, Theme)
        assert theme.name.startswith("workbench-")
        theme.to_color_system().generate()  # Textual accepts every colour and variable


def test_shipped_file_names_match_theme_names() -> None:
    for path in SHIPPED.glob("*.toml"):
        assert load_theme_file(path).name == path.stem


def test_default_theme_is_dark_with_teal_primary() -> None:
    theme = load_theme_file(SHIPPED / "workbench-dark.toml")
    assert theme.dark
    hue, _saturation, _lightness = Color.parse(theme.primary).hsl
    assert 150 <= hue * 360 <= 200


def test_high_contrast_theme_really_is_high_contrast() -> None:
    (theme,) = [theme for theme in _shipped() if "high-contrast" in theme.name]
    foreground, background = _effective(theme)
    assert contrast_ratio(foreground, background) >= 7.0
    assert theme.text_alpha == 1.0  # text is not blended towards the background
    # Accent colours used for text on the background stay readable too.
    for colour in (theme.primary, theme.secondary, theme.warning, theme.error, theme.success):
        assert colour is not None
        assert contrast_ratio(colour, background) >= 7.0, colour


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.toml")), ids=lambda path: path.stem)
def test_every_shipped_theme_has_readable_text(path: Path) -> None:
    foreground, background = _effective(load_theme_file(path))
    assert contrast_ratio(foreground, background) >= 4.5


async def test_shipped_themes_register_and_apply_in_an_app() -> None:
    app = App()
    async with app.run_test() as pilot:
        for theme in _shipped():
            app.register_theme(theme)
            app.theme = theme.name
            await wait_for(pilot, lambda: app.theme == theme.name, f"the theme {theme.name}")  # noqa: B023 (awaited)


def test_fallback_theme_is_builtin() -> None:
    assert FALLBACK_THEME in BUILTIN_THEMES


def test_load_theme_file_reads_all_fields(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    theme = load_theme_file(path)
    assert theme.name == "my-theme"
    assert theme.dark is True
    assert theme.primary == "#2AB7AE"
    assert theme.background == "#101010"
    assert theme.secondary is None
    assert theme.variables["input-selection-background"] == "#2AB7AE 30%"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nprimary = "#zzzzzz"\n', "primary"),
        ('name = "x"\nprimary = "#123456"\nbackground = "blurple"\n', "background"),
        ('name = "x"\nprimary = "#123456"\n\nforeground = \n', "line 4"),
        ('name = "x"\n', "missing required key 'primary'"),
        ('name = "x"\n[variables]\nprimary = "#123456"\n', "inside [variables]"),
        ('primary = "#123456"\n', "missing required key 'name'"),
        ('name = "x"\nprimary = 12\n', "primary must be a colour string"),
        ('name = "x"\nprimary = "#123456"\ndark = "yes"\n', "'dark' must be true or false"),
        ('name = "x"\nprimary = "#123456"\nprimery = "#123456"\n', "unknown key 'primery'"),
        ('name = "x"\nprimary = "#123456"\nvariables = "red"\n', "'variables' must be a table"),
        ('name = "x"\nprimary = "#123456"\n[variables]\n"border" = "nope"\n', "variables.border"),
        ('name = "x"\nprimary = "#123456"\n[variables]\n"link-style" = "shiny"\n', "'shiny'"),
        ('name = "x"\nprimary = "#123456"\ntext_alpha = 2\n', "text_alpha"),
    ],
)
def test_broken_theme_file_raises_naming_file_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ThemeFileError) as info:
        load_theme_file(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "bad-colour"\nprimary = "#12345G"\n', "primary"),
        ('name = "bad-syntax"\nprimary = "#123456\n', "line 2"),
        ('name = "no-primary"\n', "primary"),
    ],
    ids=["bad-colour", "syntax-error", "missing-primary"],
)
def test_broken_file_in_dir_is_reported_and_others_still_load(
    tmp_path: Path, text: str, message: str
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "aaa-broken.toml").write_text(text)
    (user / "zzz-good.toml").write_text(GOOD)
    themes, errors = load_theme_dirs([SHIPPED, user])
    assert len(errors) == 1
    assert "aaa-broken.toml" in errors[0]
    assert message in errors[0]
    names = {theme.name for theme in themes}
    assert "my-theme" in names
    assert {"workbench-dark", "workbench-light"} <= names


def test_user_dir_overrides_shipped_theme_by_name(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    # A different file name, the same theme name: the name decides.
    (user / "my-dark.toml").write_text('name = "workbench-dark"\nprimary = "#FF00FF"\n')
    shipped_themes, _ = load_theme_dirs([SHIPPED])
    themes, errors = load_theme_dirs([SHIPPED, user])
    assert errors == []
    assert len(themes) == len(shipped_themes)
    (dark,) = [theme for theme in themes if theme.name == "workbench-dark"]
    assert dark.primary == "#FF00FF"


def test_missing_dirs_and_non_toml_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a theme")
    themes, errors = load_theme_dirs([tmp_path / "does-not-exist", tmp_path])
    assert themes == []
    assert errors == []
