"""The Compare pane: two models (or one model, two settings) answer the same prompt side by side."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Markdown, Select, Static
from textual.worker import Worker

from workbench.core.chat.model_sampling import chat_sampling, model_sampling_by_id
from workbench.core.chat.run import ChatMessage, ContextTrimmed, Finished, GenerationFigures, Token
from workbench.core.chat.sampling import SamplingChoice
from workbench.core.compare.run import (
    CompareRun,
    Contender,
    MemoryPlan,
    SideFailed,
    plan_memory,
    word_diff,
)
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import DEFAULT_CHAT_ID
from workbench.core.models.spec import ModelRole
from workbench.core.models.wait import DefaultModelImport, ModelWaitError, Waiting, until_ready
from workbench.ui.screens.base import PaneScreen
from workbench.ui.services import services_of
from workbench.ui.widgets.chat_input import ChatInput

log = logging.getLogger(__name__)

PAINT_INTERVAL_S = 1 / 30
STACK_BELOW_COLUMNS = 100
OUTCOMES = {"1": "a", "2": "b", "=": "tie", "0": "both_bad"}


class Side(Vertical):
    """One column: the model, its live figures, and the answers of this comparison."""

    DEFAULT_CSS = """
    Side { width: 1fr; height: 1fr; border: round $panel; padding: 0 1; }
    Side .side-title { text-style: bold; color: $primary; }
    Side .side-figures { color: $text-muted; height: auto; }
    Side .side-error { color: $error; height: auto; }
    Side VerticalScroll { height: 1fr; }
    """

    def __init__(self, side: str) -> None:
        super().__init__(id=f"side-{side}")
        self.side = side
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Static(f"Model {self.side.upper()}", classes="side-title")
        yield Static("", classes="side-figures")
        yield Static("", classes="side-error")
        with VerticalScroll():
            yield Markdown("")

    def set_title(self, title: str) -> None:
        self.query_one(".side-title", Static).update(title)

    def set_figures(self, text: str) -> None:
        self.query_one(".side-figures", Static).update(text)

    def set_error(self, text: str) -> None:
        self.query_one(".side-error", Static).update(text)

    async def set_text(self, text: str) -> None:
        self.text = text
        await self.query_one(Markdown).update(text)
        self.query_one(VerticalScroll).scroll_end(animate=False)

    def show_diff(self, ops: list[tuple[str, str]], mine: str) -> None:
        """Replace the Markdown with plain text in which the words only this answer has are highlighted."""
        rendered = Text()
        for op, text in ops:
            if op == "same":
                rendered.append(text)
            elif op == mine:
                rendered.append(text, style="bold black on yellow" if mine == "a" else "bold black on cyan")
        markdown = self.query_one(Markdown)
        markdown.display = False
        scroll = self.query_one(VerticalScroll)
        for old in scroll.query(".diff"):
            old.remove()
        scroll.mount(Static(rendered, classes="diff"))

    def hide_diff(self) -> None:
        for old in self.query(".diff"):
            old.remove()
        self.query_one(Markdown).display = True


class Sides(Horizontal, can_focus=True):
    """The two answers. Focused after each comparison, so d, b and the vote keys are not typed as text."""

    BINDINGS = [Binding("enter,i", "screen.focus_prompt", "Type", id="compare.type")]

    DEFAULT_CSS = """
    Sides:focus > Side { border: round $primary; }
    """


class ComparePane(PaneScreen):
    MODE = "compare"

    BINDINGS = [
        Binding("escape", "stop", "Stop both", id="compare.stop"),
        Binding("d", "diff", "Diff", id="compare.diff"),
        Binding("b", "blind", "Blind", id="compare.blind"),
        Binding("ctrl+s", "settings('a')", "Settings A", id="compare.settings-a"),
        Binding("ctrl+t", "settings('b')", "Settings B", id="compare.settings-b"),
        Binding("ctrl+n", "new", "New", id="compare.new"),
        Binding("ctrl+l", "leaderboard", "Ratings", id="compare.leaderboard"),
        Binding("ctrl+o", "prompt_set", "Prompt set", id="compare.prompt-set"),
        Binding("1", "vote('1')", "A better", id="compare.vote-a"),
        Binding("2", "vote('2')", "B better", id="compare.vote-b"),
        Binding("equals_sign", "vote('=')", "Tie", id="compare.vote-tie"),
        Binding("0", "vote('0')", "Both bad", id="compare.vote-bad"),
    ]

    DEFAULT_CSS = """
    ComparePane #compare-models { height: 3; }
    ComparePane #compare-models Select { width: 1fr; }
    ComparePane #compare-plan { height: 1; padding: 0 1; color: $text-muted; }
    ComparePane #compare-sides { height: 1fr; }
    ComparePane #compare-sides.-stacked { layout: vertical; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.settings = {"a": SamplingChoice(), "b": SamplingChoice()}  # the model's defaults fill the rest
        self.system_prompts = {"a": "", "b": ""}
        self.history: dict[str, list[ChatMessage]] = {"a": [], "b": []}
        self.run: CompareRun | None = None
        self.blind = False
        self.swapped = False
        self.awaiting_vote = False
        self.run_id: int | None = None
        self.diffing = False
        self.waiting_prompt: str | None = None  # sent while the default model is still on its way
        self.wait_worker: Worker[None] | None = None

    @property
    def manager(self) -> ModelManager:
        return services_of(self).manager

    @property
    def default_import(self) -> DefaultModelImport:
        return services_of(self).default_import

    # --- layout ----------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="compare-models"):
            yield Select[str]([], prompt="Model A", id="model-a", allow_blank=True)
            yield Select[str]([], prompt="Model B", id="model-b", allow_blank=True)
        yield Static("", id="compare-plan")
        with Sides(id="compare-sides"):
            yield Side("a")
            yield Side("b")
        yield ChatInput(id="compare-prompt")

    def on_mount(self) -> None:
        self.settings = {side: SamplingChoice(services_of(self).settings.chat_preset) for side in "ab"}
        self.watch(self.app, "models_version", lambda _v: self.refresh_models())
        self.watch(self.app, "import_status", lambda _status: self.show_plan(), init=False)
        self.refresh_models()
        self.query_one(ChatInput).focus()

    def on_resize(self) -> None:
        self.query_one("#compare-sides").set_class(self.size.width < STACK_BELOW_COLUMNS, "-stacked")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "vote":
            return self.awaiting_vote  # otherwise 1 and 2 keep switching panes, and = and 0 are text
        return True

    # --- models ----------------------------------------------------------------------------------

    def chat_models(self) -> list[str]:
        return self.manager.ids(ModelRole.CHAT)

    def refresh_models(self) -> None:
        ids = self.chat_models()
        options = [(self.manager.info(i).spec.name, i) for i in ids]
        default = DEFAULT_CHAT_ID if DEFAULT_CHAT_ID in ids else (ids[0] if ids else None)
        for side in ("a", "b"):
            select = self.query_one(f"#model-{side}", Select)
            current = select.value if select.value is not Select.NULL else None
            if [v for _, v in select._options if v is not Select.NULL] != ids:
                select.set_options(options)
            wanted = current if current in ids else default
            if wanted is not None and select.value != wanted:
                select.value = wanted
        self.show_plan()

    def contender(self, side: str) -> Contender | None:
        value = self.query_one(f"#model-{side}", Select).value
        if value is Select.NULL:
            return None
        model_id = str(value)
        sampling = chat_sampling(services_of(self).settings, self.manager, model_id, self.settings[side]).settings
        label = f"{self.manager.info(model_id).spec.name} · T {sampling.temperature:g}"
        if self.system_prompts[side]:
            label += " · own prompt"
        return Contender(model_id, label, sampling, self.system_prompts[side])

    @on(Select.Changed)
    def models_changed(self) -> None:
        self.show_plan()

    def current_plan(self) -> MemoryPlan | None:
        a, b = self.contender("a"), self.contender("b")
        if a is None or b is None:
            return None
        return plan_memory(self.manager, a, b)

    def show_plan(self) -> None:
        plan = self.current_plan()
        text = "Choose two models (or one model twice and give each side its own settings)."
        if plan is not None:
            text = f"Plan: {plan.kind.label} — {plan.reason}"
        elif self.default_import.status.coming and not self.chat_models():
            text = f"{self.default_import.describe()}: both sides get it; a prompt sent now waits for it."
        if self.waiting_prompt is None:  # else the wait says what it waits for
            self.query_one("#compare-plan", Static).update(text)
        if not self.blind:
            for side in ("a", "b"):
                contender = self.contender(side)
                self.query_one(f"#side-{side}", Side).set_title(
                    f"{side.upper()}: {contender.label}" if contender else f"Model {side.upper()}"
                )

    # --- running ---------------------------------------------------------------------------------

    @on(ChatInput.Submitted, "#compare-prompt")
    def send(self, event: ChatInput.Submitted) -> None:
        prompt = event.text.strip()
        if not prompt:
            return
        if self.run is not None or self.waiting_prompt is not None:
            self.notify("Still answering: Esc stops both.", severity="warning")
            return
        if self.current_plan() is None and not self.chat_models() and self.default_import.status.coming:
            self.query_one(ChatInput).clear()
            self.waiting_prompt = prompt
            self.wait_worker = self.wait_then_start(prompt)
            return
        self.start(prompt)

    def start(self, prompt: str) -> None:
        a, b = self.contender("a"), self.contender("b")
        plan = self.current_plan()
        if a is None or b is None or plan is None:
            self.notify("Choose model A and model B first.", severity="warning")
            return
        if self.blind:
            self.swapped = random.random() < 0.5
            for side in ("a", "b"):
                self.query_one(f"#side-{side}", Side).set_title(f"Answer {'1' if side == 'a' else '2'}")
        self.query_one(ChatInput).clear()
        for side in ("a", "b"):
            self.history[side].append(ChatMessage("user", prompt))
        self.awaiting_vote = False
        self.hide_diff()
        self.run = CompareRun(self.manager, a, b, list(self.history["a"]), list(self.history["b"]), plan)
        self.run_id = services_of(self).store.compare_runs.add_compare_run(
            prompt=prompt, a=a.to_dict(), b=b.to_dict(), plan=plan.kind, blind=self.blind, swapped=self.swapped
        )
        self.stream(self.run, prompt)

    @work(group="compare-wait", exclusive=True, exit_on_error=False)
    async def wait_then_start(self, prompt: str) -> None:
        """Keep the prompt while the default model is imported (core/model_wait.py); both sides get it."""
        try:
            async for step in until_ready(self.manager, self.default_import, None, load_step=False):
                if isinstance(step, Waiting):
                    self.query_one("#compare-plan", Static).update(
                        f"Waiting: {step.what}; your prompt goes to both sides when it is ready (Esc cancels)."
                    )
                    for side in ("a", "b"):
                        self.query_one(f"#side-{side}", Side).set_figures(f"waiting: {step.what}")
        except ModelWaitError as exc:
            self.notify(str(exc), severity="error", timeout=12)
            return
        finally:
            self.waiting_prompt, self.wait_worker = None, None
            for side in ("a", "b"):
                self.query_one(f"#side-{side}", Side).set_figures("")
        self.refresh_models()
        self.start(prompt)

    def side_widget(self, side: str) -> Side:
        """Where an answer shows: in blind mode the sides may be shuffled."""
        shown = {"a": "b", "b": "a"}[side] if self.blind and self.swapped else side
        return self.query_one(f"#side-{shown}", Side)

    @work(group="compare-run", exit_on_error=False)
    async def stream(self, run: CompareRun, prompt: str) -> None:
        texts = {"a": "", "b": ""}
        painted = {"a": 0.0, "b": 0.0}
        figures: dict[str, GenerationFigures | None] = {"a": None, "b": None}
        errors: dict[str, str | None] = {"a": None, "b": None}
        for side in ("a", "b"):
            widget = self.side_widget(side)
            await widget.set_text("")
            widget.set_error("")
            widget.set_figures("waiting…")
        started = time.monotonic()
        try:
            async for side_event in run.events():
                side, event = side_event.side, side_event.event
                widget = self.side_widget(side)
                if isinstance(event, Token):
                    texts[side] += event.text
                    now = time.monotonic()
                    if now - painted[side] >= PAINT_INTERVAL_S:
                        painted[side] = now
                        await widget.set_text(texts[side])
                        widget.set_figures(f"streaming · {now - started:.1f} s")
                elif isinstance(event, ContextTrimmed):
                    widget.set_error(f"oldest {event.dropped} message(s) not sent: longer than the context")
                elif isinstance(event, Finished):
                    figures[side] = event.figures
                    await widget.set_text(texts[side])
                    summary = event.figures.summary() if event.figures else ""
                    widget.set_figures(("stopped · " if event.stopped else "") + summary)
                elif isinstance(event, SideFailed):
                    errors[side] = event.error
                    await widget.set_text(texts[side])
                    widget.set_error(f"Error: {event.error}")
                    widget.set_figures("")
        except Exception as exc:
            log.exception("compare run failed")
            self.notify(f"The comparison failed: {exc}", severity="error")
        finally:
            self.run = None
            for side in ("a", "b"):
                if texts[side]:
                    self.history[side].append(ChatMessage("assistant", texts[side]))
            if self.run_id is not None:
                services_of(self).store.compare_runs.update_compare_run(
                    self.run_id, answer_a=texts["a"], answer_b=texts["b"],
                    figures_a=figures["a"].to_dict() if figures["a"] else None,
                    figures_b=figures["b"].to_dict() if figures["b"] else None,
                    error_a=errors["a"], error_b=errors["b"],
                )  # fmt: skip
            self.awaiting_vote = self.blind and bool(texts["a"] or texts["b"])
            if self.awaiting_vote:
                self.notify("Which answer is better? 1, 2, = (tie) or 0 (both bad).", title="Blind vote")
            self.query_one("#compare-sides").focus()  # d, b and votes work here; enter goes back to typing
            self.refresh_bindings()

    def action_focus_prompt(self) -> None:
        self.query_one(ChatInput).focus()

    # --- actions ---------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.run is not None:
            self.run.stop()
        elif self.wait_worker is not None:  # not sent yet: give the prompt back
            prompt = self.waiting_prompt or ""
            self.wait_worker.cancel()
            self.waiting_prompt = None
            self.query_one(ChatInput).text = prompt
            self.show_plan()

    def hide_diff(self) -> None:
        self.diffing = False
        for side in ("a", "b"):
            self.query_one(f"#side-{side}", Side).hide_diff()

    def action_diff(self) -> None:
        if self.diffing:
            self.hide_diff()
            return
        a, b = self.side_widget("a").text, self.side_widget("b").text
        if not (a or b):
            return
        ops = word_diff(a, b)
        self.side_widget("a").show_diff(ops, "a")
        self.side_widget("b").show_diff(ops, "b")
        self.diffing = True

    def action_blind(self) -> None:
        if self.run is not None:
            return
        self.blind = not self.blind
        self.notify("Blind mode on: names hidden, sides shuffled for the next prompt." if self.blind
                    else "Blind mode off.")  # fmt: skip
        if not self.blind:
            self.awaiting_vote = False
            self.show_plan()
            self.refresh_bindings()

    def action_vote(self, key: str) -> None:
        if not self.awaiting_vote or self.run_id is None:
            return
        shown = OUTCOMES[key]  # "a"/"b" mean the columns as shown; the store maps swapped runs back
        services_of(self).store.votes.add_compare_vote(self.run_id, shown)
        self.awaiting_vote = False
        self.refresh_bindings()
        a, b = self.contender("a"), self.contender("b")
        names = {"a": a.label if a else "A", "b": b.label if b else "B"}
        left, right = (names["b"], names["a"]) if self.swapped else (names["a"], names["b"])
        self.side_widget("a").set_title(f"A: {names['a']}")
        self.side_widget("b").set_title(f"B: {names['b']}")
        self.notify(f"Vote saved. Answer 1 was {left}, answer 2 was {right}.")
        self.query_one(ChatInput).focus()

    def action_new(self) -> None:
        if self.run is not None:
            return
        self.history = {"a": [], "b": []}
        self.awaiting_vote = False
        self.hide_diff()
        for side in ("a", "b"):
            widget = self.query_one(f"#side-{side}", Side)
            self.call_later(widget.set_text, "")
            widget.set_figures("")
            widget.set_error("")
        self.show_plan()
        self.query_one(ChatInput).focus()

    def action_settings(self, side: str) -> None:
        from workbench.ui.screens.chat_settings import ChatSettings, SettingsScreen

        def applied(result: ChatSettings | None) -> None:
            if result is not None:
                self.settings[side], self.system_prompts[side] = result.sampling, result.system_prompt
                self.show_plan()

        current = ChatSettings(self.system_prompts[side], self.settings[side])
        model_id = self.query_one(f"#model-{side}", Select).value
        model = model_sampling_by_id(self.manager, None if model_id is Select.NULL else str(model_id))
        self.app.push_screen(SettingsScreen(services_of(self), current, model), applied)

    def action_prompt_set(self) -> None:
        from workbench.core.compare.run import load_prompt_set
        from workbench.ui.screens.dialogs import PromptScreen
        from workbench.ui.screens.prompt_set import PromptSetScreen

        a, b, plan = self.contender("a"), self.contender("b"), self.current_plan()
        if a is None or b is None or plan is None or self.run is not None:
            self.notify("Choose model A and model B first (and let the current answers finish).", severity="warning")
            return

        def chosen(path_text: str | None) -> None:
            if not path_text:
                return
            path = Path(path_text).expanduser()
            prompts, problems = load_prompt_set(path)
            for problem in problems[:5]:
                self.notify(f"{path.name}: {problem}", severity="warning")
            if not prompts:
                self.notify(f"No prompts in {path}.", severity="error")
                return
            self.app.push_screen(PromptSetScreen(path, prompts, a, b, plan))

        self.app.push_screen(PromptScreen("A file of prompts (one per line, or JSONL with \"prompt\")", "",
                                          placeholder="~/prompts.txt"), chosen)  # fmt: skip

    def action_leaderboard(self) -> None:
        from workbench.ui.screens.leaderboard import LeaderboardScreen

        self.app.push_screen(LeaderboardScreen())
