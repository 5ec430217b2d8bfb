"""What every chat-capable backend provides, whatever runs the model (MLX here, a remote server later)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from workbench.core.chat.sampling import SamplingSettings


@dataclass(frozen=True)
class GenerationStep:
    """One generated token (or text piece) with the running figures of the generation."""

    text: str
    token: int
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    peak_memory_gb: float
    finish_reason: str | None  # "stop", "length", or None while it goes on


@runtime_checkable
class ChatBackend(Protocol):
    """The chat half of a backend. All three run on the inference thread."""

    def chat_stream(
        self, handle: Any, messages: list[dict[str, str]], sampling: SamplingSettings
    ) -> Iterator[GenerationStep]: ...

    def count_prompt_tokens(self, handle: Any, messages: list[dict[str, str]]) -> int: ...

    def context_window(self, handle: Any) -> int | None: ...
