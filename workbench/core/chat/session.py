"""One chat conversation and its turns: what is saved, what history is sent, and the answer as events.

A ``ChatSession`` owns the conversation a chat screen shows. It creates the conversation in the store on the first
message, saves each message, decides what the model sees (the system prompt, then every user message and every
answer with text in it), waits for the model (``core.models.wait``), streams the answer with a ``ChatRun``, saves
the partial answer at least every ``SAVE_INTERVAL_S`` while it streams, and saves how it ended: complete, stopped
(by ``stop()``, or the answer's task cancelled, as when the app closes) or error. A screen sends intents (send,
stop, regenerate, edit the last message, new chat, open a conversation) and renders the events of
``answer_events``.

``ChatChoices`` is the part of a session that needs no store: the conversation shown, the model, prompt and
sampling chosen, the answer streaming. ``ChatSession`` adds the store and the model manager (in-process, and in the
engine, which runs one per answer: workbench.server.engine_answers); ``workbench.client.chat_session`` adds the
engine's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from workbench.core.chat.model_sampling import chat_sampling
from workbench.core.chat.run import (
    ChatError,
    ChatMessage,
    ChatRun,
    ContextTrimmed,
    Finished,
    GenerationFigures,
    Reading,
    Token,
)
from workbench.core.chat.sampling import ResolvedSampling, SamplingChoice
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.core.models.spec import ModelManagerError
from workbench.core.models.wait import (
    NO_MODEL,
    DefaultModelImport,
    ModelWaitError,
    Ready,
    Waiting,
    can_wait,
    until_ready,
)
from workbench.core.prompt_cache.reuse import chat_cache_key
from workbench.core.settings.config import Settings
from workbench.core.storage.chats import Conversation, MessageStatus, StoredMessage
from workbench.core.storage.store import Store

log = logging.getLogger(__name__)

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


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChosen:
    """The answer goes to another model than the one chosen (the default model arrived): the screen shows it."""

    model_id: str


@dataclass(frozen=True)
class AnswerEnded:
    """The answer is over and saved as ``status`` (COMPLETE, STOPPED or ERROR)."""

    status: MessageStatus
    text: str
    figures: GenerationFigures | None
    error: str | None


# Waiting("") says the wait for the model is over; Token, ContextTrimmed, Reading as ChatRun yields them.
SessionEvent = Waiting | ModelChosen | Token | ContextTrimmed | Reading | AnswerEnded


class ChatBusyError(Exception):
    """An answer is still streaming: one at a time."""


@dataclass
class Answer:
    """One answer: the assistant's message in the store, the history it answers, and how far it got."""

    message: StoredMessage
    history: list[ChatMessage]
    text: str = ""
    status: MessageStatus = MessageStatus.STREAMING
    figures: GenerationFigures | None = None
    error: str | None = None
    run: ChatRun | None = None  # once the model is ready; kept after the answer ends
    model_id: str | None = None  # the model it goes to, once ready

    def ended(self) -> AnswerEnded:
        return AnswerEnded(self.status, self.text, self.figures, self.error)


@dataclass(frozen=True)
class Sent:
    """What ``send`` saved: the user's message and the answer to stream; ``created``: the conversation is new."""

    user: StoredMessage
    answer: Answer
    created: bool


class ChatChoices:
    """What a chat screen has chosen, kept in memory: the conversation (None until the first message), the model,
    the system prompt and sampling, and the answer streaming (None when none is)."""

    def __init__(self, settings: Settings, default_import: DefaultModelImport) -> None:
        self.settings = settings
        self.default_import = default_import
        self.conversation: Conversation | None = None
        self.model_id: str | None = None
        self.system_prompt = settings.chat_system_prompt
        self.sampling = SamplingChoice(settings.chat_preset)  # yours and the preset's; the model's fill the rest
        self.answer: Answer | None = None  # the one streaming

    def adopt(self, conversation: Conversation) -> None:
        """Make ``conversation`` the current one, with its prompt, sampling and model (what it leaves unset stays)."""
        self.conversation = conversation
        self.system_prompt = conversation.system_prompt or self.system_prompt
        if conversation.sampling:
            self.sampling = SamplingChoice.from_dict(conversation.sampling)
        if conversation.model_id:
            self.model_id = conversation.model_id

    def new(self) -> None:
        """The next message starts a new conversation."""
        self._refuse_while_answering()
        self.conversation = None

    def settle_model(self, available: list[str]) -> str | None:
        """Choose the model among ``available``: the one chosen (or the conversation's) if it is there, else the
        default chat model, else the first; None when there is none."""
        wanted = self.model_id or (self.conversation.model_id if self.conversation else None)
        if wanted not in available:
            wanted = DEFAULT_CHAT_ID if DEFAULT_CHAT_ID in available else (available[0] if available else None)
        self.model_id = wanted
        return wanted

    @property
    def answering(self) -> bool:
        return self.answer is not None

    def follow_running(self, messages: list[StoredMessage]) -> Answer | None:
        """The answer ending ``messages`` (the conversation just opened) when another process is still writing it,
        to stream with ``answer_events``; None in-process (what a dead process left streaming is marked incomplete
        when the services start)."""
        return None

    def can_send(self) -> bool:
        """Whether a message sent now will be answered: a model is chosen, or the default one is on its way."""
        return can_wait(self.model_id, self.default_import)

    def _refuse_while_answering(self) -> None:
        if self.answering:
            raise ChatBusyError("Still answering: Esc stops it.")


class ChatSession(ChatChoices):
    """The conversation a chat screen shows, kept in the store, and its answers, streamed from the manager."""

    def __init__(
        self,
        store: Store,
        manager: ModelManager,
        settings: Settings,
        default_import: DefaultModelImport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, default_import)
        self.store = store
        self.manager = manager
        self._clock = clock

    # --- the conversation ------------------------------------------------------------------------

    def open_latest(self) -> list[StoredMessage] | None:
        """Open the most recently updated conversation; its messages, or None when there is none."""
        latest = self.store.chats.list_conversations(limit=1)
        return self.open(latest[0].id) if latest else None

    def open(self, conversation_id: int) -> list[StoredMessage] | None:
        """Make ``conversation_id`` the current one, with its prompt, sampling and model; its messages (None if it
        is gone)."""
        conversation = self.store.chats.get_conversation(conversation_id)
        if conversation is None:
            return None
        self.adopt(conversation)
        return self.store.chats.messages(conversation.id)

    def still_there(self) -> bool:
        """Whether the current conversation is still in the store (the history view can delete it); if it is
        not, the session has none."""
        if self.conversation is not None and self.store.chats.get_conversation(self.conversation.id) is None:
            self.conversation = None
            return False
        return True

    def choose_model(self, model_id: str) -> None:
        self.model_id = model_id
        if self.conversation is not None:
            self.store.chats.update_conversation(self.conversation.id, model_id=model_id)

    def apply_settings(self, system_prompt: str, sampling: SamplingChoice) -> None:
        self.system_prompt, self.sampling = system_prompt, sampling
        if self.conversation is not None:
            self.store.chats.update_conversation(self.conversation.id, system_prompt=system_prompt,
                                           sampling=sampling.to_dict())  # fmt: skip

    def effective_sampling(self) -> ResolvedSampling:
        return chat_sampling(self.settings, self.manager, self.model_id, self.sampling)

    # --- turns -----------------------------------------------------------------------------------

    def send(self, text: str) -> Sent:
        """Save the user's message (creating the conversation on the first one) and the answer to stream."""
        self._refuse_while_answering()
        created = self.conversation is None
        if self.conversation is None:
            self.conversation = self.store.chats.create_conversation(
                title=title_from(text), model_id=self.model_id, system_prompt=self.system_prompt,
                sampling=self.sampling.to_dict(),
            )  # fmt: skip
        user = self.store.chats.add_message(self.conversation.id, "user", text)
        return Sent(user, self._start_answer(), created)

    def regenerate(self) -> tuple[int, Answer] | None:
        """Delete the last answer and start another; the deleted message's id and the new answer, or None when
        the conversation does not end with an answer (or no model is chosen)."""
        if self.answering or self.conversation is None or self.model_id is None:
            return None
        messages = self.store.chats.messages(self.conversation.id)
        if not messages or messages[-1].role != "assistant":
            return None
        self.store.chats.delete_message(messages[-1].id)
        return messages[-1].id, self._start_answer()

    def edit_last(self) -> tuple[str, list[int]] | None:
        """Delete the last user message and everything after it, to be written again: its text and the ids of the
        deleted messages; None when there is nothing to edit."""
        if self.answering or self.conversation is None:
            return None
        messages = self.store.chats.messages(self.conversation.id)
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        if not users:
            return None
        removed = messages[users[-1] :]
        for message in removed:
            self.store.chats.delete_message(message.id)
        return removed[0].content, [m.id for m in removed]

    def stop(self) -> bool:
        """Stop the answer before its next token; False when no model answers yet (it is waiting for its model:
        cancel the task that iterates ``answer_events``, and what came is kept as stopped)."""
        if self.answer is not None and self.answer.run is not None:
            self.answer.run.stop()
            return True
        return False

    def _start_answer(self) -> Answer:
        assert self.conversation is not None
        history = sendable(self.store.chats.messages(self.conversation.id))
        if self.system_prompt:
            history.insert(0, ChatMessage("system", self.system_prompt))
        message = self.store.chats.add_message(self.conversation.id, "assistant", "", status=MessageStatus.STREAMING)
        self.answer = Answer(message, history)
        return self.answer

    # --- the answer --------------------------------------------------------------------------------

    async def answer_events(self, answer: Answer) -> AsyncGenerator[SessionEvent, None]:
        """Wait for the model, stream the answer, save it as it grows and when it ends. Ends with AnswerEnded, or
        raises CancelledError (or is closed) with the answer saved as stopped."""
        last_save = self._clock()
        try:
            waited = False
            async with contextlib.aclosing(self._model_for(answer)) as steps:
                async for step in steps:
                    waited = waited or isinstance(step, Waiting)
                    yield step
            model_id = answer.model_id
            assert model_id is not None  # _model_for raises when there is none
            sampling = chat_sampling(self.settings, self.manager, model_id, self.sampling)
            conversation = chat_cache_key(answer.message.conversation_id)
            answer.run = ChatRun(self.manager, model_id, answer.history, sampling.settings, holder="the Chat pane",
                                 conversation=conversation)  # fmt: skip
            answer.status = MessageStatus.COMPLETE
            async with contextlib.aclosing(answer.run.events()) as events:
                async for event in events:
                    if waited:
                        waited = False
                        yield Waiting("")
                    if isinstance(event, Token):
                        answer.text += event.text
                        if self._clock() - last_save >= SAVE_INTERVAL_S:
                            self.store.chats.update_message(answer.message.id, content=answer.text)
                            last_save = self._clock()
                        yield event
                    elif isinstance(event, ContextTrimmed | Reading):
                        yield event
                    elif isinstance(event, Finished):
                        answer.figures = event.figures
                        answer.status = MessageStatus.STOPPED if event.stopped else MessageStatus.COMPLETE
        except (ModelManagerError, ChatError, ModelWaitError) as exc:
            answer.status, answer.error = MessageStatus.ERROR, str(exc)
        except (asyncio.CancelledError, GeneratorExit):  # the app is closing, or stopped while waiting: keep it
            if answer.run is not None:
                answer.run.stop()
            answer.status = MessageStatus.STOPPED
            raise
        except Exception as exc:  # a backend failing mid-answer: keep what came, say what happened
            log.exception("chat generation failed")
            answer.status, answer.error = MessageStatus.ERROR, f"{type(exc).__name__}: {exc}"
        finally:
            if answer.status is MessageStatus.STREAMING:  # a BaseException let through before the model answered
                answer.status = MessageStatus.STOPPED
            self.store.chats.update_message(answer.message.id, content=answer.text, status=answer.status,
                                      error=answer.error,
                                      figures=answer.figures.to_dict() if answer.figures else None)  # fmt: skip
            if self.answer is answer:
                self.answer = None
        yield answer.ended()

    async def _model_for(self, answer: Answer) -> AsyncGenerator[Waiting | ModelChosen, None]:
        """What the answer waits for, then the model it goes to (in ``answer.model_id``)."""
        async with contextlib.aclosing(until_ready(self.manager, self.default_import, self.model_id)) as steps:
            async for step in steps:
                if isinstance(step, Waiting):
                    yield step
                elif isinstance(step, Ready):
                    answer.model_id = step.model_id
                    if step.model_id != self.model_id:  # the default model arrived: it is the one to use
                        self.model_id = step.model_id
                        yield ModelChosen(step.model_id)
                    if self.conversation is not None:
                        self.store.chats.update_conversation(self.conversation.id, model_id=step.model_id)
        if answer.model_id is None:
            raise ModelWaitError(NO_MODEL)
