"""The OpenAI-compatible server, spoken to with the real openai client (and raw HTTP where the wire matters)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec, services_with_fake
from workbench.bootstrap import Services
from workbench.core.chat.run import MAX_CHARS_PER_TOKEN
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.protocol import GenerationStep, PromptProgress
from workbench.core.models.memory import MB, Budget
from workbench.core.models.spec import ModelSpec, ModelState
from workbench.core.settings.paths import AppPaths
from workbench.server.limits import KeyRequiredError, ServeLimits, is_loopback
from workbench.server.openai import SHUTDOWN_TIMEOUT_S, TRIMMED_HEADER, WAITING, build_app, serve

WAIT = 20
HELLO = [{"role": "user", "content": "hi"}]


@dataclass
class Running:
    url: str
    services: Services
    backend: FakeChatBackend
    client: openai.AsyncOpenAI


@contextlib.asynccontextmanager
async def serving(services: Services, close: bool = True) -> AsyncIterator[str]:
    """``serve`` on a free port of 127.0.0.1; yields its base URL, cancels it on the way out and then (as the
    services' owner, the part open_services plays for the command) closes the services unless ``close`` is False."""
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(services, host="127.0.0.1", port=0, ready=url.set_result))
    await asyncio.wait({task, url}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # serve failed to start: raise why
    assert url.done(), "the server did not report ready"
    try:
        yield url.result()
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=WAIT)
        assert task.done(), "serve did not shut down"
        if close:
            await services.aclose()


@pytest.fixture
async def server(app_paths: AppPaths) -> AsyncIterator[Running]:
    services, backend = services_with_fake(app_paths)
    async with serving(services) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=WAIT)
        yield Running(url, services, backend, client)
        await client.close()
    services.store.close()


async def wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def stream_text(client: openai.AsyncOpenAI, model: str = "fake-chat", **kwargs: object) -> tuple[str, list]:
    stream = await client.chat.completions.create(model=model, messages=HELLO, stream=True, **kwargs)  # type: ignore[call-overload]
    chunks = [chunk async for chunk in stream]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


# --- the API through the openai client ----------------------------------------------------------


async def test_models_lists_chat_models_and_embedders_each_with_its_role(server: Running) -> None:
    models = await server.client.models.list()
    roles = {m.id: m.model_extra["workbench_role"] for m in models.data}  # type: ignore[index]
    # other tests may leave MLX models in the session's HF cache: also listed
    assert roles["fake-chat"] == "chat" and roles["all-MiniLM-L6-v2"] == "embed"
    manager = server.services.manager
    assert all(roles[i] == manager.role_of(i).value for i in roles)
    assert all(m.owned_by == "workbench" and m.object == "model" for m in models.data)
    assert (await server.client.models.retrieve("fake-chat")).id == "fake-chat"
    assert (await server.client.models.retrieve("fake-chat:latest")).id == "fake-chat"


async def test_a_whole_answer_with_usage(server: Running) -> None:
    answer = await server.client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}],
        temperature=0.3, top_p=0.5, seed=7, max_completion_tokens=50, user="ignored", frequency_penalty=0,
    )  # fmt: skip
    assert answer.object == "chat.completion" and answer.model == "fake-chat"
    assert answer.choices[0].message.content == "Hello there!"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason == "stop"
    sent = server.backend.calls[-1]
    assert sent == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    prompt = server.backend.count_prompt_tokens(None, sent)
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (
        prompt, 3, prompt + 3)  # fmt: skip
    sampling = server.backend.sampling[-1]
    assert (sampling.temperature, sampling.top_p, sampling.seed, sampling.max_tokens) == (0.3, 0.5, 7, 50)
    assert server.services.manager.info("fake-chat").leases == 0


async def test_request_fields_over_the_preset_over_the_models_own_defaults(server: Running, tmp_path: Path) -> None:
    folder = tmp_path / "tuned"
    folder.mkdir()
    (folder / "generation_config.json").write_text(json.dumps({"temperature": 0.25, "top_k": 20, "max_new_tokens": 2}))
    server.services.manager.register(ModelSpec("tuned", "tuned", "fake-chat", folder))
    answer = await server.client.chat.completions.create(model="tuned", messages=HELLO)
    assert answer.choices[0].message.content == "Hello there"  # max_new_tokens 2
    sampling = server.backend.sampling[-1]
    assert (sampling.temperature, sampling.top_k, sampling.max_tokens) == (0.25, 20, 2)
    server.services.settings.chat_preset = "creative"  # one named in config.toml outranks the model
    await server.client.chat.completions.create(model="tuned", messages=HELLO, extra_body={"top_k": 5})
    sampling = server.backend.sampling[-1]
    assert (sampling.temperature, sampling.min_p, sampling.top_k, sampling.max_tokens) == (1.0, 0.05, 5, 2)
    await server.client.chat.completions.create(model="tuned", messages=HELLO, temperature=0.5)
    assert server.backend.sampling[-1].temperature == 0.5


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(server: Running) -> None:
    answer = await server.client.chat.completions.create(model="fake-chat", messages=HELLO, max_tokens=2)
    assert answer.choices[0].message.content == "Hello there"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 2


async def test_a_streamed_answer(server: Running) -> None:
    text, chunks = await stream_text(server.client, stream_options={"include_usage": True})
    assert text == "Hello there!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 4 + ["stop"]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.completion_tokens, usage.usage.total_tokens) == (3, usage.usage.prompt_tokens + 3)


async def test_a_stream_without_include_usage_has_no_usage_chunk(server: Running) -> None:
    text, chunks = await stream_text(server.client, max_tokens=1)
    assert text == "Hello"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)


async def test_two_streams_at_once_on_two_models(server: Running) -> None:
    other = FakeChatBackend(Script(tokens=[f"b{i} " for i in range(10)], delay_s=0.01), kind="fake-b")
    server.services.manager.add_backend(other)
    server.services.manager.register(fake_spec("fake-b", kind="fake-b"))
    server.backend.script = Script(tokens=[f"a{i} " for i in range(10)], delay_s=0.01)
    (a, _), (b, _) = await asyncio.wait_for(
        asyncio.gather(stream_text(server.client), stream_text(server.client, model="fake-b")), WAIT
    )
    assert a == "".join(f"a{i} " for i in range(10)) and b == "".join(f"b{i} " for i in range(10))
    assert {info.spec.id: info.leases for info in server.services.manager.models()}["fake-chat"] == 0


async def test_two_streams_at_once_on_one_model(server: Running) -> None:
    server.backend.script = Script(tokens=[f"t{i} " for i in range(10)], delay_s=0.01)
    results = await asyncio.wait_for(asyncio.gather(stream_text(server.client), stream_text(server.client)), WAIT)
    assert [text for text, _ in results] == ["".join(f"t{i} " for i in range(10))] * 2


async def test_an_unknown_model_is_404_naming_the_models(server: Running) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await server.client.chat.completions.create(model="gpt-9", messages=HELLO)
    assert "gpt-9" in caught.value.message and "fake-chat" in caught.value.message
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await server.client.chat.completions.create(model="all-MiniLM-L6-v2", messages=HELLO)  # not a chat model


async def test_a_model_that_does_not_fit_is_503_with_the_managers_message(server: Running) -> None:
    server.services.manager.set_budget(Budget(1 * MB, "test budget"))
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            await server.client.chat.completions.create(model="fake-chat", messages=HELLO, stream=stream)
        assert caught.value.status_code == 503
        assert "fake-chat needs 12 MB" in caught.value.message and "test budget" in caught.value.message
    assert server.services.manager.info("fake-chat").leases == 0


async def test_a_failure_before_the_first_token_is_a_500(server: Running) -> None:
    server.backend.script = Script(fail_after=0)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            await server.client.chat.completions.create(model="fake-chat", messages=HELLO, stream=stream)
        assert "the fake model fell over" in caught.value.message and "Traceback" not in caught.value.message
    assert server.services.manager.info("fake-chat").leases == 0


async def test_a_failure_mid_stream_ends_it_with_an_error_event(server: Running) -> None:
    server.backend.script = Script(tokens=["a", "b", "c", "d"], fail_after=2)
    stream = await server.client.chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
    texts = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "ab"
    assert "the fake model fell over" in caught.value.message
    assert server.services.manager.info("fake-chat").leases == 0


async def test_a_client_that_stops_reading_releases_the_model(server: Running) -> None:
    server.backend.script = Script(tokens=[f"t{i} " for i in range(500)], delay_s=0.01)
    stream = await server.client.chat.completions.create(model="fake-chat", messages=HELLO, stream=True,
                                                         max_tokens=500)  # fmt: skip
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    await stream.close()
    manager = server.services.manager
    await wait_until(lambda: manager.info("fake-chat").leases == 0, "the lease to go back")
    assert server.backend.emitted < 500
    server.backend.script = Script()
    assert (await stream_text(server.client))[0] == "Hello there!"  # and the model still serves


async def test_build_app_under_a_plain_runner_also_releases_on_disconnect(app_paths: AppPaths) -> None:
    """Without aiohttp's handler cancellation the failed write is what stops the generation."""
    services, backend = services_with_fake(app_paths, Script(tokens=[f"t{i} " for i in range(500)], delay_s=0.01))
    runner = web.AppRunner(build_app(services))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1", api_key="unused",
                                max_retries=0, timeout=WAIT)  # fmt: skip
    try:
        stream = await client.chat.completions.create(model="fake-chat", messages=HELLO, stream=True, max_tokens=500)
        await anext(aiter(stream))
        await stream.close()
        await wait_until(lambda: services.manager.info("fake-chat").leases == 0, "the lease to go back")
        assert backend.emitted < 500
    finally:
        await client.close()
        await runner.cleanup()
        await services.manager.aclose()
        services.store.close()


# --- the wire ------------------------------------------------------------------------------------


async def post(url: str, body: bytes | dict, path: str = "/chat/completions") -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    timeout = aiohttp.ClientTimeout(total=WAIT)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url + path, data=data) as response:
        return response.status, dict(response.headers), await response.read()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        ({"model": "fake-chat"}, "messages"),
        ({"model": "fake-chat", "messages": []}, "messages"),
        ({"messages": HELLO}, "model"),
        ({"model": "fake-chat", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "fake-chat", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content"),
        ({"model": "fake-chat", "messages": HELLO, "temperature": -1}, "temperature"),
        ({"model": "fake-chat", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "fake-chat", "messages": HELLO, "n": 2}, "n"),
    ],
)  # fmt: skip
async def test_bad_requests_are_400_in_openais_shape(server: Running, body: bytes | dict, param: str | None) -> None:
    status, _, raw = await post(server.url, body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


async def test_unknown_routes_answer_in_openais_shape(server: Running) -> None:
    status, _, raw = await post(server.url, {}, path="/edits")
    assert status == 404 and json.loads(raw)["error"]["type"] == "invalid_request_error"


async def test_the_stream_on_the_wire(server: Running) -> None:
    status, headers, raw = await post(server.url, {"model": "fake-chat", "messages": HELLO, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = raw.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-1])
    first = json.loads(events[0].removeprefix("data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


async def test_trimmed_history_is_reported_in_a_header(server: Running) -> None:
    server.backend.script = Script(window=40)
    long_history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 10} for i in range(6)]
    body = {"model": "fake-chat", "messages": [*long_history, *HELLO], "max_tokens": 3}
    status, headers, raw = await post(server.url, body)
    assert status == 200 and int(headers[TRIMMED_HEADER]) > 0
    assert json.loads(raw)["choices"][0]["message"]["content"] == "Hello there!"


async def test_serve_stops_running_generations_and_leaves_the_services_to_their_owner(app_paths: AppPaths) -> None:
    services, backend = services_with_fake(app_paths, Script(tokens=[f"t{i} " for i in range(1000)], delay_s=0.01))
    async with serving(services, close=False) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=WAIT)
        stream = await client.chat.completions.create(model="fake-chat", messages=HELLO, stream=True, max_tokens=1000)
        await anext(aiter(stream))
        shutdown_started = time.monotonic()
    # well within aiohttp's shutdown timeout, after which it would cancel the handler instead
    assert time.monotonic() - shutdown_started < SHUTDOWN_TIMEOUT_S / 2
    rest = [chunk async for chunk in stream]  # what the server sent before closing
    assert rest[-1].choices[0].finish_reason == "stop"  # the client saw a clean end
    assert backend.emitted < 1000
    assert services.manager.info("fake-chat").leases == 0
    services.manager.inference.submit(lambda: None).result(timeout=WAIT)  # serve() closed nothing it did not open
    await client.close()
    await services.aclose()  # the owner closes them, once
    with pytest.raises(RuntimeError, match="shut down"):
        services.manager.inference.submit(lambda: None)
    await services.aclose()


# --- the real model --------------------------------------------------------------------------------


@pytest.mark.real_model
async def test_the_real_smollm2_streams_paris(smollm2_dir: Path, app_paths: AppPaths) -> None:
    from workbench.bootstrap import build_services
    from workbench.core.models.local import DEFAULT_CHAT_ID

    app_paths.models_dir.mkdir(parents=True)
    (app_paths.models_dir / DEFAULT_CHAT_ID).symlink_to(smollm2_dir)
    services = build_services(app_paths)
    async with serving(services) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        stream = await client.chat.completions.create(
            model=DEFAULT_CHAT_ID, messages=[{"role": "user", "content": "What is the capital of France?"}],
            stream=True, temperature=0, max_tokens=8, stream_options={"include_usage": True},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
        await client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text, text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 10
    assert 0 < chunks[-1].usage.completion_tokens <= 8
    services.store.close()


# --- prompt caches --------------------------------------------------------------------------------


class ReadingFake(FakeChatBackend):
    """The scripted model, reading its prompt in three chunks before the first token, as the MLX backend does."""

    def chat_stream(self, handle: Any, messages: list[dict[str, str]], sampling: SamplingSettings,
                    reuse: Any = None) -> Iterator[GenerationStep | PromptProgress]:  # fmt: skip
        total = self.count_prompt_tokens(handle, messages)
        for done in (2, total // 2, total):
            yield PromptProgress(done=done, total=total, cached=2)
        yield from super().chat_stream(handle, messages, sampling, reuse)


async def test_reading_the_prompt_sends_nothing_and_a_failure_after_it_is_still_a_status(server: Running) -> None:
    reading = ReadingFake(kind="fake-reading")
    server.services.manager.add_backend(reading)
    server.services.manager.register(fake_spec("fake-reading", kind="fake-reading"))
    text, chunks = await stream_text(server.client, model="fake-reading")
    assert text == "Hello there!"
    assert [c.choices[0].delta.content for c in chunks] == ["", "Hello", " there", "!", None]  # role, 3, finish
    answer = await server.client.chat.completions.create(model="fake-reading", messages=HELLO)
    assert answer.choices[0].message.content == "Hello there!"
    reading.script = Script(fail_after=0)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError, match="the fake model fell over"):
            await server.client.chat.completions.create(model="fake-reading", messages=HELLO, stream=stream)
    assert server.services.manager.info("fake-reading").leases == 0


async def test_usage_has_openais_cached_tokens_field(server: Running) -> None:
    answer = await server.client.chat.completions.create(model="fake-chat", messages=HELLO)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 0  # the fake reuses nothing
    status, _, raw = await post(server.url, {"model": "fake-chat", "messages": HELLO, "stream": True,
                                             "stream_options": {"include_usage": True}})  # fmt: skip
    usage = json.loads(raw.decode().split("\n\n")[-3].removeprefix("data: "))["usage"]
    assert status == 200 and usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"}


def words(first: int, count: int) -> str:
    """Text the tiny models' word-level tokenizer reads as ``count`` tokens, one per word."""
    return " ".join(f"w{(first + i) % 120}" for i in range(count))


def template_tokens(folder: Path, messages: list[dict[str, str]]) -> int:
    """How many tokens the model's own chat template makes of ``messages``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))


async def test_reused_prompt_caches_are_reported_as_cached_tokens(
    tiny_models: dict[str, Path], app_paths: AppPaths
) -> None:
    """The real MLX backend on tiny models: what a follow-up or a shared system prompt did not read again."""
    from workbench.bootstrap import build_services

    app_paths.models_dir.mkdir(parents=True)
    for name in ("small", "medium"):
        (app_paths.models_dir / f"tiny-{name}").symlink_to(tiny_models[name], target_is_directory=True)
    services = build_services(app_paths)
    system = {"role": "system", "content": words(0, 60)}
    conversation = [system, {"role": "user", "content": words(60, 40)}]
    greedy: dict[str, Any] = {"temperature": 0, "max_tokens": 5}
    async with serving(services) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=WAIT)
        first = await client.chat.completions.create(model="tiny-small", messages=conversation, **greedy)
        assert first.usage is not None and first.usage.prompt_tokens_details is not None
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        first_prompt = first.usage.prompt_tokens

        follow_up = [*conversation, {"role": "assistant", "content": first.choices[0].message.content or ""},
                     {"role": "user", "content": words(3, 4)}]  # fmt: skip
        stream = await client.chat.completions.create(model="tiny-small", messages=follow_up, stream=True,
                                                      stream_options={"include_usage": True}, **greedy)  # fmt: skip
        usage = [chunk async for chunk in stream][-1].usage
        assert usage is not None and usage.prompt_tokens_details is not None
        # the longest common token prefix: the first prompt (the template may render the answer's start otherwise)
        assert first_prompt - 3 <= usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens

        shared_system = [system, {"role": "user", "content": words(100, 10)}]
        other = await client.chat.completions.create(model="tiny-small", messages=shared_system, **greedy)
        assert other.usage is not None and other.usage.prompt_tokens_details is not None
        system_tokens = template_tokens(tiny_models["small"], [system])
        assert system_tokens <= other.usage.prompt_tokens_details.cached_tokens <= system_tokens + 2

        elsewhere = await client.chat.completions.create(model="tiny-medium", messages=conversation, **greedy)
        assert elsewhere.usage is not None and elsewhere.usage.prompt_tokens_details is not None
        assert elsewhere.usage.prompt_tokens_details.cached_tokens == 0  # another model's caches are not its own
        await client.close()
    services.store.close()


# --- limits: bodies and requests waiting -------------------------------------------------------------


@contextlib.asynccontextmanager
async def app_on_loopback(services: Services, limits: ServeLimits | None = None,
                          api_key: str | None = None) -> AsyncIterator[tuple[str, web.Application]]:  # fmt: skip
    """``build_app`` on a free port of 127.0.0.1; yields its base URL and the app."""
    app = build_app(services, limits, api_key)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", app
    finally:
        await runner.cleanup()
        await services.manager.aclose()
        services.store.close()


async def test_a_body_over_the_default_8_mb_is_413_and_one_under_it_is_read(app_paths: AppPaths) -> None:
    assert ServeLimits().max_body_bytes == 8 * 2**20
    services, backend = services_with_fake(app_paths)
    async with app_on_loopback(services) as (url, _app):
        over = json.dumps({"model": "fake-chat", "messages": HELLO, "pad": "x" * (8 * 2**20)}).encode()
        status, _, raw = await post(url, over)
        assert status == 413
        error = json.loads(raw)["error"]
        assert "larger than 8 MB" in error["message"] and "max_body_mb" in error["message"]
        assert error["code"] == "request_too_large" and set(error) == {"message", "type", "param", "code"}
        under = json.dumps({"model": "fake-chat", "messages": HELLO, "pad": "x" * (7 * 2**20)}).encode()
        status, _, raw = await post(url, under)
        assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "Hello there!"
    assert len(backend.calls) == 1


async def test_a_body_without_a_length_is_cut_off_at_the_limit(app_paths: AppPaths) -> None:
    services, backend = services_with_fake(app_paths)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse it by
        nonlocal sent
        yield b'{"model": "fake-chat", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}]}'

    async with app_on_loopback(services, ServeLimits(max_body_bytes=256 * 1024)) as (url, _app):
        timeout = aiohttp.ClientTimeout(total=WAIT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with contextlib.suppress(aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                async with session.post(url + "/chat/completions", data=chunks()) as response:
                    assert response.status == 413
                    assert "larger than 0.25 MB" in (await response.json())["error"]["message"]
    assert backend.calls == []


async def test_past_max_waiting_requests_a_request_gets_503_with_retry_after(app_paths: AppPaths) -> None:
    hold = threading.Event()
    services, backend = services_with_fake(app_paths, Script(hold=hold))
    async with app_on_loopback(services, ServeLimits(max_waiting=2)) as (url, app):
        waiting = app[WAITING]
        first = [asyncio.create_task(post(url, {"model": "fake-chat", "messages": HELLO})) for _ in range(2)]
        await wait_until(lambda: waiting.count == 2 and backend.started.is_set(), "two requests to wait")
        status, headers, raw = await post(url, {"model": "fake-chat", "messages": HELLO})
        assert status == 503 and int(headers["Retry-After"]) > 0
        error = json.loads(raw)["error"]
        assert error["type"] == "server_error" and error["code"] == "server_busy" and "2 requests" in error["message"]
        status, _, _ = await post(url, b"x" * 4096)  # refused before its body is read: not a 400
        assert status == 503
        hold.set()
        results = await asyncio.wait_for(asyncio.gather(*first), WAIT)
        assert [status for status, _, _ in results] == [200, 200]
        assert waiting.count == 0
        status, _, _ = await post(url, {"model": "fake-chat", "messages": HELLO})  # room again
        assert status == 200


async def test_a_conversation_no_context_can_hold_is_refused_before_the_model_loads(app_paths: AppPaths) -> None:
    services, backend = services_with_fake(app_paths)
    window = services.manager.context_length
    async with app_on_loopback(services) as (url, _app):
        huge = {"model": "fake-chat", "messages": [{"role": "user", "content": "word " * (window * 8)}]}
        status, _, raw = await post(url, huge)
        assert status == 400 and json.loads(raw)["error"]["code"] == "context_length_exceeded"
        assert services.manager.info("fake-chat").state is ModelState.UNLOADED and backend.calls == []
        history = [{"role": ("user", "assistant")[i % 2], "content": "word " * 400} for i in range(window // 4)]
        body = {"model": "fake-chat", "messages": [*history, *HELLO], "max_tokens": 3}
        status, headers, raw = await post(url, body)
        assert status == 200 and int(headers[TRIMMED_HEADER]) > len(history) // 2
        sent = backend.calls[-1]
        assert sum(len(m["content"]) for m in sent) <= window * MAX_CHARS_PER_TOKEN


# --- the key beyond loopback ---------------------------------------------------------------------------

KEY = "test-key-0123456789abcdef"


async def request(url: str, method: str, path: str, authorization: str | None,
                  body: dict | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session, session.request(
        method, url + path, json=body, headers=headers
    ) as response:
        return response.status, dict(response.headers), await response.read()


ROUTES = [("GET", "/models", None), ("GET", "/models/fake-chat", None),
          ("POST", "/chat/completions", {"model": "fake-chat", "messages": HELLO}), ("GET", "/no-such-route", None)]


async def test_with_a_key_every_route_asks_for_it(app_paths: AppPaths) -> None:
    services, backend = services_with_fake(app_paths)
    async with app_on_loopback(services, api_key=KEY) as (url, _app):
        for method, path, body in ROUTES:
            for wrong in (None, "", "Bearer", f"Bearer {KEY[:-1]}", f"Bearer {KEY}x", f"Basic {KEY}", KEY,
                          "Bearer wrong-key-0123456789abcde", "Bearer clé"):  # fmt: skip
                status, headers, raw = await request(url, method, path, wrong, body)
                assert status == 401, (method, path, wrong)
                assert headers["WWW-Authenticate"] == "Bearer"
                assert json.loads(raw)["error"]["code"] == "invalid_api_key"
            status, _, _ = await request(url, method, path, f"Bearer {KEY}", body)
            assert status == (404 if path == "/no-such-route" else 200), path
            assert (await request(url, method, path, f"bearer  {KEY} ", body))[0] == status  # scheme in any case
        assert len(backend.calls) == 2  # only the requests with the key reached the model
        client = openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=WAIT)
        assert (await client.chat.completions.create(model="fake-chat", messages=HELLO)).choices[0].message.content
        await client.close()
        wrong_client = openai.AsyncOpenAI(base_url=url, api_key="nope", max_retries=0, timeout=WAIT)
        with pytest.raises(openai.AuthenticationError):
            await wrong_client.models.list()
        await wrong_client.close()


def test_the_key_is_compared_in_constant_time() -> None:
    import inspect

    from workbench.server import limits

    assert "hmac.compare_digest(" in inspect.getsource(limits.require_key)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.5", False),
     ("gpu-box", False), ("localhost.example.com", False)],
)  # fmt: skip
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_serve_beyond_loopback_without_a_key_never_listens(app_paths: AppPaths) -> None:
    services, _backend = services_with_fake(app_paths)
    with pytest.raises(KeyRequiredError, match="needs an API key"):
        await serve(services, host="0.0.0.0", port=0, ready=lambda _url: pytest.fail("it listened"))
    services.store.close()


def run_serve_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    environment.pop("WB_SERVE_TEST_KEY", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "workbench.cli.main", "serve", *args], env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_workbench_serve_beyond_loopback_without_a_key_exits_2_saying_how(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for host in ("0.0.0.0", "::", "192.168.1.5", "gpu-box"):
        result = run_serve_cli(home, "--host", host, "--port", "0")
        assert result.returncode == 2, result.stderr
        assert f"refusing to serve on {host} without an API key" in result.stderr
        assert "--api-key-env VAR" in result.stderr and "[serve]" in result.stderr and "Bearer" in result.stderr
        assert "Traceback" not in result.stderr and "serving the OpenAI API" not in result.stderr
    unset = run_serve_cli(home, "--api-key-env", "WB_SERVE_TEST_KEY")  # asked for a key that is not there
    assert unset.returncode == 2 and "$WB_SERVE_TEST_KEY is empty or not set" in unset.stderr
    bad = run_serve_cli(home, "--host", "0.0.0.0", "--api-key-env", "sk-the-key-itself")
    assert bad.returncode == 2 and "not the key itself" in bad.stderr and "sk-the-key" not in bad.stderr
    assert not (home / "data" / "models").exists()  # refused before anything was imported


async def test_workbench_serve_with_a_key_from_the_config_checks_it_on_every_route(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    from workbench.core.models.local import DEFAULT_CHAT_ID

    paths = AppPaths.under(tmp_path / "home")
    paths.models_dir.mkdir(parents=True)
    (paths.models_dir / DEFAULT_CHAT_ID).symlink_to(tiny_models["small"])  # imported already: no import
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text('[serve]\napi_key_env = "WB_SERVE_TEST_KEY"\n')
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path),
           "WB_SERVE_TEST_KEY": KEY, "HF_HUB_OFFLINE": "1"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workbench.cli.main", "serve", "--port", "0", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        lines: list[str] = []
        while not any("serving the OpenAI API on" in line for line in lines):
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            assert line, "serve ended: " + "".join(lines)
            lines.append(line)
        url = next(line for line in lines if "serving" in line).split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        for method, path, body in ROUTES[:3]:
            assert (await request(url, method, path, None, body))[0] == 401
            assert (await request(url, method, path, "Bearer not-the-key", body))[0] == 401
        status, _, raw = await request(url, "GET", "/models", f"Bearer {KEY}")
        assert status == 200 and DEFAULT_CHAT_ID in [m["id"] for m in json.loads(raw)["data"]]
    finally:
        process.send_signal(signal.SIGTERM)  # closes the listener; the engine it started runs on until stopped
        try:
            assert await asyncio.wait_for(process.wait(), 60) == 0
        finally:
            stopped = subprocess.run([sys.executable, "-m", "workbench.cli.main", "stop"], env=env,
                                     capture_output=True, text=True, timeout=60)  # fmt: skip
            assert "engine stopped" in stopped.stdout, stopped.stderr
