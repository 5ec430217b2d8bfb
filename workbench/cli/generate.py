"""`workbench chat` and `workbench compare`: one prompt, answered by one model or by two side by side."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from workbench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    UsageError,
    add_command,
    note,
    open_services,
    print_json,
    read_prompt,
    stop_on_interrupt,
    unknown_model,
)

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.chat.run import ChatMessage, Finished
    from workbench.core.chat.sampling import SamplingSettings
    from workbench.core.models.lifecycle import ManagerEvent
    from workbench.core.settings.paths import AppPaths

log = logging.getLogger(__name__)

SAMPLING_FLAGS = ("temperature", "top_p", "max_tokens", "seed")
GENERATION_EXIT_CODES = (
    "exit status: 0 answered; 1 a model failed to load or answer (compare: either side); "
    "2 bad arguments, an empty prompt or an unknown model; 130 stopped with ctrl+c (what came so far is printed; "
    "a second ctrl+c quits at once)"
)


def _add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", metavar="PROMPT", help='the prompt; "-" reads it from stdin')
    parser.add_argument("--system", metavar="TEXT", help="system prompt (default: chat.system_prompt in config.toml)")
    parser.add_argument("--temperature", type=float, metavar="F", help="0 = greedy")
    parser.add_argument("--top-p", type=float, metavar="F", help="nucleus sampling, 0 < F <= 1")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the longest answer, in tokens")
    parser.add_argument("--seed", type=int, metavar="N", help="a fixed seed makes sampling repeatable")


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
    _add_generation_arguments(chat)
    chat.add_argument("--json", action="store_true", help='no streaming; one JSON object on stdout: '
                      '{"model", "answer", "figures", "finish_reason", "stopped"}')  # fmt: skip

    compare = add_command(
        commands, "compare", run_compare, "answer one prompt with two chat models and show both answers",
        "Answer PROMPT with models A and B, as the Compare pane does. From the memory budget the workbench decides "
        "whether both run at once or one after the other (A, then A unloaded, then B) and says which on stderr. "
        "Each answer comes under a header on stdout, its figures on stderr. One side failing does not stop the "
        "other.",
        GENERATION_EXIT_CODES,
    )  # fmt: skip
    compare.add_argument("model_a", metavar="A", help="a chat model id")
    compare.add_argument("model_b", metavar="B", help="another (or the same) chat model id")
    _add_generation_arguments(compare)
    compare.add_argument("--json", action="store_true",
                         help='one JSON object on stdout: {"plan": {"kind", "reason"}, "a": {...}, "b": {...}}, '
                         'each side as chat --json gives it, plus "error"')  # fmt: skip


# --- shared -------------------------------------------------------------------------------------


def sampling_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags given, checked; a bad value is a usage error."""
    from workbench.core.chat.sampling import validate_sampling

    given = {key: getattr(args, key) for key in SAMPLING_FLAGS if getattr(args, key) is not None}
    clean, problems = validate_sampling(given)
    if problems:
        raise UsageError("; ".join(f"--{key.replace('_', '-')}: {problem}" for key, problem in problems))
    return clean


def sampling_from(args: argparse.Namespace, services: Services, model_id: str) -> SamplingSettings:
    """The flags given, over the preset config.toml names (if any), over the model's own defaults
    (generation_config.json), over the built-in ones."""
    from workbench.core.chat.model_sampling import chat_sampling
    from workbench.core.chat.sampling import SamplingChoice

    choice = SamplingChoice(services.settings.chat_preset, sampling_flags(args))
    return chat_sampling(services.settings, services.manager, model_id, choice).settings


def messages_from(args: argparse.Namespace, services: Services, prompt: str) -> list[ChatMessage]:
    from workbench.core.chat.run import ChatMessage

    system = args.system if args.system is not None else services.settings.chat_system_prompt
    messages = [ChatMessage("system", system)] if system else []
    return [*messages, ChatMessage("user", prompt)]


async def resolve_chat_model(services: Services, wanted: str) -> str:
    """The id of a registered chat model; the default SmolLM2 is imported from its package on first use."""
    from workbench.core.models.gguf_import import GgufImportError
    from workbench.core.models.local import (
        DEFAULT_CHAT_ID,
        MissingPackageError,
        default_chat_importable,
        default_chat_missing,
    )
    from workbench.core.models.spec import ModelRole

    roles = {info.spec.id: info.role for info in services.manager.models()}
    chat_ids = services.manager.ids(ModelRole.CHAT)
    if wanted in roles and roles[wanted] is not ModelRole.CHAT:
        what = "an embedding model" if roles[wanted] is ModelRole.EMBED else f"a {roles[wanted]} model"
        raise UsageError(f"{wanted} is {what}, not a chat model; the chat models here: "
                         + (", ".join(sorted(chat_ids)) or "none"))  # fmt: skip
    if wanted == DEFAULT_CHAT_ID and default_chat_missing(services.paths) and default_chat_importable():
        note(f"importing {wanted} from its package (first use, about 10 s)")
        try:
            await services.bring_in_embedded_defaults()
        except (MissingPackageError, GgufImportError, OSError) as exc:
            raise CommandError(f"cannot import {wanted}: {exc}") from exc
        return wanted
    if wanted not in roles:
        importable = [DEFAULT_CHAT_ID] if DEFAULT_CHAT_ID not in roles and default_chat_importable() else []
        raise unknown_model(wanted, chat_ids + importable, "chat model")
    return wanted


def report_loading(services: Services) -> None:
    """Say on stderr when a model starts loading and when it is ready (loads take seconds)."""
    from workbench.core.models.spec import ModelState

    def on_event(event: ManagerEvent) -> None:
        if event.model.state is ModelState.LOADING:
            note(f"loading {event.model.spec.id}…")
        elif event.model.state is ModelState.READY and event.message.startswith(f"{event.model.spec.name} loaded"):
            note(event.message)

    services.manager.subscribe(on_event)


def finish_note(model_id: str, finished: Finished | None) -> str:
    """``model: first token 0.12 s · prompt 12 tok @ … · 8 tok @ … · peak …  (length)``, for stderr."""
    figures = finished.figures if finished is not None else None
    summary = figures.summary() if figures is not None else "no tokens generated"
    if finished is not None and finished.stopped:
        summary += "  (stopped)"
    elif finished is not None and finished.finish_reason == "length":
        summary += "  (hit --max-tokens)"
    return f"{model_id}: {summary}"


def side_document(model_id: str, answer: str, finished: Finished | None) -> dict[str, Any]:
    return {
        "model": model_id,
        "answer": answer,
        "figures": finished.figures.to_dict() if finished is not None and finished.figures is not None else None,
        "finish_reason": finished.finish_reason if finished is not None else None,
        "stopped": bool(finished is not None and finished.stopped),
    }


def _failure(model_id: str, exc: Exception) -> CommandError:
    from workbench.core.chat.run import ChatError
    from workbench.core.models.spec import ModelManagerError

    if isinstance(exc, ModelManagerError | ChatError):
        return CommandError(f"{model_id}: {exc}")
    log.error("%s failed to answer", model_id, exc_info=exc)
    return CommandError(f"{model_id} failed to answer: {type(exc).__name__}: {exc}")


# --- chat ---------------------------------------------------------------------------------------


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


# --- compare ------------------------------------------------------------------------------------


def run_compare(paths: AppPaths, args: argparse.Namespace) -> int:
    prompt = read_prompt(args.prompt)
    return asyncio.run(compare(paths, args, prompt))


class SideBySide:
    """Prints two answers one after the other although they may stream at once: A streams live while B's
    tokens wait; once A ends, B's text so far is printed and B goes on live."""

    def __init__(self, labels: dict[str, str], live: bool) -> None:
        self.labels = labels
        self.live = live  # False for --json: collect only
        self.pieces: dict[str, list[str]] = {"a": [], "b": []}
        self.ended: dict[str, Finished | None] = {}
        self.errors: dict[str, str] = {}
        self.current = "a"
        if live:
            self._header("a")

    def token(self, side: str, text: str) -> None:
        self.pieces[side].append(text)
        if self.live and side == self.current:
            sys.stdout.write(text)
            sys.stdout.flush()

    def end(self, side: str, finished: Finished | None, error: str | None = None) -> None:
        self.ended[side] = finished
        if error is not None:
            self.errors[side] = error
        while self.current in self.ended:
            self._close(self.current)
            if self.current == "b":
                break
            self.current = "b"
            if self.live:
                self._header("b")
                sys.stdout.write("".join(self.pieces["b"]))
                sys.stdout.flush()

    def answer(self, side: str) -> str:
        return "".join(self.pieces[side])

    def _header(self, side: str) -> None:
        sys.stdout.write(f"=== {side.upper()}: {self.labels[side]} ===\n")
        sys.stdout.flush()

    def _close(self, side: str) -> None:
        if self.live:
            answer = self.answer(side)
            sys.stdout.write(("\n" if answer and not answer.endswith("\n") else "") + "\n")
            sys.stdout.flush()
        if side in self.errors:
            note(f"{side.upper()} {self.labels[side]} failed: {self.errors[side]}")
        else:
            note(f"{side.upper()} {finish_note(self.labels[side], self.ended[side])}")


async def compare(paths: AppPaths, args: argparse.Namespace, prompt: str) -> int:
    from workbench.core.chat.run import ContextTrimmed, Finished, Token
    from workbench.core.compare.run import CompareRun, Contender, SideFailed, plan_memory

    async with open_services(paths) as services:
        sampling_flags(args)
        ids = {"a": await resolve_chat_model(services, args.model_a),
               "b": await resolve_chat_model(services, args.model_b)}  # fmt: skip
        messages = messages_from(args, services, prompt)
        a, b = (Contender(model_id=ids[side], label=ids[side], sampling=sampling_from(args, services, ids[side]))
                for side in ("a", "b"))  # fmt: skip
        plan = plan_memory(services.manager, a, b)
        note(f"plan: {plan.reason}")
        report_loading(services)
        run = CompareRun(services.manager, a, b, messages, messages, plan)
        sides = SideBySide(ids, live=not args.json)
        with stop_on_interrupt(run.stop) as interrupt:
            async with contextlib.aclosing(run.events()) as items:
                async for item in items:
                    event = item.event
                    if isinstance(event, Token):
                        sides.token(item.side, event.text)
                    elif isinstance(event, ContextTrimmed):
                        note(f"{item.side.upper()}: the prompt was trimmed to fit {event.window} tokens")
                    elif isinstance(event, Finished):
                        sides.end(item.side, event)
                    elif isinstance(event, SideFailed):
                        sides.end(item.side, None, event.error)
        if args.json:
            document: dict[str, Any] = {"plan": {"kind": plan.kind.name.lower(), "reason": plan.reason}}
            for side in ("a", "b"):
                document[side] = {**side_document(ids[side], sides.answer(side), sides.ended.get(side)),
                                  "error": sides.errors.get(side)}  # fmt: skip
            print_json(document)
        if interrupt.hit:
            return EXIT_INTERRUPTED
        return EXIT_ERROR if sides.errors else EXIT_OK
