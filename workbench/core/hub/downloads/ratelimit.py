"""Resuming rate-limited jobs: a job the hub told to wait longer than the queue waits in place is paused until its
``resume_at`` (wall clock, kept in the store, so it outlives the process); a timer on the loop resumes it then."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from workbench.core.hub.downloads.jobs import Job, JobState

log = logging.getLogger(__name__)


class ResumeTimers:
    """One timer per rate-limited job. It looks at the wall clock at least every ``check_s`` (a laptop may sleep
    meanwhile) and calls ``resume(job_id)`` once the time has come. ``may_arm(job)``: whether the queue runs the job
    now (not closing, not left out of this run). Use it on the loop."""

    def __init__(self, jobs: Mapping[int, Job], resume: Callable[[int], None], may_arm: Callable[[Job], bool],
                 wall_clock: Callable[[], float], check_s: float) -> None:  # fmt: skip
        self._jobs = jobs
        self._resume = resume
        self._may_arm = may_arm
        self._wall_clock = wall_clock
        self.check_s = check_s
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def arm(self, job: Job) -> None:
        """Look again at a rate-limited job when its time comes (at least every ``check_s``)."""
        self.cancel(job.id)
        if job.resume_at is None or not self._may_arm(job):
            return
        delay = min(max(0.0, job.resume_at - self._wall_clock()), self.check_s)
        self._timers[job.id] = asyncio.get_running_loop().call_later(delay, self._when_due, job.id)

    def cancel(self, job_id: int) -> None:
        if (handle := self._timers.pop(job_id, None)) is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _when_due(self, job_id: int) -> None:
        self._timers.pop(job_id, None)
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.PAUSED or job.resume_at is None:
            return
        if self._wall_clock() >= job.resume_at:
            log.info("download %s: the rate limit is over; resuming", job.repo_id)
            self._resume(job_id)
        else:
            self.arm(job)
