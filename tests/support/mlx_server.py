"""A real `mlx_lm.server` on 127.0.0.1 for tests of remote endpoints (started once per session)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 120


@dataclass(frozen=True)
class MlxServer:
    base_url: str  # ends in /v1
    model: str  # the id the server lists and answers to
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_mlx_server(model_dir: Path, workdir: Path) -> Iterator[MlxServer]:
    port = free_port()
    model = str(model_dir.resolve())
    cache = workdir / "hf-cache"  # /v1/models scans it; it must exist
    cache.mkdir(parents=True, exist_ok=True)
    log = workdir / "mlx_server.log"
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "mlx_lm.server", "--model", model, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"mlx_lm.server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"mlx_lm.server did not start: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                    if model in {m["id"] for m in json.load(response)["data"]}:
                        break
            except OSError:
                time.sleep(0.2)
        yield MlxServer(base_url=base_url, model=model, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
