"""TreeVAE: a VAE whose latent variables form a binary tree grown during training.

Manduchi, Vandenhirtz, Ryser, Vogt, "Tree Variational Autoencoders", NeurIPS 2023.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from torch import nn

from .._base import BaseDeepClusterer
from ..nn.encoders import make_encoder, make_node_decoders
from ..nn.layers import NodeLinear, NodeMLP, cat_nodes, dense_block, put_nodes, take_nodes
from ..nn.losses import (
    kl_bernoulli,
    kl_normal,
    negative_log_likelihood,
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
    """The parameters trained while a leaf grows two children (paper §2.5); the rest is frozen."""

    def __init__(self, leaf, d_width, latent_dim, decoders):
        super().__init__()
        self.leaf = leaf
        self.heads = NodeLinear(2, d_width, 2 * latent_dim)
        self.transform = NodeMLP(2, (latent_dim, NODE_HIDDEN, 2 * latent_dim))
        self.router_q = NodeMLP(1, (d_width, NODE_HIDDEN, NODE_HIDDEN, 1))
        self.router_p = NodeMLP(1, (latent_dim, NODE_HIDDEN, NODE_HIDDEN, 1))
        self.decoders = decoders


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
    the split leaf.

    Parameters
    ----------
    n_features : int
    latent_dim : int
    max_depth : int
        Depth of the bottom-up ladder ``d_H = encoder(x)``, ``d_k = MLP_k(d_{k+1})``; every
        ``d_k`` has the encoder's output width ``encoder.out_features``.
    likelihood : {"bernoulli", "gaussian"}
    encoder : {"mlp", "conv"}
    input_shape : tuple or None
    leaf_prob_threshold : float
        In training mode, each leaf's decoder runs only on the samples that reach it with
        probability at least this (see :meth:`expected_nll`).
    hidden_dims : tuple of int, optional
        Widths of the MLP encoder (mirrored by the leaf decoders), passed to
        :func:`~sk_hierclust.nn.encoders.make_encoder`; the node networks' hidden width is
        :data:`NODE_HIDDEN`.
    """

    elbo_terms = ("rec", "kl_root", "kl_nodes", "kl_decisions")
    annealed_terms = ("kl_root", "kl_nodes", "kl_decisions")

    def __init__(self, n_features, latent_dim, max_depth, likelihood, encoder, input_shape=None,
                 leaf_prob_threshold=0.0, hidden_dims=None):
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

    def start_split(self, leaf):
        """Give ``leaf`` two children; until :meth:`commit_split`, only they and its routers train."""
        for p in self.parameters():
            p.requires_grad_(False)
        # fresh decoders, as in the paper: copies of the parent's would reconstruct equally well
        # and leave the router nothing to learn
        self.split = _Split(leaf, self.d_width, self.latent_dim, self._new_decoders(2))
        self.split.to(next(self.decoders.parameters()).device)
        self.train(self.training)

    def commit_split(self):
        """Merge the trained sub-tree into the node stacks."""
        s, n = self.split, len(self.parent)
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

    def _posterior(self, d, rows, z_parent=None, parent_probs=None):
        """q(z | .) of the nodes ``rows`` from ``d`` at their depth (and the parents' z), with p(z | z_pa).

        ``parent_probs`` ``(n, B)`` weight the transformations' batch-norm statistics.
        Returns ``mean_q, var_q, mean_p, var_p`` of shape ``(n, B, L)`` (prior parts None at the root).
        """
        mean_hat, var_hat = split_normal(self.heads(d, rows))
        if z_parent is None:
            return mean_hat, var_hat, None, None
        mean_p, var_p = split_normal(self.transform(z_parent, rows, parent_probs))
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
        """Per-sample negative-ELBO terms of ``x`` ``(B, D)``: a dict of ``(B,)`` tensors (eqs. 12-20)."""
        d = self.bottom_up_features(x)
        if self.split is not None:
            return self._split_forward(x, d)
        levels, leaf_index = self.plan.on(x.device)
        mean, var, _, _ = self._posterior(d[0], torch.zeros(1, dtype=torch.long, device=x.device))
        z, prob = reparameterize(mean, var, self.training), x.new_ones(1, x.shape[0])
        terms = {"kl_root": kl_normal(mean, var)[0], "kl_nodes": 0.0, "kl_decisions": 0.0}
        zs, probs = [z], [prob]
        for k, level in enumerate(levels):
            z_int, p_int = z[level["int_pos"]], prob[level["int_pos"]]
            # batch-norm statistics of a node's networks: the samples that reach the node
            q = torch.sigmoid(self.router_q(d[k], level["int_rows"], p_int)).squeeze(-1)
            p = torch.sigmoid(self.router_p(z_int, level["int_rows"], p_int)).squeeze(-1)
            terms["kl_decisions"] = terms["kl_decisions"] + (
                level["binary"][:, None] * p_int * kl_bernoulli(q, p)).sum(0)
            prob = p_int[level["par"]] * self._children_probs(q, level)
            mean_q, var_q, mean_p, var_p = self._posterior(d[k + 1], level["child_rows"], z_int[level["par"]],
                                                           p_int[level["par"]])
            z = reparameterize(mean_q, var_q, self.training)
            terms["kl_nodes"] = terms["kl_nodes"] + (prob * kl_normal(mean_q, var_q, mean_p, var_p)).sum(0)
            zs.append(z)
            probs.append(prob)
        terms["rec"] = self.expected_nll(x, torch.cat(zs)[leaf_index], torch.cat(probs)[leaf_index], self.decoders)
        return terms

    def expected_nll(self, x, z, probs, decoders):
        """Reconstruction term ``sum_leaves P(leaf | x) (-log p(x | z_leaf))`` (paper eq. 14), ``(B,)``.

        ``z`` is ``(n_leaves, B, L)``, ``probs`` ``(n_leaves, B)``, ``decoders`` their node stack.
        In eval mode, or with ``leaf_prob_threshold == 0``, every decoder runs on the whole batch
        in one batched pass. In training mode, leaf ``j`` decodes only the samples with
        ``probs[j] >= leaf_prob_threshold`` (its batch-norm statistics are theirs): the dropped
        terms weigh less than the threshold each, and the cost of an epoch follows the number of
        (sample, leaf) pairs that matter instead of growing with every leaf.
        """
        if not self.training or self.leaf_prob_threshold <= 0:
            return (probs * negative_log_likelihood(x, decoders(z), self.likelihood)).sum(0)
        leaf, sample = (probs >= self.leaf_prob_threshold).nonzero(as_tuple=True)  # sorted by leaf
        counts = torch.bincount(leaf, minlength=probs.shape[0]).tolist()
        outputs = [decoders(zs[None], slice(j, j + 1))[0]
                   for j, zs in enumerate(z[leaf, sample].split(counts)) if counts[j]]
        if not outputs:  # no probability reaches the threshold: they are NaN (a diverged fit)
            return probs.sum(0) * float("nan")
        nll = negative_log_likelihood(x[sample], torch.cat(outputs), self.likelihood)
        return x.new_zeros(x.shape[0]).index_add(0, sample, probs[leaf, sample] * nll)

    def _path_latent(self, d, node):
        """Sample z at ``node`` from the posterior down its path (the mean in eval mode), ``(1, B, L)``."""
        z = None
        for k, v in enumerate(self.path(node)):
            rows = torch.full((1,), v, dtype=torch.long, device=d[0].device)
            mean, var, _, _ = self._posterior(d[k], rows, z)
            z = reparameterize(mean, var, self.training)
        return z

    def _split_forward(self, x, d):
        """Terms of the growing sub-tree under ``split.leaf``, conditional on reaching it."""
        s = self.split
        with torch.no_grad():
            k = self.depth(s.leaf)
            z_leaf = self._path_latent(d, s.leaf)
        q = torch.sigmoid(s.router_q(d[k])).squeeze(-1)
        p = torch.sigmoid(s.router_p(z_leaf)).squeeze(-1)
        probs = torch.cat([1 - q, q])
        mean_hat, var_hat = split_normal(s.heads(d[k + 1]))
        mean_p, var_p = split_normal(s.transform(z_leaf.expand(2, -1, -1)))
        mean_q, var_q = precision_weighted(mean_hat, var_hat, mean_p, var_p)
        z = reparameterize(mean_q, var_q, self.training)
        return {"rec": self.expected_nll(x, z, probs, s.decoders),
                "kl_nodes": (probs * kl_normal(mean_q, var_q, mean_p, var_p)).sum(0),
                "kl_decisions": kl_bernoulli(q, p)[0]}

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
    """Tree Variational Autoencoder: hierarchical clustering with a learned binary latent tree.

    A VAE whose latent variables form a binary tree (Manduchi et al., NeurIPS 2023). The root
    ``z_0 ~ N(0, I)``; every non-root node has ``p(z_i | z_pa(i)) = N(mu_p,i(z_pa), sigma^2_p,i(z_pa))``;
    every internal node a generative router ``r_p,i(z_i)`` (probability of going right); every
    leaf its own decoder ``p(x | z_leaf)``. Inference runs a deterministic bottom-up ladder
    ``d_H = encoder(x)``, ``d_k = MLP_k(d_{k+1})``; a node at depth ``k`` combines
    ``N(mu_hat(d_k), sigma_hat^2(d_k))`` with its top-down prior by precision weighting
    (eq. 6) and inference routers ``r_q,i(d_k)`` give the path probabilities
    ``P(node | x)`` (eq. 12). The negative ELBO minimised is
    ``rec + alpha (KL_root + KL_nodes + KL_decisions)`` (eqs. 12-20), ``alpha`` ramping from 0
    to 1 in every training phase.

    Training grows the tree (paper §2.5): train a root with two leaves for
    ``n_epochs_initial`` epochs; then repeatedly pick, among the leaves whose sample subset
    ``{x : P(leaf | x) >= min(1 / n_leaves, 0.5)}`` holds at least ``batch_size`` samples,
    the one with the most samples (stop if it is at ``max_depth``), give it two children and
    train only that sub-tree on that subset for ``n_epochs_grow`` epochs, the rest frozen,
    until ``max_leaves``; then prune the sub-trees holding less than ``prune_threshold`` of
    the training samples (their parent becomes a pass-through node) and fine-tune the whole
    tree for ``n_epochs`` epochs. All nodes of one depth are evaluated together by batched
    matmuls, so an epoch's cost grows far slower than the number of leaves.

    ``predict_proba`` is ``P(leaf | x)`` from the inference routers (eq. 12), renormalised
    over the labelled (non-empty) leaves; ``labels_`` and ``tree_.n_node_samples`` place
    each training sample at its most probable leaf; ``score_samples`` is the ELBO (nats);
    ``sample(node=...)`` descends the generative model through ``node`` (paper §5).

    Choices the paper leaves open, as made here:

    - A growth phase trains the new sub-tree on its subset conditionally on reaching the
      split leaf (its losses are not weighted by ``P(leaf | x)``); the two new leaves get
      freshly initialised decoders, as in the authors' code (copies of the parent's decoder
      reconstruct equally well and leave the new router nothing to learn).
    - Batch normalisation inside a node's networks (routers, transformations) uses batch
      statistics weighted by the probability that each sample reaches the node. A node
      trained on its leaf's subset while growing then sees the same population when the
      whole tree is fine-tuned; with plain batch statistics the deep routers are scrambled
      at the start of fine-tuning and leaves collapse.
    - During training each leaf's decoder runs only on the samples that reach the leaf with
      probability at least ``leaf_prob_threshold`` (see that parameter).
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
    encoder : {"auto", "mlp", "conv"}, default="auto"
        ``"mlp"`` (``"auto"``): ``D -> hidden_dims`` encoder, leaf decoders mirrored.
        ``"conv"``: convolutional encoder and leaf decoders for images of ``input_shape``
        (see :func:`sk_hierclust.nn.encoders.make_encoder`).
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
    kl_anneal_epochs : int, default=None
        Epochs over which the KL weight rises from 0 to 1 in each phase; None means half of
        the phase.
    leaf_prob_threshold : float, default=1e-3
        During training, each leaf's decoder runs only on the samples that reach it with
        probability ``P(leaf | x)`` at least this; the reconstruction terms dropped weigh less
        than the threshold each. This makes an epoch's cost follow the (sample, leaf) pairs
        that matter rather than the number of leaves. 0 gives the exact ELBO (every leaf
        decodes every sample). ``score`` and ``score_samples`` always use the exact ELBO.
    prune_threshold : float, default=0.01
        Leaves holding less than this fraction of the training samples are pruned before
        fine-tuning.
    batch_size : int, default=256
        Mini-batch size; also the minimum sample subset of a leaf that may grow.
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-5
        Adam weight decay.
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
        of the split leaf, ``"finetune"``), ``train_loss`` and each ELBO term (nats per
        sample; a growth phase has no ``kl_root``), ``kl_weight``, ``dur`` (s).
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
    }

    _epoch_params = ("n_epochs_initial", "n_epochs_grow", "n_epochs")

    def __init__(self, *, max_leaves=10, max_depth=6, latent_dim=8, encoder="auto", hidden_dims=None,
                 input_shape=None, likelihood="auto", n_epochs_initial=20, n_epochs_grow=20, n_epochs=20,
                 kl_anneal_epochs=None, leaf_prob_threshold=1e-3, prune_threshold=0.01, batch_size=256,
                 lr=1e-3, weight_decay=1e-5, device="cpu", verbose=0, callbacks=None, random_state=None):
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
        self.kl_anneal_epochs = kl_anneal_epochs
        self.leaf_prob_threshold = leaf_prob_threshold
        self.prune_threshold = prune_threshold
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks
        self.random_state = random_state

    # ---- fitting (steps of BaseDeepClusterer.fit) ------------------------------------------
    def _build_module(self, X):
        """Build the root-and-two-leaves :class:`TreeVAEModule`."""
        return TreeVAEModule(X.shape[1], self.latent_dim, self.max_depth, self.likelihood_, self.encoder_,
                             self.input_shape_, self.leaf_prob_threshold, self.hidden_dims)

    def _train(self, net, X, seed):
        """Train the initial tree, grow it (paper §2.5), prune it, then fine-tune the whole tree."""
        module = net.module_
        self._run_phase(net, X, "initial", self.n_epochs_initial, self.kl_anneal_epochs)
        while self.n_epochs_grow and len(module.leaf_slots) < self.max_leaves:
            leaf, subset = self._leaf_to_grow(X)
            if leaf is None or module.depth(leaf) >= self.max_depth:
                break
            module.start_split(leaf)
            self._run_phase(net, X[subset], f"grow:{leaf}", self.n_epochs_grow, self.kl_anneal_epochs)
            module.commit_split()
        self._prune(X)
        self._run_phase(net, X, "finetune", self.n_epochs, self.kl_anneal_epochs)

    def _slot_probabilities(self, X):
        """P(leaf | x) for every leaf slot of the module, ``(n_samples, n_slots)``."""
        return self._infer(X, lambda m, x: m.leaf_probabilities(x).T, dtype=np.float64)

    def _leaf_to_grow(self, X):
        """Return the leaf to split next and its sample subset (paper §2.5), or ``(None, None)``."""
        module = self.net_.module_
        probs = self._slot_probabilities(X)
        threshold = min(1.0 / probs.shape[1], 0.5)
        sizes = (probs >= threshold).sum(0)
        candidates = np.flatnonzero(sizes >= self.batch_size)
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
