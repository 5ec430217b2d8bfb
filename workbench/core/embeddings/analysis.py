"""What a corpus's vectors say: search (the rows nearest a query or a row), the embedding map (a 2-D picture,
k-means clusters with labels) and neighbour agreement between embedders.

Every input is a float32 array of L2-normalised rows, shape (n, d). scikit-learn and umap are imported inside the
functions that use them, so importing this module costs numpy only.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from workbench.core.embeddings.cache import normalise

METHODS = ("auto", "pca", "umap")
AUTO_UMAP_MIN_ROWS = 20  # below this UMAP has too few neighbours to mean much; "auto" uses PCA
UMAP_MIN_ROWS = 4  # UMAP needs n_neighbors >= 2 and more rows than its 2 output dimensions + 1
MINI_BATCH_ROWS = 5000  # above this MiniBatchKMeans: on 10,000 x 384 it is ~10x faster than KMeans
WORD_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # words of three or more letters, no digits


def _rows(vectors: np.ndarray) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors, got shape {array.shape}")
    return array


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


# ---------------------------------------------------------------------------------------------------- projection


@dataclass(frozen=True, eq=False)
class Projection:
    points: np.ndarray  # (n, 2) float32
    method: str  # the method that made the points: "pca" or "umap"


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def project(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> Projection:
    """2-D points for the rows. "auto" is UMAP when installed and there are at least 20 rows, else PCA.

    The same input and seed always give the same points. Asking for "umap" without umap-learn installed raises
    ValueError; with fewer than UMAP_MIN_ROWS rows UMAP cannot run and PCA is used (the result says so).
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}: use one of {', '.join(METHODS)}")
    array = _rows(vectors)
    if method == "umap" and not umap_available():
        raise ValueError("UMAP is not installed; install umap-learn: pip install umap-learn")
    if method == "auto":
        method = "umap" if umap_available() and array.shape[0] >= AUTO_UMAP_MIN_ROWS else "pca"
    if method == "umap" and array.shape[0] >= UMAP_MIN_ROWS:
        return Projection(_umap(array, seed), "umap")
    return Projection(_pca(array, seed), "pca")


def _pca(array: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n, d = array.shape
    components = min(2, n, d)
    if components == 0 or not np.any(array != array[0]):
        return np.zeros((n, 2), dtype=np.float32)  # no rows, or no variance to show
    pca = PCA(n_components=components, svd_solver=_svd_solver(n, d), random_state=seed)
    points = _fix_signs(pca.fit_transform(array).astype(np.float32))
    return np.pad(points, ((0, 0), (0, 2 - components)))


def _svd_solver(n: int, d: int) -> str:
    """Chosen from the shape alone, so a given input always takes the same (seeded) path."""
    if d <= 1000 and n >= 2 * d:
        return "covariance_eigh"  # a d x d eigenproblem: exact and much faster than a full SVD when n >> d
    if min(n, d) <= 1000:
        return "full"
    return "randomized"


def _fix_signs(points: np.ndarray) -> np.ndarray:
    """A principal axis may come out either way round; point each so its farthest-out coordinate is positive."""
    farthest = np.abs(points).argmax(axis=0)
    signs = np.where(points[farthest, np.arange(points.shape[1])] < 0, -1, 1).astype(points.dtype)
    return points * signs


def _umap(array: np.ndarray, seed: int) -> np.ndarray:
    import umap

    # A seed makes UMAP single-threaded anyway; saying n_jobs=1 keeps it from warning about that.
    reducer = umap.UMAP(
        n_components=2, random_state=seed, metric="cosine", n_neighbors=min(15, array.shape[0] - 1), n_jobs=1
    )
    return np.asarray(reducer.fit_transform(array), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- clustering


@dataclass(frozen=True, eq=False)
class Clustering:
    labels: np.ndarray  # (n,) int64; cluster 0 is the largest
    centres: np.ndarray  # (k, d) float32: the mean of each cluster's rows (not normalised)
    sizes: list[int]  # rows per cluster, largest first

    @property
    def k(self) -> int:
        return len(self.sizes)


def default_cluster_count(n: int) -> int:
    """round(sqrt(n / 2)) kept within 2..10, and never more than n."""
    if n <= 1:
        return max(n, 0)
    return min(n, max(2, min(10, round(math.sqrt(n / 2)))))


def cluster(vectors: np.ndarray, k: int | None = None, seed: int = 0) -> Clustering:
    """k-means in the embedding space; k defaults to default_cluster_count(n) and is clamped to n.

    Fewer clusters than asked come back when the rows have fewer distinct values than k. Clusters are numbered
    by size, largest first, ties by their lowest row index, so colours stay put between runs.
    """
    array = _rows(vectors)
    n = array.shape[0]
    if k is None:
        k = default_cluster_count(n)
    elif k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n == 0:
        return Clustering(np.zeros(0, dtype=np.int64), np.zeros((0, array.shape[1]), dtype=np.float32), [])
    k = min(k, n, len(np.unique(array, axis=0)))
    raw = np.zeros(n, dtype=np.int64) if k == 1 else _kmeans(array, k, seed)
    return _ordered(array, raw)


def _kmeans(array: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if array.shape[0] > MINI_BATCH_ROWS:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    return np.asarray(model.fit_predict(array), dtype=np.int64)


def _ordered(array: np.ndarray, raw: np.ndarray) -> Clustering:
    """Renumber clusters largest first (ties: lowest member index); empty clusters disappear."""
    present, first_member, counts = np.unique(raw, return_index=True, return_counts=True)
    order = np.lexsort((first_member, -counts))
    renumber = np.empty(int(present.max()) + 1, dtype=np.int64)
    renumber[present[order]] = np.arange(len(order))
    labels = renumber[raw]
    centres = np.zeros((len(order), array.shape[1]), dtype=np.float32)
    np.add.at(centres, labels, array)
    sizes = counts[order]
    centres /= sizes[:, None].astype(np.float32)
    return Clustering(labels, centres, [int(size) for size in sizes])


# ---------------------------------------------------------------------------------------------------- cluster labels


@dataclass(frozen=True)
class ClusterLabel:
    cluster: int
    size: int
    central: int  # row index of the member closest (cosine) to the cluster's centre
    terms: list[str]  # the words that most set this cluster apart, best first


def label_clusters(texts: list[str], vectors: np.ndarray, clustering: Clustering, terms: int = 3) -> list[ClusterLabel]:
    """One label per cluster, in cluster order: its most central row and its top class-based TF-IDF terms."""
    array = _rows(vectors)
    if not len(texts) == array.shape[0] == clustering.labels.shape[0]:
        raise ValueError(f"{len(texts)} texts, {array.shape[0]} vectors and {clustering.labels.shape[0]} labels")
    words = _cluster_terms(texts, clustering, terms)
    scores = np.einsum("ij,ij->i", array, normalise(clustering.centres)[clustering.labels])
    labels: list[ClusterLabel] = []
    for index, size in enumerate(clustering.sizes):
        members = np.flatnonzero(clustering.labels == index)
        central = int(members[np.argmax(scores[members])])  # argmax takes the first: ties go to the lower row
        labels.append(ClusterLabel(cluster=index, size=size, central=central, terms=words[index]))
    return labels


def _cluster_terms(texts: list[str], clustering: Clustering, count: int) -> list[list[str]]:
    """Class-based TF-IDF: a term's share of its cluster's words x log(1 + average cluster words / its total count).

    A word frequent in one cluster and rare elsewhere scores high; one spread over every cluster scores low.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    analyse = CountVectorizer(stop_words="english", token_pattern=WORD_PATTERN).build_analyzer()
    counts = [Counter[str]() for _ in range(clustering.k)]
    for text, label in zip(texts, clustering.labels, strict=True):
        counts[label].update(analyse(text))
    totals = sum(counts, Counter[str]())
    if not totals or count <= 0:
        return [[] for _ in counts]
    average_words = sum(totals.values()) / len(counts)
    ranked: list[list[str]] = []
    for cluster_counts in counts:
        words_here = sum(cluster_counts.values())
        weights = {
            term: (seen / words_here) * math.log(1 + average_words / totals[term])
            for term, seen in cluster_counts.items()
        }
        ranked.append(sorted(weights, key=lambda term: (-weights[term], term))[:count])
    return ranked


# ---------------------------------------------------------------------------------------------------- similarity


def similarity_matrix(vectors: np.ndarray, rows: list[int]) -> np.ndarray:
    """(m, m) float32 cosine similarities between the chosen rows, in the order given; the diagonal is 1."""
    chosen = normalise(_rows(vectors)[np.asarray(rows, dtype=np.intp)])
    matrix = np.clip(chosen @ chosen.T, -1.0, 1.0)
    np.fill_diagonal(matrix, 1.0)
    return matrix.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------- neighbour overlap


def neighbours(vectors: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """(n, k) indices of each row's k most similar other rows, best first, ties to the lower index.

    k is clamped to n - 1. Similarities are computed `block` rows at a time, so memory grows with block x n
    rather than n x n.
    """
    array = _rows(vectors)
    if k < 0 or block < 1:
        raise ValueError(f"need k >= 0 and block >= 1, got k={k}, block={block}")
    n = array.shape[0]
    k = min(k, max(n - 1, 0))
    result = np.zeros((n, k), dtype=np.int64)
    if k == 0:
        return result
    for start in range(0, n, block):
        stop = min(start + block, n)
        distance = -(array[start:stop] @ array.T)  # lower is nearer
        distance[np.arange(stop - start), np.arange(start, stop)] = np.inf  # a row is not its own neighbour
        result[start:stop] = _nearest(distance, k)
    return result


def _nearest(distance: np.ndarray, k: int) -> np.ndarray:
    """The k lowest columns of each row in (distance, column) order."""
    picked = np.argpartition(distance, k - 1, axis=1)[:, :k]
    order = np.lexsort((picked, np.take_along_axis(distance, picked, axis=1)), axis=1)
    picked = np.take_along_axis(picked, order, axis=1)
    # argpartition picks arbitrarily among values tied with the k-th; redo those rows exactly.
    kth = np.take_along_axis(distance, picked[:, -1:], axis=1)
    for row in np.flatnonzero((distance <= kth).sum(axis=1) > k):
        candidates = np.flatnonzero(distance[row] <= kth[row, 0])
        picked[row] = candidates[np.lexsort((candidates, distance[row, candidates]))[:k]]
    return picked


@dataclass(frozen=True, eq=False)
class Overlap:
    k: int  # neighbours compared per row (after clamping to n - 1)
    per_item: np.ndarray  # (n,) float: |N_A(i) ∩ N_B(i)| / k, in [0, 1]
    mean: float


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> Overlap:
    """How far two embeddings of the same rows agree on each row's k nearest neighbours.

    k is clamped to n - 1. With n <= 1 there is nothing to disagree on: k is 0, every row scores 1.0, mean 1.0.
    """
    first, second = _rows(a), _rows(b)
    n = first.shape[0]
    if second.shape[0] != n:
        raise ValueError(f"both embeddings need the same rows: {n} against {second.shape[0]}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, max(n - 1, 0))
    if k == 0:
        return Overlap(k=0, per_item=np.ones(n), mean=1.0)
    near_a, near_b = neighbours(first, k), neighbours(second, k)
    shared = (near_a[:, :, None] == near_b[:, None, :]).any(axis=2).sum(axis=1)
    per_item = shared / k
    return Overlap(k=k, per_item=per_item, mean=float(per_item.mean()))


def least_agreeing(overlap: Overlap, count: int) -> list[int]:
    """Up to `count` rows with the lowest overlap, lowest first, ties by row index."""
    order = np.lexsort((np.arange(overlap.per_item.shape[0]), overlap.per_item))
    return [int(row) for row in order[: max(count, 0)]]


# ---------------------------------------------------------------------------------------------------- the whole map


@dataclass(frozen=True, eq=False)
class CorpusMap:
    """What the map view shows: 2-D points, k-means clusters and their labels, and how long it took."""

    projection: Projection
    clustering: Clustering
    labels: list[ClusterLabel]
    seconds: float


def build_map(vectors: np.ndarray, texts: list[str], k: int | None = None, method: str = "pca",
              seed: int = 0) -> CorpusMap:  # fmt: skip
    started = time.perf_counter()
    projection = project(vectors, method=method, seed=seed)
    clustering = cluster(vectors, k=k, seed=seed)
    labels = label_clusters(texts, vectors, clustering)
    return CorpusMap(projection, clustering, labels, time.perf_counter() - started)


def members_by_centrality(corpus_map: CorpusMap, vectors: np.ndarray, number: int) -> np.ndarray:
    """The rows of one cluster, the most central (highest cosine to the cluster's centre) first."""
    members = np.flatnonzero(corpus_map.clustering.labels == number)
    centre = corpus_map.clustering.centres[number]
    return members[np.argsort(-(vectors[members] @ centre), kind="stable")]
