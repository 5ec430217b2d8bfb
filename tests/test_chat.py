"""Chat runs on the real manager and inference thread with a scripted backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.fake_chat import KIND, FakeChatBackend, Script, fake_spec
from workbench.core.chat.run import (
    MAX_CHARS_PER_TOKEN,
    ChatError,
    ChatMessage,
    ChatRun,
    ContextTrimmed,
    Finished,
    Token,
    fit_to_context,
    trim_to_characters,
)
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelState

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


class CountingBackend(FakeChatBackend):
    """Records the characters of every prompt it is asked to tokenize."""

    def __init__(self, window: int) -> None:
        super().__init__(Script(window=window))
        self.counted: list[int] = []

    def count_prompt_tokens(self, handle: object, messages: list[dict[str, str]]) -> int:
        self.counted.append(sum(len(m["content"]) for m in messages))
        return super().count_prompt_tokens(handle, messages)


def linear_fit(backend: FakeChatBackend, messages: list[ChatMessage], window: int, reserve: int) -> tuple[int, int]:
    """The plain rule fit_to_context must keep: drop whole turns from the oldest until it fits."""
    system = [m for m in messages[:1] if m.role == "system"]
    turns = messages[len(system) :]
    dropped = 0
    while True:
        tokens = backend.count_prompt_tokens(None, [m.as_dict() for m in system + turns[dropped:]])
        if tokens + reserve <= window or dropped >= len(turns) - 1:
            return dropped, tokens
        dropped += 1
        while dropped < len(turns) - 1 and turns[dropped].role == "assistant":
            dropped += 1


def test_a_long_history_is_tokenized_a_few_times_and_only_what_could_fit() -> None:
    window = 64
    backend = CountingBackend(window)
    history = [ChatMessage(("user", "assistant")[i % 2], "word " * 20) for i in range(5000)]
    kept, dropped, tokens = fit_to_context(backend, None, [*history, user("last")], window, 8)
    assert kept[-1] == user("last") and dropped == len(history) + 1 - len(kept) and tokens + 8 <= window
    assert len(backend.counted) <= 16  # a binary search, not one count per dropped turn
    assert max(backend.counted) <= window * MAX_CHARS_PER_TOKEN  # never the whole 500,000 characters


def test_a_last_message_no_context_can_hold_is_refused_without_tokenizing() -> None:
    backend = CountingBackend(64)
    with pytest.raises(ChatError, match="characters, more than the model's context of 64 tokens"):
        fit_to_context(backend, None, [ChatMessage("system", "hi"), user("x" * (64 * MAX_CHARS_PER_TOKEN))], 64, 8)
    assert backend.counted == []
    assert trim_to_characters([user("x")] * 65, 64)[1] == 1  # more messages than tokens cannot fit either


@pytest.mark.parametrize("window", [30, 45, 60, 90, 200, 10_000])
def test_fitting_by_binary_search_keeps_what_the_plain_rule_keeps(window: int) -> None:
    import random

    rng = random.Random(window)
    for _ in range(30):
        roles = [rng.choice(["user", "assistant", "assistant"]) for _ in range(rng.randint(1, 12))]
        messages = [ChatMessage(role, "word " * rng.randint(0, 6)) for role in roles]
        if rng.random() < 0.5:
            messages.insert(0, ChatMessage("system", "be brief"))
        backend = FakeChatBackend(Script(window=window))
        expected_dropped, expected_tokens = linear_fit(backend, messages, window, 5)
        if expected_tokens >= window:
            with pytest.raises(ChatError):
                fit_to_context(backend, None, messages, window, 5)
            continue
        _kept, dropped, tokens = fit_to_context(backend, None, messages, window, 5)
        assert (dropped, tokens) == (expected_dropped, expected_tokens), messages
