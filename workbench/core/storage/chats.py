"""Chats in the database: conversations, their messages, answers a dead process left half written, and exports.

Every change to a message bumps its conversation's ``updated``, so the history lists the chat the user
touched last first. :meth:`Chats.recover_interrupted` marks answers still STREAMING when the app starts
(the process that wrote them died) as INCOMPLETE. A conversation exports as Markdown or JSON.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from workbench.core.chat.figures import format_figures
from workbench.core.storage.db import Database, as_stored, dumps_or_none

ROLES = ("system", "user", "assistant")


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    STREAMING = "streaming"
    STOPPED = "stopped"
    INCOMPLETE = "incomplete"
    ERROR = "error"


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: str  # "system" | "user" | "assistant"
    content: str
    status: MessageStatus
    error: str | None
    figures: dict[str, Any] | None
    created: float


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model_id: str | None
    system_prompt: str
    sampling: dict[str, Any]
    created: float
    updated: float
    message_count: int


_CONVERSATION_SELECT = """
    SELECT c.*, (SELECT COUNT(*) FROM messages AS m WHERE m.conversation_id = c.id) AS message_count
    FROM conversations AS c
"""


class Chats:
    """Conversations and their messages. Each write is one small statement plus the conversation's
    ``updated`` bump, committed before the method returns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- conversations ----------------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = "New chat",
        model_id: str | None = None,
        system_prompt: str = "",
        sampling: dict[str, Any] | None = None,
    ) -> Conversation:
        now = self._db.now()
        with self._db.write() as db:
            cursor = db.execute(
                "INSERT INTO conversations (title, model_id, system_prompt, sampling, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (title, model_id, system_prompt, json.dumps(sampling or {}), now, now),
            )
        sampling_stored = as_stored(sampling or {})
        return Conversation(cursor.lastrowid or 0, title, model_id, system_prompt, sampling_stored, now, now, 0)

    def list_conversations(self, search: str = "", limit: int = 500) -> list[Conversation]:
        """Most recently updated first; ``search`` matches any part of the title, ignoring case."""
        rows = self._db.execute(
            f"{_CONVERSATION_SELECT} WHERE instr(casefold(c.title), ?) > 0 ORDER BY c.updated DESC, c.id DESC LIMIT ?",
            (search.casefold(), limit),
        ).fetchall()
        return [_conversation(row) for row in rows]

    def get_conversation(self, conversation_id: int) -> Conversation | None:
        row = self._db.execute(f"{_CONVERSATION_SELECT} WHERE c.id = ?", (conversation_id,)).fetchone()
        return None if row is None else _conversation(row)

    def update_conversation(
        self,
        conversation_id: int,
        *,
        title: str | None = None,
        model_id: str | None = None,
        system_prompt: str | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        """Change the fields given (None leaves a field as it is) and bump ``updated``."""
        changes: dict[str, Any] = {"updated": self._db.now()}
        if title is not None:
            changes["title"] = title
        if model_id is not None:
            changes["model_id"] = model_id
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if sampling is not None:
            changes["sampling"] = json.dumps(sampling)
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._db.write() as db:
            cursor = db.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?", (*changes.values(), conversation_id)
            )
            if cursor.rowcount == 0:
                raise KeyError(f"no conversation with id {conversation_id}")

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        if not title.strip():
            raise ValueError("a chat's title cannot be blank")
        self.update_conversation(conversation_id, title=title.strip())

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete the conversation and, by ``ON DELETE CASCADE``, its messages."""
        with self._db.write() as db:
            if db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount == 0:
                raise KeyError(f"no conversation with id {conversation_id}")

    # --- messages -----------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        figures: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> StoredMessage:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        status = MessageStatus(status)
        now = self._db.now()
        with self._db.write() as db:
            _touch(db, conversation_id, now)
            cursor = db.execute(
                "INSERT INTO messages (conversation_id, role, content, status, error, figures, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, status.value, error, dumps_or_none(figures), now),
            )
        return StoredMessage(cursor.lastrowid or 0, conversation_id, role, content, status, error, as_stored(figures),
                             now)  # fmt: skip

    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: MessageStatus | None = None,
        error: str | None = None,
        figures: dict[str, Any] | None = None,
    ) -> None:
        """Change the fields given (None leaves a field as it is) and bump the conversation's ``updated``."""
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = content
        if status is not None:
            changes["status"] = MessageStatus(status).value
        if error is not None:
            changes["error"] = error
        if figures is not None:
            changes["figures"] = json.dumps(figures)
        with self._db.write() as db:
            _touch(db, _conversation_of(db, message_id), self._db.now())
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                db.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id))

    def delete_message(self, message_id: int) -> None:
        with self._db.write() as db:
            _touch(db, _conversation_of(db, message_id), self._db.now())
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def message(self, message_id: int) -> StoredMessage | None:
        row = self._db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _message(row)

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        rows = self._db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [_message(row) for row in rows]

    def recover_interrupted(self) -> int:
        """Mark answers left STREAMING by a process that died as INCOMPLETE; returns how many."""
        with self._db.write() as db:
            cursor = db.execute(
                "UPDATE messages SET status = ? WHERE status = ?",
                (MessageStatus.INCOMPLETE.value, MessageStatus.STREAMING.value),
            )
        return cursor.rowcount

    # --- export ---------------------------------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        conversation = self._require(conversation_id)
        date = datetime.fromtimestamp(conversation.created).strftime("%Y-%m-%d %H:%M")
        model = f"`{conversation.model_id}`" if conversation.model_id else "no model"
        blocks = [f"# {conversation.title}", f"Model: {model} · {date}"]
        if conversation.system_prompt.strip():
            quoted = "\n".join(f"> {line}".rstrip() for line in conversation.system_prompt.splitlines())
            blocks.append(f"**System prompt**\n\n{quoted}")
        for message in self.messages(conversation_id):
            blocks.append(f"## {_HEADINGS[message.role]}")
            if message.content:
                blocks.append(message.content)
            if note := _status_note(message):
                blocks.append(f"_({note})_")
            if line := format_figures(message.figures):
                blocks.append(f"_{line}_")
        return "\n\n".join(blocks) + "\n"

    def export_json(self, conversation_id: int) -> str:
        conversation = self._require(conversation_id)
        messages = [{**asdict(message), "status": message.status.value} for message in self.messages(conversation_id)]
        return json.dumps({"conversation": asdict(conversation), "messages": messages}, indent=2, ensure_ascii=False)

    def _require(self, conversation_id: int) -> Conversation:
        conversation = self.get_conversation(conversation_id)
        if conversation is None:
            raise KeyError(f"no conversation with id {conversation_id}")
        return conversation


_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def _status_note(message: StoredMessage) -> str:
    match message.status:
        case MessageStatus.STOPPED:
            return "stopped"
        case MessageStatus.INCOMPLETE:
            return "incomplete: the app stopped mid-answer"
        case MessageStatus.STREAMING:
            return "incomplete: still being written"
        case MessageStatus.ERROR:
            return f"error: {message.error or 'unknown'}"
    return ""


def _touch(db: sqlite3.Connection, conversation_id: int, now: float) -> None:
    if db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id)).rowcount == 0:
        raise KeyError(f"no conversation with id {conversation_id}")


def _conversation_of(db: sqlite3.Connection, message_id: int) -> int:
    row = db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise KeyError(f"no message with id {message_id}")
    return int(row[0])


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        model_id=row["model_id"],
        system_prompt=row["system_prompt"],
        sampling=json.loads(row["sampling"]),
        created=row["created"],
        updated=row["updated"],
        message_count=row["message_count"],
    )


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        status=MessageStatus(row["status"]),
        error=row["error"],
        figures=None if row["figures"] is None else json.loads(row["figures"]),
        created=row["created"],
    )
