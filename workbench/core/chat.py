"""Chat: one answer streamed from a model the manager lends, with figures, stop and context fitting.

A ``ChatRun`` borrows the model for the length of one answer, trims the oldest turns when the
conversation outgrows the model's context (and says so), streams tokens from the inference thread,
and ends with the figures of the generation. ``stop()`` takes effect before the next token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, cast

from workbench.core.generation import ChatBackend, GenerationStep
from workbench.core.inference import TokenStream
from workbench.core.lifecycle import ModelManager, ModelManagerError, ModelRole
from workbench.core.sampling import SamplingSettings


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenerationFigures:
    ttft_s: float
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    peak_memory_gb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationFigures:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})

    def summary(self) -> str:
        return (
            f"first token {self.ttft_s:.2f} s · prompt {self.prompt_tokens} tok @ {self.prompt_tps:.1f} tok/s · "
            f"{self.generation_tokens} tok @ {self.generation_tps:.1f} tok/s · peak {self.peak_memory_gb:.2f} GB"
        )


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextTrimmed:
    """The oldest ``dropped`` messages are not sent: the conversation outgrew the context."""

    dropped: int
    prompt_tokens: int
    window: int


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finished:
    figures: GenerationFigures | None
    stopped: bool
    finish_reason: str | None


ChatEvent = ContextTrimmed | Token | Finished


class ChatError(Exception):
    """A chat that cannot go on; the message is for the user."""


# --- context ------------------------------------------------------------------------------------


def fit_to_context(
    backend: ChatBackend, handle: Any, messages: list[ChatMessage], window: int | None, reserve: int
) -> tuple[list[ChatMessage], int, int]:
    """Drop the oldest turns (never the system prompt or the last message) until the prompt plus
    ``reserve`` answer tokens fits ``window``. Returns the kept messages, how many were dropped and the
    prompt's token count. Runs on the inference thread (it tokenizes)."""
    system = [m for m in messages[:1] if m.role == "system"]
    turns = messages[len(system) :]
    dropped = 0
    while True:
        kept = system + turns[dropped:]
        tokens = backend.count_prompt_tokens(handle, [m.as_dict() for m in kept])
        if window is None or tokens + reserve <= window or dropped >= len(turns) - 1:
            break
        dropped += 1
        # keep turns whole: never start the history with an assistant answer
        while dropped < len(turns) - 1 and turns[dropped].role == "assistant":
            dropped += 1
    if window is not None and tokens >= window:
        raise ChatError(
            f"the last message alone is {tokens} tokens, more than the model's context of {window}: shorten it"
        )
    return kept, dropped, tokens


# --- one answer ---------------------------------------------------------------------------------


class ChatRun:
    """Stream one answer. Iterate ``events()`` once; call ``stop()`` from anywhere on the loop."""

    def __init__(
        self,
        manager: ModelManager,
        model_id: str,
        messages: list[ChatMessage],
        sampling: SamplingSettings,
        context_length: int | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.manager = manager
        self.model_id = model_id
        self.messages = messages
        self.sampling = sampling
        self.context_length = context_length or manager.context_length
        self._clock = clock
        self._stop_requested = False
        self._tokens: TokenStream[GenerationStep] | None = None

    def stop(self) -> None:
        self._stop_requested = True
        if self._tokens is not None:
            self._tokens.stop()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    async def events(self) -> AsyncIterator[ChatEvent]:
        if self.manager.role_of(self.model_id) is not ModelRole.CHAT:
            raise ChatError(f"{self.model_id} is not a chat model")
        backend = cast(ChatBackend, self.manager.backend_for(self.model_id))  # a chat backend declares the role
        lease = await self.manager.acquire(self.model_id)
        try:
            handle = lease.handle
            model_window = await self.manager.inference.run(backend.context_window, handle)
            windows = [w for w in (model_window, self.context_length) if w]
            window = min(windows) if windows else None
            kept, dropped, prompt_tokens = await self.manager.inference.run(
                fit_to_context, backend, handle, self.messages, window, self.sampling.max_tokens
            )
            if dropped:
                yield ContextTrimmed(dropped=dropped, prompt_tokens=prompt_tokens, window=window or 0)
            if self._stop_requested:
                yield Finished(figures=None, stopped=True, finish_reason=None)
                return
            payload = [m.as_dict() for m in kept]
            started = self._clock()
            first_token_at: float | None = None
            last: GenerationStep | None = None
            inference = self.manager.inference
            run_stream = inference.thread_stream if getattr(backend, "blocking_io", False) else inference.stream
            self._tokens = run_stream(lambda: backend.chat_stream(handle, payload, self.sampling))
            async with self._tokens as steps:
                async for step in steps:
                    if first_token_at is None:
                        first_token_at = self._clock()
                    last = step
                    if step.text:
                        yield Token(step.text)
            figures = None
            if last is not None and first_token_at is not None:
                figures = GenerationFigures(
                    ttft_s=first_token_at - started,
                    prompt_tokens=last.prompt_tokens,
                    prompt_tps=last.prompt_tps,
                    generation_tokens=last.generation_tokens,
                    generation_tps=last.generation_tps,
                    peak_memory_gb=last.peak_memory_gb,
                )
            yield Finished(figures=figures, stopped=self._stop_requested,
                           finish_reason=None if last is None else last.finish_reason)  # fmt: skip
        finally:
            self._tokens = None
            await lease.release()


__all__ = [
    "ChatError",
    "ChatEvent",
    "ChatMessage",
    "ChatRun",
    "ContextTrimmed",
    "Finished",
    "GenerationFigures",
    "ModelManagerError",
    "Token",
    "fit_to_context",
]
