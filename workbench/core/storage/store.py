"""The SQLite store for what the user would miss: chats, compare runs and votes, download jobs.

The database runs in WAL mode with ``synchronous=NORMAL`` and every write is its own committed
transaction, so a process that dies (even by SIGKILL) loses nothing it had already written. The
schema evolves through :data:`MIGRATIONS`, applied in order and recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.core.compare.run import Contender, MemoryPlan

ROLES = ("system", "user", "assistant")

# Append only: a released migration is never edited, a change is a new script at the end.
MIGRATIONS: list[str] = [
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
]

VOTE_OUTCOMES = ("a", "b", "tie", "both_bad")


@dataclass(frozen=True)
class EmbeddingSet:
    """A corpus the Embeddings pane opened: where it is, which column, and the model it was embedded with."""

    path: str
    column: str | None
    model_id: str
    passages: int
    opened: float


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


@dataclass(frozen=True)
class DownloadJob:
    id: int
    repo_id: str
    revision: str
    files: list[str]  # empty: the default selection (or ``include``, or all files)
    state: str
    priority: int  # higher first; equal priorities in the order they were queued
    error: str | None
    created: float
    updated: float
    include: list[str] = field(default_factory=list)  # glob patterns
    all_files: bool = False
    commit: str | None = None  # the commit the job pins once it has listed the repo
    message: str | None = None  # a note for people: why it is paused, what it is waiting for
    total_bytes: int | None = None
    done_bytes: int = 0
    resume_at: float | None = None  # paused by a rate limit: resumes by itself then (seconds since the epoch)


@dataclass(frozen=True)
class DownloadFile:
    """One file of a download job; ``hash_kind`` is ``sha256`` (LFS files) or ``git-sha1`` (the rest)."""

    job_id: int
    path: str
    size: int | None
    etag: str | None
    hash_kind: str | None
    expected_hash: str | None
    done_bytes: int = 0
    state: str = "pending"
    error: str | None = None


@dataclass(frozen=True)
class CompareRunRecord:
    """One stored compare run. Contenders are dicts (model_id, label, sampling, system_prompt); ``swapped``
    means blind mode showed contender B first, so a stored vote's "a" meant B."""

    id: int
    created: float
    prompt: str
    contender_a: dict[str, Any]
    contender_b: dict[str, Any]
    answer_a: str
    answer_b: str
    figures_a: dict[str, Any] | None
    figures_b: dict[str, Any] | None
    plan: str
    blind: bool
    swapped: bool
    error_a: str | None
    error_b: str | None


_COMPARE_COLUMNS = ("answer_a", "answer_b", "figures_a", "figures_b", "error_a", "error_b")
_JOB_COLUMNS = {
    "state": "state",
    "priority": "priority",
    "error": "error",
    "files": "files",
    "include": "include",
    "all_files": "all_files",
    "commit": "commit_sha",
    "message": "message",
    "total_bytes": "total_bytes",
    "done_bytes": "done_bytes",
    "resume_at": "resume_at",
}
_FILE_COLUMNS = ("size", "etag", "hash_kind", "expected_hash", "done_bytes", "state", "error")
_UNSET: Any = object()


class Store:
    """Chats in one SQLite file.

    Use a store from one thread only (the event loop's): the connection keeps sqlite3's default
    ``check_same_thread=True``. Each write is a single small statement plus the conversation's
    ``updated`` bump, committed before the method returns.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions are explicit
        self._db.row_factory = sqlite3.Row
        self._db.create_function("casefold", 1, str.casefold, deterministic=True)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._last_time = 0.0
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    # --- conversations ----------------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = "New chat",
        model_id: str | None = None,
        system_prompt: str = "",
        sampling: dict[str, Any] | None = None,
    ) -> Conversation:
        now = self._now()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO conversations (title, model_id, system_prompt, sampling, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (title, model_id, system_prompt, json.dumps(sampling or {}), now, now),
            )
        return Conversation(cursor.lastrowid or 0, title, model_id, system_prompt, _copy(sampling or {}), now, now, 0)

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
        changes: dict[str, Any] = {"updated": self._now()}
        if title is not None:
            changes["title"] = title
        if model_id is not None:
            changes["model_id"] = model_id
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if sampling is not None:
            changes["sampling"] = json.dumps(sampling)
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
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
        with self._write() as db:
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
        now = self._now()
        with self._write() as db:
            self._touch(db, conversation_id, now)
            cursor = db.execute(
                "INSERT INTO messages (conversation_id, role, content, status, error, figures, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, status.value, error, _dumps_or_none(figures), now),
            )
        return StoredMessage(cursor.lastrowid or 0, conversation_id, role, content, status, error, _copy(figures), now)

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
        with self._write() as db:
            self._touch(db, self._conversation_of(db, message_id), self._now())
            if changes:
                assignments = ", ".join(f"{column} = ?" for column in changes)
                db.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id))

    def delete_message(self, message_id: int) -> None:
        with self._write() as db:
            self._touch(db, self._conversation_of(db, message_id), self._now())
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        rows = self._db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [_message(row) for row in rows]

    def recover_interrupted(self) -> int:
        """Mark answers left STREAMING by a process that died as INCOMPLETE; returns how many."""
        with self._write() as db:
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
            if line := figures_line(message.figures):
                blocks.append(f"_{line}_")
        return "\n\n".join(blocks) + "\n"

    def export_json(self, conversation_id: int) -> str:
        conversation = self._require(conversation_id)
        messages = [{**asdict(message), "status": message.status.value} for message in self.messages(conversation_id)]
        return json.dumps({"conversation": asdict(conversation), "messages": messages}, indent=2, ensure_ascii=False)

    # --- download jobs --------------------------------------------------------------------------

    def add_download_job(
        self,
        repo_id: str,
        revision: str = "main",
        files: list[str] | None = None,
        include: list[str] | None = None,
        all_files: bool = False,
    ) -> DownloadJob:
        """A new job at the end of the queue, state ``queued``."""
        now = self._now()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO download_jobs (repo_id, revision, files, include, all_files, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo_id, revision, json.dumps(files or []), json.dumps(include or []), int(all_files), now, now),
            )
        return DownloadJob(cursor.lastrowid or 0, repo_id, revision, list(files or []), "queued", 0, None, now, now,
                           include=list(include or []), all_files=all_files)  # fmt: skip

    def download_jobs(self) -> list[DownloadJob]:
        """Every job, in queue order: higher priority first, then in the order they were queued."""
        rows = self._db.execute("SELECT * FROM download_jobs ORDER BY priority DESC, id").fetchall()
        return [_download_job(row) for row in rows]

    def get_download_job(self, job_id: int) -> DownloadJob | None:
        row = self._db.execute("SELECT * FROM download_jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _download_job(row)

    def update_download_job(
        self,
        job_id: int,
        *,
        state: str = _UNSET,
        priority: int = _UNSET,
        error: str | None = _UNSET,
        files: list[str] = _UNSET,
        include: list[str] = _UNSET,
        all_files: bool = _UNSET,
        commit: str | None = _UNSET,
        message: str | None = _UNSET,
        total_bytes: int | None = _UNSET,
        done_bytes: int = _UNSET,
        resume_at: float | None = _UNSET,
    ) -> None:
        """Change the fields given (None is a value here: it clears ``error``, ``message``, ``commit``)."""
        given = {"state": state, "priority": priority, "error": error, "files": files, "include": include,
                 "all_files": all_files, "commit": commit, "message": message, "total_bytes": total_bytes,
                 "done_bytes": done_bytes, "resume_at": resume_at}  # fmt: skip
        changes: dict[str, Any] = {}
        for name, value in given.items():
            if value is _UNSET:
                continue
            if name in ("files", "include"):
                value = json.dumps(value)
            elif name == "all_files":
                value = int(value)
            changes[_JOB_COLUMNS[name]] = value
        changes["updated"] = self._now()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
            cursor = db.execute(f"UPDATE download_jobs SET {assignments} WHERE id = ?", (*changes.values(), job_id))
            if cursor.rowcount == 0:
                raise KeyError(f"no download job with id {job_id}")

    def reorder_download_jobs(self, job_ids: list[int]) -> None:
        """Put the jobs in this order (first downloads first) by renumbering their priorities."""
        with self._write() as db:
            for index, job_id in enumerate(job_ids):
                db.execute("UPDATE download_jobs SET priority = ? WHERE id = ?", (len(job_ids) - index, job_id))

    def delete_download_job(self, job_id: int) -> None:
        """Forget a job and, by ``ON DELETE CASCADE``, its files (the files on disk stay)."""
        with self._write() as db:
            if db.execute("DELETE FROM download_jobs WHERE id = ?", (job_id,)).rowcount == 0:
                raise KeyError(f"no download job with id {job_id}")

    def set_download_files(self, job_id: int, files: list[DownloadFile]) -> None:
        """Replace the job's file rows (after it listed the repo)."""
        with self._write() as db:
            db.execute("DELETE FROM download_files WHERE job_id = ?", (job_id,))
            rows = [
                (job_id, f.path, f.size, f.etag, f.hash_kind, f.expected_hash, f.done_bytes, f.state, f.error, i)
                for i, f in enumerate(files)
            ]
            db.executemany(
                "INSERT INTO download_files (job_id, path, size, etag, hash_kind, expected_hash, done_bytes, state,"
                " error, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def download_files(self, job_id: int) -> list[DownloadFile]:
        rows = self._db.execute("SELECT * FROM download_files WHERE job_id = ? ORDER BY position", (job_id,))
        return [
            DownloadFile(
                job_id=row["job_id"],
                path=row["path"],
                size=row["size"],
                etag=row["etag"],
                hash_kind=row["hash_kind"],
                expected_hash=row["expected_hash"],
                done_bytes=row["done_bytes"],
                state=row["state"],
                error=row["error"],
            )
            for row in rows
        ]

    def update_download_file(self, job_id: int, path: str, **changes: Any) -> None:
        """Change the named columns of one file row: size, etag, hash_kind, expected_hash, done_bytes, state, error."""
        unknown = set(changes) - set(_FILE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown download file fields: {', '.join(sorted(unknown))}")
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
            cursor = db.execute(f"UPDATE download_files SET {assignments} WHERE job_id = ? AND path = ?",
                                (*changes.values(), job_id, path))  # fmt: skip
            if cursor.rowcount == 0:
                raise KeyError(f"no file {path!r} in download job {job_id}")

    # --- compare runs and votes ------------------------------------------------------------------------

    def add_compare_run(
        self,
        prompt: str,
        a: Contender | dict[str, Any],
        b: Contender | dict[str, Any],
        *,
        plan: MemoryPlan | str = "",
        blind: bool = False,
        swapped: bool = False,
    ) -> int:
        """A new run (answers empty until :meth:`update_compare_run`); returns its id. ``swapped``: blind mode
        shows contender B first (see :meth:`add_compare_vote`). A plan is stored by its kind ("together", ...)."""
        contenders = [json.dumps(c if isinstance(c, dict) else c.to_dict()) for c in (a, b)]
        plan_text = plan if isinstance(plan, str) else plan.kind.value
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO compare_runs (created, prompt, contender_a, contender_b, plan, blind, swapped)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._now(), prompt, *contenders, plan_text, int(blind), int(swapped)),
            )
        return cursor.lastrowid or 0

    def update_compare_run(
        self,
        run_id: int,
        *,
        answer_a: str = _UNSET,
        answer_b: str = _UNSET,
        figures_a: dict[str, Any] | None = _UNSET,
        figures_b: dict[str, Any] | None = _UNSET,
        error_a: str | None = _UNSET,
        error_b: str | None = _UNSET,
    ) -> None:
        """Change the fields given (None is a value: it clears figures or an error)."""
        given = dict(zip(_COMPARE_COLUMNS, (answer_a, answer_b, figures_a, figures_b, error_a, error_b), strict=True))
        changes = {
            column: _dumps_or_none(value) if column.startswith("figures") else value
            for column, value in given.items()
            if value is not _UNSET
        }
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
            cursor = db.execute(f"UPDATE compare_runs SET {assignments} WHERE id = ?", (*changes.values(), run_id))
            if cursor.rowcount == 0:
                raise KeyError(f"no compare run with id {run_id}")

    def add_compare_vote(self, run_id: int, outcome: str) -> int:
        """Record a vote as the user cast it: "a" is the side shown first, "b" the other, or "tie", "both_bad".
        :meth:`compare_votes` maps it back to the contenders when the run was shown swapped."""
        if outcome not in VOTE_OUTCOMES:
            raise ValueError(f"unknown vote {outcome!r}; expected one of {', '.join(VOTE_OUTCOMES)}")
        with self._write() as db:
            if db.execute("SELECT 1 FROM compare_runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise KeyError(f"no compare run with id {run_id}")
            cursor = db.execute(
                "INSERT INTO compare_votes (run_id, outcome, created) VALUES (?, ?, ?)", (run_id, outcome, self._now())
            )
        return cursor.lastrowid or 0

    def remember_embedding_set(self, path: str, column: str | None, model_id: str, passages: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO embedding_sets (path, column_name, model_id, passages, opened) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (path, column_name) DO UPDATE SET model_id = excluded.model_id,"
                " passages = excluded.passages, opened = excluded.opened",
                (path, column or "", model_id, passages, self._now()),
            )

    def embedding_sets(self, limit: int = 20) -> list[EmbeddingSet]:
        """The most recently opened first."""
        rows = self._db.execute("SELECT * FROM embedding_sets ORDER BY opened DESC LIMIT ?", (limit,))
        return [EmbeddingSet(path=row["path"], column=row["column_name"] or None, model_id=row["model_id"],
                             passages=row["passages"], opened=row["opened"]) for row in rows]  # fmt: skip

    def compare_votes(self) -> list[tuple[str, str, str]]:
        """Every vote in the order cast, as ``(label of A, label of B, outcome)`` where "a" means contender A."""
        rows = self._db.execute(
            "SELECT r.contender_a, r.contender_b, r.swapped, v.outcome FROM compare_votes AS v"
            " JOIN compare_runs AS r ON r.id = v.run_id ORDER BY v.id"
        )
        votes = []
        for row in rows:
            outcome = row["outcome"]
            if row["swapped"]:
                outcome = {"a": "b", "b": "a"}.get(outcome, outcome)
            votes.append((_label(json.loads(row["contender_a"])), _label(json.loads(row["contender_b"])), outcome))
        return votes

    def compare_runs(self, limit: int = 100) -> list[CompareRunRecord]:
        """The most recent runs first."""
        rows = self._db.execute("SELECT * FROM compare_runs ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        return [_compare_run(row) for row in rows]

    # --- internals ------------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; IMMEDIATE takes the write lock up front so it never has to upgrade."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        if self._version() == len(MIGRATIONS):
            return
        # Under the write lock, so a second process opening the same file waits and then finds it done.
        with self._write() as db:
            version = self._version()
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this workbench knows ({len(MIGRATIONS)})"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _now(self) -> float:
        # Strictly increasing, so two writes within one clock tick still order correctly.
        self._last_time = max(time.time(), self._last_time + 1e-6)
        return self._last_time

    @staticmethod
    def _touch(db: sqlite3.Connection, conversation_id: int, now: float) -> None:
        if db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id)).rowcount == 0:
            raise KeyError(f"no conversation with id {conversation_id}")

    @staticmethod
    def _conversation_of(db: sqlite3.Connection, message_id: int) -> int:
        row = db.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(f"no message with id {message_id}")
        return int(row[0])

    def _require(self, conversation_id: int) -> Conversation:
        conversation = self.get_conversation(conversation_id)
        if conversation is None:
            raise KeyError(f"no conversation with id {conversation_id}")
        return conversation


_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


def figures_line(figures: dict[str, Any] | None) -> str:
    """``12 tokens · 7.4 tok/s · first token 0.31 s · …`` from whichever figures are present."""
    if not figures:
        return ""
    formats = (
        ("generation_tokens", "{:.0f} tokens"),
        ("generation_tps", "{:.1f} tok/s"),
        ("ttft_s", "first token {:.2f} s"),
        ("prompt_tokens", "prompt {:.0f} tokens"),
        ("prompt_tps", "prompt {:.1f} tok/s"),
        ("peak_memory_gb", "peak memory {:.2f} GB"),
    )
    parts = []
    for key, template in formats:
        value = figures.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(template.format(value))
    return " · ".join(parts)


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


def _dumps_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _copy(value: Any) -> Any:
    """The value as reading it back from the store would give it (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))


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


def _download_job(row: sqlite3.Row) -> DownloadJob:
    return DownloadJob(
        id=row["id"],
        repo_id=row["repo_id"],
        revision=row["revision"],
        files=json.loads(row["files"]),
        state=row["state"],
        priority=row["priority"],
        error=row["error"],
        created=row["created"],
        updated=row["updated"],
        include=json.loads(row["include"]),
        all_files=bool(row["all_files"]),
        commit=row["commit_sha"],
        message=row["message"],
        total_bytes=row["total_bytes"],
        done_bytes=row["done_bytes"],
        resume_at=row["resume_at"],
    )


def _label(contender: dict[str, Any]) -> str:
    return str(contender.get("label") or contender.get("model_id") or "?")


def _compare_run(row: sqlite3.Row) -> CompareRunRecord:
    return CompareRunRecord(
        id=row["id"],
        created=row["created"],
        prompt=row["prompt"],
        contender_a=json.loads(row["contender_a"]),
        contender_b=json.loads(row["contender_b"]),
        answer_a=row["answer_a"],
        answer_b=row["answer_b"],
        figures_a=None if row["figures_a"] is None else json.loads(row["figures_a"]),
        figures_b=None if row["figures_b"] is None else json.loads(row["figures_b"]),
        plan=row["plan"],
        blind=bool(row["blind"]),
        swapped=bool(row["swapped"]),
        error_a=row["error_a"],
        error_b=row["error_b"],
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
