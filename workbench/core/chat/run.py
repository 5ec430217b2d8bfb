"""Chat: one answer streamed from a model the manager lends, with figures, stop and context fitting.

A ``ChatRun`` borrows the model for the length of one answer, trims the oldest turns when the
conversation outgrows the model's context (and says so), streams tokens from the inference thread,
and ends with the figures of the generation. ``stop()`` takes effect before the next token.
Output rules (stop sequences, JSON) apply to the answer; a raw ``prompt`` is continued without the chat template.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from workbench.core.chat.figures import GenerationFigures
from workbench.core.chat.output import OutputRules, StopScanner
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.protocol import ChatBackend, GenerationStep, PromptProgress
from workbench.core.models.inference import TokenStream
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.spec import ModelManagerError, ModelRole


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system", "user" or "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextTrimmed:
    """The oldest ``dropped`` messages are not sent: the conversation outgrew the context."""

    dropped: int
    prompt_tokens: int
    window: int


@dataclass(frozen=True)
class Reading:
    """The model is reading the prompt: ``done`` of ``total`` tokens, ``cached`` of them reused from a kept cache."""

    done: int
    total: int
    cached: int

    @property
    def percent(self) -> int:
        """How much of what had to be read has been (the cached part was not read), 0–100."""
        to_read = self.total - self.cached
        return 100 if to_read <= 0 else max(0, min(100, round(100 * (self.done - self.cached) / to_read)))


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finished:
    figures: GenerationFigures | None
    stopped: bool
    finish_reason: str | None


ChatEvent = ContextTrimmed | Reading | Token | Finished


class ChatError(Exception):
    """A chat that cannot go on; the message is for the user."""


# --- context ------------------------------------------------------------------------------------


# No real text averages anywhere near this many characters per token (English prose ~4, indented code ~8), so a
# conversation longer than ``window * MAX_CHARS_PER_TOKEN`` characters cannot fit a window of ``window`` tokens.
# Dropping such turns before tokenizing bounds the tokenizer's time and memory (~150 bytes per character of a
# prompt) by the window instead of by what a client sends.
MAX_CHARS_PER_TOKEN = 32


def _split_system(messages: list[ChatMessage]) -> tuple[list[ChatMessage], list[ChatMessage]]:
    system = [m for m in messages[:1] if m.role == "system"]
    return system, messages[len(system) :]


def _turn_starts(turns: list[ChatMessage]) -> list[int]:
    """Where the kept history may start, oldest first: whole turns (never an assistant answer first), and the
    last message always."""
    last = len(turns) - 1
    return [i for i, m in enumerate(turns) if i in (0, last) or m.role != "assistant"]


def trim_to_characters(messages: list[ChatMessage], window: int) -> tuple[list[ChatMessage], int]:
    """Drop the oldest turns (never the system prompt or the last message) that surely cannot fit ``window``
    tokens: more characters than ``window * MAX_CHARS_PER_TOKEN`` or more messages than tokens. Counts characters
    only (no tokenizer). Returns the kept messages and how many were dropped; raises ChatError when the system
    prompt and the last message alone are already too long."""
    system, turns = _split_system(messages)
    budget = window * MAX_CHARS_PER_TOKEN
    fixed = sum(len(m.content) for m in system)
    after = [0] * (len(turns) + 1)  # after[i]: characters of turns[i:]
    for i in range(len(turns) - 1, -1, -1):
        after[i] = after[i + 1] + len(turns[i].content)
    for start in _turn_starts(turns) or [0]:
        if fixed + after[start] <= budget and len(system) + len(turns) - start <= window:
            return system + turns[start:], start
    raise ChatError(f"the last message alone is {fixed + after[-2 if turns else 0]:,} characters, more than the "
                    f"model's context of {window} tokens can hold: shorten it")  # fmt: skip


def fit_to_context(
    backend: ChatBackend, handle: Any, messages: list[ChatMessage], window: int | None, reserve: int
) -> tuple[list[ChatMessage], int, int]:
    """Drop the oldest turns (never the system prompt or the last message) until the prompt plus
    ``reserve`` answer tokens fits ``window``. Returns the kept messages, how many were dropped and the
    prompt's token count. Runs on the inference thread (it tokenizes: first what surely cannot fit goes by
    its characters, then a binary search over where the history starts tokenizes a few candidates)."""
    surely_dropped = 0
    if window is not None:
        messages, surely_dropped = trim_to_characters(messages, window)
    system, turns = _split_system(messages)
    starts = _turn_starts(turns) or [0]
    counted: dict[int, int] = {}

    def tokens_from(start: int) -> int:
        if start not in counted:
            counted[start] = backend.count_prompt_tokens(handle, [m.as_dict() for m in system + turns[start:]])
        return counted[start]

    chosen = starts[-1]
    if window is not None:
        low, high = 0, len(starts) - 1  # the prompt shrinks as more turns go: find the first start that fits
        while low <= high:
            middle = (low + high) // 2
            if tokens_from(starts[middle]) + reserve <= window:
                chosen, high = starts[middle], middle - 1
            else:
                low = middle + 1
    else:
        chosen = 0
    tokens = tokens_from(chosen)
    if window is not None and tokens >= window:
        raise ChatError(
            f"the last message alone is {tokens} tokens, more than the model's context of {window}: shorten it"
        )
    return system + turns[chosen:], surely_dropped + chosen, tokens


def fit_raw_prompt(backend: ChatBackend, handle: Any, prompt: str, window: int | None, reserve: int) -> int:
    """The token count of a raw ``prompt``, which is never trimmed: raises ChatError when it is empty or cannot
    leave room for an answer in ``window``. Runs on the inference thread (it tokenizes; characters first)."""
    if not prompt:
        raise ChatError("the prompt is empty")
    if window is not None and len(prompt) > window * MAX_CHARS_PER_TOKEN:
        raise ChatError(f"the prompt is {len(prompt):,} characters, more than the model's context of {window} "
                        f"tokens can hold: shorten it")  # fmt: skip
    tokens = backend.count_text_tokens(handle, prompt)
    if window is not None and tokens >= window:
        raise ChatError(f"the prompt is {tokens} tokens, more than the model's context of {window}: shorten it")
    return tokens


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
        holder: str = "a chat",
        conversation: str | None = None,
        rules: OutputRules | None = None,
        prompt: str | None = None,
    ) -> None:
        """``conversation`` names the chat this answer belongs to ("chat-12"): its prompt cache is then also saved to
        disk, so that the chat reopened after a restart does not read its history again. ``rules`` are the output
        rules (checked by ``check_rules``); ``prompt``, when given, is raw text to continue without the chat
        template (``messages`` are then not used)."""
        self.manager = manager
        self.holder = holder  # who borrows the model, for the user (a refused delete names it)
        self.model_id = model_id
        self.messages = messages
        self.sampling = sampling
        self.context_length = context_length or manager.context_length
        self.conversation = conversation
        self.rules = rules or OutputRules()
        self.prompt = prompt
        self._clock = clock
        self._stop_requested = False
        self._tokens: TokenStream[GenerationStep | PromptProgress] | None = None

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
        lease = await self.manager.acquire(self.model_id, holder=self.holder)
        try:
            handle = lease.handle
            model_window = await self.manager.inference.run(backend.context_window, handle)
            windows = [w for w in (model_window, self.context_length) if w]
            window = min(windows) if windows else None
            kept: list[ChatMessage] = []
            if self.prompt is not None:
                await self.manager.inference.run(
                    fit_raw_prompt, backend, handle, self.prompt, window, self.sampling.max_tokens
                )
            else:
                kept, dropped, prompt_tokens = await self.manager.inference.run(
                    fit_to_context, backend, handle, self.messages, window, self.sampling.max_tokens
                )
                if dropped:
                    yield ContextTrimmed(dropped=dropped, prompt_tokens=prompt_tokens, window=window or 0)
            if self._stop_requested:
                yield Finished(figures=None, stopped=True, finish_reason=None)
                return
            started = self._clock()
            first_token_at: float | None = None
            last: GenerationStep | None = None
            inference = self.manager.inference
            run_stream = inference.thread_stream if getattr(backend, "blocking_io", False) else inference.stream
            reuse = self.manager.prompt_reuse(self.conversation)
            scanner = StopScanner(self.rules.active_stops)
            self._tokens = run_stream(self._stream_factory(backend, handle, kept, reuse))
            async with self._tokens as steps:
                async for step in steps:
                    if isinstance(step, PromptProgress):
                        yield Reading(step.done, step.total, step.cached)
                        continue
                    if first_token_at is None:
                        first_token_at = self._clock()
                    last = step
                    text = scanner.feed(step.text)
                    if text:
                        yield Token(text)
                    if scanner.stopped:
                        break  # leaving the block closes the stream before its next step
            held = scanner.flush()
            if held:
                yield Token(held)
            figures = None
            if last is not None and first_token_at is not None:
                figures = GenerationFigures(
                    ttft_s=first_token_at - started,
                    prompt_tokens=last.prompt_tokens,
                    prompt_tps=last.prompt_tps,
                    generation_tokens=last.generation_tokens,
                    generation_tps=last.generation_tps,
                    peak_memory_gb=last.peak_memory_gb,
                    cached_tokens=last.cached_tokens,
                )
            finish_reason = "stop" if scanner.stopped else None if last is None else last.finish_reason
            yield Finished(figures=figures, stopped=self._stop_requested, finish_reason=finish_reason)
        finally:
            self._tokens = None
            await lease.release()

    def _stream_factory(
        self, backend: ChatBackend, handle: Any, kept: list[ChatMessage], reuse: Any
    ) -> Callable[[], Iterator[GenerationStep | PromptProgress]]:
        """What creates the backend's stream on the thread that runs it. Rules are passed only when there are any,
        so that backends written before them keep working for plain chat."""
        extra = {"rules": self.rules} if self.rules else {}
        if self.prompt is not None:
            prompt = self.prompt
            return lambda: backend.complete_stream(handle, prompt, self.sampling, reuse, **extra)
        payload = [m.as_dict() for m in kept]
        return lambda: backend.chat_stream(handle, payload, self.sampling, reuse, **extra)


__all__ = [
    "ChatError",
    "ChatEvent",
    "ChatMessage",
    "ChatRun",
    "ContextTrimmed",
    "Finished",
    "GenerationFigures",
    "ModelManagerError",
    "Reading",
    "Token",
    "fit_raw_prompt",
    "fit_to_context",
    "trim_to_characters",
]
