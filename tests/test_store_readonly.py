"""A face's read-only view of the history: it reads what the writer (the engine) commits, while it writes, from
another process too; a write through it fails with a clear error before touching the file; it never migrates."""

from __future__ import annotations

import select
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.core.storage.db import MIGRATIONS, DatabaseUnavailableError, ReadOnlyDatabaseError
from workbench.core.storage.store import Store

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


def contender(name: str) -> dict[str, object]:
    return {"model_id": name, "label": name, "sampling": {}, "system_prompt": ""}


def test_a_read_only_store_reads_what_the_writer_commits(tmp_path: Path) -> None:
    writer = Store(tmp_path / "workbench.db")
    reader = Store(tmp_path / "workbench.db", read_only=True)
    try:
        assert reader.read_only and not writer.read_only
        chat = writer.chats.create_conversation("First", model_id="m")
        writer.chats.add_message(chat.id, "user", "Hi")
        run = writer.compare_runs.add_compare_run("Q", contender("a"), contender("b"))
        writer.votes.add_compare_vote(run, "a")
        writer.embedding_sets.remember_embedding_set("/corpus.csv", "text", "emb", 3)
        assert [c.title for c in reader.chats.list_conversations()] == ["First"]
        assert [m.content for m in reader.chats.messages(chat.id)] == ["Hi"]
        assert reader.votes.compare_votes() == [("a", "b", "a")]
        assert [s.path for s in reader.embedding_sets.embedding_sets()] == ["/corpus.csv"]

        # the writer goes on; each read sees the latest commit (no transaction is left open between reads)
        writer.chats.rename_conversation(chat.id, "Renamed")
        second = writer.chats.create_conversation("Second")
        assert [c.title for c in reader.chats.list_conversations()] == ["Second", "Renamed"]
        assert [c.title for c in reader.chats.list_conversations(search="REN")] == ["Renamed"]  # casefold works
        writer.chats.delete_conversation(second.id)
        assert reader.chats.get_conversation(second.id) is None
        assert "# Renamed" in reader.chats.export_markdown(chat.id)  # exports are reads: a face makes them itself
    finally:
        reader.close()
        writer.close()


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from workbench.core.storage.store import Store
    store = Store(Path(sys.argv[1]))
    chat = store.chats.create_conversation("Busy")
    print(chat.id, flush=True)
    sys.stdin.readline()  # the reader is ready
    for n in range(int(sys.argv[2])):
        store.chats.add_message(chat.id, "user", f"message {n}")
    store.close()
""")


def test_reads_go_on_while_another_process_writes(tmp_path: Path) -> None:
    database = tmp_path / "workbench.db"
    Store(database).close()  # the engine made and migrated it
    total = 300
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(database), str(total)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    reader = Store(database, read_only=True)
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert select.select([writer.stdout], [], [], 30)[0], "the writer did not start in time"
        chat_id = int(writer.stdout.readline())
        writer.stdin.write("go\n")
        writer.stdin.flush()
        seen: list[int] = []
        while writer.poll() is None and len(seen) < 100_000:  # bounded: the writer ends (waited for below)
            conversation = reader.chats.get_conversation(chat_id)
            assert conversation is not None
            seen.append(conversation.message_count)
        writer.wait(timeout=60)
        assert writer.returncode == 0
        assert seen == sorted(seen), "a later read saw fewer messages than an earlier one"
        messages = reader.chats.messages(chat_id)
        assert [m.content for m in messages] == [f"message {n}" for n in range(total)]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)
        reader.close()


def test_a_read_only_store_opens_after_the_writer_closed_and_sees_its_next_writes(tmp_path: Path) -> None:
    database = tmp_path / "workbench.db"
    writer = Store(database)
    writer.chats.create_conversation("Before")
    writer.close()  # the last close folds the WAL back in and removes -wal and -shm
    reader = Store(database, read_only=True)
    try:
        assert [c.title for c in reader.chats.list_conversations()] == ["Before"]
        writer = Store(database)  # the engine starts again while the face reads
        writer.chats.create_conversation("After")
        assert [c.title for c in reader.chats.list_conversations()] == ["After", "Before"]
        writer.close()
        assert [c.title for c in reader.chats.list_conversations()] == ["After", "Before"]
    finally:
        reader.close()


def test_a_write_through_a_read_only_store_fails_clearly_and_changes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "workbench.db"
    writer = Store(database)
    chat = writer.chats.create_conversation("Kept")
    writer.chats.add_message(chat.id, "assistant", "half", status="streaming")
    run = writer.compare_runs.add_compare_run("Q", contender("a"), contender("b"))
    reader = Store(database, read_only=True)
    try:
        writes = [
            lambda: reader.chats.rename_conversation(chat.id, "Changed"),
            lambda: reader.chats.delete_conversation(chat.id),
            lambda: reader.chats.create_conversation("New"),
            lambda: reader.chats.add_message(chat.id, "user", "x"),
            lambda: reader.chats.recover_interrupted(),
            lambda: reader.votes.add_compare_vote(run, "a"),
            lambda: reader.embedding_sets.remember_embedding_set("/c.csv", None, "emb", 1),
        ]
        for write in writes:
            with pytest.raises(ReadOnlyDatabaseError, match="open read-only here: the engine writes the history"):
                write()
        with pytest.raises(sqlite3.OperationalError):  # past the repositories too: the connection itself refuses
            reader.db.execute("DELETE FROM conversations")
        assert writer.chats.messages(chat.id)[0].status == "streaming"
        assert [c.title for c in writer.chats.list_conversations()] == ["Kept"]
        assert writer.votes.compare_votes() == []
    finally:
        reader.close()
        writer.close()


def test_a_read_only_store_never_migrates_or_creates_the_file(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(DATA / "workbench-v6.db", old)
    before = old.read_bytes()
    with pytest.raises(DatabaseUnavailableError, match=r"schema version 6, older .* the engine brings it up to date"):
        Store(old, read_only=True)
    with sqlite3.connect(old) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 6
    assert old.read_bytes() == before

    newer = tmp_path / "newer.db"
    Store(newer).close()
    with sqlite3.connect(newer) as bump:
        bump.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(DatabaseUnavailableError, match="newer than this workbench knows"):
        Store(newer, read_only=True)

    missing = tmp_path / "sub" / "missing.db"
    with pytest.raises(DatabaseUnavailableError, match="does not exist yet"):
        Store(missing, read_only=True)
    assert not missing.parent.exists()


def test_a_read_only_store_reads_what_a_killed_writer_committed(tmp_path: Path) -> None:
    database = tmp_path / "workbench.db"
    Store(database).close()
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from workbench.core.storage.store import Store
        store = Store(Path(sys.argv[1]))
        chat = store.chats.create_conversation("Cut short")
        for n in range(20):
            store.chats.add_message(chat.id, "user", f"message {n}")
        print(chat.id, flush=True)
        sys.stdin.readline()
    """)
    writer = subprocess.Popen([sys.executable, "-c", script, str(database)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout is not None
        assert select.select([writer.stdout], [], [], 30)[0], "the writer did not write in time"
        chat_id = int(writer.stdout.readline())
    finally:
        writer.kill()  # SIGKILL: its writes sit in the WAL, never folded back
        writer.wait(timeout=10)
    assert Path(f"{database}-wal").stat().st_size > 0
    Path(f"{database}-shm").unlink()  # as after a reboot: the reader rebuilds the WAL index itself
    reader = Store(database, read_only=True)
    try:
        assert len(reader.chats.messages(chat_id)) == 20
    finally:
        reader.close()
