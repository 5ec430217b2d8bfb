"""Rules that hold the house together: the layers import only downward (core knows no Textual, aiohttp, ui, cli,
server or bootstrap; ui no server; server no ui, cli or client; client no ui, cli, server or bootstrap), modules and
classes stay readable in size, and heavy libraries load lazily."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import workbench

PACKAGE = Path(workbench.__file__).parent
HEAVY = ("mlx", "mlx_lm", "torch", "sentence_transformers", "transformers", "huggingface_hub", "numpy", "openai")

# layer (a folder of workbench/) -> what no module in it may import, at import time or lazily inside a function
FORBIDDEN = {
    "core": ("textual", "aiohttp", "workbench.ui", "workbench.cli", "workbench.server", "workbench.bootstrap"),
    "ui": ("workbench.server",),
    "server": ("workbench.ui", "workbench.cli", "workbench.client"),
    # the faces' side of the engine: aiohttp and core, never the engine's own code or a face
    "client": ("workbench.ui", "workbench.cli", "workbench.server", "workbench.bootstrap"),
}
MODULE_NAME = re.compile(r"workbench(\.\w+)+(:\w+)?")  # "workbench.ui.screens.chat:ChatPane", as import_module takes
IMPORTERS = ("import_module", "__import__")

MAX_MODULE_LINES = 550  # the goal is ~500: a little slack, so a module is split when it has two jobs, not at 501
MAX_CLASS_LINES = 320  # the goal is ~300


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> set[tuple[str, int]]:
    """Every module ``path`` imports, with its line, from anywhere in the file (inside functions and TYPE_CHECKING
    blocks too): import statements (relative ones resolved), ``from workbench import ui`` as workbench.ui, modules
    named by a literal given to import_module or __import__, and "workbench.…" strings (tables of lazy imports)."""
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add((base, node.lineno))
            names |= {(f"{base}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"}
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in IMPORTERS and isinstance(node.args[0].value, str):
                names.add((node.args[0].value, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.fullmatch(node.value):
            names.add((node.value.partition(":")[0], node.lineno))
    return names


def forbidden_imports(folder: Path, forbidden: tuple[str, ...], root: Path = PACKAGE) -> list[str]:
    return sorted(
        f"{path.relative_to(root)}:{line} imports {name}"
        for path in folder.rglob("*.py")
        for name, line in imported_modules(path, root)
        if any(name == banned or name.startswith(f"{banned}.") for banned in forbidden)
    )


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downward(layer: str) -> None:
    assert (PACKAGE / layer).is_dir()
    assert forbidden_imports(PACKAGE / layer, FORBIDDEN[layer]) == []


def test_the_layer_check_finds_every_way_of_importing(tmp_path: Path) -> None:
    """The check above can fail: every spelling of a forbidden import in a core module is found."""
    root = tmp_path / "workbench"
    core = root / "core" / "chat"
    core.mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "clean.py").write_text("import json\nfrom workbench.core.models import lifecycle\nfrom . import run\n")
    (core / "bad.py").write_text(
        "from __future__ import annotations\n"
        "import textual.widgets\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from workbench.bootstrap import Services\n"
        "def later():\n"
        "    from aiohttp import web\n"
        "    import importlib\n"
        "    return importlib.import_module('workbench.cli.main')\n"
        "from workbench import ui\n"
        "from ...server import openai\n"
        "SCREEN = 'workbench.ui.screens.chat:ChatPane'\n"
    )
    found = forbidden_imports(root / "core", FORBIDDEN["core"], root)
    assert found == sorted([
        "core/chat/bad.py:2 imports textual.widgets",
        "core/chat/bad.py:5 imports workbench.bootstrap",
        "core/chat/bad.py:5 imports workbench.bootstrap.Services",
        "core/chat/bad.py:7 imports aiohttp",
        "core/chat/bad.py:7 imports aiohttp.web",
        "core/chat/bad.py:9 imports workbench.cli.main",
        "core/chat/bad.py:10 imports workbench.ui",
        "core/chat/bad.py:11 imports workbench.server",
        "core/chat/bad.py:11 imports workbench.server.openai",
        "core/chat/bad.py:12 imports workbench.ui.screens.chat",
    ])  # fmt: skip


def oversized(root: Path = PACKAGE) -> set[str]:
    found: set[str] = set()
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(root).as_posix()
        if len(text.splitlines()) >= MAX_MODULE_LINES:
            found.add(name)
        for node in ast.walk(ast.parse(text, filename=str(path))):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1 if isinstance(node, ast.ClassDef) else 0
            if lines >= MAX_CLASS_LINES:
                found.add(f"{name}:{node.name}")
    return found


def test_modules_and_classes_stay_readable() -> None:
    assert sorted(oversized()) == [], f"split these: modules < {MAX_MODULE_LINES} lines, classes < {MAX_CLASS_LINES}"


def test_the_size_check_finds_long_modules_and_classes(tmp_path: Path) -> None:
    root = tmp_path / "workbench"
    root.mkdir()
    (root / "long.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    (root / "short.py").write_text("x = 1\n" * (MAX_MODULE_LINES - 1))
    body = "    x = 1\n"
    (root / "classes.py").write_text(f"class Big:\n{body * (MAX_CLASS_LINES - 1)}\nclass Small:\n{body}")
    assert oversized(root) == {"long.py", "classes.py:Big"}


def test_starting_the_app_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from workbench.core.settings.paths import AppPaths\n"
        "from workbench.bootstrap import build_services\n"
        "from workbench.ui.app import WorkbenchApp\n"
        "import workbench.cli.main\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_first_frame_imports_no_heavy_library(tmp_path: Path) -> None:
    """Background work (hub search, cache scan, downloads, MLX) starts only after the first frame is painted."""
    import json
    import os

    root = PACKAGE.parent
    mark = tmp_path / "mark.json"
    env = {**os.environ, "BENCH_MARK_FILE": str(mark)}
    subprocess.run([sys.executable, str(root / "bench" / "startup.py"), "--child", "workbench"], env=env,
                   cwd=root, timeout=60, check=True, capture_output=True)  # fmt: skip
    assert json.loads(mark.read_text())["heavy"] == []


def _ui_sources() -> list[tuple[Path, str]]:
    return [(path, path.read_text()) for path in sorted((PACKAGE / "ui").rglob("*.py"))]


def test_ui_reaches_services_through_the_typed_accessor() -> None:
    """Screens and widgets use services_of(self) (typed as workbench.api.WorkbenchApi): no attr-defined ignores,
    and every member of the interface exists on the in-process Services that implements it today."""
    import inspect

    from workbench.api import WorkbenchApi
    from workbench.bootstrap import Services

    offenders = [f"{path.relative_to(PACKAGE)}:{n}" for path, text in _ui_sources()
                 for n, line in enumerate(text.splitlines(), 1) if "ignore[attr-defined]" in line]  # fmt: skip
    assert offenders == []
    members = {name for name, _ in inspect.getmembers(WorkbenchApi) if not name.startswith("_")}
    assert {"manager", "store", "downloads", "discover_remote_models"} <= members
    fields = set(Services.__dataclass_fields__)
    assert {name for name in members if not hasattr(Services, name) and name not in fields} == set()
    api_imports = {name for name, _line in imported_modules(PACKAGE / "api.py")}
    assert not {m for m in api_imports if m.split(".")[0] in ("textual", "aiohttp")
                or m.startswith(("workbench.ui", "workbench.cli", "workbench.server", "workbench.bootstrap"))}



WIDGET_CALLS = {"query_one", "query", "notify", "update", "mount", "remove", "focus", "add_row", "clear", "set_class",
                "update_cell", "move_cursor", "push_screen", "call_from_thread"}  # fmt: skip


def _decorated_with_work(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id == "work":
            return True
    return False


def test_only_message_handlers_touch_widgets() -> None:
    """One way from work to widget: workers and core callbacks post Messages, and only message handlers touch
    widgets. No call_from_thread in workbench/ui, and no @work function that queries, updates or notifies."""
    offenders = [f"{path.relative_to(PACKAGE)}:{n}" for path, text in _ui_sources()
                 for n, line in enumerate(text.splitlines(), 1) if "call_from_thread" in line]  # fmt: skip
    for path, text in _ui_sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _decorated_with_work(node):
                offenders += [f"{path.relative_to(PACKAGE)}:{call.lineno} {node.name}: {call.func.attr}"
                              for call in ast.walk(node) if isinstance(call, ast.Call)
                              and isinstance(call.func, ast.Attribute) and call.func.attr in WIDGET_CALLS]  # fmt: skip
    assert offenders == []
