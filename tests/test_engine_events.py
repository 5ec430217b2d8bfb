"""The engine's one event stream (issue 16, points 2 and 5): faces attach to ``GET /v1/events`` of an in-process
engine over the real services and hear hello, the models, downloads, jobs, faces and memory states (coalesced), count
in ps while attached, and hear ``stopping`` when the engine stops."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from tests.support.hub_repos import write_repo
from tests.support.hub_server import LoopbackHub
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.engine_home import engine_home
from workbench.core.settings.paths import AppPaths
from workbench.core.wire import job_from_wire, model_info_from_wire
from workbench.server.engine import Engine

WAIT_S = 30.0  # every wait in this file is bounded by it
Event = tuple[str, Any]


async def until(condition: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Face:
    """A face attached to the engine's event stream in the background, keeping every (topic, payload) it hears."""

    def __init__(self, client: EngineClient, name: str = "tui", topics: Iterable[str] | None = None) -> None:
        self.events: list[Event] = []
        self.ended = False
        self.task = asyncio.create_task(self._read(client, name, topics))

    async def _read(self, client: EngineClient, name: str, topics: Iterable[str] | None) -> None:
        async for event in client.events(name, topics):
            self.events.append(event)
        self.ended = True

    def payloads(self, topic: str) -> list[Any]:
        return [payload for seen, payload in self.events if seen == topic]

    def latest(self, topic: str) -> Any:
        payloads = self.payloads(topic)
        return payloads[-1] if payloads else None

    async def heard(self, topic: str, condition: Callable[[Any], object] = bool, what: str = "") -> Any:
        """Wait until the latest ``topic`` payload meets ``condition``; returns it."""
        await until(lambda: self.payloads(topic) and condition(self.latest(topic)), what or f"a {topic} event")
        return self.latest(topic)

    async def leave(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def model(payload: dict[str, Any], model_id: str = "fake-chat") -> dict[str, Any]:
    [row] = [row for row in payload["models"] if row["spec"]["id"] == model_id]
    return row


@contextlib.asynccontextmanager
async def running(paths: AppPaths, services: Any = None) -> AsyncIterator[tuple[Engine, EngineClient, Any]]:
    """An engine over ``services`` (the real ones with the fake chat model by default), stopped at the end."""
    backend = None
    if services is None:
        services, backend = services_with_fake(paths)
    home = engine_home(paths)
    engine = Engine(services, home)
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    try:
        yield engine, client, backend
    finally:
        if not task.done():
            await client.stop()
        await asyncio.wait_for(task, 10)


# --- attaching ---------------------------------------------------------------------------------------------


async def test_a_face_hears_hello_then_the_states_and_counts_in_ps_while_attached(tmp_path: Path) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        face = Face(client, "tui")
        await face.heard("faces")
        hello_topic, hello = face.events[0]
        assert hello_topic == "hello" and hello["engine"]["pid"] == engine.info()["pid"]
        assert hello["face"]["name"] == "tui" and hello["face"]["pid"] == hello["engine"]["pid"]
        assert hello["topics"] == ["chat", "compare", "downloads", "embedding", "faces", "history", "import", "jobs",
                                   "memory", "models", "request"]  # fmt: skip
        models = await face.heard("models")
        row = model(models)
        assert row == {"spec": {"id": "fake-chat", "name": "fake-chat", "kind": "fake-chat",
                                "path": "/nonexistent/fake-chat"},
                       "role": "chat", "state": "unloaded", "pinned": False, "leases": 0,
                       "estimate": {"weights": 10 * 2**20, "kv_cache": 2 * 2**20, "overhead": 0},
                       "measured": None, "last_used": None, "error": None}  # fmt: skip
        assert set(models) == {"models", "budget", "held_bytes", "context_length"} and models["budget"]["bytes"] > 0
        assert await face.heard("downloads") == {"jobs": []}
        assert await face.heard("jobs", lambda jobs: jobs == []) == []
        [listed] = await face.heard("faces")
        assert listed == hello["face"]

        ps = await client.ps()
        assert ps is not None and ps["clients"] == 1 and ps["faces"] == [listed] and engine.busy()

        only = Face(client, "cli", topics=["downloads"])
        await only.heard("downloads")
        await face.heard("faces", lambda faces: len(faces) == 2)
        await asyncio.sleep(0.3)  # time for anything else to arrive: nothing does
        assert [topic for topic, _ in only.events] == ["hello", "downloads"]
        await only.leave()
        await face.leave()


async def test_a_face_that_leaves_no_longer_counts(tmp_path: Path) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        staying, leaving = Face(client, "tui"), Face(client, "pull")
        await staying.heard("faces", lambda faces: len(faces) == 2)
        assert engine.clients == 2
        await leaving.leave()
        faces = await staying.heard("faces", lambda faces: len(faces) == 1, "the face that left to go")
        assert [face["name"] for face in faces] == ["tui"]
        ps = await client.ps()
        assert ps is not None and ps["clients"] == 1 and [face["name"] for face in ps["faces"]] == ["tui"]
        await staying.leave()
        await until(lambda: engine.clients == 0, "no face left")
        ps = await client.ps()
        assert ps is not None and ps["clients"] == 0 and ps["faces"] == []


async def test_the_engine_does_not_idle_out_under_an_attached_face(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    now = [1000.0]
    engine = Engine(services, home, idle_exit_s=60, check_s=0.01, clock=lambda: now[0])
    task = await serving(engine, home)
    face = Face(EngineClient(home.socket), "tui", topics=["faces"])
    await face.heard("faces")
    now[0] += 600
    await asyncio.sleep(0.2)
    assert not task.done()  # ten idle periods: only the face keeps it
    await face.leave()
    await until(lambda: engine.clients == 0, "the face to leave")
    await asyncio.sleep(0.05)
    now[0] += 61
    assert await asyncio.wait_for(task, 10) == "idle"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "'face' must name the face"),
        ("face=TUI", "'face' must name the face"),
        ("face=a%20b", "'face' must name the face"),
        ("face=../x", "'face' must name the face"),
        ("face=" + "x" * 33, "'face' must name the face"),
        ("face=tui&face=cli", "more than once"),
        ("face=tui&topics=models,nope", "unknown topic(s): 'nope'"),
        ("face=tui&topics=", "comma-separated list"),
        ("face=tui&topics=models,,jobs", "comma-separated list"),
        ("face=tui&pid=abc", "'pid' must be a process id"),
        ("face=tui&pid=0", "'pid' must be a process id"),
        ("face=tui&token=x", "unknown parameter(s): 'token'"),
    ],
)
async def test_a_bad_face_topic_or_parameter_is_refused_with_400(tmp_path: Path, query: str, message: str) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        async def attach() -> None:
            async for _ in client.stream("GET", f"/v1/events?{query}"):
                pass

        with pytest.raises(EngineRequestError) as refused:
            await asyncio.wait_for(attach(), WAIT_S)
        assert refused.value.status == 400 and message in str(refused.value)
        assert engine.clients == 0


# --- what the engine publishes -----------------------------------------------------------------------------


async def test_a_model_load_shows_as_loading_then_ready(tmp_path: Path) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, backend):
        gate = threading.Event()
        real_load = backend.load
        backend.load = lambda spec: gate.wait(WAIT_S) and real_load(spec)  # the load waits for the test
        face = Face(client, "tui", topics=["models"])
        await face.heard("models")
        loading = asyncio.create_task(engine.services.manager.load("fake-chat"))
        await face.heard("models", lambda p: model(p)["state"] == "loading", "the model loading")
        gate.set()
        ready = await face.heard("models", lambda p: model(p)["state"] == "ready", "the model ready")
        await asyncio.wait_for(loading, WAIT_S)
        row = model(ready)
        assert model_info_from_wire(row) == engine.services.manager.info("fake-chat")  # what a face rebuilds
        assert row["measured"] == 10 * 2**20 and ready["held_bytes"] == 12 * 2**20
        assert row["last_used"] == pytest.approx(time.monotonic(), abs=5)  # one monotonic clock per machine
        states = [model(p)["state"] for p in face.payloads("models")]
        assert states[0] == "unloaded" and states[-1] == "ready" and "loading" in states
        await face.leave()


async def test_a_model_registered_from_another_thread_shows(tmp_path: Path) -> None:
    from tests.support.fake_chat import fake_spec

    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        face = Face(client, "tui", topics=["models"])
        await face.heard("models")
        await asyncio.to_thread(engine.services.manager.register, fake_spec("fake-two"))  # a scan in a worker
        registered = await face.heard("models", lambda p: "fake-two" in [r["spec"]["id"] for r in p["models"]])
        row = model(registered, "fake-two")
        assert row["state"] == "unloaded" and row["role"] == "chat"
        await face.leave()


async def test_a_storm_of_changes_is_coalesced_to_about_ten_events_a_second(tmp_path: Path) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        face = Face(client, "tui", topics=["models"])
        await face.heard("models")
        before = len(face.payloads("models"))
        started = time.monotonic()
        for n in range(300):  # 300 changes over ~0.6 s
            engine.services.manager.pin("fake-chat", n % 2 == 0)
            await asyncio.sleep(0.002)
        engine.services.manager.pin("fake-chat", True)
        last = await face.heard("models", lambda p: model(p)["pinned"], "the last change")
        await asyncio.sleep(0.3)  # anything still on its way
        elapsed = time.monotonic() - started
        heard = len(face.payloads("models")) - before
        assert 2 <= heard <= 10 * elapsed + 2, (heard, elapsed)
        assert model(face.latest("models")) == model(last)  # the latest state always goes out
        await face.leave()


async def test_memory_is_sampled_only_while_a_face_is_attached(tmp_path: Path) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        engine.publisher.memory_every_s = 0.05
        await asyncio.sleep(0.3)
        assert engine.publisher.samples == 0  # nobody listens: nothing is sampled
        face = Face(client, "tui", topics=["memory"])
        await until(lambda: len(face.payloads("memory")) >= 3, "three memory samples")
        sample = face.latest("memory")
        assert set(sample) == {"system_total", "system_used", "process_rss", "mlx_active", "mlx_peak", "mlx_cache",
                               "budget_bytes", "held_bytes", "sampled_at"}  # fmt: skip
        assert sample["process_rss"] > 0 and 0 < sample["system_used"] <= sample["system_total"]
        assert sample["held_bytes"] == 0 and sample["budget_bytes"] == engine.services.manager.budget.bytes
        await face.leave()
        await until(lambda: engine.clients == 0, "the face to leave")
        taken = engine.publisher.samples
        await asyncio.sleep(0.3)
        assert engine.publisher.samples == taken


# --- downloads ---------------------------------------------------------------------------------------------

REPO = "test-org/events-blob"
WEIGHTS_DATA = random.Random(2).randbytes(1024 * 1024)


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # to 127.0.0.1 only
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = tmp_path_factory.mktemp("events-hub")
    write_repo(root, REPO, {"model.safetensors": WEIGHTS_DATA, "config.json": json.dumps({"model_type": "llama"})},
               {"library_name": "mlx", "tags": ["mlx"]})  # fmt: skip
    with LoopbackHub(root) as server:
        server.faults.bandwidth_bps = 512 * 1024  # ~2 s: many progress steps
        yield server


async def test_a_queued_download_s_progress_arrives_coalesced(tmp_path: Path, hub: LoopbackHub) -> None:
    from workbench.core.hub.downloads.queue import DownloadManager

    paths = AppPaths.under(tmp_path / "home")
    services, _backend = services_with_fake(paths)
    cache = tmp_path / "hf"
    services.downloads_factory = lambda: DownloadManager(services.store, cache_dir=cache, endpoint=hub.url,
                                                         chunk_size=16 * 1024, min_free_bytes=0)  # fmt: skip
    async with running(paths, services) as (_engine, client, _backend):
        face = Face(client, "tui", topics=["downloads", "jobs"])
        await face.heard("downloads")
        queued = await client.queue_download(REPO)
        assert queued is not None
        started = time.monotonic()
        row = await face.heard("downloads", lambda p: p["jobs"] and p["jobs"][0]["state"] == "downloading"
                               and p["jobs"][0]["done_bytes"] > 0, "bytes on their way")  # fmt: skip
        jobs = await face.heard("jobs", lambda jobs: jobs and jobs[0]["progress"] > 0)
        assert jobs[0]["kind"] == "download" and jobs[0]["id"] == queued["id"] and jobs[0]["what"] == REPO
        done = await face.heard("downloads", lambda p: p["jobs"][0]["state"] == "done", "the download to finish")
        elapsed = time.monotonic() - started
        [job] = done["jobs"]
        assert job["id"] == queued["id"] and job["repo_id"] == REPO and job["revision"] == "main"
        snapshot = job_from_wire(job)  # what a face rebuilds
        assert snapshot.done_bytes == snapshot.total_bytes > len(WEIGHTS_DATA) and snapshot.fraction == 1.0
        assert snapshot.error is None and snapshot.files_done == snapshot.files_total == 2
        assert row["jobs"][0]["speed_bps"] >= 0
        progress = [p["jobs"][0]["done_bytes"] for p in face.payloads("downloads") if p["jobs"]]
        assert progress == sorted(progress) and len(set(progress)) >= 3  # it moved, step by step
        assert len(face.payloads("downloads")) <= 10 * elapsed + 4  # coalesced: ~10 a second at most
        await face.heard("jobs", lambda jobs: jobs == [], "the finished download to leave ps's jobs")
        [weights] = list(cache.glob("*/snapshots/*/model.safetensors"))
        assert hashlib.sha256(weights.read_bytes()).digest() == hashlib.sha256(WEIGHTS_DATA).digest()
        await face.leave()


# --- stopping ----------------------------------------------------------------------------------------------


async def test_stop_tells_every_face_stopping_then_ends_their_streams(tmp_path: Path) -> None:
    async with running(AppPaths.under(tmp_path)) as (engine, client, _backend):
        faces = [Face(client, "tui"), Face(client, "serve", topics=["request"])]
        await until(lambda: engine.clients == 2, "two faces attached")
        assert await client.stop() is not None
        for face in faces:
            await asyncio.wait_for(face.task, WAIT_S)  # the stream ended cleanly: no EngineGone
            assert face.ended and face.events[-1] == ("stopping", {"reason": "asked to stop"})
        assert engine.clients == 0
    assert [topic for topic, _ in faces[1].events] == ["hello", "stopping"]


def test_ps_lists_the_faces_and_answers_and_embedding_jobs() -> None:
    from workbench.cli.ps import ps_text

    now = time.time()
    document = {
        "engine": {"pid": 42, "version": "0.1.0", "socket": "/run/x/engine.sock", "rss_bytes": 150 * 2**20,
                   "uptime_s": 60.0},
        "models": [],
        "jobs": [{"kind": "generation", "id": "gen-1", "what": "SmolLM2", "progress": None, "started_at": now - 120,
                  "face": "cli"},
                 {"kind": "embedding", "id": "emb-2", "what": "corpus.txt", "progress": 0.5, "started_at": now}],
        "clients": 1,
        "faces": [{"id": 1, "name": "tui", "pid": 4242, "attached_at": now - 600}],
    }  # fmt: skip
    lines = ps_text(document).splitlines()
    assert lines[2:] == [
        "no model loaded",
        "",
        "JOB    KIND        WHAT        PROGRESS  FACE  STARTED",
        "gen-1  generation  SmolLM2     -         cli   2 min ago",
        "emb-2  embedding   corpus.txt  50 %      -     0 min ago",
        "",
        "FACE  PID   ATTACHED",
        "tui   4242  10 min ago",
    ]
