"""Download benchmark: one large LFS file through the workbench's download queue vs plain ``hf_hub_download``.

A loopback hub (``tests.support.hub_server``) runs in a SUBPROCESS on 127.0.0.1, so that the CPU time this
process spends is the client's alone. It serves one repo holding ``model.safetensors`` (``--mb`` MiB: a valid
safetensors header over random bytes, written once to disk in chunks) and a small ``small.safetensors`` for
the warm-up (which also makes the hub hash the big file before any timed run). Alternating in one process
(which goes first swaps every round), each run into a fresh cache dir that is deleted after the round:

- raw: ``huggingface_hub.hf_hub_download(repo, "model.safetensors", cache_dir=..., endpoint=url)`` on a thread;
- wb:  ``DownloadManager(Store(...), cache_dir=..., endpoint=url)``: ``start()``, ``enqueue(repo,
  include=["model.safetensors"])``, ``wait(job)`` (timed from ``start()`` to the job settling as done).

Throughput is bytes / wall seconds, in MB/s (10^6 bytes); ``download_ratio`` = median(wb MB/s) / median(raw MB/s).
CPU is ``time.process_time()`` over the run (every thread of this process), per GB (10^9 bytes): ``cpu_s_per_gb``
is the workbench's median. ``--profile`` adds one profiled run of each (cProfile on the transfer thread).

    .venv/bin/python bench/download.py [--mb 512] [--rounds 3] [--timeout S] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import patch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.support and workbench

T = TypeVar("T")

REPO_ID = "bench/big-model"
BIG_FILE = "model.safetensors"
SMALL_FILE = "small.safetensors"
SMALL_MIB = 4
MIB = 1024 * 1024
WRITE_CHUNK = 8 * MIB
MB, GB = 1e6, 1e9
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
MIN_TIMEOUT_S = 60.0
SLOWEST_MBPS = 20.0  # the per-run timeout allows at least this speed
PROFILE_LINES = 25
GOAL_RATIO = 0.9


def hub_environment(hf_home: Path) -> dict[str, str]:
    """The environment for huggingface_hub: online, quiet, plain HTTP downloads, its own home, no token."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN")}
    env |= {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(hf_home)}
    return env


def apply_environment(env: dict[str, str]) -> None:
    if "huggingface_hub" in sys.modules:
        raise RuntimeError("huggingface_hub was imported before its environment was set")
    for key in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(env)


# --- the repo and the hub -----------------------------------------------------------------------------------


def write_random_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file of exactly ``size`` bytes: one U8 tensor of random bytes, written in chunks."""
    header = b""
    for _ in range(2):  # the data length depends on the header length (the header is padded to 8 bytes)
        n = size - 8 - len(header)
        text = json.dumps({"__metadata__": {"format": "pt"}, "weight": {"dtype": "U8", "shape": [n],
                                                                         "data_offsets": [0, n]}})  # fmt: skip
        header = text.encode() + b" " * (-len(text) % 8)
    n = size - 8 - len(header)
    if n <= 0:
        raise ValueError(f"{size} bytes is too small for a safetensors file")
    with path.open("wb") as out:
        out.write(len(header).to_bytes(8, "little") + header)
        left = n
        while left:
            step = min(WRITE_CHUNK, left)
            out.write(os.urandom(step))
            left -= step
    if path.stat().st_size != size:
        raise RuntimeError(f"{path}: wrote {path.stat().st_size} bytes, not {size}")


def build_repo(repos: Path, size: int) -> None:
    from tests.support.hub_repos import model_card, write_repo

    folder = write_repo(
        repos,
        REPO_ID,
        {
            "README.md": model_card({"license": "mit", "library_name": "mlx"}, f"# {REPO_ID}"),
            "config.json": json.dumps({"model_type": "llama"}),
        },
        {"tags": ["mlx"], "library_name": "mlx"},
    )
    write_random_safetensors(folder / SMALL_FILE, SMALL_MIB * MIB)
    write_random_safetensors(folder / BIG_FILE, size)


class HubProcess:
    """``python -m tests.support.hub_server --repos ROOT --port 0 --quiet`` in a child process."""

    def __init__(self, repos: Path, env: dict[str, str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.hub_server", "--repos", str(repos), "--port", "0", "--quiet"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )  # fmt: skip
        threading.Thread(target=self._drain, name="hub-output", daemon=True).start()

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError("the hub exited before it served:\n" + "\n".join(self.output))
            self.output.append(line)
            match = re.search(r" at (http://\S+) \(", line)
            if match:
                return match.group(1)
        raise RuntimeError(f"the hub printed no URL in {timeout:.0f} s:\n" + "\n".join(self.output))

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(2)  # SIGINT: the server stops itself cleanly
            try:
                self._proc.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(SERVER_STOP_TIMEOUT_S)


# --- one download of each kind ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_s: float
    size: int

    @property
    def mbps(self) -> float:
        return self.size / MB / self.seconds

    @property
    def cpu_s_per_gb(self) -> float:
        return self.cpu_s / (self.size / GB)


def on_thread(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn()`` on a daemon thread, waited for at most ``timeout`` seconds."""
    box: list[tuple[bool, Any]] = []
    thread = threading.Thread(target=lambda: box.append(_call(fn)), name=what, daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        raise TimeoutError(f"{what} took over {timeout:.0f} s")
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _call(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:
        return False, exc


def raw_download(url: str, cache: Path, filename: str, size: int, timeout: float,
                 profiler: cProfile.Profile | None = None) -> Run:  # fmt: skip
    from huggingface_hub import hf_hub_download

    def fetch() -> str:
        if profiler is not None:
            profiler.enable()
        try:
            return hf_hub_download(REPO_ID, filename, cache_dir=cache, endpoint=url)
        finally:
            if profiler is not None:
                profiler.disable()

    cpu, started = time.process_time(), time.perf_counter()
    path = on_thread(fetch, timeout, "raw download")
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    if os.path.getsize(path) != size:
        raise RuntimeError(f"raw: {path} holds {os.path.getsize(path)} bytes, not {size}")
    return Run(seconds, cpu_s, size)


def workbench_download(url: str, folder: Path, filename: str, size: int, timeout: float,
                       profiler: cProfile.Profile | None = None) -> Run:  # fmt: skip
    with profiled_transfers(profiler):
        return asyncio.run(_workbench_download(url, folder, filename, size, timeout))


@contextlib.contextmanager
def profiled_transfers(profiler: cProfile.Profile | None) -> Iterator[None]:
    """Meanwhile, the transfer thread's ``Transfer.fetch_file`` (HEAD, lock, GET, write, hash, link) runs under
    ``profiler`` (if one is given)."""
    if profiler is None:
        yield
        return
    from workbench.core.hub.downloads.transfer import Transfer

    fetch_file = Transfer.fetch_file

    def profiled(self: Transfer, job: Any, f: Any, control: Any) -> None:
        profiler.enable()
        try:
            fetch_file(self, job, f, control)
        finally:
            profiler.disable()

    with patch.object(Transfer, "fetch_file", profiled):
        yield


async def _workbench_download(url: str, folder: Path, filename: str, size: int, timeout: float) -> Run:
    from workbench.core.hub.downloads.jobs import JobState
    from workbench.core.hub.downloads.queue import DownloadManager
    from workbench.core.storage.store import Store

    store = Store(folder / "db.sqlite3")
    try:
        manager = DownloadManager(store, cache_dir=folder / "cache", endpoint=url)
        try:
            cpu, started = time.process_time(), time.perf_counter()
            await manager.start()
            job = manager.enqueue(REPO_ID, include=[filename])
            snapshot = await manager.wait(job.id, timeout=timeout)
            seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
            if snapshot.state is not JobState.DONE:
                raise RuntimeError(f"wb: the job ended {snapshot.state.value}: {snapshot.error or snapshot.message}")
            path = manager.snapshot_path(job.id)
            if path is None or (path / filename).stat().st_size != size:
                raise RuntimeError(f"wb: {filename} is not in the snapshot with {size} bytes")
        finally:
            await manager.aclose()
    finally:
        store.close()
    return Run(seconds, cpu_s, size)


def fresh(base: Path, name: str) -> Path:
    folder = base / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def show(label: str, raw: Run, ours: Run) -> None:
    print(f"{label:<8}  raw {raw.mbps:7.1f} MB/s (cpu {raw.cpu_s:5.2f} s)   wb {ours.mbps:7.1f} MB/s"
          f" (cpu {ours.cpu_s:5.2f} s)", flush=True)  # fmt: skip


def print_profile(title: str, profiler: cProfile.Profile) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(PROFILE_LINES)
        print(f"profile  {title} (by {order}, top {PROFILE_LINES}):")
        print(out.getvalue().strip())


# --- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=512, help="size of the big file in MiB (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="timed downloads of each kind (default 3)")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds one download may take (default: the size at {SLOWEST_MBPS:g} MB/s,"
                             f" at least {MIN_TIMEOUT_S:g})")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="then one cProfiled download of each")
    args = parser.parse_args()
    if args.mb < 1 or args.rounds < 1:
        parser.error("--mb and --rounds must be at least 1")
    size = args.mb * MIB
    timeout = args.timeout or max(MIN_TIMEOUT_S, size / MB / SLOWEST_MBPS)

    with tempfile.TemporaryDirectory(prefix="bench-download-", ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        env = hub_environment(tmp / "hf-home")
        apply_environment(env)
        import huggingface_hub

        print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores,"
              f" huggingface_hub {huggingface_hub.__version__}")  # fmt: skip
        started = time.perf_counter()
        build_repo(tmp / "repos", size)
        print(
            f"repo     {REPO_ID}: {BIG_FILE} {args.mb} MiB of random bytes, written in"
            f" {time.perf_counter() - started:.1f} s; {args.rounds} rounds, {timeout:.0f} s per download at most"
        )

        hub = HubProcess(tmp / "repos", env)
        try:
            url = hub.url(SERVER_START_TIMEOUT_S)
            print(f"hub      {url} (a child process)", flush=True)
            small = SMALL_MIB * MIB
            started = time.perf_counter()  # the first request hashes every file of the repo
            warm_raw = raw_download(url, fresh(tmp, "warm-raw"), SMALL_FILE, small, timeout + MIN_TIMEOUT_S)
            warm_wb = workbench_download(url, fresh(tmp, "warm-wb"), SMALL_FILE, small, timeout)
            print(f"warm-up  {SMALL_MIB} MiB file, hub hashing included: {time.perf_counter() - started:.1f} s")
            for name in ("warm-raw", "warm-wb"):
                shutil.rmtree(tmp / name, ignore_errors=True)
            show("warm-up", warm_raw, warm_wb)

            raw: list[Run] = []
            ours: list[Run] = []
            for n in range(1, args.rounds + 1):
                kinds = ("raw", "wb") if n % 2 else ("wb", "raw")
                for kind in kinds:
                    folder = fresh(tmp, f"round-{kind}")
                    try:
                        if kind == "raw":
                            raw.append(raw_download(url, folder / "cache", BIG_FILE, size, timeout))
                        else:
                            ours.append(workbench_download(url, folder, BIG_FILE, size, timeout))
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                show(f"round {n}", raw[-1], ours[-1])

            if args.profile:
                raw_profiler, wb_profiler = cProfile.Profile(), cProfile.Profile()
                for kind in ("raw", "wb"):
                    folder = fresh(tmp, f"profile-{kind}")
                    try:
                        if kind == "raw":
                            run = raw_download(url, folder / "cache", BIG_FILE, size, timeout * 3, raw_profiler)
                        else:
                            run = workbench_download(url, folder, BIG_FILE, size, timeout * 3, wb_profiler)
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                    print(f"profiled {kind:<4} {run.mbps:7.1f} MB/s (cpu {run.cpu_s:5.2f} s) under cProfile")
                print_profile("raw: hf_hub_download", raw_profiler)
                print_profile("wb: Transfer.fetch_file on the transfer thread", wb_profiler)
        finally:
            hub.stop()

    raw_mbps = statistics.median(r.mbps for r in raw)
    wb_mbps = statistics.median(r.mbps for r in ours)
    ratio = wb_mbps / raw_mbps
    raw_cpu = statistics.median(r.cpu_s_per_gb for r in raw)
    wb_cpu = statistics.median(r.cpu_s_per_gb for r in ours)
    print(f"median   raw {raw_mbps:7.1f} MB/s   wb {wb_mbps:7.1f} MB/s   ratio {ratio:.2f}")
    print(f"cpu      raw {raw_cpu:.2f} s/GB   wb {wb_cpu:.2f} s/GB (this process only; the hub is a child)")
    print(f"goals: download_ratio >= {GOAL_RATIO} (cpu_s_per_gb for information)")
    print(f"RESULT download_ratio={ratio:.2f} cpu_s_per_gb={wb_cpu:.2f}")


if __name__ == "__main__":
    main()
