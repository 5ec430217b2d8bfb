"""Embeddings benchmark: the explorer's embedding path vs raw sentence-transformers, search latency, the map.

Three figures, all on the CPU with the real all-MiniLM-L6-v2 shipped in a PyPI package (384 dimensions):

- embed_ratio: throughput of the explorer's embedding path over raw ``SentenceTransformer.encode`` on the same
  sentences (5,000 distinct, made-up but ordinary English sentences of 5 to 40 words, seeded). Alternating in one
  process, after a short warm-up of each:

  - raw:  a SentenceTransformer loaded directly (a second copy of the weights, ~90 MB), one
    ``encode(sentences, batch_size=64, convert_to_numpy=True)`` on a plain thread (an executor of 1);
  - wb:   ``Embedder.embed`` with the model already loaded through a ModelManager: the lease, the cache
    bookkeeping in a worker thread, each batch of 64 encoded as a job on the manager's inference thread, and the
    vectors written to a fresh, empty EmbeddingCache folder each round (so every sentence is encoded and the
    cache write is part of the time, as on a first open of a corpus).

  Both sort the sentences longest first before batching, so the batches (and their padding) are the same.
  ``embed_ratio`` = best (fastest) raw seconds / best wb seconds. The best, not the median (which bench/chat_tps.py
  and bench/compare.py use, and which is printed too): on a 2-core machine anything else running only ever adds
  time, and unevenly (torch's 2 threads wait for each other when one is descheduled), so with 3 rounds the median
  still moves by +-10% with the neighbours' load, while the fastest round of each side is the closest to what the
  code costs. Each round also prints the process CPU seconds it used, which shows a disturbed round (wall time
  well above CPU time / 2). Torch keeps its default thread count (one per core) on both sides.

- knn_ms: the median time of ``top_k(vectors, query, k=10)`` over 100,000 random unit vectors (seeded normal rows,
  normalised, float32) for 100 real MiniLM query vectors; the p95 is printed. ``query_ms`` is one step of
  search-as-you-type: ``Embedder.encode_query`` (lease, one encode on the inference thread) plus that top_k.

- map_10k_s: projecting 10,000 real embeddings to 2-D and clustering them (``embedding_map.project`` with PCA,
  ``cluster`` with its default k, ``label_clusters``), the three together, median of 3 runs. The vectors are the
  5,000 from the last wb round plus 5,000 more sentences embedded once, untimed, through the Embedder.

    .venv/bin/python bench/embed.py [--sentences 5000] [--rounds 3] [--vectors 100000] [--queries 100]
                                    [--map-points 10000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.embeddings.analysis import top_k
from workbench.core.embeddings.cache import EmbeddingCache, normalise
from workbench.core.embeddings.embedder import DEFAULT_BATCH_SIZE, Embedder
from workbench.core.models.backends.sentence_transformers import SentenceTransformerBackend
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelManager
from workbench.core.models.local import default_embedder_spec
from workbench.core.models.memory import Budget, format_bytes

SEED = 20240611
WARMUP_SENTENCES = 200
WARMUP_QUERIES = 5
MAP_RUNS = 3
TOP_K = 10
DIMENSIONS = 384  # all-MiniLM-L6-v2
BUDGET_BYTES = 1 << 32
LOAD_TIMEOUT_S = 120.0
CLOSE_TIMEOUT_S = 30.0
GOAL_RATIO = 0.95
GOAL_KNN_MS = 20.0
DEFAULTS = {"sentences": 5000, "rounds": 3, "vectors": 100_000, "queries": 100, "map_points": 10_000}
QUICK = {"sentences": 400, "rounds": 1, "vectors": 20_000, "queries": 20, "map_points": 800}


# --- sentences ----------------------------------------------------------------------------------------------------

NAMES = ["Maria", "James", "Aisha", "Tom", "Priya", "Lukas", "Chen", "Sofia", "Daniel", "Fatima", "Oliver", "Yuki",
         "Grace", "Mateo", "Hannah", "Ravi", "Elena", "Sam", "Nadia", "Peter"]  # fmt: skip
PEOPLE = ["the teacher", "my neighbour", "the new manager", "our landlord", "the nurse", "a local farmer",
          "the mayor", "my grandmother", "the driver", "a young engineer", "the chef", "the students",
          "the committee", "a tourist", "the doctor", "my brother", "the volunteers", "the author",
          "the shop owner", "the coach"]  # fmt: skip
THINGS = ["the old bridge", "a second-hand bicycle", "the kitchen window", "the train timetable", "a wooden table",
          "the budget report", "a small garden", "the laptop battery", "the school library", "a paper map",
          "the morning bus", "the village market", "a cup of coffee", "the heating system", "the river path",
          "a birthday cake", "the football pitch", "the hospital car park", "a pair of boots", "the phone bill",
          "the city museum", "a broken umbrella", "the solar panels", "the front door", "a jar of honey"]  # fmt: skip
PLACES = ["in the city centre", "near the station", "at the end of the street", "by the lake", "in the north",
          "on the coast", "in a quiet suburb", "outside the town hall", "in the mountains", "at the airport",
          "on the second floor", "behind the supermarket", "across the river", "in the old quarter"]  # fmt: skip
TIMES = ["yesterday", "last week", "on Monday", "this morning", "every summer", "after lunch", "before dawn",
         "in March", "over the weekend", "late at night", "two years ago", "every Friday", "in the spring",
         "during the holidays", "at half past six"]  # fmt: skip
VERBS_PAST = ["repaired", "painted", "cleaned", "sold", "moved", "checked", "replaced", "found", "borrowed",
              "measured", "photographed", "ordered", "inspected", "delivered", "forgot", "described", "opened",
              "locked", "carried", "tested"]  # fmt: skip
VERBS = ["repair", "paint", "clean", "sell", "move", "check", "replace", "find", "borrow", "measure", "order",
         "inspect", "deliver", "describe", "open", "lock", "carry", "test", "recycle", "share"]  # fmt: skip
ADJECTIVES = ["cheap", "reliable", "noisy", "comfortable", "expensive", "beautiful", "slow", "clean", "crowded",
              "friendly", "confusing", "modern", "tiny", "heavy", "useful", "disappointing", "bright", "cold",
              "surprising", "old-fashioned"]  # fmt: skip
ADVERBS = ["quickly", "carefully", "slowly", "quietly", "twice", "without asking", "by hand", "in a hurry",
           "for the first time", "again", "with great care", "before anyone noticed"]  # fmt: skip
ORGS = ["The city council", "A regional bank", "The university", "A small software company", "The health service",
        "The railway operator", "A local charity", "The energy supplier", "The football club", "The museum",
        "A family bakery", "The weather service", "The water company", "A publishing house"]  # fmt: skip
ACTIONS = ["open two new branches", "raise its prices", "hire more staff", "close the old office",
           "cut its emissions by a third", "delay the project", "build a new library", "extend its opening hours",
           "review the safety rules", "replace its computer systems", "sponsor the summer festival",
           "freeze the budget", "move its headquarters", "launch a free bus service"]  # fmt: skip
REASONS = ["because demand has grown", "after a difficult year", "to save money", "as part of a wider plan",
           "following complaints from residents", "because of the bad weather", "to meet new regulations",
           "after a long debate", "to attract younger customers", "since costs keep rising"]  # fmt: skip
PRODUCTS = ["kettle", "backpack", "desk lamp", "blender", "tent", "vacuum cleaner", "pair of headphones",
            "phone case", "rain jacket", "coffee grinder", "office chair", "electric toothbrush", "travel mug",
            "winter coat", "keyboard", "garden hose"]  # fmt: skip
OPINIONS = ["it works perfectly", "it broke after a month", "it is worth every penny", "it feels cheaply made",
            "it arrived a week late", "I would buy it again", "the colour is not as shown", "it is much louder than"
            " expected", "my whole family loves it", "the instructions were useless", "it does exactly what it"
            " says"]  # fmt: skip
TOPICS = ["bread", "tomatoes", "a bookshelf", "a cover letter", "a bike chain", "a leaking tap", "a vegetable soup",
          "a small website", "a job interview", "a long flight", "a house plant", "a wedding speech",
          "a budget spreadsheet", "a birthday party", "a compost heap", "a broken zip"]  # fmt: skip
SUBJECTS = ["Bees", "Glaciers", "Volcanoes", "Owls", "Coral reefs", "Tides", "Earthworms", "Comets", "Forests",
            "Deserts", "Whales", "Mushrooms", "Lightning", "Rivers", "Ants", "Clouds"]  # fmt: skip
FACTS = ["can travel surprisingly long distances", "change slowly over thousands of years",
         "depend on the temperature of the water", "play an important role in the food chain",
         "are harder to study than most people think", "respond quickly to changes in light",
         "help to keep the soil healthy", "were described in detail for the first time centuries ago",
         "are affected by the changing climate", "follow patterns that scientists still debate"]  # fmt: skip
CONNECTORS = ["because", "although", "while", "and then", "but", "so", "even though", "just as", "until",
              "after", "before", "since"]  # fmt: skip
QUESTION_STARTS = ["How do I", "What is the best way to", "Is it possible to", "Where can I", "Why does it take so"
                   " long to", "Can someone explain how to", "Should I"]  # fmt: skip


def _short_clause(rng: random.Random) -> str:
    """One clause of 4 to 9 words, without a capital or a full stop."""
    c = rng.choice
    kind = rng.randrange(5)
    if kind == 0:
        return f"{c(NAMES)} {c(VERBS_PAST)} {c(THINGS)}"
    if kind == 1:
        return f"{c(THINGS)} is {c(ADJECTIVES)} {c(TIMES)}"
    if kind == 2:
        return f"this {c(PRODUCTS)} is really {c(ADJECTIVES)}"
    if kind == 3:
        return f"{c(PEOPLE)} arrived {c(PLACES)}"
    return f"{c(SUBJECTS).lower()} {c(FACTS)}"


def _clause(rng: random.Random) -> str:
    """One clause of about 5 to 16 words, without a capital or a full stop."""
    c = rng.choice
    kind = rng.randrange(8)
    if kind == 0:
        return f"{c(PEOPLE)} {c(VERBS_PAST)} {c(THINGS)} {c(ADVERBS)} {c(TIMES)}"
    if kind == 1:
        return f"{c(NAMES)} {c(VERBS_PAST)} {c(THINGS)} {c(PLACES)}"
    if kind == 2:
        return f"{c(ORGS).lower()} said {c(TIMES)} that it would {c(ACTIONS)} {c(REASONS)}"
    if kind == 3:
        return f"I bought this {c(PRODUCTS)} {c(TIMES)} and {c(OPINIONS)}"
    if kind == 4:
        return f"{c(SUBJECTS).lower()} {c(FACTS)}"
    if kind == 5:
        return f"{c(THINGS)} {c(PLACES)} was {c(ADJECTIVES)} and rather {c(ADJECTIVES)}"
    if kind == 6:
        return f"{c(PEOPLE)} wants to {c(VERBS)} {c(THINGS)} {c(TIMES)}"
    return f"{c(NAMES)} and {c(PEOPLE)} met {c(PLACES)} {c(TIMES)}"


def _sentence(rng: random.Random, target_words: int) -> str:
    if rng.random() < 0.15:
        text = f"{rng.choice(QUESTION_STARTS)} {rng.choice(VERBS)} {rng.choice(TOPICS)}"
        if len(text.split()) < target_words:
            text += f" {rng.choice(PLACES)}"
        if len(text.split()) < target_words:
            text += f" {rng.choice(CONNECTORS)} {_clause(rng)}"
        return text + "?"
    text = _short_clause(rng) if target_words <= 12 else _clause(rng)
    while (words := len(text.split())) < target_words:
        more = _short_clause(rng) if target_words - words < 10 else _clause(rng)
        text += f" {rng.choice(CONNECTORS)} {more}" if rng.random() < 0.7 else f", and {more}"
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "!"])


def make_sentences(count: int, seed: int = SEED, min_words: int = 5, max_words: int = 40) -> list[str]:
    """`count` distinct sentences of 5 to 40 words: about half up to 10 words, a sixth over 20."""
    rng = random.Random(seed)
    seen: set[str] = set()
    sentences: list[str] = []
    while len(sentences) < count:
        band = rng.random()
        target = rng.randint(5, 10) if band < 0.55 else rng.randint(11, 20) if band < 0.85 else rng.randint(21, 40)
        text = _sentence(rng, target)
        if min_words <= len(text.split()) <= max_words and text not in seen:
            seen.add(text)
            sentences.append(text)
    return sentences


def make_queries(count: int, seed: int = SEED + 1) -> list[str]:
    """Short search boxes' worth of text: 2 to 6 words."""
    rng = random.Random(seed)
    makers = [
        lambda: f"{rng.choice(ADJECTIVES)} {rng.choice(PRODUCTS)}",
        lambda: f"how to {rng.choice(VERBS)} {rng.choice(TOPICS)}",
        lambda: f"{rng.choice(SUBJECTS).lower()} and climate",
        lambda: f"{rng.choice(ORGS).split()[-1].lower()} {rng.choice(ACTIONS).split()[0]} plans",
        lambda: f"{rng.choice(THINGS).split()[-1]} {rng.choice(PLACES).split()[-1]}",
    ]
    queries: list[str] = []
    while len(queries) < count:
        query = rng.choice(makers)()
        if query not in queries:
            queries.append(query)
    return queries


# --- the two embedding paths --------------------------------------------------------------------------------------


def raw_load(path: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def raw_encode(model: Any, sentences: list[str]) -> np.ndarray:
    return np.asarray(model.encode(sentences, batch_size=DEFAULT_BATCH_SIZE, convert_to_numpy=True,
                                   show_progress_bar=False))  # fmt: skip


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@dataclass(frozen=True)
class Timed:
    seconds: float
    vectors: np.ndarray
    cpu_s: float = 0.0  # CPU time of the whole process meanwhile (all threads)


def cpu_time() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_raw(pool: concurrent.futures.Executor, model: Any, sentences: list[str]) -> Timed:
    loop = asyncio.get_running_loop()
    cpu, started = cpu_time(), time.perf_counter()
    vectors = await loop.run_in_executor(pool, raw_encode, model, sentences)
    return Timed(time.perf_counter() - started, vectors, cpu_time() - cpu)


async def run_wb(manager: ModelManager, model_id: str, sentences: list[str]) -> Timed:
    with tempfile.TemporaryDirectory(prefix="embed-bench-cache-") as tmp:
        embedder = Embedder(manager, EmbeddingCache(Path(tmp)))
        cpu, started = cpu_time(), time.perf_counter()
        vectors = await embedder.embed(model_id, sentences)
        seconds, cpu = time.perf_counter() - started, cpu_time() - cpu
        if embedder.cache.count(model_id) != len(set(sentences)):
            raise RuntimeError(f"the cache holds {embedder.cache.count(model_id)} vectors, not {len(sentences)}")
    return Timed(seconds, vectors, cpu)


def rate(count: int, timed: Timed) -> str:
    return f"{count / timed.seconds:7.1f} sentences/s  ({timed.seconds:6.2f} s, cpu {timed.cpu_s:6.2f} s)"


# --- search and map -----------------------------------------------------------------------------------------------


def random_unit_vectors(count: int, dimensions: int = DIMENSIONS, seed: int = SEED) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimensions), dtype=np.float32)
    return normalise(rows)


def percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


@dataclass(frozen=True)
class Search:
    knn_ms: list[float]  # top_k alone
    encode_ms: list[float]  # Embedder.encode_query alone
    step_ms: list[float]  # the two, one search-as-you-type step


async def search(embedder: Embedder, model_id: str, vectors: np.ndarray, queries: list[str]) -> Search:
    for query in queries[:WARMUP_QUERIES]:
        top_k(vectors, await embedder.encode_query(model_id, query), k=TOP_K)
    knn, encode, step = [], [], []
    for query in queries:
        started = time.perf_counter()
        vector = await embedder.encode_query(model_id, query)
        encoded = time.perf_counter()
        hits = top_k(vectors, vector, k=TOP_K)
        done = time.perf_counter()
        if len(hits) != min(TOP_K, len(vectors)):
            raise RuntimeError(f"top_k returned {len(hits)} hits")
        knn.append((done - encoded) * 1000)
        encode.append((encoded - started) * 1000)
        step.append((done - started) * 1000)
    return Search(knn, encode, step)


@dataclass(frozen=True)
class MapRun:
    project_s: float
    cluster_s: float
    label_s: float
    clusters: int

    @property
    def total_s(self) -> float:
        return self.project_s + self.cluster_s + self.label_s


def map_once(texts: list[str], vectors: np.ndarray) -> MapRun:
    from workbench.core.embeddings.analysis import cluster, label_clusters, project

    started = time.perf_counter()
    projection = project(vectors, method="pca", seed=0)
    projected = time.perf_counter()
    clustering = cluster(vectors, seed=0)
    clustered = time.perf_counter()
    labels = label_clusters(texts, vectors, clustering)
    labelled = time.perf_counter()
    if np.asarray(projection.points).shape != (len(texts), 2):
        raise RuntimeError(f"project gave points of shape {np.asarray(projection.points).shape}")
    if len(clustering.labels) != len(texts) or len(labels) != len(clustering.sizes):
        raise RuntimeError(f"{len(clustering.labels)} cluster labels, {len(labels)} labels for "
                           f"{len(clustering.sizes)} clusters")  # fmt: skip
    return MapRun(projected - started, clustered - projected, labelled - clustered, len(clustering.sizes))


def map_available() -> str | None:
    """None when workbench.core.embeddings.analysis can be imported, else why not."""
    try:
        import workbench.core.embeddings.analysis  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


# --- the benchmark ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    raw_s: list[float]
    wb_s: list[float]
    search: Search
    maps: list[MapRun]


async def run(args: argparse.Namespace, sentences: list[str]) -> Results:
    spec = default_embedder_spec()
    inference = InferenceThread()
    manager = ModelManager(
        backends={SentenceTransformerBackend.kind: SentenceTransformerBackend()},
        budget=Budget(BUDGET_BYTES, "bench"),
        inference=inference,
        idle_unload_s=None,
    )
    try:
        manager.register(spec)
        started = time.perf_counter()
        info = await asyncio.wait_for(manager.load(spec.id), LOAD_TIMEOUT_S)
        cost = manager.cost_of(spec.id) or 0
        print(f"loaded   wb  {spec.id} through the ModelManager in {time.perf_counter() - started:.1f} s"
              f" (weights {format_bytes(info.measured or 0)}, cost {format_bytes(cost)})")  # fmt: skip
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raw-st") as pool:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            model = await loop.run_in_executor(pool, raw_load, spec.path)
            print(f"loaded   raw {spec.id} with SentenceTransformer in {time.perf_counter() - started:.1f} s")
            threads = {"main": torch_threads(), "raw": await loop.run_in_executor(pool, torch_threads),
                       "inference": await inference.run(torch_threads)}  # fmt: skip
            print(f"torch    threads: {', '.join(f'{k} {v}' for k, v in threads.items())}")

            count = len(sentences[: args.sentences])
            timed_sentences = sentences[:count]
            warm = timed_sentences[:WARMUP_SENTENCES]
            print(f"warm-up  raw {rate(len(warm), await run_raw(pool, model, warm))}")
            print(f"warm-up  wb  {rate(len(warm), await run_wb(manager, spec.id, warm))}")
            raw_s: list[float] = []
            wb_s: list[float] = []
            raw = wb = None
            for n in range(1, args.rounds + 1):
                raw = await run_raw(pool, model, timed_sentences)
                raw_s.append(raw.seconds)
                print(f"round {n}  raw {rate(count, raw)}")
                wb = await run_wb(manager, spec.id, timed_sentences)
                wb_s.append(wb.seconds)
                print(f"round {n}  wb  {rate(count, wb)}   wb/raw {raw.seconds / wb.seconds:.2f}")
            assert raw is not None and wb is not None
            same = normalise(raw.vectors)
            print(f"check    wb vs normalised raw vectors: max |diff| {np.abs(wb.vectors - same).max():.2e},"
                  f" min cosine {float(np.min(np.sum(wb.vectors * same, axis=1))):.6f}")  # fmt: skip
            del model
            gc.collect()

        started = time.perf_counter()
        vectors = random_unit_vectors(args.vectors)
        print(f"search   {args.vectors:,} random unit vectors ({format_bytes(vectors.nbytes)}) made in"
              f" {time.perf_counter() - started:.1f} s; {args.queries} queries, k={TOP_K}")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="embed-bench-query-") as tmp:  # encode_query does not cache
            found = await search(Embedder(manager, EmbeddingCache(Path(tmp))), spec.id, vectors,
                                 make_queries(args.queries))  # fmt: skip
        del vectors

        maps: list[MapRun] = []
        missing = map_available()
        if missing:
            print(f"map      SKIPPED: workbench.core.embeddings.analysis is not importable ({missing})")
        else:
            texts = sentences[: args.map_points]
            extra = texts[count:]
            started = time.perf_counter()
            more = await run_wb(manager, spec.id, extra) if extra else Timed(0.0, np.zeros((0, DIMENSIONS)))
            if extra:
                took = time.perf_counter() - started
                print(f"map      embedded {len(extra):,} more sentences (untimed) in {took:.1f} s")
            points = np.concatenate([wb.vectors[: len(texts)], more.vectors]).astype(np.float32)
            started = time.perf_counter()
            warm_up = map_once(texts[:WARMUP_SENTENCES], points[:WARMUP_SENTENCES])  # imports scikit-learn
            print(f"map      warm-up on {WARMUP_SENTENCES} points (imports scikit-learn):"
                  f" {time.perf_counter() - started:.2f} s, {warm_up.clusters} clusters")  # fmt: skip
            for n in range(1, MAP_RUNS + 1):
                maps.append(map_once(texts, points))
                m = maps[-1]
                print(f"map {n}    {len(texts):,} points: project (pca) {m.project_s:.2f} s,"
                      f" cluster {m.cluster_s:.2f} s ({m.clusters} clusters), label {m.label_s:.2f} s;"
                      f" total {m.total_s:.2f} s")  # fmt: skip
    finally:
        await asyncio.wait_for(manager.aclose(), CLOSE_TIMEOUT_S)
    return Results(raw_s, wb_s, found, maps)


def load_average() -> str:
    """Other processes on a 2-core machine slow both sides unevenly (torch's threads wait for each other)."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def report(results: Results, args: argparse.Namespace) -> None:
    raw_s, wb_s = min(results.raw_s), min(results.wb_s)
    ratio = raw_s / wb_s
    median = statistics.median(results.raw_s) / statistics.median(results.wb_s)
    print(f"best     raw {args.sentences / raw_s:.1f} sentences/s   wb {args.sentences / wb_s:.1f} sentences/s"
          f"   ratio {ratio:.2f} (medians: {median:.2f})")  # fmt: skip
    s = results.search
    knn, query = statistics.median(s.knn_ms), statistics.median(s.step_ms)
    print(f"search   top_k median {knn:.1f} ms, p95 {percentile(s.knn_ms, 0.95):.1f} ms;"
          f" encode_query median {statistics.median(s.encode_ms):.1f} ms;"
          f" query step median {query:.1f} ms, p95 {percentile(s.step_ms, 0.95):.1f} ms")  # fmt: skip
    map_s = statistics.median(m.total_s for m in results.maps) if results.maps else math.nan
    if results.maps:
        print(f"map      {args.map_points:,} points: median {map_s:.2f} s"
              f" (project {statistics.median(m.project_s for m in results.maps):.2f} s,"
              f" cluster {statistics.median(m.cluster_s for m in results.maps):.2f} s,"
              f" label {statistics.median(m.label_s for m in results.maps):.2f} s)")  # fmt: skip
    print(f"machine  {load_average()} at the end")
    print(f"goals: embed_ratio >= {GOAL_RATIO}, knn_ms <= {GOAL_KNN_MS:.0f} (map_10k_s and query_ms for information)")
    print(f"RESULT embed_ratio={ratio:.2f} knn_ms={knn:.1f} map_10k_s={map_s:.2f} query_ms={query:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DEFAULTS
    parser.add_argument("--sentences", type=int, help=f"sentences per timed embedding (default {d['sentences']})")
    parser.add_argument("--rounds", type=int, help=f"timed rounds of raw and wb (default {d['rounds']})")
    parser.add_argument("--vectors", type=int, help=f"vectors to search (default {d['vectors']:,})")
    parser.add_argument("--queries", type=int, help=f"search queries (default {d['queries']})")
    parser.add_argument("--map-points", type=int, help=f"points to project and cluster (default {d['map_points']:,})")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK} unless given")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.sentences, args.rounds, args.vectors, args.queries, args.map_points) < 1:
        parser.error("--sentences, --rounds, --vectors, --queries and --map-points must be at least 1")

    import sentence_transformers
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the "Loading weights" bar of each load
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} cores, torch {torch.__version__},"
          f" sentence-transformers {sentence_transformers.__version__}; {load_average()}")  # fmt: skip
    started = time.perf_counter()
    sentences = make_sentences(max(args.sentences, args.map_points))
    words = [len(s.split()) for s in sentences[: args.sentences]]
    print(f"corpus   {len(sentences):,} distinct sentences in {time.perf_counter() - started:.1f} s; the timed"
          f" {args.sentences:,}: {min(words)}-{max(words)} words, median {statistics.median(words):.0f}"
          f" (e.g. {sentences[0]!r}); {args.rounds} rounds, batch {DEFAULT_BATCH_SIZE}")  # fmt: skip
    results = asyncio.run(run(args, sentences))
    report(results, args)


if __name__ == "__main__":
    main()
