"""The workbench's database opened once, with one repository per domain as an attribute.

``Store(path)`` opens (and migrates) the SQLite file through :class:`~workbench.core.storage.db.Database`
and holds ``chats`` (conversations and messages), ``compare_runs``, ``votes``, ``downloads`` (the download
queue's jobs and files) and ``embedding_sets`` (corpora the Embeddings pane opened). All of them share the
one connection, so use a store from one thread only (the event loop's).
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

    def __init__(self, path: Path) -> None:
        self.db = Database(path)
        self.chats = Chats(self.db)
        self.compare_runs = CompareRuns(self.db)
        self.votes = Votes(self.db)
        self.downloads = DownloadJobs(self.db)
        self.embedding_sets = EmbeddingSets(self.db)

    @property
    def path(self) -> Path:
        return self.db.path

    def close(self) -> None:
        self.db.close()
