"""`workbench pull`: a face of the engine's download queue. It queues the repo in the engine (starting one when none
runs), follows the job's progress and waits to the end: its exit status says verified or failed. Killing it leaves
the job running in the engine; `workbench pull --cancel REPO` cancels it.

The face stays light: no services, no huggingface_hub; the engine does the work (workbench.server.engine_downloads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from workbench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    TerminalLine,
    attach_engine,
    bar_line,
)

if TYPE_CHECKING:
    from pathlib import Path

    from workbench.client.engine import EngineClient
    from workbench.core.settings.paths import AppPaths

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
POLL_S = 0.25  # how often the face asks the engine about its job
MAX_SILENT_POLLS = 6  # asks in a row that time out (each after the client's 5 s) before the face gives up
PREFIX = "workbench pull"
EXIT_STATUS_HELP = (
    "exit status: 0 every file is in the cache, verified (with --cancel: the download was cancelled); 1 the download "
    "failed, was cancelled or paused, or the engine stopped (the message says why; with --cancel: no unfinished "
    "download of REPO); 2 bad arguments; 130 interrupted (ctrl+c or SIGTERM): the download goes on in the engine"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = commands.add_parser(
        "pull",
        help="download a hub repo into the Hugging Face cache through the engine's queue (resumable)",
        description="Download REPO (org/name, optionally @revision) into the standard Hugging Face cache, verified, "
        "through the engine's download queue (an engine starts when none runs). It shows the progress and waits "
        "until the files are in the cache. Interrupting it (ctrl+c) leaves the download running in the engine; "
        "`workbench pull --cancel REPO` cancels it; running the same command again follows it (or resumes it after a "
        "failure). HF_ENDPOINT and HF_TOKEN of this shell are sent along: the engine uses them for this download "
        "only and keeps them in memory (a download resumed by a later engine uses that engine's environment).",
        epilog=EXIT_STATUS_HELP,
    )
    pull.set_defaults(handler=run_pull)
    pull.add_argument("repo", metavar="REPO[@REV]", nargs="?", help="e.g. mlx-community/Qwen2.5-0.5B-Instruct-4bit")
    choice = pull.add_mutually_exclusive_group()
    choice.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only files matching this glob (repeat for more); default: what an MLX model needs",
    )
    choice.add_argument("--all", action="store_true", help="every file of the repo")
    choice.add_argument(
        "--cancel",
        metavar="REPO[@REV]",
        help="cancel the engine's unfinished download of this repo (of that revision only, with @REV); its partial "
        "files are deleted, finished ones stay in the cache",
    )


def parse_repo(text: str) -> tuple[str, str | None] | str:
    """``(repo, revision or None)`` from ``org/name[@revision]``, or why it is not one."""
    from workbench.core.hub import names as hub_names

    repo_id, _, revision = text.partition("@")
    if not REPO_ID.fullmatch(repo_id) or "@" in revision or text.endswith("@"):
        return f"{text!r} is not a repo (org/name or org/name@revision)"
    try:
        hub_names.check_repo_id(repo_id)
        if revision:
            hub_names.check_revision(revision)  # it becomes refs/<revision> in the cache
    except hub_names.BadName as exc:
        return str(exc)
    return repo_id, revision or None


def run_pull(paths: AppPaths, args: argparse.Namespace) -> int:
    wanted = args.cancel if args.cancel is not None else args.repo
    if wanted is None or (args.cancel is not None and args.repo is not None):
        say("give one REPO to download, or --cancel REPO" if wanted is None else
            "give either REPO or --cancel REPO, not both")  # fmt: skip
        return EXIT_USAGE
    parsed = parse_repo(wanted)
    if isinstance(parsed, str):
        say(parsed)
        return EXIT_USAGE
    repo_id, revision = parsed
    with _sigterm_as_interrupt():  # until the face's loop takes both signals over
        try:
            socket = _engine(paths)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            say("interrupted; nothing was queued")
            return EXIT_INTERRUPTED
        if socket is None:
            return EXIT_ERROR
        from workbench.client.engine import EngineClient

        client = EngineClient(socket)
        if args.cancel is not None:
            return asyncio.run(cancel(client, repo_id, revision))
        face = PullFace(client, repo_id, revision, args.include, args.all, sys.stderr)
        return asyncio.run(face.run())


def say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def _engine(paths: AppPaths) -> Path | None:
    """The engine's socket, starting an engine when none answers; None (said why) when none can start."""
    try:
        return attach_engine(paths, tell=say)
    except CommandError as exc:
        say(str(exc))
        return None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def cancel(client: EngineClient, repo_id: str, revision: str | None) -> int:
    from workbench.client.engine import EngineRequestError

    try:
        cancelled = await client.cancel_downloads(repo_id, revision)
    except EngineRequestError as exc:
        say(str(exc))
        return EXIT_USAGE if exc.status == 400 else EXIT_ERROR
    if cancelled is None:
        say("the engine stopped before it answered")
        return EXIT_ERROR
    for row in cancelled:
        print(f"cancelled {row['repo']}@{row['revision']} (download job {row['id']})")
    return EXIT_OK


class PullFace:
    """Queue the repo in the engine, follow the job until it settles, say how it ended."""

    def __init__(self, client: EngineClient, repo_id: str, revision: str | None, include: list[str] | None,
                 all_files: bool, stream: TextIO) -> None:  # fmt: skip
        self.client = client
        self.repo_id = repo_id
        self.revision = revision
        self.include = include or None
        self.all_files = all_files
        self.line = ProgressLine(stream)
        self.interrupted = asyncio.Event()

    @property
    def name(self) -> str:
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.interrupted.set)
        try:
            return await self._run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _run(self) -> int:
        from workbench.client.engine import EngineRequestError

        try:
            row = await self.client.queue_download(
                self.repo_id, self.revision, self.include, all_files=self.all_files,
                endpoint=os.environ.get("HF_ENDPOINT") or None, token=os.environ.get("HF_TOKEN") or None,
            )  # fmt: skip
        except EngineRequestError as exc:
            sources = {"'endpoint'": " (this shell's HF_ENDPOINT)", "'token'": " (this shell's HF_TOKEN)"}
            source = next((text for key, text in sources.items() if key in str(exc)), "")
            say(f"the engine refused it: {exc}{source}")
            return EXIT_USAGE if exc.status == 400 else EXIT_ERROR
        silent = 0
        while True:
            if row is None:
                self.line.finish(None)
                say("the engine stopped; run the same command again to resume the download")
                return EXIT_ERROR
            self.line.show(row)
            if (ended := self.ended(row)) is not None:
                return ended
            if self.interrupted.is_set():
                self.line.finish(None)
                say(f"the download goes on in the engine; `workbench pull --cancel {self.name}` cancels it")
                return EXIT_INTERRUPTED
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.interrupted.wait(), POLL_S)
            try:
                row = await self.client.download(row["id"])
                silent = 0
            except EngineRequestError as exc:
                self.line.finish(None)
                say(f"{self.repo_id}: {exc}")  # e.g. forgotten in the TUI meanwhile
                return EXIT_ERROR
            except TimeoutError:  # a busy engine: asked again, a few times
                silent += 1
                if silent >= MAX_SILENT_POLLS:
                    self.line.finish(None)
                    say("the engine does not answer; the download may go on there (`workbench ps` shows it)")
                    return EXIT_ERROR

    def ended(self, row: dict[str, Any]) -> int | None:
        """The exit status once the job has settled (done, failed, cancelled, paused), having said how; else None."""
        state = row["state"]
        if state == "done":
            self.line.finish(row)
            print(row.get("snapshot") or "", flush=True)
            return EXIT_OK
        if state not in ("failed", "cancelled", "paused"):
            return None
        self.line.finish(row)
        if state == "failed":
            reason = row.get("error") or "the download failed"
        elif state == "cancelled":
            reason = "the download was cancelled"
        else:
            reason = row.get("message") or "the download is paused in the engine; run the same command to resume it"
        if state == "paused" and row.get("resume_at") is not None:  # a long Retry-After: not waited here
            from workbench.core.hub.downloads.jobs import clock_time

            reason = f"{reason}; run again after {clock_time(row['resume_at'], time.time())}"
        say(f"{self.repo_id}: {reason}")
        return EXIT_ERROR


class ProgressLine:
    """One line on stderr, redrawn in place on a terminal; elsewhere (logs, pipes) one line per state change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._line = TerminalLine(stream)
        self._last: tuple[str, str | None] | None = None
        self._drawn = False

    def show(self, row: dict[str, Any]) -> None:
        if self.tty:
            self._line.draw(render_progress(row, self._line.width()))
            self._drawn = True
            return
        state = (str(row["state"]), row.get("message"))
        if state != self._last:
            self._last = state
            note = f" ({row['message']})" if row.get("message") else ""
            print(f"{row['repo']}: {row['state']}{note}", file=self.stream, flush=True)

    def finish(self, row: dict[str, Any] | None) -> None:
        """The last look at the job (``row``; None: as it was last drawn), then the cursor on a new line."""
        if self.tty:
            if row is not None:
                self.show(row)
            if self._drawn:
                self._line.end()
                self._drawn = False


def render_progress(row: dict[str, Any], width: int = 80) -> str:
    """``repo [#####-----]  48%  12.3 MB/25.6 MB  3.4 MB/s  ETA 0:04  2/5 files  downloading`` from a job's row."""
    from workbench.core.models.memory import format_bytes

    done, total, state = row["done_bytes"], row.get("total_bytes"), row["state"]
    fraction = min(1.0, done / total) if total else (1.0 if state == "done" else None)
    tail = [f"{fraction:4.0%}" if fraction is not None else "   …"]
    if total is not None:
        tail.append(f"{format_bytes(done)}/{format_bytes(total)}")
    speed = row.get("speed_bps") or 0
    if state in ("downloading", "verifying") and speed > 0:
        tail.append(f"{format_bytes(speed)}/s")
        if row.get("eta_s") is not None:
            minutes, seconds = divmod(int(row["eta_s"]), 60)
            tail.append(f"ETA {minutes}:{seconds:02d}")
    if row.get("files_total"):
        tail.append(f"{row.get('files_done', 0)}/{row['files_total']} files")
    tail.append(row.get("message") or state)
    return bar_line(row["repo"], fraction or 0, "  ".join(tail), width)
