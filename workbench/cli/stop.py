"""`workbench stop`: ask the engine to stop, and wait (bounded) until it is gone."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from workbench.cli.common import EXIT_OK, CommandError, add_command
from workbench.cli.ps import NO_ENGINE, engine_socket

if TYPE_CHECKING:
    from workbench.core.settings.paths import AppPaths

STOP_TIMEOUT_S = 30.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_command(
        commands, "stop", run_stop, "stop the engine (unloads the models, closes the download queue)",
        "Ask the engine for this data folder to stop: it closes the download queue, unloads the models and exits; "
        f"this waits until it is gone. With none running it prints '{NO_ENGINE}'.",
        f"exit status: 0 stopped, or '{NO_ENGINE}'; 1 it did not stop within {STOP_TIMEOUT_S:.0f} s",
    )  # fmt: skip


def run_stop(paths: AppPaths, args: argparse.Namespace) -> int:
    from workbench.client.engine import EngineClient

    client = EngineClient(engine_socket(paths))

    async def stop() -> bool | None:
        answer = await client.stop()
        if answer is None:
            return None
        return await client.wait_gone(STOP_TIMEOUT_S)

    stopped = asyncio.run(stop())
    if stopped is None:
        print(NO_ENGINE)
    elif not stopped:
        raise CommandError(f"the engine did not stop within {STOP_TIMEOUT_S:.0f} s (its socket: {client.socket})")
    else:
        print("engine stopped")
    return EXIT_OK
