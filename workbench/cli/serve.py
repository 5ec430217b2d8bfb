"""`workbench serve`: the local models behind an OpenAI-compatible HTTP API (workbench.server.openai); the key and
limits come from the flags and config.toml."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.cli.common import EXIT_OK, CommandError, ProgressBar, UsageError, add_command, note, open_services

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.settings.paths import AppPaths
    from workbench.server.limits import ServeLimits

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
        "on demand through the same memory budget as the app (the default chat model is imported from its package "
        "first, on first use). Beyond 127.0.0.1 every request must carry a key (Authorization: Bearer KEY): "
        "--api-key-env or [serve] api_key_env names the environment variable that holds it. Bodies over "
        "[serve] max_body_mb get 413; past [serve] max_waiting requests at once, 503. Runs until ctrl+c.",
        "exit status: 0 stopped with ctrl+c or SIGTERM; 1 the server could not start (the port is taken, …); "
        "2 bad arguments, or a host beyond loopback without a key",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8000, help="the port (default: 8000)")
    serve.add_argument("--api-key-env", metavar="VAR", help="the environment variable holding the key clients must "
                       "send (default: [serve] api_key_env; required beyond 127.0.0.1)")  # fmt: skip


def api_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


@dataclass(frozen=True)
class ServePlan:
    host: str
    port: int
    api_key: str | None
    limits: ServeLimits


def plan_serve(paths: AppPaths, args: argparse.Namespace) -> ServePlan:
    """The key and limits from the flags and config.toml; UsageError (exit 2) for a key that is asked for and
    missing, or a host beyond loopback without one: checked before anything is imported or bound."""
    from workbench.core.models.endpoints import ENV_NAME
    from workbench.core.settings.config import load_settings
    from workbench.server.limits import MB, ServeLimits, is_loopback

    settings, _issues = load_settings(paths.config_file)  # the issues are logged when the services are built
    env = args.api_key_env or settings.serve_api_key_env
    if args.api_key_env is not None and not ENV_NAME.fullmatch(args.api_key_env):
        raise UsageError("--api-key-env takes the name of an environment variable (letters, digits, _), not the "
                         "key itself")  # not echoed: it may be the key  # fmt: skip
    key = os.environ.get(env, "").strip() if env else ""
    if env and not key:
        raise UsageError(f"${env} is empty or not set: put the key clients must send in it "
                         f"(export {env}=...), or serve on 127.0.0.1 without --api-key-env")  # fmt: skip
    if not key and not is_loopback(args.host):
        raise UsageError(
            f"refusing to serve on {args.host} without an API key: every machine that reaches it could use your "
            "models (and your remote endpoints, with your API keys). Put a key in an environment variable and pass "
            f"--api-key-env VAR (or set api_key_env = \"VAR\" under [serve] in {paths.config_file}); clients then "
            "send 'Authorization: Bearer KEY'. Or serve on 127.0.0.1 (the default)."
        )
    limits = ServeLimits(max_body_bytes=int(settings.serve_max_body_mb * MB), max_waiting=settings.serve_max_waiting)
    return ServePlan(args.host, args.port, key or None, limits)


def run_serve(paths: AppPaths, args: argparse.Namespace) -> int:
    plan = plan_serve(paths, args)
    try:
        return asyncio.run(serve(paths, plan))
    except KeyboardInterrupt:  # ctrl+c where no handler of ours could be installed
        note("stopped")
        return EXIT_OK


async def bring_in_defaults(services: Services) -> None:
    """Import the embedded default chat model before listening (first use only, ~10 s, progress on stderr), so
    the first GET /v1/models already lists it: clients such as Open WebUI read the list once when they connect.
    A failed import is said and the other models are served."""
    from workbench.core.models.gguf_import import GgufImportError
    from workbench.core.models.local import DEFAULT_CHAT_ID, default_chat_importable, default_chat_missing

    missing = default_chat_missing(services.paths) and default_chat_importable()
    bar = ProgressBar(f"importing {DEFAULT_CHAT_ID}", "%")
    if missing:
        note(f"importing the default chat model {DEFAULT_CHAT_ID} from its package (first use, about 10 s)")
    try:
        await services.bring_in_embedded_defaults(lambda _stage, fraction: bar.update(round(100 * fraction), 100))
    except (GgufImportError, OSError) as exc:
        log.exception("importing the default chat model failed")
        note(f"cannot import {DEFAULT_CHAT_ID}: {exc}; serving the other models")
    finally:
        bar.finish()


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


async def serve(paths: AppPaths, plan: ServePlan) -> int:
    try:
        from workbench.server.openai import serve as serve_api
    except ImportError as exc:
        log.exception("the OpenAI server module does not import")
        raise CommandError(f"the OpenAI API server is not available: {exc}") from exc
    host, port = plan.host, plan.port

    def ready(base_url: str) -> None:
        note(f"serving the OpenAI API on {api_url(base_url)} (ctrl+c stops)")
        if plan.api_key:
            note("every request needs 'Authorization: Bearer KEY' (the key in the environment variable given); the "
                 "traffic is plain HTTP, not encrypted")  # fmt: skip

    with stop_on_signals():
        try:
            async with open_services(paths) as services:
                await bring_in_defaults(services)
                await serve_api(services, host, port, ready=ready, limits=plan.limits, api_key=plan.api_key)
        except asyncio.CancelledError:
            note("stopped")
        except OSError as exc:
            log.exception("serving on %s:%s failed", host, port)
            raise CommandError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    return EXIT_OK
