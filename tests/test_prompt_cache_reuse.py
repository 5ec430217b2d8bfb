"""Prompt-cache reuse through the real path: tiny random-weight llamas on the real MlxLmBackend, ModelManager,
inference thread and ChatRun. Follow-ups, regenerate and edit-last read only what is new, a trimmed conversation
falls back honestly, the caches count against the budget and go before any model, a stop while reading keeps what
was read, and the answers are the same with and without a cache."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from workbench.core.chat.figures import GenerationFigures
from workbench.core.chat.run import ChatMessage, ChatRun, ContextTrimmed, Finished, Reading, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.compare.run import Contender, MemoryPlan, PlanKind
from workbench.core.compare.session import CompareSession
from workbench.core.models.backends.mlx_generation import ChunkSizer, generate_with_cache
from workbench.core.models.backends.mlx_lm import MlxLmBackend, prompt_tokens
from workbench.core.models.backends.protocol import GenerationStep, PromptProgress
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelSpec, ModelState
from workbench.core.prompt_cache import PromptCacheStore
from workbench.core.prompt_cache.disk import PromptCacheDisk
from workbench.core.prompt_cache.reuse import PromptReuse, chat_cache_key, sweep_compare_caches
from workbench.core.prompt_cache.store import common_prefix
from workbench.core.storage.store import Store

GREEDY = SamplingSettings(temperature=0.0, max_tokens=6)
SYSTEM = ChatMessage("system", " ".join(f"w{i}" for i in range(10, 40)))
FIRST = ChatMessage("user", "w1 w2 w3 w4 w5 w6")
SECOND = ChatMessage("user", "w7 w8 w9")


def words(start: int, count: int) -> str:
    return " ".join(f"w{(start + i) % 120 + 3}" for i in range(count))


async def make_manager(models: dict[str, Path], disk: PromptCacheDisk | None = None, budget: int = GB,
                       cache_limit: int = GB) -> ModelManager:  # fmt: skip
    manager = ModelManager({"mlx-lm": MlxLmBackend()}, Budget(budget, "test"), InferenceThread(), idle_unload_s=None,
                           prompt_caches=PromptCacheStore(cache_limit), prompt_cache_disk=disk)  # fmt: skip
    for name in ("small", "medium"):
        manager.register(ModelSpec(id=name, name=name, kind="mlx-lm", path=models[name]))
    return manager


@pytest.fixture
async def manager(tiny_models: dict[str, Path]) -> AsyncIterator[ModelManager]:
    manager = await make_manager(tiny_models)
    yield manager
    await manager.aclose()


async def answer(
    manager: ModelManager,
    messages: list[ChatMessage],
    model: str = "small",
    sampling: SamplingSettings = GREEDY,
    conversation: str | None = None,
) -> tuple[str, list[Any]]:
    """The text of one answer and every event it produced."""
    run = ChatRun(manager, model, messages, sampling, conversation=conversation)
    events = [event async for event in run.events()]
    return "".join(e.text for e in events if isinstance(e, Token)), events


def finished(events: list[Any]) -> Finished:
    ends = [e for e in events if isinstance(e, Finished)]
    assert len(ends) == 1
    return ends[0]


async def tokens_of(manager: ModelManager, messages: list[ChatMessage], model: str = "small") -> list[int]:
    lease = await manager.acquire(model)
    try:
        return await manager.inference.run(prompt_tokens, lease.handle, [m.as_dict() for m in messages])
    finally:
        await lease.release()


async def test_a_follow_up_reads_only_its_new_tokens(manager: ModelManager) -> None:
    first = [SYSTEM, FIRST]
    text, events = await answer(manager, first)
    assert finished(events).figures is not None and finished(events).figures.cached_tokens == 0
    follow_up = [*first, ChatMessage("assistant", text), SECOND]
    _, events = await answer(manager, follow_up)
    figures = finished(events).figures
    assert figures is not None
    before, after = await tokens_of(manager, first), await tokens_of(manager, follow_up)
    # everything the first prompt and the re-rendered answer share with the follow-up comes from the cache
    assert figures.cached_tokens >= len(before)
    assert figures.prompt_tokens == len(after) and figures.cached_tokens < figures.prompt_tokens
    readings = [e for e in events if isinstance(e, Reading)]
    assert readings and readings[0].cached == readings[0].done == figures.cached_tokens
    assert [r.done for r in readings] == sorted(r.done for r in readings)
    assert readings[-1].done == len(after) - 1  # the last token is read with the first one generated
    assert "cached" in figures.summary()


async def test_regenerate_and_edit_last_trim_back_to_the_shared_prefix(manager: ModelManager) -> None:
    first = [SYSTEM, FIRST]
    await answer(manager, first)
    prompt = await tokens_of(manager, first)
    _, events = await answer(manager, first)  # regenerate: the same prompt again
    assert finished(events).figures.cached_tokens == len(prompt) - 1  # one token is always read
    edited = [SYSTEM, ChatMessage("user", "w1 w2 w90 w91")]
    _, events = await answer(manager, edited)
    assert finished(events).figures.cached_tokens == common_prefix(prompt, await tokens_of(manager, edited))


async def test_a_conversation_trimmed_to_fit_falls_back_to_a_full_prefill(tiny_models: dict[str, Path]) -> None:
    manager = await make_manager(tiny_models)
    manager.context_length = 90
    try:
        history = [SYSTEM, ChatMessage("user", words(0, 20)), ChatMessage("assistant", words(20, 20)),
                   ChatMessage("user", words(40, 5))]  # fmt: skip
        _, events = await answer(manager, history, sampling=SamplingSettings(temperature=0.0, max_tokens=2))
        text = "".join(e.text for e in events if isinstance(e, Token))
        longer = [*history, ChatMessage("assistant", text), ChatMessage("user", words(60, 10))]
        _, events = await answer(manager, longer, sampling=SamplingSettings(temperature=0.0, max_tokens=2))
        assert any(isinstance(e, ContextTrimmed) for e in events)
        figures = finished(events).figures
        system_only = await tokens_of(manager, [SYSTEM])
        # the oldest turns went: only the system prompt (and the template's start) is shared with what was cached
        assert 0 < figures.cached_tokens <= len(system_only) + 1
    finally:
        await manager.aclose()


async def test_caches_count_against_the_budget_and_go_before_any_model(tiny_models: dict[str, Path]) -> None:
    manager = await make_manager(tiny_models)
    try:
        await answer(manager, [SYSTEM, FIRST])
        held = manager.prompt_caches.bytes_used
        assert held > 0 and manager.held_bytes() == manager.model_bytes() + held
        # a budget with room for both models but not for the cache too: loading the second evicts the cache only
        small_cost = manager.cost_of("small")
        medium_cost = manager.cost_of("medium")
        assert small_cost and medium_cost
        manager.set_budget(Budget(small_cost + medium_cost + held // 2, "test"))
        await manager.load("medium")
        assert manager.info("small").state is ModelState.READY
        assert manager.prompt_caches.bytes_used == 0
        assert manager.held_bytes() <= manager.budget.bytes
    finally:
        await manager.aclose()


async def test_unloading_a_model_drops_its_caches(manager: ModelManager) -> None:
    await answer(manager, [SYSTEM, FIRST], model="small")
    await answer(manager, [SYSTEM, FIRST], model="medium")
    assert manager.prompt_caches.entries("small") and manager.prompt_caches.entries("medium")
    await manager.unload("small")
    assert not manager.prompt_caches.entries("small") and manager.prompt_caches.entries("medium")
    assert manager.prompt_caches.bytes_used == sum(e.nbytes for e in manager.prompt_caches.entries("medium"))


async def test_the_store_keeps_within_the_room_the_models_leave(tiny_models: dict[str, Path]) -> None:
    manager = await make_manager(tiny_models)
    try:
        await manager.load("small")
        manager.set_budget(Budget(manager.model_bytes() + 10, "test"))  # no room beside the model
        await answer(manager, [SYSTEM, FIRST])
        assert manager.prompt_caches.bytes_used == 0
    finally:
        await manager.aclose()


async def test_a_zero_limit_turns_reuse_off(tiny_models: dict[str, Path]) -> None:
    manager = await make_manager(tiny_models, cache_limit=0)
    try:
        await answer(manager, [SYSTEM, FIRST])
        _, events = await answer(manager, [SYSTEM, FIRST])
        assert finished(events).figures.cached_tokens == 0 and manager.prompt_caches.bytes_used == 0
    finally:
        await manager.aclose()


def test_a_stop_while_reading_keeps_what_was_read(tiny_models: dict[str, Path]) -> None:
    """Stepped by hand on this thread: each step reads one chunk; closing between two keeps the cache."""
    from mlx_lm import load

    model, tokenizer = load(str(tiny_models["small"]))
    loaded = _Loaded(model, tokenizer)
    store = PromptCacheStore(GB)
    prompt = [3 + (i % 100) for i in range(200)]
    steps = generate_with_cache(loaded, prompt, GREEDY, 4, PromptReuse(store), clock=_Ticks(0.1).next)
    first = next(steps)
    assert isinstance(first, PromptProgress) and first.done == 0
    second = next(steps)
    assert isinstance(second, PromptProgress) and 0 < second.done < len(prompt) - 1
    steps.close()  # what the inference thread does when Esc is pressed
    (entry,) = store.entries("small")
    assert list(entry.tokens) == prompt[: second.done]


def test_chunks_are_sized_to_the_target_time_and_grow_gently() -> None:
    sizer = ChunkSizer(target_s=0.25, first=8, largest=2048)
    sizer.record(8, 0.8)  # 10 tokens/s: a quarter second is 2 or 3 tokens
    assert sizer.size == 2
    sizer.record(2, 0.0001)  # very fast now: at most four times the last chunk
    assert sizer.size == 8
    for _ in range(10):
        sizer.record(sizer.size, 0.0001)
    assert sizer.size == 2048
    sizer.record(0, 1.0)
    assert sizer.size == 2048
    sizer.record(1, 100.0)
    assert sizer.size == 1


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_answers_are_the_same_with_and_without_a_cache(tiny_models: dict[str, Path], penalty: float) -> None:
    """Greedy tokens on a tiny model: from a cache, from a fresh prefill in chunks, and from plain mlx-lm."""
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_logits_processors

    model, tokenizer = load(str(tiny_models["medium"]))
    loaded = _Loaded(model, tokenizer, "medium")
    sampling = SamplingSettings(temperature=0.0, max_tokens=12, repetition_penalty=penalty)
    conversation = [SYSTEM.as_dict(), FIRST.as_dict()]
    store = PromptCacheStore(GB)
    first = [s for s in generate_with_cache(loaded, prompt_tokens(loaded, conversation), sampling, 6,
                                            PromptReuse(store)) if isinstance(s, GenerationStep)]  # fmt: skip
    said = tokenizer.decode([s.token for s in first if s.finish_reason != "stop"])
    follow_up = [*conversation, {"role": "assistant", "content": said}, SECOND.as_dict()]
    prompt = prompt_tokens(loaded, follow_up)

    def ours(reuse: PromptReuse | None) -> tuple[list[int], int]:
        steps = [s for s in generate_with_cache(loaded, prompt, sampling, 12, reuse) if isinstance(s, GenerationStep)]
        return [s.token for s in steps], steps[-1].cached_tokens

    cached, cached_count = ours(PromptReuse(store))
    fresh, fresh_count = ours(None)
    processors = make_logits_processors(repetition_penalty=penalty if penalty != 1.0 else None)
    plain = [r.token for r in stream_generate(model, tokenizer, prompt, max_tokens=12, logits_processors=processors)]
    assert cached_count > len(prompt) // 2 and fresh_count == 0
    assert cached == fresh == plain


async def test_a_reopened_chat_reads_its_cache_from_disk(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    key = chat_cache_key(7)
    first = [SYSTEM, FIRST]
    manager = await make_manager(tiny_models, disk=PromptCacheDisk(tmp_path / "caches", GB))
    try:
        text, _ = await answer(manager, first, conversation=key)
    finally:
        await manager.aclose()
    (saved,) = (tmp_path / "caches").glob(f"{key}--*")
    assert saved.stat().st_mode & 0o777 == 0o600

    restarted = await make_manager(tiny_models, disk=PromptCacheDisk(tmp_path / "caches", GB))  # an empty store
    try:
        follow_up = [*first, ChatMessage("assistant", text), SECOND]
        _, events = await answer(restarted, follow_up, conversation=key)
        assert finished(events).figures.cached_tokens >= len(await tokens_of(restarted, first))
        _, events = await answer(restarted, [SYSTEM, SECOND], model="medium", conversation=chat_cache_key(8))
        assert finished(events).figures.cached_tokens == 0  # another chat, another model: nothing of chat 7's
        restarted.forget_saved_cache(key)  # the chat was deleted
        await restarted.inference.run(lambda: None)  # after the jobs before it
        assert not list((tmp_path / "caches").glob(f"{key}--*"))
        assert list((tmp_path / "caches").glob(f"{chat_cache_key(8)}--*"))
        await restarted.unregister("medium")  # the model's files are going away: its saved caches go too
        assert not list((tmp_path / "caches").glob("*.safetensors"))
    finally:
        await restarted.aclose()


async def test_a_saved_cache_of_other_model_files_is_not_used(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    key = chat_cache_key(3)
    first = [SYSTEM, FIRST]
    tiny_models = {**tiny_models, "small": Path(shutil.copytree(tiny_models["small"], tmp_path / "small"))}
    manager = await make_manager(tiny_models, disk=PromptCacheDisk(tmp_path / "caches", GB))
    try:
        text, _ = await answer(manager, first, conversation=key)
    finally:
        await manager.aclose()
    config = tiny_models["small"] / "config.json"
    config.write_text(config.read_text() + " ")  # the model's files changed since (a re-download, a new import)
    restarted = await make_manager(tiny_models, disk=PromptCacheDisk(tmp_path / "caches", GB))
    try:
        _, events = await answer(restarted, [*first, ChatMessage("assistant", text), SECOND], conversation=key)
        assert finished(events).figures.cached_tokens == 0
    finally:
        await restarted.aclose()


class _Loaded:
    """What generate_with_cache needs of a loaded model, for tests that step it on their own thread."""

    def __init__(self, model: Any, tokenizer: Any, model_id: str = "small") -> None:
        self.model, self.tokenizer, self.model_id, self.fingerprint = model, tokenizer, model_id, ""


class _Ticks:
    """A clock that advances ``step`` seconds a reading: every chunk looks slow, so chunks stay small."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def next(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("kind", [PlanKind.TOGETHER, PlanKind.SEQUENTIAL])
async def test_compare_follow_ups_reuse_each_sides_own_cache(
    tiny_models: dict[str, Path], tmp_path: Path, kind: PlanKind
) -> None:
    """Together, both models stay loaded and their caches in memory; one after the other, A is unloaded for B (its
    caches dropped with it) and its follow-up reads the cache its conversation saved."""
    manager = await make_manager(tiny_models, disk=PromptCacheDisk(tmp_path / "caches", GB))
    store = Store(tmp_path / "workbench.sqlite3")
    session = CompareSession(manager, store)
    a, b = Contender("small", "small", GREEDY), Contender("medium", "medium", GREEDY)
    plan = MemoryPlan(kind, "test")

    async def ask(prompt: str) -> dict[str, GenerationFigures]:
        turn = session.ask(prompt, a, b, plan)
        async for _ in turn.events():
            pass
        figures = {side: turn.results[side].figures for side in ("a", "b")}
        assert all(f is not None for f in figures.values()), turn.results.errors
        return figures  # type: ignore[return-value]

    try:
        first = await ask("w1 w2 w3 w4")
        assert first["a"].cached_tokens == first["b"].cached_tokens == 0
        follow_up = await ask("w5 w6")
        for side in ("a", "b"):
            assert follow_up[side].cached_tokens >= first[side].prompt_tokens, side
        saved = list((tmp_path / "caches").glob("compare-*"))
        assert len(saved) == (2 if kind is PlanKind.SEQUENTIAL else 0)
        session.clear()  # a new conversation: the old one's saved caches go
        await manager.inference.run(lambda: None)
        assert not list((tmp_path / "caches").glob("compare-*"))
    finally:
        await manager.aclose()
        store.close()


def test_compare_caches_left_by_an_earlier_run_are_swept(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    model, _ = load(str(tiny_models["small"]))
    disk = PromptCacheDisk(tmp_path / "caches", GB)
    for key in ("compare-0a1b2c3d-a", "chat-4"):
        cache = make_prompt_cache(model)
        model(mx.array([[3, 4, 5]]), cache=cache)
        disk.save(key, "small", "", [3, 4, 5], cache)
    assert sweep_compare_caches(disk) == 1
    assert [entry.key for entry in disk.entries()] == ["chat-4"]
