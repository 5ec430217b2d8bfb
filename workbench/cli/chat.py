"""`workbench chat`: one prompt answered by one chat model, streamed to stdout, its figures on stderr.

A face of the engine (workbench.server.engine_chat): it starts the engine when none runs and streams the answer from
it, so a warm call pays neither the import of the model libraries nor the load. This module stays light: argparse,
the engine's client (aiohttp) and its starter, never the model code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    UsageError,
    add_command,
    attach_engine,
    note,
    print_json,
    read_prompt,
    stop_on_interrupt,
    unknown_model,
)
from workbench.cli.generation import GENERATION_EXIT_CODES, add_generation_arguments, figures_note, sampling_flags

if TYPE_CHECKING:
    from workbench.client.engine import EngineClient, EngineRequestError
    from workbench.core.settings.paths import AppPaths

STOP_GRACE_S = 10.0  # after ctrl+c, how long the engine gets to end the answer (with its figures) before we hang up


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chat = add_command(
        commands, "chat", run_chat, "answer one prompt with a chat model, streamed to stdout",
        "Answer PROMPT with MODEL (an id from `workbench ls`). The answer streams to stdout as it is generated; "
        "the figures (time to first token, prompt and generation speed, token counts) follow as one line on "
        "stderr. Sampling: the flags, over the chat preset config.toml names (if any), over the model's own "
        "defaults (its generation_config.json), over the built-in ones. The engine answers (started when none "
        "runs; the model stays loaded there for the next call: `workbench ps`).",
        GENERATION_EXIT_CODES,
    )  # fmt: skip
    chat.add_argument("model", metavar="MODEL", help="a chat model id")
    add_generation_arguments(chat)
    chat.add_argument("--json", action="store_true", help='no streaming; one JSON object on stdout: '
                      '{"model", "answer", "figures", "finish_reason", "stopped"}')  # fmt: skip


def run_chat(paths: AppPaths, args: argparse.Namespace) -> int:
    prompt = read_prompt(args.prompt)
    body: dict[str, Any] = {"model": args.model, "prompt": prompt, **sampling_flags(args)}  # bad flags: exit 2 here
    if args.system is not None:
        body["system"] = args.system
    return asyncio.run(chat(attach_engine(paths), body, as_json=args.json))


@dataclass
class Answer:
    """What came of one streamed answer."""

    model: str
    pieces: list[str] = field(default_factory=list)
    job: str | None = None
    finished: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stop_asked: bool = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def document(self) -> dict[str, Any]:
        finished = self.finished or {}
        return {"model": self.model, "answer": self.text, "figures": finished.get("figures"),
                "finish_reason": finished.get("finish_reason"), "stopped": bool(finished.get("stopped"))}  # fmt: skip

    def figures_note(self) -> str:
        finished = self.finished or {}
        return figures_note(self.model, finished.get("summary"), bool(finished.get("stopped")),
                            finished.get("finish_reason"))  # fmt: skip


async def chat(socket: Path, body: dict[str, Any], as_json: bool = False) -> int:
    """Stream one answer from the engine on ``socket``: the tokens to stdout (or one JSON document with --json), the
    notes and figures to stderr. ctrl+c asks the engine to stop the answer (it ends within a token, with its figures);
    a second one, or an engine that does not end it in time, hangs up (the engine then stops it too)."""
    from workbench.client.engine import EngineClient

    client = EngineClient(socket)
    answer = Answer(body["model"])
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    pending: set[asyncio.Task[Any]] = set()
    hang_up: asyncio.TimerHandle | None = None

    def ask_to_stop() -> None:
        if answer.job is not None:
            request = asyncio.ensure_future(stop_quietly(client, answer.job))
            pending.add(request)
            request.add_done_callback(pending.discard)

    def on_interrupt() -> None:
        nonlocal hang_up
        answer.stop_asked = True
        ask_to_stop()
        if task is not None:
            hang_up = loop.call_later(STOP_GRACE_S, task.cancel)

    try:
        with stop_on_interrupt(on_interrupt) as interrupt:
            await _stream(client, body, answer, as_json, ask_to_stop)
    finally:
        if hang_up is not None:
            hang_up.cancel()
    if answer.error is not None:
        if answer.pieces and not as_json:
            sys.stdout.write("\n")
        raise CommandError(answer.error.get("message") or "the engine failed to answer",
                           2 if answer.error.get("kind") == "usage" else 1)  # fmt: skip
    if as_json:
        print_json(answer.document())
    elif answer.pieces and not answer.text.endswith("\n"):
        sys.stdout.write("\n")
        sys.stdout.flush()
    note(answer.figures_note())
    return EXIT_INTERRUPTED if interrupt.hit else EXIT_OK


async def _stream(client: EngineClient, body: dict[str, Any], answer: Answer, as_json: bool,
                  ask_to_stop: Any) -> None:  # fmt: skip
    from workbench.client.engine import EngineGone, EngineNotRunning, EngineRequestError

    try:
        async with contextlib.aclosing(client.chat(body)) as lines:
            async for line in lines:
                kind = line.get("type")
                if kind == "token":
                    answer.pieces.append(line["text"])
                    if not as_json:
                        sys.stdout.write(line["text"])
                        sys.stdout.flush()
                elif kind == "note":
                    note(str(line.get("message")))
                elif kind == "trimmed":
                    note(f"the prompt ({line.get('prompt_tokens')} tokens) was trimmed to fit {line.get('window')}")
                elif kind == "job":
                    answer.job = str(line.get("id"))
                    if answer.stop_asked:  # ctrl+c came before the engine named the answer
                        ask_to_stop()
                elif kind == "finished":
                    answer.finished = line
                elif kind == "error":
                    answer.error = line
    except EngineRequestError as exc:
        raise refusal(exc, answer.model) from exc
    except EngineNotRunning as exc:
        raise CommandError(f"no engine answers on {exc} (it stopped before answering); try again") from exc
    except EngineGone as exc:
        if answer.pieces and not as_json:
            sys.stdout.write("\n")
        raise CommandError(f"{answer.model}: the engine stopped in the middle of the answer ({exc})") from exc
    if answer.finished is None and answer.error is None:
        if answer.pieces and not as_json:
            sys.stdout.write("\n")
        raise CommandError(f"{answer.model}: the engine ended the answer without its figures (was it stopped?)")


def refusal(exc: EngineRequestError, wanted: str) -> CommandError:
    """What a face says when the engine refuses an answer: the notes that came with it (config mistakes) on stderr,
    then the error; an unknown model as the in-process CLI said it (exit 2), a bad request exit 2, the rest 1."""
    for message in exc.document.get("notes") or []:
        note(str(message))
    if exc.status == 404 and isinstance(exc.document.get("known"), list):
        return unknown_model(wanted, exc.document["known"], "chat model")
    if exc.status == 404:  # no such route: an engine started from older code
        return CommandError("the engine does not know this request (it runs another version of workbench's code); "
                            "`workbench stop` ends it, and the next command starts one with this code")  # fmt: skip
    if exc.status in (400, 404, 413):
        return UsageError(str(exc))
    return CommandError(f"the engine refused the answer: {exc}")


async def stop_quietly(client: EngineClient, job: str) -> None:
    from workbench.client.engine import EngineRequestError

    with contextlib.suppress(EngineRequestError, OSError):
        await client.stop_chat(job)
