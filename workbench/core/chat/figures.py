"""The figures of one generation (speed, time to first token, memory) and the one way they are written for people.

:func:`format_figures` writes ``first token 0.31 s · prompt 20 tok @ 150.0 tok/s · 12 tok @ 7.4 tok/s ·
peak 0.12 GB`` (``prompt 440 tok, 420 cached @ …`` when a kept prompt cache served part of it; the prompt speed is
then that of the tokens read) from whichever figures a dict holds, so an answer on screen, the CLI's figures line,
a chat export and a compare export all read the same; :meth:`GenerationFigures.summary` is it for a full set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationFigures:
    ttft_s: float
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float  # 0.0: unknown (fewer than two tokens)
    peak_memory_gb: float
    cached_tokens: int = 0  # of prompt_tokens, reused from a kept prompt cache (not read again)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationFigures:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def summary(self) -> str:
        return format_figures(self.to_dict())


def format_figures(figures: Mapping[str, Any] | None) -> str:
    """One line from whichever figures are present (a figure stored by an older version may be missing);
    "" when none is."""
    if not figures:
        return ""

    def number(key: str) -> float | None:
        value = figures.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    def rate(tokens: float | None, tps: float | None, cached: float | None = None) -> str:
        counted = f"{tokens:.0f} tok" if tokens is not None else ""
        if counted and cached:
            counted += f", {cached:.0f} cached"
        speed = f"{tps:.1f} tok/s" if tps else ""  # 0: not measured (a single token has no speed)
        return " @ ".join(part for part in (counted, speed) if part)

    ttft, peak = number("ttft_s"), number("peak_memory_gb")
    prompt = rate(number("prompt_tokens"), number("prompt_tps"), number("cached_tokens"))
    parts = [
        f"first token {ttft:.2f} s" if ttft is not None else "",
        f"prompt {prompt}" if prompt else "",
        rate(number("generation_tokens"), number("generation_tps")),
        f"peak {peak:.2f} GB" if peak is not None else "",
    ]
    return " · ".join(part for part in parts if part)
