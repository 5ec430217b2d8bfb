"""The model-lifecycle manager shared by every pane.

Panes borrow models through leases: ``async with await manager.acquire(model_id) as lease``. The
manager loads a model on first acquire (once, however many callers wait), keeps it while leased,
evicts idle models least-recently-used first when a load needs room, refuses loads that cannot fit
with a message naming what to unload, unloads models left idle for too long, forgets models whose files
go away (``unregister``: refused while one is leased or loading), and tells subscribers about every
change. All loading and unloading runs on the single inference thread. The types it talks in live in
spec.py, the Backend protocol in backends/protocol.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from workbench.core.models.backends.protocol import Backend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.memory import Budget, MemoryEstimate, format_bytes
from workbench.core.models.spec import (
    RESIDENT_STATES,
    ModelBusyError,
    ModelDoesNotFitError,
    ModelInfo,
    ModelInUseError,
    ModelLoadError,
    ModelManagerError,
    ModelRole,
    ModelSpec,
    ModelState,
    UnknownModelError,
)
from workbench.core.prompt_cache.reuse import PromptReuse, SavedCaches
from workbench.core.prompt_cache.store import PromptCacheStore, cache_limit_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerEvent:
    model: ModelInfo
    message: str = ""


class _Record:
    def __init__(self, spec: ModelSpec, role: ModelRole) -> None:
        self.spec = spec
        self.role = role
        self.state = ModelState.UNLOADED
        self.estimate: MemoryEstimate | None = None
        self.measured: int | None = None
        self.last_used: float | None = None
        self.pinned = False
        self.leases = 0
        self.holders: Counter[str] = Counter()  # who holds the leases ("" for a lease nobody named)
        self.error: str | None = None
        self.handle: Any = None
        self.loading: asyncio.Future[None] | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.unload_at: float | None = None  # on the manager's clock: when the idle timer fires
        # how long it stays once idle (Ollama's keep_alive): None the manager's idle_unload_s, 0 unload at once, <0 stay
        self.keep_alive_s: float | None = None

    @property
    def resident(self) -> bool:
        return self.state in RESIDENT_STATES

    @property
    def evictable(self) -> bool:
        return self.state is ModelState.READY and self.leases == 0 and not self.pinned

    def idle_delay(self, default_s: float | None) -> float | None:
        """How long the model stays once idle (``default_s``: the manager's idle unload); None: it stays."""
        if self.pinned:
            return None
        if self.keep_alive_s is None:
            return default_s or None
        return None if self.keep_alive_s < 0 else self.keep_alive_s

    def unload_in(self, now: float, default_s: float | None) -> float | None:
        if not self.resident:
            return None
        if self.unload_at is not None:
            return max(0.0, self.unload_at - now)
        return self.idle_delay(default_s) if self.leases or self.state is ModelState.LOADING else None

    def cancel_idle_timer(self) -> None:
        self.unload_at = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def why_kept(self) -> str:
        if self.leases:
            return "in use"
        if self.pinned:
            return "pinned"
        return self.state.value

    def refuse_removal(self) -> None:
        """Raise ModelInUseError, saying why, while the model is loading or leased."""
        if self.loading is not None or self.state is ModelState.LOADING:
            raise ModelInUseError(f"{self.spec.name} is loading: wait for it to finish, then try again")
        if self.leases:
            raise ModelInUseError(f"{self.spec.name} is in use by {_holders_text(self.holders)}: stop it first")

    def cost(self) -> int:
        """What this model holds (or will hold) against the budget."""
        if self.estimate is None:
            return self.measured or 0
        if self.measured is None:
            return self.estimate.total
        return self.measured + self.estimate.kv_cache + self.estimate.overhead

    def info(self) -> ModelInfo:
        return ModelInfo(
            spec=self.spec,
            role=self.role,
            state=self.state,
            estimate=self.estimate,
            measured=self.measured,
            last_used=self.last_used,
            pinned=self.pinned,
            leases=self.leases,
            error=self.error,
        )


class Lease:
    """A borrowed, loaded model. Release it (or leave its ``async with``) when done."""

    def __init__(self, manager: ModelManager, spec: ModelSpec, handle: Any, holder: str = "") -> None:
        self._manager = manager
        self.spec = spec
        self.handle = handle
        self.holder = holder
        self.released = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            self.handle = None  # a kept lease object must not keep the weights alive
            self._manager._release(self.spec.id, self.holder)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


Listener = Callable[[ManagerEvent], None]


class ModelManager:
    def __init__(
        self,
        backends: dict[str, Backend],
        budget: Budget,
        inference: InferenceThread,
        context_length: int = 4096,
        idle_unload_s: float | None = 900.0,
        clock: Callable[[], float] = time.monotonic,
        prompt_caches: PromptCacheStore | None = None,
        prompt_cache_disk: SavedCaches | None = None,
    ) -> None:
        self._backends = backends
        # Prompt caches kept for reuse count against the budget on top of the models, and go before any model does.
        self.prompt_caches = prompt_caches or PromptCacheStore(cache_limit_bytes(None, budget.bytes))
        self.prompt_cache_disk = prompt_cache_disk  # the conversations' caches on disk, when kept
        self.budget = budget
        self.inference = inference
        self.context_length = context_length
        self.idle_unload_s = idle_unload_s
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._listeners: list[Listener] = []
        self._plan_lock = asyncio.Lock()
        self._background: set[asyncio.Future[None]] = set()

    # --- registry and queries ---------------------------------------------------------------

    def add_backend(self, backend: Backend) -> None:
        self._backends[backend.kind] = backend

    def register(self, spec: ModelSpec) -> ModelInfo:
        if spec.kind not in self._backends:
            raise ModelManagerError(f"no backend for {spec.kind!r} models ({spec.name})")
        role = ModelRole(self._backends[spec.kind].role)
        record = self._records.get(spec.id)
        if record is None:
            record = self._records[spec.id] = _Record(spec, role)
        elif record.state is ModelState.UNLOADED:
            record.spec, record.role = spec, role
        record.estimate = self._estimate(record)
        self._emit(record, "registered")
        return record.info()

    def models(self) -> list[ModelInfo]:
        return [record.info() for record in self._records.values()]

    def info(self, model_id: str) -> ModelInfo:
        return self._record(model_id).info()

    def ids(self, role: ModelRole) -> list[str]:
        """The registered models of one role, in the order they were registered."""
        return [record.spec.id for record in self._records.values() if record.role is role]

    def role_of(self, model_id: str) -> ModelRole:
        return self._record(model_id).role

    def backend_for(self, model_id: str) -> Backend:
        return self._backends[self._record(model_id).spec.kind]

    def held_bytes(self) -> int:
        """What the resident models and the kept prompt caches hold against the budget."""
        return self.model_bytes() + self.prompt_caches.bytes_used

    def model_bytes(self) -> int:
        """What the resident models hold (or will hold, while loading) against the budget."""
        return sum(r.cost() for r in self._records.values() if r.resident)

    def cost_of(self, model_id: str) -> int | None:
        """What the model holds, or would hold once loaded, against the budget (measured + KV cache once
        loaded, else the estimate); None when nothing is known about its size."""
        record = self._record(model_id)
        if record.estimate is None and record.measured is None:
            return None
        return record.cost()

    def unevictable_bytes(self, exclude: Iterable[str] = ()) -> int:
        """What resident models that a load could not evict (in use, pinned, loading) hold, except ``exclude``."""
        skip = set(exclude)
        return sum(r.cost() for r in self._records.values() if r.resident and r.spec.id not in skip and not r.evictable)

    def prompt_reuse(self, conversation: str | None = None) -> PromptReuse:
        """What a generation may reuse: the kept prompt caches (and the conversation's saved one, if named)."""
        return PromptReuse(self.prompt_caches, self.prompt_cache_disk, conversation)

    def forget_saved_cache(self, key: str) -> None:
        """Delete the saved prompt cache of a conversation (the chat was deleted). Runs on the inference thread after
        the work already submitted there, so an answer's save in flight cannot bring the file back."""
        if self.prompt_cache_disk is not None:
            self.inference.submit(self.prompt_cache_disk.forget, key)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def set_budget(self, budget: Budget) -> None:
        self.budget = budget
        self._update_cache_room()

    # --- leases -------------------------------------------------------------------------------

    async def acquire(self, model_id: str, holder: str = "") -> Lease:
        """Borrow a model, loading it first if needed. ``holder`` names the borrower for the user ("chat", "an API
        request"), e.g. when a delete is refused. Raises ModelManagerError subclasses."""
        record = self._record(model_id)
        record.leases += 1  # counted at once, so nothing evicts the model while we wait for it
        record.holders[holder] += 1
        record.cancel_idle_timer()
        try:
            while record.state is not ModelState.READY and record.state is not ModelState.BUSY:
                if record.loading is None:
                    record.loading = asyncio.ensure_future(self._load(record))
                await asyncio.shield(record.loading)
        except BaseException:
            record.leases -= 1
            record.holders[holder] -= 1
            if record.leases == 0 and record.state is ModelState.BUSY:
                self._set_state(record, ModelState.READY)
            raise
        record.last_used = self._clock()
        self._set_state(record, ModelState.BUSY)
        return Lease(self, record.spec, record.handle, holder)

    async def load(self, model_id: str) -> ModelInfo:
        """Make a model resident without holding it (it stays until evicted or idle-unloaded)."""
        lease = await self.acquire(model_id)
        await lease.release()
        return self.info(model_id)

    def _release(self, model_id: str, holder: str = "") -> None:
        record = self._record(model_id)
        record.leases = max(0, record.leases - 1)
        record.holders[holder] = max(0, record.holders[holder] - 1)
        record.last_used = self._clock()
        if record.leases == 0 and record.state is ModelState.BUSY:
            self._set_state(record, ModelState.READY)
            self._schedule_idle_unload(record)

    # --- user actions -------------------------------------------------------------------------

    async def unload(self, model_id: str) -> None:
        record = self._record(model_id)
        if record.state is ModelState.LOADING and record.loading is not None:
            await asyncio.shield(record.loading)
        if record.leases > 0:
            raise ModelBusyError(f"{record.spec.name} is in use ({record.leases} lease(s)); stop it first")
        async with self._plan_lock:
            if record.state is ModelState.READY and record.leases == 0:
                await self._unload(record, "unloaded")

    async def unregister(self, model_id: str) -> None:
        """Forget a model whose files are going away, unloading it first if it is loaded and idle. Raises
        ModelInUseError (saying "in use by …" or "loading") while it is leased or loading."""
        self._record(model_id).refuse_removal()
        async with self._plan_lock:
            record = self._record(model_id)  # unregistered (or replaced) while we waited for the lock?
            record.refuse_removal()
            del self._records[model_id]  # from here on, acquire() finds no such model
            record.cancel_idle_timer()
            if record.state is ModelState.READY:
                await self._unload(record, "removed")
            if self.prompt_cache_disk is not None:  # its saved caches go with its files
                await self.inference.run(self.prompt_cache_disk.forget_model, model_id)
            self._emit(record, "removed")

    def pin(self, model_id: str, pinned: bool = True) -> None:
        record = self._record(model_id)
        record.pinned = pinned
        if pinned:
            record.cancel_idle_timer()
        else:
            self._schedule_idle_unload(record)
        self._emit(record, "pinned" if pinned else "unpinned")

    async def aclose(self) -> None:
        """Unload everything idle and stop the inference thread (waiting for the work in hand, so nothing of MLX
        still runs when the process exits)."""
        async with self._plan_lock:
            for record in list(self._records.values()):
                record.cancel_idle_timer()
                if record.state is ModelState.READY and record.leases == 0:
                    await self._unload(record, "shutting down")
        await self.inference.aclose()

    async def keep_alive(self, model_id: str, seconds: float | None) -> str:
        """Keep the model loaded ``seconds`` once idle (None: the manager's idle unload; 0: unload as soon as no lease
        holds it, now if none does; negative: keep it). Returns a note for the user when that is not what happens
        (a pinned model stays), else ""."""
        record = self._record(model_id)
        if seconds == 0 and not record.resident:
            return ""  # nothing to unload: a later load keeps the usual idle time
        record.keep_alive_s = seconds
        if record.pinned:
            return f"{record.spec.name} is pinned: it stays loaded until it is unpinned"
        if record.state is ModelState.READY and record.leases == 0:
            if seconds == 0:
                async with self._plan_lock:
                    if record.state is ModelState.READY and record.leases == 0 and not record.pinned:
                        await self._unload(record, "unloaded (keep_alive 0)")
            else:
                self._schedule_idle_unload(record)
        return ""

    def unload_in(self, model_id: str) -> float | None:
        """Seconds until the model is unloaded for being idle (while leased: the time it will stay once released);
        None when it stays (pinned, kept, no idle unload) or is not loaded."""
        return self._record(model_id).unload_in(self._clock(), self.idle_unload_s)

    # --- loading, eviction, unloading ---------------------------------------------------------

    async def _load(self, record: _Record) -> None:
        try:
            async with self._plan_lock:
                record.estimate = self._estimate(record)
                await self._make_room(record)
                record.error = None
                self._set_state(record, ModelState.LOADING, f"loading {record.spec.name}")
            backend = self._backends[record.spec.kind]
            handle, measured = await self.inference.run(_load_on_thread, backend, record.spec)
        except ModelDoesNotFitError as exc:
            record.error = str(exc)
            self._set_state(record, ModelState.UNLOADED, str(exc))
            raise
        except Exception as exc:
            log.exception("loading %s failed", record.spec.id)
            record.error = f"{type(exc).__name__}: {exc}"
            self._set_state(record, ModelState.FAILED, record.error)
            raise ModelLoadError(f"{record.spec.name} failed to load: {record.error}") from exc
        finally:
            record.loading = None
        record.handle = handle
        record.measured = measured
        record.last_used = self._clock()
        self._set_state(record, ModelState.READY, f"{record.spec.name} loaded ({format_bytes(measured)})")

    async def _make_room(self, incoming: _Record) -> None:
        need = incoming.cost()
        budget = self.budget.bytes
        if self.held_bytes() + need > budget and self.prompt_caches.bytes_used:
            await self.inference.run(self.prompt_caches.shrink_to, budget - need - self.model_bytes())
        others = [r for r in self._records.values() if r is not incoming and r.resident]
        for victim in _eviction_order(incoming, others, self.budget):
            if self.held_bytes() + need <= budget:
                return
            if victim.state is ModelState.READY and victim.leases == 0:  # may have been leased meanwhile
                await self._unload(victim, f"evicted to make room for {incoming.spec.name}")
        if self.held_bytes() + need > budget:
            raise ModelDoesNotFitError(
                f"{incoming.spec.name} needs {format_bytes(need)} and the models in use hold "
                f"{format_bytes(self.held_bytes())} of {format_bytes(budget)}: try again when one is free"
            )

    async def _unload(self, record: _Record, reason: str) -> None:
        """Unload a model; the caller holds the plan lock and has checked that it is idle."""
        record.cancel_idle_timer()
        if record.keep_alive_s == 0:  # done what it asked: the next load keeps the usual idle time
            record.keep_alive_s = None
        handle, record.handle = record.handle, None
        self._set_state(record, ModelState.UNLOADING, reason)
        try:
            await self.inference.run(_unload_on_thread, self._backends[record.spec.kind], handle,
                                     lambda: self.prompt_caches.drop_model(record.spec.id))  # fmt: skip
        except Exception:
            log.exception("unloading %s failed", record.spec.id)
        record.measured = None
        self._set_state(record, ModelState.UNLOADED, reason)

    # --- idle unload --------------------------------------------------------------------------

    def _schedule_idle_unload(self, record: _Record) -> None:
        record.cancel_idle_timer()
        delay = record.idle_delay(self.idle_unload_s)
        if delay is None or record.state is not ModelState.READY:
            return
        record.unload_at = self._clock() + delay
        record.idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_expired, record)

    def _idle_expired(self, record: _Record) -> None:
        record.idle_timer = record.unload_at = None
        task = asyncio.ensure_future(self._unload_if_idle(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _unload_if_idle(self, record: _Record) -> None:
        async with self._plan_lock:
            if record.state is ModelState.READY and record.leases == 0 and not record.pinned:
                await self._unload(record, f"idle for {record.idle_delay(self.idle_unload_s) or 0:g} s")

    # --- helpers ------------------------------------------------------------------------------

    def _record(self, model_id: str) -> _Record:
        try:
            return self._records[model_id]
        except KeyError:
            raise UnknownModelError(f"no model called {model_id!r}") from None

    def _estimate(self, record: _Record) -> MemoryEstimate | None:
        try:
            return self._backends[record.spec.kind].estimate(record.spec, self.context_length)
        except Exception as exc:
            log.warning("cannot estimate %s: %s", record.spec.id, exc)
            return record.estimate

    def _set_state(self, record: _Record, state: ModelState, message: str = "") -> None:
        record.state = state
        self._update_cache_room()
        self._emit(record, message)

    def _update_cache_room(self) -> None:
        self.prompt_caches.room_bytes = max(0, self.budget.bytes - self.model_bytes())

    def _emit(self, record: _Record, message: str) -> None:
        event = ManagerEvent(model=record.info(), message=message)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a manager listener failed")


def _eviction_order(incoming: _Record, residents: list[_Record], budget: Budget) -> list[_Record]:
    """The idle models a load may evict, least recently used first; raises ModelDoesNotFitError, naming what
    holds the memory, when even evicting all of them would not make room."""
    need, limit = incoming.cost(), budget.bytes
    evictable = sorted((r for r in residents if r.evictable), key=lambda r: r.last_used or 0.0)
    kept = [r for r in residents if r not in evictable]
    if need > limit:
        raise ModelDoesNotFitError(
            f"{incoming.spec.name} needs {format_bytes(need)}, more than the whole budget "
            f"({format_bytes(limit)}, {budget.source}): raise memory.budget_gb or choose a "
            "smaller build or a shorter context"
        )
    if need + sum(r.cost() for r in kept) > limit:
        holders = ", ".join(f"{r.spec.name} ({r.why_kept()}, {format_bytes(r.cost())})" for r in kept)
        raise ModelDoesNotFitError(
            f"{incoming.spec.name} needs {format_bytes(need)}; the budget is {format_bytes(limit)} and "
            f"{holders} cannot be evicted: unload or unpin one of them, or raise memory.budget_gb"
        )
    return evictable


def _load_on_thread(backend: Backend, spec: ModelSpec) -> tuple[Any, int]:
    backend.prepare()
    before = backend.memory_in_use()
    handle = backend.load(spec)
    measured = backend.loaded_bytes(handle, max(0, backend.memory_in_use() - before))
    # A model and the libraries it pulls in leave ~300k long-lived objects; a full collection over them
    # holds the GIL for ~200 ms and stalls the UI mid-answer (bench/chat_tps.py). Frozen objects are
    # skipped by the collector (refcounting still frees them).
    gc.freeze()
    return handle, measured


def _unload_on_thread(backend: Backend, handle: Any, drop_caches: Callable[[], object]) -> None:
    gc.unfreeze()  # let the collector see the model's reference cycles again
    try:
        drop_caches()  # its prompt caches: they hold its arrays, and no other model can use them
        backend.unload(handle)
    finally:
        gc.freeze()


def _holders_text(holders: Counter[str]) -> str:
    """``chat, compare`` for named holders; ``2 leases`` for unnamed ones."""
    named = sorted(name for name, count in holders.items() if name and count > 0)
    unnamed = holders[""]
    if unnamed:
        named.append(f"{unnamed} lease{'s' if unnamed > 1 else ''}" if not named else f"{unnamed} more")
    return ", ".join(named)


__all__ = ["Lease", "Listener", "ManagerEvent", "ModelManager"]
