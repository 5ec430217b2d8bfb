"""The Embeddings pane's background work: read a corpus, embed it with model A or B, embed a search query, project
and cluster the corpus, compare two models' neighbours.

Each job runs as a worker of the pane and touches no widget: it posts one of the messages below, with the
generation it started in, and the pane's handlers drop answers whose generation has passed (the corpus or a
model changed meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from textual.message import Message
from textual.screen import Screen

from workbench.core.embeddings.analysis import CorpusMap, Overlap, build_map, neighbour_overlap, top_k
from workbench.core.embeddings.cache import Cancelled
from workbench.core.embeddings.corpus import Corpus, load_corpus
from workbench.core.embeddings.embedder import Embedder
from workbench.core.models.spec import ModelManagerError
from workbench.ui.services import services_of

log = logging.getLogger(__name__)

SEARCH_DEBOUNCE_S = 0.12
RESULTS = 10
OVERLAP_K = 10


# --- messages -----------------------------------------------------------------------------------


class CorpusRead(Message, bubble=False):
    def __init__(self, path: Path, column: str | None, corpus: Corpus) -> None:
        super().__init__()
        self.path = path
        self.column = column
        self.corpus = corpus


class EmbedProgress(Message, bubble=False):
    def __init__(self, side: str, done: int, total: int) -> None:
        super().__init__()
        self.side = side
        self.done = done
        self.total = total


class EmbedDone(Message, bubble=False):
    """One side's embedding ended: with its vectors, or stopped (cancelled, failed: ``note`` says how)."""

    def __init__(self, generation: int, side: str, model_id: str, count: int, cancel: threading.Event) -> None:
        super().__init__()
        self.generation = generation
        self.side = side
        self.model_id = model_id
        self.count = count
        self.cancel = cancel  # the job's own flag: the pane forgets the job only if no newer one replaced it
        self.vectors: np.ndarray | None = None
        self.note = ""  # the status line to show
        self.alert = ""  # an error worth a notification


class SearchNote(Message, bubble=False):
    """A word on the search under way (the model is loading, or could not embed the query)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class SearchAnswered(Message, bubble=False):
    """Model A's nearest passages for ``text`` (none when there is no text or nothing to search yet)."""

    def __init__(self, generation: int, text: str, hits: list[tuple[int, float]], query: np.ndarray | None,
                 timing: str = "") -> None:  # fmt: skip
        super().__init__()
        self.generation = generation
        self.text = text
        self.hits = hits
        self.query = query
        self.timing = timing


class QueryEncodedB(Message, bubble=False):
    """Model B's vector for the same query (None when B has nothing to search), after SearchAnswered."""

    def __init__(self, generation: int, query: np.ndarray | None) -> None:
        super().__init__()
        self.generation = generation
        self.query = query


class MapReady(Message, bubble=False):
    def __init__(self, generation: int, result: CorpusMap | None, error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.result = result
        self.error = error


class OverlapReady(Message, bubble=False):
    def __init__(self, generation: int, overlap: Overlap | None, error: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.overlap = overlap
        self.error = error


# --- the jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchInputs:
    """What a search reads from the pane once its debounce is over."""

    generation: int
    model_a: str | None
    vectors_a: np.ndarray | None
    model_b: str | None
    vectors_b: np.ndarray | None


class EmbeddingJobs:
    """Starts the pane's workers; each reports only by posting a message to the pane."""

    def __init__(self, pane: Screen) -> None:
        self.pane = pane

    @property
    def embedder(self) -> Embedder:
        return services_of(self.pane).embedder

    def read_corpus(self, path: Path, column: str | None) -> None:
        async def read() -> None:
            corpus = await asyncio.to_thread(load_corpus, path, column)
            self.pane.post_message(CorpusRead(path, column, corpus))

        self.pane.run_worker(read(), group="corpus", exclusive=True, exit_on_error=False)

    def embed(self, side: str, model_id: str, texts: list[str], generation: int, cancel: threading.Event) -> None:
        self.pane.run_worker(self.embed_side(side, model_id, texts, generation, cancel),
                             group=f"embed-{side}", exclusive=True, exit_on_error=False)  # fmt: skip

    async def embed_side(self, side: str, model_id: str, texts: list[str], generation: int,
                         cancel: threading.Event) -> None:  # fmt: skip
        done = EmbedDone(generation, side, model_id, len(texts), cancel)
        started = time.perf_counter()
        try:
            done.vectors = await self.embedder.embed(
                model_id, texts, progress=lambda n, total: self.pane.post_message(EmbedProgress(side, n, total)),
                cancel=cancel,
            )
            done.note = f"{side.upper()} embedded {len(texts)} in {time.perf_counter() - started:.1f} s"
        except Cancelled as exc:
            done.note = f"{side.upper()}: {exc}; ctrl+o and enter continues where it stopped"
        except ModelManagerError as exc:
            done.note, done.alert = f"{side.upper()}: {exc}", str(exc)
        except Exception as exc:
            log.exception("embedding with %s failed", model_id)
            done.note = f"{side.upper()}: embedding failed ({type(exc).__name__}: {exc})"
        finally:  # also when the worker is cancelled: the pane forgets the job's progress
            self.pane.post_message(done)

    def search(self, text: str, inputs: Callable[[], SearchInputs]) -> None:
        self.pane.run_worker(self.search_query(text, inputs), group="search", exclusive=True, exit_on_error=False)

    async def search_query(self, text: str, read_inputs: Callable[[], SearchInputs]) -> None:
        await asyncio.sleep(SEARCH_DEBOUNCE_S)  # a newer keystroke cancels this worker first
        inputs = read_inputs()
        post = self.pane.post_message
        if not text or inputs.vectors_a is None or inputs.model_a is None:
            post(SearchAnswered(inputs.generation, "", [], None))
            post(QueryEncodedB(inputs.generation, None))
            return
        started = time.perf_counter()
        if not self.embedder.manager.info(inputs.model_a).resident:  # the first query loads the model: seconds
            post(SearchNote(f"loading {inputs.model_a} to embed the query…"))
        try:
            query = await self.embedder.encode_query(inputs.model_a, text)
        except ModelManagerError as exc:
            post(SearchNote(str(exc)))
            return
        encoded = time.perf_counter()
        hits = top_k(inputs.vectors_a, query, RESULTS)
        searched = time.perf_counter()
        post(SearchAnswered(inputs.generation, text, hits, query, f"{(searched - encoded) * 1000:.1f} ms search + "
                            f"{(encoded - started) * 1000:.0f} ms to embed the query"))  # fmt: skip
        query_b = None
        if inputs.model_b is not None and inputs.vectors_b is not None:
            query_b = await self.embedder.encode_query(inputs.model_b, text)
        post(QueryEncodedB(inputs.generation, query_b))

    def project(self, vectors: np.ndarray, texts: list[str], k: int, method: str, generation: int) -> None:
        def build() -> None:
            try:
                corpus_map = build_map(vectors, texts, k=k, method=method)
            except Exception as exc:
                log.exception("projecting the corpus failed")
                self.pane.post_message(MapReady(generation, None, f"{type(exc).__name__}: {exc}"))
                return
            self.pane.post_message(MapReady(generation, corpus_map))

        self.pane.run_worker(build, thread=True, group="map", exclusive=True, exit_on_error=False)

    def compare(self, a: np.ndarray, b: np.ndarray, generation: int) -> None:
        def overlap() -> None:
            try:
                result = neighbour_overlap(a, b, k=OVERLAP_K)
            except Exception as exc:
                log.exception("comparing neighbours failed")
                self.pane.post_message(OverlapReady(generation, None, f"{type(exc).__name__}: {exc}"))
                return
            self.pane.post_message(OverlapReady(generation, result))

        self.pane.run_worker(overlap, thread=True, group="overlap", exclusive=True, exit_on_error=False)
