"""`workbench serve`: a face of the engine. It asks the engine (starting one when none runs) to serve its models
through the OpenAI-compatible HTTP API (workbench.server.engine_listeners) on --host/--port, prints the URL and then a
line per answered request; ctrl+c closes that listener, not the engine. The key comes from the flags and config.toml
and travels to the engine with the request."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.cli.common import EXIT_ERROR, EXIT_OK, CommandError, UsageError, add_command, attach_engine, note

if TYPE_CHECKING:
    from pathlib import Path

    from workbench.core.settings.paths import AppPaths

SLOW_OPEN_S = 2.0  # past this, say what the engine is doing (importing the default model on first use)
ENGINE_STOPPED = "the engine stopped"  # the reason the engine gives its listeners when it stops


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
        "Ask the engine (started in the background when none runs) to serve every model `workbench ls` lists "
        "through an OpenAI-compatible HTTP API under /v1, loading models on demand through the engine's one memory "
        "budget: a model loaded in the engine already answers without a second load (the default chat model is "
        "imported from its package first, on first use). Prints a line per answered request on stdout. Beyond "
        "127.0.0.1 every request must carry a key (Authorization: Bearer KEY): --api-key-env or [serve] api_key_env "
        "names the environment variable that holds it. Bodies over [serve] max_body_mb get 413; past [serve] "
        "max_waiting requests at once, 503. Runs until ctrl+c, which closes this address and leaves the engine "
        "running. [serve] host / port in config.toml opens the API whenever the engine starts, without this command.",
        "exit status: 0 stopped with ctrl+c or SIGTERM (the engine keeps running); 1 the server could not start "
        "(the port is taken, the engine did not start, …), or it stopped: the engine stopped or the address was "
        "closed elsewhere; 2 bad arguments, or a host beyond loopback without a key",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8000, help="the port (default: 8000)")
    serve.add_argument("--api-key-env", metavar="VAR", help="the environment variable holding the key clients must "
                       "send (default: [serve] api_key_env; required beyond 127.0.0.1)")  # fmt: skip


@dataclass(frozen=True)
class ServePlan:
    host: str
    port: int
    api_key: str | None = field(default=None, repr=False)


def plan_serve(paths: AppPaths, args: argparse.Namespace) -> ServePlan:
    """The address and key from the flags and config.toml; UsageError (exit 2) for a key that is asked for and
    missing, or a host beyond loopback without one: checked before an engine is started or asked. The limits
    ([serve] max_body_mb, max_waiting) are the engine's own, from config.toml when it started."""
    from workbench.core.models.endpoints import ENV_NAME
    from workbench.core.settings.config import load_settings
    from workbench.server.limits import is_loopback

    settings, _issues = load_settings(paths.config_file)  # the engine logs the issues
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
    return ServePlan(args.host, args.port, key or None)


def run_serve(paths: AppPaths, args: argparse.Namespace) -> int:
    plan = plan_serve(paths, args)
    socket = attach_engine(paths)
    try:
        return asyncio.run(serve(socket, plan))
    except KeyboardInterrupt:  # ctrl+c where no handler of ours could be installed (the listener closes by itself)
        note("stopped")
        return EXIT_OK


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """ctrl+c (SIGINT) and SIGTERM cancel the running task: the listener closes and the command exits 0. Installed
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


async def serve(socket: Path, plan: ServePlan) -> int:
    """Ask for the listener, then print its requests until ctrl+c (closes it: exit 0) or until it is closed
    elsewhere or the engine stops (exit 1)."""
    from workbench.client.engine import EngineClient, EngineGone, EngineNotRunning, EngineRequestError

    client = EngineClient(socket)
    listener_id: str | None = None
    with stop_on_signals():
        try:
            slow = asyncio.get_running_loop().call_later(SLOW_OPEN_S, note, "waiting for the engine to open the API "
                                                         "(on first use it imports the default chat model first, "
                                                         "about 10 s)")  # fmt: skip
            try:
                row = await client.open_listener(plan.host, plan.port, plan.api_key)
            except EngineRequestError as exc:
                if exc.status in (404, 405):  # an engine of older code, without listeners
                    raise CommandError("the running engine cannot serve the API (it runs older code): `workbench "
                                       "stop`, then `workbench serve` again") from exc  # fmt: skip
                raise
            finally:
                slow.cancel()
            if row is None:
                raise CommandError("engine stopped (before it could serve); run the command again to start one")
            listener_id = str(row["id"])
            return await print_requests(client, listener_id, plan)
        except EngineRequestError as exc:
            said = str(exc)
            raise CommandError(said if said.startswith("cannot serve") else
                               f"cannot serve on {plan.host}:{plan.port}: {said}") from exc  # fmt: skip
        except (EngineGone, EngineNotRunning):
            note("engine stopped")
            return EXIT_ERROR
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None:
                task.uncancel()  # handled: the timeouts of the close below must not read it as theirs
            if listener_id is not None:
                with contextlib.suppress(EngineRequestError, OSError, TimeoutError):
                    await client.close_listener(listener_id)  # 404: it closed already, its stream gone
            note("stopped (the engine keeps running; `workbench stop` stops it)")
            return EXIT_OK


async def print_requests(client: Any, listener_id: str, plan: ServePlan) -> int:
    """Where it serves, once this face reads the listener's stream (a listener nobody reads closes), then a line per
    answered request, until the listener closes or the engine stops."""
    async with contextlib.aclosing(client.listener_requests(listener_id)) as lines:
        async for line in lines:
            kind = line.get("type")
            if kind == "listener":
                note(f"serving the OpenAI API on {line['url']} (ctrl+c stops serving; the engine keeps running)")
                root = str(line["url"]).removesuffix("/v1")
                note(f"and Ollama's API on {root} (OLLAMA_HOST={root.removeprefix('http://')})")
                if plan.api_key:
                    note("every request needs 'Authorization: Bearer KEY' (the key in the environment variable "
                         "given); the traffic is plain HTTP, not encrypted")  # fmt: skip
            elif kind == "request":
                print(request_line(line), flush=True)
            elif kind == "dropped":
                note(f"({line.get('events')} request lines were missed: this terminal fell behind)")
            elif kind == "closed":
                reason = str(line.get("reason") or "closed")
                note("engine stopped" if reason == ENGINE_STOPPED else f"stopped serving: {reason}")
                return EXIT_ERROR
    note("engine stopped")
    return EXIT_ERROR


def request_line(line: dict[str, Any]) -> str:
    """``12:03:04 127.0.0.1 POST /v1/chat/completions 200 1.24 s SmolLM2 · 12 tok, 34 tok @ 51.0 tok/s``."""
    at = line.get("at")
    when = time.strftime("%H:%M:%S", time.localtime(at if isinstance(at, int | float) else None))
    parts = [when, str(line.get("remote") or "-"), str(line.get("method")), str(line.get("path")),
             str(line.get("status"))]  # fmt: skip
    duration = line.get("duration_s")
    if isinstance(duration, int | float):
        parts.append(f"{duration:.2f} s")
    if line.get("model"):
        parts.append(str(line["model"]) + (" (streamed)" if line.get("stream") else ""))
    if line.get("figures"):
        parts.append(f"· {line['figures']}")
    return " ".join(parts)
