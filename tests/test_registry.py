"""The model registry (what is on disk and loadable) and ModelManager.unregister, on a hand-made Hugging Face cache,
tiny model files and scripted backends (a real manager and inference thread, no MLX)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_chat import FakeChatBackend
from tests.test_local_models import add_snapshot, folder_files, safetensors_bytes
from workbench.core.hub import cache as hf_cache
from workbench.core.models.backends import mlx_lm, sentence_transformers
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ManagerEvent, ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.registry import IMPORTED, ModelRegistry, Presence
from workbench.core.models.spec import ModelInUseError, ModelSpec, ModelState, UnknownModelError
from workbench.core.settings.paths import AppPaths

WAIT = 30  # seconds; every wait here is bounded
LLAMA = "org/tiny-llama"
EMBEDDER = "org/tiny-embedder"
GGUF = "org/only-gguf"
UNSUPPORTED = "org/unsupported"
PARTIAL = "org/half-done"


class GatedBackend(FakeChatBackend):
    """A scripted backend whose loads wait for ``gate`` (on the inference thread), counting unloads."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind=kind)
        self.gate = threading.Event()
        self.gate.set()
        self.unloads = 0

    def load(self, spec: ModelSpec) -> Any:
        assert self.gate.wait(WAIT)
        return super().load(spec)

    def unload(self, handle: Any) -> None:
        self.unloads += 1


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend(mlx_lm.KIND)


@pytest.fixture
async def manager(backend: GatedBackend) -> Any:
    backends = {mlx_lm.KIND: backend, sentence_transformers.KIND: GatedBackend(sentence_transformers.KIND)}
    manager = ModelManager(backends=backends, budget=Budget(8 * GB, "test"), inference=InferenceThread(),
                           idle_unload_s=None)  # fmt: skip
    yield manager
    await manager.aclose()


@pytest.fixture
def cache(tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    """A chat model in two revisions, an embedder, a GGUF-only repo, an unsupported one and a partial download."""
    cache = tmp_path / "hub"
    llama = folder_files(tiny_models["small"])
    add_snapshot(cache, LLAMA, llama, "a" * 40, mtime=1_000_000)
    add_snapshot(cache, LLAMA, {**llama, "config.json": llama["config.json"] + b" "}, "b" * 40)
    weights = safetensors_bytes(tmp_path / "w.safetensors")
    add_snapshot(cache, EMBEDDER, {"config.json": b'{"model_type": "bert"}', "modules.json": b"[]",
                                   "model.safetensors": weights}, "c" * 40)  # fmt: skip
    add_snapshot(cache, GGUF, {"model.Q4_0.gguf": b"GGUF"}, "d" * 40)
    unsupported = json.dumps({"model_type": "no_such_arch"}).encode()
    add_snapshot(cache, UNSUPPORTED, {"config.json": unsupported, "model.safetensors": weights}, "e" * 40)
    add_snapshot(cache, PARTIAL, {"config.json": llama["config.json"]}, "f" * 40)
    (hf_cache.repo_dir(cache, PARTIAL) / "blobs" / f"{'0' * 64}.incomplete").write_bytes(b"half")
    return cache


@pytest.fixture
def registry(app_paths: AppPaths, cache: Path, manager: ModelManager) -> ModelRegistry:
    registry = ModelRegistry(app_paths, cache, manager)
    for spec in registry.loadable_specs():
        manager.register(spec)
    return registry


def snapshot(cache: Path, repo_id: str, commit: str) -> Path:
    return (hf_cache.repo_dir(cache, repo_id) / "snapshots" / commit).resolve()


# --- ModelManager.unregister ---------------------------------------------------------------------------


async def test_unregister_forgets_an_idle_model_and_unloads_a_loaded_one_first(
    manager: ModelManager, backend: GatedBackend, tmp_path: Path
) -> None:
    events: list[ManagerEvent] = []
    manager.subscribe(events.append)
    manager.register(ModelSpec("cold", "cold", mlx_lm.KIND, tmp_path))
    manager.register(ModelSpec("warm", "warm", mlx_lm.KIND, tmp_path))
    await manager.load("warm")
    await manager.unregister("cold")
    assert backend.unloads == 0
    await manager.unregister("warm")
    assert backend.unloads == 1
    assert manager.models() == []
    with pytest.raises(UnknownModelError):
        await manager.acquire("warm")
    states = [(e.model.spec.id, e.model.state, e.message) for e in events if e.model.spec.id == "warm"]
    assert states[-3:] == [("warm", ModelState.UNLOADING, "removed"), ("warm", ModelState.UNLOADED, "removed"),
                           ("warm", ModelState.UNLOADED, "removed")]  # fmt: skip
    manager.register(ModelSpec("warm", "warm", mlx_lm.KIND, tmp_path))  # it may come back (a new download)
    await manager.load("warm")


async def test_unregister_is_refused_while_leased_and_names_the_holders(manager: ModelManager, tmp_path: Path) -> None:
    manager.register(ModelSpec("m", "Model M", mlx_lm.KIND, tmp_path))
    chat = await manager.acquire("m", holder="chat")
    with pytest.raises(ModelInUseError, match="Model M is in use by chat"):
        await manager.unregister("m")
    unnamed = await manager.acquire("m")
    with pytest.raises(ModelInUseError, match="in use by chat, 1 more"):
        await manager.unregister("m")
    await chat.release()
    with pytest.raises(ModelInUseError, match="in use by 1 lease"):
        await manager.unregister("m")
    assert manager.info("m").state is ModelState.BUSY  # a refusal changes nothing
    await unnamed.release()
    await manager.unregister("m")
    assert manager.models() == []


async def test_unregister_is_refused_while_loading(
    manager: ModelManager, backend: GatedBackend, tmp_path: Path
) -> None:
    manager.register(ModelSpec("m", "Model M", mlx_lm.KIND, tmp_path))
    backend.gate.clear()
    load = asyncio.ensure_future(manager.load("m"))
    for _ in range(WAIT * 100):
        if manager.info("m").state is ModelState.LOADING:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(ModelInUseError, match="Model M is loading"):
        await manager.unregister("m")
    backend.gate.set()
    assert (await asyncio.wait_for(load, WAIT)).state is ModelState.READY
    await manager.unregister("m")
    assert manager.models() == []


# --- one answer for what is on disk ---------------------------------------------------------------------


def test_repo_statuses_say_absent_partial_loadable_or_why_not(registry: ModelRegistry, cache: Path) -> None:
    statuses = registry.repo_statuses([LLAMA, EMBEDDER, GGUF, UNSUPPORTED, PARTIAL, "org/elsewhere"])
    assert {repo: (s.presence, s.kind) for repo, s in statuses.items()} == {
        LLAMA: (Presence.DOWNLOADED, mlx_lm.KIND),
        EMBEDDER: (Presence.DOWNLOADED, sentence_transformers.KIND),
        GGUF: (Presence.DOWNLOADED, None),
        UNSUPPORTED: (Presence.DOWNLOADED, None),
        PARTIAL: (Presence.PARTIAL, None),
        "org/elsewhere": (Presence.ABSENT, None),
    }
    assert "import-gguf" in statuses[GGUF].why
    assert "no_such_arch" in statuses[UNSUPPORTED].why
    assert "unfinished" in statuses[PARTIAL].why
    labels = [statuses[repo].label for repo in (LLAMA, GGUF, PARTIAL, "org/elsewhere")]
    assert labels == ["downloaded", "can't load", "partial", "–"]


def test_the_catalog_the_models_view_ls_and_the_cache_view_agree(
    registry: ModelRegistry, manager: ModelManager, app_paths: AppPaths, tiny_models: dict[str, Path]
) -> None:
    shutil.copytree(tiny_models["small"], app_paths.models_dir / "my-import")
    contents = registry.cache_contents()
    loadable = {repo for repo, status in contents.statuses.items() if status.loadable}
    cached = {info.spec.id for info in manager.models() if info.spec.path.is_relative_to(registry.cache_dir.resolve())}
    assert loadable - {PARTIAL} == cached == {LLAMA, EMBEDDER}
    assert {s.repo_id for s in registry.repo_statuses(contents.statuses).values() if s.loadable} == loadable
    installed = {model.id: model for model in registry.installed()}
    assert {LLAMA, EMBEDDER, "my-import"} <= set(installed) and GGUF not in installed
    assert installed["my-import"].source == IMPORTED
    assert installed[LLAMA].path == snapshot(registry.cache_dir, LLAMA, "b" * 40)  # the newest revision loads
    assert manager.info(LLAMA).spec.path == installed[LLAMA].path
    assert {p.repo_id for p in contents.partials} == {PARTIAL}


# --- deleting through the registry ---------------------------------------------------------------------


async def test_deleting_a_repo_unregisters_its_model_first(registry: ModelRegistry, manager: ModelManager) -> None:
    await manager.load(LLAMA)
    freed = await registry.delete_repo(LLAMA)
    assert freed > 0 and not hf_cache.repo_dir(registry.cache_dir, LLAMA).exists()
    assert LLAMA not in {info.spec.id for info in manager.models()}
    assert EMBEDDER in {info.spec.id for info in manager.models()}


async def test_deleting_a_leased_repo_is_refused_with_the_reason(
    registry: ModelRegistry, manager: ModelManager
) -> None:
    lease = await manager.acquire(LLAMA, holder="compare")
    with pytest.raises(ModelInUseError, match=f"{LLAMA} is in use by compare"):
        await registry.delete_repo(LLAMA)
    assert hf_cache.repo_dir(registry.cache_dir, LLAMA).is_dir()
    assert manager.info(LLAMA).leases == 1
    await lease.release()
    with pytest.raises(ModelInUseError, match="in use"):
        async with await manager.acquire(LLAMA):
            await registry.delete_revision(LLAMA, "b" * 40)
    assert snapshot(registry.cache_dir, LLAMA, "b" * 40).is_dir()


async def test_deleting_the_newest_revision_brings_the_model_back_on_the_older_one(
    registry: ModelRegistry, manager: ModelManager
) -> None:
    await manager.load(LLAMA)
    await registry.delete_revision(LLAMA, "b" * 40)
    info = manager.info(LLAMA)
    assert info.spec.path == snapshot(registry.cache_dir, LLAMA, "a" * 40)
    assert info.state is ModelState.UNLOADED
    await registry.delete_revision(LLAMA, "a" * 40)  # the last one: the repo goes
    assert LLAMA not in {i.spec.id for i in manager.models()}


async def test_a_failed_delete_registers_the_model_again(
    registry: ModelRegistry, manager: ModelManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(hf_cache, "delete_repo", fail)
    with pytest.raises(PermissionError):
        await registry.delete_repo(EMBEDDER)
    assert manager.info(EMBEDDER).spec.kind == sentence_transformers.KIND


async def test_removing_an_import_unregisters_it(
    registry: ModelRegistry, manager: ModelManager, app_paths: AppPaths, tiny_models: dict[str, Path]
) -> None:
    shutil.copytree(tiny_models["small"], app_paths.models_dir / "my-import")
    (app_paths.models_dir / "linked").symlink_to(tiny_models["small"])
    for spec in registry.loadable_specs(include_cache=False):
        manager.register(spec)
    models = {model.id: model for model in registry.installed()}
    lease = await manager.acquire("linked", holder="an API request")
    with pytest.raises(ModelInUseError, match="in use by an API request"):
        await registry.remove(models["linked"])
    await lease.release()
    assert await registry.remove(models["linked"]) == 0  # only the link goes
    assert tiny_models["small"].is_dir() and not (app_paths.models_dir / "linked").exists()
    assert await registry.remove(models["my-import"]) > 0
    ids = {info.spec.id for info in manager.models()}
    assert not {"linked", "my-import"} & ids and LLAMA in ids
