"""POST /v1/embeddings and the embedders in GET /v1/models, spoken to with the real openai client (and raw HTTP
where the wire matters), against build_app on the real services with a fake chat model and a fake embedder."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai
import pytest

from tests.support.fake_chat import services_with_fake
from tests.support.fake_embedder import DIMENSIONS, FakeEmbeddingBackend, FakeEmbeddingModel, fake_embedder_spec
from tests.support.openai_app import OpenAiApp, serving_app
from workbench.bootstrap import Services, build_services
from workbench.core.embeddings.cache import normalise
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.core.settings.paths import AppPaths
from workbench.server.openai_embeddings import MAX_INPUT_CHARS, MAX_INPUTS

EMBEDDER = "org/fake-embed"
TEXTS = ["rivers flow to the sea", "violins have four strings", "a river delta"]


@dataclass
class Served:
    app: OpenAiApp
    services: Services
    embeddings: FakeEmbeddingBackend

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self.app.client


@pytest.fixture
async def served(app_paths: AppPaths) -> AsyncIterator[Served]:
    services, _chat = services_with_fake(app_paths)
    backend = FakeEmbeddingBackend()
    services.manager.add_backend(backend)
    services.manager.register(fake_embedder_spec(EMBEDDER))
    async with serving_app(services) as app:
        yield Served(app, services, backend)


async def post(served: Served, body: dict[str, Any]) -> tuple[int, Any]:
    return await served.app.post("/embeddings", body)


def fake_tokens(texts: list[str]) -> int:
    return sum(len(text.split()) + 2 for text in texts)  # the fake tokenizer: words and two special tokens


async def test_vectors_equal_the_embeddings_panes_and_usage_counts_the_tokens(served: Served) -> None:
    pane = await served.services.embedder.embed(EMBEDDER, TEXTS)  # the path the Embeddings pane takes
    answer = await served.client.embeddings.create(model=EMBEDDER, input=TEXTS, encoding_format="float")
    assert answer.object == "list" and answer.model == EMBEDDER
    assert [item.index for item in answer.data] == [0, 1, 2]
    vectors = np.array([item.embedding for item in answer.data], dtype=np.float32)
    assert vectors.shape == (3, DIMENSIONS)
    assert np.array_equal(vectors, pane)  # exact: every float32 travels as its own JSON number
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == fake_tokens(TEXTS)
    assert served.services.manager.info(EMBEDDER).leases == 0


async def test_one_string_and_the_clients_default_base64_give_the_same_vector(served: Served) -> None:
    one = await served.client.embeddings.create(model=EMBEDDER, input=TEXTS[1])  # the client asks for base64
    assert len(one.data) == 1 and one.usage.prompt_tokens == fake_tokens(TEXTS[1:2])
    pane = await served.services.embedder.embed(EMBEDDER, TEXTS[1:2])
    assert np.array_equal(np.array(one.data[0].embedding, dtype=np.float32), pane[0])


async def test_base64_is_little_endian_float32_as_openai_sends_it(served: Served) -> None:
    status, body = await post(served, {"model": EMBEDDER, "input": TEXTS, "encoding_format": "base64"})
    assert status == 200
    decoded = np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in body["data"]])
    status, plain = await post(served, {"model": EMBEDDER, "input": TEXTS})
    assert status == 200 and np.array_equal(decoded, np.array([item["embedding"] for item in plain["data"]], "<f4"))
    assert np.allclose(np.linalg.norm(decoded, axis=1), 1, atol=1e-6)


async def test_dimensions_cut_each_vector_and_normalise_it_again(served: Served) -> None:
    full = await served.services.embedder.embed(EMBEDDER, TEXTS)
    answer = await served.client.embeddings.create(model=EMBEDDER, input=TEXTS, dimensions=64)
    vectors = np.array([item.embedding for item in answer.data], dtype=np.float32)
    assert vectors.shape == (3, 64)
    np.testing.assert_allclose(vectors, normalise(full[:, :64]), atol=1e-7)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)
    same = await served.client.embeddings.create(model=EMBEDDER, input=TEXTS, dimensions=DIMENSIONS)
    assert np.array_equal(np.array([item.embedding for item in same.data], dtype=np.float32), full)


async def test_more_dimensions_than_the_model_has_is_a_400_naming_both(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await served.client.embeddings.create(model=EMBEDDER, input=TEXTS, dimensions=DIMENSIONS + 1)
    assert caught.value.param == "dimensions"  # type: ignore[attr-defined]
    assert str(DIMENSIONS + 1) in caught.value.message and str(DIMENSIONS) in caught.value.message


async def test_names_resolve_as_everywhere_and_a_chat_model_is_refused(served: Served) -> None:
    answer = await served.client.embeddings.create(model=f"{EMBEDDER}:latest", input="rivers")
    assert answer.model == EMBEDDER
    with pytest.raises(openai.NotFoundError) as caught:
        await served.client.embeddings.create(model="fake-chat", input="rivers")
    assert caught.value.code == "model_not_supported" and "/v1/chat/completions" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        await served.client.embeddings.create(model="text-embedding-3-small", input="rivers")
    assert caught.value.code == "model_not_found" and EMBEDDER in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        await served.client.chat.completions.create(model=EMBEDDER, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_supported" and "/v1/embeddings" in caught.value.message


async def test_models_lists_the_embedders_with_their_role(served: Served) -> None:
    models = await served.client.models.list()
    roles = {model.id: (model.model_extra or {}).get("workbench_role") for model in models.data}
    assert roles[EMBEDDER] == roles[DEFAULT_EMBEDDER_ID] == "embed" and roles["fake-chat"] == "chat"
    one = await served.client.models.retrieve(EMBEDDER)
    assert one.id == EMBEDDER and (one.model_extra or {}).get("workbench_role") == "embed"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": EMBEDDER}, "input"),
        ({"model": EMBEDDER, "input": []}, "input"),
        ({"model": EMBEDDER, "input": [1, 2, 3]}, "input[0]"),
        ({"model": EMBEDDER, "input": [[1, 2]]}, "input[0]"),
        ({"model": EMBEDDER, "input": ["fine", ""]}, "input[1]"),
        ({"model": EMBEDDER, "input": ["x"] * (MAX_INPUTS + 1)}, "input"),
        ({"model": EMBEDDER, "input": "x" * (MAX_INPUT_CHARS + 1)}, "input"),
        ({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": EMBEDDER, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": EMBEDDER, "input": "x", "dimensions": "64"}, "dimensions"),
        ({"model": EMBEDDER, "input": "x", "dimensions": True}, "dimensions"),
    ],
)  # fmt: skip
async def test_bad_requests_are_400_in_openais_shape_naming_the_field(served: Served, body: dict[str, Any],
                                                                      param: str) -> None:  # fmt: skip
    status, answer = await post(served, body)
    assert status == 400
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert served.embeddings.batches == []  # refused before any model work


async def test_many_texts_go_in_batches_on_the_inference_thread(served: Served) -> None:
    texts = [f"note {n} about rivers" for n in range(150)]
    answer = await served.client.embeddings.create(model=EMBEDDER, input=texts)
    assert len(answer.data) == 150
    assert [len(batch) for batch in served.embeddings.batches] == [64, 64, 22]
    pane = await served.services.embedder.embed(EMBEDDER, texts)
    assert np.array_equal(np.array([item.embedding for item in answer.data], dtype=np.float32), pane)


@pytest.mark.real_model
async def test_the_real_minilm_answers_the_panes_vectors_and_its_token_count(app_paths: AppPaths) -> None:
    services = build_services(app_paths)
    async with serving_app(services, timeout=120) as app:
        answer = await app.client.embeddings.create(model=DEFAULT_EMBEDDER_ID, input=TEXTS)
        pane = await services.embedder.embed(DEFAULT_EMBEDDER_ID, TEXTS)
        vectors = np.array([item.embedding for item in answer.data], dtype=np.float32)
        assert vectors.shape == (3, 384)
        np.testing.assert_allclose(vectors, pane, atol=1e-5)
        async with await services.manager.acquire(DEFAULT_EMBEDDER_ID) as lease:
            tokenizer = lease.handle.tokenizer
            expected = sum(len(tokenizer(text)["input_ids"]) for text in TEXTS)
        assert answer.usage.prompt_tokens == expected


async def test_a_failing_embedder_is_a_500_that_says_what_failed_and_gives_the_model_back(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fall_over(self: FakeEmbeddingModel, texts: list[str], **_options: Any) -> Any:
        raise RuntimeError("the fake embedder fell over")

    monkeypatch.setattr(FakeEmbeddingModel, "encode", fall_over)
    status, answer = await post(served, {"model": EMBEDDER, "input": "rivers"})
    assert status == 500 and answer["error"]["type"] == "server_error"
    assert answer["error"]["message"] == "embedding failed: RuntimeError: the fake embedder fell over"
    assert served.services.manager.info(EMBEDDER).leases == 0
