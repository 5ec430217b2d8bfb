"""Pilot tests of the Chat pane with a scripted backend: stream, stop, errors, regenerate, edit, history."""

from __future__ import annotations

import asyncio
import threading

from textual.pilot import Pilot

from tests.support.fake_chat import FakeChatBackend, Script, services_with_fake
from tests.support.waits import wait_for
from workbench.core.chat.run import Reading
from workbench.core.chat.sampling import SamplingChoice
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import MessageStatus
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.chat import ChatPane
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.chat_message import MessageView

SIZE = (80, 24)
WAIT = 60  # a bound against hanging, not an expected duration


def chat_app(paths: AppPaths, script: Script | None = None) -> tuple[WorkbenchApp, FakeChatBackend]:
    services, backend = services_with_fake(paths, script)
    return WorkbenchApp(services, import_defaults=False, scan_cache=False), backend


async def open_chat(app: WorkbenchApp, pilot: Pilot) -> ChatPane:
    await pilot.press("3")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatPane), "the Chat pane")
    screen = app.screen
    assert isinstance(screen, ChatPane)
    screen.query_one(ChatInput).focus()
    return screen


async def send(pilot: Pilot, text: str) -> None:
    await pilot.press(*text)
    await pilot.press("enter")


def answer_on_screen(chat: ChatPane) -> str:
    return chat.message_views()[-1].markdown.source


async def answer_done(app: WorkbenchApp, pilot: Pilot) -> None:
    """Wait until the chat's answer is over: the message was taken (the input is empty), no answer runs any more,
    and the conversation ends with a saved, finished answer."""
    chat = app.screen
    assert isinstance(chat, ChatPane)

    def over() -> bool:
        if chat.query_one(ChatInput).text or chat.run is not None or chat.conversation is None:
            return False
        if any(w.group == "chat-answer" and not w.is_finished for w in app.workers):
            return False
        messages = app.services.store.chats.messages(chat.conversation.id)
        return bool(messages) and messages[-1].role == "assistant" and messages[-1].status != MessageStatus.STREAMING

    await wait_for(pilot, over, "the answer to finish", timeout=WAIT)


async def test_answer_streams_in_with_figures_and_is_saved(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths, Script(tokens=["The ", "**capital**", " is Paris."]))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        assert chat.model_id == "fake-chat"
        await send(pilot, "capital of France?")
        await answer_done(app, pilot)
        views = chat.message_views()
        assert [v.role for v in views] == ["user", "assistant"]
        assert views[1].content == "The **capital** is Paris."
        assert "tok/s" in str(views[1].query_one(".figures").render())
        stored = app.services.store.chats.messages(chat.conversation.id)
        assert stored[-1].status is MessageStatus.COMPLETE and stored[-1].figures
        assert backend.calls[-1][-1] == {"role": "user", "content": "capital of France?"}


async def test_escape_stops_within_a_token_and_keeps_the_partial_answer(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths, Script(tokens=[f"w{i} " for i in range(300)], delay_s=0.02))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "talk")
        assert await asyncio.to_thread(backend.started.wait, WAIT)
        await wait_for(pilot, lambda: answer_on_screen(chat).startswith("w0 "), "the first words on screen")
        await pilot.press("escape")
        emitted_at_stop = backend.emitted
        await answer_done(app, pilot)
        assert backend.emitted <= emitted_at_stop + 1
        answer = chat.message_views()[-1]
        stored = app.services.store.chats.messages(chat.conversation.id)[-1]
        assert stored.status is MessageStatus.STOPPED
        assert 0 < len(stored.content.split()) < 300 and answer.content == stored.content
        assert "stopped" in str(answer.query_one(".note").render())


async def test_backend_error_mid_stream_is_shown_in_the_message(app_paths: AppPaths) -> None:
    app, _ = chat_app(app_paths, Script(tokens=["partial ", "answer ", "lost"], fail_after=2))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "hi")
        await answer_done(app, pilot)
        answer = chat.message_views()[-1]
        assert answer.content == "partial answer "
        assert "fell over" in str(answer.query_one(".note").render())
        stored = app.services.store.chats.messages(chat.conversation.id)[-1]
        assert stored.status is MessageStatus.ERROR and "fell over" in (stored.error or "")
        await send(pilot, "again")  # the pane still works
        await answer_done(app, pilot)
        assert len(chat.message_views()) == 4


async def test_regenerate_and_edit_the_last_message(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "first")
        await answer_done(app, pilot)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(backend.calls) == 2, "the second answer to start")
        await answer_done(app, pilot)
        assert len(backend.calls) == 2 and backend.calls[1] == backend.calls[0]
        assert len(chat.message_views()) == 2
        await pilot.press("f2")
        await wait_for(pilot, lambda: chat.query_one(ChatInput).text == "first", "the last message to edit")
        assert chat.message_views() == []
        await pilot.press("end", *" again", "enter")
        await answer_done(app, pilot)
        assert backend.calls[-1][-1]["content"] == "first again"
        assert next(m.content for m in app.services.store.chats.messages(chat.conversation.id)) == "first again"


async def test_newline_key_and_copy(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await pilot.press(*"line one", "ctrl+j", *"line two", "enter")
        await answer_done(app, pilot)
        assert backend.calls[-1][-1]["content"] == "line one\nline two"
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: app.clipboard == "Hello there!", "the answer in the clipboard")
        first = chat.message_views()[0]
        first.focus()
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: app.clipboard == "line one\nline two", "the message in the clipboard")


async def test_conversation_is_there_after_a_restart(app_paths: AppPaths) -> None:
    app, _ = chat_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await open_chat(app, pilot)
        await send(pilot, "remember me")
        await answer_done(app, pilot)
    again, _ = chat_app(app_paths)
    async with again.run_test(size=SIZE) as pilot:
        chat = await open_chat(again, pilot)
        await wait_for(pilot, lambda: len(chat.message_views()) == 2, "the last conversation")
        assert [v.content for v in chat.message_views()] == ["remember me", "Hello there!"]
        assert isinstance(chat.message_views()[0], MessageView)


async def test_history_and_settings_from_the_chat_pane(app_paths: AppPaths) -> None:
    from workbench.ui.screens.chat_history import HistoryScreen
    from workbench.ui.screens.chat_settings import SettingsScreen

    app, backend = chat_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "about cats")
        await answer_done(app, pilot)
        first = chat.conversation
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: chat.conversation is None, "a new chat")
        await send(pilot, "about dogs")
        await answer_done(app, pilot)
        assert chat.conversation.id != first.id

        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), "the history")
        await pilot.press("/", *"cats", "enter")
        await wait_for(pilot, lambda: app.screen is chat and chat.conversation.id == first.id, "the first chat")
        assert chat.message_views()[0].content == "about cats"

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings")
        app.screen.query_one("#max_tokens").value = "2"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is chat and chat.effective_sampling().settings.max_tokens == 2,
                       "the settings applied")
        await send(pilot, "short please")
        await answer_done(app, pilot)
        assert chat.message_views()[-1].content == "Hello there"
        assert backend.sampling[-1].max_tokens == 2
        assert app.services.store.chats.get_conversation(first.id).sampling["max_tokens"] == 2


async def test_paints_are_bounded_however_fast_tokens_come(app_paths: AppPaths, monkeypatch) -> None:
    import time

    from textual.widgets._markdown import MarkdownStream

    writes: list[float] = []
    original = MarkdownStream.write

    async def counting_write(self: MarkdownStream, fragment: str) -> None:
        writes.append(time.monotonic())
        await original(self, fragment)

    monkeypatch.setattr(MarkdownStream, "write", counting_write)
    app, _ = chat_app(app_paths, Script(tokens=[f"t{i} " for i in range(3000)]))  # no delay: as fast as it gets
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        chat.sampling = SamplingChoice(values={"max_tokens": 3000})
        started = time.monotonic()
        await send(pilot, "flood")
        await answer_done(app, pilot)
        elapsed = time.monotonic() - started
        assert chat.message_views()[-1].content.count(" ") == 3000
    assert len(writes) <= elapsed * 30 + 2  # 30 paints a second at most, plus the final flush


async def test_quitting_mid_answer_keeps_it_as_stopped(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths, Script(tokens=[f"w{i} " for i in range(1000)], delay_s=0.01))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "long one")
        assert await asyncio.to_thread(backend.started.wait, WAIT)
        await wait_for(pilot, lambda: answer_on_screen(chat).startswith("w0 "), "the first words on screen")
        conversation_id = chat.conversation.id
    from workbench.core.storage.store import Store

    store = Store(app_paths.database_file)
    answer = store.chats.messages(conversation_id)[-1]
    assert answer.status is MessageStatus.STOPPED and answer.content.startswith("w0 ")
    store.close()


async def test_a_message_of_an_earlier_answer_is_dropped(app_paths: AppPaths) -> None:
    from workbench.core.chat.session import AnswerEnded
    from workbench.ui.screens.chat_stream import AnswerOver, AnswerText

    app, _ = chat_app(app_paths, Script(tokens=[f"w{i} " for i in range(300)], delay_s=0.02))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "talk")
        await wait_for(pilot, lambda: answer_on_screen(chat).startswith("w0 "), "the first words on screen")
        earlier = chat.generation - 1
        late = AnswerOver(earlier, AnswerEnded(MessageStatus.ERROR, "stale", None, "stale"))
        chat.post_message(AnswerText(earlier, "STALE "))
        chat.post_message(late)
        await wait_for(pilot, late.rendered.is_set, "the late message handled")
        assert chat.answering and "STALE" not in answer_on_screen(chat)
        await pilot.press("escape")
        await answer_done(app, pilot)
        assert "stale" not in str(chat.message_views()[-1].query_one(".note").render())
        assert "STALE" not in chat.message_views()[-1].content


async def test_a_conversation_longer_than_the_context_says_what_was_not_sent(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths, Script(window=30))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        chat.sampling = SamplingChoice(values={"max_tokens": 3})
        for text in ("one two three four five six", "seven eight nine ten eleven twelve", "last"):
            await send(pilot, text)
            await answer_done(app, pilot)
        note = str(chat.message_views()[-1].query_one(".note").render())
        assert "longer than the model's context (30 tokens)" in note and "were not sent" in note
        assert any("were not sent" in n.message for n in app._notifications)
        assert backend.calls[-1][-1] == {"role": "user", "content": "last"} and len(backend.calls[-1]) < 5


def note_of(view: MessageView) -> str:
    return str(view.query_one(".note").render())


def status_of(chat: ChatPane) -> str:
    return str(chat.query_one("#chat-status").render())


async def test_reading_the_prompt_shows_its_progress_until_the_first_token(app_paths: AppPaths) -> None:
    hold = threading.Event()  # the fake reads its first quarter of the prompt, then waits for this
    app, backend = chat_app(app_paths, Script(reading_chunks=4, reading_hold=hold, cached=2))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        try:
            await send(pilot, "read this")
            await wait_for(pilot, lambda: "reading the prompt" in note_of(chat.message_views()[-1]), "the progress")
            total = backend.count_prompt_tokens(None, backend.calls[-1])
            percent = Reading(2 + (total - 2) // 4, total, 2).percent
            assert note_of(chat.message_views()[-1]) == f"reading the prompt · {percent} % · 2 of {total} tokens cached"
            assert status_of(chat).startswith(f"reading the prompt · {percent} %") and "busy" not in status_of(chat)
            assert chat.message_views()[-1].markdown.source == ""
        finally:
            hold.set()
        await answer_done(app, pilot)
        answer = chat.message_views()[-1]
        assert answer.content == "Hello there!" and backend.read_chunks == 4
        assert "reading" not in note_of(answer) and "reading" not in status_of(chat)
        assert f"prompt {total} tok, 2 cached" in str(answer.query_one(".figures").render())


async def test_figures_say_how_much_of_the_prompt_came_from_the_cache(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths, Script(cached=3))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "again")
        await answer_done(app, pilot)
        total = backend.count_prompt_tokens(None, backend.calls[-1])
        assert f"prompt {total} tok, 3 cached @" in str(chat.message_views()[-1].query_one(".figures").render())
        stored = app.services.store.chats.messages(chat.conversation.id)[-1]
        assert stored.figures is not None and stored.figures["cached_tokens"] == 3


async def test_escape_while_reading_the_prompt_stops_it_there(app_paths: AppPaths) -> None:
    app, backend = chat_app(app_paths, Script(reading_chunks=100, reading_delay_s=0.2))  # 20 s of reading
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "a long prompt")
        await wait_for(pilot, lambda: "reading the prompt" in note_of(chat.message_views()[-1]), "the progress")
        await pilot.press("escape")
        read_at_stop = backend.read_chunks
        await answer_done(app, pilot)
        assert await asyncio.to_thread(backend.closed.wait, WAIT)
        assert backend.read_chunks <= read_at_stop + 1 < 100 and backend.emitted == 0  # closed between two chunks
        answer = chat.message_views()[-1]
        assert note_of(answer) == "(stopped while reading the prompt)"
        assert str(answer.query_one(".figures").render()) == "" and "reading" not in status_of(chat)
        stored = app.services.store.chats.messages(chat.conversation.id)[-1]
        assert stored.status is MessageStatus.STOPPED and stored.content == "" and stored.figures is None
