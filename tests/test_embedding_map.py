"""Embedding map: projection, clustering, cluster labels, similarity and neighbour overlap.

Synthetic arrays check each function and its edge cases; the real all-MiniLM-L6-v2 checks that topics come back.
"""

from __future__ import annotations

import importlib.machinery
import sys
import time
import types
from typing import Any

import numpy as np
import pytest

from workbench.core.embeddings import analysis as embedding_map
from workbench.core.embeddings.analysis import (
    Clustering,
    Overlap,
    cluster,
    default_cluster_count,
    label_clusters,
    least_agreeing,
    neighbour_overlap,
    neighbours,
    project,
    similarity_matrix,
    umap_available,
)
from workbench.core.embeddings.cache import normalise
from workbench.core.models.local import default_embedder_spec


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, d)))


def blobs(sizes: list[int], d: int = 8, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rows around len(sizes) orthogonal directions, in blocks of the given sizes, and their blob ids."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return normalise(np.eye(d)[truth] + spread * rng.standard_normal((len(truth), d))), truth


def same_partition(labels: np.ndarray, truth: np.ndarray) -> bool:
    pairs = set(zip(labels.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(labels.tolist())) == len(set(truth.tolist()))


# ---------------------------------------------------------------------------------------------------- projection


def test_pca_projection_shape_dtype_and_match_with_svd() -> None:
    vectors = unit_rows(40, 6)
    projection = project(vectors, "pca")
    assert projection.method == "pca"
    assert projection.points.shape == (40, 2) and projection.points.dtype == np.float32
    centred = vectors - vectors.mean(axis=0)
    u, s, _ = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(np.abs(projection.points), np.abs(u[:, :2] * s[:2]), atol=1e-4)


def test_pca_signs_are_fixed() -> None:
    vectors = unit_rows(30, 5, seed=3)
    points = project(vectors, "pca").points
    farthest = np.abs(points).argmax(axis=0)
    assert (points[farthest, [0, 1]] > 0).all()
    # Negating every row flips every principal axis; the fixed signs give back the same picture.
    np.testing.assert_allclose(project(-vectors, "pca").points, points, atol=1e-5)
    np.testing.assert_array_equal(project(vectors, "pca").points, points)


def test_projection_edge_cases() -> None:
    vectors = unit_rows(3, 4)
    assert project(vectors[:0]).points.shape == (0, 2)
    np.testing.assert_array_equal(project(vectors[:1]).points, [[0.0, 0.0]])
    two = project(vectors[:2], "pca").points
    assert two.shape == (2, 2) and np.isfinite(two).all()
    np.testing.assert_allclose(abs(two[0, 0] - two[1, 0]), np.linalg.norm(vectors[0] - vectors[1]), atol=1e-5)
    one_dim = project(np.array([[1.0], [-1.0], [1.0]], dtype=np.float32), "pca").points
    assert one_dim.shape == (3, 2) and (one_dim[:, 1] == 0).all() and one_dim[0, 0] != one_dim[1, 0]
    assert project(np.zeros((3, 0), dtype=np.float32)).points.shape == (3, 2)
    same = project(np.tile(vectors[:1], (5, 1)), "pca").points  # no variance at all
    np.testing.assert_array_equal(same, np.zeros((5, 2)))


def test_projection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown projection method"):
        project(unit_rows(5, 3), "tsne")
    with pytest.raises(ValueError, match="2-D"):
        project(np.zeros(5, dtype=np.float32))


def test_without_umap_auto_is_pca_and_umap_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # find_spec answers None: as if not installed
    assert not umap_available()
    assert project(unit_rows(50, 4)).method == "pca"
    with pytest.raises(ValueError, match="pip install umap-learn"):
        project(unit_rows(50, 4), "umap")


class FakeUMAP:
    calls: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        FakeUMAP.calls.append(kwargs)

    def fit_transform(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(vectors, dtype=np.float64)[:, :2] * 10


@pytest.fixture
def fake_umap(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    module = types.ModuleType("umap")
    module.__spec__ = importlib.machinery.ModuleSpec("umap", None)
    module.UMAP = FakeUMAP  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "umap", module)
    FakeUMAP.calls = []
    return FakeUMAP.calls


def test_with_umap_auto_uses_it_from_twenty_rows(fake_umap: list[dict[str, Any]]) -> None:
    assert umap_available()
    vectors = unit_rows(20, 4)
    projection = project(vectors, seed=7)
    assert projection.method == "umap" and projection.points.dtype == np.float32
    np.testing.assert_allclose(projection.points, vectors[:, :2] * 10, rtol=1e-6)
    assert fake_umap == [{"n_components": 2, "random_state": 7, "metric": "cosine", "n_neighbors": 15, "n_jobs": 1}]
    assert project(vectors[:19]).method == "pca"
    assert project(vectors[:6], "umap").method == "umap" and fake_umap[-1]["n_neighbors"] == 5
    assert project(vectors[:3], "umap").method == "pca"  # too few rows for UMAP's neighbour graph
    assert len(fake_umap) == 2


# ---------------------------------------------------------------------------------------------------- clustering


@pytest.mark.parametrize(
    ("n", "k"), [(0, 0), (1, 1), (2, 2), (3, 2), (8, 2), (18, 3), (60, 5), (200, 10), (10_000, 10)]
)
def test_default_cluster_count(n: int, k: int) -> None:
    assert default_cluster_count(n) == k


def test_cluster_recovers_blobs_largest_first() -> None:
    vectors, truth = blobs([5, 12, 8])
    clustering = cluster(vectors, 3)
    assert clustering.k == 3 and clustering.sizes == [12, 8, 5]
    assert same_partition(clustering.labels, truth)
    assert (clustering.labels[truth == 1] == 0).all() and (clustering.labels[truth == 0] == 2).all()
    assert clustering.labels.dtype == np.int64 and clustering.centres.dtype == np.float32
    for index in range(3):
        np.testing.assert_allclose(clustering.centres[index], vectors[clustering.labels == index].mean(axis=0),
                                   atol=1e-6)  # fmt: skip


def test_cluster_ties_go_to_the_lowest_row() -> None:
    vectors, truth = blobs([4, 4, 4])
    order = np.random.default_rng(1).permutation(12)
    labels = cluster(vectors[order], 3).labels
    assert same_partition(labels, truth[order]) and labels[0] == 0
    firsts = [int(np.flatnonzero(labels == index)[0]) for index in range(3)]
    assert firsts == sorted(firsts)


def test_cluster_is_deterministic_with_a_seed() -> None:
    vectors = unit_rows(300, 16)
    first, second = cluster(vectors, 6, seed=4), cluster(vectors, 6, seed=4)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centres, second.centres)
    assert first.sizes == second.sizes and sum(first.sizes) == 300


def test_cluster_edge_cases() -> None:
    vectors, _ = blobs([3, 3])
    empty = cluster(vectors[:0])
    assert empty.k == 0 and empty.labels.shape == (0,) and empty.centres.shape == (0, 8)
    single = cluster(vectors[:1])
    assert single.sizes == [1] and single.labels.tolist() == [0]
    np.testing.assert_allclose(single.centres, vectors[:1])
    assert cluster(vectors[:2], 5).k == 2  # k clamped to n
    assert cluster(vectors, 1).sizes == [6]
    assert cluster(vectors).k == default_cluster_count(6) == 2
    repeated = np.repeat(vectors[[0, 3]], 4, axis=0)
    assert cluster(repeated, 5).sizes == [4, 4]  # only two distinct rows: two clusters
    with pytest.raises(ValueError, match="at least 1"):
        cluster(vectors, 0)


def test_mini_batch_path_recovers_blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding_map, "MINI_BATCH_ROWS", 10)
    vectors, truth = blobs([40, 25, 30])
    clustering = cluster(vectors, 3)
    assert clustering.sizes == [40, 30, 25] and same_partition(clustering.labels, truth)


# ---------------------------------------------------------------------------------------------------- cluster labels


def test_label_clusters_central_row_and_terms() -> None:
    texts = ["The kettle boils water for tea", "Green tea and black tea", "Tea with a kettle",
             "The bicycle has a flat tyre", "Pump the bicycle tyre", "A bicycle chain and tyre"]  # fmt: skip
    vectors, _ = blobs([3, 3])
    vectors[1] = normalise(np.eye(8)[0] + 0.001)  # row 1 sits on its blob's axis: the most central
    clustering = cluster(vectors, 2)
    labels = label_clusters(texts, vectors, clustering, terms=2)
    assert [label.cluster for label in labels] == [0, 1] and [label.size for label in labels] == [3, 3]
    by_first_row = {int(np.flatnonzero(clustering.labels == label.cluster)[0]): label for label in labels}
    tea, bike = by_first_row[0], by_first_row[3]
    assert tea.central == 1 and tea.terms == ["tea", "kettle"]
    assert bike.terms == ["bicycle", "tyre"]
    centre = normalise(clustering.centres[bike.cluster])
    members = np.flatnonzero(clustering.labels == bike.cluster)
    assert bike.central == members[np.argmax(vectors[members] @ centre)]


def test_label_clusters_without_words() -> None:
    vectors, _ = blobs([2, 2])
    clustering = cluster(vectors, 2)
    stop_words_only = ["the and of", "it is to", "a b c 42", "only there"]
    assert [label.terms for label in label_clusters(stop_words_only, vectors, clustering)] == [[], []]
    texts = ["the and of", "it is to", "volcano lava", "lava flows"]
    terms = {tuple(label.terms) for label in label_clusters(texts, vectors, clustering)}
    assert terms == {(), ("lava", "flows", "volcano")}
    assert all(label.terms == [] for label in label_clusters(texts, vectors, clustering, terms=0))
    with pytest.raises(ValueError, match="3 texts"):
        label_clusters(texts[:3], vectors, clustering)


# ---------------------------------------------------------------------------------------------------- similarity


def test_similarity_matrix() -> None:
    vectors = unit_rows(10, 5)
    matrix = similarity_matrix(vectors, [4, 1, 7, 1])
    assert matrix.shape == (4, 4) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, vectors[[4, 1, 7, 1]] @ vectors[[4, 1, 7, 1]].T, atol=1e-6)
    np.testing.assert_array_equal(np.diag(matrix), 1.0)
    np.testing.assert_array_equal(matrix, matrix.T)
    assert similarity_matrix(vectors, []).shape == (0, 0)


# ---------------------------------------------------------------------------------------------------- neighbours


def brute_force_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ vectors.T
    rows = []
    for i in range(len(vectors)):
        others = [j for j in range(len(vectors)) if j != i]
        rows.append(sorted(others, key=lambda j: (-scores[i, j], j))[:k])
    return np.array(rows, dtype=np.int64).reshape(len(vectors), k)


@pytest.mark.parametrize("block", [1, 7, 64, 1024])
def test_neighbours_equal_brute_force(block: int) -> None:
    vectors = unit_rows(150, 12, seed=5)
    got = neighbours(vectors, 8, block=block)
    assert got.shape == (150, 8) and got.dtype == np.int64
    np.testing.assert_array_equal(got, brute_force_neighbours(vectors, 8))


def test_neighbour_ties_go_to_the_lower_index() -> None:
    east, north = [1.0, 0.0], [0.0, 1.0]
    vectors = np.array([east, east, north, east, east, north], dtype=np.float32)
    got = neighbours(vectors, 3, block=2)
    assert got.tolist() == [[1, 3, 4], [0, 3, 4], [5, 0, 1], [0, 1, 4], [0, 1, 3], [2, 0, 1]]
    np.testing.assert_array_equal(got, brute_force_neighbours(vectors, 3))


def test_neighbours_edge_cases() -> None:
    vectors = unit_rows(4, 3)
    assert neighbours(vectors, 10).shape == (4, 3)  # k clamped to n - 1
    assert (neighbours(vectors, 10) != np.arange(4)[:, None]).all()
    assert neighbours(vectors, 0).shape == (4, 0)
    assert neighbours(vectors[:1], 3).shape == (1, 0)
    assert neighbours(vectors[:0], 3).shape == (0, 0)
    with pytest.raises(ValueError):
        neighbours(vectors, -1)
    with pytest.raises(ValueError):
        neighbours(vectors, 2, block=0)


def test_neighbour_overlap() -> None:
    vectors = unit_rows(60, 10)
    same = neighbour_overlap(vectors, vectors, k=5)
    assert same.k == 5 and same.mean == 1.0 and (same.per_item == 1.0).all()
    other = neighbour_overlap(vectors, unit_rows(60, 3, seed=9), k=5)
    assert other.per_item.shape == (60,) and other.per_item.min() >= 0.0 and other.per_item.max() <= 1.0
    assert other.mean < 1.0 and other.mean == pytest.approx(other.per_item.mean())
    want = [len(set(a) & set(b)) / 5 for a, b in zip(neighbours(vectors, 5), neighbours(unit_rows(60, 3, seed=9), 5),
                                                     strict=True)]  # fmt: skip
    np.testing.assert_allclose(other.per_item, want)


def test_neighbour_overlap_edge_cases() -> None:
    vectors = unit_rows(3, 4)
    assert neighbour_overlap(vectors, vectors[::-1], k=10).k == 2  # k clamped to n - 1
    for n in (0, 1):
        tiny = neighbour_overlap(vectors[:n], vectors[:n])
        assert tiny.k == 0 and tiny.mean == 1.0 and tiny.per_item.tolist() == [1.0] * n
    with pytest.raises(ValueError, match="same rows"):
        neighbour_overlap(vectors, vectors[:2])
    with pytest.raises(ValueError):
        neighbour_overlap(vectors, vectors, k=0)


def test_least_agreeing() -> None:
    overlap = Overlap(k=4, per_item=np.array([0.5, 0.25, 1.0, 0.25, 0.0]), mean=0.4)
    assert least_agreeing(overlap, 3) == [4, 1, 3]
    assert least_agreeing(overlap, 10) == [4, 1, 3, 0, 2]
    assert least_agreeing(overlap, 0) == []


# ---------------------------------------------------------------------------------------------------- speed


def test_ten_thousand_rows_project_and_cluster() -> None:
    vectors = unit_rows(10_000, 384)
    start = time.perf_counter()
    projection = project(vectors, "pca")
    clustering = cluster(vectors)
    print(f"project (pca) + cluster (k={clustering.k}) of 10,000 x 384: {time.perf_counter() - start:.2f} s")
    assert projection.points.shape == (10_000, 2) and isinstance(clustering, Clustering)
    assert clustering.k == 10 and sum(clustering.sizes) == 10_000


# ---------------------------------------------------------------------------------------------------- real MiniLM

TOPICS = {
    "cooking": [
        "Knead the bread dough and let it rise before it goes in the oven.",
        "Simmer the tomato sauce with garlic and fresh basil for twenty minutes.",
        "Preheat the oven and grease the cake tin with butter.",
        "Whisk the eggs with sugar until the batter turns pale.",
        "Chop the onions finely and fry them gently in olive oil.",
        "This soup recipe needs carrots, celery and a good vegetable stock.",
        "Season the roast chicken with salt, pepper and lemon before baking.",
        "Fold the flour into the mixture without beating out the air.",
        "Let the pasta cook in salted boiling water until it is al dente.",
        "The pie crust should bake until it is golden and crisp.",
        "Stir the risotto slowly, adding the warm stock one ladle at a time.",
        "Marinate the beef overnight in soy sauce, ginger and garlic.",
        "Sprinkle grated cheese over the lasagne and bake it in the oven.",
        "A pinch of cinnamon makes this apple crumble recipe taste warmer.",
        "Roll the pastry thin and cut it into circles for the tarts.",
        "Blend the roasted peppers into a smooth sauce for the pasta.",
        "Bake the bread rolls until they sound hollow when tapped.",
        "Dice the potatoes and roast them with rosemary and garlic.",
        "Melt the chocolate slowly over a pan of simmering water.",
        "Add the cream to the sauce at the end so it does not curdle.",
    ],
    "space": [
        "The telescope captured a faint galaxy billions of light years away.",
        "Mars has the tallest volcano in the solar system.",
        "The astronauts docked their capsule with the space station in orbit.",
        "Jupiter's moons were first seen through a telescope by Galileo.",
        "A neutron star is the collapsed core of a massive star.",
        "The rocket launched the satellite into a geostationary orbit.",
        "Saturn's rings are made mostly of ice and rock.",
        "Astronomers detected a new planet orbiting a distant star.",
        "The probe sent back images of the comet's icy surface.",
        "Black holes bend light so strongly that nothing escapes them.",
        "The Milky Way galaxy contains hundreds of billions of stars.",
        "The lunar module landed on the moon's dusty surface.",
        "Solar flares can disrupt satellites orbiting the Earth.",
        "The space telescope observes infrared light from early galaxies.",
        "Venus is the hottest planet because of its thick atmosphere.",
        "A supernova briefly outshines its entire galaxy.",
        "The rover drilled into the rock of the Martian crater.",
        "Astronauts train for months before a mission to the space station.",
        "The planet's orbit around its star takes only three days.",
        "Meteor showers happen when Earth passes through comet debris.",
    ],
    "football": [
        "The striker scored a late goal to win the match.",
        "The referee showed the defender a red card for a reckless tackle.",
        "The goalkeeper saved a penalty in the final minute.",
        "Our team won the league after a long season of matches.",
        "The midfielder passed the ball through to the winger.",
        "Fans sang in the stadium as the team took the pitch.",
        "The coach changed the team's formation at half time.",
        "A header from a corner kick levelled the score.",
        "The match went to extra time and then to a penalty shootout.",
        "The captain lifted the cup after the final whistle.",
        "The club signed a young striker during the transfer window.",
        "The referee awarded a free kick just outside the box.",
        "The team trained on the pitch before the cup match.",
        "The goalkeeper punched the ball away from the goal.",
        "An offside flag ruled out the second goal of the match.",
        "The defenders held their line for the whole second half.",
        "The winger crossed the ball and the striker volleyed it into the net.",
        "The league table changed after the weekend's matches.",
        "The stadium was full for the derby between the two rival clubs.",
        "The substitute scored a goal within minutes of coming on.",
    ],
}
TOPIC_WORDS = {
    "cooking": {"bread", "oven", "sauce", "garlic", "bake", "recipe", "pasta", "stock", "cook", "roast", "baking"},
    "space": {"telescope", "galaxy", "planet", "star", "orbit", "space", "astronauts", "station", "stars", "surface",
              "satellite", "comet", "orbiting", "galaxies"},
    "football": {"goal", "match", "team", "striker", "referee", "goalkeeper", "penalty", "pitch", "ball", "league",
                 "matches", "cup", "stadium"},
}  # fmt: skip
TEXTS = [text for sentences in TOPICS.values() for text in sentences]
TRUTH = np.repeat(np.arange(len(TOPICS)), [len(sentences) for sentences in TOPICS.values()])


@pytest.fixture(scope="module")
def minilm_vectors() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    spec = default_embedder_spec()
    model = SentenceTransformer(str(spec.path), device="cpu", local_files_only=True)
    return normalise(model.encode(TEXTS, batch_size=64, convert_to_numpy=True))


@pytest.mark.real_model
def test_minilm_clusters_recover_the_topics(minilm_vectors: np.ndarray) -> None:
    clustering = cluster(minilm_vectors, 3)
    assert same_partition(clustering.labels, TRUTH), clustering.labels.tolist()
    labels = label_clusters(TEXTS, minilm_vectors, clustering)
    for label in labels:
        topic = list(TOPICS)[TRUTH[label.central]]
        assert TRUTH[clustering.labels == label.cluster][0] == TRUTH[label.central]
        assert len(label.terms) == 3 and set(label.terms) & TOPIC_WORDS[topic], (topic, label.terms)
        others = set().union(*(words for name, words in TOPIC_WORDS.items() if name != topic))
        assert not set(label.terms) & others, (topic, label.terms)


@pytest.mark.real_model
def test_minilm_projection_and_clustering_are_deterministic(minilm_vectors: np.ndarray) -> None:
    for method in ("auto", "pca"):
        first, second = project(minilm_vectors, method, seed=3), project(minilm_vectors, method, seed=3)
        assert first.method == second.method and first.points.shape == (len(TEXTS), 2)
        np.testing.assert_array_equal(first.points, second.points)
    first_clusters, second_clusters = cluster(minilm_vectors, seed=3), cluster(minilm_vectors, seed=3)
    np.testing.assert_array_equal(first_clusters.labels, second_clusters.labels)
    np.testing.assert_array_equal(first_clusters.centres, second_clusters.centres)


@pytest.mark.real_model
def test_minilm_pca_separates_the_topics(minilm_vectors: np.ndarray) -> None:
    points = project(minilm_vectors, "pca").points
    centres = np.stack([points[np.equal(TRUTH, topic)].mean(axis=0) for topic in range(3)])
    nearest = np.argmin(np.linalg.norm(points[:, None, :] - centres[None], axis=2), axis=1)
    assert (nearest == TRUTH).mean() > 0.9


@pytest.mark.real_model
def test_minilm_neighbour_overlap(minilm_vectors: np.ndarray) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    itself = neighbour_overlap(minilm_vectors, minilm_vectors, k=5)
    assert itself.mean == 1.0 and (itself.per_item == 1.0).all()
    words = normalise(TfidfVectorizer(stop_words="english").fit_transform(TEXTS).toarray())
    against_words = neighbour_overlap(minilm_vectors, words, k=5)
    assert 0.0 < against_words.mean < 1.0
    rows = least_agreeing(against_words, 5)
    assert [against_words.per_item[row] for row in rows] == sorted(against_words.per_item)[:5]
    noisy = normalise(minilm_vectors + 0.05 * np.random.default_rng(0).standard_normal(minilm_vectors.shape))
    assert against_words.mean < neighbour_overlap(minilm_vectors, noisy, k=5).mean < 1.0
