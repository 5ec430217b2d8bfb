"""The download queue against the loopback hub, with injected faults: resume, verify, retry, controls, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine_procs import stop_engine
from tests.support.hub_repos import TINY_REPO_ID, make_tiny_mlx_repo, model_card, write_repo
from tests.support.hub_server import DEFAULT_TOKEN, HubLies, LoopbackHub
from workbench.core.hub import cache as hf_cache
from workbench.core.hub.downloads import transfer
from workbench.core.hub.downloads.jobs import ACTIVE, FileState, JobSnapshot, JobState, clock_time
from workbench.core.hub.downloads.queue import DownloadManager
from workbench.core.storage.store import Store

REPO = "test-org/blob-model"
WEIGHTS = "model.safetensors"
SMALL_REPOS = ["test-org/small-a", "test-org/small-b", "test-org/small-c"]
CHUNK = 64 * 1024
WAIT = 20.0  # seconds: every wait in this file is bounded by it
ROOT = Path(__file__).resolve().parent.parent

rng = random.Random(5)
WEIGHTS_DATA = rng.randbytes(4 * 1024 * 1024)
FILES: dict[str, bytes | str] = {
    WEIGHTS: WEIGHTS_DATA,
    "config.json": json.dumps({"model_type": "llama", "hidden_size": 64}),
    "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}),
    "README.md": model_card({"library_name": "mlx", "license": "mit"}, "# blob model"),
    "extra/model-Q4_0.gguf": rng.randbytes(2048),  # not in the default selection for MLX repos
}
SELECTED = ["README.md", "config.json", WEIGHTS, "tokenizer.json"]
WEIGHTS_SHA = hashlib.sha256(WEIGHTS_DATA).hexdigest()
SELECTED_BYTES = sum(len(c.encode() if isinstance(c, str) else c) for c in (FILES[p] for p in SELECTED))


@pytest.fixture(scope="module")
def repos_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("download-hub")
    write_repo(root, REPO, FILES, {"library_name": "mlx", "tags": ["mlx"]})
    for repo_id in SMALL_REPOS:
        write_repo(root, repo_id, {WEIGHTS: rng.randbytes(1024 * 1024), "config.json": "{}"}, {"library_name": "mlx"})
    return root


@pytest.fixture(autouse=True)
def hub_client_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs huggingface_hub offline; these tests talk to 127.0.0.1 only, without a token."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def hub(repos_root: Path) -> Iterator[LoopbackHub]:
    with LoopbackHub(repos_root) as server:
        yield server


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "db" / "workbench.sqlite3")
    yield opened
    opened.close()


Make = Callable[..., Awaitable[DownloadManager]]


@pytest.fixture
async def make(store: Store, hub: LoopbackHub, cache: Path) -> AsyncIterator[Make]:
    """Started managers over the test's store and cache, closed at the end; fast retries, tiny chunks."""
    made: list[DownloadManager] = []

    async def factory(start: bool = True, **options: Any) -> DownloadManager:
        settings: dict[str, Any] = {"cache_dir": cache, "endpoint": hub.url, "chunk_size": CHUNK,
                                    "backoff_base_s": 0.01, "backoff_max_s": 0.05, "stall_timeout_s": 5.0,
                                    "min_free_bytes": 0, **options}  # fmt: skip
        manager = DownloadManager(store, **settings)
        made.append(manager)
        if start:
            await manager.start()
        return manager

    yield factory
    for manager in made:
        await manager.aclose()


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def repo_folder(cache: Path, repo_id: str = REPO) -> Path:
    return cache / hf_cache.repo_folder_name(repo_id)


def partial_of(cache: Path, sha: str = WEIGHTS_SHA, repo_id: str = REPO) -> Path:
    return repo_folder(cache, repo_id) / "blobs" / f"{sha}.incomplete"


def weights_requests(hub: LoopbackHub, method: str = "GET") -> list[str | None]:
    """The Range header of each request for the weights (None: the whole file)."""
    return [r.headers.get("Range") for r in hub.requests if r.method == method and r.path.endswith(f"/{WEIGHTS}")]


def progress_of(job: JobSnapshot, path: str = WEIGHTS) -> int:
    return next((f.done_bytes for f in job.file_progress if f.path == path), 0)


# --- the happy path ----------------------------------------------------------------------------------


async def test_a_download_lands_in_the_standard_cache(make: Make, hub: LoopbackHub, cache: Path, store: Store) -> None:
    from huggingface_hub import hf_hub_download, scan_cache_dir

    manager = await make()
    job = manager.enqueue(REPO)
    final = await manager.wait(job.id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert final.files == SELECTED and final.files_done == final.files_total == 4
    assert final.done_bytes == final.total_bytes == SELECTED_BYTES and final.fraction == 1.0

    # huggingface_hub finds every file offline, through refs/main and the snapshot links
    local = Path(hf_hub_download(REPO, WEIGHTS, cache_dir=cache, local_files_only=True))
    assert local.read_bytes() == WEIGHTS_DATA
    assert os.readlink(local) == f"../../blobs/{WEIGHTS_SHA}"  # relative, like the library's own links
    folder = repo_folder(cache)
    assert (folder / "refs" / "main").read_text() == final.commit == local.parent.name
    config = hf_hub_download(REPO, "config.json", cache_dir=cache, local_files_only=True)
    assert Path(config).read_text() == FILES["config.json"]
    assert manager.snapshot_path(job.id) == local.parent

    info = scan_cache_dir(cache)
    assert info.warnings == [] and not info.incomplete_files
    [repo] = hf_cache.scan(cache)
    assert repo.repo_id == REPO and repo.size_bytes == SELECTED_BYTES and repo.revisions[0].refs == ("main",)
    assert [f.state for f in store.downloads.download_files(job.id)] == ["done"] * 4

    # one GET per file, whole; queuing it again is the same job and fetches nothing
    assert weights_requests(hub) == [None]
    hub.reset_counters()
    again = manager.enqueue(REPO)
    assert again.id == job.id and again.state is JobState.DONE and hub.requests == []


async def test_patterns_or_all_files_choose_what_to_fetch(make: Make, hub: LoopbackHub) -> None:
    manager = await make()
    jsons = manager.enqueue(REPO, include=["*.json"])
    everything = manager.enqueue(REPO, all_files=True)
    assert jsons.id != everything.id
    assert (await manager.wait(jsons.id, WAIT)).files == ["config.json", "tokenizer.json"]
    final = await manager.wait(everything.id, WAIT)
    assert final.state is JobState.DONE and sorted(final.files) == sorted(FILES)


async def test_a_downloaded_mlx_repo_loads_with_mlx_lm(
    make: Make, tmp_path_factory: pytest.TempPathFactory, store: Store, cache: Path
) -> None:
    root = tmp_path_factory.mktemp("tiny-hub")
    make_tiny_mlx_repo(root)
    with LoopbackHub(root) as tiny_hub:
        manager = await make(endpoint=tiny_hub.url)
        job = manager.enqueue(TINY_REPO_ID)
        final = await manager.wait(job.id, WAIT)
    assert final.state is JobState.DONE, final.error
    from mlx_lm import load

    model, tokenizer = load(str(manager.snapshot_path(job.id)))
    assert model.args.hidden_size == 64 and tokenizer.encode("w1 w2")


# --- faults --------------------------------------------------------------------------------------------


async def test_a_cut_connection_resumes_with_range(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.cut_after_bytes, hub.faults.only_path = 1_000_000, WEIGHTS
    manager = await make()
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE, final.error
    first, resumed = weights_requests(hub)
    start = int(resumed.removeprefix("bytes=").removesuffix("-"))  # type: ignore[union-attr]
    assert first is None and 1_000_000 - CHUNK < start <= 1_000_000  # all but the chunk being assembled
    assert hub.bytes_sent <= SELECTED_BYTES + CHUNK  # bytes fetched twice: no more than one chunk
    assert hashlib.sha256((repo_folder(cache) / "blobs" / WEIGHTS_SHA).read_bytes()).hexdigest() == WEIGHTS_SHA


async def test_bodies_truncated_every_time_still_finish(make: Make, hub: LoopbackHub) -> None:
    hub.faults.cut_after_bytes, hub.faults.cut_times, hub.faults.only_path = 1_000_000, None, WEIGHTS
    manager = await make(max_attempts=2)  # each try brings bytes, so the count starts again
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE, final.error
    ranges = weights_requests(hub)
    starts = [0] + [int(r.removeprefix("bytes=").removesuffix("-")) for r in ranges[1:]]  # type: ignore[union-attr]
    assert len(ranges) >= 5 and starts == sorted(starts) and len(set(starts)) == len(starts)
    assert hub.bytes_sent <= SELECTED_BYTES + (len(ranges) - 1) * CHUNK


async def test_a_corrupt_body_is_fetched_once_more(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.corrupt_next, hub.faults.only_path = 1, WEIGHTS
    manager = await make()
    notes: list[str] = []
    manager.subscribe(lambda job: notes.append(job.message or ""))
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert weights_requests(hub) == [None, None]  # discarded whole, fetched whole once more
    assert any("sha256 mismatch" in note and "once more" in note for note in notes)
    assert (repo_folder(cache) / "blobs" / WEIGHTS_SHA).read_bytes() == WEIGHTS_DATA


async def test_corrupt_twice_fails_with_the_reason(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.corrupt_next, hub.faults.only_path = 2, WEIGHTS
    manager = await make()
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.FAILED
    assert final.error is not None and "sha256 mismatch" in final.error and "twice" in final.error
    weights = next(f for f in final.file_progress if f.path == WEIGHTS)
    assert weights.state is FileState.FAILED
    assert not partial_of(cache).exists() and not (repo_folder(cache) / "blobs" / WEIGHTS_SHA).exists()


async def test_a_rate_limit_waits_as_long_as_retry_after_says(make: Make, hub: LoopbackHub) -> None:
    hub.faults.rate_limit, hub.faults.retry_after_s, hub.faults.only_path = 1, 1, WEIGHTS
    manager = await make()  # its own backoff is 10 ms: only Retry-After explains a 1 s wait
    notes: list[str] = []
    manager.subscribe(lambda job: notes.append(job.message or ""))
    began = time.monotonic()
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert 0.95 <= time.monotonic() - began < 5
    assert any("429" in note and "retrying in 1 s" in note for note in notes)
    assert len(weights_requests(hub, "HEAD")) == 2


async def test_server_errors_are_retried(make: Make, hub: LoopbackHub) -> None:
    hub.faults.server_error, hub.faults.only_path = 2, WEIGHTS
    manager = await make()
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert len(weights_requests(hub, "HEAD")) == 3 and weights_requests(hub) == [None]


async def test_persistent_server_errors_fail_with_the_reason(make: Make, hub: LoopbackHub) -> None:
    hub.faults.server_error, hub.faults.only_path = 1000, WEIGHTS
    manager = await make(max_attempts=3)
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.FAILED
    assert final.error == f"{WEIGHTS}: the hub had an error (500) (gave up after 3 tries)"
    assert [f.state for f in final.file_progress] == [FileState.DONE, FileState.DONE, FileState.FAILED,
                                                      FileState.PENDING]  # fmt: skip

    hub.reset_faults()  # retry picks up where it stopped
    manager.retry(final.id)
    final = await manager.wait(final.id, WAIT)
    assert final.state is JobState.DONE and final.error is None


async def test_a_stalled_connection_is_dropped_and_resumed(make: Make, hub: LoopbackHub) -> None:
    hub.faults.stall_after_bytes, hub.faults.stall_s, hub.faults.only_path = 16 * CHUNK, 3.0, WEIGHTS
    manager = await make(stall_timeout_s=0.5)
    began = time.monotonic()
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert time.monotonic() - began < 2.5  # did not sit out the 3 s stall
    first, resumed = weights_requests(hub)
    assert first is None and resumed == f"bytes={16 * CHUNK}-"  # nothing received was lost


async def test_gated_and_missing_repos_fail_in_words(
    make: Make, hub: LoopbackHub, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.faults.gated_repos.add(REPO)
    manager = await make()
    gated = await manager.wait(manager.enqueue(REPO).id, WAIT)
    missing = await manager.wait(manager.enqueue("nobody/nothing").id, WAIT)
    assert gated.state is JobState.FAILED and "gated" in (gated.error or "") and "HF_TOKEN" in (gated.error or "")
    assert missing.state is JobState.FAILED and "nobody/nothing was not found" in (missing.error or "")

    monkeypatch.setenv("HF_TOKEN", DEFAULT_TOKEN)  # the token opens it; it is sent, never kept or shown
    hub.reset_counters()
    manager.retry(gated.id)
    assert (await manager.wait(gated.id, WAIT)).state is JobState.DONE
    assert {r.headers.get("Authorization") for r in hub.requests if "/resolve/" in r.path} == {"Bearer ***"}
    assert DEFAULT_TOKEN not in repr(manager.jobs()) and DEFAULT_TOKEN.encode() not in store.path.read_bytes()


# --- controls -------------------------------------------------------------------------------------------


async def test_pause_keeps_the_partial_and_resume_continues_it(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.bandwidth_bps = 2_000_000
    manager = await make()
    heard: list[JobSnapshot] = []
    manager.subscribe(heard.append)
    began = time.monotonic()
    job = manager.enqueue(REPO)
    await until(lambda: progress_of(manager.job(job.id)) > 600_000, "some bytes of the weights")
    during = manager.job(job.id)
    assert 500_000 < during.speed_bps < 4_000_000 and during.eta_s is not None and during.eta_s > 0
    # bytes are coalesced: ~10 snapshots a second, plus one per state change
    states = len({(j.state, j.message, j.files_done) for j in heard})
    assert len(heard) <= 10 * (time.monotonic() - began) + 2 * states + 2
    manager.pause(job.id)
    assert manager.job(job.id).state is JobState.PAUSED  # at once, for the screen
    paused = await manager.wait(job.id, WAIT)  # and the transfer has let go of the file
    kept = partial_of(cache).stat().st_size
    assert paused.state is JobState.PAUSED and kept == progress_of(paused) >= 600_000
    sent = hub.bytes_sent

    hub.faults.bandwidth_bps = None
    hub.reset_counters()
    manager.resume(job.id)
    final = await manager.wait(job.id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert weights_requests(hub) == [f"bytes={kept}-"]
    assert sent + hub.bytes_sent <= SELECTED_BYTES + CHUNK + 2_000_000 // 20  # + one throttled write in flight


SLOW_BPS = 3_000  # the slow link
PROMPT_S = 5.0  # generous for a busy machine: the stop itself is within one socket read


async def test_a_pause_on_a_slow_link_stops_the_transfer_at_once(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.bandwidth_bps = SLOW_BPS
    manager = await make()  # reads were 256 KiB: at 3 KB/s the flag was seen after ~85 s
    job = manager.enqueue(REPO)
    await until(lambda: progress_of(manager.job(job.id)) > 2_000, "a few KB of the weights")
    asked = time.monotonic()
    manager.pause(job.id)
    paused = await manager.wait(job.id, PROMPT_S)  # paused, and the transfer thread has ended
    assert time.monotonic() - asked < PROMPT_S
    kept = partial_of(cache).stat().st_size
    assert paused.state is JobState.PAUSED and kept == progress_of(paused) > 2_000
    deadline = time.monotonic() + 1.0  # the thread is gone: nothing may write to the file any more
    while time.monotonic() < deadline:
        assert partial_of(cache).stat().st_size == kept
        await asyncio.sleep(0.05)

    hub.faults.bandwidth_bps = None
    hub.reset_counters()
    manager.resume(job.id)
    final = await manager.wait(job.id, WAIT)
    assert final.state is JobState.DONE, final.error
    assert weights_requests(hub) == [f"bytes={kept}-"]  # resumed from the kept bytes
    blob = repo_folder(cache) / "blobs" / WEIGHTS_SHA
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == WEIGHTS_SHA


async def test_pause_all_then_resume_all_restarts_at_once(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.bandwidth_bps = SLOW_BPS
    manager = await make()
    job = manager.enqueue(REPO)
    await until(lambda: progress_of(manager.job(job.id)) > 2_000, "a few KB of the weights")
    manager.pause_all()
    hub.reset_counters()
    asked = time.monotonic()
    manager.resume_all()
    await until(lambda: len(weights_requests(hub)) == 1, "the weights asked for again", timeout=PROMPT_S)
    assert time.monotonic() - asked < PROMPT_S
    kept = progress_of(manager.job(job.id))
    await until(lambda: progress_of(manager.job(job.id)) > kept, "new bytes", timeout=PROMPT_S)
    assert manager.job(job.id).state is JobState.DOWNLOADING
    assert weights_requests(hub)[0].startswith("bytes=")  # type: ignore[union-attr]


async def test_cancel_removes_the_partial_file(make: Make, hub: LoopbackHub, cache: Path, store: Store) -> None:
    hub.faults.bandwidth_bps = 2_000_000
    manager = await make()
    job = manager.enqueue(REPO)
    await until(lambda: partial_of(cache).exists() and progress_of(manager.job(job.id)) > 100_000, "a partial")
    manager.cancel(job.id)
    final = await manager.wait(job.id, WAIT)
    assert final.state is JobState.CANCELLED and not partial_of(cache).exists()
    assert store.downloads.get_download_job(job.id).state == "cancelled"  # type: ignore[union-attr]
    assert manager.enqueue(REPO).id != job.id  # a cancelled job is history: queuing again makes a new one
    manager.forget(job.id)
    assert job.id not in [j.id for j in manager.jobs()] and store.downloads.get_download_job(job.id) is None


async def test_the_queue_order_can_be_changed(make: Make, store: Store) -> None:
    manager = await make(start=False, concurrency=1)
    a, b, c = (manager.enqueue(repo_id).id for repo_id in SMALL_REPOS)
    manager.move(c, -2)  # to the front
    manager.move(a, +1)  # one down
    assert [j.id for j in manager.jobs()] == [c, b, a] and [j.position for j in manager.jobs()] == [0, 1, 2]
    assert [j.id for j in (await make(start=False)).jobs()] == [c, b, a]  # persisted

    started: list[int] = []

    def record(job: JobSnapshot) -> None:
        if job.state is JobState.DOWNLOADING and job.id not in started:
            started.append(job.id)

    manager.subscribe(record)
    await manager.start()
    for job_id in (a, b, c):
        assert (await manager.wait(job_id, WAIT)).state is JobState.DONE
    assert started == [c, b, a]


async def test_no_more_than_the_concurrency_limit_download_at_once(make: Make, hub: LoopbackHub) -> None:
    hub.faults.bandwidth_bps = 4_000_000  # per connection: the jobs overlap
    manager = await make(concurrency=2)
    states: dict[int, JobState] = {}
    most = 0

    def watch(job: JobSnapshot) -> None:
        nonlocal most
        states[job.id] = job.state
        most = max(most, sum(1 for state in states.values() if state in ACTIVE))

    manager.subscribe(watch)
    ids = [manager.enqueue(repo_id).id for repo_id in SMALL_REPOS]
    for job_id in ids:
        assert (await manager.wait(job_id, WAIT)).state is JobState.DONE
    assert most == 2


async def test_the_bandwidth_cap_is_shared(make: Make) -> None:
    manager = await make(bandwidth_bps=4_000_000)
    began = time.monotonic()
    ids = [manager.enqueue(repo_id).id for repo_id in SMALL_REPOS[:2]]  # two at once, one cap
    for job_id in ids:
        assert (await manager.wait(job_id, WAIT)).state is JobState.DONE
    total = 2 * (1024 * 1024 + 2)
    assert time.monotonic() - began >= (total - 4_000_000 / 4) / 4_000_000 * 0.9


async def test_low_disk_space_pauses_before_the_start(
    make: Make, hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = {"bytes": 10_000_000}
    monkeypatch.setattr(transfer, "disk_free", lambda path: free["bytes"])
    manager = await make(min_free_bytes=8_000_000)
    job = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert job.state is JobState.PAUSED and "low disk space" in (job.message or "")
    assert weights_requests(hub) == []

    free["bytes"] = 1 << 40
    manager.resume(job.id)
    final = await manager.wait(job.id, WAIT)
    assert final.state is JobState.DONE and final.message is None


async def test_low_disk_space_pauses_a_running_download(
    make: Make, hub: LoopbackHub, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def shrinking(path: Path) -> int:
        calls["n"] += 1
        return 100_000_000 if calls["n"] == 1 else 3_000_000  # something else fills the disk

    monkeypatch.setattr(transfer, "disk_free", shrinking)
    monkeypatch.setattr(transfer, "DISK_CHECK_BYTES", 512 * 1024)
    manager = await make(min_free_bytes=1_000_000)
    job = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert job.state is JobState.PAUSED and "low disk space" in (job.message or "")
    assert partial_of(cache).stat().st_size == progress_of(job) >= 512 * 1024  # kept for later


async def test_orphaned_partial_files_are_cleaned(make: Make, hub: LoopbackHub, cache: Path) -> None:
    hub.faults.bandwidth_bps = 2_000_000
    manager = await make()
    job = manager.enqueue(REPO)
    await until(lambda: progress_of(manager.job(job.id)) > 100_000, "a partial")
    manager.pause(job.id)
    await manager.wait(job.id, WAIT)
    blobs = repo_folder(cache) / "blobs"
    leftover = blobs / f"{'a' * 64}.1a2b3c4d.incomplete"  # what an interrupted hf_hub_download leaves
    stray = repo_folder(cache, "someone/else") / "blobs" / f"{'b' * 40}.incomplete"
    busy = blobs / f"{'c' * 64}.incomplete"  # a download in another process holds its lock
    for path in (leftover, stray, busy):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    lock = hf_cache.acquire_lock(hf_cache.lock_path(cache, blobs.parent.name, "c" * 64), timeout=1)
    try:
        assert {p.path for p in hf_cache.partial_files(cache)} == {leftover, stray, busy, partial_of(cache)}
        removed = manager.clean_partial_files()
    finally:
        lock.release()
    assert {p.path for p in removed} == {leftover, stray}
    assert {p.from_library for p in removed} == {True, False}
    assert busy.exists() and partial_of(cache).exists()  # in use, and the queue's own resumable one


async def test_cache_revisions_and_repos_can_be_deleted(make: Make, cache: Path) -> None:
    manager = await make()
    for repo_id in SMALL_REPOS[:2]:
        assert (await manager.wait(manager.enqueue(repo_id).id, WAIT)).state is JobState.DONE
    first, second = sorted(hf_cache.scan(cache), key=lambda r: r.repo_id)
    freed = hf_cache.delete_revision(first.repo_id, first.revisions[0].commit, cache)
    assert freed == first.size_bytes and not first.path.exists()  # its last revision: the repo goes
    assert hf_cache.delete_repo(second.repo_id, cache) == second.size_bytes
    assert hf_cache.scan(cache) == []


# --- restarts and the command line ----------------------------------------------------------------------


def cli_env(tmp_path: Path, hub: LoopbackHub) -> dict[str, str]:
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_CACHE", None)
    return env


def pull(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "workbench.cli.main", "pull", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def faces_engine(tmp_path: Path) -> Iterator[None]:
    """`workbench pull` is a face of the engine: it starts one (in ``cli_env``'s home); stopped at the end."""
    yield
    for home in (tmp_path / "home", tmp_path / "sandbox" / "home"):
        if home.exists():
            stop_engine({"WORKBENCH_HOME": str(home)})


async def test_a_killed_pull_leaves_the_download_running_in_the_engine(
    hub: LoopbackHub, tmp_path: Path, faces_engine: None
) -> None:
    hub.faults.bandwidth_bps = 1_000_000
    env = cli_env(tmp_path, hub)
    cache = tmp_path / "hf" / "hub"
    child = subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "pull", REPO], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        mid_file = lambda: partial_of(cache).exists() and partial_of(cache).stat().st_size >= 1_000_000  # noqa: E731
        await until(lambda: mid_file() or child.poll() is not None, "the pull to be mid-file")
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=WAIT)
    hub.faults.bandwidth_bps = None
    blob = repo_folder(cache) / "blobs" / WEIGHTS_SHA
    await until(blob.exists, "the engine to finish the weights", 3 * WAIT)
    assert blob.read_bytes() == WEIGHTS_DATA
    assert weights_requests(hub) == [None]  # one transfer, never restarted
    again = pull(REPO, env=env)  # the same command follows the job to its end
    assert again.returncode == 0 and (Path(again.stdout.strip()) / WEIGHTS).read_bytes() == WEIGHTS_DATA


def test_pull_exit_codes(hub: LoopbackHub, tmp_path: Path, faces_engine: None) -> None:
    env = cli_env(tmp_path, hub)
    done = pull(REPO, "--include", "*.json", env=env)
    assert done.returncode == 0, done.stderr
    snapshot = Path(done.stdout.strip())
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "tokenizer.json"]
    assert snapshot.parent.parent == tmp_path / "hf" / "hub" / hf_cache.repo_folder_name(REPO)

    missing = pull("nobody/nothing", env=env)
    assert missing.returncode == 1 and "nobody/nothing was not found" in missing.stderr

    assert pull("not a repo!", env=env).returncode == 2
    assert pull(REPO, "--all", "--include", "*.json", env=env).returncode == 2


# --- a lying hub: every name a hub gives is data -------------------------------------------------------------------

EVIL = "evil"  # every name the lying hub gives contains it: nothing so named may exist anywhere after a pull


def lies_about_names(sandbox: Path, cache: Path) -> dict[str, tuple[HubLies, Path]]:
    """Each lie, with the path it would create outside the cache. ``cache`` lies under ``sandbox`` (a folder the
    test owns), deep enough that every ``../`` of the lies still lands in the sandbox."""
    folder = repo_folder(cache)

    def outside(path: str) -> Path:
        target = Path(os.path.normpath(path))
        assert target.is_relative_to(sandbox) and not target.is_relative_to(cache), target
        return target

    some_snapshot = folder / "snapshots" / ("a" * 40)
    absolute = sandbox / f"abs-{EVIL}.json"
    return {
        "dotdot file name": (
            HubLies(file_names={"config.json": f"../../../../{EVIL}.json"}),
            outside(f"{some_snapshot}/../../../../{EVIL}.json"),
        ),
        "absolute file name": (HubLies(file_names={"config.json": str(absolute)}), outside(str(absolute))),
        "backslash file name": (
            HubLies(file_names={"config.json": f"..\\..\\..\\..\\{EVIL}.json"}),
            outside(f"{some_snapshot}/../../../../{EVIL}.json"),
        ),
        "NUL in file name": (HubLies(file_names={"config.json": f"{EVIL}\x00.json"}), sandbox / f"{EVIL}"),
        "bad ETag": (HubLies(etag=f"../../../{EVIL}_etag"), outside(f"{folder}/blobs/../../../{EVIL}_etag")),
        "bad listed hash": (
            HubLies(listed_hash=f"../../../{EVIL}_hash"),
            outside(f"{folder}/blobs/../../../{EVIL}_hash.incomplete"),
        ),
        "bad commit": (
            HubLies(commit=f"../../../../{EVIL}_sha"),
            outside(f"{folder}/snapshots/../../../../{EVIL}_sha"),
        ),
    }


LIES = ["dotdot file name", "absolute file name", "backslash file name", "NUL in file name", "bad ETag",
        "bad listed hash", "bad commit"]  # fmt: skip
# what the failure must name (as repr shows it) and say
NAMED = {
    "dotdot file name": f"'../../../../{EVIL}.json'",
    "absolute file name": f"abs-{EVIL}.json'",
    "backslash file name": "'..\\\\..\\\\..\\\\..\\\\evil.json'",
    "NUL in file name": "'evil\\x00.json'",
    "bad ETag": f"'../../../{EVIL}_etag'",
    "bad listed hash": f"'../../../{EVIL}_hash'",
    "bad commit": f"'../../../../{EVIL}_sha'",
}


def sandboxed(tmp_path: Path) -> tuple[Path, Path]:
    sandbox = tmp_path / "sandbox"
    return sandbox, sandbox / "a" / "b" / "c" / "hf" / "hub"


def nothing_evil_in(sandbox: Path, target: Path) -> None:
    assert not os.path.lexists(target), f"{target} was written"
    written = [p for p in sandbox.rglob("*") if EVIL in p.name]
    assert not written, written


@pytest.mark.parametrize("lie", LIES)
async def test_a_lying_hub_fails_the_file_in_the_queue_and_writes_nothing_outside(
    make: Make, hub: LoopbackHub, tmp_path: Path, lie: str
) -> None:
    sandbox, cache = sandboxed(tmp_path)
    lies, target = lies_about_names(sandbox, cache)[lie]
    hub.lies = lies
    manager = await make(cache_dir=cache)
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.FAILED
    assert final.error and NAMED[lie] in final.error, final.error
    failed = [f for f in final.file_progress if f.state is FileState.FAILED]
    if lie != "bad commit":  # a bad commit fails the listing, before there are files
        assert failed and all(f.error and NAMED[lie] in f.error for f in failed), final.file_progress
    nothing_evil_in(sandbox, target)


@pytest.mark.parametrize("lie", ["dotdot file name", "absolute file name", "backslash file name", "bad ETag",
                                 "bad commit"])  # fmt: skip
def test_pull_from_a_lying_hub_exits_1_naming_the_bad_name(
    hub: LoopbackHub, tmp_path: Path, lie: str, faces_engine: None
) -> None:
    sandbox, cache = sandboxed(tmp_path)
    lies, target = lies_about_names(sandbox, cache)[lie]
    hub.lies = lies
    env = {**cli_env(sandbox, hub), "HF_HOME": str(cache.parent)}
    done = pull(REPO, env=env)
    assert done.returncode == 1, done.stderr
    assert NAMED[lie] in done.stderr and "refused" in done.stderr, done.stderr
    nothing_evil_in(sandbox, target)


def test_pull_takes_a_branch_or_a_pr_ref_and_refuses_a_bad_revision(
    repos_root: Path, tmp_path: Path, faces_engine: None
) -> None:
    with LoopbackHub(repos_root, revisions=("refs/pr/3",)) as hub:
        env = cli_env(tmp_path, hub)
        for revision in ("refs/pr/3", "main"):
            done = pull(f"{REPO}@{revision}", "--include", "*.json", env=env)
            assert done.returncode == 0, done.stderr
            commit = Path(done.stdout.strip()).name
            assert (repo_folder(tmp_path / "hf" / "hub") / "refs" / revision).read_text() == commit
        for bad in ("../../../../evil", "refs/../../evil", "/evil", "ma in", "evil.lock"):
            refused = pull(f"{REPO}@{bad}", env=env)
            assert refused.returncode == 2 and "is not a valid revision name" in refused.stderr, refused.stderr
        assert not [p for p in tmp_path.rglob("*") if EVIL in p.name]


# --- a long Retry-After pauses the job until then ---------------------------------------------------------------


class WallClock:
    """A wall clock the test moves (the queue's rate-limit pauses are measured on it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_long_retry_after_pauses_until_then_and_resumes_by_itself(
    make: Make, hub: LoopbackHub, store: Store
) -> None:
    hub.faults.rate_limit, hub.faults.retry_after_s, hub.faults.only_path = 1, 86400, WEIGHTS
    clock = WallClock()
    began = time.monotonic()
    manager = await make(wall_clock=clock, resume_check_s=0.01)
    job = manager.enqueue(REPO)
    paused = await manager.wait(job.id, WAIT)
    assert paused.state is JobState.PAUSED and time.monotonic() - began < WAIT  # not a day
    assert paused.resume_at == clock.now + 86400
    assert paused.message == f"rate limited until {clock_time(clock.now + 86400, clock.now)}"
    record = store.downloads.get_download_job(job.id)
    assert record is not None and record.resume_at == paused.resume_at  # kept for the next start

    heads = len(weights_requests(hub, "HEAD"))
    await asyncio.sleep(0.1)  # ten looks at the clock, which has not moved: nothing happens
    assert manager.job(job.id).state is JobState.PAUSED and len(weights_requests(hub, "HEAD")) == heads
    clock.now += 86400
    await until(lambda: manager.job(job.id).state is JobState.DONE, "the job to resume by itself and finish")
    record = store.downloads.get_download_job(job.id)
    assert manager.job(job.id).resume_at is None and record is not None and record.resume_at is None


def test_resume_times_read_as_a_clock_time() -> None:
    from datetime import datetime, timedelta

    now = datetime(2030, 5, 6, 9, 30).timestamp()
    at = datetime(2030, 5, 6, 14, 5)
    assert clock_time(at.timestamp(), now) == "14:05"
    assert clock_time(at.timestamp() + 1, now) == "14:06"  # rounded up: never too early
    assert clock_time((at + timedelta(days=1)).timestamp(), now) == "14:05 tomorrow"
    assert clock_time((at + timedelta(days=3)).timestamp(), now) == "14:05 on 2030-05-09"


async def test_a_rate_limit_pause_survives_a_restart(make: Make, hub: LoopbackHub) -> None:
    hub.faults.rate_limit, hub.faults.retry_after_s, hub.faults.only_path = 1, 3600, WEIGHTS
    clock = WallClock()
    first = await make(wall_clock=clock)
    job = first.enqueue(REPO)
    assert (await first.wait(job.id, WAIT)).state is JobState.PAUSED
    await first.aclose()

    restarted = await make(wall_clock=clock, resume_check_s=0.01)  # the same store
    again = restarted.job(job.id)
    assert again.state is JobState.PAUSED and again.resume_at == clock.now + 3600
    assert again.message and again.message.startswith("rate limited until ")
    clock.now += 3600
    await until(lambda: restarted.job(job.id).state is JobState.DONE, "the restarted queue to resume it")


async def test_a_retry_after_within_the_limit_is_waited_in_place(make: Make, hub: LoopbackHub) -> None:
    hub.faults.rate_limit, hub.faults.retry_after_s, hub.faults.only_path = 1, 1, WEIGHTS
    manager = await make(max_retry_wait_s=1.0)
    final = await manager.wait(manager.enqueue(REPO).id, WAIT)
    assert final.state is JobState.DONE and final.resume_at is None, final.message
    # one second more than the limit, on the listing this time: paused, not waited
    hub.faults.rate_limit, hub.faults.retry_after_s, hub.faults.only_path = 1, 2, f"/api/models/{REPO}"
    listed = await manager.wait(manager.enqueue(REPO, all_files=True).id, WAIT)
    assert listed.state is JobState.PAUSED and listed.resume_at is not None, listed.message
    assert listed.message and listed.message.startswith("rate limited until ")


def test_pull_says_when_to_run_again_after_a_long_rate_limit(
    hub: LoopbackHub, tmp_path: Path, faces_engine: None
) -> None:
    hub.faults.rate_limit, hub.faults.retry_after_s, hub.faults.only_path = 1, 86400, WEIGHTS
    began = time.monotonic()
    done = pull(REPO, env=cli_env(tmp_path, hub))
    assert time.monotonic() - began < 50  # (the helper gives up after 60 s)
    assert done.returncode == 1, done.stderr
    assert "rate limited until " in done.stderr and "run again after " in done.stderr, done.stderr
    again = pull(REPO, env=cli_env(tmp_path, hub))  # the hub lets go: the same command finishes it
    assert again.returncode == 0, again.stderr


async def test_cancelled_jobs_retry_and_finished_ones_clear(make: Make, hub: LoopbackHub, cache: Path) -> None:
    manager = await make()
    done = manager.enqueue(SMALL_REPOS[0])
    assert (await manager.wait(done.id, WAIT)).state is JobState.DONE
    assert manager.in_cache(done.id) and not manager.retry(done.id)  # nothing to retry
    hub.faults.bandwidth_bps = SLOW_BPS
    cancelled = manager.enqueue(REPO)
    manager.cancel(cancelled.id)
    await manager.wait(cancelled.id, WAIT)
    hub.faults.bandwidth_bps = None
    assert manager.retry(cancelled.id)
    assert (await manager.wait(cancelled.id, WAIT)).state is JobState.DONE
    manager.cancel(cancelled.id)  # a done job is not cancelled
    assert manager.forget_finished() == 2 and manager.jobs() == []
    assert (cache / hf_cache.repo_folder_name(REPO) / "blobs" / WEIGHTS_SHA).exists()  # the files stay
