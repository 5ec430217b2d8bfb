"""The engine's history routes: the writes a face makes to the database outside the model work.

A face reads the history straight from the SQLite file, read-only (``Store(path, read_only=True)``, wrapped with these
writes in workbench/client/store.py); the engine is the one writer, so what a face changes comes here:

- ``POST /v1/conversations/{id}/rename`` ``{"title": str}`` → ``{"conversation": {...}}`` (the row as the history
  lists it: id, title, model_id, system_prompt, sampling, created, updated, message_count)
- ``DELETE /v1/conversations/{id}`` (no body) → ``{"deleted": id}``; the chat's saved prompt cache goes with it
- ``POST /v1/embedding-sets`` ``{"path": absolute path, "column": str | null, "model": id, "passages": int}`` →
  ``{"embedding_set": {...}}`` (the corpus the Embeddings pane opened, remembered so it reopens the latest)

An id that is not a positive integer is 400, an unknown one 404; bodies are size-bounded, unknown keys refused. Each
change is also published on the event hub's ordered ``history`` topic, so other faces can reload what they show.
Messages are deleted by the chat session's own flow (regenerate, edit) and votes by the compare session's (the vote
belongs to the turn the session holds), so neither is a route here.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.prompt_cache.reuse import chat_cache_key
from workbench.server.bodies import BadRequest, parse_json_object, read_bounded

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.server.engine_events import EventHub

MAX_BODY_BYTES = 16 * 1024
MAX_TITLE_CHARS = 500
MAX_PATH_CHARS = 4096
MAX_COLUMN_CHARS = 256
MAX_MODEL_CHARS = 512
MAX_PASSAGES = 10**9
MAX_ID = 2**63 - 1  # SQLite's integer
ID_TEXT = re.compile(r"[1-9][0-9]{0,18}")


def parse_id(text: str) -> int:
    if not ID_TEXT.fullmatch(text) or int(text) > MAX_ID:
        raise BadRequest(f"{text[:40]!r} is not a conversation id (a positive integer)")
    return int(text)


def _text(document: dict[str, Any], key: str, limit: int, what: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{key}' must be {what} (a non-blank string)")
    if len(value) > limit:
        raise BadRequest(f"'{key}' is longer than {limit} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest(f"'{key}' holds a control character")
    return value


def parse_rename(body: bytes) -> str:
    document = parse_json_object(body, frozenset({"title"}), MAX_BODY_BYTES, '{"title": "..."}')
    return _text(document, "title", MAX_TITLE_CHARS, "the chat's new title").strip()


def parse_embedding_set(body: bytes) -> tuple[str, str | None, str, int]:
    """``(path, column, model id, passages)`` from a ``POST /v1/embedding-sets`` body, or BadRequest."""
    shape = '{"path": "/absolute/path", "column": str | null, "model": id, "passages": int}'
    document = parse_json_object(body, frozenset({"path", "column", "model", "passages"}), MAX_BODY_BYTES, shape)
    if missing := sorted({"path", "model", "passages"} - set(document)):
        raise BadRequest(f"missing key(s): {', '.join(missing)} ({shape})")
    path = _text(document, "path", MAX_PATH_CHARS, "the corpus's absolute path")
    if not path.startswith("/"):
        raise BadRequest("'path' must be absolute (the face makes it so)")
    column = document.get("column")
    if column is not None:
        column = _text(document, "column", MAX_COLUMN_CHARS, "a column name or null")
    model_id = _text(document, "model", MAX_MODEL_CHARS, "the model id that embedded the corpus")
    passages = document["passages"]
    if isinstance(passages, bool) or not isinstance(passages, int) or not 0 <= passages <= MAX_PASSAGES:
        raise BadRequest(f"'passages' must be an integer from 0 to {MAX_PASSAGES}")
    return path, column, model_id, passages


class StoreRoutes:
    """The history's writes, on the engine's one read-write store."""

    def __init__(self, services: Services, events: EventHub | None = None) -> None:
        self.services = services
        self.events = events

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/conversations/{id}/rename", self.rename),
                web.delete("/v1/conversations/{id}", self.delete),
                web.post("/v1/embedding-sets", self.remember_embedding_set)]  # fmt: skip

    async def rename(self, request: web.Request) -> web.Response:
        try:
            conversation_id = parse_id(request.match_info["id"])
            title = parse_rename(await _body(request))
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        chats = self.services.store.chats
        try:
            chats.rename_conversation(conversation_id, title)
        except KeyError:
            return refused(f"no conversation with id {conversation_id}", 404)
        conversation = chats.get_conversation(conversation_id)
        assert conversation is not None  # renamed a moment ago on this loop
        self._publish({"change": "renamed", "conversation": conversation_id, "title": conversation.title})
        return web.json_response({"conversation": asdict(conversation)})

    async def delete(self, request: web.Request) -> web.Response:
        try:
            conversation_id = parse_id(request.match_info["id"])
            if await _body(request):
                raise BadRequest("DELETE takes no body")
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        try:
            self.services.store.chats.delete_conversation(conversation_id)
        except KeyError:
            return refused(f"no conversation with id {conversation_id}", 404)
        # after the work already on the inference thread, so an answer's save in flight cannot bring the file back
        self.services.manager.forget_saved_cache(chat_cache_key(conversation_id))
        self._publish({"change": "deleted", "conversation": conversation_id})
        return web.json_response({"deleted": conversation_id})

    async def remember_embedding_set(self, request: web.Request) -> web.Response:
        try:
            path, column, model_id, passages = parse_embedding_set(await _body(request))
        except BadRequest as exc:
            return refused(str(exc), exc.status)
        self.services.store.embedding_sets.remember_embedding_set(path, column, model_id, passages)
        remembered = {"path": path, "column": column, "model": model_id, "passages": passages}
        self._publish({"change": "embedding_set", **remembered})
        return web.json_response({"embedding_set": remembered})

    def _publish(self, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish("history", payload)


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    body = await read_bounded(request, MAX_BODY_BYTES)
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    return body


def refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
