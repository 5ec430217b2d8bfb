"""Ollama's answers: ``POST /api/chat`` and ``POST /api/generate``, streamed as NDJSON (one object per line, the
last with ``done: true``, the reason and the timings in nanoseconds) or whole (``"stream": false``).

Each answer is a :class:`ChatRun` on the manager (prompt caches reused as in the app). A request without messages
(or with an empty prompt) loads the model, or unloads it with ``keep_alive: 0``, as Ollama does. After each answer
the request's ``keep_alive`` applies to the model (none given: the configured idle unload); a pinned model stays,
and the last line says so in ``note``. A failure before the first line is a plain HTTP error; after it, one
``{"error": "..."}`` line ends the stream (the ``ollama`` client raises ResponseError on it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from workbench.core.chat.model_sampling import chat_sampling
from workbench.core.chat.output import OutputRules, OutputRulesError, check_rules
from workbench.core.chat.run import ChatError, ChatEvent, ChatMessage, ChatRun, Finished, Token, trim_to_characters
from workbench.core.models.spec import ModelRole
from workbench.server.errors import ApiError, generation_error
from workbench.server.ndjson import NdjsonStream, PeerGone
from workbench.server.ollama import ollama_time
from workbench.server.ollama_requests import (
    Options,
    model_name,
    parse_format,
    parse_keep_alive,
    parse_messages,
    parse_options,
    read_body,
    resolve,
    stream_flag,
    text_field,
)
from workbench.server.openai_shared import (
    LIMITS,
    REQUEST_FIGURES,
    REQUEST_MODEL,
    REQUEST_STREAM,
    RUNS,
    SERVICES,
    WAITING,
    first_answer_event,
    next_event,
)

log = logging.getLogger(__name__)

NS = 1_000_000_000


@dataclass
class Asked:
    """One checked chat or generate request."""

    model: str
    kind: str  # "chat" or "generate"
    messages: list[ChatMessage]
    options: Options
    stream: bool
    keep_alive: float | None
    prompt: str | None = None  # a raw prompt (generate with raw: true)
    rules: OutputRules | None = None
    started: float = field(default_factory=time.monotonic)


def _app(request: web.Request) -> tuple[Any, Any, Any]:
    return request.app[SERVICES], request.app[LIMITS], request.app[WAITING]


async def chat(request: web.Request) -> web.StreamResponse:
    services, limits, waiting = _app(request)
    with waiting.admit():
        body = await read_body(request, limits.max_body_bytes)
        model_id = resolve(services.manager, model_name(body), ModelRole.CHAT)
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        messages = parse_messages(body.get("messages"))
        if body.get("tools"):
            raise ApiError(400, "tool calling is not supported: the workbench answers in text")
        if not messages:
            return await _load_or_unload(request, model_id, keep_alive, "chat")
        asked = Asked(model_id, "chat", messages, _options(services, body, model_id), stream_flag(body), keep_alive)
        asked.rules = _rules(body, asked.options)
        return await _answer(request, asked)


async def generate(request: web.Request) -> web.StreamResponse:
    services, limits, waiting = _app(request)
    with waiting.admit():
        body = await read_body(request, limits.max_body_bytes)
        model_id = resolve(services.manager, model_name(body), ModelRole.CHAT)
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        prompt, system = text_field(body, "prompt"), text_field(body, "system")
        if body.get("images"):
            raise ApiError(400, "images are not supported: the workbench's models read text only")
        if text_field(body, "suffix"):
            raise ApiError(400, "'suffix' (fill in the middle) is not supported")
        if not prompt:
            return await _load_or_unload(request, model_id, keep_alive, "generate")
        raw = body.get("raw", False)
        if not isinstance(raw, bool):
            raise ApiError(400, "'raw' must be true or false")
        messages = [ChatMessage("system", system)] if system else []
        messages.append(ChatMessage("user", prompt))
        asked = Asked(model_id, "generate", messages, _options(services, body, model_id), stream_flag(body),
                      keep_alive, prompt=prompt if raw else None)  # fmt: skip
        asked.rules = _rules(body, asked.options)
        return await _answer(request, asked)


def _options(services: Any, body: dict[str, Any], model_id: str) -> Options:
    # the request's options over the configured preset (if any), the model's generation_config, the built-in ones
    defaults = chat_sampling(services.settings, services.manager, model_id).settings
    return parse_options(body, defaults, services.manager.context_length)


def _rules(body: dict[str, Any], options: Options) -> OutputRules | None:
    """The output rules for ``format`` ("json" or a JSON schema) and ``options.stop``; 400 when they cannot apply."""
    wanted = parse_format(body.get("format"))
    try:
        rules = check_rules(stop=options.stop, json_schema=wanted if isinstance(wanted, dict) else None,
                            json_object=wanted is True)  # fmt: skip
    except OutputRulesError as exc:
        raise ApiError(400, str(exc)) from None
    return rules or None


# --- load and unload ---------------------------------------------------------------------------------


async def _load_or_unload(request: web.Request, model_id: str, keep_alive: float | None, kind: str) -> web.Response:
    manager = _app(request)[0].manager
    started = time.monotonic()
    if keep_alive == 0:
        note = await manager.keep_alive(model_id, 0)
        reason = "unload"
    else:
        try:
            await manager.load(model_id)
        except Exception as exc:
            raise generation_error(model_id, exc) from exc
        note = await manager.keep_alive(model_id, keep_alive)
        reason = "load"
    line = _piece(kind, model_id, "") | {"done": True, "done_reason": reason,
                                           "total_duration": int((time.monotonic() - started) * NS)}  # fmt: skip
    if note:
        line["note"] = note
    return web.json_response(line)


# --- answers -----------------------------------------------------------------------------------------


def _piece(kind: str, model_id: str, text: str) -> dict[str, Any]:
    base: dict[str, Any] = {"model": model_id, "created_at": ollama_time()}
    if kind == "chat":
        return base | {"message": {"role": "assistant", "content": text}, "done": False}
    return base | {"response": text, "done": False}


@dataclass(frozen=True)
class Timing:
    """When an answer's parts ended, on the monotonic clock: its first token arrived, its end arrived."""

    loaded_before: bool  # the model was loaded when the request came
    first_at: float
    end_at: float


def _final(asked: Asked, text: str, finished: Finished | None, timing: Timing, note: str) -> dict[str, Any]:
    """The last line. Its durations are measured times that add up within total_duration, as clients that compute
    speeds from them expect: the load (until the run started reading the prompt), the prompt's reading with the
    first token (the run's own time to first token), then the rest of the answer."""
    line = _piece(asked.kind, asked.model, text)
    figures = finished.figures if finished is not None else None
    prompt_s = figures.ttft_s if figures is not None else 0.0
    waited_s = timing.first_at - asked.started  # the load (if any), then the prompt's reading
    load_s = 0.0 if timing.loaded_before else max(0.0, waited_s - prompt_s)
    line |= {
        "done": True,
        "done_reason": "length" if finished and finished.finish_reason == "length" else "stop",
        "total_duration": _ns(time.monotonic() - asked.started),
        "load_duration": _ns(load_s),
    }
    if figures is not None:
        line |= {"prompt_eval_count": figures.prompt_tokens - figures.cached_tokens,  # as Ollama counts: a kept
                 "prompt_eval_duration": _ns(min(prompt_s, waited_s)),              # prompt cache served the rest
                 "eval_count": figures.generation_tokens,
                 "eval_duration": _ns(max(0.0, timing.end_at - timing.first_at))}  # fmt: skip
    if note:
        line["note"] = note
    return line


def _ns(seconds: float) -> int:
    return int(seconds * NS)


async def _answer(request: web.Request, asked: Asked) -> web.StreamResponse:
    services = _app(request)[0]
    manager = services.manager
    request[REQUEST_MODEL], request[REQUEST_STREAM] = asked.model, asked.stream
    context = min(asked.options.num_ctx or manager.context_length, manager.context_length)
    if asked.prompt is None:
        try:  # what surely cannot fit goes before it waits for a model or meets a tokenizer
            asked.messages, _dropped = trim_to_characters(asked.messages, context)
        except ChatError as exc:
            raise ApiError(400, str(exc)) from None
    loaded = manager.info(asked.model).resident
    run = ChatRun(manager, asked.model, asked.messages, asked.options.sampling, context_length=context,
                  holder="an Ollama API request", rules=asked.rules, prompt=asked.prompt)  # fmt: skip
    events = run.events()
    request.app[RUNS].add(run)
    note = ""
    try:
        first, _dropped = await first_answer_event(events, asked.model)
        first_at = end_at = time.monotonic()
        texts: list[str] = []
        finished: Finished | None = None

        async def collect(send: Callable[[str], Any] | None) -> None:
            nonlocal finished, end_at
            event = first
            while event is not None:
                if isinstance(event, Token):
                    texts.append(event.text)
                    if send is not None:
                        await send(event.text)
                elif isinstance(event, Finished):
                    finished, end_at = event, time.monotonic()
                event = await next_event(events, asked.model)

        def timing() -> Timing:
            return Timing(loaded_before=loaded, first_at=first_at, end_at=end_at)

        if not asked.stream:
            await collect(None)
            note = await _after(run, events, asked)
            if finished is not None and finished.figures is not None:
                request[REQUEST_FIGURES] = finished.figures
            return web.json_response(_final(asked, "".join(texts), finished, timing(), note))
        async with NdjsonStream(request, heartbeat_s=None) as stream:
            try:
                await collect(lambda text: stream.send(_piece(asked.kind, asked.model, text)))
                note = await _after(run, events, asked)
                if finished is not None and finished.figures is not None:
                    request[REQUEST_FIGURES] = finished.figures
                await stream.send(_final(asked, "", finished, timing(), note))
            except ApiError as exc:
                await stream.send({"error": exc.body["message"]})
            except PeerGone:
                log.info("the client of a %s stream went away; stopped the generation", asked.model)
        return stream.response
    finally:
        run.stop()
        await events.aclose()  # type: ignore[attr-defined]
        request.app[RUNS].discard(run)


async def _after(run: ChatRun, events: AsyncIterator[ChatEvent], asked: Asked) -> str:
    """Give the model back, then apply the request's keep_alive (0: unloads now unless another lease holds it)."""
    run.stop()
    await events.aclose()  # type: ignore[attr-defined]
    try:
        return await run.manager.keep_alive(asked.model, asked.keep_alive)
    except Exception as exc:  # the model went away meanwhile (deleted): the answer stands
        log.info("keep_alive for %s: %s", asked.model, exc)
        return ""


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/generate", generate)


__all__ = ["add_routes", "chat", "generate"]
