"""Ollama's API on serve's app: real HTTP against build_app on the scripted chat backend and the fake embedder,
spoken to with the official ``ollama`` client where its parsing is the point and raw HTTP where the wire is."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import ollama
import pytest

from tests.support.fake_chat import FakeChatBackend, Script, services_with_fake
from tests.support.fake_embedder import FakeEmbeddingBackend, fake_embedder_spec
from workbench.bootstrap import Services
from workbench.core.chat.output import OutputRules
from workbench.core.models.spec import ModelState
from workbench.core.settings.paths import AppPaths
from workbench.server.openai import build_app, listen

WAIT = 20
EMBEDDER = "fake-embedder"


@dataclass
class Running:
    url: str
    services: Services
    backend: FakeChatBackend
    embedder: FakeEmbeddingBackend
    client: ollama.AsyncClient
    http: aiohttp.ClientSession

    async def post(self, path: str, body: Any, method: str = "POST") -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, data=json.dumps(body)) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def lines(self, path: str, body: Any) -> list[dict[str, Any]]:
        async with self.http.post(self.url + path, data=json.dumps(body)) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "application/x-ndjson"
            return [json.loads(line) async for line in response.content if line.strip()]


@pytest.fixture
async def api(app_paths: AppPaths) -> AsyncIterator[Running]:
    services, backend = services_with_fake(app_paths)
    embedder = FakeEmbeddingBackend()
    services.manager.add_backend(embedder)
    services.manager.register(fake_embedder_spec(EMBEDDER))
    runner, base = await listen(build_app(services), "127.0.0.1", 0)
    url = base.removesuffix("/v1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
        try:
            yield Running(url, services, backend, embedder, ollama.AsyncClient(host=url, timeout=WAIT), http)
        finally:
            await runner.cleanup()
            await services.aclose()


# --- lists ---------------------------------------------------------------------------------------


async def test_version_and_root(api: Running) -> None:
    status, body = await api.post("/api/version", None, "GET")
    assert status == 200 and body["version"].count(".") == 2
    async with api.http.get(api.url + "/") as response:
        assert response.status == 200 and "Ollama is running" in await response.text()


async def test_tags_list_every_model_with_details(api: Running) -> None:
    listed = await api.client.list()
    names = [model.model for model in listed.models]
    assert {"fake-chat", EMBEDDER, "all-MiniLM-L6-v2"} <= set(names)
    minilm = next(model for model in listed.models if model.model == "all-MiniLM-L6-v2")
    assert minilm.details is not None and minilm.details.family == "bert"
    assert minilm.details.parameter_size == "23M" and minilm.size and minilm.size > 10_000_000
    assert minilm.modified_at is not None and minilm.digest and len(minilm.digest) == 64


async def test_show_gives_model_info_parameters_and_capabilities(api: Running) -> None:
    shown = await api.client.show("all-MiniLM-L6-v2:latest")  # Ollama's clients add ":latest"
    assert shown.modelinfo is not None and shown.modelinfo["bert.context_length"] == 512
    assert shown.modelinfo["general.architecture"] == "bert"
    assert shown.capabilities == ["embedding"]
    assert "num_ctx" in (shown.parameters or "")
    chat = await api.client.show("fake-chat")
    assert chat.capabilities == ["completion"]


async def test_unknown_models_and_bad_bodies_answer_in_ollamas_shape(api: Running) -> None:
    status, body = await api.post("/api/show", {"model": "nope"})
    assert status == 404 and body == {"error": "model 'nope' not found, try pulling it first"}
    status, body = await api.post("/api/chat", {"model": "nope", "messages": []})
    assert status == 404 and "not found" in body["error"]
    status, body = await api.post("/api/chat", {"model": "fake-chat", "messages": "hi"})
    assert status == 400 and "messages" in body["error"]
    status, body = await api.post("/api/chat", {"messages": []})
    assert status == 400 and "model" in body["error"]
    status, body = await api.post("/api/chat", {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}],
                                                "options": {"temperature": -1}})  # fmt: skip
    assert status == 400 and body["error"].startswith("options.temperature")
    status, body = await api.post("/api/embed", {"model": "fake-chat", "input": "x"})
    assert status == 400 and "embeddings" in body["error"]
    status, body = await api.post("/api/chat", {"model": "fake-chat", "keep_alive": "soon"})
    assert status == 400 and "keep_alive" in body["error"]
    status, body = await api.post("/api/nothing-here", {})
    assert status == 404 and set(body) == {"error"}
    with pytest.raises(ollama.ResponseError) as raised:
        await api.client.chat("nope", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 404
    async with api.http.get(api.url + "/v1/models/nope") as response:  # the OpenAI routes keep their own shape
        assert response.status == 404 and "message" in (await response.json())["error"]


# --- answers -------------------------------------------------------------------------------------


async def test_chat_streamed_and_whole(api: Running) -> None:
    pieces = [part async for part in await api.client.chat(
        "fake-chat:latest", messages=[{"role": "user", "content": "hi"}], stream=True)]  # fmt: skip
    assert "".join(part.message.content or "" for part in pieces) == "Hello there!"
    assert [part.done for part in pieces] == [False, False, False, True]
    last = pieces[-1]
    assert last.done_reason == "stop" and last.eval_count == 3 and last.prompt_eval_count
    assert last.total_duration and last.total_duration > 0
    whole = await api.client.chat("fake-chat", messages=[{"role": "system", "content": "be brief"},
                                                         {"role": "user", "content": "hi"}])  # fmt: skip
    assert whole.message.content == "Hello there!" and whole.message.role == "assistant" and whole.done
    assert api.backend.calls[-1] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


async def test_options_reach_the_sampler(api: Running) -> None:
    await api.client.chat("fake-chat", messages=[{"role": "user", "content": "hi"}], options={
        "temperature": 0.2, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": 3, "repeat_penalty": 1.3,
        "num_predict": 2, "num_ctx": 1024, "num_thread": 4})  # fmt: skip
    sampling = api.backend.sampling[-1]
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p, sampling.seed,
            sampling.repetition_penalty, sampling.max_tokens) == (0.2, 0.5, 7, 0.1, 3, 1.3, 2)  # fmt: skip
    answer = await api.client.generate("fake-chat", "hi", options={"num_predict": 2})
    assert answer.response == "Hello there" and answer.done_reason == "length"


async def test_generate_streams_ndjson_lines(api: Running) -> None:
    lines = await api.lines("/api/generate", {"model": "fake-chat", "prompt": "hi", "system": "be brief"})
    assert [line["response"] for line in lines] == ["Hello", " there", "!", ""]
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop" and lines[-1]["eval_count"] == 3
    assert all(line["model"] == "fake-chat" and line["created_at"].endswith("Z") for line in lines)
    assert api.backend.calls[-1] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


async def test_a_failure_mid_stream_ends_it_with_an_error_line(app_paths: AppPaths) -> None:
    services, _backend = services_with_fake(app_paths, Script(fail_after=1))
    runner, base = await listen(build_app(services), "127.0.0.1", 0)
    client = ollama.AsyncClient(host=base.removesuffix("/v1"), timeout=WAIT)
    try:
        seen = []
        with pytest.raises(ollama.ResponseError, match="fell over"):
            async for part in await client.chat("fake-chat", messages=[{"role": "user", "content": "hi"}],
                                                stream=True):  # fmt: skip
                seen.append(part.message.content)
        assert seen == ["Hello"]
    finally:
        await runner.cleanup()
        await services.aclose()


# --- load, unload, keep_alive, ps ----------------------------------------------------------------


async def test_keep_alive_zero_unloads_after_the_answer(api: Running) -> None:
    await api.client.chat("fake-chat", messages=[{"role": "user", "content": "hi"}], keep_alive=0)
    assert api.services.manager.info("fake-chat").state is ModelState.UNLOADED
    assert (await api.client.ps()).models == []


async def test_an_empty_request_loads_and_keep_alive_zero_unloads(api: Running) -> None:
    status, body = await api.post("/api/generate", {"model": "fake-chat", "keep_alive": "10m"})
    assert status == 200 and body["done_reason"] == "load" and body["done"] is True
    running = (await api.client.ps()).models
    assert [model.model for model in running] == ["fake-chat"]
    assert running[0].size and running[0].expires_at is not None
    import datetime

    left = running[0].expires_at - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=9) < left <= datetime.timedelta(minutes=10)
    status, body = await api.post("/api/chat", {"model": "fake-chat", "messages": [], "keep_alive": 0})
    assert status == 200 and body["done_reason"] == "unload" and body["message"]["content"] == ""
    assert (await api.client.ps()).models == []


async def test_keep_alive_minus_one_keeps_it_and_a_pinned_model_stays(api: Running) -> None:
    await api.client.generate("fake-chat", "hi", keep_alive=-1)
    assert api.services.manager.unload_in("fake-chat") is None
    (model,) = (await api.client.ps()).models
    assert model.expires_at is not None and model.expires_at.year > 2200
    api.services.manager.pin("fake-chat")
    status, body = await api.post("/api/generate", {"model": "fake-chat", "prompt": "hi", "keep_alive": 0,
                                                    "stream": False})  # fmt: skip
    assert status == 200 and "pinned" in body["note"]
    assert api.services.manager.info("fake-chat").resident


# --- embeddings ----------------------------------------------------------------------------------


async def test_embed_batches_are_normalised_and_match_the_embedder(api: Running) -> None:
    texts = ["the sky is blue", "grass grows green"]
    answer = await api.client.embed(f"{EMBEDDER}:latest", texts)
    vectors = np.array(answer.embeddings)
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    pane = await api.services.embedder.embed(EMBEDDER, texts)  # what the Embeddings pane computes
    assert np.allclose(vectors, pane, atol=1e-6)
    single = await api.client.embed(EMBEDDER, "the sky is blue")
    assert np.allclose(single.embeddings[0], vectors[0], atol=1e-6)
    old = await api.client.embeddings(EMBEDDER, "grass grows green")
    assert np.allclose(old.embedding, vectors[1], atol=1e-6)
    status, body = await api.post("/api/embed", {"model": EMBEDDER, "input": [1, 2]})
    assert status == 400 and "input" in body["error"]


async def test_embed_dimensions_and_truncate(api: Running) -> None:
    status, body = await api.post("/api/embed", {"model": EMBEDDER, "input": ["the sky is blue"], "dimensions": 8})
    assert status == 200 and len(body["embeddings"][0]) == 8
    assert np.isclose(np.linalg.norm(body["embeddings"][0]), 1.0, atol=1e-5)
    assert body["prompt_eval_count"] == 4 + 2 and body["model"] == EMBEDDER  # the fake tokenizer: words + 2 special
    status, body = await api.post("/api/embed", {"model": EMBEDDER, "input": "x", "dimensions": 4096})
    assert status == 400 and "dimensions" in body["error"]
    status, body = await api.post("/api/embed", {"model": EMBEDDER, "input": "x", "truncate": "no"})
    assert status == 400 and "truncate" in body["error"]


# --- format, stop, raw -----------------------------------------------------------------------------


async def test_stop_ends_the_answer_before_it(api: Running) -> None:
    whole = await api.client.chat("fake-chat", messages=[{"role": "user", "content": "hi"}],
                                  options={"stop": [" there"]})  # fmt: skip
    assert whole.message.content == "Hello" and whole.done_reason == "stop"
    pieces = [part async for part in await api.client.generate("fake-chat", "hi", stream=True,
                                                               options={"stop": ["!"]})]  # fmt: skip
    assert "".join(part.response or "" for part in pieces) == "Hello there"


async def test_format_becomes_output_rules(api: Running) -> None:
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "blue"]}}, "required": ["color"]}
    await api.client.chat("fake-chat", messages=[{"role": "user", "content": "hi"}], format=schema)
    assert api.backend.rules[-1] == OutputRules(json_schema=schema)
    await api.client.generate("fake-chat", "hi", format="json")
    assert api.backend.rules[-1] == OutputRules(json_object=True)
    await api.client.generate("fake-chat", "hi")
    assert api.backend.rules[-1] is None  # none asked: none passed
    status, body = await api.post("/api/chat", {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}],
                                                "format": {"type": "no-such-type"}})  # fmt: skip
    assert status == 400 and "schema" in body["error"]
    status, body = await api.post("/api/generate", {"model": "fake-chat", "prompt": "x", "format": "yaml"})
    assert status == 400 and "format" in body["error"]
    status, body = await api.post("/api/generate", {"model": "fake-chat", "prompt": "x",
                                                    "options": {"stop": ["a", "b", "c", "d", "e"]}})  # fmt: skip
    assert status == 400 and "stop" in body["error"]


async def test_raw_generate_sends_the_prompt_as_it_is(api: Running) -> None:
    answer = await api.client.generate("fake-chat", "<|user|>hi<|assistant|>", raw=True, system="ignored")
    assert answer.response == "Hello there!"
    assert api.backend.prompts[-1] == "<|user|>hi<|assistant|>"


async def test_with_an_api_key_a_refusal_has_ollamas_shape_too(app_paths: AppPaths) -> None:
    services, _backend = services_with_fake(app_paths)
    runner, base = await listen(build_app(services, api_key="sesame"), "127.0.0.1", 0)
    url = base.removesuffix("/v1")
    try:
        with pytest.raises(ollama.ResponseError) as raised:
            await ollama.AsyncClient(host=url, timeout=WAIT).list()
        assert raised.value.status_code == 401 and "API key" in raised.value.error
        keyed = ollama.AsyncClient(host=url, timeout=WAIT, headers={"Authorization": "Bearer sesame"})
        assert "fake-chat" in [model.model for model in (await keyed.list()).models]
        chat = {"model": "fake-chat", "tools": [{"type": "function"}], "messages": [{"role": "user", "content": "x"}]}
        status, body = await _post_raw(url + "/api/chat", chat, "sesame")
        assert status == 400 and "tool" in body["error"]
    finally:
        await runner.cleanup()
        await services.aclose()


async def _post_raw(url: str, body: Any, key: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
            return response.status, await response.json()
