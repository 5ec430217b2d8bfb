"""The app as `workbench` builds it (RemoteServices: its Chat pane's session a RemoteChatSession) against a real
engine on a temporary socket (on its own thread: the pane's intents are blocking calls): the answer streams onto
the screen and the engine stores it; Esc stops it;
a TUI that quits mid-answer leaves it to the engine; the next TUI follows it from where it is, and once it is
over, Chat opens the finished answer (issue 16, 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.support.engines import EngineThread, engine_thread
from tests.support.fake_chat import Script, services_with_fake
from tests.support.waits import wait_for
from workbench.client.chat_session import RemoteChatSession
from workbench.client.engine import EngineNotRunning, engine_info_sync
from workbench.client.remote_services import RemoteServices
from workbench.core.engine_home import engine_home
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import MessageStatus, StoredMessage
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.chat import ChatPane
from workbench.ui.widgets.chat_input import ChatInput

SIZE = (80, 24)
WAIT = 60  # a bound against hanging, not an expected duration


def remote_app(paths: AppPaths) -> WorkbenchApp:
    """The app as `workbench` builds it: attached to the engine of ``paths``' data folder (the test runs that one)."""
    home = engine_home(paths)

    def start() -> dict[str, Any]:
        info = engine_info_sync(home.socket)
        if info is None:
            raise EngineNotRunning("no engine (the test runs it)")
        return info

    return WorkbenchApp(RemoteServices(paths, start=start), import_defaults=False)


async def open_chat(app: WorkbenchApp, pilot: Pilot) -> ChatPane:
    await pilot.press("3")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatPane), "the Chat pane")
    screen = app.screen
    assert isinstance(screen, ChatPane)
    assert isinstance(screen.session, RemoteChatSession)
    await wait_for(pilot, lambda: screen.model_id == "fake-chat", "the engine's model chosen", WAIT)
    screen.query_one(ChatInput).focus()
    return screen


def engine_messages(running: EngineThread) -> list[StoredMessage]:
    def latest() -> list[StoredMessage]:
        conversations = running.services.store.chats.list_conversations(limit=1)
        return running.services.store.chats.messages(conversations[0].id) if conversations else []

    return running.call(latest)


async def test_the_chat_pane_streams_an_answer_the_engine_runs_and_esc_stops_one(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path / "engine")
    home = engine_home(paths)
    script = Script(tokens=["The ", "**capital**", " is Paris."])
    with engine_thread(lambda: services_with_fake(paths, script), home) as running:
        app = remote_app(paths)
        async with app.run_test(size=SIZE) as pilot:
            chat = await open_chat(app, pilot)
            assert chat.model_id == "fake-chat"
            await pilot.press(*"capital?", "enter")
            await wait_for(pilot, lambda: chat.live is None and len(chat.message_views()) == 2, "the answer shown")
            views = chat.message_views()
            assert views[1].content == "The **capital** is Paris."
            assert "tok/s" in str(views[1].query_one(".figures").render())
            [user, answer] = engine_messages(running)
            assert (user.content, answer.content, answer.status) == ("capital?", "The **capital** is Paris.",
                                                                    MessageStatus.COMPLETE)  # fmt: skip
            assert app.services.store.read_only  # the engine wrote it; the face reads it
            [conversation] = app.services.store.chats.list_conversations()
            face_read = [m.content for m in app.services.store.chats.messages(conversation.id)]
            assert face_read == ["capital?", answer.content]

            script.tokens, script.delay_s = [f"w{i} " for i in range(300)], 0.02
            await pilot.press(*"talk", "enter")
            await wait_for(pilot, lambda: chat.message_views()[-1].markdown.source.startswith("w0 "), "the first words")
            await pilot.press("escape")
            await wait_for(pilot, lambda: chat.live is None, "the stopped answer shown")
            stopped = engine_messages(running)[-1]
            assert stopped.status is MessageStatus.STOPPED and 0 < len(stopped.content.split()) < 300
            assert chat.message_views()[-1].content == stopped.content
            assert "stopped" in str(chat.message_views()[-1].query_one(".note").render())


async def test_a_tui_that_quits_mid_answer_leaves_it_to_the_engine_and_the_next_follows_then_opens_it(
    tmp_path: Path,
) -> None:
    paths = AppPaths.under(tmp_path / "engine")
    home = engine_home(paths)
    tokens = [f"w{i} " for i in range(300)]
    with engine_thread(lambda: services_with_fake(paths, Script(tokens=tokens, delay_s=0.02)), home) as running:
        first = remote_app(paths)
        async with first.run_test(size=SIZE) as pilot:
            chat = await open_chat(first, pilot)
            await pilot.press(*"talk", "enter")
            await wait_for(pilot, lambda: chat.message_views()[-1].markdown.source.startswith("w0 "), "the first words")
        # the TUI is gone, mid-answer: the engine goes on, and the next TUI follows the answer where it is
        assert running.backend.emitted < len(tokens)

        second = remote_app(paths)
        async with second.run_test(size=SIZE) as pilot:
            chat = await open_chat(second, pilot)
            await wait_for(pilot, lambda: chat.live is not None, "the running answer followed")
            assert running.backend.emitted < len(tokens)
            assert [v.role for v in chat.message_views()] == ["user", "assistant"]
            await wait_for(pilot, lambda: chat.live is None, "the answer to end on screen")
            [stored] = engine_messages(running)[-1:]
            assert stored.status is MessageStatus.COMPLETE and stored.content == "".join(tokens)
            view = chat.message_views()[-1]
            assert view.content == stored.content and "tok/s" in str(view.query_one(".figures").render())
            assert len(chat.message_views()) == 2

        third = remote_app(paths)
        async with third.run_test(size=SIZE) as pilot:  # over by now: Chat opens the finished answer
            chat = await open_chat(third, pilot)
            await wait_for(pilot, lambda: len(chat.message_views()) == 2, "the conversation opened")
            assert chat.live is None and chat.message_views()[-1].content == "".join(tokens)
