"""Pilot tests of the app shell: panes by key and palette, memory strip, themes, broken files, Models view."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.models.spec import ModelState
from workbench.core.settings.config import load_settings
from workbench.core.settings.paths import AppPaths
from workbench.core.settings.write import save_key_binding
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.models import ModelsPane
from workbench.ui.themes import FALLBACK_THEME
from workbench.ui.widgets.memory_strip import MemoryStrip

SIZE = (80, 24)


def make_app(paths: AppPaths) -> WorkbenchApp:
    return WorkbenchApp(build_services(paths), import_defaults=False)


def notices(app: WorkbenchApp) -> list[str]:
    return [n.message for n in app._notifications]


def on_pane(app: WorkbenchApp, mode: str) -> bool:
    return app.current_mode == mode and getattr(app.screen, "MODE", None) == mode


async def test_every_pane_is_reachable_by_its_number_key(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: on_pane(app, "catalog"), "the first pane")
        for key, mode in zip("123456", ["catalog", "downloads", "chat", "compare", "embeddings", "models"],
                             strict=True):  # fmt: skip
            typing = app.current_mode in ("chat", "compare", "embeddings")  # a text box has focus: digits are text
            await pilot.press(f"alt+{key}" if typing else key)
            await wait_for(pilot, lambda: on_pane(app, mode), f"the {mode} pane")  # noqa: B023 (awaited here)
        await pilot.press("ctrl+pagedown")
        await wait_for(pilot, lambda: on_pane(app, "catalog"), "the pane after the last")
        await pilot.press("ctrl+pageup")
        await wait_for(pilot, lambda: on_pane(app, "models"), "the pane before the first")
        await pilot.press("5")
        await wait_for(pilot, lambda: on_pane(app, "embeddings"), "the embeddings pane")
        await wait_for(pilot, lambda: "ctrl+o opens one" in str(app.screen.query_one("#corpus-line").render()),
                       "the corpus hint")  # fmt: skip


async def test_panes_are_reachable_from_the_command_palette(app_paths: AppPaths) -> None:
    from textual.command import CommandList, CommandPalette

    def best_match() -> str:
        results = app.screen.query_one(CommandList)
        option = results.highlighted_option
        return str(option.prompt) if option is not None else ""

    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: on_pane(app, "catalog"), "the first pane")
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
        await pilot.press(*"go to models")
        await wait_for(pilot, lambda: "Go to Models" in best_match(), "'Go to Models' first in the palette")
        await pilot.press("enter")
        await wait_for(pilot, lambda: on_pane(app, "models"), "the Models pane")


async def test_memory_strip_shows_numbers(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "RAM" in str(app.screen.query_one(MemoryStrip).render()), "memory figures")
        text = str(app.screen.query_one(MemoryStrip).render())
        assert "RAM" in text and "budget" in text and "RSS" in text and "MLX" in text
        assert re.search(r"RAM \d+(\.\d)?[MG]/\d+\.\dG", text), text
        assert re.search(r"budget 0/\d+\.\dG", text), text


async def test_theme_switch_is_remembered(app_paths: AppPaths) -> None:
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "workbench-dark"
        app.theme = "workbench-light"
        await wait_for(pilot, lambda: load_settings(app_paths.config_file)[0].theme == "workbench-light",
                       "the theme saved")  # fmt: skip
    settings, issues = load_settings(app_paths.config_file)
    assert settings.theme == "workbench-light" and not issues
    again = make_app(app_paths)
    async with again.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: again.theme == "workbench-light", "the remembered theme")
        assert not again.current_theme.dark


async def test_broken_theme_file_gives_a_notice_and_a_fallback(app_paths: AppPaths) -> None:
    app_paths.user_themes_dir.mkdir(parents=True)
    (app_paths.user_themes_dir / "mine.toml").write_text('name = "mine"\nprimary = "not-a-colour"\n')
    app_paths.config_file.write_text('theme = "mine"\n')
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any("'mine' is not available" in n for n in notices(app)), "the notice")
        assert app.theme == FALLBACK_THEME
        text = "\n".join(notices(app))
        assert "mine.toml" in text and "not-a-colour" in text
        assert "'mine' is not available" in text


async def test_broken_config_names_file_line_and_key_and_starts_on_defaults(app_paths: AppPaths) -> None:
    app_paths.config_dir.mkdir(parents=True)
    app_paths.config_file.write_text('theme = "workbench-light"\n\n[models]\ncontext_length = "long"\n')
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any(f"{app_paths.config_file}:4: models.context_length" in n
                                          for n in notices(app)), "the notice")  # fmt: skip
        assert app.theme == "workbench-light"  # the valid setting still applies
        assert app.services.manager.context_length == 4096


async def test_config_with_a_syntax_error_still_starts(app_paths: AppPaths) -> None:
    app_paths.config_dir.mkdir(parents=True)
    app_paths.config_file.write_text('theme = "workbench-light\n')
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any(f"{app_paths.config_file}:1" in n for n in notices(app)), "the notice")
        assert app.theme == "workbench-dark"


async def test_broken_user_catalog_is_reported(app_paths: AppPaths) -> None:
    app_paths.config_dir.mkdir(parents=True)
    app_paths.user_catalog.write_text(
        '[[model]]\nrepo_id = "me/m"\nname = "M"\nkind = "chat"\nparams = "1B"\nquantization = "4-bit"\n'
        'size_gb = "big"\nmemory_gb = 1.0\n'
    )
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: any(f"{app_paths.user_catalog}:7: model[0].size_gb" in n for n in notices(app)),
                       "the notice")  # fmt: skip
        assert len(app.services.catalog) >= 15  # the shipped catalog still loads


async def test_keys_are_remapped_by_binding_id(app_paths: AppPaths) -> None:
    save_key_binding(app_paths.config_file, "pane.chat", "c")
    save_key_binding(app_paths.config_file, "no.such.binding", "x")
    app = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: on_pane(app, "catalog"), "the first pane")
        await pilot.press("c")
        await wait_for(pilot, lambda: on_pane(app, "chat"), "the Chat pane by its remapped key")
        assert any("'no.such.binding' is not a binding id" in n for n in notices(app))


async def test_every_binding_has_an_id_and_a_description() -> None:
    from textual.binding import Binding

    from workbench.ui.panes import pane_screens
    from workbench.ui.screens.chat_history import HistoryScreen
    from workbench.ui.screens.chat_settings import SettingsScreen
    from workbench.ui.widgets.chat_input import ChatInput

    owners = (WorkbenchApp, *pane_screens().values(), HistoryScreen, SettingsScreen, ChatInput)  # imports them all
    ids = WorkbenchApp.binding_ids()
    assert {"pane.chat", "models.pin", "chat.stop", "chat.send", "history.rename"} <= ids
    for owner in owners:
        for binding in owner.__dict__.get("BINDINGS", []):  # ours, not the ones Textual inherits
            assert isinstance(binding, Binding)
            assert binding.id and binding.description, binding


async def test_models_view_loads_pins_and_unloads(app_paths: AppPaths, tiny_models: dict[str, Path]) -> None:
    shutil.copytree(tiny_models["small"], app_paths.models_dir / "tiny-small")
    app = make_app(app_paths)
    manager = app.services.manager
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelsPane) and app.screen.selected() is not None,
                       "the Models view with a model")  # fmt: skip
        screen = app.screen
        assert isinstance(screen, ModelsPane)
        selected = screen.selected()
        assert selected is not None and selected.spec.id == "tiny-small"
        await pilot.press("l")
        await wait_for(pilot, lambda: manager.info("tiny-small").state is ModelState.READY, "the load", timeout=60)
        await wait_for(pilot, lambda: "tiny-small" in str(screen.query_one(MemoryStrip).render()), "the strip")
        assert manager.info("tiny-small").measured
        await pilot.press("p")
        await wait_for(pilot, lambda: manager.info("tiny-small").pinned, "the pin")
        await pilot.press("u")
        await wait_for(pilot, lambda: manager.info("tiny-small").state is ModelState.UNLOADED, "the unload")


@pytest.mark.real_model
async def test_first_start_imports_the_default_chat_model_with_progress(app_paths: AppPaths) -> None:
    from workbench.core.models.local import DEFAULT_CHAT_ID

    app = WorkbenchApp(build_services(app_paths), import_defaults=True)
    seen: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.watch(app, "activity", lambda value: seen.append(value))
        models = app.services.manager.models
        await wait_for(pilot, lambda: DEFAULT_CHAT_ID in [i.spec.id for i in models()], "the import", timeout=120)
    assert any("importing SmolLM2" in s and "%" in s for s in seen)
    assert (app_paths.models_dir / DEFAULT_CHAT_ID / "config.json").is_file()
