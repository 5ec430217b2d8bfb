"""Compare: one prompt, two contenders, side by side; the memory plan and the run that streams both sides.

A contender is a model with its settings, so the two sides may be two models or one model with two
settings. :func:`plan_memory` decides before a run whether both fit the budget together (then both
answers stream at once and the inference thread decodes them step by step in turn) or must run one
after the other (A to the end, A unloaded, then B). :class:`CompareRun` streams both sides as
:class:`SideEvent` s; one side failing never stops the other. What the events add up to is in
``results.py``; a conversation of runs, with its stored runs, votes and blind coin, in ``session.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workbench.core.chat.run import ChatError, ChatMessage, ChatRun, ContextTrimmed, Finished, Reading, Token
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
    event: Token | ContextTrimmed | Reading | Finished | SideFailed


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
        cache_keys: dict[str, str] | None = None,
    ) -> None:
        """``cache_keys`` names each side's conversation when its prompt cache should also be saved to disk."""
        self.manager = manager
        self.contenders = {"a": a, "b": b}
        self.plan = plan
        self.runs = {
            side: ChatRun(manager, contender.model_id, messages_for(contender, history), contender.sampling,
                          holder="Compare", conversation=(cache_keys or {}).get(side))
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


__all__ = [
    "SIDES",
    "CompareRun",
    "Contender",
    "MemoryPlan",
    "PlanKind",
    "SideEvent",
    "SideFailed",
    "messages_for",
    "plan_memory",
]
