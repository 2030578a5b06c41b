"""Tests for sk_hierclust.metrics."""

import gzip
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import linkage
from sklearn.base import BaseEstimator
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_hierclust import metrics
from sk_hierclust.metrics import (
    cluster_accuracy,
    cluster_accuracy_scorer,
    dendrogram_purity,
    dendrogram_purity_scorer,
    evaluate,
    format_scores,
    hierarchy_scores,
    leaf_purity,
    leaf_purity_scorer,
)
from sk_hierclust.tree import ClusterTree


def brute_force_dendrogram_purity(y, tree, nodes):
    """O(n_samples^2) reference: enumerate every same-class pair."""
    y, nodes = np.asarray(y), np.asarray(nodes)
    # in_subtree[s, v]: sample s lies in the subtree of node v
    in_subtree = np.zeros((y.size, tree.node_count), dtype=bool)
    for s, v in enumerate(nodes):
        in_subtree[s, [v, *tree.ancestors(int(v)).tolist()]] = True
    total, n_pairs = 0.0, 0
    for i, j in combinations(range(y.size), 2):
        if y[i] != y[j]:
            continue
        v = tree.lca(int(nodes[i]), int(nodes[j]))
        members = y[in_subtree[:, v]]
        total += np.mean(members == y[i])
        n_pairs += 1
    return total / n_pairs


@st.composite
def trees_and_samples(draw, leaves_only=False):
    n = draw(st.integers(1, 15))
    parent = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    tree = ClusterTree(parent)
    allowed = tree.leaves() if leaves_only else np.arange(n)
    n_samples = draw(st.integers(2, 40))
    nodes = draw(
        st.lists(st.sampled_from(allowed.tolist()), min_size=n_samples, max_size=n_samples)
    )
    y = draw(st.lists(st.integers(0, 3), min_size=n_samples, max_size=n_samples))
    return tree, np.array(nodes), np.array(y)


@settings(max_examples=100, deadline=None)
@given(trees_and_samples(), st.booleans())
def test_dendrogram_purity_vs_brute_force(case, string_classes):
    tree, nodes, y = case
    assume(np.max(np.bincount(y)) >= 2)
    if string_classes:
        y = np.array(["a", "b", "c", "d"])[y]
    expected = brute_force_dendrogram_purity(y, tree, nodes)
    assert abs(dendrogram_purity(y, tree, nodes) - expected) <= 1e-12


@settings(max_examples=100, deadline=None)
@given(trees_and_samples(leaves_only=True))
def test_dendrogram_purity_leaves_vs_brute_force(case):
    tree, nodes, y = case
    assume(np.max(np.bincount(y)) >= 2)
    expected = brute_force_dendrogram_purity(y, tree, nodes)
    assert abs(dendrogram_purity(y, tree, nodes) - expected) <= 1e-12


def test_dendrogram_purity_hand():
    tree = ClusterTree([-1, 0, 0, 1, 1])
    # each leaf holds a whole class: perfect
    assert dendrogram_purity([0, 0, 1, 1, 2, 2], tree, [2, 2, 3, 3, 4, 4]) == 1.0
    # one sample at internal node 1, the others at leaves
    y = [0, 0, 1, 1, 1, 2]
    nodes = [3, 3, 4, 4, 1, 2]
    # class 0 pair: lca 3, purity 1; class 1 pairs: (2,3) lca 4 -> 1,
    # (2,4), (3,4) lca 1 -> subtree {0,0,1,1,1} purity 3/5
    expected = (1 + 1 + 2 * 3 / 5) / 4
    assert dendrogram_purity(y, tree, nodes) == pytest.approx(expected, abs=1e-15)
    # all samples at the root
    assert dendrogram_purity([0, 0, 1], tree, [0, 0, 0]) == pytest.approx(2 / 3)


def test_dendrogram_purity_errors():
    tree = ClusterTree([-1, 0, 0])
    with pytest.raises(ValueError, match="same length"):
        dendrogram_purity([0, 0, 1], tree, [1, 2])
    with pytest.raises(ValueError, match="node ids"):
        dendrogram_purity([0, 0], tree, [1, 3])
    with pytest.raises(ValueError, match="node ids"):
        dendrogram_purity([0, 0], tree, [-1, 1])
    with pytest.raises(ValueError, match="share a class"):
        dendrogram_purity([0, 1, 2], tree, [1, 2, 2])
    with pytest.raises(ValueError, match="ClusterTree"):
        dendrogram_purity([0, 0], "tree", [1, 2])


def test_leaf_purity_and_cluster_accuracy_hand():
    y = [0, 0, 0, 1, 1, 2, 2, 2]
    pred = [0, 0, 1, 1, 1, 2, 2, 0]
    # clusters: {0,0,2} -> 2, {0,1,1} -> 2, {2,2} -> 2
    assert leaf_purity(y, pred) == 0.75
    assert cluster_accuracy(y, pred) == 0.75
    # permuted cluster names do not matter
    assert cluster_accuracy([0, 0, 1, 1, 2], [2, 2, 0, 0, 1]) == 1.0
    # more clusters than classes: pure clusters, but only 2 can be matched
    y, pred = [0, 0, 1, 1, 1, 1], [0, 1, 2, 2, 3, 3]
    assert leaf_purity(y, pred) == 1.0
    assert cluster_accuracy(y, pred) == 0.5
    # fewer clusters than classes
    assert leaf_purity([0, 1, 2, 2], [0, 0, 0, 0]) == 0.5
    assert cluster_accuracy([0, 1, 2, 2], [0, 0, 0, 0]) == 0.5
    y, pred = [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]
    assert cluster_accuracy(y, pred) == pytest.approx(5 / 6)
    # greedy matching (class 0 -> its majority cluster 0) would score 3/8;
    # the optimal one-to-one matching (0 -> 1, 1 -> 0) scores 5/8
    y, pred = [0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0, 0]
    assert cluster_accuracy(y, pred) == pytest.approx(5 / 8)
    y, pred = [0, 0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 0, 2]
    assert cluster_accuracy(y, pred) == pytest.approx(5 / 7)
    for func in (leaf_purity, cluster_accuracy):
        with pytest.raises(ValueError, match="same length"):
            func([0, 1], [0])
        with pytest.raises(ValueError, match="empty"):
            func([], [])
        with pytest.raises(ValueError, match="y_true is None; the true classes"):
            func(None, [0])


class FakeTreeModel(BaseEstimator):
    """Routes samples with X[:, 0] > threshold to leaf 1, others to leaf 2."""

    def __init__(self, threshold=0.0):
        self.threshold = threshold

    def fit(self, X, y=None):
        self.tree_ = ClusterTree([-1, 0, 0])
        return self

    def apply(self, X):
        return np.where(np.asarray(X)[:, 0] > self.threshold, 1, 2)

    def predict(self, X):
        return self.apply(X) - 1


X_FAKE = np.array([[9.0], [9.5], [10.5], [11.0]] * 2)
Y_FAKE = np.array([0, 0, 1, 1] * 2)


def test_scorers_plain_estimator():
    model = FakeTreeModel().fit(X_FAKE)  # all X > 0: a single leaf
    assert dendrogram_purity_scorer(model, X_FAKE, Y_FAKE) == 0.5
    assert leaf_purity_scorer(model, X_FAKE, Y_FAKE) == 0.5
    assert cluster_accuracy_scorer(model, X_FAKE, Y_FAKE) == 0.5
    model = FakeTreeModel(threshold=10.0).fit(X_FAKE)
    assert dendrogram_purity_scorer(model, X_FAKE, Y_FAKE) == 1.0
    assert leaf_purity_scorer(model, X_FAKE, Y_FAKE) == 1.0
    assert cluster_accuracy_scorer(model, X_FAKE, Y_FAKE) == 1.0
    for scorer in (dendrogram_purity_scorer, leaf_purity_scorer, cluster_accuracy_scorer):
        with pytest.raises(ValueError, match="true classes"):
            scorer(model, X_FAKE, None)
    with pytest.raises(NotFittedError):
        dendrogram_purity_scorer(FakeTreeModel(), X_FAKE, Y_FAKE)


def test_flat_scorers_are_sklearn_scorers():
    assert repr(leaf_purity_scorer) == "make_scorer(leaf_purity, response_method='predict')"
    assert repr(cluster_accuracy_scorer) == (
        "make_scorer(cluster_accuracy, response_method='predict')"
    )


def test_scorers_in_pipeline():
    # the scaler centres X at 0, so the last step splits the two classes
    pipe = make_pipeline(StandardScaler(), FakeTreeModel()).fit(X_FAKE)
    assert dendrogram_purity_scorer(pipe, X_FAKE, Y_FAKE) == 1.0
    assert leaf_purity_scorer(pipe, X_FAKE, Y_FAKE) == 1.0
    assert cluster_accuracy_scorer(pipe, X_FAKE, Y_FAKE) == 1.0

    search = GridSearchCV(
        make_pipeline(StandardScaler(), FakeTreeModel()),
        {"faketreemodel__threshold": [100.0, 0.0]},
        scoring=dendrogram_purity_scorer,
        cv=2,
    ).fit(X_FAKE, Y_FAKE)
    assert search.best_params_ == {"faketreemodel__threshold": 0.0}
    assert search.best_score_ == 1.0

    scores = cross_validate(
        pipe,
        X_FAKE,
        Y_FAKE,
        cv=2,
        scoring={
            "dp": dendrogram_purity_scorer,
            "lp": leaf_purity_scorer,
            "acc": cluster_accuracy_scorer,
        },
    )
    for key in ("test_dp", "test_lp", "test_acc"):
        assert np.all(scores[key] == 1.0)


def test_public_names():
    assert sorted(metrics.__all__) == [
        "cluster_accuracy", "cluster_accuracy_scorer", "dendrogram_purity",
        "dendrogram_purity_scorer", "evaluate", "format_scores", "hierarchy_scores",
        "leaf_purity", "leaf_purity_scorer", "tree_distance_error",
    ]
    assert all(hasattr(metrics, name) for name in metrics.__all__)


# ------------------------------------------------------ score report
def brute_force_nmi(y, labels):
    """NMI with the arithmetic-mean normalisation, from the joint distribution."""
    y, labels = np.asarray(y), np.asarray(labels)
    p = np.array([[np.mean((y == a) & (labels == b)) for b in np.unique(labels)]
                  for a in np.unique(y)])
    py, pl = p.sum(1), p.sum(0)
    nz = p > 0
    mi = np.sum(p[nz] * np.log(p[nz] / np.outer(py, pl)[nz]))
    entropy = lambda q: -np.sum(q * np.log(q))  # noqa: E731
    return mi / ((entropy(py) + entropy(pl)) / 2)


def test_hierarchy_scores_hand():
    #        0
    #      /   \
    #     1     2        leaf labels: 2 -> 0, 3 -> 1, 4 -> 2
    #    / \
    #   3   4
    tree = ClusterTree([-1, 0, 0, 1, 1])
    y = [0, 0, 0, 1, 1, 2, 2, 2]
    nodes = [3, 3, 4, 4, 4, 2, 2, 1]  # the last sample stops at internal node 1
    labels = [1, 1, 2, 2, 2, 0, 0, 3]  # ... and is predicted into a fourth cluster
    scores = hierarchy_scores(y, tree, nodes, labels)
    assert list(scores) == ["DP", "LP", "ACC", "NMI"]
    assert all(type(v) is float for v in scores.values())
    # DP, 7 same-class pairs: class 0: (0,1) lca 3 -> 1, (0,2) (1,2) lca 1 -> 3/6;
    # class 1: (3,4) lca 4 -> 2/3; class 2: (5,6) lca 2 -> 1, (5,7) (6,7) lca 0 -> 3/8
    assert scores["DP"] == pytest.approx((1 + 2 * 0.5 + 2 / 3 + 1 + 2 * 3 / 8) / 7, abs=1e-15)
    assert scores["DP"] == pytest.approx(53 / 84, abs=1e-15)
    assert scores["DP"] == pytest.approx(brute_force_dendrogram_purity(y, tree, nodes), abs=1e-15)
    # LP: clusters {0,0}, {0,1,1}, {2,2}, {2} -> 2 + 2 + 2 + 1 of 8
    assert scores["LP"] == 7 / 8
    # ACC: 0 -> cluster 1, 1 -> cluster 2, 2 -> cluster 0 (cluster 3 unmatched): 6 of 8
    assert scores["ACC"] == 6 / 8
    # NMI by hand (nats): H(y) = 1.0822, H(labels) = 1.3209, I = 0.8434 -> 0.8434 / 1.2015
    assert scores["NMI"] == pytest.approx(brute_force_nmi(y, labels), abs=1e-12)
    assert scores["NMI"] == pytest.approx(0.7020, abs=1e-4)
    with pytest.raises(ValueError, match="same length"):
        hierarchy_scores(y, tree, nodes, labels[:-1])
    with pytest.raises(ValueError, match="node ids"):
        hierarchy_scores(y, tree, [5] * 8, labels)


def test_evaluate_estimator_and_pipeline():
    model = FakeTreeModel().fit(X_FAKE)  # a single leaf: every score at chance
    assert evaluate(model, X_FAKE, Y_FAKE) == {"DP": 0.5, "LP": 0.5, "ACC": 0.5, "NMI": 0.0}
    model = FakeTreeModel(threshold=10.0).fit(X_FAKE)
    assert evaluate(model, X_FAKE, Y_FAKE) == {"DP": 1.0, "LP": 1.0, "ACC": 1.0, "NMI": 1.0}
    assert evaluate(model, X_FAKE, Y_FAKE) == hierarchy_scores(
        Y_FAKE, model.tree_, model.apply(X_FAKE), model.predict(X_FAKE)
    )
    # apply and predict of the last step both see the scaled X (threshold 0 splits it)
    pipe = make_pipeline(StandardScaler(), FakeTreeModel()).fit(X_FAKE)
    assert evaluate(pipe, X_FAKE, Y_FAKE) == {"DP": 1.0, "LP": 1.0, "ACC": 1.0, "NMI": 1.0}
    single = make_pipeline(FakeTreeModel(threshold=10.0)).fit(X_FAKE)  # nothing before it
    assert evaluate(single, X_FAKE, Y_FAKE) == {"DP": 1.0, "LP": 1.0, "ACC": 1.0, "NMI": 1.0}
    assert dendrogram_purity_scorer(single, X_FAKE, Y_FAKE) == 1.0
    with pytest.raises(ValueError, match="evaluate needs the true classes"):
        evaluate(model, X_FAKE, None)
    with pytest.raises(NotFittedError):
        evaluate(FakeTreeModel(), X_FAKE, Y_FAKE)


def test_format_scores_exact():
    rows = {
        "train": {"DP": 0.5, "LP": 1.0, "ACC": 0.25, "NMI": 0.125},
        "test, Ward 20": {"DP": 0.0, "LP": None, "ACC": 0.75},
    }
    assert format_scores(rows) == (
        "                  DP     LP    ACC    NMI\n"
        "train          0.500  1.000  0.250  0.125\n"
        "test, Ward 20  0.000      -  0.750      -"
    )
    assert format_scores({"a": {"DP": 0.5}}, floatfmt=".1f") == "    DP\na  0.5"


def test_format_scores_columns_and_formats():
    rows = {
        "HCRL2": {"DP": 0.61234, "leaves": np.int64(12), "NLL": 203.24, "fit s": 95.0},
        "Ward, 20 leaves": {"DP": 0.5, "leaves": 20, "fit s": float("nan"), "D_tree": 3.5},
    }
    table = format_scores(rows, floatfmt={"NLL": ".1f", "fit s": ".0f"})
    assert table.splitlines() == [
        "                    DP  leaves    NLL  fit s  D_tree",
        "HCRL2            0.612      12  203.2     95       -",
        "Ward, 20 leaves  0.500      20      -    nan   3.500",
    ]
    with pytest.raises(ValueError, match="empty"):
        format_scores({})


# ---------------------------------------------------------- known answers
@pytest.fixture(scope="module")
def digits_linkage():
    X, y = load_digits(return_X_y=True)
    return linkage(X / 16.0, "ward"), y


@pytest.mark.parametrize("n_leaves, expected", [(20, 0.842), (10, 0.773)])
def test_known_answer_digits(digits_linkage, n_leaves, expected):
    Z, y = digits_linkage
    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=n_leaves)
    assert round(dendrogram_purity(y, tree, nodes), 3) == expected


# The shared data folder beside the repository (../shared/data).
REAL_HOME = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _mnist_folder():
    return REAL_HOME / "mnist"


def _read_idx_gz(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


@pytest.mark.slow
def test_known_answer_mnist_test_set():
    folder = _mnist_folder()
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    if not (images.exists() and labels.exists()):
        pytest.skip(f"MNIST test set not found in {folder}")
    X = _read_idx_gz(images, 16).reshape(-1, 784).astype(np.float64) / 255.0
    y = _read_idx_gz(labels, 8).astype(np.int64)
    assert X.shape == (10000, 784) and y.shape == (10000,)
    Z = linkage(X, "ward")

    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=20)
    assert round(dendrogram_purity(y, tree, nodes), 3) == 0.637
    assert round(leaf_purity(y, nodes), 3) == 0.786

    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=10)
    assert round(cluster_accuracy(y, nodes), 3) == 0.695
    assert round(normalized_mutual_info_score(y, nodes), 3) == 0.711
