"""Compare: the memory plan, both sides streaming on the real manager and inference thread (scripted fake
models), stop, failures, the word diff, Elo, the stored runs and votes, prompt sets and replay records."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec
from workbench.core.chat.run import ChatMessage, Finished, GenerationFigures, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.compare.diff import word_diff
from workbench.core.compare.prompt_set import load_prompt_set
from workbench.core.compare.ratings import blind_order, elo_ratings
from workbench.core.compare.replay import export_jsonl, export_markdown, replay_record
from workbench.core.compare.run import CompareRun, Contender, MemoryPlan, PlanKind, SideEvent, SideFailed, plan_memory
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ManagerEvent, ModelManager
from workbench.core.models.memory import GB, MB, Budget
from workbench.core.models.spec import ModelSpec, ModelState
from workbench.core.storage.compare_runs import PLAN_CODES
from workbench.core.storage.store import Store

WAIT = 20  # seconds; every wait here is bounded

TOGETHER = MemoryPlan(PlanKind.TOGETHER, "test")
SEQUENTIAL = MemoryPlan(PlanKind.SEQUENTIAL, "test")


@dataclass
class Pair:
    manager: ModelManager
    a: FakeChatBackend  # serves "model-a"
    b: FakeChatBackend  # serves "model-b"


async def make_pair(budget: int = GB, weights_a: int = 10 * MB, weights_b: int = 10 * MB) -> Pair:
    a = FakeChatBackend(kind="fake-a", weights=weights_a)
    b = FakeChatBackend(kind="fake-b", weights=weights_b)
    manager = ModelManager({a.kind: a, b.kind: b}, Budget(budget, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(fake_spec("model-a", kind=a.kind))
    manager.register(fake_spec("model-b", kind=b.kind))
    return Pair(manager, a, b)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    made = await make_pair()
    yield made
    await made.manager.aclose()


def contender(model_id: str, label: str | None = None, **sampling: object) -> Contender:
    return Contender(model_id, label or model_id, SamplingSettings.from_dict(sampling))


def ask(text: str = "hi") -> list[ChatMessage]:
    return [ChatMessage("user", text)]


async def collect(run: CompareRun) -> list[SideEvent]:
    async def drain() -> list[SideEvent]:
        return [event async for event in run.events()]

    return await asyncio.wait_for(drain(), WAIT)


def tokens(events: list[SideEvent], side: str) -> list[str]:
    return [e.event.text for e in events if e.side == side and isinstance(e.event, Token)]


def ends(events: list[SideEvent], side: str) -> list[Finished | SideFailed]:
    return [e.event for e in events if e.side == side and isinstance(e.event, Finished | SideFailed)]


# --- the memory plan ------------------------------------------------------------------------------


async def test_one_model_with_two_settings_runs_together(pair: Pair) -> None:
    plan = plan_memory(pair.manager, contender("model-a", "cold", temperature=0), contender("model-a", "hot"))
    assert plan.kind is PlanKind.TOGETHER and "one model" in plan.reason


async def test_two_models_that_fit_run_together(pair: Pair) -> None:
    plan = plan_memory(pair.manager, contender("model-a"), contender("model-b"))
    assert plan.kind is PlanKind.TOGETHER
    assert plan.reason == "12 MB + 12 MB ≤ 1.0 GB budget: both at once"


async def test_two_models_over_budget_run_one_after_the_other() -> None:
    pair = await make_pair(budget=4 * GB, weights_a=int(1.2 * GB), weights_b=int(4.5 * GB) - 2 * MB)
    try:
        plan = plan_memory(pair.manager, contender("model-a"), contender("model-b"))
        assert plan.kind is PlanKind.SEQUENTIAL
        assert plan.reason == "1.2 GB + 4.5 GB > 4.0 GB budget: one after the other"
    finally:
        await pair.manager.aclose()


async def test_a_pinned_or_busy_third_model_counts_against_the_plan() -> None:
    pair = await make_pair(budget=30 * MB)
    try:
        manager = pair.manager
        manager.register(fake_spec("model-c", kind="fake-a"))
        a, b = contender("model-a"), contender("model-b")
        assert plan_memory(manager, a, b).kind is PlanKind.TOGETHER
        manager.pin("model-c")  # pinned but not loaded: holds nothing yet
        assert plan_memory(manager, a, b).kind is PlanKind.TOGETHER
        await asyncio.wait_for(manager.load("model-c"), WAIT)
        assert manager.unevictable_bytes() == 12 * MB
        assert manager.unevictable_bytes(exclude={"model-c"}) == 0
        plan = plan_memory(manager, a, b)
        assert plan.kind is PlanKind.SEQUENTIAL
        held = "12 MB held by models in use or pinned"
        assert plan.reason == f"12 MB + 12 MB + {held} > 30 MB budget: one after the other"
        manager.pin("model-c", False)  # idle and unpinned: a load may evict it
        assert manager.unevictable_bytes() == 0
        assert plan_memory(manager, a, b).kind is PlanKind.TOGETHER
        lease = await asyncio.wait_for(manager.acquire("model-c"), WAIT)  # in use: cannot be evicted
        assert plan_memory(manager, a, b).kind is PlanKind.SEQUENTIAL
        await lease.release()
    finally:
        await pair.manager.aclose()


async def test_cost_of_is_the_estimate_then_the_measurement(pair: Pair) -> None:
    pair.a.weights = 7 * MB  # the estimate said 10 MB of weights; the load measures 7
    assert pair.manager.cost_of("model-a") == 12 * MB
    await asyncio.wait_for(pair.manager.load("model-a"), WAIT)
    assert pair.manager.cost_of("model-a") == 7 * MB + 2 * MB  # measured weights + the KV cache estimate
    assert pair.manager.unevictable_bytes() == 0  # loaded but idle


# --- running both sides ---------------------------------------------------------------------------


async def test_together_interleaves_both_answers(pair: Pair) -> None:
    pair.a.script = Script(tokens=[f"a{i} " for i in range(12)], delay_s=0.01)
    pair.b.script = Script(tokens=[f"b{i} " for i in range(12)], delay_s=0.01)
    events = await collect(CompareRun(pair.manager, contender("model-a"), contender("model-b"), ask(), ask(), TOGETHER))
    assert tokens(events, "a") == pair.a.script.tokens and tokens(events, "b") == pair.b.script.tokens
    order = [e.side for e in events if isinstance(e.event, Token)]
    end = {side: next(i for i, e in enumerate(events) if e.side == side and isinstance(e.event, Finished))
           for side in ("a", "b")}  # fmt: skip
    first = {side: next(i for i, e in enumerate(events) if e.side == side and isinstance(e.event, Token))
             for side in ("a", "b")}  # fmt: skip
    assert first["b"] < end["a"] and first["a"] < end["b"]  # neither finished before the other began
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches >= 10  # decoded step by step in turn, not one answer then the other
    for side in ("a", "b"):
        (finished,) = ends(events, side)
        assert isinstance(finished, Finished) and not finished.stopped
        assert finished.figures is not None and finished.figures.generation_tokens == 12
    assert pair.manager.info("model-a").leases == 0 and pair.manager.info("model-b").leases == 0


async def test_one_model_serves_both_sides_with_their_own_settings(pair: Pair) -> None:
    a = Contender("model-a", "terse", SamplingSettings(temperature=0.0), system_prompt="Be terse.")
    b = Contender("model-a", "plain", SamplingSettings(temperature=1.0))
    history = [ChatMessage("system", "old prompt"), *ask("hello")]
    events = await collect(CompareRun(pair.manager, a, b, history, ask("hello"), plan_memory(pair.manager, a, b)))
    assert all(isinstance(ends(events, side)[0], Finished) for side in ("a", "b"))
    calls = sorted(pair.a.calls, key=len)
    assert calls[0] == [{"role": "user", "content": "hello"}]
    assert calls[1] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hello"}]
    assert sorted(s.temperature for s in pair.a.sampling) == [0.0, 1.0]


async def test_sequential_runs_a_unloads_it_then_runs_b() -> None:
    pair = await make_pair(budget=20 * MB)  # each model (12 MB) fits alone, not both
    seen: list[tuple[str, ModelState]] = []

    def note(event: ManagerEvent) -> None:
        if not seen or seen[-1] != (event.model.spec.id, event.model.state):
            seen.append((event.model.spec.id, event.model.state))

    try:
        pair.manager.subscribe(note)
        a, b = contender("model-a"), contender("model-b")
        plan = plan_memory(pair.manager, a, b)
        assert plan.kind is PlanKind.SEQUENTIAL
        events = await collect(CompareRun(pair.manager, a, b, ask(), ask(), plan))
        sides = [e.side for e in events]
        assert sides == sorted(sides)  # every A event before any B event
        assert tokens(events, "a") == tokens(events, "b") == ["Hello", " there", "!"]
        assert seen.index(("model-a", ModelState.UNLOADED)) < seen.index(("model-b", ModelState.LOADING))
        assert ("model-a", ModelState.UNLOADING) in seen  # unloaded by the run, not left to eviction
        assert pair.manager.info("model-a").state is ModelState.UNLOADED
        assert pair.manager.info("model-b").state is ModelState.READY
    finally:
        await pair.manager.aclose()


async def test_sequential_keeps_a_pinned_model() -> None:
    pair = await make_pair(budget=GB)
    try:
        pair.manager.pin("model-a")
        events = await collect(CompareRun(pair.manager, contender("model-a"), contender("model-b"), ask(), ask(),
                                          SEQUENTIAL))  # fmt: skip
        assert len(ends(events, "a")) == len(ends(events, "b")) == 1
        assert pair.manager.info("model-a").state is ModelState.READY
    finally:
        await pair.manager.aclose()


@pytest.mark.parametrize("plan", [TOGETHER, SEQUENTIAL], ids=["together", "sequential"])
async def test_stop_stops_both_within_a_token(pair: Pair, plan: MemoryPlan) -> None:
    for backend in (pair.a, pair.b):
        backend.script = Script(tokens=[f"t{i} " for i in range(300)], delay_s=0.01)
    run = CompareRun(pair.manager, contender("model-a", max_tokens=300), contender("model-b", max_tokens=300),
                     ask(), ask(), plan)  # fmt: skip
    events: list[SideEvent] = []

    async def drive() -> None:
        async for event in run.events():
            events.append(event)
            if isinstance(event.event, Token) and len(events) == 6:
                run.stop()

    await asyncio.wait_for(drive(), WAIT)
    for side in ("a", "b"):
        (finished,) = ends(events, side)
        assert isinstance(finished, Finished) and finished.stopped
    assert pair.a.emitted + pair.b.emitted <= 6 + 4  # at most a step more per side after the stop
    if plan is SEQUENTIAL:
        assert pair.b.calls == []  # B never started
        assert pair.manager.info("model-b").state is ModelState.UNLOADED  # nor loaded just to stop
    assert pair.manager.info("model-a").leases == pair.manager.info("model-b").leases == 0


async def test_leaving_the_events_early_stops_both(pair: Pair) -> None:
    for backend in (pair.a, pair.b):
        backend.script = Script(tokens=[f"t{i} " for i in range(300)], delay_s=0.01)
    run = CompareRun(pair.manager, contender("model-a", max_tokens=300), contender("model-b", max_tokens=300),
                     ask(), ask(), TOGETHER)  # fmt: skip

    async def first_tokens() -> None:
        events = run.events()
        async for event in events:
            if isinstance(event.event, Token):
                break
        await events.aclose()

    await asyncio.wait_for(first_tokens(), WAIT)
    assert run.stop_requested
    assert pair.manager.info("model-a").leases == pair.manager.info("model-b").leases == 0


@pytest.mark.parametrize("plan", [TOGETHER, SEQUENTIAL], ids=["together", "sequential"])
async def test_one_side_failing_leaves_the_other_going(pair: Pair, plan: MemoryPlan) -> None:
    pair.a.script = Script(tokens=["a", "b", "c", "d"], fail_after=2, delay_s=0.01)
    pair.b.script = Script(tokens=[f"b{i}" for i in range(8)], delay_s=0.01)
    events = await collect(CompareRun(pair.manager, contender("model-a"), contender("model-b"), ask(), ask(), plan))
    assert tokens(events, "a") == ["a", "b"]
    (failed,) = ends(events, "a")
    assert isinstance(failed, SideFailed) and failed.error == "RuntimeError: the fake model fell over"
    assert tokens(events, "b") == [f"b{i}" for i in range(8)]
    (finished,) = ends(events, "b")
    assert isinstance(finished, Finished) and finished.figures is not None and not finished.stopped
    assert pair.manager.info("model-a").leases == 0


async def test_a_side_that_cannot_load_fails_alone() -> None:
    pair = await make_pair(budget=20 * MB, weights_b=40 * MB)
    try:
        a, b = contender("model-a"), contender("model-b")
        events = await collect(CompareRun(pair.manager, a, b, ask(), ask(), plan_memory(pair.manager, a, b)))
        assert tokens(events, "a") == ["Hello", " there", "!"]
        (failed,) = ends(events, "b")
        assert isinstance(failed, SideFailed) and "needs 42 MB" in failed.error
    finally:
        await pair.manager.aclose()


# --- word diff --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("", ""),
        ("same words", "same words"),
        ("", "only b"),
        ("only a", ""),
        ("The cat sat on the mat.", "The dog sat on a mat!"),
        ("line one\nline  two\n", "line one\n\nline two"),
        ("  leading and trailing  ", "leading and trailing"),
        ("Paris is the capital of France.", "The capital of France is Paris."),
        ("naïve café – ok", "naïve cafe — ok"),
    ],
)
def test_word_diff_joins_back_to_both_texts(a: str, b: str) -> None:
    ops = word_diff(a, b)
    assert "".join(text for kind, text in ops if kind in ("same", "a")) == a
    assert "".join(text for kind, text in ops if kind in ("same", "b")) == b
    assert all(kind in ("same", "a", "b") and text for kind, text in ops)
    assert all(x[0] != y[0] for x, y in itertools.pairwise(ops))  # merged into runs


def test_word_diff_marks_the_changed_words() -> None:
    assert word_diff("the cat sat", "the dog sat") == [("same", "the "), ("a", "cat"), ("b", "dog"), ("same", " sat")]
    assert word_diff("a b", "a b c") == [("same", "a b"), ("b", " c")]


# --- ratings and blind order ------------------------------------------------------------------------


def test_a_win_between_equals_moves_sixteen_points() -> None:
    (winner, loser) = elo_ratings([("x", "y", "a")])
    assert (winner.model, winner.rating, loser.model, loser.rating) == ("x", 1016.0, "y", 984.0)
    assert (winner.games, winner.wins, winner.losses, winner.win_rate) == (1, 1, 0, 1.0)
    assert (loser.wins, loser.losses, loser.win_rate) == (0, 1, 0.0)
    (winner, loser) = elo_ratings([("x", "y", "b")])
    assert (winner.model, winner.rating) == ("y", 1016.0)


def test_draws_do_not_move_equals_and_both_bad_counts_as_a_draw() -> None:
    ratings = elo_ratings([("x", "y", "tie"), ("x", "y", "both_bad")])
    assert [(r.model, r.rating, r.games, r.ties, r.both_bad, r.win_rate) for r in ratings] == [
        ("x", 1000.0, 2, 1, 1, 0.5),
        ("y", 1000.0, 2, 1, 1, 0.5),
    ]


def test_elo_arithmetic_k_start_and_determinism() -> None:
    votes = [("x", "y", "a"), ("y", "z", "a"), ("x", "z", "tie"), ("z", "x", "b"), ("x", "x", "a")]
    first = elo_ratings(votes, k=16, start=1500)
    assert first == elo_ratings(list(votes), k=16, start=1500)
    assert [r.model for r in first] == ["x", "y", "z"]
    # by hand: x beats y (+8); y (1492) beats z (1500): expected 0.4885, so +8.18; ...
    expected_y = 1 / (1 + 10 ** ((1500 - 1492) / 400))
    y = next(r for r in first if r.model == "y")
    assert y.rating == pytest.approx(1492 + 16 * (1 - expected_y))
    assert sum(r.rating for r in first) == pytest.approx(3 * 1500)  # Elo moves points, never makes them
    x = next(r for r in first if r.model == "x")
    assert (x.games, x.wins, x.ties, x.losses) == (3, 2, 1, 0)  # the vote against itself is skipped
    with pytest.raises(ValueError, match="unknown vote"):
        elo_ratings([("x", "y", "left")])
    assert elo_ratings([]) == []


def test_blind_order_is_a_reproducible_coin() -> None:
    assert blind_order(7) == blind_order(7)
    assert {blind_order(seed) for seed in range(20)} == {True, False}


# --- the store --------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "workbench.db")
    yield opened
    opened.close()


def test_compare_runs_round_trip(store: Store) -> None:
    a = Contender("org/small", "small · T 0", SamplingSettings(temperature=0.0, seed=3), "Be brief.")
    b = Contender("org/large", "large", SamplingSettings())
    run_id = store.compare_runs.add_compare_run("Why is the sky blue?", a.to_dict(), b.to_dict(), plan=SEQUENTIAL.kind,
                                                blind=True, swapped=True)  # fmt: skip
    figures = {"ttft_s": 0.1, "prompt_tokens": 5, "prompt_tps": 50.0, "generation_tokens": 3, "generation_tps": 9.0,
               "peak_memory_gb": 0.1}  # fmt: skip
    store.compare_runs.update_compare_run(run_id, answer_a="Rayleigh.", figures_a=figures, error_b="it fell over")
    store.compare_runs.update_compare_run(run_id, answer_b="Because.")
    (stored,) = store.compare_runs.compare_runs()
    assert (stored.id, stored.prompt, stored.plan, stored.blind, stored.swapped) == (
        run_id, "Why is the sky blue?", "sequential", True, True)  # fmt: skip
    assert PlanKind(stored.plan).label == "one after the other"
    assert Contender.from_dict(stored.contender_a) == a and Contender.from_dict(stored.contender_b) == b
    assert (stored.answer_a, stored.answer_b, stored.figures_a, stored.figures_b) == ("Rayleigh.", "Because.", figures,
                                                                                      None)  # fmt: skip
    assert (stored.error_a, stored.error_b) == (None, "it fell over")
    store.compare_runs.update_compare_run(run_id, error_b=None)
    assert store.compare_runs.compare_runs()[0].error_b is None
    second = store.compare_runs.add_compare_run("Again", {"model_id": "m", "label": "M"}, {"model_id": "n"},
                                                plan="together")  # fmt: skip
    assert [r.id for r in store.compare_runs.compare_runs()] == [second, run_id]
    assert [r.id for r in store.compare_runs.compare_runs(limit=1)] == [second]
    with pytest.raises(KeyError):
        store.compare_runs.update_compare_run(run_id + 100, answer_a="x")


def test_the_stored_plan_is_the_plan_kind_code(store: Store) -> None:
    assert {kind.value for kind in PlanKind} == set(PLAN_CODES)
    assert [kind.label for kind in PlanKind] == ["together", "one after the other"]
    a, b = contender("model-a").to_dict(), contender("model-b").to_dict()
    for kind in PlanKind:
        store.compare_runs.add_compare_run("p", a, b, plan=kind)
    assert [run.plan for run in reversed(store.compare_runs.compare_runs())] == ["together", "sequential"]
    with pytest.raises(ValueError, match="unknown plan"):
        store.compare_runs.add_compare_run("p", a, b, plan="one after the other")
    with pytest.raises(TypeError, match="dict"):
        store.compare_runs.add_compare_run("p", contender("model-a"), b)  # type: ignore[arg-type]


def test_votes_map_swapped_sides_back_to_the_contenders(store: Store) -> None:
    a, b = {"model_id": "org/one", "label": "one"}, {"model_id": "org/two", "label": "two"}
    plain = store.compare_runs.add_compare_run("p1", a, b)
    swapped = store.compare_runs.add_compare_run("p2", a, b, blind=True, swapped=True)
    for run_id, outcome in [(plain, "a"), (swapped, "a"), (swapped, "b"), (swapped, "tie"), (plain, "both_bad")]:
        store.votes.add_compare_vote(run_id, outcome)  # as the user saw the sides
    assert store.votes.compare_votes() == [
        ("one", "two", "a"),
        ("one", "two", "b"),  # shown first was "two": the vote for the first answer is a vote for B
        ("one", "two", "a"),
        ("one", "two", "tie"),
        ("one", "two", "both_bad"),
    ]
    with pytest.raises(ValueError, match="unknown vote"):
        store.votes.add_compare_vote(plain, "left")
    with pytest.raises(KeyError):
        store.votes.add_compare_vote(plain + 100, "a")
    assert elo_ratings(store.votes.compare_votes())[0].model == "one"


# --- prompt sets ------------------------------------------------------------------------------------


def test_prompt_set_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("What is 2 + 2?\n\n  Name a colour.  \n\nLast one", encoding="utf-8")
    assert load_prompt_set(path) == (["What is 2 + 2?", "Name a colour.", "Last one"], [])


def test_prompt_set_jsonl_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    lines = ['{"prompt": "first", "id": 1}', "", "{not json", '{"question": "no prompt"}', '["a list"]',
             '{"prompt": "multi\\nline"}']  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prompts, problems = load_prompt_set(path)
    assert prompts == ["first", "multi\nline"]
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5"]
    assert "not JSON" in problems[0] and '"prompt"' in problems[1]


def test_prompt_set_that_cannot_be_read(tmp_path: Path) -> None:
    prompts, problems = load_prompt_set(tmp_path / "missing.txt")
    assert prompts == [] and problems[0].startswith("cannot read")


# --- replay records and export ----------------------------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FIGURES = GenerationFigures(ttft_s=0.2, prompt_tokens=9, prompt_tps=45.0, generation_tokens=4, generation_tps=20.0,
                            peak_memory_gb=0.01)  # fmt: skip


@pytest.fixture
async def tiny_pair(tiny_models: dict[str, Path], tmp_path: Path) -> AsyncIterator[tuple[ModelManager, Path, Path]]:
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / COMMIT
    shutil.copytree(tiny_models["quantized"], snapshot)
    plain = shutil.copytree(tiny_models["quantized"], tmp_path / "imported" / "tiny")
    backend = FakeChatBackend()
    manager = ModelManager({backend.kind: backend}, Budget(GB, "test"), InferenceThread(), idle_unload_s=None)
    manager.register(ModelSpec(id="org/tiny", name="org/tiny", kind=backend.kind, path=snapshot))
    manager.register(ModelSpec(id="tiny", name="tiny", kind=backend.kind, path=plain))
    yield manager, snapshot, plain
    await manager.aclose()


def template_hash(folder: Path) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return hashlib.sha256(jinja.read_bytes()).hexdigest()
    template = json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
    return hashlib.sha256(template.encode()).hexdigest()


async def test_replay_record_of_a_cache_snapshot(tiny_pair: tuple[ModelManager, Path, Path]) -> None:
    manager, snapshot, _ = tiny_pair
    side = Contender("org/tiny", "tiny greedy", SamplingSettings(temperature=0.0, seed=42), "Be brief.")
    record = replay_record(manager, side, "An answer.", FIGURES)
    assert (record["model_id"], record["label"], record["path"]) == ("org/tiny", "tiny greedy", str(snapshot))
    assert (record["repo_id"], record["revision"], record["fingerprint"]) == ("org/tiny", COMMIT, None)
    assert record["quantization"] == {"group_size": 32, "bits": 4}
    assert record["chat_template_sha256"] == template_hash(snapshot)
    assert record["sampling"] == {**SamplingSettings().to_dict(), "temperature": 0.0, "seed": 42}
    assert record["seed"] == 42 and record["system_prompt"] == "Be brief."
    assert set(record["machine"]) >= {"platform", "machine", "cpu_count", "python"}
    assert record["figures"] == FIGURES.to_dict() and record["answer"] == "An answer."
    json.dumps(record)  # plain JSON all the way down


async def test_replay_record_of_a_plain_folder_is_fingerprinted(tiny_pair: tuple[ModelManager, Path, Path]) -> None:
    manager, _, plain = tiny_pair
    side = Contender("tiny", "tiny", SamplingSettings())
    record = replay_record(manager, side, "", None)
    assert record["repo_id"] is None and record["revision"] is None and record["figures"] is None
    assert record["seed"] is None and len(record["fingerprint"]) == 64
    assert replay_record(manager, side, "", None)["fingerprint"] == record["fingerprint"]
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-6}))
    assert replay_record(manager, side, "", None)["fingerprint"] != record["fingerprint"]


async def test_exports_carry_what_a_replay_needs(tiny_pair: tuple[ModelManager, Path, Path]) -> None:
    manager, _, _ = tiny_pair
    a = Contender("org/tiny", "tiny greedy", SamplingSettings(temperature=0.0, seed=1))
    b = Contender("tiny", "tiny hot", SamplingSettings(temperature=1.0))
    results = [
        {"prompt": "Name a colour.", "a": replay_record(manager, a, "Blue.", FIGURES),
         "b": replay_record(manager, b, "Red | green", None), "answer_a": "Blue.", "answer_b": "Red | green",
         "vote": "a"},
        {"prompt": "Two\nlines", "a": replay_record(manager, a, "", None), "b": replay_record(manager, b, "x", None),
         "answer_a": "", "answer_b": "x"},
    ]  # fmt: skip
    lines = export_jsonl(results).splitlines()
    assert [json.loads(line) for line in lines] == results
    markdown = export_markdown(results)
    assert markdown.startswith("# Compare results")
    for text in ("## 1. Name a colour.", "## 2. Two", "> lines", "Blue.", "Red | green", COMMIT, "org/tiny",
                 "Vote: **a**", "first token 0.20 s", "_(no answer)_", '"bits": 4'):  # fmt: skip
        assert text in markdown, text
    assert export_markdown([]).startswith("# Compare results")
