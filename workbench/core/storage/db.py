"""The one SQLite connection of the workbench's database and the one linear list of its migrations.

The database runs in WAL mode with ``synchronous=NORMAL`` and every write is its own committed
transaction (:meth:`Database.write`), so a process that dies (even by SIGKILL) loses nothing it had
already written. The schema evolves through :data:`MIGRATIONS`, applied in order and recorded in
``PRAGMA user_version``; every database an earlier workbench wrote opens and is brought up to date.

The engine is the one writer. A face opens the file read-only (``Database(path, read_only=True)``: SQLite's URI
``mode=ro``): it reads what the engine committed (WAL lets a reader see every committed write while the writer goes
on), never migrates, and a write through it raises :class:`ReadOnlyDatabaseError` before touching the file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Append only: a released migration is never edited, a change is a new script at the end.
MIGRATIONS: list[str] = [
    # 1: chats
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        model_id TEXT,
        system_prompt TEXT NOT NULL DEFAULT '',
        sampling TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX conversations_by_updated ON conversations (updated DESC, id DESC);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        figures TEXT,
        created REAL NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    """,
    # 2: the download queue (issue 5 grows it); the catalog hands repos to it
    """
    CREATE TABLE download_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo_id TEXT NOT NULL,
        revision TEXT NOT NULL DEFAULT 'main',
        files TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL DEFAULT 'queued',
        priority INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX download_jobs_by_state ON download_jobs (state, priority DESC, id);
    """,
    # 3: the download queue proper: selection by patterns, the commit a job pins, notes, and one row per file
    """
    ALTER TABLE download_jobs ADD COLUMN include TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE download_jobs ADD COLUMN all_files INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE download_jobs ADD COLUMN commit_sha TEXT;
    ALTER TABLE download_jobs ADD COLUMN message TEXT;
    ALTER TABLE download_jobs ADD COLUMN total_bytes INTEGER;
    ALTER TABLE download_jobs ADD COLUMN done_bytes INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE download_files (
        job_id INTEGER NOT NULL REFERENCES download_jobs (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER,
        etag TEXT,
        hash_kind TEXT,
        expected_hash TEXT,
        done_bytes INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        error TEXT,
        position INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, path)
    );
    """,
    # 4: the compare pane: one row per prompt put to two contenders, and the blind votes on them
    """
    CREATE TABLE compare_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created REAL NOT NULL,
        prompt TEXT NOT NULL,
        contender_a TEXT NOT NULL,
        contender_b TEXT NOT NULL,
        answer_a TEXT NOT NULL DEFAULT '',
        answer_b TEXT NOT NULL DEFAULT '',
        figures_a TEXT,
        figures_b TEXT,
        plan TEXT NOT NULL DEFAULT '',
        blind INTEGER NOT NULL DEFAULT 0,
        swapped INTEGER NOT NULL DEFAULT 0,
        error_a TEXT,
        error_b TEXT
    );
    CREATE INDEX compare_runs_by_created ON compare_runs (created DESC, id DESC);
    CREATE TABLE compare_votes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES compare_runs (id) ON DELETE CASCADE,
        outcome TEXT NOT NULL CHECK (outcome IN ('a', 'b', 'tie', 'both_bad')),
        created REAL NOT NULL
    );
    CREATE INDEX compare_votes_by_run ON compare_votes (run_id);
    """,
    # 5: the corpora the Embeddings pane opened
    """
    CREATE TABLE embedding_sets (
        path TEXT NOT NULL,
        column_name TEXT NOT NULL DEFAULT '',
        model_id TEXT NOT NULL,
        passages INTEGER NOT NULL DEFAULT 0,
        opened REAL NOT NULL,
        PRIMARY KEY (path, column_name)
    );
    """,
    # 6: a job the hub rate-limited for long waits, paused, until this time (seconds since the epoch)
    """
    ALTER TABLE download_jobs ADD COLUMN resume_at REAL;
    """,
    # 7: a compare run's plan as a code, not display text: versions 4 to 6 wrote "one after the other"
    """
    UPDATE compare_runs SET plan = 'sequential' WHERE plan = 'one after the other';
    """,
]


class ReadOnlyDatabaseError(RuntimeError):
    """A write through a database opened read-only (a face's view: the engine writes)."""


class DatabaseUnavailableError(RuntimeError):
    """A read-only open found no database it can read: the file is missing, or its schema is not this code's."""


READ_BUSY_TIMEOUT_S = 5.0  # a reader waits this long at most when the writer holds the WAL index briefly


class Database:
    """The connection to one SQLite file, migrated to the newest schema when opened (``read_only``: neither migrated
    nor written, see the module's docstring).

    Use it from one thread only (the event loop's): the connection keeps sqlite3's default
    ``check_same_thread=True``. Reads go through :meth:`execute`; each write is one :meth:`write` block,
    committed before the block ends.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if read_only:
            self._connection = _open_read_only(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions are explicit
        self._connection.row_factory = sqlite3.Row
        self._connection.create_function("casefold", 1, str.casefold, deterministic=True)
        self._last_time = 0.0
        try:
            if read_only:
                self._connection.execute("PRAGMA query_only = ON")
                self._check_schema()
                return
            self._connection.execute("PRAGMA journal_mode = WAL")
            self._connection.execute("PRAGMA synchronous = NORMAL")
            self._connection.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._connection.close()
            raise

    def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """A read (or a pragma) outside any write transaction."""
        return self._connection.execute(sql, parameters)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; IMMEDIATE takes the write lock up front so it never has to upgrade."""
        if self.read_only:
            raise ReadOnlyDatabaseError(f"{self.path} is open read-only here: the engine writes the history "
                                        "(send the change to the engine)")  # fmt: skip
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def now(self) -> float:
        """Seconds since the epoch, strictly increasing, so two writes within one clock tick still order correctly."""
        self._last_time = max(time.time(), self._last_time + 1e-6)
        return self._last_time

    def version(self) -> int:
        return int(self._connection.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the connection; every write is already committed, and the last close folds the WAL back in."""
        self._connection.close()

    def _check_schema(self) -> None:
        version, known = self.version(), len(MIGRATIONS)
        if version < known:
            raise DatabaseUnavailableError(f"{self.path} has schema version {version}, older than this workbench's "
                                           f"({known}): the engine brings it up to date when it starts")  # fmt: skip
        if version > known:
            raise DatabaseUnavailableError(f"{self.path} has schema version {version}, newer than this workbench "
                                           f"knows ({known})")  # fmt: skip

    def _migrate(self) -> None:
        if self.version() == len(MIGRATIONS):
            return
        # Under the write lock, so a second process opening the same file waits and then finds it done.
        with self.write() as db:
            version = self.version()
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this workbench knows ({len(MIGRATIONS)})"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")


def _open_read_only(path: Path) -> sqlite3.Connection:
    """``path`` through SQLite's URI ``mode=ro``: the file is never created or written. In WAL mode the reader still
    shares the writer's ``-shm`` index and reads its ``-wal`` (SQLite makes both when the writer left none)."""
    if not path.is_file():
        raise DatabaseUnavailableError(f"{path} does not exist yet: the engine makes it when it starts")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=READ_BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(f"{path} cannot be opened for reading: {exc}") from exc
    try:
        connection.execute("PRAGMA schema_version").fetchone()  # opening is lazy: read once to know it opens
    except sqlite3.Error as exc:
        connection.close()
        raise DatabaseUnavailableError(f"{path} cannot be opened for reading: {exc}") from exc
    return connection


def _statements(script: str) -> Iterator[str]:
    """The statements of a SQL script, one at a time (``execute`` runs one; ``executescript`` would commit)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


# --- helpers the repositories share -------------------------------------------------------------------

UNSET: Any = object()  # "leave this column as it is", where None is a value that clears it


def dumps_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def as_stored(value: Any) -> Any:
    """The value as reading it back from the database would give it (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))
