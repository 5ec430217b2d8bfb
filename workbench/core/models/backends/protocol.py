"""What backends provide: every backend (``Backend``: each model's role, estimate, load, unload, measure) and the
chat-capable ones (``ChatBackend``: stream an answer, count prompt tokens, the context window), whatever runs the
model (MLX on the inference thread, a remote OpenAI-compatible server on a thread of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from workbench.core.chat.output import OutputRules
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.memory import MemoryEstimate
from workbench.core.models.spec import ModelRole, ModelSpec
from workbench.core.prompt_cache.reuse import PromptReuse


class Backend(Protocol):
    kind: str
    role: ModelRole  # what every model this backend runs is for

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate: ...

    def prepare(self) -> None:
        """Runs on the inference thread before a load is measured: import the library, so its one-time
        cost is not charged to the first model."""

    def load(self, spec: ModelSpec) -> Any:
        """Runs on the inference thread; returns the loaded model handle."""

    def unload(self, handle: Any) -> None:
        """Runs on the inference thread; frees what ``load`` allocated."""

    def memory_in_use(self) -> int:
        """Runs on the inference thread; the figure whose change across a load is that load's cost."""

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        """The measured cost of a load, given the change of ``memory_in_use`` across it."""


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
    cached_tokens: int = 0  # of ``prompt_tokens``, how many came from a kept prompt cache (not read again)


@dataclass(frozen=True)
class PromptProgress:
    """Reading the prompt before the first token: ``done`` of ``total`` prompt tokens are in the model's cache,
    ``cached`` of them from a kept prompt cache. A stop is seen between two of these."""

    done: int
    total: int
    cached: int = 0


@runtime_checkable
class ChatBackend(Protocol):
    """The chat half of a backend. ``count_prompt_tokens`` and ``context_window`` run on the inference thread;
    so does ``chat_stream``, one step at a time between other jobs, unless the backend sets ``blocking_io = True``
    (its stream waits on the network, as the remote backend's does): then it runs on a thread of its own."""

    def chat_stream(
        self,
        handle: Any,
        messages: list[dict[str, str]],
        sampling: SamplingSettings,
        reuse: PromptReuse | None = None,
        rules: OutputRules | None = None,
    ) -> Iterator[GenerationStep | PromptProgress]:
        """Stream an answer; ``reuse`` says where a kept prompt cache may come from (backends that keep none, like
        a remote server's, ignore it). ``rules`` (only passed when a request has any) constrain the answer to JSON
        (the backend must honour that) and carry the stop sequences (a backend may forward them; the caller applies
        them to the text in any case)."""

    def complete_stream(
        self,
        handle: Any,
        prompt: str,
        sampling: SamplingSettings,
        reuse: PromptReuse | None = None,
        rules: OutputRules | None = None,
    ) -> Iterator[GenerationStep | PromptProgress]:
        """Stream the continuation of ``prompt``, raw text read as it is (no chat template), as ``chat_stream``
        streams an answer."""

    def count_prompt_tokens(self, handle: Any, messages: list[dict[str, str]]) -> int: ...

    def count_text_tokens(self, handle: Any, prompt: str) -> int:
        """The tokens of ``prompt`` read raw, as ``complete_stream`` reads it."""

    def context_window(self, handle: Any) -> int | None: ...
