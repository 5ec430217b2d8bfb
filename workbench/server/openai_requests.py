"""A chat completion request as the OpenAI API spells it, read into a :class:`CompletionRequest`: the model,
text messages (OpenAI's roles mapped onto ours), the sampling fields over the configured defaults, streaming.
Anything it cannot take is an :class:`ApiError` 400 that names the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


__all__ = ["ROLES", "SAMPLING_FIELDS", "CompletionRequest", "parse_request"]
