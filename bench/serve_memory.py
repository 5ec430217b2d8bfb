"""Serve memory benchmark: how much a request's body costs the server, as a multiple of the body's size.

For each body shape a fresh child process serves the real SmolLM2 (imported from the embedded GGUF, or --model
DIR) on 127.0.0.1 through ``workbench.server.openai.build_app`` (context_length --context), answers one
short warm-up request (the model and its tokenizer load then), and then gets one ~8 MB body (max_tokens 1).
The child reports its peak RSS while that request ran (Linux: VmHWM after resetting it; elsewhere a 2 ms
sampler) above the RSS before it, and the figure is that growth divided by the body's size. A child that has
not answered within --timeout plus two minutes is killed and reported as stuck (no figure).

Shapes: ``long`` one user message of ~8 MB of words; ``history`` ~100-character turns, user and assistant
alternating; ``tiny`` the smallest messages (``{"role":"user","content":"x"}``); ``parts`` one message of
one-character text parts.

    .venv/bin/python bench/serve_memory.py [--model DIR] [--size 8000000] [--context 256] [--shapes long,history]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

MODEL_ID = "SmolLM2-135M-Instruct-4bit"
SHAPES = ("long", "history", "tiny", "parts")
GOAL_RATIO = 20.0


def _fill(item: Any, size: int) -> list[Any]:
    """Copies of ``item``, as many as make about ``size`` bytes of JSON."""
    return [item] * (size // (len(json.dumps(item)) + 2))


def make_body(shape: str, size: int) -> bytes:
    if shape == "long":
        messages: Any = [{"role": "user", "content": "word " * (size // 5)}]
    elif shape == "history":
        turns = [{"role": role, "content": "lorem ipsum dolor sit amet " * 4} for role in ("user", "assistant")]
        messages = [dict(turn) for turn in _fill(turns[0], size // 2) for turn in turns]
    elif shape == "tiny":
        messages = [dict(item) for item in _fill({"role": "user", "content": "x"}, size)]
    elif shape == "parts":
        messages = [{"role": "user", "content": _fill({"type": "text", "text": "x"}, size)}]
    else:
        raise ValueError(shape)
    return json.dumps({"model": MODEL_ID, "messages": messages, "max_tokens": 1}).encode()


def rss() -> int:
    return psutil.Process().memory_info().rss


class PeakRss:
    """The process's peak RSS from now on: VmHWM reset through /proc on Linux, else a 2 ms sampler."""

    def __init__(self) -> None:
        self._linux = Path("/proc/self/clear_refs").exists()
        self._peak = rss()
        self._stop = threading.Event()
        if self._linux:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, rss())

    def peak(self) -> int:
        self._stop.set()
        self._thread.join()
        if self._linux:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return max(self._peak, int(line.split()[1]) * 1024)
        return self._peak


async def _measure(model_dir: Path, shape: str, size: int, timeout: float, context: int) -> dict[str, Any]:
    import aiohttp
    from aiohttp import web

    from workbench.bootstrap import build_services
    from workbench.core.models.backends.mlx_lm import KIND
    from workbench.core.models.spec import ModelSpec
    from workbench.core.settings.paths import AppPaths
    from workbench.server.openai import build_app

    paths = AppPaths.under(Path(tempfile.mkdtemp(prefix="serve-memory-")))
    paths.config_dir.mkdir(parents=True)
    paths.config_file.write_text(f"[models]\ncontext_length = {context}\n")
    services = build_services(paths)
    services.manager.register(ModelSpec(id=MODEL_ID, name=MODEL_ID, kind=KIND, path=model_dir))
    runner = web.AppRunner(build_app(services), handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    body = make_body(shape, size)
    result: dict[str, Any] = {"shape": shape, "body_bytes": len(body)}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            warm = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            async with session.post(url, json=warm) as response:
                await response.read()
            gc.collect()
            before = rss()
            peak = PeakRss()
            started = time.monotonic()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                    answer = await response.read()
                result["status"] = response.status
                result["answer"] = answer[:200].decode(errors="replace")
            except TimeoutError:
                result["status"] = "timeout"
            result["seconds"] = round(time.monotonic() - started, 2)
            result["growth_bytes"] = peak.peak() - before
    finally:
        await runner.cleanup()
        await services.manager.aclose()
        services.store.close()
    result["ratio"] = result["growth_bytes"] / len(body)
    return result


def _child(model_dir: str, shape: str, size: int, timeout: float, context: int, out: Any) -> None:
    out.put(asyncio.run(_measure(Path(model_dir), shape, size, timeout, context)))


def measure(model_dir: Path, shape: str, size: int, timeout: float, context: int) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    out = spawn.Queue()
    process = spawn.Process(target=_child, args=(str(model_dir), shape, size, timeout, context, out))
    process.start()
    try:
        return out.get(timeout=timeout + 120)
    except queue.Empty:
        return {"shape": shape, "body_bytes": len(make_body(shape, size)), "status": "stuck", "seconds": timeout + 120,
                "growth_bytes": 0, "ratio": 0.0}  # fmt: skip
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an MLX model folder (default: SmolLM2 imported from its GGUF)")
    parser.add_argument("--size", type=int, default=8_000_000, help="the body's size in bytes (about)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--context", type=int, default=256, help="context_length in tokens (default 256: what "
                        "survives trimming is prefilled, ~10 tokens/s on a CPU)")  # fmt: skip
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated: {', '.join(SHAPES)}")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir = args.model
    if model_dir is None:
        from workbench.core.models.gguf_import import import_gguf
        from workbench.core.models.local import smollm2_gguf

        print("importing SmolLM2 from its GGUF (about 10 s)…", file=sys.stderr, flush=True)
        model_dir = import_gguf(smollm2_gguf(), Path(tempfile.mkdtemp(prefix="serve-memory-model-")) / MODEL_ID, bits=4)
    worst = 0.0
    for shape in args.shapes.split(","):
        result = measure(model_dir, shape, args.size, args.timeout, args.context)
        worst = max(worst, result["ratio"])
        print(f"{shape:8} body {result['body_bytes'] / 1e6:5.1f} MB  status {result['status']!s:7}  "
              f"{result['seconds']:6.2f} s  RSS +{result['growth_bytes'] / 2**20:7.1f} MiB  "
              f"ratio {result['ratio']:6.1f}x  {result.get('answer', '')[:90]!r}", flush=True)  # fmt: skip
    print(f"goal: at most {GOAL_RATIO:.0f}x")
    print(f"RESULT serve_memory_ratio={worst:.1f}")


if __name__ == "__main__":
    main()
