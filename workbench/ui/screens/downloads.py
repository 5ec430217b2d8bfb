"""The Downloads pane: the persistent queue with bars, speed and ETA, driven by keys."""

from __future__ import annotations

import logging

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from workbench.core.hub.downloads.jobs import FileState, JobSnapshot, JobState
from workbench.core.hub.downloads.queue import DownloadManager
from workbench.core.models.memory import format_bytes
from workbench.ui.messages import JobChanged
from workbench.ui.screens.base import PaneScreen
from workbench.ui.services import services_of

log = logging.getLogger(__name__)

COLUMNS = ("Repo", "State", "Progress", "Files", "Bytes", "Speed", "ETA")
BAR_WIDTH = 12
STATE_STYLE = {
    JobState.DOWNLOADING: "bold cyan",
    JobState.VERIFYING: "cyan",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
    JobState.PAUSED: "yellow",
    JobState.CANCELLED: "dim",
}


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    if fraction is None:
        return "·" * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def row_for(job: JobSnapshot) -> tuple[str | Text, ...]:
    total = format_bytes(job.total_bytes) if job.total_bytes is not None else "?"
    active = job.state in (JobState.DOWNLOADING, JobState.VERIFYING)
    return (
        job.repo_id if job.revision == "main" else f"{job.repo_id}@{job.revision[:8]}",
        Text(job.state.value, style=STATE_STYLE.get(job.state, "")),
        bar(job.fraction),
        f"{job.files_done}/{job.files_total}",
        f"{format_bytes(job.done_bytes)}/{total}",
        f"{format_bytes(job.speed_bps)}/s" if active and job.speed_bps else "",
        eta_text(job.eta_s) if active else "",
    )


class DownloadsPane(PaneScreen):
    MODE = "downloads"

    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume", id="downloads.pause"),
        Binding("c", "cancel", "Cancel", id="downloads.cancel"),
        Binding("r", "retry", "Retry", id="downloads.retry"),
        Binding("plus,shift+up", "move(-1)", "Up", id="downloads.up"),
        Binding("minus,shift+down", "move(1)", "Down", id="downloads.down"),
        Binding("P", "toggle_all", "Pause all", id="downloads.pause-all"),
        Binding("enter", "details", "Files", id="downloads.details"),
        Binding("v", "cache", "Cache", id="downloads.cache"),
    ]

    DEFAULT_CSS = """
    DownloadsPane #downloads-table { height: 1fr; }
    DownloadsPane #downloads-note { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    DownloadsPane #downloads-note.-error { color: $error; }
    """

    @property
    def downloads(self) -> DownloadManager:
        return services_of(self).downloads

    def compose_body(self) -> ComposeResult:
        table: DataTable[str | Text] = DataTable(id="downloads-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="downloads-note")

    def on_mount(self) -> None:
        self._unsubscribe = self.downloads.subscribe(lambda job: self.post_message(JobChanged(job)))
        self.refresh_table()
        self.query_one(DataTable).focus()

    def on_unmount(self) -> None:
        self._unsubscribe()

    # --- table --------------------------------------------------------------------------------------

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        jobs = self.downloads.jobs()
        selected = self.selected_id()
        table.clear()
        for job in jobs:
            table.add_row(*row_for(job), key=str(job.id))
        if jobs:
            ids = [job.id for job in jobs]
            table.move_cursor(row=ids.index(selected) if selected in ids else 0)
        else:
            self.query_one("#downloads-note", Static).update(
                "No downloads yet: queue one from the Catalog (1, then d) or with `workbench pull REPO`."
            )
        self.show_note()

    def on_job_changed(self, message: JobChanged) -> None:
        job = message.job
        table = self.query_one(DataTable)
        order = [job.id for job in self.downloads.jobs()]
        rows = [int(row.value) for row in table.rows if row.value is not None]
        if rows != order:
            self.refresh_table()
            return
        for column, value in zip(table.columns, row_for(job), strict=True):
            table.update_cell(str(job.id), column, value, update_width=True)
        if job.id == self.selected_id():
            self.show_note()

    def selected_id(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return int(key) if key is not None else None

    def selected(self) -> JobSnapshot | None:
        job_id = self.selected_id()
        return self.downloads.job(job_id) if job_id is not None else None

    def on_data_table_row_selected(self) -> None:  # enter on the table
        self.action_details()

    def on_data_table_row_highlighted(self) -> None:
        self.show_note()

    def show_note(self) -> None:
        job = self.selected()
        note = self.query_one("#downloads-note", Static)
        if job is None:
            return
        note.set_class(job.state is JobState.FAILED, "-error")
        text = job.error if job.state is JobState.FAILED else job.message
        note.update(text or f"{job.repo_id}: {job.files_total} files, queue position {job.position + 1}")

    # --- actions ------------------------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        if job := self.selected():
            if job.state is JobState.PAUSED:
                self.downloads.resume(job.id)
            else:
                self.downloads.pause(job.id)

    def action_cancel(self) -> None:
        from workbench.ui.screens.dialogs import ConfirmScreen

        job = self.selected()
        if job is None or job.state in (JobState.DONE, JobState.CANCELLED):
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.downloads.cancel(job.id)

        self.app.push_screen(ConfirmScreen(f"Cancel {job.repo_id} and delete its partial files?", "Cancel it"),
                             confirmed)  # fmt: skip

    def action_retry(self) -> None:
        if job := self.selected():
            self.downloads.retry(job.id)

    def action_move(self, delta: int) -> None:
        if job := self.selected():
            self.downloads.move(job.id, delta)
            self.refresh_table()

    def action_toggle_all(self) -> None:
        jobs = self.downloads.jobs()
        if any(job.state in (JobState.QUEUED, JobState.DOWNLOADING, JobState.VERIFYING) for job in jobs):
            self.downloads.pause_all()
            self.notify("Paused every download.")
        else:
            self.downloads.resume_all()
            self.notify("Resumed every paused download.")

    def action_details(self) -> None:
        if job := self.selected():
            self.app.push_screen(JobFilesScreen(job.id))

    def action_cache(self) -> None:
        from workbench.ui.screens.cache import CacheScreen

        self.app.push_screen(CacheScreen())


class JobFilesScreen(ModalScreen[None]):
    """Per-file progress of one job."""

    BINDINGS = [Binding("escape", "dismiss", "Close", id="download-files.close")]

    DEFAULT_CSS = """
    JobFilesScreen { align: center middle; }
    JobFilesScreen > VerticalScroll { width: 90%; height: 80%; border: round $primary; background: $surface; }
    """

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="job-title")
            table: DataTable[str] = DataTable(id="job-files", cursor_type="row")
            table.add_columns("File", "State", "Progress", "Bytes")
            yield table
        yield Footer()

    def on_mount(self) -> None:
        downloads: DownloadManager = services_of(self).downloads
        self._unsubscribe = downloads.subscribe(
            lambda job: self.post_message(JobChanged(job)) if job.id == self.job_id else None
        )
        self.show(downloads.job(self.job_id))

    def on_job_changed(self, message: JobChanged) -> None:
        self.show(message.job)

    def on_unmount(self) -> None:
        self._unsubscribe()

    def show(self, job: JobSnapshot) -> None:
        self.query_one("#job-title", Static).update(f"{job.repo_id} · {job.state.value}")
        table = self.query_one("#job-files", DataTable)
        table.clear()
        for f in job.file_progress:
            fraction = f.done_bytes / f.size if f.size else (1.0 if f.state is FileState.DONE else None)
            size = format_bytes(f.size) if f.size is not None else "?"
            table.add_row(f.path, f.error or f.state.value, bar(fraction), f"{format_bytes(f.done_bytes)}/{size}")
