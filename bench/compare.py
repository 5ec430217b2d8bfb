"""Compare benchmark: one compare (two models side by side) against the two solo answers it replaces.

Two genuinely different models, both imported from the embedded SmolLM2-135M-Instruct GGUF: A at MLX 4-bit,
B at MLX 8-bit. Both are loaded through one ModelManager before any timing (a budget large enough for the
memory plan to run them together), then, alternating in one process with the order rotated each round:

- solo A, solo B: one ``ChatRun`` each, greedy, iterated to its end; the wall time of each;
- compare: one ``CompareRun`` of both (plan: together), iterated to its end; its wall time, and each side's
  time to first token from the start of the compare. Both sides share the one inference thread, which
  decodes them step by step in turn, so the side whose first token comes second waits for roughly both
  prefills: that side's time to first token is ``second_ttft_s``.

``compare_ratio`` = median compare wall time / median (solo A + solo B wall time of the same round).

    .venv/bin/python bench/compare.py [--tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.core.chat.run import ChatMessage, ChatRun, Finished, GenerationFigures, Token
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.compare.run import CompareRun, Contender, PlanKind, SideEvent, SideFailed, plan_memory
from workbench.core.models.backends.mlx_lm import MlxLmBackend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.memory import Budget, format_bytes
from workbench.core.models.spec import ModelSpec

PROMPT = "Write a long story about a lighthouse keeper."  # long answers: the models should not stop early
MODEL_A = "smol-4bit"
MODEL_B = "smol-8bit"
LABELS = {MODEL_A: "A", MODEL_B: "B"}
WARMUP_TOKENS = 16
BUDGET_BYTES = 1 << 34
LOAD_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 30.0
GOAL_RATIO = 1.05
KINDS = ("solo A", "solo B", "compare")


def gen_tps(sides: list[Side]) -> float:
    """The median decode speed mlx-lm reported (prompt processing excluded); 0 when none finished."""
    rates = [s.figures.generation_tps for s in sides if s.figures]
    return statistics.median(rates) if rates else 0.0


def run_timeout(tokens: int) -> float:
    """A bound for one solo answer: ~7 tok/s here, so a second a token is generous; a compare gets twice that."""
    return 60.0 + tokens


@dataclass
class Side:
    """One answer as the benchmark saw it."""

    model_id: str
    ttft_s: float | None = None  # from the start of the run (solo or compare) to its first token
    pieces: list[str] = field(default_factory=list)
    figures: GenerationFigures | None = None
    finish_reason: str | None = None
    failed: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return self.figures.generation_tokens if self.figures else 0

    def note(self, wanted: int) -> str:
        if self.failed:
            return f"  FAILED: {self.failed}"
        if self.tokens >= wanted:
            return ""
        return f"  (stopped early at {self.tokens}: {self.finish_reason or 'unknown reason'})"

    def finish(self, event: Finished) -> None:
        self.figures = event.figures
        self.finish_reason = event.finish_reason
        if event.figures is None:
            self.failed = "no figures (nothing generated)" if not event.stopped else "stopped"


@dataclass(frozen=True)
class Solo:
    wall_s: float
    side: Side


@dataclass(frozen=True)
class Compared:
    wall_s: float
    sides: dict[str, Side]  # "a", "b"

    @property
    def second(self) -> tuple[str, float]:
        """The side whose first token came second, and its time to first token (inf when it never came)."""
        times = {side: s.ttft_s if s.ttft_s is not None else float("inf") for side, s in self.sides.items()}
        side = max(times, key=lambda k: times[k])
        return side, times[side]


def sampling(tokens: int) -> SamplingSettings:
    return SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=tokens)


def messages() -> list[ChatMessage]:
    return [ChatMessage("user", PROMPT)]


async def solo(manager: ModelManager, model_id: str, tokens: int) -> Solo:
    side = Side(model_id)
    async with asyncio.timeout(run_timeout(tokens)):
        started = time.perf_counter()
        run = ChatRun(manager, model_id, messages(), sampling(tokens))
        async for event in run.events():
            if isinstance(event, Token):
                if side.ttft_s is None:
                    side.ttft_s = time.perf_counter() - started
                side.pieces.append(event.text)
            elif isinstance(event, Finished):
                side.finish(event)
        wall = time.perf_counter() - started
    return Solo(wall, side)


def contenders(tokens: int) -> tuple[Contender, Contender]:
    return Contender(MODEL_A, "A", sampling(tokens)), Contender(MODEL_B, "B", sampling(tokens))


async def compare(manager: ModelManager, tokens: int) -> Compared:
    a, b = contenders(tokens)
    plan = plan_memory(manager, a, b)
    if plan.kind is not PlanKind.TOGETHER:
        raise RuntimeError(f"the memory plan is {plan.kind.label!r} ({plan.reason}), not together")
    sides = {"a": Side(MODEL_A), "b": Side(MODEL_B)}
    async with asyncio.timeout(2 * run_timeout(tokens)):
        started = time.perf_counter()
        run = CompareRun(manager, a, b, messages(), messages(), plan)
        item: SideEvent
        async for item in run.events():
            side, event = sides[item.side], item.event
            if isinstance(event, Token):
                if side.ttft_s is None:
                    side.ttft_s = time.perf_counter() - started
                side.pieces.append(event.text)
            elif isinstance(event, Finished):
                side.finish(event)
            elif isinstance(event, SideFailed):
                side.failed = event.error
        wall = time.perf_counter() - started
    return Compared(wall, sides)


# --- output ---------------------------------------------------------------------------------------


def tps(side: Side) -> str:
    return f"{side.figures.generation_tps:5.2f} tok/s" if side.figures else "   -- tok/s"


def show_solo(label: str, kind: str, result: Solo, wanted: int) -> None:
    s = result.side
    ttft = f"{s.ttft_s:.2f} s" if s.ttft_s is not None else "--"
    print(f"{label:<8} {kind:<8} {result.wall_s:6.2f} s   {s.tokens:>4} tok  {tps(s)}  first token {ttft}"
          f"{s.note(wanted)}")  # fmt: skip


def show_compare(label: str, result: Compared, wanted: int, solo_sum: float | None) -> None:
    second, _ = result.second
    parts = []
    for key, s in result.sides.items():
        ttft = f"{s.ttft_s:.2f} s" if s.ttft_s is not None else "--"
        parts.append(f"{key.upper()} {s.tokens:>4} tok {tps(s)} first token {ttft}{s.note(wanted)}")
    versus = f"   vs solo A + B {solo_sum:.2f} s: {result.wall_s / solo_sum:.2f}x" if solo_sum else ""
    print(f"{label:<8} {'compare':<8} {result.wall_s:6.2f} s   {' | '.join(parts)}   (second: {second.upper()})"
          f"{versus}")  # fmt: skip


# --- the benchmark --------------------------------------------------------------------------------


async def one_round(manager: ModelManager, label: str, tokens: int, order: list[str]) -> tuple[Solo, Solo, Compared]:
    solos: dict[str, Solo] = {}
    compared: Compared | None = None
    for kind in order:
        if kind == "compare":
            compared = await compare(manager, tokens)
        else:
            model_id = MODEL_A if kind == "solo A" else MODEL_B
            solos[kind] = await solo(manager, model_id, tokens)
    assert compared is not None
    a, b = solos["solo A"], solos["solo B"]
    show_solo(label, "solo A", a, tokens)
    show_solo(label, "solo B", b, tokens)
    show_compare(label, compared, tokens, a.wall_s + b.wall_s)
    return a, b, compared


async def run(folders: dict[str, Path], tokens: int, rounds: int) -> None:
    manager = ModelManager(
        backends={"mlx-lm": MlxLmBackend()},
        budget=Budget(BUDGET_BYTES, "bench"),
        inference=InferenceThread(),
        idle_unload_s=None,
    )
    try:
        for model_id, folder in folders.items():
            manager.register(ModelSpec(id=model_id, name=model_id, kind="mlx-lm", path=folder))
            started = time.perf_counter()
            info = await asyncio.wait_for(manager.load(model_id), LOAD_TIMEOUT_S)
            cost = manager.cost_of(model_id)
            print(f"loaded   {LABELS[model_id]} = {model_id} in {time.perf_counter() - started:.1f} s"
                  f" (weights {format_bytes(info.measured or 0)}, cost {format_bytes(cost or 0)})")  # fmt: skip
        plan = plan_memory(manager, *contenders(tokens))
        print(f"plan     {plan.kind.label}: {plan.reason}")

        print(f"order    rotated each round: {', '.join(KINDS)}")
        await one_round(manager, "warm-up", WARMUP_TOKENS, list(KINDS))

        solo_a: list[Solo] = []
        solo_b: list[Solo] = []
        compares: list[Compared] = []
        for n in range(rounds):
            order = list(KINDS[n % 3 :] + KINDS[: n % 3])
            a, b, c = await one_round(manager, f"round {n + 1}", tokens, order)
            solo_a.append(a)
            solo_b.append(b)
            compares.append(c)
    finally:
        await asyncio.wait_for(manager.aclose(), CLOSE_TIMEOUT_S)

    report(solo_a, solo_b, compares, tokens)


def report(solo_a: list[Solo], solo_b: list[Solo], compares: list[Compared], tokens: int) -> None:
    sums = [a.wall_s + b.wall_s for a, b in zip(solo_a, solo_b, strict=True)]
    compare_wall = statistics.median(c.wall_s for c in compares)
    solo_sum = statistics.median(sums)
    ratio = compare_wall / solo_sum
    second_ttft = statistics.median(c.second[1] for c in compares)
    first_ttft = statistics.median(min(s.ttft_s or float("inf") for s in c.sides.values()) for c in compares)
    wall_a, wall_b = statistics.median(s.wall_s for s in solo_a), statistics.median(s.wall_s for s in solo_b)
    print(f"median   compare {compare_wall:.2f} s   solo A + solo B {solo_sum:.2f} s"
          f" (A {wall_a:.2f} s, B {wall_b:.2f} s)   ratio {ratio:.2f}")  # fmt: skip
    solo_ttft = {label: statistics.median(s.side.ttft_s or float("inf") for s in runs)
                 for label, runs in (("A", solo_a), ("B", solo_b))}  # fmt: skip
    print(f"ttft     compare: first side {first_ttft:.2f} s, second side {second_ttft:.2f} s"
          f"   (solo: A {solo_ttft['A']:.2f} s, B {solo_ttft['B']:.2f} s)")  # fmt: skip
    prefill = [s.figures for s in (x.side for x in solo_a + solo_b) if s.figures]
    if prefill:
        counts = sorted({f.prompt_tokens for f in prefill})
        rate = statistics.median(f.prompt_tps for f in prefill)
        print(f"         prompt {counts} tokens, processed at {rate:.1f} tok/s (solo): the second side waits for"
              " both prefills")  # fmt: skip
    seconds = [c.second[0].upper() for c in compares]
    print(f"         the second side to start was {', '.join(seconds)} (per round)")

    # where the time goes: decode speeds alone and interleaved (mlx-lm's figures, prefill excluded)
    alone = {"A": gen_tps([s.side for s in solo_a]), "B": gen_tps([s.side for s in solo_b])}
    together = {"A": gen_tps([c.sides["a"] for c in compares]), "B": gen_tps([c.sides["b"] for c in compares])}
    print(f"decode   solo A {alone['A']:.2f} tok/s, B {alone['B']:.2f} tok/s; in the compare"
          f" A {together['A']:.2f} tok/s, B {together['B']:.2f} tok/s (each side's own rate)")  # fmt: skip

    everything = [s.side for s in solo_a + solo_b] + [s for c in compares for s in c.sides.values()]
    failed = [s for s in everything if s.failed]
    short = [(LABELS[s.model_id], s.tokens) for s in everything if not s.failed and s.tokens < tokens]
    if failed:
        print(f"note: {len(failed)} answer(s) failed: {sorted({s.failed or '' for s in failed})}")
    if short:
        print(f"note: {len(short)} answer(s) stopped before {tokens} tokens (model, tokens): {short}")
    texts = {
        label: {s.text for s in runs}
        for label, runs in (
            ("A", [s.side for s in solo_a] + [c.sides["a"] for c in compares]),
            ("B", [s.side for s in solo_b] + [c.sides["b"] for c in compares]),
        )
    }
    same = [f"{label} {'same text solo and in the compare' if len(t) == 1 else f'WARNING: {len(t)} different texts'}"
            for label, t in texts.items()]  # fmt: skip
    differ = "A and B answer differently" if texts["A"] != texts["B"] else "WARNING: A and B gave the same text"
    print(f"check    {'; '.join(same)}; {differ}")
    print(f"goals: compare_ratio <= {GOAL_RATIO} (second_ttft_s for information)")
    print(f"RESULT compare_ratio={ratio:.2f} second_ttft_s={second_ttft:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="tokens to generate per answer (default 128)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of solo A, solo B, compare (default 3)")
    args = parser.parse_args()
    if args.tokens < 1 or args.rounds < 1:
        parser.error("--tokens and --rounds must be at least 1")

    import mlx.core as mx

    from workbench.core.models.gguf_import import import_gguf
    from workbench.core.models.local import smollm2_gguf

    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores, mlx {mx.__version__}"
          f" on {mx.default_device()}")  # fmt: skip
    print(f"prompt   {PROMPT!r}, greedy, {args.tokens} tokens per side, {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="compare-bench-") as tmp:
        folders: dict[str, Path] = {}
        for model_id, bits in ((MODEL_A, 4), (MODEL_B, 8)):
            started = time.perf_counter()
            folders[model_id] = import_gguf(smollm2_gguf(), Path(tmp) / model_id, bits=bits)
            took = time.perf_counter() - started
            print(f"imported {LABELS[model_id]} = the embedded GGUF at {bits}-bit in {took:.1f} s")
        asyncio.run(run(folders, args.tokens, args.rounds))


if __name__ == "__main__":
    main()
