"""themes/ and catalog.toml ship inside the wheel and are found from a non-editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_themes_and_catalog_and_finds_them(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    wheel = Path(next(WheelBuilder(str(ROOT)).build(directory=str(tmp_path / "dist"), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    assert "workbench/_data/catalog.toml" in names
    shipped_themes = {p.name for p in (ROOT / "themes").glob("*.toml")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("workbench/_data/themes/")} == shipped_themes

    site = tmp_path / "site"  # -S below keeps the editable install (a site .pth) out of the way
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "from workbench.resources import shipped_path\n"
        "print(shipped_path('catalog.toml')); print(shipped_path('themes'))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    catalog, themes = out.stdout.split()
    assert catalog == str(site / "workbench/_data/catalog.toml")
    assert themes == str(site / "workbench/_data/themes")
