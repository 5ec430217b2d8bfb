"""A chat completion request as the OpenAI API spells it, read into a :class:`CompletionRequest`: the model,
text messages (OpenAI's roles mapped onto ours), the sampling fields over the configured defaults, streaming, and
the output rules (``stop``: a string or a list; ``response_format``: ``{"type": "text"}``, ``{"type":
"json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``: decoding is then
constrained to that schema whether ``strict`` is true or not). A text completion request (``/v1/completions``)
is read into a :class:`TextCompletionRequest`: a ``prompt`` string in place of messages, the same other fields.
Anything it cannot take is an :class:`ApiError` 400 that names the field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workbench.core.chat.output import OutputRules, OutputRulesError, check_rules
from workbench.core.chat.run import ChatMessage
from workbench.core.chat.sampling import SamplingSettings, validate_sampling
from workbench.server.errors import ApiError

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


RESPONSE_FORMATS = ("text", "json_object", "json_schema")
MAX_MODEL_CHARS = 512
SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI accepts as a json_schema's name


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    messages: list[ChatMessage]
    sampling: SamplingSettings
    stream: bool
    include_usage: bool
    rules: OutputRules | None = None


@dataclass(frozen=True)
class TextCompletionRequest:
    model: str
    prompt: str
    sampling: SamplingSettings
    stream: bool
    include_usage: bool
    rules: OutputRules | None = None


def parse_request(body: object, defaults: SamplingSettings) -> CompletionRequest:
    """A chat completion request from its JSON body; unknown fields are ignored. Raises ApiError (400)."""
    body, model, stream, include_usage = _common(body)
    return CompletionRequest(model=model, messages=_messages(body.get("messages")),
                             sampling=_sampling(body, defaults), stream=stream, include_usage=include_usage,
                             rules=parse_output_rules(body))  # fmt: skip


def parse_text_request(body: object, defaults: SamplingSettings) -> TextCompletionRequest:
    """A text completion request (``/v1/completions``) from its JSON body; unknown fields are ignored, those that
    ask for what is not done here (echo, suffix, best_of, logprobs) are refused. Raises ApiError (400)."""
    body, model, stream, include_usage = _common(body)
    for field, harmless in (("echo", (None, False)), ("suffix", (None, "")), ("best_of", (None, 1)),
                            ("logprobs", (None, 0))):  # fmt: skip
        if body.get(field) not in harmless:
            raise ApiError(400, f"'{field}' is not supported here", param=field)
    return TextCompletionRequest(model=model, prompt=_prompt(body.get("prompt")),
                                 sampling=_sampling(body, defaults), stream=stream, include_usage=include_usage,
                                 rules=parse_output_rules(body))  # fmt: skip


def _common(body: object) -> tuple[dict[str, Any], str, bool, bool]:
    """The body as an object, its model, stream and stream_options.include_usage (either kind of request)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = checked_model(body.get("model"))
    if body.get("n") not in (None, 1):
        raise ApiError(400, "only n=1 is supported", param="n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return body, model, bool(stream), include_usage


def checked_model(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "'model' is required (a model id from GET /v1/models)", param="model")
    if len(value) > MAX_MODEL_CHARS:
        raise ApiError(400, f"'model' is longer than {MAX_MODEL_CHARS} characters: no model id is", param="model")
    return value


def _prompt(value: object) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # one prompt in a list, as some clients send it
    if not isinstance(value, str) or not value:
        raise ApiError(400, "'prompt' must be a non-empty string (one prompt; token ids are not taken)",
                       param="prompt")  # fmt: skip
    return value


# --- output rules ---------------------------------------------------------------------------------


def parse_output_rules(body: dict[str, Any]) -> OutputRules | None:
    """``stop`` and ``response_format`` as checked output rules (None when there are none)."""
    try:
        stops = check_rules(stop=body.get("stop")).stop
    except OutputRulesError as exc:
        raise ApiError(400, f"stop: {exc}", param="stop") from None
    json_schema, json_object = _response_format(body.get("response_format"))
    try:
        rules = check_rules(stop=stops, json_schema=json_schema, json_object=json_object)
    except OutputRulesError as exc:
        raise ApiError(400, f"response_format: {exc}", param="response_format") from None
    return rules or None


def _response_format(value: object) -> tuple[dict[str, Any] | None, bool]:
    """The JSON schema and whether any JSON object is asked for."""
    if value is None:
        return None, False
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in RESPONSE_FORMATS:
        raise ApiError(400, "'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                       "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}",
                       param="response_format")  # fmt: skip
    assert isinstance(value, dict)
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    described = value.get("json_schema")
    param = "response_format.json_schema"
    if not isinstance(described, dict):
        raise ApiError(400, f"'{param}' must be an object with a name and a schema", param=param)
    name = described.get("name")
    if name is not None and (not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name)):
        raise ApiError(400, f"'{param}.name' must be 1 to 64 letters, digits, '_' or '-'", param=f"{param}.name")
    if described.get("strict") not in (None, True, False):
        raise ApiError(400, f"'{param}.strict' must be true or false", param=f"{param}.strict")
    schema = described.get("schema")
    if schema is None:
        return None, True  # a schema-less json_schema asks for JSON, as OpenAI reads it
    if not isinstance(schema, dict):
        raise ApiError(400, f"'{param}.schema' must be a JSON schema (an object)", param=f"{param}.schema")
    return schema, False


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


__all__ = [
    "RESPONSE_FORMATS",
    "ROLES",
    "SAMPLING_FIELDS",
    "CompletionRequest",
    "TextCompletionRequest",
    "checked_model",
    "parse_output_rules",
    "parse_request",
    "parse_text_request",
]
