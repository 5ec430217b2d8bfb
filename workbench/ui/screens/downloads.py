"""The Downloads pane: the persistent queue with bars, speed and ETA, driven by keys."""

from __future__ import annotations

import logging

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from workbench.api import DownloadsApi
from workbench.core.hub.downloads.jobs import FileState, JobSnapshot, JobState
from workbench.core.models.memory import format_bytes
from workbench.ui.messages import JobChanged
from workbench.ui.screens.base import PaneScreen
from workbench.ui.services import services_of, settle

log = logging.getLogger(__name__)

BAR_WIDTH = 12
STATE_WIDTH = 11  # "downloading"
# (key, label, width): the Repo column takes what the others leave.
COLUMNS = (("state", "State", STATE_WIDTH), ("progress", "Progress", BAR_WIDTH), ("files", "Files", 5),
           ("bytes", "Bytes", 15), ("speed", "Speed", 9), ("eta", "ETA", 4))  # fmt: skip
DROP_ORDER = ("files", "progress")  # the least useful go first when the name would not fit
REPO_MIN, REPO_WANTED = 12, 32  # a name's tail, e.g. "…/SmolLM2-135M-Instruct-4bit", fits in REPO_WANTED
GONE = "deleted"  # a done job whose files left the cache
STATE_STYLE = {
    JobState.DOWNLOADING: "bold cyan",
    JobState.VERIFYING: "cyan",
    JobState.DONE: "green",
    JobState.FAILED: "bold red",
    JobState.PAUSED: "yellow",
    JobState.CANCELLED: "dim",
}
WAITING = (JobState.QUEUED, JobState.DOWNLOADING, JobState.VERIFYING)  # what has a place in the queue


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


def speed_text(bps: float) -> str:
    """``512 B/s`` below 1 KB/s (a slow link must not read as 0 KB/s), else ``3 KB/s``, ``12 MB/s``."""
    return f"{bps:.0f} B/s" if bps < 1024 else f"{format_bytes(bps)}/s"


def short_name(name: str, width: int) -> str:
    """``name`` in ``width`` characters, keeping its distinguishing tail: ``…/SmolLM2-135M-Instruct-4bit``."""
    if len(name) <= width:
        return name
    tail = name.rsplit("/", 1)[-1]
    if len(tail) + 2 <= width and "/" in name:
        return "…/" + tail
    return "…" + name[-(width - 1) :] if width > 1 else "…"


def name_needs(name: str) -> int:
    """The width ``name`` needs to stay told apart: whole, or its tail after ``…/``."""
    return min(len(name), len(name.rsplit("/", 1)[-1]) + 2)


def columns_for(width: int, needed: int) -> tuple[int, list[tuple[str, str, int]]]:
    """The Repo column's width and the other columns that fit ``width`` cells (each column pads 1 a side; 2 are
    kept for the scroll bar), dropping DROP_ORDER's first while the name gets less than ``needed``."""
    shown = list(COLUMNS)
    wanted = max(REPO_MIN, min(needed, REPO_WANTED))
    for key in (None, *DROP_ORDER):
        shown = [c for c in shown if c[0] != key]
        repo = width - 2 - 2 - sum(w + 2 for _, _, w in shown)
        if repo >= wanted:
            break
    return max(REPO_MIN, repo), shown


def state_text(job: JobSnapshot, gone: bool = False) -> Text:
    if gone:
        return Text(GONE, style="dim")
    return Text(job.state.value, style=STATE_STYLE.get(job.state, ""))


def cells_for(job: JobSnapshot, gone: bool = False) -> dict[str, str | Text]:
    total = format_bytes(job.total_bytes) if job.total_bytes is not None else "?"
    active = job.state in (JobState.DOWNLOADING, JobState.VERIFYING)
    return {
        "repo": job.repo_id if job.revision == "main" else f"{job.repo_id}@{job.revision[:8]}",
        "state": state_text(job, gone),
        "progress": bar(job.fraction),
        "files": f"{job.files_done}/{job.files_total}",
        "bytes": f"{format_bytes(job.done_bytes)}/{total}",
        "speed": speed_text(job.speed_bps) if active and job.speed_bps else "",
        "eta": eta_text(job.eta_s) if active else "",
    }


class DownloadsPane(PaneScreen):
    MODE = "downloads"

    BINDINGS = [
        Binding("p", "toggle_pause", "Pause/resume", id="downloads.pause"),
        Binding("c", "cancel", "Cancel", id="downloads.cancel"),
        Binding("r", "retry", "Retry", id="downloads.retry"),
        Binding("plus,shift+up", "move(-1)", "Up", id="downloads.up"),
        Binding("minus,shift+down", "move(1)", "Down", id="downloads.down"),
        Binding("P", "toggle_all", "Pause all", id="downloads.pause-all"),
        Binding("x", "clear_finished", "Clear done", id="downloads.clear"),
        Binding("enter", "details", "Files", id="downloads.details"),
        Binding("v", "cache", "Cache", id="downloads.cache"),
    ]

    DEFAULT_CSS = """
    DownloadsPane #downloads-table { height: 1fr; }
    DownloadsPane #downloads-note { height: auto; max-height: 3; padding: 0 1; color: $text-muted; }
    DownloadsPane #downloads-note.-error { color: $error; }
    """

    _layout: tuple[int, tuple[str, ...]] = (0, ())  # the Repo column's width and the other columns shown
    _gone: frozenset[int] = frozenset()  # done jobs whose files left the cache

    @property
    def downloads(self) -> DownloadsApi:
        return services_of(self).downloads

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="downloads-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="downloads-note")

    def on_mount(self) -> None:
        self._unsubscribe = self.downloads.subscribe(lambda job: self.post_message(JobChanged(job)))
        self.refresh_table()
        self.query_one(DataTable).focus()

    def on_unmount(self) -> None:
        self._unsubscribe()

    def on_screen_resume(self) -> None:  # back from the cache view or another pane: a repo may be deleted
        self.refresh_table()

    def on_resize(self) -> None:
        self.refresh_table()

    # --- table --------------------------------------------------------------------------------------

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        jobs = self.downloads.jobs()
        self._gone = frozenset(j.id for j in jobs if j.state is JobState.DONE and not self.downloads.in_cache(j.id))
        selected = self.selected_id()
        needed = max((name_needs(str(cells_for(j)["repo"])) for j in jobs), default=0)
        repo_width, shown = columns_for(self.app.size.width, needed)
        layout = (repo_width, tuple(key for key, _, _ in shown))
        if layout != self._layout:
            self._layout = layout
            table.clear(columns=True)
            table.add_column("Repo", width=repo_width, key="repo")
            for key, label, width in shown:
                table.add_column(label, width=width, key=key)
        table.clear()
        for job in jobs:
            table.add_row(*self.row_for(job), key=str(job.id))
        if jobs:
            ids = [job.id for job in jobs]
            table.move_cursor(row=ids.index(selected) if selected in ids else 0)
        else:
            self.query_one("#downloads-note", Static).update(
                "No downloads yet: queue one from the Catalog (1, then d) or with `workbench pull REPO`."
            )
        self.show_note()

    def row_for(self, job: JobSnapshot) -> list[str | Text]:
        """The job's cells for the columns shown now."""
        repo_width, keys = self._layout
        cells = cells_for(job, job.id in self._gone)
        return [short_name(str(cells["repo"]), repo_width), *(cells[key] for key in keys)]

    def on_job_changed(self, message: JobChanged) -> None:
        job = message.job
        table = self.query_one(DataTable)
        order = [job.id for job in self.downloads.jobs()]
        rows = [int(row.value) for row in table.rows if row.value is not None]
        if rows != order:
            self.refresh_table()
            return
        if job.state is not JobState.DONE:
            self._gone -= {job.id}
        for column, value in zip(table.columns, self.row_for(job), strict=True):
            table.update_cell(str(job.id), column, value)
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
        note.update(self.note_for(job))

    def note_for(self, job: JobSnapshot) -> str:
        if job.state is JobState.FAILED:
            return job.error or f"{job.repo_id} failed: r retries it"
        if job.message:
            return job.message
        if job.id in self._gone:
            return f"{job.repo_id}: deleted from the cache · r fetches it again · x clears finished downloads"
        if job.state in WAITING:
            waiting = [j.id for j in self.downloads.jobs() if j.state in WAITING]
            place = f"queue position {waiting.index(job.id) + 1} of {len(waiting)}"
            return f"{job.repo_id}: {job.files_total} files, {place}"
        if job.state is JobState.PAUSED:
            return f"{job.repo_id}: paused · p resumes it"
        return f"{job.repo_id}: {job.files_total} files, {job.state.value} · x clears finished and cancelled downloads"

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

        self.app.push_screen(ConfirmScreen(f"Cancel the download of {job.repo_id}?",
                                           "cancel it (deletes the partial file)", "keep it"), confirmed)  # fmt: skip

    def action_retry(self) -> None:
        job = self.selected()
        if job is None:
            return
        if job.id in self._gone:
            settle(self, self.downloads.enqueue(job.repo_id, job.revision),
                   lambda _job: self.notify(f"Fetching {job.repo_id} again."), "Could not queue the download")
        elif self.downloads.retry(job.id):
            self.notify(f"Queued {job.repo_id} again.")
        elif job.state is JobState.PAUSED:
            self.notify(f"{job.repo_id} is paused: p resumes it.")
        else:
            self.notify(f"{job.repo_id} is {job.state.value}: only a failed or cancelled download is retried.")

    def action_clear_finished(self) -> None:
        cleared = self.downloads.forget_finished()
        self.refresh_table()
        if cleared:
            self.notify(f"Cleared {cleared} finished or cancelled download{'s' if cleared != 1 else ''} "
                        "(their files stay in the cache).")  # fmt: skip
        else:
            self.notify("No finished or cancelled downloads to clear.")

    def action_move(self, delta: int) -> None:
        if job := self.selected():
            self.downloads.move(job.id, delta)
            self.refresh_table()

    def action_toggle_all(self) -> None:
        jobs = self.downloads.jobs()
        if any(job.state in WAITING for job in jobs):
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
        downloads: DownloadsApi = services_of(self).downloads
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
