"""The history as a face sees it: the engine's SQLite file opened read-only for every read, and the writes a face makes
outside the model work sent to the engine (workbench/server/engine_store.py).

Reads stay as they are today and synchronous: ``remote.chats.list_conversations()``, ``remote.votes.compare_votes()``,
``remote.embedding_sets.embedding_sets()`` read the file directly (WAL: what the engine committed is there at once).
A write through those repositories raises ReadOnlyDatabaseError; the writes are the async methods below, named for the
call sites that switch to them when the TUI attaches:

- HistoryScreen: ``store.chats.rename_conversation(id, title)`` → ``await remote.rename_conversation(id, title)``;
  ``store.chats.delete_conversation(id)`` + ``forget_cache(chat_cache_key(id))`` → ``await
  remote.delete_conversation(id)`` (the engine forgets the saved prompt cache too)
- the Embeddings pane: ``store.embedding_sets.remember_embedding_set(path, column, model, n)`` → ``await
  remote.remember_embedding_set(path, column, model, n)`` (the path made absolute here, by the face)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.storage.store import Store

WRITE_TIMEOUT_S = 10.0


class StoreUnavailableError(RuntimeError):
    """No engine answers, so the change was not written (it is starting again, or was stopped)."""


class RemoteStore:
    """A read-only :class:`Store` on the engine's database, plus its writes through the engine. The repositories are
    the read-only store's (``chats``, ``compare_runs``, ``votes``, ``downloads``, ``embedding_sets``)."""

    def __init__(self, path: Path, client: EngineClient) -> None:
        self.local = Store(path, read_only=True)
        self.client = client
        self.chats = self.local.chats
        self.compare_runs = self.local.compare_runs
        self.votes = self.local.votes
        self.downloads = self.local.downloads
        self.embedding_sets = self.local.embedding_sets

    @property
    def path(self) -> Path:
        return self.local.path

    @property
    def read_only(self) -> bool:
        return True

    def close(self) -> None:
        self.local.close()

    # --- the writes, through the engine ----------------------------------------------------------

    async def rename_conversation(self, conversation_id: int, title: str) -> dict[str, Any]:
        """The renamed conversation's row (id, title, …). KeyError: no such conversation; ValueError: a title the
        engine refuses (blank, too long, a control character); StoreUnavailableError: no engine."""
        document = await self._write("POST", f"/v1/conversations/{_id(conversation_id)}/rename", {"title": title})
        conversation: dict[str, Any] = document["conversation"]
        return conversation

    async def delete_conversation(self, conversation_id: int) -> None:
        """Delete the conversation, its messages and its saved prompt cache. KeyError: no such conversation."""
        await self._write("DELETE", f"/v1/conversations/{_id(conversation_id)}")

    async def remember_embedding_set(self, path: str | Path, column: str | None, model_id: str, passages: int) -> None:
        """Remember a corpus the Embeddings pane opened (its path made absolute here: the engine's folder is not the
        face's)."""
        body = {"path": os.path.abspath(os.fspath(path)), "column": column, "model": model_id, "passages": passages}
        await self._write("POST", "/v1/embedding-sets", body)

    async def _write(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            document = await self.client.call_json(method, route, body, timeout_s=WRITE_TIMEOUT_S)
        except EngineRequestError as exc:
            if exc.status == 404:
                raise KeyError(str(exc)) from None
            if exc.status in (400, 413):
                raise ValueError(str(exc)) from None
            raise
        if document is None:
            raise StoreUnavailableError("no engine answers, so the change was not saved: it is starting again, or "
                                        "was stopped")  # fmt: skip
        return document


def _id(conversation_id: int) -> int:
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int) or conversation_id <= 0:
        raise KeyError(f"no conversation with id {conversation_id!r}")
    return conversation_id
