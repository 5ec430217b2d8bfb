"""Ollama's ``format`` on a real MLX model: a random-weight byte-level llama, which would write noise, answers
/api/chat and /api/generate with JSON that parses (format "json") and validates (a JSON schema) whenever it stops."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import ollama
import pytest

from tests.support.answers import BOUNDED_SCHEMA
from tests.support.ollama_app import ollama_on_mlx_model
from tests.support.tiny_models import make_tiny_byte_llama
from workbench.core.settings.paths import AppPaths

WAIT = 120
MODEL = "tiny-bytes"
SCHEMA = BOUNDED_SCHEMA
RANDOM = {"temperature": 1.0, "top_p": 1.0, "num_predict": 400}


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_byte_llama(tmp_path_factory.mktemp("ollama-bytes") / MODEL, seed=5)


@pytest.fixture
async def client(app_paths: AppPaths, byte_model: Path) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama_on_mlx_model(app_paths, MODEL, byte_model, WAIT) as client:
        yield client


async def test_a_schema_answer_validates_whenever_it_stops(client: ollama.AsyncClient) -> None:
    stopped = 0
    for seed in range(3):
        answer = await client.chat(MODEL, messages=[{"role": "user", "content": "a color"}], format=SCHEMA,
                                   options={**RANDOM, "seed": seed})  # fmt: skip
        if answer.done_reason == "stop":
            stopped += 1
            jsonschema.validate(json.loads(answer.message.content or ""), SCHEMA)
    assert stopped >= 2  # bounded schema: a random model reaches its end


async def test_format_json_streams_an_object(client: ollama.AsyncClient) -> None:
    pieces = [part async for part in await client.generate(
        MODEL, "some JSON", format="json", stream=True, options={**RANDOM, "num_predict": 60, "seed": 1})]  # fmt: skip
    text = "".join(part.response or "" for part in pieces)
    assert text.lstrip().startswith("{")
    if pieces[-1].done_reason == "stop":
        assert isinstance(json.loads(text), dict)
