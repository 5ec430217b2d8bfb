"""The Hugging Face cache: repos and revisions with sizes and last use; delete them (through the model registry,
which unregisters their models first, or says why not); clean partial files."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from workbench.api import DownloadsApi, RegistryApi
from workbench.core.hub import cache as hf_cache
from workbench.core.models.memory import format_bytes
from workbench.core.models.spec import ModelManagerError
from workbench.ui.messages import CacheDeleted, CacheScanned
from workbench.ui.services import services_of, settle

log = logging.getLogger(__name__)


def ago(moment: float, now: float) -> str:
    days = (now - moment) / 86400
    if days < 1:
        return "today"
    return f"{days:.0f} days ago"


class CacheScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="cache.back"),
        Binding("d", "delete_revision", "Delete revision", id="cache.delete-revision"),
        Binding("D", "delete_repo", "Delete repo", id="cache.delete-repo"),
        Binding("x", "clean", "Clean partial files", id="cache.clean"),
        Binding("g", "rescan", "Rescan", id="cache.rescan"),
    ]

    DEFAULT_CSS = """
    CacheScreen #cache-head { height: auto; padding: 0 1; background: $panel; }
    CacheScreen #cache-table { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[hf_cache.CachedRepo, hf_cache.CachedRevision | None]] = []
        self.generation = 0  # bumped by each scan: an older scan's answer is dropped

    @property
    def downloads(self) -> DownloadsApi:
        return services_of(self).downloads

    @property
    def registry(self) -> RegistryApi:
        return services_of(self).registry

    def compose(self) -> ComposeResult:
        yield Static("Reading the cache…", id="cache-head")
        table: DataTable[str] = DataTable(id="cache-table", cursor_type="row")
        table.add_columns("Repo / revision", "Size", "Files", "Last used", "Refs")
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.action_rescan()

    def action_rescan(self) -> None:
        self.generation += 1
        self.scan_worker(self.generation)

    @work(thread=True, exclusive=True, group="cache-scan", exit_on_error=False)
    def scan_worker(self, generation: int) -> None:
        try:
            contents = self.registry.cache_contents()
        except Exception as exc:
            log.exception("scanning the cache failed")
            self.post_message(CacheScanned(generation, [], [], error=str(exc)))
            return
        self.post_message(CacheScanned(generation, contents.repos, contents.partials))

    def on_cache_scanned(self, message: CacheScanned) -> None:
        if message.generation != self.generation:
            return  # a newer scan answers
        if message.error:
            self.notify(f"Cannot read the cache: {message.error}", severity="error")
            return
        self.show(message.repos, message.partials)

    def show(self, repos: list[hf_cache.CachedRepo], partials: list[hf_cache.PartialFile]) -> None:
        now = time.time()
        table = self.query_one(DataTable)
        table.clear()
        self.rows = []
        for repo in repos:
            used = ago(repo.last_accessed, now)
            table.add_row(repo.repo_id, format_bytes(repo.size_bytes), str(repo.files), used, "")
            self.rows.append((repo, None))
            for revision in repo.revisions:
                table.add_row(f"  @{revision.commit[:12]}", format_bytes(revision.size_bytes), str(revision.files),
                              ago(revision.last_modified, now), ", ".join(revision.refs))  # fmt: skip
                self.rows.append((repo, revision))
        total = sum(r.size_bytes for r in repos)
        partial = sum(p.size_bytes for p in partials)
        self.query_one("#cache-head", Static).update(
            f"{self.downloads.cache_dir}\n{len(repos)} repos, {format_bytes(total)}; "
            f"{len(partials)} partial files ({format_bytes(partial)})"
        )

    def selected(self) -> tuple[hf_cache.CachedRepo, hf_cache.CachedRevision | None] | None:
        row = self.query_one(DataTable).cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def confirm(self, question: str, then: Callable[[], None]) -> None:
        from workbench.ui.screens.dialogs import ConfirmScreen

        self.app.push_screen(ConfirmScreen(question), lambda yes: then() if yes else None)

    def action_delete_revision(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        repo, revision = chosen
        if revision is None:
            self.action_delete_repo()
            return

        def delete() -> None:
            self.run_delete(lambda: self.registry.delete_revision(repo.repo_id, revision.commit))

        self.confirm(f"Delete {repo.repo_id}@{revision.commit[:12]} ({format_bytes(revision.size_bytes)})?", delete)

    def action_delete_repo(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        repo = chosen[0]

        def delete() -> None:
            self.run_delete(lambda: self.registry.delete_repo(repo.repo_id))

        self.confirm(f"Delete all of {repo.repo_id} ({format_bytes(repo.size_bytes)}) from the cache?", delete)

    @work(group="cache-delete", exit_on_error=False)
    async def run_delete(self, delete: Callable[[], Awaitable[int]]) -> None:
        """The registry unregisters the files' models first and refuses, saying why, while one is in use."""
        try:
            freed = await delete()
        except ModelManagerError as exc:
            self.post_message(CacheDeleted(0, error=str(exc), refused=True))
            return
        except Exception as exc:
            log.exception("deleting from the cache failed")
            self.post_message(CacheDeleted(0, error=str(exc)))
            return
        self.post_message(CacheDeleted(freed))

    def on_cache_deleted(self, message: CacheDeleted) -> None:
        if message.refused:
            self.notify(f"Could not delete: {message.error}", severity="warning", timeout=10)
        elif message.error:
            self.notify(f"Could not delete: {message.error}", severity="error")
        else:
            self.notify(f"Freed {format_bytes(message.freed)}.")
        self.action_rescan()

    def action_clean(self) -> None:
        def cleaned(removed: list[hf_cache.PartialFile]) -> None:
            self.notify(f"Removed {len(removed)} partial files ({format_bytes(sum(p.size_bytes for p in removed))}).")
            self.action_rescan()

        settle(self, self.downloads.clean_partial_files(), cleaned, "Could not clean the partial files")
