"""Run a file of prompts through both sides of a comparison, with progress, a results table and exports.

The run itself is core's :class:`~workbench.core.compare.prompt_set.PromptSetRun`; its worker posts one message per
prompt answered and the handler adds the row.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from workbench.core.compare.prompt_set import PromptAnswered, PromptSetRun, load_prompt_set
from workbench.core.compare.replay import export_jsonl, export_markdown
from workbench.core.compare.results import SideResult
from workbench.core.compare.run import Contender, MemoryPlan
from workbench.core.models.lifecycle import ModelManager
from workbench.ui.services import services_of

log = logging.getLogger(__name__)


def figure_cells(result: SideResult) -> tuple[str, str]:
    """A side's tokens and speed for the table; "error" when it failed without figures."""
    figures = result.figures
    if figures is None:
        return ("error" if result.error is not None else "–", "")
    return str(figures.generation_tokens), f"{figures.generation_tps:.1f}"


def choose_prompt_set(app: App[Any], a: Contender, b: Contender, plan: MemoryPlan) -> None:
    """Ask for a file of prompts, say what is wrong in it, and run the prompts it holds."""
    from workbench.ui.screens.dialogs import PromptScreen

    def chosen(path_text: str | None) -> None:
        if not path_text:
            return
        path = Path(path_text).expanduser()
        prompts, problems = load_prompt_set(path)
        for problem in problems[:5]:
            app.notify(f"{path.name}: {problem}", severity="warning")
        if not prompts:
            app.notify(f"No prompts in {path}.", severity="error")
            return
        app.push_screen(PromptSetScreen(path, prompts, a, b, plan))

    app.push_screen(PromptScreen("A file of prompts (one per line, or JSONL with \"prompt\")", "",
                                 placeholder="~/prompts.txt", path=True), chosen)  # fmt: skip


class PromptDone(Message):
    def __init__(self, answered: PromptAnswered) -> None:
        super().__init__()
        self.answered = answered


class PromptSetDone(Message):
    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error


class PromptSetScreen(Screen):
    BINDINGS = [
        Binding("escape", "close", "Stop and close", id="prompt-set.close"),
        Binding("m", "export('md')", "Export Markdown", id="prompt-set.export-markdown"),
        Binding("j", "export('jsonl')", "Export JSONL", id="prompt-set.export-jsonl"),
    ]

    DEFAULT_CSS = """
    PromptSetScreen #prompt-set-head { height: auto; padding: 0 1; background: $panel; }
    PromptSetScreen ProgressBar { padding: 0 1; }
    PromptSetScreen #prompt-set-table { height: 1fr; }
    """

    def __init__(self, source: Path, prompts: list[str], a: Contender, b: Contender, plan: MemoryPlan) -> None:
        super().__init__()
        self.source, self.prompts, self.a, self.b, self.plan = source, prompts, a, b, plan
        self.run: PromptSetRun | None = None  # made on mount, from the app's manager

    @property
    def manager(self) -> ModelManager:
        return services_of(self).manager

    @property
    def results(self) -> list[dict[str, Any]]:
        """What the exports hold: one record per prompt answered so far."""
        return self.run.records if self.run is not None else []

    def compose(self) -> ComposeResult:
        yield Static(f"{self.source.name}: {len(self.prompts)} prompts · A {self.a.label} · B {self.b.label}\n"
                     f"Plan: {self.plan.kind.label} — {self.plan.reason}", id="prompt-set-head")  # fmt: skip
        yield ProgressBar(total=len(self.prompts), show_eta=True)
        table: DataTable[str] = DataTable(id="prompt-set-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("#", "Prompt", "A tokens", "A tok/s", "B tokens", "B tok/s")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.run = PromptSetRun(self.manager, self.prompts, self.a, self.b, self.plan)
        self.run_all(self.run)

    @work(group="prompt-set", exclusive=True, exit_on_error=False)
    async def run_all(self, run: PromptSetRun) -> None:
        error: str | None = None
        try:
            async with contextlib.aclosing(run.answers()) as answers:
                async for answered in answers:
                    self.post_message(PromptDone(answered))
        except Exception as exc:
            log.exception("the prompt set failed")
            error = f"The prompt set failed: {exc}"
        self.post_message(PromptSetDone(error))

    def on_prompt_done(self, message: PromptDone) -> None:
        answered = message.answered
        results, prompt = answered.results, answered.prompt
        short = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        self.query_one(DataTable).add_row(str(answered.number), short, *figure_cells(results["a"]),
                                          *figure_cells(results["b"]))  # fmt: skip
        self.query_one(ProgressBar).advance(1)

    def on_prompt_set_done(self, message: PromptSetDone) -> None:
        if message.error is not None:
            self.notify(message.error, severity="error")
        self.notify(f"{len(self.results)} of {len(self.prompts)} prompts done: m or j exports them.")

    def action_close(self) -> None:
        if self.run is not None:
            self.run.stop()
        self.app.pop_screen()

    def action_export(self, kind: str) -> None:
        if not self.results:
            self.notify("Nothing to export yet.", severity="warning")
            return
        folder = services_of(self).paths.data_dir / "exports"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"compare-{self.source.stem}-{stamp}.{kind}"
        text = export_markdown(self.results) if kind == "md" else export_jsonl(self.results)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"Could not write {path}: {exc}", severity="error")
            return
        self.notify(f"Wrote {path}", title="Export")
