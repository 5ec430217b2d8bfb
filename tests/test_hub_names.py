"""Names from a hub or a user, checked before they become parts of cache paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.core.hub import names as hub_names
from workbench.core.hub.names import BadName

SHA1 = "0123456789abcdef0123456789abcdef01234567"
SHA256 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    ["config.json", "1_Pooling/config.json", "model-00001-of-00002.safetensors", "a b/ünïcode.txt", ".gitattributes",
     "dir/..hidden", "x..y.json"],
)  # fmt: skip
def test_repo_file_names_pass(name: str) -> None:
    assert hub_names.check_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.json", "'..' part"),
        ("a/../../evil.json", "'..' part"),
        ("./config.json", "'.' or '..' part"),
        ("a//b.json", "empty"),
        ("a/", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:evil.json", "drive letter"),
        ("..\\evil.json", "backslash"),
        ("evil\x00.json", "NUL"),
        ("evil\x1b[2J.json", "control character"),
        ("", "not a file name"),
        ("x" * 1025, "longer than"),
    ],
)
def test_bad_file_names_are_refused_by_name(name: str, why: str) -> None:
    with pytest.raises(BadName) as refused:
        hub_names.check_file_name(name)
    assert why in str(refused.value) and repr(name)[:200] in str(refused.value)


def test_etags_and_commits_are_hex_digests() -> None:
    assert hub_names.check_etag(SHA1) == SHA1 and hub_names.check_etag(SHA256) == SHA256
    assert hub_names.check_commit(SHA1) == SHA1
    for bad in ("../../etag_evil", SHA1.upper(), SHA1[:-1], SHA1 + "0", "", None, 7):
        with pytest.raises(BadName, match="not a hex digest"):
            hub_names.check_etag(bad)
    for bad in ("../../../../sha_evil", SHA256, "main", SHA1.upper()):
        with pytest.raises(BadName, match="not a commit id"):
            hub_names.check_commit(bad)
    with pytest.raises(BadName, match=r"the listed hash '\.\./x' given for 'a\.json' is not a hex digest"):
        hub_names.check_etag("../x", "listed hash", "a.json")


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/3", "refs/convert/parquet", "feature/x-y_z", SHA1])
def test_revisions_a_user_types_pass(revision: str) -> None:
    assert hub_names.check_revision(revision) == revision


@pytest.mark.parametrize(
    "revision",
    ["..", "../../evil", "refs/../../evil", "/main", "main/", "a//b", "main.", "x.lock", "refs/.hidden", "@", "a@{1}",
     "ma in", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "a\x00b", "", "x" * 256],
)  # fmt: skip
def test_revisions_outside_git_ref_rules_are_refused(revision: str) -> None:
    with pytest.raises(BadName, match="revision"):
        hub_names.check_revision(revision)


def test_repo_ids() -> None:
    for good in ("mlx-community/Qwen2.5-0.5B-Instruct-4bit", "gpt2", "org/name_with.dots"):
        assert hub_names.check_repo_id(good) == good
    for bad in ("org/..", "../org", "org/name/extra", "/org", "org/", "org/na me", ""):
        with pytest.raises(BadName):
            hub_names.check_repo_id(bad)


def test_inside_follows_links_on_the_way(tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (snapshot / "linked").symlink_to(outside)
    assert hub_names.inside(snapshot, "sub/config.json") == snapshot / "sub" / "config.json"
    with pytest.raises(BadName, match="leads outside"):
        hub_names.inside(snapshot, "linked/config.json")
    with pytest.raises(BadName, match=r"'\.\.' part"):
        hub_names.inside(snapshot, "../elsewhere/config.json")
