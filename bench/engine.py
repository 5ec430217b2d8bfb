"""Engine benchmark: the engine's resident memory with no model loaded, against the goal of 200 MB.

Each round starts ``python -m workbench.cli engine`` (what ``workbench engine`` runs) for a fresh WORKBENCH_HOME (a
temporary folder), polls the engine's native API (``GET /v1/ps`` over its socket) until it answers, checks that no
model is loaded and that the engine did not import the default chat model (the TUI's first start does; the engine
must not), then samples the engine process's RSS (psutil, the pid ``ps`` reports) a few times over ~1 s and keeps
the largest: ``engine_idle_rss_mb``, median over --rounds. Heavy libraries (mlx, torch, transformers, …) are meant
to load with the first model, not before. When the goal is missed, one more engine runs under ``python -X
importtime`` and the heaviest imports it made at start are listed (cumulative import time, and how many modules
each top-level package brought in; a package imported by another counts in both), with the heavy libraries among
them (--imports lists them within the goal too).

For information, two parts of the CLI's overhead: ``engine_start_s``, spawn to the engine's first ``ps`` answer; and
``ps_wall_s``, the wall time of ``workbench ps --json`` (a fresh Python process) against a running engine.

``cli_overhead_s`` (goal <= 0.5 s): the real SmolLM2 (imported from its GGUF as the app imports it) in a fresh home,
one ``workbench chat MODEL "Hi" --max-tokens 1 --json`` to start the engine and load the model, then --chat-runs
more against that warm engine, each a fresh process: its wall time minus the answer's own time to first token (the
``ttft_s`` of its JSON figures); the median. For comparison, the same one-token answer in a cold process as the CLI
answered before the engine (``python -c``: import mlx-lm, load the model, stream one token; wall minus its own time
to first token): ``cold_overhead_s``.

    .venv/bin/python bench/engine.py [--rounds 3] [--samples 5] [--imports] [--chat-runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
GOAL_RSS_MB = 200.0
GOAL_OVERHEAD_S = 0.5
CHAT_TIMEOUT_S = 300.0
START_TIMEOUT_S = 30.0
HEAVY = ("mlx", "mlx_lm", "torch", "sentence_transformers", "transformers", "huggingface_hub", "numpy", "openai")
IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _env(home: Path) -> dict[str, str]:
    # bytecode caching as on any normal machine (this sandbox sets PYTHONDONTWRITEBYTECODE; see bench/startup.py)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env | {"WORKBENCH_HOME": str(home), "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", *args]


def _socket(home: Path) -> Path:
    from workbench.core.engine_home import engine_home
    from workbench.core.settings.paths import AppPaths

    return engine_home(AppPaths.under(home)).socket


def _ps(socket: Path) -> dict[str, Any] | None:
    from workbench.client.engine import EngineClient

    return asyncio.run(EngineClient(socket, timeout_s=2.0).ps())


def _wait_for_ps(socket: Path, process: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        if (document := _ps(socket)) is not None:
            return document
        if process.poll() is not None:
            raise RuntimeError(f"the engine exited at start (status {process.returncode})")
        time.sleep(0.01)
    raise RuntimeError(f"the engine did not answer within {START_TIMEOUT_S:.0f} s")


def _stop(home: Path, process: subprocess.Popen[bytes]) -> None:
    subprocess.run(_cli("stop"), env=_env(home), check=True, capture_output=True, timeout=60)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError("the engine was still running 15 s after `workbench stop`") from None


def one_round(samples: int, ps_runs: int) -> dict[str, Any]:
    """Start an engine for a fresh home; its start time, idle RSS (max of the samples), `ps --json` wall times."""
    from workbench.core.models.local import default_chat_missing
    from workbench.core.settings.paths import AppPaths

    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        home = Path(tmp)
        socket = _socket(home)
        started = time.monotonic()
        process = subprocess.Popen(_cli("engine"), env=_env(home), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        try:
            document = _wait_for_ps(socket, process, started + START_TIMEOUT_S)
            start_s = time.monotonic() - started
            pid = document["engine"]["pid"]
            if pid != process.pid:
                raise RuntimeError(f"ps reports pid {pid}, the engine spawned is {process.pid}")
            engine = psutil.Process(pid)
            rss = []
            for _ in range(samples):
                rss.append(engine.memory_info().rss)
                time.sleep(1.0 / samples)
            ps_walls = []
            for _ in range(ps_runs):
                t0 = time.monotonic()
                answer = subprocess.run(_cli("ps", "--json"), env=_env(home), check=True, capture_output=True,
                                        timeout=60)  # fmt: skip
                ps_walls.append(time.monotonic() - t0)
            models = json.loads(answer.stdout)["models"]
            imported_default = not default_chat_missing(AppPaths.under(home))
        finally:
            if process.poll() is None:
                _stop(home, process)
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.returncode != 0:
            raise RuntimeError(f"the engine exited with status {process.returncode}: {error.strip()[-500:]}")
    return {"start_s": start_s, "rss": max(rss), "ps_walls": ps_walls, "models": models,
            "imported_default": imported_default}  # fmt: skip


def heaviest_imports() -> list[tuple[str, float, int]]:
    """An engine under ``python -X importtime`` until its first ``ps`` answer: the top-level packages it imported,
    heaviest first, as (package, cumulative seconds of its outermost imports, modules imported from it)."""
    with tempfile.TemporaryDirectory(prefix="engine-bench-imports-") as tmp:
        home = Path(tmp)
        command = [sys.executable, "-X", "importtime", *_cli("engine")[1:]]
        process = subprocess.Popen(command, env=_env(home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)  # fmt: skip
        try:
            _wait_for_ps(_socket(home), process, time.monotonic() + START_TIMEOUT_S)
        finally:
            if process.poll() is None:
                _stop(home, process)
            log = process.stderr.read().decode(errors="replace") if process.stderr else ""
    cumulative: dict[str, float] = defaultdict(float)
    modules: dict[str, int] = defaultdict(int)
    stack: list[str] = []  # the packages of the imports enclosing the current line (importtime prints children first)
    entries = [(int(m[2]), len(m[3]) // 2, m[4]) for m in map(IMPORTTIME.match, log.splitlines()) if m]
    # a package's time counts once, at its outermost import: walk the log from the end (parents before children)
    for cumul_us, depth, name in reversed(entries):
        package = name.split(".")[0]
        del stack[depth:]
        modules[package] += 1
        if package not in stack:
            cumulative[package] += cumul_us / 1e6
        stack.extend([package] * (depth + 1 - len(stack)))
    ranked = sorted(cumulative, key=lambda p: cumulative[p], reverse=True)
    return [(package, cumulative[package], modules[package]) for package in ranked]


COLD_CHAT = """
import json, sys, time
started = time.monotonic()
from mlx_lm import load, stream_generate
model, tokenizer = load(sys.argv[1])
prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
asked = time.monotonic()
for response in stream_generate(model, tokenizer, prompt, max_tokens=1):
    first = time.monotonic()
    break
print(json.dumps({"ttft_s": first - asked, "import_and_load_s": asked - started}))
"""


def _chat_once(home: Path) -> tuple[float, float, str]:
    """One `workbench chat` in a fresh process: (wall s, the answer's ttft_s, its stderr)."""
    from workbench.core.models.local import DEFAULT_CHAT_ID

    t0 = time.monotonic()
    done = subprocess.run(_cli("chat", DEFAULT_CHAT_ID, "Hi", "--max-tokens", "1", "--json"), env=_env(home),
                          capture_output=True, text=True, timeout=CHAT_TIMEOUT_S)  # fmt: skip
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"workbench chat exited {done.returncode}: {done.stderr.strip()[-500:]}")
    figures = json.loads(done.stdout)["figures"]
    return wall, float(figures["ttft_s"]), done.stderr


def cli_overhead(runs: int) -> tuple[float, float]:
    """Median (wall - ttft) of ``runs`` warm `workbench chat` calls, and of the same answer in a cold process."""
    from workbench.core.models.gguf_import import import_gguf
    from workbench.core.models.local import DEFAULT_CHAT_ID, EMBEDDED_CHAT_GENERATION, smollm2_gguf
    from workbench.core.settings.paths import AppPaths

    with tempfile.TemporaryDirectory(prefix="engine-bench-chat-") as tmp:
        home = Path(tmp)
        folder = AppPaths.under(home).models_dir / DEFAULT_CHAT_ID
        print(f"importing {DEFAULT_CHAT_ID} from its GGUF (about 10 s)…", flush=True)
        import_gguf(smollm2_gguf(), folder, bits=4, generation=EMBEDDED_CHAT_GENERATION)
        try:
            wall, ttft, err = _chat_once(home)
            print(f"first chat (starts the engine, loads the model): wall {wall:.3f} s, ttft {ttft:.3f} s", flush=True)
            if "loading" not in err:
                print("WARNING: the first chat did not load the model")
            overheads = []
            for n in range(1, runs + 1):
                wall, ttft, err = _chat_once(home)
                overheads.append(wall - ttft)
                loaded = "  (WARNING: it loaded the model again)" if "loading" in err else ""
                print(f"warm chat {n:<2} wall {wall:.3f} s  ttft {ttft:.3f} s  overhead {overheads[-1]:.3f} s{loaded}",
                      flush=True)  # fmt: skip
        finally:
            subprocess.run(_cli("stop"), env=_env(home), capture_output=True, timeout=60)
        colds = []
        for n in range(1, min(runs, 3) + 1):
            t0 = time.monotonic()
            done = subprocess.run([sys.executable, "-c", COLD_CHAT, str(folder)], env=_env(home), capture_output=True,
                                  text=True, timeout=CHAT_TIMEOUT_S, check=True)  # fmt: skip
            wall = time.monotonic() - t0
            ttft = json.loads(done.stdout.strip().splitlines()[-1])["ttft_s"]
            colds.append(wall - ttft)
            print(f"cold mlx-lm {n:<2} wall {wall:.3f} s  ttft {ttft:.3f} s  overhead {colds[-1]:.3f} s", flush=True)
    overhead, cold = statistics.median(overheads), statistics.median(colds)
    print(f"median   cli_overhead {overhead:.3f} s (goal <= {GOAL_OVERHEAD_S})   cold process {cold:.3f} s")
    parts = [json.loads(subprocess.run([sys.executable, "-c", FACE_IMPORTS], env=_env(Path(tempfile.gettempdir())),
                                       capture_output=True, text=True, timeout=60, check=True).stdout)
             for _ in range(3)]  # fmt: skip
    print("where a face's time goes (fresh processes, median of 3): " + ", ".join(
        f"{name} {statistics.median(part[name] for part in parts):.3f} s" for name in parts[0]))  # fmt: skip
    return overhead, cold


FACE_IMPORTS = """
import json, time
t0 = time.perf_counter()
import workbench.cli.main
t1 = time.perf_counter()
import aiohttp
t2 = time.perf_counter()
import workbench.client.engine, workbench.engine_process
from workbench.core.engine_home import code_fingerprint
code_fingerprint()
t3 = time.perf_counter()
print(json.dumps({"import workbench.cli": t1 - t0, "import aiohttp": t2 - t1, "client and fingerprint": t3 - t2}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="engines started, one per fresh home (default 3)")
    parser.add_argument("--samples", type=int, default=5, help="RSS samples over ~1 s per engine (default 5)")
    parser.add_argument("--ps-runs", type=int, default=3, help="`workbench ps --json` runs per engine (default 3)")
    parser.add_argument("--imports", action="store_true", help="list the heaviest start-up imports even within goal")
    parser.add_argument("--chat-runs", type=int, default=5, help="warm `workbench chat` runs for cli_overhead_s "
                        "(default 5; 0 skips it and the model import it needs)")  # fmt: skip
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores")
    starts: list[float] = []
    rss_mb: list[float] = []
    ps_walls: list[float] = []
    for n in range(1, args.rounds + 1):
        result = one_round(args.samples, args.ps_runs)
        starts.append(result["start_s"])
        rss_mb.append(result["rss"] / 2**20)
        ps_walls.extend(result["ps_walls"])
        print(f"round {n:<2} start {result['start_s']:.3f} s   idle RSS {rss_mb[-1]:6.1f} MB   ps --json "
              f"{' '.join(f'{s:.3f}' for s in result['ps_walls'])} s", flush=True)  # fmt: skip
        if result["models"]:
            print(f"WARNING: models loaded in an idle engine: {[m['id'] for m in result['models']]}")
        if result["imported_default"]:
            print("WARNING: the engine imported the default chat model at start (the TUI's first start does that)")

    rss = statistics.median(rss_mb)
    start = statistics.median(starts)
    ps_wall = statistics.median(ps_walls)
    print(f"median   start {start:.3f} s   idle RSS {rss:.1f} MB   ps --json {ps_wall:.3f} s")
    if rss > GOAL_RSS_MB or args.imports:
        print("heaviest imports at the engine's start (python -X importtime; cumulative s, modules):")
        imports = heaviest_imports()
        for package, seconds, count in imports[:15]:
            print(f"  {package:<28} {seconds:6.3f} s  {count:5d} modules")
        heavy = [f"{package} ({seconds:.3f} s)" for package, seconds, _ in imports if package in HEAVY]
        print(f"heavy libraries imported at start: {', '.join(heavy)}" if heavy else
              "no heavy library imported at start")  # fmt: skip
    overhead = cold = None
    if args.chat_runs:
        overhead, cold = cli_overhead(args.chat_runs)
    print(f"goals: engine_idle_rss_mb <= {GOAL_RSS_MB:.0f}, cli_overhead_s <= {GOAL_OVERHEAD_S}")
    chat = "" if overhead is None else f"cli_overhead_s={overhead:.3f} "
    tail = "" if cold is None else f" cold_overhead_s={cold:.3f}"
    print(f"RESULT {chat}engine_idle_rss_mb={rss:.1f} engine_start_s={start:.3f} ps_wall_s={ps_wall:.3f}{tail}")


if __name__ == "__main__":
    main()
