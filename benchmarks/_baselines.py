"""Baselines shared by the benchmarks: Ward, a plain VAE embedding, recursive k-means / GMM, and the score row.

Every tree function returns ``(tree, nodes)``: a :class:`~sk_hierclust.ClusterTree` and the
node of each input row in it (a labelled leaf), so that :func:`score_row` scores models and
baselines alike::

    tree, nodes = ward_tree(X_test, n_leaves=10)
    row = score_row("Ward, 10 leaves", y_test, tree, nodes, fit_s)

``benchmarks`` is not a package: import this module by putting ``benchmarks/`` on
``sys.path`` (the scripts run from there have it) or by
``importlib.util.spec_from_file_location``.
"""

import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.cluster.hierarchy import linkage
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture
from torch import nn

from sk_hierclust import ClusterTree
from sk_hierclust._skorch import ELBONet
from sk_hierclust.metrics import hierarchy_scores
from sk_hierclust.nn.encoders import make_encoder, make_node_decoders
from sk_hierclust.nn.losses import kl_normal, negative_log_likelihood, reparameterize, split_normal

__all__ = ["SCORE_COLUMNS", "hkm_tree", "rgmm_tree", "score_row", "split_consistency", "timed", "vae_embedding",
           "ward_tree"]

#: Keys of a :func:`score_row` row after ``"model"``, in table order.
SCORE_COLUMNS = ("DP", "LP", "ACC", "NMI", "fit s", "leaves")


def _dense(X):
    """``X`` as a float64 ndarray (sparse matrices densified)."""
    return (X.toarray() if sp.issparse(X) else np.asarray(X)).astype(np.float64)


def timed(fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)`` and return ``(result, CPU seconds)`` (``time.process_time``)."""
    start = time.process_time()
    result = fn(*args, **kwargs)
    return result, time.process_time() - start


def ward_tree(X, n_leaves):
    """Ward linkage (scipy) on the rows of ``X``, cut to ``n_leaves`` leaves.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Inputs (densified if sparse; the linkage needs ``n_samples ** 2 / 2`` floats).
    n_leaves : int or sequence of int
        Where to cut the merge tree. A sequence cuts the same linkage several times.

    Returns
    -------
    tree, nodes : ClusterTree, ndarray of shape (n_samples,)
        The cut tree (:meth:`ClusterTree.from_linkage`) and each row's leaf; for a sequence
        ``n_leaves``, a list of such pairs, one per entry.
    """
    Z = linkage(_dense(X), "ward")
    if np.ndim(n_leaves):
        return [ClusterTree.from_linkage(Z, n_leaves=int(k)) for k in n_leaves]
    return ClusterTree.from_linkage(Z, n_leaves=int(n_leaves))


def hkm_tree(X, depth, random_state=0, *, n_leaves=None, min_size=2, n_init=3):
    """Hierarchical k-means: recursive binary k-means (scikit-learn ``KMeans``) on the rows of ``X``.

    Without ``n_leaves`` every node with at least ``min_size`` rows is split in two, down to
    ``depth`` (at most ``2 ** depth`` leaves). With ``n_leaves``, the largest splittable leaf
    (fewer than ``depth`` levels deep) is split until the tree has ``n_leaves`` leaves (bisecting
    k-means), or no leaf can be split.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Inputs (``KMeans`` takes CSR matrices as they are).
    depth : int
        Largest depth of a leaf, the root at depth 0.
    random_state : int, default=0
        Seed of every ``KMeans``.
    n_leaves : int, default=None
        Stop at this many leaves (largest leaf split first); None: the full binary tree.
    min_size : int, default=2
        A node with fewer rows is not split.
    n_init : int, default=3
        ``KMeans`` restarts per split.

    Returns
    -------
    tree, nodes : ClusterTree, ndarray of shape (n_samples,)
        The tree (nodes numbered in creation order, so parents come first) and each row's leaf.
    """
    def split(rows):
        return KMeans(2, n_init=n_init, random_state=random_state).fit_predict(X[rows])
    return _bisecting_tree(X.shape[0], depth, split, n_leaves, max(min_size, 2))


def rgmm_tree(X, depth, random_state=0, *, n_leaves=None, min_size=2, n_init=3, covariance_type="full"):
    """Recursive Gaussian mixtures: recursive binary ``GaussianMixture`` (scikit-learn) on the rows of ``X``.

    :func:`hkm_tree` with a two-component Gaussian mixture in place of ``KMeans`` at every
    split (each row goes to its most probable component). Without ``n_leaves`` every node
    with at least ``min_size`` rows is split in two, down to ``depth``; with ``n_leaves``, the
    largest splittable leaf (fewer than ``depth`` levels deep) is split until the tree has
    ``n_leaves`` leaves, or no leaf can be split.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Inputs (a node's rows are densified if sparse; meant for low-dimensional embeddings).
    depth : int
        Largest depth of a leaf, the root at depth 0.
    random_state : int, default=0
        Seed of every ``GaussianMixture``.
    n_leaves : int, default=None
        Stop at this many leaves (largest leaf split first); None: the full binary tree.
    min_size : int, default=2
        A node with fewer rows is not split.
    n_init : int, default=3
        ``GaussianMixture`` restarts per split.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        The components' covariance.

    Returns
    -------
    tree, nodes : ClusterTree, ndarray of shape (n_samples,)
        The tree (nodes numbered in creation order, so parents come first) and each row's leaf.
    """
    def split(rows):
        Xr = _dense(X[rows])
        return GaussianMixture(2, covariance_type=covariance_type, n_init=n_init,
                               random_state=random_state).fit_predict(Xr)
    return _bisecting_tree(X.shape[0], depth, split, n_leaves, max(min_size, 2))


def _bisecting_tree(n, depth, split, n_leaves, min_size):
    """Recursive binary splits of ``n`` rows by ``split(rows) -> labels in {0, 1}`` (see :func:`hkm_tree`).

    A leaf that ``split`` cannot divide (one label only) is left as it is.
    """
    parent, depths, nodes = [-1], [0], np.zeros(n, dtype=np.int64)
    members, frozen = {0: np.arange(n)}, set()

    def splittable(v):
        return depths[v] < depth and len(members[v]) >= min_size and v not in frozen

    while n_leaves is None or len(members) < n_leaves:
        candidates = [v for v in members if splittable(v)]
        if not candidates:
            break
        v = (min(candidates, key=lambda u: (depths[u], u)) if n_leaves is None
             else max(candidates, key=lambda u: (len(members[u]), -u)))
        rows = members[v]
        labels = split(rows)
        if np.unique(labels).size < 2:
            frozen.add(v)
            continue
        del members[v]
        for k in (0, 1):
            child = len(parent)
            parent.append(v)
            depths.append(depths[v] + 1)
            members[child] = rows[labels == k]
            nodes[members[child]] = child
    return ClusterTree.from_sample_nodes(parent, nodes), nodes


class _VAE(nn.Module):
    """Plain VAE: the package's encoder, a Gaussian head, one decoder of the package's node stack.

    ``forward(x)`` returns the negative-ELBO terms ``rec`` and ``kl`` per sample, as the
    package's :class:`~sk_hierclust._skorch.ELBONet` expects.
    """

    elbo_terms = ("rec", "kl")
    annealed_terms = ("kl",)

    def __init__(self, n_features, latent_dim, encoder, input_shape, hidden_dims, likelihood):
        super().__init__()
        self.likelihood = likelihood
        self.encoder = make_encoder(encoder, n_features, input_shape, hidden_dims)
        self.head = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.decoder = make_node_decoders(encoder, 1, latent_dim, n_features, input_shape, hidden_dims)

    def encode(self, x):
        return split_normal(self.head(self.encoder(x)))

    def forward(self, x):
        mean, var = self.encode(x)
        z = reparameterize(mean, var, self.training)
        return {"rec": negative_log_likelihood(x, self.decoder(z[None])[0], self.likelihood),
                "kl": kl_normal(mean, var)}


def _rows(X, idx):
    """Rows ``idx`` of ``X`` as a float32 tensor (sparse rows densified)."""
    rows = X[idx]
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    return torch.as_tensor(rows, dtype=torch.float32)


def vae_embedding(X_train, X_test, *, n_epochs=30, latent_dim=10, encoder="mlp", input_shape=None,
                  hidden_dims=None, batch_size=256, lr=1e-3, weight_decay=1e-5, likelihood="auto",
                  random_state=0):
    """Fit a plain VAE on ``X_train`` and return the posterior means of both sets.

    The VAE uses the models' own building blocks (:func:`sk_hierclust.nn.encoders.make_encoder`
    and one decoder of :func:`~sk_hierclust.nn.encoders.make_node_decoders`, so ``encoder``
    means what it means for the models), a standard-normal prior and Adam, trained by the
    package's skorch :class:`~sk_hierclust._skorch.ELBONet`. It is the "VAE"
    of the "VAE + Ward" baseline: Ward on these embeddings is a two-stage deep clustering.

    Parameters
    ----------
    X_train, X_test : {ndarray, sparse matrix} of shape (n, n_features)
        Training and evaluation inputs (sparse rows are densified batch by batch).
    n_epochs : int, default=30
        Passes over ``X_train``.
    latent_dim : int, default=10
        Width of the embedding.
    encoder : {"mlp", "conv", "conv_pool"}, default="mlp"
        Encoder/decoder architecture; the convolutional ones need ``input_shape``.
    input_shape : tuple (C, H, W), default=None
        Image shape for the convolutional architectures.
    hidden_dims : tuple of int, default=None
        Encoder widths (the package's default when None).
    batch_size : int, default=256
    lr : float, default=1e-3
    weight_decay : float, default=1e-5
        Adam's learning rate and weight decay.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``"auto"``: Bernoulli when ``X_train`` lies in [0, 1], else a unit-variance Gaussian
        (as the models choose).
    random_state : int, default=0
        Seeds torch (weights, noise) and the batch order.

    Returns
    -------
    Z_train, Z_test : ndarray of shape (n, latent_dim), float64
        Posterior means ``E[z | x]`` of ``X_train`` and ``X_test`` (evaluation mode).
    """
    if likelihood == "auto":
        lo, hi = (X_train.min(), X_train.max())
        likelihood = "bernoulli" if lo >= 0 and hi <= 1 else "gaussian"
    torch.manual_seed(random_state)
    module = _VAE(X_train.shape[1], latent_dim, encoder, input_shape, hidden_dims, likelihood)
    net = ELBONet(module, optimizer=torch.optim.Adam, lr=lr, optimizer__weight_decay=weight_decay,
                  batch_size=batch_size, max_epochs=n_epochs, train_split=None, iterator_train__shuffle=True,
                  iterator_train__generator=torch.Generator().manual_seed(random_state), verbose=0)
    net.fit(sp.csr_matrix(X_train) if sp.issparse(X_train) else X_train)
    module = net.module_.eval()

    def embed(X):
        with torch.no_grad():
            return np.concatenate([module.encode(_rows(X, np.arange(s, min(s + 1024, X.shape[0]))))[0].numpy()
                                   for s in range(0, X.shape[0], 1024)]).astype(np.float64)

    return embed(X_train), embed(X_test)


def score_row(name, y, tree, nodes, fit_s, labels=None):
    """One table row: the model's name, DP, LP, ACC, NMI, fit seconds and leaves.

    Parameters
    ----------
    name : str
        Row name.
    y : array-like of shape (n_samples,)
        True classes of the scored samples.
    tree : ClusterTree
        The hierarchy.
    nodes : array-like of int, shape (n_samples,)
        Node of each sample in ``tree`` (``apply``), for the dendrogram purity.
    fit_s : float
        Seconds the fit took (CPU time in the benchmarks: ``time.process_time``).
    labels : array-like of shape (n_samples,), default=None
        Flat cluster of each sample (``predict``); default ``tree.node_to_label[nodes]``.

    Returns
    -------
    row : dict
        ``{"model": name, "DP", "LP", "ACC", "NMI"}`` (see
        :func:`sk_hierclust.metrics.hierarchy_scores`), ``"fit s"`` and ``"leaves"`` (the
        tree's leaves holding samples, ``len(tree.label_to_node)``).
    """
    nodes = np.asarray(nodes)
    if labels is None:
        labels = tree.node_to_label[nodes]
    return {"model": name, **hierarchy_scores(y, tree, nodes, labels), "fit s": float(fit_s),
            "leaves": int(len(tree.label_to_node))}


def split_consistency(y, tree, nodes, max_depth=3):
    """How cleanly the splits of each depth keep the true classes together, and how balanced they are.

    For an internal node ``v``, its consistency is the share of the samples under ``v`` that
    lie in the child holding most of their class, ``sum_c max_child n(c, child) / n(v)`` (1:
    every class goes to one child; a balanced binary split that ignores the classes: about
    0.5), and its balance the share of its largest child, ``max_child n(child) / n(v)`` (a
    split sending every sample to one child has consistency 1 and balance 1: read the two
    together). Samples that sit at ``v`` itself count as their own child. Each is averaged
    over the internal nodes of a depth, weighted by ``n(v)``. This tells where a tree's
    dendrogram purity is lost: the errors of a top split are shared by every pair below it.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        True classes.
    tree : ClusterTree
    nodes : array-like of int, shape (n_samples,)
        Node of each sample in ``tree``.
    max_depth : int, default=3
        Depths ``0 .. max_depth - 1`` are reported.

    Returns
    -------
    dict of int to (float, float)
        Depth -> ``(consistency, balance)`` of that depth's splits (depths without an internal
        node holding samples are left out).
    """
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    own = np.zeros((tree.node_count, classes.size))
    np.add.at(own, (np.asarray(nodes), y_idx), 1)
    under = tree._subtree_sum(own)
    children = np.flatnonzero(tree.parent >= 0)
    best = own.copy()  # per node and class: the largest count among its children (and itself)
    np.maximum.at(best, tree.parent[children], under[children])
    largest = own.sum(1)  # per node: its largest child's sample count (or its own samples)
    np.maximum.at(largest, tree.parent[children], under[children].sum(1))
    size = under.sum(1)
    splits = (np.bincount(tree.parent[children], minlength=tree.node_count) > 0) & (size > 0)
    out = {}
    for depth in range(max_depth):
        internal = np.flatnonzero(splits & (tree.depth == depth))
        if internal.size:
            total = size[internal].sum()
            out[depth] = (float(best[internal].sum() / total), float(largest[internal].sum() / total))
    return out
