"""Reading the bodies of Ollama's API: the JSON object itself (bounded), model names, ``keep_alive`` durations,
``options`` over the configured sampling, messages, ``format`` and ``stop``. Anything it cannot take is an
:class:`ApiError` 400 (answered as Ollama's ``{"error": "..."}``) that names the field."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from workbench.core.chat.run import ChatMessage
from workbench.core.chat.sampling import SamplingSettings, validate_sampling
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.names import resolve_model_name
from workbench.core.models.spec import ModelRole
from workbench.server.bodies import read_bounded
from workbench.server.errors import ApiError
from workbench.server.limits import MB
from workbench.server.ollama_names import pulled_id

ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
# Ollama's option -> our sampling setting
SAMPLING_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "repeat_penalty": "repetition_penalty",
    "num_predict": "max_tokens",
}
MAX_NUM_CTX = 1 << 20
MAX_KEEP_ALIVE_S = 10 * 365 * 24 * 3600.0  # longer than this is "keep it"
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


async def read_body(request: web.Request, limit: int) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); 413 past ``limit`` bytes, 400 when not an object."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"the request body is larger than {limit / MB:g} MB")
    raw = await read_bounded(request, limit)
    if len(raw) > limit:
        raise ApiError(413, f"the request body is larger than {limit / MB:g} MB")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def model_name(body: dict[str, Any]) -> str:
    """The model a request names (``model``, or ``name`` as older clients send it)."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "'model' is required (a name /api/tags lists)")
    return name


def resolve(manager: ModelManager, name: str, role: ModelRole | None = None) -> str:
    """The registered id ``name`` means (of ``role``, when given); 404 in Ollama's words otherwise."""
    ids = [info.spec.id for info in manager.models()]
    model_id = resolve_model_name(name, ids)
    if model_id is None and (pulled := pulled_id(name)) is not None:  # the name a pull was asked with
        model_id = resolve_model_name(pulled, ids)
    if model_id is None:
        raise ApiError(404, f"model {name!r} not found, try pulling it first")
    if role is not None and manager.role_of(model_id) is not role:
        does = "does not support chat" if role is ModelRole.CHAT else "does not support embeddings"
        raise ApiError(400, f"{name!r} {does}")
    return model_id


def parse_keep_alive(value: object) -> float | None:
    """Seconds a model stays loaded once idle: None (not given: the configured idle unload), 0 (unload now),
    -1 (keep it loaded). Takes a number of seconds or a duration ("5m", "1h30m", "10s", "-1", "0")."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError(400, "'keep_alive' must be a duration such as \"5m\" or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 40:
        seconds = _duration(value.strip())
    else:
        raise ApiError(400, "'keep_alive' must be a duration such as \"5m\" or a number of seconds")
    if math.isnan(seconds):
        raise ApiError(400, "'keep_alive' must be a duration such as \"5m\" or a number of seconds")
    return -1.0 if seconds < 0 or seconds > MAX_KEEP_ALIVE_S else seconds


def _duration(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    try:
        return sign * float(body)  # a bare number: seconds
    except ValueError:
        pass
    parts = _DURATION.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ApiError(400, f'\'keep_alive\' {text!r} is not a duration (such as "5m", "1h30m", "-1" or "0")')
    return sign * sum(float(number) * _UNIT_S[unit] for number, unit in parts)


@dataclass(frozen=True)
class Options:
    sampling: SamplingSettings
    num_ctx: int | None
    stop: tuple[str, ...]


def parse_options(body: dict[str, Any], defaults: SamplingSettings, context_length: int) -> Options:
    """``options`` over ``defaults``; unknown options are ignored, as Ollama does (it only warns)."""
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ApiError(400, "'options' must be an object such as {\"temperature\": 0.2}")
    settings = defaults.to_dict()
    for option, setting in SAMPLING_OPTIONS.items():
        value = options.get(option)
        if value is None:
            continue
        if option == "num_predict" and isinstance(value, int) and not isinstance(value, bool) and value < 0:
            value = context_length  # -1: until the context is full, -2: fill it
        clean, problems = validate_sampling({setting: value})
        if problems:
            raise ApiError(400, f"options.{option}: {problems[0][1]}")
        settings.update(clean)
    num_ctx = options.get("num_ctx")
    if num_ctx is not None and (not isinstance(num_ctx, int) or isinstance(num_ctx, bool)
                                or not 1 <= num_ctx <= MAX_NUM_CTX):  # fmt: skip
        raise ApiError(400, f"options.num_ctx must be a whole number of tokens from 1 to {MAX_NUM_CTX}")
    return Options(SamplingSettings(**settings), num_ctx, _stop(options.get("stop")))


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ApiError(400, "options.stop must be a string or a list of strings")
    return tuple(s for s in value if s)


def parse_format(value: object) -> dict[str, Any] | bool | None:
    """``format``: None (free text), True ("json": any JSON object) or a JSON schema (an object)."""
    if value is None or value == "":
        return None
    if value == "json":
        return True
    if isinstance(value, dict):
        return value
    raise ApiError(400, "'format' must be \"json\" or a JSON schema (an object)")


def parse_messages(value: object) -> list[ChatMessage]:
    """Ollama's chat messages (text only; ``images`` and tool messages are refused)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, "'messages' must be a list of {role, content}")
    return [_message(item, i) for i, item in enumerate(value)]


def _message(item: object, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        raise ApiError(400, f"{where} must be an object with role and content")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise ApiError(400, f"{where}.role must be one of {', '.join(ROLES)} (tool calls are not supported)")
    if item.get("images"):
        raise ApiError(400, f"{where}: images are not supported: the workbench's models read text only")
    content = item.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ApiError(400, f"{where}.content must be a string")
    return ChatMessage(ROLES[role], content)


def text_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string")
    return value


def stream_flag(body: dict[str, Any]) -> bool:
    """``stream`` (Ollama streams unless told not to)."""
    value = body.get("stream", True)
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ApiError(400, "'stream' must be true or false")
    return value


__all__ = [
    "Options",
    "model_name",
    "parse_format",
    "parse_keep_alive",
    "parse_messages",
    "parse_options",
    "read_body",
    "resolve",
    "stream_flag",
    "text_field",
]
