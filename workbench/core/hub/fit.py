"""Whether a model fits in memory: its quantization and parameter count read from a hub listing (names, tags,
the per-dtype counts of its safetensors), the bytes of its weights and of its KV cache at a context length (exact
from a config, else guessed from its size), and the verdict against a memory budget."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from workbench.core.models.memory import DTYPE_BYTES, kv_cache_bytes

TIGHT_SHARE = 0.8  # a model that needs more than this share of the budget is "tight"
# Without a config, a model's KV cache is guessed from its size: about 16 KB per token per billion
# parameters in 16-bit (Llama 3 8B: 128 KB; Qwen2.5 7B: 56 KB; Llama 3.2 3B: 112 KB).
KV_BYTES_PER_TOKEN_PER_BILLION = 16 * 1024


class FitVerdict(StrEnum):
    FITS = "fits"
    TIGHT = "tight"
    WONT_FIT = "won't fit"
    UNKNOWN = "?"


def fit_verdict(need_bytes: int | None, budget_bytes: int) -> FitVerdict:
    if not need_bytes:
        return FitVerdict.UNKNOWN
    if need_bytes <= TIGHT_SHARE * budget_bytes:
        return FitVerdict.FITS
    if need_bytes <= budget_bytes:
        return FitVerdict.TIGHT
    return FitVerdict.WONT_FIT


_BITS_IN_NAME = re.compile(r"(?<![0-9])([2-8])[-_]?bits?\b", re.IGNORECASE)
_PARAMS_IN_NAME = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*([BM])(?![a-z])", re.IGNORECASE)


def quantization_of(repo_id: str, tags: list[str], config: dict[str, Any] | None) -> str | None:
    quant = (config or {}).get("quantization") or (config or {}).get("quantization_config") or {}
    if isinstance(quant, dict) and quant.get("bits"):
        return f"{quant['bits']}-bit"
    for text in [repo_id, *tags]:
        if match := _BITS_IN_NAME.search(text):
            return f"{match.group(1)}-bit"
    lowered = repo_id.lower()
    for name in ("bf16", "fp16", "f16", "fp32"):
        if name in lowered:
            return name
    return None


def bits_of(quantization: str | None) -> int | None:
    if quantization and quantization.endswith("-bit"):
        return int(quantization.split("-")[0])
    return None


def params_from_name(repo_id: str) -> int | None:
    if match := _PARAMS_IN_NAME.search(repo_id.rsplit("/", 1)[-1]):
        value, unit = float(match.group(1)), match.group(2).upper()
        return int(value * (1e9 if unit == "B" else 1e6))
    return None


def weights_from_safetensors(safetensors: dict[str, Any] | None) -> tuple[int | None, dict[str, int]]:
    """Bytes of the weights from the hub's per-dtype element counts (exact, packed 4-bit included)."""
    counts = (safetensors or {}).get("parameters") or {}
    if not counts:
        return None, {}
    return sum(DTYPE_BYTES.get(dtype, 2) * n for dtype, n in counts.items()), counts


def params_from_counts(counts: dict[str, int], bits: int | None) -> int | None:
    """Quantized MLX weights pack 32/bits values in each U32; scales and biases are not parameters."""
    if not counts:
        return None
    packed = counts.get("U32", 0)
    floats = sum(n for dtype, n in counts.items() if dtype != "U32")
    if packed and bits:
        # every group of 64 (or 32) values also carries a scale and a bias: subtract them (approximately)
        values = packed * (32 // bits)
        return values + max(0, floats - 2 * values // 64)
    return floats + packed


def kv_estimate(config: dict[str, Any] | None, params: int | None, context_length: int,
                dtype_bytes: int = 2) -> tuple[int | None, bool]:  # fmt: skip
    """KV cache bytes at ``context_length``: exact from a config with layer counts, else guessed."""
    if (
        config
        and config.get("num_hidden_layers")
        and config.get("num_attention_heads")
        and (config.get("hidden_size") or config.get("head_dim"))
    ):
        return kv_cache_bytes(config, context_length, dtype_bytes), True
    if params:
        return int(KV_BYTES_PER_TOKEN_PER_BILLION * params / 1e9 * context_length), False
    return None, False
