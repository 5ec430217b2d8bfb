"""The single inference thread.

MLX binds streams to threads, so every piece of MLX work (loads, prefill, decode steps, unloads) runs
on this one thread. Plain jobs run in the order they were submitted. Token streams are generators that
the thread advances one step at a time, round-robin, between jobs: two generations (the compare pane)
stream fairly, and a stop request is seen before the next step. Results cross to the event loop with
``call_soon_threadsafe``; the thread never waits for the loop, so a busy UI does not slow decoding.

Shutting down: the thread finishes the jobs submitted before, closes the streams still open (on the thread, where
their MLX state lives) and says so. Once MLX has been imported it then stays parked until the process exits
(see ``_park``): MLX's per-thread clean-up cannot safely run at the end of a Python program.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

PARK_WAIT_S = 1.0  # how long shutting down waits for the thread to reach its final wait
PARK_SETTLE_S = 0.01  # and then lets it step into the wait (a few bytecodes)

T = TypeVar("T")

_END = object()


@dataclass(eq=False)
class _Stream:
    factory: Callable[[], Iterator[Any]]
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Any]
    stop: threading.Event = field(default_factory=threading.Event)
    iterator: Iterator[Any] | None = None


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class TokenStream(Generic[T]):
    """The event-loop side of a stream running on the inference thread."""

    def __init__(self, state: _Stream, wake: threading.Event) -> None:
        self._state = state
        self._wake = wake
        self._done = False

    def stop(self) -> None:
        """Ask the thread to close the generator before its next step (returns at once)."""
        self._state.stop.set()
        self._wake.set()

    def __aiter__(self) -> TokenStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._state.out.get()
        except asyncio.CancelledError:
            self.stop()
            raise
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item

    async def __aenter__(self) -> TokenStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()


class InferenceThread:
    """One daemon thread that owns all MLX work."""

    def __init__(self, name: str = "workbench-inference") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._streams: deque[_Stream] = deque()
        self._new_streams: queue.SimpleQueue[_Stream] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._closed = False
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._parked = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        if self._closed:
            raise RuntimeError("the inference thread is shut down")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((lambda: fn(*args, **kwargs), future))
        self._wake.set()
        return future

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the inference thread and await its result."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def stream(self, factory: Callable[[], Iterator[T]]) -> TokenStream[T]:
        """Advance, on the thread, a generator that ``factory`` creates there; iterate it from the loop.

        Use it as ``async with inference.stream(make) as items: async for item in items: ...``;
        ``stop()`` (or leaving the block, or cancelling the consuming task) closes the generator
        before its next step.
        """
        if self._closed:
            raise RuntimeError("the inference thread is shut down")
        state = _Stream(factory=factory, loop=asyncio.get_running_loop(), out=asyncio.Queue())
        self._new_streams.put(state)
        self._wake.set()
        return TokenStream(state, self._wake)

    def thread_stream(self, factory: Callable[[], Iterator[T]]) -> TokenStream[T]:
        """Like :meth:`stream`, but the generator runs on a thread of its own. For generators that wait on
        the network (remote endpoints): on this thread they would hold up every MLX stream between chunks.
        A stop is seen before the next item; closing the generator closes its connection."""
        if self._closed:
            raise RuntimeError("the inference thread is shut down")
        state = _Stream(factory=factory, loop=asyncio.get_running_loop(), out=asyncio.Queue())
        threading.Thread(target=self._drive, args=(state,), name="workbench-remote-stream", daemon=True).start()
        return TokenStream(state, threading.Event())

    def _drive(self, state: _Stream) -> None:
        try:
            state.iterator = state.factory()
            for item in state.iterator:
                if state.stop.is_set():
                    break
                self._deliver(state, item)
        except BaseException as exc:
            log.warning("stream failed: %s", exc)
            self._deliver(state, _Failure(exc))
            return
        self._close(state)

    def shutdown(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Take no more work. The jobs already submitted run, open streams are closed (their consumers see the end)
        and the thread lets go of them; ``wait`` blocks until it has, at most ``timeout`` seconds."""
        finished = self._request_shutdown()
        if wait and threading.current_thread() is not self._thread:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                finished.result(timeout)
            if finished.done() and "mlx.core" in sys.modules and self._parked.wait(PARK_WAIT_S):
                time.sleep(PARK_SETTLE_S)

    async def aclose(self, timeout: float = 30.0) -> None:
        """:meth:`shutdown` for the event loop: awaits the end of the work in hand without blocking the loop."""
        finished = self._request_shutdown()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(finished)), timeout)
        if finished.done() and "mlx.core" in sys.modules:
            deadline = time.monotonic() + PARK_WAIT_S
            while not self._parked.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(PARK_SETTLE_S)
            await asyncio.sleep(PARK_SETTLE_S)

    def _request_shutdown(self) -> concurrent.futures.Future[None]:
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._wake.set()
        return self._finished

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            while not self._new_streams.empty():
                self._streams.append(self._new_streams.get())
            ran_job = self._run_one_job()
            if ran_job is None:  # shutdown
                self._finish()
                return
            if self._streams:
                self._step_each_stream()
            elif not ran_job:
                self._wake.wait()

    def _run_one_job(self) -> bool | None:
        try:
            item = self._jobs.get_nowait()
        except queue.Empty:
            return False
        if item is None:
            return None
        fn, future = item
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
        return True

    def _finish(self) -> None:
        while not self._new_streams.empty():
            self._streams.append(self._new_streams.get())
        while self._streams:
            self._close(self._streams.popleft())  # here, not wherever the generator would be collected
        while not self._jobs.empty():  # submitted while shutdown was being asked for
            item = self._jobs.get_nowait()
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(RuntimeError("the inference thread is shut down"))
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self._finished.set_result(None)
        if "mlx.core" in sys.modules:
            self._park()

    def _park(self) -> None:
        """Never end. A thread that ran mlx-lm carries MLX thread-local state (the compile cache) whose destructors
        take the GIL when the OS thread ends, after Python's ``join`` has already returned. If that happens while
        the interpreter finalizes, CPython ends the thread from inside a C++ destructor and the process aborts
        ("terminate called without an active exception", exit 134). A daemon thread that never ends is simply
        dropped when the process exits; it holds no model (those were unloaded through this thread).

        The thread must be inside that wait, not merely on its way, when the interpreter finalizes: a daemon thread
        that asks for the GIL then is ended the same fatal way. So it says when it is about to block, and the
        shutting-down side lets it get there (``PARK_SETTLE_S``) before it returns."""
        gate = threading.Lock()
        gate.acquire()
        self._parked.set()
        gate.acquire()

    def _step_each_stream(self) -> None:
        for _ in range(len(self._streams)):
            state = self._streams.popleft()
            if state.stop.is_set():
                self._close(state)
                continue
            try:
                if state.iterator is None:
                    state.iterator = state.factory()
                item = next(state.iterator)
            except StopIteration:
                self._deliver(state, _END)
                continue
            except BaseException as exc:
                log.exception("inference stream failed")
                self._deliver(state, _Failure(exc))
                continue
            self._deliver(state, item)
            self._streams.append(state)

    def _close(self, state: _Stream) -> None:
        close = getattr(state.iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing a stopped stream failed")
        self._deliver(state, _END)

    @staticmethod
    def _deliver(state: _Stream, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            state.loop.call_soon_threadsafe(state.out.put_nowait, item)
