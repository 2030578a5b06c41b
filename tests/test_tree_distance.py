"""Tests of :func:`sk_hierclust.metrics.tree_distance_error` (the HTVAE paper's D_tree, eq. 15)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sk_hierclust import ClusterTree
from sk_hierclust.datasets import FASHION_MNIST_HIERARCHY
from sk_hierclust.metrics import tree_distance_error


def brute_force(tree, nodes, true_tree, true_nodes):
    """``||D_S - D_H||_F^2 / N^2`` from the full N x N matrices of path lengths."""
    def distances(t, v):
        v = np.asarray(v)
        a, b = np.meshgrid(v, v, indexing="ij")
        return t.depth[a] + t.depth[b] - 2 * t.depth[t.lca(a, b)]
    diff = distances(tree, nodes) - distances(true_tree, true_nodes)
    return float((diff.astype(float) ** 2).sum() / len(nodes) ** 2)


def random_tree(rng, n_nodes):
    return ClusterTree([-1] + [int(rng.randint(i)) for i in range(1, n_nodes)])




@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_on_random_trees(seed):
    rng = np.random.RandomState(seed)
    tree, true_tree = random_tree(rng, rng.randint(2, 30)), random_tree(rng, rng.randint(2, 15))
    n = rng.randint(1, 120)
    nodes, true_nodes = rng.randint(tree.node_count, size=n), rng.randint(true_tree.node_count, size=n)
    assert_allclose(tree_distance_error(tree, nodes, true_tree, true_nodes),
                    brute_force(tree, nodes, true_tree, true_nodes), rtol=1e-12, atol=1e-12)


def test_known_answers():
    flat = ClusterTree([-1] + [0] * 10)  # a root with the ten classes as leaves
    y = np.array([0, 6, 5, 9])  # T-shirt, Shirt (light tops), Sandal, Ankle boot (shoes)
    # against itself: 0
    assert tree_distance_error(FASHION_MNIST_HIERARCHY, y + 9, FASHION_MNIST_HIERARCHY, y + 9) == 0.0
    # flat tree: every pair of distinct classes is 2 apart; in the Fashion hierarchy the siblings are 2 apart
    # and the others 6 (through the root): 8 ordered pairs at distance 6, error (6-2)^2 each
    assert tree_distance_error(flat, y + 1, FASHION_MNIST_HIERARCHY, y + 9) == 8 * 16 / 16
    # all samples in one leaf: d_S = 0; d_H = 2 (2 sibling pairs x 2 orders) or 6 (8 ordered pairs)
    assert tree_distance_error(flat, np.ones(4, int), FASHION_MNIST_HIERARCHY, y + 9) == (4 * 4 + 8 * 36) / 16


def test_without_n_by_n_memory():
    """100,000 samples on few nodes: computed from (node, node) counts.

    An N x N matrix of int64 would need 80 GB.
    """
    rng = np.random.RandomState(0)
    y = rng.randint(10, size=100_000)
    learned = ClusterTree([-1, 0, 0] + [1] * 5 + [2] * 5)
    nodes = np.where(y < 5, 3 + y, 8 + y - 5)
    value = tree_distance_error(learned, nodes, FASHION_MNIST_HIERARCHY, y + 9)
    # the node of a sample follows from its class: D_tree = sum_{c, c'} p_c p_c' (d_S - d_H)^2
    p = np.bincount(y) / y.size
    classes = np.arange(10)
    learned_nodes = np.where(classes < 5, 3 + classes, 8 + classes - 5)
    a, b = np.meshgrid(classes, classes, indexing="ij")
    d_s = (learned.depth[learned_nodes[a]] + learned.depth[learned_nodes[b]]
           - 2 * learned.depth[learned.lca(learned_nodes[a], learned_nodes[b])])
    H = FASHION_MNIST_HIERARCHY
    d_h = H.depth[a + 9] + H.depth[b + 9] - 2 * H.depth[H.lca(a + 9, b + 9)]
    assert_allclose(value, p @ ((d_s - d_h) ** 2) @ p, rtol=1e-10)


@pytest.mark.parametrize("args, match", [
    ((np.zeros(3, int), ClusterTree([-1, 0]), np.zeros(2, int)), "same length"),
    ((np.array([0, 5]), ClusterTree([-1, 0]), np.zeros(2, int)), "node ids"),
    ((np.zeros(2, int), ClusterTree([-1, 0]), np.array([0, 2])), "node ids"),
    ((np.zeros(2, int), [-1, 0], np.zeros(2, int)), "ClusterTree"),
])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        tree_distance_error(ClusterTree([-1, 0, 0]), *args)
