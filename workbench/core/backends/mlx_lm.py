"""MLX language models through mlx-lm. Everything here that touches MLX runs on the inference thread."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.lifecycle import ModelSpec
from workbench.core.memory import DTYPE_BYTES, MemoryEstimate, kv_cache_bytes, safetensors_weight_bytes

KIND = "mlx-lm"


@dataclass
class LoadedLanguageModel:
    model: Any
    tokenizer: Any
    config: dict[str, Any]


@dataclass(frozen=True)
class GenerationStep:
    text: str
    token: int
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    peak_memory_gb: float
    finish_reason: str | None


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
        return LoadedLanguageModel(model=model, tokenizer=tokenizer, config=config)

    def unload(self, handle: Any) -> None:
        import mlx.core as mx

        del handle
        gc.collect()
        mx.clear_cache()

    def memory_in_use(self) -> int:
        import mlx.core as mx

        return int(mx.get_active_memory())

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        return delta  # MLX active memory counts exactly the arrays the load created


def generate(
    loaded: LoadedLanguageModel,
    messages: list[dict[str, str]],
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> Iterator[GenerationStep]:
    """Stream a chat answer, one step per token. Create and advance it on the inference thread."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    prompt = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    sampler = make_sampler(temp=temperature, top_p=top_p)
    for response in stream_generate(loaded.model, loaded.tokenizer, prompt, max_tokens=max_tokens, sampler=sampler):
        yield GenerationStep(
            text=response.text,
            token=int(response.token),
            prompt_tokens=response.prompt_tokens,
            prompt_tps=response.prompt_tps,
            generation_tokens=response.generation_tokens,
            generation_tps=response.generation_tps,
            peak_memory_gb=response.peak_memory,
            finish_reason=response.finish_reason,
        )
