"""The services as a face attached to the engine sees them: workbench/api.py's WorkbenchApi over the engine's socket.

What belongs to the face stays here: the config and the catalog (read from disk as in-process), the hub's catalog
(plain HTTP), what is on disk (the registry's listings). What the engine owns is mirrored from its event stream and
acted on through its routes: the models (RemoteModels), memory (RemoteProbe: the engine's latest sample), the
download queue (RemoteDownloads), the default model's import (RemoteImport), the history (RemoteStore: the SQLite
file read-only, writes through the engine), deletions from the Hugging Face cache (RemoteRegistry).

Building it imports no aiohttp (workbench.client.engine imports it on its first call) and touches no socket: the TUI
builds it before its first frame and starts the link (``start_link``) after it. ``aclose`` detaches; the engine's
work goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.client.engine import EngineClient, EngineRequestError
from workbench.client.remote_import import RemoteImport
from workbench.client.remote_models import EngineUnavailableError, RemoteModels
from workbench.core.hub import cache as hf_cache
from workbench.core.hub.client import HubCatalog
from workbench.core.hub.curated import CatalogEntry, load_effective_catalog
from workbench.core.hub.downloads.jobs import JobSnapshot, JobState
from workbench.core.models.memory import MemorySnapshot, resolve_budget
from workbench.core.models.registry import CacheContents, ModelRegistry, RepoStatus
from workbench.core.models.spec import ModelManagerError, ModelSpec
from workbench.core.settings.config import Settings, load_settings
from workbench.core.settings.paths import AppPaths
from workbench.core.settings.toml_text import ConfigIssue
from workbench.core.wire import WireError, _field, job_from_wire, memory_from_wire
from workbench.resources import shipped_path

if TYPE_CHECKING:
    from workbench.client.chat_session import RemoteChatSession
    from workbench.client.compare_session import RemoteCompareSession
    from workbench.client.embedder import RemoteEmbedder
    from workbench.client.link import EngineLink, LinkStatus
    from workbench.client.store import RemoteStore
    from workbench.core.storage.store import Store

log = logging.getLogger(__name__)

ACTION_TIMEOUT_S = 10.0
DELETE_TIMEOUT_S = 300.0  # deleting a large repo from a slow disk


def _no_engine() -> EngineUnavailableError:
    return EngineUnavailableError("no engine answers: it is starting again, or was stopped")


class _Background:
    """Actions sent to the engine from key handlers (synchronous in the screens): each a task, its failure logged."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_refused: Callable[[str], None] | None = None  # the face's way to say it (a notification)

    def spawn(self, action: Any, what: str, tell: bool = True) -> asyncio.Task[Any]:
        """``tell``: say a failure through ``on_refused`` (False: the caller awaits the task and says it)."""
        task = asyncio.get_running_loop().create_task(action)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._settled(done, what, tell))
        return task

    def _settled(self, task: asyncio.Task[Any], what: str, tell: bool) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("the engine did not %s: %s", what, exc)
            if tell and self.on_refused is not None:
                self.on_refused(f"The engine did not {what}: {exc}")

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# --- memory --------------------------------------------------------------------------------------


class RemoteProbe:
    """The engine's memory as the strip shows it: its latest ``memory`` sample (its RSS: the models live there)."""

    def __init__(self) -> None:
        self.latest: MemorySnapshot | None = None
        self._listeners: list[Callable[[MemorySnapshot], None]] = []

    def apply(self, document: Any) -> None:
        try:
            self.latest = memory_from_wire(document)
        except WireError as exc:
            log.warning("the engine's memory sample was not understood: %s", exc)
            return
        for listener in list(self._listeners):
            listener(self.latest)

    def snapshot(self) -> MemorySnapshot:
        """The latest sample; zeros before the first arrived."""
        return self.latest or MemorySnapshot(0, 0, 0, None, None, None)

    def subscribe(self, listener: Callable[[MemorySnapshot], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None


# --- downloads -----------------------------------------------------------------------------------


def placeholder_job(job_id: int, repo_id: str, revision: str, state: JobState) -> JobSnapshot:
    """A job the engine just queued, before its first ``downloads`` event describes it."""
    return JobSnapshot(id=job_id, repo_id=repo_id, revision=revision, state=state, position=0, files=[], include=[],
                       all_files=False, commit=None, error=None, message=None, file_progress=[], done_bytes=0,
                       total_bytes=None, speed_bps=0.0, eta_s=None, created=0.0, updated=0.0,
                       resume_at=None)  # fmt: skip


class RemoteDownloads:
    """The engine's download queue: a mirror of the ``downloads`` topic (the very JobSnapshots the engine's queue
    makes) with the DownloadManager methods the Downloads pane, the cache view and the Catalog use; the actions go to
    the engine's routes (the mirror follows from the next event)."""

    def __init__(self, client: EngineClient, cache_dir: Callable[[], Path]) -> None:
        self.client = client
        self._cache_dir = cache_dir
        self._jobs: dict[int, JobSnapshot] = {}
        self._listeners: list[Callable[[JobSnapshot], None]] = []
        self._background = _Background()

    def on_refused(self, tell: Callable[[str], None]) -> None:
        """``tell`` hears, in words, an action the engine refused or could not take (no engine answers)."""
        self._background.on_refused = tell

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir()

    def apply(self, document: Any) -> None:
        """Take a ``downloads`` document; listeners hear of every job that changed or appeared."""
        try:
            jobs = {job.id: job for job in map(job_from_wire, _field(document, "jobs", list))}
        except WireError as exc:
            log.warning("the engine's downloads document was not understood: %s", exc)
            return
        changed = [job for job_id, job in jobs.items() if self._jobs.get(job_id) != job]
        self._jobs = jobs
        for job in changed:
            for listener in list(self._listeners):
                listener(job)

    # --- reading ---

    def jobs(self) -> list[JobSnapshot]:
        return list(self._jobs.values())  # the engine's queue order

    def job(self, job_id: int) -> JobSnapshot:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise KeyError(f"no download job with id {job_id}") from None

    def subscribe(self, listener: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def in_cache(self, job_id: int) -> bool:
        """Whether every file of the job is in its snapshot folder of the cache (read here: the face's disk)."""
        job = self.job(job_id)
        if job.commit is None or not job.files:
            return False
        snapshot = hf_cache.repo_dir(self.cache_dir, job.repo_id) / "snapshots" / job.commit
        return all((snapshot / path).exists() for path in job.files)

    # --- actions, through the engine ---

    async def _post(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        document = await self.client.call_json("POST", route, body, timeout_s=ACTION_TIMEOUT_S)
        if document is None:
            raise _no_engine()
        return document

    async def queue(self, repo_id: str, revision: str = "main", files: list[str] | None = None) -> JobSnapshot:
        """Queue ``repo_id`` (only ``files``, when given) in the engine; the job as the engine answers it. This face's
        HF_ENDPOINT and HF_TOKEN travel with it (the engine keeps them in memory for this job only).
        EngineRequestError when it refuses, EngineUnavailableError with no engine."""
        body: dict[str, Any] = {"repo": repo_id}
        if revision != "main":
            body["revision"] = revision
        if files:
            body["files"] = list(files)
        for key, variable in (("endpoint", "HF_ENDPOINT"), ("token", "HF_TOKEN")):
            if value := os.environ.get(variable):
                body[key] = value
        answer = await self._post("/v1/downloads", body)
        job_id = int(answer["id"])
        return self._jobs.get(job_id) or placeholder_job(job_id, repo_id, revision, JobState(answer["state"]))

    def enqueue(self, repo_id: str, revision: str = "main",
                files: list[str] | None = None) -> asyncio.Task[JobSnapshot]:  # fmt: skip
        """As DownloadManager.enqueue, but the answer comes from the engine: await the task for the job."""
        return self._background.spawn(self.queue(repo_id, revision, files), f"queue {repo_id}", tell=False)

    def _act(self, job_id: int, action: str, body: dict[str, Any] | None = None) -> None:
        self.job(job_id)
        self._background.spawn(self._post(f"/v1/downloads/{job_id}/{action}", body), f"{action} job {job_id}")

    def pause(self, job_id: int) -> None:
        self._act(job_id, "pause")

    def resume(self, job_id: int) -> None:
        self._act(job_id, "resume")

    def cancel(self, job_id: int) -> None:
        if self.job(job_id).state not in (JobState.DONE, JobState.CANCELLED):
            self._act(job_id, "cancel")

    def retry(self, job_id: int) -> bool:
        """A failed or cancelled job goes back in the queue (the engine decides; False when it is not one)."""
        if self.job(job_id).state not in (JobState.FAILED, JobState.CANCELLED):
            return False
        self._act(job_id, "retry")
        return True

    def move(self, job_id: int, delta: int) -> None:
        self._act(job_id, "move", {"by": delta})

    def pause_all(self) -> None:
        self._background.spawn(self._post("/v1/downloads/pause-all"), "pause every download")

    def resume_all(self) -> None:
        self._background.spawn(self._post("/v1/downloads/resume-all"), "resume every download")

    def forget_finished(self) -> int:
        """Ask the engine to clear its done and cancelled jobs; how many there are now (the mirror follows)."""
        settled = [job for job in self.jobs() if job.state in (JobState.DONE, JobState.CANCELLED)]
        if settled:
            self._background.spawn(self._post("/v1/downloads/forget-finished"), "clear finished downloads")
        return len(settled)

    async def clean_partial_files(self) -> list[hf_cache.PartialFile]:
        """The engine deletes the partial files no job of its queue owns; the ones it removed."""
        answer = await self._post("/v1/cache/clean-partials")
        return [hf_cache.PartialFile(Path(p["path"]), int(p["size_bytes"]), str(p["folder_name"]), str(p["etag"]),
                                     bool(p["from_library"])) for p in answer["removed"]]  # fmt: skip

    async def aclose(self) -> None:
        await self._background.cancel()


# --- what is on disk -----------------------------------------------------------------------------


class RemoteRegistry:
    """The registry's listings read here (the face's disk is the engine's); deletions sent to the engine, whose
    manager unregisters the models first (and refuses, saying why, while one is in use)."""

    def __init__(self, paths: AppPaths, cache_dir: Callable[[], Path], client: EngineClient) -> None:
        self.local = ModelRegistry(paths, cache_dir)
        self.client = client

    @property
    def cache_dir(self) -> Path:
        return self.local.cache_dir

    def loadable_specs(self, include_cache: bool = True) -> list[ModelSpec]:
        return self.local.loadable_specs(include_cache)

    def repo_statuses(self, repo_ids: list[str]) -> dict[str, RepoStatus]:
        return self.local.repo_statuses(repo_ids)

    def cache_contents(self) -> CacheContents:
        return self.local.cache_contents()

    async def _delete(self, body: dict[str, Any]) -> int:
        try:
            answer = await self.client.call_json("POST", "/v1/cache/delete", body, timeout_s=DELETE_TIMEOUT_S)
        except EngineRequestError as exc:
            if exc.status == 409:
                raise ModelManagerError(str(exc)) from None
            raise
        if answer is None:
            raise _no_engine()
        return int(answer["freed"])

    async def delete_repo(self, repo_id: str) -> int:
        return await self._delete({"repo": repo_id})

    async def delete_revision(self, repo_id: str, commit: str) -> int:
        return await self._delete({"repo": repo_id, "revision": commit})


# --- the services --------------------------------------------------------------------------------


class RemoteServices:
    """WorkbenchApi for a face attached to the engine of ``paths``' data folder."""

    attached = True
    recovered_messages = 0  # the engine marks half-written answers incomplete when it starts

    def __init__(self, paths: AppPaths, start: Callable[[], dict[str, Any]] | None = None,
                 hf_cache_dir: Path | None = None, face: str = "tui") -> None:  # fmt: skip
        """``start``: the engine's handshake, starting one when none answers (blocking: run in a thread; default
        workbench.engine_process.start_engine). ``hf_cache_dir``: the Hugging Face cache (default: the standard
        one, HF_HOME / HF_HUB_CACHE)."""
        from workbench.core.engine_home import engine_home

        self.paths = paths
        self.face = face
        self.settings: Settings
        self.settings, self.issues = load_settings(paths.config_file)
        self.catalog: list[CatalogEntry]
        self.catalog, catalog_issues = load_effective_catalog(shipped_path("catalog.toml"), paths.user_catalog)
        self.issues: list[ConfigIssue] = self.issues + catalog_issues
        for issue in self.issues:
            log.warning("config: %s", issue)
        endpoint = os.environ.get("HF_ENDPOINT")
        self.hub = HubCatalog(paths.data_dir / "hub-cache", endpoint=endpoint,
                              context_length=self.settings.context_length)  # fmt: skip
        self.home = engine_home(paths)
        self.client = EngineClient(self.home.socket)
        self._start = start
        self._hf_cache = hf_cache_dir
        self.manager = RemoteModels(self.client)
        # until the engine's first models document: this machine's budget as the engine computes it at start (the
        # Catalog's Fit column must not say "won't fit" for the first second)
        self.manager.budget = resolve_budget(self.settings.budget_gb, self.settings.budget_fraction)
        self.probe = RemoteProbe()
        self.downloads = RemoteDownloads(self.client, lambda: self.hf_cache_dir)
        self.default_import = RemoteImport(self.client)
        self.registry = RemoteRegistry(paths, lambda: self.hf_cache_dir, self.client)
        self.link: EngineLink | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._store: RemoteStore | None = None
        self._embedder: RemoteEmbedder | None = None
        self._closed = False

    # --- what lives in the engine --------------------------------------------------------------

    @property
    def hf_cache_dir(self) -> Path:
        if self._hf_cache is None:
            self._hf_cache = hf_cache.hub_cache_dir()
        return self._hf_cache

    @property
    def store(self) -> RemoteStore | Store:
        """The engine's history, read-only. Before the engine has made the file (its very first start) an empty
        in-memory store stands in; the next use after that opens the real one."""
        from workbench.client.store import RemoteStore
        from workbench.core.storage.db import DatabaseUnavailableError

        if self._store is None:
            try:
                self._store = RemoteStore(self.paths.database_file, self.client)
            except DatabaseUnavailableError as exc:
                if self.paths.database_file.exists():
                    raise
                log.info("history: %s; an empty one stands in", exc)
                from workbench.core.storage.store import Store

                return Store(Path(":memory:"))
        return self._store

    @property
    def embedder(self) -> RemoteEmbedder:
        """The Embeddings pane's embedder: the engine runs the jobs (they outlive this face)."""
        if self._embedder is None:
            from workbench.client.embedder import RemoteEmbedder

            self._embedder = RemoteEmbedder(self.client, self.manager, face=self.face)
        return self._embedder

    def chat_session(self) -> RemoteChatSession:
        """A chat session whose answers the engine runs (and finishes, when this face goes away)."""
        from workbench.client.chat_session import RemoteChatSession

        return RemoteChatSession(self.home.socket, self.settings, self.default_import,  # type: ignore[arg-type]
                                 face=self.face)  # fmt: skip

    def compare_session(self) -> RemoteCompareSession:
        """A compare conversation whose turns the engine runs."""
        from workbench.client.compare_session import RemoteCompareSession

        return RemoteCompareSession(self.home.socket, face=self.face)

    def refresh_local_models(self) -> None:
        """The engine registers what is on disk (at start and after each download): nothing to do here."""

    def discover_remote_models(self) -> tuple[list[ModelSpec], list[str]]:
        return [], []  # the engine asks the endpoints

    async def bring_in_embedded_defaults(self, progress: Callable[[str, float], None] | None = None) -> None:
        await self.default_import.start()

    # --- the link ------------------------------------------------------------------------------

    def on_event(self, topic: str, payload: Any) -> None:
        if topic == "models":
            self.manager.apply(payload)
        elif topic == "memory":
            self.probe.apply(payload)
        elif topic == "downloads":
            self.downloads.apply(payload)
        elif topic == "import":
            self.default_import.apply(payload)

    def start_link(self, on_status: Callable[[LinkStatus], None]) -> EngineLink:
        """Attach (starting the engine when none answers) and keep attached, on the running loop."""
        from workbench.client.link import EngineLink

        if self._start is None:
            from functools import partial

            from workbench.engine_process import start_engine

            self._start = partial(start_engine, self.paths)
        topics = ("models", "memory", "downloads", "import")
        self.link = EngineLink(self.client, self._start, self.face, self.on_event, on_status, topics=topics)
        self._link_task = asyncio.get_running_loop().create_task(self.link.run())
        return self.link

    async def restart_engine(self, timeout_s: float = 30.0) -> None:
        """Stop the engine (it finishes writes, pauses downloads at a chunk boundary) and start a new one."""
        from workbench.client.link import LinkState

        link = self.link
        if link is None:
            return
        if link.status.state is LinkState.ATTACHED:
            await self.client.stop()
            async with asyncio.timeout(timeout_s):
                while link.status.state is LinkState.ATTACHED:
                    await asyncio.sleep(0.05)
        link.reconnect()

    async def aclose(self) -> None:
        """Detach: the link ends, the store closes; the engine's work goes on."""
        if self._closed:
            return
        self._closed = True
        task, self._link_task = self._link_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.downloads.aclose()
        if self._store is not None:
            self._store.close()
