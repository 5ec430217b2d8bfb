"""Chat speed benchmark: decode tokens/s through the whole Chat pane vs plain mlx-lm, and event-loop stalls.

Same model (SmolLM2-135M-Instruct, imported from the embedded GGUF to MLX 4-bit), same prompt, greedy
sampling, the same number of tokens, alternating in one process:

- raw: ``mlx_lm.stream_generate`` on a plain thread (an executor of 1), ``generation_tps`` of its last response;
- wb:  the real app as `workbench` builds it, headless, attached to a real engine (`workbench engine` in a process of
  its own, started by the app's first call as for a person): Chat pane (key 3), the prompt typed into the prompt box
  and sent with Enter, the answer running in the engine (ModelManager, the inference thread, ChatRun) and streaming
  over the socket into the pane's Markdown; the figure is the ``generation_tps`` the engine stored with the answer.
  While it streams, a task on the app's event loop sleeps 5 ms in a loop and notes how late each wake-up is: the
  event-loop stall.

Both load the model outside the timing (generation_tps excludes prompt processing anyway).

    .venv/bin/python bench/chat_tps.py [--tokens 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT = "Write a long story about a lighthouse keeper."  # long answers: the model should not stop early
MESSAGES = [{"role": "user", "content": PROMPT}]
WARMUP_TOKENS = 16
SIZE = (120, 40)
TICK_S = 0.005  # the stall monitor's sleep
POLL_S = 0.01
START_TIMEOUT_S = 30.0
GOAL_RATIO = 0.95
GOAL_STALL_MS = 50.0


@dataclass(frozen=True)
class Generation:
    tokens: int
    tps: float
    prompt_tokens: int
    finish: str | None  # "length", "stop" (EOS) or None when unknown
    text: str


@dataclass(frozen=True)
class Stalls:
    """How late the monitor's 5 ms sleeps woke up, in ms."""

    streaming: list[float]  # from the first painted text to the end of the answer
    before_first_text: list[float]  # from Enter to the first painted text (tokenizing, prefill)

    @staticmethod
    def summary(lates: list[float]) -> tuple[float, float]:
        if not lates:
            return 0.0, 0.0
        p99 = statistics.quantiles(lates, n=100)[98] if len(lates) >= 2 else lates[0]
        return max(lates), p99


@dataclass(frozen=True)
class WorkbenchRun:
    generation: Generation
    stalls: Stalls
    first_text_s: float  # Enter to the first painted text
    gc_ms: list[float]  # Python garbage collections that ended while the answer streamed, in ms


def early(generation: Generation, wanted: int) -> str:
    if generation.tokens >= wanted:
        return ""
    return f"  (stopped early: {generation.finish or 'unknown reason'})"


# --- raw mlx-lm -------------------------------------------------------------------------------------


def raw_load(folder: Path) -> tuple[Any, Any]:
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(folder))[:2]
    return model, tokenizer


def raw_generate(model: Any, tokenizer: Any, tokens: int) -> Generation:
    """Plain mlx-lm, greedy; run it on the thread that loaded the model."""
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    prompt_ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    last, pieces = None, []
    for response in mlx_lm.stream_generate(
        model, tokenizer, prompt_ids, max_tokens=tokens, sampler=make_sampler(temp=0.0)
    ):
        last = response
        pieces.append(response.text)
    if last is None:
        raise RuntimeError("mlx-lm generated nothing")
    return Generation(
        last.generation_tokens, last.generation_tps, last.prompt_tokens, last.finish_reason, "".join(pieces)
    )


# --- the workbench, headless ------------------------------------------------------------------------


class StallMonitor:
    """On the event loop: sleep TICK_S again and again and note (wake-up time, lateness in ms)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.samples.append((now, (now - before - TICK_S) * 1000))

    def between(self, start: float, end: float) -> list[float]:
        return [late for at, late in self.samples if start <= at <= end]


class GcPauses:
    """A ``gc.callbacks`` hook: how long each collection took. Collections hold the GIL: every thread waits."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (end time, ms)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self.samples.append((now, (now - self._started) * 1000))

    def between(self, start: float, end: float) -> list[float]:
        return [ms for at, ms in self.samples if start <= at <= end]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        await asyncio.sleep(POLL_S)


async def workbench_generate(home: Path, tokens: int) -> WorkbenchRun:
    """One answer through the real app attached to its engine, the way a person asks for it."""
    from workbench.client.link import LinkState
    from workbench.client.remote_services import RemoteServices
    from workbench.core.chat.sampling import SamplingChoice
    from workbench.core.models.local import DEFAULT_CHAT_ID
    from workbench.core.settings.paths import AppPaths
    from workbench.ui.app import WorkbenchApp
    from workbench.ui.screens.chat import ChatPane
    from workbench.ui.widgets.chat_input import ChatInput

    services = RemoteServices(AppPaths.under(home))
    app = WorkbenchApp(services, import_defaults=False)
    async with app.run_test(size=SIZE, headless=True) as pilot:
        await wait_until(lambda: services.link is not None and services.link.status.state is LinkState.ATTACHED,
                         START_TIMEOUT_S, "the app attached to its engine")  # fmt: skip
        await wait_until(lambda: DEFAULT_CHAT_ID in {i.spec.id for i in services.manager.models()}, START_TIMEOUT_S,
                         "the engine's model listed")  # fmt: skip
        await pilot.press("3")
        await pilot.pause()
        chat = app.screen
        if not isinstance(chat, ChatPane):
            raise RuntimeError(f"key 3 opened {type(chat).__name__}, not the Chat pane")
        await wait_until(lambda: chat.model_id == DEFAULT_CHAT_ID, START_TIMEOUT_S, "the default model chosen")
        chat.sampling = SamplingChoice(values={"temperature": 0.0, "top_p": 1.0, "max_tokens": tokens})
        await services.manager.load(DEFAULT_CHAT_ID)  # what the pane's preload does: outside the timing
        prompt = chat.query_one(ChatInput)
        prompt.focus()
        await pilot.press(*PROMPT)
        await pilot.pause()

        monitor, collections = StallMonitor(), GcPauses()
        watcher = asyncio.create_task(monitor.run())
        gc.callbacks.append(collections)
        try:
            sent = time.perf_counter()
            await pilot.press("enter")
            await wait_until(lambda: chat.answering, START_TIMEOUT_S, "answer started")
            answer = chat.message_views()[-1]
            limit = tokens / 2 + 120
            await wait_until(lambda: bool(answer.markdown.source) or not chat.answering, limit, "text painted")
            first_text = time.perf_counter()
            await wait_until(lambda: not chat.answering, limit, "answer finished")
            done = time.perf_counter()
        finally:
            gc.callbacks.remove(collections)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await pilot.pause()

        assert chat.conversation is not None
        stored = services.store.chats.messages(chat.conversation.id)[-1]  # the engine wrote it; the face reads
        if not stored.figures:
            raise RuntimeError(f"the answer has no figures (status {stored.status}, error {stored.error!r})")
        figures = stored.figures
        finish = "length" if figures["generation_tokens"] >= tokens else "stop"
        generation = Generation(
            figures["generation_tokens"], figures["generation_tps"], figures["prompt_tokens"], finish, stored.content
        )
        stalls = Stalls(monitor.between(first_text, done), before_first_text=monitor.between(sent, first_text))
        return WorkbenchRun(generation, stalls, first_text - sent, collections.between(first_text, done))


async def stop_engine(home: Path) -> None:
    from workbench.client.engine import EngineClient
    from workbench.core.engine_home import engine_home
    from workbench.core.settings.paths import AppPaths

    client = EngineClient(engine_home(AppPaths.under(home)).socket)
    if await client.stop() is not None and not await client.wait_gone(30):
        raise RuntimeError("the engine did not stop")


def workbench_round(models_dir: Path, tokens: int) -> WorkbenchRun:
    """A fresh workbench home (empty database) that sees the imported model through a link; its engine (started
    by the app, as for a person) is stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="chat-tps-home-") as tmp:
        home = Path(tmp)
        (home / "data").mkdir()
        (home / "data" / "models").symlink_to(models_dir, target_is_directory=True)
        os.environ["WORKBENCH_HOME"] = str(home)  # the engine the app starts finds this data folder
        try:
            return asyncio.run(workbench_generate(home, tokens))
        finally:
            asyncio.run(stop_engine(home))


# --- the benchmark ------------------------------------------------------------------------------------


def show_raw(label: str, g: Generation, wanted: int) -> None:
    print(f"{label:<8} raw  {g.tokens:>4} tok  {g.tps:6.2f} tok/s{early(g, wanted)}")


def show_wb(label: str, run: WorkbenchRun, wanted: int) -> None:
    g = run.generation
    stall_max, stall_p99 = Stalls.summary(run.stalls.streaming)
    prefill_max, _ = Stalls.summary(run.stalls.before_first_text)
    print(
        f"{label:<8} wb   {g.tokens:>4} tok  {g.tps:6.2f} tok/s  stall max {stall_max:.1f} ms p99 {stall_p99:.1f} ms"
        f"   (longest gc {max(run.gc_ms, default=0):.0f} ms; first text {run.first_text_s:.1f} s,"
        f" stall before it max {prefill_max:.1f} ms){early(g, wanted)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=256, help="tokens to generate per run (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each kind (default 3)")
    args = parser.parse_args()
    if args.tokens < 1 or args.rounds < 1:
        parser.error("--tokens and --rounds must be at least 1")

    import mlx.core as mx

    from workbench.core.models.gguf_import import import_gguf
    from workbench.core.models.local import DEFAULT_CHAT_ID, smollm2_gguf

    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores, mlx {mx.__version__}"
          f" on {mx.default_device()}")  # fmt: skip
    print(f"prompt   {PROMPT!r}, greedy, {args.tokens} tokens, {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="chat-tps-") as tmp:
        models_dir = Path(tmp) / "data" / "models"
        started = time.perf_counter()
        folder = import_gguf(smollm2_gguf(), models_dir / DEFAULT_CHAT_ID, bits=4)
        print(f"imported the embedded GGUF in {time.perf_counter() - started:.1f} s")

        raw: list[Generation] = []
        ours: list[WorkbenchRun] = []
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raw-mlx") as pool:
            model, tokenizer = pool.submit(raw_load, folder).result()
            show_raw("warm-up", pool.submit(raw_generate, model, tokenizer, WARMUP_TOKENS).result(), WARMUP_TOKENS)
            show_wb("warm-up", workbench_round(models_dir, WARMUP_TOKENS), WARMUP_TOKENS)
            for n in range(1, args.rounds + 1):
                raw.append(pool.submit(raw_generate, model, tokenizer, args.tokens).result())
                show_raw(f"round {n}", raw[-1], args.tokens)
                ours.append(workbench_round(models_dir, args.tokens))
                show_wb(f"round {n}", ours[-1], args.tokens)
            del model, tokenizer

    raw_tps = statistics.median(g.tps for g in raw)
    wb_tps = statistics.median(r.generation.tps for r in ours)
    ratio = wb_tps / raw_tps
    max_stall = max(Stalls.summary(r.stalls.streaming)[0] for r in ours)
    p99_stall = max(Stalls.summary(r.stalls.streaming)[1] for r in ours)
    print(f"median   raw {raw_tps:.2f} tok/s   wb {wb_tps:.2f} tok/s   ratio {ratio:.2f}")
    print(f"stalls   max {max_stall:.1f} ms, worst round p99 {p99_stall:.1f} ms (5 ms sleeps while streaming)")
    longest_gc = max((ms for r in ours for ms in r.gc_ms), default=0.0)
    if max_stall > GOAL_STALL_MS and longest_gc > GOAL_STALL_MS:
        print(f"note: Python's garbage collector paused for up to {longest_gc:.0f} ms while answers streamed"
              " (a full collection holds the GIL; gc.freeze() after loading keeps it short)")  # fmt: skip
    short = [g.tokens for g in raw + [r.generation for r in ours] if g.tokens < args.tokens]
    if short:
        print(f"note: {len(short)} run(s) stopped before {args.tokens} tokens (at {short}): EOS")
    prompts = {g.prompt_tokens for g in raw + [r.generation for r in ours]}
    texts = {g.text for g in raw + [r.generation for r in ours]}
    same = "every answer is the same text" if len(texts) == 1 else f"WARNING: {len(texts)} different answers"
    print(f"check    prompt tokens {sorted(prompts)}; {same}")
    print(f"goals: chat_tps_ratio >= {GOAL_RATIO}, max_stall_ms <= {GOAL_STALL_MS:.0f}")
    print(f"RESULT chat_tps_ratio={ratio:.2f} max_stall_ms={max_stall:.1f}")


if __name__ == "__main__":
    main()
