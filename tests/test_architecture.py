"""Rules that hold the house together: core never imports Textual; heavy libraries load lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import workbench

PACKAGE = Path(workbench.__file__).parent
HEAVY = ("mlx", "mlx_lm", "torch", "sentence_transformers", "transformers", "huggingface_hub", "numpy", "openai")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_textual() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in (PACKAGE / "core").rglob("*.py")
        if any(name == "textual" or name.startswith("textual.") for name in imported_modules(path))
    ]
    assert offenders == []


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
