"""Evaluation metrics for hierarchical and flat clusterings.

The flat metrics take true classes and predicted cluster labels; the
hierarchical one, :func:`dendrogram_purity`, takes a
:class:`~sk_hierclust.tree.ClusterTree` and the node of each sample. The
``*_scorer`` callables have the ``scorer(estimator, X, y)`` signature of
scikit-learn, so they can be passed as ``scoring=`` to
:class:`~sklearn.model_selection.GridSearchCV` or
:func:`~sklearn.model_selection.cross_validate`.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics.cluster import contingency_matrix
from sklearn.pipeline import Pipeline

from .tree import ClusterTree

__all__ = [
    "dendrogram_purity",
    "leaf_purity",
    "cluster_accuracy",
    "dendrogram_purity_scorer",
    "leaf_purity_scorer",
    "cluster_accuracy_scorer",
    "tree_distance_error",
]


def _check_labels(y_true, labels, name):
    """Return 1-D arrays of true and predicted labels of equal length."""
    y_true = np.asarray(y_true)
    labels = np.asarray(labels)
    if y_true.ndim != 1 or labels.ndim != 1:
        raise ValueError(
            f"y_true and {name} must be 1-D; got shapes {y_true.shape} and {labels.shape}."
        )
    if y_true.shape[0] != labels.shape[0]:
        raise ValueError(
            f"y_true and {name} must have the same length; got {y_true.shape[0]} "
            f"and {labels.shape[0]}."
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true is empty.")
    return y_true, labels


def _pairs(counts):
    """Number of unordered pairs among ``counts`` items (elementwise)."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts * (counts - 1) / 2


def dendrogram_purity(y_true, tree, nodes):
    """Dendrogram purity of a cluster tree with respect to true classes.

    For every unordered pair of samples of the same class ``k``, take the
    subtree rooted at the pair's lowest common ancestor and measure its
    purity for ``k`` (fraction of the samples in that subtree that belong to
    ``k``); the dendrogram purity is the mean over all such pairs. A sample
    routed to node ``v`` (a leaf or an internal node) belongs to the subtree
    of ``v`` and of its ancestors; two samples at the same node have that
    node as lowest common ancestor.

    The score is computed bottom-up from per-node class counts in
    ``O(n_samples + node_count * n_classes)`` time, without enumerating
    pairs: the pairs of class ``k`` whose lowest common ancestor is ``v``
    number ``C(n_k(v), 2) - sum_c C(n_k(c), 2)`` over the children ``c`` of
    ``v``, where ``n_k(v)`` counts class ``k`` in the subtree of ``v``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    tree : ClusterTree
        The hierarchy.
    nodes : array-like of int, shape (n_samples,)
        Node id of each sample in ``tree`` (e.g. ``estimator.apply(X)``).

    Returns
    -------
    score : float
        Dendrogram purity in ``[0, 1]``; 1 for a tree whose leaves are pure
        and hold whole classes.

    Raises
    ------
    ValueError
        If the lengths differ, a node id is out of range, or no two samples
        share a class.

    References
    ----------
    .. [1] A. Kobren, N. Monath, A. Krishnamurthy, A. McCallum, "A
       hierarchical algorithm for extreme clustering", KDD 2017.
    .. [2] L. Manduchi, M. Vandenhirtz, A. Ryser, J. Vogt, "Tree Variational
       Autoencoders", NeurIPS 2023, Sec. 4.

    Examples
    --------
    >>> from sk_hierclust import ClusterTree
    >>> from sk_hierclust.metrics import dendrogram_purity
    >>> tree = ClusterTree([-1, 0, 0])
    >>> dendrogram_purity([0, 0, 1, 1], tree, [1, 1, 2, 2])
    1.0
    >>> round(dendrogram_purity([0, 1, 0, 1], tree, [1, 1, 2, 2]), 3)
    0.5
    """
    if not isinstance(tree, ClusterTree):
        raise ValueError(f"tree must be a ClusterTree; got {type(tree).__name__}.")
    y_true, nodes = _check_labels(y_true, nodes, "nodes")
    nodes = tree._check_nodes(nodes)
    classes, y_idx = np.unique(y_true, return_inverse=True)
    n_classes = classes.size
    total_pairs = _pairs(np.bincount(y_idx, minlength=n_classes)).sum()
    if total_pairs == 0:
        raise ValueError(
            "dendrogram_purity is undefined: no two samples share a class."
        )
    # n_k(v): class counts over each subtree, shape (node_count, n_classes)
    flat = np.bincount(nodes * n_classes + y_idx, minlength=tree.node_count * n_classes)
    counts = tree._subtree_sum(flat.reshape(tree.node_count, n_classes))
    pairs = _pairs(counts)
    child_pairs = np.zeros_like(pairs)
    np.add.at(child_pairs, tree.parent[1:], pairs[1:])
    lca_pairs = pairs - child_pairs  # same-class pairs whose lca is v
    size = counts.sum(axis=1, keepdims=True)
    purity = np.divide(counts, size, out=np.zeros(counts.shape), where=size > 0)
    return float((lca_pairs * purity).sum() / total_pairs)


def leaf_purity(y_true, labels_pred):
    """Purity of a flat clustering.

    Each cluster is credited with the number of samples of its majority
    class; the purity is the total credit divided by the number of samples.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    labels_pred : array-like of shape (n_samples,)
        Cluster (e.g. leaf) label of each sample.

    Returns
    -------
    score : float
        Purity in ``(0, 1]``.

    Raises
    ------
    ValueError
        If the inputs are empty or their lengths differ.

    References
    ----------
    .. [1] L. Manduchi, M. Vandenhirtz, A. Ryser, J. Vogt, "Tree Variational
       Autoencoders", NeurIPS 2023, Sec. 4 (leaf purity).

    Examples
    --------
    >>> from sk_hierclust.metrics import leaf_purity
    >>> leaf_purity([0, 0, 1, 1, 1], [0, 0, 0, 1, 1])
    0.8
    """
    y_true, labels_pred = _check_labels(y_true, labels_pred, "labels_pred")
    cm = contingency_matrix(y_true, labels_pred)
    return float(cm.max(axis=0).sum() / y_true.shape[0])


def cluster_accuracy(y_true, labels_pred):
    """Clustering accuracy under the best one-to-one cluster/class matching.

    Clusters are matched to classes by the Hungarian algorithm so as to
    maximise the number of correctly matched samples. When there are more
    clusters than classes, the samples of unmatched clusters count as
    errors.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    labels_pred : array-like of shape (n_samples,)
        Cluster label of each sample.

    Returns
    -------
    score : float
        Accuracy in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the inputs are empty or their lengths differ.

    Examples
    --------
    >>> from sk_hierclust.metrics import cluster_accuracy
    >>> cluster_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> cluster_accuracy([0, 0, 1, 1], [0, 1, 2, 3])
    0.5
    """
    y_true, labels_pred = _check_labels(y_true, labels_pred, "labels_pred")
    cm = contingency_matrix(y_true, labels_pred)
    rows, cols = linear_sum_assignment(cm, maximize=True)
    return float(cm[rows, cols].sum() / y_true.shape[0])


def _final_step(estimator, X):
    """Split an estimator into its final step and the input of that step.

    Parameters
    ----------
    estimator : estimator or sklearn.pipeline.Pipeline
        Fitted estimator.
    X : array-like of shape (n_samples, n_features)
        Input data.

    Returns
    -------
    final : estimator
        ``estimator[-1]`` for a pipeline, else ``estimator``.
    Xt : array-like
        ``X`` transformed by all but the last pipeline step, else ``X``.
    """
    if isinstance(estimator, Pipeline):
        return estimator[-1], estimator[:-1].transform(X)
    return estimator, X


def _check_y(y, scorer):
    """Raise a clear error when a scorer is called without true classes."""
    if y is None:
        raise ValueError(f"{scorer} needs the true classes y; got None.")
    return y


def dendrogram_purity_scorer(estimator, X, y):
    """Scorer computing :func:`dendrogram_purity` of a fitted estimator.

    Uses ``final.apply(Xt)`` for the node of each sample and ``final.tree_``
    for the hierarchy, where ``final`` is the estimator (or the last step of
    a :class:`~sklearn.pipeline.Pipeline`, ``Xt`` then being ``X`` passed
    through the preceding steps).

    Parameters
    ----------
    estimator : estimator or Pipeline
        Fitted estimator with ``apply`` and ``tree_``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,)
        True classes.

    Returns
    -------
    score : float
        Dendrogram purity (greater is better).

    Raises
    ------
    ValueError
        If ``y`` is None.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sk_hierclust.metrics import dendrogram_purity_scorer
    >>> search = GridSearchCV(est, grid, scoring=dendrogram_purity_scorer)  # doctest: +SKIP
    """
    y = _check_y(y, "dendrogram_purity_scorer")
    final, Xt = _final_step(estimator, X)
    return dendrogram_purity(y, final.tree_, final.apply(Xt))


def leaf_purity_scorer(estimator, X, y):
    """Scorer computing :func:`leaf_purity` of ``estimator.predict(X)``.

    Parameters
    ----------
    estimator : estimator or Pipeline
        Fitted estimator with ``predict``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,)
        True classes.

    Returns
    -------
    score : float
        Leaf purity (greater is better).

    Raises
    ------
    ValueError
        If ``y`` is None.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> cross_val_score(est, X, y, scoring=leaf_purity_scorer)  # doctest: +SKIP
    """
    y = _check_y(y, "leaf_purity_scorer")
    return leaf_purity(y, estimator.predict(X))


def cluster_accuracy_scorer(estimator, X, y):
    """Scorer computing :func:`cluster_accuracy` of ``estimator.predict(X)``.

    Parameters
    ----------
    estimator : estimator or Pipeline
        Fitted estimator with ``predict``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,)
        True classes.

    Returns
    -------
    score : float
        Clustering accuracy (greater is better).

    Raises
    ------
    ValueError
        If ``y`` is None.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> cross_val_score(est, X, y, scoring=cluster_accuracy_scorer)  # doctest: +SKIP
    """
    y = _check_y(y, "cluster_accuracy_scorer")
    return cluster_accuracy(y, estimator.predict(X))


def tree_distance_error(tree, nodes, true_tree, true_nodes):
    """Tree distance error ``D_tree``: mismatch of pairwise topological distances in two trees.

    With ``d_S(a, b)`` the number of edges between the nodes of samples ``a`` and ``b`` in
    the learned ``tree`` and ``d_H(a, b)`` the same in the true hierarchy,

    ``D_tree = 1 / N^2 * sum_{a, b} (d_S(a, b) - d_H(a, b))^2 = ||D_S - D_H||_F^2 / N^2``

    (HTVAE paper, eq. 15), over all ordered pairs of the ``N`` samples. It is 0 when the two
    trees place every pair of samples equally far apart.

    The ``N x N`` matrices are never formed: with ``C[u, h]`` the number of samples at node
    ``u`` of ``tree`` and node ``h`` of ``true_tree``, ``n = C 1`` and ``m = C^T 1``, the sum is
    ``n^T D_S^2 n + m^T D_H^2 m - 2 sum(D_H * (C^T D_S C))`` (squares elementwise), with
    ``D_S`` and ``D_H`` restricted to the nodes that hold samples; time and memory
    ``O(N + U^2 + H^2 + U H)`` for ``U`` and ``H`` occupied nodes.

    Parameters
    ----------
    tree : ClusterTree
        The learned hierarchy.
    nodes : array-like of int, shape (n_samples,)
        Node of each sample in ``tree`` (e.g. ``estimator.apply(X)``).
    true_tree : ClusterTree
        The true hierarchy, e.g. classes as leaves under their super-classes.
    true_nodes : array-like of int, shape (n_samples,)
        Node of each sample in ``true_tree``; for classes ``y`` at the leaves, e.g.
        ``class_to_node[y]``.

    Returns
    -------
    score : float
        ``D_tree >= 0`` (lower is better), in squared edges.

    Raises
    ------
    ValueError
        If a tree is not a ClusterTree, the lengths differ or a node id is out of range.

    References
    ----------
    .. [1] Hierarchical topological VAE (HTVAE), eq. 15 (tree distance error), as summarised
       in issue 5 of this project.

    Examples
    --------
    >>> from sk_hierclust import ClusterTree
    >>> from sk_hierclust.metrics import tree_distance_error
    >>> learned = ClusterTree([-1, 0, 0])          # root with two leaves
    >>> truth = ClusterTree([-1, 0, 0, 1, 1])       # leaves 3, 4 under node 1, leaf 2
    >>> tree_distance_error(learned, [1, 2], truth, [3, 2])  # d_S = 2, d_H = 3
    0.5
    """
    for name, t in (("tree", tree), ("true_tree", true_tree)):
        if not isinstance(t, ClusterTree):
            raise ValueError(f"{name} must be a ClusterTree; got {type(t).__name__}.")
    nodes, true_nodes = _check_labels(nodes, true_nodes, "true_nodes")
    nodes, true_nodes = tree._check_nodes(nodes, "nodes"), true_tree._check_nodes(true_nodes, "true_nodes")
    used, u = np.unique(nodes, return_inverse=True)
    true_used, h = np.unique(true_nodes, return_inverse=True)
    C = np.zeros((used.size, true_used.size))
    np.add.at(C, (u, h), 1.0)

    def squared_distances(t, v):
        a, b = np.meshgrid(v, v, indexing="ij")
        d = (t.depth[a] + t.depth[b] - 2 * t.depth[t.lca(a, b)]).astype(np.float64)
        return d, d * d

    D_S, D_S2 = squared_distances(tree, used)
    D_H, D_H2 = squared_distances(true_tree, true_used)
    n, m = C.sum(1), C.sum(0)
    total = n @ D_S2 @ n + m @ D_H2 @ m - 2 * np.sum(D_H * (C.T @ D_S @ C))
    return float(max(total, 0.0) / nodes.shape[0] ** 2)
