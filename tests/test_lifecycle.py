"""ModelManager on tiny random-weight MLX models (real mlx-lm loads on the real inference thread)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from workbench.core.models.backends.mlx_lm import LoadedLanguageModel, MlxLmBackend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ManagerEvent, ModelManager
from workbench.core.models.memory import GB, MB, Budget, MemoryEstimate
from workbench.core.models.spec import ModelBusyError, ModelDoesNotFitError, ModelLoadError, ModelSpec, ModelState

WAIT = 30  # seconds; every wait in these tests is bounded


class CountingBackend(MlxLmBackend):
    """The real MLX backend, counting loads and noting the thread each one ran on."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.unloads = 0
        self.threads: set[str] = set()
        self.gate: threading.Event | None = None

    def load(self, spec: ModelSpec) -> LoadedLanguageModel:
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        self.threads.add(threading.current_thread().name)
        self.loads.append(spec.id)
        return super().load(spec)

    def unload(self, handle: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.unloads += 1
        super().unload(handle)


def spec(name: str, path: Path) -> ModelSpec:
    return ModelSpec(id=name, name=name, kind="mlx-lm", path=path)


@pytest.fixture
async def backend() -> CountingBackend:
    return CountingBackend()


def make_manager(backend: CountingBackend, budget: int, models: dict[str, Path], **kw: Any) -> ModelManager:
    manager = ModelManager(
        backends={"mlx-lm": backend},
        budget=Budget(budget, "test"),
        inference=InferenceThread(),
        context_length=kw.pop("context_length", 256),
        idle_unload_s=kw.pop("idle_unload_s", None),
        **kw,
    )
    for name, path in models.items():
        manager.register(spec(name, path))
    return manager


def cost(manager: ModelManager, model_id: str) -> int:
    estimate = manager.info(model_id).estimate
    assert estimate is not None
    return estimate.total


async def test_estimate_reads_headers_and_kv_cache(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    manager = make_manager(backend, 1 << 40, {"small": tiny_models["small"]}, context_length=1000)
    estimate = manager.info("small").estimate
    weights = (tiny_models["small"] / "model.safetensors").stat().st_size
    assert estimate is not None
    assert 0.95 * weights < estimate.weights <= weights  # the file is tensors plus a small header
    # 2 (k, v) x 2 layers x 2 kv heads x 16 head dim x 1000 tokens x 4 bytes (float32)
    assert estimate.kv_cache == 2 * 2 * 2 * 16 * 1000 * 4
    await manager.aclose()


async def test_measured_memory_matches_estimate(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    manager = make_manager(backend, 1 << 40, {"quantized": tiny_models["quantized"]})
    info = await manager.load("quantized")
    assert info.state is ModelState.READY
    assert info.estimate is not None and info.measured is not None
    # MLX allocates up to ~1 MiB once per process or thread (bench/memory.py sees it on the first load);
    # against a 230 KB model that constant would swamp a relative check.
    assert abs(info.measured - info.estimate.weights) <= 0.15 * info.estimate.weights + MB
    await manager.aclose()


async def test_concurrent_acquires_load_once_and_share(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    manager = make_manager(backend, 1 << 40, {"small": tiny_models["small"]})
    backend.gate = threading.Event()
    loading = asyncio.Event()
    manager.subscribe(lambda e: loading.set() if e.model.state is ModelState.LOADING else None)
    tasks = [asyncio.create_task(manager.acquire("small")) for _ in range(5)]
    await asyncio.wait_for(loading.wait(), WAIT)
    assert manager.info("small").state is ModelState.LOADING
    backend.gate.set()
    leases = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert backend.loads == ["small"]
    assert len({id(lease.handle) for lease in leases}) == 1
    assert manager.info("small").state is ModelState.BUSY
    assert manager.info("small").leases == 5
    for lease in leases:
        await lease.release()
    assert manager.info("small").state is ModelState.READY
    assert manager.info("small").leases == 0
    await manager.aclose()


async def test_all_mlx_work_runs_on_the_one_inference_thread(
    tiny_models: dict[str, Path], backend: CountingBackend
) -> None:
    manager = make_manager(backend, 1 << 40, {"small": tiny_models["small"], "medium": tiny_models["medium"]})
    await manager.load("small")
    await manager.load("medium")
    await manager.unload("small")
    assert backend.threads == {manager.inference.thread.name}
    assert manager.inference.thread is not threading.current_thread()
    await manager.aclose()


async def test_lru_eviction_order(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    models = {name: tiny_models["small"] for name in ("a", "b", "c")}
    probe = make_manager(backend, 1 << 40, models)
    one = cost(probe, "a")
    await probe.aclose()

    clock = iter(range(1000))
    manager = make_manager(backend, int(2.5 * one), models, clock=lambda: float(next(clock)))
    await manager.load("a")
    await manager.load("b")
    async with await manager.acquire("a"):  # a is now more recently used than b
        pass
    events: list[ManagerEvent] = []
    manager.subscribe(events.append)
    await manager.load("c")
    assert manager.info("b").state is ModelState.UNLOADED
    assert manager.info("a").state is ModelState.READY
    assert manager.info("c").state is ModelState.READY
    evicted = [e for e in events if e.model.state is ModelState.UNLOADED]
    assert [e.model.spec.id for e in evicted] == ["b"]
    assert "evicted to make room for c" in evicted[0].message
    assert manager.held_bytes() <= manager.budget.bytes
    await manager.aclose()


async def test_refusal_names_what_to_unload(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    models = {"a": tiny_models["small"], "b": tiny_models["small"], "big": tiny_models["large"]}
    probe = make_manager(backend, 1 << 40, models)
    small, big = cost(probe, "a"), cost(probe, "big")
    await probe.aclose()
    assert big > small

    manager = make_manager(backend, small + big - 1, models)
    lease = await manager.acquire("a")  # in use: cannot be evicted
    with pytest.raises(ModelDoesNotFitError) as refused:
        await manager.acquire("big")
    assert "a (in use" in str(refused.value)
    assert manager.info("big").state is ModelState.UNLOADED
    assert manager.info("big").error == str(refused.value)
    assert backend.loads == ["a"]  # nothing was loaded, nothing evicted
    await lease.release()

    manager.pin("a")
    with pytest.raises(ModelDoesNotFitError, match=r"a \(pinned"):
        await manager.load("big")
    manager.pin("a", False)
    await manager.load("big")  # now a may be evicted
    assert manager.info("a").state is ModelState.UNLOADED
    await manager.aclose()


async def test_refusal_when_larger_than_the_whole_budget(
    tiny_models: dict[str, Path], backend: CountingBackend
) -> None:
    manager = make_manager(backend, 1000, {"big": tiny_models["large"]})
    with pytest.raises(ModelDoesNotFitError, match="more than the whole budget"):
        await manager.load("big")
    assert backend.loads == []
    await manager.aclose()


async def test_idle_unload_and_pinning(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    manager = make_manager(backend, 1 << 40, {"a": tiny_models["small"], "b": tiny_models["small"]},
                           idle_unload_s=0.2)  # fmt: skip
    unloaded = asyncio.Event()
    manager.subscribe(lambda e: unloaded.set() if e.model.spec.id == "a" and e.model.state == "unloaded" else None)
    manager.pin("b")
    await manager.load("a")
    await manager.load("b")
    await asyncio.wait_for(unloaded.wait(), WAIT)
    assert manager.info("a").state is ModelState.UNLOADED
    await asyncio.sleep(0.4)  # well past the idle time: the pinned model stays
    assert manager.info("b").state is ModelState.READY
    await manager.aclose()


async def test_in_use_model_is_not_idle_unloaded(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    manager = make_manager(backend, 1 << 40, {"a": tiny_models["small"]}, idle_unload_s=0.1)
    lease = await manager.acquire("a")
    await asyncio.sleep(0.3)
    assert manager.info("a").state is ModelState.BUSY
    with pytest.raises(ModelBusyError):
        await manager.unload("a")
    await lease.release()
    await manager.aclose()


async def test_failed_load_has_a_reason_and_can_retry(tmp_path: Path, tiny_models: dict[str, Path],
                                                      backend: CountingBackend) -> None:  # fmt: skip
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture", "num_hidden_layers": 1}')
    (broken / "model.safetensors").write_bytes((tiny_models["small"] / "model.safetensors").read_bytes())
    manager = make_manager(backend, 1 << 40, {"broken": broken})
    with pytest.raises(ModelLoadError, match="broken failed to load"):
        await manager.load("broken")
    info = manager.info("broken")
    assert info.state is ModelState.FAILED
    assert info.error and "no-such-architecture" in info.error
    with pytest.raises(ModelLoadError):  # a second try really tries again
        await manager.load("broken")
    assert backend.loads == ["broken", "broken"]
    await manager.aclose()


async def test_states_seen_by_subscribers(tiny_models: dict[str, Path], backend: CountingBackend) -> None:
    manager = make_manager(backend, 1 << 40, {"a": tiny_models["small"]})
    states: list[str] = []
    manager.subscribe(lambda e: states.append(e.model.state.value))
    lease = await manager.acquire("a")
    await lease.release()
    await manager.unload("a")
    assert states == ["loading", "ready", "busy", "ready", "unloading", "unloaded"]
    await manager.aclose()


def test_budget_arithmetic() -> None:
    from workbench.core.models.memory import GB, resolve_budget

    assert resolve_budget(4.0, 0.5, total_bytes=16 * GB).bytes == 4 * GB
    fraction = resolve_budget(None, 0.6, total_bytes=16 * GB)
    assert fraction.bytes == int(0.6 * 16 * GB)
    assert "60%" in fraction.source
    estimate = MemoryEstimate(weights=100, kv_cache=20, overhead=3)
    assert estimate.total == 123


# --- roles ---------------------------------------------------------------------------------------------


async def test_a_models_role_is_its_backends_and_every_reader_takes_it_from_the_manager(tmp_path: Path) -> None:
    """Kinds say nothing about roles: a chat backend of a kind nobody knows is a chat model everywhere."""
    from tests.support.fake_chat import FakeChatBackend
    from tests.support.fake_embedder import FakeEmbeddingBackend
    from workbench.core.chat.run import ChatError, ChatRun, Finished
    from workbench.core.chat.sampling import SamplingSettings
    from workbench.core.embeddings.cache import EmbeddingCache
    from workbench.core.embeddings.embedder import Embedder
    from workbench.core.models.spec import ModelRole
    from workbench.server.openai import chat_model_ids

    chat, embed = FakeChatBackend(kind="someone-elses-chat"), FakeEmbeddingBackend()
    manager = ModelManager({chat.kind: chat, embed.kind: embed}, Budget(GB, "test"), InferenceThread(),
                           idle_unload_s=None)  # fmt: skip
    manager.register(ModelSpec("talker", "Talker", chat.kind, tmp_path))
    manager.register(ModelSpec("vectors", "Vectors", embed.kind, tmp_path))
    try:
        assert [(info.spec.id, info.role) for info in manager.models()] == [
            ("talker", ModelRole.CHAT), ("vectors", ModelRole.EMBED)]  # fmt: skip
        assert manager.role_of("talker") is ModelRole.CHAT and manager.role_of("vectors") is ModelRole.EMBED
        assert manager.ids(ModelRole.CHAT) == chat_model_ids(manager) == ["talker"]
        assert Embedder(manager, EmbeddingCache(tmp_path / "vectors")).model_ids() == ["vectors"]
        events = [event async for event in ChatRun(manager, "talker", [], SamplingSettings()).events()]
        assert isinstance(events[-1], Finished)
        with pytest.raises(ChatError, match="not a chat model"):
            [event async for event in ChatRun(manager, "vectors", [], SamplingSettings()).events()]
    finally:
        await manager.aclose()
