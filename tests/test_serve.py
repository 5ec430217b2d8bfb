"""The OpenAI-compatible server, spoken to with the real openai client (and raw HTTP where the wire matters)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec, services_with_fake
from workbench.core.generation import ChatBackend
from workbench.core.lifecycle import ModelSpec
from workbench.core.memory import MB, Budget
from workbench.core.openai_server import SHUTDOWN_TIMEOUT_S, TRIMMED_HEADER, build_app, serve
from workbench.core.paths import AppPaths
from workbench.core.services import Services

WAIT = 20
HELLO = [{"role": "user", "content": "hi"}]


@dataclass
class Running:
    url: str
    services: Services
    backend: FakeChatBackend
    client: openai.AsyncOpenAI


@contextlib.asynccontextmanager
async def serving(services: Services) -> AsyncIterator[str]:
    """``serve`` on a free port of 127.0.0.1; yields its base URL, cancels it on the way out."""
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


async def test_models_lists_the_chat_models_only(server: Running) -> None:
    assert "all-MiniLM-L6-v2" in {info.spec.id for info in server.services.manager.models()}  # registered, yet
    models = await server.client.models.list()
    ids = [m.id for m in models.data]  # other tests may leave MLX models in the session's HF cache: also listed
    assert "fake-chat" in ids and "all-MiniLM-L6-v2" not in ids
    manager = server.services.manager
    assert all(isinstance(manager.backend_for(i), ChatBackend) for i in ids)
    assert all(m.owned_by == "workbench" and m.object == "model" for m in models.data)
    assert (await server.client.models.retrieve("fake-chat")).id == "fake-chat"


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
    status, _, raw = await post(server.url, {}, path="/completions")
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


async def test_serve_stops_running_generations_and_closes_the_manager(app_paths: AppPaths) -> None:
    services, backend = services_with_fake(app_paths, Script(tokens=[f"t{i} " for i in range(1000)], delay_s=0.01))
    async with serving(services) as url:
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
    with pytest.raises(RuntimeError, match="shut down"):
        services.manager.inference.submit(lambda: None)
    await client.close()
    services.store.close()


# --- the real model --------------------------------------------------------------------------------


@pytest.mark.real_model
async def test_the_real_smollm2_streams_paris(smollm2_dir: Path, app_paths: AppPaths) -> None:
    from workbench.core.local_models import DEFAULT_CHAT_ID
    from workbench.core.services import build_services

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
