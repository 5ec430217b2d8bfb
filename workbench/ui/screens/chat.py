"""The Chat pane: pick a local model, type, watch the answer stream in as Markdown with its figures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Select, Static
from textual.worker import Worker

from workbench.core.chat.model_sampling import chat_sampling, model_sampling_by_id
from workbench.core.chat.run import ChatError, ChatMessage, ChatRun, ContextTrimmed, Finished, GenerationFigures, Token
from workbench.core.chat.sampling import ResolvedSampling, SamplingChoice
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.core.models.spec import ModelManagerError, ModelRole, ModelState
from workbench.core.models.wait import (
    NO_MODEL,
    DefaultModelImport,
    ModelWaitError,
    Ready,
    Waiting,
    can_wait,
    until_ready,
)
from workbench.core.storage.chats import Conversation, MessageStatus, StoredMessage
from workbench.core.storage.store import Store
from workbench.ui.clipboard import copy_text
from workbench.ui.screens.base import PaneScreen
from workbench.ui.services import services_of
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.chat_message import MessageView

log = logging.getLogger(__name__)

PAINT_INTERVAL_S = 1 / 30  # the transcript repaints at most this often, however fast tokens come
SAVE_INTERVAL_S = 0.5  # a partial answer reaches the database at least this often
TITLE_LENGTH = 48


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


def sendable(messages: list[StoredMessage]) -> list[ChatMessage]:
    """What the model sees of the history: every user message and every answer with text in it."""
    return [
        ChatMessage(m.role, m.content)
        for m in messages
        if m.role == "user" or (m.role == "assistant" and m.content and m.status is not MessageStatus.ERROR)
    ]


class ChatPane(PaneScreen):
    MODE = "chat"

    BINDINGS = [
        Binding("escape", "stop", "Stop", id="chat.stop"),
        Binding("ctrl+r", "regenerate", "Regen", id="chat.regenerate"),
        Binding("f2", "edit_last", "Edit last", id="chat.edit"),
        Binding("ctrl+y", "copy", "Copy", id="chat.copy"),
        Binding("ctrl+n", "new_chat", "New", id="chat.new"),
        Binding("ctrl+o", "history", "History", id="chat.history"),
        Binding("ctrl+s", "settings", "Settings", id="chat.settings"),
        Binding("ctrl+l", "choose_model", "Model", id="chat.model"),
    ]

    DEFAULT_CSS = """
    ChatPane #chat-top { height: 3; }
    ChatPane #model-select { width: 1fr; }
    ChatPane #chat-status { width: auto; max-width: 40%; padding: 1 1 0 1; color: $text-muted; }
    ChatPane #transcript { height: 1fr; }
    ChatPane #empty-hint { color: $text-muted; padding: 1 2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.conversation: Conversation | None = None
        self.run: ChatRun | None = None
        self.answering = False  # from sending until the answer ends, also while it waits for its model
        self.answer_worker: Worker[None] | None = None
        self.model_id: str | None = None
        self.system_prompt = ""
        self.sampling = SamplingChoice()  # yours and the preset's; the model's defaults fill the rest

    # --- services --------------------------------------------------------------------------------

    @property
    def manager(self) -> ModelManager:
        return services_of(self).manager

    @property
    def store(self) -> Store:
        return services_of(self).store

    @property
    def default_import(self) -> DefaultModelImport:
        return services_of(self).default_import

    # --- layout ----------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-top"):
            yield Select[str]([], prompt="Choose a model (ctrl+l)", id="model-select", allow_blank=True)
            yield Static("", id="chat-status")
        yield VerticalScroll(id="transcript")
        yield ChatInput(id="prompt")

    def on_mount(self) -> None:
        settings = services_of(self).settings
        self.system_prompt = settings.chat_system_prompt
        self.sampling = SamplingChoice(settings.chat_preset)
        self.watch(self.app, "models_version", lambda _v: self.refresh_models())
        self.watch(self.app, "import_status", lambda _status: self.show_import())
        self.refresh_models()
        latest = self.store.chats.list_conversations(limit=1)
        if latest:
            self.open_conversation(latest[0].id)
        else:
            self.show_empty_hint()
        self.query_one(ChatInput).focus()

    # --- models ----------------------------------------------------------------------------------

    def chat_model_ids(self) -> list[str]:
        return self.manager.ids(ModelRole.CHAT)

    def refresh_models(self) -> None:
        select = self.query_one("#model-select", Select)
        ids = self.chat_model_ids()
        options = [(self.manager.info(i).spec.name, i) for i in ids]
        if [value for _, value in select._options if value is not Select.NULL] != ids:
            select.set_options(options)
        wanted = self.model_id or (self.conversation.model_id if self.conversation else None)
        if wanted not in ids:
            wanted = DEFAULT_CHAT_ID if DEFAULT_CHAT_ID in ids else (ids[0] if ids else None)
        if wanted is not None and select.value != wanted:
            select.value = wanted
        self.model_id = wanted
        self.show_status()

    def show_import(self) -> None:
        """While the default model is on its way and nothing else is there, the model box says so."""
        select = self.query_one("#model-select", Select)
        coming = self.default_import.status.coming and self.model_id is None
        select.prompt = f"{self.default_import.describe()} (ctrl+l)" if coming else "Choose a model (ctrl+l)"

    @on(Select.Changed, "#model-select")
    def model_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.model_id:
            return
        self.model_id = str(event.value)
        if self.conversation is not None:
            self.store.chats.update_conversation(self.conversation.id, model_id=self.model_id)
        self.show_status()
        self.preload(self.model_id)

    @work(group="chat-preload", exclusive=True, exit_on_error=False)
    async def preload(self, model_id: str) -> None:
        """Load the chosen model now, so the first answer does not wait for it; refusals say why."""
        try:
            await self.manager.load(model_id)
        except ModelManagerError as exc:
            self.notify(str(exc), title="Cannot load the model", severity="error", timeout=12)

    def show_status(self) -> None:
        parts = []
        if self.model_id:
            info = self.manager.info(self.model_id)
            if info.state is ModelState.LOADING:
                parts.append("loading…")
            elif info.state is ModelState.FAILED or (info.state is ModelState.UNLOADED and info.error):
                parts.append("not loaded (see Models, 6)")
            elif info.state is not ModelState.UNLOADED:
                parts.append(info.state.value)
        sampling = self.effective_sampling().settings
        parts.append(f"T {sampling.temperature:g} · max {sampling.max_tokens}")
        self.query_one("#chat-status", Static).update(" · ".join(parts))

    def effective_sampling(self) -> ResolvedSampling:
        return chat_sampling(services_of(self).settings, self.manager, self.model_id, self.sampling)

    # --- transcript ------------------------------------------------------------------------------

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#transcript", VerticalScroll)

    def show_empty_hint(self) -> None:
        self.transcript.remove_children()
        self.transcript.mount(Static(  # one line per topic, each wrapped to the pane's width
            "Type a message and press Enter to send; ctrl+j adds a newline, Esc stops an answer.\n"
            "ctrl+r answers again, F2 edits your last message, ctrl+y copies the last answer "
            "(Tab to a message and ctrl+y copies that one).\n"
            "ctrl+o opens earlier chats, ctrl+s the system prompt and sampling settings, ctrl+l chooses the model.",
            id="empty-hint",
        ))  # fmt: skip

    def open_conversation(self, conversation_id: int) -> None:
        conversation = self.store.chats.get_conversation(conversation_id)
        if conversation is None:
            return
        self.conversation = conversation
        self.system_prompt = conversation.system_prompt or self.system_prompt
        if conversation.sampling:
            self.sampling = SamplingChoice.from_dict(conversation.sampling)
        if conversation.model_id:
            self.model_id = conversation.model_id
        self.transcript.remove_children()
        views = [self.view_for(m) for m in self.store.chats.messages(conversation.id)]
        self.transcript.mount_all(views)
        self.transcript.scroll_end(animate=False)
        self.refresh_models()

    @staticmethod
    def view_for(message: StoredMessage) -> MessageView:
        figures = GenerationFigures.from_dict(message.figures) if message.figures else None
        return MessageView(message.role, message.content, message.id, message.status, message.error, figures)

    def message_views(self) -> list[MessageView]:
        return list(self.transcript.query(MessageView))

    # --- sending ---------------------------------------------------------------------------------

    @on(ChatInput.Submitted)
    def send(self, event: ChatInput.Submitted) -> None:
        text = event.text.strip()
        if not text:
            return
        if self.answering:
            self.notify("Still answering: Esc stops it.", severity="warning")
            return
        if not can_wait(self.model_id, self.default_import):
            self.notify(NO_MODEL, severity="warning")
            return
        if self.conversation is None:
            self.conversation = self.store.chats.create_conversation(
                title=title_from(text), model_id=self.model_id, system_prompt=self.system_prompt,
                sampling=self.sampling.to_dict(),
            )  # fmt: skip
            self.transcript.remove_children()
        message = self.store.chats.add_message(self.conversation.id, "user", text)
        self.transcript.mount(self.view_for(message))
        self.query_one(ChatInput).clear()
        self.start_answer()

    def start_answer(self) -> None:
        assert self.conversation is not None
        history = sendable(self.store.chats.messages(self.conversation.id))
        if self.system_prompt:
            history.insert(0, ChatMessage("system", self.system_prompt))
        answer = self.store.chats.add_message(self.conversation.id, "assistant", "", status=MessageStatus.STREAMING)
        view = self.view_for(answer)
        self.transcript.mount(view)
        self.transcript.scroll_end(animate=False)
        self.answering = True
        self.answer_worker = self.stream_answer(history, answer.id, view)

    async def model_for_answer(self, view: MessageView) -> str:
        """The model to answer with; until it is ready the answer says what it waits for (core/model_wait.py)."""
        async for step in until_ready(self.manager, self.default_import, self.model_id):
            if isinstance(step, Waiting):
                view.set_waiting(step.what)
            elif isinstance(step, Ready):
                if step.model_id != self.model_id:  # the default model arrived: it is the one to use
                    self.model_id = step.model_id
                    self.refresh_models()
                if self.conversation is not None:
                    self.store.chats.update_conversation(self.conversation.id, model_id=step.model_id)
                return step.model_id
        raise ModelWaitError(NO_MODEL)

    @work(group="chat-answer", exit_on_error=False)
    async def stream_answer(self, history: list[ChatMessage], message_id: int, view: MessageView) -> None:
        stream = view.markdown.get_stream(view.markdown)
        text, pending = "", ""
        last_paint = last_save = time.monotonic()
        status, figures, error = MessageStatus.COMPLETE, None, None
        run: ChatRun | None = None
        try:
            model_id = await self.model_for_answer(view)
            sampling = chat_sampling(services_of(self).settings, self.manager, model_id, self.sampling)
            run = self.run = ChatRun(self.manager, model_id, history, sampling.settings)
            async for event in run.events():
                view.set_waiting("")
                if isinstance(event, Token):
                    text += event.text
                    pending += event.text
                    now = time.monotonic()
                    if now - last_paint >= PAINT_INTERVAL_S:
                        await stream.write(pending)
                        pending, last_paint = "", now
                        self.transcript.scroll_end(animate=False)
                    if now - last_save >= SAVE_INTERVAL_S:
                        self.store.chats.update_message(message_id, content=text)
                        last_save = now
                elif isinstance(event, ContextTrimmed):
                    note = (f"The conversation is longer than the model's context ({event.window} tokens): "
                            f"the oldest {event.dropped} message(s) were not sent.")  # fmt: skip
                    view.set_context_note(note)
                    self.notify(note, severity="warning", timeout=8)
                elif isinstance(event, Finished):
                    figures = event.figures
                    status = MessageStatus.STOPPED if event.stopped else MessageStatus.COMPLETE
        except (ModelManagerError, ChatError, ModelWaitError) as exc:
            status, error = MessageStatus.ERROR, str(exc)
        except asyncio.CancelledError:  # the app is closing, or Esc while waiting: keep what came, as stopped
            if run is not None:
                run.stop()
            status = MessageStatus.STOPPED
            raise
        except Exception as exc:  # a backend failing mid-answer: keep what came, say what happened
            log.exception("chat generation failed")
            status, error = MessageStatus.ERROR, f"{type(exc).__name__}: {exc}"
        finally:
            self.store.chats.update_message(message_id, content=text, status=status, error=error,
                                            figures=figures.to_dict() if figures else None)  # fmt: skip
            self.run, self.answering, self.answer_worker = None, False, None
            view.content = text
            view.set_waiting("")
            view.set_result(status, figures, error)
            with contextlib.suppress(asyncio.CancelledError):
                if pending:
                    await stream.write(pending)
                await stream.stop()
            self.transcript.scroll_end(animate=False)
            self.show_status()

    # --- actions ---------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.run is not None:
            self.run.stop()
        elif self.answer_worker is not None:  # still waiting for its model
            self.answer_worker.cancel()

    def action_regenerate(self) -> None:
        if self.answering or self.conversation is None or self.model_id is None:
            return
        messages = self.store.chats.messages(self.conversation.id)
        if not messages or messages[-1].role != "assistant":
            return
        self.store.chats.delete_message(messages[-1].id)
        self.message_views()[-1].remove()
        self.start_answer()

    def action_edit_last(self) -> None:
        if self.answering or self.conversation is None:
            return
        messages = self.store.chats.messages(self.conversation.id)
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        if not users:
            return
        last_user = users[-1]
        views = self.message_views()
        for message, view in zip(messages[last_user:], views[last_user:], strict=False):
            self.store.chats.delete_message(message.id)
            view.remove()
        prompt = self.query_one(ChatInput)
        prompt.text = messages[last_user].content
        prompt.focus()
        prompt.move_cursor(prompt.document.end)

    def action_copy(self) -> None:
        focused = self.focused
        if isinstance(focused, MessageView):
            text, what = focused.content, "message"
        else:
            answers = [v for v in self.message_views() if v.role == "assistant" and v.content]
            if not answers:
                self.notify("Nothing to copy yet.", severity="warning")
                return
            text, what = answers[-1].content, "last answer"
        copy_text(self.app, text)
        self.notify(f"Copied the {what} ({len(text)} characters).")

    def action_new_chat(self) -> None:
        if self.answering:
            self.notify("Still answering: Esc stops it.", severity="warning")
            return
        self.conversation = None
        self.show_empty_hint()
        self.query_one(ChatInput).focus()

    def action_choose_model(self) -> None:
        if not self.chat_model_ids() and self.default_import.status.coming:
            self.notify(f"{self.default_import.describe()}: it will be chosen when it is ready, and a message sent "
                        "now waits for it.", title="Default chat model")  # fmt: skip
            return
        select = self.query_one("#model-select", Select)
        select.focus()
        select.expanded = True

    def action_history(self) -> None:
        from workbench.ui.screens.chat_history import HistoryScreen

        def opened(conversation_id: int | None) -> None:
            current = self.conversation.id if self.conversation else None
            if self.conversation is not None and self.store.chats.get_conversation(self.conversation.id) is None:
                self.conversation = None  # deleted from the history view
                self.show_empty_hint()
            if conversation_id is not None and conversation_id != current:
                self.open_conversation(conversation_id)
            self.query_one(ChatInput).focus()

        if self.answering:
            self.notify("Still answering: Esc stops it.", severity="warning")
            return
        self.app.push_screen(HistoryScreen(self.store, services_of(self).paths), opened)

    def action_settings(self) -> None:
        from workbench.ui.screens.chat_settings import ChatSettings, SettingsScreen

        def applied(result: ChatSettings | None) -> None:
            if result is None:
                return
            self.system_prompt, self.sampling = result.system_prompt, result.sampling
            if self.conversation is not None:
                self.store.chats.update_conversation(self.conversation.id, system_prompt=self.system_prompt,
                                                     sampling=self.sampling.to_dict())  # fmt: skip
            self.show_status()

        self.app.push_screen(SettingsScreen(services_of(self), ChatSettings(self.system_prompt, self.sampling),
                                            model_sampling_by_id(self.manager, self.model_id)), applied)  # fmt: skip
