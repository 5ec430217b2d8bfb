"""`workbench embed` and `workbench rm` as faces of the engine, and `workbench ls` opening no history: the verbs run as
subprocesses against an engine served in the test's loop (fake embedders and a fake chat backend, on the socket of
the test's data folder, so the face finds it running and starts none). Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.engine_procs import ROOT, stop_engine
from tests.support.engines import serving
from tests.support.fake_chat import FakeChatBackend
from tests.support.fake_embedder import FakeEmbeddingBackend, services_with_fake_embedders
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.embeddings.corpus import load_corpus
from workbench.core.engine_home import engine_home
from workbench.core.models.local import DEFAULT_EMBEDDER_ID
from workbench.core.settings.paths import AppPaths
from workbench.server.engine import Engine

MODEL = "fake/embed-a"
IMPORT = "my-import"
TEXTS = [f"Note {n} is about {topic} and {n % 7} other things." for n in range(10) for topic in ("rivers", "violins")]
FACE_TIMEOUT_S = 90.0


@dataclass
class Rig:
    engine: Engine
    services: Any
    backend: FakeEmbeddingBackend
    chat: FakeChatBackend
    client: EngineClient
    paths: AppPaths
    env: dict[str, str]


def write_import(paths: AppPaths) -> Path:
    """An imported model folder (what `workbench ls` lists and `rm` deletes); a fake chat backend loads it."""
    folder = paths.models_dir / IMPORT
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    return folder


@contextlib.asynccontextmanager
async def engine_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    paths = AppPaths.under(tmp_path / "home")
    env = face_env(tmp_path / "home")
    write_import(paths)
    services, backend = services_with_fake_embedders(paths, MODEL)
    chat = FakeChatBackend(kind="mlx-lm")  # the imported folder's kind, loaded by the fake
    services.manager.add_backend(chat)
    home = engine_home(paths)
    engine = Engine(services, home, find_models=False)
    task = await serving(engine, home)
    try:
        yield Rig(engine, services, backend, chat, EngineClient(home.socket), paths, env)
    finally:
        backend.gate.set()
        engine.request_stop()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(stop_engine, env)  # none should have been started; if one was, it goes


def face_env(root: Path) -> dict[str, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(root), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
    env.pop("HF_TOKEN", None)
    return env


@dataclass
class Done:
    code: int
    out: str
    err: str


async def face(env: dict[str, str], *args: str, cwd: Path | None = None) -> Done:
    process = await start_face(env, *args, cwd=cwd)
    return await finish(process)


async def start_face(env: dict[str, str], *args: str, cwd: Path | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workbench.cli.main", *args, env=env, cwd=cwd or ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process) -> Done:
    try:
        out, err = await asyncio.wait_for(process.communicate(), FACE_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    text = err.decode()
    assert "Traceback" not in text, text
    return Done(process.returncode, out.decode(), text)


async def until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def in_process_vectors(tmp_path: Path, texts: list[str]) -> np.ndarray:
    """What the in-process Embedder (the CLI's before the engine) gives for ``texts``, in a data folder of its own."""
    services, _backend = services_with_fake_embedders(AppPaths.under(tmp_path / "in-process"), MODEL)
    try:
        return await services.embedder.embed(MODEL, texts)
    finally:
        await services.aclose()


def model_ids(state: dict[str, Any] | None) -> set[str]:
    assert state is not None
    return {row["spec"]["id"] for row in state["models"]}


# --- embed ---------------------------------------------------------------------------------------------------------


async def test_embed_through_the_engine_writes_the_in_process_vectors_and_a_second_run_reuses_the_cache(
    tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    async with engine_rig(tmp_path) as rig:
        done = await face(rig.env, "embed", MODEL, str(notes), "-o", str(tmp_path / "out.npy"), "--json")
        assert done.code == 0, done.err
        assert json.loads(done.out) == {"path": str(tmp_path / "out.npy"), "count": len(TEXTS), "dimensions": 384,
                                        "model": MODEL, "problems": []}  # fmt: skip
        assert "100%" in done.err and "row i is the i-th passage" in done.err
        vectors = np.load(tmp_path / "out.npy")
        assert vectors.dtype == np.float32
        np.testing.assert_array_equal(vectors, await in_process_vectors(tmp_path, load_corpus(notes).texts))
        batches, encoded = len(rig.backend.batches), rig.backend.encoded
        assert encoded == len(TEXTS)

        again = await face(rig.env, "embed", MODEL, str(notes), cwd=tmp_path)  # default output: here, notes.npy
        assert again.code == 0, again.err
        assert again.out == f"{tmp_path / 'notes.npy'}\n"
        np.testing.assert_array_equal(np.load(tmp_path / "notes.npy"), vectors)
        assert (len(rig.backend.batches), rig.backend.encoded) == (batches, encoded)  # all from the engine's cache
        ps = await rig.client.ps()
        assert ps is not None and [job for job in ps["jobs"] if job["kind"] == "embedding"] == []


async def test_embed_reports_skipped_rows_and_nothing_to_embed_as_before(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("id,text,note\n1,hello world,x\n2,,y\n3\n4,good night,z\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    async with engine_rig(tmp_path) as rig:
        done = await face(rig.env, "embed", MODEL, str(rows), "-o", str(tmp_path / "rows.bin"), "--column", "text",
                          "--json")  # fmt: skip
        assert done.code == 0, done.err
        problems = ["rows.csv line 3: empty 'text'", "rows.csv line 4: missing column 'text'"]
        assert json.loads(done.out)["problems"] == problems and json.loads(done.out)["count"] == 2
        assert all(f"skipped: {problem}" in done.err for problem in problems)
        assert np.load(tmp_path / "rows.bin").shape == (2, 384)

        nothing = await face(rig.env, "embed", MODEL, str(empty), "-o", str(tmp_path / "empty.npy"))
        assert nothing.code == 1 and "nothing to embed" in nothing.err, nothing.err
        missing = await face(rig.env, "embed", MODEL, str(tmp_path / "nope.txt"))
        assert missing.code == 1 and "no such file" in missing.err and "nothing to embed" in missing.err
        assert not (tmp_path / "empty.npy").exists()
        nowhere = await face(rig.env, "embed", MODEL, str(rows), "-o", str(tmp_path / "no" / "x.npy"))
        assert nowhere.code == 1 and "cannot write" in nowhere.err


async def test_an_unknown_model_exits_2_naming_the_engine_s_embedders(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("one line\n")
    async with engine_rig(tmp_path) as rig:
        unknown = await face({**rig.env, "PYTHONPROFILEIMPORTTIME": "1"}, "embed", "no-such-thing", str(notes))
        assert unknown.code == 2, unknown.err
        imported = {line.rsplit("|", 1)[-1].strip() for line in unknown.err.splitlines() if line.startswith("import")}
        assert "workbench.cli.embed" in imported
        assert not {"numpy", "workbench.bootstrap", "workbench.core.storage.store"} & imported  # a face stays light
        assert "no embedding model called 'no-such-thing'" in unknown.err
        assert MODEL in unknown.err and DEFAULT_EMBEDDER_ID in unknown.err
        close = await face(rig.env, "embed", "fake/embed", str(notes))
        assert close.code == 2 and f"did you mean: {MODEL}" in close.err
        chat = await face(rig.env, "embed", IMPORT, str(notes))
        assert chat.code == 2 and "not an embedding model" in chat.err
        assert rig.backend.encoded == 0 and not (tmp_path / "notes.npy").exists()


async def test_ctrl_c_cancels_the_engine_s_job_keeps_the_finished_batches_and_exits_130(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    async with engine_rig(tmp_path) as rig:
        rig.services.embedder.batch_size = 4
        rig.backend.free_batches = 1  # the first batch is encoded; the second waits for the gate
        rig.backend.gate.clear()
        process = await start_face(rig.env, "embed", MODEL, str(notes), "-o", str(tmp_path / "out.npy"))
        try:
            await until(lambda: any(job.done >= 4 for job in rig.engine.embeddings.jobs.values()), "the first batch")
            [job] = rig.engine.embeddings.jobs.values()
            ps = await rig.client.ps()
            assert ps is not None and [row["face"] for row in ps["jobs"] if row["kind"] == "embedding"] == ["cli"]
            process.send_signal(signal.SIGINT)
            await until(job.cancel.is_set, "the engine to hear the face's cancel")
            rig.backend.gate.set()  # the batch in flight ends; the next never starts
            done = await finish(process)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert done.code == 130, done.err
        assert "stopped:" in done.err and "cached" in done.err
        assert job.ended is not None and job.ended["state"] == "cancelled"
        assert len(rig.backend.batches) == 2 and rig.services.embedder.cache.count(MODEL) == 8
        assert not (tmp_path / "out.npy").exists()

        rig.backend.free_batches = 100
        again = await face(rig.env, "embed", MODEL, str(notes), "-o", str(tmp_path / "out.npy"))
        assert again.code == 0, again.err
        assert rig.backend.encoded == len(TEXTS)  # the 8 cached were not encoded again


# --- rm and ls -----------------------------------------------------------------------------------------------------


async def test_rm_goes_through_the_engine_refused_while_in_use_then_unregistered_and_deleted(tmp_path: Path) -> None:
    async with engine_rig(tmp_path) as rig:
        folder = rig.paths.models_dir / IMPORT
        lease = await rig.services.manager.acquire(IMPORT, holder="chat")
        try:
            refused = await face(rig.env, "rm", IMPORT, "--yes")
        finally:
            await lease.release()
        assert refused.code == 1, refused.err
        assert f"not deleting {IMPORT}: {IMPORT} is in use by chat" in refused.err
        assert folder.is_dir() and IMPORT in model_ids(await rig.client.call_json("GET", "/v1/models/state"))

        await rig.services.manager.unload(IMPORT)  # registered, not loaded
        deleted = await face(rig.env, "rm", IMPORT, "--yes", "--json")
        assert deleted.code == 0, deleted.err
        document = json.loads(deleted.out)
        assert (document["id"], document["source"], document["path"]) == (IMPORT, "imported", str(folder))
        assert document["freed_bytes"] >= 4096
        assert not folder.exists()
        assert IMPORT not in model_ids(await rig.client.call_json("GET", "/v1/models/state"))


async def test_rm_of_a_loaded_idle_model_unloads_it_in_the_engine_first(tmp_path: Path) -> None:
    async with engine_rig(tmp_path) as rig:
        await rig.services.manager.load(IMPORT)
        ps = await rig.client.ps()
        assert ps is not None and [row["id"] for row in ps["models"]] == [IMPORT]
        deleted = await face(rig.env, "rm", IMPORT, "--yes")
        assert deleted.code == 0 and deleted.out.startswith(f"deleted {IMPORT} ("), deleted.err
        ps = await rig.client.ps()
        assert ps is not None and ps["models"] == []
        assert IMPORT not in model_ids(await rig.client.call_json("GET", "/v1/models/state"))


@pytest.mark.parametrize(("body", "status", "words"), [
    ({}, 400, "'model' must be a model id"),
    ({"model": IMPORT, "force": True}, 400, "unknown key(s): 'force'"),
    ({"model": 7}, 400, "'model' must be a model id"),
    ({"model": "a\nb"}, 400, "'model' must be a model id"),
    ({"model": IMPORT, "path": "relative/dir"}, 400, "'path' must be an absolute path"),
    ({"model": "nobody/here"}, 404, "no model called 'nobody/here' on disk"),
    ({"model": DEFAULT_EMBEDDER_ID}, 400, "built-in embedder"),
    ({"model": IMPORT, "path": "/somewhere/else"}, 409, "not at /somewhere/else"),
])  # fmt: skip
async def test_the_delete_route_refuses_what_it_should(tmp_path: Path, body: dict[str, Any], status: int,
                                                       words: str) -> None:  # fmt: skip
    async with engine_rig(tmp_path) as rig:
        with pytest.raises(EngineRequestError) as refused:
            await rig.client.call_json("POST", "/v1/models/delete", body)
        assert refused.value.status == status and words in str(refused.value)
        assert (rig.paths.models_dir / IMPORT).is_dir()


async def test_rm_without_an_engine_deletes_here_and_starts_none(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path / "home")
    folder = write_import(paths)
    env = face_env(tmp_path / "home")
    try:
        deleted = await face(env, "rm", IMPORT, "--yes")
        assert deleted.code == 0, deleted.err
        assert not folder.exists() and not engine_home(paths).socket.exists()
    finally:
        await asyncio.to_thread(stop_engine, env)


def test_ls_never_builds_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from workbench.cli import main as cli
    from workbench.core.storage import store

    paths = AppPaths.under(tmp_path / "home")
    write_import(paths)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))

    def no_store(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("`workbench ls` built a Store")

    monkeypatch.setattr(store.Store, "__init__", no_store)
    assert cli.main(["ls", "--json"]) == 0
    assert IMPORT in [row["id"] for row in json.loads(capsys.readouterr().out)]
    assert not paths.database_file.exists()  # nothing opened it, for writing or otherwise


class StateSequence:
    """An EngineClient stand-in answering GET /v1/models/state from a list (the last one repeats)."""

    def __init__(self, *states: list[tuple[str, str]]) -> None:
        self.states = list(states)
        self.asked = 0

    async def call_json(self, method: str, route: str, body: object = None, timeout_s: float | None = None) -> Any:
        assert (method, route) == ("GET", "/v1/models/state")
        rows = self.states[min(self.asked, len(self.states) - 1)]
        self.asked += 1
        return {"models": [{"spec": {"id": model_id}, "role": role} for model_id, role in rows]}


async def test_a_model_on_disk_that_a_new_engine_has_not_found_yet_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.cli import embed as embed_cli
    from workbench.cli.common import UsageError

    paths = AppPaths.under(tmp_path / "home")
    monkeypatch.setattr(embed_cli, "SCAN_POLL_S", 0.01)
    monkeypatch.setattr(embed_cli, "loadable_here", lambda _paths, model_id: model_id == "org/cached-embedder")
    scanning: Any = StateSequence([(DEFAULT_EMBEDDER_ID, "embed")], [(DEFAULT_EMBEDDER_ID, "embed")],
                                  [(DEFAULT_EMBEDDER_ID, "embed"), ("org/cached-embedder", "embed")])  # fmt: skip
    assert await embed_cli.resolve_embedder(paths, scanning, "org/cached-embedder") == "org/cached-embedder"
    assert scanning.asked == 3
    nowhere: Any = StateSequence([(DEFAULT_EMBEDDER_ID, "embed")])
    with pytest.raises(UsageError, match="no embedding model called 'org/elsewhere'"):
        await embed_cli.resolve_embedder(paths, nowhere, "org/elsewhere")
    assert nowhere.asked == 1  # not on this disk: no wait
    monkeypatch.setattr(embed_cli, "SCAN_WAIT_S", 0.05)
    never: Any = StateSequence([(DEFAULT_EMBEDDER_ID, "embed")])
    with pytest.raises(UsageError, match=DEFAULT_EMBEDDER_ID):
        await embed_cli.resolve_embedder(paths, never, "org/cached-embedder")
