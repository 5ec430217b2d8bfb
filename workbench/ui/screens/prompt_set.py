"""Run a file of prompts through both sides of a comparison, with progress, a results table and exports."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from workbench.core.chat.run import ChatMessage, Finished, GenerationFigures, Token
from workbench.core.compare.run import (
    CompareRun,
    Contender,
    MemoryPlan,
    SideFailed,
    export_jsonl,
    export_markdown,
    replay_record,
)
from workbench.core.models.lifecycle import ModelManager
from workbench.ui.services import services_of

log = logging.getLogger(__name__)


def figure_cells(figures: GenerationFigures | None, failed: bool) -> tuple[str, str]:
    if figures is None:
        return ("error" if failed else "–", "")
    return str(figures.generation_tokens), f"{figures.generation_tps:.1f}"


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
        self.results: list[dict[str, Any]] = []
        self.run: CompareRun | None = None
        self.stopped = False

    @property
    def manager(self) -> ModelManager:
        return services_of(self).manager

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
        self.run_all()

    @work(group="prompt-set", exclusive=True, exit_on_error=False)
    async def run_all(self) -> None:
        table = self.query_one(DataTable)
        for number, prompt in enumerate(self.prompts, 1):
            if self.stopped:
                break
            texts = {"a": "", "b": ""}
            figures: dict[str, GenerationFigures | None] = {"a": None, "b": None}
            errors: dict[str, str] = {}
            self.run = CompareRun(self.manager, self.a, self.b, [ChatMessage("user", prompt)],
                                  [ChatMessage("user", prompt)], self.plan)  # fmt: skip
            async for side_event in self.run.events():
                side, event = side_event.side, side_event.event
                if isinstance(event, Token):
                    texts[side] += event.text
                elif isinstance(event, Finished):
                    figures[side] = event.figures
                elif isinstance(event, SideFailed):
                    errors[side] = event.error
            self.run = None
            result = {
                "prompt": prompt,
                "a": replay_record(self.manager, self.a, texts["a"], figures["a"]),
                "b": replay_record(self.manager, self.b, texts["b"], figures["b"]),
                "answer_a": texts["a"],
                "answer_b": texts["b"],
            }
            if errors:
                result["errors"] = errors
            self.results.append(result)
            short = prompt if len(prompt) <= 40 else prompt[:39] + "…"
            table.add_row(str(number), short, *figure_cells(figures["a"], "a" in errors),
                          *figure_cells(figures["b"], "b" in errors))  # fmt: skip
            self.query_one(ProgressBar).advance(1)
        self.notify(f"{len(self.results)} of {len(self.prompts)} prompts done: m or j exports them.")

    def action_close(self) -> None:
        self.stopped = True
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
