"""A scripted chat backend: real manager, real inference thread, fake model. For fast, exact UI tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from workbench.core.chat.output import OutputRules
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.protocol import GenerationStep, PromptProgress
from workbench.core.models.memory import MB, MemoryEstimate
from workbench.core.models.spec import ModelRole, ModelSpec

KIND = "fake-chat"
HOLD_S = 30.0


@dataclass
class Script:
    tokens: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    delay_s: float = 0.0
    fail_after: int | None = None  # raise after this many tokens
    window: int | None = 4096
    hold: threading.Event | None = None  # the first token waits for it (at most HOLD_S): requests pile up
    reading_chunks: int = 0  # read the prompt in this many steps (PromptProgress) before the first token
    reading_delay_s: float = 0.0  # each reading step takes this long
    reading_hold: threading.Event | None = None  # the steps after the first wait for it (at most HOLD_S)
    cached: int = 0  # prompt tokens that came from a kept prompt cache (at most all but one)


class FakeChatBackend:
    kind = KIND
    role = ModelRole.CHAT

    def __init__(self, script: Script | None = None, kind: str = KIND, weights: int = 10 * MB) -> None:
        """``kind`` lets a test register several fakes (one per kind, each with its own script);
        ``weights`` is what a load of one of its models measures (the estimate adds 2 MB of KV cache)."""
        self.kind = kind
        self.weights = weights
        self.script = script or Script()
        self.calls: list[list[dict[str, str]]] = []
        self.sampling: list[SamplingSettings] = []
        self.prompts: list[str] = []  # the raw prompts received (complete_stream)
        self.rules: list[OutputRules | None] = []  # the output rules of each stream, chat or raw
        self.emitted = 0
        self.read_chunks = 0  # reading steps yielded, over all streams
        self.started = threading.Event()
        self.closed = threading.Event()  # a stream ended: finished, failed, or closed by a stop

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate:
        return MemoryEstimate(weights=self.weights, kv_cache=2 * MB)

    def prepare(self) -> None:
        pass

    def load(self, spec: ModelSpec) -> Any:
        return {"model": spec.id}

    def unload(self, handle: Any) -> None:
        pass

    def memory_in_use(self) -> int:
        return 0

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        return self.weights

    def chat_stream(self, handle: Any, messages: list[dict[str, str]], sampling: SamplingSettings,
                    reuse: Any = None, rules: OutputRules | None = None
                    ) -> Iterator[GenerationStep | PromptProgress]:  # fmt: skip
        self.calls.append(messages)
        self.sampling.append(sampling)
        self.rules.append(rules)
        self.started.set()
        try:
            yield from self._answer(self.count_prompt_tokens(handle, messages), sampling)
        finally:
            self.closed.set()

    def complete_stream(self, handle: Any, prompt: str, sampling: SamplingSettings, reuse: Any = None,
                        rules: OutputRules | None = None) -> Iterator[GenerationStep | PromptProgress]:  # fmt: skip
        """The same scripted tokens, whatever the raw prompt (a fake does not constrain its output)."""
        self.prompts.append(prompt)
        self.sampling.append(sampling)
        self.rules.append(rules)
        self.started.set()
        try:
            yield from self._answer(self.count_text_tokens(handle, prompt), sampling)
        finally:
            self.closed.set()

    def _cached(self, prompt: int) -> int:
        return max(0, min(self.script.cached, prompt - 1))

    def _read(self, prompt: int) -> Iterator[PromptProgress]:
        cached = self._cached(prompt)
        chunks = self.script.reading_chunks
        for i in range(chunks):
            if i and self.script.reading_hold is not None:
                self.script.reading_hold.wait(HOLD_S)
            if self.script.reading_delay_s:
                time.sleep(self.script.reading_delay_s)
            self.read_chunks += 1
            yield PromptProgress(done=cached + (prompt - cached) * (i + 1) // chunks, total=prompt, cached=cached)

    def _answer(self, prompt: int, sampling: SamplingSettings) -> Iterator[GenerationStep | PromptProgress]:
        yield from self._read(prompt)
        tokens = self.script.tokens[: sampling.max_tokens]
        if self.script.hold is not None:
            self.script.hold.wait(HOLD_S)
        for i, text in enumerate(tokens):
            if self.script.fail_after is not None and i >= self.script.fail_after:
                raise RuntimeError("the fake model fell over")
            if self.script.delay_s:
                time.sleep(self.script.delay_s)
            self.emitted += 1
            yield GenerationStep(
                text=text, token=i, prompt_tokens=prompt, prompt_tps=1000.0, generation_tokens=i + 1,
                generation_tps=50.0, peak_memory_gb=0.01, cached_tokens=self._cached(prompt),
                finish_reason=("length" if len(tokens) == sampling.max_tokens else "stop") if i == len(tokens) - 1
                else None,
            )  # fmt: skip

    def count_prompt_tokens(self, handle: Any, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def count_text_tokens(self, handle: Any, prompt: str) -> int:
        return len(prompt.split())

    def context_window(self, handle: Any) -> int | None:
        return self.script.window


def fake_spec(model_id: str = "fake-chat", kind: str = KIND) -> ModelSpec:
    from pathlib import Path

    return ModelSpec(id=model_id, name=model_id, kind=kind, path=Path("/nonexistent") / model_id)


def services_with_fake(paths: Any, script: Script | None = None) -> tuple[Any, FakeChatBackend]:
    """The real services (config, store, manager) plus a scripted chat model registered as "fake-chat"."""
    from workbench.bootstrap import build_services

    services = build_services(paths)
    backend = FakeChatBackend(script)
    services.manager.add_backend(backend)
    services.manager.register(fake_spec())
    return services, backend
