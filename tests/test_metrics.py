"""Tests for sk_hierclust.metrics."""

import gzip
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.metrics import normalized_mutual_info_score, pairwise_distances
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sk_hierclust import metrics
from sk_hierclust._testing import make_config
from sk_hierclust.metrics import (
    cluster_accuracy,
    cluster_accuracy_scorer,
    dendrogram_purity,
    dendrogram_purity_scorer,
    evaluate,
    format_scores,
    hierarchical_f_score,
    hierarchical_f_score_scorer,
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
        "dendrogram_purity_scorer", "evaluate", "format_scores", "hierarchical_f_score",
        "hierarchical_f_score_scorer", "hierarchy_scores", "leaf_purity", "leaf_purity_scorer",
        "tree_distance_error",
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
    # Ward on BLAS distances: the merges of linkage(X, "ward") (measured: identical, heights within
    # 3e-13), in a quarter of the time of scipy's own distance loop
    Z = linkage(squareform(pairwise_distances(X), checks=False), "ward")

    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=20)
    assert round(dendrogram_purity(y, tree, nodes), 3) == 0.637
    assert round(leaf_purity(y, nodes), 3) == 0.786

    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=10)
    assert round(cluster_accuracy(y, nodes), 3) == 0.695
    assert round(normalized_mutual_info_score(y, nodes), 3) == 0.711


# ------------------------------------------------- hierarchical F-score
def brute_force_hierarchical_f_score(levels, tree, nodes):
    """Reference: loop over the (level, class) pairs and the nodes, F from P and R."""
    levels, nodes = np.asarray(levels), np.asarray(nodes)
    in_subtree = np.zeros((nodes.size, tree.node_count), dtype=bool)
    for s, v in enumerate(nodes):
        in_subtree[s, [v, *tree.ancestors(int(v)).tolist()]] = True
    total, weight = 0.0, 0
    for level in range(levels.shape[1]):
        for c in np.unique(levels[:, level]):
            member = levels[:, level] == c
            best = 0.0
            for s in range(tree.node_count):
                n_cs = np.sum(member & in_subtree[:, s])
                if n_cs == 0:
                    continue
                precision = n_cs / in_subtree[:, s].sum()
                recall = n_cs / member.sum()
                best = max(best, 2 * precision * recall / (precision + recall))
            total += member.sum() * best
            weight += member.sum()
    return total / weight


@st.composite
def trees_samples_and_levels(draw):
    tree, nodes, y = draw(trees_and_samples())
    # coarser levels by merging the fine classes 0..3, so that they nest
    middle = np.array(draw(st.lists(st.integers(0, 2), min_size=4, max_size=4)))
    top = np.array(draw(st.lists(st.integers(0, 1), min_size=3, max_size=3)))
    n_levels = draw(st.integers(1, 3))
    levels = np.column_stack([top[middle[y]], middle[y], y])[:, 3 - n_levels:]
    return tree, nodes, levels


@settings(max_examples=100, deadline=None)
@given(trees_samples_and_levels(), st.booleans())
def test_hierarchical_f_score_vs_brute_force(case, string_classes):
    tree, nodes, levels = case
    if string_classes:
        levels = np.array(list("abcd"))[levels]
    expected = brute_force_hierarchical_f_score(levels, tree, nodes)
    score = hierarchical_f_score(levels, tree, nodes)
    assert type(score) is float and 0 < score <= 1
    assert abs(score - expected) <= 1e-12


def test_hierarchical_f_score_hand():
    #        0
    #      /   \
    #     1     2
    #    / \
    #   3   4
    tree = ClusterTree([-1, 0, 0, 1, 1])
    nodes = [3, 3, 4, 4, 1, 2, 2, 2]  # sample 4 stops at internal node 1
    levels = np.column_stack([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 2, 2, 3]])
    # n(s): 8, 5, 3, 2, 2. Coarse 0 = subtree of 1 and coarse 1 = subtree of 2: F = 1.
    # Fine 0 = subtree of 3: F = 1; fine 1 (n = 3): node 4 gives 2 * 2 / (2 + 3) = 0.8
    # (node 1: 6 / 8); fine 2 (n = 2): node 2 gives 4 / 5; fine 3 (n = 1): node 2, 2 / 4.
    expected = (5 + 3 + 2 + 3 * 0.8 + 2 * 0.8 + 1 * 0.5) / 16
    assert expected == 0.90625
    assert hierarchical_f_score(levels, tree, nodes) == pytest.approx(expected, abs=1e-15)
    # one level at a time: the fine level alone, the coarse level alone
    assert hierarchical_f_score(levels[:, 1:], tree, nodes) == pytest.approx(6.5 / 8, abs=1e-15)
    assert hierarchical_f_score(levels[:, :1], tree, nodes) == 1.0
    # labels are names only: renaming them (strings, reversed order) changes nothing
    renamed = np.column_stack([np.array(["z", "y"])[levels[:, 0]],
                               np.array(["d", "c", "b", "a"])[levels[:, 1]]])
    assert hierarchical_f_score(renamed, tree, nodes) == pytest.approx(expected, abs=1e-15)
    # a tree whose subtrees are the true classes of every level scores 1
    perfect = [3, 3, 4, 4, 4, 2, 2, 2]
    assert hierarchical_f_score(np.column_stack([levels[:, 0], levels[:, 0]]), tree, perfect) == 1.0
    # a level repeated counts twice: the score is the mean over the levels
    y = levels[:, 1]
    assert hierarchical_f_score(np.column_stack([y, y]), tree, nodes) == pytest.approx(6.5 / 8)
    trivial = np.column_stack([np.zeros(8, dtype=int), y])  # one class at the top: F = 1
    assert hierarchical_f_score(trivial, tree, nodes) == pytest.approx((1 + 6.5 / 8) / 2)


def test_hierarchical_f_score_one_node_tree():
    # every sample at the root: F(c) = 2 n(c) / (n + n(c)) = 2 p / (1 + p)
    tree = ClusterTree([-1])
    levels = np.column_stack([[0, 0, 0, 1], [0, 1, 2, 3]])
    # coarse: p = 3/4 -> 6/7, p = 1/4 -> 2/5; fine: 4 classes with p = 1/4 -> 2/5
    expected = (3 * 6 / 7 + 1 * 2 / 5 + 4 * 2 / 5) / 8
    assert expected == pytest.approx(4 / 7, abs=1e-15)
    assert hierarchical_f_score(levels, tree, [0, 0, 0, 0]) == pytest.approx(4 / 7, abs=1e-15)
    # a single class and a single sample: F = 1
    assert hierarchical_f_score([[0], [0], [0]], tree, [0, 0, 0]) == 1.0
    assert hierarchical_f_score([["a", "b", "c"]], ClusterTree([-1, 0]), [1]) == 1.0


def test_hierarchical_f_score_errors():
    tree = ClusterTree([-1, 0, 0])
    levels = np.column_stack([[0, 0, 1, 1], [0, 1, 2, 3]])
    nodes = [1, 1, 2, 2]
    with pytest.raises(ValueError, match="same number of rows.*got 4 and 3"):
        hierarchical_f_score(levels, tree, nodes[:3])
    with pytest.raises(ValueError, match=r"must be 2-D.*got shape \(4,\).*reshape\(-1, 1\)"):
        hierarchical_f_score(levels[:, 1], tree, nodes)
    with pytest.raises(ValueError, match="must be 2-D"):
        hierarchical_f_score(levels[:, :, None], tree, nodes)
    with pytest.raises(ValueError, match="no level"):
        hierarchical_f_score(np.zeros((4, 0)), tree, nodes)
    with pytest.raises(ValueError, match="empty"):
        hierarchical_f_score(np.zeros((0, 2)), tree, [])
    with pytest.raises(ValueError, match="y_true_levels is None"):
        hierarchical_f_score(None, tree, nodes)
    with pytest.raises(ValueError, match="nodes must be 1-D"):
        hierarchical_f_score(levels, tree, [nodes])
    with pytest.raises(ValueError, match="node ids"):
        hierarchical_f_score(levels, tree, [1, 1, 2, 3])
    with pytest.raises(ValueError, match="ClusterTree"):
        hierarchical_f_score(levels, "tree", nodes)
    # not nested: fine classes 6 and 7 each lie under coarse classes 0 and 1; 6 is named
    bad = np.column_stack([[0, 0, 1, 1, 0, 1], [5, 6, 6, 7, 7, 8]])
    msg = "class 6 of level 1 lies under both 0 and 1 of level 0"
    with pytest.raises(ValueError, match=f"not a nested hierarchy: {msg}"):
        hierarchical_f_score(bad, tree, [1] * 6)
    # the first offending level is named: level 1 nests in 0, level 2 does not nest in 1
    bad = np.array([["A", "a", "x"], ["A", "b", "x"], ["B", "c", "y"], ["B", "c", "z"]])
    msg = "class 'x' of level 2 lies under both 'a' and 'b' of level 1"
    with pytest.raises(ValueError, match=msg):
        hierarchical_f_score(bad, tree, nodes)


def test_hierarchical_f_score_known_answer_digits(digits_linkage):
    Z, y = digits_linkage
    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=10)
    levels = np.column_stack([y % 2, y])  # odd / even digits, then digits
    score = hierarchical_f_score(levels, tree, nodes)
    assert round(score, 4) == 0.8297
    assert score == pytest.approx(brute_force_hierarchical_f_score(levels, tree, nodes), abs=1e-12)
    assert round(hierarchical_f_score(y[:, None], tree, nodes), 4) == 0.8658


def test_hierarchical_f_score_scorer():
    levels = np.column_stack([np.zeros(8, dtype=int), Y_FAKE])
    model = FakeTreeModel(threshold=10.0).fit(X_FAKE)  # pure leaves
    assert hierarchical_f_score_scorer(model, X_FAKE, levels) == 1.0
    # a single leaf: the top class is node 1 (F = 1), each digit class 2 * 4 / (8 + 4)
    model = FakeTreeModel().fit(X_FAKE)
    assert hierarchical_f_score_scorer(model, X_FAKE, levels) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="hierarchical_f_score_scorer needs the true classes"):
        hierarchical_f_score_scorer(model, X_FAKE, None)
    with pytest.raises(ValueError, match="must be 2-D"):
        hierarchical_f_score_scorer(model, X_FAKE, Y_FAKE)
    with pytest.raises(NotFittedError):
        hierarchical_f_score_scorer(FakeTreeModel(), X_FAKE, levels)
    # y of shape (n_samples, n_levels) goes through GridSearchCV to the scorer
    search = GridSearchCV(
        make_pipeline(StandardScaler(), FakeTreeModel()),
        {"faketreemodel__threshold": [100.0, 0.0]},
        scoring=hierarchical_f_score_scorer,
        cv=2,
    ).fit(X_FAKE, levels)
    assert search.best_params_ == {"faketreemodel__threshold": 0.0}
    assert search.best_score_ == 1.0
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], [5 / 6, 1.0])


def test_hierarchical_f_score_scorer_treevae(planted):
    X, y = planted
    levels = np.column_stack([y // 2, y])
    model = make_config("TreeVAE").fit(X)
    nodes = model.apply(X)
    score = hierarchical_f_score_scorer(model, X, levels)
    assert score == hierarchical_f_score(levels, model.tree_, nodes)
    assert score == pytest.approx(brute_force_hierarchical_f_score(levels, model.tree_, nodes),
                                  abs=1e-12)
    # better than the one-node tree: (2 (1/2) / (3/2) + 2 (1/4) / (5/4)) / 2 = 8 / 15
    assert 8 / 15 < score <= 1
    # the final step of a pipeline sees X passed through the steps before it
    pipe = Pipeline([("identity", FunctionTransformer().fit(X)), ("treevae", model)])
    assert hierarchical_f_score_scorer(pipe, X, levels) == score
