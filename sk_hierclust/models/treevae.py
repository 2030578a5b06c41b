"""TreeVAE: a VAE whose latent variables form a binary tree grown during training.

Manduchi, Vandenhirtz, Ryser, Vogt, "Tree Variational Autoencoders", NeurIPS 2023.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._base import BaseDeepClusterer
from .._lazy import take_rows
from .._skorch import step_lr_scheduler
from ..nn.augment import RandomAffine
from ..nn.encoders import make_encoder, make_node_decoders
from ..nn.layers import (
    NodeLinear,
    NodeMLP,
    PairLayout,
    apply_to_pairs,
    cat_nodes,
    dense_block,
    put_nodes,
    take_nodes,
)
from ..nn.losses import (
    LOG_2PI,
    kl_bernoulli,
    kl_normal,
    negative_log_likelihood,
    nt_xent,
    output_mean,
    precision_weighted,
    reparameterize,
    split_normal,
)
from ..tree import ClusterTree

#: Hidden width of every node's own networks: the routers ``r_q,i``, ``r_p,i`` and the
#: transformations ``p(z_i | z_pa(i))`` (the authors' 128). The bottom-up features ``d_k``
#: have the encoder's output width (``encoder.out_features``), whatever this is.
NODE_HIDDEN = 128

#: Rows (data points times importance samples) of one pass of ``log_likelihood``.
LOG_LIKELIHOOD_ROWS = 4096

#: What ``schedule="authors"`` sets: the training recipe of Manduchi et al.'s public code
#: (``configs/mnist.yml``, ``train/train_tree.py``, ``utils/training_utils.py``).
AUTHORS_SCHEDULE = {
    "n_epochs_initial": 150,
    "n_epochs_grow": 150,
    "n_epochs_intermediate": 80,
    "intermediate_every": 3,
    "n_epochs": 200,
    "kl_start": 0.0,
    "kl_rate": 0.001,
    "lr_step_epochs": 100,
    "lr_step_gamma": 0.1,
    "effective_leaf_mass": 0.01,
    "kl_clamp": (-1.0, 1000.0),
    "split_decoders": "fresh",
    "n_split_init": 1,
}


def _log_normal(z, mean, var):
    """``log N(z; mean, diag var)`` in nats, summed over the last dimension."""
    return -0.5 * (LOG_2PI + var.log() + (z - mean).square() / var).sum(-1)


class _Plan:
    """Index tensors describing the live tree, depth by depth, for the vectorised pass.

    For the transition from depth ``k`` to ``k + 1``, ``levels[k]`` holds: ``int_pos``
    (positions of the internal nodes in the depth-``k`` node list), ``int_rows`` (their
    node ids), ``binary`` (1.0 for nodes with two live children, 0.0 for pass-through
    nodes), and per child at depth ``k + 1``: ``child_rows``, ``par`` (index of its parent
    in ``int_rows``), ``right`` (1.0 for the second child), ``only`` (1.0 for the only live
    child of a pass-through node). ``leaf_index`` locates each decoder slot's leaf in the
    concatenation of all depths' node lists.
    """

    def __init__(self, parent, alive, leaf_slots):
        kids = [[] for _ in parent]
        for node, par in enumerate(parent):
            if par >= 0:
                kids[par].append(node)
        live = [[c for c in ks if alive[c]] for ks in kids]
        depth_nodes, self.levels = [[0]], []
        while True:
            current = depth_nodes[-1]
            internal = [v for v in current if live[v]]
            if not internal:
                break
            level = {"int_pos": [current.index(v) for v in internal], "int_rows": internal,
                     "binary": [float(len(live[v]) == 2) for v in internal],
                     "child_rows": [], "par": [], "right": [], "only": []}
            for m, v in enumerate(internal):
                for c in live[v]:
                    level["child_rows"].append(c)
                    level["par"].append(m)
                    level["right"].append(float(kids[v].index(c) == 1))
                    level["only"].append(float(len(live[v]) == 1))
            depth_nodes.append(level["child_rows"])
            self.levels.append(level)
        flat = [v for nodes in depth_nodes for v in nodes]
        self.leaf_index = [flat.index(v) for v in leaf_slots]
        self._cache = {}

    def on(self, device):
        """Return the levels as tensors on ``device`` (cached)."""
        key = str(device)
        if key not in self._cache:
            as_t = {"binary": torch.float32, "right": torch.float32, "only": torch.float32}
            self._cache[key] = (
                [{k: torch.as_tensor(v, dtype=as_t.get(k, torch.long), device=device) for k, v in lv.items()}
                 for lv in self.levels],
                torch.as_tensor(self.leaf_index, dtype=torch.long, device=device),
            )
        return self._cache[key]


class _Split(nn.Module):
    """The parameters trained while a leaf grows two children (paper §2.5); the rest is frozen.

    ``n_candidates`` candidate sub-trees train side by side: candidate ``c`` owns rows
    ``2c`` (left child) and ``2c + 1`` (right child) of ``heads``, ``transform`` and
    ``decoders`` (``2 * n_candidates`` rows), and row ``c`` of the routers.
    """

    def __init__(self, leaf, d_width, latent_dim, decoders, n_candidates=1):
        super().__init__()
        self.leaf, self.n_candidates = leaf, n_candidates
        self.heads = NodeLinear(2 * n_candidates, d_width, 2 * latent_dim)
        self.transform = NodeMLP(2 * n_candidates, (latent_dim, NODE_HIDDEN, 2 * latent_dim))
        self.router_q = NodeMLP(n_candidates, (d_width, NODE_HIDDEN, NODE_HIDDEN, 1))
        self.router_p = NodeMLP(n_candidates, (latent_dim, NODE_HIDDEN, NODE_HIDDEN, 1))
        self.decoders = decoders

    def keep(self, candidate):
        """Keep only ``candidate``'s sub-tree (then ``n_candidates == 1``)."""
        children = [2 * candidate, 2 * candidate + 1]
        for name, rows in (("heads", children), ("transform", children), ("decoders", children),
                           ("router_q", [candidate]), ("router_p", [candidate])):
            setattr(self, name, take_nodes(getattr(self, name), rows))
        self.n_candidates = 1


class TreeVAEModule(nn.Module):
    """The TreeVAE network: shared encoder and bottom-up MLPs, node-stacked tree parameters.

    Node ``i`` owns row ``i`` of every node stack: ``heads`` (bottom-up ``mu_hat``,
    ``var_hat`` from ``d`` at its depth), ``transform`` (top-down ``p(z_i | z_pa(i))``),
    ``router_q`` (inference router on ``d``) and ``router_p`` (generative router on
    ``z_i``); a row is unused where it does not apply (the root's transformation, the
    leaves' routers). Leaf decoders live in a separate stack, one row per leaf in
    ``leaf_slots`` order, so the forward pass uses them without copying. All nodes of one
    depth are evaluated by batched matmuls (:mod:`sk_hierclust.nn.layers`).

    ``forward(x)`` returns the per-sample negative-ELBO terms ``rec``, ``kl_root``,
    ``kl_nodes``, ``kl_decisions`` (paper eqs. 12-20), each of shape ``(B,)``; during a
    growth phase (:meth:`start_split`) only the terms of the new sub-tree, conditional on
    the split leaf. In training mode with an ``augment`` function set (see
    :meth:`set_augmentation`), the batch is first replaced by augmented views of it, two
    per sample (``2B`` rows, all terms of shape ``(2B,)``) when ``contrastive_weight > 0``,
    which adds the term ``contrastive`` (paper §2.6, see :meth:`contrastive`).

    Parameters
    ----------
    n_features : int
    latent_dim : int
    max_depth : int
        Depth of the bottom-up ladder ``d_H = encoder(x)``, ``d_k = MLP_k(d_{k+1})``; every
        ``d_k`` has the encoder's output width ``encoder.out_features``.
    likelihood : {"bernoulli", "gaussian"}
    encoder : {"mlp", "conv", "conv_pool"}
    input_shape : tuple or None
    leaf_prob_threshold : float
        In training mode, each node's networks run only on the samples reaching the node with
        probability at least this (terms of the others dropped); the leaf decoders run on
        every sample (see :meth:`expected_nll`).
    hidden_dims : tuple of int, optional
        Widths of the MLP encoder (mirrored by the leaf decoders), passed to
        :func:`~sk_hierclust.nn.encoders.make_encoder`; the node networks' hidden width is
        :data:`NODE_HIDDEN`.
    contrastive_heads : bool, default=False
        Create the projection heads ``g_k`` of the contrastive loss on the bottom-up
        features, one per depth (``projections``, a node stack of ``max_depth + 1`` MLPs
        ``width -> NODE_HIDDEN -> latent_dim``), after all other parameters (so that the
        initialisation of the others does not depend on it).

    Attributes
    ----------
    contrastive_weight, contrastive_temperature : float
        Weight (0: no contrastive term) and temperature of :meth:`contrastive`.
    kl_clamp : tuple (low, high) or None
        In training mode, each node's probability-weighted KL ``P(i | x) KL_i`` (the root's
        included) is clamped to ``[low, high]`` per sample before the sum, as in the
        authors' code (``(-1, 1000)``); None: no clamping. Evaluation never clamps.
    """

    elbo_terms = ("rec", "kl_root", "kl_nodes", "kl_decisions", "contrastive")
    annealed_terms = ("kl_root", "kl_nodes", "kl_decisions")

    def __init__(self, n_features, latent_dim, max_depth, likelihood, encoder, input_shape=None,
                 leaf_prob_threshold=0.0, hidden_dims=None, contrastive_heads=False):
        super().__init__()
        self.latent_dim, self.likelihood = latent_dim, likelihood
        self.leaf_prob_threshold = leaf_prob_threshold
        self.encoder = make_encoder(encoder, n_features, input_shape, hidden_dims)
        self.d_width = width = self.encoder.out_features
        self.bottom_up = nn.ModuleList(nn.Sequential(*dense_block(width, width)) for _ in range(max_depth))
        self.heads = NodeLinear(3, width, 2 * latent_dim)
        self.transform = NodeMLP(3, (latent_dim, NODE_HIDDEN, 2 * latent_dim))
        self.router_q = NodeMLP(3, (width, NODE_HIDDEN, NODE_HIDDEN, 1))
        self.router_p = NodeMLP(3, (latent_dim, NODE_HIDDEN, NODE_HIDDEN, 1))
        self._decoder_args = (encoder, latent_dim, n_features, input_shape, hidden_dims)
        self.decoders = self._new_decoders(2)
        self.parent, self.alive, self.leaf_slots = [-1, 0, 0], [True] * 3, [1, 2]
        self.split = None
        self._plan = None
        self.contrastive_weight, self.contrastive_temperature, self.kl_clamp = 0.0, 0.5, None
        self.set_augmentation(None)
        self.projections = NodeMLP(max_depth + 1, (width, NODE_HIDDEN, latent_dim)) if contrastive_heads else None

    def set_augmentation(self, augment, generator=None):
        """Augment every training batch with ``augment(x, generator)`` (None: no augmentation).

        ``augment`` maps a ``(B, D)`` batch to a tensor of the same shape (e.g.
        :class:`~sk_hierclust.nn.augment.RandomAffine`); ``generator`` is the
        ``torch.Generator`` it draws from. Neither is a parameter of the module.
        """
        object.__setattr__(self, "augment", augment)  # a callable nn.Module would otherwise be registered
        object.__setattr__(self, "augment_generator", generator)

    def _training_views(self, x):
        """The batch the training pass sees: ``x``, one augmented view, or two (``2B`` rows); and if paired."""
        if not self.training or self.augment is None:
            return x, False
        paired = self.contrastive_weight > 0
        views = [self.augment(x, self.augment_generator) for _ in range(1 + paired)]
        for view in views:
            if not torch.is_tensor(view) or view.shape != x.shape:
                raise ValueError(f"augment must return a tensor of the batch's shape {tuple(x.shape)}, got "
                                 f"{tuple(view.shape) if torch.is_tensor(view) else type(view).__name__}.")
        return torch.cat(views).to(x.dtype) if paired else views[0].to(x.dtype), paired

    def _clamp_kl(self, kl):
        """``kl`` clamped to ``kl_clamp`` in training mode (the authors' per-node clamp), else unchanged."""
        return kl if self.kl_clamp is None or not self.training else kl.clamp(*self.kl_clamp)

    def contrastive(self, d, leaf_probs):
        r"""The contrastive term of a batch of two views (paper §2.6), per sample ``(2N,)``.

        Rows ``0..N-1`` and ``N..2N-1`` of the batch are two augmented views of the same ``N``
        samples. With NT-Xent :math:`\ell` (:func:`~sk_hierclust.nn.losses.nt_xent`, per
        anchor, temperature ``contrastive_temperature``):

        .. math::

            \text{contrastive}_i = \lambda\, \tfrac12 \Big(\ell_i\big(P(\cdot \mid x)\big)
            + \frac{1}{H + 1} \sum_{k=0}^{H} \ell_i\big(g_k(d_k)\big)\Big),

        ``lambda = contrastive_weight``, ``P(. | x)`` the vector of leaf probabilities of the
        inference routers (eq. 12) and ``g_k`` the projection heads of the bottom-up features
        ``d_k``. While a sub-tree grows, the bottom-up networks and the heads are frozen and
        ``P(. | x)`` is the new router's ``(P(left), P(right))``: the term is
        :math:`\lambda\, \ell_i(P)` alone.

        Parameters
        ----------
        d : list of Tensor (2N, width)
            Bottom-up features ``d_0 .. d_H``.
        leaf_probs : Tensor (..., n_leaves, 2N)
            Leading dimensions: independent problems (the candidate sub-trees of a growth
            phase), each with a term of shape ``(..., 2N)``.
        """
        n = leaf_probs.shape[-1] // 2
        probs = leaf_probs.transpose(-1, -2)
        loss = nt_xent(probs[..., :n, :], probs[..., n:, :], self.contrastive_temperature, reduction="none")
        if self.split is None and self.projections is not None:
            g = self.projections(torch.stack(d))
            loss = 0.5 * (loss + nt_xent(g[:, :n], g[:, n:], self.contrastive_temperature, reduction="none").mean(0))
        return self.contrastive_weight * loss

    # ---- structure ----------------------------------------------------------------------
    @property
    def plan(self):
        """The :class:`_Plan` of the live tree (rebuilt after a split or a pruning)."""
        if self._plan is None:
            self._plan = _Plan(self.parent, self.alive, self.leaf_slots)
        return self._plan

    def depth(self, node):
        """Depth of ``node`` (the root has depth 0)."""
        return 0 if node == 0 else 1 + self.depth(self.parent[node])

    def live_children(self, node):
        """Live children of ``node``, first (left) child first."""
        return [c for c in range(len(self.parent)) if self.parent[c] == node and self.alive[c]]

    def path(self, node):
        """Node ids from the root down to ``node``."""
        return [0] if node == 0 else self.path(self.parent[node]) + [node]

    def _new_decoders(self, n_leaves):
        """Freshly initialised decoders of ``n_leaves`` leaves, as one node stack."""
        kind, *args = self._decoder_args
        return make_node_decoders(kind, n_leaves, *args)

    def start_split(self, leaf, decoders="fresh", n_candidates=1):
        """Give ``leaf`` two children; until :meth:`commit_split`, only they and its routers train.

        ``decoders``: ``"fresh"`` gives the children newly initialised decoders (the authors'
        code); ``"copy"`` gives each a copy of ``leaf``'s decoder (weights and batch-norm
        statistics), which then specialise as the new router splits the subset.
        ``n_candidates`` independently initialised sub-trees train side by side (their
        terms averaged); :meth:`split_candidate_nelbo` scores them and
        :meth:`keep_split_candidate` keeps one.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        if decoders == "copy":
            new = take_nodes(self.decoders, [self.leaf_slots.index(leaf)] * (2 * n_candidates))
            new.requires_grad_(True)
        else:
            new = self._new_decoders(2 * n_candidates)
        self.split = _Split(leaf, self.d_width, self.latent_dim, new, n_candidates)
        self.split.to(next(self.decoders.parameters()).device)
        self.train(self.training)

    def split_candidate_nelbo(self, x):
        """Negative ELBO of every candidate sub-tree, conditional on the split leaf, ``(n_candidates, B)``.

        ``rec + KL_nodes + KL_decisions`` of the sub-tree (KL weight 1, no contrastive term).
        """
        terms = self._split_terms(x, self.bottom_up_features(x))
        return terms["rec"] + terms["kl_nodes"] + terms["kl_decisions"]

    def keep_split_candidate(self, candidate):
        """Keep only the growing sub-tree ``candidate`` (see :meth:`start_split`)."""
        self.split.keep(candidate)  # the copies keep the training mode of the rows they come from

    def commit_split(self):
        """Merge the trained sub-tree into the node stacks (a single candidate, see :meth:`keep_split_candidate`)."""
        s, n = self.split, len(self.parent)
        if s.n_candidates != 1:
            raise RuntimeError(f"{s.n_candidates} candidate sub-trees: keep one before committing the split.")
        self.split = None
        self.heads = cat_nodes(self.heads, s.heads)
        self.transform = cat_nodes(self.transform, s.transform)
        for name in ("router_q", "router_p"):
            put_nodes(getattr(self, name), [s.leaf], getattr(s, name))
            setattr(self, name, cat_nodes(getattr(self, name), take_nodes(getattr(s, name), [0, 0])))
        keep = [i for i, v in enumerate(self.leaf_slots) if v != s.leaf]
        self.decoders = cat_nodes(take_nodes(self.decoders, keep), s.decoders)
        self.leaf_slots = [self.leaf_slots[i] for i in keep] + [n, n + 1]
        self.parent += [s.leaf, s.leaf]
        self.alive += [True, True]
        self._plan = None
        for p in self.parameters():
            p.requires_grad_(True)

    def prune(self, node):
        """Remove the sub-tree under ``node`` (itself included); its parent becomes a pass-through node."""
        removed = {node}
        for v in range(node + 1, len(self.parent)):  # descendants come after their ancestors
            if self.parent[v] in removed:
                removed.add(v)
        keep = [i for i, v in enumerate(self.leaf_slots) if v not in removed]
        self.decoders = take_nodes(self.decoders, keep)
        self.leaf_slots = [self.leaf_slots[i] for i in keep]
        for v in removed:
            self.alive[v] = False
        self._plan = None

    def train(self, mode=True):
        """Set the training mode; while a sub-tree grows, the frozen parts stay in eval mode."""
        super().train(mode)
        if self.split is not None:  # frozen parts keep their batch-norm statistics
            for name, child in self.named_children():
                if name != "split":
                    child.train(False)
        return self

    # ---- passes -------------------------------------------------------------------------
    def bottom_up_features(self, x):
        """``[d_0, ..., d_H]``, each ``(B, encoder.out_features)``; ``d_H = encoder(x)``."""
        d = [self.encoder(x)]
        for layer in reversed(self.bottom_up):
            d.append(layer(d[-1]))
        return d[::-1]

    def _posterior(self, d, rows, z_parent=None, parent_probs=None, pairs=None):
        """q(z | .) of the nodes ``rows`` from ``d`` at their depth (and the parents' z), with p(z | z_pa).

        ``parent_probs`` ``(n, B)`` weight the transformations' batch-norm statistics.
        ``pairs`` (a :class:`~sk_hierclust.nn.layers.PairLayout`), if given: compute only its
        (node, sample) pairs (see :func:`~sk_hierclust.nn.layers.apply_to_pairs`). Returns
        ``mean_q, var_q, mean_p, var_p`` of shape ``(n, B, L)`` (prior parts None at the root).
        """
        mean_hat, var_hat = split_normal(apply_to_pairs(self.heads, d, rows, pairs))
        if z_parent is None:
            return mean_hat, var_hat, None, None
        mean_p, var_p = split_normal(apply_to_pairs(self.transform, z_parent, rows, pairs, parent_probs))
        return (*precision_weighted(mean_hat, var_hat, mean_p, var_p), mean_p, var_p)

    @staticmethod
    def _children_probs(q, level):
        """P(child | parent) for the children of one depth from the right-probabilities ``q``."""
        right = q[level["par"]]
        step = level["right"][:, None] * right + (1 - level["right"][:, None]) * (1 - right)
        return level["only"][:, None] + (1 - level["only"][:, None]) * step

    def leaf_probabilities(self, x):
        """P(leaf | x) from the inference routers, ``(n_leaves, B)`` in ``leaf_slots`` order (eq. 12)."""
        d = self.bottom_up_features(x)
        levels, leaf_index = self.plan.on(x.device)
        probs = [x.new_ones(1, x.shape[0])]
        for k, level in enumerate(levels):
            q = torch.sigmoid(self.router_q(d[k], level["int_rows"])).squeeze(-1)
            probs.append(probs[-1][level["int_pos"]][level["par"]] * self._children_probs(q, level))
        return torch.cat(probs)[leaf_index]

    def root_mean(self, x):
        """Posterior mean of the root's latent ``(B, L)``."""
        return split_normal(self.heads(self.bottom_up_features(x)[0], torch.zeros(1, dtype=torch.long,
                                                                                  device=x.device)))[0][0]

    def forward(self, x):
        """Per-sample negative-ELBO terms of ``x`` ``(B, D)``: a dict of ``(B,)`` tensors (eqs. 12-20).

        With augmentation in training (see :meth:`set_augmentation`), the terms of the
        augmented batch, ``(2B,)`` with two views and the ``contrastive`` term.
        """
        x, paired = self._training_views(x)
        d = self.bottom_up_features(x)
        if self.split is not None:
            return self._split_forward(x, d, paired)
        levels, leaf_index = self.plan.on(x.device)
        mean, var, _, _ = self._posterior(d[0], torch.zeros(1, dtype=torch.long, device=x.device))
        z, prob = reparameterize(mean, var, self.training), x.new_ones(1, x.shape[0])
        terms = {"kl_root": self._clamp_kl(kl_normal(mean, var)[0]), "kl_nodes": 0.0, "kl_decisions": 0.0}
        zs, probs = [z], [prob]
        # in training, a node's networks run only on the samples reaching it with probability
        # >= leaf_prob_threshold (the terms of the others weigh less than that and are dropped)
        sparse = self.training and self.leaf_prob_threshold > 0
        for k, level in enumerate(levels):
            z_int, p_int = z[level["int_pos"]], prob[level["int_pos"]]
            pairs = PairLayout(p_int >= self.leaf_prob_threshold) if sparse else None
            # batch-norm statistics of a node's networks: the samples that reach the node
            q = torch.sigmoid(apply_to_pairs(self.router_q, d[k], level["int_rows"], pairs, p_int)).squeeze(-1)
            p = torch.sigmoid(apply_to_pairs(self.router_p, z_int, level["int_rows"], pairs, p_int)).squeeze(-1)
            kl = level["binary"][:, None] * p_int * kl_bernoulli(q, p)
            terms["kl_decisions"] = terms["kl_decisions"] + (kl if pairs is None else kl * pairs.mask).sum(0)
            prob = p_int[level["par"]] * self._children_probs(q, level)
            pairs = PairLayout(prob >= self.leaf_prob_threshold) if sparse else None
            mean_q, var_q, mean_p, var_p = self._posterior(d[k + 1], level["child_rows"], z_int[level["par"]],
                                                           p_int[level["par"]], pairs)
            z = reparameterize(mean_q, var_q, self.training)
            kl = prob * kl_normal(mean_q, var_q, mean_p, var_p)
            kl = self._clamp_kl(kl if pairs is None else kl * pairs.mask)
            terms["kl_nodes"] = terms["kl_nodes"] + kl.sum(0)
            zs.append(z)
            probs.append(prob)
        terms["rec"] = self.expected_nll(x, torch.cat(zs)[leaf_index], torch.cat(probs)[leaf_index], self.decoders)
        if paired:
            terms["contrastive"] = self.contrastive(d, torch.cat(probs)[leaf_index])
        return terms

    def expected_nll(self, x, z, probs, decoders, n_groups=None):
        """Reconstruction term ``sum_leaves P(leaf | x) (-log p(x | z_leaf))`` (paper eq. 14), ``(B,)``.

        ``z`` is ``(n_leaves, B, L)``, ``probs`` ``(n_leaves, B)``, ``decoders`` their node stack.
        With ``n_groups``, the sums over ``n_groups`` consecutive groups of leaves of equal
        size instead (the candidate sub-trees of a growth phase), ``(n_groups, B)``.
        Every decoder runs on the whole batch, in one batched pass, in training too (as in the
        authors' code; ``leaf_prob_threshold`` applies to the node networks only), so a
        decoder's batch-norm statistics never depend on the routing (why: see
        ``TreeVAE``'s ``leaf_prob_threshold``).
        """
        groups, n = n_groups or 1, x.shape[0]
        rec = (probs * negative_log_likelihood(x, decoders(z), self.likelihood)).reshape(groups, -1, n).sum(1)
        return rec if n_groups else rec[0]

    def _path_latent(self, d, node):
        """Sample z at ``node`` from the posterior down its path (the mean in eval mode), ``(1, B, L)``."""
        z = None
        for k, v in enumerate(self.path(node)):
            rows = torch.full((1,), v, dtype=torch.long, device=d[0].device)
            mean, var, _, _ = self._posterior(d[k], rows, z)
            z = reparameterize(mean, var, self.training)
        return z

    def _split_forward(self, x, d, paired=False):
        """Terms of the growing sub-tree under ``split.leaf``, conditional on reaching it, ``(B,)`` each.

        With several candidate sub-trees, the mean of their terms: their parameters are
        disjoint, so each candidate trains on its own terms.
        """
        return {name: term.mean(0) for name, term in self._split_terms(x, d, paired).items()}

    def _split_terms(self, x, d, paired=False):
        """Terms of every candidate sub-tree under ``split.leaf``, ``(n_candidates, B)`` each."""
        s = self.split
        n_cand = s.n_candidates
        with torch.no_grad():
            k = self.depth(s.leaf)
            z_leaf = self._path_latent(d, s.leaf)
        q = torch.sigmoid(s.router_q(d[k])).squeeze(-1)
        p = torch.sigmoid(s.router_p(z_leaf.expand(n_cand, -1, -1))).squeeze(-1)
        probs = torch.stack([1 - q, q], 1).reshape(2 * n_cand, -1)  # candidate c: rows 2c (left), 2c + 1
        mean_hat, var_hat = split_normal(s.heads(d[k + 1]))
        mean_p, var_p = split_normal(s.transform(z_leaf.expand(2 * n_cand, -1, -1)))
        mean_q, var_q = precision_weighted(mean_hat, var_hat, mean_p, var_p)
        z = reparameterize(mean_q, var_q, self.training)
        kl = self._clamp_kl(probs * kl_normal(mean_q, var_q, mean_p, var_p))
        terms = {"rec": self.expected_nll(x, z, probs, s.decoders, n_groups=n_cand),
                 "kl_nodes": kl.reshape(n_cand, 2, -1).sum(1),
                 "kl_decisions": kl_bernoulli(q, p)}
        if paired:
            terms["contrastive"] = self.contrastive(d, probs.reshape(n_cand, 2, -1))
        return terms

    # ---- importance-weighted log-likelihood (paper §4, Table 2) ------------------------------
    def importance_log_weights(self, x, n_importance):
        """``log p(x, z, c) - log q(z, c | x)`` for ``n_importance`` draws per sample, ``(n_importance, B)``.

        The draws use torch's global RNG (see :meth:`log_weights`); call in eval mode.
        """
        n_levels, rows = len(self.plan.levels), n_importance * x.shape[0]
        u = torch.rand(rows, n_levels, dtype=x.dtype, device=x.device)
        eps = torch.randn(n_levels + 1, rows, self.latent_dim, dtype=x.dtype, device=x.device)
        d = [dk.repeat(n_importance, 1) for dk in self.bottom_up_features(x)]
        return self.log_weights(x.repeat(n_importance, 1), d, u, eps).view(n_importance, x.shape[0])

    def log_weights(self, x, d, u, eps):
        r"""Importance log-weights of one draw per row from the proposal ``q(z, c | x)``, ``(R,)``.

        The proposal is the inference model: a root-to-leaf path ``c`` drawn from the
        inference routers, at depth ``k`` right with probability ``q_i = r_q,i(d_k)`` (row
        ``r`` goes right when ``u[r, k] < q_i``; a pass-through node has one way), and every
        node's latent on the path, ``z_0 = mu_hat_0 + sigma_hat_0 eps_0`` and
        ``z_i = mu_q,i + sigma_q,i eps_k`` (eq. 6, given the parent's drawn ``z``). The weight is

        .. math::

            \log w = \log p(x \mid z_{\text{leaf}}) + \log p(z_0)
            + \sum_{i \in c \setminus 0} \log p(z_i \mid z_{pa(i)})
            + \sum_{i \in c \text{ binary}} \log p(c_i \mid z_i)
            - \log q(z_0 \mid x) - \sum_{i \in c \setminus 0} \log q(z_i \mid z_{pa(i)}, x)
            - \sum_{i \in c \text{ binary}} \log q(c_i \mid x),

        ``p(c_i | z_i)`` the generative router's probability of the direction taken. Call in
        eval mode (batch norms on running statistics).

        Parameters
        ----------
        x : Tensor (R, D)
        d : list of Tensor (R, width)
            The bottom-up features of ``x``.
        u : Tensor (R, n_levels)
            Uniform(0, 1) draws of the path (``n_levels = len(plan.levels)``).
        eps : Tensor (n_levels + 1, R, latent_dim)
            Standard normal draws of the latents, by depth.
        """
        n_rows, device = x.shape[0], x.device
        rows = torch.arange(n_rows, device=device)
        levels, _ = self.plan.on(device)
        mean, var, _, _ = self._posterior(d[0], torch.zeros(1, dtype=torch.long, device=device))
        mean, var = mean[0], var[0]
        z = mean + var.sqrt() * eps[0]
        log_w = _log_normal(z, torch.zeros_like(z), torch.ones_like(z)) - _log_normal(z, mean, var)
        node = torch.zeros(n_rows, dtype=torch.long, device=device)  # each row's node (its leaf once done)
        pos = torch.zeros(n_rows, dtype=torch.long, device=device)  # its position in the depth's node list
        done = torch.zeros(n_rows, dtype=torch.bool, device=device)  # reached a leaf
        n_nodes = 1
        for k, (level, lists) in enumerate(zip(levels, self.plan.levels)):
            n_internal = len(lists["int_rows"])
            internal = torch.full((n_nodes,), -1, dtype=torch.long, device=device)
            internal[level["int_pos"]] = torch.arange(n_internal, device=device)
            m = internal[pos]
            active = ~done & (m >= 0)
            done = ~active
            m = m.clamp_min(0)
            # the children of each internal node in the next depth's list: first (left) and last (right)
            first = torch.as_tensor([lists["par"].index(j) for j in range(n_internal)], device=device)
            last = torch.as_tensor([len(lists["par"]) - 1 - lists["par"][::-1].index(j) for j in range(n_internal)],
                                   device=device)
            logit_q = self.router_q(d[k], level["int_rows"]).squeeze(-1)[m, rows]
            logit_p = self.router_p(z, level["int_rows"]).squeeze(-1)[m, rows]
            binary = active & (level["binary"][m] > 0)
            go_right = u[:, k] < torch.sigmoid(logit_q)
            sign = torch.where(go_right, 1.0, -1.0).to(logit_q.dtype)
            log_w = log_w + torch.where(binary, F.logsigmoid(sign * logit_p) - F.logsigmoid(sign * logit_q), 0.0)
            child = torch.where(binary & go_right, last[m], first[m])
            mean_hat, var_hat = split_normal(self.heads(d[k + 1], level["child_rows"])[child, rows])
            mean_p, var_p = split_normal(self.transform(z, level["child_rows"])[child, rows])
            mean_q, var_q = precision_weighted(mean_hat, var_hat, mean_p, var_p)
            z_child = mean_q + var_q.sqrt() * eps[k + 1]
            log_w = log_w + torch.where(active, _log_normal(z_child, mean_p, var_p)
                                        - _log_normal(z_child, mean_q, var_q), 0.0)
            z = torch.where(active[:, None], z_child, z)
            node = torch.where(active, level["child_rows"][child], node)
            pos = torch.where(active, child, 0)
            n_nodes = len(lists["child_rows"])
        for j, leaf in enumerate(self.leaf_slots):
            sel = (node == leaf).nonzero().squeeze(1)
            if sel.numel():
                out = self.decoders(z[sel][None], slice(j, j + 1))[0]
                log_w = log_w.index_add(0, sel, -negative_log_likelihood(x[sel], out, self.likelihood))
        return log_w

    def generate(self, n_samples, node=0):
        """Draw ancestral samples ``(n_samples, D)`` (means of p(x | z)) from the generative model.

        The descent is forced through ``node`` and then follows the generative routers to a
        leaf (paper §5).
        """
        device = next(self.parameters()).device
        forced = self.path(node)[1:]
        kids = [self.live_children(v) for v in range(len(self.parent))]
        left = torch.as_tensor([ks[0] if ks else v for v, ks in enumerate(kids)], device=device)
        right = torch.as_tensor([ks[-1] if ks else v for v, ks in enumerate(kids)], device=device)
        is_leaf = left == torch.arange(len(kids), device=device)
        z = torch.randn(n_samples, self.latent_dim, device=device, dtype=next(self.parameters()).dtype)
        current = torch.zeros(n_samples, dtype=torch.long, device=device)
        step = 0
        while not is_leaf[current].all():
            if step < len(forced):
                nxt = torch.full_like(current, forced[step])
            else:
                go_right = torch.rand(n_samples, device=device) < torch.sigmoid(
                    self.router_p(z[:, None], current)).reshape(-1)
                nxt = torch.where(go_right, right[current], left[current])
            nxt = torch.where(is_leaf[current], current, nxt)
            mean_p, var_p = split_normal(self.transform(z[:, None], nxt))
            z = torch.where(is_leaf[current][:, None], z, reparameterize(mean_p[:, 0], var_p[:, 0], True))
            current, step = nxt, step + 1
        slots = torch.as_tensor([self.leaf_slots.index(v) for v in current.tolist()], device=device)
        out = self.decoders(z.expand(len(self.leaf_slots), -1, -1))[slots, torch.arange(n_samples, device=device)]
        return output_mean(out, self.likelihood)


class TreeVAE(BaseDeepClusterer):
    r"""Tree Variational Autoencoder: hierarchical clustering with a learned binary latent tree.

    A VAE whose latent variables form a binary tree (Manduchi et al., NeurIPS 2023). The root
    ``z_0 ~ N(0, I)``; every non-root node has ``p(z_i | z_pa(i)) = N(mu_p,i(z_pa), sigma^2_p,i(z_pa))``;
    every internal node a generative router ``r_p,i(z_i)`` (probability of going right); every
    leaf its own decoder ``p(x | z_leaf)``. Inference runs a deterministic bottom-up ladder
    ``d_H = encoder(x)``, ``d_k = MLP_k(d_{k+1})``; a node at depth ``k`` combines
    ``N(mu_hat(d_k), sigma_hat^2(d_k))`` with its top-down prior by precision weighting
    (eq. 6) and inference routers ``r_q,i(d_k)`` give the path probabilities
    ``P(node | x)`` (eq. 12). The negative ELBO minimised is
    ``rec + alpha (KL_root + KL_nodes + KL_decisions)`` (eqs. 12-20), ``alpha`` rising from 0
    to 1 in every training phase (see *Training schedule*), plus the ``contrastive`` term
    with augmentation (see *Contrastive learning*).

    Training grows the tree (paper §2.5): train a root with two leaves for
    ``n_epochs_initial`` epochs; then repeatedly pick, among the leaves whose sample subset
    ``{x : P(leaf | x) >= min(1 / n_leaves, 0.5)}`` holds at least ``batch_size`` samples
    and whose depth is below ``max_depth``, the one with the most samples, give it two children and
    train only that sub-tree on that subset for ``n_epochs_grow`` epochs, the rest frozen,
    until ``max_leaves``; after every ``intermediate_every`` splits, the whole tree trains for
    ``n_epochs_intermediate`` epochs (phase ``"intermediate"``; 0 epochs by default) before
    the next split; then prune the sub-trees holding less than ``prune_threshold`` of
    the training samples (their parent becomes a pass-through node) and fine-tune the whole
    tree for ``n_epochs`` epochs. All nodes of one depth are evaluated together by batched
    matmuls, so an epoch's cost grows far slower than the number of leaves.

    ``predict_proba`` is ``P(leaf | x)`` from the inference routers (eq. 12), renormalised
    over the labelled (non-empty) leaves; ``labels_`` and ``tree_.n_node_samples`` place
    each training sample at its most probable leaf; ``score_samples`` is the ELBO (nats);
    ``log_likelihood`` the importance-weighted estimate of ``log p(x)`` (paper Table 2);
    ``sample(node=...)`` descends the generative model through ``node`` (paper §5).

    **Training schedule.** Every phase (``"initial"``, ``"grow:<leaf>"``,
    ``"intermediate"``, ``"finetune"``) starts a fresh Adam (``lr``, ``weight_decay``) and
    restarts its KL weight and learning-rate schedules:

    - KL weight: with ``kl_rate=None``, a linear ramp from 0 to 1 over the first
      ``kl_anneal_epochs`` epochs (None: half of the phase), updated every batch, then 1.
      With ``kl_rate`` set, a per-epoch step as in the authors' code: in the ``e``-th epoch
      (from 0) of the initial, growth and intermediate phases
      :math:`\alpha_e = \min(1, \alpha_0 + e\, r)`, ``alpha_0 = kl_start``,
      ``r = kl_rate``, and in the fine-tuning the same with
      :math:`r = \max(0.01, 1 / \max(1, n_{epochs} - 1))` (see
      :class:`~sk_hierclust._skorch.KLAnnealing`).
    - Learning rate: constant ``lr``, or with ``lr_step_epochs`` set a step decay
      :math:`\eta_e = \eta\, \gamma^{\lfloor e / s \rfloor}`, ``s = lr_step_epochs``,
      ``gamma = lr_step_gamma`` (skorch's ``LRScheduler`` with torch's ``StepLR``).

    ``schedule="cpu"`` (the default) uses these parameters as given: short phases for
    small data on a CPU. ``schedule="authors"`` is the recipe of the authors' public code
    (``configs/mnist.yml``, meant for a GPU: about 1,100 epochs for 10 leaves) and
    overrides the parameters above with :data:`AUTHORS_SCHEDULE`: ``n_epochs_initial=150``,
    ``n_epochs_grow=150``, ``n_epochs_intermediate=80``, ``intermediate_every=3``,
    ``n_epochs=200``, ``kl_start=0``, ``kl_rate=0.001`` (so alpha is at most 0.149 in a
    150-epoch growth phase, 0.15 after it; 0.01 per epoch in the fine-tuning, reaching 1 in
    its epoch 100 from 0), ``lr_step_epochs=100``, ``lr_step_gamma=0.1``; and two rules of
    their code: growth stops at ``max_leaves`` *effective* leaves, those holding at least
    1 % of the probability mass ``sum_x P(leaf | x)`` (and a leaf's sample subset uses
    ``min(1 / n_effective, 0.5)``), and each node's probability-weighted KL is clamped to
    ``[-1, 1000]`` per sample in training; new leaves get fresh decoders
    (``split_decoders="fresh"``). ``lr=1e-3``, ``weight_decay=1e-5``,
    ``batch_size=256``, ``latent_dim=8`` and ``max_depth=6`` are theirs too, as the
    defaults, and are kept as given. ``schedule_`` records what a fit used; ``history_`` the
    ``kl_weight`` and ``lr`` of every epoch.

    **Contrastive learning** (paper §2.6). With ``augment`` (``"affine"`` for images, or
    a function) every training batch of ``N`` samples becomes ``2N``: two augmented views
    of each sample (one view, ``N``, when ``contrastive_weight == 0``: augmentation alone).
    The negative ELBO of both views gets the term
    ``contrastive_weight * (NT-Xent(P(. | x)) + mean_k NT-Xent(g_k(d_k))) / 2``: SimCLR's
    NT-Xent (:func:`~sk_hierclust.nn.losses.nt_xent`, temperature
    ``contrastive_temperature``) between the two views' leaf-probability vectors of the
    inference routers and between projection heads ``g_k`` (one small MLP per depth) of
    their bottom-up features ``d_k``; in a growth phase, where the bottom-up networks are
    frozen, the new router's probabilities alone (see :meth:`TreeVAEModule.contrastive`). The
    term is not annealed and is recorded as ``contrastive`` in ``history_`` (weighted). The
    paper weighs it by 100 on real-world images (CIFAR-10, CIFAR-100, CelebA); the authors'
    code puts InfoNCE on each router's ``(P(left), P(right))`` weighted by the probability
    of reaching it, which differs from the leaf-probability vectors here.

    Choices the paper leaves open, as made here:

    - A growth phase trains the new sub-tree on its subset conditionally on reaching the
      split leaf (its losses are not weighted by ``P(leaf | x)``). The two new leaves get
      freshly initialised decoders, as in the authors' code (``split_decoders="fresh"``);
      ``"copy"`` starts them from copies of the split leaf's decoder. On 10,000 MNIST
      training images (conv, 10/5/10 epochs, seed 0) copies raised the test ELBO from -173.0
      to -134.8 nats and the test DP / LP from 0.200 / 0.384 to 0.355 / 0.580; on all 60,000
      (30/15/30 epochs, seed 0) they gave the same ELBO (-99.3 against -99.1) but a test DP /
      LP of 0.270 / 0.328, against 0.528 / 0.605 with fresh decoders in the same comparison.
    - A split's router, trained from one random initialisation, can settle where it cuts a
      leaf's samples along their style instead of their classes. Four initialisations of one
      split on digits (seed 2, a leaf of 3s and 9s, in a prototype that retrained the split
      four times) reached negative ELBOs of 24.13, 23.70, 24.21 and 24.23 nats, and only the
      lowest separated the two digits. ``n_split_init`` keeps the best of several
      initialisations, but over whole fits it did not help reliably: on digits (the command
      line's settings, 8 seeds, training set) DP 0.714 ± 0.051 against 0.699 ± 0.051 with 20/10/15 epochs and
      0.740 ± 0.032 against 0.738 ± 0.029 with 40/20/30 (``n_split_init=4`` against 1);
      on 10,000 MNIST training images (conv, 10/5/10 epochs) the test DP / LP went from
      0.200 / 0.384 to 0.172 / 0.266 and the test ELBO from -173.0 to -183.5 for seed 0, but
      from 0.152 / 0.238 to 0.189 / 0.345 and from -180.1 to -170.5 for seed 1. So the
      default is 1, the authors' procedure.
    - Batch normalisation inside a node's networks (routers, transformations) uses batch
      statistics weighted by the probability that each sample reaches the node. A node
      trained on its leaf's subset while growing then sees the same population when the
      whole tree is fine-tuned; with plain batch statistics the deep routers are scrambled
      at the start of fine-tuning and leaves collapse.
    - During training each node's routers and posterior networks run only on the samples
      that reach the node with probability at least ``leaf_prob_threshold`` (see that
      parameter); the leaf decoders run on every sample, as in the authors' code.
    - The bottom-up heads (``mu_hat``, ``sigma_hat^2``) are per node; the bottom-up MLPs
      ``d_k`` (one dense block each, of the encoder's output width) are shared by all nodes
      of a depth and stay frozen while a sub-tree grows. The node networks have hidden width
      :data:`NODE_HIDDEN` (128).
    - The Gaussian likelihood has unit variance.

    Parameters
    ----------
    max_leaves : int, default=10
        Maximum number of leaves (clusters), >= 2.
    max_depth : int, default=6
        Maximum depth of a leaf, i.e. of ``tree_`` (the root has depth 0), >= 1.
    latent_dim : int, default=8
        Size of each node's latent variable.
    encoder : {"auto", "mlp", "conv", "conv_pool"}, default="auto"
        ``"mlp"`` (``"auto"``): ``D -> hidden_dims`` encoder, leaf decoders mirrored.
        ``"conv"``: convolutional encoder and leaf decoders for images of ``input_shape``
        (see :func:`sk_hierclust.nn.encoders.make_encoder`). ``"conv_pool"``: the HTVAE
        paper's architecture (3x3 convolutions with 2x2 max-pooling; leaf decoders with
        bilinear upsampling, packed like ``"conv"``), for ``input_shape`` with height and
        width at least 4.
    hidden_dims : tuple of int, default=None
        Widths of the MLP encoder's layers after the input (the last one is the width of the
        bottom-up features ``d_k``; also the output width of ``"conv"``); None means
        :data:`~sk_hierclust.nn.encoders.DEFAULT_HIDDEN_DIMS`, ``(512, 512, 256, 128)``.
    input_shape : tuple of int (C, H, W), default=None
        Image shape of a flattened sample; required for ``encoder="conv"``.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``p(x | z)``: Bernoulli (binary cross-entropy, X in [0, 1]) or Gaussian with unit
        variance; ``"auto"`` picks Bernoulli when all of X is in [0, 1].
    n_epochs_initial : int, default=20
        Epochs of the first phase (root and two leaves), >= 1.
    n_epochs_grow : int, default=20
        Epochs of each growth phase; 0 means no growth (the tree keeps two leaves).
    n_epochs : int, default=20
        Epochs of the final fine-tuning of the whole tree; 0 means none.
    n_epochs_intermediate : int, default=0
        Epochs of the whole tree's training after every ``intermediate_every`` splits
        (phase ``"intermediate"``; the authors' 80); 0 means none.
    intermediate_every : int, default=3
        Number of splits between two intermediate phases, >= 1.
    kl_anneal_epochs : int, default=None
        Epochs over which the KL weight rises linearly from 0 to 1 in each phase (updated
        every batch); None means half of the phase. Used when ``kl_rate`` is None.
    kl_start : float, default=0.0
        KL weight of the first epoch of each phase when ``kl_rate`` is set, in [0, 1].
    kl_rate : float, default=None
        Per-epoch increase of the KL weight in the initial, growth and intermediate phases
        (the authors' ``decay_kl``, 0.001): ``alpha_e = min(1, kl_start + e * kl_rate)`` in
        a phase's ``e``-th epoch (from 0); the fine-tuning then rises by
        ``max(0.01, 1 / max(1, n_epochs - 1))`` per epoch. None: the linear ramp over
        ``kl_anneal_epochs``.
    leaf_prob_threshold : float, default=1e-3
        During training, each node's routers and posterior networks run only on the samples
        with ``P(node | x)`` at least this (their batch-norm statistics are those samples');
        the terms dropped weigh less than the threshold each. The leaf decoders decode every
        sample (a sample below a leaf's threshold with the placeholder latent of the skipped
        posterior, weighted by its probability): decoding only the samples above the threshold
        made the decoders' batch-norm statistics follow the routing, and on MNIST one of the
        root's two leaves emptied. 0 gives the exact ELBO (every node computes every sample).
        ``score`` and ``score_samples`` always use the exact ELBO.
    prune_threshold : float, default=0.01
        Leaves holding less than this fraction of the training samples are pruned before
        fine-tuning.
    batch_size : int, default=256
        Mini-batch size; also the minimum sample subset of a leaf that may grow.
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-5
        Adam weight decay.
    lr_step_epochs : int, default=None
        Multiply the learning rate by ``lr_step_gamma`` every ``lr_step_epochs`` epochs of a
        phase (restarted at every phase; the authors' 100). None: constant.
    lr_step_gamma : float, default=0.1
        Factor of each learning-rate step, in (0, 1].
    split_decoders : {"fresh", "copy"}, default="fresh"
        Decoders of the two leaves a growth phase adds: newly initialised ones as in the
        authors' code, or copies of the split leaf's decoder (weights and batch-norm
        statistics); see the choices above.
    n_split_init : int, default=1
        Number of initialisations of every split, >= 1: that many candidate sub-trees train
        side by side (one batched pass, their terms averaged) in each growth phase, and the
        one with the lowest negative ELBO on the split leaf's subset (eval mode, KL weight
        1, no contrastive term) is kept, like ``n_init`` of
        :class:`~sklearn.mixture.GaussianMixture`. A growth phase then costs up to
        ``n_split_init`` times more. See the choices above.
    schedule : {"cpu", "authors"}, default="cpu"
        ``"cpu"``: the epoch, KL and learning-rate parameters as given. ``"authors"``: the
        authors' full recipe, overriding them (see *Training schedule* above for exactly
        what it sets); meant for a GPU.
    augment : {None, "affine"} or callable, default=None
        Data augmentation of the training batches (see *Contrastive learning*). ``"affine"``:
        per sample a random rotation in ±15°, translation in ±10 % and zoom in 0.9-1.1 of
        the images of ``input_shape`` (needs ``input_shape=(C, H, W)``;
        :class:`~sk_hierclust.nn.augment.RandomAffine`). A callable
        ``augment(X_batch, generator) -> Tensor`` gets a ``(B, n_features)`` tensor and a
        CPU ``torch.Generator`` (seeded by ``random_state``) and returns a tensor of the same
        shape. Inference never augments.
    contrastive_weight : float, default=0.0
        Weight of the contrastive term, >= 0; > 0 needs ``augment``. The paper uses 100 on
        real-world images.
    contrastive_temperature : float, default=0.5
        Temperature of NT-Xent, > 0.
    device : str or torch.device, default="cpu"
        Where to train and infer (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).
    verbose : int, default=0
        >= 1 prints skorch's epoch table and a progress bar.
    callbacks : list of skorch callbacks, default=None
        Extra callbacks passed to the skorch ``NeuralNet`` (instances or ``(name, callback)``).
    random_state : int, RandomState instance or None, default=None
        Seeds parameter initialisation, batch order and reparameterisation noise (the global
        torch RNG is left untouched). An int gives identical refits on CPU.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the :class:`TreeVAEModule`.
    tree_ : ClusterTree
        The learned tree (the live nodes of the module, in creation order);
        ``n_node_samples`` counts training samples by their most probable leaf.
    labels_ : ndarray of shape (n_samples,)
        Cluster (leaf) label of each training sample, consecutive from 0.
    history_ : list of dict
        One dict per epoch: ``phase`` (``"initial"``, ``"grow:<node>"`` with the module's id
        of the split leaf, ``"intermediate"``, ``"finetune"``), ``train_loss`` and each ELBO
        term (nats per sample; a growth phase has no ``kl_root``; ``contrastive`` with
        ``contrastive_weight > 0``), ``kl_weight`` (of the epoch's last batch), ``lr``,
        ``dur`` (s). With ``n_split_init > 1``, a growth phase's terms are the means over its
        candidate sub-trees, and its last epoch has ``split_candidates_nelbo`` (each
        candidate's mean negative ELBO on the subset, nats) and ``split_kept`` (the index
        of the one kept).
    schedule_ : dict
        The training schedule of the fit: the epoch, KL and learning-rate parameters,
        ``split_decoders`` and ``n_split_init`` as used (``schedule="authors"``'s values when
        set), ``kl_rate_finetune``, ``effective_leaf_mass`` (None: growth counts all leaves)
        and ``kl_clamp``.
    fit_time_ : float
        Seconds spent in ``fit``.
    likelihood_, encoder_ : str
        The resolved choices.
    input_shape_ : tuple of int or None
        ``input_shape`` as a tuple.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Defined only when X has string column names.

    References
    ----------
    .. [1] Manduchi, L., Vandenhirtz, M., Ryser, A., Vogt, J. "Tree Variational Autoencoders".
       NeurIPS 2023.
    .. [2] Sønderby, C. K. et al. "Ladder Variational Autoencoders". NeurIPS 2016.
    .. [3] Chen, T., Kornblith, S., Norouzi, M., Hinton, G. "A Simple Framework for
       Contrastive Learning of Visual Representations" (SimCLR). ICML 2020.
    .. [4] Burda, Y., Grosse, R., Salakhutdinov, R. "Importance Weighted Autoencoders".
       ICLR 2016.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_hierclust import TreeVAE
    >>> X, y = load_digits(return_X_y=True)
    >>> model = TreeVAE(max_leaves=4, n_epochs_initial=2, n_epochs_grow=2, n_epochs=2,
    ...                 random_state=0).fit(X / 16)
    >>> model.predict(X[:5] / 16).shape
    (5,)
    """

    _parameter_constraints: dict = {
        **BaseDeepClusterer._parameter_constraints,
        "max_leaves": [Interval(Integral, 2, None, closed="left")],
        "max_depth": [Interval(Integral, 1, None, closed="left")],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "n_epochs_initial": [Interval(Integral, 1, None, closed="left")],
        "n_epochs_grow": [Interval(Integral, 0, None, closed="left")],
        # the fine-tuning may be skipped (0), as the growth phases may
        "leaf_prob_threshold": [Interval(Real, 0, 1, closed="left")],
        "prune_threshold": [Interval(Real, 0, 1, closed="left")],
        "n_epochs_intermediate": [Interval(Integral, 0, None, closed="left")],
        "intermediate_every": [Interval(Integral, 1, None, closed="left")],
        "kl_start": [Interval(Real, 0, 1, closed="both")],
        "kl_rate": [Interval(Real, 0, None, closed="neither"), None],
        "lr_step_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "lr_step_gamma": [Interval(Real, 0, 1, closed="right")],
        "split_decoders": [StrOptions({"copy", "fresh"})],
        "n_split_init": [Interval(Integral, 1, None, closed="left")],
        "schedule": [StrOptions({"cpu", "authors"})],
        "augment": [None, StrOptions({"affine"}), callable],
        "contrastive_weight": [Interval(Real, 0, None, closed="left")],
        "contrastive_temperature": [Interval(Real, 0, None, closed="neither")],
    }

    _epoch_params = ("n_epochs_initial", "n_epochs_grow", "n_epochs")

    def __init__(self, *, max_leaves=10, max_depth=6, latent_dim=8, encoder="auto", hidden_dims=None,
                 input_shape=None, likelihood="auto", n_epochs_initial=20, n_epochs_grow=20, n_epochs=20,
                 n_epochs_intermediate=0, intermediate_every=3, kl_anneal_epochs=None, kl_start=0.0, kl_rate=None,
                 leaf_prob_threshold=1e-3, prune_threshold=0.01, batch_size=256, lr=1e-3, weight_decay=1e-5,
                 lr_step_epochs=None, lr_step_gamma=0.1, split_decoders="fresh", n_split_init=1, schedule="cpu",
                 augment=None, contrastive_weight=0.0, contrastive_temperature=0.5, device="cpu", verbose=0,
                 callbacks=None, random_state=None):
        self.max_leaves = max_leaves
        self.max_depth = max_depth
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.hidden_dims = hidden_dims
        self.input_shape = input_shape
        self.likelihood = likelihood
        self.n_epochs_initial = n_epochs_initial
        self.n_epochs_grow = n_epochs_grow
        self.n_epochs = n_epochs
        self.n_epochs_intermediate = n_epochs_intermediate
        self.intermediate_every = intermediate_every
        self.kl_anneal_epochs = kl_anneal_epochs
        self.kl_start = kl_start
        self.kl_rate = kl_rate
        self.leaf_prob_threshold = leaf_prob_threshold
        self.prune_threshold = prune_threshold
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_step_epochs = lr_step_epochs
        self.lr_step_gamma = lr_step_gamma
        self.split_decoders = split_decoders
        self.n_split_init = n_split_init
        self.schedule = schedule
        self.augment = augment
        self.contrastive_weight = contrastive_weight
        self.contrastive_temperature = contrastive_temperature
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks
        self.random_state = random_state

    # ---- fitting (steps of BaseDeepClusterer.fit) ------------------------------------------
    def _resolve_schedule(self):
        """The training schedule: the parameters, overridden by :data:`AUTHORS_SCHEDULE` for ``"authors"``."""
        schedule = {name: getattr(self, name) for name in (
            "n_epochs_initial", "n_epochs_grow", "n_epochs_intermediate", "intermediate_every", "n_epochs",
            "kl_anneal_epochs", "kl_start", "kl_rate", "lr_step_epochs", "lr_step_gamma", "split_decoders",
            "n_split_init")}
        schedule.update(effective_leaf_mass=None, kl_clamp=None)
        if self.schedule == "authors":
            schedule.update(AUTHORS_SCHEDULE)
        schedule["kl_rate_finetune"] = (None if schedule["kl_rate"] is None
                                        else max(0.01, 1.0 / max(1, schedule["n_epochs"] - 1)))
        return schedule

    def _check_params_vs_input(self, X):
        """Check ``augment`` against ``input_shape`` and ``contrastive_weight``; set ``schedule_``."""
        if isinstance(self.augment, str):  # "affine", the one name the constraints allow
            shape = self.input_shape_
            if shape is None or len(shape) != 3:
                raise ValueError(f"augment={self.augment!r} needs image input: input_shape=(channels, height, "
                                 f"width), got input_shape={self.input_shape!r}; or pass augment=None or a "
                                 "callable augment(X_batch, generator) -> Tensor.")
            if int(np.prod(shape)) != X.shape[1]:
                raise ValueError(f"input_shape={shape} has {int(np.prod(shape))} values but X has {X.shape[1]} "
                                 "features.")
        if self.contrastive_weight > 0 and self.augment is None:
            raise ValueError(f"contrastive_weight={self.contrastive_weight!r} needs augmented views: set augment "
                             "('affine' for images, or a callable augment(X_batch, generator) -> Tensor), or "
                             "contrastive_weight=0.")
        self.schedule_ = self._resolve_schedule()
        return {}

    def _model_callbacks(self, seed):
        """The learning-rate step decay, restarted at every phase, when ``lr_step_epochs`` is set."""
        schedule = self.schedule_
        if schedule["lr_step_epochs"] is None:
            return []
        return [("lr_step_decay", step_lr_scheduler(schedule["lr_step_epochs"], schedule["lr_step_gamma"]))]

    def _augmentation(self):
        """The training batches' augmentation function of ``augment`` (None: none)."""
        return RandomAffine(self.input_shape_) if isinstance(self.augment, str) else self.augment

    def _build_module(self, X):
        """Build the root-and-two-leaves :class:`TreeVAEModule`."""
        contrastive = self.augment is not None and self.contrastive_weight > 0
        module = TreeVAEModule(X.shape[1], self.latent_dim, self.max_depth, self.likelihood_, self.encoder_,
                               self.input_shape_, self.leaf_prob_threshold, self.hidden_dims,
                               contrastive_heads=contrastive)
        module.contrastive_weight = float(self.contrastive_weight) if contrastive else 0.0
        module.contrastive_temperature = float(self.contrastive_temperature)
        module.kl_clamp = self.schedule_["kl_clamp"]
        return module

    def _phase(self, net, X, phase, n_epochs, kl_rate):
        """Train one phase with the KL schedule of ``schedule_`` and the per-epoch rate ``kl_rate``."""
        net.set_params(kl_start=self.schedule_["kl_start"], kl_rate=kl_rate)
        self._run_phase(net, X, phase, n_epochs, self.schedule_["kl_anneal_epochs"])

    def _train(self, net, X, seed):
        """Train the initial tree, grow it (paper §2.5), prune it, then fine-tune the whole tree.

        Every ``intermediate_every`` splits, the whole tree trains for ``n_epochs_intermediate``
        epochs before the next split (not when the tree is already full).
        """
        module, schedule = net.module_, self.schedule_
        if self.augment is not None:
            module.set_augmentation(self._augmentation(), torch.Generator().manual_seed(seed + 1))
        self._phase(net, X, "initial", schedule["n_epochs_initial"], schedule["kl_rate"])
        n_splits = 0
        while schedule["n_epochs_grow"]:
            n_leaves, probs = self._growth_state(X)
            if n_leaves >= self.max_leaves:
                break
            if schedule["n_epochs_intermediate"] and n_splits and n_splits % schedule["intermediate_every"] == 0:
                self._phase(net, X, "intermediate", schedule["n_epochs_intermediate"], schedule["kl_rate"])
                n_leaves, probs = self._growth_state(X)
                if n_leaves >= self.max_leaves:
                    break
            leaf, subset = self._leaf_to_grow(X, probs, n_leaves)
            if leaf is None:
                break
            module.start_split(leaf, schedule["split_decoders"], schedule["n_split_init"])
            X_leaf = take_rows(X, subset)
            self._phase(net, X_leaf, f"grow:{leaf}", schedule["n_epochs_grow"], schedule["kl_rate"])
            if schedule["n_split_init"] > 1:
                self._keep_best_split(X_leaf)
            module.commit_split()
            n_splits += 1
        self._prune(X)
        self._phase(net, X, "finetune", schedule["n_epochs"], schedule["kl_rate_finetune"])

    def _keep_best_split(self, X_leaf):
        """Keep the candidate sub-tree with the lowest mean negative ELBO on ``X_leaf``; record them in ``history_``."""
        nelbo = self._infer(X_leaf, lambda m, x: m.split_candidate_nelbo(x).T, dtype=np.float64).mean(0)
        best = int(np.argmin(nelbo))
        self.net_.module_.keep_split_candidate(best)
        self.net_.history.record("split_candidates_nelbo", [float(v) for v in nelbo])
        self.net_.history.record("split_kept", best)

    def _growth_state(self, X):
        """``(n_leaves, probs)``: the leaves counting toward ``max_leaves`` and P(leaf | x) if computed (else None).

        All leaves count, unless ``schedule_["effective_leaf_mass"]`` is set: then only those
        holding at least that share of the probability mass ``sum_x P(leaf | x)``.
        """
        mass_share = self.schedule_["effective_leaf_mass"]
        if mass_share is None:
            return len(self.net_.module_.leaf_slots), None
        probs = self._slot_probabilities(X)
        mass = probs.sum(0)
        return int(np.sum(mass >= mass_share * mass.sum())), probs

    def _slot_probabilities(self, X):
        """P(leaf | x) for every leaf slot of the module, ``(n_samples, n_slots)``."""
        return self._infer(X, lambda m, x: m.leaf_probabilities(x).T, dtype=np.float64)

    def _leaf_to_grow(self, X, probs=None, n_leaves=None):
        """Return the leaf to split next and its sample subset (paper §2.5), or ``(None, None)``.

        The largest subset among the leaves shallower than ``max_depth`` whose subset holds at least
        ``batch_size`` samples (a leaf at ``max_depth`` is passed over, as in the authors' code).

        ``probs``: P(leaf | x) of ``X`` if already computed; ``n_leaves``: the number of leaves
        in the subset threshold ``min(1 / n_leaves, 0.5)`` (default: all of them).
        """
        module = self.net_.module_
        probs = self._slot_probabilities(X) if probs is None else probs
        threshold = min(1.0 / (probs.shape[1] if n_leaves is None else max(1, n_leaves)), 0.5)
        sizes = (probs >= threshold).sum(0)
        below_max_depth = np.array([module.depth(v) < self.max_depth for v in module.leaf_slots])
        candidates = np.flatnonzero((sizes >= self.batch_size) & below_max_depth)
        if candidates.size == 0:
            return None, None
        slot = candidates[np.argmax(sizes[candidates])]
        return module.leaf_slots[slot], np.flatnonzero(probs[:, slot] >= threshold)

    def _sample_leaves(self, X):
        """Return the module's node id of each sample's most probable leaf, ``(n_samples,)``."""
        return np.asarray(self.net_.module_.leaf_slots)[self._slot_probabilities(X).argmax(1)]

    def _prune(self, X):
        """Remove the sub-trees holding less than ``prune_threshold`` of the samples.

        Samples count at their most probable leaf; the smallest sub-tree goes first, while its
        parent keeps another child; at least two leaves remain.
        """
        module = self.net_.module_
        # over the module's nodes, removed ones included (they hold no sample)
        counts = ClusterTree.from_sample_nodes(module.parent, self._sample_leaves(X)).n_node_samples
        for node in np.argsort(counts, kind="stable"):
            if counts[node] >= self.prune_threshold * X.shape[0]:
                break
            if node == 0 or not module.alive[node] or len(module.live_children(module.parent[node])) < 2:
                continue
            n_removed = sum(node in module.path(v) for v in module.leaf_slots)
            if len(module.leaf_slots) - n_removed >= 2:
                module.prune(node)

    def _tree_assignment(self, X):
        """Return ``tree_``'s parent array, each sample's most probable leaf in it, its module node ids.

        The nodes of ``tree_`` are the live nodes of the module, renumbered in creation order.
        """
        module = self.net_.module_
        nodes = np.array([v for v in range(len(module.parent)) if module.alive[v]])
        tree_id = np.full(len(module.parent), -1)
        tree_id[nodes] = np.arange(nodes.size)
        parent = np.array([-1] + [tree_id[module.parent[v]] for v in nodes[1:]])
        return parent, tree_id[self._sample_leaves(X)], nodes

    # ---- inference ----------------------------------------------------------------------
    def log_likelihood(self, X, n_importance=1000):
        r"""Importance-weighted estimate of ``log p(x)`` in nats (paper §4, Table 2; Burda et al. 2016).

        .. math::

            \log p(x) \approx \log \frac{1}{K} \sum_{k=1}^{K}
            \frac{p(x, z^{(k)}, c^{(k)})}{q(z^{(k)}, c^{(k)} \mid x)},
            \qquad (z^{(k)}, c^{(k)}) \sim q(z_0, \dots, z_{leaf}, c \mid x),

        the proposal being the inference model: a root-to-leaf path ``c`` drawn from the
        inference routers and every node's latent on it from its posterior (eq. 6), see
        :meth:`TreeVAEModule.log_weights`. ``K = 1`` is an unbiased estimate of the ELBO of
        that ``q``; the estimate is a lower bound of ``log p(x)`` in expectation, tighter as ``K``
        grows (on MNIST the paper reports -92.9 against an ELBO of -96.8, 10 leaves). Seeded by
        ``random_state``; computed in float64 in passes of at most
        :data:`LOG_LIKELIHOOD_ROWS` (sample, draw) rows, so memory does not grow with ``K``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        n_importance : int, default=1000
            ``K``, importance samples per data point, >= 1.

        Returns
        -------
        ndarray of shape (n_samples,), float32

        Raises
        ------
        ValueError
            If ``n_importance < 1``.
        """
        X = self._validate_X(X)
        if isinstance(n_importance, bool) or not isinstance(n_importance, Integral) or n_importance < 1:
            raise ValueError(f"n_importance must be a positive integer (importance samples per data point), "
                             f"got {n_importance!r}.")
        n_importance = int(n_importance)

        def fn(module, x):
            per_pass = max(1, LOG_LIKELIHOOD_ROWS // x.shape[0])
            parts = [torch.logsumexp(module.importance_log_weights(x, min(per_pass, n_importance - start)), 0)
                     for start in range(0, n_importance, per_pass)]
            return torch.logsumexp(torch.stack(parts), 0) - math.log(n_importance)

        with self._seeded(self.net_.device):
            return self._infer(X, fn)

    def _leaf_proba_fn(self):
        """P(leaf | x) from the inference routers (paper eq. 12), for the labelled leaves only."""
        slots = self.net_.module_.leaf_slots
        columns = torch.as_tensor([slots.index(v) for v in self._module_node_[self.tree_.label_to_node]],
                                  device=self.net_.device)
        return lambda module, x: module.leaf_probabilities(x).T[:, columns]

    def transform(self, X):
        """Posterior mean of the root latent ``z_0`` (paper eq. 6 at the root: ``mu_hat(d_0)``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        X = self._validate_X(X)
        return self._infer(X, lambda m, x: m.root_mean(x))

    def _generate(self, module, n_samples, module_node):
        """Draw ancestral samples (paper §5): the leaf decoder's means, ``(n_samples, n_features)``.

        ``z_0 ~ N(0, I)``, then down the transformations, forced through ``module_node``
        (None: the root) and on by the generative routers to a leaf.
        """
        return module.generate(n_samples, 0 if module_node is None else int(module_node))
