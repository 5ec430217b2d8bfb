"""The Catalog pane: curated models first, then Hugging Face search with filters, sort, paging and fit verdicts."""

from __future__ import annotations

import logging
from dataclasses import replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from workbench.core.hub.client import HubCatalog, HubModel, SearchPage, SearchQuery
from workbench.core.hub.curated import CatalogEntry, entry_matches
from workbench.core.hub.errors import HubError
from workbench.core.hub.fit import FitVerdict, fit_verdict
from workbench.core.models.memory import GB, format_bytes
from workbench.core.models.registry import Presence, RepoStatus
from workbench.ui.messages import LocalStatuses, SearchDone
from workbench.ui.screens.base import PaneScreen
from workbench.ui.services import services_of, settle
from workbench.ui.widgets.row_table import RowTable
from workbench.ui.widths import Column, fit_columns, shorten_repo_id

log = logging.getLogger(__name__)

COLUMNS = ("Model", "Fit", "Size", "Params", "Quant", "Local", "Downloads", "Likes", "Updated")
# A narrow screen drops the highest first: when it was updated and its likes matter least, the fit and where it
# is (Local) most; the name takes what the others leave (at least NAME_MIN), shortened with its variant kept.
DROP_ORDER = {"Updated": 6, "Likes": 5, "Downloads": 4, "Params": 3, "Quant": 2, "Size": 1}
NAME_MIN = 32
NAME_WIDTH = 34  # names in the status line
PAGES = Binding.Group("Page", compact=True)
SORT_ORDER = ["downloads", "likes", "trending", "updated"]
TASKS = [None, "text-generation", "feature-extraction", "sentence-similarity", "image-text-to-text"]
VERDICT_STYLE = {FitVerdict.FITS: "green", FitVerdict.TIGHT: "yellow", FitVerdict.WONT_FIT: "red"}


def count(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}".replace(".0", "")
    return str(n)


def params_text(n: int | None) -> str:
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B".replace(".0B", "B")
    return f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def age_text(seconds: float) -> str:
    minutes = seconds / 60
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes:.0f} min old"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f} h old"
    return f"{minutes / 1440:.0f} days old"


def short_name(repo_id: str) -> str:
    return shorten_repo_id(repo_id, NAME_WIDTH)


def verdict_cell(verdict: FitVerdict, exact: bool = True) -> Text:
    label = verdict.value if exact or verdict is FitVerdict.UNKNOWN else f"{verdict.value}≈"
    return Text(label, style=VERDICT_STYLE.get(verdict, "dim"))


class CatalogPane(PaneScreen):
    MODE = "catalog"
    MAIN_VIEW, TEXT_BOX = "#catalog-table", "#catalog-search"
    AUTO_FOCUS = "#catalog-table"  # focused from the start: no second footer and table render on a focus change

    BINDINGS = [
        Binding("slash", "focus_search", "Search", id="catalog.search"),
        Binding("f", "toggle_mlx", "MLX", id="catalog.mlx"),
        Binding("s", "cycle_sort", "Sort", id="catalog.sort"),
        Binding("t", "cycle_task", "Task", id="catalog.task"),
        Binding("a", "author", "Author", id="catalog.author"),
        Binding("left_square_bracket", "page(-1)", "Previous page", id="catalog.previous-page", group=PAGES),
        Binding("right_square_bracket", "page(1)", "Next page", id="catalog.next-page", group=PAGES),
        Binding("d", "download", "Download", id="catalog.download"),
        Binding("r", "retry", "Retry", id="catalog.retry"),
    ]

    DEFAULT_CSS = """
    CatalogPane #catalog-search { height: 3; }
    CatalogPane #catalog-status { height: auto; padding: 0 1; color: $text-muted; }
    CatalogPane #catalog-status.-error { color: $error; }
    CatalogPane #catalog-table { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.query_state = SearchQuery()
        self.page = 0
        self.result: SearchPage | None = None
        self.rows: list[HubModel | CatalogEntry] = []
        self.error: HubError | None = None
        self.local: dict[str, RepoStatus] = {}
        self.outcomes_shown = 0  # search outcomes (a page or an error) shown so far: what tests wait on
        self.search_generation = 0  # bumped by each search: an older one's answer is dropped

    @property
    def hub(self) -> HubCatalog:
        return services_of(self).hub

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="/ to search Hugging Face, e.g. qwen coder", id="catalog-search")
        yield Static("", id="catalog-status")
        yield RowTable(id="catalog-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.watch(self.app, "models_version", lambda _v: self.render_rows(), init=False)  # the budget may change
        self.watch(self.app, "downloads_ended", lambda _v: self.refresh_local(), init=False)
        cached = self.hub.last_cached(self.query_state)
        if cached is not None:  # the last results, instantly and offline; fresh ones follow
            self.result = cached
        self.render_rows()
        self.query_one(DataTable).focus()
        # The first search imports huggingface_hub (~0.2 s of CPU): even in a thread that holds the interpreter
        # long enough to delay the first frame, so it starts once that frame is painted.
        self.call_after_refresh(self.run_search)

    # --- searching --------------------------------------------------------------------------------

    @on(Input.Submitted, "#catalog-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        self.query_state = replace(self.query_state, text=event.value.strip())
        self.page = 0
        self.run_search()
        self.query_one(DataTable).focus()

    def run_search(self) -> None:
        self.search_generation += 1
        self.show_status("searching…")
        self.search_worker(self.query_state, self.page, self.search_generation)

    @work(thread=True, exclusive=True, group="catalog-search", exit_on_error=False)
    def search_worker(self, query: SearchQuery, page: int, generation: int) -> None:
        try:
            result: SearchPage | HubError = self.hub.search(query, page)
        except HubError as exc:
            result = exc
        except Exception as exc:  # never let a surprise kill the pane
            log.exception("catalog search failed")
            result = HubError(kind="error", message=f"{type(exc).__name__}: {exc}")  # type: ignore[arg-type]
        repo_ids = [m.repo_id for m in result.models] if isinstance(result, SearchPage) else []
        statuses = self.statuses([*repo_ids, *(e.repo_id for e in services_of(self).catalog)])
        self.post_message(SearchDone(generation, query, page, result, statuses))

    def statuses(self, repo_ids: list[str]) -> dict[str, RepoStatus]:
        try:
            return services_of(self).registry.repo_statuses(repo_ids)
        except Exception:  # the Local column is a nicety: never lose the page for it
            log.exception("cannot tell which repos are on disk")
            return {}

    def refresh_local(self) -> None:
        self.local_worker([item.repo_id for item in self.rows])

    @work(thread=True, exclusive=True, group="catalog-local", exit_on_error=False)
    def local_worker(self, repo_ids: list[str]) -> None:
        self.post_message(LocalStatuses(self.statuses(repo_ids)))

    def on_local_statuses(self, message: LocalStatuses) -> None:
        self.local = {**self.local, **message.local}
        self.render_rows()

    def on_search_done(self, message: SearchDone) -> None:
        if message.generation != self.search_generation:
            return  # an older search finished after a newer one started
        self.local = message.local
        if isinstance(message.result, HubError):
            self.error = message.result
        else:
            self.error, self.result = None, message.result
        self.outcomes_shown += 1
        self.render_rows()

    # --- rendering ---------------------------------------------------------------------------------

    def curated_rows(self) -> list[CatalogEntry]:
        """The curated entries on the first page that the filters (text, task, author, MLX builds) let through."""
        if self.page:
            return []
        q = self.query_state
        catalog: list[CatalogEntry] = services_of(self).catalog
        return [e for e in catalog if entry_matches(e, q.text, q.task, q.author, q.mlx_only)]

    def table_rows(self) -> list[tuple[HubModel | CatalogEntry, dict[str, str | Text]]]:
        """Each row with its cells by column; the Model cell is the full name (shortened when drawn)."""
        budget = services_of(self).manager.budget.bytes
        rows: list[tuple[HubModel | CatalogEntry, dict[str, str | Text]]] = []
        for entry in self.curated_rows():
            verdict = fit_verdict(int(entry.memory_gb * GB), budget)
            status = self.local.get(entry.repo_id)
            rows.append((entry, {"Model": "★ " + entry.repo_id, "Fit": verdict_cell(verdict),
                                 "Size": f"{entry.size_gb:.1f} GB", "Params": entry.params,
                                 "Quant": entry.quantization, "Local": status.label if status else ""}))  # fmt: skip
        curated = {entry.repo_id for entry, _cells in rows}
        for model in self.result.models if self.result else []:
            if model.repo_id in curated:
                continue
            verdict = fit_verdict(model.memory_bytes, budget)
            status = self.local.get(model.repo_id, RepoStatus(model.repo_id, Presence.ABSENT))
            rows.append((model, {
                "Model": model.repo_id, "Fit": verdict_cell(verdict, model.kv_exact),
                "Size": format_bytes(model.weights_bytes) if model.weights_bytes else "?",
                "Params": params_text(model.params), "Quant": model.quantization or "?", "Local": status.label,
                "Downloads": count(model.downloads), "Likes": count(model.likes),
                "Updated": model.last_modified[:10] if model.last_modified else ""}))  # fmt: skip
        return rows

    def render_rows(self) -> None:
        """The table drawn to the width there is: its columns sized to their cells, the least useful dropped on a
        narrow screen, the names given the rest."""
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        rows = self.table_rows()
        widths = {key: len(key) for key in COLUMNS}
        for _item, cells in rows:
            for key, cell in cells.items():
                widths[key] = max(widths[key], Text(cell).cell_len if isinstance(cell, str) else cell.cell_len)
        total = (table.size.width or self.app.size.width) - 2  # room for the vertical scrollbar
        keys, name_width = fit_columns([Column(key, widths[key], DROP_ORDER.get(key, 0)) for key in COLUMNS],
                                       total, "Model", NAME_MIN)  # fmt: skip
        table.clear(columns=True)
        for key in keys:
            table.add_column(key, key=key, width=name_width if key == "Model" else widths[key])
        self.rows = []
        for item, cells in rows:
            name = str(cells["Model"])
            star = "★ " if name.startswith("★ ") else ""
            cells["Model"] = star + shorten_repo_id(name.removeprefix(star), name_width - len(star))
            table.add_row(*(cells.get(key, "") for key in keys))
            self.rows.append(item)
        if self.rows:
            table.move_cursor(row=min(max(cursor, 0), len(self.rows) - 1))
        self.show_status()

    def on_resize(self) -> None:
        self.call_after_refresh(self.render_rows)  # once the table has its new width

    def show_status(self, note: str = "") -> None:
        status = self.query_one("#catalog-status", Static)
        q = self.query_state
        parts = ["MLX builds" if q.mlx_only else "all models", f"sort: {q.sort}"]
        if q.task:
            parts.append(f"task: {q.task}")
        if q.author:
            parts.append(f"author: {q.author}")
        parts.append(f"page {self.page + 1}")
        if self.result is not None and not self.result.models and self.error is None:
            parts.append("Hugging Face: no results")
        if self.result is not None and self.result.from_cache:
            parts.append(f"cached, {age_text(self.result.age_s())}")
        if note:
            parts.append(note)
        status.set_class(self.error is not None, "-error")
        if self.error is not None:
            status.update(f"{self.error.kind}: {self.error} — r retries")
        else:
            status.update(" · ".join(parts))

    # --- actions ------------------------------------------------------------------------------------

    def selected(self) -> HubModel | CatalogEntry | None:
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def action_focus_search(self) -> None:
        self.query_one("#catalog-search", Input).focus()

    def restart(self, **changes: object) -> None:
        self.query_state = replace(self.query_state, **changes)  # type: ignore[arg-type]
        self.page = 0
        self.result = self.hub.last_cached(self.query_state)
        self.render_rows()
        self.run_search()

    def action_toggle_mlx(self) -> None:
        self.restart(mlx_only=not self.query_state.mlx_only)

    def action_cycle_sort(self) -> None:
        self.restart(sort=SORT_ORDER[(SORT_ORDER.index(self.query_state.sort) + 1) % len(SORT_ORDER)])

    def action_cycle_task(self) -> None:
        self.restart(task=TASKS[(TASKS.index(self.query_state.task) + 1) % len(TASKS)])

    def action_author(self) -> None:
        from workbench.ui.screens.dialogs import PromptScreen

        def chosen(author: str | None) -> None:
            self.restart(author=author or None)

        self.app.push_screen(PromptScreen("Only models by (empty for everyone)", self.query_state.author or ""),
                             chosen)  # fmt: skip

    def action_page(self, step: int) -> None:
        if step > 0 and not (self.result and self.result.has_next):
            return
        self.page = max(0, self.page + step)
        self.result = None
        self.render_rows()
        self.run_search()

    def action_retry(self) -> None:
        self.error = None
        self.run_search()

    def action_download(self) -> None:
        item = self.selected()
        if item is None:
            return
        settle(self, services_of(self).downloads.enqueue(item.repo_id),
               lambda job: self.notify(f"Queued {job.repo_id} for download (job {job.id}).", title="Downloads"),
               "Could not queue the download")  # fmt: skip

    @on(DataTable.RowHighlighted, "#catalog-table")
    def explain_local(self) -> None:
        """Why a repo on disk is partial or cannot load, from the registry's answer, in the status line."""
        item = self.selected()
        status = self.local.get(item.repo_id) if item is not None else None
        if item is not None and status is not None and status.why and status.presence is not Presence.ABSENT:
            self.show_status(f"{short_name(item.repo_id)} {status.label}: {status.why}")

    @on(DataTable.RowSelected, "#catalog-table")
    def open_details(self) -> None:
        from workbench.ui.screens.catalog_details import DetailsScreen

        item = self.selected()
        if item is not None:
            self.app.push_screen(DetailsScreen(item.repo_id))

