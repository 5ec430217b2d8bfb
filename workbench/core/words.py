"""Counts in words: "1 blind vote", "2 blind votes"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun that goes with it: ``plural`` defaults to ``singular`` + "s"."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
