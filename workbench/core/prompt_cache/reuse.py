"""What one generation may reuse, and the two moves it makes: take a cache for its prompt (from memory, else from the
conversation's file on disk), and give the cache back when it ends, holding whatever the model has read by then.

Both run on the inference thread, inside the backend's generation.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from workbench.core.prompt_cache.store import Hit, PromptCacheStore, cache_offsets, can_trim, serve_prompt, trim

if TYPE_CHECKING:
    from workbench.core.prompt_cache.disk import PromptCacheDisk

log = logging.getLogger(__name__)


class SavedCaches(Protocol):
    """The caches of recent conversations on disk (``disk.PromptCacheDisk``)."""

    def load(self, key: str, model_id: str, fingerprint: str) -> tuple[tuple[int, ...], list[Any]] | None: ...

    def save(self, key: str, model_id: str, fingerprint: str, tokens: Sequence[int], cache: list[Any]) -> bool: ...

    def forget(self, key: str) -> None: ...

    def forget_model(self, model_id: str) -> int: ...


@dataclass(frozen=True)
class PromptReuse:
    """Where a generation's prompt cache comes from and goes back to. ``conversation`` names the chat the answer
    belongs to (its cache is also saved to disk); None for answers nobody will reopen (an API request, a compare)."""

    store: PromptCacheStore
    disk: SavedCaches | None = None
    conversation: str | None = None

    def take(self, model_id: str, fingerprint: str, prompt: Sequence[int]) -> Hit | None:
        """The cache sharing the longest prefix with ``prompt``: the store's, or the conversation's saved one when
        the store has none (a chat reopened after a restart)."""
        hit = self.store.lookup(model_id, prompt)
        if hit is not None or self.disk is None or self.conversation is None:
            return hit
        try:
            saved = self.disk.load(self.conversation, model_id, fingerprint)
        except Exception:
            log.exception("reading the saved prompt cache of %s failed", self.conversation)
            return None
        return None if saved is None else serve_prompt(saved[0], saved[1], prompt)

    def give_back(self, model_id: str, fingerprint: str, tokens: Sequence[int], cache: list[Any]) -> None:
        """Keep ``cache`` for the next prompt. ``tokens`` are what was fed to it as far as the caller knows (the
        prompt, then the generated tokens); the cache's own offset says how many of them it holds. A cache whose
        layers disagree, or that holds more than is known and cannot drop it, is not kept. Never raises: the answer
        is already out, a cache that cannot be kept only costs the next prompt its reuse."""
        try:
            known = self._reconcile(list(tokens), cache)
            if known is None:
                return
            self.store.put(model_id, known, cache)
            if self.disk is not None and self.conversation is not None:
                self.disk.save(self.conversation, model_id, fingerprint, known, cache)
        except Exception:
            log.exception("keeping the prompt cache of %s failed", model_id)

    @staticmethod
    def _reconcile(tokens: list[int], cache: list[Any]) -> list[int] | None:
        offsets = cache_offsets(cache)
        if len(offsets) != 1:
            return None
        held = offsets.pop()
        if held > len(tokens):  # fed a token it never reported: drop it again
            if not can_trim(cache) or trim(cache, held - len(tokens)) != held - len(tokens):
                return None
            held = len(tokens)
        return tokens[:held] if held else None


def chat_cache_key(conversation_id: int) -> str:
    """The name a chat's saved prompt cache goes by: saved after each answer, deleted with the chat."""
    return f"chat-{int(conversation_id)}"


COMPARE_KEY_PREFIX = "compare-"


def new_compare_cache_key() -> str:
    """A fresh name for one compare conversation's saved caches (its sides add "-a" and "-b"). Compare conversations
    are not reopened, so these files only outlive their conversation when the app stops: the next start sweeps them
    (``sweep_compare_caches``)."""
    return f"{COMPARE_KEY_PREFIX}{secrets.token_hex(4)}"


def sweep_compare_caches(disk: PromptCacheDisk) -> int:
    """Delete the saved caches of compare conversations left by an earlier run; returns how many went."""
    keys = {entry.key for entry in disk.entries() if entry.key.startswith(COMPARE_KEY_PREFIX)}
    for key in keys:
        disk.forget(key)
    return len(keys)
