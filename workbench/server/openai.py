"""The OpenAI-compatible HTTP API over the shared model manager (the `workbench serve` command): its routes,
the answers plain and streamed, the aiohttp application and the server.

Routes: ``GET /v1/models``, ``GET /v1/models/{id}`` (the manager's chat models, remote ones included) and
``POST /v1/chat/completions`` (plain or streamed as server-sent events). Every answer is a :class:`ChatRun` on the
manager, so loading, eviction and the memory budget behave as in the app, and concurrent streams of local models
take turns on the inference thread.
The request is read by :mod:`workbench.server.openai_requests`; what is let in (body size, requests at once, the
API key, loopback) is :mod:`workbench.server.limits`; errors have OpenAI's shape (:mod:`workbench.server.errors`).

A stream sends its headers only once the first token exists, so a model that does not fit or fails to load is
a plain HTTP error. A failure after that is sent as one ``data: {"error": ...}`` event and the stream ends
without ``[DONE]``: the openai client raises ``APIError`` with the message on such an event.

Answers reuse the prompt caches the manager keeps, as in the app: a follow-up that resends the conversation reads
only its new tokens. The usage says how many prompt tokens a kept cache served, as OpenAI does, in
``usage.prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from workbench.bootstrap import Services
from workbench.core.chat.model_sampling import chat_sampling
from workbench.core.chat.run import (
    ChatError,
    ChatEvent,
    ChatRun,
    ContextTrimmed,
    Finished,
    Reading,
    Token,
    trim_to_characters,
)
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.spec import (
    ModelRole,
    ModelSpec,
)
from workbench.server.errors import ApiError, answer_errors, generation_error
from workbench.server.limits import MB, KeyRequiredError, ServeLimits, WaitingRequests, is_loopback, require_key
from workbench.server.openai_requests import CompletionRequest, parse_request

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
RUNS = web.AppKey("runs", set[ChatRun])
LIMITS = web.AppKey("limits", ServeLimits)
WAITING = web.AppKey("waiting", WaitingRequests)
SHUTDOWN_TIMEOUT_S = 10.0  # running generations are stopped first, so handlers end well before this
TRIMMED_HEADER = "X-Workbench-Dropped-Messages"


def _request_key(name: str) -> Any:
    """web.RequestKey where aiohttp has it (a plain string key warns there), the plain name in older versions."""
    maker = getattr(web, "RequestKey", None)
    return name if maker is None else maker(name, object)


# what a chat request leaves on its request for a middleware that reports it (the engine's request lines)
REQUEST_MODEL = _request_key("workbench.model")
REQUEST_STREAM = _request_key("workbench.stream")
REQUEST_FIGURES = _request_key("workbench.figures")


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


def _usage(finished: Finished | None) -> dict[str, Any]:
    """OpenAI's usage; ``prompt_tokens_details.cached_tokens``: the prompt tokens a kept prompt cache served."""
    figures = finished.figures if finished is not None else None
    prompt = figures.prompt_tokens if figures else 0
    completion = figures.generation_tokens if figures else 0
    cached = figures.cached_tokens if figures else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


async def _next_event(events: AsyncIterator[ChatEvent], model_id: str) -> ChatEvent | None:
    """The run's next event, None at its end; failures become ApiError."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
    except Exception as exc:
        raise generation_error(model_id, exc) from exc


async def _first_answer_event(events: AsyncIterator[ChatEvent], model_id: str) -> tuple[ChatEvent | None, int]:
    """Wait for the first token (or the end), past the prompt's reading, and count the messages dropped to fit the
    context."""
    dropped = 0
    while isinstance(event := await _next_event(events, model_id), ContextTrimmed | Reading):
        if isinstance(event, ContextTrimmed):
            dropped += event.dropped
            log.info("%s: dropped the %d oldest messages to fit the context of %d", model_id, event.dropped,
                     event.window)  # fmt: skip
    return event, dropped


async def chat_completions(request: web.Request) -> web.StreamResponse:
    with request.app[WAITING].admit():  # before the body is read: a refused request costs no memory
        return await _answer(request)


async def _read_json(request: web.Request) -> object:
    limit = request.app[LIMITS].max_body_bytes
    too_large = ApiError(413, f"the request body is larger than {limit / MB:g} MB, the most this server takes "
                         "([serve] max_body_mb in config.toml)", code="request_too_large")  # fmt: skip
    if request.content_length is not None and request.content_length > limit:
        raise too_large  # without reading it
    try:
        raw = await request.read()  # aiohttp stops reading past client_max_size (the same limit)
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


async def _answer(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await _read_json(request)  # the parsed body is not kept: only its messages
    # the request's fields over the configured preset (if any), the model's generation_config, the built-in ones
    model_id = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
    parsed = parse_request(body, chat_sampling(services.settings, services.manager, model_id).settings)
    request[REQUEST_MODEL], request[REQUEST_STREAM] = parsed.model, parsed.stream
    _require_chat_model(services.manager, parsed.model)
    try:  # what surely cannot fit any context here goes now, before it waits for a model or meets a tokenizer
        kept, dropped = trim_to_characters(parsed.messages, services.manager.context_length)
    except ChatError as exc:
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
    parsed = dataclasses.replace(parsed, messages=kept)
    run = ChatRun(services.manager, parsed.model, parsed.messages, parsed.sampling, holder="an API request")
    events = run.events()
    request.app[RUNS].add(run)
    try:
        if parsed.stream:
            return await _streamed(request, parsed, events, dropped)
        return await _whole(request, parsed, events, dropped)
    finally:
        # also reached when the client goes away (aiohttp cancels the handler): the lease goes back
        run.stop()
        await events.aclose()  # type: ignore[attr-defined]
        request.app[RUNS].discard(run)


async def _whole(request: web.Request, parsed: CompletionRequest, events: AsyncIterator[ChatEvent],
                 dropped_before: int) -> web.Response:  # fmt: skip
    event, dropped = await _first_answer_event(events, parsed.model)
    dropped += dropped_before
    texts: list[str] = []
    finished: Finished | None = None
    while event is not None:
        if isinstance(event, Token):
            texts.append(event.text)
        elif isinstance(event, Finished):
            finished = event
        event = await _next_event(events, parsed.model)
    answer = _Answer(parsed.model).completion("".join(texts), finished)
    _log_finished(request, parsed.model, finished)
    return web.json_response(answer, headers=_trim_headers(dropped))


async def _streamed(request: web.Request, parsed: CompletionRequest, events: AsyncIterator[ChatEvent],
                    dropped_before: int) -> web.StreamResponse:  # fmt: skip
    event, dropped = await _first_answer_event(events, parsed.model)
    dropped += dropped_before
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_trim_headers(dropped)}
    response = web.StreamResponse(headers=headers)
    try:
        await response.prepare(request)
        await _send_chunks(request, response, parsed, event, events)
    except ConnectionResetError:
        log.info("the client of a %s stream went away; stopped the generation", parsed.model)
    return response


async def _send_chunks(request: web.Request, response: web.StreamResponse, parsed: CompletionRequest,
                       event: ChatEvent | None, events: AsyncIterator[ChatEvent]) -> None:  # fmt: skip
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
    _log_finished(request, parsed.model, finished)


async def _send(response: web.StreamResponse, data: dict[str, Any]) -> None:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"data: {payload}\n\n".encode())


def _trim_headers(dropped: int) -> dict[str, str]:
    return {TRIMMED_HEADER: str(dropped)} if dropped else {}


def _log_finished(request: web.Request, model_id: str, finished: Finished | None) -> None:
    if finished is not None and finished.figures is not None:
        request[REQUEST_FIGURES] = finished.figures
        log.info("%s answered: %s", model_id, finished.figures.summary())


# --- the app and the server ----------------------------------------------------------------------


async def _stop_generations(app: web.Application) -> None:
    for run in list(app[RUNS]):
        run.stop()


def build_app(services: Services, limits: ServeLimits | None = None, api_key: str | None = None,
              outer: Sequence[Middleware] = ()) -> web.Application:  # fmt: skip
    """The API as an aiohttp application over ``services`` (registers nothing by itself); with ``api_key`` every
    route asks for it. ``outer`` middlewares wrap everything else: they see every answer's final status (the
    engine's request lines read REQUEST_MODEL, REQUEST_STREAM and REQUEST_FIGURES off the request)."""
    limits = limits or ServeLimits()
    middlewares = [*outer, answer_errors] if api_key is None else [*outer, answer_errors, require_key(api_key)]
    app = web.Application(middlewares=middlewares, client_max_size=limits.max_body_bytes)
    app[SERVICES] = services
    app[RUNS] = set()
    app[LIMITS] = limits
    app[WAITING] = WaitingRequests(limits.max_waiting)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)  # ids may hold a slash (org/name)
    app.router.add_post("/v1/chat/completions", chat_completions)
    from workbench.server.ollama import add_ollama_routes  # its modules read this module's app keys

    add_ollama_routes(app)
    app.on_shutdown.append(_stop_generations)
    return app


def base_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """``app`` listening on ``host:port``: its runner (``cleanup()`` closes it, stopping running generations
    first) and its base URL (the real port when ``port`` is 0). OSError when it cannot bind (nothing is left open)."""
    # a client that disconnects cancels its handler, which stops its generation
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, base_url(host, runner.addresses[0][1])


async def serve(
    services: Services, host: str = "127.0.0.1", port: int = 8000, ready: Callable[[str], None] | None = None,
    limits: ServeLimits | None = None, api_key: str | None = None,
) -> None:  # fmt: skip
    """Serve the API on ``host:port`` until cancelled; ``ready`` gets the base URL once listening (the real
    port when ``port`` is 0). On the way out: stop running generations and close the server; the services belong
    to whoever opened them (bootstrap.open_services), which registered the models and closes them.
    Beyond loopback an ``api_key`` is required (KeyRequiredError otherwise, before anything listens)."""
    if not api_key and not is_loopback(host):
        raise KeyRequiredError(f"serving on {host} needs an API key: anyone who reaches it could use the models")
    runner, url = await listen(build_app(services, limits, api_key or None), host, port)
    try:
        log.info("serving the OpenAI-compatible API at %s%s", url, " (API key required)" if api_key else "")
        if ready is not None:
            ready(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


__all__ = [
    "LIMITS",
    "REQUEST_FIGURES",
    "REQUEST_MODEL",
    "REQUEST_STREAM",
    "RUNS",
    "SERVICES",
    "SHUTDOWN_TIMEOUT_S",
    "TRIMMED_HEADER",
    "WAITING",
    "base_url",
    "build_app",
    "chat_model_ids",
    "listen",
    "serve",
]
