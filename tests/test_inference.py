"""The single inference thread: jobs, fair interleaving of streams, stopping, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.core.models.inference import InferenceThread, TokenStream

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


# --- shutting down ---------------------------------------------------------------------------------


async def drain(items: TokenStream[int]) -> list[int]:
    return [item async for item in items]


async def test_aclose_waits_for_the_work_in_hand_and_closes_open_streams_on_the_thread() -> None:
    inference = InferenceThread()
    started, release = threading.Event(), threading.Event()
    closed_on: list[str] = []

    def endless() -> Iterator[int]:
        try:
            while True:
                yield 1
        finally:
            closed_on.append(threading.current_thread().name)

    def busy() -> str:
        started.set()
        release.wait(WAIT)
        return "done"

    items = inference.stream(endless)
    assert await asyncio.wait_for(items.__anext__(), WAIT) == 1
    job = asyncio.ensure_future(inference.run(busy))
    assert await asyncio.to_thread(started.wait, WAIT)
    closing = asyncio.ensure_future(inference.aclose())
    await asyncio.sleep(0)  # let aclose ask for the shutdown
    assert not closing.done()  # the job in hand still runs
    release.set()
    await asyncio.wait_for(closing, WAIT)
    assert job.done() and job.result() == "done"
    assert closed_on == [inference.thread.name]  # closed there, not wherever the generator is collected
    rest = await asyncio.wait_for(drain(items), WAIT)  # the consumer sees the end
    assert set(rest) <= {1}
    with pytest.raises(RuntimeError, match="shut down"):
        inference.submit(lambda: None)


ENDS_WHILE_MLX_WORKED = """
import asyncio, sys, time
from pathlib import Path
from workbench.core.models.backends.mlx_lm import MlxLmBackend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import Budget

def answer(folder):  # mlx-lm's own generation leaves per-thread MLX state (its compile cache) behind
    import mlx_lm
    model, tokenizer = mlx_lm.load(folder)
    return [r.text for r in mlx_lm.stream_generate(model, tokenizer, [1, 5, 6], max_tokens=3)]

async def main():
    manager = ModelManager({"mlx-lm": MlxLmBackend()}, Budget(2**30, "test"), InferenceThread(), idle_unload_s=None)
    await manager.inference.run(answer, sys.argv[1])
    manager.inference.submit(time.sleep, 0.05)  # a decoding step still running when the program ends
    await manager.aclose()

asyncio.run(main())
print("ended")
"""


def test_a_program_that_ends_right_after_mlx_work_exits_cleanly(tiny_models: dict[str, Path]) -> None:
    """MLX's per-thread clean-up takes the GIL when the thread ends: at interpreter exit that aborted the process
    ("terminate called without an active exception", exit 134) after every `workbench chat`, now and then."""
    result = subprocess.run([sys.executable, "-c", ENDS_WHILE_MLX_WORKED, str(tiny_models["small"])],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (result.returncode, result.stdout.strip()) == (0, "ended"), result.stderr[-2000:]
    assert "terminate" not in result.stderr
