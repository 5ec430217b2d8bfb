"""The Chat pane's messages by keys at 80x24: the focused one shows, the transcript is one Tab stop, ↑ ↓ move in it,
Tab returns to the input, typing on a message types into the input, ctrl+y says what it copied (and, in tmux
without set-clipboard, how to let it through)."""

from __future__ import annotations

import pytest
from textual.color import Color

from tests.support.fake_chat import Script
from tests.support.waits import wait_for
from tests.test_chat_ui import SIZE, answer_done, chat_app, open_chat, send
from workbench.core.settings.paths import AppPaths
from workbench.ui import clipboard
from workbench.ui.app import WorkbenchApp
from workbench.ui.screens.chat import ChatPane
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.chat_message import MessageView

ANSWER = ["The capital ", "of France ", "is Paris."]


def notes(app: WorkbenchApp) -> list[str]:
    return [n.message for n in app._notifications]


async def two_turns(app: WorkbenchApp, pilot) -> ChatPane:  # type: ignore[no-untyped-def]
    chat = await open_chat(app, pilot)
    for question in ("capital of France?", "and of Italy?"):
        await send(pilot, question)
        await answer_done(app, pilot)
    return chat


async def test_the_transcript_is_one_tab_stop_and_the_focused_message_shows(app_paths: AppPaths) -> None:
    app, _ = chat_app(app_paths, Script(tokens=ANSWER))
    async with app.run_test(size=SIZE) as pilot:
        chat = await two_turns(app, pilot)
        views = chat.message_views()
        assert len(views) == 4
        assert [w for w in chat.focus_chain if isinstance(w, MessageView)] == [views[-1]]
        prompt = chat.query_one(ChatInput)
        await wait_for(pilot, lambda: prompt.has_focus, "the input to have focus")

        await pilot.press("shift+tab")
        await wait_for(pilot, lambda: views[-1].has_focus, "the newest message to take focus")
        await pilot.pause()
        focused, other = views[-1], views[-2]
        assert focused.styles.background != other.styles.background
        assert focused.styles.border_left != other.styles.border_left
        assert focused.styles.border_left[0] != "blank"
        assert focused.content_region.x == other.content_region.x  # the bar takes a blank column: no jump
        for theme in ("workbench-light", "workbench-dark"):  # the bar is the theme's primary colour in each
            app.theme = theme
            await wait_for(pilot, lambda: app.theme == theme, f"the theme {theme}")  # noqa: B023 (awaited)
            await pilot.pause()
            primary = Color.parse(app.current_theme.primary)
            assert focused.styles.border_left[1].rgb == primary.rgb
            assert focused.styles.background.rgb != other.styles.background.rgb

        await pilot.press("up")
        await wait_for(pilot, lambda: views[2].has_focus, "the message above")
        await pilot.press("up", "up", "up")  # past the first one stays on it
        await wait_for(pilot, lambda: views[0].has_focus, "the first message")
        await pilot.pause()
        assert views[0].region.y >= chat.transcript.region.y  # scrolled into view
        await pilot.press("down")
        await wait_for(pilot, lambda: views[1].has_focus, "the message below")
        assert [w for w in chat.focus_chain if isinstance(w, MessageView)] == [views[1]]

        await pilot.press("tab")
        await wait_for(pilot, lambda: prompt.has_focus, "Tab to return to the input at once")
        await pilot.press("shift+tab")  # back to where one was
        await wait_for(pilot, lambda: views[1].has_focus, "the message left last")


async def test_typing_on_a_message_types_into_the_input_and_bound_keys_still_work(app_paths: AppPaths) -> None:
    app, _ = chat_app(app_paths, Script(tokens=ANSWER))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "capital of France?")
        await answer_done(app, pilot)
        prompt = chat.query_one(ChatInput)
        chat.message_views()[0].focus()
        await wait_for(pilot, lambda: chat.message_views()[0].has_focus, "the first message")
        await pilot.press("x", "y", "z")
        await wait_for(pilot, lambda: prompt.text == "xyz", "the typed text in the input")
        assert prompt.has_focus
        await pilot.press("shift+tab", "1")  # a key bound to something does that, not typing
        await wait_for(pilot, lambda: not isinstance(app.screen, ChatPane), "1 to switch to the Catalog")


async def test_a_click_focuses_a_message(app_paths: AppPaths) -> None:
    app, _ = chat_app(app_paths, Script(tokens=ANSWER))
    async with app.run_test(size=SIZE) as pilot:
        chat = await open_chat(app, pilot)
        await send(pilot, "capital of France?")
        await answer_done(app, pilot)
        first = chat.message_views()[0]
        await pilot.click(first)
        await wait_for(pilot, lambda: first.has_focus, "the clicked message to take focus")


async def test_copy_names_what_it_copied(app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMUX", raising=False)
    app, _ = chat_app(app_paths, Script(tokens=ANSWER))
    async with app.run_test(size=SIZE) as pilot:
        await open_chat(app, pilot)
        await send(pilot, "capital of France?")
        await answer_done(app, pilot)
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: app.clipboard == "The capital of France is Paris.", "the answer copied")
        assert "Copied: “The capital of France is…” (31 characters)." in notes(app)
        await pilot.press("shift+tab", "up", "ctrl+y")
        await wait_for(pilot, lambda: app.clipboard == "capital of France?", "the question copied")
        assert "Copied: “capital of France?” (18 characters)." in notes(app)


async def test_copy_in_tmux_without_set_clipboard_says_how_to_enable_it(
    app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,1234,0")
    options = {"set-clipboard": "external", "allow-passthrough": "off"}
    monkeypatch.setattr(clipboard, "tmux_option", options.get)
    app, _ = chat_app(app_paths, Script(tokens=ANSWER))
    async with app.run_test(size=SIZE) as pilot:
        await open_chat(app, pilot)
        await send(pilot, "capital of France?")
        await answer_done(app, pilot)
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: any("set-clipboard" in n for n in notes(app)), "the tmux hint")
        note = next(n for n in notes(app) if "set-clipboard" in n)
        assert note.startswith("Copied: “The capital of France is…”")
        assert "in tmux, add `set -g set-clipboard on` to ~/.tmux.conf" in note
        options["set-clipboard"] = "on"
        app.clear_notifications()
        await pilot.press("ctrl+y")
        await wait_for(pilot, lambda: notes(app), "the second toast")
        assert notes(app) == ["Copied: “The capital of France is…” (31 characters)."]
