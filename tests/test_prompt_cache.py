"""The prompt-cache store on real mlx-lm KV caches of tiny random-weight llamas: lookup by longest common prefix,
trimming, taking out, eviction by bytes, and proof that a hit gives the same logits as a full prefill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.prompt_caches import prefill
from workbench.core.prompt_cache import PromptCacheStore
from workbench.core.prompt_cache.store import cache_nbytes

BIG = 1 << 40
A = (5, 17, 42, 9, 88, 23, 61, 7, 100, 33)  # a stored prompt
B = (12, 70, 3, 99)  # what a follow-up adds
C = (120, 4, 56)  # where another prompt departs


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path]) -> dict[str, Any]:
    from mlx_lm import load

    return {name: load(str(tiny_models[name]))[0] for name in ("small", "medium")}


def assert_same_logits(got: Any, want: Any) -> None:
    import mlx.core as mx

    assert mx.abs(got - want).max().item() <= 1e-4


def test_a_follow_up_prefills_only_its_new_tokens(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    assert store.put("small", A, prefill(models["small"], A)[0])
    hit = store.lookup("small", A + B)
    assert hit is not None
    assert (hit.cached, hit.remaining) == (len(A), B)
    assert {layer.offset for layer in hit.cache} == {len(A)}


def test_a_prompt_that_departs_midway_is_trimmed_to_the_shared_prefix(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    store.put("small", A, prefill(models["small"], A)[0])
    hit = store.lookup("small", A[:6] + C)
    assert hit is not None
    assert (hit.cached, hit.remaining) == (6, C)
    assert {layer.offset for layer in hit.cache} == {6}


@pytest.mark.parametrize(
    ("stored", "prompt"),
    [(A, A + B), (A + B, A[:6] + C), (A, A), (A[:4], A[:4] + C)],
    ids=["extends", "departs", "same prompt", "short prefix"],
)
def test_a_hit_gives_the_logits_of_a_full_prefill(models: dict[str, Any], stored: tuple, prompt: tuple) -> None:
    model = models["small"]
    store = PromptCacheStore(BIG)
    store.put("small", stored, prefill(model, stored)[0])
    hit = store.lookup("small", prompt)
    assert hit is not None and hit.remaining and hit.cached + len(hit.remaining) == len(prompt)
    _, cached_logits = prefill(model, hit.remaining, hit.cache)
    _, full_logits = prefill(model, prompt)
    assert_same_logits(cached_logits, full_logits)


def test_the_whole_prompt_matching_still_leaves_one_token_to_prefill(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    store.put("small", A, prefill(models["small"], A)[0])
    hit = store.lookup("small", A)
    assert hit is not None and (hit.cached, hit.remaining) == (len(A) - 1, A[-1:])


def test_the_longest_common_prefix_wins_and_other_models_are_not_looked_at(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    store.put("small", A[:3] + C, prefill(models["small"], A[:3] + C)[0])
    store.put("small", A[:7] + C, prefill(models["small"], A[:7] + C)[0])
    store.put("medium", A + B, prefill(models["medium"], A + B)[0])
    hit = store.lookup("small", A + B)
    assert hit is not None and hit.cached == 7
    assert [e.tokens for e in store.entries("small")] == [A[:3] + C]
    assert store.lookup("small", C) is None  # no token in common
    assert store.lookup("other", A) is None


def test_a_taken_entry_is_not_found_again(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    cache = prefill(models["small"], A)[0]
    store.put("small", A, cache)
    size = store.bytes_used
    assert size == cache_nbytes(cache) > 0
    assert store.lookup("small", A + B) is not None
    assert store.lookup("small", A + B) is None
    assert store.entries("small") == [] and store.bytes_used == 0


def test_putting_a_longer_prompt_replaces_its_prefixes(models: dict[str, Any]) -> None:
    model = models["small"]
    store = PromptCacheStore(BIG)
    store.put("small", A[:4], prefill(model, A[:4])[0])
    store.put("small", C, prefill(model, C)[0])
    store.put("small", A, prefill(model, A)[0])
    assert [e.tokens for e in store.entries("small")] == [C, A]
    assert store.bytes_used == sum(e.nbytes for e in store.entries("small"))


def test_least_recently_stored_caches_are_evicted_by_bytes_across_models(models: dict[str, Any]) -> None:
    first = prefill(models["small"], A)[0]
    second = prefill(models["medium"], A)[0]
    third = prefill(models["small"], C)[0]
    sizes = [cache_nbytes(c) for c in (first, second, third)]
    store = PromptCacheStore(sizes[1] + sizes[2])
    store.put("small", A, first)
    store.put("medium", A, second)
    assert store.bytes_used == sizes[0] + sizes[1]
    store.put("small", C, third)  # over the limit: the oldest (small, A) goes
    assert [e.tokens for e in store.entries("small")] == [C]
    assert [e.tokens for e in store.entries("medium")] == [A]
    assert store.bytes_used == sizes[1] + sizes[2] <= store.limit_bytes
    store.set_limit(sizes[2])
    assert store.entries("medium") == [] and store.bytes_used == sizes[2]


def test_drop_model_forgets_only_that_models_caches(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    store.put("small", A, prefill(models["small"], A)[0])
    store.put("medium", A, prefill(models["medium"], A)[0])
    kept = store.entries("medium")[0].nbytes
    dropped = store.entries("small")[0].nbytes
    assert store.drop_model("small") == dropped > 0
    assert store.entries("small") == [] and store.bytes_used == kept
    assert store.lookup("small", A + B) is None and store.lookup("medium", A + B) is not None
    store.put("small", A, prefill(models["small"], A)[0])
    store.clear()
    assert store.bytes_used == 0 and store.entries("small") == []


def test_a_cache_bigger_than_the_limit_is_not_kept(models: dict[str, Any]) -> None:
    small = prefill(models["small"], C)[0]
    big = prefill(models["medium"], A + B)[0]
    store = PromptCacheStore(cache_nbytes(big) - 1)
    assert store.put("small", C, small)
    assert not store.put("medium", A + B, big)
    assert store.entries("medium") == [] and [e.tokens for e in store.entries("small")] == [C]
    assert store.bytes_used == cache_nbytes(small)


def test_a_cache_that_cannot_be_trimmed_serves_only_prompts_that_extend_it(models: dict[str, Any]) -> None:
    from mlx_lm.models.cache import RotatingKVCache

    model = models["small"]
    rotating = [RotatingKVCache(max_size=4) for _ in model.layers]
    store = PromptCacheStore(BIG)
    store.put("small", A, prefill(model, A, rotating)[0])  # a rotating cache that wrapped: not trimmable
    assert store.lookup("small", A[:6] + C) is None
    assert store.lookup("small", A) is None  # the whole prompt would need one token trimmed back
    assert [e.tokens for e in store.entries("small")] == [A]  # passed over, still stored
    hit = store.lookup("small", A + B)
    assert hit is not None and (hit.cached, hit.remaining) == (len(A), B)


def test_a_cache_that_does_not_hold_the_given_tokens_is_refused(models: dict[str, Any]) -> None:
    store = PromptCacheStore(BIG)
    with pytest.raises(ValueError, match="holds"):
        store.put("small", A + B, prefill(models["small"], A)[0])
    assert store.bytes_used == 0
