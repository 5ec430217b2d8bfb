"""ChatSession on a real store and the real manager with a scripted backend: what is saved, what is sent, how an
answer ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fake_chat import KIND, FakeChatBackend, Script, fake_spec
from tests.support.scripted_import import ScriptedImport
from workbench.core.chat.run import ChatMessage, ContextTrimmed, Token
from workbench.core.chat.sampling import SamplingChoice
from workbench.core.chat.session import (
    SAVE_INTERVAL_S,
    Answer,
    AnswerEnded,
    ChatBusyError,
    ChatSession,
    ModelChosen,
    SessionEvent,
    title_from,
)
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelRole
from workbench.core.models.wait import NO_MODEL, DefaultModelImport, Progress, Waiting
from workbench.core.settings.config import Settings
from workbench.core.storage.chats import MessageStatus
from workbench.core.storage.store import Store

WAIT = 20  # a bound against hanging, not an expected duration


class Clock:
    """Time that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def nothing_to_import(_progress: Progress) -> object:
    raise AssertionError("no import was planned")


@dataclass
class Chat:
    session: ChatSession
    store: Store
    manager: ModelManager
    backend: FakeChatBackend
    clock: Clock

    def session_with(self, default_import: DefaultModelImport) -> ChatSession:
        return ChatSession(self.store, self.manager, Settings(), default_import, clock=self.clock)


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    backend = FakeChatBackend()
    manager = ModelManager({KIND: backend}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(fake_spec())
    store = Store(tmp_path / "chat.db")
    clock = Clock()
    session = ChatSession(store, manager, Settings(), DefaultModelImport(nothing_to_import, "SmolLM2"), clock=clock)
    session.settle_model(manager.ids(ModelRole.CHAT))
    yield Chat(session, store, manager, backend, clock)
    store.close()
    await manager.aclose()


async def events_of(
    session: ChatSession, answer: Answer, each: Callable[[SessionEvent], None] = lambda _e: None
) -> list[SessionEvent]:
    async def collect() -> list[SessionEvent]:
        seen = []
        async with contextlib.aclosing(session.answer_events(answer)) as events:
            async for event in events:
                seen.append(event)
                each(event)
        return seen

    return await asyncio.wait_for(collect(), WAIT)


async def ask(session: ChatSession, text: str) -> list[SessionEvent]:
    return await events_of(session, session.send(text).answer)


def tokens(events: list[SessionEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def stored(chat: Chat) -> list[tuple[str, str, MessageStatus]]:
    assert chat.session.conversation is not None
    return [(m.role, m.content, m.status) for m in chat.store.chats.messages(chat.session.conversation.id)]


# --- the conversation --------------------------------------------------------------------------


async def test_the_first_message_creates_the_conversation_once(chat: Chat) -> None:
    chat.session.system_prompt = "Be brief."
    chat.session.sampling = SamplingChoice(values={"temperature": 0.2})
    first = chat.session.send("What is the capital of France, and why is it that one?")
    assert first.created and first.answer.message.status is MessageStatus.STREAMING
    await events_of(chat.session, first.answer)
    second = chat.session.send("And of Spain?")
    assert not second.created
    await events_of(chat.session, second.answer)

    conversations = chat.store.chats.list_conversations()
    assert len(conversations) == 1
    conversation = conversations[0]
    assert conversation.title == title_from("What is the capital of France, and why is it that one?")
    assert conversation.title.endswith("…") and len(conversation.title) == 48
    assert (conversation.model_id, conversation.system_prompt) == ("fake-chat", "Be brief.")
    assert conversation.sampling == {"temperature": 0.2}
    assert stored(chat) == [
        ("user", "What is the capital of France, and why is it that one?", MessageStatus.COMPLETE),
        ("assistant", "Hello there!", MessageStatus.COMPLETE),
        ("user", "And of Spain?", MessageStatus.COMPLETE),
        ("assistant", "Hello there!", MessageStatus.COMPLETE),
    ]


async def test_the_history_sent_is_the_system_prompt_and_every_answer_with_text(chat: Chat) -> None:
    chat.session.system_prompt = "Be brief."
    await ask(chat.session, "one")
    chat.backend.script = Script(tokens=["half ", "lost"], fail_after=1)  # an error answer: never sent again
    await ask(chat.session, "two")
    chat.backend.script = Script(tokens=[])  # an empty answer: nothing to send
    await ask(chat.session, "three")
    chat.backend.script = Script()
    sent = chat.session.send("four")
    await events_of(chat.session, sent.answer)

    expected = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "one"),
        ChatMessage("assistant", "Hello there!"),
        ChatMessage("user", "two"),
        ChatMessage("user", "three"),
        ChatMessage("user", "four"),
    ]
    assert sent.answer.history == expected
    assert chat.backend.calls[-1] == [m.as_dict() for m in expected]
    assert chat.backend.calls[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one"}]


async def test_without_a_system_prompt_none_is_sent(chat: Chat) -> None:
    await ask(chat.session, "hi")
    assert chat.backend.calls == [[{"role": "user", "content": "hi"}]]


async def test_open_new_settings_and_model_choice_are_kept_with_the_conversation(chat: Chat) -> None:
    await ask(chat.session, "first chat")
    first = chat.session.conversation
    assert first is not None
    chat.session.apply_settings("Answer in French.", SamplingChoice(values={"max_tokens": 2}))
    chat.session.new()
    assert chat.session.conversation is None
    await ask(chat.session, "second chat")
    assert chat.session.conversation is not None and chat.session.conversation.id != first.id
    assert chat.backend.sampling[-1].max_tokens == 2  # the session's choice goes on to the next chat

    again = ChatSession(chat.store, chat.manager, Settings(), DefaultModelImport(nothing_to_import, "SmolLM2"))
    messages = again.open(first.id)
    assert messages is not None and [m.content for m in messages] == ["first chat", "Hello there!"]
    assert (again.system_prompt, again.sampling, again.model_id) == (
        "Answer in French.", SamplingChoice(values={"max_tokens": 2}), "fake-chat"
    )  # fmt: skip
    assert again.open(first.id + 100) is None and again.conversation is not None

    chat.manager.register(fake_spec("other-chat"))
    again.choose_model("other-chat")
    assert chat.store.chats.get_conversation(first.id).model_id == "other-chat"  # type: ignore[union-attr]
    chat.store.chats.delete_conversation(first.id)
    assert not again.still_there() and again.conversation is None


def test_the_model_is_the_chosen_one_else_the_default_else_the_first(chat: Chat) -> None:
    session = chat.session
    session.model_id = "gone"
    assert session.settle_model(["a", DEFAULT_CHAT_ID, "b"]) == DEFAULT_CHAT_ID
    assert session.settle_model(["a", "b", DEFAULT_CHAT_ID]) == DEFAULT_CHAT_ID  # still there: kept
    session.model_id = None
    assert session.settle_model(["a", "b"]) == "a"
    assert session.settle_model([]) is None and session.model_id is None


# --- how an answer ends --------------------------------------------------------------------------


async def test_an_answer_ends_complete_with_its_figures(chat: Chat) -> None:
    sent = chat.session.send("hi")
    events = await events_of(chat.session, sent.answer)
    assert tokens(events) == "Hello there!"
    ended = events[-1]
    assert isinstance(ended, AnswerEnded) and ended.status is MessageStatus.COMPLETE and ended.error is None
    assert ended.figures is not None and ended.figures.generation_tokens == 3
    answer = chat.store.chats.messages(sent.user.conversation_id)[-1]
    assert answer.status is MessageStatus.COMPLETE and answer.figures == ended.figures.to_dict()
    assert not chat.session.answering


async def test_the_partial_answer_is_saved_at_least_every_save_interval(chat: Chat) -> None:
    chat.backend.script = Script(tokens=["a", "b", "c", "d"])
    sent = chat.session.send("spell")
    seen: list[str] = []

    def on_token(event: SessionEvent) -> None:
        if isinstance(event, Token):
            seen.append(chat.store.chats.messages(sent.user.conversation_id)[-1].content)
            chat.clock.now += SAVE_INTERVAL_S * 0.6

    await events_of(chat.session, sent.answer, on_token)
    assert seen == ["", "", "abc", "abc"]  # saved once 0.5 s had passed, then not again before the next 0.5 s
    assert stored(chat)[-1] == ("assistant", "abcd", MessageStatus.COMPLETE)


async def test_stop_keeps_the_partial_answer_as_stopped(chat: Chat) -> None:
    chat.backend.script = Script(tokens=[f"w{i} " for i in range(300)], delay_s=0.01)
    sent = chat.session.send("talk")
    assert not chat.session.stop()  # no model answers yet: the caller cancels the task instead
    count = 0

    def stop_after_two(event: SessionEvent) -> None:
        nonlocal count
        if isinstance(event, Token):
            count += 1
            if count == 2:
                assert chat.session.stop()

    events = await events_of(chat.session, sent.answer, stop_after_two)
    ended = events[-1]
    assert isinstance(ended, AnswerEnded) and ended.status is MessageStatus.STOPPED
    _role, content, status = stored(chat)[-1]
    assert status is MessageStatus.STOPPED and content == tokens(events) == ended.text
    assert 2 <= len(content.split()) <= 3


async def test_an_answer_cancelled_mid_stream_is_saved_as_stopped(chat: Chat) -> None:
    """What happens when the app closes mid-answer: the task is cancelled, what came is kept."""
    chat.backend.script = Script(tokens=[f"w{i} " for i in range(1000)], delay_s=0.01)
    sent = chat.session.send("long one")
    first = asyncio.Event()
    task = asyncio.create_task(
        events_of(chat.session, sent.answer, lambda e: first.set() if isinstance(e, Token) else None)
    )
    await asyncio.wait_for(first.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _role, content, status = stored(chat)[-1]
    assert status is MessageStatus.STOPPED and content.startswith("w0 ") and len(content.split()) < 1000
    assert sent.answer.ended().status is MessageStatus.STOPPED
    assert not chat.session.answering
    assert chat.manager.info("fake-chat").leases == 0


async def test_an_answer_closed_mid_stream_is_saved_as_stopped(chat: Chat) -> None:
    chat.backend.script = Script(tokens=[f"w{i} " for i in range(1000)], delay_s=0.01)
    sent = chat.session.send("long one")
    events = chat.session.answer_events(sent.answer)
    while not isinstance(await asyncio.wait_for(anext(events), WAIT), Token):
        pass
    await events.aclose()
    assert stored(chat)[-1][1:] == ("w0 ", MessageStatus.STOPPED)
    assert chat.manager.info("fake-chat").leases == 0


async def test_a_backend_error_keeps_the_partial_answer_and_says_what_happened(chat: Chat) -> None:
    chat.backend.script = Script(tokens=["partial ", "answer ", "lost"], fail_after=2)
    sent = chat.session.send("hi")
    events = await events_of(chat.session, sent.answer)
    ended = events[-1]
    assert isinstance(ended, AnswerEnded) and ended.status is MessageStatus.ERROR
    assert ended.error == "RuntimeError: the fake model fell over"
    answer = chat.store.chats.messages(sent.user.conversation_id)[-1]
    assert (answer.content, answer.status, answer.error) == ("partial answer ", MessageStatus.ERROR, ended.error)
    chat.backend.script = Script()
    await ask(chat.session, "again")  # the session goes on
    assert stored(chat)[-1][2] is MessageStatus.COMPLETE


async def test_no_model_is_an_error_in_the_answer(chat: Chat) -> None:
    chat.session.model_id = None
    assert not chat.session.can_send()
    events = await ask(chat.session, "anyone?")
    ended = events[-1]
    assert isinstance(ended, AnswerEnded) and (ended.status, ended.error) == (MessageStatus.ERROR, NO_MODEL)
    assert stored(chat)[-1] == ("assistant", "", MessageStatus.ERROR)
    assert chat.backend.calls == []


async def test_a_too_long_history_is_trimmed_and_said(chat: Chat) -> None:
    chat.backend.script = Script(window=60)
    chat.session.sampling = SamplingChoice(values={"max_tokens": 10})
    for i in range(4):
        await ask(chat.session, f"question {i} " + "word " * 8)
    events = await ask(chat.session, "last")
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert len(trimmed) == 1 and trimmed[0].dropped > 0 and trimmed[0].window == 60
    assert isinstance(events[-1], AnswerEnded) and events[-1].status is MessageStatus.COMPLETE


async def test_one_answer_at_a_time(chat: Chat) -> None:
    sent = chat.session.send("first")
    with pytest.raises(ChatBusyError):
        chat.session.send("second")
    with pytest.raises(ChatBusyError):
        chat.session.new()
    assert chat.session.regenerate() is None and chat.session.edit_last() is None
    await events_of(chat.session, sent.answer)
    chat.session.send("second")  # accepted once the first answer ended


async def test_an_answer_waits_for_the_default_model_and_the_chat_takes_it(chat: Chat) -> None:
    importer = ScriptedImport(chat.manager, fake_spec(DEFAULT_CHAT_ID))
    default_import = DefaultModelImport(importer, "SmolLM2")
    session = chat.session_with(default_import)
    assert session.model_id is None and not session.can_send()
    importing = asyncio.create_task(default_import.run())
    await asyncio.wait_for(importer.started.wait(), WAIT)
    assert session.can_send()
    sent = session.send("capital of France?")
    assert session.conversation is not None and session.conversation.model_id is None
    waits: list[str] = []
    changed = asyncio.Event()

    def on_wait(event: SessionEvent) -> None:
        if isinstance(event, Waiting):
            waits.append(event.what)
            changed.set()

    answering = asyncio.create_task(events_of(session, sent.answer, on_wait))
    await asyncio.wait_for(changed.wait(), WAIT)
    changed.clear()
    await importer.progress("converting weights", 0.4)
    await asyncio.wait_for(changed.wait(), WAIT)
    assert waits[-1] == "importing SmolLM2 · 40 %"
    assert chat.backend.calls == []  # nothing sent before the model is there
    await importer.finish()
    events = await answering
    await importing
    assert waits[-1] == ""  # "" once the model answers
    assert ModelChosen(DEFAULT_CHAT_ID) in events
    assert events.index(ModelChosen(DEFAULT_CHAT_ID)) < next(i for i, e in enumerate(events) if isinstance(e, Token))
    assert session.model_id == DEFAULT_CHAT_ID
    assert chat.store.chats.get_conversation(session.conversation.id).model_id == DEFAULT_CHAT_ID  # type: ignore[union-attr]
    assert chat.backend.calls == [[{"role": "user", "content": "capital of France?"}]]


# --- regenerate and edit --------------------------------------------------------------------------


async def test_regenerate_replaces_the_last_answer_with_the_same_history(chat: Chat) -> None:
    await ask(chat.session, "first")
    old_answer = chat.store.chats.messages(chat.session.conversation.id)[-1]  # type: ignore[union-attr]
    regenerated = chat.session.regenerate()
    assert regenerated is not None
    removed, answer = regenerated
    assert removed == old_answer.id
    await events_of(chat.session, answer)
    assert chat.backend.calls[1] == chat.backend.calls[0]
    assert [m[0] for m in stored(chat)] == ["user", "assistant"]
    assert chat.session.regenerate() is not None  # the conversation ends with an answer again


async def test_regenerate_needs_an_answer_last(chat: Chat) -> None:
    assert chat.session.regenerate() is None  # no conversation
    chat.session.model_id = None
    await ask(chat.session, "nobody answers")
    assert chat.session.regenerate() is None  # no model chosen


async def test_edit_last_takes_back_the_last_message_and_what_came_after(chat: Chat) -> None:
    assert chat.session.edit_last() is None
    await ask(chat.session, "one")
    await ask(chat.session, "two")
    ids = [m.id for m in chat.store.chats.messages(chat.session.conversation.id)]  # type: ignore[union-attr]
    edited = chat.session.edit_last()
    assert edited == ("two", ids[2:])
    assert [m[1] for m in stored(chat)] == ["one", "Hello there!"]


async def test_a_delete_refused_during_an_answer_names_the_chat_pane(chat: Chat) -> None:
    """The session borrows its model as "the Chat pane": a refused unregister (a delete) says who holds it."""
    from workbench.core.models.spec import ModelInUseError

    async def first_token_then_unregister() -> str:
        async with contextlib.aclosing(chat.session.answer_events(chat.session.send("Hello").answer)) as events:
            async for event in events:
                if isinstance(event, Token):
                    with pytest.raises(ModelInUseError) as refused:
                        await chat.manager.unregister(fake_spec().id)
                    return str(refused.value)
        raise AssertionError("the answer had no token")

    assert "in use by the Chat pane" in await asyncio.wait_for(first_token_then_unregister(), WAIT)
