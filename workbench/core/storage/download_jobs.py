"""The download queue in the database: one row per job (in queue order) and one per file it fetches.

The download manager mirrors every change of a job's state and progress here, so a queue survives the
app: queued, paused and half-done jobs come back as they were when it reopens.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from workbench.core.storage.db import UNSET, Database


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


class DownloadJobs:
    """Download jobs and their files; each write is committed before the method returns."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_download_job(
        self,
        repo_id: str,
        revision: str = "main",
        files: list[str] | None = None,
        include: list[str] | None = None,
        all_files: bool = False,
    ) -> DownloadJob:
        """A new job at the end of the queue, state ``queued``."""
        now = self._db.now()
        with self._db.write() as db:
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
        state: str = UNSET,
        priority: int = UNSET,
        error: str | None = UNSET,
        files: list[str] = UNSET,
        include: list[str] = UNSET,
        all_files: bool = UNSET,
        commit: str | None = UNSET,
        message: str | None = UNSET,
        total_bytes: int | None = UNSET,
        done_bytes: int = UNSET,
        resume_at: float | None = UNSET,
    ) -> None:
        """Change the fields given (None is a value here: it clears ``error``, ``message``, ``commit``)."""
        given = {"state": state, "priority": priority, "error": error, "files": files, "include": include,
                 "all_files": all_files, "commit": commit, "message": message, "total_bytes": total_bytes,
                 "done_bytes": done_bytes, "resume_at": resume_at}  # fmt: skip
        changes: dict[str, Any] = {}
        for name, value in given.items():
            if value is UNSET:
                continue
            if name in ("files", "include"):
                value = json.dumps(value)
            elif name == "all_files":
                value = int(value)
            changes[_JOB_COLUMNS[name]] = value
        changes["updated"] = self._db.now()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._db.write() as db:
            cursor = db.execute(f"UPDATE download_jobs SET {assignments} WHERE id = ?", (*changes.values(), job_id))
            if cursor.rowcount == 0:
                raise KeyError(f"no download job with id {job_id}")

    def reorder_download_jobs(self, job_ids: list[int]) -> None:
        """Put the jobs in this order (first downloads first) by renumbering their priorities."""
        with self._db.write() as db:
            for index, job_id in enumerate(job_ids):
                db.execute("UPDATE download_jobs SET priority = ? WHERE id = ?", (len(job_ids) - index, job_id))

    def delete_download_job(self, job_id: int) -> None:
        """Forget a job and, by ``ON DELETE CASCADE``, its files (the files on disk stay)."""
        with self._db.write() as db:
            if db.execute("DELETE FROM download_jobs WHERE id = ?", (job_id,)).rowcount == 0:
                raise KeyError(f"no download job with id {job_id}")

    # --- files ----------------------------------------------------------------------------------------

    def set_download_files(self, job_id: int, files: list[DownloadFile]) -> None:
        """Replace the job's file rows (after it listed the repo)."""
        with self._db.write() as db:
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
        with self._db.write() as db:
            cursor = db.execute(f"UPDATE download_files SET {assignments} WHERE job_id = ? AND path = ?",
                                (*changes.values(), job_id, path))  # fmt: skip
            if cursor.rowcount == 0:
                raise KeyError(f"no file {path!r} in download job {job_id}")


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
