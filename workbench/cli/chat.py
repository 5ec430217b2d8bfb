"""`workbench chat`: one prompt answered by one chat model, streamed to stdout, its figures on stderr."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING

from workbench.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    add_command,
    note,
    open_services,
    print_json,
    read_prompt,
    stop_on_interrupt,
)
from workbench.cli.generation import (
    GENERATION_EXIT_CODES,
    add_generation_arguments,
    finish_note,
    messages_from,
    report_loading,
    resolve_chat_model,
    sampling_flags,
    sampling_from,
    side_document,
)

if TYPE_CHECKING:
    from workbench.core.chat.run import Finished
    from workbench.core.settings.paths import AppPaths

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chat = add_command(
        commands, "chat", run_chat, "answer one prompt with a chat model, streamed to stdout",
        "Answer PROMPT with MODEL (an id from `workbench ls`). The answer streams to stdout as it is generated; "
        "the figures (time to first token, prompt and generation speed, token counts) follow as one line on "
        "stderr. Sampling: the flags, over the chat preset config.toml names (if any), over the model's own "
        "defaults (its generation_config.json), over the built-in ones.",
        GENERATION_EXIT_CODES,
    )  # fmt: skip
    chat.add_argument("model", metavar="MODEL", help="a chat model id")
    add_generation_arguments(chat)
    chat.add_argument("--json", action="store_true", help='no streaming; one JSON object on stdout: '
                      '{"model", "answer", "figures", "finish_reason", "stopped"}')  # fmt: skip


def _failure(model_id: str, exc: Exception) -> CommandError:
    from workbench.core.chat.run import ChatError
    from workbench.core.models.spec import ModelManagerError

    if isinstance(exc, ModelManagerError | ChatError):
        return CommandError(f"{model_id}: {exc}")
    log.error("%s failed to answer", model_id, exc_info=exc)
    return CommandError(f"{model_id} failed to answer: {type(exc).__name__}: {exc}")


def run_chat(paths: AppPaths, args: argparse.Namespace) -> int:
    prompt = read_prompt(args.prompt)
    return asyncio.run(chat(paths, args, prompt))


async def chat(paths: AppPaths, args: argparse.Namespace, prompt: str) -> int:
    from workbench.core.chat.run import ChatRun, ContextTrimmed, Finished, Token

    async with open_services(paths) as services:
        sampling_flags(args)
        model_id = await resolve_chat_model(services, args.model)
        sampling = sampling_from(args, services, model_id)
        report_loading(services)
        run = ChatRun(services.manager, model_id, messages_from(args, services, prompt), sampling)
        pieces: list[str] = []
        finished: Finished | None = None
        with stop_on_interrupt(run.stop) as interrupt:
            try:
                async with contextlib.aclosing(run.events()) as events:
                    async for event in events:
                        if isinstance(event, Token):
                            pieces.append(event.text)
                            if not args.json:
                                sys.stdout.write(event.text)
                                sys.stdout.flush()
                        elif isinstance(event, ContextTrimmed):
                            note(f"the prompt ({event.prompt_tokens} tokens) was trimmed to fit {event.window}")
                        elif isinstance(event, Finished):
                            finished = event
            except BrokenPipeError:
                raise  # the reader of stdout left (`| head`): not the model's failure
            except Exception as exc:
                if pieces and not args.json:
                    sys.stdout.write("\n")
                raise _failure(model_id, exc) from exc
        answer = "".join(pieces)
        if args.json:
            print_json(side_document(model_id, answer, finished))
        elif answer and not answer.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
        note(finish_note(model_id, finished))
        return EXIT_INTERRUPTED if interrupt.hit else EXIT_OK
