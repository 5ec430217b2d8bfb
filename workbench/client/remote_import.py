"""The engine's first-start import of the default chat model as a face sees it: the same reads as
core/models/wait.DefaultModelImport (status, describe, subscribe, wait), fed by the event stream's ``import``
documents; ``plan`` and ``run`` ask the engine to start it (workbench/server/engine_import.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from workbench.client.engine import EngineClient
from workbench.core.models.wait import ImportListener, ImportState, ImportStatus, describe_import
from workbench.core.wire import WireError, _field

log = logging.getLogger(__name__)


def import_status_from_wire(document: Any) -> tuple[ImportStatus, str]:
    try:
        state = ImportState(_field(document, "state", str))
    except ValueError:
        raise WireError(f"'state' is {document.get('state')!r}") from None
    fraction = _field(document, "fraction", (int, float))
    status = ImportStatus(state, _field(document, "stage", str), float(fraction), _field(document, "error", str))
    return status, _field(document, "name", str)


class RemoteImport:
    def __init__(self, client: EngineClient, name: str = "SmolLM2") -> None:
        self.client = client
        self.name = name
        self._status = ImportStatus()
        self._listeners: list[ImportListener] = []
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def status(self) -> ImportStatus:
        return self._status

    def apply(self, document: Any) -> None:
        """Take an ``import`` document from the event stream."""
        try:
            status, self.name = import_status_from_wire(document)
        except WireError as exc:
            log.warning("the engine's import status was not understood: %s", exc)
            return
        if status != self._status:
            self._status = status
            self._changed.set()
            for listener in list(self._listeners):
                listener(status)

    def describe(self) -> str:
        return describe_import(self._status, self.name)

    def subscribe(self, listener: ImportListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def start(self) -> None:
        """Ask the engine to import the default chat model if it is missing (once; harmless when it is there)."""
        document = await self.client.call_json("POST", "/v1/default-import")
        if document is not None:
            self.apply(document)

    def plan(self) -> None:
        task = asyncio.get_running_loop().create_task(self.start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until the import is no longer coming (done, failed, or never needed)."""
        async with asyncio.timeout(timeout_s):
            while self._status.coming:
                self._changed.clear()
                await self._changed.wait()
