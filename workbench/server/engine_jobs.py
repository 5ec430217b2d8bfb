"""The engine's running work that is not a download: answers (generation) and embedding jobs, for ``ps`` and the
event stream. A route starts a job when its work starts and ends it when the work ends, however it ends."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

JobKind = Literal["generation", "embedding"]


@dataclass
class Job:
    kind: JobKind
    id: str
    what: str
    started_at: float
    progress: float | None = None  # 0..1 when known
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "what": self.what,
                "progress": None if self.progress is None else round(self.progress, 4),
                "started_at": self.started_at, **self.detail}  # fmt: skip


class JobBoard:
    """Jobs by id, in start order. ``on_change`` is called after every start, update and end (the event stream
    publishes the rows from it)."""

    def __init__(self, on_change: Callable[[], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._clock = clock
        self.on_change = on_change

    def start(self, kind: JobKind, what: str, **detail: Any) -> Job:
        job = Job(kind, f"{kind[:3]}-{next(self._ids)}", what, self._clock(), detail=detail)
        self._jobs[job.id] = job
        self._changed()
        return job

    def update(self, job: Job, progress: float | None = None, **detail: Any) -> None:
        if progress is not None:
            job.progress = min(1.0, max(0.0, progress))
        job.detail.update(detail)
        if job.id in self._jobs:
            self._changed()

    def end(self, job: Job) -> None:
        if self._jobs.pop(job.id, None) is not None:
            self._changed()

    @contextmanager
    def running(self, kind: JobKind, what: str, **detail: Any) -> Iterator[Job]:
        job = self.start(kind, what, **detail)
        try:
            yield job
        finally:
            self.end(job)

    def rows(self) -> list[dict[str, Any]]:
        return [job.row() for job in self._jobs.values()]

    def __len__(self) -> int:
        return len(self._jobs)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
