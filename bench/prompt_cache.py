"""Prompt-cache benchmark: a follow-up turn's time to first token with a kept prompt (KV) cache vs a full prefill.

Same model (SmolLM2-135M-Instruct, imported from the embedded GGUF to MLX 4-bit as the app imports it), greedy, a
fixed conversation of >= 400 prompt tokens (a system prompt and three turns), alternating the two variants in one run:

- core (ModelManager + ChatRun, as the app): the first turn is answered (FIRST_ANSWER tokens) and its cache kept; the
  follow-up (the conversation, that answer and a new short question) then reads only its new tokens: ``reuse``. The
  same follow-up prompt after ``manager.prompt_caches.clear()`` on the inference thread is the ``full`` prefill, the
  same code path with nothing to reuse. TTFT: from asking the ChatRun for its events to its first Token.
  ``followup_ttft_ratio`` = median reuse TTFT / median full TTFT; ``cached_tokens_pct`` = the reuse variant's
  ``figures.cached_tokens / prompt_tokens`` (median).
- serve (``workbench serve`` in a child process on 127.0.0.1, spoken to with the openai client, streamed): (a) the
  conversation, then the follow-up with the answer the server gave; (b) a long system prompt with question 1, then the
  same system prompt with question 2. The second request of each is timed (to the first chunk, which the server sends
  once the first token exists) against the same second request sent cold: its system prompt starts with another
  session tag, so the server's store holds nothing of it past the first few template tokens (the usage's
  ``cached_tokens`` of every timed request is shown to prove it). ``serve_followup_ratio`` is case (a),
  ``serve_system_ratio`` case (b), median reuse / median full each.

A full prefill is what makes this slow on a CPU (~10 prompt tokens/s there: ~45 s a time), so each variant's leftover
cache serves the next round's first request, trimmed back to its prompt (the store's longest common prefix): only the
first round pays for a cold first turn. The full-prefill variant always starts from a store without its prompt.

    .venv/bin/python bench/prompt_cache.py [--rounds 3] [--serve-rounds 2] [--only core|serve]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEM = (
    "You are a patient assistant for the volunteers of a small coastal museum. The museum keeps a working "
    "lighthouse lens, a room of ship models, a library of logbooks from the fishing fleet and a garden of dune "
    "plants. Volunteers guide school groups, answer visitors at the desk, catalogue donations and look after the "
    "garden. Answer in plain words, in short paragraphs, and say so when you do not know something. When a question "
    "is about safety, such as the stairs of the lighthouse, the tides on the beach below the museum or the tools of "
    "the workshop, put the safe course of action first. Never invent opening hours, prices or names of staff: point "
    "the volunteer to the notice board in the staff room instead. Keep answers under one hundred words unless the "
    "volunteer asks for more detail."
)
TURNS = [
    (
        "user",
        "A school group of twenty children arrives at ten. How should I split them between the lens room, the "
        "ship models and the garden so that nobody waits too long?",
    ),
    (
        "assistant",
        "Split them into three groups of six or seven. Start one group in each place and move them round "
        "every twenty minutes: lens room, then ship models, then garden. The lens room is small, so keep "
        "that group to six and go up the stairs slowly, one child at a time on the narrow part.",
    ),
    (
        "user",
        "Someone donated a box of old logbooks from the nineteen fifties. What should I write down before they "
        "go to the library shelves?",
    ),
    (
        "assistant",
        "Note the donor's name and the date, the boat each logbook belongs to, the years it covers and its "
        "condition: loose pages, damp or mould. Give each book a number on a slip of paper, not on the "
        "book itself, and put mouldy ones aside in a closed box until someone checks them.",
    ),
    (
        "user",
        "The dune garden looks dry after a week without rain. Should I water it, and how much?",
    ),
]
FOLLOW_UP = "Thank you. One more thing: what should I tell visitors about the tides today?"
QUESTION_1 = "Where do the ship models come from?"
QUESTION_2 = "Can children climb the lighthouse stairs?"
FIRST_ANSWER = 12  # tokens of the first turn's answer: the follow-up carries it
TIMED_TOKENS = 2  # only the time to the first token matters
MIN_PROMPT = 400
GOAL_CORE = 0.2
GOAL_SERVE = 0.3
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 600.0

Messages = list[dict[str, str]]


def conversation(tag: str = "") -> Messages:
    """The system prompt (``tag`` first, when given) and the turns up to the question the first answer answers."""
    system = f"Session {tag}. {SYSTEM}" if tag else SYSTEM
    return [{"role": "system", "content": system}, *({"role": r, "content": c} for r, c in TURNS)]


def follow_up(tag: str, answer: str) -> Messages:
    return [*conversation(tag), {"role": "assistant", "content": answer}, {"role": "user", "content": FOLLOW_UP}]


def with_system(tag: str, question: str) -> Messages:
    return [conversation(tag)[0], {"role": "user", "content": question}]


@dataclass(frozen=True)
class Timed:
    ttft_s: float
    text: str
    prompt_tokens: int
    cached_tokens: int

    def line(self, label: str) -> str:
        tokens = f"prompt {self.prompt_tokens} tok, {self.cached_tokens} cached"
        return f"{label:<30} first token {self.ttft_s:6.2f} s   {tokens}"


def ratio(reuse: list[Timed], full: list[Timed]) -> float:
    return statistics.median(t.ttft_s for t in reuse) / statistics.median(t.ttft_s for t in full)


def check_full(name: str, full: list[Timed]) -> None:
    """Say how much the full-prefill variant found cached: a few template tokens at most, or it was no baseline."""
    most = max(100 * t.cached_tokens / t.prompt_tokens for t in full)
    warning = "" if most <= 5 else "  WARNING: not a full prefill"
    print(f"check    {name} full prefill: at most {most:.1f} % of the prompt cached{warning}")


# --- core: ModelManager + ChatRun ---------------------------------------------------------------------


async def ask(manager: Any, messages: Messages, max_tokens: int) -> Timed:
    """One greedy answer through a ChatRun, timed from asking for its events to its first token."""
    from workbench.core.chat.run import ChatMessage, ChatRun, Finished, Token
    from workbench.core.chat.sampling import SamplingSettings
    from workbench.core.models.local import DEFAULT_CHAT_ID

    sampling = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    run = ChatRun(manager, DEFAULT_CHAT_ID, [ChatMessage(**m) for m in messages], sampling, holder="the bench")
    started = time.perf_counter()
    first: float | None = None
    texts: list[str] = []
    figures = None
    async for event in run.events():
        if isinstance(event, Token):
            first = first if first is not None else time.perf_counter() - started
            texts.append(event.text)
        elif isinstance(event, Finished):
            figures = event.figures
    if figures is None:
        raise RuntimeError("the run ended without figures")
    return Timed(first if first is not None else figures.ttft_s, "".join(texts), figures.prompt_tokens,
                 figures.cached_tokens)  # fmt: skip


async def core_rounds(home: Path, rounds: int) -> tuple[list[Timed], list[Timed]]:
    from workbench.bootstrap import build_services
    from workbench.core.models.local import DEFAULT_CHAT_ID
    from workbench.core.settings.paths import AppPaths

    services = build_services(AppPaths.under(home))
    manager = services.manager
    try:
        await manager.load(DEFAULT_CHAT_ID)
        first = await ask(manager, conversation(), FIRST_ANSWER)  # cold: fills the cache, warms the model
        print(first.line("core first turn"))
        if first.prompt_tokens < MIN_PROMPT:
            raise RuntimeError(f"the conversation is {first.prompt_tokens} tokens, fewer than {MIN_PROMPT}")
        prompt = follow_up("", first.text)
        reuse: list[Timed] = []
        full: list[Timed] = []
        for n in range(1, rounds + 1):
            if n > 1:  # the first turn again: served by the last full run's cache, it leaves what a first turn leaves
                await ask(manager, conversation(), FIRST_ANSWER)
            reuse.append(await ask(manager, prompt, TIMED_TOKENS))
            print(reuse[-1].line(f"core round {n} reuse"))
            await manager.inference.run(manager.prompt_caches.clear)
            full.append(await ask(manager, prompt, TIMED_TOKENS))
            print(full[-1].line(f"core round {n} full"))
        return reuse, full
    finally:
        await services.aclose()
        services.store.close()


# --- serve: a child process and the openai client --------------------------------------------------


@contextlib.contextmanager
def served(home: Path) -> Iterator[str]:
    """``workbench serve`` on a free port of 127.0.0.1 with WORKBENCH_HOME ``home``; yields its base URL."""
    env = {**os.environ, "WORKBENCH_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "serve", "--port", "0"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stderr is not None
    try:
        url = ""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not url:
            line = process.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("workbench serve did not start")
            if "serving the OpenAI API on" in line:
                url = line.split(" on ")[1].split()[0]
        # the server logs each answer: keep reading so that its pipe never fills
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield url
    finally:
        process.terminate()
        process.wait(60)


def stream(client: Any, messages: Messages, max_tokens: int) -> Timed:
    """One greedy streamed answer, timed from sending to the first chunk (sent once the first token exists)."""
    from workbench.core.models.local import DEFAULT_CHAT_ID

    started = time.perf_counter()
    chunks = client.chat.completions.create(model=DEFAULT_CHAT_ID, messages=messages, stream=True, temperature=0,
                                            max_tokens=max_tokens, stream_options={"include_usage": True})  # fmt: skip
    first: float | None = None
    texts: list[str] = []
    usage = None
    for chunk in chunks:
        first = first if first is not None else time.perf_counter() - started
        texts.extend(choice.delta.content or "" for choice in chunk.choices)
        usage = chunk.usage or usage
    if first is None or usage is None:
        raise RuntimeError("the stream ended without chunks or usage")
    details = usage.prompt_tokens_details
    return Timed(first, "".join(texts), usage.prompt_tokens, details.cached_tokens if details else 0)


def serve_followups(client: Any, rounds: int) -> tuple[list[Timed], list[Timed]]:
    """Case (a). Each full run's tag is the next round's conversation: its kept cache serves that first turn."""
    reuse: list[Timed] = []
    full: list[Timed] = []
    tag = "1"
    for n in range(1, rounds + 1):
        first = stream(client, conversation(tag), FIRST_ANSWER)
        print(first.line(f"serve round {n} first turn"))
        reuse.append(stream(client, follow_up(tag, first.text), TIMED_TOKENS))
        print(reuse[-1].line(f"serve round {n} follow-up reuse"))
        tag = str(n + 1)
        full.append(stream(client, follow_up(tag, first.text), TIMED_TOKENS))
        print(full[-1].line(f"serve round {n} follow-up full"))
    return reuse, full


def serve_shared_system(client: Any, rounds: int) -> tuple[list[Timed], list[Timed]]:
    """Case (b), with tags of its own; chained like case (a)."""
    reuse: list[Timed] = []
    full: list[Timed] = []
    tag = "s1"
    for n in range(1, rounds + 1):
        print(stream(client, with_system(tag, QUESTION_1), TIMED_TOKENS).line(f"serve round {n} question 1"))
        reuse.append(stream(client, with_system(tag, QUESTION_2), TIMED_TOKENS))
        print(reuse[-1].line(f"serve round {n} system reuse"))
        tag = f"s{n + 1}"
        full.append(stream(client, with_system(tag, QUESTION_2), TIMED_TOKENS))
        print(full[-1].line(f"serve round {n} system full"))
    return reuse, full


def serve_rounds(home: Path, rounds: int) -> tuple[float, float]:
    import openai

    with served(home) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)
        followup = serve_followups(client, rounds)
        system = serve_shared_system(client, rounds)
        client.close()
    check_full("serve follow-up", followup[1])
    check_full("serve shared system prompt", system[1])
    return ratio(*followup), ratio(*system)


# --- the benchmark ------------------------------------------------------------------------------------


def make_home(root: Path) -> Path:
    """A workbench home holding the embedded SmolLM2, imported as the app imports it."""
    from workbench.core.models.gguf_import import import_gguf
    from workbench.core.models.local import DEFAULT_CHAT_ID, EMBEDDED_CHAT_GENERATION, smollm2_gguf

    home = root / "home"
    started = time.perf_counter()
    import_gguf(smollm2_gguf(), home / "data" / "models" / DEFAULT_CHAT_ID, bits=4, generation=EMBEDDED_CHAT_GENERATION)
    print(f"imported the embedded GGUF in {time.perf_counter() - started:.1f} s")
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed pairs of the core part (default 3)")
    parser.add_argument("--serve-rounds", type=int, default=2, help="timed pairs per serve case (default 2)")
    parser.add_argument("--only", choices=("core", "serve"), help="run one part only")
    args = parser.parse_args()
    if args.rounds < 1 or args.serve_rounds < 1:
        parser.error("--rounds and --serve-rounds must be at least 1")

    import mlx.core as mx

    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores, mlx {mx.__version__}"
          f" on {mx.default_device()}")  # fmt: skip
    results: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prompt-cache-") as tmp:
        home = make_home(Path(tmp))
        if args.only != "serve":
            reuse, full = asyncio.run(core_rounds(home, args.rounds))
            core = ratio(reuse, full)
            pct = statistics.median(100 * t.cached_tokens / t.prompt_tokens for t in reuse)
            print(f"core     median reuse {statistics.median(t.ttft_s for t in reuse):.2f} s, full "
                  f"{statistics.median(t.ttft_s for t in full):.2f} s: ratio {core:.3f}")  # fmt: skip
            check_full("core", full)
            results += [f"followup_ttft_ratio={core:.3f}", f"cached_tokens_pct={pct:.1f}"]
        if args.only != "core":
            followup, system = serve_rounds(home, args.serve_rounds)
            print(f"serve    follow-up ratio {followup:.3f}, shared system prompt ratio {system:.3f}")
            results += [f"serve_followup_ratio={followup:.3f}", f"serve_system_ratio={system:.3f}"]
    print(f"took {time.perf_counter() - started:.0f} s")
    print(f"goals: followup_ttft_ratio <= {GOAL_CORE}, serve_followup_ratio <= {GOAL_SERVE}")
    print("RESULT " + " ".join(results))


if __name__ == "__main__":
    main()
