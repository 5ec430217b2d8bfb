"""Memory probes, estimates and the budget.

System figures come from psutil; MLX figures only once MLX has been imported by someone else (a probe
never pulls a heavy library in). Estimates read safetensors headers, never the weights themselves.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GB = 1024**3
MB = 1024**2

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "float32": 4, "float16": 2, "bfloat16": 2,
}  # fmt: skip


def format_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    if n < MB:
        return f"{n / 1024:.0f} KB"
    if n < GB:
        return f"{n / MB:.0f} MB"
    return f"{n / GB:.1f} GB"


@dataclass(frozen=True)
class MemorySnapshot:
    system_total: int
    system_used: int
    process_rss: int
    mlx_active: int | None = None
    mlx_peak: int | None = None
    mlx_cache: int | None = None


class MemoryProbe:
    """Reads memory figures. Cheap enough to call a few times a second."""

    @cached_property
    def _process(self) -> Any:
        import psutil  # imported on first use: the first frame does not wait for it

        return psutil.Process()

    def rss(self) -> int:
        return self._process.memory_info().rss

    def mlx_active(self) -> int | None:
        mx = sys.modules.get("mlx.core")
        return int(mx.get_active_memory()) if mx is not None else None

    def snapshot(self) -> MemorySnapshot:
        import psutil

        vm = psutil.virtual_memory()
        mx = sys.modules.get("mlx.core")
        active = peak = cache = None
        if mx is not None:
            active, peak, cache = (int(mx.get_active_memory()), int(mx.get_peak_memory()),
                                   int(mx.get_cache_memory()))  # fmt: skip
        return MemorySnapshot(
            system_total=vm.total,
            system_used=vm.total - vm.available,
            process_rss=self.rss(),
            mlx_active=active,
            mlx_peak=peak,
            mlx_cache=cache,
        )


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # how it was chosen, shown to the user


def physical_memory() -> int:
    """Installed memory (sysconf works on Linux and macOS and costs nothing at start-up)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_budget(budget_gb: float | None, fraction: float, total_bytes: int | None = None) -> Budget:
    """An explicit budget wins; otherwise a fraction of physical memory."""
    if budget_gb is not None:
        return Budget(int(budget_gb * GB), "memory.budget_gb")
    total = total_bytes if total_bytes is not None else physical_memory()
    return Budget(int(total * fraction), f"{fraction:.0%} of {format_bytes(total)}")


def metal_budget() -> Budget | None:
    """Metal's recommended working set on Apple Silicon (imports mlx: call it on the inference thread)."""
    if sys.platform != "darwin":
        return None
    try:
        import mlx.core as mx

        size = mx.device_info().get("max_recommended_working_set_size")
    except Exception:  # no Metal device, or an mlx without device_info
        log.info("no Metal working set available", exc_info=True)
        return None
    return Budget(int(size), "Metal recommended working set") if size else None


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int = 0
    overhead: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


def read_safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100 * MB:
            raise ValueError(f"{path}: implausible safetensors header ({length} bytes)")
        return json.loads(f.read(length))


def safetensors_weight_bytes(paths: list[Path]) -> tuple[int, dict[str, int]]:
    """Total tensor bytes in the files, and bytes per dtype (from the headers only)."""
    total = 0
    by_dtype: dict[str, int] = {}
    for path in paths:
        for name, info in read_safetensors_header(path).items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            size = end - start
            if size == 0 and info.get("shape"):
                size = math.prod(info["shape"]) * DTYPE_BYTES.get(info["dtype"], 2)
            total += size
            by_dtype[info["dtype"]] = by_dtype.get(info["dtype"], 0) + size
    return total, by_dtype


def kv_cache_bytes(config: dict[str, Any], context_length: int, dtype_bytes: int) -> int:
    """Keys and values for every layer at ``context_length`` tokens (mlx-lm's standard KV cache)."""
    text = config.get("text_config", config)
    layers = int(text["num_hidden_layers"])
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or text["hidden_size"] // heads)
    return 2 * layers * kv_heads * head_dim * context_length * dtype_bytes
