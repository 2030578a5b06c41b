"""HTVAE: a VAE whose prior is a stack of self-organizing maps learned in its latent space.

A hierarchical topological VAE in the line of SOM-VAE (Fortuin et al., ICLR 2019): M
self-organizing maps ``S_1`` (finest) ... ``S_M`` (coarsest) live in the latent space of a
VAE; the chain of nearest codes from the encoding up the maps is a path in a tree, and the
maps' codes are Gaussians that can generate. Must-link constraints pull pairs together.
"""

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._base import BaseDeepClusterer
from ..nn.encoders import make_encoder, make_node_decoders
from ..nn.losses import kl_normal, negative_log_likelihood, output_mean, reparameterize, split_normal

__all__ = ["HTVAE", "HTVAEModule", "default_map_shapes"]


def _lattice_shape(n_codes):
    """Return the most square ``(rows, cols)`` lattice with ``n_codes`` codes (``rows <= cols``)."""
    rows = max(d for d in range(1, math.isqrt(n_codes) + 1) if n_codes % d == 0)
    return rows, n_codes // rows


def default_map_shapes(max_leaves, max_depth):
    """Build the default geometric stack of ``max_depth`` lattices, finest first.

    Map ``i`` (``i = 1`` finest) gets ``K_i = round(max_leaves ** ((M - i + 1) / M))`` codes
    (at least 2, and strictly more than the map above it), laid out as the most square
    lattice with that many codes; e.g. ``(64, 3)`` gives ``((8, 8), (4, 4), (2, 2))``.

    Parameters
    ----------
    max_leaves : int
        Codes of the finest map, ``K_1``.
    max_depth : int
        Number of maps, ``M``.

    Returns
    -------
    tuple of (int, int)

    Raises
    ------
    ValueError
        If ``max_leaves`` is too small for ``max_depth`` strictly shrinking maps of at least
        2 codes.
    """
    sizes = [max(2, round(max_leaves ** ((max_depth - i) / max_depth))) for i in range(max_depth)]
    for i in range(max_depth - 2, -1, -1):
        sizes[i] = max(sizes[i], sizes[i + 1] + 1)
    if sizes[0] != max_leaves:
        raise ValueError(f"max_leaves={max_leaves} is too small for max_depth={max_depth} maps of strictly "
                         f"decreasing size (at least 2 codes each): it must be at least {sizes[0]}.")
    return tuple(_lattice_shape(k) for k in sizes)


def _check_map_shapes(map_shapes):
    """Validate ``map_shapes``; returns it as a tuple of ``(rows, cols)`` int pairs."""
    shapes = []
    for i, shape in enumerate(map_shapes):
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or not all(isinstance(s, Integral) and s >= 1 for s in shape)):
            raise ValueError(f"map_shapes[{i}] must be a (rows, cols) pair of positive integers; got {shape!r}.")
        shapes.append((int(shape[0]), int(shape[1])))
    if not shapes:
        raise ValueError("map_shapes must hold at least one map.")
    sizes = [r * c for r, c in shapes]
    if min(sizes) < 2:
        raise ValueError(f"every map needs at least 2 codes (a code's scale is the distance to its nearest "
                         f"lattice neighbour); got map_shapes={tuple(shapes)}.")
    if any(a <= b for a, b in zip(sizes[:-1], sizes[1:])):
        raise ValueError(f"map_shapes must be finest first with strictly decreasing numbers of codes; got "
                         f"{tuple(shapes)} with {sizes} codes.")
    return tuple(shapes)


def _check_must_link(must_link, n_samples):
    """Validate must-link pairs; returns an ``(n_pairs, 2)`` int64 array, or None."""
    if must_link is None:
        return None
    pairs = np.asarray(must_link)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"must_link must be an array of shape (n_pairs, 2) of sample indices; got shape "
                         f"{pairs.shape}.")
    if pairs.dtype.kind not in "iu":
        raise ValueError(f"must_link must hold integer sample indices; got dtype {pairs.dtype}.")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n_samples):
        raise ValueError(f"must_link indices must be in [0, {n_samples - 1}] (X has {n_samples} samples); got "
                         f"values in [{pairs.min()}, {pairs.max()}].")
    return pairs.astype(np.int64) if pairs.size else None


class HTVAEModule(nn.Module):
    """The HTVAE network: encoder, one shared decoder, and the codes of M stacked SOMs.

    All codes of all maps are rows of one parameter ``codes`` ``(K, L)``, finest map first;
    buffers give each code its map (``code_map``), lattice position (``coords``) and its up
    to four lattice neighbours (``neighbours``, ``neighbour_mask``), so that distances to a
    whole map are one ``torch.cdist``, every code's scale one masked gather, and the parent
    links of all maps one masked ``cdist``/``argmin``.

    ``forward(x)`` returns the per-sample loss terms (each ``(B,)``) of paper eqs. 6-9: ``rec``
    (``L_rec``, negative log-likelihood of ``x`` under the decodings of ``z_0 .. z_M``),
    ``hierarchy`` (``L_hierarchy = sum_i ||z_i - z_{i-1}||^2``), ``som`` (``L_top = sum_i
    sum_{e in N(mu_i)} ||sg(mu_i) - e||^2``), ``kl`` (KL of the encoder to ``N(0, I)``, the only
    term in :attr:`annealed_terms`) and, in training mode with must-link pairs set
    (:meth:`set_must_link`), ``must_link`` (eq. 10) for a batch of pairs drawn alongside the
    data batch.

    Parameters
    ----------
    n_features, latent_dim : int
    map_shapes : tuple of (int, int)
        Lattice shape of each map, finest first.
    likelihood : {"bernoulli", "gaussian"}
    encoder : {"mlp", "conv", "conv_pool"}
    input_shape : tuple or None
    hidden_dims : tuple of int or None
        Encoder widths (:func:`~sk_hierclust.nn.encoders.make_encoder`), mirrored by the decoder.
    rho : float
        A code's standard deviation is its distance to its nearest lattice neighbour over ``rho``.
    sigma_init : float
        Codes start as draws from ``N(0, sigma_init^2 I)``.
    must_link_depth : int or None
        Depth in the tree (1 = the coarsest map, ..., M = the finest map; None = M) of the map
        whose lattice distance weighs the must-link penalty.
    must_link_weight : float
    """

    #: Every term ``forward`` can return.
    elbo_terms = ("rec", "hierarchy", "som", "kl", "must_link")
    #: The terms weighted by the KL annealing of training.
    annealed_terms = ("kl",)

    def __init__(self, n_features, latent_dim, map_shapes, likelihood, encoder, input_shape=None, hidden_dims=None,
                 rho=8.0, sigma_init=0.5, must_link_depth=None, must_link_weight=1.0):
        super().__init__()
        self.latent_dim, self.likelihood, self.rho = latent_dim, likelihood, rho
        self.map_shapes, self.n_maps = tuple(map_shapes), len(map_shapes)
        self.must_link_depth = self.n_maps if must_link_depth is None else must_link_depth
        self.must_link_weight = must_link_weight
        self.encoder = make_encoder(encoder, n_features, input_shape, hidden_dims)
        self.head = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.decoder = make_node_decoders(encoder, 1, latent_dim, n_features, input_shape, hidden_dims)
        sizes = [r * c for r, c in map_shapes]
        self.offsets = [0, *np.cumsum(sizes).tolist()]
        self.codes = nn.Parameter(sigma_init * torch.randn(self.offsets[-1], latent_dim))
        code_map, coords, neighbours, mask = [], [], [], []
        for m, (rows, cols) in enumerate(map_shapes):
            r, c = np.divmod(np.arange(rows * cols), cols)
            code_map.append(np.full(rows * cols, m))
            coords.append(np.stack([r, c], 1))
            steps = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])
            nr, nc = r[:, None] + steps[:, 0], c[:, None] + steps[:, 1]
            inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
            neighbours.append(np.where(inside, self.offsets[m] + nr * cols + nc, self.offsets[m]))
            mask.append(inside)
        self.register_buffer("code_map", torch.as_tensor(np.concatenate(code_map)))
        self.register_buffer("coords", torch.as_tensor(np.concatenate(coords)))
        self.register_buffer("neighbours", torch.as_tensor(np.concatenate(neighbours)))
        self.register_buffer("neighbour_mask", torch.as_tensor(np.concatenate(mask)))
        self.must_link, self.train_data = None, None

    # ---- must-link data -----------------------------------------------------------------
    def set_must_link(self, pairs, X):
        """Draw must-link pairs (rows of ``pairs``, indices into ``X``) alongside every training batch.

        ``pairs=None`` switches the constraint off (and drops the reference to ``X``).
        """
        self.must_link, self.train_data = (None, None) if pairs is None else (pairs, X)

    def _pair_rows(self, n, like):
        """``n`` must-link pairs drawn uniformly with replacement (torch RNG): rows ``(2 n, D)``."""
        idx = torch.randint(len(self.must_link), (n,)).numpy()
        rows = self.train_data[self.must_link[idx].ravel()]
        rows = rows.toarray() if sp.issparse(rows) else rows
        return torch.as_tensor(rows, dtype=like.dtype, device=like.device)

    # ---- the maps -----------------------------------------------------------------------
    def code_scales(self):
        """Return the standard deviation of every code's Gaussian, ``(K,)``.

        The distance to the nearest lattice neighbour over ``rho`` (no gradient).
        """
        with torch.no_grad():
            dist = (self.codes[:, None] - self.codes[self.neighbours]).norm(dim=-1)
            return dist.masked_fill(~self.neighbour_mask, math.inf).amin(1) / self.rho

    def code_parents(self):
        """Return the global id of each code's parent, the nearest code of the next coarser map, ``(K,)``.

        -1 for the codes of the coarsest map.
        """
        with torch.no_grad():
            one_up = self.code_map[None, :] == self.code_map[:, None] + 1
            parent = torch.cdist(self.codes, self.codes).masked_fill(~one_up, math.inf).argmin(1)
            return torch.where(self.code_map == self.n_maps - 1, -1, parent)

    def nearest_codes(self, z, candidates=None):
        """Return the global id of the code of ``S_1`` nearest to each row of ``z`` ``(B, L)``, ``(B,)``.

        Among ``candidates`` (global ids), by default all of ``S_1``.
        """
        if candidates is None:
            candidates = torch.arange(self.offsets[1], device=z.device)
        with torch.no_grad():
            return candidates[torch.cdist(z, self.codes[candidates]).argmin(1)]

    def chain(self, z):
        """Return the discretisation chain ``mu_1 .. mu_M`` of ``z`` ``(B, L)`` as global code ids ``(B, M)``."""
        parent = self.code_parents()
        ids = [self.nearest_codes(z)]
        for _ in range(self.n_maps - 1):
            ids.append(parent[ids[-1]])
        return torch.stack(ids, 1)

    def encode(self, x):
        """Return the mean and variance of q(z_0 | x), each ``(B, L)``."""
        return split_normal(self.head(self.encoder(x)))

    def decode(self, z):
        """Decode latents ``(..., L)`` to outputs ``(..., D)`` (logits or means)."""
        return self.decoder(z.reshape(1, -1, self.latent_dim))[0].reshape(*z.shape[:-1], -1)

    # ---- loss -----------------------------------------------------------------------------
    def forward(self, x):
        """Return the per-sample loss terms of the batch ``x`` ``(B, D)``, a dict of ``(B,)`` tensors.

        The terms are described in the class docstring; ``must_link`` only in training mode with
        must-link pairs set.
        """
        n = x.shape[0]
        pairs = self.training and self.must_link is not None
        x_all = torch.cat([x, self._pair_rows(n, x)]) if pairs else x
        mean, var = self.encode(x_all)
        z0 = reparameterize(mean, var, self.training)
        ids = self.chain(z0)  # (B', M)
        terms = {}
        if pairs:
            # the chain's columns are finest first: the map at depth d is column M - d
            zp, idp = z0[n:].reshape(n, 2, -1), ids[n:, self.n_maps - self.must_link_depth].reshape(n, 2)
            lattice = (self.coords[idp[:, 0]] - self.coords[idp[:, 1]]).abs().sum(-1)
            terms["must_link"] = self.must_link_weight * lattice * (zp[:, 0] - zp[:, 1]).square().sum(-1)
            mean, var, z0, ids = mean[:n], var[:n], z0[:n], ids[:n]
        mu = self.codes[ids]  # (B, M, L)
        scale = self.code_scales()[ids][..., None]
        z = torch.cat([z0[:, None], reparameterize(mu, scale.square(), self.training)], 1)  # (B, M+1, L)
        neighbours = self.codes[self.neighbours[ids]]  # (B, M, 4, L)
        som = (mu.detach()[:, :, None] - neighbours).square().sum(-1) * self.neighbour_mask[ids]
        out = self.decode(z.transpose(0, 1))  # (M+1, B, D)
        terms.update({
            "rec": negative_log_likelihood(x, out, self.likelihood).sum(0),
            "hierarchy": (z[:, 1:] - z[:, :-1]).square().sum((1, 2)),
            "som": som.sum((1, 2)),
            "kl": kl_normal(mean, var),
        })
        return terms

    def finest_kernel(self, x, candidates):
        """Return the Student-t similarity ``(1 + ||mu_0 - c_j||^2)^-1``, ``(B, len(candidates))``.

        Of each sample to each candidate code (global ids) of ``S_1``; not normalised.
        """
        return 1.0 / (1.0 + torch.cdist(self.encode(x)[0], self.codes[candidates]).square())

    def generate(self, code_ids):
        """Draw one sample per entry of ``code_ids`` ``(n,)``, ``(n, D)``.

        ``z ~ N(c, sigma_c^2 I)``, decoded to the mean of ``p(x | z)``.
        """
        mu, scale = self.codes[code_ids], self.code_scales()[code_ids][:, None]
        return output_mean(self.decode(mu + scale * torch.randn_like(mu)), self.likelihood)


class HTVAE(BaseDeepClusterer):
    """Hierarchical topological VAE: a VAE with a prior of stacked self-organizing maps.

    The encoder gives ``q(z_0 | x) = N(mu_0, sigma_0^2 I)``; ``M`` self-organizing maps
    ``S_1`` (finest, ``K_1`` codes) ... ``S_M`` (coarsest, ``K_M < ... < K_1`` codes), each a
    2-D lattice of codes in the latent space with 4-neighbourhoods, discretise it along a
    chain: ``mu_1`` is the code of ``S_1`` nearest to ``z_0`` and ``mu_i`` the code of
    ``S_i`` nearest to ``mu_{i-1}``. So every code of ``S_i`` hangs under the nearest code of
    ``S_{i+1}``, which makes a tree: a virtual root, the codes of ``S_M``, ..., the codes of
    ``S_1`` (the leaves). In ``tree_`` the map ``S_i`` is at depth ``M - i + 1``: depth 1 is
    the coarsest map, depth ``M`` (``tree_.max_depth``) the finest. Each code is the mean of
    a Gaussian with standard deviation ``sigma = (1 / rho) * (distance to its nearest lattice
    neighbour)``; ``z_i ~ N(mu_i, sigma_i^2 I)`` by reparameterisation, and one shared
    decoder ``g`` reconstructs ``x`` from each of ``z_0 .. z_M``. The loss minimised (paper
    eqs. 6-9) is

    ``L = L_rec + L_hierarchy + L_top (+ KL)``, with
    ``L_rec = sum_{i=0}^{M} -log p(x | g(z_i))`` (squared error, up to constants, for the
    Gaussian likelihood), ``L_hierarchy = sum_{i=1}^{M} ||z_i - z_{i-1}||^2``,
    ``L_top = sum_{i=1}^{M} sum_{e in N(mu_i)} ||mu_i - e||^2`` over the lattice neighbours
    ``N(mu_i)``, and the VAE term ``KL(q(z_0 | x) || N(0, I))``, whose weight rises linearly
    from 0 to 1 over the first ``kl_anneal_epochs`` epochs (by default half of training).

    Must-link constraints (paper §III-D, eq. 10): for pairs ``(a, b)`` of training samples,
    ``must_link_weight * d(a, b) * ||z_a - z_b||^2``, with ``d`` the lattice (Manhattan)
    distance between the codes of ``a`` and ``b`` in the map at depth ``must_link_depth``
    (the finest by default): a pair already on one code costs nothing, a pair far apart on
    the map is pulled together hardest. A batch of ``batch_size`` pairs is drawn (uniformly,
    with replacement) alongside every data batch and encoded with it (one encoder pass; the
    pairs' rows are read from ``X``, a sparse ``X`` densified for those rows only), so pairs
    may join any two samples of ``X``.

    Choices the paper leaves open, as made here:

    - ``L_top`` stops the gradient at the selected code ``mu_i``: its lattice neighbours are
      drawn towards it (a Kohonen-style neighbourhood update), while ``mu_i`` itself is moved
      by ``L_hierarchy`` and ``L_rec``; unused codes next to used ones are thereby drawn into
      the data. With the code (not, as in SOM-VAE's loss, the encoding) as the neighbours'
      target, two adjacent codes can hold two different clusters: each settles between its
      own data and its neighbour instead of both going to the mean of the union.
    - A code's scale ``sigma`` is a function of the codes without gradient (the codes move
      through their means only); codes at the lattice border use their existing neighbours.
    - The chain is evaluated on ``z_0`` sampled during training and on ``mu_0`` at inference;
      parent links are recomputed from the current codes at every step.
    - The encoder keeps the VAE's KL to ``N(0, I)`` (term ``kl``, annealed): it fixes the
      scale of the latent space, which the other terms would otherwise shrink.
    - The must-link penalty is on the encodings ``z_0`` of the pair (the codes are not
      pulled together, which would fold the map); ``d`` has no gradient.
    - ``predict`` assigns the nearest *non-empty* finest code (codes that received no
      training sample are kept in the model but are not clusters); ``predict_proba`` is the
      Student-t kernel of SOM-VAE/DPSOM, ``q_j ∝ (1 + ||mu_0 - c_j||^2)^-1``, over those
      codes, whose argmax is ``predict``.
    - ``score_samples`` is minus the training loss without the must-link term, at the
      posterior means (``z_0 = mu_0``, ``z_i = mu_i``), KL weight 1 (nats plus squared
      latent distances, so not an ELBO).

    Parameters
    ----------
    map_shapes : sequence of (int, int), default=None
        Lattice shape ``(rows, cols)`` of each map, finest first, with strictly decreasing
        numbers of codes (at least 2 each), e.g. ``((8, 8), (4, 4), (2, 2))``. None builds a
        geometric stack of ``max_depth`` maps with ``max_leaves`` codes in the finest (see
        :func:`default_map_shapes`).
    max_depth : int, default=3
        Depth of ``tree_`` (a virtual root at depth 0, then one level per map), i.e. the
        number of maps ``M``, when ``map_shapes`` is None; ignored otherwise (the depth is
        then ``len(map_shapes)``). At least 1.
    max_leaves : int, default=64
        Codes of the finest map when ``map_shapes`` is None (ignored otherwise); the
        clusters (leaves of ``tree_``) are the finest codes that receive training samples.
    latent_dim : int, default=10
    hidden_dims : tuple of int, default=None
        Widths of the MLP encoder's layers after the input, the last one being the encoded
        width (also that of the ``"conv"`` encoder); the MLP decoder mirrors them. None means
        :data:`~sk_hierclust.nn.encoders.DEFAULT_HIDDEN_DIMS`, ``(512, 512, 256, 128)``.
    rho : float, default=8.0
        Codes' standard deviation is the distance to the nearest lattice neighbour over ``rho``.
    sigma_init : float, default=0.5
        Codes are initialised from ``N(0, sigma_init^2 I)``. The defaults of ``rho`` and
        ``sigma_init`` left the fewest empty codes among those tried on Fashion-MNIST (5,000
        images, 6 epochs, 64 codes: 56 non-empty); larger ``sigma_init`` leaves codes out of
        reach of the data, smaller ``rho`` fewer codes in use.
    must_link_depth : int, default=None
        Depth in ``tree_`` of the map whose lattice distance weighs the must-link penalty:
        1 (the coarsest map) .. ``M`` (the finest); None means the finest map (depth ``M``).
    must_link_weight : float, default=1.0
        Weight of the must-link penalty.
    n_epochs : int, default=20
        Training epochs.
    kl_anneal_epochs : int, default=None
        Epochs over which the weight of the ``kl`` term rises linearly from 0 to 1 (0: weight
        1 from the start); None means half of ``n_epochs`` (at least 1).
    encoder : {"auto", "mlp", "conv", "conv_pool"}, default="auto"
        ``"mlp"`` (``"auto"``): ``D -> 512 -> 512 -> 256 -> 128`` encoder by default (see
        ``hidden_dims``), decoder mirrored; ``"conv"``: convolutional, for images of
        ``input_shape`` (:func:`sk_hierclust.nn.encoders.make_encoder`); ``"conv_pool"``:
        the paper's architecture, 3x3 convolutions with 2x2 max-pooling (twice) and a
        decoder with bilinear upsampling and 3x3 convolutions (twice), for images of
        ``input_shape`` with height and width at least 4.
    input_shape : tuple of int (C, H, W), default=None
        Required for ``encoder="conv"``.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``p(x | z)``; ``"auto"`` picks Bernoulli when all of X is in [0, 1].
    batch_size : int, default=32
        Mini-batch size (and number of must-link pairs drawn per batch).
    lr : float, default=5e-4
        Adam learning rate.
    weight_decay : float, default=1e-5
    device : str or torch.device, default="cpu"
    verbose : int, default=0
    callbacks : list of skorch callbacks, default=None
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, batch order, pair draws, reparameterisation noise and
        :meth:`sample` (the global torch RNG is left untouched).

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the :class:`HTVAEModule`.
    map_shapes_ : tuple of (int, int)
        The maps used, finest first (``map_shapes_[M - d]`` is the map at depth ``d``).
    codes_ : list of ndarray
        Codes of each map, finest first, ``codes_[i]`` of shape ``(*map_shapes_[i], latent_dim)``.
    tree_ : ClusterTree
        Virtual root (depth 0), then the non-empty codes of ``S_M`` (depth 1), ..., then those
        of ``S_1`` (depth ``M``, the leaves), each map's codes in row-major lattice order;
        ``n_node_samples`` counts training samples.
    node_codes_ : ndarray of shape (``tree_.node_count``, 2)
        ``(depth, code)`` of each node of ``tree_``: its depth (``tree_.depth``; 1 = the
        coarsest map, ..., ``M`` = the finest) and the row-major index of its code in the
        lattice of that map; ``(0, -1)`` for the root.
    labels_ : ndarray of shape (n_samples,)
        Cluster (finest code) label of each training sample, consecutive from 0.
    history_ : list of dict
        One dict per epoch: ``train_loss``, each loss term, ``phase``, ``kl_weight``, ``dur`` (s).
    fit_time_ : float
    likelihood_, encoder_ : str
    input_shape_ : tuple or None
    n_features_in_ : int
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Defined only when X has string column names.

    References
    ----------
    .. [1] Fortuin, V., Hüser, M., Locatello, F., Strathmann, H., Rätsch, G. "SOM-VAE:
       Interpretable Discrete Representation Learning on Time Series". ICLR 2019.
    .. [2] Hierarchical topological VAE (HTVAE): stacked self-organizing maps as a VAE prior,
       with must-link constraints; eqs. 6-10 and 15 as summarised in issue 5 of this project.
    .. [3] Forest, F., Lebbah, M., Azzag, H., Lacaille, J. "Deep embedded self-organizing
       maps for joint representation learning and topology-preserving clustering".
       Neural Computing and Applications, 2021.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_hierclust.models.htvae import HTVAE
    >>> X, y = load_digits(return_X_y=True)
    >>> model = HTVAE(map_shapes=((4, 4), (2, 2)), n_epochs=2, random_state=0).fit(X / 16)
    >>> model.predict(X[:5] / 16).shape
    (5,)
    >>> model.tree_.max_depth  # the root, then one level per map
    2
    >>> model.predict_depth(X[:5] / 16, depth=1).shape  # codes of the 2 x 2 map
    (5,)
    """

    _parameter_constraints: dict = {
        **BaseDeepClusterer._parameter_constraints,
        "map_shapes": [list, tuple, None],
        "max_depth": [Interval(Integral, 1, None, closed="left")],
        "max_leaves": [Interval(Integral, 2, None, closed="left")],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "rho": [Interval(Real, 0, None, closed="neither")],
        "sigma_init": [Interval(Real, 0, None, closed="neither")],
        "must_link_depth": [Interval(Integral, 1, None, closed="left"), None],
        "must_link_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, map_shapes=None, max_depth=3, max_leaves=64, latent_dim=10, hidden_dims=None, rho=8.0,
                 sigma_init=0.5, must_link_depth=None, must_link_weight=1.0, n_epochs=20, kl_anneal_epochs=None,
                 encoder="auto", input_shape=None, likelihood="auto", batch_size=32, lr=5e-4, weight_decay=1e-5,
                 device="cpu", verbose=0, callbacks=None, random_state=None):
        self.map_shapes = map_shapes
        self.max_depth = max_depth
        self.max_leaves = max_leaves
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.rho = rho
        self.sigma_init = sigma_init
        self.must_link_depth = must_link_depth
        self.must_link_weight = must_link_weight
        self.n_epochs = n_epochs
        self.kl_anneal_epochs = kl_anneal_epochs
        self.encoder = encoder
        self.input_shape = input_shape
        self.likelihood = likelihood
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks
        self.random_state = random_state

    # ---- fitting ------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, must_link=None):
        """Train the VAE and its maps on ``X``, optionally with must-link constraints.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data: finite values, at least 2 samples; in [0, 1] for the Bernoulli
            likelihood. A CSR matrix is densified batch by batch.
        y : Ignored
        must_link : array-like of int, shape (n_pairs, 2), default=None
            Pairs of row indices of ``X`` that should share a cluster (paper eq. 10). Passed
            through a :class:`~sklearn.pipeline.Pipeline` as ``<step>__must_link=pairs``.

        Returns
        -------
        self : HTVAE

        Raises
        ------
        ValueError
            Invalid parameters (``map_shapes`` not strictly decreasing in codes, a map of one
            code, ``max_leaves`` too small for ``max_depth``, ``must_link_depth`` deeper than
            the number of maps), invalid data, ``must_link`` of the wrong shape, not integer
            or out of range, or a diverging loss (non-finite term).
        """
        return self._fit(X, must_link=must_link)

    def _check_params_vs_input(self, X, must_link=None):
        """Check the maps and the must-link depth and pairs; set ``map_shapes_``.

        Returns
        -------
        dict
            ``{"must_link": pairs}`` for :meth:`_train`: an ``(n_pairs, 2)`` int64 array, or None.
        """
        shapes = (default_map_shapes(self.max_leaves, self.max_depth) if self.map_shapes is None
                  else _check_map_shapes(self.map_shapes))
        if self.must_link_depth is not None and self.must_link_depth > len(shapes):
            raise ValueError(f"must_link_depth={self.must_link_depth} exceeds the depth of tree_, the number of "
                             f"maps ({len(shapes)}).")
        pairs = _check_must_link(must_link, X.shape[0])
        self.map_shapes_ = shapes
        return {"must_link": pairs}

    def _build_module(self, X):
        return HTVAEModule(X.shape[1], self.latent_dim, self.map_shapes_, self.likelihood_, self.encoder_,
                           self.input_shape_, None if self.hidden_dims is None else tuple(self.hidden_dims),
                           self.rho, self.sigma_init, self.must_link_depth, self.must_link_weight)

    def _train(self, net, X, seed, must_link=None):
        """Train one phase ``"train"`` of ``n_epochs``, with the must-link pairs (if any) drawn alongside every batch.

        The module drops its reference to ``X`` afterwards.
        """
        net.module_.set_must_link(must_link, X)
        try:
            super()._train(net, X, seed)
        finally:
            net.module_.set_must_link(None, None)

    def _tree_assignment(self, X):
        """Return the tree of the non-empty codes, each sample's node and each node's global code id.

        Nodes: the root (code id -1), then the codes that hold training samples, coarsest
        map first; a sample's node is its finest code. Sets ``codes_`` and ``node_codes_``.
        """
        module = self.net_.module_
        finest = self._infer(X, lambda m, x: m.nearest_codes(m.encode(x)[0]))
        with torch.no_grad():
            parent = module.code_parents().cpu().numpy()
            codes = module.codes.detach().cpu().numpy()
        code_map, offsets = module.code_map.cpu().numpy(), np.asarray(module.offsets)
        used = np.zeros(len(parent), dtype=bool)
        used[finest] = True
        for m in range(module.n_maps - 1):  # a code of map m + 1 is used if a code of map m under it is
            members = np.arange(offsets[m], offsets[m + 1])
            used[parent[members[used[members]]]] = True
        # nodes: the root, then the non-empty codes, coarsest map first, row-major within a map
        order = np.argsort(-code_map, kind="stable")
        nodes = order[used[order]]
        node_of = np.full(len(parent), -1)
        node_of[nodes] = np.arange(1, len(nodes) + 1)
        tree_parent = np.concatenate([[-1], np.where(parent[nodes] < 0, 0, node_of[parent[nodes]])])
        self.node_codes_ = np.stack([np.concatenate([[0], module.n_maps - code_map[nodes]]),
                                     np.concatenate([[-1], nodes - offsets[code_map[nodes]]])], 1)
        self.codes_ = [codes[offsets[m]:offsets[m + 1]].reshape(*shape, -1)
                       for m, shape in enumerate(self.map_shapes_)]
        return tree_parent, node_of[finest], np.concatenate([[-1], nodes])

    # ---- inference ----------------------------------------------------------------------
    def _leaf_proba_fn(self):
        """Student-t kernel of SOM-VAE, ``(1 + ||mu_0(x) - c_j||^2)^-1``, to the non-empty finest codes."""
        candidates = torch.as_tensor(self._module_node_[self.tree_.label_to_node], device=self.net_.device)
        return lambda module, x: module.finest_kernel(x, candidates)

    def predict_depth(self, X, depth=None):
        """Return the code of the map at ``depth`` in ``tree_`` on each sample's path.

        That is the ancestor at ``depth`` of the sample's finest code (the code itself for
        ``depth=M``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        depth : int, default=None
            Depth in ``tree_``: 1 (the coarsest map) .. ``M`` (the finest); None means ``M``.

        Returns
        -------
        ndarray of shape (n_samples,)
            Row-major index of the code in its lattice, ``0 .. rows * cols - 1`` of
            ``map_shapes_[M - depth]`` (``map_shapes_`` is finest first).

        Raises
        ------
        ValueError
            If ``depth`` is not None or an integer in ``1 .. M``.
        """
        check_is_fitted(self)
        n_maps = len(self.map_shapes_)
        if depth is None:
            depth = n_maps
        elif not isinstance(depth, Integral) or not 1 <= depth <= n_maps:
            raise ValueError(f"depth must be None or an integer in [1, {n_maps}]; got {depth!r}.")
        nodes = self.apply(X)
        for _ in range(n_maps - depth):
            nodes = self.tree_.parent[nodes]
        return self.node_codes_[nodes, 1]

    def transform(self, X):
        """Posterior mean ``mu_0`` of the encoder.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        X = self._validate_X(X)
        return self._infer(X, lambda m, x: m.encode(x)[0])

    def _generate(self, module, n_samples, module_node):
        """Draw from a code's Gaussian (paper §III-B2), ``(n_samples, n_features)``.

        ``z ~ N(c, sigma_c^2 I)`` for the code ``c`` (global id ``module_node``, any map),
        decoded to the mean of ``p(x | z)``. The root (``module_node`` None or -1) draws each
        sample's code among the non-empty finest codes in proportion to their training samples.
        """
        if module_node is None or module_node < 0:
            leaves = self.tree_.label_to_node
            weights = torch.as_tensor(self.tree_.n_node_samples[leaves], dtype=torch.float64)
            codes = torch.as_tensor(self._module_node_[leaves])[torch.multinomial(weights, n_samples, replacement=True)]
        else:
            codes = torch.full((n_samples,), int(module_node))
        return module.generate(codes.to(module.codes.device))
