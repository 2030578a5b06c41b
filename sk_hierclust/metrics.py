"""Evaluation metrics for hierarchical and flat clusterings.

The flat metrics take true classes and predicted cluster labels; the
hierarchical ones, :func:`dendrogram_purity` (true classes) and
:func:`hierarchical_f_score` (true classes at every level of a true
hierarchy), take a :class:`~sk_hierclust.tree.ClusterTree` and the node of
each sample. The
``*_scorer`` callables have the ``scorer(estimator, X, y)`` signature of
scikit-learn, so they can be passed as ``scoring=`` to
:class:`~sklearn.model_selection.GridSearchCV` or
:func:`~sklearn.model_selection.cross_validate`.

:func:`hierarchy_scores` and :func:`evaluate` compute the four scores every
report of this package shows (DP, LP, ACC, NMI) and :func:`format_scores`
prints them as a table.
"""

import numbers
from collections.abc import Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import make_scorer, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .tree import ClusterTree

__all__ = [
    "dendrogram_purity",
    "hierarchical_f_score",
    "leaf_purity",
    "cluster_accuracy",
    "dendrogram_purity_scorer",
    "hierarchical_f_score_scorer",
    "leaf_purity_scorer",
    "cluster_accuracy_scorer",
    "hierarchy_scores",
    "evaluate",
    "format_scores",
    "tree_distance_error",
]


def _check_labels(y_true, labels, name, first="y_true"):
    """Return 1-D arrays of true and predicted labels of equal length.

    ``first`` and ``name`` are the argument names used in error messages.
    """
    if y_true is None:
        hint = (
            "the true classes are needed (was a scorer called without y?)"
            if first == "y_true" else "an array of node ids is needed"
        )
        raise ValueError(f"{first} is None; {hint}.")
    y_true = np.asarray(y_true)
    labels = np.asarray(labels)
    if y_true.ndim != 1 or labels.ndim != 1:
        raise ValueError(
            f"{first} and {name} must be 1-D; got shapes {y_true.shape} and {labels.shape}."
        )
    if y_true.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{first} and {name} must have the same length; got {y_true.shape[0]} "
            f"and {labels.shape[0]}."
        )
    if y_true.shape[0] == 0:
        raise ValueError(f"{first} is empty.")
    return y_true, labels


def _pairs(counts):
    """Count the unordered pairs among ``counts`` items (elementwise)."""
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
        If ``tree`` is not a ClusterTree, ``y_true`` is None, the lengths
        differ, a node id is out of range, or no two samples share a class.

    See Also
    --------
    dendrogram_purity_scorer : As a scorer for model selection.
    hierarchy_scores : With the flat scores.

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


def _label(value):
    """A class label as a plain Python value, for error messages."""
    return value.item() if isinstance(value, np.generic) else value


def _check_levels(y_true_levels, nodes):
    """Validate ``y_true_levels`` (2-D) against ``nodes`` (1-D); return both as arrays."""
    if y_true_levels is None:
        raise ValueError(
            "y_true_levels is None; the true classes of every level are needed "
            "(was a scorer called without y?)."
        )
    levels = np.asarray(y_true_levels)
    if levels.ndim != 2:
        raise ValueError(
            "y_true_levels must be 2-D, of shape (n_samples, n_levels) with the "
            f"coarsest level first; got shape {levels.shape}. For a single level "
            "pass y.reshape(-1, 1)."
        )
    if nodes is None:
        raise ValueError("nodes is None; an array of node ids is needed.")
    nodes = np.asarray(nodes)
    if nodes.ndim != 1:
        raise ValueError(f"nodes must be 1-D; got shape {nodes.shape}.")
    if levels.shape[0] != nodes.shape[0]:
        raise ValueError(
            "y_true_levels and nodes must have the same number of rows (one per "
            f"sample); got {levels.shape[0]} and {nodes.shape[0]}."
        )
    if levels.shape[0] == 0:
        raise ValueError("y_true_levels is empty.")
    if levels.shape[1] == 0:
        raise ValueError("y_true_levels has no level (0 columns).")
    return levels, nodes


def _nested_level_indices(levels):
    """Class indices of each level, checking that every level nests in the one before.

    Returns
    -------
    indices : ndarray of shape (n_samples, n_levels), dtype int64
        Index of each sample's class among the sorted classes of its level.
    classes : list of ndarray
        The sorted classes of each level.
    """
    indices = np.empty(levels.shape, dtype=np.int64)
    classes = []
    for level in range(levels.shape[1]):
        cls, idx = np.unique(levels[:, level], return_inverse=True)
        indices[:, level] = idx.ravel()
        classes.append(cls)
        if level == 0:
            continue
        # distinct (class, parent class) pairs, sorted by class then parent
        n_parents = classes[level - 1].size
        pairs = np.unique(indices[:, level] * n_parents + indices[:, level - 1])
        child, parent = np.divmod(pairs, n_parents)
        split = np.flatnonzero(np.bincount(child) > 1)
        if split.size:
            k = split[0]
            p0, p1 = parent[child == k][:2]
            raise ValueError(
                "y_true_levels is not a nested hierarchy: class "
                f"{_label(cls[k])!r} of level {level} lies under both "
                f"{_label(classes[level - 1][p0])!r} and "
                f"{_label(classes[level - 1][p1])!r} of level {level - 1} (levels "
                "are the columns, numbered from 0, coarsest first); every class "
                "must lie under a single class of the level before it."
            )
    return indices, classes


def hierarchical_f_score(y_true_levels, tree, nodes):
    """Hierarchical F-score of a cluster tree w.r.t. a true hierarchy of classes.

    The F-measure of a clustering tree of Larsen and Aone [1]_, computed for
    every level of a true class hierarchy and micro-averaged over all the
    classes of all the levels. For a true class ``c`` (of some level) and a
    node ``s`` of ``tree``, with ``n(c, s)`` the number of samples of ``c`` in
    the subtree of ``s``, ``n(s)`` the number of samples in that subtree and
    ``n(c)`` the number of samples of ``c``,

    ``P = n(c, s) / n(s)``, ``R = n(c, s) / n(c)``,
    ``F(c, s) = 2 P R / (P + R) = 2 n(c, s) / (n(s) + n(c))``

    (0 when ``n(c, s) = 0``), and the class is credited with its best node,
    ``F(c) = max_s F(c, s)``. The score is

    ``sum_c n(c) F(c) / sum_c n(c)``

    over all (level, class) pairs, i.e. the mean over the levels of each
    level's micro-averaged F-score (every level counts every sample once).
    A sample routed to node ``v`` (a leaf or an internal node) belongs to the
    subtree of ``v`` and of its ancestors. A class may be matched to any node,
    at any depth, and several classes may be matched to the same node.

    The per-node class counts are accumulated up the tree in one pass and
    every ``F(c, s)`` is computed at once: time and memory
    ``O(n_samples * n_levels + node_count * n_classes)``, ``n_classes``
    being the total number of classes over all the levels.

    Parameters
    ----------
    y_true_levels : array-like of shape (n_samples, n_levels)
        True class of each sample at each level of the true hierarchy, the
        coarsest level first (e.g. ``np.column_stack([y_coarse, y])``). The
        levels must be nested: all the samples of a class share one class of
        the level before it. A class label may recur at several levels (e.g.
        a class that is not split further); each occurrence counts.
    tree : ClusterTree
        The learned hierarchy.
    nodes : array-like of int, shape (n_samples,)
        Node id of each sample in ``tree`` (e.g. ``estimator.apply(X)``).

    Returns
    -------
    score : float
        Hierarchical F-score in ``(0, 1]``; 1 when every true class of every
        level is exactly the subtree of some node. A one-node tree (all
        samples at the root) scores ``2 p / (1 + p)`` for a class holding a
        fraction ``p`` of the samples.

    Raises
    ------
    ValueError
        If ``tree`` is not a ClusterTree; ``y_true_levels`` is None, not 2-D,
        has no column, or has another number of rows than ``nodes``;
        ``nodes`` is not 1-D, is empty or holds a node id out of range; or
        the levels are not nested (the message names the first class, at the
        first such level, that lies under two classes of the level before,
        and two of those classes).

    See Also
    --------
    hierarchical_f_score_scorer : As a scorer for model selection.
    dendrogram_purity : A pair-based score against a single level.

    Notes
    -----
    The HCRL paper [2]_ reports micro-averaged hierarchical F-scores on
    20 Newsgroups (depth 4) without defining them precisely. The definition
    used here is the one above: the F-measure of [1]_ (best node of the
    whole tree for each class, micro-averaged with weights ``n(c)``),
    applied to every level of the true hierarchy and pooled over the levels;
    scores reported in [2]_ may have been computed differently.

    References
    ----------
    .. [1] B. Larsen, C. Aone, "Fast and effective text mining using
       linear-time document clustering", KDD 1999.
    .. [2] S.-J. Shin, K. Song, I.-C. Moon, "Hierarchically Clustered
       Representation Learning", AAAI 2020.

    Examples
    --------
    >>> from sk_hierclust import ClusterTree
    >>> from sk_hierclust.metrics import hierarchical_f_score
    >>> tree = ClusterTree([-1, 0, 0])
    >>> levels = [[0, 0], [0, 0], [1, 2], [1, 2]]  # 2 coarse classes, not split
    >>> hierarchical_f_score(levels, tree, [1, 1, 2, 2])
    1.0
    >>> levels = [[0, 0], [0, 1], [0, 0], [0, 1]]  # leaves mix the fine classes
    >>> round(hierarchical_f_score(levels, tree, [1, 1, 2, 2]), 4)  # (4 + 4 * 2/3) / 8
    0.8333
    """
    if not isinstance(tree, ClusterTree):
        raise ValueError(f"tree must be a ClusterTree; got {type(tree).__name__}.")
    levels, nodes = _check_levels(y_true_levels, nodes)
    nodes = tree._check_nodes(nodes)
    indices, classes = _nested_level_indices(levels)
    offsets = np.cumsum([0] + [cls.size for cls in classes[:-1]])
    n_classes = int(sum(cls.size for cls in classes))
    # n(c, s): counts of every class of every level over each subtree
    flat = np.bincount(
        (nodes[:, None] * n_classes + indices + offsets).ravel(),
        minlength=tree.node_count * n_classes,
    )
    counts = tree._subtree_sum(flat.reshape(tree.node_count, n_classes))
    size = tree._subtree_sum(np.bincount(nodes, minlength=tree.node_count))  # n(s)
    class_size = counts[0]  # n(c): the root's subtree holds every sample
    f = 2.0 * counts / (size[:, None] + class_size[None, :])
    best = f.max(axis=0)
    return float(class_size @ best / class_size.sum())


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
        If ``y_true`` is None, the inputs are not 1-D, are empty or their
        lengths differ.

    See Also
    --------
    cluster_accuracy : With a one-to-one matching instead.
    leaf_purity_scorer : As a scorer for model selection.

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
        If ``y_true`` is None, the inputs are not 1-D, are empty or their
        lengths differ.

    See Also
    --------
    leaf_purity : Each cluster credited with its majority class.
    cluster_accuracy_scorer : As a scorer for model selection.

    References
    ----------
    .. [1] J. Xie, R. Girshick, A. Farhadi, "Unsupervised deep embedding for
       clustering analysis", ICML 2016 (unsupervised clustering accuracy).
    .. [2] H. W. Kuhn, "The Hungarian method for the assignment problem",
       Naval Research Logistics Quarterly 2, 1955.

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
        if len(estimator) == 1:  # an empty Pipeline has no transform
            return estimator[-1], X
        return estimator[-1], estimator[:-1].transform(X)
    return estimator, X


def _check_y(y, scorer):
    """Raise a clear error when a scorer is called without true classes."""
    if y is None:
        raise ValueError(f"{scorer} needs the true classes y; got None.")
    return y


def _fitted_final_step(estimator, X):
    """:func:`_final_step`, checking that the final step has a ``tree_``."""
    final, Xt = _final_step(estimator, X)
    check_is_fitted(final, "tree_")
    return final, Xt


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
    sklearn.exceptions.NotFittedError
        If the (final step of the) estimator has no ``tree_``.

    See Also
    --------
    leaf_purity_scorer, cluster_accuracy_scorer : The flat scores.
    evaluate : All four scores at once.

    References
    ----------
    .. [1] scikit-learn user guide, "Defining your scoring strategy from
       callables", https://scikit-learn.org/stable/modules/model_evaluation.html

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sk_hierclust.metrics import dendrogram_purity_scorer
    >>> search = GridSearchCV(est, grid, scoring=dendrogram_purity_scorer)  # doctest: +SKIP
    """
    y = _check_y(y, "dendrogram_purity_scorer")
    final, Xt = _fitted_final_step(estimator, X)
    return dendrogram_purity(y, final.tree_, final.apply(Xt))


def hierarchical_f_score_scorer(estimator, X, y_levels):
    """Scorer computing :func:`hierarchical_f_score` of a fitted estimator.

    Uses ``final.apply(Xt)`` for the node of each sample and ``final.tree_``
    for the hierarchy, where ``final`` is the estimator (or the last step of
    a :class:`~sklearn.pipeline.Pipeline`, ``Xt`` then being ``X`` passed
    through the preceding steps), as :func:`dendrogram_purity_scorer` does.

    Parameters
    ----------
    estimator : estimator or Pipeline
        Fitted estimator with ``apply`` and ``tree_``.
    X : array-like of shape (n_samples, n_features)
        Input data.
    y_levels : array-like of shape (n_samples, n_levels)
        True classes of each level, coarsest first (the ``y`` given to
        ``GridSearchCV.fit`` or ``cross_validate``, e.g.
        ``np.column_stack([y // 2, y])``; the models ignore ``y`` when
        fitting).

    Returns
    -------
    score : float
        Hierarchical F-score (greater is better).

    Raises
    ------
    ValueError
        If ``y_levels`` is None, or as :func:`hierarchical_f_score` (not 2-D,
        not nested, ...).
    sklearn.exceptions.NotFittedError
        If the (final step of the) estimator has no ``tree_``.

    See Also
    --------
    hierarchical_f_score : The score itself.
    dendrogram_purity_scorer : The dendrogram purity of one level.

    References
    ----------
    .. [1] scikit-learn user guide, "Defining your scoring strategy from
       callables", https://scikit-learn.org/stable/modules/model_evaluation.html

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sk_hierclust.metrics import hierarchical_f_score_scorer
    >>> y_levels = np.column_stack([y // 2, y])  # doctest: +SKIP
    >>> search = GridSearchCV(est, grid, scoring=hierarchical_f_score_scorer)  # doctest: +SKIP
    >>> search.fit(X, y_levels)  # doctest: +SKIP
    """
    y_levels = _check_y(y_levels, "hierarchical_f_score_scorer")
    final, Xt = _fitted_final_step(estimator, X)
    return hierarchical_f_score(y_levels, final.tree_, final.apply(Xt))


#: Scorer computing :func:`leaf_purity` of ``estimator.predict(X)``:
#: ``make_scorer(leaf_purity, response_method="predict")``, greater is better.
#: Called as ``leaf_purity_scorer(estimator, X, y)`` on a fitted estimator or
#: a :class:`~sklearn.pipeline.Pipeline` ending with one; raises ValueError
#: when ``y`` is None.
leaf_purity_scorer = make_scorer(leaf_purity, response_method="predict")

#: Scorer computing :func:`cluster_accuracy` of ``estimator.predict(X)``:
#: ``make_scorer(cluster_accuracy, response_method="predict")``, greater is
#: better. Called as ``cluster_accuracy_scorer(estimator, X, y)`` on a fitted
#: estimator or a :class:`~sklearn.pipeline.Pipeline` ending with one; raises
#: ValueError when ``y`` is None.
cluster_accuracy_scorer = make_scorer(cluster_accuracy, response_method="predict")


def hierarchy_scores(y_true, tree, nodes, labels):
    """Compute the four scores of a hierarchical clustering: DP, LP, ACC and NMI.

    The score report shown by the command line and the benchmarks.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class of each sample.
    tree : ClusterTree
        The hierarchy.
    nodes : array-like of int, shape (n_samples,)
        Node of each sample in ``tree`` (e.g. ``estimator.apply(X)``; a leaf
        or an internal node), for the dendrogram purity.
    labels : array-like of shape (n_samples,)
        Flat cluster label of each sample (e.g. ``estimator.predict(X)``, or
        ``tree.node_to_label[nodes]`` when every node is a labelled leaf),
        for the three flat scores.

    Returns
    -------
    scores : dict of str to float
        ``{"DP": dendrogram_purity(y_true, tree, nodes),
        "LP": leaf_purity(y_true, labels),
        "ACC": cluster_accuracy(y_true, labels),
        "NMI": normalized_mutual_info_score(y_true, labels)}``, in that
        order, each in ``[0, 1]``.

    Raises
    ------
    ValueError
        As :func:`dendrogram_purity`, :func:`leaf_purity` and
        :func:`cluster_accuracy`: ``tree`` is not a ClusterTree, ``y_true``
        is None, the lengths differ, a node id is out of range or no two
        samples share a class.

    See Also
    --------
    evaluate : The same scores of a fitted estimator.
    format_scores : Print them as a table.
    sklearn.metrics.normalized_mutual_info_score : The NMI used here.

    References
    ----------
    .. [1] L. Manduchi, M. Vandenhirtz, A. Ryser, J. Vogt, "Tree Variational
       Autoencoders", NeurIPS 2023, Sec. 4 (DP, LP, ACC and NMI).

    Examples
    --------
    >>> from sk_hierclust import ClusterTree
    >>> from sk_hierclust.metrics import hierarchy_scores
    >>> tree = ClusterTree([-1, 0, 0])
    >>> scores = hierarchy_scores([0, 0, 1, 1], tree, [1, 1, 2, 2], [0, 0, 1, 1])
    >>> scores
    {'DP': 1.0, 'LP': 1.0, 'ACC': 1.0, 'NMI': 1.0}
    """
    return {
        "DP": dendrogram_purity(y_true, tree, nodes),
        "LP": leaf_purity(y_true, labels),
        "ACC": cluster_accuracy(y_true, labels),
        "NMI": float(normalized_mutual_info_score(y_true, labels)),
    }


def evaluate(estimator, X, y):
    """Compute the four scores of :func:`hierarchy_scores` for a fitted estimator.

    Computes ``hierarchy_scores(y, final.tree_, final.apply(Xt),
    final.predict(Xt))``, where ``final`` is the estimator, or the last step
    of a :class:`~sklearn.pipeline.Pipeline` (``Xt`` then being ``X`` passed
    once through the preceding steps), as :func:`dendrogram_purity_scorer`
    does.

    Parameters
    ----------
    estimator : estimator or Pipeline
        Fitted estimator with ``tree_``, ``apply`` and ``predict``.
    X : array-like or sparse matrix of shape (n_samples, n_features)
        Input data.
    y : array-like of shape (n_samples,)
        True classes.

    Returns
    -------
    scores : dict of str to float
        ``{"DP": ..., "LP": ..., "ACC": ..., "NMI": ...}``, see
        :func:`hierarchy_scores`.

    Raises
    ------
    ValueError
        If ``y`` is None, or as :func:`hierarchy_scores`.
    sklearn.exceptions.NotFittedError
        If the (final step of the) estimator has no ``tree_``.

    See Also
    --------
    hierarchy_scores : The same scores from a tree, nodes and labels.
    format_scores : Print them as a table.

    References
    ----------
    .. [1] L. Manduchi, M. Vandenhirtz, A. Ryser, J. Vogt, "Tree Variational
       Autoencoders", NeurIPS 2023, Sec. 4.

    Examples
    --------
    >>> from sk_hierclust.metrics import evaluate, format_scores
    >>> rows = {"train": evaluate(model, X_train, y_train)}  # doctest: +SKIP
    >>> print(format_scores(rows))  # doctest: +SKIP
    """
    y = _check_y(y, "evaluate")
    final, Xt = _fitted_final_step(estimator, X)
    return hierarchy_scores(y, final.tree_, final.apply(Xt), final.predict(Xt))


def _format_cell(value, fmt):
    """Text of one table cell: "-" for None, ints as ints, reals with ``fmt``."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), fmt)
    return str(value)


def format_scores(rows, *, floatfmt=".3f"):
    """Format ``{row name: scores dict}`` as a plain-text table.

    The columns are the score names in the order they first appear in the
    rows. The first column holds the row names, left-aligned and as wide as
    the longest one; each score column is right-aligned, as wide as its name
    or its widest value, and preceded by two spaces. A score a row lacks, or
    whose value is None, is printed as ``-``; integers are printed as
    integers, other real numbers with ``floatfmt`` (so NaN prints as
    ``nan``).

    Parameters
    ----------
    rows : dict of str to dict of str to float
        One entry per row (e.g. ``"train"``, ``"test"``, or a model name),
        each a dict of score name to value, e.g. from :func:`evaluate`.
    floatfmt : str or dict of str to str, default=".3f"
        :func:`format` specification of the real values; a dict gives it
        per column, ``".3f"`` for the columns it does not name.

    Returns
    -------
    table : str
        A header line (the score names) and one line per row, joined by
        newlines, without a trailing newline.

    Raises
    ------
    ValueError
        If ``rows`` is empty, or a format specification does not apply to a
        float.

    See Also
    --------
    evaluate, hierarchy_scores : Scores to format.

    References
    ----------
    .. [1] Python documentation, "Format Specification Mini-Language",
       https://docs.python.org/3/library/string.html#formatspec

    Examples
    --------
    >>> from sk_hierclust.metrics import format_scores
    >>> print(format_scores({
    ...     "train": {"DP": 0.5, "LP": 1.0, "leaves": 4},
    ...     "test, Ward": {"DP": 0.25, "LP": None},
    ... }))
                   DP     LP  leaves
    train       0.500  1.000       4
    test, Ward  0.250      -       -
    """
    if not rows:
        raise ValueError("rows is empty; there is nothing to format.")
    columns = []
    for scores in rows.values():
        for c in map(str, scores):
            if c not in columns:
                columns.append(c)
    per_column = isinstance(floatfmt, Mapping)
    table = []
    for scores in rows.values():
        scores = {str(c): v for c, v in scores.items()}
        table.append([
            _format_cell(scores.get(c), floatfmt.get(c, ".3f") if per_column else floatfmt)
            for c in columns
        ])
    names = [str(name) for name in rows]
    first = max(len(name) for name in names)
    widths = [max(len(c), *(len(cells[j]) for cells in table)) for j, c in enumerate(columns)]

    def line(name, cells):
        return name.ljust(first) + "".join(f"  {cell:>{w}}" for cell, w in zip(cells, widths))

    return "\n".join([line("", columns)] + [line(n, cells) for n, cells in zip(names, table)])


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
    nodes, true_nodes = _check_labels(nodes, true_nodes, "true_nodes", first="nodes")
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
