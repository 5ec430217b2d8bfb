"""What every chat backend provides, whatever runs the model (MLX here, or an OpenAI-compatible server elsewhere):
:class:`ChatBackend`, and the :class:`GenerationStep` its stream yields. The loading half every backend shares is
``Backend`` in workbench.core.models.lifecycle."""

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
    """The chat half of a backend. ``count_prompt_tokens`` and ``context_window`` run on the inference thread;
    so does ``chat_stream``, one step at a time between other jobs, unless the backend sets ``blocking_io = True``
    (its stream waits on the network, as the remote backend's does): then it runs on a thread of its own."""

    def chat_stream(
        self, handle: Any, messages: list[dict[str, str]], sampling: SamplingSettings
    ) -> Iterator[GenerationStep]: ...

    def count_prompt_tokens(self, handle: Any, messages: list[dict[str, str]]) -> int: ...

    def context_window(self, handle: Any) -> int | None: ...
