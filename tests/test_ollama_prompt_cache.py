"""The prompt caches the manager keeps serve Ollama's /api/chat too: a client that resends the conversation with a
new question has only the new tokens read (prompt_eval_count, as Ollama counts it), on a real MLX model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import ollama
import pytest

from tests.support.ollama_app import ollama_on_mlx_model
from workbench.core.settings.paths import AppPaths

WAIT = 120
MODEL = "tiny-llama"
FEW = {"temperature": 0, "num_predict": 6}


@pytest.fixture
async def client(app_paths: AppPaths, tiny_models: dict[str, Path]) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama_on_mlx_model(app_paths, MODEL, tiny_models["small"], WAIT) as client:
        yield client


async def test_a_follow_up_reads_only_its_new_tokens(client: ollama.AsyncClient) -> None:
    system = {"role": "system", "content": "You answer questions about the weather, briefly. " * 6}
    messages = [system, {"role": "user", "content": "Will it rain in Lisbon tomorrow?"}]
    first = await client.chat(MODEL, messages=messages, options=FEW)
    assert first.prompt_eval_count and first.prompt_eval_count > 60  # the whole prompt read: nothing kept yet

    messages += [{"role": "assistant", "content": first.message.content or ""},
                 {"role": "user", "content": "And in Porto?"}]  # fmt: skip
    follow_up = await client.chat(MODEL, messages=messages, options=FEW)
    assert follow_up.prompt_eval_count is not None
    # the earlier turn came from the kept cache: what was read is the new question and the template around it
    assert 0 < follow_up.prompt_eval_count < 40 < first.prompt_eval_count, (first.prompt_eval_count,
                                                                            follow_up.prompt_eval_count)  # fmt: skip


def adds_up(answer: ollama.ChatResponse) -> bool:
    parts = [answer.load_duration or 0, answer.prompt_eval_duration or 0, answer.eval_duration or 0]
    total = answer.total_duration or 0
    return total > 0 and all(part >= 0 for part in parts) and sum(parts) <= total  # measured times, no slack


async def test_the_durations_add_up_with_a_load_and_with_a_kept_cache(client: ollama.AsyncClient) -> None:
    """Clients compute speeds from them (Open WebUI shows prompt tokens/s): the load is not counted twice, and the
    prompt's time is that of the tokens read."""
    messages = [{"role": "user", "content": "Name three rivers of Europe, please. " * 8}]
    first = await client.chat(MODEL, messages=messages, options=FEW)  # the model is loaded for it
    assert first.load_duration and adds_up(first), first
    messages += [{"role": "assistant", "content": first.message.content or ""},
                 {"role": "user", "content": "And of Asia?"}]  # fmt: skip
    follow_up = await client.chat(MODEL, messages=messages, options=FEW)
    assert follow_up.load_duration == 0 and adds_up(follow_up), follow_up
