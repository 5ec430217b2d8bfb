"""The registry finds MLX chat models and embedders in a Hugging Face cache laid out by hand exactly as
huggingface_hub writes it, and in the data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.hf_cache import add_snapshot, folder_files
from tests.support.tiny_models import make_tiny_llama
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.core.models.registry import ModelRegistry
from workbench.core.models.spec import ModelSpec
from workbench.core.settings.paths import AppPaths

LLAMA_ID = "mlx-community/tiny-llama-4bit"


def cached_specs(cache: Path) -> list[ModelSpec]:
    return ModelRegistry(AppPaths.under(cache / "no-home"), cache).cached_specs()


def safetensors_bytes(tmp: Path) -> bytes:
    from safetensors.numpy import save_file

    save_file({"weight": np.zeros((4, 4), dtype=np.float32)}, str(tmp))
    return tmp.read_bytes()


@pytest.fixture(scope="module")
def llama_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return folder_files(make_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama"))


@pytest.fixture
def hf_cache(tmp_path: Path, llama_files: dict[str, bytes]) -> Path:
    cache = tmp_path / "hub"
    add_snapshot(cache, LLAMA_ID, llama_files, "a" * 40)
    weights = safetensors_bytes(tmp_path / "w.safetensors")
    config = json.loads(llama_files["config.json"])
    unsupported = json.dumps({**config, "model_type": "no_such_arch"}).encode()
    add_snapshot(cache, "org/unsupported", {"config.json": unsupported, "model.safetensors": weights}, "b" * 40)
    embedder = {"config.json": b'{"model_type": "bert"}', "modules.json": b"[]", "model.safetensors": weights}
    add_snapshot(cache, "sentence-transformers/tiny-embedder", embedder, "c" * 40)
    add_snapshot(cache, "org/no-weights", {"config.json": llama_files["config.json"]}, "d" * 40)
    (cache / "models--org--broken").mkdir()  # no snapshots folder: scan_cache_dir warns about it
    dataset = cache / "datasets--org--data" / "snapshots" / ("e" * 40)
    dataset.mkdir(parents=True)
    (cache / ".locks").mkdir()
    return cache


def test_scan_cache_dir_accepts_the_hand_made_layout(hf_cache: Path) -> None:
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hf_cache)
    assert {repo.repo_id for repo in info.repos if repo.repo_type == "model"} == {
        LLAMA_ID,
        "org/unsupported",
        "sentence-transformers/tiny-embedder",
        "org/no-weights",
    }
    assert len(info.warnings) == 1  # models--org--broken


def test_the_loadable_chat_model_and_the_embedder_are_listed(hf_cache: Path) -> None:
    spec, embedder = cached_specs(hf_cache)
    assert (embedder.id, embedder.kind) == ("sentence-transformers/tiny-embedder", "sentence-transformers")
    snapshot = hf_cache.resolve() / f"models--{LLAMA_ID.replace('/', '--')}" / "snapshots" / ("a" * 40)
    assert spec == ModelSpec(id=LLAMA_ID, name=LLAMA_ID, kind="mlx-lm", path=snapshot)
    assert json.loads((spec.path / "config.json").read_text())["model_type"] == "llama"
    assert (spec.path / "model.safetensors").resolve().parent.name == "blobs"


def test_the_newest_revision_wins(tmp_path: Path, llama_files: dict[str, bytes]) -> None:
    cache = tmp_path / "hub"
    add_snapshot(cache, "org/two", llama_files, "1" * 40, mtime=1_000_000)
    newer = {**llama_files, "config.json": llama_files["config.json"] + b" "}
    add_snapshot(cache, "org/two", newer, "0" * 40)  # shares the weights blob, has a fresh config blob
    [spec] = cached_specs(cache)
    assert spec.path.name == "0" * 40


def test_model_type_from_text_config_and_remapped_aliases(tmp_path: Path, llama_files: dict[str, bytes]) -> None:
    cache = tmp_path / "hub"
    weights = llama_files["model.safetensors"]
    nested = json.dumps({"model_type": "no_such_wrapper", "text_config": {"model_type": "qwen2"}}).encode()
    mistral = json.dumps({"model_type": "mistral"}).encode()
    add_snapshot(cache, "org/nested", {"config.json": nested, "model.safetensors": weights}, "1" * 40)
    add_snapshot(cache, "org/mistral", {"config.json": mistral, "model.safetensors": weights}, "2" * 40)
    assert [spec.id for spec in cached_specs(cache)] == ["org/mistral"]
    text_only = json.dumps({"text_config": {"model_type": "qwen2"}}).encode()
    add_snapshot(cache, "org/text-only", {"config.json": text_only, "model.safetensors": weights}, "3" * 40)
    assert [spec.id for spec in cached_specs(cache)] == ["org/mistral", "org/text-only"]


def test_unreadable_config_is_skipped_and_logged(
    tmp_path: Path, llama_files: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "hub"
    add_snapshot(cache, "org/bad-json", {"config.json": b"{not json", "model.safetensors": b"x"}, "1" * 40)
    add_snapshot(cache, LLAMA_ID, llama_files, "2" * 40)
    with caplog.at_level("INFO", logger="workbench.core.models.registry"):
        assert [spec.id for spec in cached_specs(cache)] == [LLAMA_ID]
    assert "org/bad-json" in caplog.text


def test_missing_cache_gives_nothing(tmp_path: Path) -> None:
    assert cached_specs(tmp_path / "nowhere") == []


def test_loadable_specs(
    app_paths: AppPaths, hf_cache: Path, llama_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    imported = app_paths.models_dir / "my-import"
    imported.mkdir(parents=True)
    for name, data in llama_files.items():
        (imported / name).write_bytes(data)
    registry = ModelRegistry(app_paths, hf_cache)
    ids = [spec.id for spec in registry.loadable_specs()]
    assert ids[:3] == ["my-import", LLAMA_ID, "sentence-transformers/tiny-embedder"]
    assert ids[3:] in ([], [DEFAULT_EMBEDDER_ID])

    # An imported model with the same id as a cached one is listed once, as the import.
    same = ModelSpec(id=LLAMA_ID, name="mine", kind="mlx-lm", path=imported)
    monkeypatch.setattr(registry, "imported_specs", lambda: [same])
    specs = registry.loadable_specs()
    assert [spec.id for spec in specs].count(LLAMA_ID) == 1
    assert specs[0] == same


def test_default_cache_follows_hf_hub_cache(hf_cache: Path) -> None:
    code = ("from pathlib import Path; from workbench.core.models.registry import ModelRegistry; "
            "from workbench.core.settings.paths import AppPaths; "
            "print([s.id for s in ModelRegistry(AppPaths.under(Path('nowhere'))).cached_specs()])")
    env = {**os.environ, "HF_HUB_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert out.stdout.strip() == repr([LLAMA_ID, "sentence-transformers/tiny-embedder"])
