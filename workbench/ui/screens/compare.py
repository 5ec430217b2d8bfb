"""The Compare pane: two models (or one model, two settings) answer the same prompt side by side.

The pane renders and sends intents: a :class:`~workbench.core.compare.session.CompareSession` keeps the
histories, stores the runs and votes and flips the blind coin. Its workers post messages (with a generation
number, so a late one from an earlier run or wait is dropped); only the message handlers touch the widgets.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Select, Static
from textual.worker import Worker

from workbench.core.compare.diff import word_diff
from workbench.core.compare.run import SIDES, Contender, MemoryPlan
from workbench.core.compare.session import CompareSession, CompareTurn
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.spec import ModelRole
from workbench.core.models.wait import DefaultModelImport, ModelWaitError, Waiting, until_ready
from workbench.ui.screens.base import PaneScreen
from workbench.ui.screens.compare_stream import CompareEnded, SideUpdated, WaitChanged, WaitOver, stream_turn
from workbench.ui.services import services_of
from workbench.ui.widgets.chat_input import ChatInput
from workbench.ui.widgets.compare_sides import Side, Sides
from workbench.ui.widgets.contender_picker import ContenderPicker
from workbench.ui.widgets.memory_strip import MemoryStrip

OUTCOMES = {"1": "a", "2": "b", "=": "tie", "0": "both_bad"}


class ComparePane(PaneScreen):
    MODE = "compare"
    MAIN_VIEW, TEXT_BOX = "#compare-sides", "#compare-prompt"
    RUNNING = {"run": "a comparison is running", "wait_worker": "a prompt waits for its model"}

    BINDINGS = [
        Binding("escape", "stop", "Stop both", id="compare.stop"),
        Binding("d", "diff", "Diff", id="compare.diff"),
        Binding("b", "blind", "Blind", id="compare.blind"),
        Binding("ctrl+s", "settings('a')", "Settings A", id="compare.settings-a"),
        Binding("ctrl+t", "settings('b')", "Settings B", id="compare.settings-b"),
        Binding("ctrl+f", "pick('a')", "Model A", id="compare.model-a"),
        Binding("ctrl+g", "pick('b')", "Model B", id="compare.model-b"),
        Binding("ctrl+n", "new", "New", id="compare.new"),
        Binding("ctrl+l", "leaderboard", "Ratings", id="compare.leaderboard"),
        Binding("ctrl+o", "prompt_set", "Prompt set", id="compare.prompt-set"),
        Binding("1", "vote('1')", "A better", id="compare.vote-a"),
        Binding("2", "vote('2')", "B better", id="compare.vote-b"),
        Binding("equals_sign", "vote('=')", "Tie", id="compare.vote-tie"),
        Binding("0", "vote('0')", "Both bad", id="compare.vote-bad"),
    ]

    # The prompt box is one line while it has no focus or the answers stream: the answers get the height.
    DEFAULT_CSS = """
    ComparePane #compare-plan { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap;
                                text-overflow: ellipsis; }
    ComparePane #compare-sides { height: 1fr; }
    ComparePane #compare-prompt { height: 1; min-height: 1; border: none; padding: 0 1; background: $boost; }
    ComparePane #compare-prompt:focus { height: auto; min-height: 3; border: tall $primary; padding: 0; }
    ComparePane #compare-prompt.-busy { height: 1; min-height: 1; border: none; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.session: CompareSession | None = None  # made on mount, from the app's services
        self.run: CompareTurn | None = None  # from the prompt sent until its end is on screen
        self.generation = 0  # bumped per run: a message of an earlier run is dropped
        self.swapped = False  # the last run (a blind one) showed B first
        self.names_hidden = False  # blind mode, before the vote
        self.waiting_prompt: str | None = None  # sent while the default model is still on its way
        self.wait_worker: Worker[None] | None = None
        self.wait_generation = 0  # bumped per wait, and when Esc gives the prompt back

    @property
    def manager(self) -> ModelManager:
        return services_of(self).manager

    @property
    def default_import(self) -> DefaultModelImport:
        return services_of(self).default_import

    @property
    def compare(self) -> CompareSession:
        assert self.session is not None, "the Compare pane is not mounted"
        return self.session

    @property
    def blind(self) -> bool:
        return self.session is not None and self.session.blind

    @property
    def awaiting_vote(self) -> bool:
        return self.session is not None and self.session.awaiting_vote

    @property
    def sides(self) -> Sides:
        return self.query_one(Sides)

    @property
    def diffing(self) -> bool:
        return self.sides.diffing

    # --- layout ----------------------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        yield ContenderPicker(services_of(self).settings.chat_preset, id="compare-models")
        yield Static("", id="compare-plan")
        yield Sides(id="compare-sides")
        yield ChatInput(id="compare-prompt", placeholder="A prompt for both sides (enter sends)")

    def on_mount(self) -> None:
        self.session = CompareSession(self.manager, services_of(self).store)
        self.watch(self.app, "models_version", lambda _v: self.refresh_models())
        self.watch(self.app, "import_status", lambda _status: self.show_plan(), init=False)
        self.refresh_models()
        self.query_one(ChatInput).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "vote":
            return self.awaiting_vote  # otherwise 1 and 2 keep switching panes, and = and 0 are text
        return True

    # --- models ----------------------------------------------------------------------------------

    def chat_models(self) -> list[str]:
        return self.manager.ids(ModelRole.CHAT)

    def refresh_models(self) -> None:
        self.query_one(ContenderPicker).refresh_models(self.chat_models())
        self.show_plan()

    def contender(self, side: str) -> Contender | None:
        return self.query_one(ContenderPicker).contender(side)

    @on(Select.Changed)
    def models_changed(self) -> None:
        self.show_plan()

    def current_plan(self) -> MemoryPlan | None:
        return self.query_one(ContenderPicker).plan()

    def show_plan(self) -> None:
        plan = self.current_plan()
        text = "Choose two models (ctrl+f, ctrl+g), or one model twice with its own settings per side."
        if plan is not None:  # a reason may name a model: not before a blind vote
            text = f"Plan: {plan.kind.label} — {'names hidden until the vote' if self.names_hidden else plan.reason}"
        elif self.default_import.status.coming and not self.chat_models():
            text = f"{self.default_import.describe()}: both sides get it; a prompt sent now waits for it."
        if self.waiting_prompt is None:  # else the wait says what it waits for
            self.query_one("#compare-plan", Static).update(text)
        if not self.names_hidden:
            for side in SIDES:
                contender = self.contender(side)
                self.side_widget(side).set_title(f"{side.upper()}: {contender.label}" if contender
                                                 else f"Model {side.upper()}")  # fmt: skip

    def hide_names(self, hidden: bool) -> None:
        """Blind mode before the vote: no model name on screen, no figures that tell the sides apart."""
        self.names_hidden = hidden
        picker = self.query_one(ContenderPicker)
        if hidden and picker.has_focus_within:  # a hidden picker would keep the keys
            self.sides.focus()
        picker.set_blind(hidden)
        self.query_one(MemoryStrip).hide_models = hidden
        self.sides.hide_names(hidden)

    # --- running ---------------------------------------------------------------------------------

    @on(ChatInput.Submitted, "#compare-prompt")
    async def send(self, event: ChatInput.Submitted) -> None:
        prompt = event.text.strip()
        if not prompt:
            return
        if self.run is not None or self.waiting_prompt is not None:
            self.notify("Still answering: Esc stops both.", severity="warning")
            return
        if services_of(self).attached:  # until compare_session() runs comparisons in the engine
            self.notify("Compare through the engine is not in this build yet.", severity="warning", timeout=10)
            return
        if self.current_plan() is None and not self.chat_models() and self.default_import.status.coming:
            self.query_one(ChatInput).clear()
            self.waiting_prompt = prompt
            self.wait_generation += 1
            self.wait_worker = self.wait_for_default(prompt, self.wait_generation)
            return
        await self.start(prompt)

    async def start(self, prompt: str) -> None:
        a, b = self.contender("a"), self.contender("b")
        plan = self.current_plan()
        if a is None or b is None or plan is None:
            self.notify("Choose model A and model B first.", severity="warning")
            return
        turn = self.compare.ask(prompt, a, b, plan)
        self.run = turn
        self.generation += 1
        self.swapped = turn.swapped
        self.hide_names(turn.blind)
        self.show_plan()
        self.query_one(ChatInput).clear()
        self.query_one(ChatInput).add_class("-busy")
        self.refresh_bindings()
        self.sides.hide_diff()
        for side in SIDES:
            await self.side_widget(side).clear("waiting…")
        self.stream(turn, self.generation)

    @work(group="compare-wait", exclusive=True, exit_on_error=False)
    async def wait_for_default(self, prompt: str, generation: int) -> None:
        """Keep the prompt while the default model is imported (core/models/wait.py); both sides get it."""
        try:
            async for step in until_ready(self.manager, self.default_import, None, load_step=False):
                if isinstance(step, Waiting):
                    self.post_message(WaitChanged(generation, step.what))
        except ModelWaitError as exc:
            self.post_message(WaitOver(generation, prompt, str(exc)))
            return
        self.post_message(WaitOver(generation, prompt))

    def on_wait_changed(self, message: WaitChanged) -> None:
        if message.generation != self.wait_generation or self.waiting_prompt is None:
            return
        self.query_one("#compare-plan", Static).update(
            f"Waiting: {message.what}; your prompt goes to both sides when it is ready (Esc cancels)."
        )
        for side in SIDES:
            self.sides.column(side).set_figures(f"waiting: {message.what}")

    async def on_wait_over(self, message: WaitOver) -> None:
        if message.generation != self.wait_generation or self.waiting_prompt is None:
            return
        self.end_wait()
        if message.error is not None:
            self.notify(message.error, severity="error", timeout=12)
            return
        self.refresh_models()
        await self.start(message.prompt)

    def end_wait(self) -> None:
        self.waiting_prompt, self.wait_worker = None, None
        self.wait_generation += 1
        for side in SIDES:
            self.sides.column(side).set_figures("")

    def side_widget(self, side: str) -> Side:
        """Where contender ``side``'s answer shows: a blind run may have shuffled the sides."""
        return self.sides.column({"a": "b", "b": "a"}[side] if self.swapped else side)

    @work(group="compare-run", exit_on_error=False)
    async def stream(self, turn: CompareTurn, generation: int) -> None:
        await stream_turn(turn, generation, self.post_message)

    async def on_side_updated(self, message: SideUpdated) -> None:
        if message.generation == self.generation:
            await self.side_widget(message.side).show_update(message.text, message.event, message.elapsed_s)

    def on_compare_ended(self, message: CompareEnded) -> None:
        if message.generation != self.generation:
            return
        self.run = None
        self.query_one(ChatInput).remove_class("-busy")
        if message.error is not None:
            self.notify(message.error, severity="error")
        if self.awaiting_vote:
            self.notify("Which answer is better? 1, 2, = (tie) or 0 (both bad).", title="Blind vote")
        self.sides.focus()  # d, b and votes work here; enter goes back to typing
        self.refresh_bindings()

    def action_focus_prompt(self) -> None:
        self.query_one(ChatInput).focus()

    # --- actions ---------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.run is not None:
            self.compare.stop()
        elif self.wait_worker is not None:  # not sent yet: give the prompt back
            prompt = self.waiting_prompt or ""
            self.wait_worker.cancel()
            self.end_wait()
            self.query_one(ChatInput).text = prompt
            self.show_plan()

    def action_diff(self) -> None:
        if self.diffing:
            self.sides.hide_diff()
            return
        a, b = self.sides.column("a").text, self.sides.column("b").text
        if a or b:
            self.sides.show_diff(word_diff(a, b))

    def action_blind(self) -> None:
        if self.run is not None:
            return
        self.compare.set_blind(not self.compare.blind)
        self.notify("Blind mode on: names hidden, sides shuffled for the next prompt." if self.blind
                    else "Blind mode off.")  # fmt: skip
        self.hide_names(self.blind)
        self.show_plan()
        self.refresh_bindings()

    def action_vote(self, key: str) -> None:
        if not self.awaiting_vote:
            return
        reveal = self.compare.vote(OUTCOMES[key])  # "a"/"b" mean the columns as shown
        self.refresh_bindings()
        self.hide_names(False)
        for side in SIDES:
            self.side_widget(side).reveal(f"{side.upper()}: {reveal.labels[side]}")
        self.show_plan()
        self.notify(f"Vote saved. Answer 1 was {reveal.first}, answer 2 was {reveal.second}.")
        self.query_one(ChatInput).focus()

    def action_new(self) -> None:
        if self.run is not None:
            return
        self.compare.clear()
        self.refresh_bindings()
        self.sides.hide_diff()
        for side in SIDES:
            self.call_later(self.sides.column(side).clear)
        self.show_plan()
        self.query_one(ChatInput).focus()

    def action_settings(self, side: str) -> None:
        self.query_one(ContenderPicker).edit_settings(side, self.show_plan)

    def action_pick(self, side: str) -> None:
        if not self.query_one(ContenderPicker).pick(side):
            self.notify("Blind mode hides the models until you vote (or b turns it off).", severity="warning")

    def action_prompt_set(self) -> None:
        from workbench.ui.screens.prompt_set import choose_prompt_set

        a, b, plan = self.contender("a"), self.contender("b"), self.current_plan()
        if a is None or b is None or plan is None or self.run is not None:
            self.notify("Choose model A and model B first (and let the current answers finish).", severity="warning")
            return
        choose_prompt_set(self.app, a, b, plan)

    def action_leaderboard(self) -> None:
        from workbench.ui.screens.leaderboard import LeaderboardScreen

        self.app.push_screen(LeaderboardScreen())
