"""The workbench's database opened once, with one repository per domain as an attribute.

``Store(path)`` opens (and migrates) the SQLite file through :class:`~workbench.core.storage.db.Database`
and holds ``chats`` (conversations and messages), ``compare_runs``, ``votes``, ``downloads`` (the download
queue's jobs and files) and ``embedding_sets`` (corpora the Embeddings pane opened). All of them share the
one connection, so use a store from one thread only (the event loop's).

``Store(path, read_only=True)`` is a face's view of the engine's database: every read works as usual, a write raises
:class:`~workbench.core.storage.db.ReadOnlyDatabaseError` (the face sends it to the engine:
workbench/client/store.py), and the file is never migrated.
"""

from __future__ import annotations

from pathlib import Path

from workbench.core.storage.chats import Chats
from workbench.core.storage.compare_runs import CompareRuns
from workbench.core.storage.db import Database
from workbench.core.storage.download_jobs import DownloadJobs
from workbench.core.storage.embedding_sets import EmbeddingSets
from workbench.core.storage.votes import Votes


class Store:
    """The database and its repositories: what the user would miss (chats, compare runs and votes, the download
    queue, opened corpora)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.db = Database(path, read_only=read_only)
        self.chats = Chats(self.db)
        self.compare_runs = CompareRuns(self.db)
        self.votes = Votes(self.db)
        self.downloads = DownloadJobs(self.db)
        self.embedding_sets = EmbeddingSets(self.db)

    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def read_only(self) -> bool:
        return self.db.read_only

    def remember_embedding_set(self, path: Path, column: str | None, model_id: str, passages: int) -> None:
        """A corpus the Embeddings pane opened (the face's RemoteStore sends the same to the engine)."""
        self.embedding_sets.remember_embedding_set(str(path), column, model_id, passages)

    def close(self) -> None:
        self.db.close()
