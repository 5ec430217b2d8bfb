"""What a download job is: its states, the in-memory records of a job and its files (mirrors of the store's rows),
and the snapshots that listeners and callers see."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from workbench.core.hub import names as hub_names
from workbench.core.hub.downloads.progress import Meter
from workbench.core.storage.download_jobs import DownloadFile, DownloadJob


class JobState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FileState(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"


SHA256, GIT_SHA1 = "sha256", "git-sha1"  # what a file's listed hash is (JobFile.hash_kind)

ACTIVE = frozenset({JobState.DOWNLOADING, JobState.VERIFYING})
# Nothing more happens to a job in these states until someone acts on it.
SETTLED = frozenset({JobState.PAUSED, JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class DownloadFailure(Exception):
    """A job cannot go on; the message says why, for people."""


@dataclass(frozen=True)
class HubAccess:
    """The hub a job talks to and the token it sends there, when whoever queued it said so (a face's own
    ``HF_ENDPOINT`` / ``HF_TOKEN``, sent with its request to the engine); None fields fall back to the queue's own
    endpoint and huggingface_hub's token (the queue's process environment or login).

    Kept in memory only, on the live :class:`Job`: never written to the store, never shown by ``repr`` or in logs.
    So after a restart a resumed job falls back to the new process's own endpoint and token."""

    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FileProgress:
    path: str
    size: int | None
    done_bytes: int
    state: FileState
    error: str | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """What a job looks like right now; ``files`` are the repo paths it fetches (once listed, all of them)."""

    id: int
    repo_id: str
    revision: str
    state: JobState
    position: int  # 0: first in the queue order
    files: list[str]
    include: list[str]
    all_files: bool
    commit: str | None
    error: str | None  # why it failed, in words
    message: str | None  # a note: why it is paused, what it is retrying
    file_progress: list[FileProgress]
    done_bytes: int
    total_bytes: int | None  # None until the repo is listed
    speed_bps: float  # over the last few seconds
    eta_s: float | None
    created: float
    updated: float
    resume_at: float | None = None  # rate limited: it resumes by itself then (seconds since the epoch)

    @property
    def files_total(self) -> int:
        return len(self.file_progress) or len(self.files)

    @property
    def files_done(self) -> int:
        return sum(1 for f in self.file_progress if f.state is FileState.DONE)

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return 1.0 if self.state is JobState.DONE else None
        return min(1.0, self.done_bytes / self.total_bytes)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


@dataclass
class JobFile:
    """One file of a job, as the queue tracks it (the store's DownloadFile row, live)."""

    path: str
    size: int | None
    etag: str | None = None
    hash_kind: str | None = None
    expected_hash: str | None = None
    done_bytes: int = 0
    state: FileState = FileState.PENDING
    error: str | None = None

    @classmethod
    def from_record(cls, record: DownloadFile) -> JobFile:
        try:
            state = FileState(record.state)
        except ValueError:
            state = FileState.PENDING
        return cls(record.path, record.size, record.etag, record.hash_kind, record.expected_hash, record.done_bytes,
                   state, record.error)  # fmt: skip

    def record(self, job_id: int) -> DownloadFile:
        return DownloadFile(job_id, self.path, self.size, self.etag, self.hash_kind, self.expected_hash,
                            self.done_bytes, self.state.value, self.error)  # fmt: skip

    def name_problem(self) -> str | None:
        """Why the hub's names for this file must not touch the cache (its name, ETag or listed hash), or None."""
        try:
            hub_names.check_file_name(self.path)
            if self.etag is not None:
                hub_names.check_etag(self.etag, "listed hash", self.path)
            if self.expected_hash is not None:
                hub_names.check_etag(self.expected_hash, "listed hash", self.path)
        except hub_names.BadName as exc:
            return f"refused: {exc}"
        return None

    def shown_bytes(self) -> int:
        """Bytes to show as done: a finished file counts whole."""
        return (self.size or self.done_bytes) if self.state is FileState.DONE else self.done_bytes


@dataclass
class Job:
    """One job, as the queue tracks it (the store's DownloadJob row, live, with its files and its speed)."""

    id: int
    repo_id: str
    revision: str
    requested: list[str]
    include: list[str]
    all_files: bool
    state: JobState
    priority: int
    error: str | None
    message: str | None
    commit: str | None
    total_bytes: int | None
    created: float
    updated: float
    files: list[JobFile] = field(default_factory=list)
    transferred: int = 0  # bytes received since it last started (for the speed)
    meter: Meter = field(default_factory=Meter)
    resume_at: float | None = None
    hub: HubAccess | None = field(default=None, repr=False)  # in memory only (see HubAccess)

    @classmethod
    def from_record(cls, record: DownloadJob, files: list[DownloadFile]) -> Job:
        try:
            state = JobState(record.state)
        except ValueError:
            state = JobState.QUEUED
        return cls(
            id=record.id,
            repo_id=record.repo_id,
            revision=record.revision,
            requested=list(record.files),
            include=list(record.include),
            all_files=record.all_files,
            state=state,
            priority=record.priority,
            error=record.error,
            message=record.message,
            resume_at=record.resume_at,
            commit=record.commit,
            total_bytes=record.total_bytes,
            created=record.created,
            updated=record.updated,
            files=[JobFile.from_record(f) for f in files],
        )

    def endpoint(self, default: str | None) -> str | None:
        """The hub this job talks to: the one it was queued with, else ``default`` (the queue's)."""
        return self.hub.endpoint if self.hub is not None and self.hub.endpoint else default

    @property
    def token(self) -> str | None:
        """The token it was queued with; None: huggingface_hub's own (environment or login)."""
        return self.hub.token if self.hub is not None else None

    def remaining_bytes(self) -> int:
        return sum(max(0, (f.size or 0) - f.done_bytes) for f in self.files if f.state is not FileState.DONE)

    def snapshot(self, position: int, clock: Callable[[], float]) -> JobSnapshot:
        """The job now, at ``position`` in the queue order; ``clock`` times the speed (read only while active)."""
        progress = [FileProgress(f.path, f.size, f.shown_bytes(), f.state, f.error) for f in self.files]
        total = sum(f.size or 0 for f in self.files) if self.files else self.total_bytes
        done = sum(p.done_bytes for p in progress)
        speed = self.meter.rate(clock(), self.transferred) if self.state in ACTIVE else 0.0
        eta = (total - done) / speed if speed > 0 and total is not None else None
        return JobSnapshot(
            id=self.id,
            repo_id=self.repo_id,
            revision=self.revision,
            state=self.state,
            position=position,
            files=[f.path for f in self.files] if self.files else list(self.requested),
            include=list(self.include),
            all_files=self.all_files,
            commit=self.commit,
            error=self.error,
            message=self.message,
            file_progress=progress,
            done_bytes=done,
            total_bytes=total,
            speed_bps=speed,
            eta_s=eta,
            created=self.created,
            updated=self.updated,
            resume_at=self.resume_at,
        )


def clock_time(when: float, now: float) -> str:
    """``14:05`` (local time, rounded up to the minute), with ``tomorrow`` or the date when it is not today."""
    from datetime import datetime

    moment = datetime.fromtimestamp(math.ceil(when / 60) * 60)
    days = (moment.date() - datetime.fromtimestamp(now).date()).days
    text = moment.strftime("%H:%M")
    if days == 1:
        return f"{text} tomorrow"
    return text if days == 0 else f"{text} on {moment:%Y-%m-%d}"
