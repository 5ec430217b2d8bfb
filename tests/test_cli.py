"""The `workbench` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_import_gguf_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("hello")
    result = run_cli(tmp_path / "home", "import-gguf", str(bogus))
    assert result.returncode == 1
    assert "is not a GGUF file" in result.stderr
    assert "Traceback" not in result.stderr
    models = tmp_path / "home" / "data" / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_import_gguf_help_and_bad_bits(tmp_path: Path) -> None:
    assert "--bits" in run_cli(tmp_path, "import-gguf", "--help").stdout
    assert run_cli(tmp_path, "import-gguf", "x.gguf", "--bits", "3").returncode == 2
