"""Embeddings explorer domain logic: load a corpus, embed it through a disk cache, search it.

numpy is the only heavy import at module level; sentence-transformers is reached through the `encode`
callable the caller passes in, so this module never loads torch itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TEXT_SUFFIXES = (".txt", ".md")
CSV_SNIFF_ROWS = 20
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_BLANK_LINE = re.compile(r"\n\s*\n")
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------------------------------- corpus loading


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    source: str


@dataclass
class Corpus:
    passages: list[Passage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [passage.text for passage in self.passages]


def load_corpus(path: Path, column: str | None = None, max_chars: int = 800) -> Corpus:
    """Read a corpus; anything wrong with a row or a file becomes a line in `problems`, never an exception."""
    corpus = Corpus()
    if not path.exists():
        corpus.problems.append(f"{path}: no such file or folder")
    elif path.is_dir():
        _load_folder(path, max_chars, corpus)
    else:
        suffix = path.suffix.lower()
        try:
            if suffix in TEXT_SUFFIXES:
                _load_lines(path, corpus)
            elif suffix == ".csv":
                _load_csv(path, column, corpus)
            elif suffix == ".jsonl":
                _load_jsonl(path, column or "text", corpus)
            else:
                corpus.problems.append(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}")
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            corpus.problems.append(f"{path.name}: cannot read ({exc})")
    return corpus


def _load_lines(path: Path, corpus: Corpus) -> None:
    source = path.name
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if text:
            corpus.passages.append(Passage(id=f"{source}:{number}", text=text, source=source))


def _load_folder(folder: Path, max_chars: int, corpus: Corpus) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        corpus.problems.append(f"{folder}: no .txt or .md files")
    for file in files:
        source = file.relative_to(folder).as_posix()
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            corpus.problems.append(f"{source}: cannot read ({exc})")
            continue
        for index, text in enumerate(split_passages(content, max_chars)):
            corpus.passages.append(Passage(id=f"{source}#{index}", text=text, source=source))


def split_passages(content: str, max_chars: int = 800) -> list[str]:
    """Paragraphs (split at blank lines), long ones cut at sentence ends into pieces of at most max_chars."""
    passages: list[str] = []
    for paragraph in _BLANK_LINE.split(content):
        text = " ".join(paragraph.split())
        if text:
            passages.extend(_cut(text, max_chars))
    return passages


def _cut(text: str, max_chars: int) -> Iterator[str]:
    if len(text) <= max_chars:
        yield text
        return
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for piece in _hard_cut(sentence, max_chars):
            if current and len(current) + 1 + len(piece) > max_chars:
                yield current
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        yield current


def _hard_cut(sentence: str, max_chars: int) -> Iterator[str]:
    """A sentence longer than max_chars is cut at word boundaries (or mid-word as a last resort)."""
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        yield sentence[:cut].rstrip()
        sentence = sentence[cut:].lstrip()
    if sentence:
        yield sentence


def _load_csv(path: Path, column: str | None, corpus: Corpus) -> None:
    source = path.name
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            corpus.problems.append(f"{source}: empty file")
            return
        rows: list[tuple[int, list[str]]] = [(reader.line_num, row) for row in reader]
    if column is None:
        column = _first_text_column(header, [row for _, row in rows[:CSV_SNIFF_ROWS]])
        if column is None:
            corpus.problems.append(f"{source}: no text column found")
            return
    if column not in header:
        corpus.problems.append(f"{source}: no column {column!r} (columns: {', '.join(header)})")
        return
    position = header.index(column)
    for line, row in rows:
        if not row:
            continue  # a blank line is not a row
        if position >= len(row):
            corpus.problems.append(f"{source} line {line}: missing column {column!r}")
            continue
        text = row[position].strip()
        if not text:
            corpus.problems.append(f"{source} line {line}: empty {column!r}")
            continue
        corpus.passages.append(Passage(id=f"{source}:{line}", text=text, source=source))


def _first_text_column(header: list[str], sample: list[list[str]]) -> str | None:
    for position, name in enumerate(header):
        values = [row[position].strip() for row in sample if position < len(row) and row[position].strip()]
        if values and not all(_is_number(value) for value in values):
            return name
    return None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _load_jsonl(path: Path, key: str, corpus: Corpus) -> None:
    source = path.name
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            corpus.problems.append(f"{source} line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            corpus.problems.append(f"{source} line {number}: not a JSON object")
            continue
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            corpus.problems.append(f"{source} line {number}: no text in field {key!r}")
            continue
        corpus.passages.append(Passage(id=f"{source}:{number}", text=value.strip(), source=source))


# ---------------------------------------------------------------------------------------------------- embedding cache


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


# ---------------------------------------------------------------------------------------------------- search


def top_k(vectors: np.ndarray, query: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
    """The k rows most similar to `query` by cosine (rows already normalised), best first; ties by row order."""
    count = vectors.shape[0]
    if count == 0 or k <= 0:
        return []
    scores = vectors @ normalise(np.asarray(query).reshape(-1))
    k = min(k, count)
    candidates = np.arange(count) if k == count else np.argpartition(scores, count - k)[count - k :]
    order = np.lexsort((candidates, -scores[candidates]))
    return [(int(candidates[i]), float(scores[candidates[i]])) for i in order]


def neighbours_of(vectors: np.ndarray, row: int, count: int) -> list[tuple[int, float]]:
    """The `count` rows most similar to row `row`, best first, without the row itself."""
    return [(i, score) for i, score in top_k(vectors, vectors[row], count + 1) if i != row][:count]
