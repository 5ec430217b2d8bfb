"""Chat models on an OpenAI-compatible server (vLLM, Ollama, llama.cpp's server, mlx_lm.server, …).

Nothing is loaded here: a "load" makes a client, and the model costs no local memory. Streaming waits on the
network, so these streams run on a thread of their own (``blocking_io``) instead of the MLX inference thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.chat.output import OutputRules
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.protocol import GenerationStep
from workbench.core.models.endpoints import Endpoint, EndpointError, explain, make_client
from workbench.core.models.memory import MemoryEstimate
from workbench.core.models.spec import ModelRole, ModelSpec
from workbench.core.prompt_cache.reuse import PromptReuse

KIND = "openai-remote"
CHARS_PER_TOKEN = 4  # without the server's tokenizer, a prompt's size is estimated


@dataclass
class RemoteModel:
    endpoint: Endpoint
    model: str
    client: Any


def remote_spec(endpoint: Endpoint, model: str) -> ModelSpec:
    return ModelSpec(id=endpoint.model_id(model), name=f"{model} @ {endpoint.name}", kind=KIND,
                     path=Path(endpoint.base_url))  # fmt: skip


class RemoteChatBackend:
    kind = KIND
    role = ModelRole.CHAT
    blocking_io = True  # chat_stream waits on the network: run it off the inference thread

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = {endpoint.name: endpoint for endpoint in endpoints}

    def endpoint_of(self, spec: ModelSpec) -> tuple[Endpoint, str]:
        name, _, model = spec.id.partition(":")
        if name not in self.endpoints:
            raise EndpointError(f"no endpoint called {name!r} in the config")
        return self.endpoints[name], model

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate:
        return MemoryEstimate(weights=0)  # it runs elsewhere

    def prepare(self) -> None:
        import openai  # noqa: F401

    def load(self, spec: ModelSpec) -> RemoteModel:
        endpoint, model = self.endpoint_of(spec)
        return RemoteModel(endpoint=endpoint, model=model, client=make_client(endpoint))

    def unload(self, handle: RemoteModel) -> None:
        handle.client.close()

    def memory_in_use(self) -> int:
        return 0

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        return 0

    # --- chat ---

    def chat_stream(
        self,
        handle: RemoteModel,
        messages: list[dict[str, str]],
        sampling: SamplingSettings,
        reuse: PromptReuse | None = None,  # the remote server keeps (or not) its own prompt caches
        rules: OutputRules | None = None,
    ) -> Iterator[GenerationStep]:
        return stream_chat(handle, messages, sampling, rules)

    def complete_stream(
        self,
        handle: RemoteModel,
        prompt: str,
        sampling: SamplingSettings,
        reuse: PromptReuse | None = None,
        rules: OutputRules | None = None,
    ) -> Iterator[GenerationStep]:
        return stream_completion(handle, prompt, sampling, rules)

    def count_prompt_tokens(self, handle: RemoteModel, messages: list[dict[str, str]]) -> int:
        return sum(len(message["content"]) // CHARS_PER_TOKEN + 4 for message in messages)

    def count_text_tokens(self, handle: RemoteModel, prompt: str) -> int:
        return len(prompt) // CHARS_PER_TOKEN + 1

    def context_window(self, handle: RemoteModel) -> int | None:
        return handle.endpoint.context_length


def request_options(sampling: SamplingSettings) -> dict[str, Any]:
    """OpenAI's own sampling fields, plus the ones vLLM, llama.cpp and mlx_lm.server also accept (extra_body)."""
    options: dict[str, Any] = {"temperature": sampling.temperature, "top_p": sampling.top_p,
                               "max_tokens": sampling.max_tokens}  # fmt: skip
    if sampling.seed is not None:
        options["seed"] = sampling.seed
    extra: dict[str, Any] = {}
    if sampling.top_k:
        extra["top_k"] = sampling.top_k
    if sampling.min_p:
        extra["min_p"] = sampling.min_p
    if sampling.repetition_penalty and sampling.repetition_penalty != 1.0:
        extra["repetition_penalty"] = sampling.repetition_penalty
    if extra:
        options["extra_body"] = extra
    return options


def rules_options(rules: OutputRules | None, completion: bool = False) -> dict[str, Any]:
    """The output rules in OpenAI's fields: ``stop`` and ``response_format``. /v1/completions has no response_format
    in OpenAI's API, but the local servers that take one there (vLLM, mlx_lm.server) read it from the body."""
    if not rules:
        return {}
    options: dict[str, Any] = {}
    if rules.active_stops:
        options["stop"] = list(rules.active_stops)
    response_format: dict[str, Any] | None = None
    if rules.json_schema is not None:
        response_format = {"type": "json_schema",
                           "json_schema": {"name": "output", "schema": rules.json_schema, "strict": True}}  # fmt: skip
    elif rules.json_object:
        response_format = {"type": "json_object"}
    if response_format is not None:
        if completion:
            options["extra_body"] = {"response_format": response_format}
        else:
            options["response_format"] = response_format
    return options


def _with_rules(options: dict[str, Any], rules: OutputRules | None, completion: bool) -> dict[str, Any]:
    extra = rules_options(rules, completion)
    merged_body = {**options.get("extra_body", {}), **extra.pop("extra_body", {})}
    merged = {**options, **extra}
    if merged_body:
        merged["extra_body"] = merged_body
    return merged


def stream_chat(handle: RemoteModel, messages: list[dict[str, str]], sampling: SamplingSettings,
                rules: OutputRules | None = None) -> Iterator[GenerationStep]:  # fmt: skip
    """One streamed answer with the same figures a local model reports, measured on this side of the wire:
    time to the first token (in the caller), prompt tok/s = prompt tokens / that time, generation tok/s
    from the first token on. Token counts come from the server's usage when it sends them."""
    return _stream(handle, lambda: handle.client.chat.completions.create(
        model=handle.model, messages=messages, stream=True, stream_options={"include_usage": True},
        **_with_rules(request_options(sampling), rules, completion=False),
    ), chat=True)  # fmt: skip


def stream_completion(handle: RemoteModel, prompt: str, sampling: SamplingSettings,
                      rules: OutputRules | None = None) -> Iterator[GenerationStep]:  # fmt: skip
    """The streamed continuation of a raw ``prompt`` through the endpoint's /v1/completions, with the figures
    ``stream_chat`` reports."""
    return _stream(handle, lambda: handle.client.completions.create(
        model=handle.model, prompt=prompt, stream=True, stream_options={"include_usage": True},
        **_with_rules(request_options(sampling), rules, completion=True),
    ), chat=False)  # fmt: skip


def _stream(handle: RemoteModel, create: Any, chat: bool) -> Iterator[GenerationStep]:
    started = time.monotonic()
    first_at: float | None = None
    pieces = 0
    prompt_tokens = 0
    completion_tokens: int | None = None
    finish: str | None = None
    try:
        stream = create()
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens or prompt_tokens
                    completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    text = (choice.delta.content if choice.delta else None) if chat else choice.text
                    if not text:
                        continue
                    now = time.monotonic()
                    if first_at is None:
                        first_at = now
                    pieces += 1
                    yield _step(text, pieces, prompt_tokens, started, first_at, now, None)
    except Exception as exc:
        raise EndpointError(explain(handle.endpoint, exc, handle.model)) from exc
    now = time.monotonic()
    tokens = completion_tokens if completion_tokens is not None else pieces
    yield _step("", tokens, prompt_tokens, started, first_at or now, now, "length" if finish == "length" else "stop")


def _step(text: str, tokens: int, prompt_tokens: int, started: float, first_at: float, now: float,
          finish: str | None) -> GenerationStep:  # fmt: skip
    ttft = max(first_at - started, 1e-6)
    decoding = now - first_at
    return GenerationStep(
        text=text, token=tokens, prompt_tokens=prompt_tokens, prompt_tps=prompt_tokens / ttft,
        generation_tokens=tokens, generation_tps=(tokens - 1) / decoding if tokens > 1 and decoding > 0 else 0.0,
        peak_memory_gb=0.0, finish_reason=finish,
    )  # fmt: skip
