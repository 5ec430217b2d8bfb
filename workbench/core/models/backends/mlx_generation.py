"""One chat answer from an MLX model, created and advanced on the inference thread.

It takes the kept prompt cache that shares the most with the prompt, reads the rest of the prompt in chunks (a stop
is seen between two chunks, and each says how far it got), then streams tokens through mlx-lm's ``stream_generate``
on that cache. When the answer ends, fails or is stopped, the cache goes back for the next prompt, holding what the
model has read: a follow-up turn then reads only its new tokens.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from workbench.core.chat.output import OutputRules
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.mlx_json import json_processor
from workbench.core.models.backends.protocol import GenerationStep, PromptProgress
from workbench.core.prompt_cache.reuse import PromptReuse

# Chunks of the prompt are sized from the speed measured so far so that each takes about this long: a stop waits for
# at most one chunk. On this kind of CPU a small model reads ~10 tokens/s (chunks of a few tokens); on Metal, hundreds.
CHUNK_TARGET_S = 0.25
FIRST_CHUNK = 8
LARGEST_CHUNK = 2048  # mlx-lm's own prefill step: beyond it the activations grow with no gain in speed
# A repetition penalty looks at the last tokens seen; the prompt's are passed along with the answer's, as they would
# be without a cache.
PENALTY_CONTEXT = 256


class ChunkSizer:
    """How many prompt tokens to read in the next chunk: the measured speed times the target duration, growing at
    most fourfold a chunk (the first chunks of a run include warm-up) and never below one token."""

    def __init__(self, target_s: float = CHUNK_TARGET_S, first: int = FIRST_CHUNK, largest: int = LARGEST_CHUNK):
        self.target_s = target_s
        self.size = first
        self.largest = largest

    def record(self, tokens: int, seconds: float) -> None:
        if tokens <= 0:
            return
        rate = tokens / max(seconds, 1e-6)
        wanted = int(rate * self.target_s)
        self.size = max(1, min(wanted, self.size * 4, self.largest))


def generate_with_cache(
    loaded: Any,
    prompt: list[int],
    sampling: SamplingSettings,
    max_tokens: int,
    reuse: PromptReuse | None,
    clock: Callable[[], float] = time.perf_counter,
    rules: OutputRules | None = None,
) -> Iterator[GenerationStep | PromptProgress]:
    """Stream the answer to ``prompt`` (token ids) from ``loaded`` (``mlx_lm.LoadedLanguageModel``): progress while
    reading the prompt, then one step per token with honest figures (speeds from the tokens actually read and
    generated; none for a single generated token). JSON ``rules`` constrain the answer (stop sequences are the
    caller's to apply)."""
    import mlx.core as mx
    from mlx_lm.generate import generation_stream, stream_generate
    from mlx_lm.models.cache import make_prompt_cache

    started = clock()
    hit = reuse.take(loaded.model_id, loaded.fingerprint, prompt) if reuse is not None else None
    cache = hit.cache if hit is not None else make_prompt_cache(loaded.model)
    cached = hit.cached if hit is not None else 0
    generated: list[int] = []
    try:
        yield PromptProgress(done=cached, total=len(prompt), cached=cached)
        done, sizer = cached, ChunkSizer()
        while done < len(prompt) - 1:  # the last token is read with the first generated one
            chunk = prompt[done : min(done + sizer.size, len(prompt) - 1)]
            chunk_started = clock()
            with mx.stream(generation_stream):
                loaded.model(mx.array([chunk]), cache=cache)
                mx.eval([layer.state for layer in cache])
            sizer.record(len(chunk), clock() - chunk_started)
            done += len(chunk)
            yield PromptProgress(done=done, total=len(prompt), cached=cached)
        first_at: float | None = None
        kwargs = _sampling_kwargs(sampling, prompt[max(0, len(prompt) - 1 - PENALTY_CONTEXT) : -1])
        constraint = json_processor(loaded, rules)
        if constraint is not None:
            kwargs["logits_processors"] = [*kwargs["logits_processors"], constraint]  # last: it masks the result
        answer = stream_generate(loaded.model, loaded.tokenizer, prompt[-1:], max_tokens=max_tokens,
                                 prompt_cache=cache, **kwargs)  # fmt: skip
        with contextlib.closing(answer):
            for response in answer:
                now = clock()
                first_at = now if first_at is None else first_at
                generated.append(int(response.token))
                count = response.generation_tokens
                yield GenerationStep(
                    text=response.text,
                    token=int(response.token),
                    prompt_tokens=len(prompt),
                    prompt_tps=(len(prompt) - cached) / max(first_at - started, 1e-9),
                    generation_tokens=count,
                    generation_tps=(count - 1) / (now - first_at) if count > 1 and now > first_at else 0.0,
                    peak_memory_gb=response.peak_memory,
                    finish_reason=response.finish_reason,
                    cached_tokens=cached,
                )
    finally:
        if reuse is not None:
            reuse.give_back(loaded.model_id, loaded.fingerprint, prompt + generated, cache)


def _sampling_kwargs(sampling: SamplingSettings, context: list[int]) -> dict[str, Any]:
    """The sampler and logits processors of ``sampling``; the processors see ``context`` (the prompt's tokens before
    the one handed to ``stream_generate``) ahead of the tokens generated."""
    import mlx.core as mx
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.top_p < 1.0 else 0.0,
                           min_p=sampling.min_p, top_k=sampling.top_k)  # fmt: skip
    processors = make_logits_processors(
        repetition_penalty=sampling.repetition_penalty if sampling.repetition_penalty != 1.0 else None
    )
    if processors and context:
        seen = mx.array(context)
        processors = [_after(seen, processor) for processor in processors]
    return {"sampler": sampler, "logits_processors": processors}


def _after(context: Any, processor: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    import mlx.core as mx

    return lambda tokens, logits: processor(mx.concatenate([context, tokens]), logits)
