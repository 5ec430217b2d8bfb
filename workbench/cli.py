"""The `workbench` command: the TUI by default, subcommands for scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from workbench.commands import embed, generate, models, serve
from workbench.commands.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Handler,
    TerminalLine,
    UsageError,
    bar_line,
)
from workbench.core.paths import AppPaths

if TYPE_CHECKING:
    from workbench.core.downloads import JobSnapshot

log = logging.getLogger(__name__)
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


class QuietFileHandler(logging.FileHandler):
    """The log file. A record that cannot be written (a full disk, a vanished folder) is dropped: logging's default
    prints "--- Logging error ---" and a traceback on stderr, over the TUI or into a script's output."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def setup_logging(paths: AppPaths) -> None:
    """Everything goes to the log file; the screen is for people. Without a writable log folder, one line says so
    and the workbench goes on without a log."""
    handler: logging.Handler
    try:
        paths.log_dir.mkdir(parents=True, exist_ok=True)
        handler = QuietFileHandler(paths.log_file, encoding="utf-8")
    except OSError as exc:
        print(f"workbench: cannot write the log file {paths.log_file} ({exc.strerror or exc}); going on without it",
              file=sys.stderr)  # fmt: skip
        handler = logging.NullHandler()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[handler])  # fmt: skip


def run_tui(paths: AppPaths) -> int:
    from workbench.core.services import build_services
    from workbench.ui.app import WorkbenchApp

    WorkbenchApp(build_services(paths)).run()
    return EXIT_OK


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def import_destination(models_dir: Path, name: str) -> Path:
    """The folder of an imported model called ``name``: a plain name inside the models folder, never a path
    (``--force`` deletes what is there). Raises UsageError for anything else."""
    if not MODEL_NAME.fullmatch(name) or ".." in name:
        raise UsageError(f"--name {name!r}: a model name is letters, digits and . _ + - (up to 128, no '..', "
                         "no path), e.g. SmolLM2-135M-4bit")  # fmt: skip
    dest = models_dir / name
    if dest.is_symlink() or dest.resolve().parent != models_dir.resolve():
        raise UsageError(f"--name {name!r}: {dest} is a link to {dest.resolve()}; "
                         f"remove it first (workbench rm {name})")
    return dest


def default_import_name(source: Path, bits: int) -> str:
    """``<file stem>-4bit`` (or ``-f16``), with anything a model name may not hold replaced by '-'."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", source.stem).strip(".-+_") or "model"
    return re.sub(r"\.{2,}", ".", stem)[:100] + ("-f16" if bits == 16 else f"-{bits}bit")


def run_import_gguf(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.gguf_import import GgufImportError, import_gguf

    source = Path(args.path)
    name = args.name if args.name is not None else default_import_name(source, args.bits)
    dest = import_destination(paths.models_dir, name)

    def progress(stage: str, fraction: float) -> None:
        print(f"\r{fraction:4.0%}  {stage:<24}", end="", file=sys.stderr, flush=True)

    try:
        import_gguf(source, dest, bits=args.bits, progress=progress, overwrite=args.force)
    except GgufImportError as exc:
        print(f"\nworkbench import-gguf: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"\nimported {source.name} as {name} ({dest})", file=sys.stderr)
    print(dest)
    return EXIT_OK


def run_pull(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core import hub_names

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

    from workbench.core.downloads import DownloadManager, JobState, clock_time
    from workbench.core.store import Store

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
    from workbench.core.downloads import format_bytes

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="A terminal workbench for local models. Without a command it opens the TUI.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    imp = commands.add_parser("import-gguf", help="convert a GGUF file into an MLX model the workbench can load")
    imp.set_defaults(handler=run_import_gguf)
    imp.add_argument("path", help="the .gguf file")
    imp.add_argument("--bits", type=int, choices=(4, 8, 16), default=4,
                     help="4 keeps Q4_0/Q4_1/Q8_0 blocks as they are (default); 8 and 16 widen them")  # fmt: skip
    imp.add_argument("--name", help="the model's name in the models folder: letters, digits and . _ + - "
                     "(default: file name and bits)")
    imp.add_argument("--force", action="store_true", help="replace an existing model of that name")
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
    for module in (models, generate, embed, serve):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = AppPaths.from_env()
    setup_logging(paths)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        return run_tui(paths)
    return run_command(handler, paths, args)


def run_command(handler: Handler, paths: AppPaths, args: argparse.Namespace) -> int:
    """Run a subcommand; failures meant for people become a line on stderr and an exit status, never a traceback
    (that goes to the log file)."""
    prefix = f"workbench {args.command}"
    try:
        return handler(paths, args)
    except CommandError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\n{prefix}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `workbench chat … | head -1`: the reader left; say nothing more on stdout
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:
        log.exception("workbench %s failed", args.command)
        print(f"{prefix}: {type(exc).__name__}: {exc} (details in {paths.log_file})", file=sys.stderr, flush=True)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
