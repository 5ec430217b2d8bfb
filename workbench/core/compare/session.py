"""A compare conversation: both sides' histories, the stored runs and their votes, and blind mode's coin.

The Compare pane sends intents here (ask, stop, vote, a new conversation, blind on or off) and renders what comes
back. :meth:`CompareSession.ask` stores the run once when it starts, flips the blind coin with
:func:`~workbench.core.compare.ratings.blind_order`, and gives a :class:`CompareTurn` whose events update the
stored run with the results (answers, figures, errors) when both sides have ended, however the turn ends.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.core.chat.run import ChatMessage, ContextTrimmed, Finished, Reading, Token
from workbench.core.compare.ratings import blind_order
from workbench.core.compare.results import CompareResults, SideResult
from workbench.core.compare.run import SIDES, CompareRun, Contender, MemoryPlan, PlanKind, SideFailed, plan_memory
from workbench.core.models.lifecycle import ModelManager
from workbench.core.prompt_cache.reuse import new_compare_cache_key

if TYPE_CHECKING:
    from workbench.core.storage.store import Store


@dataclass(frozen=True)
class SideUpdate:
    """One event of one side and that side's result with it folded in."""

    side: str
    event: Token | ContextTrimmed | Reading | Finished | SideFailed
    result: SideResult


@dataclass(frozen=True)
class Reveal:
    """After a blind vote: who answered. ``labels`` by side ("a", "b"); ``first`` and ``second`` in the order the
    answers were shown."""

    labels: dict[str, str]
    first: str
    second: str


class CompareTurn:
    """One prompt put to both sides. Iterate ``events()`` once (the session counts the turn as answering until
    they end, then stores the results); ``stop()`` stops both within a token."""

    def __init__(self, session: CompareSession, run_id: int, run: CompareRun, *, blind: bool, swapped: bool) -> None:
        self.session = session
        self.run_id = run_id
        self.run = run
        self.blind = blind
        self.swapped = swapped  # blind mode shows contender B first
        self.results = CompareResults()
        self.contenders: dict[str, Contender] = dict(run.contenders)
        self.ended = False

    def shown(self, side: str) -> str:
        """The column a side shows in: in blind mode the sides may be swapped."""
        return {"a": "b", "b": "a"}[side] if self.swapped else side

    def stop(self) -> None:
        self.run.stop()

    async def events(self) -> AsyncGenerator[SideUpdate, None]:
        try:
            async with contextlib.aclosing(self.run.events()) as items:
                async for item in items:
                    yield SideUpdate(item.side, item.event, self.results.apply(item))
        finally:
            self.session._turn_ended(self)


class CompareSession:
    """Owns what a compare conversation keeps: the histories sent, the store writes and the blind coin.

    ``seed`` makes the coin reproducible: the n-th blind turn (from 0) uses ``blind_order(seed + n)``.
    """

    def __init__(self, manager: ModelManager, store: Store, seed: int | None = None) -> None:
        self.manager = manager
        self.store = store
        self.history: dict[str, list[ChatMessage]] = {side: [] for side in SIDES}
        self.blind = False
        self.turn: CompareTurn | None = None  # the one answering now
        self.votable: CompareTurn | None = None  # the last blind turn, ended with an answer and not yet voted on
        self._seeds: Iterator[int | None] = itertools.count(seed) if seed is not None else itertools.repeat(None)
        self._cache_key = new_compare_cache_key()

    @property
    def running(self) -> bool:
        return self.turn is not None

    @property
    def awaiting_vote(self) -> bool:
        return self.votable is not None

    def plan(self, a: Contender, b: Contender) -> MemoryPlan:
        return plan_memory(self.manager, a, b)

    def ask(self, prompt: str, a: Contender, b: Contender, plan: MemoryPlan | None = None) -> CompareTurn:
        """Put ``prompt`` to both sides after their histories; the run is stored now, its results when it ends."""
        if self.turn is not None:
            raise RuntimeError("a comparison is still answering")
        plan = plan or self.plan(a, b)
        swapped = blind_order(next(self._seeds)) if self.blind else False
        for side in SIDES:
            self.history[side].append(ChatMessage("user", prompt))
        # One after the other, A is unloaded for B, which drops its prompt caches: each side's cache is then saved
        # (under this conversation's keys) and read back for its follow-up.
        keys = self._cache_keys() if plan.kind is PlanKind.SEQUENTIAL else None
        run = CompareRun(self.manager, a, b, list(self.history["a"]), list(self.history["b"]), plan, keys)
        run_id = self.store.compare_runs.add_compare_run(
            prompt=prompt, a=a.to_dict(), b=b.to_dict(), plan=plan.kind, blind=self.blind, swapped=swapped
        )
        self.votable = None
        self.turn = CompareTurn(self, run_id, run, blind=self.blind, swapped=swapped)
        return self.turn

    def stop(self) -> None:
        if self.turn is not None:
            self.turn.stop()

    def _turn_ended(self, turn: CompareTurn) -> None:
        """Once per turn, however its events end: the answers join the histories and the stored run."""
        if turn.ended:
            return
        turn.ended = True
        if self.turn is turn:
            self.turn = None
        for side in SIDES:
            if turn.results[side].text:
                self.history[side].append(ChatMessage("assistant", turn.results[side].text))
        if turn.blind and turn.results.answered():
            self.votable = turn
        self.store.compare_runs.update_compare_run(turn.run_id, **turn.results.stored_fields())

    def vote(self, outcome: str) -> Reveal:
        """Record a blind vote on the last turn as the user cast it: "a" is the answer shown first, "b" the other,
        or "tie", "both_bad" (the store maps swapped sides back). Returns who answered in which column."""
        turn = self.votable
        if turn is None:
            raise RuntimeError("no blind answer awaits a vote")
        self.store.votes.add_compare_vote(turn.run_id, outcome)
        self.votable = None
        labels = {side: turn.contenders[side].label for side in SIDES}
        first, second = (labels["b"], labels["a"]) if turn.swapped else (labels["a"], labels["b"])
        return Reveal(labels, first, second)

    def set_blind(self, on: bool) -> None:
        """Blind mode hides the names and shuffles the sides from the next prompt on; turning it off drops a
        pending vote."""
        if self.turn is not None:
            raise RuntimeError("a comparison is still answering")
        self.blind = on
        if not on:
            self.votable = None

    def clear(self) -> None:
        """A new conversation: both histories empty, no vote pending."""
        if self.turn is not None:
            raise RuntimeError("a comparison is still answering")
        self.history = {side: [] for side in SIDES}
        self.votable = None
        self.forget_saved_caches()
        self._cache_key = new_compare_cache_key()

    def forget_saved_caches(self) -> None:
        """Delete the prompt caches this conversation saved (it is over: cleared, or the app is closing)."""
        for key in self._cache_keys().values():
            self.manager.forget_saved_cache(key)

    def _cache_keys(self) -> dict[str, str]:
        return {side: f"{self._cache_key}-{side}" for side in SIDES}
