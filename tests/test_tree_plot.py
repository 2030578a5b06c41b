"""Tests of ClusterTree.plot with labels and per-node thumbnails (issue 15, part 5)."""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.cluster.hierarchy import linkage

from sk_hierclust.tree import ClusterTree

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _twenty_leaf_tree(seed=0, n_samples=3000, side=8):
    """A 20-leaf Ward tree of random images, the images, their nodes and 10 classes."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 16, size=(10, side * side))
    y = rng.integers(0, 10, size=n_samples)
    X = centers[y] + rng.normal(0, 2, size=(n_samples, side * side))
    tree, nodes = ClusterTree.from_linkage(linkage(X, "ward"), n_leaves=20)
    return tree, nodes, X, y


def _thumbnails(ax):
    """Node id -> drawn thumbnail artist."""
    return {int(a.get_gid().split("-")[1]): a for a in ax.artists
            if isinstance(a, AnnotationBbox) and a.get_gid().startswith("thumbnail-")}


def _overlapping(boxes):
    """The pairs of (name, Bbox) whose boxes overlap with positive area."""
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0) > 0
            and min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0) > 0]


def _drawn_boxes(ax):
    """Window extents of every label's text and box, and of every thumbnail, after drawing."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for v, text in enumerate(ax.texts):
        boxes.append((f"label {v}", text.get_bbox_patch().get_window_extent(renderer)))
    for v, artist in _thumbnails(ax).items():
        boxes.append((f"thumbnail {v}", artist.get_window_extent(renderer)))
    return boxes


@pytest.mark.parametrize("class_names", [False, True])
@pytest.mark.parametrize("with_images", [False, True])
def test_twenty_leaves_nothing_overlaps(with_images, class_names):
    tree, nodes, X, y = _twenty_leaf_tree()
    assert tree.n_leaves == 20 and tree.max_depth >= 4
    if class_names:  # long class names widen the leaf labels
        y = np.array(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"])[y]
    ax = tree.plot(y=y, nodes=nodes, images=X if with_images else None)
    assert len(ax.texts) == tree.node_count
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [(f"text {v}", t.get_window_extent(renderer)) for v, t in enumerate(ax.texts)]
    assert _overlapping(texts) == []
    boxes = _drawn_boxes(ax)
    assert len(boxes) == tree.node_count * (2 if with_images else 1)
    assert _overlapping(boxes) == []
    # everything lies inside the figure (nothing cut off when shown without bbox_inches="tight")
    figure_box = fig.bbox
    for name, box in boxes:
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, name
        assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, name
    # the leaves show the majority class and its share
    leaf = int(tree.label_to_node[0])
    in_leaf = np.flatnonzero(nodes == leaf)
    values, counts = np.unique(y[in_leaf], return_counts=True)
    expected = f"n={in_leaf.size}\n{values[counts.argmax()]}: {counts.max() / in_leaf.size:.0%}"
    assert ax.texts[leaf].get_text() == expected


def test_overlap_check_detects_overlap():
    # the check above can fail: labels of a 20-leaf tree crammed into a small axes overlap
    tree, nodes, X, y = _twenty_leaf_tree()
    _, ax = plt.subplots(figsize=(4, 3))
    tree.plot(ax, y=y, nodes=nodes, images=X)
    assert _overlapping(_drawn_boxes(ax))


@pytest.mark.parametrize("side", [8, 28])  # digits, MNIST
def test_thumbnails_are_the_subtree_mean_images(side, tmp_path):
    tree, nodes, X, y = _twenty_leaf_tree(n_samples=1000, side=side)
    ax = tree.plot(y=y, nodes=nodes, images=X, image_shape=(1, side, side))
    drawn = _thumbnails(ax)
    assert sorted(drawn) == list(range(tree.node_count))
    x, depth_y = tree._layout()
    for v, artist in drawn.items():
        in_subtree = np.flatnonzero(tree.decision_path(nodes)[:, v].toarray().ravel())
        expected = X[in_subtree].mean(axis=0).reshape(side, side)
        assert_allclose(artist.offsetbox.get_data(), expected, rtol=1e-10, atol=1e-10)
        assert artist.xy == (x[v], depth_y[v])
    # one colour scale for all the thumbnails
    norms = {id(a.offsetbox.image.norm) for a in drawn.values()}
    assert len(norms) == 1
    norm = drawn[0].offsetbox.image.norm
    means = [a.offsetbox.get_data() for a in drawn.values()]
    assert norm.vmin == min(m.min() for m in means) and norm.vmax == max(m.max() for m in means)
    ax.figure.savefig(tmp_path / "tree.png", dpi=150, bbox_inches="tight")
    assert (tmp_path / "tree.png").stat().st_size > 0


def test_nodes_without_samples_get_no_thumbnail():
    tree = ClusterTree([-1, 0, 0, 1, 1])
    nodes = np.array([3, 3, 2, 2, 2])  # leaf 4 is empty
    images = np.arange(5 * 4, dtype=float).reshape(5, 4)
    ax = tree.plot(nodes=nodes, images=images)  # 4 features: 2 x 2 images
    drawn = _thumbnails(ax)
    assert sorted(drawn) == [0, 1, 2, 3]
    assert_allclose(drawn[1].offsetbox.get_data(), images[:2].mean(axis=0).reshape(2, 2))
    assert [t.get_text() for t in ax.texts] == ["n=5", "n=2", "n=3", "n=2", "n=0"]


def test_thumbnails_given_per_node():
    tree = ClusterTree([-1, 0, 0])
    pictures = np.arange(3 * 6, dtype=float).reshape(3, 6)
    pictures[2, 0] = np.nan  # not drawn
    ax = tree.plot(thumbnails=pictures, image_shape=(2, 3))
    drawn = _thumbnails(ax)
    assert sorted(drawn) == [0, 1]
    assert_array_equal(drawn[1].offsetbox.get_data(), pictures[1].reshape(2, 3))
    # already shaped (node_count, h, w), and RGB given channel-first (c, h, w)
    ax = tree.plot(thumbnails=pictures.reshape(3, 2, 3))
    assert_array_equal(_thumbnails(ax)[0].offsetbox.get_data(), pictures[0].reshape(2, 3))
    rgb = np.random.default_rng(0).uniform(size=(3, 3, 4, 5))
    ax = tree.plot(thumbnails=rgb, image_shape=(3, 4, 5))
    assert_array_equal(_thumbnails(ax)[2].offsetbox.get_data(), np.moveaxis(rgb[2], 0, -1))


def test_no_images_keeps_the_plain_picture():
    tree, nodes, X, y = _twenty_leaf_tree()
    ax = tree.plot(y=y, nodes=nodes)
    assert _thumbnails(ax) == {}
    x, depth_y = tree._layout()
    assert_array_equal([t.xy for t in ax.texts], np.column_stack([x, depth_y]))
    assert all(t.get_position() == t.xy for t in ax.texts)  # centred on the node


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": np.zeros((6, 10))}, "image shape"),  # 10 features: not square
        ({"images": np.zeros((6, 64)), "image_shape": (7, 7)}, "64 values per image instead of 49"),
        ({"images": np.zeros((6, 64)), "image_shape": (2, 4, 8)}, "1, 3 or 4"),
        ({"images": np.zeros((6, 64)), "image_shape": (64,)}, "height, width"),
        ({"images": np.zeros((6, 64)), "image_shape": (0, 64)}, "height, width"),
        ({"images": np.zeros((5, 64))}, "one row per entry of nodes"),
        ({"images": np.zeros((6, 8, 8)), "image_shape": (1, 7, 7)}, "instead of 49"),
        ({"thumbnails": np.zeros((4, 64))}, "one row per node"),
        ({"thumbnails": np.zeros((3, 63))}, "image shape"),
        ({"thumbnails": np.zeros(3)}, "one row per node"),
        ({"thumbnails": np.zeros((3, 64)), "images": np.zeros((6, 64))}, "not both"),
    ],
)
def test_bad_images_raise(kwargs, match):
    tree = ClusterTree([-1, 0, 0])
    nodes = np.array([1, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match=match):
        tree.plot(nodes=nodes, **kwargs)


def test_images_and_y_need_nodes():
    tree = ClusterTree([-1, 0, 0])
    with pytest.raises(ValueError, match="images requires nodes"):
        tree.plot(images=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="together"):
        tree.plot(y=[0, 1])
    # nodes alone: the counts of those samples
    ax = tree.plot(nodes=[1, 2, 2])
    assert [t.get_text() for t in ax.texts] == ["n=3", "n=1", "n=2"]
