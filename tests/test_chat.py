"""Chat runs on the real manager and inference thread with a scripted backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.fake_chat import KIND, FakeChatBackend, Script, fake_spec
from workbench.core.chat import ChatError, ChatMessage, ChatRun, ContextTrimmed, Finished, Token, fit_to_context
from workbench.core.inference import InferenceThread
from workbench.core.lifecycle import ModelManager, ModelState
from workbench.core.memory import GB, Budget
from workbench.core.sampling import SamplingSettings

WAIT = 20


@pytest.fixture
async def fake() -> AsyncIterator[tuple[ModelManager, FakeChatBackend]]:
    backend = FakeChatBackend()
    manager = ModelManager({KIND: backend}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(fake_spec())
    yield manager, backend
    await manager.aclose()


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


async def collect(run: ChatRun) -> list[object]:
    return [event async for event in run.events()]


async def test_tokens_then_figures(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    events = await asyncio.wait_for(collect(ChatRun(manager, "fake-chat", [user("hi")], SamplingSettings())), WAIT)
    assert [e.text for e in events if isinstance(e, Token)] == ["Hello", " there", "!"]
    finished = events[-1]
    assert isinstance(finished, Finished) and not finished.stopped and finished.finish_reason == "stop"
    assert finished.figures is not None
    assert finished.figures.generation_tokens == 3 and finished.figures.ttft_s >= 0
    assert backend.calls == [[{"role": "user", "content": "hi"}]]
    assert manager.info("fake-chat").state is ModelState.READY  # the lease went back


async def test_stop_takes_effect_before_the_next_token(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    backend.script = Script(tokens=[f"t{i} " for i in range(200)], delay_s=0.01)
    run = ChatRun(manager, "fake-chat", [user("go")], SamplingSettings(max_tokens=200))
    seen = 0
    finished = None
    async for event in run.events():
        if isinstance(event, Token):
            seen += 1
            if seen == 5:
                run.stop()
        elif isinstance(event, Finished):
            finished = event
    assert finished is not None and finished.stopped
    assert seen <= 6 and backend.emitted <= 7
    assert manager.info("fake-chat").leases == 0


async def test_backend_error_mid_stream_reaches_the_caller(fake: tuple[ModelManager, FakeChatBackend]) -> None:
    manager, backend = fake
    backend.script = Script(tokens=["a", "b", "c", "d"], fail_after=2)
    tokens: list[str] = []
    with pytest.raises(RuntimeError, match="fell over"):
        async for event in ChatRun(manager, "fake-chat", [user("x")], SamplingSettings()).events():
            if isinstance(event, Token):
                tokens.append(event.text)
    assert tokens == ["a", "b"]
    assert manager.info("fake-chat").leases == 0


async def test_oldest_turns_are_dropped_when_the_context_overflows(
    fake: tuple[ModelManager, FakeChatBackend],
) -> None:
    manager, backend = fake
    backend.script = Script(window=60)
    history = [ChatMessage("system", "be brief")]
    for i in range(6):
        history += [user(f"question {i} " + "word " * 5), ChatMessage("assistant", f"answer {i} " + "word " * 5)]
    history.append(user("last question"))
    events = await collect(ChatRun(manager, "fake-chat", history, SamplingSettings(max_tokens=10)))
    trimmed = events[0]
    assert isinstance(trimmed, ContextTrimmed) and trimmed.dropped > 0 and trimmed.window == 60
    sent = backend.calls[-1]
    assert sent[0] == {"role": "system", "content": "be brief"}
    assert sent[1]["role"] == "user"  # whole turns: never starts with an answer
    assert sent[-1] == {"role": "user", "content": "last question"}
    assert backend.count_prompt_tokens(None, sent) + 10 <= 60


def test_a_message_longer_than_the_context_is_refused() -> None:
    backend = FakeChatBackend(Script(window=20))
    with pytest.raises(ChatError, match="more than the model's context"):
        fit_to_context(backend, None, [user("word " * 50)], 20, 5)
