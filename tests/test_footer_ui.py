"""The key footer: composed with its pane (keys in the first frame), again only when the keys it shows change."""

from __future__ import annotations

import pytest
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from tests.support.waits import wait_for
from workbench.core.paths import AppPaths
from workbench.core.services import build_services
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.footer import KeyFooter

SIZE = (80, 24)


def footer_text(footer: Footer) -> str:
    return " ".join(f"{key.key_display} {key.description}" for key in footer.query(FooterKey))


async def settle(footer: Footer) -> None:
    """Let a recompose the footer may have queued (it runs after the next refresh) happen."""
    for _ in range(2):
        await footer.wait_for_refresh()


async def test_the_footer_is_composed_once_at_start_with_its_keys(
    app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    composed: list[bool] = []  # for each compose: whether it had bindings to show
    original = Footer.compose

    def counting(self: Footer):  # type: ignore[no-untyped-def]
        composed.append(self._bindings_ready)
        return original(self)

    monkeypatch.setattr(Footer, "compose", counting)
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        footer = app.screen.query_one(Footer)
        await wait_for(pilot, lambda: "Download" in footer_text(footer), "the catalog's keys in the footer")
        await wait_for(pilot, lambda: app.screen.focused is not None, "the table focused")
        await settle(footer)
        # Textual's Footer composes an empty footer first, then again after each focus change (three times)
        assert composed == [True]
        assert isinstance(footer, KeyFooter)
        assert "/ Search" in footer_text(footer) and "d Download" in footer_text(footer)
        await pilot.press("slash")  # the search box takes the letter keys: the footer shows fewer
        await wait_for(pilot, lambda: "Download" not in footer_text(footer), "the footer without the letter keys")
        assert composed == [True, True]


async def test_the_footer_shows_the_focused_widgets_keys_when_they_change(app_paths: AppPaths) -> None:
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")  # Chat: its text box adds "Send" and "Newline" once it has focus
        await wait_for(pilot, lambda: app.current_mode == "chat", "the chat pane")
        footer = app.screen.query_one(Footer)
        await wait_for(pilot, lambda: "Send" in footer_text(footer), "the text box's keys in the footer")
        assert "Regen" in footer_text(footer)
