"""KV caches of prompts already read, kept per model and reused by the longest common token prefix."""

from workbench.core.prompt_cache.store import Entry, Hit, PromptCacheStore, cache_limit_bytes

__all__ = ["Entry", "Hit", "PromptCacheStore", "cache_limit_bytes"]
