"""HCRL: hierarchically clustered representation learning (a VAE with a nested-CRP mixture prior).

Shin, Song, Moon, "Hierarchically Clustered Representation Learning", AAAI 2020.
"""

import math
import time
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import digamma
from sklearn.base import _fit_context
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import Callback
from torch import nn

from .._base import DeepClusterMixin
from ..nn.encoders import make_encoder, make_node_decoders
from ..nn.losses import kl_normal, negative_log_likelihood, output_mean, reparameterize, split_normal
from ..tree import ClusterTree

ETA_HIDDEN = 10  # the level-proportion encoder g_eta: D -> 10 -> 10 -> 2L (paper §"Neural architecture")
COORDINATE_STEPS = 3  # alternating closed-form updates of q(path) and q(level) per batch
MIN_VAR = 1e-3  # variance floor of a node set from embeddings (times their variance for the initial tree)
LOG_2PI = math.log(2 * math.pi)


def _kl_beta(a, b, a0, b0):
    """KL(Beta(a, b) || Beta(a0, b0)) in nats, elementwise."""
    def log_beta(p, q):
        return torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)
    return (log_beta(a0, b0) - log_beta(a, b) + (a - a0) * torch.digamma(a) + (b - b0) * torch.digamma(b)
            + (a0 - a + b0 - b) * torch.digamma(a + b))


def _gaussian_loglik(mean, var, node_mean, node_logvar):
    """E_{N(z; mean, var)}[log N(z; node_mean, exp(node_logvar))] for every (sample, node) pair.

    Parameters
    ----------
    mean, var : Tensor of shape (B, J)
        Posterior q(z | x); ``var = 0`` gives the log-density at ``mean``.
    node_mean, node_logvar : Tensor of shape (N, J)

    Returns
    -------
    Tensor of shape (B, N), nats. Computed by three matmuls (paper's ``omega`` formula).
    """
    prec = torch.exp(-node_logvar)
    quad = ((var + mean.square()) @ prec.T - 2 * mean @ (node_mean * prec).T
            + (node_mean.square() * prec).sum(1))
    return -0.5 * (node_mean.shape[1] * LOG_2PI + node_logvar.sum(1) + quad)


class HCRLModule(nn.Module):
    """The HCRL network: z-encoder, level-proportion encoder, one decoder and the nCRP node parameters.

    Node parameters live in fixed-capacity tensors (``capacity`` nodes; dead slots are reused),
    so the tree can change by GROW / PRUNE / MERGE without changing parameter shapes. The
    structure is kept as Python lists (``parent``, ``level``, ``kids``) and summarised
    in index tensors (:meth:`refresh`) over "paths": the ``n_full`` full root-to-leaf paths
    first, then one inner path per internal node (a new branch below it, paper eq. 4).

    Parameters
    ----------
    n_features, latent_dim, max_depth, capacity : int
    likelihood : {"bernoulli", "gaussian"}
    encoder : {"mlp", "conv"}
    input_shape : tuple or None
    hidden_dims : tuple of int or None
    local_eta : bool
        HCRL2 (per-sample level proportion from an encoder) if True, HCRL1 (global) else.
    gamma, alpha : float
        nCRP concentration (sticks ``v ~ Beta(1, gamma)``) and symmetric Dirichlet parameter.
    """

    def __init__(self, n_features, latent_dim, max_depth, capacity, likelihood, encoder, input_shape,
                 hidden_dims, local_eta, gamma, alpha):
        super().__init__()
        self.latent_dim, self.max_depth, self.capacity = latent_dim, max_depth, capacity
        self.likelihood, self.local_eta, self.gamma = likelihood, local_eta, gamma
        self.elog_new_stick = float(digamma(1.0) - digamma(1.0 + gamma))  # E[log v] of a new node's stick
        self.n_train = 1
        self.pretraining = True
        self.encoder = make_encoder(encoder, n_features, input_shape, hidden_dims)
        with torch.no_grad():
            width = self.encoder(torch.zeros(2, n_features)).shape[1]
        self.z_head = nn.Linear(width, 2 * latent_dim)
        self.decoder = make_node_decoders(encoder, 1, latent_dim, n_features, input_shape, hidden_dims)
        if local_eta:
            self.eta_encoder = nn.Sequential(nn.Linear(n_features, ETA_HIDDEN), nn.ReLU(),
                                             nn.Linear(ETA_HIDDEN, ETA_HIDDEN), nn.ReLU(),
                                             nn.Linear(ETA_HIDDEN, 2 * max_depth))
        else:
            self.eta_params = nn.Parameter(torch.zeros(2 * max_depth))
        # Laplace approximation of Dirichlet(alpha) in the softmax basis (Srivastava & Sutton 2017)
        var0 = (1.0 / alpha) * (1 - 2.0 / max_depth) + max_depth / (alpha * max_depth ** 2)
        self.register_buffer("eta_prior_var", torch.full((max_depth,), var0))
        self.node_mean = nn.Parameter(torch.zeros(capacity, latent_dim))
        self.node_logvar = nn.Parameter(torch.zeros(capacity, latent_dim))
        # sticks q(v_i) = Beta(a_i, b_i), stored as log a, log b; initialised at the prior Beta(1, gamma)
        self.stick_log_a = nn.Parameter(torch.zeros(capacity))
        self.stick_log_b = nn.Parameter(torch.full((capacity,), math.log(gamma)))
        self.parent = [-1] + [-2] * (capacity - 1)  # -2 marks a free slot
        self.level = [0] * capacity
        self.kids = [[] for _ in range(capacity)]
        for name in ("paths", "path_nodes", "inner_children", "n_new", "sib_before", "has_stick"):
            self.register_buffer(name, None, persistent=False)  # set by refresh; follow .to() / .double()
        self.refresh()

    # ---- structure ----------------------------------------------------------------------
    @property
    def alive(self):
        return [v for v in range(self.capacity) if self.parent[v] != -2]

    @property
    def full_paths(self):
        return self.paths[:self.n_full]

    def leaves(self):
        return [v for v in self.alive if not self.kids[v]]

    def path_to(self, node):
        path = [node]
        while self.parent[path[-1]] >= 0:
            path.append(self.parent[path[-1]])
        return path[::-1]

    def add_node(self, parent, mean, var):
        """Put a new child of ``parent`` (Gaussian ``N(mean, diag var)``, prior stick) in a free slot."""
        slot = self.parent.index(-2)
        self.parent[slot], self.level[slot] = parent, self.level[parent] + 1
        self.kids[parent].append(slot)
        with torch.no_grad():
            self.node_mean[slot] = torch.as_tensor(mean, dtype=self.node_mean.dtype)
            self.node_logvar[slot] = torch.as_tensor(var, dtype=self.node_mean.dtype).log()
            self.stick_log_a[slot] = 0.0
            self.stick_log_b[slot] = math.log(self.gamma)
        return slot

    def add_branch(self, node, mean, var):
        """GROW: a new chain of nodes from ``node`` down to the deepest level; returns the new slots."""
        new = []
        while self.level[node] < self.max_depth - 1:
            node = self.add_node(node, mean, var)
            new.append(node)
        return new

    def remove_leaf(self, leaf):
        """Remove ``leaf`` and its ancestors left without children (never the root); returns them."""
        removed = []
        while leaf > 0 and not self.kids[leaf]:
            parent = self.parent[leaf]
            self.kids[parent].remove(leaf)
            self.parent[leaf] = -2
            removed.append(leaf)
            leaf = parent
        return removed

    def refresh(self):
        """Rebuild the index tensors describing the paths after a change of the tree.

        ``paths`` (P, L): node of every path at every level (an inner path repeats its last
        node below it); ``path_nodes`` (P, capacity): 1 for the non-root nodes of the path;
        ``inner_children`` (P, capacity): 1 for the existing children of an inner path's end
        node (the new branch takes the rest of its stick); ``n_new`` (P,): new nodes of the
        branch; ``sib_before`` (capacity, capacity): 1 where column j is an earlier sibling of row i.
        """
        leaves = [v for v in self.leaves() if self.level[v] == self.max_depth - 1 or v == 0]
        inner = [v for v in self.alive if self.level[v] < self.max_depth - 1]
        self.ends = ends = leaves + inner
        self.n_full = len(leaves)
        cap, L = self.capacity, self.max_depth
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
        self.reset_statistics()

    def reset_statistics(self):
        """Zero the per-epoch sums of q(path) that drive GROW / PRUNE / MERGE."""
        n_paths, J = self.paths.shape[0], self.latent_dim
        zeros = dict(device=self.node_mean.device, dtype=torch.float64)
        self.stats = {"mass": torch.zeros(n_paths, **zeros), "sum_mean": torch.zeros(n_paths, J, **zeros),
                      "sum_sq": torch.zeros(n_paths, J, **zeros),
                      "gram": torch.zeros(self.n_full, self.n_full, **zeros)}

    # ---- variational pieces -------------------------------------------------------------
    def sticks(self):
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
        return self.decoder(z.unsqueeze(0)).squeeze(0)

    def assign(self, ell, elog_prior, elog_eta):
        """Closed-form coordinate updates of q(path) = S and q(level) = omega (paper eq. 4).

        Parameters
        ----------
        ell : Tensor (B, P, L)
            E_q(z)[log N(z; mu_node, var_node)] of the node of each path at each level.
        elog_prior : Tensor (P,)
        elog_eta : Tensor (B, L)

        Returns
        -------
        S : Tensor (B, P); omega : Tensor (B, L)
        """
        omega = torch.softmax(elog_eta, 1)
        for _ in range(COORDINATE_STEPS):
            S = torch.softmax(elog_prior + (ell * omega.unsqueeze(1)).sum(2), 1)
            omega = torch.softmax(elog_eta + (ell * S.unsqueeze(2)).sum(1), 1)
        return S, omega

    def infer(self, x):
        """Posterior quantities at the posterior means (deterministic; used by predict/apply).

        Returns
        -------
        dict with ``mean`` (B, J); ``leaf`` (B, n_full), the leaf posterior q(path | x, l = L);
        ``omega`` (B, L); ``eta`` (B, L).
        """
        mean, var = self.encode(x)
        eta_mean, _ = self.level_posterior(x)
        ell = _gaussian_loglik(mean, var, self.node_mean, self.node_logvar)[:, self.paths]
        elog_prior = self.path_log_prior()
        _, omega = self.assign(ell, elog_prior, torch.log_softmax(eta_mean, 1))
        leaf = torch.softmax(elog_prior[:self.n_full] + ell[:, :self.n_full, -1], 1)
        return {"mean": mean, "leaf": leaf, "omega": omega, "eta": torch.softmax(eta_mean, 1)}

    def forward(self, x):
        """Per-sample negative-ELBO terms (paper eq. 5), each of shape (B,).

        While pre-training: only ``rec``, the reconstruction at the posterior mean (a plain
        autoencoder). Then ``rec``; ``kl_z`` = E[log q(z)] - E_q(path, level)[log p(z | node)];
        ``kl_path`` and ``kl_level`` (the multinomial KLs); ``kl_eta`` (Gaussian KL of the
        logistic-normal level proportion); in training, also each sample's share of the
        global ``kl_v`` (sticks) and, for HCRL1, of the global ``kl_eta``.
        """
        mean, var = self.encode(x)
        if self.pretraining:
            return {"rec": negative_log_likelihood(x, self.decode(mean), self.likelihood)}
        z = reparameterize(mean, var, self.training)
        rec = negative_log_likelihood(x, self.decode(z), self.likelihood)
        eta_mean, eta_var = self.level_posterior(x)
        # E[log eta] by one reparameterised draw of the logistic normal (its mean in eval mode)
        elog_eta = torch.log_softmax(reparameterize(eta_mean, eta_var, self.training), 1)
        ell = _gaussian_loglik(mean, var, self.node_mean, self.node_logvar)[:, self.paths]
        elog_prior = self.path_log_prior()
        with torch.no_grad():
            S, omega = self.assign(ell, elog_prior, elog_eta)
        entropy_z = 0.5 * (LOG_2PI + 1 + var.log()).sum(1)
        terms = {
            "rec": rec,
            "kl_z": -(ell * S.unsqueeze(2) * omega.unsqueeze(1)).sum((1, 2)) - entropy_z,
            "kl_path": (S * (S.clamp_min(1e-30).log() - elog_prior)).sum(1),
            "kl_level": (omega * (omega.clamp_min(1e-30).log() - elog_eta)).sum(1),
        }
        prior = (torch.zeros_like(self.eta_prior_var), self.eta_prior_var)
        if self.local_eta:
            terms["kl_eta"] = kl_normal(eta_mean, eta_var, *prior)
        if self.training:
            if not self.local_eta:
                terms["kl_eta"] = kl_normal(eta_mean[0], eta_var[0], *prior).expand(x.shape[0]) / self.n_train
            a, b = self.sticks()
            kl_v = (_kl_beta(a, b, torch.ones_like(a), torch.full_like(b, self.gamma)) * self.has_stick).sum()
            terms["kl_v"] = kl_v.expand(x.shape[0]) / self.n_train
            self._accumulate(S.detach(), mean.detach(), var.detach())
        return terms

    def _accumulate(self, S, mean, var):
        S64 = S.double()
        self.stats["mass"] += S64.sum(0)
        self.stats["sum_mean"] += S64.T @ mean.double()
        self.stats["sum_sq"] += S64.T @ (mean.square() + var).double()
        full = S64[:, :self.n_full]
        self.stats["gram"] += full.T @ full

    def node_log_weights(self):
        """log of each node's prior mixture weight for z: sum over full paths through it of
        p(path) (sticks at their posterior means) times 1/L (the Dirichlet's mean), shape (capacity,)."""
        a, b = self.sticks()
        mean_v = a / (a + b)
        log_weight = mean_v.log() + self.sib_before @ torch.log1p(-mean_v)
        path_prob = torch.softmax(self.path_nodes[:self.n_full] @ log_weight, 0)
        weight = torch.zeros(self.capacity, dtype=a.dtype, device=a.device)
        weight.index_add_(0, self.full_paths.flatten(), path_prob.repeat_interleave(self.max_depth))
        return (weight / self.max_depth).log()

    def log_likelihood(self, x, n_samples):
        """Importance-sampled log p(x) with q(z | x) as proposal, shape (B,) (paper Table 1's NLL)."""
        mean, var = self.encode(x)
        log_w = self.node_log_weights()
        estimates = []
        for _ in range(n_samples):
            z = reparameterize(mean, var, True)
            log_q = -0.5 * (LOG_2PI + var.log() + (z - mean).square() / var).sum(1)
            log_p_z = torch.logsumexp(log_w + _gaussian_loglik(z, torch.zeros_like(z), self.node_mean,
                                                               self.node_logvar), 1)
            log_p_x = -negative_log_likelihood(x, self.decode(z), self.likelihood)
            estimates.append(log_p_x + log_p_z - log_q)
        return torch.logsumexp(torch.stack(estimates), 0) - math.log(n_samples)

    def generate(self, n_samples, node=None):
        """Decode ``z`` drawn from ``node``'s Gaussian (or the node mixture of the prior), (n, D)."""
        if node is None:
            probs = self.node_log_weights().exp()
            node = torch.multinomial(probs, n_samples, replacement=True)
        else:
            node = torch.full((n_samples,), node, device=self.node_mean.device)
        z = reparameterize(self.node_mean[node], self.node_logvar[node].exp(), True)
        return output_mean(self.decode(z), self.likelihood)


def _reset_adam_rows(net, module, slots):
    """Zero the optimizer's moment estimates of reused node slots (a new node starts fresh)."""
    for param in (module.node_mean, module.node_logvar, module.stick_log_a, module.stick_log_b):
        for value in net.optimizer_.state.get(param, {}).values():
            if torch.is_tensor(value) and value.dim() > 0:
                value[slots] = 0


class TreeDynamics(Callback):
    """GROW / PRUNE / MERGE of the nCRP tree after every training epoch (paper Algorithm 1).

    Uses the sums of q(path | x) over the epoch's batches: every ``grow_every`` epochs,
    GROW samples a path with probability proportional to its mass and, if it is an inner
    path and fewer than ``max_leaves`` full paths exist, adds a branch initialised at the
    q-weighted mean and variance of the embeddings; once the tree has been unchanged for
    ``lock_epochs`` epochs, PRUNE removes a random full path with less than
    ``prune_threshold`` of the mass, else MERGE joins the two full paths whose posterior
    vectors have the highest cosine similarity above ``merge_threshold``. Each epoch's
    event, number of leaves (full paths) and the largest full path's share of the full
    paths' mass (before the event) are recorded in the history; a share above 0.99 is
    recorded as ``collapsed``.

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
        self.rng_ = np.random.RandomState(self.seed)
        self.epoch_ = 0
        self.unchanged_ = 0
        return self

    def on_epoch_begin(self, net, **kwargs):
        net.module_.reset_statistics()

    def on_epoch_end(self, net, **kwargs):
        module = net.module_
        if module.pretraining:
            return
        self.epoch_ += 1
        stats = {k: v.cpu().numpy() for k, v in module.stats.items()}
        share = stats["mass"][:module.n_full] / stats["mass"].sum()
        alive_before, event = module.alive, None
        if self.epoch_ % self.grow_every == 0:
            event = self._grow(module, stats)
        if event is None and self.unchanged_ >= self.lock_epochs:
            event = self._prune(module, share) or self._merge(module, stats)
        self.unchanged_ = 0 if event else self.unchanged_ + 1
        if event:
            new = [v for v in module.alive if v not in alive_before]
            module.refresh()
            _reset_adam_rows(net, module, new)
        net.history.record("tree_event", event or "")
        net.history.record("n_leaves", module.n_full)
        largest = float(share.max() / share.sum())  # among the full paths
        net.history.record("max_path_share", largest)
        net.history.record("collapsed", largest > 0.99)

    def _grow(self, module, stats):
        p = self.rng_.choice(len(stats["mass"]), p=stats["mass"] / stats["mass"].sum())
        free = module.parent.count(-2)
        end = module.ends[p]
        if p < module.n_full or module.n_full >= self.max_leaves or free < module.max_depth - 1 - module.level[end]:
            return None
        mean = stats["sum_mean"][p] / stats["mass"][p]
        var = np.maximum(stats["sum_sq"][p] / stats["mass"][p] - mean ** 2, MIN_VAR)
        module.add_branch(end, mean, var)
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
        w = float(stats["mass"][drop] / (stats["mass"][keep] + stats["mass"][drop]))
        mean, logvar = module.node_mean, module.node_logvar
        with torch.no_grad():  # each removed node joins the kept path's node at its level
            for node in module.remove_leaf(dropped_leaf):
                target = keep_path[module.level[node]]
                mean[target] = (1 - w) * mean[target] + w * mean[node]
                logvar[target] = ((1 - w) * logvar[target].exp() + w * logvar[node].exp()).log()
        return f"merge:{dropped_leaf}->{kept_leaf}"


class HCRL(DeepClusterMixin):
    """Hierarchically clustered representation learning: a VAE with a nested-CRP Gaussian-mixture prior.

    HCRL (Shin, Song, Moon, AAAI 2020) places a hierarchical mixture prior on the latent
    ``z`` of a VAE (paper eqs. 3-5). A path ``zeta ~ nCRP(gamma)`` is drawn through a tree of
    ``max_depth`` levels by nested stick-breaking (every node ``i`` has ``v_i ~ Beta(1,
    gamma)``; a child's weight is ``v_i prod_{earlier siblings j} (1 - v_j)``), a level
    proportion ``eta ~ Dirichlet(alpha)`` over the levels, a level ``l ~ Mult(eta)``, and
    ``z ~ N(mu_{zeta_l}, diag sigma^2_{zeta_l})``: *every* node, internal or leaf, owns a
    Gaussian. ``x ~ p(x | z)`` (Bernoulli for data in [0, 1], unit-variance Gaussian else).
    ``level_proportion="global"`` is HCRL1 (one ``eta`` for all samples), ``"local"`` is
    HCRL2 (``q(eta | x)`` from a second encoder ``D -> 10 -> 10 -> 2L``).

    Inference (eq. 4): ``q(z | x) = N(mu~_z, sigma~^2_z)`` from the main encoder;
    ``q(eta)`` logistic-normal, matched to the Dirichlet prior by the Laplace approximation
    so its KL is a Gaussian KL; ``q(v_i) = Beta(a_i, b_i)`` learned by gradient;
    ``q(zeta | x) = S`` over full paths and inner paths (a new branch below an internal
    node, Wang & Blei 2009) and ``q(l | x) = omega`` by closed-form coordinate updates per
    batch. The tree starts from the pre-trained embeddings and then changes every epoch by
    GROW / PRUNE / MERGE (Algorithm 1, see :class:`TreeDynamics`).

    Choices the paper leaves open, as made here:

    1. **Pre-training and initial tree.** The autoencoder is first trained without the prior
       for ``n_epochs_pretrain`` epochs (as VaDE); the initial tree is recursive k-means of
       the embeddings ``mu~_z`` with ``init_branching`` children per node (default: the
       largest ``k`` with ``k ** (max_depth - 1) <= max_leaves // 2``, leaving room to
       GROW; ``init_branching=1`` is the paper's single path). A leaf's Gaussian starts at the
       mean and per-dimension variance of its cluster, an internal node's at the mean of its
       subtree with its children's average variance (a broad node would take every sample),
       and the variance of ``q(z | x)``, untrained so far, at the leaves' average variance.
    2. **Coordinate updates.** ``S`` and ``omega`` are alternated 3 times per batch starting
       from ``omega = softmax(E[log eta])`` and treated as constants in the gradient of the
       ELBO (at a coordinate optimum their gradient vanishes).
    3. **E[log eta].** The logistic normal has no closed form: one reparameterised draw per
       sample in training, its mean at inference (deterministic predictions).
    4. **Inner paths** use their last node's Gaussian for the levels below it (the new
       branch does not exist yet) and ``E[log v] = psi(1) - psi(1 + gamma)`` for the new
       nodes' sticks. A branch made by GROW starts at the q-weighted mean and variance of the
       embeddings its inner path held during the epoch.
    5. **Tree statistics** (path masses, the posterior vectors' Gram matrix for MERGE) are
       summed over an epoch's mini-batches while the parameters change. MERGE joins the
       lighter path into the heavier one; every node that leaves with it merges into the
       kept path's node at its level (mass-weighted average of means and variances).
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
       :meth:`apply` puts a sample at that path's node of its most probable level.

    Parameters
    ----------
    max_depth : int, default=3
        ``L``, the number of levels including the root (at least 2).
    max_leaves : int, default=20
        Cap on the number of full paths (leaves).
    level_proportion : {"local", "global"}, default="local"
        HCRL2 (``"local"``, per-sample ``eta``) or HCRL1 (``"global"``).
    gamma : float, default=1.0
        nCRP concentration: sticks ``v ~ Beta(1, gamma)``; larger values favour more branches.
    alpha : float, default=1.0
        Symmetric Dirichlet parameter of the level proportion.
    latent_dim : int, default=10
        ``J``, the dimension of ``z``.
    encoder : {"auto", "mlp", "conv"}, default="auto"
        ``"auto"`` is ``"mlp"``; ``"conv"`` needs ``input_shape``.
    hidden_dims : tuple of int, default=None
        Widths of the MLP encoder (decoder mirrored); None is ``(512, 512, 256, 128)``.
    input_shape : tuple (C, H, W), default=None
        Image shape for ``encoder="conv"``.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``"auto"``: Bernoulli when X lies in [0, 1], else Gaussian.
    n_epochs : int, default=30
        Training epochs with the nCRP prior (the tree changes after each).
    n_epochs_pretrain : int, default=10
        Autoencoder pre-training epochs.
    init_branching : int, default=None
        Children per node of the initial k-means tree; None picks as described above.
    grow_every : int, default=1
        GROW is tried every ``grow_every`` epochs.
    lock_epochs : int, default=3
        Epochs without a change of the tree before PRUNE / MERGE are tried.
    prune_threshold : float, default=0.01
        PRUNE removes full paths with less than this share of the samples' q(path) mass.
    merge_threshold : float, default=0.9
        MERGE joins two full paths whose posterior vectors have a larger cosine similarity.
    kl_anneal_epochs : int, default=1
        Epochs over which the KL weight ramps from 0 to 1 after pre-training.
    transform_features : {"embedding", "level_proportion"}, default="embedding"
        What :meth:`transform` returns: ``mu~_z`` or, for HCRL2, the level proportion
        ``E[eta | x]`` (the paper's level-proportion features).
    batch_size : int, default=128
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=0.0
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
        Per epoch: phase, ELBO terms, KL weight, ``tree_event`` (grow/prune/merge),
        ``n_leaves``, ``max_path_share`` and ``collapsed``.
    likelihood_, encoder_ : str
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
    >>> model = HCRL(max_depth=3, max_leaves=6, n_epochs=2, n_epochs_pretrain=2,
    ...              random_state=0).fit(X / 16)
    >>> model.predict(X[:3] / 16).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **DeepClusterMixin._parameter_constraints,
        "max_depth": [Interval(Integral, 2, None, closed="left")],
        "max_leaves": [Interval(Integral, 1, None, closed="left")],
        "level_proportion": [StrOptions({"local", "global"})],
        "gamma": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "hidden_dims": [tuple, list, None],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "n_epochs_pretrain": [Interval(Integral, 0, None, closed="left")],
        "init_branching": [Interval(Integral, 1, None, closed="left"), None],
        "grow_every": [Interval(Integral, 1, None, closed="left")],
        "lock_epochs": [Interval(Integral, 0, None, closed="left")],
        "prune_threshold": [Interval(Real, 0, 1, closed="left")],
        "merge_threshold": [Interval(Real, 0, 1, closed="right")],
        "kl_anneal_epochs": [Interval(Integral, 0, None, closed="left")],
        "transform_features": [StrOptions({"embedding", "level_proportion"})],
    }

    def __init__(self, max_depth=3, max_leaves=20, level_proportion="local", gamma=1.0, alpha=1.0,
                 latent_dim=10, encoder="auto", hidden_dims=None, input_shape=None, likelihood="auto",
                 n_epochs=30, n_epochs_pretrain=10, init_branching=None, grow_every=1, lock_epochs=3,
                 prune_threshold=0.01, merge_threshold=0.9, kl_anneal_epochs=1,
                 transform_features="embedding", batch_size=128, lr=1e-3, weight_decay=0.0, device="cpu",
                 verbose=0, callbacks=None, random_state=None):
        self.max_depth = max_depth
        self.max_leaves = max_leaves
        self.level_proportion = level_proportion
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

    @property
    def _n_features_out(self):
        """Columns of ``transform``; an AttributeError before fit, as ``get_feature_names_out`` expects."""
        module = self.net_.module_
        return module.max_depth if self.transform_features == "level_proportion" else module.latent_dim

    # ---- fitting ------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Pre-train the autoencoder, build the initial tree, then train with the nCRP prior.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data: finite values, at least 2 samples; in [0, 1] for the Bernoulli
            likelihood. A CSR matrix (e.g. TF-IDF) is densified batch by batch.
        y : Ignored

        Returns
        -------
        self : HCRL

        Raises
        ------
        ValueError
            Invalid parameters or data (NaN/inf, fewer than 2 samples, 0 features, X outside
            [0, 1] with ``likelihood="bernoulli"``), or a diverging ELBO (non-finite term).
        """
        start = time.perf_counter()
        X = self._validate_fit_data(X)
        with self._seeded() as seed:
            module = HCRLModule(X.shape[1], self.latent_dim, self.max_depth,
                                1 + (self.max_depth - 1) * self.max_leaves, self.likelihood_, self.encoder_,
                                None if self.input_shape is None else tuple(self.input_shape),
                                None if self.hidden_dims is None else tuple(self.hidden_dims),
                                self.level_proportion == "local", float(self.gamma), float(self.alpha))
            module.n_train = X.shape[0]
            dynamics = TreeDynamics(self.grow_every, self.lock_epochs, self.prune_threshold,
                                    self.merge_threshold, self.max_leaves, seed)
            self.net_ = net = self._make_net(module, seed, [("tree_dynamics", dynamics)])
            self._run_phase(net, X, "pretrain", self.n_epochs_pretrain, 0)
            self._initial_tree(X, seed)
            module.pretraining = False
            self._run_phase(net, X, "train", self.n_epochs, self.kl_anneal_epochs)
        self.history_ = [{k: v for k, v in row.items() if k != "batches"} for row in net.history]
        self._build_tree(X)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _initial_tree(self, X, seed):
        """Recursive k-means of the embeddings; every node's Gaussian from its subtree's embeddings."""
        module = self.net_.module_
        emb = self._infer(X, lambda m, x: m.encode(x)[0])
        floor = MIN_VAR * emb.var(0).mean()
        k = self.init_branching
        if k is None:
            k = max(1, int(np.floor((self.max_leaves // 2) ** (1 / (self.max_depth - 1)) + 1e-9)))
        k = min(k, int(np.floor(self.max_leaves ** (1 / (self.max_depth - 1)) + 1e-9)))

        def gaussian(rows):
            return emb[rows].mean(0), np.maximum(emb[rows].var(0), floor)

        with torch.no_grad():
            mean, var = gaussian(slice(None))
            module.node_mean[0] = torch.as_tensor(mean)
            module.node_logvar[0] = torch.as_tensor(np.log(var))
        members = {0: np.arange(X.shape[0])}
        for _ in range(1, self.max_depth):
            children = {}
            for node, rows in members.items():
                n_clusters = min(k, len(rows))
                labels = (KMeans(n_clusters, n_init=3, random_state=seed).fit_predict(emb[rows])
                          if n_clusters > 1 else np.zeros(len(rows), dtype=int))
                for c in range(n_clusters):
                    child_rows = rows[labels == c]
                    children[module.add_node(node, *gaussian(child_rows))] = child_rows
            members = children
        with torch.no_grad():
            leaf_var = module.node_logvar[list(members)].exp().mean(0)
            # q(z | x) starts as tight as the leaves (pre-training left its variance untrained)
            module.z_head.weight[self.latent_dim:] = 0.0
            module.z_head.bias[self.latent_dim:] = torch.log(torch.expm1(leaf_var))
            # an internal node is as tight as its children, on average
            for node in sorted(module.alive, key=lambda v: -module.level[v]):
                if module.kids[node]:
                    module.node_logvar[node] = module.node_logvar[module.kids[node]].exp().mean(0).log()
        module.refresh()

    def _posteriors(self, X):
        """q(path | x, l = L) (n, n_full), q(level | x) (n, L) and E[eta | x] (n, L) at the posterior means."""
        n_full, L = self.net_.module_.n_full, self.max_depth

        def fn(m, x):
            out = m.infer(x)
            return torch.cat([out["leaf"], out["omega"], out["eta"]], 1)
        out = self._infer(X, fn)
        return out[:, :n_full], out[:, n_full:n_full + L], out[:, n_full + L:]

    def _build_tree(self, X):
        """``tree_`` (nodes on the full paths holding training samples, by level), ``labels_``."""
        module = self.net_.module_
        S, _, _ = self._posteriors(X)
        path_of_sample = S.argmax(1)
        used = np.flatnonzero(np.bincount(path_of_sample, minlength=module.n_full))
        full_paths = module.full_paths.cpu().numpy()
        nodes = sorted(set(full_paths[used].ravel()), key=lambda v: (module.level[v], v))
        self._module_node_ = np.array(nodes)
        self._tree_id_ = np.full(module.capacity, -1)  # module slot -> node of tree_
        self._tree_id_[nodes] = np.arange(len(nodes))
        parent = np.concatenate([[-1], self._tree_id_[np.asarray(module.parent)[nodes[1:]]]])
        self.tree_ = ClusterTree.from_sample_nodes(parent, self._tree_id_[full_paths[path_of_sample, -1]])
        path_of_leaf = np.full(len(nodes), -1)
        path_of_leaf[self._tree_id_[full_paths[used, -1]]] = used
        self._label_paths_ = path_of_leaf[self.tree_.label_to_node]
        path_to_label = np.full(module.n_full, -1)
        path_to_label[self._label_paths_] = np.arange(len(self._label_paths_))
        self.labels_ = path_to_label[path_of_sample]

    # ---- inference ----------------------------------------------------------------------
    def predict_proba(self, X):
        """Leaf probabilities q(path | x, l = L), renormalised over the labelled leaves (choice 9).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
            Column ``j`` is the leaf with label ``j`` (``tree_.label_to_node[j]``); rows sum to 1.
        """
        X = self._validate_X(X)
        probs = self._posteriors(X)[0][:, self._label_paths_]
        return probs / np.maximum(probs.sum(1, keepdims=True), np.finfo(probs.dtype).tiny)

    def predict(self, X):
        """Label of the most probable full path (leaf) of each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Consecutive cluster labels ``0 .. n_clusters - 1``.
        """
        return self.predict_proba(X).argmax(1)

    def apply(self, X):
        """Tree node (in ``tree_``) at each sample's most probable (path, level) pair.

        Samples may sit at internal nodes: every node of HCRL generates embeddings.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        X = self._validate_X(X)
        S, omega, _ = self._posteriors(X)
        paths = self._label_paths_[S[:, self._label_paths_].argmax(1)]
        module_nodes = self.net_.module_.full_paths.cpu().numpy()[paths, omega.argmax(1)]
        return self._tree_id_[module_nodes]

    def transform(self, X):
        """Posterior mean of ``z`` or, with ``transform_features="level_proportion"``, ``E[eta | x]``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, latent_dim) or (n_samples, max_depth)
            The level proportion ``softmax(mu~_eta)`` rows sum to 1 (root level first).

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
        return self._posteriors(X)[2]

    def score_samples(self, X):
        """Per-sample ELBO in nats (higher is better) at the posterior means (deterministic).

        The global terms (sticks, HCRL1's level proportion) are left out.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        X = self._validate_X(X)
        return self._infer(X, lambda m, x: -sum(m(x).values()))

    def log_likelihood(self, X, n_samples=100):
        """Importance-sampled estimate of ``log p(x)`` in nats (the paper's NLL is its negative mean).

        ``log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)`` and the
        prior node mixture of choice 7 in the class docstring. Seeded by ``random_state``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        n_samples : int, default=100
            ``K``, importance samples per data point.

        Returns
        -------
        ndarray of shape (n_samples,)

        Raises
        ------
        ValueError
            If ``n_samples < 1``.
        """
        X = self._validate_X(X)
        self._check_sample_args(n_samples)
        with self._seeded():
            return self._infer(X, lambda m, x: m.log_likelihood(x, n_samples))

    def sample(self, n_samples=1, node=None):
        """Generate samples from one node's Gaussian, or from the whole prior (paper Fig. 4).

        Parameters
        ----------
        n_samples : int, default=1
        node : int, optional
            Node id of ``tree_``; None draws the node from the prior mixture of all nodes.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            Decoder means (probabilities for the Bernoulli likelihood).

        Raises
        ------
        ValueError
            If ``node`` is not a node of ``tree_`` or ``n_samples < 1``.
        """
        self._check_sample_args(n_samples, node)
        module_node = None if node is None else int(self._module_node_[node])
        with self._seeded(), self._inference_module() as module:
            return module.generate(n_samples, module_node).cpu().numpy()
