"""The Compare pane at 80x24 (issue 15): the answers get the height, the diff takes their area, blind mode shows no
model name and no figure that tells the sides apart until the vote, each side's settings and model have a key."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input, Select

from tests.support.fake_chat import Script
from tests.support.waits import wait_for
from tests.test_compare_ui import compare_app, open_compare, runs_done, side
from workbench.core.settings.paths import AppPaths
from workbench.core.words import counted
from workbench.ui.screens.chat_settings import SettingsScreen
from workbench.ui.screens.compare import ComparePane
from workbench.ui.screens.dialogs import PromptScreen
from workbench.ui.screens.leaderboard import LeaderboardScreen
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.compare_sides import DiffView

SIZE = (80, 24)
WAIT = 60
# One long paragraph per side: about ten lines at 80 columns.
LONG_A = [f"alpha{i:02d} word{i:02d} " for i in range(60)]
LONG_B = [f"alpha{i:02d} other{i:02d} " for i in range(60)]
NAMES = ("alpha", "beta")


def screen_lines(app: App) -> list[str]:
    """The whole screen as text, as a person sees it (dialogs included; toasts are in notices())."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def notices(app: App) -> list[str]:
    return [n.message for n in app._notifications]


def box_lines(app: App, title: str) -> list[str]:
    """The lines inside the bordered box whose top border carries ``title``."""
    lines = screen_lines(app)
    top = next(i for i, line in enumerate(lines) if title in line and "╭" in line)
    bottom = next(i for i in range(top + 1, len(lines)) if "╰" in lines[i])
    return lines[top + 1 : bottom]


async def test_the_answers_get_the_height_at_80x24(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=LONG_A), Script(tokens=LONG_B))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"tell me", "enter")
        await runs_done(pilot, pane, 1)
        await wait_for(pilot, lambda: pane.sides.has_focus, "the answers focused")
        prompt = pane.query_one(ChatInput)
        await wait_for(pilot, lambda: prompt.outer_size.height == 1, "the prompt box down to one line")
        for name, title, word in (("a", "A: alpha", "word"), ("b", "B: beta", "other")):
            figures = side(pane, name).query_one(".side-figures")
            assert figures.outer_size.height == 1 and "tok/s" in side(pane, name).figures
            answer = [line for line in box_lines(app, title) if word in line]
            assert len(answer) >= 6, screen_lines(app)
        await pilot.press("enter")  # back to typing: the box opens up again
        await wait_for(pilot, lambda: prompt.has_focus and prompt.outer_size.height >= 3, "the prompt box open")


async def test_the_diff_takes_the_answers_area_and_scrolls(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=LONG_A), Script(tokens=LONG_B))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press(*"tell me", "enter")
        await runs_done(pilot, pane, 1)
        await pilot.press("d")
        await wait_for(pilot, lambda: pane.diffing, "the diff")
        view = pane.query_one(DiffView)
        await wait_for(pilot, lambda: view.outer_size.height >= 15, "the diff in the answers' area")
        assert not side(pane, "a").display and not side(pane, "b").display
        shown = box_lines(app, "word diff")
        assert len([line for line in shown if "word" in line]) >= 8, screen_lines(app)
        assert view.has_focus and view.max_scroll_y > 0  # both answers, longer than the screen: it scrolls
        await pilot.press("end")
        await wait_for(pilot, lambda: view.scroll_y == view.max_scroll_y, "the diff scrolled to its end")
        assert any("other59" in line for line in screen_lines(app))
        await pilot.press("d")
        await wait_for(pilot, lambda: not pane.diffing and side(pane, "a").display, "the answers again")


async def test_blind_mode_shows_no_name_and_no_figures_until_the_vote(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=LONG_A), Script(tokens=LONG_B))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        pane.sides.focus()
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.blind, "blind mode")

        def names_shown() -> list[str]:
            # "alpha00…" are words of the answers, not the model: only whole names count
            words = " ".join([*screen_lines(app), *notices(app)]).replace("·", " ").replace(",", " ").split()
            return [word for word in words if word in NAMES]

        assert names_shown() == []
        pane.query_one(ChatInput).focus()
        await pilot.press(*"which?", "enter")
        await runs_done(pilot, pane, 1)
        assert pane.awaiting_vote
        await pilot.pause()
        assert names_shown() == [], screen_lines(app)
        for name in "ab":
            assert "tok/s" in side(pane, name).figures  # kept for the reveal, not shown
            assert str(side(pane, name).query_one(".side-figures").render()) == "done"
        assert not any("tok/s" in line for line in screen_lines(app))
        await pilot.press("ctrl+f")  # the pickers would show the names: refused, with a reason
        await wait_for(pilot, lambda: any("Blind mode hides" in n for n in notices(app)), "the refusal")
        assert not pane.query_one("#model-a", Select).expanded
        await pilot.press("1")
        await wait_for(pilot, lambda: not pane.awaiting_vote, "the vote")
        await wait_for(pilot, lambda: set(names_shown()) == set(NAMES), "the names revealed")
        assert sum("tok/s" in line for line in screen_lines(app)) >= 2
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, LeaderboardScreen), "the leaderboard")
        note = str(app.screen.query_one("#leaderboard-note").render())
        assert note.startswith("1 blind vote.")


async def test_each_side_has_a_settings_dialog_named_for_it_and_a_model_key(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["x"]), Script(tokens=["y"]))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        for key, title in (("ctrl+s", "Settings of side A · alpha"), ("ctrl+t", "Settings of side B · beta")):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), f"the settings from {key}")
            assert app.screen.query_one("#settings").border_title == title
            assert any(title in line for line in screen_lines(app))
            await pilot.press("ctrl+t")  # B's key again, in the dialog: saves nothing, asks for no preset name
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is pane, "back to Compare")
        for key, wanted in (("ctrl+g", "#model-b"), ("ctrl+f", "#model-a")):
            pane.query_one(ChatInput).focus()  # the keys work while typing
            await pilot.press(key)
            picker = pane.query_one(wanted, Select)
            await wait_for(pilot, lambda p=picker: p.expanded and p.has_focus_within, f"{wanted} open")
            await pilot.press("escape")
            await wait_for(pilot, lambda p=picker: not p.expanded, f"{wanted} closed")


async def test_save_as_preset_has_its_own_key(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["x"]), Script(tokens=["y"]))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_compare(app, pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings of A")
        keys = {key for binding in SettingsScreen.BINDINGS for key in binding.key.split(",")}
        assert not keys & {"ctrl+t", "ctrl+f", "ctrl+g"}  # none of Compare's side keys means something else here
        temperature = app.screen.query_one("#temperature", Input)
        temperature.focus()
        await wait_for(pilot, lambda: app.focused is temperature, "focus on the temperature")
        await pilot.press("ctrl+shift+a", "backspace", *"0.3", "ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), "the preset name prompt")
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: app.screen is pane, "back to Compare")


async def test_blind_settings_dialog_does_not_name_the_model(app_paths: AppPaths) -> None:
    app, _, _ = compare_app(app_paths, Script(tokens=["x"]), Script(tokens=["y"]))
    async with app.run_test(size=SIZE) as pilot:
        pane: ComparePane = await open_compare(app, pilot)
        pane.query_one("#model-a", Select).focus()  # b is no letter here, and the picker is about to hide
        await pilot.press("b")
        await wait_for(pilot, lambda: pane.blind, "blind mode")
        assert pane.sides.has_focus  # not left on a hidden picker, where i and enter would do nothing
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), "the settings of B")
        assert app.screen.query_one("#settings").border_title == "Settings of side B"


def test_counts_are_pluralized() -> None:
    assert counted(1, "blind vote") == "1 blind vote"
    assert counted(0, "blind vote") == "0 blind votes"
    assert counted(2, "message") == "2 messages"
    assert counted(3, "reply", "replies") == "3 replies"
