"""The `workbench` command: the TUI by default, subcommands for scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from workbench.cli import chat, compare, embed, engine, import_gguf, models, ps, pull, serve, service, stop
from workbench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    Handler,
)
from workbench.core.settings.paths import AppPaths

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


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
    """The TUI as a face of the engine: it attaches after its first frame (starting the engine when none runs), and
    what runs in the engine (downloads, the first-start import) goes on after it quits."""
    from workbench.client.remote_services import RemoteServices
    from workbench.core.engine_home import EngineHomeError
    from workbench.ui.app import WorkbenchApp

    try:
        services = RemoteServices(paths)
    except (EngineHomeError, OSError) as exc:  # the engine's folder is not private, or cannot be made
        print(f"workbench: {exc}", file=sys.stderr)
        return EXIT_ERROR
    app = WorkbenchApp(services)
    app.run()
    if app.engine_face is not None and (note := app.engine_face.exit_note()):
        print(note, file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="A terminal workbench for local models. Without a command it opens the TUI.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (import_gguf, pull, models, chat, compare, embed, serve):
        module.register(commands)
    for module in (engine, ps, stop, service):
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
