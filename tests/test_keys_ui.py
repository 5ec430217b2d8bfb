"""Keys that move between panes and out of boxes, at 80x24 (issue 15, points 1, 7 and 9): Esc leaves a text box,
`i` returns, alt+digit (as terminals send it) switches panes while typing, a pane comes back showing its main view,
Esc closes the Keys panel, F1 opens it, `q` quits and asks first while work runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, HelpPanel, Input, TabbedContent

from tests.support.corpora import write_notes_folder
from tests.support.fake_chat import Script, services_with_fake
from tests.support.fake_embedder import services_with_fake_embedders
from tests.support.hub_server import LoopbackHub
from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.catalog import CatalogPane
from workbench.ui.screens.catalog_details import DetailsScreen
from workbench.ui.screens.chat import ChatPane
from workbench.ui.screens.compare import ComparePane
from workbench.ui.screens.dialogs import ConfirmScreen, PromptScreen
from workbench.ui.screens.embeddings import EmbeddingsPane
from workbench.ui.terminal_keys import WorkbenchParser
from workbench.ui.widgets.chat_input import ChatInput

SIZE = (80, 24)
# What terminals send for alt+1 … alt+6: xterm, tmux, GNOME Terminal and macOS terminals with Option as Meta send
# ESC+digit; xterm with modifyOtherKeys sends CSI 27;3;code~; kitty-protocol terminals send CSI code;3u.
ALT_DIGIT_BYTES = {
    **{f"\x1b{n}": f"alt+{n}" for n in "123456"},
    **{f"\x1b[27;3;{ord(n)}~": f"alt+{n}" for n in "123456"},
    **{f"\x1b[{ord(n)};3u": f"alt+{n}" for n in "123456"},
}


def parse(data: str) -> list[tuple[str, str | None]]:
    parser = WorkbenchParser()
    events = [*parser.feed(data), *parser.feed("")]
    return [(event.key, event.character) for event in events]  # type: ignore[attr-defined]


def plain_app(paths: AppPaths) -> WorkbenchApp:
    return WorkbenchApp(build_services(paths), import_defaults=False, scan_cache=False)


async def go_to(pilot: Pilot, key: str, pane: type) -> None:
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, pane), f"{pane.__name__} on {key}")


async def send_bytes(pilot: Pilot, data: str) -> None:
    """Bytes as the terminal sends them, through the parser the app's driver uses, to the app."""
    parser = WorkbenchParser()
    for event in [*parser.feed(data), *parser.feed("")]:
        pilot.app.post_message(event)
    await pilot.pause()


@pytest.mark.parametrize("data", sorted(ALT_DIGIT_BYTES))
def test_the_terminal_bytes_of_alt_digit_parse_to_alt_digit(data: str) -> None:
    assert parse(data) == [(ALT_DIGIT_BYTES[data], None)]


def test_characters_typed_directly_stay_characters() -> None:
    """A "£" from a UK keyboard or a "¡" from macOS Option without Meta is text, not a pane key."""
    assert parse("£") == [("pound_sign", "£")]
    assert parse("¡") == [("inverted_exclamation_mark", "¡")]
    assert parse("\x1bx") == [("alt+x", "x")]
    assert parse("\x1b") == [("escape", "\x1b")]
    assert parse("a\x1b2b") == [("a", "a"), ("alt+2", None), ("b", "b")]


async def test_alt_digit_bytes_switch_panes_from_inside_a_text_box(app_paths: AppPaths) -> None:
    app = plain_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await go_to(pilot, "3", ChatPane)
        box = app.screen.query_one(ChatInput)
        box.focus()
        await pilot.press(*"hi")
        await send_bytes(pilot, "\x1b4")
        await wait_for(pilot, lambda: isinstance(app.screen, ComparePane), "Compare on ESC 4")
        assert box.text == "hi"  # not "hi¢"
        compare_box = app.screen.query_one(ChatInput)
        assert app.focused is compare_box
        await send_bytes(pilot, "\x1b[27;3;51~")  # xterm modifyOtherKeys alt+3
        await wait_for(pilot, lambda: isinstance(app.screen, ChatPane), "Chat on CSI 27;3;51~")
        assert compare_box.text == ""
        await send_bytes(pilot, "\x1b1")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane), "Catalog on ESC 1")


async def test_esc_leaves_the_box_digits_switch_and_i_returns(app_paths: AppPaths) -> None:
    app = plain_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await go_to(pilot, "3", ChatPane)
        chat = app.screen
        box = chat.query_one(ChatInput)
        box.focus()
        await pilot.press(*"360M", "escape")
        assert app.focused is chat.query_one("#transcript") and box.text == "360M"
        await go_to(pilot, "4", ComparePane)
        compare = app.screen
        assert app.focused is compare.query_one(ChatInput)
        await pilot.press(*"x", "escape")
        assert app.focused is compare.query_one("#compare-sides")
        await pilot.press("i")
        assert app.focused is compare.query_one(ChatInput) and compare.query_one(ChatInput).text == "x"
        await go_to(pilot, "alt+3", ChatPane)
        await pilot.press("i")
        assert app.focused is box and box.text == "360M"

        # typed fast, as one read from the terminal: the key after Esc or i finds the focus already moved
        await send_bytes(pilot, "\x1b")
        await send_bytes(pilot, "ix")
        await wait_for(pilot, lambda: box.text == "360Mx", "the x typed right after i")
        await send_bytes(pilot, "\x1b")  # a lone Esc: the parser waits to see whether a sequence follows
        await wait_for(pilot, lambda: app.focused is chat.query_one("#transcript"), "the box left by Esc")

        await pilot.press("escape")
        await go_to(pilot, "1", CatalogPane)
        catalog = app.screen
        await pilot.press("slash", *"qwen")
        assert app.focused is catalog.query_one("#catalog-search", Input)
        await pilot.press("escape")
        assert app.focused is catalog.query_one("#catalog-table", DataTable)
        await pilot.press("i")
        assert app.focused is catalog.query_one("#catalog-search", Input)


async def test_esc_leaves_the_box_of_a_chat_that_has_messages(app_paths: AppPaths) -> None:
    """With messages the transcript hands the focus to one of them; Esc must still leave the box (it once did
    nothing there: the transcript itself takes no focus then)."""
    services, _backend = services_with_fake(app_paths, Script())
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await go_to(pilot, "3", ChatPane)
        chat = app.screen
        assert isinstance(chat, ChatPane)
        box = chat.query_one(ChatInput)
        box.focus()
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: not chat.answering and bool(chat.transcript.views()), "the answer to end")
        await pilot.press(*"more", "escape")
        await wait_for(pilot, lambda: app.focused is not box, "the box left by Esc")
        assert app.focused in chat.transcript.views()
        await go_to(pilot, "4", ComparePane)
        await go_to(pilot, "alt+3", ChatPane)  # Compare's box has the focus on arrival: digits type there
        await pilot.press("i")
        assert app.focused is box and box.text == "more"


async def test_q_asks_while_an_answer_streams_and_quits_at_once_otherwise(app_paths: AppPaths) -> None:
    hold = threading.Event()
    services, backend = services_with_fake(app_paths, Script(hold=hold))
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await go_to(pilot, "3", ChatPane)
            chat = app.screen
            assert isinstance(chat, ChatPane)
            chat.query_one(ChatInput).focus()
            await pilot.press(*"hello", "enter")
            await wait_for(pilot, lambda: backend.started.is_set() and chat.answering, "the answer to start")
            await pilot.press("q")  # in the box: text
            assert chat.query_one(ChatInput).text == "q"
            await go_to(pilot, "alt+1", CatalogPane)
            await pilot.press("q")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the quit question")
            assert "answer" in app.screen.question  # type: ignore[attr-defined]
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane), "the question answered no")
            assert app.is_running and chat.answering
            assert any("Still running" in n.message for n in app._notifications)
            hold.set()
            await wait_for(pilot, lambda: not chat.answering, "the answer to end")
            await pilot.press("q")
            await wait_for(pilot, lambda: not app.is_running, "the app to quit")
    finally:
        hold.set()


async def test_esc_while_an_answer_streams_stops_it(app_paths: AppPaths) -> None:
    hold = threading.Event()
    services, backend = services_with_fake(app_paths, Script(hold=hold))
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await go_to(pilot, "3", ChatPane)
            chat = app.screen
            assert isinstance(chat, ChatPane)
            box = chat.query_one(ChatInput)
            box.focus()
            await pilot.press(*"hello", "enter")
            await wait_for(pilot, lambda: backend.started.is_set() and chat.answering, "the answer to start")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not chat.answering, "the answer stopped by Esc")
            assert app.focused is box  # Esc stopped the answer; it did not also leave the box
    finally:
        hold.set()


async def test_embeddings_main_view_has_focus_after_a_corpus_opens(app_paths: AppPaths, tmp_path: Path) -> None:
    notes = write_notes_folder(tmp_path / "notes")
    services, _backend = services_with_fake_embedders(app_paths)
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await go_to(pilot, "5", EmbeddingsPane)
        pane = app.screen
        assert isinstance(pane, EmbeddingsPane)
        assert app.focused is pane.query_one("#query")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the corpus dialog")
        app.screen.query_one(Input).value = str(notes)
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.vectors_a is not None and app.screen is pane, "the corpus embedded")
        await wait_for(pilot, lambda: app.focused is pane.query_one("#results"), "the results focused")
        await pilot.press("m")
        await wait_for(pilot, lambda: pane.query_one(TabbedContent).active == "map-tab", "the Map tab on m")
        assert pane.query_one("#query", Input).value == ""
        await pilot.press("i")  # back to the search box, on its tab
        await wait_for(pilot, lambda: app.focused is pane.query_one("#query"), "the search box on i")


async def test_the_details_view_is_gone_after_switching_away_and_back(app_paths: AppPaths,
                                                                        online_hub: LoopbackHub) -> None:  # fmt: skip
    app = WorkbenchApp(build_services(app_paths, hub_endpoint=online_hub.url), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane), "the Catalog")
        catalog = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details view")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.current_mode == "downloads", "the Downloads pane")
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen is catalog, "the Catalog's list, not its details")
        assert not [s for s in app.screen_stack if isinstance(s, DetailsScreen)]
        assert app.focused is catalog.query_one("#catalog-table")


async def test_esc_closes_the_keys_panel_from_the_palette_and_f1_opens_it(app_paths: AppPaths) -> None:
    app = plain_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane), "the Catalog")
        catalog = app.screen
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen is not catalog, "the command palette")
        await pilot.press(*"keys")
        await pilot.pause(0.3)  # the palette gathers its matches
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(catalog.query(HelpPanel)), "the Keys panel")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not catalog.query(HelpPanel), "the Keys panel closed by Esc")
        assert app.screen is catalog

        await pilot.press("f1")
        await wait_for(pilot, lambda: bool(catalog.query(HelpPanel)), "the Keys panel on F1")
        await pilot.press("f1")
        await wait_for(pilot, lambda: not catalog.query(HelpPanel), "the Keys panel closed by F1")
        await pilot.press("f1")
        await wait_for(pilot, lambda: bool(catalog.query(HelpPanel)), "the Keys panel on F1 again")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.current_mode == "downloads", "the Downloads pane")
        await go_to(pilot, "1", CatalogPane)
        assert not catalog.query(HelpPanel)  # going to a pane shows its main view


async def test_q_quits_at_once_when_nothing_runs(app_paths: AppPaths) -> None:
    app = plain_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane), "the Catalog")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to quit")
