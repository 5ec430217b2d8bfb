"""The OpenAI-compatible HTTP API over the shared model manager (the `workbench serve` command): its routes, the
aiohttp application and the server.

Routes: ``POST /v1/chat/completions`` (plain or streamed as server-sent events) here; ``GET /v1/models`` and
``GET /v1/models/{id}`` (every registered model with its role: :mod:`workbench.server.openai_models`, which also
reads a request's model name), ``POST /v1/embeddings`` (:mod:`workbench.server.openai_embeddings`), ``POST
/v1/completions`` (:mod:`workbench.server.openai_completions`). ``stop`` and ``response_format`` become the run's
output rules: with a JSON format, an answer whose finish_reason is "stop" parses (and validates against the
schema); one cut at "length" may not, as with OpenAI. Every answer is
a :class:`ChatRun` on the manager, so loading, eviction and the memory budget behave as in the app, and concurrent
streams of local models take turns on the inference thread.
The request is read by :mod:`workbench.server.openai_requests`; what is let in (body size, requests at once, the
API key, loopback) is :mod:`workbench.server.limits`; errors have OpenAI's shape (:mod:`workbench.server.errors`);
what the routes share is :mod:`workbench.server.openai_shared`; a run answered whole or streamed is
:mod:`workbench.server.openai_answers`.

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
import logging
from collections.abc import Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from workbench.bootstrap import Services
from workbench.core.chat.model_sampling import chat_sampling
from workbench.core.chat.run import ChatError, ChatRun, trim_to_characters
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.names import resolve_model_name
from workbench.core.models.spec import ModelRole
from workbench.server.errors import ApiError, answer_errors
from workbench.server.limits import KeyRequiredError, ServeLimits, WaitingRequests, is_loopback, require_key
from workbench.server.openai_answers import TRIMMED_HEADER, ChatShape, answer_run
from workbench.server.openai_completions import add_completion_routes
from workbench.server.openai_embeddings import add_embedding_routes
from workbench.server.openai_models import add_model_routes, resolve_model
from workbench.server.openai_requests import parse_request
from workbench.server.openai_shared import (
    LIMITS,
    REQUEST_FIGURES,
    REQUEST_MODEL,
    REQUEST_STREAM,
    RUNS,
    SERVICES,
    WAITING,
    body_model,
    read_json,
)

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0  # running generations are stopped first, so handlers end well before this


def chat_model_ids(manager: ModelManager) -> list[str]:
    return manager.ids(ModelRole.CHAT)


# --- chat completions ----------------------------------------------------------------------------


async def chat_completions(request: web.Request) -> web.StreamResponse:
    with request.app[WAITING].admit():  # before the body is read: a refused request costs no memory
        return await _answer(request)


async def _answer(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await read_json(request)  # the parsed body is not kept: only its messages
    # the request's fields over the configured preset (if any), the model's generation_config, the built-in ones
    name = body_model(body)
    guess = resolve_model_name(name, services.manager.ids(ModelRole.CHAT)) if name is not None else None
    parsed = parse_request(body, chat_sampling(services.settings, services.manager, guess).settings)
    request[REQUEST_MODEL], request[REQUEST_STREAM] = parsed.model, parsed.stream
    parsed = dataclasses.replace(parsed, model=resolve_model(services.manager, parsed.model, ModelRole.CHAT))
    request[REQUEST_MODEL] = parsed.model
    try:  # what surely cannot fit any context here goes now, before it waits for a model or meets a tokenizer
        kept, dropped = trim_to_characters(parsed.messages, services.manager.context_length)
    except ChatError as exc:
        raise ApiError(400, str(exc), param="messages", code="context_length_exceeded") from None
    run = ChatRun(services.manager, parsed.model, kept, parsed.sampling, holder="an API request", rules=parsed.rules)
    return await answer_run(request, run, ChatShape(parsed.model), parsed.stream, parsed.include_usage, dropped)


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
    add_model_routes(app)
    add_embedding_routes(app)
    add_completion_routes(app)
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
