"""Tab completion of typed paths: common start, "/" after folders, "~", candidates, unreadable folders, odd names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from workbench.core.settings.path_completion import complete_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "march.md").write_text("x")
    (tmp_path / "notes" / "may.md").write_text("x")
    (tmp_path / "prompts.txt").write_text("x")
    (tmp_path / "prompts.jsonl").write_text("x")
    (tmp_path / "README.md").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "my notes [old]").mkdir()
    return tmp_path


def test_one_match_completes_and_a_folder_gets_a_slash(tree: Path) -> None:
    assert complete_path("no", cwd=tree).text == "notes/"
    assert complete_path("notes/mar", cwd=tree).text == "notes/march.md"
    assert complete_path(f"{tree}/READ").text == f"{tree}/README.md"
    assert complete_path("my", cwd=tree).text == "my notes [old]/"  # spaces and brackets taken as they are


def test_several_matches_complete_their_common_start_and_list_them(tree: Path) -> None:
    done = complete_path("pr", cwd=tree)
    assert done.text == "prompts."
    assert done.candidates == ["prompts.jsonl", "prompts.txt"]
    listed = complete_path("notes/", cwd=tree)
    assert listed.text == "notes/ma" and listed.candidates == ["march.md", "may.md"]


def test_hidden_entries_only_when_asked_for_and_case_is_a_fallback(tree: Path) -> None:
    assert ".hidden" not in complete_path("", cwd=tree).candidates
    assert complete_path(".h", cwd=tree).text == ".hidden"
    assert complete_path("readme", cwd=tree).text == "README.md"
    assert "my notes [old]/" in complete_path("", cwd=tree).candidates


def test_tilde_is_the_home_folder_and_stays_as_typed(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    assert complete_path("~").text == "~/"
    assert complete_path("~/no").text == "~/notes/"
    assert complete_path("~/notes/ma").candidates == ["march.md", "may.md"]


def test_nothing_to_complete_says_why(tree: Path) -> None:
    missing = complete_path("nowhere/x", cwd=tree)
    assert missing.text == "nowhere/x" and missing.candidates == [] and "no such folder" in (missing.problem or "")
    assert "not a folder" in (complete_path("README.md/x", cwd=tree).problem or "")
    nothing = complete_path("zzz", cwd=tree)
    assert nothing.text == "zzz" and "starts with 'zzz'" in (nothing.problem or "")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="chmod 0 does not stop root (nor exist on Windows); test_a_folder_that_refuses_to_be_read_says_so covers "
    "the same path everywhere by making os.scandir refuse",
)
def test_an_unreadable_folder_says_so(tree: Path) -> None:
    locked = tree / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        done = complete_path("locked/", cwd=tree)
    finally:
        locked.chmod(0o755)
    assert done.text == "locked/" and "cannot read locked/" in (done.problem or "")


@pytest.mark.skipif(
    sys.platform != "linux", reason="a file name that is not valid UTF-8 can only be created on Linux (APFS refuses it)"
)
def test_names_no_one_can_type_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "line\nbreak.txt").write_text("x")
    os.close(os.open(os.fsencode(tmp_path) + b"/bad\xff.txt", os.O_CREAT | os.O_WRONLY))
    (tmp_path / "fine.txt").write_text("x")
    assert complete_path("", cwd=tmp_path).text == "fine.txt"


def test_a_dangling_link_completes_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    assert complete_path("go", cwd=tmp_path).text == "gone"


def test_a_folder_that_refuses_to_be_read_says_so(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", refuse)  # the same as a chmod 0 folder, also as root
    done = complete_path("notes/", cwd=tree)
    assert done.text == "notes/" and done.problem == "cannot read notes/: Permission denied"
