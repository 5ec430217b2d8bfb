"""A message sent before its model is ready: the first-start import of the default chat model, then its load.

The message is kept and sent when the model is ready; this module decides whether a message can wait, what it
waits for (in words the screen shows: "importing SmolLM2 · 40 %", "loading SmolLM2…"), and when it can go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.spec import ModelSpec, ModelState

Progress = Callable[[str, float], None]  # (stage, fraction 0..1); may be called from any thread
Importer = Callable[[Progress], Awaitable[ModelSpec]]  # imports the model, registers it, returns its spec
ImportListener = Callable[["ImportStatus"], None]


class ImportState(StrEnum):
    IDLE = "idle"  # nothing to import, or nobody asked for it
    PLANNED = "planned"  # the app will start it in a moment (after its first frame)
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ImportStatus:
    state: ImportState = ImportState.IDLE
    stage: str = ""
    fraction: float = 0.0
    error: str = ""

    @property
    def coming(self) -> bool:
        """Whether the model is on its way: a message sent now can wait for it."""
        return self.state in (ImportState.PLANNED, ImportState.RUNNING)


def describe_import(status: ImportStatus, name: str) -> str:
    """What a message waiting for the import of ``name`` waits for, in words."""
    if status.state is ImportState.PLANNED:
        return f"importing {name}…"
    if status.state is ImportState.FAILED:
        return f"{name} could not be imported: {status.error}"
    return f"importing {name} · {round(status.fraction * 100)} %"


class DefaultModelImport:
    """The one first-start import of the default chat model. It runs once; messages wait for it; the app and
    the panes watch its progress (listeners are called on the event loop)."""

    def __init__(self, importer: Importer, name: str) -> None:
        self._importer = importer
        self.name = name
        self._status = ImportStatus()
        self._listeners: list[ImportListener] = []
        self._finished = asyncio.Event()
        self._spec: ModelSpec | None = None

    @property
    def status(self) -> ImportStatus:
        return self._status

    def describe(self) -> str:
        """What a waiting message waits for, in words."""
        return describe_import(self._status, self.name)

    def subscribe(self, listener: ImportListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def plan(self) -> None:
        """Say that the import will start soon, so a message sent before it starts waits instead of being refused."""
        if self._status.state is ImportState.IDLE:
            self._set(ImportStatus(ImportState.PLANNED))

    async def run(self) -> ModelSpec:
        """Import (once); raises what the importer raises, after telling the listeners and the waiters."""
        if self._status.state in (ImportState.RUNNING, ImportState.DONE):
            spec = await self.wait()
            if spec is None:
                raise RuntimeError(self._status.error)
            return spec
        loop = asyncio.get_running_loop()

        def progress(stage: str, fraction: float) -> None:
            loop.call_soon_threadsafe(self._progress, stage, fraction)

        self._finished.clear()
        self._set(ImportStatus(ImportState.RUNNING))
        try:
            spec = await self._importer(progress)
        except BaseException as exc:
            self._set(ImportStatus(ImportState.FAILED, error=str(exc) or type(exc).__name__))
            self._finished.set()
            raise
        self._spec = spec
        self._set(ImportStatus(ImportState.DONE, fraction=1.0))
        self._finished.set()
        return spec

    async def wait(self) -> ModelSpec | None:
        """The imported model's spec once the import ends; None if it failed or was never asked for."""
        if not self._status.coming:
            return self._spec
        await self._finished.wait()
        return self._spec

    async def updates(self) -> AsyncIterator[ImportStatus]:
        """The status now and after each change until the import ends. Coalesced: a slow reader gets the latest,
        never a backlog."""
        changed = asyncio.Event()
        unsubscribe = self.subscribe(lambda _status: changed.set())
        try:
            while True:
                changed.clear()
                status = self._status
                yield status
                if not status.coming:
                    return
                await changed.wait()
        finally:
            unsubscribe()

    def _progress(self, stage: str, fraction: float) -> None:
        if self._status.state is ImportState.RUNNING:
            self._set(replace(self._status, stage=stage, fraction=max(0.0, min(1.0, fraction))))

    def _set(self, status: ImportStatus) -> None:
        self._status = status
        for listener in list(self._listeners):
            listener(status)


# --- waiting for a chat model ------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    what: str  # "importing SmolLM2 · 40 %", "loading SmolLM2 135M Instruct (4-bit)…"


@dataclass(frozen=True)
class Ready:
    model_id: str


class ModelWaitError(Exception):
    """The message cannot be answered: no model chosen and none on its way, or the import failed."""


NO_MODEL = "Choose a model first (ctrl+l)."


def can_wait(model_id: str | None, default_import: DefaultModelImport) -> bool:
    """Whether a message sent now will be answered: a model is chosen, or the default one is on its way."""
    return model_id is not None or default_import.status.coming


async def until_ready(
    manager: ModelManager, default_import: DefaultModelImport, model_id: str | None, load_step: bool = True
) -> AsyncIterator[Waiting | Ready]:
    """What a message sent now waits for, step by step, ending with the model to send it to.

    With no model chosen it waits for the default model's import; a model that is not loaded yet is loaded by
    the run that answers (``load_step`` says so first). Raises ModelWaitError when nothing will come."""
    if model_id is None:
        if not default_import.status.coming:
            raise ModelWaitError(NO_MODEL)
        async for _status in default_import.updates():
            yield Waiting(default_import.describe())
        spec = await default_import.wait()
        if spec is None:
            raise ModelWaitError(default_import.describe())
        model_id = spec.id
    if load_step:
        info = manager.info(model_id)
        if info.state not in (ModelState.READY, ModelState.BUSY):
            yield Waiting(f"loading {info.spec.name}…")
    yield Ready(model_id)
