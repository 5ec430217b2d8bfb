"""POST /v1/completions (OpenAI's text completion), spoken to with the real openai client and raw HTTP, against
build_app on the real services with the scripted chat backend; one test with a tiny random-weight MLX model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fake_chat import Script
from tests.support.openai_app import Served, serving_app, serving_fake
from workbench.bootstrap import build_services
from workbench.core.chat.output import OutputRules
from workbench.core.chat.run import MAX_CHARS_PER_TOKEN
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.core.settings.paths import AppPaths


@pytest.fixture
async def served(app_paths: AppPaths) -> AsyncIterator[Served]:
    async with serving_fake(app_paths) as running:
        yield running


async def test_a_whole_text_completion_continues_the_raw_prompt(served: Served) -> None:
    answer = await served.client.completions.create(model="fake-chat", prompt="Once upon a time", max_tokens=50,
                                                    temperature=0.3, top_p=0.5, seed=7)  # fmt: skip
    assert answer.object == "text_completion" and answer.model == "fake-chat" and answer.id.startswith("cmpl-")
    choice = answer.choices[0]
    assert (choice.text, choice.finish_reason, choice.index) == ("Hello there!", "stop", 0)
    assert served.backend.prompts == ["Once upon a time"] and served.backend.calls == []  # no chat template
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (4, 3, 7)
    sampling = served.backend.sampling[-1]
    assert (sampling.temperature, sampling.top_p, sampling.seed, sampling.max_tokens) == (0.3, 0.5, 7, 50)
    assert served.backend.rules[-1] is None  # no output rules asked for
    assert served.services.manager.info("fake-chat").leases == 0


async def test_max_tokens_cuts_it_with_finish_reason_length(served: Served) -> None:
    answer = await served.client.completions.create(model="fake-chat", prompt="Once", max_tokens=2)
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == ("Hello there", "length")


async def test_a_streamed_text_completion_with_usage(served: Served) -> None:
    stream = await served.client.completions.create(model="fake-chat", prompt="Once upon", stream=True,
                                                    stream_options={"include_usage": True})  # fmt: skip
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello there!"
    assert all(chunk.object == "text_completion" for chunk in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_the_stream_on_the_wire_ends_with_done_and_has_no_usage_unless_asked(served: Served) -> None:
    status, events = await served.app.events("/completions", {"model": "fake-chat", "prompt": "Once", "stream": True})
    assert status == 200 and events[-1] == "[DONE]"
    documents = events[:-1]
    assert [d["choices"][0]["text"] for d in documents] == ["Hello", " there", "!", ""]
    assert [d["choices"][0]["finish_reason"] for d in documents] == [None, None, None, "stop"]
    assert all("usage" not in d for d in documents) and len({d["id"] for d in documents}) == 1


async def test_stop_sequences_end_the_text_before_them_whole_and_streamed(served: Served) -> None:
    served.backend.script = Script(tokens=["one", " tw", "o three", " four"])
    answer = await served.client.completions.create(model="fake-chat", prompt="Count", stop=[" two", "x"])
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == ("one", "stop")
    assert served.backend.rules[-1] == OutputRules(stop=(" two", "x"))
    status, events = await served.app.events("/completions", {"model": "fake-chat", "prompt": "Count",
                                                              "stop": "three", "stream": True})  # fmt: skip
    assert status == 200 and events[-1] == "[DONE]"
    assert "".join(d["choices"][0]["text"] for d in events[:-1]) == "one two "


async def test_names_resolve_and_an_embedder_is_refused(served: Served) -> None:
    answer = await served.client.completions.create(model="fake-chat:latest", prompt="Once")
    assert answer.model == "fake-chat"
    with pytest.raises(openai.NotFoundError) as caught:
        await served.client.completions.create(model=DEFAULT_EMBEDDER_ID, prompt="Once")
    assert caught.value.code == "model_not_supported" and "/v1/embeddings" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        await served.client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once")
    assert caught.value.code == "model_not_found" and "fake-chat" in caught.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fake-chat"}, "prompt"),
        ({"model": "fake-chat", "prompt": ""}, "prompt"),
        ({"model": "fake-chat", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "fake-chat", "prompt": ["one", "two"]}, "prompt"),
        ({"prompt": "Once"}, "model"),
        ({"model": "m" * 600, "prompt": "Once"}, "model"),
        ({"model": "fake-chat", "prompt": "Once", "echo": True}, "echo"),
        ({"model": "fake-chat", "prompt": "Once", "suffix": "end"}, "suffix"),
        ({"model": "fake-chat", "prompt": "Once", "best_of": 3}, "best_of"),
        ({"model": "fake-chat", "prompt": "Once", "logprobs": 2}, "logprobs"),
        ({"model": "fake-chat", "prompt": "Once", "n": 2}, "n"),
        ({"model": "fake-chat", "prompt": "Once", "max_tokens": 0}, "max_tokens"),
        ({"model": "fake-chat", "prompt": "Once", "seed": -1}, "seed"),
        ({"model": "fake-chat", "prompt": "Once", "seed": 2**64}, "seed"),
        ({"model": "fake-chat", "prompt": "Once", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "fake-chat", "prompt": "Once", "stop": ""}, "stop"),
        ({"model": "fake-chat", "prompt": "Once", "stop": 3}, "stop"),
        ({"model": "fake-chat", "prompt": "Once", "stop": ["x" * 201]}, "stop"),
        ({"model": "fake-chat", "prompt": "Once", "stream": "yes"}, "stream"),
    ],
)  # fmt: skip
async def test_bad_requests_are_400_naming_the_field(served: Served, body: dict[str, Any], param: str) -> None:
    status, answer = await served.app.post("/completions", body)
    assert status == 400, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert served.backend.prompts == []


async def test_a_prompt_no_context_can_hold_is_refused_before_the_model_loads(served: Served) -> None:
    too_long = "word " * (served.services.manager.context_length * MAX_CHARS_PER_TOKEN // 5 + 1)
    status, answer = await served.app.post("/completions", {"model": "fake-chat", "prompt": too_long})
    assert status == 400 and answer["error"]["param"] == "prompt"
    assert answer["error"]["code"] == "context_length_exceeded"
    assert served.services.manager.info("fake-chat").leases == 0 and served.backend.prompts == []


async def test_a_prompt_longer_than_the_models_window_is_a_400_naming_the_prompt(served: Served) -> None:
    served.backend.script = Script(window=8)
    with pytest.raises(openai.BadRequestError) as caught:
        await served.client.completions.create(model="fake-chat", prompt="one two three four five six seven eight")
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "prompt"  # type: ignore[attr-defined]
    assert served.services.manager.info("fake-chat").leases == 0


async def test_a_tiny_mlx_model_continues_a_raw_prompt(app_paths: AppPaths, tiny_models: dict[str, Path]) -> None:
    app_paths.models_dir.mkdir(parents=True)
    (app_paths.models_dir / "tiny-small").symlink_to(tiny_models["small"], target_is_directory=True)
    services = build_services(app_paths)
    async with serving_app(services, timeout=120) as app:
        whole = await app.client.completions.create(model="tiny-small", prompt="The capital of", max_tokens=5,
                                                    temperature=0, seed=1)  # fmt: skip
        choice = whole.choices[0]
        assert choice.finish_reason in ("stop", "length") and whole.usage is not None
        assert whole.usage.prompt_tokens > 0 and 0 < whole.usage.completion_tokens <= 5
        stream = await app.client.completions.create(model="tiny-small", prompt="The capital of", max_tokens=5,
                                                     temperature=0, seed=1, stream=True)  # fmt: skip
        streamed = "".join([c.choices[0].text async for c in stream if c.choices])
        assert streamed == choice.text  # greedy: the same continuation
