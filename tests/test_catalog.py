from __future__ import annotations

from pathlib import Path

from workbench.core.hub.curated import KINDS, CatalogEntry, load_catalog, load_effective_catalog

SHIPPED = Path(__file__).resolve().parent.parent / "catalog.toml"


def block(repo_id: str, **overrides: str | None) -> str:
    """One [[model]] block; overrides are raw TOML values, None leaves the key out."""
    values: dict[str, str | None] = {
        "repo_id": f'"{repo_id}"',
        "name": f'"{repo_id.split("/")[-1]}"',
        "kind": '"chat"',
        "params": '"1B"',
        "quantization": '"4-bit"',
        "size_gb": "0.7",
        "memory_gb": "0.9",
    }
    values.update(overrides)
    lines = ["[[model]]"] + [f"{key} = {value}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_catalog_is_clean() -> None:
    entries, issues = load_catalog(SHIPPED)
    assert issues == []
    assert len(entries) >= 15
    assert {e.kind for e in entries} == set(KINDS)
    assert len({e.repo_id for e in entries}) == len(entries)
    for entry in entries:
        assert entry.memory_gb >= entry.size_gb * 0.9, entry.repo_id
        assert entry.note


def test_missing_file(tmp_path: Path) -> None:
    assert load_catalog(tmp_path / "none.toml") == ([], [])


def test_note_is_optional(tmp_path: Path) -> None:
    [entry], issues = load_catalog(write(tmp_path / "c.toml", block("a/one", note=None)))
    assert issues == []
    assert entry == CatalogEntry("a/one", "one", "chat", "1B", "4-bit", 0.7, 0.9, "")


def test_broken_entry_is_named_and_skipped(tmp_path: Path) -> None:
    names = ["a/zero", "a/one", "a/two", "a/three", "a/four"]
    text = "".join(block(n, size_gb='"big"') if n == "a/three" else block(n) for n in names)
    path = write(tmp_path / "c.toml", text)
    entries, issues = load_catalog(path)
    assert [e.repo_id for e in entries] == ["a/zero", "a/one", "a/two", "a/four"]
    [issue] = issues
    assert issue.key == "model[3].size_gb"
    assert issue.line is not None
    assert text.splitlines()[issue.line - 1] == 'size_gb = "big"'
    assert issue.line > text.splitlines().index('repo_id = "a/three"')
    assert str(issue).startswith(f"{path}:{issue.line}: model[3].size_gb: expected")


def test_missing_key_and_bad_kind(tmp_path: Path) -> None:
    text = block("a/zero", memory_gb=None) + block("a/one", kind='"vision"') + block("a/two", extra="1")
    entries, issues = load_catalog(write(tmp_path / "c.toml", text))
    assert [e.repo_id for e in entries] == ["a/two"]  # an unknown key is reported but not fatal
    assert [(i.key, i.line) for i in issues] == [
        ("model[0]", 1),
        ("model[1].kind", text.splitlines().index('kind = "vision"') + 1),
        ("model[2].extra", text.splitlines().index("extra = 1") + 1),
    ]
    assert "memory_gb" in issues[0].message


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    entries, issues = load_catalog(write(tmp_path / "c.toml", block("a/one", size_gb="true")))
    assert entries == []
    assert [i.key for i in issues] == ["model[0].size_gb"]


def test_duplicate_repo_id(tmp_path: Path) -> None:
    text = block("a/one") + block("a/one", name='"Again"')
    entries, issues = load_catalog(write(tmp_path / "c.toml", text))
    assert [e.name for e in entries] == ["one"]
    assert [(i.key, i.line) for i in issues] == [("model[1].repo_id", 11)]


def test_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", block("a/one") + "[[model]]\nrepo_id = a/two\n")
    entries, issues = load_catalog(path)
    assert entries == []
    assert [(i.file, i.line, i.key) for i in issues] == [(path, 11, "(syntax)")]


def test_user_copy_overrides_by_repo_id(tmp_path: Path) -> None:
    shipped = write(tmp_path / "shipped.toml", block("a/one") + block("a/two") + block("a/three"))
    user = write(tmp_path / "user.toml", block("a/two", name='"Mine"', memory_gb="2.5") + block("b/new"))
    entries, issues = load_effective_catalog(shipped, user)
    assert issues == []
    assert [(e.repo_id, e.name) for e in entries] == [
        ("a/one", "one"),
        ("a/two", "Mine"),
        ("a/three", "three"),
        ("b/new", "new"),
    ]
    assert entries[1].memory_gb == 2.5


def test_issues_from_both_files(tmp_path: Path) -> None:
    shipped = write(tmp_path / "shipped.toml", block("a/one", kind='"x"'))
    user = write(tmp_path / "user.toml", "[[model]\n")
    entries, issues = load_effective_catalog(shipped, user)
    assert entries == []
    assert [(i.file, i.key) for i in issues] == [(shipped, "model[0].kind"), (user, "(syntax)")]


def test_missing_user_copy(tmp_path: Path) -> None:
    entries, issues = load_effective_catalog(SHIPPED, tmp_path / "absent.toml")
    assert issues == []
    assert entries == load_catalog(SHIPPED)[0]
