"""Prompt caches of tiny models for the prompt-cache tests."""

from __future__ import annotations

from typing import Any


def prefill(model: Any, tokens: tuple[int, ...], cache: list[Any] | None = None) -> tuple[list[Any], Any]:
    """Feed ``tokens`` through ``model`` into ``cache`` (a fresh one by default); returns the cache and the logits of
    the last token."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model) if cache is None else cache
    logits = model(mx.array([list(tokens)]), cache=cache)[0, -1]
    mx.eval(logits, [layer.state for layer in cache])
    return cache, logits
