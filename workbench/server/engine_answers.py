"""The engine's chat routes: a conversation's answers run in the engine, so they outlive the face that asked.

``POST /v1/answers`` starts an answer: ``{"action": "send", "text": ..., "conversation"?: id}`` (no conversation:
a new one, titled from the text) or ``{"action": "regenerate", "conversation": id}``, with the face's choices
(``model``, ``system_prompt``, ``sampling``: what a ChatSession holds in memory). The answer runs in a task the
engine owns (a ChatSession per answer: the same store writes, prompt-cache key and model wait as in-process); it
shows on the job board while it runs. At most one answer per conversation runs (409 for a second).
``GET /v1/answers/{id}/events`` streams it (NDJSON, workbench.core.chat.wire): from where it is (the notes so far,
the text so far as one ``token`` line), then live, to ``ended``; a finished answer sends its text and ``ended``,
from the store. Closing that stream does not stop the answer: it finishes and is saved complete. ``POST
/v1/answers/{id}/stop`` stops it (what came is kept, as stopped).

The conversation routes read and change what the store holds, the engine being its only writer:
``GET /v1/conversations`` (latest first), ``GET /v1/conversations/{id}`` (with its messages and the answer
running, if any), ``PATCH /v1/conversations/{id}`` (model, system prompt, sampling),
``POST /v1/conversations/{id}/edit_last``; and ``POST /v1/chat/sampling`` resolves the effective sampling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.chat.model_sampling import chat_sampling
from workbench.core.chat.sampling import SamplingChoice, validate_sampling
from workbench.core.chat.session import AnswerEnded, ChatSession, ModelChosen, SessionEvent
from workbench.core.chat.wire import (
    conversation_document,
    ended_document,
    event_document,
    message_document,
    stored_ended,
)
from workbench.server.bodies import BadRequest, read_json_object
from workbench.server.ndjson import HEARTBEAT_S, NdjsonStream, PeerGone

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.server.engine_jobs import Job, JobBoard

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # a pasted document fits; a runaway face does not
MAX_MODEL_CHARS = 512
MAX_LIST = 500
CLOSE_TIMEOUT_S = 10.0  # how long the engine's stop waits for the answers it stopped to be saved
ANSWER_KEYS = frozenset({"action", "conversation", "text", "model", "system_prompt", "sampling", "face"})
CHOICE_KEYS = frozenset({"model", "system_prompt", "sampling"})
ACTIONS = ("send", "regenerate")
FACE = re.compile(r"[a-z][a-z0-9-]{0,15}")
COALESCED = ("waiting", "reading")  # a late face needs only the latest of these
ID = r"{id:\d{1,18}}"


# --- reading requests --------------------------------------------------------------------------------


def parse_choices(document: dict[str, Any]) -> dict[str, Any]:
    """The face's choices in ``document`` (each optional): ``model`` (str or null), ``system_prompt`` (str),
    ``sampling`` (a SamplingChoice's dict, checked strictly)."""
    choices: dict[str, Any] = {}
    if "model" in document:
        model = document["model"]
        if model is not None and (not isinstance(model, str) or not model or len(model) > MAX_MODEL_CHARS):
            raise BadRequest(f"'model' must be a model id (a string of at most {MAX_MODEL_CHARS} characters) or null")
        choices["model"] = model
    if "system_prompt" in document:
        if not isinstance(document["system_prompt"], str):
            raise BadRequest("'system_prompt' must be a string")
        choices["system_prompt"] = document["system_prompt"]
    if "sampling" in document:
        sampling = document["sampling"]
        if not isinstance(sampling, dict):
            raise BadRequest('\'sampling\' must be an object: {"preset"?: NAME, "temperature"?: ..., ...}')
        preset = sampling.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise BadRequest("'sampling.preset' must be a preset's name")
        _clean, problems = validate_sampling({k: v for k, v in sampling.items() if k != "preset"})
        if problems:
            raise BadRequest("sampling: " + "; ".join(f"{str(k)[:40]}: {why}" for k, why in problems[:5]))
        choices["sampling"] = SamplingChoice.from_dict(sampling)
    return choices


def path_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def refused(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


# --- one answer running ------------------------------------------------------------------------------


class RunningAnswer:
    """An answer the engine runs: its session, what a late face needs to catch up (the notes: waiting, model
    chosen, trimmed, reading, latest-wins for waiting and reading; the text is the answer's own), and how it
    ended. Every change wakes the faces streaming it."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session
        assert session.answer is not None
        self.answer = session.answer
        self.notes: list[tuple[int, dict[str, Any]]] = []
        self.seq = 0
        self.ended: dict[str, Any] | None = None
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def id(self) -> int:
        return self.answer.message.id

    def record(self, event: SessionEvent) -> None:
        document = event_document(event)
        if isinstance(event, AnswerEnded):
            self.ended = document
        elif document["type"] != "token":  # the text is in self.answer.text already
            self.seq += 1
            if self.notes and document["type"] in COALESCED and self.notes[-1][1]["type"] == document["type"]:
                self.notes[-1] = (self.seq, document)
            else:
                self.notes.append((self.seq, document))
        self._wake()

    def end(self) -> None:
        if self.ended is None:
            self.ended = ended_document(self.answer.ended())
        self._wake()

    def _wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


# --- the routes --------------------------------------------------------------------------------------


class AnswerRoutes:
    """The chat routes over the engine's services; the answers they start run until they end or the engine stops
    (``close``: on the app's shutdown, before the services close)."""

    def __init__(self, services: Services, board: JobBoard, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.services = services
        self.board = board
        self.heartbeat_s = heartbeat_s
        self.by_conversation: dict[int, RunningAnswer] = {}
        self.by_id: dict[int, RunningAnswer] = {}

    def install(self, app: web.Application) -> None:
        app.add_routes([
            web.post("/v1/answers", self.start),
            web.get(f"/v1/answers/{ID}/events", self.events),
            web.post(f"/v1/answers/{ID}/stop", self.stop),
            web.get("/v1/conversations", self.conversations),
            web.get(f"/v1/conversations/{ID}", self.conversation),
            web.patch(f"/v1/conversations/{ID}", self.change),
            web.post(f"/v1/conversations/{ID}/edit_last", self.edit_last),
            web.post("/v1/chat/sampling", self.sampling),
        ])  # fmt: skip
        app.on_shutdown.append(self.close)

    def session(self) -> ChatSession:
        services = self.services
        return ChatSession(services.store, services.manager, services.settings, services.default_import)

    # --- answers ---------------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.Response:
        try:
            document = await read_json_object(request, ANSWER_KEYS, MAX_BODY_BYTES)
            return web.json_response(self._start(document))
        except BadRequest as exc:
            return refused(str(exc), exc.status)

    def _start(self, document: dict[str, Any]) -> dict[str, Any]:
        action = document.get("action")
        if action not in ACTIONS:
            raise BadRequest(f"'action' must be one of {', '.join(ACTIONS)}")
        face = document.get("face", "tui")
        if not isinstance(face, str) or not FACE.fullmatch(face):
            raise BadRequest("'face' must be a short lowercase name (tui, cli, …)")
        choices = parse_choices(document)
        conversation_id = document.get("conversation")
        if conversation_id is not None and (not isinstance(conversation_id, int) or isinstance(conversation_id, bool)
                                            or conversation_id < 1):  # fmt: skip
            raise BadRequest("'conversation' must be a conversation's id (a whole number) or null")
        if conversation_id is None and action != "send":
            raise BadRequest(f"'{action}' needs a 'conversation'")
        text = document.get("text")
        if action == "send" and (not isinstance(text, str) or not text.strip()):
            raise BadRequest("'send' needs a 'text' that is not blank")
        if action != "send" and text is not None:
            raise BadRequest(f"'{action}' takes no 'text'")
        session = self._session_for(conversation_id, choices)
        removed: int | None = None
        user = None
        created = False
        if action == "send":
            assert isinstance(text, str)  # checked above
            sent = session.send(text)
            user, created = sent.user, sent.created
        else:
            regenerated = session.regenerate()
            if regenerated is None:
                raise BadRequest("nothing to regenerate: the conversation does not end with an answer, or no model "
                                 "is chosen", 409)  # fmt: skip
            removed = regenerated[0]
        assert session.conversation is not None and session.answer is not None
        conversation = self.services.store.chats.get_conversation(session.conversation.id) or session.conversation
        reply = {"answer": session.answer.message.id, "conversation": conversation_document(conversation),
                 "created": created, "user": message_document(user) if user else None,
                 "message": message_document(session.answer.message), "removed": removed}  # fmt: skip
        self._run(RunningAnswer(session), face)
        return reply

    def _session_for(self, conversation_id: int | None, choices: dict[str, Any]) -> ChatSession:
        """A session on the conversation (None: a new one) with the face's choices; 404 / 409 when it is gone or
        answering."""
        session = self.session()
        if conversation_id is not None:
            if conversation_id in self.by_conversation:
                raise BadRequest("Still answering: Esc stops it.", 409)
            if session.open(conversation_id) is None:
                raise BadRequest(f"no conversation {conversation_id}", 404)
        if "model" in choices:
            session.model_id = choices["model"]
        if "system_prompt" in choices:
            session.system_prompt = choices["system_prompt"]
        if "sampling" in choices:
            session.sampling = choices["sampling"]
        return session

    def _run(self, running: RunningAnswer, face: str) -> None:
        assert running.session.conversation is not None
        conversation_id = running.session.conversation.id
        self.by_conversation[conversation_id] = running
        self.by_id[running.id] = running
        job = self.board.start("generation", running.session.model_id or "the default model", face=face,
                               conversation=conversation_id, answer=running.id)  # fmt: skip
        running.task = asyncio.create_task(self._answer(running, job), name=f"answer-{running.id}")

    async def _answer(self, running: RunningAnswer, job: Job) -> None:
        """Run the answer to its end (saved by the session however it ends), telling the faces as it goes."""
        try:
            async with contextlib.aclosing(running.session.answer_events(running.answer)) as events:
                async for event in events:
                    if isinstance(event, ModelChosen):
                        job.what = event.model_id
                        self.board.update(job)
                    running.record(event)
        except asyncio.CancelledError:  # the engine stops, or the answer was stopped while it waited for its model
            pass
        except Exception:  # the session saves every failure it knows; this is one it does not
            log.exception("answer %s failed", running.id)
        finally:
            running.end()
            self.board.end(job)
            assert running.session.conversation is not None
            if self.by_conversation.get(running.session.conversation.id) is running:
                del self.by_conversation[running.session.conversation.id]
            self.by_id.pop(running.id, None)

    async def events(self, request: web.Request) -> web.StreamResponse:
        answer_id = path_id(request)
        running = self.by_id.get(answer_id)
        message = None if running is not None else self.services.store.chats.message(answer_id)
        if running is None and (message is None or message.role != "assistant"):
            return refused(f"no answer {answer_id}", 404)
        async with NdjsonStream(request, self.heartbeat_s) as stream:
            with contextlib.suppress(PeerGone):
                if running is not None:
                    await self._follow(running, stream)
                elif message is not None:  # over: its text as the one catch-up line, then its end, as stored
                    if message.content:
                        await stream.send({"type": "token", "text": message.content})
                    await stream.send(stored_ended(message))
        return stream.response

    async def _follow(self, running: RunningAnswer, stream: NdjsonStream) -> None:
        """Send the answer from where it is, then as it goes, until it ends or the face leaves (PeerGone)."""
        sent_seq, sent_chars = 0, 0
        while True:
            changed = running.changed
            for seq, note in running.notes:
                if seq > sent_seq:
                    await stream.send(note)
                    sent_seq = seq
            text = running.answer.text
            if len(text) > sent_chars:
                await stream.send({"type": "token", "text": text[sent_chars:]})
                sent_chars = len(text)
            if running.ended is not None:
                await stream.send(running.ended)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.heartbeat_s)
            if stream.gone:
                return

    async def stop(self, request: web.Request) -> web.Response:
        answer_id = path_id(request)
        running = self.by_id.get(answer_id)
        if running is None:
            if self.services.store.chats.message(answer_id) is None:
                return refused(f"no answer {answer_id}", 404)
            return web.json_response({"stopping": False})  # it is over already
        if not running.session.stop() and running.task is not None:
            running.task.cancel()  # still waiting for its model: what came is kept, as stopped
        return web.json_response({"stopping": True})

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop every answer (each is saved as stopped) before the services close."""
        tasks = [running.task for running in self.by_id.values() if running.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)

    # --- conversations ---------------------------------------------------------------------------

    async def conversations(self, request: web.Request) -> web.Response:
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
            return refused(f"'limit' must be a whole number from 1 to {MAX_LIST}", 400)
        rows = self.services.store.chats.list_conversations(limit=int(raw))
        return web.json_response({"conversations": [conversation_document(row) for row in rows]})

    async def conversation(self, request: web.Request) -> web.Response:
        conversation_id = path_id(request)
        conversation = self.services.store.chats.get_conversation(conversation_id)
        if conversation is None:
            return refused(f"no conversation {conversation_id}", 404)
        running = self.by_conversation.get(conversation_id)
        messages = self.services.store.chats.messages(conversation_id)
        return web.json_response({"conversation": conversation_document(conversation),
                                  "messages": [message_document(m) for m in messages],
                                  "answering": running.id if running else None})  # fmt: skip

    async def change(self, request: web.Request) -> web.Response:
        conversation_id = path_id(request)
        try:
            choices = parse_choices(await read_json_object(request, CHOICE_KEYS, MAX_BODY_BYTES))
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        chats = self.services.store.chats
        if chats.get_conversation(conversation_id) is None:
            return refused(f"no conversation {conversation_id}", 404)
        changes: dict[str, Any] = {}
        if "model" in choices:
            changes["model_id"] = choices["model"]
        if "system_prompt" in choices:
            changes["system_prompt"] = choices["system_prompt"]
        if "sampling" in choices:
            changes["sampling"] = choices["sampling"].to_dict()
        if changes:
            chats.update_conversation(conversation_id, **changes)
        conversation = chats.get_conversation(conversation_id)
        assert conversation is not None
        return web.json_response({"conversation": conversation_document(conversation)})

    async def edit_last(self, request: web.Request) -> web.Response:
        conversation_id = path_id(request)
        try:
            await read_json_object(request, frozenset(), MAX_BODY_BYTES)
            if conversation_id in self.by_conversation:
                raise BadRequest("Still answering: Esc stops it.", 409)
            session = self.session()
            if session.open(conversation_id) is None:
                raise BadRequest(f"no conversation {conversation_id}", 404)
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        edited = session.edit_last()
        text, removed = edited if edited is not None else (None, [])
        return web.json_response({"text": text, "removed": removed})

    async def sampling(self, request: web.Request) -> web.Response:
        try:
            choices = parse_choices(await read_json_object(request, CHOICE_KEYS - {"system_prompt"}, MAX_BODY_BYTES))
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        services = self.services
        resolved = chat_sampling(services.settings, services.manager, choices.get("model"), choices.get("sampling"))
        return web.json_response({"settings": resolved.settings.to_dict(), "sources": dict(resolved.sources)})
