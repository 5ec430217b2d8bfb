"""A chat session whose answers run in the engine: ``RemoteChatSession`` has the ChatSession interface the Chat pane
uses (same methods, same return and event types), backed by the engine's chat routes (workbench.server.
engine_answers) over its socket.

The face keeps its choices in memory (the conversation shown, model, prompt, sampling: ``ChatChoices``, as
in-process); the engine does every store write and runs the answer. The intents (send, regenerate, edit the last
message, open, change settings, stop) are short blocking calls (workbench.client.blocking: the pane calls them
synchronously); the answer's events stream over EngineClient (aiohttp, loaded on the first answer). Closing that
stream, or the face dying, leaves the answer running: the engine finishes it and saves it complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path
from typing import Any

from workbench.client import blocking
from workbench.client.errors import EngineGone, EngineNotRunning, EngineRequestError
from workbench.core.chat.run import Token
from workbench.core.chat.sampling import ResolvedSampling, SamplingChoice, SamplingSettings
from workbench.core.chat.session import (
    Answer,
    AnswerEnded,
    ChatBusyError,
    ChatChoices,
    ModelChosen,
    Sent,
    SessionEvent,
)
from workbench.core.chat.wire import WireError, conversation_from, event_from, message_from
from workbench.core.models.wait import DefaultModelImport
from workbench.core.settings.config import Settings
from workbench.core.storage.chats import MessageStatus, StoredMessage

ENGINE_LOST = "the engine went away before the answer ended (what came is shown; `workbench ps` says if it runs)"


class RemoteChatSession(ChatChoices):
    """The conversation a chat screen shows, kept and answered by the engine on ``socket``."""

    def __init__(self, socket: Path, settings: Settings, default_import: DefaultModelImport,
                 timeout_s: float = blocking.TIMEOUT_S, face: str = "tui") -> None:  # fmt: skip
        super().__init__(settings, default_import)
        self.socket = Path(socket)
        self.timeout_s = timeout_s
        self.face = face
        self.running_answer: int | None = None  # the answer the engine runs in the conversation opened, if any
        self._resolved: tuple[str, ResolvedSampling] | None = None  # effective_sampling's last answer, by its key
        self._stop_asked = False

    def _call(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return blocking.call(self.socket, method, route, body, self.timeout_s)

    def _choices(self) -> dict[str, Any]:
        return {"model": self.model_id, "system_prompt": self.system_prompt, "sampling": self.sampling.to_dict()}

    # --- the conversation ------------------------------------------------------------------------

    def open_latest(self) -> list[StoredMessage] | None:
        """Open the most recently updated conversation; its messages, or None when there is none."""
        latest = self._call("GET", "/v1/conversations?limit=1")["conversations"]
        return self.open(int(latest[0]["id"])) if latest else None

    def open(self, conversation_id: int) -> list[StoredMessage] | None:
        """Make ``conversation_id`` the current one, with its prompt, sampling and model; its messages (None if it
        is gone). ``running_answer`` says which of them the engine is still writing (``attach`` streams it)."""
        try:
            document = self._call("GET", f"/v1/conversations/{int(conversation_id)}")
        except EngineRequestError as exc:
            if exc.status == 404:
                return None
            raise
        self.adopt(conversation_from(document["conversation"]))
        self.running_answer = document.get("answering")
        return [message_from(m) for m in document["messages"]]

    def still_there(self) -> bool:
        """Whether the current conversation is still kept (another view or face can delete it); if it is not, the
        session has none."""
        if self.conversation is not None:
            try:
                self._call("GET", f"/v1/conversations/{self.conversation.id}")
            except EngineRequestError as exc:
                if exc.status != 404:
                    raise
                self.conversation = None
                return False
        return True

    def choose_model(self, model_id: str) -> None:
        self.model_id = model_id
        if self.conversation is not None:
            self._call("PATCH", f"/v1/conversations/{self.conversation.id}", {"model": model_id})

    def apply_settings(self, system_prompt: str, sampling: SamplingChoice) -> None:
        self.system_prompt, self.sampling = system_prompt, sampling
        if self.conversation is not None:
            self._call("PATCH", f"/v1/conversations/{self.conversation.id}",
                       {"system_prompt": system_prompt, "sampling": sampling.to_dict()})  # fmt: skip

    def effective_sampling(self) -> ResolvedSampling:
        """The sampling an answer sent now uses (the engine reads the model's own defaults). Asked once per model
        and choice: the pane shows it on every refresh of its status line, and a blocking call there would cost the
        loop (and the engine) a round trip each time."""
        key = json.dumps([self.model_id, self.sampling.to_dict()], sort_keys=True)
        if self._resolved is not None and self._resolved[0] == key:
            return self._resolved[1]
        document = self._call("POST", "/v1/chat/sampling", {"model": self.model_id,
                                                            "sampling": self.sampling.to_dict()})  # fmt: skip
        resolved = ResolvedSampling(SamplingSettings.from_dict(document["settings"]), dict(document["sources"]))
        self._resolved = (key, resolved)
        return resolved

    # --- turns -----------------------------------------------------------------------------------

    def send(self, text: str) -> Sent:
        """Save the user's message (creating the conversation on the first one) and start the answer, in the
        engine. ChatBusyError when the conversation is answering (here or in another face)."""
        self._refuse_while_answering()
        conversation = self.conversation.id if self.conversation is not None else None
        try:
            reply = self._call("POST", "/v1/answers", {"action": "send", "text": text, "conversation": conversation,
                                                       "face": self.face, **self._choices()})  # fmt: skip
        except EngineRequestError as exc:
            if exc.status == 409:
                raise ChatBusyError(str(exc)) from exc
            raise
        user = message_from(reply["user"])
        return Sent(user, self._started(reply), bool(reply["created"]))

    def regenerate(self) -> tuple[int, Answer] | None:
        """Delete the last answer and start another; the deleted message's id and the new answer, or None when
        the conversation does not end with an answer, no model is chosen, or it is answering."""
        if self.answering or self.conversation is None or self.model_id is None:
            return None
        try:
            reply = self._call("POST", "/v1/answers", {"action": "regenerate", "conversation": self.conversation.id,
                                                       "face": self.face, **self._choices()})  # fmt: skip
        except EngineRequestError as exc:
            if exc.status in (404, 409):
                return None
            raise
        return int(reply["removed"]), self._started(reply)

    def edit_last(self) -> tuple[str, list[int]] | None:
        """Delete the last user message and everything after it, to be written again: its text and the ids of the
        deleted messages; None when there is nothing to edit (or it is answering)."""
        if self.answering or self.conversation is None:
            return None
        try:
            reply = self._call("POST", f"/v1/conversations/{self.conversation.id}/edit_last", {})
        except EngineRequestError as exc:
            if exc.status in (404, 409):
                return None
            raise
        return None if reply["text"] is None else (str(reply["text"]), [int(i) for i in reply["removed"]])

    def stop(self) -> bool:
        """Ask the engine to stop the answer (what came is kept, as stopped); False when it cannot be asked."""
        if self.answer is None:
            return False
        self._stop_asked = True
        try:
            self._call("POST", f"/v1/answers/{self.answer.message.id}/stop")
        except (EngineNotRunning, EngineRequestError):
            return False
        return True

    def attach(self, message: StoredMessage) -> Answer:
        """Follow an answer the engine is writing (``running_answer``, as ``message`` of the conversation open):
        ``answer_events`` streams it from where it is (its text so far first)."""
        self._refuse_while_answering()
        self.answer = Answer(replace(message, content=""), [], model_id=self.model_id)
        return self.answer

    def follow_running(self, messages: list[StoredMessage]) -> Answer | None:
        """The answer ending ``messages`` when the engine is still writing it (``attach``ed); None otherwise."""
        if not messages or messages[-1].id != self.running_answer or self.answering:
            return None
        return self.attach(messages[-1])

    def _started(self, reply: dict[str, Any]) -> Answer:
        self.conversation = conversation_from(reply["conversation"])
        self.running_answer = int(reply["answer"])
        self._stop_asked = False
        self.answer = Answer(message_from(reply["message"]), [], model_id=self.model_id)
        return self.answer

    # --- the answer ------------------------------------------------------------------------------

    async def answer_events(self, answer: Answer) -> AsyncGenerator[SessionEvent, None]:
        """The answer's events as the engine sends them, from where it is, ending with AnswerEnded. Cancelled or
        closed, the face stops following it, and the engine goes on (the answer is kept INCOMPLETE here, STOPPED
        when a stop was asked)."""
        from workbench.client.engine import EngineClient

        client = EngineClient(self.socket, self.timeout_s)
        ended: AnswerEnded | None = None
        try:
            route = f"/v1/answers/{answer.message.id}/events"
            async with contextlib.aclosing(client.stream("GET", route)) as lines:
                async for line in lines:
                    event = event_from(line)
                    if isinstance(event, AnswerEnded):
                        ended = event
                        break
                    if isinstance(event, Token):
                        answer.text += event.text
                    elif isinstance(event, ModelChosen):
                        answer.model_id = self.model_id = event.model_id
                    yield event
            if ended is None:
                raise EngineGone("the engine closed the answer's stream before its end")
            answer.status, answer.text, answer.figures, answer.error = (ended.status, ended.text, ended.figures,
                                                                        ended.error)  # fmt: skip
            if self.running_answer == answer.message.id:
                self.running_answer = None
        except (EngineGone, EngineNotRunning, EngineRequestError, WireError) as exc:
            answer.status, answer.error = MessageStatus.ERROR, f"{ENGINE_LOST}: {exc}"
        except (asyncio.CancelledError, GeneratorExit):
            answer.status = MessageStatus.STOPPED if self._stop_asked else MessageStatus.INCOMPLETE
            raise
        finally:
            if self.answer is answer:
                self.answer = None
        yield answer.ended()
