"""The key footer: one line drawn from the screen's bindings, with the pane's keys in the first frame; redrawn,
not recomposed, when the keys change; a click on a key presses it."""

from __future__ import annotations

from textual.widget import Widget

from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.widgets.footer import KeyFooter

SIZE = (80, 24)


def footer_text(footer: KeyFooter) -> str:
    return footer.render().plain


async def test_the_footer_is_one_widget_with_the_panes_keys_in_the_first_frame(app_paths: AppPaths) -> None:
    first_frame: list[str] = []
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    display = app._display

    def display_and_remember(screen, renderable):  # type: ignore[no-untyped-def]
        display(screen, renderable)
        if renderable is not None and not first_frame:
            first_frame.append(footer_text(screen.query_one(KeyFooter)))

    app._display = display_and_remember  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: first_frame, "the first frame")
        assert "/ Search" in first_frame[0] and "d Download" in first_frame[0]
        footer = app.screen.query_one(KeyFooter)
        assert list(footer.query(Widget)) == []  # no widget per key: Textual's Footer made ~15 of them, each styled
        assert footer_text(footer).rstrip().endswith("▏^p palette")  # the palette's key keeps its place on the right
        assert len(footer_text(footer)) == SIZE[0]
        await pilot.press("slash")  # the search box takes the letter keys: the footer shows fewer
        await wait_for(pilot, lambda: "Download" not in footer_text(footer), "the footer without the letter keys")
        assert footer.parent is app.screen  # the same widget, redrawn


async def test_the_footer_shows_the_focused_widgets_keys_when_they_change(app_paths: AppPaths) -> None:
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")  # Chat: its text box adds "Send" and "Newline" once it has focus
        await wait_for(pilot, lambda: app.current_mode == "chat", "the chat pane")
        footer = app.screen.query_one(KeyFooter)
        await wait_for(pilot, lambda: "Send" in footer_text(footer), "the text box's keys in the footer")
        assert "Regen" in footer_text(footer)


async def test_a_click_on_a_key_in_the_footer_presses_it(app_paths: AppPaths) -> None:
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        footer = app.screen.query_one(KeyFooter)
        await wait_for(pilot, lambda: "Panes" in footer_text(footer) or "Download" in footer_text(footer), "keys")
        text = footer_text(footer)
        await pilot.click(KeyFooter, offset=(text.index("/ Search") + 1, 0))  # the "/" key: into the search box
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "catalog-search", "search box")
