"""`workbench pull` as a face of the engine's download queue (issue 16, points 5, 7 and 8), and the engine's download
routes: end to end with the face and the engine as subprocesses against the loopback hub (the face starts the
engine; ctrl+c or SIGTERM leaves the job running there; --cancel; a kill -9 of the engine and the next face resumes;
the face's HF_ENDPOINT and HF_TOKEN travel with its request and the token never reaches the disk), then the routes
in-process (their shapes and what they refuse)."""

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from tests.support.engine_procs import ROOT, engine_pid, engine_socket, face_env, gone, stop_engine, wait_gone
from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from tests.support.hub_repos import write_repo
from tests.support.hub_server import LoopbackHub
from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.engine_home import engine_home
from workbench.core.hub import cache as hf_cache
from workbench.core.hub.downloads.jobs import HubAccess
from workbench.core.settings.paths import AppPaths
from workbench.engine_process import start_engine
from workbench.server.engine import Engine
from workbench.server.engine_downloads import MAX_BODY_BYTES

REPO = "test-org/pull-blob"
PRIVATE = "test-org/pull-private"
OTHER = "test-org/pull-other"
WEIGHTS = "model.safetensors"
WEIGHTS_DATA = random.Random(55).randbytes(3 * 1024 * 1024)
WEIGHTS_SHA = hashlib.sha256(WEIGHTS_DATA).hexdigest()
THROTTLE_BPS = 384 * 1024  # ~8 s for the weights: time to interrupt the face or kill the engine mid-transfer
TOKEN = "hf_pullFaceToken" + hashlib.sha256(b"workbench pull").hexdigest()[:24]
WAIT_S = 60.0  # every wait in this file is bounded by it
INTERRUPTED = "the download goes on in the engine; `workbench pull --cancel test-org/pull-blob` cancels it"
# run as the face: main(), then the heavy modules it loaded on one last line of stderr
FACE = ("import sys; from workbench.cli.main import main; code = main(sys.argv[1:]); "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('huggingface_hub', 'mlx', 'mlx_lm', 'textual', "
        "'numpy', 'torch', 'transformers') or m == 'workbench.bootstrap'); "
        "print('HEAVY', ','.join(heavy), file=sys.stderr); sys.exit(code)")  # fmt: skip


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pull-hub")
    files = {WEIGHTS: WEIGHTS_DATA, "config.json": json.dumps({"model_type": "llama"})}
    write_repo(root, REPO, files, {"library_name": "mlx", "tags": ["mlx"]})
    write_repo(root, PRIVATE, files, {"library_name": "mlx", "tags": ["mlx"], "private": True})
    write_repo(root, OTHER, {WEIGHTS: b"w" * 4096, "config.json": "{}"}, {"library_name": "mlx"})
    return root


@pytest.fixture
def hub(hub_root: Path) -> Iterator[LoopbackHub]:
    with LoopbackHub(hub_root, accepted_token=TOKEN) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, hub: LoopbackHub) -> Iterator[dict[str, str]]:
    """The faces' environment; the engine they start is stopped at the end."""
    environment = face_env(tmp_path, hub.url)
    try:
        yield environment
    finally:
        stop_engine(environment)


def pull(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", FACE, "pull", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=WAIT_S)  # fmt: skip


def pull_in_background(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", FACE, "pull", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def jobs(env: dict[str, str]) -> list[dict[str, Any]]:
    return asyncio.run(EngineClient(engine_socket(env)).downloads()) or []


def the_job(env: dict[str, str], repo: str = REPO) -> dict[str, Any] | None:
    return next((job for job in jobs(env) if job["repo"] == repo), None)


def mid_download(env: dict[str, str]) -> dict[str, Any]:
    """The job once bytes of the weights are on their way (the engine answers, the job downloads)."""

    def downloading() -> dict[str, Any] | None:
        job = the_job(env)
        return job if job is not None and job["state"] == "downloading" and job["done_bytes"] > 100_000 else None

    return wait_for(downloading, "the job to be mid-download")  # type: ignore[no-any-return]


def ends_verified(env: dict[str, str], cache: Path, repo: str = REPO) -> None:
    """The job ends done in the engine and the weights in the cache are the hub's."""

    def settled() -> bool:
        job = the_job(env, repo)
        assert job is not None and job["state"] not in ("failed", "cancelled", "paused"), job
        return bool(job["state"] == "done")

    wait_for(settled, "the job to finish in the engine")
    [weights] = list((cache / hf_cache.repo_folder_name(repo) / "snapshots").glob(f"*/{WEIGHTS}"))
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == WEIGHTS_SHA


def weights_ranges(hub: LoopbackHub) -> list[str | None]:
    return [r.headers.get("Range") for r in hub.requests if r.method == "GET" and r.path.endswith(f"/{WEIGHTS}")]


def light(done: subprocess.CompletedProcess[str] | tuple[str, str]) -> str:
    """The face's stderr without its last line, having checked that line: no heavy module was imported."""
    stderr = done.stderr if isinstance(done, subprocess.CompletedProcess) else done[1]
    *rest, last = stderr.rstrip("\n").split("\n")
    assert last == "HEAVY ", f"the face imported heavy modules: {last}"
    return "\n".join(rest)


# --- end to end: the face and the engine as subprocesses -------------------------------------------------------------


def test_pull_starts_the_engine_queues_the_repo_and_exits_0_once_the_files_are_verified(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert engine_pid(env) is None
    done = pull(env, REPO)
    assert done.returncode == 0, done.stderr
    assert f"{REPO}: done" in light(done)  # not a terminal: a line per state
    snapshot = Path(done.stdout.strip())
    assert snapshot.parent.parent == tmp_path / "hf" / "hub" / hf_cache.repo_folder_name(REPO)
    assert hashlib.sha256((snapshot / WEIGHTS).read_bytes()).hexdigest() == WEIGHTS_SHA
    assert engine_pid(env) is not None  # the face started it; it stays for the next face
    [job] = jobs(env)
    assert job["state"] == "done" and job["done_bytes"] == job["total_bytes"] and job["snapshot"] == str(snapshot)

    again = pull(env, REPO, "--include", "*.json")  # another selection of the same repo: its own job
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in Path(again.stdout.strip()).iterdir()) == ["config.json", WEIGHTS]
    assert pull(env, "nobody/nothing").returncode == 1
    bad_hub = pull({**env, "HF_ENDPOINT": "ftp://hub.example"}, REPO)
    assert bad_hub.returncode == 2 and "this shell's HF_ENDPOINT" in bad_hub.stderr, bad_hub.stderr
    for bad in (["not a repo!"], [REPO, "--all", "--include", "*.json"], [], [REPO, "--cancel", REPO]):
        refused = pull(env, *bad)
        assert refused.returncode == 2, (bad, refused.stderr)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_pull_leaves_the_job_running_and_the_file_lands_verified(
    env: dict[str, str], hub: LoopbackHub, tmp_path: Path, signum: int
) -> None:
    hub.faults.bandwidth_bps = THROTTLE_BPS
    face = pull_in_background(env, REPO)
    try:
        job = mid_download(env)
        face.send_signal(signum)
        out = face.communicate(timeout=WAIT_S)
    finally:
        if face.poll() is None:
            face.kill()
            face.communicate(timeout=WAIT_S)
    assert face.returncode == 130, out
    assert light(out).endswith(f"workbench pull: {INTERRUPTED}"), out
    still = the_job(env)
    assert still is not None and still["id"] == job["id"] and still["state"] == "downloading"
    hub.faults.bandwidth_bps = None  # the rest comes at once
    ends_verified(env, tmp_path / "hf" / "hub")
    follow = pull(env, REPO)  # the same command again: the job is done, it says where
    assert follow.returncode == 0 and Path(follow.stdout.strip()).name == still["commit"], follow.stderr


def test_pull_cancel_cancels_the_repos_job_and_the_waiting_face_says_so(
    env: dict[str, str], hub: LoopbackHub, tmp_path: Path
) -> None:
    hub.faults.bandwidth_bps = THROTTLE_BPS
    face = pull_in_background(env, REPO)
    try:
        job = mid_download(env)
        cancelled = pull(env, "--cancel", REPO)
        out = face.communicate(timeout=WAIT_S)
    finally:
        if face.poll() is None:
            face.kill()
            face.communicate(timeout=WAIT_S)
    assert cancelled.returncode == 0 and f"cancelled {REPO}@main (download job {job['id']})" in cancelled.stdout
    assert face.returncode == 1 and f"{REPO}: the download was cancelled" in light(out), out
    state = the_job(env)
    assert state is not None and state["state"] == "cancelled"
    blobs = tmp_path / "hf" / "hub" / hf_cache.repo_folder_name(REPO) / "blobs"
    wait_for(lambda: not list(blobs.glob("*.incomplete")), "the partial file to be deleted", 10)
    none_left = pull(env, "--cancel", REPO)
    assert none_left.returncode == 1 and f"no unfinished download of {REPO}" in none_left.stderr


def test_a_kill_9_of_the_engine_mid_pull_and_the_next_pull_resumes_from_the_bytes_on_disk(
    env: dict[str, str], hub: LoopbackHub, tmp_path: Path
) -> None:
    hub.faults.bandwidth_bps = THROTTLE_BPS
    face = pull_in_background(env, REPO)
    try:
        mid_download(env)
        pid = engine_pid(env)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_gone(pid, 10)
        out = face.communicate(timeout=WAIT_S)
    finally:
        if face.poll() is None:
            face.kill()
            face.communicate(timeout=WAIT_S)
    assert face.returncode == 1 and "the engine stopped; run the same command again" in light(out), out
    hub.faults.bandwidth_bps = None
    again = pull(env, REPO)  # starts a new engine, which resumes the job
    assert again.returncode == 0, again.stderr
    assert engine_pid(env) not in (None, pid)
    first, resumed = weights_ranges(hub)
    assert first is None and resumed is not None and resumed.startswith("bytes=") and resumed != "bytes=0-"
    ends_verified(env, tmp_path / "hf" / "hub")


def _engine_started_with(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    """An engine started with ``env`` (not by a face that would hand it the face's own environment)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return int(start_engine(AppPaths.from_env())["pid"])


def test_the_faces_hf_endpoint_is_the_one_the_engine_downloads_from(
    env: dict[str, str], hub: LoopbackHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty-hub").mkdir()
    with LoopbackHub(tmp_path / "empty-hub") as elsewhere:
        pid = _engine_started_with({**env, "HF_ENDPOINT": elsewhere.url}, monkeypatch)
        assert psutil.Process(pid).environ()["HF_ENDPOINT"] == elsewhere.url
        done = pull(env, REPO)  # its HF_ENDPOINT is the loopback hub that has the repo
        assert done.returncode == 0, done.stderr
        assert engine_pid(env) == pid and not elsewhere.requests
    assert any(r.path.endswith(f"/{WEIGHTS}") for r in hub.requests)
    ends_verified(env, tmp_path / "hf" / "hub")


def test_the_faces_token_opens_a_private_repo_and_never_reaches_the_disk_or_the_logs(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _engine_started_with(env, monkeypatch)
    assert "HF_TOKEN" not in psutil.Process(pid).environ()
    refused = pull(env, PRIVATE)  # the engine has no token of its own
    assert refused.returncode == 1, refused.stderr
    done = pull({**env, "HF_TOKEN": TOKEN}, PRIVATE)
    assert done.returncode == 0, done.stderr
    ends_verified(env, tmp_path / "hf" / "hub", PRIVATE)
    stop_engine(env)  # what it would write at the end is written too
    assert gone(pid)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(tmp_path / "empty-hub")]
    assert {"workbench.sqlite3", "engine.log", "engine.out", "workbench.log"} <= {p.name for p in files}
    holding = [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert not holding, holding


# --- in-process: the routes' shapes and what they refuse ----------------------------------------------------------


async def _request(socket: Path, method: str, route: str, body: bytes | None = None) -> tuple[int, Any]:
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, f"http://engine{route}", data=body,
                                   headers={"Content-Type": "application/json"}) as response:  # fmt: skip
            return response.status, await response.json(content_type=None)


@pytest.fixture
def online(hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process engine's own hub is a dead port (a job reaches the loopback hub only with its endpoint)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_TOKEN", raising=False)


async def test_the_download_routes_act_on_one_job_and_refuse_what_they_should(
    tmp_path: Path, hub: LoopbackHub, online: None
) -> None:
    hub.faults.bandwidth_bps = THROTTLE_BPS
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    task = await serving(Engine(services, home), home)
    socket, client = home.socket, EngineClient(home.socket)

    async def call(method: str, route: str, body: Any = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        return await _request(socket, method, route, data)

    async def until_state(job_id: int, *states: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while (row := await client.download(job_id)) is None or row["state"] not in states:
            assert time.monotonic() < deadline, f"timed out waiting for {states}: {row}"
            await asyncio.sleep(0.05)
        return row

    try:
        row = await client.queue_download(REPO, endpoint=hub.url + "/", token=TOKEN)
        assert row is not None and set(row) == {
            "id", "repo", "revision", "state", "position", "done_bytes", "total_bytes", "speed_bps", "eta_s",
            "files_done", "files_total", "error", "message", "resume_at", "commit", "snapshot", "in_cache",
            "files"}  # fmt: skip
        job_id = row["id"]
        job = services.downloads._ledger.jobs[job_id]
        assert job.hub == HubAccess(hub.url, TOKEN) and TOKEN not in repr(job)
        deadline = time.monotonic() + WAIT_S
        while (row := await client.download(job_id)) is None or row["done_bytes"] < 100_000:
            assert time.monotonic() < deadline and row is not None and row["state"] == "downloading", row
            await asyncio.sleep(0.05)
        assert [f["path"] for f in row["files"]] == ["config.json", WEIGHTS] and row["total_bytes"] > 3_000_000
        assert row["commit"] and row["snapshot"] is None and row["in_cache"] is None and row["position"] == 0

        # the controls answer the job's row; a repeat is no error; what the state refuses is a 409
        for action, states in (("pause", {"paused"}), ("pause", {"paused"}), ("resume", {"queued", "downloading"}),
                               ("cancel", {"cancelled"}), ("retry", {"queued", "downloading"})):  # fmt: skip
            status, answer = await call("POST", f"/v1/downloads/{job_id}/{action}")
            assert status == 200 and answer["id"] == job_id and answer["state"] in states, (action, answer)
        status, answer = await call("POST", f"/v1/downloads/{job_id}/retry", {})
        assert status == 409 and "only a failed or cancelled job is retried" in answer["error"]
        other = await client.queue_download(OTHER, files=["config.json"], endpoint=hub.url)
        assert other is not None and other["position"] == 1 and other["files"] == []  # not listed yet
        moved = await client.download_action(other["id"], "move", -1)
        assert moved is not None and moved["position"] == 0
        everything = await client.downloads_action("pause-all")
        assert everything is not None and {j["state"] for j in everything["jobs"]} <= {"paused", "done"}
        everything = await client.downloads_action("resume-all")
        assert everything is not None and {j["state"] for j in everything["jobs"]} <= {"queued", "downloading", "done"}
        status, answer = await call("POST", "/v1/downloads/cancel", {"repo": REPO, "revision": "main"})
        assert status == 200 and [(r["id"], r["state"]) for r in answer["cancelled"]] == [(job_id, "cancelled")]
        status, answer = await call("POST", "/v1/downloads/cancel", {"repo": REPO})
        assert status == 404 and answer["error"] == f"no unfinished download of {REPO}"
        await until_state(job_id, "cancelled")
        for action in ("pause", "resume"):
            status, answer = await call("POST", f"/v1/downloads/{job_id}/{action}")
            assert status == 409 and "is cancelled" in answer["error"], answer
        done = await until_state(other["id"], "done", "failed")
        assert done["state"] == "done" and done["in_cache"] is True and done["files_total"] == 1
        assert done["snapshot"] and sorted(os.listdir(done["snapshot"])) == ["config.json"]

        refused: list[tuple[str, str, Any, int, str]] = [
            ("GET", "/v1/downloads/999", None, 404, "no download job with id 999"),
            ("POST", "/v1/downloads/999/pause", None, 404, "no download job with id 999"),
            ("POST", "/v1/downloads/999/move", {"by": 1}, 404, "no download job with id 999"),
            ("GET", "/v1/downloads/abc", None, 400, "is not a download job id"),
            ("POST", "/v1/downloads/-1/cancel", None, 400, "is not a download job id"),
            ("POST", f"/v1/downloads/{job_id}/pause", {"now": True}, 400, "unknown key(s): 'now'"),
            ("POST", f"/v1/downloads/{job_id}/pause", b"[]", 400, "must be a JSON object"),
            ("POST", f"/v1/downloads/{job_id}/move", {}, 400, "'by' must be"),
            ("POST", f"/v1/downloads/{job_id}/move", {"by": 0}, 400, "'by' must be"),
            ("POST", f"/v1/downloads/{job_id}/move", {"by": True}, 400, "'by' must be"),
            ("POST", f"/v1/downloads/{job_id}/move", {"by": "1"}, 400, "'by' must be"),
            ("POST", f"/v1/downloads/{job_id}/move", {"by": 10**9}, 400, "'by' must be"),
            ("POST", f"/v1/downloads/{job_id}/retry", b"x" * (MAX_BODY_BYTES + 1), 413, "larger than"),
            ("POST", "/v1/downloads/cancel", {"repo": "../etc"}, 400, "is not a repo id"),
            ("POST", "/v1/downloads/cancel", {"repo": REPO, "all": True}, 400, "unknown key(s): 'all'"),
            ("POST", "/v1/downloads/cancel", b"x" * (MAX_BODY_BYTES + 1), 413, "larger than"),
            ("POST", "/v1/downloads", {"repo": REPO, "all_files": "yes"}, 400, "'all_files' must be true or false"),
            ("POST", "/v1/downloads", {"repo": REPO, "all_files": True, "include": ["*"]}, 400, "exclude each other"),
            ("POST", "/v1/downloads", {"repo": REPO, "file": ["a"]}, 400, "unknown key(s): 'file'"),
            ("POST", "/v1/downloads", {"repo": REPO, "files": ["../a"]}, 400, "'files': the file name '../a' is not"),
            ("POST", "/v1/downloads", {"repo": REPO, "files": []}, 400, "'files' must be a non-empty list"),
            ("POST", "/v1/downloads", {"repo": REPO, "files": "a"}, 400, "'files' must be a non-empty list"),
            ("POST", "/v1/downloads", {"repo": REPO, "files": ["a"], "include": ["*"]}, 400, "exclude each other"),
            ("POST", "/v1/downloads/pause-all", {"now": 1}, 400, "unknown key(s): 'now'"),
            ("POST", "/v1/downloads/forget-finished", b"x" * (MAX_BODY_BYTES + 1), 413, "larger than"),
        ]
        for endpoint in ("ftp://hub.example", "http://", "https://hub.example/a b", "http://h?x=1", "http://h:99999",
                         "huggingface.co", 42, "", "http://h/" + "a" * 2048):  # fmt: skip
            refused.append(("POST", "/v1/downloads", {"repo": REPO, "endpoint": endpoint}, 400, "'endpoint'"))
        secrets = [" hf_with space", "hf_newline\n", "hf_é", "x" * 4097, ""]
        for token in [*secrets, 42, ["hf_x"]]:
            refused.append(("POST", "/v1/downloads", {"repo": REPO, "token": token}, 400, "'token' must be"))
        for method, route, body, status, message in refused:
            got, answer = await call(method, route, body)
            assert got == status and message in answer["error"], (method, route, body, got, answer)
            assert not any(secret and secret.strip() in answer["error"] for secret in secrets[:-1])
        with pytest.raises(EngineRequestError) as raised:
            await client.download(12345)
        assert raised.value.status == 404
        forgotten, deadline = 0, time.monotonic() + WAIT_S
        while await client.downloads():  # the cancelled job goes once its transfer has let go
            assert time.monotonic() < deadline, await client.downloads()
            answer = await client.downloads_action("forget-finished")
            forgotten += answer["forgotten"] if answer else 0
            await asyncio.sleep(0.05)
        assert forgotten == 2  # OTHER and the cancelled one
    finally:
        await client.stop()
        await asyncio.wait_for(task, 10)
    database = b"".join(p.read_bytes() for p in paths.database_file.parent.glob(paths.database_file.name + "*"))
    assert database and TOKEN.encode() not in database
