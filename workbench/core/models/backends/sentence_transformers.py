"""Embedding models through sentence-transformers (PyTorch on the CPU, MPS on a Mac)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from workbench.core.models.memory import MB, MemoryEstimate, safetensors_weight_bytes
from workbench.core.models.spec import ModelRole, ModelSpec

KIND = "sentence-transformers"
# Activations of one encode batch (128 short sentences) beyond the weights; measured ~10-20 MB for MiniLM.
BATCH_OVERHEAD = 32 * MB


class SentenceTransformerBackend:
    kind = KIND
    role = ModelRole.EMBED

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate:
        files = sorted(Path(spec.path).rglob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no safetensors weights under {spec.path}")
        weights, _ = safetensors_weight_bytes(files)
        return MemoryEstimate(weights=weights, overhead=BATCH_OVERHEAD)

    def prepare(self) -> None:
        import sentence_transformers  # noqa: F401  (about 6 s and 300 MB of RSS the first time)

    def load(self, spec: ModelSpec) -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(spec.path), device="cpu", local_files_only=True)

    def unload(self, handle: Any) -> None:
        del handle
        gc.collect()

    def memory_in_use(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        """RSS misses memory-mapped weights whose pages are not touched yet; the tensors exist anyway."""
        tensors = [*handle.parameters(), *handle.buffers()]
        return max(delta, sum(t.numel() * t.element_size() for t in tensors))
