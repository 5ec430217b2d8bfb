"""Pilot tests of the Compare pane with two scripted backends on the real manager and inference thread."""

from __future__ import annotations

import asyncio

from textual.pilot import Pilot
from textual.widgets import Select

from tests.support.fake_chat import FakeChatBackend, Script, fake_spec
from tests.support.waits import wait_for
from workbench.bootstrap import build_services
from workbench.core.settings.paths import AppPaths
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.compare import ComparePane, Side
from workbench.ui.screens.leaderboard import LeaderboardScreen
from workbench.ui.widgets.chat_input import ChatInput

SIZE = (120, 34)
WAIT = 60  # a bound against hanging, not an expected duration


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
    await wait_for(pilot, lambda: isinstance(app.screen, ComparePane), "the Compare pane")
    pane = app.screen
    assert isinstance(pane, ComparePane)
    pane.query_one("#model-a", Select).value = "alpha"
    pane.query_one("#model-b", Select).value = "beta"

    def plan_shown() -> bool:  # the Select.Changed messages have been handled and the plan shows both models
        plan = pane.current_plan()
        return plan is not None and plan.reason in str(pane.query_one("#compare-plan").render())

    await wait_for(pilot, plan_shown, "the plan for alpha and beta")
    pane.query_one(ChatInput).focus()
    return pane


async def runs_done(pilot: Pilot, pane: ComparePane, count: int) -> None:
    """Wait until `count` comparisons were sent and the last one is over: saved, its worker gone."""

    def over() -> bool:
        running = any(w.group == "compare-run" and not w.is_finished for w in pane.app.workers)
        runs = pane.app.services.store.compare_runs.compare_runs()  # type: ignore[attr-defined]
        return len(runs) >= count and pane.run is None and not running

    await wait_for(pilot, over, f"comparison {count} to finish", timeout=WAIT)


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
        await runs_done(pilot, pane, 1)
        assert side(pane, "a").text == "Paris is big." and side(pane, "b").text == "Paris is old."
        assert "tok/s" in text_of(side(pane, "a"), ".side-figures") and "tok/s" in text_of(side(pane, "b"),
                                                                                             ".side-figures")
        assert a.calls[-1][-1]["content"] == b.calls[-1][-1]["content"] == "capital?"
        await pilot.press("d")  # diff: the answers have focus now
        await wait_for(pilot, lambda: pane.diffing, "the diff")
        await pilot.press("enter", *"and rome?", "enter")  # a follow-up continues both conversations
        await runs_done(pilot, pane, 2)
        assert [m["role"] for m in a.calls[-1]] == ["user", "assistant", "user"]
        assert b.calls[-1][1]["content"] == "Paris is old."


async def test_escape_stops_both(app_paths: AppPaths) -> None:
    slow = [f"w{i} " for i in range(300)]
    app, a, b = compare_app(app_paths, Script(tokens=slow, delay_s=0.02), Script(tokens=slow, delay_s=0.02))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"go", "enter")
        assert await asyncio.to_thread(a.started.wait, WAIT) and await asyncio.to_thread(b.started.wait, WAIT)
        await wait_for(pilot, lambda: side(pane, "a").text and side(pane, "b").text, "words on both sides")
        await pilot.press("escape")
        await runs_done(pilot, pane, 1)
        assert a.emitted < 300 and b.emitted < 300
        assert "stopped" in text_of(side(pane, "a"), ".side-figures")
        assert "stopped" in text_of(side(pane, "b"), ".side-figures")


async def test_one_side_failing_does_not_stop_the_other(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["a", "b", "c"], fail_after=1),
                            Script(tokens=["fine ", "answer"], delay_s=0.01))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"hi", "enter")
        await runs_done(pilot, pane, 1)
        assert "fell over" in text_of(side(pane, "a"), ".side-error")
        assert side(pane, "b").text == "fine answer" and "tok/s" in text_of(side(pane, "b"), ".side-figures")


async def test_blind_vote_and_leaderboard(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["one"]), Script(tokens=["two"]))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press("tab")  # leave the prompt box: b is a key, not a letter, out here
        pane.query_one("#compare-sides").focus()
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.blind, "blind mode")
        pane.query_one(ChatInput).focus()
        await pilot.press(*"which?", "enter")
        await runs_done(pilot, pane, 1)
        assert pane.awaiting_vote
        assert "alpha" not in side(pane, "a").title  # names hidden
        shown_first = side(pane, "a").text
        await pilot.press("1")  # the first column wins
        await wait_for(pilot, lambda: app.services.store.votes.compare_votes(), "the vote")
        assert app.current_mode == "compare" and not pane.awaiting_vote
        votes = app.services.store.votes.compare_votes()
        winner_label = votes[0][0] if votes[0][2] == "a" else votes[0][1]
        assert ("alpha" in winner_label) == (shown_first == "one")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, LeaderboardScreen), "the leaderboard")
        assert app.screen.query_one("#leaderboard").row_count == 2
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is pane, "back to Compare")
        await pilot.press("enter")  # back to typing; 1 switches panes again when no vote is pending
        pane.query_one("#compare-sides").focus()
        await pilot.press("1")
        await wait_for(pilot, lambda: app.current_mode == "catalog", "the Catalog pane")


async def test_over_budget_runs_one_after_the_other(app_paths: AppPaths) -> None:
    from workbench.core.models.memory import MB, Budget

    app, _, _ = compare_app(app_paths, Script(tokens=["x"]), Script(tokens=["y"]))
    app.services.manager.set_budget(Budget(15 * MB, "test"))  # each fake needs 12 MB
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        plan = str(pane.query_one("#compare-plan").render())
        assert "one after the other" in plan and "15 MB budget" in plan
        await pilot.press(*"go", "enter")
        await runs_done(pilot, pane, 1)
        assert side(pane, "a").text == "x" and side(pane, "b").text == "y"


async def test_a_prompt_set_runs_and_exports(app_paths: AppPaths, tmp_path) -> None:
    import json

    from workbench.ui.screens.dialogs import PromptScreen
    from workbench.ui.screens.prompt_set import PromptSetScreen

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "first"}\nnot json\n{"prompt": "second"}\n')
    app, a, _ = compare_app(app_paths, Script(tokens=["one ", "two"]), Script(tokens=["three"]))
    async with app.run_test(size=SIZE) as pilot:
        await open_compare(app, pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the file prompt")
        await pilot.press(*str(prompts), "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptSetScreen), "the prompt set")
        screen = app.screen
        assert isinstance(screen, PromptSetScreen)
        await wait_for(pilot, lambda: screen.query_one("#prompt-set-table").row_count == 2, "both prompts answered")
        assert [call[-1]["content"] for call in a.calls] == ["first", "second"]
        await pilot.press("j")
        await pilot.press("m")
        exported = app_paths.data_dir / "exports"
        await wait_for(pilot, lambda: {p.suffix for p in exported.glob("*")} >= {".jsonl", ".md"}, "both exports")
    exports = sorted((app_paths.data_dir / "exports").iterdir())
    jsonl = next(p for p in exports if p.suffix == ".jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["first", "second"]
    assert rows[0]["answer_a"] == "one two" and rows[0]["a"]["sampling"] and rows[0]["a"]["machine"]
    assert "first" in next(p for p in exports if p.suffix == ".md").read_text()


async def test_each_side_gets_its_own_settings(app_paths: AppPaths) -> None:
    from textual.widgets import Input

    from workbench.ui.screens.chat_settings import SettingsScreen

    app, a, b = compare_app(app_paths, Script(tokens=["x"]), Script(tokens=["y"]))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press("ctrl+t")  # settings of B
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings of B")
        temperature = app.screen.query_one("#temperature", Input)
        temperature.focus()
        await wait_for(pilot, lambda: app.focused is temperature, "focus on the temperature")
        await pilot.press("ctrl+shift+a", "backspace", *"0.3", "ctrl+s")
        await wait_for(pilot, lambda: app.screen is pane, "back to Compare")
        await wait_for(pilot, lambda: "T 0.3" in side(pane, "b").title, "B's new label")
        assert "T 0.3" not in side(pane, "a").title
        pane.query_one(ChatInput).focus()
        await pilot.press(*"go", "enter")
        await runs_done(pilot, pane, 1)
        assert b.sampling[-1].temperature == 0.3 and a.sampling[-1].temperature != 0.3
        assert app.services.store.compare_runs.compare_runs()[0].contender_b["sampling"]["temperature"] == 0.3


async def test_each_side_shows_its_reading_progress_until_its_first_token(app_paths: AppPaths, monkeypatch) -> None:
    shown: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}  # (the side's answer then, its figures line)
    original = Side.set_figures

    def recording(self: Side, text: str, status: str | None = None) -> None:
        shown[self.side].append((self.text, text))
        original(self, text, status)

    monkeypatch.setattr(Side, "set_figures", recording)
    app, a, _ = compare_app(app_paths, Script(tokens=["Paris ", "is ", "big."], reading_chunks=10,
                                              reading_delay_s=0.02, cached=2),
                            Script(tokens=["Paris ", "is ", "old."], reading_chunks=10,
                                   reading_delay_s=0.02))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"capital?", "enter")
        await runs_done(pilot, pane, 1)
        total = a.count_prompt_tokens(None, a.calls[-1])
        for name in "ab":
            reading = [(answer, line) for answer, line in shown[name] if line.startswith("reading the prompt · ")]
            assert reading and all(answer == "" for answer, _ in reading), shown[name]
            assert "reading" not in text_of(side(pane, name), ".side-figures")
        assert all(line.endswith(f" % · 2 of {total} tokens cached") for _, line in shown["a"] if "reading" in line)
        assert not any("cached" in line for _, line in shown["b"])
        assert f"prompt {total} tok, 2 cached" in text_of(side(pane, "a"), ".side-figures")
        assert side(pane, "a").text == "Paris is big." and side(pane, "b").text == "Paris is old."


async def test_escape_while_both_read_their_prompts_stops_both_there(app_paths: AppPaths) -> None:
    long_read = Script(reading_chunks=100, reading_delay_s=0.1)
    app, a, b = compare_app(app_paths, long_read, Script(reading_chunks=100, reading_delay_s=0.1))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"go", "enter")
        await wait_for(pilot, lambda: all(text_of(side(pane, name), ".side-figures").startswith("reading the prompt")
                                          for name in "ab"), "both sides reading")  # fmt: skip
        await pilot.press("escape")
        await runs_done(pilot, pane, 1)
        assert a.read_chunks < 100 and b.read_chunks < 100 and a.emitted == b.emitted == 0
        for name in "ab":
            assert text_of(side(pane, name), ".side-figures") == "stopped while reading the prompt"
