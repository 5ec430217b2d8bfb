"""Ollama's ``POST /api/pull``, through the engine's download queue (``services.downloads``: the same jobs, resume and
retries as the Downloads pane; a pull asked twice follows the one job).

Names: ``org/repo`` or ``hf.co/org/repo`` fetch what an MLX model needs; ``hf.co/org/repo:QUANT`` fetches that
quantization's GGUF file and imports it (core/models/gguf_import) as ``<repo>-<QUANT>`` when its architecture
converts, else refuses with the reason (the file stays in the cache). The model is registered at the end, so
/api/tags lists it and every route takes the name the client pulled.

Streamed the way Ollama streams (``"stream": false``: only the last line): ``{"status": "pulling manifest"}``,
``{"status": "pulling <file>", "digest": <file>, "total": bytes, "completed": bytes}`` per file as it grows,
``{"status": "verifying sha256 digest"}``, ``{"status": "writing manifest"}`` (and ``"converting to MLX"`` for a
GGUF), ``{"status": "success"}``; a failure is ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from workbench.core.hub.downloads.jobs import JobState
from workbench.core.models.details import model_details
from workbench.core.models.gguf_import import SUPPORTED_ARCHITECTURES, GgufImportError, import_gguf
from workbench.server.errors import ApiError
from workbench.server.ndjson import NdjsonStream, PeerGone
from workbench.server.ollama_names import hub_name, import_name
from workbench.server.ollama_requests import model_name, read_body, stream_flag
from workbench.server.openai_shared import SERVICES

if TYPE_CHECKING:
    from workbench.bootstrap import Services
    from workbench.core.hub.downloads.jobs import JobSnapshot

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
PROGRESS_EVERY_S = 0.25  # at most this often a progress line per pull
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def pull(request: web.Request) -> web.StreamResponse:
    services: Services = request.app[SERVICES]
    body = await read_body(request, MAX_BODY)
    name = model_name(body)
    parsed = hub_name(name)
    if parsed is None:
        raise ApiError(400, f"{name!r}: the workbench pulls from Hugging Face: name a repo as org/name, "
                       "hf.co/org/name or hf.co/org/name:QUANT (a GGUF quantization)")  # fmt: skip
    repo_id, quant = parsed
    if not stream_flag(body):
        last: dict[str, Any] = {}

        async def keep(line: dict[str, Any]) -> None:
            last.clear()
            last.update(line)

        await _pull(services, repo_id, quant, keep)
        if "error" in last:
            raise ApiError(500, last["error"])
        return web.json_response(last)
    async with NdjsonStream(request, heartbeat_s=None) as stream:
        with contextlib.suppress(PeerGone):  # the download goes on in the queue; a later pull follows it
            await _pull(services, repo_id, quant, stream.send)
    return stream.response


async def _pull(services: Services, repo_id: str, quant: str | None, send: Send) -> None:
    await send({"status": "pulling manifest"})
    downloads = services.downloads
    await downloads.start()  # a no-op where the engine started it
    if quant is None:
        job = downloads.enqueue(repo_id)
    else:
        job = downloads.enqueue(repo_id, include=sorted({f"*{q}*.gguf" for q in (quant, quant.upper(), quant.lower())}))
    job = await _follow(services, job, send)
    if job.state is not JobState.DONE:
        why = job.error or job.message or job.state.value
        await send({"error": f"pulling {repo_id} stopped: {why}"})
        return
    await send({"status": "verifying sha256 digest"})  # each file was checked as it arrived
    await send({"status": "writing manifest"})
    snapshot = downloads.snapshot_path(job.id)
    imported = quant is None or (snapshot is not None and await _import(services, repo_id, quant, snapshot, job, send))
    if not imported:
        return
    await _register(services)
    await send({"status": "success"})


async def _follow(services: Services, job: JobSnapshot, send: Send) -> JobSnapshot:
    """Send each file's progress until the job settles; its last snapshot."""
    downloads = services.downloads
    changed = asyncio.Event()
    unsubscribe = downloads.subscribe(lambda snapshot: changed.set() if snapshot.id == job.id else None)
    settled = asyncio.ensure_future(downloads.wait(job.id))
    sent: dict[str, tuple[int | None, int]] = {}
    try:
        while True:
            job = downloads.job(job.id)
            for line in _progress_lines(job, sent):
                await send(line)
            if settled.done():
                return settled.result()
            changed.clear()
            waiter = asyncio.ensure_future(changed.wait())
            await asyncio.wait({settled, waiter}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            await asyncio.sleep(PROGRESS_EVERY_S)
    finally:
        unsubscribe()
        settled.cancel()


def _progress_lines(job: JobSnapshot, sent: dict[str, tuple[int | None, int]]) -> list[dict[str, Any]]:
    lines = []
    for file in job.file_progress:
        if sent.get(file.path) == (file.size, file.done_bytes):
            continue
        sent[file.path] = (file.size, file.done_bytes)
        line: dict[str, Any] = {"status": f"pulling {file.path}", "digest": file.path}
        if file.size is not None:
            line["total"] = file.size
        if file.done_bytes:
            line["completed"] = file.done_bytes
        lines.append(line)
    return lines


async def _import(services: Services, repo_id: str, quant: str, snapshot: Path, job: JobSnapshot,
                  send: Send) -> bool:  # fmt: skip
    """Import the pulled GGUF; False (and the reason sent) when it cannot be."""
    ggufs = [snapshot / path for path in job.files if path.lower().endswith(".gguf")]
    if len(ggufs) != 1:
        found = ", ".join(Path(path).name for path in job.files) or "none"
        await send({"error": f"{repo_id} has {len(ggufs)} GGUF files for {quant!r} (found: {found}); "
                             "expected exactly one"})  # fmt: skip
        return False
    source = ggufs[0]
    name = import_name(repo_id, quant)
    dest = services.paths.models_dir / name
    if (dest / "config.json").is_file():
        return True  # imported before
    architecture = (await asyncio.to_thread(model_details, source)).family
    if architecture not in SUPPORTED_ARCHITECTURES:
        await send({"error": f"{source.name} is downloaded (it stays in the cache), but its architecture "
                             f"{architecture or 'unknown'!r} does not convert to MLX here (supported: "
                             f"{', '.join(SUPPORTED_ARCHITECTURES)})"})  # fmt: skip
        return False
    await send({"status": f"converting {source.name} to MLX as {name}"})
    try:
        await services.manager.inference.run(import_gguf, source, dest)
    except GgufImportError as exc:
        await send({"error": f"{source.name} is downloaded but cannot be imported: {exc}"})
        return False
    return True


async def _register(services: Services) -> None:
    """Register what the pull made loadable."""
    specs = await asyncio.to_thread(services.registry.loadable_specs)
    known = {info.spec.id for info in services.manager.models()}
    for spec in specs:
        if spec.id not in known:
            services.manager.register(spec)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/pull", pull)


__all__ = ["add_routes", "pull"]
