"""The engine's models as a face sees them: a mirror of its one ModelManager with the same read methods the screens
use (models, info, ids, budget, held_bytes, context_length, subscribe), fed by the ``models`` documents of the event
stream (workbench/server/engine_models.py), and the actions (load, unload, pin) sent to the engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from workbench.client.engine import EngineClient, EngineRequestError
from workbench.core.models.lifecycle import ManagerEvent
from workbench.core.models.memory import Budget
from workbench.core.models.spec import ModelInfo, ModelManagerError, ModelRole, ModelState, UnknownModelError
from workbench.core.wire import WireError, _field, model_info_from_wire

log = logging.getLogger(__name__)

Listener = Callable[[ManagerEvent], None]
ACTION_TIMEOUT_S = 900.0  # a load of a large model from a slow disk


def model_cost(info: ModelInfo) -> int | None:
    """What a model holds (or would hold once loaded) against the budget; None when nothing is known of its size."""
    estimate = info.estimate
    if estimate is None:
        return info.measured
    if info.measured is None:
        return estimate.total
    return info.measured + estimate.kv_cache + estimate.overhead


def _evictable(info: ModelInfo) -> bool:
    return info.state is ModelState.READY and info.leases == 0 and not info.pinned


class EngineUnavailableError(ModelManagerError):
    """No engine answers (it is starting again, or was stopped)."""


class RemoteModels:
    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self._infos: dict[str, ModelInfo] = {}
        self.budget = Budget(0, "the engine's (not known yet)")
        self._held = 0
        self.context_length = 4096
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- the mirror ------------------------------------------------------------------------------

    def apply(self, document: Any) -> None:
        """Take a ``models`` document; listeners hear of every model that changed, appeared or went."""
        try:
            infos = {info.spec.id: info for info in map(model_info_from_wire, _field(document, "models", list))}
            budget = _field(document, "budget", dict)
            self.budget = Budget(_field(budget, "bytes", int), _field(budget, "source", str))
            self._held = _field(document, "held_bytes", int)
            self.context_length = _field(document, "context_length", int)
        except WireError as exc:
            log.warning("the engine's models document was not understood: %s", exc)
            return
        changed = [info for model_id, info in infos.items() if self._infos.get(model_id) != info]
        gone = [info for model_id, info in self._infos.items() if model_id not in infos]
        self._infos = infos
        for info in changed:
            self._emit(ManagerEvent(info))
        for info in gone:
            self._emit(ManagerEvent(info, "removed"))

    async def refresh(self) -> None:
        document = await self.client.call_json("GET", "/v1/models/state")
        if document is None:
            raise EngineUnavailableError("no engine answers")
        self.apply(document)

    def _emit(self, event: ManagerEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # --- what the screens read -------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return list(self._infos.values())

    def info(self, model_id: str) -> ModelInfo:
        try:
            return self._infos[model_id]
        except KeyError:
            raise UnknownModelError(f"no model called {model_id!r}") from None

    def ids(self, role: ModelRole) -> list[str]:
        return [model_id for model_id, info in self._infos.items() if info.role is role]

    def role_of(self, model_id: str) -> ModelRole:
        return self.info(model_id).role

    def held_bytes(self) -> int:
        return self._held

    def cost_of(self, model_id: str) -> int | None:
        """As ModelManager.cost_of, from the mirror: measured + KV cache once loaded, else the estimate."""
        info = self.info(model_id)
        return model_cost(info)

    def unevictable_bytes(self, exclude: Iterable[str] = ()) -> int:
        """As ModelManager.unevictable_bytes: what resident models a load could not evict hold, except ``exclude``."""
        skip = set(exclude)
        return sum(model_cost(info) or 0 for info in self._infos.values()
                   if info.resident and info.spec.id not in skip and not _evictable(info))  # fmt: skip

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- what the screens ask --------------------------------------------------------------------

    async def _act(self, action: str, body: dict[str, Any]) -> ModelInfo:
        try:
            document = await self.client.call_json("POST", f"/v1/models/{action}", body, timeout_s=ACTION_TIMEOUT_S)
        except EngineRequestError as exc:
            if exc.status == 404:
                raise UnknownModelError(str(exc)) from None
            raise ModelManagerError(str(exc)) from None
        if document is None:
            raise EngineUnavailableError("no engine answers: it is starting again, or was stopped")
        info = model_info_from_wire(document.get("model"))
        if self._infos.get(info.spec.id) != info:
            self._infos[info.spec.id] = info
            self._emit(ManagerEvent(info))
        return info

    async def load(self, model_id: str) -> ModelInfo:
        return await self._act("load", {"model": model_id})

    async def unload(self, model_id: str) -> None:
        await self._act("unload", {"model": model_id})

    async def set_pinned(self, model_id: str, pinned: bool = True) -> ModelInfo:
        return await self._act("pin", {"model": model_id, "pinned": pinned})

    def pin(self, model_id: str, pinned: bool = True) -> None:
        """As ModelManager.pin (a screen calls it from a key handler): checked here, sent in the background; the
        mirror follows the engine's answer."""
        self.info(model_id)
        task = asyncio.get_running_loop().create_task(self.set_pinned(model_id, pinned))
        self._tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("the engine refused a model action: %s", exc)
