"""Pilot tests of the chat's modals: confirm/prompt dialogs, the history view and the settings screen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TextArea

from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.chat.model_sampling import FROM_MODEL_FILE
from workbench.core.chat.sampling import SamplingChoice, SamplingLayer
from workbench.core.settings.config import load_settings
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import Conversation
from workbench.core.storage.store import Store
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.chat_history import HistoryScreen, slug, when
from workbench.ui.screens.chat_settings import ChatSettings, SettingsScreen
from workbench.ui.screens.dialogs import ConfirmScreen, PromptScreen

SIZE = (80, 24)


def make_app(paths: AppPaths) -> WorkbenchApp:
    return WorkbenchApp(build_services(paths), import_defaults=False)


def notices(app: WorkbenchApp) -> str:
    return "\n".join(n.message for n in app._notifications)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "t.sqlite3")
    yield store
    store.close()


def add_chats(store: Store, *titles: str) -> list[Conversation]:
    chats = []
    for title in titles:
        chat = store.chats.create_conversation(title, model_id="tiny-small")
        store.chats.add_message(chat.id, "user", f"hello from {title}")
        store.chats.add_message(chat.id, "assistant", "hi")
        chats.append(chat)
    return chats


async def open_history(
    app: WorkbenchApp, pilot: Pilot, store: Store, paths: AppPaths
) -> tuple[HistoryScreen, list[int | None]]:
    results: list[int | None] = []
    screen = HistoryScreen(store, paths)
    await app.push_screen(screen, results.append)
    await wait_for(pilot, lambda: app.screen is screen, "the history")
    return screen, results


def titles(screen: HistoryScreen) -> list[str]:
    return [conversation.title for conversation in screen.rows]


# --- small helpers ---------------------------------------------------------------------------------


def test_slug_is_lowercase_ascii_and_short() -> None:
    assert slug("Café: what's 2+2?") == "cafe-what-s-2-2"
    assert slug("!!!") == "chat"
    assert len(slug("word " * 30)) <= 40 and not slug("word " * 30).endswith("-")


def test_when_is_relative_then_a_date() -> None:
    now = 1_700_000_000.0
    assert when(now - 5, now) == "just now"
    assert when(now - 300, now) == "5m ago"
    assert when(now - 3 * 3600, now) == "3h ago"
    assert when(now - 2 * 86400, now) == "2d ago"
    assert when(now - 30 * 86400, now).count("-") == 2


# --- dialogs ---------------------------------------------------------------------------------------


async def test_confirm_and_prompt_dialogs(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    results: list[object] = []
    async with app.run_test(size=SIZE) as pilot:
        for keys, expected in ((["y"], True), (["enter"], True), (["n"], False), (["escape"], False)):
            await app.push_screen(ConfirmScreen("Delete it?"), results.append)
            await pilot.press(*keys)
            await wait_for(pilot, lambda: results, f"the answer to {keys}")
            assert results.pop() is expected
        await app.push_screen(PromptScreen("Name?", "old"), results.append)
        await pilot.press(*"  new name ", "enter")
        await wait_for(pilot, lambda: results, "the name")
        assert results.pop() == "new name"
        for keys in (["ctrl+u", "space", "enter"], ["escape"]):
            await app.push_screen(PromptScreen("Name?", "old"), results.append)
            await pilot.press(*keys)
            await wait_for(pilot, lambda: results, f"the answer to {keys}")
            assert results.pop() is None


# --- history ---------------------------------------------------------------------------------------


async def test_history_lists_newest_first_and_enter_opens(app_paths: AppPaths, store: Store) -> None:
    alpha, beta, _gamma = add_chats(store, "alpha", "beta", "gamma")
    store.chats.add_message(alpha.id, "user", "again")  # alpha is now the most recently updated
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, results = await open_history(app, pilot, store, app_paths)
        assert titles(screen) == ["alpha", "gamma", "beta"]
        assert screen.table.get_row_at(0)[:2] == ["alpha", "3"]
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: results, "the chosen chat")
        assert results == [beta.id]


async def test_history_search_filters_as_you_type(app_paths: AppPaths, store: Store) -> None:
    add_chats(store, "Paris trip", "Rust lifetimes", "Packing list for Paris")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, results = await open_history(app, pilot, store, app_paths)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"pari")
        await wait_for(pilot, lambda: titles(screen) == ["Packing list for Paris", "Paris trip"], "two matches")
        await pilot.press(*"sx")
        await wait_for(pilot, lambda: titles(screen) == [], "no match")
        hint = screen.query_one("#history-empty", Static)
        assert hint.display and "No chat title contains “parisx”" in str(hint.render())
        await pilot.press("backspace")
        await wait_for(pilot, lambda: len(titles(screen)) == 2, "the two matches again")
        await pilot.press("down", "down", "enter")  # down leaves the search box, then moves in the list
        await wait_for(pilot, lambda: results, "the chosen chat")
        assert results == [store.chats.list_conversations(search="paris")[1].id]


async def test_history_empty_shows_a_hint(app_paths: AppPaths, store: Store) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, results = await open_history(app, pilot, store, app_paths)
        assert "No chats yet" in str(screen.query_one("#history-empty", Static).render())
        await pilot.press("enter", "r", "d", "m")  # nothing to act on: nothing happens (no dialog, no result)
        assert app.screen is screen and results == []
        await pilot.press("escape")
        await wait_for(pilot, lambda: results, "the history to close")
        assert results == [None]


async def test_history_rename_keeps_the_cursor_on_the_chat(app_paths: AppPaths, store: Store) -> None:
    _alpha, beta, _gamma = add_chats(store, "alpha", "beta", "gamma")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, _results = await open_history(app, pilot, store, app_paths)
        await pilot.press("down", "r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the rename dialog")
        await pilot.press(*"Beta renamed", "enter")
        await wait_for(pilot, lambda: app.screen is screen and "Beta renamed" in titles(screen), "the new title")
        renamed = store.chats.get_conversation(beta.id)
        assert renamed is not None and renamed.title == "Beta renamed"
        assert "Beta renamed" in titles(screen)
        selected = screen.selected()
        assert selected is not None and selected.id == beta.id


async def test_history_delete_asks_first(app_paths: AppPaths, store: Store) -> None:
    alpha, beta, gamma = add_chats(store, "alpha", "beta", "gamma")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, _results = await open_history(app, pilot, store, app_paths)
        await pilot.press("down", "d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen, "the history again")
        assert store.chats.get_conversation(beta.id) is not None
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question again")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is screen and len(titles(screen)) == 2, "the chat to go")
        assert store.chats.get_conversation(beta.id) is None
        assert titles(screen) == ["gamma", "alpha"]
        selected = screen.selected()
        assert selected is not None and selected.id == alpha.id  # the row that took its place
        assert store.chats.messages(beta.id) == []
        assert store.chats.get_conversation(gamma.id) is not None


async def test_history_exports_markdown_and_json(app_paths: AppPaths, store: Store) -> None:
    (chat,) = add_chats(store, "Why is the sky blue?")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await open_history(app, pilot, store, app_paths)
        await pilot.press("m", "j")
        markdown = app_paths.data_dir / "exports" / f"why-is-the-sky-blue-{chat.id}.md"
        await wait_for(pilot, lambda: markdown.is_file() and markdown.with_suffix(".json").is_file(), "both exports")
        assert "# Why is the sky blue?" in markdown.read_text(encoding="utf-8")
        data = json.loads(markdown.with_suffix(".json").read_text(encoding="utf-8"))
        assert data["conversation"]["title"] == "Why is the sky blue?"
        assert str(markdown) in notices(app)


async def test_history_export_failure_is_a_notification(app_paths: AppPaths, store: Store) -> None:
    add_chats(store, "alpha")
    app_paths.data_dir.mkdir(parents=True)
    (app_paths.data_dir / "exports").write_text("a file where the folder should be")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, _results = await open_history(app, pilot, store, app_paths)
        await pilot.press("m")
        await wait_for(pilot, lambda: "Could not write" in notices(app), "the failure notice")
        assert app.screen is screen


async def test_history_escape_returns_none(app_paths: AppPaths, store: Store) -> None:
    add_chats(store, "alpha")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        _screen, results = await open_history(app, pilot, store, app_paths)
        await pilot.press("escape")
        await wait_for(pilot, lambda: results, "the history to close")
        assert results == [None]


# --- settings --------------------------------------------------------------------------------------


async def open_settings(
    app: WorkbenchApp, pilot: Pilot, current: ChatSettings | None = None, model: SamplingLayer | None = None
) -> tuple[SettingsScreen, list[ChatSettings | None]]:
    results: list[ChatSettings | None] = []
    screen = SettingsScreen(app.services, current or ChatSettings("", SamplingChoice()), model)
    await app.push_screen(screen, results.append)
    await wait_for(pilot, lambda: app.screen is screen and screen.query("#seed-source"), "the settings screen")
    return screen, results


async def replace_text(pilot: Pilot, widget: Input | TextArea, text: str) -> None:
    widget.focus()
    await wait_for(pilot, lambda: pilot.app.focused is widget, f"focus on #{widget.id}")
    await pilot.press("ctrl+shift+a" if isinstance(widget, Input) else "f7", "backspace", *text)


def source(screen: SettingsScreen, name: str) -> str:
    return str(screen.query_one(f"#{name}-source", Static).render())


async def test_settings_preset_then_edit_then_apply(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, results = await open_settings(app, pilot)
        select = screen.query_one("#preset", Select)
        assert select.value == Select.NULL and app.focused is select  # no preset: the model's defaults
        await pilot.press("enter", "down", "down", "enter")  # none -> balanced -> precise
        await wait_for(pilot, lambda: select.value == "precise", "the precise preset")
        await wait_for(pilot, lambda: screen.query_one("#temperature", Input).value == "0.2", "its temperature")
        assert screen.query_one("#top_p", Input).value == "0.9"
        await replace_text(pilot, screen.query_one("#max_tokens", Input), "64")
        await replace_text(pilot, screen.query_one("#system-prompt", TextArea), "Answer in one line.")
        await wait_for(pilot, lambda: screen.query_one("#max_tokens", Input).value == "64"
                       and screen.query_one("#system-prompt", TextArea).text == "Answer in one line.", "the edits")
        assert select.value == "precise"  # the preset still gives the fields you did not edit
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: results, "the dialog to close")
        assert results == [ChatSettings("Answer in one line.", SamplingChoice("precise", {"max_tokens": 64}))]


async def test_settings_show_where_each_value_comes_from(app_paths: AppPaths) -> None:
    model = SamplingLayer(FROM_MODEL_FILE, {"temperature": 0.2, "top_p": 0.9})
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        current = ChatSettings("", SamplingChoice(None, {"max_tokens": 64}))
        screen, results = await open_settings(app, pilot, current, model)
        assert screen.query_one("#temperature", Input).value == "0.2"
        assert source(screen, "temperature") == "from model (generation_config.json)"
        assert source(screen, "top_p") == "from model (generation_config.json)"
        assert source(screen, "max_tokens") == "from you" and screen.query_one("#max_tokens", Input).value == "64"
        assert source(screen, "min_p") == "from built-in" and source(screen, "seed") == "from built-in"
        for name in ("temperature", "seed"):  # the longest label fits its column at 80 columns
            widget = screen.query_one(f"#{name}-source", Static)
            assert widget.region.width >= len(source(screen, name))
        await pilot.press("enter", "down", "down", "down", "enter")  # none -> balanced -> precise -> creative
        await wait_for(pilot, lambda: source(screen, "temperature") == "from preset creative", "the preset's values")
        assert screen.query_one("#temperature", Input).value == "1"
        assert source(screen, "min_p") == "from preset creative"
        assert source(screen, "max_tokens") == "from built-in"  # a preset choice drops your own values
        await replace_text(pilot, screen.query_one("#top_k", Input), "40")
        await wait_for(pilot, lambda: source(screen, "top_k") == "from you", "top_k to be yours")
        await replace_text(pilot, screen.query_one("#min_p", Input), "0.05")  # typed, but the preset's value
        await wait_for(pilot, lambda: screen.query_one("#min_p", Input).value == "0.05", "min_p typed")
        assert source(screen, "min_p") == "from preset creative"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: results, "the dialog to close")
        assert results == [ChatSettings("", SamplingChoice("creative", {"top_k": 40}))]


async def test_settings_bad_value_keeps_the_screen_open(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, results = await open_settings(app, pilot)
        temperature = screen.query_one("#temperature", Input)
        await replace_text(pilot, temperature, "-1")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "temperature: expected a number >= 0" in notices(app), "the refusal")
        assert app.screen is screen and results == []
        assert temperature.has_class("-invalid") and screen.query_one("#temperature-hint").has_class("-error")
        assert app.focused is temperature
        await replace_text(pilot, temperature, "0.5")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: results, "the dialog to close")
        assert results == [ChatSettings("", SamplingChoice(None, {"temperature": 0.5}))]


async def test_settings_blank_seed_is_random_and_escape_cancels(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        current = ChatSettings("Be brief.", SamplingChoice(None, {"seed": 7}))
        screen, results = await open_settings(app, pilot, current)
        seed = screen.query_one("#seed", Input)
        assert seed.value == "7" and screen.query_one("#preset", Select).value == Select.NULL
        await replace_text(pilot, seed, "")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: results, "the dialog to close")
        assert results == [ChatSettings("Be brief.", SamplingChoice())]
        _screen, results = await open_settings(app, pilot, current)
        await pilot.press("escape")
        await wait_for(pilot, lambda: results, "the dialog to close")
        assert results == [None]


async def test_settings_save_as_preset(app_paths: AppPaths) -> None:
    model = SamplingLayer(FROM_MODEL_FILE, {"top_p": 0.9})
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        screen, results = await open_settings(app, pilot, model=model)
        await replace_text(pilot, screen.query_one("#temperature", Input), "0.3")
        await replace_text(pilot, screen.query_one("#max_tokens", Input), "1024")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the name prompt")
        await pilot.press(*"bad name", "enter")  # a space is not allowed: nothing is written
        await wait_for(pilot, lambda: "preset name" in notices(app) and app.screen is screen, "the refusal")
        assert not app_paths.config_file.exists()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the name prompt again")
        await pilot.press(*"mine", "enter")
        await wait_for(pilot, lambda: "mine" in app.services.settings.chat_presets, "the preset saved")
        wanted = {"temperature": 0.3, "max_tokens": 1024}  # yours only: the model's top_p stays the model's
        settings, issues = load_settings(app_paths.config_file)
        assert not issues and settings.chat_presets == {"mine": wanted}
        assert app.services.settings.chat_presets["mine"] == wanted
        await wait_for(pilot, lambda: source(screen, "temperature") == "from preset mine", "the preset's sources")
        assert screen.query_one("#preset", Select).value == "mine"
        assert source(screen, "top_p") == "from model (generation_config.json)"
        assert app.screen is screen and results == []


async def test_the_chat_pane_samples_with_the_models_defaults_and_says_so(app_paths: AppPaths, tmp_path: Path) -> None:
    from tests.support.fake_chat import KIND, services_with_fake
    from tests.test_chat_ui import open_chat, send
    from workbench.core.models.spec import ModelSpec

    folder = tmp_path / "tuned"
    folder.mkdir()
    (folder / "generation_config.json").write_text(json.dumps({"temperature": 0.25, "max_new_tokens": 2}))
    services, backend = services_with_fake(app_paths)
    services.manager.register(ModelSpec("tuned", "Tuned", KIND, folder))
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        chat.query_one("#model-select", Select).value = "tuned"
        status = chat.query_one("#chat-status", Static)
        await wait_for(pilot, lambda: "T 0.25 · max 2" in str(status.render()), "the model's values in the status")
        chat.query_one("#prompt").focus()
        await send(pilot, "hi")
        await wait_for(pilot, lambda: backend.sampling, "the answer to start")
        assert (backend.sampling[-1].temperature, backend.sampling[-1].max_tokens) == (0.25, 2)
        await wait_for(pilot, lambda: chat.run is None, "the answer to end")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings")
        await wait_for(pilot, lambda: app.screen.query("#temperature-source"), "its fields")
        assert source(app.screen, "temperature") == "from model (generation_config.json)"  # type: ignore[arg-type]
        assert source(app.screen, "top_p") == "from built-in"  # type: ignore[arg-type]
