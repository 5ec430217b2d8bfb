"""An OpenAI-compatible HTTP API over the shared model manager (the `workbench serve` command).

Routes: ``GET /v1/models``, ``GET /v1/models/{id}`` and ``POST /v1/chat/completions`` (plain or streamed
as server-sent events). Every answer is a :class:`ChatRun` on the manager, so loading, eviction and the
memory budget behave as in the app, and the inference thread round-robins concurrent streams.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``. A stream sends its
headers only once the first token exists, so a model that does not fit or fails to load is a plain
HTTP error. A failure after that is sent as one ``data: {"error": ...}`` event and the stream ends
without ``[DONE]``: the openai client raises ``APIError`` with the message on such an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from workbench.core.chat import ChatError, ChatEvent, ChatMessage, ChatRun, ContextTrimmed, Finished, Token
from workbench.core.config import presets
from workbench.core.lifecycle import (
    ModelDoesNotFitError,
    ModelLoadError,
    ModelManager,
    ModelManagerError,
    ModelRole,
    ModelSpec,
    UnknownModelError,
)
from workbench.core.sampling import SamplingSettings, validate_sampling
from workbench.core.services import Services

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
RUNS = web.AppKey("runs", set[ChatRun])
MAX_BODY = 32 * 1024 * 1024  # long conversations are bigger than aiohttp's 1 MB default
SHUTDOWN_TIMEOUT_S = 10.0  # running generations are stopped first, so handlers end well before this
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# request field -> sampling setting; top_k, min_p and repetition_penalty are extensions other local servers accept
SAMPLING_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",  # the newer name wins when both are given (it comes second)
}
TRIMMED_HEADER = "X-Workbench-Dropped-Messages"


# --- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "type": type_, "param": param, "code": code}

    def response(self) -> web.Response:
        return web.json_response({"error": self.body}, status=self.status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:  # unknown route, wrong method, body too large
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return ApiError(exc.status, exc.reason, kind).response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return ApiError(500, "internal server error (see the workbench log)", "server_error").response()


def _generation_error(model_id: str, exc: Exception) -> ApiError:
    """What a failure of a chat run means to the client."""
    if isinstance(exc, UnknownModelError):  # unregistered after the request was checked
        return ApiError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ModelDoesNotFitError):
        return ApiError(503, str(exc), "server_error", code="model_does_not_fit")
    if isinstance(exc, ModelLoadError):
        return ApiError(500, str(exc), "server_error", code="model_load_failed")
    if isinstance(exc, ChatError):
        return ApiError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, ModelManagerError):
        return ApiError(500, str(exc), "server_error")
    log.warning("generation with %s failed: %s: %s", model_id, type(exc).__name__, exc)
    return ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")


# --- the request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    messages: list[ChatMessage]
    sampling: SamplingSettings
    stream: bool
    include_usage: bool


def parse_request(body: object, defaults: SamplingSettings) -> CompletionRequest:
    """A chat completion request from its JSON body; unknown fields are ignored. Raises ApiError (400)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required (a model id from GET /v1/models)", param="model")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "only n=1 is supported", param="n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return CompletionRequest(model=model, messages=_messages(body.get("messages")),
                             sampling=_sampling(body, defaults), stream=bool(stream),
                             include_usage=include_usage)  # fmt: skip


def _messages(value: object) -> list[ChatMessage]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content}", param="messages")
    return [_message(item, i) for i, item in enumerate(value)]


def _message(item: object, index: int) -> ChatMessage:
    param = f"messages[{index}]"
    if not isinstance(item, dict):
        raise ApiError(400, f"{param} must be an object with role and content", param=param)
    role = item.get("role")
    role = ROLES.get(role) if isinstance(role, str) else None
    if role is None:
        raise ApiError(400, f"{param}: role must be one of {', '.join(ROLES)}", param=f"{param}.role")
    return ChatMessage(role, _content(item.get("content"), f"{param}.content"))


def _content(value: object, param: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [part.get("text") for part in value if isinstance(part, dict) and part.get("type") == "text"]
        if len(texts) == len(value) and all(isinstance(text, str) for text in texts):
            return "".join(texts)  # type: ignore[arg-type]
    raise ApiError(400, f"{param}: only text content is supported (a string or text parts)", param=param)


def _sampling(body: dict[str, Any], defaults: SamplingSettings) -> SamplingSettings:
    """The defaults overridden by the request's sampling fields (null keeps the default)."""
    settings = defaults.to_dict()
    for field, setting in SAMPLING_FIELDS.items():
        if body.get(field) is None:
            continue
        clean, problems = validate_sampling({setting: body[field]})
        if problems:
            raise ApiError(400, f"{field}: {problems[0][1]}", param=field)
        settings.update(clean)
    return SamplingSettings(**settings)


# --- models ------------------------------------------------------------------------------------


def chat_model_ids(manager: ModelManager) -> list[str]:
    return manager.ids(ModelRole.CHAT)


def _model_object(spec: ModelSpec) -> dict[str, Any]:
    try:
        created = int(spec.path.stat().st_mtime)
    except OSError:
        created = 0
    return {"id": spec.id, "object": "model", "created": created, "owned_by": "workbench"}


def _require_chat_model(manager: ModelManager, model_id: str) -> ModelSpec:
    ids = chat_model_ids(manager)
    if model_id not in ids:
        available = ", ".join(ids) or "none"
        raise ApiError(404, f"The model {model_id!r} does not exist here; available: {available}",
                       param="model", code="model_not_found")  # fmt: skip
    return manager.info(model_id).spec


async def list_models(request: web.Request) -> web.Response:
    manager = request.app[SERVICES].manager
    data = [_model_object(manager.info(model_id).spec) for model_id in chat_model_ids(manager)]
    return web.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    manager = request.app[SERVICES].manager
    return web.json_response(_model_object(_require_chat_model(manager, request.match_info["model"])))


# --- chat completions ----------------------------------------------------------------------------


class _Answer:
    """The pieces of one completion's JSON, plain or chunked."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def completion(self, text: str, finished: Finished | None) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": _finish_reason(finished), "logprobs": None}
        return {**self._base("chat.completion"), "choices": [choice], "usage": _usage(finished)}

    def chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**self._base("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self, finished: Finished | None) -> dict[str, Any]:
        return {**self._base("chat.completion.chunk"), "choices": [], "usage": _usage(finished)}


def _finish_reason(finished: Finished | None) -> str:
    return "length" if finished is not None and finished.finish_reason == "length" else "stop"


def _usage(finished: Finished | None) -> dict[str, int]:
    figures = finished.figures if finished is not None else None
    prompt = figures.prompt_tokens if figures else 0
    completion = figures.generation_tokens if figures else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _next_event(events: AsyncIterator[ChatEvent], model_id: str) -> ChatEvent | None:
    """The run's next event, None at its end; failures become ApiError."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
    except Exception as exc:
        raise _generation_error(model_id, exc) from exc


async def _first_answer_event(events: AsyncIterator[ChatEvent], model_id: str) -> tuple[ChatEvent | None, int]:
    """Wait for the first token (or the end) and count the messages dropped to fit the context."""
    dropped = 0
    while isinstance(event := await _next_event(events, model_id), ContextTrimmed):
        dropped += event.dropped
        log.info("%s: dropped the %d oldest messages to fit the context of %d", model_id, event.dropped,
                 event.window)  # fmt: skip
    return event, dropped


async def chat_completions(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    defaults = presets(services.settings).get(services.settings.chat_preset, SamplingSettings())
    parsed = parse_request(body, defaults)
    _require_chat_model(services.manager, parsed.model)
    run = ChatRun(services.manager, parsed.model, parsed.messages, parsed.sampling)
    events = run.events()
    request.app[RUNS].add(run)
    try:
        if parsed.stream:
            return await _streamed(request, parsed, events)
        return await _whole(parsed, events)
    finally:
        # also reached when the client goes away (aiohttp cancels the handler): the lease goes back
        run.stop()
        await events.aclose()  # type: ignore[attr-defined]
        request.app[RUNS].discard(run)


async def _whole(parsed: CompletionRequest, events: AsyncIterator[ChatEvent]) -> web.Response:
    event, dropped = await _first_answer_event(events, parsed.model)
    texts: list[str] = []
    finished: Finished | None = None
    while event is not None:
        if isinstance(event, Token):
            texts.append(event.text)
        elif isinstance(event, Finished):
            finished = event
        event = await _next_event(events, parsed.model)
    answer = _Answer(parsed.model).completion("".join(texts), finished)
    _log_finished(parsed.model, finished)
    return web.json_response(answer, headers=_trim_headers(dropped))


async def _streamed(request: web.Request, parsed: CompletionRequest,
                    events: AsyncIterator[ChatEvent]) -> web.StreamResponse:  # fmt: skip
    event, dropped = await _first_answer_event(events, parsed.model)
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_trim_headers(dropped)}
    response = web.StreamResponse(headers=headers)
    try:
        await response.prepare(request)
        await _send_chunks(response, parsed, event, events)
    except ConnectionResetError:
        log.info("the client of a %s stream went away; stopped the generation", parsed.model)
    return response


async def _send_chunks(response: web.StreamResponse, parsed: CompletionRequest, event: ChatEvent | None,
                       events: AsyncIterator[ChatEvent]) -> None:  # fmt: skip
    """The answer from ``event`` on, as chunks; a failure on the way ends it with an error event."""
    answer = _Answer(parsed.model)
    finished: Finished | None = None
    try:
        await _send(response, answer.chunk({"role": "assistant", "content": ""}))
        while event is not None:
            if isinstance(event, Token):
                await _send(response, answer.chunk({"content": event.text}))
            elif isinstance(event, Finished):
                finished = event
            event = await _next_event(events, parsed.model)
    except ApiError as exc:
        await _send(response, {"error": exc.body})
        return
    await _send(response, answer.chunk({}, _finish_reason(finished)))
    if parsed.include_usage:
        await _send(response, answer.usage_chunk(finished))
    await response.write(b"data: [DONE]\n\n")
    _log_finished(parsed.model, finished)


async def _send(response: web.StreamResponse, data: dict[str, Any]) -> None:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"data: {payload}\n\n".encode())


def _trim_headers(dropped: int) -> dict[str, str]:
    return {TRIMMED_HEADER: str(dropped)} if dropped else {}


def _log_finished(model_id: str, finished: Finished | None) -> None:
    if finished is not None and finished.figures is not None:
        log.info("%s answered: %s", model_id, finished.figures.summary())


# --- the app and the server ----------------------------------------------------------------------


async def _stop_generations(app: web.Application) -> None:
    for run in list(app[RUNS]):
        run.stop()


def build_app(services: Services) -> web.Application:
    """The API as an aiohttp application over ``services`` (registers nothing by itself)."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[SERVICES] = services
    app[RUNS] = set()
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)  # ids may hold a slash (org/name)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.on_shutdown.append(_stop_generations)
    return app


def base_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


async def serve(
    services: Services, host: str = "127.0.0.1", port: int = 8000, ready: Callable[[str], None] | None = None
) -> None:
    """Serve the API on ``host:port`` until cancelled; ``ready`` gets the base URL once listening (the real
    port when ``port`` is 0). On the way out: stop running generations, close the server, close the manager."""
    try:
        services.register_all_models()
        # a client that disconnects cancels its handler, which stops its generation
        runner = web.AppRunner(build_app(services), handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            url = base_url(host, runner.addresses[0][1])
            log.info("serving the OpenAI-compatible API at %s", url)
            if ready is not None:
                ready(url)
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
    finally:
        await services.manager.aclose()


__all__ = ["ApiError", "CompletionRequest", "base_url", "build_app", "chat_model_ids", "parse_request", "serve"]
