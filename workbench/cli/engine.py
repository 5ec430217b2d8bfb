"""`workbench engine`: the engine in the foreground (faces start it in the background with workbench.engine_process)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import logging.handlers
import os
from typing import TYPE_CHECKING

from workbench.cli.common import EXIT_OK, CommandError, add_command, note

if TYPE_CHECKING:
    from workbench.core.engine_home import EngineHome, EngineLock
    from workbench.core.settings.paths import AppPaths

log = logging.getLogger(__name__)

LOG_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3
# Refuse to start while another process has the history open for writing: every face of this workbench reads it
# read-only and writes through the engine, so such a process is a workbench from before the engine (never raced).
REFUSE_OLDER_WRITERS = True


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_command(
        commands, "engine", run_engine, "run the engine (the process that holds the models) in the foreground",
        "Run the engine for this data folder in the foreground: the process that holds the models, the download "
        "queue and the history, reached over a Unix socket in a private folder (`workbench ps` shows where). It "
        "stops with `workbench stop`, ctrl+c or SIGTERM, or by itself after [engine] idle_exit_minutes with no "
        "request, no running download and no loaded model. It logs to engine.log in the log folder.",
        "exit status: 0 stopped (asked, or idle); 1 it could not start (another engine runs for this data folder or "
        "writes its history, an older workbench still has the history open for writing, the socket's folder is not "
        "private, …)",
    ).add_argument("--resident", action="store_true",
                   help="never exit when idle (what `workbench service install` runs: a service manager does not "
                        "restart an engine that ended well)")  # fmt: skip


class QuietRotatingHandler(logging.handlers.RotatingFileHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        pass


def log_to_engine_file(paths: AppPaths) -> None:
    """The engine's own log, rotated: engine.log in the log folder, in place of workbench.log."""
    try:
        paths.log_dir.mkdir(parents=True, exist_ok=True)
        handler = QuietRotatingHandler(paths.log_dir / "engine.log", maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS,
                                       encoding="utf-8")  # fmt: skip
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run_engine(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.core.engine_home import EngineHomeError, EngineLock, engine_home
    from workbench.engine_process import inherited_lock

    log_to_engine_file(paths)
    try:
        home = engine_home(paths)
    except (EngineHomeError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    lock = inherited_lock(home) or EngineLock(home.lock)
    if not lock.try_acquire():
        raise CommandError(f"an engine already runs for this data folder (its socket: {home.socket}); "
                           "`workbench stop` stops it")  # fmt: skip
    from workbench.core.storage.writer_lock import HistoryInUseError

    try:
        reason = asyncio.run(serve_engine(paths, home, lock, resident=args.resident))
    except HistoryInUseError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        lock.release()
    log.info("engine exit: %s", reason)
    return EXIT_OK


async def serve_engine(paths: AppPaths, home: EngineHome, lock: EngineLock, resident: bool = False,
                       refuse_older_writers: bool = REFUSE_OLDER_WRITERS) -> str:  # fmt: skip
    """Serve until stopped. The history's writer lock is taken (and, with ``refuse_older_writers``, other writers
    looked for) before the services open the database read-write: its migration and the marking of half-written
    answers as incomplete must not race another writer. HistoryInUseError when it cannot be."""
    import signal

    from workbench.bootstrap import build_services
    from workbench.core.storage.writer_lock import claim_history
    from workbench.server.engine import Engine

    history_lock = claim_history(paths.database_file, refuse_other_writers=refuse_older_writers)
    try:
        services = build_services(paths)
    except BaseException:
        history_lock.release()
        raise
    minutes = 0 if resident else services.settings.engine_idle_exit_minutes
    engine = Engine(services, home, idle_exit_s=minutes * 60 or None, check_s=min(5.0, max(0.2, minutes * 60 / 4)),
                    history_lock=history_lock)  # fmt: skip
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, engine.request_stop, signal.Signals(sig).name)
    return await engine.serve(
        lock, ready=lambda: note(f"engine {os.getpid()} serving on {home.socket} (`workbench stop` or ctrl+c stops it)")
    )
