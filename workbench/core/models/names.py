"""How a name a client sends becomes a registered model id: every API route takes the ids the model lists give
(Ollama's /api/tags, OpenAI's /v1/models). An exact id wins; then a trailing ":latest", which Ollama's clients add to
a name without a tag, is dropped."""

from __future__ import annotations

from collections.abc import Iterable

LATEST = ":latest"


def resolve_model_name(name: str, ids: Iterable[str]) -> str | None:
    """The registered id ``name`` means, or None when it means none of ``ids``."""
    known = set(ids)
    if name in known:
        return name
    if name.endswith(LATEST) and (bare := name[: -len(LATEST)]) in known:
        return bare
    return None


__all__ = ["LATEST", "resolve_model_name"]
