"""Files that ship with the package: themes/ and catalog.toml.

They live at the top of the repository and a wheel carries them as ``workbench/_data``; an editable
install finds them at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_path(name: str) -> Path:
    """Path of a shipped file or folder (``"themes"``, ``"catalog.toml"``)."""
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.exists():
        return packaged
    return _PACKAGE_DIR.parent / name
