"""Tests for sk_hierclust.tree.ClusterTree."""

import pickle

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from scipy import sparse
from scipy.cluster.hierarchy import (
    cophenet,
    dendrogram,
    fcluster,
    is_monotonic,
    is_valid_linkage,
    linkage,
)
from scipy.spatial.distance import squareform
from sklearn.cluster import AgglomerativeClustering

from sk_hierclust.tree import ClusterTree

# Hand-built tree: root 0 is ternary, 1 and 5 and 6 are binary, 2 is a
# pass-through node; leaf 8 holds no sample.
#
#              0
#        /     |     \
#       1      2      3
#      / \     |
#     4   5    6
#        / \  / \
#       7  8 9  10
HAND_PARENT = [-1, 0, 0, 0, 1, 1, 2, 5, 5, 6, 6]
HAND_COUNTS = [20, 7, 8, 5, 4, 3, 8, 3, 0, 2, 6]


@pytest.fixture
def hand():
    return ClusterTree(HAND_PARENT, n_node_samples=HAND_COUNTS)


@st.composite
def random_parents(draw, max_nodes=30):
    """Parent arrays of random trees in topological order."""
    n = draw(st.integers(1, max_nodes))
    return np.array([-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)])


@st.composite
def random_trees(draw, max_nodes=30):
    """Random trees whose leaves hold random (possibly zero) sample counts."""
    parent = draw(random_parents(max_nodes))
    tree = ClusterTree(parent)
    own = np.zeros(tree.node_count, dtype=np.int64)
    leaves = tree.leaves()
    own[leaves] = draw(
        st.lists(st.integers(0, 5), min_size=leaves.size, max_size=leaves.size)
    )
    return ClusterTree(parent, n_node_samples=tree._subtree_sum(own))


def brute_lca(tree, a, b):
    path_a = {a, *tree.ancestors(a).tolist()}
    while b not in path_a:
        b = int(tree.parent[b])
    return b


# ----------------------------------------------------------------- arrays
def test_hand_tree_arrays(hand):
    assert hand.node_count == 11
    assert hand.max_depth == 3
    assert hand.n_leaves == 6
    assert_array_equal(hand.parent, HAND_PARENT)
    assert hand.parent.dtype == np.int64
    assert_array_equal(hand.depth, [0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    assert hand.depth.dtype == np.int64
    assert_array_equal(hand.n_node_samples, HAND_COUNTS)
    assert_array_equal(
        hand.is_leaf, [0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1]
    )
    expected_children = [[1, 2, 3], [4, 5], [6], [], [], [7, 8], [9, 10], [], [], [], []]
    assert len(hand.children) == hand.node_count
    for got, want in zip(hand.children, expected_children):
        assert got.dtype == np.int64
        assert_array_equal(got, want)
    assert_array_equal(hand.leaves(), [3, 4, 7, 8, 9, 10])
    # leaf 8 has no sample: not labelled
    assert_array_equal(hand.node_to_label, [-1, -1, -1, 0, 1, -1, -1, 2, -1, 3, 4])
    assert hand.node_to_label.dtype == np.int64
    assert_array_equal(hand.label_to_node, [3, 4, 7, 9, 10])
    assert hand.label_to_node.dtype == np.int64
    assert not hasattr(hand, "leaf_to_label")
    assert repr(hand) == "ClusterTree(node_count=11, n_leaves=6, max_depth=3)"


def test_without_counts_all_leaves_labelled():
    tree = ClusterTree(HAND_PARENT)
    assert_array_equal(tree.n_node_samples, np.zeros(11))
    assert_array_equal(tree.node_to_label, [-1, -1, -1, 0, 1, -1, -1, 2, 3, 4, 5])
    assert_array_equal(tree.label_to_node, [3, 4, 7, 8, 9, 10])
    single = ClusterTree([-1])
    assert single.max_depth == 0 and single.n_leaves == 1
    assert_array_equal(single.node_to_label, [0])
    assert_array_equal(single.label_to_node, [0])


@settings(max_examples=50, deadline=None)
@given(random_trees())
def test_node_to_label_inverts_label_to_node(tree):
    labelled = tree.leaves()
    if np.any(tree.n_node_samples > 0):
        labelled = labelled[tree.n_node_samples[labelled] > 0]
    assert_array_equal(tree.label_to_node, labelled)
    assert tree.node_to_label.shape == (tree.node_count,)
    assert_array_equal(tree.node_to_label[tree.label_to_node], np.arange(labelled.size))
    others = np.setdiff1d(np.arange(tree.node_count), labelled)
    assert_array_equal(tree.node_to_label[others], -1)


@settings(max_examples=50, deadline=None)
@given(random_parents())
def test_depth_children_random(parent):
    tree = ClusterTree(parent)
    for v in range(1, tree.node_count):
        assert tree.depth[v] == tree.depth[parent[v]] + 1
        assert v in tree.children[parent[v]]
    assert sum(c.size for c in tree.children) == tree.node_count - 1
    assert_array_equal(tree.is_leaf, [c.size == 0 for c in tree.children])


# -------------------------------------------------------- ancestors / lca
def test_ancestors_hand(hand):
    assert_array_equal(hand.ancestors(7), [5, 1, 0])
    assert_array_equal(hand.ancestors(2), [0])
    assert hand.ancestors(0).size == 0
    assert hand.ancestors(np.int64(9)).dtype == np.int64
    for bad in (-1, 11, 1.5, "a"):
        with pytest.raises(ValueError, match="node"):
            hand.ancestors(bad)


def test_lca_hand(hand):
    assert hand.lca(7, 9) == 0
    assert hand.lca(7, 4) == 1
    assert hand.lca(7, 8) == 5
    assert hand.lca(7, 5) == 5
    assert hand.lca(9, 10) == 6
    assert hand.lca(3, 3) == 3
    assert isinstance(hand.lca(3, 4), int)
    out = hand.lca(np.array([7, 7, 9]), np.array([8, 9, 2]))
    assert out.dtype == np.int64
    assert_array_equal(out, [5, 0, 2])
    assert_array_equal(hand.lca([[7, 4]], [[8, 5]]), [[5, 1]])
    with pytest.raises(ValueError, match="same shape"):
        hand.lca([1, 2], [1])
    with pytest.raises(ValueError, match="node ids"):
        hand.lca([1, 12], [1, 2])


@settings(max_examples=50, deadline=None)
@given(random_parents(), st.data())
def test_lca_random_vs_brute_force(parent, data):
    tree = ClusterTree(parent)
    n = tree.node_count
    a = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=20)))
    b = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=a.size, max_size=a.size)))
    expected = [brute_lca(tree, int(i), int(j)) for i, j in zip(a, b)]
    assert_array_equal(tree.lca(a, b), expected)
    assert tree.lca(int(a[0]), int(b[0])) == expected[0]
    assert_array_equal(tree.lca(a, a), a)
    for v in range(n):
        anc = tree.ancestors(v)
        assert anc.size == tree.depth[v]
        if anc.size:
            assert anc[0] == parent[v] and anc[-1] == 0


# -------------------------------------------------------------------- cut
def test_cut_hand(hand):
    assert_array_equal(hand.cut(0), np.zeros(11))
    assert_array_equal(hand.cut(1), [-1, 0, 1, 2, 0, 0, 1, 0, 0, 1, 1])
    # leaf 3 is shallower than the cut: it is its own cut node
    assert_array_equal(hand.cut(2), [-1, -1, -1, 0, 1, 2, 3, 2, 2, 3, 3])
    assert_array_equal(hand.cut(3), [-1, -1, -1, 0, 1, -1, -1, 2, 3, 4, 5])
    assert_array_equal(hand.cut(10), hand.cut(3))
    assert hand.cut(1).dtype == np.int64
    # labels of samples routed to nodes
    assert_array_equal(hand.cut(1)[[7, 3, 10]], [0, 2, 1])
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="depth"):
            hand.cut(bad)


@settings(max_examples=30, deadline=None)
@given(random_parents(), st.integers(0, 6))
def test_cut_random(parent, depth):
    tree = ClusterTree(parent)
    labels = tree.cut(depth)
    for v in range(tree.node_count):
        path = [v, *tree.ancestors(v).tolist()]
        at_depth = [u for u in path if tree.depth[u] == depth]
        if at_depth:
            cut_node = at_depth[0]
        elif tree.is_leaf[v]:
            cut_node = v
        else:
            assert labels[v] == -1
            continue
        assert labels[v] == labels[cut_node] >= 0
    cut_nodes = np.flatnonzero(
        (tree.depth == depth) | (tree.is_leaf & (tree.depth < depth))
    )
    assert_array_equal(labels[cut_nodes], np.arange(cut_nodes.size))


# ---------------------------------------------------------- decision_path
def test_decision_path_hand(hand):
    indicator = hand.decision_path([7, 3, 0])
    assert sparse.issparse(indicator) and indicator.format == "csr"
    assert indicator.shape == (3, 11)
    expected = np.zeros((3, 11), dtype=int)
    expected[0, [0, 1, 5, 7]] = 1
    expected[1, [0, 3]] = 1
    expected[2, 0] = 1
    assert_array_equal(indicator.toarray(), expected)
    assert indicator.has_sorted_indices
    assert hand.decision_path([]).shape == (0, 11)
    with pytest.raises(ValueError):
        hand.decision_path([11])
    with pytest.raises(ValueError, match="1-D"):
        hand.decision_path([[1]])


# -------------------------------------------------------------- to_linkage
def test_to_linkage_hand(hand):
    Z = hand.to_linkage()
    # observations: 0=n3, 1=n4, 2=n7, 3=n9, 4=n10; node 5 and node 2 are
    # pass-through (leaf 8 is empty), root 0 is ternary
    expected = [
        [3, 4, 1.0, 2],  # node 6
        [1, 2, 2.0, 2],  # node 1
        [5, 6, 2.5, 4],  # root, first of two merges
        [0, 7, 3.0, 5],  # root
    ]
    assert_array_equal(Z, expected)
    with pytest.raises(ValueError, match="2 labelled leaves"):
        ClusterTree([-1, 0], n_node_samples=[3, 3]).to_linkage()


@settings(max_examples=60, deadline=None)
@given(random_trees())
def test_to_linkage_random(tree):
    n = tree.label_to_node.size
    assume(n >= 2)
    Z = tree.to_linkage()
    assert Z.shape == (n - 1, 4)
    assert is_valid_linkage(Z)
    assert is_monotonic(Z)
    # 4th column counts observations
    sizes = np.ones(2 * n - 1)
    for i, (a, b) in enumerate(Z[:, :2].astype(int)):
        sizes[n + i] = sizes[a] + sizes[b]
    assert_array_equal(Z[:, 3], sizes[n:])
    assert Z[-1, 3] == n
    # merge heights follow the lca of the leaves
    coph = squareform(cophenet(Z))
    i, j = np.triu_indices(n, 1)
    lca = tree.lca(tree.label_to_node[i], tree.label_to_node[j])
    height = tree.max_depth - tree.depth[lca]
    assert np.all(coph[i, j] <= height) and np.all(coph[i, j] > height - 1)
    leaves = dendrogram(Z, no_plot=True)["leaves"]
    assert sorted(leaves) == list(range(n))


# ------------------------------------------------------------ from_linkage
def _same_partition(a, b):
    pairs = np.unique(np.column_stack([a, b]), axis=0)
    return pairs.shape[0] == np.unique(a).size == np.unique(b).size


@pytest.mark.parametrize("method", ["ward", "average", "single"])
@pytest.mark.parametrize("n_leaves", [1, 2, 5, 13, 60])
def test_from_linkage_matches_fcluster(method, n_leaves):
    rng = np.random.RandomState(n_leaves)
    X = rng.normal(size=(60, 3))
    Z = linkage(X, method)
    tree, nodes = ClusterTree.from_linkage(Z, n_leaves=n_leaves)
    assert nodes.shape == (60,) and nodes.dtype == np.int64
    assert tree.node_count == 2 * n_leaves - 1
    assert tree.n_leaves == n_leaves
    assert np.all(tree.is_leaf[nodes])
    assert _same_partition(nodes, fcluster(Z, n_leaves, "maxclust"))
    assert all(c.size in (0, 2) for c in tree.children)  # binary
    assert tree.n_node_samples[0] == 60
    assert_array_equal(
        tree.n_node_samples[tree.leaves()], np.bincount(nodes)[tree.leaves()]
    )
    # every leaf holds samples: leaf k (in id order) has label k
    assert_array_equal(np.flatnonzero(tree.node_to_label >= 0), tree.leaves())
    assert_array_equal(tree.node_to_label[tree.leaves()], np.arange(n_leaves))
    # the tree above the cut is the top of Z: samples in different leaves
    # meet at the Z merge whose size is that of their lca's subtree
    coph = squareform(cophenet(Z))
    i, j = np.triu_indices(60, 1)
    diff = nodes[i] != nodes[j]
    i, j = i[diff], j[diff]
    rows = np.searchsorted(Z[:, 2], coph[i, j])
    assert_array_equal(Z[rows, 2], coph[i, j])
    lca = tree.lca(nodes[i], nodes[j])
    assert_array_equal(tree.n_node_samples[lca], Z[rows, 3])


def test_from_linkage_defaults_and_errors():
    X = np.random.RandomState(0).normal(size=(8, 2))
    Z = linkage(X, "ward")
    tree, nodes = ClusterTree.from_linkage(Z)
    assert tree.n_leaves == 8 and tree.node_count == 15
    assert np.unique(nodes).size == 8
    for bad in (0, 9, 2.5):
        with pytest.raises(ValueError, match="n_leaves"):
            ClusterTree.from_linkage(Z, n_leaves=bad)
    with pytest.raises(ValueError, match="linkage"):
        ClusterTree.from_linkage(Z[:, :3])
    bad_Z = Z.copy()
    bad_Z[0, 0] = 20
    with pytest.raises(ValueError, match="linkage"):
        ClusterTree.from_linkage(bad_Z)


def test_from_agglomerative_matches_from_linkage():
    X = np.random.RandomState(1).normal(size=(50, 4))
    Z = linkage(X, "ward")
    i, j = np.triu_indices(50, 1)
    for model in (
        AgglomerativeClustering(linkage="ward", compute_distances=True).fit(X),
        AgglomerativeClustering(linkage="ward").fit(X),  # no distances_
    ):
        for n_leaves in (None, 7):
            tree_a, nodes_a = ClusterTree.from_agglomerative(model, n_leaves=n_leaves)
            tree_l, nodes_l = ClusterTree.from_linkage(Z, n_leaves=n_leaves)
            assert tree_a.node_count == tree_l.node_count
            assert _same_partition(nodes_a, nodes_l)
            assert_array_equal(
                tree_a.n_node_samples[tree_a.lca(nodes_a[i], nodes_a[j])],
                tree_l.n_node_samples[tree_l.lca(nodes_l[i], nodes_l[j])],
            )


def test_from_agglomerative_errors():
    with pytest.raises(ValueError, match="fitted"):
        ClusterTree.from_agglomerative(AgglomerativeClustering())
    from sklearn.neighbors import kneighbors_graph

    X = np.random.RandomState(2).normal(size=(40, 2))
    model = AgglomerativeClustering(
        n_clusters=5,
        connectivity=kneighbors_graph(X, 10, include_self=False),
        compute_full_tree=False,
    ).fit(X)
    with pytest.raises(ValueError, match="compute_full_tree"):
        ClusterTree.from_agglomerative(model)


# ----------------------------------------------------------------- export
def test_to_newick(hand):
    assert ClusterTree([-1, 0, 0, 1, 1]).to_newick() == "((n3:1,n4:1)n1:1,n2:1)n0;"
    assert hand.to_newick() == (
        "((n4:1,(n7:1,n8:1)n5:1)n1:1,((n9:1,n10:1)n6:1)n2:1,n3:1)n0;"
    )
    assert ClusterTree([-1]).to_newick() == "n0;"


def test_to_networkx(hand):
    pytest.importorskip("networkx")
    graph = hand.to_networkx()
    assert graph.is_directed()
    assert sorted(graph.nodes) == list(range(11))
    assert sorted(graph.edges) == sorted((p, c) for c, p in enumerate(HAND_PARENT) if p >= 0)
    assert graph.nodes[7] == {"depth": 3, "n_node_samples": 3, "is_leaf": True, "label": 2}
    assert graph.nodes[8]["label"] is None
    assert graph.nodes[0]["label"] is None and not graph.nodes[0]["is_leaf"]


def test_to_pandas(hand):
    pd = pytest.importorskip("pandas")
    frame = hand.to_pandas()
    assert list(frame.columns) == ["parent", "depth", "n_node_samples", "is_leaf", "label"]
    assert frame.index.name == "node" and len(frame) == 11
    assert_array_equal(frame["parent"], HAND_PARENT)
    assert_array_equal(frame["n_node_samples"], HAND_COUNTS)
    assert frame.loc[10, "label"] == 4
    assert pd.isna(frame.loc[8, "label"]) and pd.isna(frame.loc[0, "label"])


def test_plot(hand, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    ax = hand.plot()
    assert isinstance(ax, Axes)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"n={c}" for c in HAND_COUNTS]
    # leaves at x = 0, 1, ... in depth-first order (4, 7, 8, 9, 10, 3), parents
    # centred over their first and last child, y = -depth
    x = [2.875, 0.75, 3.5, 5, 0, 1.5, 3.5, 1, 2, 3, 4]
    assert_array_equal([t.xy for t in ax.texts], np.column_stack([x, -hand.depth]))
    (edges,) = ax.collections
    segments = sorted(tuple(map(tuple, seg)) for seg in edges.get_segments())
    assert segments == sorted(
        ((x[p], -hand.depth[p]), (x[c], -hand.depth[c]))
        for c, p in enumerate(HAND_PARENT) if p >= 0
    )
    ax.figure.savefig(tmp_path / "tree.png")  # renders without error

    fig, ax2 = plt.subplots()
    nodes = np.array([7, 7, 7, 9, 10, 10, 3])
    y = np.array([1, 1, 2, 5, 5, 5, 0])
    assert hand.plot(ax2, y=y, nodes=nodes) is ax2
    texts = [t.get_text() for t in ax2.texts]
    # every non-empty node: its subtree's count, majority class and purity (brute force)
    for v, text in enumerate(texts):
        inside = np.array([n == v or v in hand.ancestors(n) for n in nodes])
        if not inside.any():
            assert text == "n=0"
            continue
        values, counts = np.unique(y[inside], return_counts=True)
        assert text == f"n={inside.sum()}\n{values[counts.argmax()]}: {counts.max() / inside.sum():.0%}"
    assert texts[7] == "n=3\n1: 67%" and texts[0] == "n=7\n5: 43%"
    with pytest.raises(ValueError, match="same length"):
        hand.plot(ax2, y=y[:-1], nodes=nodes)
    with pytest.raises(ValueError, match="together"):
        hand.plot(ax2, y=y)
    plt.close("all")


def test_pickle_round_trip(hand):
    clone = pickle.loads(pickle.dumps(hand))
    for attr in ("parent", "depth", "n_node_samples", "is_leaf", "label_to_node", "node_to_label"):
        assert_array_equal(getattr(clone, attr), getattr(hand, attr))
    assert clone.node_count == hand.node_count and clone.max_depth == hand.max_depth
    assert_array_equal(clone.to_linkage(), hand.to_linkage())


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "parent, match",
    [
        ([-1, -1, 0], "topological"),  # two roots
        ([-1, 0, 3, 1], "topological"),  # parent[i] >= i
        ([-1, 0, 2], "topological"),  # self-loop
        ([1, -1], "root"),  # root not at 0
        ([], "non-empty"),
        ([[-1, 0]], "1-D"),
        ([-1, 0.5], "integers"),
        (["a"], "integers"),
    ],
)
def test_bad_parent(parent, match):
    with pytest.raises(ValueError, match=match):
        ClusterTree(parent)


def test_bad_counts():
    with pytest.raises(ValueError, match="shape"):
        ClusterTree([-1, 0, 0], n_node_samples=[3, 1])
    with pytest.raises(ValueError, match="non-negative"):
        ClusterTree([-1, 0, 0], n_node_samples=[3, -1, 4])
    with pytest.raises(ValueError, match="subtree"):
        ClusterTree([-1, 0, 0], n_node_samples=[3, 2, 2])


def test_from_sample_nodes_counts_samples_over_subtrees():
    # two samples in leaf 4, one each in leaves 3 and 2, one at internal node 1
    tree = ClusterTree.from_sample_nodes([-1, 0, 0, 1, 1], [3, 4, 4, 2, 1])
    assert tree.n_node_samples.tolist() == [5, 4, 1, 1, 2]
    assert tree.label_to_node.tolist() == [2, 3, 4]
