"""`workbench serve`: the local models behind an OpenAI-compatible HTTP API (workbench.core.openai_server)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from workbench.commands.common import EXIT_OK, CommandError, add_command, note, open_services

if TYPE_CHECKING:
    from workbench.core.paths import AppPaths

log = logging.getLogger(__name__)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0 picks a free one)")
    return port


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = add_command(
        commands, "serve", run_serve, "serve the local models through an OpenAI-compatible API",
        "Serve every model `workbench ls` lists through an OpenAI-compatible HTTP API under /v1, loading models "
        "on demand through the same memory budget as the app. Runs until ctrl+c.",
        "exit status: 0 stopped with ctrl+c or SIGTERM; 1 the server could not start (the port is taken, …); "
        "2 bad arguments",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8000, help="the port (default: 8000)")


def api_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def run_serve(paths: AppPaths, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve(paths, args.host, args.port))
    except KeyboardInterrupt:  # ctrl+c where no handler of ours could be installed
        note("stopped")
        return EXIT_OK


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """ctrl+c (SIGINT) and SIGTERM cancel the running task: the server shuts down and the command exits 0. Installed
    explicitly, so they work also where SIGINT was inherited as ignored (a background job of a script)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, task.cancel if task is not None else lambda: None)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append((sig, previous))
    try:
        yield
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, previous)


async def serve(paths: AppPaths, host: str, port: int) -> int:
    try:
        from workbench.core.openai_server import serve as serve_api
    except ImportError as exc:
        log.exception("the OpenAI server module does not import")
        raise CommandError(f"the OpenAI API server is not available: {exc}") from exc

    def ready(base_url: str) -> None:
        note(f"serving the OpenAI API on {api_url(base_url)} (ctrl+c stops)")

    with stop_on_signals():
        try:
            async with open_services(paths) as services:
                await serve_api(services, host, port, ready=ready)
        except asyncio.CancelledError:
            note("stopped")
        except OSError as exc:
            log.exception("serving on %s:%s failed", host, port)
            raise CommandError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    return EXIT_OK
