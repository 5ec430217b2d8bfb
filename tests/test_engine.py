"""The engine (issue 16, first slice): its private folder, lock and fingerprint; the native API in-process against
the real services; and `workbench engine / ps / stop` as subprocesses under a temporary WORKBENCH_HOME."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.engines import serving
from tests.support.fake_chat import services_with_fake
from workbench.client.engine import EngineClient, same_code
from workbench.core import engine_home as engine_home_module
from workbench.core.engine_home import (
    MAX_SOCKET_PATH,
    PACKAGE_ROOT,
    EngineHomeError,
    EngineLock,
    code_fingerprint,
    engine_home,
    engine_key,
    private_dir,
)
from workbench.core.settings.paths import AppPaths
from workbench.engine_process import start_engine
from workbench.server.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- where the engine lives ------------------------------------------------------------------------


def test_the_engine_folder_is_private_and_keyed_by_the_data_folder(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path / "home")
    home = engine_home(paths)
    assert home.folder == tmp_path / "home" / "run" / engine_key(paths.data_dir)
    assert len(home.key) == 12 and home.socket == home.folder / "engine.sock" and home.lock.name == "engine.lock"
    assert mode(home.folder) == 0o700 and mode(home.folder.parent) == 0o700
    other = engine_home(AppPaths.under(tmp_path / "other"))
    assert other.key != home.key
    assert engine_key(tmp_path / "home" / "data") == engine_key(tmp_path / "home" / ".." / "home" / "data")


def test_a_folder_open_to_others_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    folder.chmod(0o777)
    assert mode(private_dir(folder)) == 0o700


def test_a_folder_whose_permissions_cannot_be_fixed_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o755)
    monkeypatch.setattr(engine_home_module.os, "chmod", lambda *args, **kwargs: None)
    with pytest.raises(EngineHomeError, match="chmod 700"):
        private_dir(folder)


def test_a_folder_owned_by_someone_else_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    real_uid = os.getuid()
    monkeypatch.setattr(engine_home_module.os, "getuid", lambda: real_uid + 4242)
    with pytest.raises(EngineHomeError, match="belongs to another user"):
        private_dir(folder)


@pytest.mark.parametrize("gone", ["missing", "a file"])
def test_a_missing_or_unusable_runtime_folder_falls_back_under_the_data_folder(tmp_path: Path, gone: str) -> None:
    runtime = tmp_path / "run-user-1000" / "workbench"  # like /run/user/1000/workbench after logout
    if gone == "a file":
        runtime.parent.mkdir()
        runtime.write_text("not a folder")
    paths = AppPaths(config_dir=tmp_path / "c", data_dir=tmp_path / "d", log_dir=tmp_path / "l", runtime_dir=runtime)
    home = engine_home(paths)
    assert home.folder == tmp_path / "d" / "run"
    assert mode(home.folder) == 0o700
    assert not (tmp_path / "run-user-1000").exists() or gone == "a file"


def test_a_socket_path_too_long_falls_back_to_a_short_private_folder(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    paths = AppPaths.under(deep)
    assert len(os.fsencode(deep / "run" / ("k" * 12) / "engine.sock")) >= MAX_SOCKET_PATH
    home = engine_home(paths, tmp_root=tmp_path / "t")
    assert home.folder == tmp_path / "t" / f"workbench-{os.getuid()}" / engine_key(paths.data_dir)
    assert len(os.fsencode(home.socket)) < MAX_SOCKET_PATH
    assert mode(home.folder) == 0o700 and mode(home.folder.parent) == 0o700


def test_the_lock_is_held_by_one_at_a_time_and_freed_on_release(tmp_path: Path) -> None:
    first, second = EngineLock(tmp_path / "engine.lock"), EngineLock(tmp_path / "engine.lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert not second.acquire(timeout_s=0.1)
    first.release()
    assert second.acquire(timeout_s=1)
    second.release()


def test_the_fingerprint_changes_when_a_file_of_the_package_changes(tmp_path: Path) -> None:
    copy = tmp_path / "workbench"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint(copy)
    assert before == code_fingerprint(PACKAGE_ROOT)
    assert code_fingerprint(copy) is before  # computed once
    (copy / "core" / "words.py").write_text((copy / "core" / "words.py").read_text() + "\n# changed\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(copy) != before


# --- the native API, in-process ---------------------------------------------------------------------


async def test_ps_and_the_handshake_have_the_issue_s_shape_and_list_a_loaded_model(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    engine = Engine(services, home)
    task = await serving(engine, home)
    client = EngineClient(home.socket)
    info = await client.engine_info()
    assert info is not None and info["pid"] == os.getpid() and info["fingerprint"] == code_fingerprint()
    assert set(info) == {"pid", "version", "fingerprint", "socket", "rss_bytes", "uptime_s", "clients"}
    assert same_code(info) and not same_code({**info, "fingerprint": "another engine's code"})
    assert mode(home.socket) == 0o600

    ps = await client.ps()
    assert ps is not None and set(ps) == {"engine", "models", "jobs", "clients", "faces"}  # faces: beyond the issue
    assert set(ps["engine"]) == {"pid", "version", "socket", "rss_bytes", "uptime_s"}
    assert isinstance(ps["engine"]["rss_bytes"], int) and ps["engine"]["rss_bytes"] > 0
    assert isinstance(ps["engine"]["uptime_s"], float) and ps["engine"]["socket"] == str(home.socket)
    assert ps["models"] == [] and ps["jobs"] == [] and ps["clients"] == 0 and ps["faces"] == []

    await services.manager.load("fake-chat")
    [model] = (await client.ps() or {})["models"]
    assert set(model) == {"id", "state", "memory_bytes", "pinned", "leases", "idle_unload_at"}
    assert model["id"] == "fake-chat" and model["state"] == "ready" and model["pinned"] is False
    assert model["leases"] == 0 and model["memory_bytes"] >= 10 * 2**20
    assert model["idle_unload_at"] > time.time()  # the default idle unload (15 min) is scheduled

    assert await client.stop() is not None
    assert await asyncio.wait_for(task, 10) == "asked to stop"
    assert not home.socket.exists() and EngineLock(home.lock).try_acquire()
    assert not any(m.resident for m in services.manager.models())  # stop unloads
    assert await client.ps() is None


async def test_the_engine_exits_when_idle_and_not_while_a_model_is_loaded(tmp_path: Path) -> None:
    paths = AppPaths.under(tmp_path)
    services, _backend = services_with_fake(paths)
    home = engine_home(paths)
    now = [1000.0]
    engine = Engine(services, home, idle_exit_s=60, check_s=0.01, clock=lambda: now[0])
    task = await serving(engine, home)
    await services.manager.load("fake-chat")
    now[0] += 120
    await asyncio.sleep(0.2)
    assert not task.done()  # a loaded model keeps it
    await services.manager.unload("fake-chat")
    await asyncio.sleep(0.05)
    assert not task.done()  # idle from now on, not from before
    now[0] += 61
    assert await asyncio.wait_for(task, 5) == "idle"
    assert not home.socket.exists()


async def test_no_engine_when_the_socket_is_missing_or_stale(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    assert await EngineClient(path).engine_info() is None
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nothing listens: a dead engine's socket
    assert path.exists() and await EngineClient(path).ps() is None


# --- end to end: subprocesses under a temporary WORKBENCH_HOME ---------------------------------------


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_HOME": str(home), "PYTHONPATH": str(ROOT)}


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=_env(home), capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _engines_under(home: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if (
                (process.info["cmdline"] or [])[-3:] == ["-m", "workbench.cli", "engine"]
                and process.environ().get("WORKBENCH_HOME") == str(home)
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_two_starts_at_once_start_one_engine_that_ps_lists_and_stop_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    paths = AppPaths.from_env()
    home = engine_home(paths)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(home.socket))
    stale.close()  # a dead engine's socket: replaced by the next start

    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(start_engine(paths))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(results) == 2
    pid = results[0]["pid"]
    try:
        assert results[1]["pid"] == pid != os.getpid()
        assert _engines_under(tmp_path) == [pid]
        assert start_engine(paths)["pid"] == pid  # a third face finds it

        listed = _cli(tmp_path, "ps", "--json")
        assert listed.returncode == 0, listed.stderr
        document = json.loads(listed.stdout)
        assert document["engine"]["pid"] == pid and document["models"] == [] and document["clients"] == 0
        table = _cli(tmp_path, "ps")
        assert f"pid {pid}" in table.stdout and "no model loaded" in table.stdout

        stopped = _cli(tmp_path, "stop")
        assert stopped.returncode == 0 and "engine stopped" in stopped.stdout, stopped.stderr
        assert not home.socket.exists()
        assert _wait_gone(pid, 10)
    finally:
        if not _gone(pid):
            os.kill(pid, 9)
    again = _cli(tmp_path, "ps")
    assert again.returncode == 0 and again.stdout.strip() == "no engine running"
    assert _cli(tmp_path, "ps", "--json").stdout.strip() == "null"
    assert "no engine running" in _cli(tmp_path, "stop").stdout
    assert _engines_under(tmp_path) == []  # ps and stop never start one
    log = (tmp_path / "logs" / "engine.log").read_text()
    assert "serving on" in (tmp_path / "logs" / "engine.out").read_text()  # its stderr, in the log folder
    assert f"engine {pid} serving on" in log and f"engine {pid} stopped (asked to stop)" in log


def test_the_engine_exits_by_itself_after_idle_exit_minutes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("[engine]\nidle_exit_minutes = 0.02\n")  # 1.2 s
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    paths = AppPaths.from_env()
    pid = start_engine(paths)["pid"]
    try:
        assert _wait_gone(pid, 20)
    finally:
        if not _gone(pid):
            os.kill(pid, 9)
    assert not engine_home(paths).socket.exists()
    assert f"engine {pid} stopped (idle)" in (tmp_path / "logs" / "engine.log").read_text()


def test_a_resident_engine_does_not_exit_when_idle(tmp_path: Path) -> None:
    """What a service manager runs: neither launchd nor systemd restarts an engine that ended well."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("[engine]\nidle_exit_minutes = 0.01\n")  # 0.6 s
    engine = subprocess.Popen([sys.executable, "-m", "workbench.cli", "engine", "--resident"], env=_env(tmp_path),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "answering" not in (ps := _cli(tmp_path, "ps")).stdout and "pid" not in ps.stdout:
            assert time.monotonic() < deadline and engine.poll() is None, "the engine did not come up"
            time.sleep(0.1)
        assert not _wait_gone(engine.pid, 3.0)  # five idle periods: an idle-exiting engine would be gone
        assert _cli(tmp_path, "stop").returncode == 0
        assert _wait_gone(engine.pid, 20)
    finally:
        if engine.poll() is None:
            engine.kill()
        engine.wait(10)


def test_a_second_engine_for_the_same_data_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    lock = EngineLock(engine_home(AppPaths.from_env()).lock)
    assert lock.try_acquire()  # as a running engine holds it
    try:
        second = _cli(tmp_path, "engine")
    finally:
        lock.release()
    assert second.returncode == 1 and "an engine already runs for this data folder" in second.stderr


def test_ps_prints_a_readable_table_of_models_and_jobs() -> None:
    from workbench.cli.ps import ps_text

    document = {
        "engine": {"pid": 42, "version": "0.1.0", "socket": "/run/x/engine.sock", "rss_bytes": 150 * 2**20,
                   "uptime_s": 600.0},
        "models": [{"id": "SmolLM2-135M", "state": "ready", "memory_bytes": 300 * 2**20, "pinned": True, "leases": 1,
                    "idle_unload_at": None}],
        "jobs": [{"kind": "download", "id": 7, "what": "org/model", "progress": 0.25, "started_at": 1.0}],
        "clients": 2,
    }  # fmt: skip
    lines = ps_text(document).splitlines()
    assert lines[0] == "engine  pid 42  0.1.0  150 MB  up 10 min  2 client(s)  /run/x/engine.sock"
    assert lines[2].split() == ["MODEL", "STATE", "MEMORY", "PINNED", "LEASES", "IDLE", "UNLOAD"]
    assert lines[3].split() == ["SmolLM2-135M", "ready", "300", "MB", "yes", "1", "-"]
    assert lines[5].split() == ["JOB", "KIND", "WHAT", "PROGRESS", "FACE", "STARTED"]
    assert lines[6].split()[:6] == ["7", "download", "org/model", "25", "%", "-"]


def test_ps_and_stop_say_so_when_the_engine_folder_is_not_private(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("a file where the runtime folder should be")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "run").write_text("and another")
    for verb in ("ps", "stop"):
        result = _cli(tmp_path, verb)
        assert result.returncode == 1 and "cannot use the engine's folder" in result.stderr, result.stderr
