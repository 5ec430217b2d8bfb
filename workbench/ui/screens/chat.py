"""The Chat pane: pick a local model, type, watch the answer stream in as Markdown with its figures.

The pane renders and sends intents; its chat session (the services' ``chat_session()``: a ChatSession, core/chat/
session.py, or the engine's RemoteChatSession) decides what is saved and sent. The answer's worker posts the
session's events as messages (chat_stream.py); only their handlers touch the widgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Select
from textual.worker import Worker

from workbench.api import ChatSessionApi
from workbench.core.chat.model_sampling import model_sampling_by_id
from workbench.core.chat.run import ChatRun
from workbench.core.chat.sampling import ResolvedSampling, SamplingChoice
from workbench.core.chat.session import Answer
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.spec import ModelManagerError, ModelRole
from workbench.core.models.wait import NO_MODEL, DefaultModelImport
from workbench.core.storage.chats import Conversation, StoredMessage
from workbench.core.storage.store import Store
from workbench.ui.clipboard import copy_and_tell
from workbench.ui.messages import Notice
from workbench.ui.screens.base import PaneScreen
from workbench.ui.screens.chat_stream import (
    AnswerMessage,
    AnswerModelChosen,
    AnswerOver,
    AnswerReading,
    AnswerText,
    AnswerTrimmed,
    AnswerWaiting,
    relay,
)
from workbench.ui.services import services_of
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.chat_message import MessageView
from workbench.ui.widgets.chat_model_bar import ChatModelBar
from workbench.ui.widgets.chat_transcript import ChatTranscript

STILL_ANSWERING = "Still answering: Esc stops it."


@dataclass(frozen=True)
class LiveAnswer:
    """The answer on screen while it streams; ``generation`` tells its messages from a late one's."""

    generation: int
    answer: Answer


class ChatPane(PaneScreen):
    MODE = "chat"
    MAIN_VIEW, TEXT_BOX = "#transcript", "#prompt"
    RUNNING = {"answering": "an answer is being written"}

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
    ChatPane #transcript { height: 1fr; }
    ChatPane #empty-hint { color: $text-muted; padding: 1 2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._session: ChatSessionApi | None = None  # made on mount, from the app's services
        self.live: LiveAnswer | None = None  # from sending until the answer is shown as ended
        self.answer_worker: Worker[None] | None = None
        self.generation = 0  # one per answer: a message of an earlier answer is dropped

    # --- what the session holds ----------------------------------------------------------------

    @property
    def session(self) -> ChatSessionApi:
        assert self._session is not None, "the Chat pane is not mounted yet"
        return self._session

    @property
    def conversation(self) -> Conversation | None:
        return self.session.conversation

    @property
    def model_id(self) -> str | None:
        return self.session.model_id

    @property
    def sampling(self) -> SamplingChoice:
        return self.session.sampling

    @sampling.setter
    def sampling(self, choice: SamplingChoice) -> None:
        self.session.sampling = choice

    @property
    def answering(self) -> bool:
        """From sending until the answer is shown as ended, also while it waits for its model."""
        return self.live is not None

    @property
    def run(self) -> ChatRun | None:
        """The run of the answer on screen, once its model answers; None again once it is shown as ended."""
        return self.live.answer.run if self.live is not None else None

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
        yield ChatModelBar(id="chat-top")
        yield ChatTranscript(id="transcript")
        yield ChatInput(id="prompt")

    def on_mount(self) -> None:
        self._session = services_of(self).chat_session()
        self.watch(self.app, "models_version", lambda _v: self.refresh_models())
        self.watch(self.app, "import_status", lambda _status: self.show_import())
        self.refresh_models()
        messages = self.session.open_latest()
        if messages is not None:
            self.show_conversation(messages)
        else:
            self.transcript.show_empty_hint()
        self.query_one(ChatInput).focus()

    # --- models ----------------------------------------------------------------------------------

    def chat_model_ids(self) -> list[str]:
        return self.manager.ids(ModelRole.CHAT)

    @property
    def model_bar(self) -> ChatModelBar:
        return self.query_one("#chat-top", ChatModelBar)

    def refresh_models(self) -> None:
        ids = self.chat_model_ids()
        chosen = self.session.settle_model(ids)
        self.model_bar.set_models([(self.manager.info(i).spec.name, i) for i in ids], chosen)
        self.show_status()

    def show_import(self) -> None:
        """While the default model is on its way and nothing else is there, the model box says so."""
        coming = self.default_import.status.coming and self.model_id is None
        self.model_bar.show_coming(self.default_import.describe() if coming else None)

    @on(Select.Changed, "#model-select")
    def model_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.model_id:
            return
        self.session.choose_model(str(event.value))
        self.show_status()
        self.preload(str(event.value))

    @work(group="chat-preload", exclusive=True, exit_on_error=False)
    async def preload(self, model_id: str) -> None:
        """Load the chosen model now, so the first answer does not wait for it; refusals say why."""
        try:
            await self.manager.load(model_id)
        except ModelManagerError as exc:
            self.post_message(Notice(str(exc), title="Cannot load the model", severity="error", timeout=12))

    def show_status(self) -> None:
        info = self.manager.info(self.model_id) if self.model_id else None
        self.model_bar.show_status(info, self.effective_sampling().settings)

    def effective_sampling(self) -> ResolvedSampling:
        return self.session.effective_sampling()

    # --- transcript ------------------------------------------------------------------------------

    @property
    def transcript(self) -> ChatTranscript:
        return self.query_one("#transcript", ChatTranscript)

    def open_conversation(self, conversation_id: int) -> None:
        messages = self.session.open(conversation_id)
        if messages is not None:
            self.show_conversation(messages)

    def show_conversation(self, messages: list[StoredMessage]) -> None:
        running = self.session.follow_running(messages)  # still being written (by the engine): shown as it goes
        self.transcript.show(messages[:-1] if running else messages)
        self.refresh_models()
        if running is not None:
            self.call_later(self.show_answer, running)

    def message_views(self) -> list[MessageView]:
        return self.transcript.views()

    # --- sending ---------------------------------------------------------------------------------

    @on(ChatInput.Submitted)
    async def send(self, event: ChatInput.Submitted) -> None:
        text = event.text.strip()
        if not text:
            return
        if self.answering:
            self.notify(STILL_ANSWERING, severity="warning")
            return
        if not self.session.can_send():
            self.notify(NO_MODEL, severity="warning")
            return
        sent = self.session.send(text)
        if sent.created:
            self.transcript.remove_children()
        self.transcript.add(sent.user)
        self.query_one(ChatInput).clear()
        await self.show_answer(sent.answer)

    async def show_answer(self, answer: Answer) -> None:
        """Mount the answer's view and start the worker that streams it."""
        self.generation += 1
        self.live = LiveAnswer(self.generation, answer)
        await self.transcript.start_answer(answer.message)
        self.answer_worker = self.stream_answer(answer, self.generation)

    @work(group="chat-answer", exit_on_error=False)
    async def stream_answer(self, answer: Answer, generation: int) -> None:
        """Relay the answer's events; its end (however it came: done, failed, cancelled) is shown by the pane,
        and the worker ends once it is."""
        try:
            await relay(self.session.answer_events(answer), generation, self.post_message)
        finally:
            over = AnswerOver(generation, answer.ended())
            posted = self.post_message(over)
        if posted:
            await over.rendered.wait()

    def live_for(self, message: AnswerMessage) -> LiveAnswer | None:
        """The answer on screen, if ``message`` is about it (not about an earlier one)."""
        return self.live if self.live is not None and self.live.generation == message.generation else None

    def on_answer_waiting(self, message: AnswerWaiting) -> None:
        if self.live_for(message):
            self.transcript.set_waiting(message.what)

    def on_answer_reading(self, message: AnswerReading) -> None:
        if self.live_for(message):
            self.transcript.set_reading(message.note)
            self.model_bar.show_activity(message.status)

    async def on_answer_text(self, message: AnswerText) -> None:
        if self.live_for(message):
            await self.transcript.append(message.text)

    def on_answer_trimmed(self, message: AnswerTrimmed) -> None:
        if self.live_for(message):
            self.transcript.set_context_note(message.note)
            self.notify(message.note, severity="warning", timeout=8)

    def on_answer_model_chosen(self, message: AnswerModelChosen) -> None:
        if self.live_for(message):
            self.refresh_models()

    async def on_answer_over(self, message: AnswerOver) -> None:
        try:
            if self.live_for(message):
                await self.transcript.end_answer(message.ended)
                self.live, self.answer_worker = None, None
                self.show_status()
        finally:
            message.rendered.set()

    # --- actions ---------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.answering and not self.session.stop() and self.answer_worker is not None:
            self.answer_worker.cancel()  # still waiting for its model: what came is kept, as stopped

    async def action_regenerate(self) -> None:
        if self.answering:
            return
        regenerated = self.session.regenerate()
        if regenerated is None:
            return
        removed_id, answer = regenerated
        self.transcript.remove_views([removed_id])
        await self.show_answer(answer)

    def action_edit_last(self) -> None:
        if self.answering:
            return
        edited = self.session.edit_last()
        if edited is None:
            return
        text, removed_ids = edited
        self.transcript.remove_views(removed_ids)
        prompt = self.query_one(ChatInput)
        prompt.text = text
        prompt.focus()
        prompt.move_cursor(prompt.document.end)

    def action_copy(self) -> None:
        view = self.transcript.to_copy(self.focused)
        if view is None:
            self.notify("Nothing to copy yet.", severity="warning")
        else:
            copy_and_tell(self.app, view.content)

    @on(ChatTranscript.Typed)
    def typed_on_a_message(self, event: ChatTranscript.Typed) -> None:
        self.query_one(ChatInput).take(event.character)

    def action_new_chat(self) -> None:
        if self.answering:
            self.notify(STILL_ANSWERING, severity="warning")
            return
        self.session.new()
        self.transcript.show_empty_hint()
        self.query_one(ChatInput).focus()

    def action_choose_model(self) -> None:
        if not self.chat_model_ids() and self.default_import.status.coming:
            self.notify(f"{self.default_import.describe()}: it will be chosen when it is ready, and a message sent "
                        "now waits for it.", title="Default chat model")  # fmt: skip
            return
        self.model_bar.open()

    def action_history(self) -> None:
        from workbench.ui.screens.chat_history import HistoryScreen

        def opened(conversation_id: int | None) -> None:
            current = self.conversation.id if self.conversation else None
            if not self.session.still_there():  # deleted from the history view
                self.transcript.show_empty_hint()
            if conversation_id is not None and conversation_id != current:
                self.open_conversation(conversation_id)
            self.query_one(ChatInput).focus()

        if self.answering:
            self.notify(STILL_ANSWERING, severity="warning")
            return
        services = services_of(self)
        history = HistoryScreen(self.store, services.paths, getattr(services.manager, "forget_saved_cache", None))
        self.app.push_screen(history, opened)

    def action_settings(self) -> None:
        from workbench.ui.screens.chat_settings import ChatSettings, SettingsScreen

        def applied(result: ChatSettings | None) -> None:
            if result is None:
                return
            self.session.apply_settings(result.system_prompt, result.sampling)
            self.show_status()

        self.app.push_screen(SettingsScreen(services_of(self), ChatSettings(self.session.system_prompt, self.sampling),
                                            model_sampling_by_id(self.manager, self.model_id)), applied)  # fmt: skip
