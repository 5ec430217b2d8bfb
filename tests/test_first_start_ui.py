"""First start: a question sent while the default chat model is still being imported (or loaded) waits for it,
says what it waits for, and is answered when the model is ready. The import is scripted: the test says when
it progresses and when it ends."""

from __future__ import annotations

import threading
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Select, Static

from tests.support.fake_chat import FakeChatBackend, Script, services_with_fake
from tests.support.scripted_import import ScriptedImport, services_with_scripted_import
from tests.support.waits import wait_for
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.core.models.spec import ModelSpec, ModelState
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import MessageStatus
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.chat import ChatPane
from workbench.ui.screens.compare import ComparePane
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.chat_message import MessageView

SIZE = (80, 24)


def first_start_app(paths: AppPaths, script: Script | None = None) -> tuple[WorkbenchApp, FakeChatBackend,
                                                                              ScriptedImport]:  # fmt: skip
    services, backend, importer = services_with_scripted_import(paths, script)
    return WorkbenchApp(services, import_defaults=True, scan_cache=False), backend, importer


def notices(app: WorkbenchApp) -> list[str]:
    return [n.message for n in app._notifications]


def note(view: MessageView) -> str:
    return str(view.query_one(".note", Static).render())


async def open_pane(app: WorkbenchApp, pilot: Pilot, key: str, mode: str) -> Any:
    await pilot.press(key)
    await wait_for(pilot, lambda: app.current_mode == mode, f"the {mode} pane")
    screen = app.screen
    screen.query_one(ChatInput).focus()
    return screen


async def type_and_send(pilot: Pilot, text: str) -> None:
    await pilot.press(*text)
    await pilot.press("enter")


async def test_a_question_sent_while_the_default_model_imports_waits_and_is_answered(app_paths: AppPaths) -> None:
    app, backend, importer = first_start_app(app_paths, Script(tokens=["Paris", "."]))
    async with app.run_test(size=SIZE) as pilot:
        chat: ChatPane = await open_pane(app, pilot, "3", "chat")
        await wait_for(pilot, importer.started.is_set, "the import started")
        assert chat.model_id is None
        await importer.progress("converting weights", 0.4)
        select = chat.query_one("#model-select", Select)
        await wait_for(pilot, lambda: "importing SmolLM2 · 40 %" in select.prompt, "the model box saying so")

        await pilot.press("ctrl+l")  # an empty list helps nobody: say what is coming
        await wait_for(pilot, lambda: any("importing SmolLM2 · 40 %" in n for n in notices(app)), "the notice")
        assert not select.expanded

        await type_and_send(pilot, "capital of France?")
        await wait_for(pilot, lambda: len(chat.message_views()) == 2, "the question and a waiting answer")
        question, answer = chat.message_views()
        assert question.content == "capital of France?"
        await wait_for(pilot, lambda: "waiting: importing SmolLM2 · 40 %" in note(answer), "the wait in the answer")
        assert not any("Choose a model first" in n for n in notices(app))
        assert chat.query_one(ChatInput).text == ""  # sent: the box is free again

        await importer.progress("writing weights", 0.8)
        await wait_for(pilot, lambda: "importing SmolLM2 · 80 %" in note(answer), "the progress moving on")
        assert backend.calls == []  # nothing sent before the model is there

        await importer.finish()
        await wait_for(pilot, lambda: answer.content == "Paris.", "the answer", timeout=30)
        assert backend.calls == [[{"role": "user", "content": "capital of France?"}]]
        assert "waiting" not in note(answer)
        assert chat.model_id == DEFAULT_CHAT_ID
        conversation = app.services.store.chats.get_conversation(chat.conversation.id)
        assert conversation is not None and conversation.model_id == DEFAULT_CHAT_ID
        stored = app.services.store.chats.messages(chat.conversation.id)
        assert [m.role for m in stored] == ["user", "assistant"] and stored[-1].status is MessageStatus.COMPLETE


async def test_escape_while_waiting_stops_the_answer_and_nothing_is_sent_later(app_paths: AppPaths) -> None:
    app, backend, importer = first_start_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        chat: ChatPane = await open_pane(app, pilot, "3", "chat")
        await wait_for(pilot, importer.started.is_set, "the import started")
        await type_and_send(pilot, "hello")
        await wait_for(pilot, lambda: len(chat.message_views()) == 2, "a waiting answer")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not chat.answering, "the wait stopped")
        answer = chat.message_views()[-1]
        assert "stopped" in note(answer)
        assert app.services.store.chats.messages(chat.conversation.id)[-1].status is MessageStatus.STOPPED
        await importer.finish()
        await wait_for(pilot, lambda: chat.model_id == DEFAULT_CHAT_ID, "the model chosen once imported")
        assert backend.calls == []


async def test_a_failed_import_is_said_in_the_waiting_answer(app_paths: AppPaths) -> None:
    app, backend, importer = first_start_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        chat: ChatPane = await open_pane(app, pilot, "3", "chat")
        await wait_for(pilot, importer.started.is_set, "the import started")
        await type_and_send(pilot, "hello")
        await wait_for(pilot, lambda: len(chat.message_views()) == 2, "a waiting answer")
        await importer.fail(OSError("disk full"))
        answer = chat.message_views()[-1]
        await wait_for(pilot, lambda: "disk full" in note(answer), "the failure in the answer")
        assert "SmolLM2 could not be imported" in note(answer)
        assert app.services.store.chats.messages(chat.conversation.id)[-1].status is MessageStatus.ERROR
        await type_and_send(pilot, "again")  # nothing on its way now: refused, with the way out
        await wait_for(pilot, lambda: any("Choose a model first" in n for n in notices(app)), "the refusal")
        assert backend.calls == []


async def test_compare_keeps_a_prompt_sent_while_the_default_model_imports(app_paths: AppPaths) -> None:
    app, backend, importer = first_start_app(app_paths, Script(tokens=["Paris"]))
    async with app.run_test(size=(120, 30)) as pilot:
        compare: ComparePane = await open_pane(app, pilot, "4", "compare")
        await wait_for(pilot, importer.started.is_set, "the import started")
        await importer.progress("converting weights", 0.4)
        plan = compare.query_one("#compare-plan", Static)
        await wait_for(pilot, lambda: "importing SmolLM2 · 40 %" in str(plan.render()), "the plan line saying so")

        await type_and_send(pilot, "capital of France?")
        await wait_for(pilot, lambda: "your prompt goes" in str(plan.render()), "the prompt kept")
        assert not any("Choose model A" in n for n in notices(app))
        assert compare.query_one(ChatInput).text == ""
        await importer.finish()
        await wait_for(pilot, lambda: compare.side_widget("a").text == "Paris" == compare.side_widget("b").text,
                       "both answers", timeout=30)  # fmt: skip
        assert len(backend.calls) == 2 and all(call[-1]["content"] == "capital of France?" for call in backend.calls)
        assert str(compare.query_one("#model-a", Select).value) == DEFAULT_CHAT_ID


async def test_compare_escape_gives_a_waiting_prompt_back(app_paths: AppPaths) -> None:
    app, backend, importer = first_start_app(app_paths)
    async with app.run_test(size=(120, 30)) as pilot:
        compare: ComparePane = await open_pane(app, pilot, "4", "compare")
        await wait_for(pilot, importer.started.is_set, "the import started")
        await type_and_send(pilot, "keep me")
        await wait_for(pilot, lambda: compare.waiting_prompt == "keep me", "the prompt kept")
        await pilot.press("escape")
        await wait_for(pilot, lambda: compare.query_one(ChatInput).text == "keep me", "the prompt given back")
        await importer.finish()
        await wait_for(pilot, lambda: str(compare.query_one("#model-a", Select).value) == DEFAULT_CHAT_ID,
                       "the model chosen once imported")  # fmt: skip
        assert backend.calls == [] and compare.run is None


class GatedLoadBackend(FakeChatBackend):
    """Its load waits (on the inference thread) until the test opens the gate."""

    def __init__(self, script: Script | None = None) -> None:
        super().__init__(script)
        self.gate = threading.Event()

    def load(self, spec: ModelSpec) -> Any:
        assert self.gate.wait(30), "the test never opened the gate"
        return super().load(spec)


async def test_a_question_sent_while_the_model_loads_says_so_and_is_answered(app_paths: AppPaths) -> None:
    services, _ = services_with_fake(app_paths)
    backend = GatedLoadBackend(Script(tokens=["Hi"]))
    services.manager.add_backend(backend)  # replaces the plain fake for "fake-chat" models
    app = WorkbenchApp(services, import_defaults=False, scan_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        chat: ChatPane = await open_pane(app, pilot, "3", "chat")
        assert chat.model_id == "fake-chat"
        await type_and_send(pilot, "hello")
        await wait_for(pilot, lambda: len(chat.message_views()) == 2, "a waiting answer")
        answer = chat.message_views()[-1]
        await wait_for(pilot, lambda: "waiting: loading fake-chat" in note(answer), "the load in the answer")
        assert app.services.manager.info("fake-chat").state is ModelState.LOADING
        backend.gate.set()
        await wait_for(pilot, lambda: answer.content == "Hi", "the answer", timeout=30)
        assert "waiting" not in note(answer)


async def test_q_asks_while_the_default_model_imports(app_paths: AppPaths) -> None:
    """Quitting mid-import loses the import: `q` asks first, as it does while an answer streams."""
    from workbench.ui.screens.catalog import CatalogPane
    from workbench.ui.screens.dialogs import ConfirmScreen

    app, _backend, importer = first_start_app(app_paths)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, importer.started.is_set, "the import started")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane) and app.screen.is_mounted, "the Catalog")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the quit question")
        assert "import of SmolLM2" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, CatalogPane), "the question answered no")
        await importer.finish()
        await wait_for(pilot, lambda: not app.services.default_import.status.coming, "the import done")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, "the app to quit")
