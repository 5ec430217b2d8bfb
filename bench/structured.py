"""Structured-output benchmark: decode tokens/s with a JSON schema (constrained decoding, llguidance) vs without.

Same model (SmolLM2-135M-Instruct, imported from the embedded GGUF to MLX 4-bit as the app imports it), same prompt,
greedy, the same token budget, through the path the APIs use (ModelManager, the inference thread, ChatRun with
``rules=``), the two variants alternated in one process so that a busy machine slows both alike. The figure is each
answer's ``generation_tps`` (from the first token on: the tokenizer's one-time conversion for llguidance and the
prompt are not in it). The schema asks for at least MIN_ITEMS records, so a constrained answer cannot end before the
budget; it mixes structure (keys, enum, booleans, integers) with free strings, where the mask lets most tokens through.

    .venv/bin/python bench/structured.py [--tokens 128] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's workbench, whichever one the virtual environment was installed from

PROMPT = "List the lighthouses of the world as JSON records: name, country, height in metres, whether still lit."
MIN_ITEMS = 40
SCHEMA = {
    "type": "object",
    "properties": {
        "lighthouses": {
            "type": "array",
            "minItems": MIN_ITEMS,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 40},
                    "country": {"type": "string", "maxLength": 30},
                    "height_m": {"type": "integer"},
                    "lit": {"type": "boolean"},
                    "kind": {"enum": ["tower", "house", "skeleton", "other"]},
                },
                "required": ["name", "country", "height_m", "lit", "kind"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["lighthouses"],
    "additionalProperties": False,
}
WARMUP_TOKENS = 16
GOAL_RATIO = 0.8


@dataclass(frozen=True)
class Answer:
    tokens: int
    tps: float
    finish: str | None
    text: str


async def one_answer(manager: object, tokens: int, constrained: bool) -> Answer:
    from workbench.core.chat.output import check_rules
    from workbench.core.chat.run import ChatMessage, ChatRun, Finished, Token
    from workbench.core.chat.sampling import SamplingSettings

    rules = check_rules(json_schema=SCHEMA) if constrained else None
    sampling = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=tokens)
    run = ChatRun(manager, "smol", [ChatMessage("user", PROMPT)], sampling, rules=rules)  # type: ignore[arg-type]
    pieces: list[str] = []
    finished: Finished | None = None
    async for event in run.events():
        if isinstance(event, Token):
            pieces.append(event.text)
        elif isinstance(event, Finished):
            finished = event
    if finished is None or finished.figures is None:
        raise RuntimeError("the answer ended without figures")
    figures = finished.figures
    return Answer(figures.generation_tokens, figures.generation_tps, finished.finish_reason, "".join(pieces))


def show(label: str, kind: str, answer: Answer) -> None:
    print(f"{label:<8} {kind:<7} {answer.tokens:>4} tok  {answer.tps:7.2f} tok/s  finish {answer.finish}")


async def bench(folder: Path, tokens: int, rounds: int) -> tuple[list[Answer], list[Answer]]:
    from workbench.core.models.backends.mlx_lm import MlxLmBackend
    from workbench.core.models.inference import InferenceThread
    from workbench.core.models.lifecycle import ModelManager
    from workbench.core.models.memory import GB, Budget
    from workbench.core.models.spec import ModelSpec

    manager = ModelManager({"mlx-lm": MlxLmBackend()}, Budget(4 * GB, "bench"), InferenceThread(), idle_unload_s=None)
    manager.register(ModelSpec(id="smol", name="SmolLM2", kind="mlx-lm", path=folder))
    with_schema: list[Answer] = []
    without: list[Answer] = []
    try:
        await manager.load("smol")
        started = time.perf_counter()
        show("warm-up", "schema", await one_answer(manager, WARMUP_TOKENS, True))
        elapsed = time.perf_counter() - started
        print(f"         (the first constrained answer, the tokenizer's conversion included, took {elapsed:.1f} s)")
        show("warm-up", "plain", await one_answer(manager, WARMUP_TOKENS, False))
        for n in range(1, rounds + 1):
            order = (True, False) if n % 2 else (False, True)  # neither variant always runs first
            for constrained in order:
                answer = await one_answer(manager, tokens, constrained)
                (with_schema if constrained else without).append(answer)
                show(f"round {n}", "schema" if constrained else "plain", answer)
    finally:
        await manager.aclose()
    return with_schema, without


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128, help="tokens to generate per answer (default 128)")
    parser.add_argument("--rounds", type=int, default=4, help="timed answers of each kind (default 4)")
    args = parser.parse_args()
    if args.tokens < 2 or args.rounds < 1:
        parser.error("--tokens must be at least 2 and --rounds at least 1")

    import mlx.core as mx

    from workbench.core.models.gguf_import import import_gguf
    from workbench.core.models.local import DEFAULT_CHAT_ID, smollm2_gguf

    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores, mlx {mx.__version__}"
          f" on {mx.default_device()}")  # fmt: skip
    print(f"prompt   {PROMPT!r}, greedy, {args.tokens} tokens, {args.rounds} rounds of each, alternated")
    with tempfile.TemporaryDirectory(prefix="structured-") as tmp:
        started = time.perf_counter()
        folder = import_gguf(smollm2_gguf(), Path(tmp) / DEFAULT_CHAT_ID, bits=4)
        print(f"imported the embedded GGUF in {time.perf_counter() - started:.1f} s")
        with_schema, without = asyncio.run(bench(folder, args.tokens, args.rounds))

    schema_tps = statistics.median(a.tps for a in with_schema)
    plain_tps = statistics.median(a.tps for a in without)
    ratio = schema_tps / plain_tps
    print(f"median   schema {schema_tps:.2f} tok/s   plain {plain_tps:.2f} tok/s   ratio {ratio:.2f}")
    short = [a.tokens for a in with_schema + without if a.tokens < args.tokens]
    if short:
        print(f"note: {len(short)} answer(s) ended before {args.tokens} tokens (at {short})")
    stopped = [a for a in with_schema if a.finish == "stop"]
    for answer in stopped:
        json.loads(answer.text)  # a constrained answer that ended by itself must parse
    print(f"check    constrained answers start {with_schema[0].text[:60]!r}; {len(stopped)} ended by themselves")
    print(f"goal: schema_tps_ratio >= {GOAL_RATIO}")
    print(f"RESULT schema_tps_ratio={ratio:.2f} with_schema_tps={schema_tps:.2f} without_schema_tps={plain_tps:.2f}")


if __name__ == "__main__":
    main()
