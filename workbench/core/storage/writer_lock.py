"""The history's one writer: a lock beside the SQLite file, and the processes that have the file open for writing.

The engine holds ``<database>.writer`` (flock, exclusive) for its whole life, from before it opens the database
read-write until after it closed it; its pid is written in the file, so a second engine can name it. Why a file beside
the database rather than ``engine.lock``: that one lives in the engine's runtime folder, which can differ for one data
folder (logind removed ``/run/user/UID`` at logout, a long path's fallback under /tmp), while this one follows the file
it guards. Why not a SQLite lock: ``locking_mode=EXCLUSIVE`` holds the file for a lifetime only by keeping the WAL index
private, and then the faces could not read it.

Before the engine, every workbench process opened the database read-write. :func:`other_writers` finds this user's
other processes that have it open for writing (psutil's open files: the open mode on Linux, ``lsof`` where psutil does
not give it), in a bounded time, so an engine can refuse to start beside one (:func:`claim_history`) instead of racing
it. A face that opened the file read-only (``Store(path, read_only=True)``) is not a writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

WRITER_SUFFIX = ".writer"
SCAN_TIMEOUT_S = 2.0  # how long the look for other writers may take at most
LSOF_TIMEOUT_S = 2.0
WRITE_MODES = frozenset({"w", "u"})  # lsof's access column: read, write, both ("u")
MAX_COMMAND_CHARS = 80


class HistoryInUseError(Exception):
    """Another process writes the history; the message names it and says what to do."""


def writer_lock_path(database: Path) -> Path:
    return database.with_name(database.name + WRITER_SUFFIX)


class HistoryWriterLock:
    """``<database>.writer``, held (flock, exclusive) by the one process that writes the database. The lock belongs to
    the open file: it goes with the process (killed or not), and the file itself stays (deleting a lock file races)."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = writer_lock_path(database)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def try_acquire(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        with contextlib.suppress(OSError):  # who holds it, for a second engine's message; the lock works without
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return True

    def holder(self) -> int | None:
        """The pid the holder wrote in the file (None when unreadable, or the holder has not written it yet)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --- other processes that have the database open --------------------------------------------------------


@dataclass(frozen=True)
class OpenBy:
    """A process that has the database open for writing (``mode`` "write"), or whose open mode could not be learnt
    ("unknown": counted as a writer, the safe side)."""

    pid: int
    command: str
    mode: str = "write"

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid})"


def other_writers(database: Path, timeout_s: float = SCAN_TIMEOUT_S,
                  exclude: frozenset[int] = frozenset()) -> list[OpenBy]:  # fmt: skip
    """This user's other processes that have ``database`` open for writing, found within about ``timeout_s`` (past
    it, what was found so far; a process that vanishes or cannot be read is passed over)."""
    target = str(database.resolve())
    skip = exclude | {os.getpid()}
    uid = os.getuid()
    deadline = time.monotonic() + timeout_s
    writers: list[OpenBy] = []
    unknown: dict[int, str] = {}
    for process in psutil.process_iter(["uids"]):
        if time.monotonic() >= deadline:
            log.warning("looking for other writers of %s took over %.1f s: stopped looking", target, timeout_s)
            break
        if process.pid in skip:
            continue
        uids = process.info.get("uids")
        if uids is None or uids.real != uid:
            continue
        try:
            opened = [f for f in process.open_files() if f.path == target]
            if not opened:
                continue
            command = _command(process)
        except psutil.Error:
            continue
        modes = {getattr(f, "mode", None) for f in opened}
        if None in modes:  # psutil gives no open mode here (macOS)
            unknown[process.pid] = command
        elif modes - {"r"}:
            writers.append(OpenBy(process.pid, command))
    if unknown:
        writers += _writers_by_lsof(target, unknown, max(0.5, min(LSOF_TIMEOUT_S, deadline - time.monotonic())))
    return sorted(writers, key=lambda w: w.pid)


def _writers_by_lsof(target: str, candidates: dict[int, str], timeout_s: float) -> list[OpenBy]:
    """Which of ``candidates`` (pid → command) have ``target`` open for writing, as lsof says; the ones lsof cannot
    tell about count as writers ("unknown")."""
    lsof = shutil.which("lsof")
    modes: dict[int, set[str]] = {}
    if lsof is not None:
        pids = ",".join(str(pid) for pid in sorted(candidates))
        try:
            result = subprocess.run([lsof, "-n", "-P", "-w", "-a", "-p", pids, "-F", "pa", "--", target],
                                    capture_output=True, text=True, timeout=timeout_s, check=False)  # fmt: skip
            modes = parse_lsof(result.stdout)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("lsof could not say who writes %s: %s", target, exc)
    found = []
    for pid, command in candidates.items():
        if pid not in modes:
            found.append(OpenBy(pid, command, "unknown"))
        elif modes[pid] & WRITE_MODES:
            found.append(OpenBy(pid, command))
    return found


def parse_lsof(output: str) -> dict[int, set[str]]:
    """pid → the access modes of its open files, from ``lsof -F pa`` (lines ``p<pid>``, then ``a<r|w|u>`` per file)."""
    modes: dict[int, set[str]] = {}
    pid: int | None = None
    for line in output.splitlines():
        if line.startswith("p") and line[1:].isdigit():
            pid = int(line[1:])
            modes.setdefault(pid, set())
        elif line.startswith("a") and pid is not None:
            modes[pid].add(line[1:2])
    return modes


def _command(process: psutil.Process) -> str:
    """The command people would recognise: ``workbench chat``, ``python -m workbench``, ``python -c …``."""
    try:
        argv = process.cmdline()
    except psutil.Error:
        argv = []
    if not argv:
        return process.name() or "a process"
    words = [os.path.basename(argv[0]), *argv[1:]]
    if words[0].startswith("python") and len(words) > 1 and not words[1].startswith("-"):
        words = [os.path.basename(words[1]), *words[2:]]  # a console script: python /…/bin/workbench chat
    command = " ".join(words)
    return command if len(command) <= MAX_COMMAND_CHARS else command[: MAX_COMMAND_CHARS - 1] + "…"


def history_in_use_message(writers: list[OpenBy], database: Path) -> str:
    who = "; ".join(writer.describe() for writer in writers)
    verb = "has" if len(writers) == 1 else "have"
    return f"{who} still {verb} the history open ({database}): quit it, then start again"


def claim_history(database: Path, refuse_other_writers: bool = False,
                  scan_timeout_s: float = SCAN_TIMEOUT_S) -> HistoryWriterLock:  # fmt: skip
    """The writer lock of ``database``, taken before the engine opens the file read-write. HistoryInUseError when
    another engine holds it, or (``refuse_other_writers``) when another process has the file open for writing."""
    lock = HistoryWriterLock(database)
    if not lock.try_acquire():
        pid = lock.holder()
        who = f"another workbench engine (pid {pid})" if pid else "another workbench engine"
        hint = f"`workbench stop`, or kill {pid}" if pid else "`workbench stop`"
        raise HistoryInUseError(f"{who} already writes the history ({database}): stop it ({hint}), then start again")
    if refuse_other_writers:
        try:
            writers = other_writers(database, scan_timeout_s)
        except BaseException:
            lock.release()
            raise
        if writers:
            lock.release()
            raise HistoryInUseError(history_in_use_message(writers, database))
    return lock
