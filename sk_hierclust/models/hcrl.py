"""HCRL: hierarchically clustered representation learning (a VAE with a nested-CRP mixture prior).

Shin, Song, Moon, "Hierarchically Clustered Representation Learning", AAAI 2020.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import digamma
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback
from torch import nn

from .._base import BaseDeepClusterer
from ..nn.encoders import make_encoder, make_node_decoders
from ..nn.losses import (
    LOG_2PI,
    expected_gaussian_loglik,
    kl_beta,
    kl_normal,
    negative_log_likelihood,
    output_mean,
    reparameterize,
    split_normal,
)

ETA_HIDDEN = 10  # the level-proportion encoder g_eta: D -> 10 -> 10 -> 2L (paper §"Neural architecture")
COORDINATE_STEPS = 3  # alternating closed-form updates of q(path) and q(level) per batch (mean field)
NODE_STEP = 0.02  # step size of the per-batch stochastic updates of the node Gaussians and the sticks
MIN_NODE_MASS = 1e-3  # a node with a smaller expected sample count keeps its Gaussian as it is
USED_PATH_SHARE = 0.01  # a full path with this share of the path mass counts in history's n_used_paths
MIN_VAR = 1e-3  # variance floor of the node Gaussians, times the embeddings' mean variance (var_floor)


class HCRLModule(nn.Module):
    """The HCRL network: z-encoder, level-proportion encoder, one decoder and the nCRP node parameters.

    Node parameters live in fixed-capacity tensors (``capacity`` nodes; dead slots are reused),
    so the tree can change by GROW / PRUNE / MERGE without changing their shapes. They are
    buffers, not trained by gradient: :meth:`update_globals` sets them in closed form from
    running sufficient statistics (the node Gaussians' expected sample counts, sums and sums
    of squares of ``z``; the sticks' expected counts of samples through and after each node).
    The structure is kept as Python lists (``parent``, ``level``, ``kids``) and summarised
    in index tensors (:meth:`refresh`) over "paths": the ``n_full`` full root-to-leaf paths
    first, then one inner path per internal node (a new branch below it, paper eq. 4).

    Parameters
    ----------
    n_features, latent_dim, n_levels, capacity : int
    likelihood : {"bernoulli", "gaussian"}
    encoder : {"mlp", "conv", "conv_pool"}
    input_shape : tuple or None
    hidden_dims : tuple of int or None
    local_eta : bool
        HCRL2 (per-sample level proportion from an encoder) if True, HCRL1 (global) else.
    gamma, alpha : float
        nCRP concentration (sticks ``v ~ Beta(1, gamma)``) and symmetric Dirichlet parameter.
    posterior : {"joint", "mean_field"}
        ``q(path, level | x)`` exact over the pairs, or the paper's product ``q(path) q(level)``.

    ``n_levels`` is ``L``, the number of levels including the root (the estimator's
    ``max_depth + 1``); ``capacity`` is the number of node slots.
    """

    #: Every term :meth:`forward` can return (their epoch means go to ``history``).
    elbo_terms = ("rec", "kl_z", "kl_path", "kl_level", "kl_eta", "kl_v")
    #: The KL terms: weighted by the KL annealing of the training phase.
    annealed_terms = ("kl_z", "kl_path", "kl_level", "kl_eta", "kl_v")

    def __init__(self, n_features, latent_dim, n_levels, capacity, likelihood, encoder, input_shape,
                 hidden_dims, local_eta, gamma, alpha, posterior="joint"):
        super().__init__()
        self.latent_dim, self.n_levels, self.capacity = latent_dim, n_levels, capacity
        self.likelihood, self.local_eta, self.gamma, self.posterior = likelihood, local_eta, gamma, posterior
        self.elog_new_stick = float(digamma(1.0) - digamma(1.0 + gamma))  # E[log v] of a new node's stick
        self.n_train = 1
        self.pretraining = True
        self.encoder = make_encoder(encoder, n_features, input_shape, hidden_dims)
        self.z_head = nn.Linear(self.encoder.out_features, 2 * latent_dim)
        self.decoder = make_node_decoders(encoder, 1, latent_dim, n_features, input_shape, hidden_dims)
        if local_eta:
            self.eta_encoder = nn.Sequential(nn.Linear(n_features, ETA_HIDDEN), nn.ReLU(),
                                             nn.Linear(ETA_HIDDEN, ETA_HIDDEN), nn.ReLU(),
                                             nn.Linear(ETA_HIDDEN, 2 * n_levels))
        else:
            self.eta_params = nn.Parameter(torch.zeros(2 * n_levels))
        # Laplace approximation of Dirichlet(alpha) in the softmax basis (Srivastava & Sutton 2017)
        var0 = (1.0 / alpha) * (1 - 2.0 / n_levels) + n_levels / (alpha * n_levels ** 2)
        self.register_buffer("eta_prior_var", torch.full((n_levels,), var0))
        self.register_buffer("node_mean", torch.zeros(capacity, latent_dim))
        self.register_buffer("node_logvar", torch.zeros(capacity, latent_dim))
        # sticks q(v_i) = Beta(a_i, b_i), stored as log a, log b; initialised at the prior Beta(1, gamma)
        self.register_buffer("stick_log_a", torch.zeros(capacity))
        self.register_buffer("stick_log_b", torch.full((capacity,), math.log(gamma)))
        # running sufficient statistics, in expected counts of training samples (update_globals)
        self.register_buffer("node_mass", torch.zeros(capacity))
        self.register_buffer("node_sum", torch.zeros(capacity, latent_dim))
        self.register_buffer("node_sumsq", torch.zeros(capacity, latent_dim))
        self.register_buffer("stick_through", torch.zeros(capacity))
        self.register_buffer("stick_after", torch.zeros(capacity))
        self.register_buffer("var_floor", torch.tensor(MIN_VAR))
        self.parent = [-1] + [-2] * (capacity - 1)  # -2 marks a free slot
        self.level = [0] * capacity
        self.kids = [[] for _ in range(capacity)]
        for name in ("paths", "path_nodes", "inner_children", "n_new", "sib_before", "has_stick",
                     "after_nodes", "pair_node"):
            self.register_buffer(name, None, persistent=False)  # set by refresh; follow .to() / .double()
        self.refresh()

    # ---- structure ----------------------------------------------------------------------
    @property
    def alive(self):
        """The slots in use (nodes of the tree), in slot order."""
        return [v for v in range(self.capacity) if self.parent[v] != -2]

    @property
    def full_paths(self):
        """Node of every full (root-to-leaf) path at every level, shape (n_full, L)."""
        return self.paths[:self.n_full]

    def leaves(self):
        """Return the nodes without children."""
        return [v for v in self.alive if not self.kids[v]]

    def path_to(self, node):
        """Return the nodes from the root down to ``node``."""
        path = [node]
        while self.parent[path[-1]] >= 0:
            path.append(self.parent[path[-1]])
        return path[::-1]

    def set_node(self, node, mean, var, mass=0.0, through=0.0, after=0.0):
        """Set a node's Gaussian ``N(mean, diag var)`` and stick from expected sample counts.

        ``mass`` samples drawn from the node's Gaussian, ``through`` samples whose path
        passes the node and ``after`` whose path passes a later sibling (or a new branch
        after it): the statistics for which :meth:`update_globals` gives this Gaussian and
        the stick ``Beta(1 + through, gamma + after)``. All zero: the prior stick.
        """
        mean = torch.as_tensor(mean, dtype=self.node_mean.dtype, device=self.node_mean.device)
        var = torch.as_tensor(var, dtype=self.node_mean.dtype, device=self.node_mean.device)
        self.node_mean[node], self.node_logvar[node] = mean, var.log()
        self.node_mass[node] = mass
        self.node_sum[node] = mass * mean
        self.node_sumsq[node] = mass * (var + mean.square())
        self.stick_through[node], self.stick_after[node] = through, after
        self.stick_log_a[node] = math.log1p(through)
        self.stick_log_b[node] = math.log(self.gamma + after)

    def add_node(self, parent, mean, var, mass=0.0, through=None):
        """Put a new child of ``parent`` in a free slot (:meth:`set_node`; ``through`` defaults to ``mass``)."""
        slot = self.parent.index(-2)
        self.parent[slot], self.level[slot] = parent, self.level[parent] + 1
        self.kids[parent].append(slot)
        self.set_node(slot, mean, var, mass, mass if through is None else through)
        return slot

    def add_branch(self, node, mean, var, mass=0.0):
        """GROW: a new chain of nodes from ``node`` down to the deepest level; returns the new slots.

        ``mass`` samples pass every new node, a ``1 / n_levels`` share of them drawn from its
        Gaussian ``N(mean, diag var)``.
        """
        new = []
        while self.level[node] < self.n_levels - 1:
            node = self.add_node(node, mean, var, mass / self.n_levels, mass)
            new.append(node)
        return new

    def remove_leaf(self, leaf):
        """Remove ``leaf`` and its ancestors left without children (never the root); returns them.

        Their sufficient statistics are zeroed (the slots are free).
        """
        removed = []
        while leaf > 0 and not self.kids[leaf]:
            parent = self.parent[leaf]
            self.kids[parent].remove(leaf)
            self.parent[leaf] = -2
            for stat in (self.node_mass, self.node_sum, self.node_sumsq, self.stick_through, self.stick_after):
                stat[leaf] = 0.0
            removed.append(leaf)
            leaf = parent
        return removed

    def refresh(self):
        """Rebuild the index tensors describing the paths after a change of the tree.

        ``paths`` (P, L): node of every path at every level (an inner path repeats its last
        node below it); ``path_nodes`` (P, capacity): 1 for the non-root nodes of the path;
        ``inner_children`` (P, capacity): 1 for the existing children of an inner path's end
        node (the new branch takes the rest of its stick); ``n_new`` (P,): new nodes of the
        branch; ``sib_before`` (capacity, capacity): 1 where column j is an earlier sibling of row i;
        ``after_nodes`` (P, capacity): 1 where the path takes ``1 - v_j`` of node j's stick (it
        passes a later sibling of j, or is the new branch after j's siblings); ``pair_node``
        (P * L, capacity): the one-hot node of every (path, level) pair.
        """
        leaves = [v for v in self.leaves() if self.level[v] == self.n_levels - 1 or v == 0]
        inner = [v for v in self.alive if self.level[v] < self.n_levels - 1]
        self.ends = ends = leaves + inner
        self.n_full = len(leaves)
        cap, L = self.capacity, self.n_levels
        paths = np.zeros((len(ends), L), dtype=np.int64)
        path_nodes = np.zeros((len(ends), cap), dtype=np.float32)
        inner_children = np.zeros((len(ends), cap), dtype=np.float32)
        n_new = np.zeros(len(ends), dtype=np.float32)
        for p, end in enumerate(ends):
            nodes = self.path_to(end)
            paths[p] = nodes + [end] * (L - len(nodes))
            path_nodes[p, nodes[1:]] = 1.0
            if p >= self.n_full:
                inner_children[p, self.kids[end]] = 1.0
                n_new[p] = L - len(nodes)
        sib_before = np.zeros((cap, cap), dtype=np.float32)
        for kids in self.kids:
            for i, kid in enumerate(kids):
                sib_before[kid, kids[:i]] = 1.0
        floats = dict(device=self.node_mean.device, dtype=self.node_mean.dtype)
        self.paths = torch.as_tensor(paths, device=self.node_mean.device)
        self.path_nodes = torch.as_tensor(path_nodes, **floats)
        self.inner_children = torch.as_tensor(inner_children, **floats)
        self.n_new = torch.as_tensor(n_new, **floats)
        self.sib_before = torch.as_tensor(sib_before, **floats)
        self.has_stick = torch.as_tensor([float(p >= 0) for p in self.parent], **floats)  # live non-root nodes
        self.after_nodes = self.path_nodes @ self.sib_before + self.inner_children
        self.pair_node = torch.nn.functional.one_hot(self.paths.flatten(), cap).to(**floats)
        self.reset_statistics()

    def reset_statistics(self):
        """Zero the per-epoch sums of q(path) that drive GROW / PRUNE / MERGE."""
        n_paths, J = self.paths.shape[0], self.latent_dim
        zeros = dict(device=self.node_mean.device, dtype=torch.float64)
        self.stats = {"mass": torch.zeros(n_paths, **zeros), "sum_mean": torch.zeros(n_paths, J, **zeros),
                      "sum_sq": torch.zeros(n_paths, J, **zeros),
                      "gram": torch.zeros(self.n_full, self.n_full, **zeros),
                      "n_samples": torch.zeros((), **zeros), "n_internal": torch.zeros((), **zeros)}

    # ---- variational pieces -------------------------------------------------------------
    def sticks(self):
        """Parameters ``(a, b)`` of the sticks' posteriors ``q(v_i) = Beta(a_i, b_i)``, each (capacity,)."""
        return self.stick_log_a.exp(), self.stick_log_b.exp()

    def path_log_prior(self):
        """E_q(v)[log p(path | v)] of every path (nested stick-breaking, paper eq. 3), shape (P,)."""
        a, b = self.sticks()
        elog_v = torch.digamma(a) - torch.digamma(a + b)
        elog_1mv = torch.digamma(b) - torch.digamma(a + b)
        elog_weight = elog_v + self.sib_before @ elog_1mv
        return self.path_nodes @ elog_weight + self.inner_children @ elog_1mv + self.n_new * self.elog_new_stick

    def encode(self, x):
        """q(z | x): mean and variance, each (B, J)."""
        return split_normal(self.z_head(self.encoder(x)))

    def level_posterior(self, x):
        """q(eta | x) in the softmax basis: mean and variance, each (B, L) (HCRL1: the global one)."""
        params = self.eta_encoder(x) if self.local_eta else self.eta_params.expand(x.shape[0], -1)
        return split_normal(params)

    def decode(self, z):
        """Decode ``z``: logits or means, shape (B, D)."""
        return self.decoder(z.unsqueeze(0)).squeeze(0)

    def update_path(self, ell, elog_prior, omega):
        """Coordinate update of q(path) = S given q(level) = omega: the maximiser of the ELBO in S.

        The ELBO's terms in ``S_n`` (:meth:`assignment_terms`) are ``sum_p S_np (E[log p(p)]
        + sum_l omega_nl ell_npl) - sum_p S_np log S_np``, maximised over the simplex by
        ``S_np ∝ exp(E[log p(p)] + sum_l omega_nl ell_npl)`` (Gibbs' inequality).

        Parameters
        ----------
        ell : Tensor (B, P, L)
        elog_prior : Tensor (P,)
        omega : Tensor (B, L)

        Returns
        -------
        Tensor (B, P)
        """
        return torch.softmax(elog_prior + (ell * omega.unsqueeze(1)).sum(2), 1)

    def update_level(self, ell, elog_eta, S):
        """Coordinate update of q(level) = omega given S: ``omega_nl ∝ exp(E[log eta_nl] + sum_p S_np ell_npl)``.

        The maximiser over the simplex of the ELBO's terms in ``omega_n`` (see :meth:`update_path`).

        Parameters
        ----------
        ell : Tensor (B, P, L)
        elog_eta : Tensor (B, L)
        S : Tensor (B, P)

        Returns
        -------
        Tensor (B, L)
        """
        return torch.softmax(elog_eta + (ell * S.unsqueeze(2)).sum(1), 1)

    def assign(self, ell, elog_prior, elog_eta):
        """Closed-form update of ``q(path, level | x)``: the maximiser of the ELBO in it.

        ``posterior="joint"``: over all (path, level) pairs, ``q_npl ∝ exp(E[log p(p)] +
        E[log eta_nl] + ell_npl)``, the exact maximiser over the simplex of the pairs (Gibbs'
        inequality; the mixture's posterior over its nodes, given ``q(z | x)``).
        ``"mean_field"`` (the paper's eq. 4, ``q(path) q(level)``): starts from ``omega =
        softmax(E[log eta])`` and alternates :meth:`update_path` and :meth:`update_level`
        ``COORDINATE_STEPS`` times.

        Parameters
        ----------
        ell : Tensor (B, P, L)
            E_q(z)[log N(z; mu_node, var_node)] of the node of each path at each level.
        elog_prior : Tensor (P,)
        elog_eta : Tensor (B, L)

        Returns
        -------
        q : Tensor (B, P, L)
            Sums to 1 over (P, L); ``q.sum(2)`` is ``S = q(path)``, ``q.sum(1)`` ``omega = q(level)``.
        """
        if self.posterior == "joint":
            logits = elog_prior[:, None] + elog_eta[:, None, :] + ell
            return torch.softmax(logits.flatten(1), 1).view_as(ell)
        omega = torch.softmax(elog_eta, 1)
        for _ in range(COORDINATE_STEPS):
            S = self.update_path(ell, elog_prior, omega)
            omega = self.update_level(ell, elog_eta, S)
        return S.unsqueeze(2) * omega.unsqueeze(1)

    @staticmethod
    def assignment_terms(ell, elog_prior, elog_eta, q):
        """The negative-ELBO terms of each sample that depend on ``q(path, level)``, each (B,).

        With ``S = q.sum(2)`` and ``omega = q.sum(1)``: ``kl_z`` here is ``-E_q(path, level,
        z)[log p(z | node)] = -sum_pl q_npl ell_npl`` (:meth:`forward` subtracts the entropy of
        q(z | x)); ``kl_path = KL(S_n || exp E[log p(path)])``; ``kl_level = E_q[log q(level |
        path)] - sum_l omega_nl E[log eta_nl]``, which for ``q = S omega`` (mean field) is
        ``sum_l omega_nl (log omega_nl - E[log eta_nl])``.
        """
        S, omega = q.sum(2), q.sum(1)
        entropy_S = (S * S.clamp_min(1e-30).log()).sum(1)
        return {
            "kl_z": -(ell * q).sum((1, 2)),
            "kl_path": entropy_S - (S * elog_prior).sum(1),
            "kl_level": (q * q.clamp_min(1e-30).log()).sum((1, 2)) - entropy_S - (omega * elog_eta).sum(1),
        }

    def infer(self, x):
        """Posterior quantities at the posterior means (deterministic; used by predict/apply).

        Returns
        -------
        dict with ``mean`` (B, J); ``leaf`` (B, n_full), the leaf posterior q(path | x, l = L);
        ``omega`` (B, L); ``eta`` (B, L).
        """
        mean, var = self.encode(x)
        eta_mean, _ = self.level_posterior(x)
        ell = expected_gaussian_loglik(mean, var, self.node_mean, self.node_logvar)[:, self.paths]
        elog_prior = self.path_log_prior()
        omega = self.assign(ell, elog_prior, torch.log_softmax(eta_mean, 1)).sum(1)
        leaf = torch.softmax(elog_prior[:self.n_full] + ell[:, :self.n_full, -1], 1)
        return {"mean": mean, "leaf": leaf, "omega": omega, "eta": torch.softmax(eta_mean, 1)}

    def forward(self, x):
        """Per-sample negative-ELBO terms (paper eq. 5), each of shape (B,).

        While pre-training: a plain VAE, ``rec`` and ``kl_z = KL(q(z | x) || N(0, I))``. Then
        ``rec``; ``kl_z`` = E[log q(z)] - E_q(path, level)[log p(z | node)]; ``kl_path`` and
        ``kl_level`` (the KLs of the assignments, :meth:`assignment_terms`); ``kl_eta``
        (Gaussian KL of the logistic-normal level proportion); in training, also each
        sample's share of the global ``kl_v`` (sticks) and, for HCRL1, of the global
        ``kl_eta``. In training after pre-training, each batch also updates the node
        Gaussians and sticks (:meth:`update_globals`) after its terms are computed.
        """
        mean, var = self.encode(x)
        z = reparameterize(mean, var, self.training)
        rec = negative_log_likelihood(x, self.decode(z), self.likelihood)
        if self.pretraining:
            return {"rec": rec, "kl_z": kl_normal(mean, var, torch.zeros_like(mean), torch.ones_like(var))}
        eta_mean, eta_var = self.level_posterior(x)
        # E[log eta] by one reparameterised draw of the logistic normal (its mean in eval mode)
        elog_eta = torch.log_softmax(reparameterize(eta_mean, eta_var, self.training), 1)
        ell = expected_gaussian_loglik(mean, var, self.node_mean, self.node_logvar)[:, self.paths]
        elog_prior = self.path_log_prior()
        with torch.no_grad():
            q = self.assign(ell, elog_prior, elog_eta)
        entropy_z = 0.5 * (LOG_2PI + 1 + var.log()).sum(1)
        terms = {"rec": rec, **self.assignment_terms(ell, elog_prior, elog_eta, q)}
        terms["kl_z"] = terms["kl_z"] - entropy_z
        prior = (torch.zeros_like(self.eta_prior_var), self.eta_prior_var)
        if self.local_eta:
            terms["kl_eta"] = kl_normal(eta_mean, eta_var, *prior)
        if self.training:
            if not self.local_eta:
                terms["kl_eta"] = kl_normal(eta_mean[0], eta_var[0], *prior).expand(x.shape[0]) / self.n_train
            a, b = self.sticks()
            kl_v = (kl_beta(a, b, 1.0, self.gamma) * self.has_stick).sum()
            terms["kl_v"] = kl_v.expand(x.shape[0]) / self.n_train
            mean, var = mean.detach(), var.detach()
            self._accumulate(q.sum(2), q.sum(1), mean, var)
            self.update_globals(q, mean, var, NODE_STEP)
        return terms

    @torch.no_grad()
    def update_globals(self, q, mean, var, step):
        """Stochastic closed-form update of the node Gaussians and the sticks from one batch.

        The batch's sufficient statistics, scaled by ``n_train / B`` to the training set, are
        blended into the running ones, ``stat <- (1 - step) stat + step * batch_stat``
        (stochastic variational inference, Hoffman et al. 2013), and every node with an
        expected count of at least ``MIN_NODE_MASS`` samples gets its maximiser of the ELBO
        given them: with ``r_nk = sum_{(p, l) at node k} q_npl``, ``n_k = sum_n r_nk``,

        * ``mu_k = sum_n r_nk mu~_n / n_k`` and ``sigma^2_k = sum_n r_nk (mu~_n^2 + sigma~^2_n)
          / n_k - mu_k^2`` (floored at ``var_floor``): the maximiser of ``sum_n r_nk
          E_q(z)[log N(z; mu_k, sigma^2_k)]``;
        * the stick ``q(v_k) = Beta(1 + sum_n sum_p S_np [p passes k], gamma + sum_n sum_p
          S_np [p takes 1 - v_k])``, the conjugate maximiser of ``E[log p(path | v)] - KL(q(v)
          || Beta(1, gamma))`` (Blei & Jordan 2006).

        ``step = 1`` with the whole training set as the batch is the exact coordinate update.

        Parameters
        ----------
        q : Tensor (B, P, L)
            ``q(path, level | x)`` of the batch (:meth:`assign`).
        mean, var : Tensor (B, J)
            ``q(z | x)`` of the batch.
        step : float
            In (0, 1].
        """
        r = q.flatten(1) @ self.pair_node
        S = q.sum((0, 2))
        batch = ((self.node_mass, r.sum(0)), (self.node_sum, r.T @ mean),
                 (self.node_sumsq, r.T @ (mean.square() + var)),
                 (self.stick_through, S @ self.path_nodes), (self.stick_after, S @ self.after_nodes))
        for stat, value in batch:
            stat.mul_(1 - step).add_(value, alpha=step * self.n_train / q.shape[0])
        self.apply_statistics()

    @torch.no_grad()
    def apply_statistics(self):
        """Set the node Gaussians and the sticks from the running statistics (see :meth:`update_globals`)."""
        live = self.node_mass >= MIN_NODE_MASS
        mass = self.node_mass[live, None]
        mean = self.node_sum[live] / mass
        self.node_mean[live] = mean
        self.node_logvar[live] = (self.node_sumsq[live] / mass - mean.square()).clamp_min(self.var_floor).log()
        self.stick_log_a.copy_(torch.log1p(self.stick_through))
        self.stick_log_b.copy_(torch.log(self.gamma + self.stick_after))

    def _accumulate(self, S, omega, mean, var):
        S64 = S.double()
        self.stats["n_samples"] += S.shape[0]
        self.stats["n_internal"] += (omega.argmax(1) < self.n_levels - 1).sum()
        self.stats["mass"] += S64.sum(0)
        self.stats["sum_mean"] += S64.T @ mean.double()
        self.stats["sum_sq"] += S64.T @ (mean.square() + var).double()
        full = S64[:, :self.n_full]
        self.stats["gram"] += full.T @ full

    def node_log_weights(self):
        """Log of each node's prior mixture weight for z, shape (capacity,).

        The sum over the full paths through the node of p(path) (sticks at their posterior
        means) times 1/L (the Dirichlet's mean).
        """
        a, b = self.sticks()
        mean_v = a / (a + b)
        log_weight = mean_v.log() + self.sib_before @ torch.log1p(-mean_v)
        path_prob = torch.softmax(self.path_nodes[:self.n_full] @ log_weight, 0)
        weight = torch.zeros(self.capacity, dtype=a.dtype, device=a.device)
        weight.index_add_(0, self.full_paths.flatten(), path_prob.repeat_interleave(self.n_levels))
        return (weight / self.n_levels).log()

    def log_likelihood(self, x, n_importance):
        """Importance-sampled log p(x), shape (B,) (paper Table 1's NLL).

        ``q(z | x)`` is the proposal, with ``n_importance`` draws.
        """
        mean, var = self.encode(x)
        log_w = self.node_log_weights()
        estimates = []
        for _ in range(n_importance):
            z = reparameterize(mean, var, True)
            log_q = -0.5 * (LOG_2PI + var.log() + (z - mean).square() / var).sum(1)
            log_p_z = torch.logsumexp(
                log_w + expected_gaussian_loglik(z, torch.zeros_like(z), self.node_mean, self.node_logvar), 1)
            log_p_x = -negative_log_likelihood(x, self.decode(z), self.likelihood)
            estimates.append(log_p_x + log_p_z - log_q)
        return torch.logsumexp(torch.stack(estimates), 0) - math.log(n_importance)

    def generate(self, n_samples, node=None):
        """Decode ``z`` drawn from ``node``'s Gaussian (or the node mixture of the prior), (n, D)."""
        if node is None:
            probs = self.node_log_weights().exp()
            node = torch.multinomial(probs, n_samples, replacement=True)
        else:
            node = torch.full((n_samples,), node, device=self.node_mean.device)
        z = reparameterize(self.node_mean[node], self.node_logvar[node].exp(), True)
        return output_mean(self.decode(z), self.likelihood)


class TreeDynamics(Callback):
    """GROW / PRUNE / MERGE of the nCRP tree after every training epoch (paper Algorithm 1).

    Uses the sums of q(path | x) over the epoch's batches: every ``grow_every`` epochs,
    GROW samples a path with probability proportional to its mass and, if it is an inner
    path and fewer than ``max_leaves`` full paths exist, adds a branch initialised at the
    q-weighted mean and variance of the embeddings; once the tree has been unchanged for
    ``lock_epochs`` epochs, PRUNE removes a random full path with less than
    ``prune_threshold`` of the mass, else MERGE joins the two full paths whose posterior
    vectors have the highest cosine similarity above ``merge_threshold``. Each epoch's
    event and number of leaves (full paths, after the event) are recorded in the history,
    with the epoch's statistics of the tree before the event (:meth:`tree_statistics`:
    ``max_path_share``, ``path_entropy``, ``n_used_paths``, ``internal_fraction``); a
    ``max_path_share`` above 0.99 is recorded as ``collapsed``.

    It acts only after pre-training (``module.pretraining`` False). skorch calls
    :meth:`initialize` at the start of every training phase (``net.set_params`` of the KL
    annealing re-initialises all callbacks): the epoch counter, the count of unchanged
    epochs and the random draws restart with the final training phase, as none of them
    is touched during pre-training.

    Parameters
    ----------
    grow_every, lock_epochs, max_leaves : int
    prune_threshold, merge_threshold : float
    seed : int
        Seeds the GROW and PRUNE draws.
    """

    def __init__(self, grow_every, lock_epochs, prune_threshold, merge_threshold, max_leaves, seed):
        self.grow_every = grow_every
        self.lock_epochs = lock_epochs
        self.prune_threshold = prune_threshold
        self.merge_threshold = merge_threshold
        self.max_leaves = max_leaves
        self.seed = seed

    def initialize(self):
        """Restart the epoch counters and the random draws (skorch calls it at every phase)."""
        self.rng_ = np.random.RandomState(self.seed)
        self.epoch_ = 0
        self.unchanged_ = 0
        return self

    def on_epoch_begin(self, net, **kwargs):
        """Zero the sums of q(path) of the epoch."""
        net.module_.reset_statistics()

    def on_epoch_end(self, net, **kwargs):
        """Try GROW, then PRUNE or MERGE; record the event and the path shares in ``history``."""
        module = net.module_
        if module.pretraining:
            return
        self.epoch_ += 1
        stats = {k: v.cpu().numpy() for k, v in module.stats.items()}
        share = stats["mass"][:module.n_full] / stats["mass"].sum()
        record = self.tree_statistics(stats, module.n_full)
        event = None
        if self.epoch_ % self.grow_every == 0:
            event = self._grow(module, stats)
        if event is None and self.unchanged_ >= self.lock_epochs:
            event = self._prune(module, share) or self._merge(module, stats)
        self.unchanged_ = 0 if event else self.unchanged_ + 1
        if event:
            module.refresh()
        net.history.record("tree_event", event or "")
        net.history.record("n_leaves", module.n_full)
        for key, value in record.items():
            net.history.record(key, value)
        net.history.record("collapsed", record["max_path_share"] > 0.99)

    @staticmethod
    def tree_statistics(stats, n_full):
        """What an unsupervised fit knows of the tree from an epoch's sums of q(path) and q(level).

        ``p`` is the full paths' share of their summed ``q(path | x)`` mass (normalised among
        the full paths): ``max_path_share`` is ``max p``, ``path_entropy`` ``-sum p log p``
        (nats; ``log n_leaves`` for equal paths, 0 for one), ``n_used_paths`` the number of
        full paths with ``p >= USED_PATH_SHARE``; ``internal_fraction`` is the fraction of
        the epoch's samples whose most probable level (argmax of ``q(level | x)``) is above
        the leaves' level.
        """
        mass = stats["mass"][:n_full]
        p = mass / mass.sum()
        nonzero = p[p > 0]
        return {"max_path_share": float(p.max()), "path_entropy": float(-(nonzero * np.log(nonzero)).sum()),
                "n_used_paths": int((p >= USED_PATH_SHARE).sum()),
                "internal_fraction": float(stats["n_internal"] / max(stats["n_samples"], 1))}

    def _grow(self, module, stats):
        p = self.rng_.choice(len(stats["mass"]), p=stats["mass"] / stats["mass"].sum())
        free = module.parent.count(-2)
        end = module.ends[p]
        if p < module.n_full or module.n_full >= self.max_leaves or free < module.n_levels - 1 - module.level[end]:
            return None
        mass = stats["mass"][p]
        mean = stats["sum_mean"][p] / mass
        var = np.maximum(stats["sum_sq"][p] / mass - mean ** 2, float(module.var_floor))
        module.add_branch(end, mean, var, float(mass))
        return f"grow:{end}"

    def _prune(self, module, share):
        small = np.flatnonzero(share < self.prune_threshold)
        if module.n_full < 2 or small.size == 0:
            return None
        leaf = module.ends[self.rng_.choice(small)]
        module.remove_leaf(leaf)
        return f"prune:{leaf}"

    def _merge(self, module, stats):
        gram = stats["gram"]
        norm = np.sqrt(np.maximum(np.diag(gram), 1e-300))
        cosine = np.triu(gram / np.outer(norm, norm), 1)
        if module.n_full < 2 or cosine.max() <= self.merge_threshold:
            return None
        i, j = np.unravel_index(cosine.argmax(), cosine.shape)
        keep, drop = (i, j) if stats["mass"][i] >= stats["mass"][j] else (j, i)
        kept_leaf, dropped_leaf = module.ends[keep], module.ends[drop]
        keep_path = module.paths[keep].tolist()
        statistics = (module.node_mass, module.node_sum, module.node_sumsq, module.stick_through)
        before = [stat.clone() for stat in statistics]
        for node in module.remove_leaf(dropped_leaf):  # each node that leaves joins the kept path's node
            target = keep_path[module.level[node]]  # at its level: their samples' statistics add up
            for stat, old in zip(statistics, before):
                stat[target] += old[node]
        module.apply_statistics()
        return f"merge:{dropped_leaf}->{kept_leaf}"


class HCRL(BaseDeepClusterer):
    """Hierarchically clustered representation learning: a VAE with a nested-CRP Gaussian-mixture prior.

    HCRL (Shin, Song, Moon, AAAI 2020) places a hierarchical mixture prior on the latent
    ``z`` of a VAE (paper eqs. 3-5). A path ``zeta ~ nCRP(gamma)`` is drawn through a tree of
    ``L = max_depth + 1`` levels (the root at depth 0) by nested stick-breaking (every node
    ``i`` has ``v_i ~ Beta(1, gamma)``; a child's weight is ``v_i prod_{earlier siblings j}
    (1 - v_j)``), a level
    proportion ``eta ~ Dirichlet(alpha)`` over the levels, a level ``l ~ Mult(eta)``, and
    ``z ~ N(mu_{zeta_l}, diag sigma^2_{zeta_l})``: *every* node, internal or leaf, owns a
    Gaussian. ``x ~ p(x | z)`` (Bernoulli for data in [0, 1], unit-variance Gaussian else).
    ``level_proportion="global"`` is HCRL1 (one ``eta`` for all samples), ``"local"`` is
    HCRL2 (``q(eta | x)`` from a second encoder ``D -> 10 -> 10 -> 2L``).

    Inference (eq. 4): ``q(z | x) = N(mu~_z, sigma~^2_z)`` from the main encoder;
    ``q(eta)`` logistic-normal, matched to the Dirichlet prior by the Laplace approximation
    so its KL is a Gaussian KL; ``q(v_i) = Beta(a_i, b_i)``; the path ``zeta`` ranges over
    full paths and inner paths (a new branch below an internal node, Wang & Blei 2009), and
    ``q(zeta, l | x)`` is set in closed form per batch. The encoders and the decoder are
    trained by gradient; the node Gaussians and the sticks by closed-form updates. The tree
    starts from the pre-trained embeddings and then changes every epoch by GROW / PRUNE /
    MERGE (Algorithm 1, see :class:`TreeDynamics`).

    Choices the paper leaves open, as made here:

    1. **Pre-training and initial tree.** The encoder and decoder are first trained as a
       plain VAE (prior ``N(0, I)``) for ``n_epochs_pretrain`` epochs; the initial tree is
       recursive k-means of the embeddings ``mu~_z`` with ``init_branching`` children per
       node (default and cap: the largest ``k`` with ``k ** max_depth <= max_leaves``;
       ``init_branching=1`` is the paper's single path). Every node's Gaussian starts at the
       mean and per-dimension variance of its subtree's ``q(z | x)``, its stick at the
       counts of its subtree and of its later siblings' (:meth:`_initial_tree`). A plain
       autoencoder's embeddings gave a worse tree (MNIST, 10,000 training images, 16
       leaves, node step 0.05, test LP of the initial / trained tree 0.65 / 0.68 against
       0.75 / 0.79). On
       data whose likelihood carries little information (a Bernoulli on a few continuous
       features scaled to [0, 1], or on TF-IDF values) the VAE's posterior collapses to its
       prior and the tree with it: use ``likelihood="gaussian"`` on unscaled features, or
       scale TF-IDF rows up (the benchmark multiplies them by ``sqrt(n_features)``).
    2. **q(path, level | x).** ``posterior="joint"`` (default) sets it to the exact
       posterior over all (path, level) pairs; ``"mean_field"`` is the paper's ``q(path)
       q(level)``, ``S`` and ``omega`` (each the exact maximiser of the ELBO in it, the other
       fixed) alternated 3 times per batch from ``omega = softmax(E[log eta])``. Either is
       a constant in the gradient of the ELBO (at a coordinate optimum its gradient
       vanishes). Under the mean field, a sample unsure of its path is also unsure which
       leaf Gaussian to use, which favours the levels above: training pulled samples toward
       the internal nodes and blurred the leaves (MNIST, 10,000 training images: test LP
       0.75 after the initial tree, 0.70 after training, 4 of 16 leaves pruned; joint: 0.79;
       node step 0.05).
    3. **E[log eta].** The logistic normal has no closed form: one reparameterised draw per
       sample in training, its mean at inference (deterministic predictions).
    4. **Inner paths** use their last node's Gaussian for the levels below it (the new
       branch does not exist yet) and ``E[log v] = psi(1) - psi(1 + gamma)`` for the new
       nodes' sticks. A branch made by GROW starts at the q-weighted mean and variance of the
       embeddings its inner path held during the epoch. So a new branch fits no sample
       better than its parent does, and its prior is the CRP's (``E[log (1 - v)]`` of the
       existing children, whose sticks count their samples): GROW seldom fires once the
       sticks have their closed-form values (from a single path, never on the planted
       hierarchy of the tests), which is why the initial tree has the most leaves allowed.
    5. **Tree statistics** (path masses, the posterior vectors' Gram matrix for MERGE) are
       summed over an epoch's mini-batches while the parameters change. MERGE joins the
       lighter path into the heavier one; every node that leaves with it merges into the
       kept path's node at its level (their sufficient statistics add up: the moment-matched
       Gaussian of both nodes' samples).
    6. **Global terms.** ``KL(q(v) || p(v))`` (and HCRL1's ``KL(q(eta) || p(eta))``) are
       shared among the ``n_samples`` training samples; :meth:`score_samples` leaves them out.
    7. **log p(x)** (:meth:`log_likelihood`) is importance sampled with ``q(z | x)`` as the
       proposal and the prior ``p(z) = sum_nodes w_node N(z; mu, sigma^2)``, the node weights
       being the path probabilities at the sticks' posterior means times the Dirichlet's
       mean ``1 / L`` per level.
    8. **Architecture.** The shared ``encoder=`` options; ``hidden_dims`` sets the MLP widths
       (the paper's ``(2000, 2000, 500)``; the package default ``(512, 512, 256, 128)`` is
       cheaper on a CPU).
    9. **The most probable leaf** (:meth:`predict`) is the full path maximising
       ``q(path | x, l = L)`` ∝ ``exp(E[log p(path)] + E_q(z)[log N(z; leaf Gaussian)])``: the
       leaf that most probably generated ``x``. The mean-field ``q(path | x)`` carries no
       information on the path below the level a sample sits at (a sample at the root has
       ``q(path | x) = E[p(path)]``), so on MNIST it predicted mostly the heaviest path.
       :meth:`predict_proba` is this leaf posterior renormalised over the labelled leaves of
       ``tree_``. :meth:`apply` puts a sample at that path's node of its most probable level.
    10. **Node Gaussians and sticks** are not trained by gradient (with Adam at a learning
        rate of 1e-3 they lagged behind the encoder and training lost leaves: MNIST test LP
        0.72 → 0.55 with the mean field). Each batch updates their running sufficient
        statistics and sets them to the ELBO's maximiser given those (:meth:`HCRLModule.update_globals`, stochastic
        variational inference with step ``NODE_STEP = 0.02``; MNIST, 10,000 training images,
        test LP after training with steps 0.2 / 0.05 / 0.02 / 0.01: 0.63 / 0.79 / 0.81 / 0.81,
        and 0.73 / 0.78 / 0.78 on digits with 0.05 / 0.02 / 0.01).

    Parameters
    ----------
    max_depth : int, default=2
        Depth of the leaves of the nCRP tree, the maximum depth of ``tree_`` (root = depth
        0; at least 1): the tree has ``L = max_depth + 1`` levels.
    max_leaves : int, default=20
        Cap on the number of full paths (leaves), at least 2.
    level_proportion : {"local", "global"}, default="local"
        HCRL2 (``"local"``, per-sample ``eta``) or HCRL1 (``"global"``).
    posterior : {"joint", "mean_field"}, default="joint"
        ``q(path, level | x)``: exact over the (path, level) pairs, or the paper's
        factorised ``q(path) q(level)`` (choice 2).
    gamma : float, default=1.0
        nCRP concentration: sticks ``v ~ Beta(1, gamma)``; larger values favour more branches.
    alpha : float, default=1.0
        Symmetric Dirichlet parameter of the level proportion.
    latent_dim : int, default=10
        ``J``, the dimension of ``z``.
    encoder : {"auto", "mlp", "conv", "conv_pool"}, default="auto"
        ``"auto"`` is ``"mlp"``; ``"conv"`` needs ``input_shape``. ``"conv_pool"``: the
        HTVAE paper's architecture (3x3 convolutions with 2x2 max-pooling, decoder with
        bilinear upsampling; :func:`sk_hierclust.nn.encoders.make_encoder`), needs
        ``input_shape`` with height and width at least 4.
    hidden_dims : tuple of int, default=None
        Widths of the MLP encoder (decoder mirrored); None is ``(512, 512, 256, 128)``.
    input_shape : tuple (C, H, W), default=None
        Image shape for ``encoder="conv"``.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``"auto"``: Bernoulli when X lies in [0, 1], else Gaussian.
    n_epochs : int, default=30
        Training epochs with the nCRP prior (the tree changes after each).
    n_epochs_pretrain : int, default=10
        Pre-training epochs of the plain VAE.
    init_branching : int, default=None
        Children per node of the initial k-means tree; None (and the cap) is the largest ``k``
        with ``k ** max_depth <= max_leaves``.
    grow_every : int, default=1
        GROW is tried every ``grow_every`` epochs.
    lock_epochs : int, default=3
        Epochs without a change of the tree before PRUNE / MERGE are tried.
    prune_threshold : float, default=0.01
        PRUNE removes full paths with less than this share of the samples' q(path) mass.
    merge_threshold : float, default=0.9
        MERGE joins two full paths whose posterior vectors have a larger cosine similarity.
    kl_anneal_epochs : int, default=None
        Epochs over which the KL weight ramps from 0 to 1 in the training phase after
        pre-training (pre-training has no KL term); None is half of it, ``n_epochs // 2``
        (at least 1).
    transform_features : {"embedding", "level_proportion"}, default="embedding"
        What :meth:`transform` returns: ``mu~_z`` or, for HCRL2, the level proportion
        ``E[eta | x]`` (the paper's level-proportion features).
    batch_size : int, default=128
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-5
        Adam's L2 penalty, in both phases.
    device : str or torch.device, default="cpu"
    verbose : int, default=0
        1 prints skorch's epoch table (with each ELBO term and tree event) and a progress bar.
    callbacks : list of skorch callbacks, default=None
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the batches, k-means, GROW/PRUNE and sampling.

    Attributes
    ----------
    net_ : ELBONet
        The trained skorch net; ``net_.module_`` is the :class:`HCRLModule`.
    tree_ : ClusterTree
        The non-empty part of the learned tree (nodes on full paths that hold training samples).
    labels_ : ndarray of shape (n_samples,)
        Leaf (full path) label of each training sample.
    history_ : list of dict
        Per epoch: phase (``"pretrain"`` or ``"train"``), ELBO terms, KL weight and, in
        the training phase, ``tree_event`` (grow/prune/merge), ``n_leaves`` and what the
        fit knows of the tree, summed over the epoch's batches: ``max_path_share`` (the
        largest full path's share of the full paths' ``q(path | x)`` mass), ``path_entropy``
        (entropy of those shares, nats), ``n_used_paths`` (full paths with at least 1% of
        it), ``internal_fraction`` (fraction of the samples whose most probable level is
        above the leaves) and ``collapsed`` (``max_path_share > 0.99``); see
        :meth:`TreeDynamics.tree_statistics`.
    likelihood_, encoder_ : str
        The likelihood and encoder in use (``"auto"`` resolved).
    input_shape_ : tuple or None
    fit_time_ : float
        Seconds.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X has string column names.

    References
    ----------
    .. [1] S.-J. Shin, K. Song, I.-C. Moon, "Hierarchically Clustered Representation
       Learning", AAAI 2020.
    .. [2] C. Wang, D. M. Blei, "Variational inference for the nested Chinese restaurant
       process", NeurIPS 2009.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_hierclust import HCRL
    >>> X, y = load_digits(return_X_y=True)
    >>> model = HCRL(max_depth=2, max_leaves=6, n_epochs=2, n_epochs_pretrain=2,
    ...              random_state=0).fit(X / 16)
    >>> model.predict(X[:3] / 16).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **BaseDeepClusterer._parameter_constraints,
        "max_depth": [Interval(Integral, 1, None, closed="left")],
        "max_leaves": [Interval(Integral, 2, None, closed="left")],
        "level_proportion": [StrOptions({"local", "global"})],
        "posterior": [StrOptions({"joint", "mean_field"})],
        "gamma": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "n_epochs_pretrain": [Interval(Integral, 0, None, closed="left")],
        "init_branching": [Interval(Integral, 1, None, closed="left"), None],
        "grow_every": [Interval(Integral, 1, None, closed="left")],
        "lock_epochs": [Interval(Integral, 0, None, closed="left")],
        "prune_threshold": [Interval(Real, 0, 1, closed="left")],
        "merge_threshold": [Interval(Real, 0, 1, closed="right")],
        "transform_features": [StrOptions({"embedding", "level_proportion"})],
    }

    _epoch_params = ("n_epochs_pretrain", "n_epochs")

    def __init__(self, *, max_depth=2, max_leaves=20, level_proportion="local", posterior="joint", gamma=1.0,
                 alpha=1.0, latent_dim=10, encoder="auto", hidden_dims=None, input_shape=None, likelihood="auto",
                 n_epochs=30, n_epochs_pretrain=10, init_branching=None, grow_every=1, lock_epochs=3,
                 prune_threshold=0.01, merge_threshold=0.9, kl_anneal_epochs=None,
                 transform_features="embedding", batch_size=128, lr=1e-3, weight_decay=1e-5, device="cpu",
                 verbose=0, callbacks=None, random_state=None):
        self.max_depth = max_depth
        self.max_leaves = max_leaves
        self.level_proportion = level_proportion
        self.posterior = posterior
        self.gamma = gamma
        self.alpha = alpha
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.hidden_dims = hidden_dims
        self.input_shape = input_shape
        self.likelihood = likelihood
        self.n_epochs = n_epochs
        self.n_epochs_pretrain = n_epochs_pretrain
        self.init_branching = init_branching
        self.grow_every = grow_every
        self.lock_epochs = lock_epochs
        self.prune_threshold = prune_threshold
        self.merge_threshold = merge_threshold
        self.kl_anneal_epochs = kl_anneal_epochs
        self.transform_features = transform_features
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks
        self.random_state = random_state

    # ---- the fit template's steps ------------------------------------------------------------
    def _build_module(self, X):
        n_levels = self.max_depth + 1
        module = HCRLModule(X.shape[1], self.latent_dim, n_levels, 1 + self.max_depth * self.max_leaves,
                            self.likelihood_, self.encoder_, self.input_shape_,
                            None if self.hidden_dims is None else tuple(self.hidden_dims),
                            self.level_proportion == "local", float(self.gamma), float(self.alpha),
                            self.posterior)
        module.n_train = X.shape[0]
        return module

    def _model_callbacks(self, seed):
        return [("tree_dynamics", TreeDynamics(self.grow_every, self.lock_epochs, self.prune_threshold,
                                               self.merge_threshold, self.max_leaves, seed))]

    def _train(self, net, X, seed):
        """Pre-train the autoencoder, build the initial tree, then train with the nCRP prior."""
        self._run_phase(net, X, "pretrain", self.n_epochs_pretrain, 0)  # a VAE, KL weight 1 throughout
        self._initial_tree(net.module_, X, seed)
        net.module_.pretraining = False
        self._run_phase(net, X, "train", self.n_epochs, self.kl_anneal_epochs)

    def _initial_tree(self, module, X, seed):
        """Recursive k-means of the embeddings; every node's Gaussian and stick from its subtree's samples.

        A node's statistics (:meth:`HCRLModule.set_node`) count its subtree's training
        samples, each with a ``1 / L`` share at every level of its path: its Gaussian matches
        the mean and per-dimension variance of their ``q(z | x)`` (so an internal node is as
        broad as its subtree), its stick counts them and the samples of its later siblings.
        """
        moments = self._infer(X, lambda m, x: torch.cat(m.encode(x), 1), dtype=np.float64)
        emb, emb_var = moments[:, :self.latent_dim], moments[:, self.latent_dim:]
        module.var_floor.fill_(MIN_VAR * emb.var(0).mean())
        k_max = int(np.floor(self.max_leaves ** (1 / self.max_depth) + 1e-9))
        k = k_max if self.init_branching is None else min(self.init_branching, k_max)
        rows_of = {0: np.arange(X.shape[0])}
        members = dict(rows_of)
        for _ in range(self.max_depth):
            children = {}
            for node, rows in members.items():
                n_clusters = min(k, len(rows))
                labels = (KMeans(n_clusters, n_init=3, random_state=seed).fit_predict(emb[rows])
                          if n_clusters > 1 else np.zeros(len(rows), dtype=int))
                for c in range(n_clusters):
                    children[module.add_node(node, 0.0, 1.0)] = rows[labels == c]
            members = children
            rows_of.update(children)
        n_levels = self.max_depth + 1
        for node, rows in rows_of.items():
            siblings = module.kids[module.parent[node]] if node else [node]
            after = sum(len(rows_of[j]) for j in siblings[siblings.index(node) + 1:])
            var = np.maximum(emb[rows].var(0) + emb_var[rows].mean(0), float(module.var_floor))
            module.set_node(node, emb[rows].mean(0), var, len(rows) / n_levels, len(rows) if node else 0, after)
        module.refresh()

    def _tree_assignment(self, X):
        """``tree_``: the nodes on the full paths that hold training samples, by level.

        A training sample's node is the leaf of its most probable full path (choice 9).
        Returns the parent array, each sample's node and each node's module slot.
        """
        module = self.net_.module_
        path_of_sample = self._posteriors(X)[0].argmax(1)
        used = np.flatnonzero(np.bincount(path_of_sample, minlength=module.n_full))
        full_paths = module.full_paths.cpu().numpy()
        slots = np.array(sorted(set(full_paths[used].ravel()), key=lambda v: (module.level[v], v)))
        node_of_slot = np.full(module.capacity, -1)
        node_of_slot[slots] = np.arange(len(slots))
        parent = np.concatenate([[-1], node_of_slot[np.asarray(module.parent)[slots[1:]]]])
        return parent, node_of_slot[full_paths[path_of_sample, -1]], slots

    # ---- maps between tree_ and the module ---------------------------------------------------
    def _node_of_slot(self):
        """Node of ``tree_`` of every module slot (-1 off the tree): the inverse of ``_module_node_``."""
        node_of_slot = np.full(self.net_.module_.capacity, -1)
        node_of_slot[self._module_node_] = np.arange(len(self._module_node_))
        return node_of_slot

    def _label_paths(self):
        """Index among the module's full paths of each label's leaf, shape (n_labels,)."""
        module = self.net_.module_
        path_of_slot = np.full(module.capacity, -1)
        path_of_slot[module.full_paths[:, -1].cpu().numpy()] = np.arange(module.n_full)
        return path_of_slot[self._module_node_[self.tree_.label_to_node]]

    # ---- inference ------------------------------------------------------------------------------
    def _posteriors(self, X):
        """q(path | x, l = L) (n, n_full), q(level | x) (n, L) and E[eta | x] (n, L) at the posterior means."""
        n_full, L = self.net_.module_.n_full, self.net_.module_.n_levels

        def fn(m, x):
            out = m.infer(x)
            return torch.cat([out["leaf"], out["omega"], out["eta"]], 1)
        out = self._infer(X, fn, dtype=np.float64)
        return out[:, :n_full], out[:, n_full:n_full + L], out[:, n_full + L:]

    def _leaf_proba_fn(self):
        """q(path | x, l = L) of the labelled leaves' paths (choice 9), shape (B, n_labels)."""
        columns = torch.as_tensor(self._label_paths(), device=self.net_.device)
        return lambda module, x: module.infer(x)["leaf"][:, columns]

    def apply(self, X):
        """Node of ``tree_`` of each sample: its most probable leaf's path at its most probable level.

        Samples may sit at internal nodes: every node of HCRL generates embeddings. The path
        is that of :meth:`predict` (choice 9), the level the argmax of ``q(level | x)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Node ids of ``tree_``, on the root-to-leaf path of each sample's ``predict`` leaf.
        """
        X = self._validate_X(X)
        S, omega, _ = self._posteriors(X)
        label_paths = self._label_paths()
        paths = label_paths[S[:, label_paths].argmax(1)]
        slots = self.net_.module_.full_paths.cpu().numpy()[paths, omega.argmax(1)]
        return self._node_of_slot()[slots]

    def _transform_width(self):
        module = self.net_.module_
        return module.n_levels if self.transform_features == "level_proportion" else module.latent_dim

    def transform(self, X):
        """Posterior mean of ``z`` or, with ``transform_features="level_proportion"``, ``E[eta | x]``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, latent_dim) or (n_samples, max_depth + 1)
            The level proportion ``softmax(mu~_eta)`` has one column per level (root first)
            and rows that sum to 1.

        Raises
        ------
        ValueError
            For level-proportion features of HCRL1 (``level_proportion="global"``), which has
            no per-sample level proportion.
        """
        X = self._validate_X(X)
        if self.transform_features == "embedding":
            return self._infer(X, lambda m, x: m.encode(x)[0])
        if self.level_proportion == "global":
            raise ValueError("transform_features='level_proportion' needs level_proportion='local' (HCRL2); "
                             "HCRL1's level proportion is global: see history_ or net_.module_.eta_params.")
        return self._infer(X, lambda m, x: m.infer(x)["eta"])

    def log_likelihood(self, X, n_importance=100):
        """Importance-sampled estimate of ``log p(x)`` in nats (the paper's NLL is its negative mean).

        ``log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)`` and the
        prior node mixture of choice 7 in the class docstring. Seeded by ``random_state``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        n_importance : int, default=100
            ``K``, importance samples per data point.

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        ValueError
            If ``n_importance < 1``.
        """
        X = self._validate_X(X)
        if not isinstance(n_importance, Integral) or n_importance < 1:
            raise ValueError(f"n_importance must be a positive integer, got {n_importance!r}.")
        with self._seeded(self.net_.device):
            return self._infer(X, lambda m, x: m.log_likelihood(x, int(n_importance)))

    def _generate(self, module, n_samples, module_node):
        """Decode ``z`` drawn from one node's Gaussian (paper Fig. 4), shape (n_samples, D).

        ``module_node=None`` draws each sample's node from the prior mixture of all nodes
        (choice 7 of the class docstring). The outputs are decoder means.
        """
        return module.generate(n_samples, None if module_node is None else int(module_node))
