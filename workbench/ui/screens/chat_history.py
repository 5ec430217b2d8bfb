"""Earlier chats: search by title, open, rename, delete, export to Markdown or JSON; all by key."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Static

from workbench.client.store import RemoteStore
from workbench.core.prompt_cache.reuse import chat_cache_key
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.chats import Conversation
from workbench.core.storage.store import Store
from workbench.ui.screens.dialogs import ConfirmScreen, PromptScreen
from workbench.ui.services import settle

TITLE_WIDTH = 34
MODEL_WIDTH = 16
SLUG_LENGTH = 40


def when(moment: float, now: float) -> str:
    """``just now``, ``5m ago``, ``3h ago``, ``2d ago``, then the date."""
    seconds = max(0, int(now - moment))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    if seconds < 7 * 86400:
        return f"{seconds // 86400}d ago"
    return datetime.fromtimestamp(moment).strftime("%Y-%m-%d")


def slug(title: str) -> str:
    """A file-name-safe form of a title: lowercase ASCII letters, digits and ``-``, at most 40 characters."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return text[:SLUG_LENGTH].rstrip("-") or "chat"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def problem(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


OPEN = Binding("enter", "screen.open", "Open", id="history.open")


class SearchBox(Input):
    BINDINGS = [OPEN, Binding("down", "screen.focus_table", "To the list", id="history.to-list")]


class HistoryTable(DataTable[str]):
    BINDINGS = [
        OPEN,  # replaces DataTable's own enter, so the footer shows it
        Binding("r", "screen.rename", "Rename", id="history.rename"),
        Binding("d", "screen.delete", "Delete", id="history.delete"),
        Binding("m", "screen.export('md')", "Markdown", id="history.export-markdown"),
        Binding("j", "screen.export('json')", "JSON", id="history.export-json"),
        Binding("slash", "screen.focus_search", "Search", id="history.search"),
    ]


class HistoryScreen(ModalScreen[int | None]):
    """Dismisses with the id of the chat to open, or None."""

    BINDINGS = [Binding("escape", "close", "Close", id="history.close")]
    DEFAULT_CSS = """
    HistoryScreen { align: center middle; }
    HistoryScreen #history {
        width: 78; max-width: 100%; height: 21; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HistoryScreen #history-search { margin-bottom: 0; }
    HistoryScreen #history-empty { color: $text-muted; padding: 0 1; display: none; }
    HistoryScreen #history-empty.-shown { display: block; }
    HistoryScreen #history-table { height: 1fr; }
    """

    def __init__(self, store: Store | RemoteStore, paths: AppPaths,
                 forget_cache: Callable[[str], None] | None = None) -> None:  # fmt: skip
        """``forget_cache`` deletes a chat's saved prompt cache (given its key) when the chat is deleted."""
        super().__init__()
        self.store = store
        self.paths = paths
        self.forget_cache = forget_cache
        self.rows: list[Conversation] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="history") as box:
            box.border_title = "Chats"
            yield SearchBox(placeholder="Search titles (/)", id="history-search")
            yield Static(id="history-empty", markup=False)
            table = HistoryTable(id="history-table", cursor_type="row", zebra_stripes=True)
            table.add_column("Title", width=TITLE_WIDTH)
            table.add_column("Msgs", width=4)
            table.add_column("Model", width=MODEL_WIDTH)
            table.add_column("Updated", width=10)
            yield table
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_rows()
        self.table.focus()

    # --- the list ----------------------------------------------------------------------------------

    @property
    def table(self) -> HistoryTable:
        return self.query_one(HistoryTable)

    @property
    def search(self) -> str:
        return self.query_one(SearchBox).value.strip()

    def selected(self) -> Conversation | None:
        row = self.table.cursor_row
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def refresh_rows(self, keep_id: int | None = None, fallback_row: int = 0) -> None:
        """Reload from the store; the cursor goes to ``keep_id`` if listed, else to ``fallback_row`` (clamped)."""
        table = self.table
        self.rows_search = self.search
        self.rows = self.store.chats.list_conversations(search=self.rows_search)
        table.clear()
        now = time.time()
        for conversation in self.rows:
            table.add_row(
                clip(conversation.title, TITLE_WIDTH),
                str(conversation.message_count),
                clip(conversation.model_id or "-", MODEL_WIDTH),
                when(conversation.updated, now),
                key=str(conversation.id),
            )
        ids = [conversation.id for conversation in self.rows]
        if ids:
            row = ids.index(keep_id) if keep_id in ids else min(fallback_row, len(ids) - 1)
            table.move_cursor(row=row, animate=False)
        empty = self.query_one("#history-empty", Static)
        empty.set_class(not ids, "-shown")
        empty.update(f"No chat title contains “{self.search}”." if self.search else "No chats yet.")

    @on(Input.Changed, "#history-search")
    def search_changed(self) -> None:
        current = self.selected()
        self.refresh_rows(keep_id=current.id if current else None)

    @on(DataTable.RowSelected, "#history-table")
    def clicked(self) -> None:
        self.action_open()

    # --- actions -----------------------------------------------------------------------------------

    def action_open(self) -> None:
        if self.rows_search != self.search:  # Enter can arrive before the last Input.Changed is handled
            self.refresh_rows()
        conversation = self.selected()
        if conversation is not None:
            self.dismiss(conversation.id)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_focus_table(self) -> None:
        self.table.focus()

    def action_focus_search(self) -> None:
        self.query_one(SearchBox).focus()

    def action_rename(self) -> None:
        conversation = self.selected()
        if conversation is None:
            return

        def renamed(title: str | None) -> None:
            if title is None or title == conversation.title:
                return
            if isinstance(self.store, RemoteStore):  # attached: the engine writes the history
                settle(self, self.store.rename_conversation(conversation.id, title),
                       lambda _row: self.refresh_rows(keep_id=conversation.id, fallback_row=self.table.cursor_row),
                       "Could not rename the chat")  # fmt: skip
                return
            try:
                self.store.chats.rename_conversation(conversation.id, title)
            except (KeyError, ValueError) as exc:
                self.notify(f"Could not rename the chat: {problem(exc)}", severity="error")
            self.refresh_rows(keep_id=conversation.id, fallback_row=self.table.cursor_row)

        self.app.push_screen(PromptScreen("Rename chat", conversation.title), renamed)

    def action_delete(self) -> None:
        conversation = self.selected()
        if conversation is None:
            return
        row = self.table.cursor_row

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            if isinstance(self.store, RemoteStore):  # attached: the engine deletes it and its saved prompt cache
                settle(self, self.store.delete_conversation(conversation.id), lambda _none: deleted(),
                       "Could not delete the chat")  # fmt: skip
                return
            try:
                self.store.chats.delete_conversation(conversation.id)
                if self.forget_cache is not None:
                    self.forget_cache(chat_cache_key(conversation.id))
            except KeyError as exc:
                self.notify(f"Could not delete the chat: {problem(exc)}", severity="error")
                self.refresh_rows(fallback_row=row)
            else:
                deleted()

        def deleted() -> None:
            self.notify(f"Deleted “{clip(conversation.title, TITLE_WIDTH)}”.")
            self.refresh_rows(fallback_row=row)

        count = conversation.message_count
        question = f"Delete “{conversation.title}” and its {count} message{'s' if count != 1 else ''}?"
        self.app.push_screen(ConfirmScreen(question), confirmed)

    def action_export(self, kind: str) -> None:
        conversation = self.selected()
        if conversation is None:
            return
        path = self.paths.data_dir / "exports" / f"{slug(conversation.title)}-{conversation.id}.{kind}"
        try:
            text = (self.store.chats.export_markdown if kind == "md" else self.store.chats.export_json)(conversation.id)
            write_export(path, text)
        except KeyError as exc:
            self.notify(f"Could not export the chat: {problem(exc)}", severity="error")
            self.refresh_rows(fallback_row=self.table.cursor_row)
        except OSError as exc:
            self.notify(f"Could not write {path}: {exc.strerror or exc}", severity="error")
        else:
            self.notify(f"Exported to {path}", title="Export", timeout=8)


def write_export(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
