"""core/model_wait: the first-start import's status, and what a message sent before its model is ready waits for."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from tests.support.fake_chat import FakeChatBackend, fake_spec
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import GB, Budget
from workbench.core.models.spec import ModelSpec
from workbench.core.models.wait import (
    DefaultModelImport,
    ImportState,
    ModelWaitError,
    Progress,
    Ready,
    Waiting,
    can_wait,
    until_ready,
)


@pytest.fixture
async def manager() -> AsyncIterator[ModelManager]:
    manager = ModelManager({"fake-chat": FakeChatBackend()}, Budget(10 * GB, "test"), InferenceThread())
    yield manager
    await manager.aclose()


class Gate:
    """An importer that reports progress from another thread (as the inference thread does) and ends on cue."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, progress: Progress) -> ModelSpec:
        thread = threading.Thread(target=progress, args=("converting weights", 0.4))
        thread.start()
        thread.join()
        await self.release.wait()
        if self.error:
            raise self.error
        spec = fake_spec("SmolLM2-135M-Instruct-4bit")
        self.manager.register(spec)
        return spec


async def test_an_import_nobody_asked_for_is_not_waited_for(manager: ModelManager) -> None:
    default_import = DefaultModelImport(Gate(manager), "SmolLM2")
    assert default_import.status.state is ImportState.IDLE
    assert not can_wait(None, default_import)
    assert can_wait("some-model", default_import)
    assert await default_import.wait() is None
    with pytest.raises(ModelWaitError, match="Choose a model first"):
        async for _step in until_ready(manager, default_import, None):
            pass


async def test_a_message_waits_for_the_import_with_its_progress_then_for_the_load(manager: ModelManager) -> None:
    gate = Gate(manager)
    default_import = DefaultModelImport(gate, "SmolLM2")
    default_import.plan()
    assert can_wait(None, default_import)
    seen: list[str] = []

    async def follow() -> str:
        async for step in until_ready(manager, default_import, None):
            if isinstance(step, Waiting):
                seen.append(step.what)
                if "40 %" in step.what:
                    gate.release.set()
            else:
                assert isinstance(step, Ready)
                return step.model_id
        raise AssertionError("no Ready")

    waiter = asyncio.create_task(follow())
    spec = await asyncio.wait_for(default_import.run(), 10)
    model_id = await asyncio.wait_for(waiter, 10)
    assert model_id == spec.id == "SmolLM2-135M-Instruct-4bit"
    assert seen[0] == "importing SmolLM2…"  # planned, not started yet
    assert "importing SmolLM2 · 40 %" in seen
    assert seen[-1] == "loading SmolLM2-135M-Instruct-4bit…"  # registered but not loaded: the run will load it
    assert default_import.status.state is ImportState.DONE
    assert await default_import.wait() == spec


async def test_a_failed_import_ends_the_wait_with_the_reason(manager: ModelManager) -> None:
    gate = Gate(manager)
    gate.error = OSError("disk full")
    gate.release.set()
    default_import = DefaultModelImport(gate, "SmolLM2")
    default_import.plan()
    with pytest.raises(OSError):
        await default_import.run()
    assert default_import.status.state is ImportState.FAILED
    assert not can_wait(None, default_import)
    with pytest.raises(ModelWaitError, match="Choose a model first"):
        async for _step in until_ready(manager, default_import, None):
            pass


async def test_a_waiter_that_started_before_the_failure_hears_it(manager: ModelManager) -> None:
    gate = Gate(manager)
    gate.error = OSError("disk full")
    default_import = DefaultModelImport(gate, "SmolLM2")
    default_import.plan()

    async def follow() -> None:
        async for _step in until_ready(manager, default_import, None):
            gate.release.set()

    waiter = asyncio.create_task(follow())
    with pytest.raises(OSError):
        await default_import.run()
    with pytest.raises(ModelWaitError, match="SmolLM2 could not be imported: disk full"):
        await asyncio.wait_for(waiter, 10)


async def test_a_ready_model_is_used_at_once(manager: ModelManager) -> None:
    manager.register(fake_spec("m"))
    await manager.load("m")
    default_import = DefaultModelImport(Gate(manager), "SmolLM2")
    steps = [step async for step in until_ready(manager, default_import, "m")]
    assert steps == [Ready("m")]


async def test_progress_updates_are_coalesced_not_queued(manager: ModelManager) -> None:
    release = asyncio.Event()

    async def importer(progress: Progress) -> ModelSpec:
        await release.wait()
        return fake_spec("SmolLM2-135M-Instruct-4bit")

    default_import = DefaultModelImport(importer, "SmolLM2")
    default_import.plan()
    updates = default_import.updates()
    assert (await anext(updates)).state is ImportState.PLANNED
    running = asyncio.create_task(default_import.run())
    while default_import.status.state is not ImportState.RUNNING:
        await asyncio.sleep(0)  # let the task start: no time passes
    for fraction in (0.5, 0.6, 0.7):  # three changes before the reader looks again: it sees the latest only
        default_import._progress("writing", fraction)
    latest = await anext(updates)
    assert (latest.state, latest.fraction) == (ImportState.RUNNING, 0.7)
    release.set()
    await asyncio.wait_for(running, 10)
    assert [status.state async for status in updates] == [ImportState.DONE]
