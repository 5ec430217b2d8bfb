"""The engine's state on the wire: core's snapshots as JSON documents and back, so a face rebuilds the very
dataclasses the screens already show (a ModelInfo, a JobSnapshot, a MemorySnapshot).

Decoding checks every field's type: what crosses the socket is data, and a face running other code than its engine
(an update in between) gets a WireError naming the field rather than a wrong screen.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from workbench.core.hub.downloads.jobs import FileProgress, FileState, JobSnapshot, JobState
from workbench.core.models.memory import MemoryEstimate, MemorySnapshot
from workbench.core.models.spec import ModelInfo, ModelRole, ModelSpec, ModelState

T = TypeVar("T")


class WireError(ValueError):
    """A document that is not the shape this code expects."""


def _field(document: Any, key: str, kind: type[T] | tuple[type, ...], optional: bool = False) -> Any:
    if not isinstance(document, dict):
        raise WireError(f"expected an object holding {key!r}")
    value = document.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise WireError(f"{key!r} is not a number")
    if not isinstance(value, kind):
        raise WireError(f"{key!r} is {type(value).__name__}, not the expected type")
    return value


def _enum(document: Any, key: str, kind: Any) -> Any:
    value = _field(document, key, str)
    try:
        return kind(value)
    except ValueError:
        raise WireError(f"{key!r} is {value!r}, not one of {', '.join(kind)}") from None


NUMBER = (int, float)


# --- models -------------------------------------------------------------------------------------


def model_info_to_wire(info: ModelInfo) -> dict[str, Any]:
    document = asdict(info)
    document["spec"]["path"] = str(info.spec.path)
    return document


def model_info_from_wire(document: Any) -> ModelInfo:
    spec = _field(document, "spec", dict)
    estimate = _field(document, "estimate", dict, optional=True)
    path = Path(_field(spec, "path", str))
    if estimate is not None:
        estimate = MemoryEstimate(_field(estimate, "weights", int), _field(estimate, "kv_cache", int),
                                  _field(estimate, "overhead", int))  # fmt: skip
    return ModelInfo(
        spec=ModelSpec(_field(spec, "id", str), _field(spec, "name", str), _field(spec, "kind", str), path),
        role=_enum(document, "role", ModelRole),
        state=_enum(document, "state", ModelState),
        estimate=estimate,
        measured=_field(document, "measured", int, optional=True),
        last_used=_field(document, "last_used", NUMBER, optional=True),
        pinned=_field(document, "pinned", bool),
        leases=_field(document, "leases", int),
        error=_field(document, "error", str, optional=True),
    )


# --- downloads ----------------------------------------------------------------------------------


def job_to_wire(job: JobSnapshot) -> dict[str, Any]:
    return asdict(job)


def _strings(document: Any, key: str) -> list[str]:
    values = _field(document, key, list)
    if not all(isinstance(value, str) for value in values):
        raise WireError(f"{key!r} holds something other than strings")
    return list(values)


def job_from_wire(document: Any) -> JobSnapshot:
    files = []
    for entry in _field(document, "file_progress", list):
        files.append(FileProgress(_field(entry, "path", str), _field(entry, "size", int, optional=True),
                                  _field(entry, "done_bytes", int), _enum(entry, "state", FileState),
                                  _field(entry, "error", str, optional=True)))  # fmt: skip
    return JobSnapshot(
        id=_field(document, "id", int),
        repo_id=_field(document, "repo_id", str),
        revision=_field(document, "revision", str),
        state=_enum(document, "state", JobState),
        position=_field(document, "position", int),
        files=_strings(document, "files"),
        include=_strings(document, "include"),
        all_files=_field(document, "all_files", bool),
        commit=_field(document, "commit", str, optional=True),
        error=_field(document, "error", str, optional=True),
        message=_field(document, "message", str, optional=True),
        file_progress=files,
        done_bytes=_field(document, "done_bytes", int),
        total_bytes=_field(document, "total_bytes", int, optional=True),
        speed_bps=float(_field(document, "speed_bps", NUMBER)),
        eta_s=_field(document, "eta_s", NUMBER, optional=True),
        created=float(_field(document, "created", NUMBER)),
        updated=float(_field(document, "updated", NUMBER)),
        resume_at=_field(document, "resume_at", NUMBER, optional=True),
    )


# --- memory -------------------------------------------------------------------------------------


def memory_to_wire(snapshot: MemorySnapshot) -> dict[str, Any]:
    return asdict(snapshot)


def memory_from_wire(document: Any) -> MemorySnapshot:
    return MemorySnapshot(
        system_total=_field(document, "system_total", int),
        system_used=_field(document, "system_used", int),
        process_rss=_field(document, "process_rss", int),
        mlx_active=_field(document, "mlx_active", int, optional=True),
        mlx_peak=_field(document, "mlx_peak", int, optional=True),
        mlx_cache=_field(document, "mlx_cache", int, optional=True),
    )
