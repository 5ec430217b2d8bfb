"""Tab completes a typed path in the ctrl+o dialogs (Embeddings: open a corpus; Compare: run a prompt set) at 80x24,
lists the candidates under the box when several match, and keeps the focus in the box."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from tests.support.corpora import write_notes_folder
from tests.support.fake_chat import Script
from tests.support.waits import wait_for
from tests.test_compare_ui import compare_app, open_compare
from tests.test_embeddings_ui import make_app, open_pane
from workbench.core.settings.paths import AppPaths
from workbench.ui.screens.dialogs import PromptScreen
from workbench.ui.widgets.path_input import PathInput

SIZE = (80, 24)


def candidates_line(screen: PromptScreen) -> str:
    return str(screen.query_one(".dialog-candidates", Static).content)


async def path_dialog(pilot) -> tuple[PromptScreen, PathInput]:  # type: ignore[no-untyped-def]
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PromptScreen), "the path dialog")
    screen = pilot.app.screen
    box = screen.query_one(PathInput)
    await wait_for(pilot, lambda: box.has_focus, "the path box to have focus")
    box.value = ""
    return screen, box


async def test_tab_completes_the_corpus_path_and_lists_candidates(app_paths: AppPaths, tmp_path: Path) -> None:
    write_notes_folder(tmp_path / "notes")
    (tmp_path / "notes.csv").write_text("text\nhello\n")
    app, _ = make_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_pane(app, pilot)
        screen, box = await path_dialog(pilot)
        await pilot.press(*f"{tmp_path}/no", "tab")
        await wait_for(pilot, lambda: box.value == f"{tmp_path}/notes", "the common start of notes/ and notes.csv")
        await wait_for(pilot, lambda: "notes/" in candidates_line(screen), "the candidates under the box")
        assert "notes.csv" in candidates_line(screen) and box.has_focus
        await pilot.press("/", "tab")  # into the folder: its files are listed
        await wait_for(pilot, lambda: ".md" in candidates_line(screen) or ".txt" in candidates_line(screen),
                       "the folder's files")  # fmt: skip
        box.value = f"{tmp_path}/nowhere/x"
        await pilot.press("tab")
        await wait_for(pilot, lambda: "no such folder" in candidates_line(screen), "why nothing completes")
        assert box.has_focus and isinstance(app.screen, PromptScreen)
        box.value = f"{tmp_path}/notes"
        box.cursor_position = len(box.value)
        await pilot.press("/", "enter")
        await wait_for(pilot, lambda: pane.vectors_a is not None, "the completed folder opened and embedded")


async def test_tab_completes_the_prompt_set_file_in_compare(app_paths: AppPaths, tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("first\n")
    app, _, _ = compare_app(app_paths, Script(tokens=["one"]), Script(tokens=["two"]))
    async with app.run_test(size=SIZE) as pilot:
        await open_compare(app, pilot)
        screen, box = await path_dialog(pilot)
        await pilot.press(*f"{tmp_path}/pro", "tab")
        await wait_for(pilot, lambda: box.value == f"{tmp_path}/prompts.txt", "the one file that matches")
        assert candidates_line(screen) == "" and box.has_focus
