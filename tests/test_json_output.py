"""Constrained JSON output on MLX (llguidance): random-weight byte-level llamas, which would write noise, write JSON
that validates whenever they stop; the mask follows the logits' width and every EOS id; one check on the real
SmolLM2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.answers import run_events, run_to_end
from tests.support.tiny_models import BYTE_VOCAB_SIZE, make_tiny_byte_llama
from workbench.core.chat.output import OutputRules, check_rules
from workbench.core.chat.run import ChatMessage, ChatRun, Finished, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.mlx_json import JsonLogitsProcessor
from workbench.core.models.backends.mlx_lm import MlxLmBackend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelSpec

WAIT = 120
PADDED = 320  # the tiny byte models' logits are wider than their 259-token vocabulary
EOS = 2
# Bounded in every direction: a random model must reach its end (at most ~250 byte tokens).
BOUNDED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "color": {"enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
    },
    "required": ["name", "color", "ok", "tags"],
    "additionalProperties": False,
}
RANDOM = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=400)


@pytest.fixture(scope="module")
def byte_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("byte-models")
    two_eos = make_tiny_byte_llama(root / "two-eos", seed=6)
    config = json.loads((two_eos / "config.json").read_text())
    (two_eos / "config.json").write_text(json.dumps({**config, "eos_token_id": [EOS, 1]}))
    return {"bytes": make_tiny_byte_llama(root / "bytes", seed=5), "two-eos": two_eos}


@pytest.fixture
async def manager(byte_models: dict[str, Path]) -> AsyncIterator[ModelManager]:
    manager = ModelManager({"mlx-lm": MlxLmBackend()}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    for name, folder in byte_models.items():
        manager.register(ModelSpec(id=name, name=name, kind="mlx-lm", path=folder))
    yield manager
    await manager.aclose()


async def answer(manager: ModelManager, rules: OutputRules, sampling: SamplingSettings = RANDOM,
                 model: str = "bytes", prompt: str | None = None) -> tuple[str, Finished]:  # fmt: skip
    run = ChatRun(manager, model, [ChatMessage("user", "Describe a fruit.")], sampling, rules=rules, prompt=prompt)
    return await run_to_end(run, WAIT)


@pytest.mark.parametrize("seed", range(5))
async def test_a_random_model_writes_json_that_validates(manager: ModelManager, seed: int) -> None:
    rules = check_rules(json_schema=BOUNDED)
    text, finished = await answer(manager, rules, SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=400,
                                                                   seed=seed))  # fmt: skip
    assert finished.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), BOUNDED)


async def test_every_sampler_setting_keeps_to_the_mask(manager: ModelManager) -> None:
    sampling = SamplingSettings(temperature=0.8, top_p=0.9, min_p=0.05, top_k=20, repetition_penalty=1.3,
                                max_tokens=400, seed=7)  # fmt: skip
    text, finished = await answer(manager, check_rules(json_schema=BOUNDED), sampling)
    assert finished.finish_reason == "stop", text
    jsonschema.validate(json.loads(text), BOUNDED)


async def test_any_json_object_parses_when_it_stops(manager: ModelManager) -> None:
    """A random model may nest objects without end: at "length" the text need not parse (and is said so)."""
    reasons = []
    for seed in range(4):
        sampling = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=200, seed=seed)
        text, finished = await answer(manager, check_rules(json_object=True), sampling)
        reasons.append(finished.finish_reason)
        if finished.finish_reason == "stop":
            assert isinstance(json.loads(text), dict), text
        else:
            assert finished.finish_reason == "length" and text.startswith("{")
    assert "stop" in reasons


async def test_a_raw_prompt_and_a_stop_sequence_do_not_break_the_json(manager: ModelManager) -> None:
    rules = check_rules(json_schema=BOUNDED, stop=['"'])  # the stop would cut every answer: JSON rules ignore it
    text, finished = await answer(manager, rules, prompt="The fruit as JSON: ")
    assert finished.finish_reason == "stop"
    jsonschema.validate(json.loads(text), BOUNDED)


async def test_greedy_answers_are_the_same_twice_and_the_tokenizer_is_converted_once(manager: ModelManager) -> None:
    greedy = SamplingSettings(temperature=0.0, max_tokens=400)
    first, _ = await answer(manager, check_rules(json_schema=BOUNDED), greedy)
    second, _ = await answer(manager, check_rules(json_schema=BOUNDED), greedy)
    assert first == second
    async with await manager.acquire("bytes") as lease:
        kept = lease.handle.guidance_tokenizers
        assert list(kept) == [PADDED] and kept[PADDED].eos_tokens == [EOS]


# --- the processor step by step --------------------------------------------------------------------


def allowed_ids(processor: JsonLogitsProcessor, tokens: list[int]) -> set[int]:
    import mlx.core as mx

    masked = processor(mx.array(tokens), mx.zeros((1, PADDED)))
    return {i for i, value in enumerate(masked[0].tolist()) if value != float("-inf")}


def byte_id(loaded: Any, text: str) -> int:
    (token,) = loaded.tokenizer.encode(text, add_special_tokens=False)
    return int(token)


@pytest.mark.parametrize("model", ["bytes", "two-eos"])
def test_the_mask_follows_the_grammar_the_logits_width_and_every_eos(byte_models: dict[str, Path],
                                                                     model: str) -> None:  # fmt: skip
    loaded = MlxLmBackend().load(ModelSpec(id=model, name=model, kind="mlx-lm", path=byte_models[model]))
    schema = {"type": "object", "properties": {"a": {"enum": [1]}}, "required": ["a"], "additionalProperties": False}
    processor = JsonLogitsProcessor(loaded, check_rules(json_schema=schema))
    prompt = [byte_id(loaded, "x")]
    assert allowed_ids(processor, prompt) == {byte_id(loaded, "{")}
    written: list[int] = []
    for char in '{"a": 1':
        written.append(byte_id(loaded, char))
        assert max(allowed_ids(processor, prompt + written)) < BYTE_VOCAB_SIZE  # never the padding
    written.append(byte_id(loaded, "}"))
    eos = {EOS, 1} if model == "two-eos" else {EOS}
    assert allowed_ids(processor, prompt + written) == eos
    assert allowed_ids(processor, [*prompt, *written, EOS]) == eos  # mlx-lm's one more call after EOS


# --- the real model --------------------------------------------------------------------------------


@pytest.mark.real_model
async def test_smollm2_answers_in_the_schema(smollm2_dir: Path) -> None:
    manager = ModelManager({"mlx-lm": MlxLmBackend()}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(ModelSpec(id="smol", name="SmolLM2", kind="mlx-lm", path=smollm2_dir))
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "continent": {"enum": ["Europe", "Asia", "Africa", "America", "Oceania"]},
            "sights": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2},
        },
        "required": ["city", "continent", "sights"],
        "additionalProperties": False,
    }
    try:
        question = [ChatMessage("user", "Tell me about Paris as JSON.")]
        greedy = SamplingSettings(temperature=0.0, max_tokens=60)
        run = ChatRun(manager, "smol", question, greedy, rules=check_rules(json_schema=schema))
        events = await run_events(run, WAIT)
    finally:
        await manager.aclose()
    text = "".join(e.text for e in events if isinstance(e, Token))
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.finish_reason == "stop", text
    document = json.loads(text)
    jsonschema.validate(document, schema)
    assert document["continent"] == "Europe", document
