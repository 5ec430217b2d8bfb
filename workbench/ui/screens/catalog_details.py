"""One hub model in full: the card, licence, gating, files with sizes, and what a download would fetch."""

from __future__ import annotations

import logging

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Markdown, Static

from workbench.core.hub.client import ModelDetails
from workbench.core.hub.errors import HubError
from workbench.core.hub.fit import fit_verdict
from workbench.core.models.memory import format_bytes
from workbench.ui.messages import DetailsLoaded
from workbench.ui.services import services_of, settle

log = logging.getLogger(__name__)


class DetailsScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="details.back"),
        Binding("d", "download", "Download", id="details.download"),
        Binding("r", "retry", "Retry", id="details.retry"),
        Binding("tab", "app.focus_next", "Card/files", id="details.focus-next", show=False),
    ]

    DEFAULT_CSS = """
    DetailsScreen #details-head { height: auto; padding: 0 1; background: $panel; }
    DetailsScreen #details-head.-error { color: $error; }
    DetailsScreen #details-card { height: 2fr; padding: 0 1; }
    DetailsScreen #details-files { height: 1fr; }
    """

    def __init__(self, repo_id: str) -> None:
        super().__init__()
        self.repo_id = repo_id
        self.details: ModelDetails | None = None
        self.generation = 0  # bumped by each load (r retries): an older answer is dropped

    def compose(self) -> ComposeResult:
        yield Static(f"{self.repo_id}\nloading…", id="details-head")
        with VerticalScroll(id="details-card"):
            yield Markdown("")
        table: DataTable[str] = DataTable(id="details-files", cursor_type="row")
        table.add_columns("File", "Size", "d downloads it")  # not whether it is on disk (Local)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    def load(self) -> None:
        self.generation += 1
        self.load_worker(self.generation)

    @work(thread=True, exclusive=True, group="details", exit_on_error=False)
    def load_worker(self, generation: int) -> None:
        try:
            result: ModelDetails | HubError = services_of(self).hub.details(self.repo_id)
        except HubError as exc:
            result = exc
        except Exception as exc:
            log.exception("loading details of %s failed", self.repo_id)
            result = HubError(kind="error", message=f"{type(exc).__name__}: {exc}")  # type: ignore[arg-type]
        self.post_message(DetailsLoaded(generation, result))

    def on_details_loaded(self, message: DetailsLoaded) -> None:
        if message.generation == self.generation:
            self.show(message.result)

    def show(self, result: ModelDetails | HubError) -> None:
        head = self.query_one("#details-head", Static)
        if isinstance(result, HubError):
            head.set_class(True, "-error")
            head.update(f"{self.repo_id}\n{result.kind}: {result} — r retries, Esc goes back")
            return
        head.set_class(False, "-error")
        self.details = result
        model = result.model
        budget = services_of(self).manager.budget.bytes
        verdict = fit_verdict(model.memory_bytes, budget)
        gated = {False: "not gated", "auto": "gated (automatic approval)", "manual": "gated (manual approval)"}
        memory = (f"needs {format_bytes(model.memory_bytes)} (weights {format_bytes(model.weights_bytes)} + KV cache "
                  f"{format_bytes(model.kv_bytes)}{'' if model.kv_exact else ' estimated'}) → {verdict.value} in "
                  f"the {format_bytes(budget)} budget") if model.memory_bytes else "memory need unknown"  # fmt: skip
        head.update(
            f"[b]{self.repo_id}[/b]  ·  licence {result.license or 'not stated'}  ·  "
            f"{gated.get(model.gated, 'gated')}  ·  {model.quantization or '?'}\n"
            f"download {format_bytes(result.download_bytes)} in {len(result.selected)} files  ·  {memory}"
        )
        self.query_one(Markdown).update(result.card or "_This model has no card._")
        table = self.query_one(DataTable)
        table.clear()
        selected = set(result.selected)
        for file in result.files:
            table.add_row(file.path, format_bytes(file.size) if file.size is not None else "?",
                          "yes" if file.path in selected else "no")  # fmt: skip

    def action_download(self) -> None:
        files = self.details.selected if self.details else None
        settle(self, services_of(self).downloads.enqueue(self.repo_id, files=files),
               lambda job: self.notify(f"Queued {job.repo_id} for download (job {job.id}).", title="Downloads"),
               "Could not queue the download")  # fmt: skip

    def action_retry(self) -> None:
        self.query_one("#details-head", Static).update(f"{self.repo_id}\nloading…")
        self.load()
