"""Prompt sets: a file of prompts, read with its problems named by line, and run through both contenders one
prompt after another (nothing stored: the results are kept for the exports in ``replay.py``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.chat.run import ChatMessage
from workbench.core.compare.replay import prompt_record
from workbench.core.compare.results import CompareResults
from workbench.core.compare.run import CompareRun, Contender, MemoryPlan
from workbench.core.models.lifecycle import ModelManager


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


@dataclass(frozen=True)
class PromptAnswered:
    """Both sides have ended on prompt ``number`` (from 1); ``record`` is what the exports keep of it."""

    number: int
    prompt: str
    results: CompareResults
    record: dict[str, Any]


class PromptSetRun:
    """Put each prompt, alone (no history), to both contenders in turn. Iterate ``answers()`` once; ``stop()``
    stops the current prompt within a token and starts no other."""

    def __init__(self, manager: ModelManager, prompts: list[str], a: Contender, b: Contender,
                 plan: MemoryPlan) -> None:  # fmt: skip
        self.manager = manager
        self.prompts = prompts
        self.a, self.b, self.plan = a, b, plan
        self.records: list[dict[str, Any]] = []
        self.stopped = False
        self._run: CompareRun | None = None

    def stop(self) -> None:
        self.stopped = True
        if self._run is not None:
            self._run.stop()

    async def answers(self) -> AsyncGenerator[PromptAnswered, None]:
        for number, prompt in enumerate(self.prompts, 1):
            if self.stopped:
                break
            asked = [ChatMessage("user", prompt)]
            self._run = CompareRun(self.manager, self.a, self.b, asked, list(asked), self.plan)
            results = CompareResults()
            try:
                async with contextlib.aclosing(self._run.events()) as events:
                    async for item in events:
                        results.apply(item)
            finally:
                self._run = None
            record = prompt_record(self.manager, prompt, self.a, self.b, results)
            self.records.append(record)
            yield PromptAnswered(number, prompt, results, record)
