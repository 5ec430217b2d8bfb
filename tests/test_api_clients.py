"""The clients people already use, against a real engine (issue 17, point 4): the official `ollama` and `openai`
Python packages talk to `workbench serve` (a face subprocess; the engine it starts runs the real SmolLM2 and MiniLM)
the way Open WebUI, oterm, Zed and scripts do: list, show, ps, chat streamed and not, generate, embed, pull from the
loopback hub, keep_alive 0, JSON-schema answers, and embeddings equal to the Embeddings pane's. One engine serves
the whole module; every answer is a few tokens (the MLX CPU backend makes ~7 tokens/s)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jsonschema
import numpy as np
import ollama
import openai
import pytest

from tests.support.engine_procs import engine_socket, face_env, stop_engine
from tests.support.hub_repos import make_tiny_mlx_repo
from tests.support.hub_server import LoopbackHub
from workbench.core.models.local import DEFAULT_CHAT_ID, DEFAULT_EMBEDDER_ID
from workbench.core.settings.paths import AppPaths

pytestmark = pytest.mark.real_model

T = TypeVar("T")
CHAT = DEFAULT_CHAT_ID
EMBEDDER = DEFAULT_EMBEDDER_ID
PULL_REPO = "test-org/tiny-pull"
START_WAIT_S = 180.0  # the serve face starts the engine, which registers every model before it listens
ANSWER_WAIT_S = 180.0  # one short answer on a busy 2-core machine, the model's first load included
WAIT_S = 60.0
FEW = {"temperature": 0, "num_predict": 8}
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "A stock market crash"]


@dataclass
class Served:
    base: str  # http://127.0.0.1:PORT, where Ollama's clients point; OpenAI's add /v1
    env: dict[str, str]
    hub: LoopbackHub
    hub_root: Path
    log: Path


def wait_until(condition: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def served(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("api-clients")
    hub_root = root / "hub-repos"
    make_tiny_mlx_repo(hub_root, PULL_REPO, bits=None, hidden=256, seed=17)  # ~5 MB of weights: several progress lines
    with LoopbackHub(hub_root) as hub:
        env = face_env(root, hub.url)
        paths = AppPaths.under(Path(env["WORKBENCH_HOME"]))
        paths.models_dir.mkdir(parents=True)
        (paths.models_dir / CHAT).symlink_to(smollm2_dir)  # imported already (the session's fixture did it)
        out, err = root / "serve.out", root / "serve.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            face = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", "0"], env=env,
                                    stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)  # fmt: skip
        try:

            def port() -> str | None:
                assert face.poll() is None, f"serve ended: {err.read_text()}"
                found = re.search(r"http://127\.0\.0\.1:(\d+)", err.read_text())
                return found.group(1) if found else None

            base = f"http://127.0.0.1:{wait_until(port, 'serve to listen', START_WAIT_S)}"
            yield Served(base, env, hub, hub_root, out)
        finally:
            face.send_signal(signal.SIGINT)
            try:
                face.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                face.kill()
                face.wait(5)
            stop_engine(env)


@pytest.fixture(scope="module")
def olla(served: Served) -> ollama.Client:
    return ollama.Client(host=served.base, timeout=ANSWER_WAIT_S)


@pytest.fixture(scope="module")
def oai(served: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{served.base}/v1", api_key="unused", max_retries=0,
                       timeout=ANSWER_WAIT_S) as client:  # fmt: skip
        yield client


# --- Ollama: what Open WebUI and oterm read first ----------------------------------------------------------------


def test_version_and_tags_list_the_chat_model_and_the_embedder(served: Served, olla: ollama.Client) -> None:
    version = httpx.get(f"{served.base}/api/version", timeout=WAIT_S)
    assert version.status_code == 200 and isinstance(version.json()["version"], str)
    listed = {model.model: model for model in olla.list().models}
    assert CHAT in listed and EMBEDDER in listed, sorted(listed)
    chat = listed[CHAT]
    assert chat.size and chat.size > 0 and chat.modified_at is not None and chat.digest
    assert chat.details is not None and chat.details.family == "llama"
    assert chat.details.parameter_size and chat.details.quantization_level
    raw = httpx.get(f"{served.base}/api/tags", timeout=WAIT_S).json()["models"]
    assert all(row["name"] == row["model"] for row in raw)  # Open WebUI reads "name", the ollama package "model"


def test_show_has_the_context_length_the_parameters_and_the_template(olla: ollama.Client) -> None:
    shown = olla.show(CHAT)
    assert shown.modelinfo is not None
    lengths = [value for key, value in shown.modelinfo.items() if key.endswith("context_length")]
    assert lengths and all(isinstance(value, int) and value > 0 for value in lengths), shown.modelinfo
    assert shown.template and shown.parameters is not None
    assert shown.details is not None and shown.details.family == "llama"
    assert olla.show(f"{CHAT}:latest").modelinfo == shown.modelinfo  # clients add ":latest"; it is dropped
    assert "completion" in (shown.capabilities or [])  # oterm reads the capabilities from here
    assert olla.show(EMBEDDER).capabilities == ["embedding"]


def test_an_unknown_model_is_a_404_in_ollamas_shape(served: Served, olla: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        olla.chat("no-such-model", messages=CAPITAL, options=FEW)
    assert unknown.value.status_code == 404 and unknown.value.error
    answer = httpx.post(f"{served.base}/api/show", json={"model": "no-such-model"}, timeout=WAIT_S)
    assert answer.status_code == 404 and isinstance(answer.json()["error"], str)


# --- Ollama: answers ------------------------------------------------------------------------------------------------


def durations_add_up(done: ollama.ChatResponse | ollama.GenerateResponse) -> None:
    """Clients compute tokens/s from these (Open WebUI shows prompt_eval_count / prompt_eval_duration): loading,
    reading the prompt and generating happen one after the other within the request's total (measured times)."""
    parts = [done.load_duration or 0, done.prompt_eval_duration or 0, done.eval_duration or 0]
    assert done.total_duration and all(part >= 0 for part in parts)
    assert sum(parts) <= done.total_duration, (parts, done.total_duration)


def test_chat_whole_and_streamed_answer_paris(olla: ollama.Client) -> None:
    whole = olla.chat(CHAT, messages=CAPITAL, options=FEW)
    assert whole.done and whole.done_reason in ("stop", "length")
    assert whole.message.role == "assistant" and "Paris" in (whole.message.content or ""), whole.message
    assert whole.prompt_eval_count and whole.prompt_eval_count > 5
    assert whole.eval_count and 0 < whole.eval_count <= FEW["num_predict"]
    durations_add_up(whole)

    chunks = list(olla.chat(CHAT, messages=CAPITAL, options=FEW, stream=True))
    assert len(chunks) > 2 and all(not chunk.done for chunk in chunks[:-1]) and chunks[-1].done
    assert chunks[-1].done_reason in ("stop", "length") and chunks[-1].eval_count
    durations_add_up(chunks[-1])
    assert "Paris" in "".join(chunk.message.content or "" for chunk in chunks)


def test_generate_whole_and_streamed(olla: ollama.Client) -> None:
    whole = olla.generate(CHAT, prompt="What is the capital of France?", options=FEW)
    assert whole.done and "Paris" in whole.response, whole.response
    chunks = list(olla.generate(CHAT, prompt="What is the capital of France?", options=FEW, stream=True))
    assert chunks[-1].done and all(not chunk.done for chunk in chunks[:-1])
    assert "Paris" in "".join(chunk.response for chunk in chunks)
    durations_add_up(chunks[-1])


def test_ps_lists_the_loaded_chat_model_until_its_keep_alive(olla: ollama.Client) -> None:
    olla.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 1}, keep_alive="10m")
    loaded = {model.model: model for model in olla.ps().models}
    assert CHAT in loaded, sorted(loaded)
    row = loaded[CHAT]
    assert row.size and row.size > 0 and row.expires_at is not None
    assert row.context_length and row.context_length > 0  # oterm shows "ctx used / context_length" from it
    [listed] = [model for model in olla.list().models if model.model == CHAT]
    assert row.details == listed.details  # one model, one description (parameter size, quantization)
    left_s = (row.expires_at - datetime.now(UTC)).total_seconds()
    assert 5 * 60 < left_s <= 10 * 60 + 5, row.expires_at


# --- structured output: bounded schemas validate whenever the answer stopped on its own -------------------------


def obj(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


SCHEMAS = [
    ("What is the capital of France? Answer in JSON.", obj(capital={"type": "string", "maxLength": 20})),
    ("Is this review positive or negative? 'I love this phone, it is great.' Answer in JSON.",
     obj(sentiment={"enum": ["positive", "negative", "neutral"]})),
    ("Name up to three colours of the French flag, in JSON.",
     obj(colours={"type": "array", "items": {"enum": ["blue", "white", "red", "green"]}, "maxItems": 3})),
    ("Is an apple a fruit? How many legs has a cat? Answer in JSON.",
     obj(is_fruit={"type": "boolean"}, legs={"type": "integer", "minimum": 0, "maximum": 8})),
    ("Describe a cat in JSON: a short name and at most two tags.",
     obj(name={"type": "string", "maxLength": 12},
         tags={"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2})),
]  # fmt: skip


@pytest.mark.parametrize(("prompt", "schema"), SCHEMAS, ids=[f"schema{n}" for n in range(len(SCHEMAS))])
def test_an_ollama_format_schema_answer_validates(olla: ollama.Client, prompt: str, schema: dict[str, Any]) -> None:
    answer = olla.chat(CHAT, messages=[{"role": "user", "content": prompt}], format=schema,
                       options={"temperature": 0, "num_predict": 96})  # fmt: skip
    assert answer.done_reason == "stop", f"ran out of tokens: {answer.message.content!r}"
    jsonschema.validate(json.loads(answer.message.content or ""), schema)


def test_openai_response_format_json_schema_and_json_object_and_ollama_generate_json(
    oai: openai.OpenAI, olla: ollama.Client
) -> None:
    prompt, schema = SCHEMAS[1]
    answer = oai.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": prompt}], max_tokens=96, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "review", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), schema)

    anything = oai.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": SCHEMAS[0][0]}],
                                           max_tokens=96, temperature=0,
                                           response_format={"type": "json_object"})  # fmt: skip
    if anything.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(anything.choices[0].message.content or ""), dict)

    generated = olla.generate(CHAT, prompt=SCHEMAS[0][0], format=SCHEMAS[0][1],
                              options={"temperature": 0, "num_predict": 96})  # fmt: skip
    assert generated.done_reason == "stop", generated.response
    jsonschema.validate(json.loads(generated.response), SCHEMAS[0][1])


# --- OpenAI ---------------------------------------------------------------------------------------------------------


def test_openai_lists_both_roles_and_answers_chat_and_completions(oai: openai.OpenAI) -> None:
    roles = {model.id: (model.model_extra or {}).get("workbench_role") for model in oai.models.list().data}
    assert roles.get(CHAT) == "chat" and roles.get(EMBEDDER) == "embed", roles

    whole = oai.chat.completions.create(model=CHAT, messages=CAPITAL, max_tokens=8, temperature=0, seed=7)
    assert "Paris" in (whole.choices[0].message.content or "")
    chunks = list(oai.chat.completions.create(model=f"{CHAT}:latest", messages=CAPITAL, max_tokens=8, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert "Paris" in "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 8

    stopped = oai.chat.completions.create(model=CHAT, messages=CAPITAL, max_tokens=8, temperature=0, stop=["Paris"])
    assert "Paris" not in (stopped.choices[0].message.content or "")

    completion = oai.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=4, temperature=0)
    assert completion.choices[0].text and completion.usage is not None and completion.usage.completion_tokens <= 4
    streamed = list(oai.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=4,
                                           temperature=0, stream=True))  # fmt: skip
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == completion.choices[0].text


# --- embeddings: the same vectors as the Embeddings pane's ------------------------------------------------------


def pane_vectors(served: Served, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """What the Embeddings pane gets for ``texts``: a corpus job's vectors, and a search query's vector for the
    first text (the pane's own client, RemoteEmbedder, through the engine's socket)."""
    from workbench.client.embedder import RemoteEmbedder
    from workbench.client.engine import EngineClient

    async def ask() -> tuple[np.ndarray, np.ndarray]:
        embedder = RemoteEmbedder(EngineClient(engine_socket(served.env)), None, face="test")  # type: ignore[arg-type]
        return await embedder.embed(EMBEDDER, texts), await embedder.encode_query(EMBEDDER, texts[0])

    return asyncio.run(ask())


def test_embeddings_from_both_apis_equal_the_embeddings_panes(served: Served, olla: ollama.Client,
                                                             oai: openai.OpenAI) -> None:  # fmt: skip
    corpus, query = pane_vectors(served, TEXTS)
    assert corpus.shape == (3, 384)

    embedded = olla.embed(EMBEDDER, input=TEXTS)
    ollama_vectors = np.asarray(embedded.embeddings, dtype=np.float32)
    assert ollama_vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(ollama_vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ollama_vectors, corpus, atol=1e-5)
    np.testing.assert_allclose(np.asarray(olla.embed(f"{EMBEDDER}:latest", input=TEXTS[0]).embeddings[0]), query,
                               atol=1e-5)  # fmt: skip
    older = olla.embeddings(EMBEDDER, prompt=TEXTS[0]).embedding  # /api/embeddings, as older clients call it
    np.testing.assert_allclose(np.asarray(older), query, atol=1e-5)

    floats = oai.embeddings.create(model=EMBEDDER, input=TEXTS, encoding_format="float")
    assert [row.index for row in floats.data] == [0, 1, 2] and floats.usage.prompt_tokens > 0
    np.testing.assert_allclose(np.asarray([row.embedding for row in floats.data]), corpus, atol=1e-5)
    packed = httpx.post(f"{served.base}/v1/embeddings", timeout=ANSWER_WAIT_S,
                        json={"model": EMBEDDER, "input": TEXTS[1], "encoding_format": "base64"}).json()  # fmt: skip
    unpacked = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(unpacked, corpus[1], atol=1e-5)
    [loaded] = [model for model in olla.ps().models if model.model == EMBEDDER]
    assert loaded.context_length == 512  # what MiniLM reads, as /api/show says (not the chat models' context)


# --- pull through the download queue ------------------------------------------------------------------------------


def test_pull_from_the_hub_streams_progress_and_the_file_ends_verified(served: Served, olla: ollama.Client) -> None:
    served.hub.faults.bandwidth_bps = 2 * 1024 * 1024  # a few seconds: progress has time to show
    try:
        events = list(olla.pull(PULL_REPO, stream=True))
    finally:
        served.hub.faults.bandwidth_bps = None
    assert events[-1].status == "success", [event.status for event in events]
    counted = [event for event in events if event.total]
    assert counted and any(event.completed and event.completed < event.total for event in counted), counted
    assert counted[-1].completed == counted[-1].total

    weights = served.hub_root / PULL_REPO / "model.safetensors"
    cache = Path(served.env["HF_HOME"]) / "hub" / f"models--{PULL_REPO.replace('/', '--')}" / "snapshots"
    [pulled] = list(cache.glob("*/model.safetensors"))
    assert hashlib.sha256(pulled.read_bytes()).hexdigest() == hashlib.sha256(weights.read_bytes()).hexdigest()

    names = [model.model or "" for model in olla.list().models]
    assert any(name.removesuffix(":latest") == PULL_REPO for name in names), names
    again = olla.pull(f"hf.co/{PULL_REPO}")  # the other spelling; already there, so at once
    assert again.status == "success"


# --- last: keep_alive 0 unloads ---------------------------------------------------------------------------------


def test_keep_alive_zero_unloads_and_ps_is_empty_after(olla: ollama.Client) -> None:
    olla.embed(EMBEDDER, input="warm", keep_alive="5m")
    olla.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 1}, keep_alive="5m")
    assert {CHAT, EMBEDDER} <= {model.model for model in olla.ps().models}

    answer = olla.chat(CHAT, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 1}, keep_alive=0)
    assert answer.done
    olla.embed(EMBEDDER, input="cool", keep_alive=0)
    wait_until(lambda: not olla.ps().models, "ps to be empty after keep_alive 0")
    unloaded = olla.generate(CHAT, keep_alive=0)  # Ollama's "unload a model": no prompt, keep_alive 0
    assert unloaded.done and not olla.ps().models
