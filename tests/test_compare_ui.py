"""Pilot tests of the Compare pane with two scripted backends on the real manager and inference thread."""

from __future__ import annotations

import asyncio
import contextlib

from textual.pilot import Pilot
from textual.widgets import Select
from textual.worker import WorkerCancelled

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec
from workbench.core.paths import AppPaths
from workbench.core.services import build_services
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.compare import ComparePane, Side
from workbench.ui.screens.leaderboard import LeaderboardScreen
from workbench.ui.widgets.chat_input import ChatInput

SIZE = (120, 34)
WAIT = 20


def compare_app(paths: AppPaths, script_a: Script, script_b: Script) -> tuple[WorkbenchApp, FakeChatBackend,
                                                                               FakeChatBackend]:  # fmt: skip
    services = build_services(paths)
    a, b = FakeChatBackend(script_a, kind="fake-a"), FakeChatBackend(script_b, kind="fake-b")
    for backend, name in ((a, "alpha"), (b, "beta")):
        services.manager.add_backend(backend)
        services.manager.register(fake_spec(name, kind=backend.kind))
    return WorkbenchApp(services, import_defaults=False, scan_cache=False), a, b


async def open_compare(app: WorkbenchApp, pilot: Pilot) -> ComparePane:
    await pilot.press("4")
    await pilot.pause()
    pane = app.screen
    assert isinstance(pane, ComparePane)
    pane.query_one("#model-a", Select).value = "alpha"
    pane.query_one("#model-b", Select).value = "beta"
    await pilot.pause()
    pane.query_one(ChatInput).focus()
    return pane


async def settle(app: WorkbenchApp, pilot: Pilot) -> None:
    with contextlib.suppress(WorkerCancelled):
        await asyncio.wait_for(app.workers.wait_for_complete(), WAIT)
    await pilot.pause(0.1)


def side(pane: ComparePane, name: str) -> Side:
    return pane.query_one(f"#side-{name}", Side)


def text_of(widget: Side, selector: str) -> str:
    return str(widget.query_one(selector).render())


async def test_both_stream_with_figures_and_a_plan(app_paths: AppPaths) -> None:
    app, a, b = compare_app(app_paths, Script(tokens=["Paris ", "is ", "big."], delay_s=0.02),
                            Script(tokens=["Paris ", "is ", "old."], delay_s=0.02))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        assert "both at once" in str(pane.query_one("#compare-plan").render())
        await pilot.press(*"capital?", "enter")
        await settle(app, pilot)
        assert side(pane, "a").text == "Paris is big." and side(pane, "b").text == "Paris is old."
        assert "tok/s" in text_of(side(pane, "a"), ".side-figures") and "tok/s" in text_of(side(pane, "b"),
                                                                                             ".side-figures")
        assert a.calls[-1][-1]["content"] == b.calls[-1][-1]["content"] == "capital?"
        await pilot.press("d")  # diff: the answers have focus now
        await pilot.pause()
        assert pane.diffing
        await pilot.press("enter", *"and rome?", "enter")  # a follow-up continues both conversations
        await settle(app, pilot)
        assert [m["role"] for m in a.calls[-1]] == ["user", "assistant", "user"]
        assert b.calls[-1][1]["content"] == "Paris is old."


async def test_escape_stops_both(app_paths: AppPaths) -> None:
    slow = [f"w{i} " for i in range(300)]
    app, a, b = compare_app(app_paths, Script(tokens=slow, delay_s=0.02), Script(tokens=slow, delay_s=0.02))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"go", "enter")
        assert await asyncio.to_thread(a.started.wait, WAIT) and await asyncio.to_thread(b.started.wait, WAIT)
        await pilot.pause(0.3)
        await pilot.press("escape")
        await settle(app, pilot)
        assert a.emitted < 300 and b.emitted < 300
        assert "stopped" in text_of(side(pane, "a"), ".side-figures")
        assert "stopped" in text_of(side(pane, "b"), ".side-figures")


async def test_one_side_failing_does_not_stop_the_other(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["a", "b", "c"], fail_after=1),
                            Script(tokens=["fine ", "answer"], delay_s=0.01))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"hi", "enter")
        await settle(app, pilot)
        assert "fell over" in text_of(side(pane, "a"), ".side-error")
        assert side(pane, "b").text == "fine answer" and "tok/s" in text_of(side(pane, "b"), ".side-figures")


async def test_blind_vote_and_leaderboard(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["one"]), Script(tokens=["two"]))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press("tab")  # leave the prompt box: b is a key, not a letter, out here
        pane.query_one("#compare-sides").focus()
        await pilot.press("b")
        assert pane.blind
        pane.query_one(ChatInput).focus()
        await pilot.press(*"which?", "enter")
        await settle(app, pilot)
        assert pane.awaiting_vote
        assert "alpha" not in text_of(side(pane, "a"), ".side-title")  # names hidden
        shown_first = side(pane, "a").text
        await pilot.press("1")  # the first column wins
        await pilot.pause()
        assert app.current_mode == "compare" and not pane.awaiting_vote
        votes = app.services.store.compare_votes()
        winner_label = votes[0][0] if votes[0][2] == "a" else votes[0][1]
        assert ("alpha" in winner_label) == (shown_first == "one")
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert isinstance(app.screen, LeaderboardScreen)
        assert app.screen.query_one("#leaderboard").row_count == 2
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("enter")  # back to typing; 1 switches panes again when no vote is pending
        pane.query_one("#compare-sides").focus()
        await pilot.press("1")
        await pilot.pause()
        assert app.current_mode == "catalog"


async def test_over_budget_runs_one_after_the_other(app_paths: AppPaths) -> None:
    from workbench.core.memory import MB, Budget

    app, _, _ = compare_app(app_paths, Script(tokens=["x"]), Script(tokens=["y"]))
    app.services.manager.set_budget(Budget(15 * MB, "test"))  # each fake needs 12 MB
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        plan = str(pane.query_one("#compare-plan").render())
        assert "one after the other" in plan and "15 MB budget" in plan
        await pilot.press(*"go", "enter")
        await settle(app, pilot)
        assert side(pane, "a").text == "x" and side(pane, "b").text == "y"


async def test_a_prompt_set_runs_and_exports(app_paths: AppPaths, tmp_path) -> None:
    import json

    from workbench.ui.screens.prompt_set import PromptSetScreen

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "first"}\nnot json\n{"prompt": "second"}\n')
    app, a, _ = compare_app(app_paths, Script(tokens=["one ", "two"]), Script(tokens=["three"]))
    async with app.run_test(size=SIZE) as pilot:
        await open_compare(app, pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press(*str(prompts), "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PromptSetScreen)
        await settle(app, pilot)
        assert screen.query_one("#prompt-set-table").row_count == 2
        assert [call[-1]["content"] for call in a.calls] == ["first", "second"]
        await pilot.press("j")
        await pilot.press("m")
        await pilot.pause()
    exports = sorted((app_paths.data_dir / "exports").iterdir())
    jsonl = next(p for p in exports if p.suffix == ".jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["first", "second"]
    assert rows[0]["answer_a"] == "one two" and rows[0]["a"]["sampling"] and rows[0]["a"]["machine"]
    assert "first" in next(p for p in exports if p.suffix == ".md").read_text()
