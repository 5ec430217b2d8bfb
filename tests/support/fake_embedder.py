"""A fake sentence-transformers backend: real manager and inference thread, a hashing bag-of-words "model".

Texts that share words get similar vectors, so search and clustering behave sensibly, and each model id
hashes differently, so two fake embedders disagree a little, like two real ones. No torch involved.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.models.backends.sentence_transformers import KIND
from workbench.core.models.memory import MB, MemoryEstimate
from workbench.core.models.spec import ModelRole, ModelSpec

DIMENSIONS = 384
STOP_WORDS = frozenset(("the", "and", "for", "with", "that", "this", "are", "its", "not", "from", "into", "when",
                        "until", "before", "over", "one"))  # fmt: skip
_WORD = re.compile(r"[a-z]{3,}")


class FakeEmbeddingModel:
    def __init__(self, model_id: str, backend: FakeEmbeddingBackend) -> None:
        self.model_id = model_id
        self.backend = backend

    def word_vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.model_id}:{word}".encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(DIMENSIONS).astype(np.float32)

    def encode(self, texts: list[str], **_options: Any) -> np.ndarray:
        backend = self.backend
        backend.batches.append(list(texts))
        if len(backend.batches) > backend.free_batches and not backend.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        backend.encoded += len(texts)
        rows = []
        for text in texts:
            words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS] or ["empty"]
            rows.append(np.sum([self.word_vector(word) for word in words], axis=0))
        return np.stack(rows)

    def preprocess(self, texts: list[str]) -> dict[str, np.ndarray]:
        """An attention mask as a tokenizer's: a text's words plus two special tokens."""
        lengths = [len(text.split()) + 2 for text in texts]
        mask = np.zeros((len(texts), max(lengths, default=0)), dtype=np.int64)
        for row, length in enumerate(lengths):
            mask[row, :length] = 1
        return {"attention_mask": mask}


class FakeEmbeddingBackend:
    kind = KIND
    role = ModelRole.EMBED

    def __init__(self) -> None:
        # Batches after the first `free_batches` wait for the gate (open unless a test clears it).
        self.gate = threading.Event()
        self.gate.set()
        self.free_batches = 0
        self.batches: list[list[str]] = []
        self.encoded = 0
        self.loads = 0

    def estimate(self, spec: ModelSpec, context_length: int) -> MemoryEstimate:
        return MemoryEstimate(weights=5 * MB)

    def prepare(self) -> None:
        pass

    def load(self, spec: ModelSpec) -> FakeEmbeddingModel:
        self.loads += 1
        return FakeEmbeddingModel(spec.id, self)

    def unload(self, handle: Any) -> None:
        pass

    def memory_in_use(self) -> int:
        return 0

    def loaded_bytes(self, handle: Any, delta: int) -> int:
        return 5 * MB


def fake_embedder_spec(model_id: str) -> ModelSpec:
    return ModelSpec(id=model_id, name=model_id, kind=KIND, path=Path("/nonexistent") / model_id)


def services_with_fake_embedders(paths: Any, *model_ids: str) -> tuple[Any, FakeEmbeddingBackend]:
    """The real services with the sentence-transformers backend replaced by the fake and `model_ids` registered.

    The default all-MiniLM-L6-v2 stays registered and is then served by the fake as well (the pane's model A).
    """
    from workbench.bootstrap import build_services

    services = build_services(paths)
    backend = FakeEmbeddingBackend()
    services.manager.add_backend(backend)
    for model_id in model_ids:
        services.manager.register(fake_embedder_spec(model_id))
    return services, backend
