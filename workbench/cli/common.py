"""What the subcommands share: exit codes, errors for people, model ids, JSON, services, Ctrl-C, progress bars."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.settings.paths import AppPaths

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by ctrl+c

EXIT_CODES_HELP = "exit status: 0 done; 1 the work failed (the message says why); 2 bad arguments or unknown model"

Handler = Callable[["AppPaths", argparse.Namespace], int]


class CommandError(Exception):
    """A failure meant for people: printed as ``workbench COMMAND: message`` and turned into the exit status."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CommandError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, summary: str,
    description: str, exit_codes: str = EXIT_CODES_HELP,
) -> argparse.ArgumentParser:  # fmt: skip
    """A subcommand whose --help shows what it does and its exit codes."""
    parser = commands.add_parser(name, help=summary, description=description, epilog=exit_codes)
    parser.set_defaults(handler=handler)
    return parser


# --- model ids -----------------------------------------------------------------------------------


def unknown_model(wanted: str, known: Iterable[str], what: str = "model") -> UsageError:
    """``no model called 'x'; did you mean: a, b`` (or every known id when nothing is close)."""
    known = sorted(set(known))
    lower = wanted.lower()
    close = difflib.get_close_matches(wanted, known, n=5, cutoff=0.6)
    close += [name for name in known if lower in name.lower() and name not in close]
    if close:
        hint = "did you mean: " + ", ".join(close[:5])
    elif known:
        hint = f"the {what}s here: " + ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
    else:
        hint = f"there is no {what} yet (`workbench pull ORG/NAME` downloads one)"
    return UsageError(f"no {what} called {wanted!r}; {hint}")


# --- output --------------------------------------------------------------------------------------


def print_json(document: Any) -> None:
    """The one JSON document a --json command writes to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def attach_engine(paths: AppPaths, tell: Callable[[str], None] | None = None) -> Path:
    """The socket of this data folder's engine, started in the background when none answers; CommandError when none
    can start. An engine running other code than this command is said (through ``tell``, default: stderr)."""
    from workbench.client.engine import same_code
    from workbench.core.engine_home import EngineHomeError, engine_home
    from workbench.engine_process import EngineStartError, start_engine

    try:
        info = start_engine(paths)
        socket = engine_home(paths).socket
    except (EngineStartError, EngineHomeError, OSError) as exc:
        raise CommandError(f"cannot start the engine: {exc}") from exc
    if not same_code(info):
        (tell or note)(f"note: the engine (pid {info.get('pid')}) runs other code than this command (an update since "
                       "it started); `workbench stop` when it is idle, and the next command starts one with this "
                       "code")  # fmt: skip
    return socket


def note(message: str) -> None:
    """A line for people on stderr (progress, figures, plans), so stdout stays clean for pipes."""
    print(message, file=sys.stderr, flush=True)


def read_prompt(text: str) -> str:
    """PROMPT as given, or stdin when it is ``-``; an empty prompt is a usage error."""
    if text == "-":
        if sys.stdin.isatty():
            note("reading the prompt from stdin (ctrl+d ends it)")
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the prompt is empty")
    return text


# --- services and ctrl+c -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_services(paths: AppPaths) -> AsyncIterator[Services]:
    """bootstrap.open_services for a command: the libraries' tqdm bars give way to our own progress lines on stderr,
    and mistakes in config.toml or catalog.toml are said once there (the TUI shows them in a notice)."""
    from workbench.bootstrap import open_services as open_shared

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    async with open_shared(paths, on_issue=note) as services:
        yield services


class Interrupt:
    """Whether ctrl+c was pressed during :func:`stop_on_interrupt`."""

    def __init__(self) -> None:
        self.hit = False


@contextlib.contextmanager
def stop_on_interrupt(stop: Callable[[], None]) -> Iterator[Interrupt]:
    """The first ctrl+c calls ``stop`` (the work ends cleanly, within a token or a batch); a second one cancels
    the running task at once. Outside the main thread or without signal support, ctrl+c works as usual."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupt = Interrupt()

    def on_sigint() -> None:
        if interrupt.hit and task is not None:
            task.cancel()
            return
        interrupt.hit = True
        note("\nstopping (ctrl+c again to quit at once)")
        stop()

    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):
        installed = False
    try:
        yield interrupt
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(signal.SIGINT, previous)  # asyncio.run's own handler, if it had one


# --- progress ------------------------------------------------------------------------------------


def bar_line(label: str, fraction: float, tail: str, width: int = 80) -> str:
    """``label [#####-----] tail``, the bar between 10 and 30 characters wide so the line fits ``width``."""
    bar_width = max(10, min(30, width - len(label) - len(tail) - 5))
    filled = round(bar_width * fraction)
    return f"{label} [{'#' * filled}{'-' * (bar_width - filled)}] {tail}"


class TerminalLine:
    """One line on a terminal, redrawn in place; ``end`` moves past it once something was drawn."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._drawn = False

    @staticmethod
    def width() -> int:
        return shutil.get_terminal_size((80, 24)).columns - 1

    def draw(self, text: str) -> None:
        width = self.width()
        self.stream.write("\r" + text.ljust(width)[:width])
        self.stream.flush()
        self._drawn = True

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class ProgressBar:
    """``label [#####-----]  48%  120/250 unit`` on stderr: redrawn in place on a terminal; elsewhere (logs,
    pipes) a line at each tenth, so a log stays short. ``update`` may be called from any one thread."""

    def __init__(self, label: str, unit: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._line = TerminalLine(self.stream)
        self._last_tenth = -1

    def render(self, done: int, total: int, width: int = 80) -> str:
        fraction = done / total if total else 1.0
        return bar_line(self.label, fraction, f"{fraction:4.0%}  {done}/{total} {self.unit}", width)

    def update(self, done: int, total: int) -> None:
        if self.tty:
            self._line.draw(self.render(done, total, self._line.width()))
            return
        tenth = int(10 * done / total) if total else 10
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(self.render(done, total), file=self.stream, flush=True)

    def finish(self) -> None:
        self._line.end()
