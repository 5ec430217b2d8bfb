"""`workbench compare`: one prompt answered by two chat models, as the Compare pane does; each answer under its
header on stdout, the plan and the figures on stderr. The events go through core's one reducer
(:class:`~workbench.core.compare.results.CompareResults`), as in the pane and the prompt sets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from workbench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
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
    from workbench.core.compare.run import SideEvent
    from workbench.core.settings.paths import AppPaths


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    add_generation_arguments(compare)
    compare.add_argument("--json", action="store_true",
                         help='one JSON object on stdout: {"plan": {"kind", "reason"}, "a": {...}, "b": {...}}, '
                         'each side as chat --json gives it, plus "error"')  # fmt: skip


def run_compare(paths: AppPaths, args: argparse.Namespace) -> int:
    prompt = read_prompt(args.prompt)
    return asyncio.run(compare(paths, args, prompt))


class SideBySide:
    """Prints two answers one after the other although they may stream at once: A streams live while B's
    tokens wait; once A ends, B's text so far is printed and B goes on live. What each side has given is in
    ``results`` (core's reducer)."""

    def __init__(self, labels: dict[str, str], live: bool) -> None:
        from workbench.core.compare.results import CompareResults

        self.labels = labels
        self.live = live  # False for --json: collect only
        self.results = CompareResults()
        self.current = "a"
        if live:
            self._header("a")

    def apply(self, item: SideEvent) -> None:
        from workbench.core.chat.run import ContextTrimmed, Token

        result = self.results.apply(item)
        event = item.event
        if isinstance(event, Token):
            if self.live and item.side == self.current:
                sys.stdout.write(event.text)
                sys.stdout.flush()
        elif isinstance(event, ContextTrimmed):
            note(f"{item.side.upper()}: the prompt was trimmed to fit {event.window} tokens")
        elif result.finished:
            self._close_ended()

    def _close_ended(self) -> None:
        while self.results[self.current].finished:
            self._close(self.current)
            if self.current == "b":
                break
            self.current = "b"
            if self.live:
                self._header("b")
                sys.stdout.write(self.results["b"].text)
                sys.stdout.flush()

    def _header(self, side: str) -> None:
        sys.stdout.write(f"=== {side.upper()}: {self.labels[side]} ===\n")
        sys.stdout.flush()

    def _close(self, side: str) -> None:
        result = self.results[side]
        if self.live:
            answer = result.text
            sys.stdout.write(("\n" if answer and not answer.endswith("\n") else "") + "\n")
            sys.stdout.flush()
        if result.error is not None:
            note(f"{side.upper()} {self.labels[side]} failed: {result.error}")
        else:
            note(f"{side.upper()} {finish_note(self.labels[side], result.end)}")


async def compare(paths: AppPaths, args: argparse.Namespace, prompt: str) -> int:
    from workbench.core.compare.run import CompareRun, Contender, plan_memory

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
                    sides.apply(item)
        if args.json:
            document: dict[str, Any] = {"plan": {"kind": plan.kind.name.lower(), "reason": plan.reason}}
            for side in ("a", "b"):
                result = sides.results[side]
                document[side] = {**side_document(ids[side], result.text, result.end), "error": result.error}
            print_json(document)
        if interrupt.hit:
            return EXIT_INTERRUPTED
        return EXIT_ERROR if sides.results.errors else EXIT_OK
