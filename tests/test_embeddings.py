"""Embeddings core (corpus loading, the vector cache and embed_corpus with cancel, top-k search in analysis), with
the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.core.embeddings.analysis import top_k
from workbench.core.embeddings.cache import Cancelled, EmbeddingCache, embed_corpus, normalise
from workbench.core.embeddings.corpus import load_corpus, split_passages
from workbench.core.models.local import default_embedder_spec

pytestmark = pytest.mark.real_model

MODEL_ID = "all-MiniLM-L6-v2"
SUBJECTS = ["The cat", "A dog", "My neighbour", "The old sailor", "A young chemist", "The train", "Our teacher",
            "The red kite", "A violinist", "The baker"]  # fmt: skip
ACTIONS = ["sleeps on the warm windowsill", "reads a book about volcanoes", "bakes bread before dawn",
           "sails across the stormy bay", "repairs an old bicycle"]  # fmt: skip
SENTENCES = [f"{subject} {action}." for subject in SUBJECTS for action in ACTIONS]  # 50 distinct short sentences


@pytest.fixture(scope="module")
def model() -> Any:
    from sentence_transformers import SentenceTransformer

    spec = default_embedder_spec()
    return SentenceTransformer(str(spec.path), device="cpu", local_files_only=True)


class CountingEncoder:
    """Wraps the real model's encode and records every batch it was asked for."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return np.asarray(self.model.encode(texts, batch_size=64, convert_to_numpy=True))

    @property
    def encoded(self) -> list[str]:
        return [text for batch in self.batches for text in batch]


@pytest.fixture
def encoder(model: Any) -> CountingEncoder:
    return CountingEncoder(model)


# ---------------------------------------------------------------------------------------------------- search


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    scores = [(i, float(np.dot(row, query) / (np.linalg.norm(row) * np.linalg.norm(query)))) for i, row in
              enumerate(vectors)]  # fmt: skip
    return sorted(scores, key=lambda pair: (-pair[1], pair[0]))[:k]


def test_search_equals_brute_force(tmp_path: Path, encoder: CountingEncoder) -> None:
    vectors = embed_corpus(encoder, MODEL_ID, SENTENCES, EmbeddingCache(tmp_path))
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for query_text in ["a pet resting in the sun", "someone fixing a bike", "making bread early"]:
        query = encoder([query_text])[0]
        for k in (1, 5, 10, len(SENTENCES), len(SENTENCES) + 3):
            got = top_k(vectors, query, k)
            want = brute_force(vectors, query, k)
            assert [i for i, _ in got] == [i for i, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    best, _ = top_k(vectors, encoder(["a pet resting in the sun"])[0], 1)[0]
    assert SENTENCES[best] in {"The cat sleeps on the warm windowsill.", "A dog sleeps on the warm windowsill."}
    assert top_k(vectors, vectors[0], 0) == [] and top_k(vectors[:0], vectors[0], 3) == []


# ---------------------------------------------------------------------------------------------------- cache


def test_second_embed_encodes_nothing_and_matches(tmp_path: Path, encoder: CountingEncoder) -> None:
    first = embed_corpus(encoder, MODEL_ID, SENTENCES, EmbeddingCache(tmp_path), batch_size=16)
    assert len(encoder.batches) == 4 and sorted(encoder.encoded) == sorted(SENTENCES)
    encoder.batches.clear()
    second = embed_corpus(encoder, MODEL_ID, SENTENCES, EmbeddingCache(tmp_path))  # a fresh cache object: from disk
    assert encoder.batches == []
    np.testing.assert_array_equal(first, second)
    reordered = embed_corpus(encoder, MODEL_ID, SENTENCES[::-1], EmbeddingCache(tmp_path))
    assert encoder.batches == []
    np.testing.assert_array_equal(reordered, first[::-1])


def test_changed_text_reembeds_only_that_text(tmp_path: Path, encoder: CountingEncoder) -> None:
    cache = EmbeddingCache(tmp_path)
    first = embed_corpus(encoder, MODEL_ID, SENTENCES, cache)
    encoder.batches.clear()
    changed = list(SENTENCES)
    changed[7] = "The stock market fell sharply on Tuesday."
    second = embed_corpus(encoder, MODEL_ID, changed, EmbeddingCache(tmp_path))
    assert encoder.encoded == [changed[7]]
    unchanged = [i for i in range(len(SENTENCES)) if i != 7]
    np.testing.assert_array_equal(second[unchanged], first[unchanged])
    assert float(second[7] @ first[7]) < 0.9


def test_other_model_id_does_not_reuse_vectors(tmp_path: Path, encoder: CountingEncoder) -> None:
    cache = EmbeddingCache(tmp_path)
    embed_corpus(encoder, MODEL_ID, SENTENCES[:10], cache)
    encoder.batches.clear()
    embed_corpus(encoder, "other/model", SENTENCES[:10], cache)
    assert sorted(encoder.encoded) == sorted(SENTENCES[:10])
    assert cache.model_folder(MODEL_ID) != cache.model_folder("other/model")
    assert cache.count(MODEL_ID) == 10 and cache.count("other/model") == 10


def test_duplicates_are_encoded_once_and_progress_counts_texts(tmp_path: Path, encoder: CountingEncoder) -> None:
    texts = SENTENCES[:5] + SENTENCES[:5] + SENTENCES[5:8]
    seen: list[tuple[int, int]] = []
    vectors = embed_corpus(encoder, MODEL_ID, texts, EmbeddingCache(tmp_path), batch_size=3,
                           progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert sorted(encoder.encoded) == sorted(SENTENCES[:8])
    np.testing.assert_array_equal(vectors[:5], vectors[5:10])
    assert seen[0] == (0, 13) and seen[-1] == (13, 13)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_cancel_stops_between_batches_and_keeps_work(tmp_path: Path, encoder: CountingEncoder) -> None:
    seen: list[tuple[int, int]] = []
    stop_after_two: Callable[[], bool] = lambda: len(encoder.batches) >= 2  # noqa: E731
    with pytest.raises(Cancelled):
        embed_corpus(encoder, MODEL_ID, SENTENCES, EmbeddingCache(tmp_path), batch_size=10,
                     progress=lambda done, total: seen.append((done, total)), cancelled=stop_after_two)  # fmt: skip
    assert len(encoder.batches) == 2 and seen[-1] == (20, 50)
    done_before = set(encoder.encoded)
    encoder.batches.clear()
    embed_corpus(encoder, MODEL_ID, SENTENCES, EmbeddingCache(tmp_path), batch_size=10)
    assert len(encoder.encoded) == 30 and not set(encoder.encoded) & done_before


def test_cancel_before_the_first_batch(tmp_path: Path, encoder: CountingEncoder) -> None:
    with pytest.raises(Cancelled):
        embed_corpus(encoder, MODEL_ID, SENTENCES, EmbeddingCache(tmp_path), cancelled=lambda: True)
    assert encoder.batches == []


def test_normalise_leaves_zero_rows_alone() -> None:
    rows = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])
    assert rows.dtype == np.float32


# ---------------------------------------------------------------------------------------------------- corpus loading


def test_load_txt_one_item_per_non_empty_line(tmp_path: Path) -> None:
    path = tmp_path / "items.txt"
    path.write_text("first item\n\n  second item  \n   \nthird\n", encoding="utf-8")
    corpus = load_corpus(path)
    assert [p.text for p in corpus.passages] == ["first item", "second item", "third"]
    assert [p.id for p in corpus.passages] == ["items.txt:1", "items.txt:3", "items.txt:5"]
    assert corpus.problems == []
    assert load_corpus(path) == corpus  # ids are stable


def test_load_folder_splits_paragraphs_and_long_ones(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Title\n\nShort paragraph\nover two lines.\n", encoding="utf-8")
    sentence = "This sentence is about forty-five characters. "
    (tmp_path / "a.txt").write_text("Intro.\n\n" + sentence * 10 + "\n\n\nEnd.", encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("x\n1\n", encoding="utf-8")
    corpus = load_corpus(tmp_path, max_chars=100)
    texts = [p.text for p in corpus.passages]
    assert texts[0] == "Intro." and texts[-3:] == ["End.", "# Title", "Short paragraph over two lines."]
    long_pieces = texts[1:-3]
    assert len(long_pieces) == 5 and all(len(t) <= 100 for t in long_pieces)
    assert all(t.endswith(".") for t in long_pieces)  # cut at sentence ends
    assert " ".join(long_pieces) == (sentence * 10).strip()
    assert [p.source for p in corpus.passages] == ["a.txt"] * 7 + ["b.md"] * 2
    assert corpus.passages[1].id == "a.txt#1" and corpus.passages[-1].id == "b.md#1"


def test_split_passages_cuts_an_overlong_sentence_at_words() -> None:
    pieces = split_passages("word " * 50, max_chars=30)
    assert all(len(p) <= 30 for p in pieces) and " ".join(pieces) == ("word " * 50).strip()


def test_load_csv_reports_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('id,body\n1,"first, with a comma"\n2,\n3\n4,fourth\n', encoding="utf-8")
    corpus = load_corpus(path)  # first text column: "body" (id is numeric)
    assert [p.text for p in corpus.passages] == ["first, with a comma", "fourth"]
    assert [p.id for p in corpus.passages] == ["notes.csv:2", "notes.csv:5"]
    assert corpus.problems == ["notes.csv line 3: empty 'body'", "notes.csv line 4: missing column 'body'"]
    assert [p.text for p in load_corpus(path, column="id").passages] == ["1", "2", "3", "4"]
    missing = load_corpus(path, column="title")
    assert missing.passages == [] and "no column 'title'" in missing.problems[0]


def test_load_jsonl_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": "alpha"}), "{not json", json.dumps({"body": "no text field"}), "",
             json.dumps(["a list"]), json.dumps({"text": "beta", "body": "other"})]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(path)
    assert [p.text for p in corpus.passages] == ["alpha", "beta"]
    assert [p.id for p in corpus.passages] == ["docs.jsonl:1", "docs.jsonl:6"]
    assert [problem.split(":")[0] for problem in corpus.problems] == [
        "docs.jsonl line 2", "docs.jsonl line 3", "docs.jsonl line 5"]  # fmt: skip
    assert [p.text for p in load_corpus(path, column="body").passages] == ["no text field", "other"]


def test_unknown_and_missing_paths_are_problems(tmp_path: Path) -> None:
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    assert load_corpus(pdf).passages == [] and "unsupported" in load_corpus(pdf).problems[0]
    assert "no such file" in load_corpus(tmp_path / "nope.txt").problems[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_corpus(empty).problems
