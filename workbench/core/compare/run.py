"""Compare: one prompt, two contenders, side by side; the memory plan, word diff, votes and replay records.

A contender is a model with its settings, so the two sides may be two models or one model with two
settings. :func:`plan_memory` decides before a run whether both fit the budget together (then both
answers stream at once and the inference thread decodes them step by step in turn) or must run one
after the other (A to the end, A unloaded, then B). :class:`CompareRun` streams both sides as
:class:`SideEvent` s; one side failing never stops the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import json
import logging
import os
import platform
import random
import re
import struct
import sys
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from workbench.core.chat.figures import format_figures
from workbench.core.chat.run import ChatError, ChatMessage, ChatRun, ContextTrimmed, Finished, GenerationFigures, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import format_bytes
from workbench.core.models.spec import ModelBusyError, ModelManagerError, ModelState

log = logging.getLogger(__name__)

SIDES = ("a", "b")


@dataclass(frozen=True)
class Contender:
    model_id: str
    label: str  # the name votes and the leaderboard use: two settings of one model need two labels
    sampling: SamplingSettings
    system_prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "label": self.label, "sampling": self.sampling.to_dict(),
                "system_prompt": self.system_prompt}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contender:
        return cls(model_id=data["model_id"], label=data.get("label") or data["model_id"],
                   sampling=SamplingSettings.from_dict(data.get("sampling", {})),
                   system_prompt=data.get("system_prompt", ""))  # fmt: skip


# --- the memory plan ----------------------------------------------------------------------------


class PlanKind(StrEnum):
    """How the two sides run. The value is a code: what a stored run keeps and ``compare --json`` writes."""

    TOGETHER = "together"
    SEQUENTIAL = "sequential"

    @property
    def label(self) -> str:
        """For people: "together" or "one after the other"."""
        return "one after the other" if self is PlanKind.SEQUENTIAL else self.value


@dataclass(frozen=True)
class MemoryPlan:
    kind: PlanKind
    reason: str  # for people: "1.2 GB + 4.5 GB > 4.0 GB budget: one after the other"


def plan_memory(manager: ModelManager, a: Contender, b: Contender) -> MemoryPlan:
    """Together when one model serves both sides or both fit the budget beside what cannot be evicted
    (models in use or pinned); otherwise one after the other. A model of unknown size runs alone."""
    if a.model_id == b.model_id:
        return MemoryPlan(PlanKind.TOGETHER, "one model, two settings: both at once")
    cost_a, cost_b = manager.cost_of(a.model_id), manager.cost_of(b.model_id)
    if cost_a is None or cost_b is None:
        unknown = a if cost_a is None else b
        return MemoryPlan(PlanKind.SEQUENTIAL, f"the size of {unknown.label} is unknown: one after the other")
    budget = manager.budget.bytes
    held = manager.unevictable_bytes(exclude={a.model_id, b.model_id})
    sum_text = f"{format_bytes(cost_a)} + {format_bytes(cost_b)}"
    if held:
        sum_text += f" + {format_bytes(held)} held by models in use or pinned"
    if cost_a + cost_b + held <= budget:
        return MemoryPlan(PlanKind.TOGETHER, f"{sum_text} ≤ {format_bytes(budget)} budget: both at once")
    return MemoryPlan(PlanKind.SEQUENTIAL, f"{sum_text} > {format_bytes(budget)} budget: one after the other")


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SideFailed:
    error: str  # for people


@dataclass(frozen=True)
class SideEvent:
    side: str  # "a" or "b"
    event: Token | ContextTrimmed | Finished | SideFailed


def messages_for(contender: Contender, history: list[ChatMessage]) -> list[ChatMessage]:
    """What one side sends: the contender's system prompt (when set, replacing any in ``history``) and the turns."""
    if not contender.system_prompt:
        return list(history)
    turns = [m for m in history if m.role != "system"]
    return [ChatMessage("system", contender.system_prompt), *turns]


class CompareRun:
    """Stream both sides' answers. Iterate ``events()`` once; ``stop()`` stops both within a token.

    Each side ends with exactly one ``Finished`` or ``SideFailed``; the figures of a side are in its
    ``Finished`` event.
    """

    def __init__(
        self,
        manager: ModelManager,
        a: Contender,
        b: Contender,
        history_a: list[ChatMessage],
        history_b: list[ChatMessage],
        plan: MemoryPlan,
    ) -> None:
        self.manager = manager
        self.contenders = {"a": a, "b": b}
        self.plan = plan
        self.runs = {
            side: ChatRun(manager, contender.model_id, messages_for(contender, history), contender.sampling)
            for side, contender, history in (("a", a, history_a), ("b", b, history_b))
        }

    def stop(self) -> None:
        for run in self.runs.values():
            run.stop()

    @property
    def stop_requested(self) -> bool:
        return any(run.stop_requested for run in self.runs.values())

    async def events(self) -> AsyncGenerator[SideEvent, None]:
        queue: asyncio.Queue[SideEvent | None] = asyncio.Queue()
        if self.plan.kind is PlanKind.TOGETHER:
            jobs = [self._side(side, queue) for side in SIDES]
        else:
            jobs = [self._one_after_the_other(queue)]
        tasks = [asyncio.ensure_future(job) for job in jobs]
        running = len(tasks)
        try:
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                else:
                    yield item
        finally:
            if not all(task.done() for task in tasks):  # the consumer left early: stop both sides
                self.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one_after_the_other(self, queue: asyncio.Queue[SideEvent | None]) -> None:
        try:
            await self._pump("a", queue)
            await self._unload_if_idle(self.contenders["a"].model_id)
            await self._pump("b", queue)
        finally:
            queue.put_nowait(None)

    async def _side(self, side: str, queue: asyncio.Queue[SideEvent | None]) -> None:
        try:
            await self._pump(side, queue)
        finally:
            queue.put_nowait(None)

    async def _pump(self, side: str, queue: asyncio.Queue[SideEvent | None]) -> None:
        """Run one side to its end, turning whatever goes wrong into ``SideFailed``."""
        run = self.runs[side]
        if run.stop_requested:  # stopped before it began: do not load a model just to stop
            queue.put_nowait(SideEvent(side, Finished(figures=None, stopped=True, finish_reason=None)))
            return
        ended = False
        try:
            async with contextlib.aclosing(run.events()) as events:
                async for event in events:
                    ended = ended or isinstance(event, Finished)
                    queue.put_nowait(SideEvent(side, event))
        except (ModelManagerError, ChatError) as exc:
            if not ended:
                queue.put_nowait(SideEvent(side, SideFailed(str(exc))))
            ended = True
        except Exception as exc:  # a backend failing mid-answer
            log.exception("compare side %s failed", side)
            if not ended:
                queue.put_nowait(SideEvent(side, SideFailed(f"{type(exc).__name__}: {exc}")))
            ended = True
        if not ended:
            queue.put_nowait(SideEvent(side, Finished(figures=None, stopped=run.stop_requested, finish_reason=None)))

    async def _unload_if_idle(self, model_id: str) -> None:
        if model_id == self.contenders["b"].model_id:
            return
        try:
            info = self.manager.info(model_id)
            if info.state is ModelState.READY and info.leases == 0 and not info.pinned:
                await self.manager.unload(model_id)
        except ModelBusyError:
            pass  # someone else borrowed it meanwhile: the manager evicts what it must when B loads
        except ModelManagerError as exc:
            log.warning("could not unload %s between compare sides: %s", model_id, exc)


# --- word diff ----------------------------------------------------------------------------------


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """Runs of ``("same" | "a" | "b", text)``: the "same" and "a" texts joined give ``a``, "same" and "b" give ``b``.

    Words keep their whitespace as separate tokens, so the runs join back to the exact texts.
    """
    words_a, words_b = _words(a), _words(b)
    ops: list[tuple[str, str]] = []

    def add(kind: str, tokens: list[str]) -> None:
        if not tokens:
            return
        text = "".join(tokens)
        if ops and ops[-1][0] == kind:
            ops[-1] = (kind, ops[-1][1] + text)
        else:
            ops.append((kind, text))

    matcher = difflib.SequenceMatcher(None, words_a, words_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("same", words_a[i1:i2])
        else:  # replace, delete, insert
            add("a", words_a[i1:i2])
            add("b", words_b[j1:j2])
    return ops


def _words(text: str) -> list[str]:
    return re.findall(r"\s+|\S+", text)


# --- votes and ratings --------------------------------------------------------------------------

OUTCOMES = ("a", "b", "tie", "both_bad")


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    games: int
    wins: int
    losses: int
    ties: int
    both_bad: int

    @property
    def win_rate(self) -> float:
        """Wins plus half the draws over all games; a "both bad" vote counts as a draw here, as in the rating."""
        if not self.games:
            return 0.0
        return (self.wins + (self.ties + self.both_bad) / 2) / self.games


def elo_ratings(votes: Iterable[tuple[str, str, str]], k: float = 32, start: float = 1000) -> list[Rating]:
    """Elo ratings from ``(model_a, model_b, outcome)`` votes taken in order; highest rating first.

    "a" and "b" name the winner; "tie" and "both_bad" both score half a point each (neither answer was
    preferred, as Chatbot Arena counts a "both bad" vote). A vote of a model against itself says nothing
    and is skipped. Elo depends on the order of the votes; the same votes in the same order always give
    the same ratings (ties in rating are listed by name).
    """
    ratings: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for model_a, model_b, outcome in votes:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown vote {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        if model_a == model_b:
            continue
        for model in (model_a, model_b):
            ratings.setdefault(model, start)
            counts.setdefault(model, {"games": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0})
        score_a = {"a": 1.0, "b": 0.0}.get(outcome, 0.5)
        expected_a = 1 / (1 + 10 ** ((ratings[model_b] - ratings[model_a]) / 400))
        ratings[model_a] += k * (score_a - expected_a)
        ratings[model_b] -= k * (score_a - expected_a)
        counts[model_a]["games"] += 1
        counts[model_b]["games"] += 1
        if outcome == "a":
            counts[model_a]["wins"] += 1
            counts[model_b]["losses"] += 1
        elif outcome == "b":
            counts[model_b]["wins"] += 1
            counts[model_a]["losses"] += 1
        else:
            key = "ties" if outcome == "tie" else "both_bad"
            counts[model_a][key] += 1
            counts[model_b][key] += 1
    table = [Rating(model=model, rating=ratings[model], **counts[model]) for model in ratings]
    return sorted(table, key=lambda r: (-r.rating, r.model))


def blind_order(seed: int | None = None) -> bool:
    """Whether blind mode shows the sides swapped (B first): a fair coin, reproducible with ``seed``."""
    return random.Random(seed).random() < 0.5


# --- prompt sets --------------------------------------------------------------------------------


def load_prompt_set(path: Path) -> tuple[list[str], list[str]]:
    """The prompts of a file and the problems found in it (each naming its line; bad lines are skipped).

    A ``.jsonl`` file holds one JSON object per line with a "prompt" string; any other file holds one
    prompt per non-empty line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"cannot read {path}: {exc}"]
    prompts: list[str] = []
    problems: list[str] = []
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not jsonl:
            prompts.append(line.strip())
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f'line {number}: no "prompt" text')
            continue
        prompts.append(prompt)
    return prompts, problems


# --- replay records and export ------------------------------------------------------------------

_SNAPSHOT = re.compile(r"[0-9a-f]{40}")


def replay_record(
    manager: ModelManager, contender: Contender, answer: str, figures: GenerationFigures | None
) -> dict[str, Any]:
    """Everything needed to run one side again: which model exactly (repo and revision from the Hugging Face
    cache, else a fingerprint of config.json and the safetensors headers), quantization, chat template,
    sampling, seed, machine and figures. Reads a few small files: call it off the event loop for many."""
    path = manager.info(contender.model_id).spec.path
    folder = path if path.is_dir() else path.parent
    config = _read_json(folder / "config.json")
    repo_id, revision = hf_snapshot(path)
    return {
        "model_id": contender.model_id,
        "label": contender.label,
        "path": str(path),
        "repo_id": repo_id,
        "revision": revision,
        "fingerprint": None if revision else model_fingerprint(folder),
        "quantization": config.get("quantization") if config else None,
        "chat_template_sha256": chat_template_hash(folder),
        "system_prompt": contender.system_prompt,
        "sampling": contender.sampling.to_dict(),
        "seed": contender.sampling.seed,
        "machine": machine(),
        "figures": None if figures is None else figures.to_dict(),
        "answer": answer,
    }


def hf_snapshot(path: Path) -> tuple[str | None, str | None]:
    """``(repo id, commit)`` when ``path`` lies in a cache snapshot ``models--org--name/snapshots/<commit>/``."""
    for snapshot in (path, *path.parents):
        snapshots, repo = snapshot.parent, snapshot.parent.parent
        if snapshots.name == "snapshots" and _SNAPSHOT.fullmatch(snapshot.name) and repo.name.startswith("models--"):
            return repo.name.removeprefix("models--").replace("--", "/"), snapshot.name
    return None, None


def model_fingerprint(folder: Path) -> str | None:
    """sha256 of config.json and each safetensors file's name and header (never the weights); None if neither."""
    digest = hashlib.sha256()
    found = False
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
        found = True
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with open(weights, "rb") as f:
                prefix = f.read(8)
                (length,) = struct.unpack("<Q", prefix)
                header = f.read(min(length, 100 * 1024 * 1024))
        except (OSError, struct.error):
            continue
        digest.update(weights.name.encode())
        digest.update(prefix + header)
        found = True
    return digest.hexdigest() if found else None


def chat_template_hash(folder: Path) -> str | None:
    """sha256 of chat_template.jinja, else of tokenizer_config.json's "chat_template"; None without either."""
    template = folder / "chat_template.jinja"
    if template.is_file():
        return hashlib.sha256(template.read_bytes()).hexdigest()
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    value = tokenizer_config.get("chat_template") if tokenizer_config else None
    if not value:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def machine() -> dict[str, Any]:
    """The platform, CPU and Python; the MLX device only when MLX is already imported (never imports it)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        try:
            info["mlx_device"] = str(mx.default_device())
        except Exception:  # an MLX too old or too broken to say
            log.debug("no MLX device", exc_info=True)
    return info


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def export_jsonl(results: list[dict[str, Any]]) -> str:
    """One JSON object per result: {"prompt", "a", "b", "answer_a", "answer_b", "vote"?}."""
    return "".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results)


def export_markdown(results: list[dict[str, Any]]) -> str:
    """A readable report: the two contenders and the machine once, then each prompt with both answers."""
    if not results:
        return "# Compare results\n\nNo results.\n"
    first = results[0]
    blocks = ["# Compare results"]
    rows = ["| | A | B |", "|---|---|---|"]
    for title, key in (("Model", "model_id"), ("Label", "label"), ("Repo", "repo_id"), ("Revision", "revision"),
                       ("Fingerprint", "fingerprint"), ("Quantization", "quantization"),
                       ("Chat template sha256", "chat_template_sha256"), ("System prompt", "system_prompt"),
                       ("Sampling", "sampling")):  # fmt: skip
        rows.append(f"| {title} | {_cell(first['a'].get(key))} | {_cell(first['b'].get(key))} |")
    blocks.append("\n".join(rows))
    blocks.append(f"Machine: {_cell(first['a'].get('machine'))}")
    for number, result in enumerate(results, start=1):
        blocks.append(f"## {number}. {_first_line(result['prompt'])}")
        if "\n" in result["prompt"].strip():
            blocks.append("\n".join(f"> {line}".rstrip() for line in result["prompt"].splitlines()))
        if result.get("vote"):
            blocks.append(f"Vote: **{result['vote']}**")
        for side in SIDES:
            record = result[side]
            blocks.append(f"### {side.upper()}: {record.get('label') or record.get('model_id')}")
            blocks.append(result.get(f"answer_{side}") or "_(no answer)_")
            if record.get("figures"):
                blocks.append(f"_{_figures_text(record['figures'])}_")
    return "\n\n".join(blocks) + "\n"


def _figures_text(figures: dict[str, Any]) -> str:
    return format_figures(figures) or json.dumps(figures)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(empty prompt)"
    return line if len(line) <= 80 else line[:79] + "…"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


__all__ = [
    "CompareRun",
    "Contender",
    "MemoryPlan",
    "PlanKind",
    "Rating",
    "SideEvent",
    "SideFailed",
    "blind_order",
    "elo_ratings",
    "export_jsonl",
    "export_markdown",
    "load_prompt_set",
    "messages_for",
    "plan_memory",
    "replay_record",
    "word_diff",
]
