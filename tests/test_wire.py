"""Core snapshots survive the trip to a face and back (workbench/core/wire.py); a wrong shape is named, not shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.core.hub.downloads.jobs import FileProgress, FileState, JobSnapshot, JobState
from workbench.core.models.memory import MemoryEstimate, MemorySnapshot
from workbench.core.models.spec import ModelInfo, ModelRole, ModelSpec, ModelState
from workbench.core.wire import (
    WireError,
    job_from_wire,
    job_to_wire,
    memory_from_wire,
    memory_to_wire,
    model_info_from_wire,
    model_info_to_wire,
)


def through_json(document: object) -> object:
    return json.loads(json.dumps(document))


def model_info(**changes: object) -> ModelInfo:
    fields: dict[str, object] = {
        "spec": ModelSpec("mlx:SmolLM2", "SmolLM2", "mlx-lm", Path("/models/SmolLM2")), "role": ModelRole.CHAT,
        "state": ModelState.READY, "estimate": MemoryEstimate(100, 20, 3), "measured": 110, "last_used": 12.5,
        "pinned": True, "leases": 1, "error": None,
    }  # fmt: skip
    return ModelInfo(**{**fields, **changes})  # type: ignore[arg-type]


FAILED = model_info(estimate=None, measured=None, last_used=None, state=ModelState.FAILED, error="out of memory")


@pytest.mark.parametrize("info", [model_info(), FAILED])
def test_a_model_info_comes_back_equal(info: ModelInfo) -> None:
    assert model_info_from_wire(through_json(model_info_to_wire(info))) == info


def test_a_download_job_comes_back_equal() -> None:
    job = JobSnapshot(id=3, repo_id="org/model", revision="main", state=JobState.DOWNLOADING, position=0,
                      files=["config.json", "model.safetensors"], include=["*.json"], all_files=False, commit="a" * 40,
                      error=None, message="retrying in 2 s",
                      file_progress=[FileProgress("config.json", 10, 10, FileState.DONE),
                                     FileProgress("model.safetensors", None, 5, FileState.FAILED, "checksum")],
                      done_bytes=15, total_bytes=None, speed_bps=1.5, eta_s=None, created=1.0, updated=2,
                      resume_at=None)  # fmt: skip
    back = job_from_wire(through_json(job_to_wire(job)))
    assert back == job and back.files_done == 1


def test_a_memory_sample_comes_back_equal() -> None:
    sample = MemorySnapshot(system_total=16 << 30, system_used=8 << 30, process_rss=1 << 20, mlx_active=5)
    assert memory_from_wire(through_json(memory_to_wire(sample))) == sample


@pytest.mark.parametrize(("change", "named"), [
    ({"state": "exploded"}, "'state'"),
    ({"leases": "1"}, "'leases'"),
    ({"pinned": 1}, "'pinned'"),
    ({"measured": True}, "'measured'"),
    ({"spec": {"id": "x", "name": "x", "kind": "mlx-lm"}}, "'path'"),
    ({"spec": ["not", "an", "object"]}, "'spec'"),
])  # fmt: skip
def test_a_wrong_shape_names_its_field(change: dict[str, object], named: str) -> None:
    document = {**model_info_to_wire(model_info()), **change}
    with pytest.raises(WireError, match=named):
        model_info_from_wire(document)


def test_a_job_with_a_list_of_non_strings_is_refused() -> None:
    document = job_to_wire(JobSnapshot(1, "o/r", "main", JobState.QUEUED, 0, [], [], True, None, None, None, [], 0,
                                       None, 0.0, None, 0.0, 0.0))  # fmt: skip
    document["files"] = [1, 2]
    with pytest.raises(WireError, match="'files'"):
        job_from_wire(document)
