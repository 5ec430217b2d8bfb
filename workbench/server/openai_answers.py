"""One :class:`ChatRun` answered over HTTP, whole or streamed as server-sent events, in the JSON of a chat
completion or of a text completion (:class:`ChatShape`, :class:`TextShape`).

A stream sends its headers only once the first token exists, so a model that does not fit or fails to load is
a plain HTTP error. A failure after that is sent as one ``data: {"error": ...}`` event and the stream ends
without ``[DONE]``: the openai client raises ``APIError`` with the message on such an event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

from workbench.core.chat.run import ChatEvent, ChatRun, Finished, Token
from workbench.server.errors import ApiError
from workbench.server.openai_shared import (
    RUNS,
    SSE_HEADERS,
    finish_reason,
    first_answer_event,
    log_finished,
    next_event,
    send_done,
    send_event,
    usage,
)

log = logging.getLogger(__name__)

TRIMMED_HEADER = "X-Workbench-Dropped-Messages"


class AnswerShape(Protocol):
    """The pieces of one answer's JSON, whole or chunked."""

    model: str
    prompt_param: str  # the request's field the prompt came from

    def whole(self, text: str, finished: Finished | None) -> dict[str, Any]: ...
    def opening(self) -> dict[str, Any] | None: ...
    def piece(self, text: str) -> dict[str, Any]: ...
    def closing(self, finished: Finished | None) -> dict[str, Any]: ...
    def usage_chunk(self, finished: Finished | None) -> dict[str, Any]: ...


class _Shape:
    prefix = ""
    whole_kind = ""
    chunk_kind = ""

    def __init__(self, model: str) -> None:
        self.id = f"{self.prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def usage_chunk(self, finished: Finished | None) -> dict[str, Any]:
        return {**self._base(self.chunk_kind), "choices": [], "usage": usage(finished)}


class ChatShape(_Shape):
    """``chat.completion`` and its ``chat.completion.chunk``s."""

    prefix, whole_kind, chunk_kind = "chatcmpl", "chat.completion", "chat.completion.chunk"
    prompt_param = "messages"

    def whole(self, text: str, finished: Finished | None) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish_reason(finished), "logprobs": None}
        return {**self._base(self.whole_kind), "choices": [choice], "usage": usage(finished)}

    def _chunk(self, delta: dict[str, str], reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        return {**self._base(self.chunk_kind), "choices": [choice]}

    def opening(self) -> dict[str, Any] | None:
        return self._chunk({"role": "assistant", "content": ""})

    def piece(self, text: str) -> dict[str, Any]:
        return self._chunk({"content": text})

    def closing(self, finished: Finished | None) -> dict[str, Any]:
        return self._chunk({}, finish_reason(finished))


class TextShape(_Shape):
    """``text_completion``, whole and chunked (OpenAI names both the same)."""

    prefix, whole_kind, chunk_kind = "cmpl", "text_completion", "text_completion"
    prompt_param = "prompt"

    def _choices(self, text: str, reason: str | None) -> list[dict[str, Any]]:
        return [{"index": 0, "text": text, "finish_reason": reason, "logprobs": None}]

    def whole(self, text: str, finished: Finished | None) -> dict[str, Any]:
        return {**self._base(self.whole_kind), "choices": self._choices(text, finish_reason(finished)),
                "usage": usage(finished)}  # fmt: skip

    def opening(self) -> dict[str, Any] | None:
        return None

    def piece(self, text: str) -> dict[str, Any]:
        return {**self._base(self.chunk_kind), "choices": self._choices(text, None)}

    def closing(self, finished: Finished | None) -> dict[str, Any]:
        return {**self._base(self.chunk_kind), "choices": self._choices("", finish_reason(finished))}


async def answer_run(request: web.Request, run: ChatRun, shape: AnswerShape, stream: bool, include_usage: bool,
                     dropped_before: int = 0) -> web.StreamResponse:  # fmt: skip
    """``run`` answered in ``shape``; ``dropped_before``: the messages already dropped to fit the context (said in
    a header with those the run drops). The run stops when the handler ends, the client's going away included."""
    events = run.events()
    request.app[RUNS].add(run)
    try:
        if stream:
            return await _streamed(request, shape, events, dropped_before, include_usage)
        return await _whole(request, shape, events, dropped_before)
    finally:
        # also reached when the client goes away (aiohttp cancels the handler): the lease goes back
        run.stop()
        await events.aclose()  # type: ignore[attr-defined]
        request.app[RUNS].discard(run)


async def _whole(request: web.Request, shape: AnswerShape, events: AsyncIterator[ChatEvent],
                 dropped_before: int) -> web.Response:  # fmt: skip
    event, dropped = await first_answer_event(events, shape.model, shape.prompt_param)
    texts: list[str] = []
    finished: Finished | None = None
    while event is not None:
        if isinstance(event, Token):
            texts.append(event.text)
        elif isinstance(event, Finished):
            finished = event
        event = await next_event(events, shape.model, shape.prompt_param)
    log_finished(request, shape.model, finished)
    return web.json_response(shape.whole("".join(texts), finished), headers=_trim_headers(dropped_before + dropped))


async def _streamed(request: web.Request, shape: AnswerShape, events: AsyncIterator[ChatEvent],
                    dropped_before: int, include_usage: bool) -> web.StreamResponse:  # fmt: skip
    event, dropped = await first_answer_event(events, shape.model, shape.prompt_param)
    response = web.StreamResponse(headers={**SSE_HEADERS, **_trim_headers(dropped_before + dropped)})
    try:
        await response.prepare(request)
        await _send_chunks(request, response, shape, event, events, include_usage)
    except ConnectionResetError:
        log.info("the client of a %s stream went away; stopped the generation", shape.model)
    return response


async def _send_chunks(request: web.Request, response: web.StreamResponse, shape: AnswerShape,
                       event: ChatEvent | None, events: AsyncIterator[ChatEvent],
                       include_usage: bool) -> None:  # fmt: skip
    """The answer from ``event`` on, as chunks; a failure on the way ends it with an error event."""
    finished: Finished | None = None
    try:
        if (opening := shape.opening()) is not None:
            await send_event(response, opening)
        while event is not None:
            if isinstance(event, Token):
                await send_event(response, shape.piece(event.text))
            elif isinstance(event, Finished):
                finished = event
            event = await next_event(events, shape.model, shape.prompt_param)
    except ApiError as exc:
        await send_event(response, {"error": exc.body})
        return
    await send_event(response, shape.closing(finished))
    if include_usage:
        await send_event(response, shape.usage_chunk(finished))
    await send_done(response)
    log_finished(request, shape.model, finished)


def _trim_headers(dropped: int) -> dict[str, str]:
    return {TRIMMED_HEADER: str(dropped)} if dropped else {}


__all__ = ["TRIMMED_HEADER", "AnswerShape", "ChatShape", "TextShape", "answer_run"]
