"""Behavioural tests of the HCRL estimator.

What every model promises (not-fitted errors, pickling, refits, sparse input, ``sample``'s
arguments, ``apply`` on ``predict``'s path, ...) is tested in test_contract.py and
scikit-learn's own checks in test_common.py; this file tests what is HCRL's. Tiny fits (the
planted hierarchy, 300 samples, a few epochs) on the CPU, where an int ``random_state``
makes every fit reproducible; fitted models are shared by module fixtures.
"""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import digamma
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_hierclust import HCRL
from sk_hierclust._testing import FAST_PARAMS, QUICK_PARAMS
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, dendrogram_purity_scorer
from sk_hierclust.models.hcrl import HCRLModule, TreeDynamics
from sk_hierclust.nn.losses import expected_gaussian_loglik, kl_beta

FAST = FAST_PARAMS[HCRL]
QUICK = {**FAST, **QUICK_PARAMS[HCRL]}

# Planted hierarchy (4 blobs in 2 super-clusters), unscaled (the Gaussian likelihood):
# measured for random_state 0..5, the leaves recover the 4 sub-clusters (accuracy 1.0), the
# depth-1 nodes the 2 super-clusters, and DP on apply is 1.0; the tests use seed 0.
# Scaled to [0, 1] (the Bernoulli likelihood, weak on 16 continuous features) the pre-trained
# VAE's posterior nearly collapses (KL 0.4-0.8 nats) and the leaves only separate the
# super-clusters (2 leaves, seeds 0-3).
PLANTED_PARAMS = dict(max_depth=2, max_leaves=4, init_branching=2, hidden_dims=(64, 32), latent_dim=4,
                      n_epochs=5, n_epochs_pretrain=20, lock_epochs=20, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def planted_gaussian(planted_raw):
    return planted_raw[0].astype(np.float32), planted_raw[1]


@pytest.fixture(scope="module")
def planted_model(planted_gaussian):
    return HCRL(**PLANTED_PARAMS).fit(planted_gaussian[0])


def small_module(n_levels=3, capacity=10, local_eta=True, posterior="joint"):
    return HCRLModule(6, 2, n_levels, capacity, "gaussian", "mlp", None, (8,), local_eta, 1.0, 1.0, posterior)


# ---- known answers of the pieces -------------------------------------------------------------
def test_expected_gaussian_loglik_matches_per_pair_formula():
    rng = np.random.RandomState(0)
    mean, var = torch.tensor(rng.normal(size=(5, 3))), torch.tensor(rng.uniform(0.1, 2, size=(5, 3)))
    node_mean, node_logvar = torch.tensor(rng.normal(size=(4, 3))), torch.tensor(rng.normal(size=(4, 3)))
    got = expected_gaussian_loglik(mean, var, node_mean, node_logvar).numpy()
    for n in range(5):
        for i in range(4):
            s2 = np.exp(node_logvar[i].numpy())
            want = np.sum(-0.5 * np.log(2 * np.pi * s2) - (var[n].numpy() + (mean[n] - node_mean[i]).numpy() ** 2)
                          / (2 * s2))
            assert_allclose(got[n, i], want, rtol=1e-10)


def test_kl_beta_matches_torch_distributions():
    a, b = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64), torch.tensor([1.5, 0.7, 3.0], dtype=torch.float64)
    a0, b0 = torch.ones(3, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)
    want = torch.distributions.kl_divergence(torch.distributions.Beta(a, b), torch.distributions.Beta(a0, b0))
    assert_allclose(kl_beta(a, b, a0, b0).numpy(), want.numpy(), rtol=1e-10)
    assert_allclose(kl_beta(a, b, 1.0, 2.0).numpy(), want.numpy(), rtol=1e-10)  # the scalar prior HCRL passes


def test_path_log_prior_is_nested_stick_breaking():
    module = small_module()
    zero = np.zeros(2)
    n1 = module.add_node(0, zero, np.ones(2))
    n2 = module.add_node(0, zero, np.ones(2))
    leaf_a, leaf_b = module.add_node(n1, zero, np.ones(2)), module.add_node(n1, zero, np.ones(2))
    leaf_c = module.add_node(n2, zero, np.ones(2))
    module.refresh()
    with torch.no_grad():
        module.stick_log_a.copy_(torch.linspace(-0.5, 0.5, module.capacity))
        module.stick_log_b.copy_(torch.linspace(0.3, -0.2, module.capacity))
        got = dict(zip(module.ends, module.path_log_prior().numpy()))
    a, b = module.stick_log_a.exp().detach().numpy(), module.stick_log_b.exp().detach().numpy()
    elog_v, elog_1mv = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
    new = digamma(1.0) - digamma(2.0)  # a new node's stick, gamma = 1
    # E log pi(child) = E log v_child + sum over earlier siblings of E log(1 - v)
    assert_allclose(got[leaf_a], elog_v[n1] + elog_v[leaf_a], rtol=1e-5)
    assert_allclose(got[leaf_b], elog_v[n1] + elog_v[leaf_b] + elog_1mv[leaf_a], rtol=1e-5)
    assert_allclose(got[leaf_c], elog_v[n2] + elog_1mv[n1] + elog_v[leaf_c], rtol=1e-5)
    # inner paths: the rest of the stick of the end node, then new nodes' sticks down to the leaves' level
    assert_allclose(got[0], elog_1mv[n1] + elog_1mv[n2] + 2 * new, rtol=1e-5)
    assert_allclose(got[n1], elog_v[n1] + elog_1mv[leaf_a] + elog_1mv[leaf_b] + new, rtol=1e-5)
    assert module.n_full == 3 and set(module.ends[:3]) == {leaf_a, leaf_b, leaf_c}


def test_grow_and_remove_leaf_keep_a_valid_tree():
    module = small_module(n_levels=4)
    new = module.add_branch(0, np.zeros(2), np.ones(2))
    assert [module.level[v] for v in new] == [1, 2, 3]
    other = module.add_branch(new[0], np.ones(2), np.ones(2))  # a sibling below depth 1
    assert [module.level[v] for v in other] == [2, 3]
    module.refresh()
    assert module.n_full == 2
    removed = module.remove_leaf(other[-1])  # its parent has no other child: goes too
    assert removed == other[::-1] and module.kids[new[0]] == [new[1]]
    module.refresh()
    assert module.n_full == 1 and module.paths[0].tolist() == [0, *new]


@pytest.mark.parametrize("posterior", ["joint", "mean_field"])
def test_assignments_are_normalised_and_follow_the_likelihood(posterior):
    module = small_module(posterior=posterior)
    ell = torch.tensor([[[0.0, -50.0], [0.0, 0.0]]])  # path 0's deep node fits badly
    q = module.assign(ell, torch.zeros(2), torch.log(torch.tensor([[0.5, 0.5]])))
    assert q.shape == (1, 2, 2)
    assert_allclose(q.sum((1, 2)).numpy(), 1.0)
    assert q.sum(2)[0, 1] > 0.99 - (posterior == "joint") * 0.34  # joint: (0, root) keeps a third
    assert q[0, 0, 1] < 1e-10  # never the badly fitting node


def tiny_assignment_problem(n_samples=4, seed=0, posterior="mean_field"):
    """A float64 module with 3 levels (3 full paths and 3 inner paths, J = 2) and its ELBO pieces."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    module = small_module(posterior=posterior).double()
    n1, n2 = (module.add_node(0, rng.normal(size=2), rng.uniform(0.5, 2, size=2)) for _ in range(2))
    for parent in (n1, n1, n2):
        module.add_node(parent, rng.normal(size=2), rng.uniform(0.5, 2, size=2))
    module.refresh()
    with torch.no_grad():
        module.stick_log_a.copy_(torch.tensor(rng.normal(scale=0.5, size=module.capacity)))
        module.stick_log_b.copy_(torch.tensor(rng.normal(scale=0.5, size=module.capacity)))
    module.pretraining = False
    module.eval()  # the encoder's batch norm in eval mode: forward(x) sees the same q(z | x)
    x = torch.tensor(rng.normal(size=(n_samples, 6)))
    with torch.no_grad():
        mean, var = module.encode(x)
        ell = expected_gaussian_loglik(mean, var, module.node_mean, module.node_logvar)[:, module.paths]
        elog_prior = module.path_log_prior()
        elog_eta = torch.log_softmax(module.level_posterior(x)[0], 1)
    assert ell.shape == (n_samples, 6, 3) and ell.dtype == torch.float64
    return module, x, ell, elog_prior, elog_eta


def assignment_elbo(module, ell, elog_prior, elog_eta, S, omega=None):
    """The part of each sample's ELBO that depends on q(path, level): minus the module's own terms.

    ``S`` is ``q(path)`` (then ``omega`` is ``q(level)`` and q their product) or, without
    ``omega``, the joint ``q`` (B, P, L).
    """
    q = S if omega is None else S.unsqueeze(2) * omega.unsqueeze(1)
    terms = module.assignment_terms(ell, elog_prior, elog_eta, q)
    return -(terms["kl_z"] + terms["kl_path"] + terms["kl_level"])


@pytest.mark.parametrize("posterior", ["joint", "mean_field"])
def test_assignment_terms_are_the_terms_of_the_loss(posterior):
    """The objective of the tests below is what forward's loss computes (eval mode: no draw)."""
    module, x, ell, elog_prior, elog_eta = tiny_assignment_problem(posterior=posterior)
    with torch.no_grad():
        terms = module(x)
        q = module.assign(ell, elog_prior, elog_eta)
        mine = module.assignment_terms(ell, elog_prior, elog_eta, q)
        var = module.encode(x)[1]
    entropy_z = 0.5 * (np.log(2 * np.pi) + 1 + var.log()).sum(1)
    assert_allclose(terms["kl_z"].numpy(), (mine["kl_z"] - entropy_z).numpy(), rtol=1e-12)
    for key in ("kl_path", "kl_level"):
        assert_allclose(terms[key].numpy(), mine[key].numpy(), rtol=1e-12)
    # the terms written out: E[log p(z | path, level)] under q(path, level), and the two KLs
    q, ell, elog_prior, elog_eta = (t.numpy() for t in (q, ell, elog_prior, elog_eta))
    S, omega = q.sum(2), q.sum(1)
    n, P, L = ell.shape
    for i in range(n):
        want = -sum(q[i, p, lv] * ell[i, p, lv] for p in range(P) for lv in range(L))
        assert_allclose(float(mine["kl_z"][i]), want, rtol=1e-12)
        want = sum(S[i, p] * (np.log(S[i, p]) - elog_prior[p]) for p in range(P))
        assert_allclose(float(mine["kl_path"][i]), want, rtol=1e-12)
        # E_q[log q(level | path)] - E_q[log eta]; the mean field's KL(omega || exp E[log eta])
        want = sum(q[i, p, lv] * np.log(q[i, p, lv] / S[i, p]) for p in range(P) for lv in range(L))
        want -= sum(omega[i, lv] * elog_eta[i, lv] for lv in range(L))
        assert_allclose(float(mine["kl_level"][i]), want, rtol=1e-12)
        if posterior == "mean_field":
            want = sum(omega[i, lv] * (np.log(omega[i, lv]) - elog_eta[i, lv]) for lv in range(L))
            assert_allclose(float(mine["kl_level"][i]), want, rtol=1e-12)


def simplex_perturbations(optimum, rng, n_draws=1000):
    """``n_draws`` points of the simplex around and away from ``optimum`` (K,): Dirichlet mixtures."""
    draws = rng.dirichlet(np.full(optimum.shape[0], 0.5), size=n_draws)
    t = np.concatenate([10.0 ** rng.uniform(-6, 0, size=n_draws - 1), [1.0]])[:, None]
    return (1 - t) * optimum + t * draws


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_path_update_is_the_argmax_of_the_elbo_in_S(seed):
    module, _, ell, elog_prior, elog_eta = tiny_assignment_problem(seed=seed)
    rng = np.random.RandomState(seed)
    omega = torch.tensor(rng.dirichlet(np.ones(3), size=ell.shape[0]))
    S = module.update_path(ell, elog_prior, omega)
    # (a) the softmax form derived independently: S_np ∝ exp(E[log p(p)] + sum_l omega_nl ell_npl)
    logits = elog_prior.numpy()[None] + np.einsum("npl,nl->np", ell.numpy(), omega.numpy())
    want = np.exp(logits - logits.max(1, keepdims=True))
    assert_allclose(S.numpy(), want / want.sum(1, keepdims=True), rtol=1e-12)
    # (b) no point of the simplex has a larger ELBO, omega fixed
    best = assignment_elbo(module, ell, elog_prior, elog_eta, S, omega).numpy()
    for i in range(ell.shape[0]):
        others = torch.tensor(simplex_perturbations(S[i].numpy(), rng))
        k = others.shape[0]
        value = assignment_elbo(module, ell[i].expand(k, -1, -1), elog_prior, elog_eta[i].expand(k, -1),
                                others, omega[i].expand(k, -1)).numpy()
        assert value.max() <= best[i] + 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_level_update_is_the_argmax_of_the_elbo_in_omega(seed):
    module, _, ell, elog_prior, elog_eta = tiny_assignment_problem(seed=seed)
    rng = np.random.RandomState(seed)
    S = torch.tensor(rng.dirichlet(np.ones(ell.shape[1]), size=ell.shape[0]))
    omega = module.update_level(ell, elog_eta, S)
    # (a) omega_nl ∝ exp(E[log eta_nl] + sum_p S_np ell_npl)
    logits = elog_eta.numpy() + np.einsum("npl,np->nl", ell.numpy(), S.numpy())
    want = np.exp(logits - logits.max(1, keepdims=True))
    assert_allclose(omega.numpy(), want / want.sum(1, keepdims=True), rtol=1e-12)
    # (b) no point of the simplex has a larger ELBO, S fixed
    best = assignment_elbo(module, ell, elog_prior, elog_eta, S, omega).numpy()
    for i in range(ell.shape[0]):
        others = torch.tensor(simplex_perturbations(omega[i].numpy(), rng))
        k = others.shape[0]
        value = assignment_elbo(module, ell[i].expand(k, -1, -1), elog_prior, elog_eta[i].expand(k, -1),
                                S[i].expand(k, -1), others).numpy()
        assert value.max() <= best[i] + 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_joint_update_is_the_argmax_of_the_elbo_over_all_pairs(seed):
    module, _, ell, elog_prior, elog_eta = tiny_assignment_problem(seed=seed, posterior="joint")
    rng = np.random.RandomState(seed)
    q = module.assign(ell, elog_prior, elog_eta)
    best = assignment_elbo(module, ell, elog_prior, elog_eta, q).numpy()
    # (a) the maximum is the log normaliser: log sum_pl exp(E[log p(p)] + E[log eta_l] + ell_pl)
    logits = elog_prior.numpy()[None, :, None] + elog_eta.numpy()[:, None, :] + ell.numpy()
    flat = logits.reshape(len(logits), -1)
    top = flat.max(1)
    assert_allclose(best, top + np.log(np.exp(flat - top[:, None]).sum(1)), rtol=1e-12)
    # (b) no point of the simplex over the (path, level) pairs has a larger ELBO
    n, P, L = ell.shape
    for i in range(n):
        others = torch.tensor(simplex_perturbations(q[i].flatten().numpy(), rng)).view(-1, P, L)
        k = others.shape[0]
        value = assignment_elbo(module, ell[i].expand(k, -1, -1), elog_prior, elog_eta[i].expand(k, -1),
                                others).numpy()
        assert value.max() <= best[i] + 1e-10
    # (c) so it is at least the mean field's optimum (a product is one such point)
    module.posterior = "mean_field"
    mean_field = assignment_elbo(module, ell, elog_prior, elog_eta, module.assign(ell, elog_prior, elog_eta))
    assert np.all(best >= mean_field.numpy() - 1e-12) and np.any(best > mean_field.numpy() + 1e-6)


def global_elbo(module, q, mean, var, node_mean, node_logvar, log_a, log_b):
    """The ELBO's terms in the node Gaussians and the sticks, summed over the samples of ``q``.

    Evaluated by the module's own ``path_log_prior`` (tested above) with the sticks swapped in.
    """
    saved = module.stick_log_a, module.stick_log_b
    module.stick_log_a, module.stick_log_b = log_a, log_b
    try:
        ell = expected_gaussian_loglik(mean, var, node_mean, node_logvar)[:, module.paths]
        a, b = module.sticks()
        kl_v = (kl_beta(a, b, 1.0, module.gamma) * module.has_stick).sum()
        return (q * ell).sum() + (q.sum(2) * module.path_log_prior()).sum() - kl_v
    finally:
        module.stick_log_a, module.stick_log_b = saved


@pytest.mark.parametrize("seed", [0, 1])
def test_global_update_is_the_argmax_of_the_elbo_in_the_nodes_and_sticks(seed):
    """With step 1 and the whole training set as the batch: the exact coordinate update."""
    module, x, ell, elog_prior, elog_eta = tiny_assignment_problem(n_samples=40, seed=seed, posterior="joint")
    with torch.no_grad():
        mean, var = module.encode(x)
        q = module.assign(ell, elog_prior, elog_eta)
    module.n_train = x.shape[0]
    module.var_floor.fill_(1e-12)
    module.update_globals(q, mean, var, step=1.0)
    live = module.has_stick.bool()
    live[0] = True
    params = [t.clone().requires_grad_(True) for t in (module.node_mean, module.node_logvar,
                                                        module.stick_log_a, module.stick_log_b)]
    value = global_elbo(module, q, mean, var, *params)
    grads = torch.autograd.grad(value, params)
    for grad in grads:  # a stationary point in every live node's parameters ...
        assert_allclose(grad[live].numpy(), 0.0, atol=1e-9)
    rng = np.random.RandomState(seed)
    for _ in range(20):  # ... and a maximum: random moves lower the ELBO
        moved = [(t + torch.tensor(rng.normal(scale=0.1, size=t.shape)) * live.view(-1, *[1] * (t.dim() - 1))).detach()
                 for t in params]
        assert global_elbo(module, q, mean, var, *moved) < value
    # the Gaussians are the moment matches of q(node | x): node k's weighted mean of mu~
    r = (q.flatten(1) @ module.pair_node)[:, 0]
    assert_allclose(module.node_mean[0].numpy(), (r[:, None] * mean).sum(0).numpy() / r.sum().item(), rtol=1e-10)


def test_set_node_statistics_give_back_the_node():
    module = small_module().double()
    leaf = module.add_node(0, np.array([1.0, -2.0]), np.array([0.5, 2.0]), mass=3.0)
    module.refresh()
    before = [t.clone() for t in (module.node_mean, module.node_logvar, module.stick_log_a, module.stick_log_b)]
    module.apply_statistics()
    for old, new in zip(before, (module.node_mean, module.node_logvar, module.stick_log_a, module.stick_log_b)):
        assert_allclose(new.numpy(), old.numpy(), rtol=1e-12)
    assert_allclose(module.sticks()[0][leaf].item(), 4.0)  # Beta(1 + 3 samples through it, gamma + 0)


def test_alternating_updates_never_decrease_the_elbo():
    module, _, ell, elog_prior, elog_eta = tiny_assignment_problem(n_samples=8)
    omega = torch.softmax(elog_eta, 1)
    S = module.update_path(ell, elog_prior, omega)
    values = [assignment_elbo(module, ell, elog_prior, elog_eta, S, omega)]
    for _ in range(5):
        omega = module.update_level(ell, elog_eta, S)
        values.append(assignment_elbo(module, ell, elog_prior, elog_eta, S, omega))
        S = module.update_path(ell, elog_prior, omega)
        values.append(assignment_elbo(module, ell, elog_prior, elog_eta, S, omega))
    values = torch.stack(values).numpy()
    assert np.all(np.diff(values, axis=0) >= -1e-12)


@pytest.mark.parametrize("local_eta", [True, False])
def test_terms_declared_and_global_terms_only_in_training(local_eta):
    module = small_module(local_eta=local_eta)
    module.add_branch(0, np.zeros(2), np.ones(2))
    module.refresh()
    x = torch.randn(4, 6)
    assert set(module(x)) == {"rec", "kl_z"}  # pre-training: a plain VAE
    module.pretraining = False
    local = {"rec", "kl_z", "kl_path", "kl_level"} | ({"kl_eta"} if local_eta else set())
    assert set(module.eval()(x)) == local  # what score_samples sums: no global term
    assert set(module.train()(x)) == local | {"kl_eta", "kl_v"}
    assert set(module.elbo_terms) == local | {"kl_eta", "kl_v"}
    assert set(module.annealed_terms) == set(module.elbo_terms) - {"rec"}


def test_prune_and_merge():
    module = small_module(n_levels=2)
    leaves = [module.add_node(0, np.full(2, float(i)), np.full(2, 1.0 + i), mass) for i, mass in enumerate((3, 1, 1))]
    module.refresh()
    dynamics = TreeDynamics(1, 0, 0.05, 0.9, 5, seed=0).initialize()
    share = np.array([0.6, 0.39, 0.01])
    assert dynamics._prune(module, share) == f"prune:{leaves[2]}"
    module.refresh()
    assert module.n_full == 2
    # two paths with identical posterior vectors merge; the lighter joins the heavier
    stats = {"gram": np.ones((2, 2)), "mass": np.array([3.0, 1.0, 0.0])}
    assert dynamics._merge(module, stats) == f"merge:{leaves[1]}->{leaves[0]}"
    # the moment-matched Gaussian of both: 3 samples of N(0, 1) and 1 of N(1, 2)
    assert_allclose(module.node_mean[leaves[0]].numpy(), [0.25, 0.25], rtol=1e-6)
    assert_allclose(module.node_logvar[leaves[0]].exp().numpy(), [(3 * 1 + 1 * 3) / 4 - 0.25 ** 2] * 2, rtol=1e-6)
    assert_allclose(module.sticks()[0][leaves[0]].item(), 1 + 4)
    module.refresh()
    assert module.n_full == 1
    stats = {"gram": np.ones((1, 1)), "mass": np.ones(2)}
    assert dynamics._prune(module, np.zeros(1)) is None and dynamics._merge(module, stats) is None


class _History:
    def __init__(self):
        self.row = {}

    def record(self, key, value):
        self.row[key] = value


def test_epoch_statistics_of_the_tree_match_a_direct_computation():
    module = small_module(n_levels=3)
    n1, n2 = (module.add_node(0, np.zeros(2), np.ones(2)) for _ in range(2))
    for parent in (n1, n1, n2, n2):
        module.add_node(parent, np.zeros(2), np.ones(2))
    module.refresh()
    assert module.n_full == 4 and module.paths.shape[0] == 7
    rng = np.random.RandomState(0)
    batches = []
    for n in (5, 3):  # two batches: the statistics sum over the epoch
        S = torch.tensor(rng.dirichlet([3.0, 1.0, 0.5, 0.02, 0.3, 0.3, 0.3], size=n))
        omega = torch.tensor(rng.dirichlet(np.ones(3), size=n))
        module._accumulate(S, omega, torch.zeros(n, 2), torch.ones(n, 2))
        batches.append((S.numpy(), omega.numpy()))
    net = type("Net", (), {"module_": module, "history": _History()})()
    module.pretraining = False
    TreeDynamics(100, 100, 0.01, 0.9, 4, seed=0).initialize().on_epoch_end(net)  # no GROW/PRUNE/MERGE
    row = net.history.row
    S = np.concatenate([b[0] for b in batches])
    omega = np.concatenate([b[1] for b in batches])
    mass = S[:, :4].sum(0)
    p = mass / mass.sum()
    assert row["tree_event"] == "" and row["n_leaves"] == 4
    assert_allclose(row["max_path_share"], p.max(), rtol=1e-12)
    assert_allclose(row["path_entropy"], -np.sum(p * np.log(p)), rtol=1e-12)
    assert row["n_used_paths"] == np.sum(p >= 0.01) == 3  # the 4th path's Dirichlet weight is 0.02
    assert_allclose(row["internal_fraction"], np.mean(omega.argmax(1) < 2))
    assert row["collapsed"] is False
    # one path with all the mass: entropy 0, one used path, collapsed, no sample above the leaves
    module.reset_statistics()
    module._accumulate(torch.tensor([[1.0] + [0.0] * 6]), torch.tensor([[0.0, 0.0, 1.0]]),
                       torch.zeros(1, 2), torch.ones(1, 2))
    TreeDynamics(100, 100, 0.01, 0.9, 4, seed=0).initialize().on_epoch_end(net)
    assert row["path_entropy"] == 0.0 and row["n_used_paths"] == 1 and row["collapsed"]
    assert row["internal_fraction"] == 0.0


# ---- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("param, value", [("max_depth", 0), ("max_leaves", 1), ("latent_dim", 0),
                                          ("n_epochs_pretrain", -1), ("init_branching", 0)])
def test_invalid_parameters(planted, param, value):
    with pytest.raises(InvalidParameterError, match=param):
        HCRL(**{**QUICK, param: value}).fit(planted[0])


@pytest.mark.parametrize("max_depth, max_leaves, init_branching, n_leaves", [
    (2, 20, None, 16),  # default: the largest k with k ** max_depth <= max_leaves
    (1, 20, None, 20),
    (3, 20, None, 8),
    (2, 20, 5, 16),  # capped at the largest k with k ** max_depth <= max_leaves
])
def test_initial_tree_size(planted, max_depth, max_leaves, init_branching, n_leaves):
    model = HCRL(**{**QUICK, "max_depth": max_depth, "max_leaves": max_leaves, "init_branching": init_branching,
                    "grow_every": 100, "lock_epochs": 100}).fit(planted[0])
    (row,) = [row for row in model.history_ if row["phase"] == "train"]
    assert row["n_leaves"] == n_leaves and row["tree_event"] == ""
    module = model.net_.module_
    assert module.n_levels == max_depth + 1 and module.capacity == 1 + max_depth * max_leaves


# ---- the fitted estimator ----------------------------------------------------------------------
def test_planted_hierarchy_is_recovered(planted_gaussian, planted_model):
    X, y = planted_gaussian
    tree = planted_model.tree_
    assert tree.n_leaves == 4 and tree.max_depth == 2
    assert cluster_accuracy(y, planted_model.labels_) == 1.0
    super_node = tree.parent[tree.label_to_node[planted_model.labels_]]
    assert cluster_accuracy(y // 2, super_node) == 1.0
    # apply may stop a few samples at the internal node above their (right) leaf
    assert dendrogram_purity(y, tree, planted_model.apply(X)) >= 0.99


def test_apply_places_samples_at_their_most_probable_level(planted_gaussian, planted_model):
    X, _ = planted_gaussian
    model = planted_model
    assert_array_equal(model.predict(X), model.labels_)
    _, omega, _ = model._posteriors(X)
    nodes = model.apply(X)
    assert_array_equal(model.tree_.depth[nodes], omega.argmax(1))
    assert model.get_feature_names_out().tolist() == [f"hcrl{i}" for i in range(model.latent_dim)]


def test_history_of_the_two_phases(planted_model):
    history = planted_model.history_
    phases = [row["phase"] for row in history]
    assert phases == ["pretrain"] * PLANTED_PARAMS["n_epochs_pretrain"] + ["train"] * PLANTED_PARAMS["n_epochs"]
    pretrain = [row for row in history if row["phase"] == "pretrain"]
    train = [row for row in history if row["phase"] == "train"]
    # tree dynamics and the prior's terms only after pre-training (a plain VAE: rec and kl_z)
    assert all({"rec", "kl_z"} <= set(row) for row in pretrain)
    assert not any({"tree_event", "n_leaves", "kl_path"} & set(row) for row in pretrain)
    tree_keys = {"tree_event", "n_leaves", "max_path_share", "path_entropy", "n_used_paths", "internal_fraction",
                 "collapsed", "kl_v"}
    assert all(tree_keys <= set(row) for row in train)
    for row in train:  # the epoch's statistics describe the tree before the epoch's event
        assert 0 <= row["path_entropy"] <= np.log(PLANTED_PARAMS["max_leaves"]) + 1e-9
        assert 1 <= row["n_used_paths"] <= PLANTED_PARAMS["max_leaves"] and 0 <= row["internal_fraction"] <= 1
        assert row["max_path_share"] >= np.exp(-row["path_entropy"]) - 1e-9  # max p >= exp(-H)
    # the default KL ramp is half the training phase: 5 // 2 = 2 epochs of 10 batches
    assert [row["kl_weight"] for row in train] == pytest.approx([0.45, 0.95, 1.0, 1.0, 1.0])


def test_level_proportion_features(planted_gaussian, planted_model):
    X, _ = planted_gaussian
    model = pickle.loads(pickle.dumps(planted_model)).set_params(transform_features="level_proportion")
    eta = model.transform(X)
    assert eta.shape == (len(X), PLANTED_PARAMS["max_depth"] + 1)
    assert_allclose(eta.sum(1), 1.0)
    assert model.get_feature_names_out().shape == (3,)
    hcrl1 = HCRL(**{**FAST, "level_proportion": "global", "n_epochs": 1}).fit(X[:64])
    assert not hasattr(hcrl1.net_.module_, "eta_encoder")
    with pytest.raises(ValueError, match="level_proportion='local'"):
        hcrl1.set_params(transform_features="level_proportion").transform(X)


def test_importance_sampled_log_likelihood(planted_gaussian, planted_model):
    X, _ = planted_gaussian
    one = planted_model.log_likelihood(X, n_importance=1)
    many = planted_model.log_likelihood(X, n_importance=30)
    assert many.shape == (len(X),) and np.all(np.isfinite(many))
    assert many.mean() > one.mean()  # the importance-weighted bound tightens with more samples
    assert_array_equal(many, planted_model.log_likelihood(X, n_importance=30))  # seeded
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="n_importance"):
            planted_model.log_likelihood(X, n_importance=bad)


def test_collapsed_tree_is_reported_and_predicts_valid_labels():
    X = (0.5 + np.random.RandomState(0).normal(scale=1e-3, size=(64, 6))).astype(np.float32)
    model = HCRL(**{**FAST, "prune_threshold": 0.45, "lock_epochs": 0, "grow_every": 100, "n_epochs": 4}).fit(X)
    assert any(row.get("collapsed") for row in model.history_)
    labels = model.predict(X)
    assert labels.min() == 0 and set(labels) == set(range(model.tree_.n_leaves))


def test_grow_adds_a_branch_where_an_inner_path_holds_the_mass():
    module = small_module(n_levels=3)
    (a, b) = module.add_branch(0, np.zeros(2), np.ones(2), mass=10.0)
    module.refresh()
    inner_a = module.ends.index(a)  # the inner path "a new branch below a"
    n_paths = len(module.ends)
    mass = np.zeros(n_paths)
    mass[inner_a] = 6.0
    stats = {"mass": mass, "sum_mean": np.zeros((n_paths, 2)), "sum_sq": np.zeros((n_paths, 2))}
    stats["sum_mean"][inner_a] = [6.0, 12.0]
    stats["sum_sq"][inner_a] = [6.0 * 2, 6.0 * 8]  # E[z^2] = (2, 8): variance (1, 4)
    dynamics = TreeDynamics(1, 0, 0.01, 0.9, max_leaves=2, seed=0).initialize()
    assert dynamics._grow(module, stats) == f"grow:{a}"  # the only path with mass is drawn
    (new,) = [v for v in module.kids[a] if v != b]
    assert module.level[new] == 2
    assert_allclose(module.node_mean[new].numpy(), [1.0, 2.0])
    assert_allclose(module.node_logvar[new].exp().numpy(), [1.0, 4.0], rtol=1e-6)
    assert_allclose(module.sticks()[0][new].item(), 1 + 6.0)  # 6 samples through the new branch
    module.refresh()
    assert module.n_full == 2
    stats = {"mass": np.ones(len(module.ends))}
    assert dynamics._grow(module, stats) is None  # max_leaves reached


def test_grid_search_with_pipeline_and_dendrogram_purity(planted):
    X, y = planted
    search = GridSearchCV(make_pipeline(MinMaxScaler(), HCRL(**{**FAST, "n_epochs": 1})),
                          {"hcrl__max_leaves": [2, 3]}, scoring=dendrogram_purity_scorer, cv=2)
    search.fit(X, y)
    # two leaves that separate the 2 super-clusters score 0.5, random leaves about 0.3
    assert search.best_score_ >= 0.5
    assert search.best_estimator_[-1].tree_.n_leaves <= search.best_params_["hcrl__max_leaves"]
