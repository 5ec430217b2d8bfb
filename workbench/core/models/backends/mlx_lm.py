"""MLX language models through mlx-lm. Everything here that touches MLX runs on the inference thread."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.chat.output import OutputRules
from workbench.core.chat.sampling import SamplingSettings
from workbench.core.models.backends.mlx_generation import generate_with_cache
from workbench.core.models.backends.protocol import GenerationStep, PromptProgress
from workbench.core.models.memory import DTYPE_BYTES, MemoryEstimate, kv_cache_bytes, safetensors_weight_bytes
from workbench.core.models.spec import ModelRole, ModelSpec
from workbench.core.prompt_cache.disk import model_fingerprint
from workbench.core.prompt_cache.reuse import PromptReuse

KIND = "mlx-lm"


@dataclass
class LoadedLanguageModel:
    model: Any
    tokenizer: Any
    config: dict[str, Any]
    model_id: str = ""  # whose prompt caches it reads and keeps
    fingerprint: str = ""  # of the files it was loaded from: a saved cache of other files is not used
    guidance_tokenizers: dict[int, Any] = field(default_factory=dict)  # for JSON output, by logits width (mlx_json)


def weight_files(path: Path) -> list[Path]:
    return sorted(Path(path).glob("model*.safetensors"))


def activation_dtype_bytes(config: dict[str, Any], by_dtype: dict[str, int]) -> int:
    """Bytes per element of activations (and so of the KV cache): the model's float dtype."""
    named = config.get("torch_dtype") or config.get("dtype")
    if named in DTYPE_BYTES:
        return DTYPE_BYTES[named]
    floats = {k: v for k, v in by_dtype.items() if k in ("F32", "F16", "BF16")}
    return DTYPE_BYTES[max(floats, key=floats.__getitem__)] if floats else 2


class MlxLmBackend:
    kind = KIND
    role = ModelRole.CHAT

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate:
        files = weight_files(spec.path)
        if not files:
            raise FileNotFoundError(f"no model*.safetensors in {spec.path}")
        config = json.loads((Path(spec.path) / "config.json").read_text())
        weights, by_dtype = safetensors_weight_bytes(files)
        kv = kv_cache_bytes(config, context_length, activation_dtype_bytes(config, by_dtype))
        return MemoryEstimate(weights=weights, kv_cache=kv)

    def prepare(self) -> None:
        import mlx_lm  # noqa: F401  (2-3 s the first time: it imports transformers)

    def load(self, spec: ModelSpec) -> LoadedLanguageModel:
        import mlx_lm

        model, tokenizer, config = mlx_lm.load(str(spec.path), return_config=True)
        template = getattr(tokenizer, "chat_template", None)
        fingerprint = model_fingerprint(Path(spec.path), template if isinstance(template, str) else None)
        return LoadedLanguageModel(model=model, tokenizer=tokenizer, config=config, model_id=spec.id,
                                   fingerprint=fingerprint)  # fmt: skip

    def unload(self, handle: Any) -> None:
        import mlx.core as mx

        del handle
        gc.collect()
        mx.clear_cache()

    def memory_in_use(self) -> int:
        import mlx.core as mx

        return int(mx.get_active_memory())

    # --- chat (on the inference thread) ---

    def chat_stream(
        self,
        handle: LoadedLanguageModel,
        messages: list[dict[str, str]],
        sampling: SamplingSettings,
        reuse: PromptReuse | None = None,
        rules: OutputRules | None = None,
    ) -> Iterator[GenerationStep | PromptProgress]:
        return generate(handle, messages, sampling, reuse=reuse, rules=rules)

    def complete_stream(
        self,
        handle: LoadedLanguageModel,
        prompt: str,
        sampling: SamplingSettings,
        reuse: PromptReuse | None = None,
        rules: OutputRules | None = None,
    ) -> Iterator[GenerationStep | PromptProgress]:
        return generate_from_tokens(handle, raw_prompt_tokens(handle, prompt), sampling, reuse=reuse, rules=rules)

    def count_prompt_tokens(self, handle: LoadedLanguageModel, messages: list[dict[str, str]]) -> int:
        return len(prompt_tokens(handle, messages))

    def count_text_tokens(self, handle: LoadedLanguageModel, prompt: str) -> int:
        return len(raw_prompt_tokens(handle, prompt))

    def context_window(self, handle: LoadedLanguageModel) -> int | None:
        config = handle.config.get("text_config", handle.config)
        window = config.get("max_position_embeddings")
        return int(window) if window else None

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        return delta  # MLX active memory counts exactly the arrays the load created


def prompt_tokens(loaded: LoadedLanguageModel, messages: list[dict[str, str]]) -> list[int]:
    """The model's own chat template applied to the conversation (a string prompt would skip it)."""
    return list(loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def raw_prompt_tokens(loaded: LoadedLanguageModel, prompt: str) -> list[int]:
    """``prompt`` read as it is, with the tokenizer's BOS in front unless the text starts with it (as mlx-lm does)."""
    bos = getattr(loaded.tokenizer, "bos_token", None)
    return list(loaded.tokenizer.encode(prompt, add_special_tokens=bos is None or not prompt.startswith(bos)))


def generate(
    loaded: LoadedLanguageModel,
    messages: list[dict[str, str]],
    sampling: SamplingSettings | None = None,
    max_tokens: int | None = None,
    reuse: PromptReuse | None = None,
    rules: OutputRules | None = None,
) -> Iterator[GenerationStep | PromptProgress]:
    """Stream a chat answer: progress while the prompt is read, then one step per token. Create and advance it on the
    inference thread; ``reuse`` lends it a kept prompt cache and takes the cache back when it ends."""
    return generate_from_tokens(loaded, prompt_tokens(loaded, messages), sampling, max_tokens, reuse, rules)


def generate_from_tokens(
    loaded: LoadedLanguageModel,
    prompt: list[int],
    sampling: SamplingSettings | None = None,
    max_tokens: int | None = None,
    reuse: PromptReuse | None = None,
    rules: OutputRules | None = None,
) -> Iterator[GenerationStep | PromptProgress]:
    """Stream the continuation of ``prompt`` (token ids), as ``generate`` streams a chat answer."""
    import mlx.core as mx

    sampling = sampling or SamplingSettings(temperature=0.0)
    if sampling.seed is not None:
        mx.random.seed(sampling.seed)
    limit = max_tokens if max_tokens is not None else sampling.max_tokens
    return generate_with_cache(loaded, prompt, sampling, limit, reuse, rules=rules)
