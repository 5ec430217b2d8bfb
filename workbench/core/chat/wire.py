"""A chat's records and an answer's events as JSON documents: what the engine's answer routes send
(workbench.server.engine_answers) and what a face's RemoteChatSession rebuilds (workbench.client.chat_session).

An answer's events are one document each, ``{"type": ...}``: ``waiting`` (what, "" once the wait is over),
``model_chosen`` (model), ``trimmed`` (dropped, prompt_tokens, window), ``reading`` (done, total, cached),
``token`` (text) and last ``ended`` (status, text, figures, error). Both sides use these functions, so they cannot
drift apart.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from workbench.core.chat.figures import GenerationFigures
from workbench.core.chat.run import ContextTrimmed, Reading, Token
from workbench.core.chat.session import AnswerEnded, ModelChosen, SessionEvent
from workbench.core.models.wait import Waiting
from workbench.core.storage.chats import Conversation, MessageStatus, StoredMessage


class WireError(ValueError):
    """A document that is not one of the answer's events (the engine and the face run different code)."""


def conversation_document(conversation: Conversation) -> dict[str, Any]:
    return asdict(conversation)


def conversation_from(document: dict[str, Any]) -> Conversation:
    return Conversation(**{key: document[key] for key in Conversation.__dataclass_fields__})


def message_document(message: StoredMessage) -> dict[str, Any]:
    return {**asdict(message), "status": str(message.status)}


def message_from(document: dict[str, Any]) -> StoredMessage:
    fields = {key: document[key] for key in StoredMessage.__dataclass_fields__}
    return StoredMessage(**{**fields, "status": MessageStatus(fields["status"])})


def ended_document(ended: AnswerEnded) -> dict[str, Any]:
    return {"type": "ended", "status": str(ended.status), "text": ended.text,
            "figures": ended.figures.to_dict() if ended.figures else None, "error": ended.error}  # fmt: skip


def stored_ended(message: StoredMessage) -> dict[str, Any]:
    """The ``ended`` document of an answer that is over, as the store has it."""
    figures = GenerationFigures.from_dict(message.figures) if message.figures else None
    return ended_document(AnswerEnded(message.status, message.content, figures, message.error))


def run_event_document(event: object) -> dict[str, Any] | None:
    """The document of what a run streams (a token, prompt reading, a trimmed prompt) — the Chat pane's answers and
    each Compare side alike; None for any other event."""
    if isinstance(event, Token):
        return {"type": "token", "text": event.text}
    if isinstance(event, Reading):
        return {"type": "reading", "done": event.done, "total": event.total, "cached": event.cached}
    if isinstance(event, ContextTrimmed):
        return {"type": "trimmed", "dropped": event.dropped, "prompt_tokens": event.prompt_tokens,
                "window": event.window}  # fmt: skip
    return None


def run_event_from(document: dict[str, Any]) -> Token | Reading | ContextTrimmed | None:
    """The run event a document stands for; None for another kind. Raises KeyError/TypeError/ValueError when it is
    malformed (the callers say which event)."""
    kind = document["type"]
    if kind == "token":
        return Token(str(document["text"]))
    if kind == "reading":
        return Reading(int(document["done"]), int(document["total"]), int(document["cached"]))
    if kind == "trimmed":
        return ContextTrimmed(int(document["dropped"]), int(document["prompt_tokens"]), int(document["window"]))
    return None


def event_document(event: SessionEvent) -> dict[str, Any]:
    if (document := run_event_document(event)) is not None:
        return document
    if isinstance(event, Waiting):
        return {"type": "waiting", "what": event.what}
    if isinstance(event, ModelChosen):
        return {"type": "model_chosen", "model": event.model_id}
    return ended_document(event)


def event_from(document: dict[str, Any]) -> SessionEvent:
    """The event a document stands for; WireError when it stands for none."""
    try:
        kind = document["type"]
        if (event := run_event_from(document)) is not None:
            return event
        if kind == "waiting":
            return Waiting(str(document["what"]))
        if kind == "model_chosen":
            return ModelChosen(str(document["model"]))
        if kind == "ended":
            figures = document.get("figures")
            return AnswerEnded(MessageStatus(document["status"]), str(document["text"]),
                               GenerationFigures.from_dict(figures) if figures else None,
                               document.get("error"))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"a malformed answer event: {type(exc).__name__}: {exc}") from None
    raise WireError(f"an unknown answer event: {str(kind)[:40]!r}")
