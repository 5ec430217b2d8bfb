"""Embedding vectors cached on disk, and a corpus embedded through that cache.

:class:`EmbeddingCache` keeps L2-normalised float32 vectors, one subfolder per model id (``vectors.npy`` and
``index.json``), each row found by the sha256 of its text. :func:`embed_corpus` encodes only the texts a model has
no vector for yet, in batches, through the ``encode`` callable the caller passes in (so this module never loads
torch), with progress and cancellation between batches. numpy is imported at module level.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows (a zero row stays zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.where(norms == 0, 1, norms).astype(np.float32)


class _ModelStore:
    """One model's cached vectors: `vectors.npy` (rows) and `index.json` (text hashes in row order)."""

    def __init__(self, folder: Path, model_id: str) -> None:
        self.folder = folder
        self.model_id = model_id
        self.rows: dict[str, int] = {}
        self.vectors: np.ndarray | None = None
        self.pending: list[np.ndarray] = []
        index_file, vectors_file = folder / "index.json", folder / "vectors.npy"
        if index_file.is_file() and vectors_file.is_file():
            try:
                index = json.loads(index_file.read_text(encoding="utf-8"))
                vectors = np.load(vectors_file)
            except (OSError, ValueError):
                return  # a damaged cache is only a slower start
            hashes = index.get("hashes", []) if isinstance(index, dict) else []
            if index.get("model_id") == model_id and len(hashes) == len(vectors):
                self.vectors = vectors.astype(np.float32, copy=False)
                self.rows = {digest: row for row, digest in enumerate(hashes)}

    def lookup(self, digest: str) -> np.ndarray | None:
        row = self.rows.get(digest)
        if row is None:
            return None
        stored = self.vectors.shape[0] if self.vectors is not None else 0
        if row < stored:
            assert self.vectors is not None
            return self.vectors[row]
        return self.pending[row - stored]

    def add(self, digests: list[str], vectors: np.ndarray) -> None:
        for digest, vector in zip(digests, vectors, strict=True):
            if digest not in self.rows:
                self.rows[digest] = len(self.rows)
                self.pending.append(vector)

    def flush(self) -> None:
        if not self.pending:
            return
        new = np.stack(self.pending).astype(np.float32)
        self.vectors = new if self.vectors is None else np.concatenate([self.vectors, new])
        self.pending = []
        hashes = [""] * len(self.rows)
        for digest, row in self.rows.items():
            hashes[row] = digest
        self.folder.mkdir(parents=True, exist_ok=True)
        vectors_tmp = self.folder / "vectors.tmp.npy"
        index_tmp = self.folder / "index.tmp.json"
        np.save(vectors_tmp, self.vectors)
        index_tmp.write_text(json.dumps({"model_id": self.model_id, "hashes": hashes}), encoding="utf-8")
        os.replace(vectors_tmp, self.folder / "vectors.npy")
        os.replace(index_tmp, self.folder / "index.json")


class EmbeddingCache:
    """Normalised vectors on disk, one subfolder per model id, rows found by the sha256 of their text."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stores: dict[str, _ModelStore] = {}

    def model_folder(self, model_id: str) -> Path:
        slug = _SLUG_UNSAFE.sub("_", model_id).strip("_")[:60] or "model"
        return self.folder / f"{slug}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"

    def _store(self, model_id: str) -> _ModelStore:
        store = self._stores.get(model_id)
        if store is None:
            store = self._stores[model_id] = _ModelStore(self.model_folder(model_id), model_id)
        return store

    def get(self, model_id: str, digest: str) -> np.ndarray | None:
        return self._store(model_id).lookup(digest)

    def put(self, model_id: str, digests: list[str], vectors: np.ndarray) -> None:
        self._store(model_id).add(digests, normalise(vectors))

    def flush(self, model_id: str | None = None) -> None:
        for store_id, store in self._stores.items():
            if model_id is None or store_id == model_id:
                store.flush()

    def count(self, model_id: str) -> int:
        return len(self._store(model_id).rows)

    def missing(self, model_id: str, texts: list[str]) -> int:
        """How many of `texts` this model has no vector for yet."""
        return sum(1 for text in texts if self.get(model_id, text_hash(text)) is None)


class Cancelled(Exception):
    """embed_corpus stopped because `cancelled()` turned true; the batches done so far are cached."""


def embed_corpus(
    encode: Callable[[list[str]], np.ndarray],
    model_id: str,
    texts: list[str],
    cache: EmbeddingCache,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Vectors for `texts` in order (L2-normalised float32), encoding only texts this model has not cached.

    `progress(done, total)` counts texts (cached ones count as done at the start); `cancelled()` is checked
    before each batch and raises `Cancelled`. Work done before a cancel is kept in the cache.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    digests = [text_hash(text) for text in texts]
    missing: dict[str, str] = {}
    for digest, text in zip(digests, texts, strict=True):
        if digest not in missing and cache.get(model_id, digest) is None:
            missing[digest] = text
    # Longest first, like SentenceTransformer.encode: texts of similar length share a batch, so little padding.
    todo = sorted(missing.items(), key=lambda item: -len(item[1]))
    total = len(texts)
    waiting = sum(1 for digest in digests if digest in missing)
    done = total - waiting
    if progress is not None:
        progress(done, total)
    occurrences = Counter(digests)
    try:
        for start in range(0, len(todo), batch_size):
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled after {done} of {total} texts")
            batch = todo[start : start + batch_size]
            vectors = np.asarray(encode([text for _, text in batch]))
            if vectors.shape[0] != len(batch):
                raise ValueError(f"encode returned {vectors.shape[0]} vectors for {len(batch)} texts")
            cache.put(model_id, [digest for digest, _ in batch], vectors)
            done += sum(occurrences[digest] for digest, _ in batch)
            if progress is not None:
                progress(done, total)
    finally:
        cache.flush(model_id)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    rows = [cache.get(model_id, digest) for digest in digests]
    return np.stack([row for row in rows if row is not None]).astype(np.float32, copy=False)
