"""The Models view: every model the manager knows, its state and memory; load, unload and pin by key."""

from __future__ import annotations

import time

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from workbench.core.models.backends.remote import KIND as REMOTE_KIND
from workbench.core.models.endpoints import ConnectionReport, Endpoint, check_connection
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import format_bytes
from workbench.core.models.spec import ModelInfo, ModelManagerError, ModelState, UnknownModelError
from workbench.ui.messages import ConnectionChecked, Notice
from workbench.ui.screens.base import PaneScreen
from workbench.ui.services import services_of
from workbench.ui.widths import Column, fit_columns, shorten_repo_id

# What a choice needs first: at 80 columns the name, state, pin and size stay; the rest go, Used first.
COLUMNS = ("Model", "State", "Pin", "Estimate", "Kind", "Measured", "Used")
DROP_ORDER = {"Used": 3, "Measured": 2, "Kind": 1}
NAME_MIN = 24


KIND_LABELS = {"mlx-lm": "mlx", "sentence-transformers": "embed", "openai-remote": "remote"}


def ago(moment: float | None, now: float) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int(now - moment))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def row_for(info: ModelInfo, now: float) -> tuple[str | Text, ...]:
    state = Text(info.state.value, style="red" if info.state is ModelState.FAILED else "")
    if info.leases:
        state.append(f" ×{info.leases}")
    return (
        info.spec.id,
        state,
        "pinned" if info.pinned else "",
        "–" if info.spec.kind == "openai-remote" else format_bytes(info.estimate.total) if info.estimate else "?",
        KIND_LABELS.get(info.spec.kind, info.spec.kind),
        format_bytes(info.measured),
        ago(info.last_used, now),
    )


class ModelsPane(PaneScreen):
    MODE = "models"

    BINDINGS = [
        Binding("l", "load", "Load", id="models.load"),
        Binding("u", "unload", "Unload", id="models.unload"),
        Binding("p", "pin", "Pin", id="models.pin"),
        Binding("t", "test_connection", "Test endpoint", id="models.test"),
    ]

    DEFAULT_CSS = """
    ModelsPane #models-table { height: 1fr; }
    ModelsPane #models-detail { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.reports: dict[str, ConnectionReport] = {}  # connection tests by model id (or endpoint name)

    @property
    def manager(self) -> ModelManager:
        return services_of(self).manager

    def compose_body(self) -> ComposeResult:
        table: DataTable[str | Text] = DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static(id="models-detail")

    def on_mount(self) -> None:
        self.watch(self.app, "models_version", lambda _v: self.refresh_table())
        self.set_interval(5, self.refresh_table)  # keeps "last used" honest
        self.query_one(DataTable).focus()

    def refresh_table(self) -> None:
        """Redrawn whole (a few rows): columns sized to the width there is, the least useful dropped first."""
        table = self.query_one(DataTable)
        now = time.monotonic()
        models = self.manager.models()
        rows = [dict(zip(COLUMNS, row_for(info, now), strict=True)) for info in models]
        widths = {key: max([len(key), *(Text(cell).cell_len if isinstance(cell, str) else cell.cell_len
                                         for row in rows for cell in [row[key]])]) for key in COLUMNS}  # fmt: skip
        total = (table.size.width or self.app.size.width) - 2  # room for the vertical scrollbar
        keys, name_width = fit_columns([Column(key, widths[key], DROP_ORDER.get(key, 0)) for key in COLUMNS],
                                       total, "Model", NAME_MIN)  # fmt: skip
        selected = self.selected()
        cursor = table.cursor_row
        table.clear(columns=True)
        for key in keys:
            table.add_column(key, key=key, width=name_width if key == "Model" else widths[key])
        for info, row in zip(models, rows, strict=True):
            row["Model"] = shorten_repo_id(str(row["Model"]), name_width)
            table.add_row(*(row[key] for key in keys), key=info.spec.id)
        if models:
            ids = [info.spec.id for info in models]
            table.move_cursor(row=ids.index(selected.spec.id) if selected and selected.spec.id in ids
                              else min(max(cursor, 0), len(models) - 1))  # fmt: skip
        self.show_detail()

    def on_resize(self) -> None:
        self.call_after_refresh(self.refresh_table)  # once the table has its new width

    @on(DataTable.RowSelected)
    def load_selected(self) -> None:
        self.action_load()

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        info = self.selected()
        detail = self.query_one("#models-detail", Static)
        if info is None:
            detail.update("No models yet.")
            return
        estimate = info.estimate
        if info.spec.kind == REMOTE_KIND:
            endpoints = {e.name: e for e in services_of(self).settings.endpoints}
            endpoint = endpoints.get(info.spec.id.partition(":")[0])
            where = endpoint.base_url if endpoint else "?"
            parts = [f"{escape(info.spec.name)}  [dim]{escape(where)}[/]", "runs on the server: no local memory"]
            estimate = None
        else:
            parts = [f"{escape(info.spec.name)}  [dim]{escape(str(info.spec.path))}[/]"]
        if estimate:
            line = f"estimate: weights {format_bytes(estimate.weights)}"
            if estimate.kv_cache:
                line += f" + KV cache {format_bytes(estimate.kv_cache)} at {self.manager.context_length} tokens"
            if estimate.overhead:
                line += f" + working memory {format_bytes(estimate.overhead)}"
            parts.append(line)
        if info.error:
            parts.append(f"[red]{escape(info.error)}[/]")
        if report := self.reports.get(info.spec.id):
            parts.append(f"[{'green' if report.ok else 'red'}]{escape(str(report))}[/]")
        detail.update("\n".join(parts))

    def selected(self) -> ModelInfo | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        try:
            return self.manager.info(key) if key else None
        except UnknownModelError:  # deleted from disk (the cache view, `rm`) before the table caught up
            return None

    def action_load(self) -> None:
        if info := self.selected():
            self.load_model(info.spec.id)

    def action_unload(self) -> None:
        if info := self.selected():
            self.unload_model(info.spec.id)

    def action_pin(self) -> None:
        if info := self.selected():
            self.manager.pin(info.spec.id, not info.pinned)

    def action_test_connection(self) -> None:
        """The selected remote model's endpoint and model; with no remote model selected, every endpoint."""
        endpoints = {e.name: e for e in services_of(self).settings.endpoints}
        if not endpoints:
            self.notify("No remote endpoints: add [[endpoints]] to config.toml (see the README).", timeout=10)
            return
        info = self.selected()
        if info is not None and info.spec.kind == REMOTE_KIND:
            name, _, model = info.spec.id.partition(":")
            self.test_connection(info.spec.id, endpoints[name], model)
        else:
            for endpoint in endpoints.values():
                self.test_connection(endpoint.name, endpoint, None)

    def test_connection(self, key: str, endpoint: Endpoint, model: str | None) -> None:
        self.notify(f"Testing {endpoint.name} ({endpoint.base_url})…", timeout=3)
        self.connection_worker(key, endpoint, model)

    @work(thread=True, group="connection-test", exit_on_error=False)
    def connection_worker(self, key: str, endpoint: Endpoint, model: str | None) -> None:
        self.post_message(ConnectionChecked(key, endpoint, check_connection(endpoint, model)))

    def on_connection_checked(self, message: ConnectionChecked) -> None:
        self.show_report(message.key, message.endpoint, message.report)

    def show_report(self, key: str, endpoint: Endpoint, report: ConnectionReport) -> None:
        self.reports[key] = report
        self.show_detail()
        self.notify(str(report), title=f"Endpoint {endpoint.name}: {'OK' if report.ok else 'problem'}",
                    severity="information" if report.ok else "error", timeout=20, markup=False)  # fmt: skip

    @work(group="models", exit_on_error=False)
    async def load_model(self, model_id: str) -> None:
        try:
            await self.manager.load(model_id)
        except ModelManagerError as exc:
            self.post_message(Notice(str(exc), title="Cannot load", severity="error", timeout=10))

    @work(group="models", exit_on_error=False)
    async def unload_model(self, model_id: str) -> None:
        try:
            await self.manager.unload(model_id)
        except ModelManagerError as exc:
            self.post_message(Notice(str(exc), title="Cannot unload", severity="warning"))
