"""The single inference thread: jobs, fair interleaving of streams, stopping, errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from workbench.core.inference import InferenceThread

WAIT = 10


@pytest.fixture
def inference() -> Iterator[InferenceThread]:
    thread = InferenceThread()
    yield thread
    thread.shutdown()


async def test_jobs_run_on_the_inference_thread_in_order(inference: InferenceThread) -> None:
    seen: list[tuple[int, str]] = []
    await asyncio.gather(*(inference.run(lambda i=i: seen.append((i, threading.current_thread().name)))
                           for i in range(5)))  # fmt: skip
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} == {inference.thread.name}


async def test_job_errors_reach_the_caller(inference: InferenceThread) -> None:
    def boom() -> None:
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"):
        await inference.run(boom)


async def test_two_streams_interleave_step_by_step(inference: InferenceThread) -> None:
    order: list[str] = []

    def steps(tag: str) -> Iterator[str]:
        for i in range(5):
            order.append(f"{tag}{i}")
            yield f"{tag}{i}"

    async def consume(tag: str) -> list[str]:
        async with inference.stream(lambda: steps(tag)) as items:
            return [item async for item in items]

    a, b = await asyncio.wait_for(asyncio.gather(consume("a"), consume("b")), WAIT)
    assert a == [f"a{i}" for i in range(5)] and b == [f"b{i}" for i in range(5)]
    # once both are running, neither gets more than one step ahead of the other
    first_b = order.index("b0")
    tail = order[first_b - 1:]
    assert all(tail[i][0] != tail[i + 1][0] for i in range(len(tail) - 2))


async def test_breaking_out_stops_the_generator_within_one_step(inference: InferenceThread) -> None:
    produced: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    async with inference.stream(endless) as items:
        async for item in items:
            if item == 3:
                items.stop()
                stopped_at = len(produced)
                break
    assert await asyncio.to_thread(closed.wait, WAIT)
    assert len(produced) <= stopped_at + 1  # at most the step already running when we asked


async def test_stream_errors_surface_after_the_items_before_them(inference: InferenceThread) -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("backend died")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="backend died"):
        async for item in inference.stream(failing):
            got.append(item)
    assert got == [1]


async def test_a_job_can_run_between_stream_steps(inference: InferenceThread) -> None:
    release = threading.Event()

    def slow_stream() -> Iterator[int]:
        for i in range(3):
            release.wait(WAIT)
            yield i

    async def consume() -> list[int]:
        async with inference.stream(slow_stream) as items:
            return [i async for i in items]

    task = asyncio.create_task(consume())
    job = inference.run(lambda: "job done")
    release.set()
    assert await asyncio.wait_for(job, WAIT) == "job done"
    assert await asyncio.wait_for(task, WAIT) == [0, 1, 2]
