"""KV caches of prompts already read, kept per model and reused by the longest common token prefix, and saved to
disk per conversation so that a reopened chat only prefills what is new."""

from workbench.core.prompt_cache.disk import DiskEntry, PromptCacheDisk, model_fingerprint
from workbench.core.prompt_cache.store import Entry, Hit, PromptCacheStore, cache_limit_bytes

__all__ = ["DiskEntry", "Entry", "Hit", "PromptCacheDisk", "PromptCacheStore", "cache_limit_bytes", "model_fingerprint"]
