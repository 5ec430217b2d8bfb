"""The engine as the history's one writer: the face's writes through its routes (RemoteStore: reads straight from the
file, read-only), the writer lock it holds for its life, and the look for an older workbench that has the database
open for writing (issue 16, point 1)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from workbench.client.engine import EngineClient
from workbench.client.store import RemoteStore, StoreUnavailableError
from workbench.core.engine_home import EngineLock, engine_home
from workbench.core.prompt_cache.reuse import chat_cache_key
from workbench.core.settings.paths import AppPaths
from workbench.core.storage.db import ReadOnlyDatabaseError
from workbench.core.storage.store import Store
from workbench.core.storage.writer_lock import (
    HistoryInUseError,
    HistoryWriterLock,
    _writers_by_lsof,
    claim_history,
    other_writers,
    parse_lsof,
)
from workbench.server.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def engine_and_store(tmp_path: Path) -> AsyncIterator[tuple[Engine, RemoteStore, list[str]]]:
    """An in-process engine over the real services, a face's RemoteStore on its database, and the prompt-cache keys
    the engine was asked to forget."""
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    forgotten: list[str] = []
    services.manager.forget_saved_cache = forgotten.append  # type: ignore[method-assign]
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    remote = RemoteStore(paths.database_file, EngineClient(home.socket))
    try:
        yield engine, remote, forgotten
    finally:
        remote.close()
        engine.request_stop()
        await asyncio.wait_for(task, 30)


async def raw(engine: Engine, method: str, route: str, data: bytes = b"") -> tuple[int, Any]:
    connector = aiohttp.UnixConnector(path=str(engine.home.socket))
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.request(method, f"http://engine{route}", data=data) as response:
            return response.status, await response.json()


# --- the face's writes through the engine --------------------------------------------------------------


async def test_a_face_renames_and_deletes_chats_through_the_engine_and_reads_them_back_itself(tmp_path: Path) -> None:
    async with engine_and_store(tmp_path) as (engine, remote, forgotten):
        chats = engine.services.store.chats  # the engine's own, read-write
        first = chats.create_conversation("First")
        chats.add_message(first.id, "user", "Hi")
        second = chats.create_conversation("Second")
        events = engine.events.subscribe(frozenset({"history"}))

        assert [c.title for c in remote.chats.list_conversations()] == ["Second", "First"]
        row = await remote.rename_conversation(first.id, "  Renamed  ")
        assert row["id"] == first.id and row["title"] == "Renamed" and row["message_count"] == 1
        assert [c.title for c in remote.chats.list_conversations()] == ["Renamed", "Second"]  # renaming bumps it

        await remote.delete_conversation(second.id)
        assert remote.chats.get_conversation(second.id) is None
        assert forgotten == [chat_cache_key(second.id)]  # its saved prompt cache goes too, as the history view did

        changes = [(await asyncio.wait_for(events.next(), 5)) for _ in range(2)]
        assert [event.payload for event in changes if event is not None] == [
            {"change": "renamed", "conversation": first.id, "title": "Renamed"},
            {"change": "deleted", "conversation": second.id},
        ]
        with pytest.raises(ReadOnlyDatabaseError):  # the face's own repositories do not write
            remote.chats.rename_conversation(first.id, "Not here")


async def test_a_face_remembers_an_embedding_set_through_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with engine_and_store(tmp_path) as (_engine, remote, _):
        await remote.remember_embedding_set("corpus.csv", "text", "emb-model", 12)
        await remote.remember_embedding_set(tmp_path / "other.jsonl", None, "emb-model", 3)
        sets = remote.embedding_sets.embedding_sets()
        assert [(s.path, s.column, s.model_id, s.passages) for s in sets] == [
            (str(tmp_path / "other.jsonl"), None, "emb-model", 3),
            (str(tmp_path / "corpus.csv"), "text", "emb-model", 12),  # made absolute by the face
        ]


async def test_unknown_ids_are_404_and_bad_requests_are_refused(tmp_path: Path) -> None:
    async with engine_and_store(tmp_path) as (engine, remote, forgotten):
        chat = engine.services.store.chats.create_conversation("Kept")
        with pytest.raises(KeyError, match="no conversation with id 999"):
            await remote.rename_conversation(999, "x")
        with pytest.raises(KeyError, match="no conversation with id 999"):
            await remote.delete_conversation(999)
        with pytest.raises(ValueError, match="non-blank"):
            await remote.rename_conversation(chat.id, "   ")
        assert forgotten == []

        rename = f"/v1/conversations/{chat.id}/rename"
        refused = {
            ("POST", "/v1/conversations/abc/rename", b'{"title": "x"}'): (400, "not a conversation id"),
            ("POST", "/v1/conversations/0/rename", b'{"title": "x"}'): (400, "not a conversation id"),
            ("POST", f"/v1/conversations/{2**63}/rename", b'{"title": "x"}'): (400, "not a conversation id"),
            ("DELETE", "/v1/conversations/-1", b""): (400, "not a conversation id"),
            ("POST", rename, b"not json"): (400, "not JSON"),
            ("POST", rename, b'["x"]'): (400, "must be a JSON object"),
            ("POST", rename, b'{"title": "x", "extra": 1}'): (400, "unknown key(s): 'extra'"),
            ("POST", rename, b'{"title": 5}'): (400, "'title' must be"),
            ("POST", rename, b'{"title": "a\\nb"}'): (400, "control character"),
            ("POST", rename, b'{"title": "' + b"x" * 501 + b'"}'): (400, "longer than 500"),
            ("POST", rename, b'{"title": "' + b"x" * 17_000 + b'"}'): (413, "larger than"),
            ("DELETE", f"/v1/conversations/{chat.id}", b'{"x": 1}'): (400, "takes no body"),
            ("POST", "/v1/embedding-sets", b'{"path": "rel.csv", "model": "m", "passages": 1}'): (400, "absolute"),
            ("POST", "/v1/embedding-sets", b'{"path": "/a.csv", "model": "m", "passages": true}'): (400, "passages"),
            ("POST", "/v1/embedding-sets", b'{"path": "/a.csv", "model": "m", "passages": -1}'): (400, "passages"),
            ("POST", "/v1/embedding-sets", b'{"path": "/a.csv", "passages": 1}'): (400, "missing key(s): model"),
            ("POST", "/v1/embedding-sets", b'{"path": "/a.csv", "column": 3, "model": "m", "passages": 1}'):
                (400, "'column'"),
        }  # fmt: skip
        for (method, route, body), (status, words) in refused.items():
            answer = await raw(engine, method, route, body)
            assert answer[0] == status and words in answer[1]["error"], (method, route, body[:40], answer)
        assert [c.title for c in remote.chats.list_conversations()] == ["Kept"]
        assert remote.embedding_sets.embedding_sets() == []


async def test_a_write_with_no_engine_says_it_was_not_saved(tmp_path: Path) -> None:
    database = tmp_path / "workbench.db"
    Store(database).close()
    remote = RemoteStore(database, EngineClient(tmp_path / "no-engine.sock"))
    try:
        with pytest.raises(StoreUnavailableError, match="not saved"):
            await remote.rename_conversation(1, "x")
    finally:
        remote.close()


# --- the writer lock -------------------------------------------------------------------------------------


async def test_the_engine_holds_the_history_writer_lock_while_it_runs(tmp_path: Path) -> None:
    database = AppPaths.under(tmp_path).database_file
    async with engine_and_store(tmp_path) as (engine, _remote, _):
        other = HistoryWriterLock(database)
        assert not other.try_acquire() and other.holder() == os.getpid()
        with pytest.raises(HistoryInUseError, match=rf"another workbench engine \(pid {os.getpid()}\) already writes"):
            claim_history(database).release()
        assert engine.history_lock is not None and engine.history_lock.held
    assert HistoryWriterLock(database).try_acquire()  # released when the engine stopped


def test_workbench_engine_refuses_to_start_while_another_engine_writes_the_history(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    lock = HistoryWriterLock(paths.database_file)
    assert lock.try_acquire()  # as an engine holds it (one whose socket this data folder's faces cannot see)
    try:
        engine = subprocess.run([sys.executable, "-m", "workbench.cli", "engine"], capture_output=True, text=True,
                                env={**os.environ, "WORKBENCH_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
                                timeout=60)  # fmt: skip
    finally:
        lock.release()
    assert engine.returncode == 1, engine.stderr
    assert f"another workbench engine (pid {os.getpid()}) already writes the history" in engine.stderr
    assert EngineLock(engine_home(paths).lock).try_acquire()  # it let go of the engine's lock too


# --- an older workbench that has the database open ----------------------------------------------------

HOLDER = textwrap.dedent("""
    import sqlite3, sys
    uri = sys.argv[1]
    connection = sqlite3.connect(uri, uri=True)
    connection.execute("SELECT count(*) FROM conversations").fetchone()
    print("open", flush=True)
    sys.stdin.readline()
""")


@contextlib.contextmanager
def holding(database: Path, read_only: bool = False) -> Iterator[subprocess.Popen[str]]:
    """A process that has ``database`` open (read-write as a workbench before the engine did, or read-only as a face
    does) until the block ends."""
    uri = database.resolve().as_uri() + ("?mode=ro" if read_only else "")
    process = subprocess.Popen([sys.executable, "-c", HOLDER, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        assert select.select([process.stdout], [], [], 30)[0], "the holder did not open the database in time"
        assert process.stdout.readline().strip() == "open"
        yield process
    finally:
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_process_with_the_database_open_for_writing_is_found_and_named(tmp_path: Path) -> None:
    database = tmp_path / "workbench.db"
    Store(database).close()
    with holding(database) as writer, holding(database, read_only=True) as reader:
        found = other_writers(database, timeout_s=10)
        assert [w.pid for w in found] == [writer.pid]  # the read-only one (a face) is no writer
        assert found[0].command.startswith("python") and " -c " in found[0].command

        lock = claim_history(database)  # what `workbench engine` does today: beside today's TUI, no refusal
        lock.release()
        with pytest.raises(HistoryInUseError) as refused:
            claim_history(database, refuse_other_writers=True, scan_timeout_s=10)
        message = str(refused.value)
        assert f"(pid {writer.pid}) still has the history open ({database}): quit it, then start again" in message
        assert str(reader.pid) not in message
        assert HistoryWriterLock(database).try_acquire()  # a refusal lets go of the lock

        # where psutil gives no open mode (macOS) lsof tells: read-write ("u") is a writer, read-only is not
        by_lsof = _writers_by_lsof(str(database.resolve()), {writer.pid: "w", reader.pid: "r"}, timeout_s=10)
        if by_lsof and by_lsof[0].mode != "unknown":  # lsof is there (else both count as writers: the safe side)
            assert [w.pid for w in by_lsof] == [writer.pid]
    assert other_writers(database, timeout_s=10) == []


def test_lsof_output_is_read_per_process() -> None:
    assert parse_lsof("p12\nau\nar\np34\nar\n") == {12: {"u", "r"}, 34: {"r"}}
    assert parse_lsof("") == {}


async def test_the_engine_refuses_before_opening_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.cli.engine import REFUSE_OLDER_WRITERS, serve_engine

    assert REFUSE_OLDER_WRITERS is True  # every face reads the history read-only: a writer is an older workbench
    paths = AppPaths.under(tmp_path)
    Store(paths.database_file).close()

    def opened(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the database was opened read-write beside another writer")

    monkeypatch.setattr("workbench.bootstrap.build_services", opened)
    home = engine_home(paths)
    lock = EngineLock(home.lock)
    assert lock.try_acquire()
    try:
        with holding(paths.database_file) as writer:
            with pytest.raises(HistoryInUseError, match=rf"\(pid {writer.pid}\) still has the history open"):
                await serve_engine(paths, home, lock)
    finally:
        lock.release()
    assert HistoryWriterLock(paths.database_file).try_acquire()


def test_workbench_engine_refuses_an_older_workbench_writing_but_not_a_face_reading(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    Store(paths.database_file).close()
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    with holding(paths.database_file) as writer:
        refused = subprocess.run([sys.executable, "-m", "workbench.cli", "engine"], capture_output=True, text=True,
                                 env=env, timeout=60)  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert f"(pid {writer.pid}) still has the history open" in refused.stderr
    with holding(paths.database_file, read_only=True):  # a face of this workbench: it reads, the engine writes
        engine = subprocess.Popen([sys.executable, "-m", "workbench.cli", "engine"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
        try:
            client = EngineClient(engine_home(paths).socket)
            deadline = time.monotonic() + 60
            while asyncio.run(client.engine_info()) is None:
                assert engine.poll() is None, engine.stdout.read() if engine.stdout else ""
                assert time.monotonic() < deadline, "the engine did not answer"
                time.sleep(0.05)
        finally:
            engine.terminate()
            engine.wait(timeout=30)
