"""The corpora the Embeddings pane opened, in the database: where each is, which column, which model embedded it.

One row per corpus path and column; opening it again updates the row, so the pane reopens the latest.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.storage.db import Database


@dataclass(frozen=True)
class EmbeddingSet:
    """A corpus the Embeddings pane opened: where it is, which column, and the model it was embedded with."""

    path: str
    column: str | None
    model_id: str
    passages: int
    opened: float


class EmbeddingSets:
    """Corpora opened in the Embeddings pane; each write is committed before the method returns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def remember_embedding_set(self, path: str, column: str | None, model_id: str, passages: int) -> None:
        with self._db.write() as db:
            db.execute(
                "INSERT INTO embedding_sets (path, column_name, model_id, passages, opened) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (path, column_name) DO UPDATE SET model_id = excluded.model_id,"
                " passages = excluded.passages, opened = excluded.opened",
                (path, column or "", model_id, passages, self._db.now()),
            )

    def embedding_sets(self, limit: int = 20) -> list[EmbeddingSet]:
        """The most recently opened first."""
        rows = self._db.execute("SELECT * FROM embedding_sets ORDER BY opened DESC LIMIT ?", (limit,))
        return [EmbeddingSet(path=row["path"], column=row["column_name"] or None, model_id=row["model_id"],
                             passages=row["passages"], opened=row["opened"]) for row in rows]  # fmt: skip
