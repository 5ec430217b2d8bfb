"""What the OpenAI-compatible routes share: the application's keys, what a handler leaves on its request for the
engine's request lines, reading a body with the server's limit, server-sent events, and a chat run's events read
as an answer (usage, finish reason, failures as :class:`ApiError`)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from workbench.bootstrap import Services
from workbench.core.chat.run import ChatEvent, ChatRun, ContextTrimmed, Finished, Reading
from workbench.server.errors import ApiError, generation_error
from workbench.server.limits import MB, ServeLimits, WaitingRequests

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
RUNS = web.AppKey("runs", set[ChatRun])
LIMITS = web.AppKey("limits", ServeLimits)
WAITING = web.AppKey("waiting", WaitingRequests)


def _request_key(name: str) -> Any:
    """web.RequestKey where aiohttp has it (a plain string key warns there), the plain name in older versions."""
    maker = getattr(web, "RequestKey", None)
    return name if maker is None else maker(name, object)


# what a request leaves on its request for a middleware that reports it (the engine's request lines)
REQUEST_MODEL = _request_key("workbench.model")
REQUEST_STREAM = _request_key("workbench.stream")
REQUEST_FIGURES = _request_key("workbench.figures")


async def read_json(request: web.Request) -> object:
    """The body's JSON: 413 past the server's body limit (without reading it when its length says so), 400 when
    it is not JSON."""
    limit = request.app[LIMITS].max_body_bytes
    too_large = ApiError(413, f"the request body is larger than {limit / MB:g} MB, the most this server takes "
                         "([serve] max_body_mb in config.toml)", code="request_too_large")  # fmt: skip
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        raw = await request.read()  # aiohttp stops reading past client_max_size (the same limit)
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


def body_model(body: object) -> str | None:
    """The body's "model" when it is a string (to pick the model's defaults before the body is checked)."""
    return body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None


# --- server-sent events ---------------------------------------------------------------------------


SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def send_event(response: web.StreamResponse, data: dict[str, Any]) -> None:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"data: {payload}\n\n".encode())


async def send_done(response: web.StreamResponse) -> None:
    await response.write(b"data: [DONE]\n\n")


# --- a run's events as an answer ------------------------------------------------------------------


def finish_reason(finished: Finished | None) -> str:
    return "length" if finished is not None and finished.finish_reason == "length" else "stop"


def usage(finished: Finished | None) -> dict[str, Any]:
    """OpenAI's usage; ``prompt_tokens_details.cached_tokens``: the prompt tokens a kept prompt cache served."""
    figures = finished.figures if finished is not None else None
    prompt = figures.prompt_tokens if figures else 0
    completion = figures.generation_tokens if figures else 0
    cached = figures.cached_tokens if figures else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


async def next_event(events: AsyncIterator[ChatEvent], model_id: str,
                     prompt_param: str = "messages") -> ChatEvent | None:  # fmt: skip
    """The run's next event, None at its end; failures become ApiError (a prompt that cannot fit names
    ``prompt_param``)."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
    except Exception as exc:
        raise generation_error(model_id, exc, prompt_param) from exc


async def first_answer_event(events: AsyncIterator[ChatEvent], model_id: str,
                             prompt_param: str = "messages") -> tuple[ChatEvent | None, int]:  # fmt: skip
    """Wait for the first token (or the end), past the prompt's reading, and count the messages dropped to fit the
    context."""
    dropped = 0
    while isinstance(event := await next_event(events, model_id, prompt_param), ContextTrimmed | Reading):
        if isinstance(event, ContextTrimmed):
            dropped += event.dropped
            log.info("%s: dropped the %d oldest messages to fit the context of %d", model_id, event.dropped,
                     event.window)  # fmt: skip
    return event, dropped


def log_finished(request: web.Request, model_id: str, finished: Finished | None) -> None:
    if finished is not None and finished.figures is not None:
        request[REQUEST_FIGURES] = finished.figures
        log.info("%s answered: %s", model_id, finished.figures.summary())


__all__ = [
    "LIMITS",
    "REQUEST_FIGURES",
    "REQUEST_MODEL",
    "REQUEST_STREAM",
    "RUNS",
    "SERVICES",
    "SSE_HEADERS",
    "WAITING",
    "body_model",
    "finish_reason",
    "first_answer_event",
    "log_finished",
    "next_event",
    "read_json",
    "send_done",
    "send_event",
    "usage",
]
