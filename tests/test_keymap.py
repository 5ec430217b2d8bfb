"""The one table of panes and the one table of binding ids agree with what the screens declare; README's
[keys] example remaps keys of panes that are not loaded yet."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

from textual.binding import Binding
from textual.dom import DOMNode

import workbench.ui
from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.keymap import BINDING_IDS
from workbench.ui.panes import PANES
from workbench.ui.screens.base import PaneScreen

README = Path(__file__).resolve().parents[1] / "README.md"
SIZE = (80, 24)


def import_all_ui_modules() -> None:
    for module in pkgutil.walk_packages(workbench.ui.__path__, "workbench.ui."):
        importlib.import_module(module.name)


def our_classes(cls: type) -> list[type]:
    found = [cls] if cls.__module__.startswith("workbench.ui") else []
    for sub in cls.__subclasses__():
        found += our_classes(sub)
    return found


def declared_binding_ids() -> set[str]:
    import_all_ui_modules()
    return {
        binding.id
        for cls in our_classes(DOMNode)
        for binding in cls.__dict__.get("BINDINGS", [])
        if isinstance(binding, Binding) and binding.id
    }


def test_the_binding_id_table_equals_what_the_app_screens_and_widgets_declare() -> None:
    declared = declared_binding_ids()
    assert declared - BINDING_IDS == set(), "declared but missing from workbench/ui/keymap.py"
    assert BINDING_IDS - declared == set(), "in workbench/ui/keymap.py but declared nowhere"


def test_the_pane_table_names_every_pane_screen_and_its_mode() -> None:
    import_all_ui_modules()
    for pane in PANES:
        assert pane.mode == pane.screen_class().MODE  # type: ignore[attr-defined]
    pane_screens = {cls for cls in our_classes(PaneScreen) if cls is not PaneScreen}
    assert pane_screens == {pane.screen_class() for pane in PANES}
    assert len({pane.key for pane in PANES}) == len(PANES)
    assert set(WorkbenchApp.MODES) == {pane.mode for pane in PANES}


def test_binding_ids_are_known_before_any_pane_module_is_imported() -> None:
    """In a fresh interpreter, as at start-up: no pane module loaded, yet a pane's binding id is valid."""
    code = (
        "import sys\n"
        "from workbench.ui.app import WorkbenchApp\n"
        "assert 'workbench.ui.screens.models' not in sys.modules\n"
        "ids = WorkbenchApp.binding_ids()\n"
        "assert {'models.pin', 'chat.stop', 'compare.diff', 'history.rename'} <= ids, sorted(ids)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(README.parent)})  # fmt: skip
    assert result.returncode == 0, result.stderr


def readme_config_example() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    example = next(block for block in blocks if "[keys]" in block)
    assert '"models.pin" = "P"' in example  # the example this test is about
    return example


async def test_the_readme_config_example_remaps_pane_keys_without_a_warning(app_paths: AppPaths) -> None:
    app_paths.config_dir.mkdir(parents=True)
    app_paths.config_file.write_text(readme_config_example(), encoding="utf-8")
    services = build_services(app_paths)
    assert not services.issues, services.issues
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current_mode == "catalog" and app.screen.is_mounted, "the first pane")
        notices = [n.message for n in app._notifications]
        assert not [n for n in notices if "binding id" in n], notices
        await pilot.press("c")  # "pane.chat" = "c"
        await wait_for(pilot, lambda: app.current_mode == "chat", "the chat pane on c")
        await pilot.press("alt+6")
        await wait_for(pilot, lambda: app.current_mode == "models", "the models pane")
        screen = app.screen
        manager = app.services.manager
        await wait_for(pilot, lambda: screen.selected() is not None, "a model selected")  # type: ignore[attr-defined]
        model_id = screen.selected().spec.id  # type: ignore[attr-defined]
        await pilot.press("p")  # no longer the pin key
        await pilot.press("P")
        await wait_for(pilot, lambda: manager.info(model_id).pinned, "the model pinned by P")
        await pilot.press("P")
        await wait_for(pilot, lambda: not manager.info(model_id).pinned, "the model unpinned by P")


async def test_chat_stop_can_be_remapped(app_paths: AppPaths) -> None:
    app_paths.config_dir.mkdir(parents=True)
    app_paths.config_file.write_text('[keys]\n"chat.stop" = "f9"\n', encoding="utf-8")
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.current_mode == "catalog" and app.screen.is_mounted, "the first pane")
        assert not [n.message for n in app._notifications if "binding id" in n.message]
        await pilot.press("3")
        await wait_for(pilot, lambda: app.current_mode == "chat", "the chat pane")
        keys = {binding.id: binding.key for (_node, binding, _enabled, _tip) in app.screen.active_bindings.values()}
        assert keys.get("chat.stop") == "f9"


# --- README's key table equals the bindings -------------------------------------------------------------------------

EVERYWHERE, DIALOGS = "everywhere", "dialogs"
# Where a binding outside the panes lives, by its id's prefix: the pane that opens the dialog, or any dialog.
# A new dialog's prefix must be added here, and its keys to that pane's rows.
DIALOG_AREAS = {
    "history": "chat", "chat-settings": "chat", "cache": "downloads", "download-files": "downloads",
    "details": "catalog", "leaderboard": "compare", "prompt-set": "compare", "confirm": DIALOGS, "prompt": DIALOGS,
    "path": DIALOGS,
}  # fmt: skip
NATIVE_KEYS = {"up", "down", "enter", "tab", "shift+tab"}  # a table's cursor and select keys, focus moves: Textual's
README_KEY_NAMES = {"esc": "escape", "↑": "up", "↓": "down", "shift+↑": "shift+up", "shift+↓": "shift+down"}


def readme_key(token: str) -> str:
    """A key as README writes it (`esc`, `/`, `shift+↑`) as Textual names it (escape, slash, shift+up)."""
    from textual.keys import _character_to_key

    token = README_KEY_NAMES.get(token, token)
    return _character_to_key(token) if len(token) == 1 else token


def readme_key_rows() -> list[tuple[set[str], str, set[str]]]:
    """README's "## Keys" table: per row, the keys of its key column, its area (a pane's mode, everywhere or
    dialogs), and every key it names (the keys in its description too)."""
    section = README.read_text(encoding="utf-8").split("## Keys\n", 1)[1].split("\n## ", 1)[0]
    titles = {pane.title.lower(): pane.mode for pane in PANES}
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("key", "---"):
            continue
        key_cell, where, what = cells
        # "`1` … `6`" and "`alt+1` … `alt+6`": every key of the range
        key_cell = re.sub(r"`([^`\d]*)(\d)` … `\1(\d)`",
                          lambda m: " ".join(f"`{m[1]}{n}`" for n in range(int(m[2]), int(m[3]) + 1)), key_cell)
        keys = {readme_key(token) for token in re.findall(r"`([^`]+)`", key_cell)}
        first = where.split()[0].strip(",").lower()
        area = EVERYWHERE if first == EVERYWHERE else DIALOGS if first == DIALOGS else titles[first]
        named = keys | {readme_key(token) for token in re.findall(r"`([^`]+)`", what)}
        rows.append((keys, area, named))
    return rows


def declared_bindings() -> list[tuple[str, str, bool]]:
    """Every binding the app, the panes, their widgets and their dialogs declare: (key, area, on the pane itself)."""
    from workbench.ui.app import WorkbenchApp

    import_all_ui_modules()
    modes = {pane.mode for pane in PANES}
    found = []
    for cls in {*our_classes(DOMNode), WorkbenchApp}:
        for binding in cls.__dict__.get("BINDINGS", []):
            prefix = binding.id.split(".")[0]
            if cls is WorkbenchApp or cls is PaneScreen:
                area, own = EVERYWHERE, True
            elif issubclass(cls, PaneScreen):
                area, own = cls.MODE, True
            elif prefix in modes:  # a widget of a pane (the chat input, the compared answers)
                area, own = prefix, True
            else:
                assert prefix in DIALOG_AREAS, f"{binding.id}: say in DIALOG_AREAS which pane opens it"
                area, own = DIALOG_AREAS[prefix], False
            found += [(key.strip(), area, own) for key in binding.key.split(",")]
    found.append((WorkbenchApp.COMMAND_PALETTE_BINDING, EVERYWHERE, True))  # Textual's, on by default
    return found


def test_every_binding_has_a_row_in_the_readme_key_table() -> None:
    """A pane's key is in the key column of one of its rows (an app-wide key in an "everywhere" row); a dialog's
    key is named in a row of the pane that opens it."""
    rows = readme_key_rows()
    missing = []
    for key, area, own in declared_bindings():
        if not any(row_area == area and key in (keys if own else named) for keys, row_area, named in rows):
            missing.append(f"{key} ({area})")
    assert missing == [], "add these to README's ## Keys table (| `key` | where | what |)"


def test_every_key_in_the_readme_key_table_is_bound_there() -> None:
    bound: dict[str, set[str]] = {}
    for key, area, _own in declared_bindings():
        bound.setdefault(area, set()).add(key)
    stale = []
    for keys, area, _named in readme_key_rows():
        stale += [f"{key} ({area})" for key in keys - bound.get(area, set()) - NATIVE_KEYS]
    assert stale == [], "README's ## Keys table names keys that are not bound there"
