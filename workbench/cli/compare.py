"""`workbench compare`: one prompt answered by two chat models, as the Compare pane does; each answer under its
header on stdout, the plan and the figures on stderr.

A face of the engine (workbench.server.engine_compare_once), as `workbench chat` is: it starts the engine when none runs
and shows what the engine streams; the models stay loaded there for the next call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.cli.chat import STOP_GRACE_S, refusal, stop_quietly
from workbench.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    add_command,
    attach_engine,
    note,
    print_json,
    read_prompt,
    stop_on_interrupt,
)
from workbench.cli.generation import GENERATION_EXIT_CODES, add_generation_arguments, figures_note, sampling_flags

if TYPE_CHECKING:
    from pathlib import Path

    from workbench.core.settings.paths import AppPaths

SIDES = ("a", "b")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = add_command(
        commands, "compare", run_compare, "answer one prompt with two chat models and show both answers",
        "Answer PROMPT with models A and B, as the Compare pane does. From the memory budget the workbench decides "
        "whether both run at once or one after the other (A, then A unloaded, then B) and says which on stderr. "
        "Each answer comes under a header on stdout, its figures on stderr. One side failing does not stop the "
        "other. The engine answers (started when none runs).",
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
    body: dict[str, Any] = {"a": args.model_a, "b": args.model_b, "prompt": prompt, **sampling_flags(args)}
    if args.system is not None:
        body["system"] = args.system
    return asyncio.run(compare(attach_engine(paths), body, as_json=args.json))


@dataclass
class Side:
    model: str
    pieces: list[str] = field(default_factory=list)
    finished: dict[str, Any] | None = None
    error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def ended(self) -> bool:
        return self.finished is not None or self.error is not None

    def document(self) -> dict[str, Any]:
        end = self.finished or {}
        return {"model": self.model, "answer": self.text, "figures": end.get("figures"),
                "finish_reason": end.get("finish_reason"), "stopped": bool(end.get("stopped")),
                "error": self.error}  # fmt: skip


class SideBySide:
    """Prints two answers one after the other although they may stream at once: A streams live while B's
    tokens wait; once A ends, B's text so far is printed and B goes on live."""

    def __init__(self, labels: dict[str, str], live: bool) -> None:
        self.labels = labels
        self.live = live  # False for --json: collect only
        self.sides = {side: Side(labels[side]) for side in SIDES}
        self.current = "a"
        if live:
            self._header("a")

    def apply(self, line: dict[str, Any]) -> None:
        side = self.sides[line["side"]]
        kind = line.get("type")
        if kind == "token":
            side.pieces.append(line["text"])
            if self.live and line["side"] == self.current:
                sys.stdout.write(line["text"])
                sys.stdout.flush()
        elif kind == "trimmed":
            note(f"{line['side'].upper()}: the prompt was trimmed to fit {line.get('window')} tokens")
        elif kind in ("finished", "error"):
            if kind == "finished":
                side.finished = line
            else:
                side.error = str(line.get("message"))
            self._close_ended()

    def _close_ended(self) -> None:
        while self.sides[self.current].ended:
            self._close(self.current)
            if self.current == "b":
                break
            self.current = "b"
            if self.live:
                self._header("b")
                sys.stdout.write(self.sides["b"].text)
                sys.stdout.flush()

    def _header(self, side: str) -> None:
        sys.stdout.write(f"=== {side.upper()}: {self.labels[side]} ===\n")
        sys.stdout.flush()

    def _close(self, name: str) -> None:
        side = self.sides[name]
        if self.live:
            sys.stdout.write(("\n" if side.text and not side.text.endswith("\n") else "") + "\n")
            sys.stdout.flush()
        if side.error is not None:
            note(f"{name.upper()} {self.labels[name]} failed: {side.error}")
        else:
            end = side.finished or {}
            note(f"{name.upper()} " + figures_note(self.labels[name], end.get("summary"), bool(end.get("stopped")),
                                                   end.get("finish_reason")))  # fmt: skip


async def compare(socket: Path, body: dict[str, Any], as_json: bool = False) -> int:
    """Stream both answers from the engine on ``socket``; ctrl+c as in `workbench chat`."""
    from workbench.client.engine import EngineClient, EngineGone, EngineNotRunning, EngineRequestError

    client = EngineClient(socket)
    labels = {"a": body["a"], "b": body["b"]}
    sides: SideBySide | None = None
    plan: dict[str, Any] = {}
    job: str | None = None
    stop_asked = False
    failure: str | None = None
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    pending: set[asyncio.Task[Any]] = set()
    hang_up: asyncio.TimerHandle | None = None

    def ask_to_stop() -> None:
        if job is not None:
            request = asyncio.ensure_future(stop_quietly(client, job))
            pending.add(request)
            request.add_done_callback(pending.discard)

    def on_interrupt() -> None:
        nonlocal hang_up, stop_asked
        stop_asked = True
        ask_to_stop()
        if task is not None:
            hang_up = loop.call_later(STOP_GRACE_S, task.cancel)

    try:
        with stop_on_interrupt(on_interrupt) as interrupt:
            async with contextlib.aclosing(client.compare(body)) as lines:
                async for line in lines:
                    kind = line.get("type")
                    if "side" in line and sides is not None:
                        sides.apply(line)
                    elif kind == "note":
                        note(str(line.get("message")))
                    elif kind == "job":
                        job = str(line.get("id"))
                        if stop_asked:
                            ask_to_stop()
                    elif kind == "plan":
                        plan = {"kind": line.get("kind"), "reason": line.get("reason")}
                        note(f"plan: {plan['reason']}")
                        sides = SideBySide(labels, live=not as_json)
                    elif kind == "error":
                        failure = str(line.get("message"))
    except EngineRequestError as exc:
        side = exc.document.get("side")
        raise refusal(exc, labels[side] if side in labels else body["a"]) from exc
    except EngineNotRunning as exc:
        raise CommandError(f"no engine answers on {exc} (it stopped before answering); try again") from exc
    except EngineGone as exc:
        raise CommandError(f"the engine stopped in the middle of the comparison ({exc})") from exc
    finally:
        if hang_up is not None:
            hang_up.cancel()
    if sides is None or failure is not None:
        raise CommandError(failure or "the engine ended the comparison before it began")
    if as_json:
        print_json({"plan": plan, **{name: side.document() for name, side in sides.sides.items()}})
    if interrupt.hit:
        return EXIT_INTERRUPTED
    if not all(side.ended for side in sides.sides.values()):
        raise CommandError("the engine ended the comparison before both answers ended")
    return EXIT_ERROR if any(side.error is not None for side in sides.sides.values()) else EXIT_OK
