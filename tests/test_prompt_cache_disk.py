"""Prompt caches saved to disk per conversation, on real mlx-lm KV caches of tiny random-weight llamas: the round trip
gives the same logits, files are private, a cache that does not match is deleted rather than misused, the folder stays
within its byte limit, and the model fingerprint follows the model's files and chat template."""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.prompt_caches import prefill
from workbench.core.prompt_cache import PromptCacheDisk, model_fingerprint
from workbench.core.prompt_cache import disk as disk_module
from workbench.core.prompt_cache.disk import file_name, model_hash

BIG = 1 << 40
A = (5, 17, 42, 9, 88, 23, 61, 7, 100, 33)  # a conversation so far
B = (12, 70, 3)  # what a follow-up adds
SMALL, MEDIUM = "tiny/small", "tiny/medium"
FP = "fingerprint-1"


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path]) -> dict[str, Any]:
    from mlx_lm import load

    return {SMALL: load(str(tiny_models["small"]))[0], MEDIUM: load(str(tiny_models["medium"]))[0]}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "state" / "prompt-caches"  # not there yet: the first save creates it


def cache_of(models: dict[str, Any], model_id: str = SMALL, tokens: tuple[int, ...] = A) -> list[Any]:
    return prefill(models[model_id], tokens)[0]


def names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Let the process create world-readable files, so only the code under test can make them private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_saved_cache_loads_back_and_gives_the_same_logits(models: dict[str, Any], folder: Path) -> None:
    import mlx.core as mx

    model = models[SMALL]
    original = cache_of(models)
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-12", SMALL, FP, A, original)
    loaded = disk.load("chat-12", SMALL, FP)
    assert loaded is not None
    tokens, cache = loaded
    assert tokens == A
    assert {layer.offset for layer in cache} == {len(A)}
    _, want = prefill(model, B[:1], original)
    _, got = prefill(model, B[:1], cache)
    assert mx.abs(got - want).max().item() <= 1e-4


def test_the_folder_is_0700_and_the_file_0600(models: dict[str, Any], folder: Path, open_umask: None) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [entry] = disk.entries()
    assert entry.path.name == file_name("chat-1", SMALL) == f"chat-1--{model_hash(SMALL)}.safetensors"
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600


def test_an_existing_open_folder_is_made_0700(models: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    assert PromptCacheDisk(folder, BIG).save("chat-1", SMALL, FP, A, cache_of(models))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_saving_again_replaces_the_conversations_file(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    assert disk.save("chat-1", SMALL, FP, A + B, cache_of(models, tokens=A + B))
    assert names(folder) == {file_name("chat-1", SMALL)}  # no temporary file left either
    loaded = disk.load("chat-1", SMALL, FP)
    assert loaded is not None and loaded[0] == A + B


def test_a_conversation_has_one_file_whatever_the_model(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    assert disk.save("chat-1", MEDIUM, FP, A, cache_of(models, MEDIUM))
    assert names(folder) == {file_name("chat-1", MEDIUM)}
    assert disk.load("chat-1", SMALL, FP) is None


def test_another_fingerprint_finds_nothing_and_deletes_the_file(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    assert disk.load("chat-1", SMALL, "fingerprint-2") is None
    assert names(folder) == set()
    assert disk.load("chat-1", SMALL, FP) is None


def test_another_model_finds_nothing_and_the_stale_file_goes(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    assert disk.load("chat-1", MEDIUM, FP) is None
    assert names(folder) == set()


def test_a_file_whose_metadata_names_another_model_is_not_used(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    # As if two model ids shared a name hash: the name says MEDIUM, the metadata still says SMALL.
    (folder / file_name("chat-1", SMALL)).rename(folder / file_name("chat-1", MEDIUM))
    assert disk.load("chat-1", MEDIUM, FP) is None
    assert names(folder) == set()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_file_finds_nothing_and_is_deleted(models: dict[str, Any], folder: Path, damage: str) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    path = folder / file_name("chat-1", SMALL)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x8f not a safetensors file " * 40, "truncated": data[:-200], "empty": b""}[damage])
    assert disk.load("chat-1", SMALL, FP) is None
    assert not path.exists()


def test_a_file_of_another_format_version_is_deleted(
    models: dict[str, Any], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = PromptCacheDisk(folder, BIG)
    monkeypatch.setattr(disk_module, "FORMAT_VERSION", "0")
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    monkeypatch.undo()
    assert disk.load("chat-1", SMALL, FP) is None
    assert names(folder) == set()


@pytest.mark.parametrize("tokens", ["[5, 17]", "not json", '{"a": 1}', '["5"]'], ids=["count", "json", "dict", "str"])
def test_a_file_whose_tokens_disagree_is_deleted(models: dict[str, Any], folder: Path, tokens: str) -> None:
    from mlx_lm.models.cache import save_prompt_cache

    folder.mkdir(parents=True)
    path = folder / file_name("chat-1", SMALL)
    metadata = {"format": disk_module.FORMAT_VERSION, "model_id": SMALL, "fingerprint": FP, "tokens": tokens}
    save_prompt_cache(str(path), cache_of(models), metadata)
    assert PromptCacheDisk(folder, BIG).load("chat-1", SMALL, FP) is None
    assert not path.exists()


def test_a_cache_holding_other_tokens_than_given_is_refused(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    with pytest.raises(ValueError, match="tokens"):
        disk.save("chat-1", SMALL, FP, A + B, cache_of(models))
    assert names(folder) == set()


@pytest.mark.parametrize("key", ["../x", "A", "", "a/b", "a" * 65, "-a", "a.b", "chat 1"])
def test_a_bad_key_is_refused(models: dict[str, Any], folder: Path, key: str) -> None:
    disk = PromptCacheDisk(folder, BIG)
    with pytest.raises(ValueError, match="key"):
        disk.save(key, SMALL, FP, A, cache_of(models))
    with pytest.raises(ValueError, match="key"):
        disk.load(key, SMALL, FP)
    with pytest.raises(ValueError, match="key"):
        disk.forget(key)
    assert names(folder) == set()


def test_keys_with_dashes_stay_apart(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    long_key = "a" * 64
    for key in ("a", "a-", "a--b", long_key):
        assert disk.save(key, SMALL, FP, A, cache_of(models))
    assert sorted(entry.key for entry in disk.entries()) == sorted(["a", "a-", "a--b", long_key])
    disk.forget("a")
    assert sorted(entry.key for entry in disk.entries()) == sorted(["a-", "a--b", long_key])


def test_the_least_recently_saved_or_used_files_are_evicted(models: dict[str, Any], folder: Path) -> None:
    probe = PromptCacheDisk(folder / "probe", BIG)
    assert probe.save("probe", SMALL, FP, A, cache_of(models))
    size = probe.bytes_used()
    disk = PromptCacheDisk(folder, size * 2 + size // 2)  # room for two files
    for key in ("chat-1", "chat-2", "chat-3"):
        assert disk.save(key, SMALL, FP, A, cache_of(models))
    assert [entry.key for entry in disk.entries()] == ["chat-2", "chat-3"]
    assert disk.load("chat-2", SMALL, FP) is not None  # chat-2 is now the most recently used
    assert disk.save("chat-4", SMALL, FP, A, cache_of(models))
    assert [entry.key for entry in disk.entries()] == ["chat-2", "chat-4"]
    assert disk.bytes_used() <= disk.limit_bytes


def test_a_file_stamped_in_the_future_does_not_outlive_newer_ones(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    future = time.time_ns() + 3600 * 10**9  # the clock was stepped back since chat-1 was saved
    os.utime(folder / file_name("chat-1", SMALL), ns=(future, future))
    assert disk.save("chat-2", SMALL, FP, A, cache_of(models))
    disk.set_limit(disk.bytes_used() - 1)
    assert [entry.key for entry in disk.entries()] == ["chat-2"]


def test_lowering_the_limit_evicts(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    for key in ("chat-1", "chat-2"):
        assert disk.save(key, SMALL, FP, A, cache_of(models))
    disk.set_limit(disk.bytes_used() - 1)
    assert [entry.key for entry in disk.entries()] == ["chat-2"]


def test_limit_zero_writes_nothing(models: dict[str, Any], folder: Path) -> None:
    assert not PromptCacheDisk(folder, 0).save("chat-1", SMALL, FP, A, cache_of(models))
    assert not folder.exists()


def test_a_cache_larger_than_the_limit_is_not_saved(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    small = PromptCacheDisk(folder, disk.bytes_used() - 1)
    assert not small.save("chat-2", SMALL, FP, A, cache_of(models))
    assert names(folder) == {file_name("chat-1", SMALL)}


def test_forget_deletes_the_conversations_file(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    for key in ("chat-1", "chat-2"):
        assert disk.save(key, SMALL, FP, A, cache_of(models))
    disk.forget("chat-1")
    disk.forget("chat-9")  # nothing saved: nothing to do
    assert names(folder) == {file_name("chat-2", SMALL)}


def test_forget_model_deletes_that_models_files(models: dict[str, Any], folder: Path) -> None:
    disk = PromptCacheDisk(folder, BIG)
    assert disk.save("chat-1", SMALL, FP, A, cache_of(models))
    assert disk.save("chat-2", SMALL, FP, A, cache_of(models))
    assert disk.save("chat-3", MEDIUM, FP, A, cache_of(models, MEDIUM))
    assert disk.forget_model(SMALL) == 2
    assert names(folder) == {file_name("chat-3", MEDIUM)}
    assert disk.forget_model(SMALL) == 0


def test_stray_files_and_symlinks_are_left_alone(models: dict[str, Any], folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x" * 10_000_000)
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / file_name("chat-1", SMALL)).symlink_to(outside)
    stale = folder / f"{disk_module.TMP_PREFIX}crashed{disk_module.SUFFIX}"
    fresh = folder / f"{disk_module.TMP_PREFIX}writing{disk_module.SUFFIX}"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    hour_ago = time.time() - 2 * disk_module.STALE_TMP_SECONDS
    os.utime(stale, (hour_ago, hour_ago))
    disk = PromptCacheDisk(folder, 1_000_000)
    assert disk.entries() == [] and disk.bytes_used() == 0  # the symlink's 10 MB target is not counted
    assert disk.load("chat-1", SMALL, FP) is None  # never followed
    assert disk.save("chat-2", SMALL, FP, A, cache_of(models))
    assert names(folder) == {"notes.txt", file_name("chat-1", SMALL), fresh.name, file_name("chat-2", SMALL)}
    assert outside.stat().st_size == 10_000_000


@pytest.fixture
def model_copy(tiny_models: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the small model that a test may change."""
    return Path(shutil.copytree(tiny_models["small"], tmp_path / "small"))


def test_the_fingerprint_is_stable_for_unchanged_files(model_copy: Path) -> None:
    assert model_fingerprint(model_copy, "{{ x }}") == model_fingerprint(model_copy, "{{ x }}")


def test_the_fingerprint_follows_the_config(model_copy: Path) -> None:
    before = model_fingerprint(model_copy, "{{ x }}")
    config = model_copy / "config.json"
    config.write_text(config.read_text().replace("1e-05", "1e-06"))
    assert model_fingerprint(model_copy, "{{ x }}") != before


def test_the_fingerprint_follows_the_chat_template(model_copy: Path) -> None:
    prints = {model_fingerprint(model_copy, template) for template in ("{{ x }}", "{{ y }}", "", None)}
    assert len(prints) == 4


def test_the_fingerprint_follows_the_weights_files(model_copy: Path) -> None:
    before = model_fingerprint(model_copy, None)
    weights = model_copy / "model.safetensors"
    info = weights.stat()
    os.utime(weights, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert model_fingerprint(model_copy, None) != before


def test_the_fingerprint_follows_the_tokenizer_config(model_copy: Path) -> None:
    before = model_fingerprint(model_copy, None)
    (model_copy / "tokenizer_config.json").unlink()
    assert model_fingerprint(model_copy, None) != before
