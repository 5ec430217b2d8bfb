"""What the model manager talks about: a model's spec, role and state, the snapshot the faces see, and the errors
meant for the user."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from workbench.core.models.memory import MemoryEstimate


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"
    UNLOADING = "unloading"
    FAILED = "failed"


RESIDENT_STATES = frozenset({ModelState.LOADING, ModelState.READY, ModelState.BUSY, ModelState.UNLOADING})


class ModelRole(StrEnum):
    """What a model is for. Its backend declares it (``Backend.role``); every face reads it from the manager
    (``ModelInfo.role``, ``ModelManager.ids``), never from the backend's kind or type."""

    CHAT = "chat"
    EMBED = "embed"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    kind: str  # the backend that loads it: "mlx-lm", "sentence-transformers", ...
    path: Path


@dataclass(frozen=True)
class ModelInfo:
    """A snapshot of one model, safe to hand to the UI."""

    spec: ModelSpec
    role: ModelRole
    state: ModelState
    estimate: MemoryEstimate | None
    measured: int | None
    last_used: float | None
    pinned: bool
    leases: int
    error: str | None = None

    @property
    def resident(self) -> bool:
        return self.state in RESIDENT_STATES


class ModelManagerError(Exception):
    """Errors meant for the user."""


class UnknownModelError(ModelManagerError):
    pass


class ModelDoesNotFitError(ModelManagerError):
    pass


class ModelBusyError(ModelManagerError):
    pass


class ModelInUseError(ModelBusyError):
    """A model cannot be unregistered (its files cannot be deleted): it is leased or loading; the message says which."""


class ModelLoadError(ModelManagerError):
    pass


__all__ = [
    "RESIDENT_STATES",
    "ModelBusyError",
    "ModelDoesNotFitError",
    "ModelInUseError",
    "ModelInfo",
    "ModelLoadError",
    "ModelManagerError",
    "ModelRole",
    "ModelSpec",
    "ModelState",
    "UnknownModelError",
]
