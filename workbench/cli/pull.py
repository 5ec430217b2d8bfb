"""`workbench pull`: a hub repo downloaded into the Hugging Face cache through the app's own queue."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import TYPE_CHECKING, TextIO

from workbench.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, TerminalLine, bar_line
from workbench.core.settings.paths import AppPaths

if TYPE_CHECKING:
    from workbench.core.hub.downloads.jobs import JobSnapshot

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = commands.add_parser(
        "pull",
        help="download a hub repo into the Hugging Face cache through the workbench's queue (resumable)",
        description="Download REPO (org/name, optionally @revision) into the standard Hugging Face cache, verified. "
        "Exit status 0 only when every file is in the cache; run it again after an interruption to resume. "
        "HF_ENDPOINT and HF_TOKEN are honoured.",
    )
    pull.set_defaults(handler=run_pull)
    pull.add_argument("repo", metavar="REPO[@REV]", help="e.g. mlx-community/Qwen2.5-0.5B-Instruct-4bit")
    choice = pull.add_mutually_exclusive_group()
    choice.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only files matching this glob (repeat for more); default: what an MLX model needs",
    )
    choice.add_argument("--all", action="store_true", help="every file of the repo")


def run_pull(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.hub import names as hub_names

    repo_id, _, revision = args.repo.partition("@")
    if not REPO_ID.fullmatch(repo_id) or "@" in revision or args.repo.endswith("@"):
        print(f"workbench pull: {args.repo!r} is not a repo (org/name or org/name@revision)", file=sys.stderr)
        return EXIT_USAGE
    try:
        hub_names.check_repo_id(repo_id)
        if revision:
            hub_names.check_revision(revision)  # it becomes refs/<revision> in the cache
    except hub_names.BadName as exc:
        print(f"workbench pull: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(pull(paths, repo_id, revision or "main", args.include or [], args.all))
    except KeyboardInterrupt:
        print("\nworkbench pull: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_ERROR


async def pull(paths: AppPaths, repo_id: str, revision: str, include: list[str], all_files: bool) -> int:
    """Queue the repo in the app's own queue (same store, same cache), run just that job, report."""
    import time

    from workbench.core.hub.downloads.jobs import JobState, clock_time
    from workbench.core.hub.downloads.queue import DownloadManager
    from workbench.core.storage.store import Store

    store = Store(paths.database_file)
    # HF_ENDPOINT is read here, as for the catalog, and handed over explicitly
    manager = DownloadManager(store, endpoint=os.environ.get("HF_ENDPOINT") or None)
    line = ProgressLine(sys.stderr)
    try:
        job = manager.enqueue(repo_id, revision, include=include or None, all_files=all_files)
        manager.subscribe(lambda snapshot: line.show(snapshot) if snapshot.id == job.id else None)
        await manager.start(only=[job.id])
        final = await manager.wait(job.id)
        line.finish(final)
        if final.state is JobState.DONE:
            print(manager.snapshot_path(job.id))
            return EXIT_OK
        reason = final.error or final.message or f"the download is {final.state}"
        if final.state is JobState.PAUSED and final.resume_at is not None:  # a long Retry-After: not waited here
            reason = f"{reason}; run again after {clock_time(final.resume_at, time.time())}"
        print(f"workbench pull: {repo_id}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        await manager.aclose()
        store.close()


class ProgressLine:
    """One line on stderr, redrawn in place on a terminal; elsewhere (logs, pipes) one line per state change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._line = TerminalLine(stream)
        self._last: tuple[str, str | None] | None = None

    def show(self, job: JobSnapshot) -> None:
        if self.tty:
            self._line.draw(render_progress(job, self._line.width()))
            return
        state = (str(job.state), job.message)
        if state != self._last:
            self._last = state
            note = f" ({job.message})" if job.message else ""
            print(f"{job.repo_id}: {job.state}{note}", file=self.stream, flush=True)

    def finish(self, job: JobSnapshot) -> None:
        if self.tty:
            self.show(job)
            self._line.end()


def render_progress(job: JobSnapshot, width: int = 80) -> str:
    """``repo [#####-----]  48%  12.3 MB/25.6 MB  3.4 MB/s  ETA 0:04  2/5 files  downloading``"""
    from workbench.core.models.memory import format_bytes

    fraction = job.fraction
    tail = [f"{fraction:4.0%}" if fraction is not None else "   …"]
    if job.total_bytes is not None:
        tail.append(f"{format_bytes(job.done_bytes)}/{format_bytes(job.total_bytes)}")
    if job.active and job.speed_bps > 0:
        tail.append(f"{format_bytes(job.speed_bps)}/s")
        if job.eta_s is not None:
            minutes, seconds = divmod(int(job.eta_s), 60)
            tail.append(f"ETA {minutes}:{seconds:02d}")
    if job.files_total:
        tail.append(f"{job.files_done}/{job.files_total} files")
    tail.append(job.message or str(job.state))
    return bar_line(job.repo_id, fraction or 0, "  ".join(tail), width)
