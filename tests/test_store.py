"""The store: WAL durability, migrations, chats (conversations, messages, recovery, export), the download queue,
embedding sets, and storage importing no other domain's types."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from workbench.core.storage import db as db_module
from workbench.core.storage.chats import Conversation, MessageStatus, StoredMessage
from workbench.core.storage.store import Store

FIGURES = {"ttft_s": 0.31, "prompt_tokens": 20, "prompt_tps": 150.0, "generation_tokens": 12, "generation_tps": 7.4}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "workbench.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store(db_path)
    yield opened
    opened.close()


def test_creates_parent_dirs_and_uses_wal(store: Store, db_path: Path) -> None:
    assert db_path.exists()
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_create_and_get_conversation(store: Store) -> None:
    created = store.chats.create_conversation(
        "Plans", model_id="mlx-community/SmolLM2", system_prompt="Be brief.", sampling={"temperature": 0.7}
    )
    assert created.title == "Plans" and created.message_count == 0
    assert store.chats.get_conversation(created.id) == created
    assert store.chats.get_conversation(created.id + 100) is None
    default = store.chats.create_conversation()
    assert (default.title, default.model_id, default.system_prompt, default.sampling) == ("New chat", None, "", {})


def test_list_is_most_recently_updated_first(store: Store) -> None:
    first = store.chats.create_conversation("first")
    second = store.chats.create_conversation("second")
    third = store.chats.create_conversation("third")
    assert [c.id for c in store.chats.list_conversations()] == [third.id, second.id, first.id]
    store.chats.add_message(first.id, "user", "hello")
    listed = store.chats.list_conversations()
    assert [c.id for c in listed] == [first.id, third.id, second.id]
    assert listed[0].message_count == 1
    assert len(store.chats.list_conversations(limit=2)) == 2


def test_search_is_case_insensitive_and_literal(store: Store) -> None:
    store.chats.create_conversation("Rust lifetimes")
    store.chats.create_conversation("100% sure")
    store.chats.create_conversation("snake_case names")
    store.chats.create_conversation("snakeXcase")
    store.chats.create_conversation("Über alles")

    def titles(search: str) -> set[str]:
        return {c.title for c in store.chats.list_conversations(search)}

    assert titles("rust") == {"Rust lifetimes"}
    assert titles("LIFE") == {"Rust lifetimes"}
    assert titles("%") == {"100% sure"}
    assert titles("_") == {"snake_case names"}
    assert titles("e_c") == {"snake_case names"}
    assert titles("über") == {"Über alles"}
    assert titles("nothing like it") == set()
    assert len(titles("")) == 5


def test_update_and_rename(store: Store) -> None:
    conversation = store.chats.create_conversation("old")
    store.chats.update_conversation(conversation.id, model_id="m", system_prompt="sys", sampling={"top_p": 0.9})
    updated = store.chats.get_conversation(conversation.id)
    assert updated is not None
    assert (updated.title, updated.model_id, updated.system_prompt, updated.sampling) == (
        "old",
        "m",
        "sys",
        {"top_p": 0.9},
    )
    assert updated.updated > conversation.updated
    store.chats.rename_conversation(conversation.id, "  new name ")
    renamed = store.chats.get_conversation(conversation.id)
    assert renamed is not None and renamed.title == "new name"
    for blank in ("", "   "):
        with pytest.raises(ValueError):
            store.chats.rename_conversation(conversation.id, blank)


def test_unknown_ids_raise_key_error(store: Store) -> None:
    with pytest.raises(KeyError, match="no conversation with id 42"):
        store.chats.update_conversation(42, title="x")
    with pytest.raises(KeyError):
        store.chats.rename_conversation(42, "x")
    with pytest.raises(KeyError):
        store.chats.delete_conversation(42)
    with pytest.raises(KeyError):
        store.chats.add_message(42, "user", "hi")
    with pytest.raises(KeyError, match="no message with id 7"):
        store.chats.update_message(7, content="x")
    with pytest.raises(KeyError):
        store.chats.delete_message(7)
    with pytest.raises(KeyError):
        store.chats.export_markdown(42)


def test_delete_conversation_cascades_messages(store: Store) -> None:
    doomed = store.chats.create_conversation("doomed")
    kept = store.chats.create_conversation("kept")
    store.chats.add_message(doomed.id, "user", "a")
    store.chats.add_message(doomed.id, "assistant", "b")
    store.chats.add_message(kept.id, "user", "c")
    store.chats.delete_conversation(doomed.id)
    assert store.chats.get_conversation(doomed.id) is None
    assert store.chats.messages(doomed.id) == []
    assert store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1
    assert [m.content for m in store.chats.messages(kept.id)] == ["c"]


def test_add_update_delete_message(store: Store) -> None:
    conversation = store.chats.create_conversation()
    user = store.chats.add_message(conversation.id, "user", "What is 2+2?")
    answer = store.chats.add_message(conversation.id, "assistant", "", status=MessageStatus.STREAMING)
    assert isinstance(answer, StoredMessage) and answer.status is MessageStatus.STREAMING
    assert store.chats.messages(conversation.id) == [user, answer]

    before = store.chats.get_conversation(conversation.id)
    store.chats.update_message(answer.id, content="4", status=MessageStatus.COMPLETE, figures=FIGURES)
    after = store.chats.get_conversation(conversation.id)
    assert before is not None and after is not None and after.updated > before.updated
    [_, stored] = store.chats.messages(conversation.id)
    assert (stored.content, stored.status, stored.figures, stored.error) == ("4", MessageStatus.COMPLETE, FIGURES, None)

    store.chats.update_message(answer.id, status=MessageStatus.ERROR, error="out of memory")
    stored = store.chats.messages(conversation.id)[1]
    assert (stored.content, stored.status, stored.error) == ("4", MessageStatus.ERROR, "out of memory")

    store.chats.delete_message(user.id)
    assert [m.id for m in store.chats.messages(conversation.id)] == [answer.id]
    with pytest.raises(ValueError):
        store.chats.add_message(conversation.id, "robot", "beep")


def test_sampling_and_figures_round_trip(store: Store, db_path: Path) -> None:
    sampling = {"temperature": 0.2, "top_p": 0.95, "max_tokens": 512, "stop": ["\n\n"], "seed": None}
    conversation = store.chats.create_conversation(sampling=sampling)
    message = store.chats.add_message(conversation.id, "assistant", "hi", figures=FIGURES)
    assert conversation.sampling == sampling and message.figures == FIGURES
    reopened = Store(db_path)
    try:
        again = reopened.chats.get_conversation(conversation.id)
        assert again is not None and again.sampling == sampling
        assert reopened.chats.messages(conversation.id)[0].figures == FIGURES
    finally:
        reopened.close()


def test_recover_interrupted_only_touches_streaming(store: Store) -> None:
    conversation = store.chats.create_conversation()
    statuses = [MessageStatus.COMPLETE, MessageStatus.STREAMING, MessageStatus.STOPPED, MessageStatus.ERROR]
    for status in statuses:
        store.chats.add_message(conversation.id, "assistant", status.value, status=status)
    assert store.chats.recover_interrupted() == 1
    assert [m.status for m in store.chats.messages(conversation.id)] == [
        MessageStatus.COMPLETE,
        MessageStatus.INCOMPLETE,
        MessageStatus.STOPPED,
        MessageStatus.ERROR,
    ]
    assert store.chats.recover_interrupted() == 0


def test_export_markdown(store: Store) -> None:
    conversation = store.chats.create_conversation("Arithmetic", model_id="tiny-llama",
                                                   system_prompt="Be exact.\nNo jokes.")
    store.chats.add_message(conversation.id, "user", "What is 2+2?")
    store.chats.add_message(conversation.id, "assistant", "4", figures=FIGURES)
    store.chats.add_message(conversation.id, "user", "And 3+3?")
    store.chats.add_message(conversation.id, "assistant", "It is", status=MessageStatus.STOPPED)
    store.chats.add_message(conversation.id, "assistant", "Let me", status=MessageStatus.INCOMPLETE)
    store.chats.add_message(conversation.id, "assistant", "", status=MessageStatus.ERROR, error="model unloaded")

    text = store.chats.export_markdown(conversation.id)
    assert text.startswith("# Arithmetic\n")
    assert "tiny-llama" in text
    assert "> Be exact.\n> No jokes." in text
    assert text.count("## You") == 2 and text.count("## Assistant") == 4
    assert "_(stopped)_" in text
    assert "_(incomplete: the app stopped mid-answer)_" in text
    assert "_(error: model unloaded)_" in text
    assert "_first token 0.31 s · prompt 20 tok @ 150.0 tok/s · 12 tok @ 7.4 tok/s_" in text
    assert text.index("What is 2+2?") < text.index("\n4\n") < text.index("_first token") < text.index("And 3+3?")


def test_export_markdown_without_system_prompt_or_model(store: Store) -> None:
    conversation = store.chats.create_conversation("Plain")
    store.chats.add_message(conversation.id, "user", "hi")
    text = store.chats.export_markdown(conversation.id)
    assert ">" not in text and "no model" in text and "## You\n\nhi" in text


def test_export_json_round_trips(store: Store) -> None:
    conversation = store.chats.create_conversation("J", model_id="m", system_prompt="s", sampling={"temperature": 0.5})
    store.chats.add_message(conversation.id, "user", "q")
    store.chats.add_message(conversation.id, "assistant", "a", status=MessageStatus.STOPPED, figures=FIGURES)
    data = json.loads(store.chats.export_json(conversation.id))

    fresh = store.chats.get_conversation(conversation.id)
    assert fresh is not None
    assert Conversation(**data["conversation"]) == fresh
    assert data["messages"][1]["status"] == "stopped"
    messages = [StoredMessage(**{**m, "status": MessageStatus(m["status"])}) for m in data["messages"]]
    assert messages == store.chats.messages(conversation.id)
    assert set(data["messages"][0]) == set(StoredMessage.__dataclass_fields__)


def test_reopening_sees_everything(db_path: Path) -> None:
    first = Store(db_path)
    conversation = first.chats.create_conversation("kept", sampling={"temperature": 1.0})
    message = first.chats.add_message(conversation.id, "user", "remember me")
    first.close()
    second = Store(db_path)
    try:
        [listed] = second.chats.list_conversations()
        assert (listed.id, listed.title, listed.sampling, listed.message_count) == (
            conversation.id,
            "kept",
            {"temperature": 1.0},
            1,
        )
        assert second.chats.messages(conversation.id) == [message]
    finally:
        second.close()


def test_migration_version_is_recorded_and_not_rerun(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(db_path).close()
    shipped = len(db_module.MIGRATIONS)
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == shipped

    probe = "CREATE TABLE probe (n INTEGER);\nINSERT INTO probe VALUES (1);"
    monkeypatch.setattr(db_module, "MIGRATIONS", [*db_module.MIGRATIONS, probe])
    for _ in range(3):  # only the first open applies the new migration; rerunning would fail on CREATE TABLE
        Store(db_path).close()
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == shipped + 1
        assert db.execute("SELECT COUNT(*) FROM probe").fetchone()[0] == 1


def test_failed_migration_leaves_nothing_half_done(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(db_path).close()
    shipped = len(db_module.MIGRATIONS)
    broken = "CREATE TABLE half (n INTEGER);\nTHIS IS NOT SQL;"
    monkeypatch.setattr(db_module, "MIGRATIONS", [*db_module.MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        Store(db_path)
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == shipped
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchall() == []


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with closing(sqlite3.connect(db_path)) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        Store(db_path)


def test_write_survives_sigkill(db_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from workbench.core.storage.chats import MessageStatus
        from workbench.core.storage.store import Store

        store = Store(Path({str(db_path)!r}))
        conversation = store.chats.create_conversation("killed mid-answer")
        store.chats.add_message(conversation.id, "user", "tell me a story")
        message = store.chats.add_message(conversation.id, "assistant", "Once", status=MessageStatus.STREAMING)
        store.chats.update_message(message.id, content="Once upon a time")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert result.returncode == -9, result.stderr

    store = Store(db_path)
    try:
        [conversation] = store.chats.list_conversations()
        assert conversation.title == "killed mid-answer"
        [_, answer] = store.chats.messages(conversation.id)
        assert (answer.content, answer.status) == ("Once upon a time", MessageStatus.STREAMING)
        assert store.chats.recover_interrupted() == 1
        assert store.chats.messages(conversation.id)[1].status is MessageStatus.INCOMPLETE
    finally:
        store.close()


def test_download_jobs_are_queued_in_order(db_path: Path) -> None:
    from workbench.core.hub.downloads.queue import DownloadManager

    queue = DownloadManager(Store(db_path))
    first = queue.enqueue("mlx-community/a-4bit")
    queue.enqueue("mlx-community/b-4bit", files=["config.json"])
    assert queue.enqueue("mlx-community/a-4bit") == first  # queuing twice is a no-op
    jobs = DownloadManager(Store(db_path)).jobs()
    assert [(j.repo_id, j.files, j.state) for j in jobs] == [
        ("mlx-community/a-4bit", [], "queued"),
        ("mlx-community/b-4bit", ["config.json"], "queued"),
    ]


def test_embedding_sets_remember_the_latest_open_per_path_and_column(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    store.embedding_sets.remember_embedding_set("/notes", None, "all-MiniLM-L6-v2", 10)
    store.embedding_sets.remember_embedding_set("/data.csv", "title", "all-MiniLM-L6-v2", 5)
    store.embedding_sets.remember_embedding_set("/notes", None, "org/other", 12)
    sets = store.embedding_sets.embedding_sets()
    assert [(s.path, s.column, s.model_id, s.passages) for s in sets] == [
        ("/notes", None, "org/other", 12),
        ("/data.csv", "title", "all-MiniLM-L6-v2", 5),
    ]
    store.close()


def test_storage_imports_no_compare_types() -> None:
    """The store keeps plain records: a compare run's contenders are dicts and its plan a code."""
    import ast

    import workbench.core.storage

    imported = set()
    for path in Path(workbench.core.storage.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
    assert not [name for name in imported if name.startswith("workbench.core.compare")]
    assert {name for name in imported if name.startswith("workbench.")} <= {
        "workbench.core.chat.figures",  # the one formatter of figures, for the chat export
        *(f"workbench.core.storage.{module}" for module in ("db", "chats", "compare_runs", "votes", "download_jobs",
                                                            "embedding_sets")),
    }  # fmt: skip
