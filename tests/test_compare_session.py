"""The compare reducer (side events into each side's text, figures, error and end) and CompareSession (the stored
run, its results and votes, both histories, the blind coin) on the real manager and inference thread with
scripted fake models and a real Store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec
from workbench.core.chat.run import ContextTrimmed, Finished, GenerationFigures, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.compare.ratings import blind_order
from workbench.core.compare.results import CompareResults
from workbench.core.compare.run import Contender, SideEvent, SideFailed
from workbench.core.compare.session import CompareSession, CompareTurn, SideUpdate
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.storage.compare_runs import CompareRuns
from workbench.core.storage.db import Database
from workbench.core.storage.store import Store

WAIT = 20  # seconds; every wait here is bounded
FIGURES = GenerationFigures(ttft_s=0.1, prompt_tokens=5, prompt_tps=50.0, generation_tokens=2, generation_tps=9.0,
                            peak_memory_gb=0.1)  # fmt: skip


# --- the reducer ----------------------------------------------------------------------------------


def test_tokens_join_and_the_end_brings_figures() -> None:
    results = CompareResults()
    for item in (SideEvent("a", Token("Par")), SideEvent("b", Token("Lon")), SideEvent("a", Token("is"))):
        results.apply(item)
    assert (results["a"].text, results["b"].text) == ("Paris", "Lon")
    assert not results["a"].finished and results["a"].figures is None
    changed = results.apply(SideEvent("a", Finished(FIGURES, stopped=False, finish_reason="stop")))
    assert changed is results["a"] and changed.finished and changed.figures == FIGURES
    assert (changed.finish_reason, changed.stopped) == ("stop", False)
    assert not results.finished  # B has not ended
    results.apply(SideEvent("b", Token("don")))  # a text read earlier is not kept stale
    results.apply(SideEvent("b", Finished(None, stopped=True, finish_reason=None)))
    assert results.finished and results["b"].text == "London" and results["b"].stopped
    assert results.errors == {}


def test_a_failed_side_keeps_its_text_and_says_why() -> None:
    results = CompareResults()
    results.apply(SideEvent("a", ContextTrimmed(dropped=2, prompt_tokens=90, window=100)))
    results.apply(SideEvent("a", Token("half")))
    results.apply(SideEvent("a", SideFailed("the model fell over")))
    results.apply(SideEvent("b", Token("whole")))
    results.apply(SideEvent("b", Finished(FIGURES, stopped=False, finish_reason="stop")))
    a = results["a"]
    assert a.finished and a.error == "the model fell over" and a.figures is None and a.text == "half"
    assert a.trimmed is not None and a.trimmed.dropped == 2
    assert results.errors == {"a": "the model fell over"} and results.answered()
    assert results.stored_fields() == {
        "answer_a": "half", "figures_a": None, "error_a": "the model fell over",
        "answer_b": "whole", "figures_b": FIGURES.to_dict(), "error_b": None,
    }  # fmt: skip


def test_nothing_answered() -> None:
    results = CompareResults()
    results.apply(SideEvent("a", SideFailed("no")))
    results.apply(SideEvent("b", Finished(None, stopped=True, finish_reason=None)))
    assert results.finished and not results.answered()


# --- the session ----------------------------------------------------------------------------------


class CountingRuns(CompareRuns):
    """The real compare-runs repository, counting its writes."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.writes: list[str] = []

    def add_compare_run(self, *args: Any, **kwargs: Any) -> int:
        self.writes.append("add")
        return super().add_compare_run(*args, **kwargs)

    def update_compare_run(self, *args: Any, **kwargs: Any) -> None:
        self.writes.append("update")
        super().update_compare_run(*args, **kwargs)


class CountingStore(Store):
    """The real store, counting the compare writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.compare_runs = CountingRuns(self.db)

    @property
    def writes(self) -> list[str]:
        return self.compare_runs.writes


@dataclass
class Setup:
    manager: ModelManager
    store: CountingStore
    a: FakeChatBackend  # serves "model-a"
    b: FakeChatBackend  # serves "model-b"

    def session(self, seed: int | None = None) -> CompareSession:
        return CompareSession(self.manager, self.store, seed=seed)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    a = FakeChatBackend(Script(tokens=["Paris ", "is ", "big."]), kind="fake-a")
    b = FakeChatBackend(Script(tokens=["Paris ", "is ", "old."]), kind="fake-b")
    manager = ModelManager({a.kind: a, b.kind: b}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(fake_spec("model-a", kind=a.kind))
    manager.register(fake_spec("model-b", kind=b.kind))
    store = CountingStore(tmp_path / "workbench.db")
    yield Setup(manager, store, a, b)
    await manager.aclose()
    store.close()


@pytest.fixture
def contenders() -> Iterator[tuple[Contender, Contender]]:
    yield (Contender("model-a", "alpha", SamplingSettings(temperature=0.0)),
           Contender("model-b", "beta", SamplingSettings(temperature=0.0)))  # fmt: skip


async def drain(turn: CompareTurn) -> list[SideUpdate]:
    async def collect() -> list[SideUpdate]:
        return [update async for update in turn.events()]

    return await asyncio.wait_for(collect(), WAIT)


async def test_a_run_is_stored_once_then_updated_with_the_results(
    setup: Setup, contenders: tuple[Contender, Contender]
) -> None:
    session = setup.session()
    turn = session.ask("capital?", *contenders)
    assert session.running and setup.store.writes == ["add"]
    (stored,) = setup.store.compare_runs.compare_runs()
    assert (stored.id, stored.prompt, stored.answer_a, stored.answer_b) == (turn.run_id, "capital?", "", "")
    assert stored.contender_a["label"] == "alpha" and stored.plan == "together"
    updates = await drain(turn)
    assert not session.running and setup.store.writes == ["add", "update"]
    (stored,) = setup.store.compare_runs.compare_runs()
    assert (stored.answer_a, stored.answer_b) == ("Paris is big.", "Paris is old.")
    assert stored.figures_a is not None and stored.figures_a["generation_tokens"] == 3 and stored.figures_b
    assert (stored.error_a, stored.error_b) == (None, None)
    last = {update.side: update for update in updates}
    assert last["a"].result is turn.results["a"] and isinstance(last["a"].event, Finished)


async def test_each_side_keeps_its_own_error(setup: Setup, contenders: tuple[Contender, Contender]) -> None:
    setup.a.script = Script(tokens=["Par", "is"], fail_after=1)
    session = setup.session()
    turn = session.ask("capital?", *contenders)
    await drain(turn)
    (stored,) = setup.store.compare_runs.compare_runs()
    assert stored.error_a is not None and "fell over" in stored.error_a and stored.answer_a == "Par"
    assert stored.figures_a is None
    assert stored.error_b is None and stored.answer_b == "Paris is old." and stored.figures_b
    assert turn.results.errors.keys() == {"a"}


async def test_a_follow_up_continues_both_conversations(
    setup: Setup, contenders: tuple[Contender, Contender]
) -> None:
    session = setup.session()
    await drain(session.ask("capital?", *contenders))
    await drain(session.ask("and rome?", *contenders))
    assert [(m["role"], m["content"]) for m in setup.a.calls[-1]] == [
        ("user", "capital?"), ("assistant", "Paris is big."), ("user", "and rome?")]  # fmt: skip
    assert setup.b.calls[-1][1]["content"] == "Paris is old."
    assert len(setup.store.compare_runs.compare_runs()) == 2
    session.clear()
    await drain(session.ask("again", *contenders))
    assert [m["content"] for m in setup.a.calls[-1]] == ["again"]


async def test_a_second_question_waits_for_the_first(
    setup: Setup, contenders: tuple[Contender, Contender]
) -> None:
    session = setup.session()
    turn = session.ask("one", *contenders)
    with pytest.raises(RuntimeError, match="still answering"):
        session.ask("two", *contenders)
    with pytest.raises(RuntimeError, match="still answering"):
        session.set_blind(True)
    await drain(turn)
    assert len(setup.store.compare_runs.compare_runs()) == 1


async def test_the_blind_coin_comes_from_blind_order(setup: Setup, contenders: tuple[Contender, Contender]) -> None:
    seen = set()
    for seed in range(12):
        session = setup.session(seed)
        session.set_blind(True)
        coins = []
        for _ in range(2):  # the n-th blind turn uses seed + n
            turn = session.ask("which?", *contenders)
            coins.append(turn.swapped)
            await drain(turn)
            assert setup.store.compare_runs.compare_runs(limit=1)[0].swapped is turn.swapped and turn.blind
        assert coins == [blind_order(seed), blind_order(seed + 1)]
        seen.update(coins)
    assert seen == {True, False}
    plain = setup.session(0)  # not blind: never swapped, whatever the seed says
    turn = plain.ask("plain", *contenders)
    await drain(turn)
    assert not turn.swapped and not turn.blind and not plain.awaiting_vote


async def test_a_blind_vote_is_stored_as_shown_and_reveals_the_names(
    setup: Setup, contenders: tuple[Contender, Contender]
) -> None:
    seed = next(s for s in range(100) if blind_order(s))  # a seed that shows B first
    session = setup.session(seed)
    session.set_blind(True)
    turn = session.ask("which?", *contenders)
    assert not session.awaiting_vote  # not before the answers
    await drain(turn)
    assert turn.swapped and session.awaiting_vote and turn.shown("b") == "a"
    reveal = session.vote("a")  # the first column: contender B's answer
    assert (reveal.first, reveal.second, reveal.labels) == ("beta", "alpha", {"a": "alpha", "b": "beta"})
    assert setup.store.votes.compare_votes() == [("alpha", "beta", "b")]
    assert not session.awaiting_vote
    with pytest.raises(RuntimeError, match="awaits a vote"):
        session.vote("a")
    await drain(session.ask("again?", *contenders))
    assert session.awaiting_vote
    session.set_blind(False)  # blind off drops the pending vote
    assert not session.awaiting_vote and len(setup.store.votes.compare_votes()) == 1


async def test_leaving_the_events_early_still_stores_what_came(
    setup: Setup, contenders: tuple[Contender, Contender]
) -> None:
    slow = Script(tokens=[f"w{i} " for i in range(300)], delay_s=0.01)
    setup.a.script, setup.b.script = slow, slow
    session = setup.session()
    turn = session.ask("go", *contenders)

    async def first_word() -> None:
        async with contextlib.aclosing(turn.events()) as updates:
            async for update in updates:
                if isinstance(update.event, Token):
                    return

    await asyncio.wait_for(first_word(), WAIT)
    assert not session.running and setup.store.writes == ["add", "update"]
    (stored,) = setup.store.compare_runs.compare_runs()
    assert stored.answer_a.startswith("w0 ") or stored.answer_b.startswith("w0 ")
    assert setup.a.emitted < 300 and setup.b.emitted < 300
