"""The prompt-cache store: mlx-lm KV caches kept per model and token sequence, bounded in bytes.

A generation that starts from a stored cache only has to prefill the tokens the cache has not seen. The store hands a
cache out by the longest common token prefix with the new prompt, trimming it back to that prefix, and forgets the
least recently stored caches (of any model) when the total passes its limit. mlx and mlx_lm are imported only inside
the functions that need them, so importing this module stays cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.core.models.memory import GB


@dataclass(frozen=True)
class Entry:
    """One stored cache: the model it belongs to, the tokens it holds (in order) and its measured size."""

    model_id: str
    tokens: tuple[int, ...]
    cache: list[Any]
    nbytes: int


@dataclass(frozen=True)
class Hit:
    """A cache taken out of the store for a prompt: it holds the first ``cached`` tokens of the prompt; ``remaining``
    are the prompt's tokens still to prefill (never empty, so the model produces logits for the next token)."""

    cache: list[Any]
    cached: int
    remaining: tuple[int, ...]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def cache_nbytes(cache: list[Any]) -> int:
    """Bytes held by a prompt cache: each layer's own ``nbytes`` (the arrays it has allocated), or, for a layer class
    that does not measure itself, the sum of the arrays in its ``state``."""
    from mlx.utils import tree_flatten

    total = 0
    for layer in cache:
        try:
            total += int(layer.nbytes)
        except NotImplementedError:
            total += sum(int(getattr(x, "nbytes", 0)) for _, x in tree_flatten(layer.state))
    return total


def can_trim(cache: list[Any]) -> bool:
    """Whether every layer of ``cache`` can drop tokens from its end (a rotating cache that wrapped cannot)."""
    from mlx_lm.models.cache import can_trim_prompt_cache

    return bool(can_trim_prompt_cache(cache))


def trim(cache: list[Any], num_tokens: int) -> int:
    """Drop the last ``num_tokens`` tokens from ``cache`` in place; returns how many were dropped."""
    from mlx_lm.models.cache import trim_prompt_cache

    return int(trim_prompt_cache(cache, num_tokens))


def cache_offsets(cache: list[Any]) -> set[int]:
    """The token counts the layers of ``cache`` say they hold (layers without an ``offset`` are skipped)."""
    return {layer.offset for layer in cache if isinstance(getattr(layer, "offset", None), int)}


def serve_prompt(tokens: Sequence[int], cache: list[Any], prompt: Sequence[int]) -> Hit | None:
    """``cache`` (holding ``tokens``) trimmed back to what it shares with ``prompt``, at most all but the prompt's last
    token; ``None`` when they share no token or the cache cannot be trimmed (then it must not be used: it would hold
    tokens the prompt does not have)."""
    served = min(common_prefix(tokens, prompt), len(prompt) - 1)
    if served < 1:
        return None
    excess = len(tokens) - served
    if excess and (not can_trim(cache) or trim(cache, excess) != excess):
        return None
    return Hit(cache=cache, cached=served, remaining=tuple(prompt[served:]))


DEFAULT_BUDGET_SHARE = 0.1  # the caches' bound when config.toml names none: this share of the memory budget


def cache_limit_bytes(prompt_cache_gb: float | None, budget_bytes: int) -> int:
    """The store's bound: ``[models] prompt_cache_gb`` when set (0 turns reuse off), else 10 % of the budget."""
    if prompt_cache_gb is None:
        return int(budget_bytes * DEFAULT_BUDGET_SHARE)
    return int(prompt_cache_gb * GB)


class PromptCacheStore:
    """Prompt caches per model id, bounded by ``limit_bytes`` in total, least recently stored evicted first.

    Thread-safety: every call happens on the one inference thread (the caches are MLX arrays of that thread's stream),
    so there are no locks and nothing here is async. A cache is mutated by the generation that uses it, so ``lookup``
    takes the entry out of the store: two generations never share one cache; the caller ``put``s it back when done.
    """

    def __init__(self, limit_bytes: int) -> None:
        self._limit = max(0, int(limit_bytes))
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], Entry] = OrderedDict()  # oldest first
        self._bytes = 0
        # What the memory budget leaves beside the loaded models: the model manager sets it (a plain int, so the event
        # loop may write it while the inference thread reads it); ``put`` keeps the total within it too.
        self.room_bytes: int = 1 << 62

    @property
    def limit_bytes(self) -> int:
        """The most bytes the stored caches may hold together."""
        return self._limit

    @property
    def effective_limit(self) -> int:
        """The bound ``put`` keeps to: the configured limit, or less when the budget has less room beside the models."""
        return max(0, min(self._limit, self.room_bytes))

    @property
    def bytes_used(self) -> int:
        """Bytes held by the stored caches now (as measured when each was stored)."""
        return self._bytes

    def set_limit(self, limit_bytes: int) -> None:
        """Change the bound and evict the least recently stored caches until the total is within it."""
        self._limit = max(0, int(limit_bytes))
        self._evict()

    def entries(self, model_id: str) -> list[Entry]:
        """The entries stored for ``model_id``, least recently stored first."""
        return [entry for entry in self._entries.values() if entry.model_id == model_id]

    def lookup(self, model_id: str, tokens: Sequence[int]) -> Hit | None:
        """Take out the cache of ``model_id`` sharing the longest token prefix with ``tokens`` and trim it to that
        prefix; ``None`` when no entry shares a token, or the one that would serve cannot be trimmed.

        At most ``len(tokens) - 1`` tokens are served from the cache, so at least one token is left to prefill. Among
        entries serving the same number of tokens, the one with the least to trim wins; an entry that would need
        trimming but cannot be trimmed is passed over for one that needs none.
        """
        prompt = tuple(tokens)
        best: tuple[int, int, Entry] | None = None  # (tokens served, -tokens to trim, entry)
        for entry in self.entries(model_id):
            served = min(common_prefix(entry.tokens, prompt), len(prompt) - 1)
            if served < 1:
                continue
            excess = len(entry.tokens) - served
            if excess and not can_trim(entry.cache):
                continue
            if best is None or (served, -excess) > best[:2]:
                best = (served, -excess, entry)
        if best is None:
            return None
        entry = best[2]
        self._remove(entry)
        return serve_prompt(entry.tokens, entry.cache, prompt)

    def put(self, model_id: str, tokens: Sequence[int], cache: list[Any]) -> bool:
        """Keep ``cache``, which holds exactly ``tokens`` for ``model_id``, as the most recently stored entry; returns
        whether it was kept. A cache larger than the whole limit is not kept. Stored entries of the same model whose
        tokens are a prefix of ``tokens`` are replaced when this cache can be trimmed back to serve them. Least
        recently stored entries of any model are then evicted until the total is within the limit.

        Raises ValueError when the cache's layers hold a different number of tokens than ``tokens``.
        """
        key = (model_id, tuple(tokens))
        offsets = cache_offsets(cache)
        if offsets and offsets != {len(key[1])}:
            raise ValueError(f"the cache holds {sorted(offsets)} tokens, not the {len(key[1])} given")
        nbytes = cache_nbytes(cache)
        if nbytes > self.effective_limit:
            return False
        trimmable = can_trim(cache)
        for entry in self.entries(model_id):
            if entry.tokens == key[1] or (trimmable and key[1][: len(entry.tokens)] == entry.tokens):
                self._remove(entry)
        self._entries[key] = Entry(model_id, key[1], cache, nbytes)
        self._bytes += nbytes
        self._evict()
        return True

    def shrink_to(self, max_bytes: int) -> int:
        """Evict the least recently stored caches until at most ``max_bytes`` are held (a model needs the room);
        returns the bytes freed."""
        before = self._bytes
        self._evict(max(0, int(max_bytes)))
        return before - self._bytes

    def drop_model(self, model_id: str) -> int:
        """Forget every cache of ``model_id`` (the model was unloaded); returns the bytes freed."""
        freed = 0
        for entry in self.entries(model_id):
            freed += entry.nbytes
            self._remove(entry)
        return freed

    def clear(self) -> None:
        """Forget every cache."""
        self._entries.clear()
        self._bytes = 0

    def _remove(self, entry: Entry) -> None:
        del self._entries[(entry.model_id, entry.tokens)]
        self._bytes -= entry.nbytes

    def _evict(self, bound: int | None = None) -> None:
        bound = self.effective_limit if bound is None else bound
        while self._bytes > bound and self._entries:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.nbytes
