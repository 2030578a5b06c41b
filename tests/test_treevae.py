"""Behavioural tests of the TreeVAE estimator.

scikit-learn's own checks live in test_common.py and what every model promises (RNG left
untouched, not-fitted errors, pickling, identical refits, sparse input, ``sample``'s
arguments, ``apply``/``decision_path``, CUDA) in test_contract.py; this file tests what is
TreeVAE's own. All fits are tiny (a few hundred samples, a few epochs) and run on the CPU,
where an int ``random_state`` makes every fit bit-for-bit reproducible; the fitted models
are shared through module-scoped fixtures.
"""

import copy
import math
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from sk_hierclust import ClusterTree, TreeVAE
from sk_hierclust._testing import FAST_PARAMS, any_seed_recovers, make_config
from sk_hierclust.metrics import (
    cluster_accuracy,
    cluster_accuracy_scorer,
    dendrogram_purity,
    dendrogram_purity_scorer,
    leaf_purity,
    leaf_purity_scorer,
)
from sk_hierclust.models import treevae as treevae_module
from sk_hierclust.models.treevae import AUTHORS_SCHEDULE, NODE_HIDDEN, TreeVAEModule
from sk_hierclust.nn.augment import RandomAffine, affine_images
from sk_hierclust.nn.layers import take_nodes
from sk_hierclust.nn.losses import kl_bernoulli, kl_normal, negative_log_likelihood, nt_xent, split_normal

FAST = FAST_PARAMS[TreeVAE]

# Planted hierarchy: the fit of the module-scoped ``planted_model``. Its growth phases
# (8 epochs each) train on about 150 samples; one epoch of fine-tuning (``n_epochs=1``), so
# that the leaves are the ones the growth phases made. Measured for random_state 0..11 (one
# thread, fused Adam), with the split leaf's children starting from copies of its decoder
# (``split_decoders="copy"``): the root separates the two super-clusters for
# seeds 1, 3, 4, 5, 7, 10, 11 and the leaves recover the four sub-clusters (accuracy >= 0.9)
# for seeds 0, 2, 3, 5, 6, 9, 11; both hold for seeds 3, 5 and 11. With fresh decoders
# (``"fresh"``, the default) both hold for seeds 4, 7 and 11. Where the root is right the growth is not
# what fails: in seeds 1, 3 and 5 (fresh decoders) the grown tree is exact (DP 1.0) and the
# one epoch of fine-tuning merges two sibling leaves (seed 1 with 20 fine-tuning epochs: the
# decision KL falls from 0.91 to 0.56 nats, the negative ELBO only from 8.99 to 8.84). So
# this budget recovers the planted tree for about a quarter of the seeds; the tests use
# seed 11, which recovers it with both kinds of decoders.
# Float rounding differs between CPUs, and which seeds recover the tree with it: on an AVX-512
# AMD EPYC, seed 11 ends with 3 leaves (the super-clusters still exact), seed 7 recovers all
# four sub-clusters and seed 4 reaches accuracy 0.853. So the sub-cluster test asks that one
# of SUB_CLUSTER_SEEDS does (fitting the next only while none has).
SUB_CLUSTER_SEEDS = (11, 7, 4)
PLANTED_PARAMS = dict(max_leaves=4, max_depth=2, latent_dim=8, n_epochs_initial=6, n_epochs_grow=8,
                      n_epochs=1, batch_size=16, lr=2e-3, random_state=11)


@pytest.fixture(scope="module")
def planted_model(planted):
    X, _ = planted
    return TreeVAE(**PLANTED_PARAMS).fit(X)


@pytest.fixture(scope="module")
def fast_model(planted):
    """Fit the fast parameters of the common tests on the planted data."""
    X, _ = planted
    return TreeVAE(**FAST).fit(X)


@pytest.fixture(scope="module")
def tiny():
    """100 x 6 data in [0, 1] for the fits that only check structure or errors."""
    return np.random.RandomState(1).uniform(size=(100, 6)).astype(np.float32)


TINY = dict(latent_dim=2, n_epochs_initial=1, n_epochs_grow=1, n_epochs=1, batch_size=16, random_state=0)


def _module(splits=()):
    """Build an untrained module on 6 features (seeded, the global torch RNG untouched), split by hand."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = TreeVAEModule(6, 2, 3, "bernoulli", "mlp", hidden_dims=(16, 8))
        for leaf in splits:
            module.start_split(leaf)
            module.commit_split()
    return module


def _pruned_module():
    """Leaves 2, 4, 5, 6: the root's child 1 split into 3, 4 and 3 into 5, 6."""
    return _module(splits=(1, 3))


def _estimator_on(module, leaves, **params):
    """Wrap ``module`` in a TreeVAE whose training samples sit at the module nodes ``leaves``."""
    est = TreeVAE(**params)
    est.net_ = SimpleNamespace(module_=module)
    est._sample_leaves = lambda X: np.asarray(leaves)
    return est


# ---- 1. planted hierarchy --------------------------------------------------------------
def test_planted_first_split_separates_super_clusters(planted, planted_model):
    X, y = planted
    tree, nodes = planted_model.tree_, planted_model.apply(X)
    assert tree.max_depth == 2
    # the root's two children are the two super-clusters
    assert cluster_accuracy(y // 2, tree.cut(1)[nodes]) >= 0.95
    assert dendrogram_purity(y // 2, tree, nodes) >= 0.95
    # and no leaf mixes the two super-clusters
    assert leaf_purity(y // 2, planted_model.labels_) >= 0.95


def _recovers_sub_clusters(model, X, y):
    """The tree has the four planted sub-clusters as its leaves (accuracy, LP and DP >= 0.9)."""
    return (model.tree_.n_leaves == 4 and cluster_accuracy(y, model.labels_) >= 0.9
            and leaf_purity(y, model.labels_) >= 0.9 and dendrogram_purity(y, model.tree_, model.apply(X)) >= 0.9)


def test_planted_leaves_recover_sub_clusters(planted, planted_model):
    X, y = planted
    assert any_seed_recovers(planted_model, SUB_CLUSTER_SEEDS,
                             lambda seed: TreeVAE(**{**PLANTED_PARAMS, "random_state": seed}).fit(X),
                             lambda model: _recovers_sub_clusters(model, X, y))


def test_planted_samples_follow_their_node(planted, planted_model):
    """Samples generated through a child of the root look like the training data routed there."""
    X, y = planted
    tree, nodes = planted_model.tree_, planted_model.apply(X)
    first = tree.children[0]
    assert first.size == 2
    routed = tree.cut(1)[nodes]
    data_means = np.array([X[routed == tree.cut(1)[v]].mean(0) for v in first])
    for k, v in enumerate(first):
        generated = planted_model.sample(200, node=int(v)).mean(0)
        dist = np.linalg.norm(data_means - generated, axis=1)
        assert dist[k] < 0.5 * dist[1 - k]


# ---- 2. the estimator's outputs -----------------------------------------------------------
def test_predict_proba_is_the_routers_leaf_probability(planted, fast_model):
    """predict_proba: P(leaf | x) of eq. 12 (a per-node walk), columns in label order."""
    X, _ = planted
    proba = fast_model.predict_proba(X[:64])
    tree = fast_model.tree_
    with fast_model._inference_module() as module:
        x = torch.as_tensor(X[:64], dtype=torch.float64)
        reference = _reference_leaf_probabilities(module, module.bottom_up_features(x)).numpy().T
        slots = [module.leaf_slots.index(v) for v in fast_model._module_node_[tree.label_to_node]]
    assert tree.label_to_node.size == len(slots) == tree.n_leaves  # every leaf holds samples here
    assert_allclose(proba, reference[:, slots], rtol=1e-6, atol=1e-7)  # float32 outputs
    assert_array_equal(fast_model.predict(X), fast_model.labels_)  # labels_: the most probable leaf


def test_predict_proba_leaves_out_empty_leaves(planted, fast_model):
    """A leaf without training samples gets no column; the others are renormalised."""
    X, _ = planted
    model = copy.deepcopy(fast_model)
    tree = model.tree_
    empty = int(tree.label_to_node[0])
    nodes = np.where(model.apply(X) == empty, tree.label_to_node[1], model.apply(X))
    model.tree_ = ClusterTree.from_sample_nodes(tree.parent, nodes)
    assert model.tree_.node_to_label[empty] == -1
    full = fast_model.predict_proba(X)[:, 1:]
    assert_allclose(model.predict_proba(X), full / full.sum(1, keepdims=True), rtol=1e-6)  # float32 outputs


def test_node_sample_counts(planted, fast_model):
    X, _ = planted
    tree = fast_model.tree_
    counts = np.bincount(fast_model.labels_, minlength=tree.label_to_node.size)
    assert_array_equal(tree.n_node_samples[tree.label_to_node], counts)
    assert_array_equal(tree.node_to_label[fast_model.apply(X)], fast_model.labels_)
    assert tree.n_node_samples[0] == X.shape[0]
    # internal nodes count their subtree
    for v in range(tree.node_count):
        if not tree.is_leaf[v]:
            assert tree.n_node_samples[v] == tree.n_node_samples[tree.children[v]].sum()
    # respects the growth limits of FAST
    assert 2 <= tree.n_leaves <= FAST["max_leaves"]
    assert tree.max_depth <= FAST["max_depth"]
    # tree node -> module node: the live nodes of the module, in creation order
    module = fast_model.net_.module_
    assert_array_equal(fast_model._module_node_, [v for v in range(len(module.parent)) if module.alive[v]])


def test_transform_and_feature_names(planted, fast_model):
    X, _ = planted
    Z = fast_model.transform(X)
    latent_dim = fast_model.get_params()["latent_dim"]
    assert Z.shape == (X.shape[0], latent_dim) and np.all(np.isfinite(Z))
    assert_array_equal(fast_model.get_feature_names_out(), [f"treevae{i}" for i in range(latent_dim)])
    # the root's posterior mean: its bottom-up head on d_0 (eq. 6 at the root)
    with fast_model._inference_module() as module:
        d0 = module.bottom_up_features(torch.as_tensor(X[:10], dtype=torch.float64))[0]
        mean = module.heads(d0, torch.tensor([0]))[0, :, :latent_dim]
    assert_allclose(Z[:10], mean.numpy(), rtol=1e-6, atol=1e-7)  # float32 outputs


def test_score(planted, fast_model):
    X, _ = planted
    score = fast_model.score(X)
    samples = fast_model.score_samples(X)
    assert samples.shape == (X.shape[0],)
    assert_allclose(score, samples.mean())
    noise = np.random.RandomState(0).uniform(size=X.shape).astype(np.float32)
    assert score > fast_model.score(noise)


def test_sample_from_nodes(planted, fast_model):
    X, _ = planted
    leaf = int(fast_model.tree_.label_to_node[0])
    a = fast_model.sample(20, node=leaf)
    assert a.shape == (20, X.shape[1])
    assert np.all((a >= 0) & (a <= 1)) and not np.all((a == 0) | (a == 1))  # Bernoulli means, not logits
    assert_array_equal(fast_model.sample(20, node=0), fast_model.sample(20))  # the root forces nothing
    assert not np.allclose(a, fast_model.sample(20))


def test_history(fast_model):
    history = fast_model.history_
    phases = [row["phase"] for row in history]
    n_initial, n_grow, n_finetune = (FAST[name] for name in TreeVAE._epoch_params)
    assert phases[:n_initial] == ["initial"] * n_initial
    grow = [p for p in phases if p.startswith("grow:")]
    assert grow and len(grow) % n_grow == 0
    for p in grow:
        assert int(p.split(":")[1]) > 0
    assert phases[-n_finetune:] == ["finetune"] * n_finetune
    assert len(phases) == n_initial + len(grow) + n_finetune
    # a growth phase trains the new sub-tree only: no root KL
    assert all(("kl_root" in row) == (not row["phase"].startswith("grow")) for row in history)
    # the KL weight ramps over half of the initial phase: 300 samples, 19 batches of 16 per epoch
    steps = math.ceil(300 / FAST["batch_size"])
    ramp = n_initial // 2 * steps
    for epoch, row in enumerate(history[:n_initial], start=1):
        assert row["kl_weight"] == min(1.0, (epoch * steps - 1) / ramp)
    # once the weight is 1, the loss is the sum of the recorded terms
    for row in history[n_initial // 2 + 1:n_initial] + history[-1:]:
        assert_allclose(row["train_loss"], row["rec"] + row["kl_root"] + row["kl_nodes"] + row["kl_decisions"],
                        rtol=1e-5)


def test_epoch_parameters():
    assert TreeVAE._epoch_params == ("n_epochs_initial", "n_epochs_grow", "n_epochs")
    params = TreeVAE().get_params()
    assert [params[name] for name in TreeVAE._epoch_params] == [20, 20, 20]
    assert TreeVAEModule.elbo_terms == ("rec", "kl_root", "kl_nodes", "kl_decisions", "contrastive")
    assert TreeVAEModule.annealed_terms == ("kl_root", "kl_nodes", "kl_decisions")
    with pytest.raises(TypeError):
        TreeVAE(10)  # keyword-only


# ---- 3. growth limits and pruning ---------------------------------------------------------
def test_max_depth_one_gives_two_leaves(tiny):
    model = TreeVAE(max_leaves=8, max_depth=1, **TINY).fit(tiny)
    assert model.tree_.n_leaves == 2 and model.tree_.max_depth == 1
    assert not any(row["phase"].startswith("grow") for row in model.history_)


def test_max_leaves_three_and_hidden_dims(tiny):
    model = TreeVAE(max_leaves=3, max_depth=4, hidden_dims=(32, 12), prune_threshold=0.0, **TINY).fit(tiny)
    assert model.tree_.n_leaves == 3
    assert model.predict_proba(tiny).shape[1] <= 3
    module = model.net_.module_
    # the encoder's width is that of every bottom-up feature d_k, the node networks keep NODE_HIDDEN
    assert module.encoder.out_features == 12
    assert [layer[0].in_features for layer in module.bottom_up] == [12] * 4
    assert [layer[0].out_features for layer in module.bottom_up] == [12] * 4
    assert module.heads.weight.shape == (5, 12, 2 * TINY["latent_dim"])
    assert module.router_q.linears[0].weight.shape[1:] == (12, NODE_HIDDEN)
    assert module.router_p.linears[0].weight.shape[1:] == (TINY["latent_dim"], NODE_HIDDEN)
    assert module.transform.linears[0].weight.shape[1:] == (TINY["latent_dim"], NODE_HIDDEN)
    # leaf decoders mirror the encoder, the split's new ones included
    assert [lin.weight.shape[1:] for lin in module.decoders.linears] == [(2, 12), (12, 32), (32, 6)]
    assert module.decoders.linears[0].weight.shape[0] == 3


def test_leaf_at_max_depth_is_passed_over_for_the_next_largest(tiny):
    model = TreeVAE(max_leaves=3, max_depth=2, prune_threshold=0.0, **TINY).fit(tiny)
    module = model.net_.module_
    depths = [module.depth(v) for v in module.leaf_slots]
    assert sorted(depths) == [1, 2, 2]
    # the leaf at max_depth holds the largest subset, the depth-1 leaf the second largest
    deep, shallow = (module.leaf_slots.index(v) for v in (module.leaf_slots[depths.index(2)],
                                                           module.leaf_slots[depths.index(1)]))
    probs = np.zeros((len(tiny), 3))
    probs[:, deep] = 1.0
    probs[: len(tiny) // 3, [deep, shallow]] = [0.0, 1.0]
    leaf, subset = model._leaf_to_grow(tiny, probs)
    assert leaf == module.leaf_slots[shallow]
    assert_array_equal(subset, np.arange(len(tiny) // 3))
    model.set_params(max_depth=1)  # now every leaf is at max_depth or below it: nothing to grow
    assert model._leaf_to_grow(tiny, probs) == (None, None)


def test_no_growth_epochs_gives_two_leaves(tiny):
    model = TreeVAE(max_leaves=8, max_depth=4, **{**TINY, "n_epochs_grow": 0}).fit(tiny)
    assert model.tree_.n_leaves == 2 and model.tree_.node_count == 3
    assert {row["phase"] for row in model.history_} == {"initial", "finetune"}


def test_prune_removes_small_subtrees_smallest_first():
    module = _pruned_module()
    # leaves 2, 4, 5, 6 hold 50, 45, 3, 2 of 100 samples; the threshold is 10
    leaves = np.repeat([2, 4, 5, 6], [50, 45, 3, 2])
    est = _estimator_on(module, leaves, prune_threshold=0.1)
    est._prune(np.zeros((100, 6)))
    # 6 goes first; then 5 is its parent's only child (kept); then 3 (with 5): 1 passes through
    assert module.alive == [True, True, True, False, True, False, False]
    assert module.leaf_slots == [2, 4] and module.live_children(1) == [4]
    est._sample_leaves = lambda X: np.array([4, 2, 4])
    parent, sample_nodes, module_nodes = est._tree_assignment(None)
    assert_array_equal(parent, [-1, 0, 0, 1])
    assert_array_equal(sample_nodes, [3, 2, 3])
    assert_array_equal(module_nodes, [0, 1, 2, 4])


def test_prune_keeps_two_leaves():
    module = _module()
    est = _estimator_on(module, np.ones(100, dtype=int), prune_threshold=0.5)
    est._prune(np.zeros((100, 6)))  # leaf 2 is empty, but the root keeps two leaves
    assert module.alive == [True] * 3 and module.leaf_slots == [1, 2]


# ---- 4. bad input -----------------------------------------------------------------------
def _with(value, dtype=np.float64):
    X = np.random.RandomState(0).uniform(size=(20, 3)).astype(dtype)
    X[3, 1] = value
    return X


@pytest.mark.parametrize("X, error, match", [
    (_with(np.nan), ValueError, "NaN"),
    (_with(np.inf), ValueError, "infinity"),
    (np.full((1, 3), 0.5), ValueError, "minimum of 2 is required"),
    (np.empty((20, 0)), ValueError, "0 feature"),
    (_with(0.5) + 1j, ValueError, "Complex data not supported"),
    (np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object), ValueError, "could not convert"),
], ids=["nan", "inf", "one-sample", "no-features", "complex", "strings"])
def test_fit_rejects_bad_data(X, error, match):
    with pytest.raises(error, match=match):
        TreeVAE(**TINY).fit(X)


def test_predict_wrong_number_of_features(fast_model):
    X = np.full((4, fast_model.n_features_in_ + 1), 0.5, dtype=np.float32)
    for method in ("predict", "predict_proba", "transform", "score"):
        with pytest.raises(ValueError, match="features"):
            getattr(fast_model, method)(X)


def test_predict_rejects_nan(fast_model):
    X = np.full((4, fast_model.n_features_in_), 0.5)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fast_model.predict(X)


@pytest.mark.parametrize("params", [
    dict(max_leaves=1), dict(max_depth=0), dict(n_epochs_initial=0), dict(n_epochs_grow=-1),
    dict(n_epochs_grow=None), dict(n_epochs=-1), dict(prune_threshold=1.0), dict(leaf_prob_threshold=-0.1),
    dict(latent_dim=0), dict(n_split_init=0),
], ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_invalid_params(tiny, params):
    with pytest.raises(InvalidParameterError):
        TreeVAE(**{**TINY, **params}).fit(tiny)


def test_bernoulli_needs_unit_interval(tiny):
    for X in (tiny * 2, tiny - 0.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            TreeVAE(likelihood="bernoulli", **TINY).fit(X)


def test_auto_likelihood(tiny):
    quick = {**TINY, "n_epochs_grow": 0}
    assert TreeVAE(**quick).fit(tiny).likelihood_ == "bernoulli"
    model = TreeVAE(**quick).fit(tiny * 2 - 0.5)
    assert model.likelihood_ == "gaussian" and model.encoder_ == "mlp"
    assert [row["phase"] for row in model.history_] == ["initial", "finetune"]  # n_epochs_grow=0: no growth


@pytest.mark.parametrize("input_shape, match", [
    (None, "input_shape"), ((1, 2, 4), "8 values but X has 6 features"), ((6, 1), "input_shape"),
])
def test_conv_needs_matching_input_shape(tiny, input_shape, match):
    with pytest.raises(ValueError, match=match):
        TreeVAE(encoder="conv", input_shape=input_shape, **TINY).fit(tiny)


# ---- 5. diverging loss ------------------------------------------------------------------
def test_diverging_loss_raises():
    X = np.random.RandomState(0).normal(size=(40, 4)) * 1e20  # finite in float32, squares are not
    assert np.all(np.isfinite(X.astype(np.float32)))
    before = torch.get_rng_state()
    with pytest.raises(ValueError, match="diverged") as info:
        TreeVAE(likelihood="gaussian", **TINY).fit(X)
    message = str(info.value)
    assert "'rec'" in message
    assert "epoch 1" in message and "'initial'" in message
    assert torch.equal(before, torch.get_rng_state())


# ---- 6. conv encoder --------------------------------------------------------------------
def test_conv_encoder_on_digits():
    X, _ = load_digits(return_X_y=True)
    X = (X[:300] / 16).astype(np.float32)
    model = TreeVAE(encoder="conv", input_shape=(1, 8, 8), max_leaves=3, max_depth=2, n_epochs_initial=2,
                    n_epochs_grow=1, n_epochs=1, batch_size=32, random_state=0).fit(X)
    assert model.encoder_ == "conv" and model.likelihood_ == "bernoulli" and model.input_shape_ == (1, 8, 8)
    labels = model.predict(X)
    assert_array_equal(labels, model.labels_)
    assert labels.min() >= 0 and labels.max() < model.tree_.label_to_node.size
    assert model.transform(X).shape == (300, model.latent_dim)
    generated = model.sample(7)
    assert generated.shape == (7, 64) and np.all((generated >= 0) & (generated <= 1))
    assert model.sample(3, node=int(model.tree_.label_to_node[-1])).shape == (3, 64)
    assert np.isfinite(model.score(X))


# ---- 7. grid search ---------------------------------------------------------------------
def test_grid_search(planted_raw):
    X, y = planted_raw
    scoring = {"dp": dendrogram_purity_scorer, "lp": leaf_purity_scorer, "acc": cluster_accuracy_scorer}
    search = GridSearchCV(make_pipeline(MinMaxScaler(), make_config("TreeVAE")), {"treevae__max_leaves": [2, 3]},
                          scoring=scoring, refit="dp", cv=2)
    search.fit(X, y)
    best = search.best_estimator_
    assert best[-1].tree_.n_leaves <= best[-1].max_leaves == search.best_params_["treevae__max_leaves"]
    assert np.all(np.isfinite(search.cv_results_["mean_test_dp"]))
    # the scorers read the tree of the pipeline's last step on the transformed X
    nodes = best[-1].apply(best[:-1].transform(X))
    assert dendrogram_purity_scorer(best, X, y) == dendrogram_purity(y, best[-1].tree_, nodes)
    assert_array_equal(best.predict(X), best[-1].labels_)


# ---- 8. skorch integration --------------------------------------------------------------
class EpochCounter(Callback):
    """Counts the epochs it sees (from construction: the net re-initialises callbacks every phase)."""

    def __init__(self):
        self.n_epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        self.n_epochs_ += 1


def test_verbose_and_user_callback(tiny, capsys):
    counter = EpochCounter()
    model = TreeVAE(max_leaves=3, max_depth=2, verbose=1, callbacks=[counter], **TINY).fit(tiny)
    out = capsys.readouterr().out
    assert "train_loss" in out and "rec" in out and "kl_nodes" in out
    assert counter.n_epochs_ == len(model.history_) == len(model.net_.history) == 3
    # verbose=0 prints nothing
    TreeVAE(max_leaves=3, max_depth=2, **TINY).fit(tiny)
    assert capsys.readouterr().out == ""


def test_named_user_callback(tiny):
    counter = EpochCounter()
    model = TreeVAE(callbacks=[("count", counter)], **{**TINY, "n_epochs_grow": 0}).fit(tiny)
    assert counter.n_epochs_ == len(model.history_) == 2
    assert ("count", counter) in model.net_.callbacks_


# ---- 9. the vectorised module vs a per-node reference ----------------------------------
def _reference_node_probability(module, d, node):
    """P(node | x) by walking the node's path, one node at a time (eq. 12), ``(B,)``."""
    path = module.path(node)
    prob = torch.ones(d[0].shape[0], dtype=d[0].dtype)
    for k, (v, child) in enumerate(zip(path[:-1], path[1:])):
        live = module.live_children(v)
        if len(live) == 1:
            continue  # pass-through node
        q = torch.sigmoid(module.router_q(d[k], torch.tensor([v]))).reshape(-1)
        prob = prob * (q if live.index(child) == 1 else 1 - q)
    return prob


def _reference_leaf_probabilities(module, d):
    """P(leaf | x) of every leaf, ``(n_leaves, B)`` in ``leaf_slots`` order."""
    return torch.stack([_reference_node_probability(module, d, leaf) for leaf in module.leaf_slots])


def _reference_terms(module, x):
    """Compute the four negative-ELBO terms (eqs. 12-20) node by node, at the posterior means (eval mode)."""
    d = module.bottom_up_features(x)
    live = [v for v in range(len(module.parent)) if module.alive[v]]
    z = {v: module._path_latent(d, v) for v in live}  # (1, B, L) posterior means
    prob = {v: _reference_node_probability(module, d, v) for v in live}
    mean0, var0, _, _ = module._posterior(d[0], torch.tensor([0]))
    terms = {"kl_root": 0.5 * (var0 + mean0.square() - 1 - var0.log()).sum(-1)[0],
             "kl_nodes": 0.0, "kl_decisions": 0.0, "rec": 0.0}
    for v in live[1:]:
        k = module.depth(v)
        mean_q, var_q, mean_p, var_p = module._posterior(d[k], torch.tensor([v]), z[module.parent[v]])
        terms["kl_nodes"] = terms["kl_nodes"] + prob[v] * kl_normal(mean_q, var_q, mean_p, var_p)[0]
    for v in live:
        if len(module.live_children(v)) == 2:
            k, rows = module.depth(v), torch.tensor([v])
            q = torch.sigmoid(module.router_q(d[k], rows)).reshape(-1)
            p = torch.sigmoid(module.router_p(z[v], rows)).reshape(-1)
            terms["kl_decisions"] = terms["kl_decisions"] + prob[v] * kl_bernoulli(q, p)
    for slot, leaf in enumerate(module.leaf_slots):
        output = take_nodes(module.decoders, [slot])(z[leaf])
        terms["rec"] = terms["rec"] + prob[leaf] * negative_log_likelihood(x, output, module.likelihood)[0]
    return terms


def _check_module(module, x):
    d = module.bottom_up_features(x)
    probs = module.leaf_probabilities(x)
    assert probs.shape == (len(module.leaf_slots), x.shape[0])
    assert_allclose(probs.sum(0).numpy(), 1.0, rtol=1e-10)
    assert_allclose(probs.numpy(), _reference_leaf_probabilities(module, d).numpy(), rtol=1e-9, atol=1e-12)
    terms = module(x)
    reference = _reference_terms(module, x)
    assert set(terms) == set(reference) == set(module.elbo_terms) - {"contrastive"}  # no augmentation
    for name, term in terms.items():
        assert term.shape == (x.shape[0],), name
        assert_allclose(term.numpy(), reference[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    return terms


@pytest.mark.parametrize("which", ["planted", "fast"])
def test_module_matches_per_node_reference(planted, planted_model, fast_model, which):
    model = planted_model if which == "planted" else fast_model
    X, _ = planted
    x = torch.as_tensor(X[:64], dtype=torch.float64)
    with model._inference_module() as module:
        assert isinstance(module, TreeVAEModule) and not module.training
        terms = _check_module(module, x)
    assert module.training and next(module.parameters()).dtype == torch.float32  # restored
    assert_allclose(-sum(t.numpy() for t in terms.values()), model.score_samples(X[:64]), rtol=1e-6)  # float32 outputs


def test_pruned_module_matches_per_node_reference():
    """Pass-through nodes: the pruned tree of test_prune_removes_small_subtrees_smallest_first."""
    module = _pruned_module()
    module.prune(6)
    module.prune(3)
    x = torch.as_tensor(np.random.RandomState(0).uniform(size=(32, 6)))
    with torch.no_grad():
        _check_module(module.eval().double(), x)


def test_predict_proba_is_batch_size_invariant(planted, fast_model):
    X, _ = planted
    full = fast_model.predict_proba(X)
    parts = np.concatenate([fast_model.predict_proba(X[i:i + 7]) for i in range(0, 70, 7)])
    assert_allclose(parts, full[:70], rtol=1e-12, atol=1e-15)


# ---- 10. training schedules ------------------------------------------------------------
def _phase_runs(history):
    """``[(phase, rows)]``: the consecutive epochs of each training phase."""
    runs = []
    for row in history:
        if runs and runs[-1][0] == row["phase"]:
            runs[-1][1].append(row)
        else:
            runs.append((row["phase"], [row]))
    return runs


def _check_schedule_in_history(model, lr):
    """Every phase restarts its KL weight and learning rate, per epoch as their formulas say."""
    schedule = model.schedule_
    for phase, rows in _phase_runs(model.history_):
        rate = schedule["kl_rate_finetune"] if phase == "finetune" else schedule["kl_rate"]
        for e, row in enumerate(rows):
            assert row["kl_weight"] == min(1.0, schedule["kl_start"] + e * rate), (phase, e)
            assert row["lr"] == pytest.approx(lr * schedule["lr_step_gamma"] ** (e // schedule["lr_step_epochs"]),
                                              rel=1e-12), (phase, e)


def test_default_fit_is_the_cpu_schedule(tiny):
    """The default is schedule="cpu" with no new behaviour: bit-identical to naming it all explicitly."""
    params = dict(max_leaves=3, max_depth=2, hidden_dims=(32, 16), **TINY)
    default = TreeVAE(**params).fit(tiny)
    explicit = TreeVAE(schedule="cpu", kl_start=0.0, kl_rate=None, n_epochs_intermediate=0, intermediate_every=3,
                       lr_step_epochs=None, lr_step_gamma=0.1, augment=None, contrastive_weight=0.0,
                       contrastive_temperature=0.5, **params).fit(tiny)
    assert_array_equal(default.labels_, explicit.labels_)
    assert_array_equal(default.predict_proba(tiny), explicit.predict_proba(tiny))
    assert_array_equal(default.score_samples(tiny), explicit.score_samples(tiny))
    strip = [{k: v for k, v in row.items() if k != "dur"} for row in default.history_]
    assert strip == [{k: v for k, v in row.items() if k != "dur"} for row in explicit.history_]
    assert default.schedule_ == dict(n_epochs_initial=1, n_epochs_grow=1, n_epochs_intermediate=0,
                                     intermediate_every=3, n_epochs=1, kl_anneal_epochs=None, kl_start=0.0,
                                     kl_rate=None, lr_step_epochs=None, lr_step_gamma=0.1, split_decoders="fresh",
                                     n_split_init=1, effective_leaf_mass=None, kl_clamp=None, kl_rate_finetune=None)
    assert [row["lr"] for row in default.history_] == [1e-3] * len(default.history_)
    assert "lr_step_decay" not in dict(default.net_.callbacks_)
    assert default.net_.module_.projections is None and default.net_.module_.augment is None


def test_schedule_authors_sets_their_recipe():
    """schedule="authors" overrides the epoch, KL and learning-rate parameters; they stay stored verbatim."""
    est = TreeVAE(schedule="authors", n_epochs_initial=2, n_epochs=3, kl_rate=0.5, kl_start=0.3, lr_step_epochs=7,
                  n_epochs_intermediate=1, intermediate_every=5, split_decoders="copy", n_split_init=3)
    assert est._resolve_schedule() == dict(
        n_epochs_initial=150, n_epochs_grow=150, n_epochs_intermediate=80, intermediate_every=3, n_epochs=200,
        kl_anneal_epochs=None, kl_start=0.0, kl_rate=0.001, lr_step_epochs=100, lr_step_gamma=0.1,
        split_decoders="fresh", n_split_init=1, effective_leaf_mass=0.01, kl_clamp=(-1.0, 1000.0),
        kl_rate_finetune=0.01)
    assert est.get_params()["n_epochs"] == 3 and est.get_params()["schedule"] == "authors"
    # and their defaults are ours: lr, weight decay, batch size, latent size, depth
    params = TreeVAE().get_params()
    assert (params["lr"], params["weight_decay"], params["batch_size"], params["latent_dim"],
            params["max_depth"]) == (1e-3, 1e-5, 256, 8, 6)


def test_authors_schedule_fit_at_small_epochs(monkeypatch, tiny):
    """Their recipe end to end, with its epoch counts shrunk: KL, lr decay, intermediate phases, clamp."""
    small = {**AUTHORS_SCHEDULE, "n_epochs_initial": 2, "n_epochs_grow": 1, "n_epochs_intermediate": 2,
             "intermediate_every": 1, "n_epochs": 3, "kl_rate": 0.25, "lr_step_epochs": 1}
    monkeypatch.setattr(treevae_module, "AUTHORS_SCHEDULE", small)
    model = TreeVAE(schedule="authors", max_leaves=4, max_depth=3, latent_dim=2, hidden_dims=(32, 16),
                    batch_size=16, random_state=0).fit(tiny)
    assert model.schedule_ == {**small, "kl_anneal_epochs": None, "kl_rate_finetune": 0.5}
    assert model.net_.module_.kl_clamp == (-1.0, 1000.0)
    runs = [phase.split(":")[0] for phase, _ in _phase_runs(model.history_)]
    assert runs[0] == "initial" and runs[-1] == "finetune" and "intermediate" in runs
    _check_schedule_in_history(model, lr=1e-3)


def test_intermediate_phases_every_k_splits(tiny):
    """Full-tree training after every 2nd split (while the tree is not full); per-epoch KL and lr decay."""
    model = TreeVAE(max_leaves=5, max_depth=3, latent_dim=2, hidden_dims=(32, 16), n_epochs_initial=2,
                    n_epochs_grow=1, n_epochs=2, n_epochs_intermediate=2, intermediate_every=2, kl_start=0.1,
                    kl_rate=0.5, lr_step_epochs=1, lr_step_gamma=0.5, prune_threshold=0.0, batch_size=16,
                    random_state=0).fit(tiny)
    runs = [phase.split(":")[0] for phase, _ in _phase_runs(model.history_)]
    n_grow = runs.count("grow")
    assert n_grow >= 2
    expected = ["initial"]
    for split in range(1, n_grow + 1):
        expected.append("grow")
        if split % 2 == 0 and 2 + split < 5:  # 2 + split leaves after the split
            expected.append("intermediate")
    assert runs == expected + ["finetune"]
    assert [len(rows) for _, rows in _phase_runs(model.history_)] == [{"grow": 1}.get(r, 2) for r in runs]
    assert model.schedule_["kl_rate_finetune"] == 1.0  # max(0.01, 1 / (2 - 1))
    _check_schedule_in_history(model, lr=1e-3)
    scheduler = dict(model.net_.callbacks_)["lr_step_decay"]
    assert scheduler.step_size == 1 and scheduler.lr_scheduler_ is None  # no optimizer kept after a phase
    param_bytes = sum(p.numel() * p.element_size() for p in model.net_.module_.parameters())
    assert len(pickle.dumps(model)) <= 1.5 * param_bytes + 200_000  # no Adam state in the pickle


def test_effective_leaves_count_toward_max_leaves():
    """The authors' rule: a leaf counts when it holds >= 1 % of the mass sum_x P(leaf | x)."""
    probs = np.array([[0.995, 0.005]] * 99 + [[0.5, 0.5]])  # leaf 2 holds 0.995 of 100: under 1 %
    for schedule, expected in (("authors", 1), ("cpu", 2)):
        est = _estimator_on(_module(), None, schedule=schedule)
        est.schedule_ = est._resolve_schedule()
        est._slot_probabilities = lambda X: probs
        assert est._growth_state(None)[0] == expected
    # the subset threshold min(1 / n_leaves, 0.5) follows the count
    est = _estimator_on(_module(splits=(1,)), None, batch_size=2)
    probs = np.array([[0.4, 0.3, 0.3]] * 5 + [[0.1, 0.45, 0.45]] * 4)
    leaf, subset = est._leaf_to_grow(None, probs, 3)
    assert leaf == 2
    assert_array_equal(subset, np.arange(5))
    assert est._leaf_to_grow(None, probs, 2) == (None, None)  # threshold 0.5: no subset of 2 samples


def test_kl_clamp_in_training_only():
    module = _module(splits=(1,))
    x = torch.as_tensor(np.random.RandomState(0).uniform(size=(16, 6)), dtype=torch.float32)

    def terms(clamp, train=True):
        module.kl_clamp = clamp
        module.train(train)
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(0)
            return module(x)
    free, clamped = terms(None), terms((-1.0, 0.05))
    assert (free["kl_root"] > 0.05).any()
    assert_allclose(clamped["kl_root"].numpy(), free["kl_root"].clamp(-1.0, 0.05).numpy())
    assert_array_equal(clamped["rec"].numpy(), free["rec"].numpy())
    assert (clamped["kl_nodes"] <= 4 * 0.05 + 1e-6).all()  # 4 non-root nodes
    assert_array_equal(terms((-1.0, 0.05), train=False)["kl_root"].numpy(), terms(None, train=False)["kl_root"].numpy())


# ---- 11. the contrastive extension (paper §2.6) --------------------------------------------
def test_nt_xent_matches_direct_formula():
    rng = np.random.RandomState(0)
    z1, z2 = torch.as_tensor(rng.normal(size=(3, 4))), torch.as_tensor(rng.normal(size=(3, 4)))
    u = torch.cat([z1, z2]).numpy()
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    for tau in (0.5, 0.1):
        direct = []
        for i in range(6):
            others = [k for k in range(6) if k != i]
            denominator = sum(math.exp(u[i] @ u[k] / tau) for k in others)
            direct.append(-math.log(math.exp(u[i] @ u[(i + 3) % 6] / tau) / denominator))
        assert_allclose(nt_xent(z1, z2, tau, reduction="none").numpy(), direct, rtol=1e-12)
        assert_allclose(float(nt_xent(z1, z2, tau)), np.mean(direct), rtol=1e-12)
    # leading dimensions are independent problems; the embeddings' scale does not matter
    stacked = nt_xent(torch.stack([z1, 3 * z1]), torch.stack([z2, z2]), 0.5)
    assert stacked.shape == (2,)
    assert_allclose(stacked.numpy(), [float(nt_xent(z1, z2, 0.5))] * 2, rtol=1e-12)
    # two orthonormal samples seen twice: -1/tau + log(exp(1/tau) + 2)
    e = torch.eye(2, dtype=torch.float64)
    assert_allclose(float(nt_xent(e, e, 0.5)), -2 + math.log(math.exp(2) + 2), rtol=1e-12)


def test_random_affine_keeps_shape_and_dtype_and_is_seeded():
    x = torch.rand(5, 2 * 7 * 9, generator=torch.Generator().manual_seed(0))
    augment = RandomAffine((2, 7, 9))
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype)
        out = augment(xd, torch.Generator().manual_seed(1))
        assert out.shape == xd.shape and out.dtype == dtype
        assert torch.equal(out, augment(xd, torch.Generator().manual_seed(1)))
        assert not torch.allclose(out, augment(xd, torch.Generator().manual_seed(2)))
        assert not torch.allclose(out, xd)


def test_affine_images_identity_rotation_and_shift():
    x = torch.rand(3, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = x.reshape(3, 1, 6, 6)
    zero, one = torch.zeros(3), torch.ones(3)
    assert_allclose(affine_images(x, (1, 6, 6), zero, torch.zeros(3, 2), one).numpy(), x.numpy(), atol=1e-6)
    # a quarter turn maps pixel centres onto pixel centres: a permutation
    turned = affine_images(x, (1, 6, 6), torch.full((3,), 90.0), torch.zeros(3, 2), one)
    assert_allclose(turned.numpy(), torch.rot90(images, -1, dims=(2, 3)).reshape(3, 36).numpy(), atol=1e-6)
    # a shift by one pixel to the right; the border column repeats
    shifted = affine_images(x, (1, 6, 6), zero, torch.tensor([[1 / 6, 0.0]] * 3), one).reshape(3, 1, 6, 6)
    assert_allclose(shifted[..., 1:].numpy(), images[..., :-1].numpy(), atol=1e-6)
    assert_allclose(shifted[..., 0].numpy(), images[..., 0].numpy(), atol=1e-6)


def test_contrastive_training_records_the_term():
    X, _ = load_digits(return_X_y=True)
    X = (X[:200] / 16).astype(np.float32)
    params = dict(encoder="conv", input_shape=(1, 8, 8), augment="affine", contrastive_weight=1.0, max_leaves=3,
                  max_depth=2, n_epochs_initial=2, n_epochs_grow=1, n_epochs=1, kl_anneal_epochs=0, batch_size=32,
                  random_state=0)
    model = TreeVAE(**params).fit(X)
    module = model.net_.module_
    assert isinstance(module.augment, RandomAffine) and module.augment.input_shape == (1, 8, 8)
    assert module.projections.n_nodes == model.max_depth + 1
    assert "contrastive" in TreeVAEModule.elbo_terms and "contrastive" not in TreeVAEModule.annealed_terms
    for row in model.history_:
        assert row["contrastive"] > 0
        recorded = [row[t] for t in module.elbo_terms if t in row]
        assert sum(recorded) == pytest.approx(row["train_loss"], rel=1e-5)  # not annealed (weight 1 anyway)
    # inference is not augmented; the augmentation is seeded by random_state; the model pickles
    assert_array_equal(model.predict(X), model.labels_)
    assert_array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), model.predict_proba(X))
    assert_array_equal(TreeVAE(**params).fit(X).predict_proba(X), model.predict_proba(X))


def test_augment_callable_gets_batches_and_a_generator(tiny):
    calls = []

    def jitter(x, generator):
        calls.append((x.shape[0], isinstance(generator, torch.Generator)))
        return x + 0.01 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    quick = {**TINY, "n_epochs_grow": 0, "hidden_dims": (32, 16)}  # 2 epochs of 7 batches (100 = 6 x 16 + 4)
    model = TreeVAE(augment=jitter, contrastive_weight=0.5, **quick).fit(tiny)
    assert calls == ([(16, True)] * 12 + [(4, True)] * 2) * 2  # two views of every training batch
    assert all(row["contrastive"] > 0 for row in model.history_)
    calls.clear()
    model = TreeVAE(augment=jitter, **quick).fit(tiny)  # contrastive_weight 0: one view, augmentation alone
    assert calls == ([(16, True)] * 6 + [(4, True)]) * 2
    assert not any("contrastive" in row for row in model.history_)


@pytest.mark.parametrize("decoders", ["copy", "fresh"])
def test_split_children_decoders(decoders):
    """"copy": both children decode as the split leaf does and train; "fresh": new decoders."""
    module = _module(splits=(1,))  # leaves 2, 3, 4 (slots 0, 1, 2)
    z = torch.as_tensor(np.random.RandomState(0).normal(size=(2, 5, 2)), dtype=torch.float32)
    module.eval()
    with torch.no_grad():
        parent = module.decoders(z[:1], slice(2, 3))  # leaf 4's decoder
        module.start_split(4, decoders)
        module.eval()
        children = module.split.decoders(z[:1].expand(2, -1, -1))
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("split.") for name in trainable)
    assert all(p.requires_grad for p in module.split.decoders.parameters())
    if decoders == "copy":
        # equal up to float32 rounding: rows of one batched pass may round differently on some CPUs
        assert_allclose(children[0].numpy(), parent[0].numpy(), rtol=1e-6, atol=1e-7)
        assert_allclose(children[1].numpy(), parent[0].numpy(), rtol=1e-6, atol=1e-7)
        # copies, not views: training a child leaves the parent's decoder as it was
        before = [p.clone() for p in module.decoders.parameters()]
        with torch.no_grad():
            for p in module.split.decoders.parameters():
                p.add_(1.0)
        assert all(torch.equal(a, b) for a, b in zip(before, module.decoders.parameters()))
    else:
        assert not np.allclose(children[0].numpy(), parent[0].numpy())


def test_split_candidates_are_independent_sub_trees():
    """Each candidate sub-tree scores exactly as it would alone; the one kept is what the split commits."""
    module = _module(splits=(1,))  # leaves 2, 3, 4
    with torch.random.fork_rng():
        torch.manual_seed(1)
        module.start_split(4, n_candidates=3)
    module.eval().double()
    x = torch.as_tensor(np.random.RandomState(0).uniform(size=(7, 6)))
    with torch.no_grad():
        terms = module._split_terms(x, module.bottom_up_features(x))
        nelbo = module.split_candidate_nelbo(x)
        assert {t.shape for t in terms.values()} == {(3, 7)} and nelbo.shape == (3, 7)
        assert_allclose(nelbo.numpy(), (terms["rec"] + terms["kl_nodes"] + terms["kl_decisions"]).numpy(),
                        rtol=1e-12)
        assert not np.allclose(nelbo[0].numpy(), nelbo[1].numpy())  # independently initialised
        mean = module(x)
        for name, term in terms.items():
            assert_allclose(mean[name].numpy(), term.mean(0).numpy(), rtol=1e-12)
        for c in range(3):
            alone = copy.deepcopy(module)
            alone.keep_split_candidate(c)
            assert alone.split.n_candidates == 1
            assert_allclose(alone.split_candidate_nelbo(x).numpy(), nelbo[c:c + 1].numpy(), rtol=1e-12)
        with pytest.raises(RuntimeError, match="keep one"):
            module.commit_split()
        module.keep_split_candidate(2)
        kept = [p.clone() for p in module.split.decoders.parameters()]
        module.commit_split()
    assert module.leaf_slots == [2, 3, 5, 6]
    for p, q in zip(take_nodes(module.decoders, [2, 3]).parameters(), kept):
        assert torch.equal(p, q)


def test_n_split_init_keeps_the_best_candidate(tiny):
    """Every growth phase trains n_split_init candidates and keeps the lowest negative ELBO; history_ says so."""
    model = TreeVAE(max_leaves=4, max_depth=3, hidden_dims=(32, 16), n_split_init=3, prune_threshold=0.0,
                    **TINY).fit(tiny)
    assert model.schedule_["n_split_init"] == 3
    grows = [rows for phase, rows in _phase_runs(model.history_) if phase.startswith("grow")]
    assert len(grows) == 2
    for rows in grows:
        assert all("split_kept" not in row for row in rows[:-1])
        nelbo = rows[-1]["split_candidates_nelbo"]
        assert len(nelbo) == 3 and len(set(nelbo)) == 3
        assert rows[-1]["split_kept"] == int(np.argmin(nelbo))
    assert model.tree_.n_leaves == 4 and model.net_.module_.split is None


@pytest.mark.parametrize("n_candidates", [1, 3])
def test_module_views_and_contrastive_term_of_a_split(n_candidates):
    """Two views make 2B rows; while a sub-tree grows the term is NT-Xent of the new router's probabilities.

    With several candidate sub-trees, the mean of their own terms.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = TreeVAEModule(6, 2, 3, "bernoulli", "mlp", hidden_dims=(16, 8), contrastive_heads=True)
    module.contrastive_weight, module.contrastive_temperature = 2.0, 0.3
    module.set_augmentation(lambda x, g: x.clone(), None)
    x = torch.as_tensor(np.random.RandomState(0).uniform(size=(8, 6)), dtype=torch.float32)
    module.train()
    with torch.no_grad():
        terms = module(x)
        assert {t.shape for t in terms.values()} == {(16,)} and "contrastive" in terms
        module.start_split(1, n_candidates=n_candidates)
        module.train()
        terms = module(x)
        views = torch.cat([x, x])
        s = module.split
        q = torch.sigmoid(s.router_q(module.bottom_up_features(views)[1])).squeeze(-1)  # (n_candidates, 16)
        expected = 0.0
        for c in range(n_candidates):
            probs = torch.stack([1 - q[c], q[c]], 1)
            expected = expected + 2.0 * nt_xent(probs[:8], probs[8:], 0.3, reduction="none") / n_candidates
    assert {t.shape for t in terms.values()} == {(16,)}
    assert_allclose(terms["contrastive"].numpy(), expected.numpy(), rtol=1e-6)
    module.eval()
    with torch.no_grad():
        assert {t.shape for t in module(x).values()} == {(8,)}  # evaluation: no views, no contrastive term


@pytest.mark.parametrize("params, error, match", [
    (dict(augment="rotate"), InvalidParameterError, "'augment' parameter"),
    (dict(augment="affine"), ValueError, r"augment='affine' needs image input: input_shape=\(channels"),
    (dict(augment="affine", input_shape=(6, 1)), ValueError, "needs image input"),
    (dict(augment="affine", input_shape=(1, 2, 4)), ValueError, "8 values but X has 6 features"),
    (dict(contrastive_weight=-1.0), InvalidParameterError, "'contrastive_weight' parameter"),
    (dict(contrastive_weight=1.0), ValueError, "needs augmented views: set augment"),
    (dict(contrastive_temperature=0.0), InvalidParameterError, "'contrastive_temperature' parameter"),
    (dict(schedule="gpu"), InvalidParameterError, r"'schedule' parameter of TreeVAE must be a str among"),
    (dict(kl_rate=0.0), InvalidParameterError, "'kl_rate' parameter"),
    (dict(kl_start=1.5), InvalidParameterError, "'kl_start' parameter"),
    (dict(lr_step_epochs=0), InvalidParameterError, "'lr_step_epochs' parameter"),
    (dict(lr_step_gamma=0.0), InvalidParameterError, "'lr_step_gamma' parameter"),
    (dict(intermediate_every=0), InvalidParameterError, "'intermediate_every' parameter"),
    (dict(n_epochs_intermediate=-1), InvalidParameterError, "'n_epochs_intermediate' parameter"),
    (dict(augment=lambda x, g: x[:1], contrastive_weight=1.0), ValueError, "augment must return a tensor of"),
], ids=["unknown-augment", "affine-no-shape", "affine-2d-shape", "affine-wrong-size", "negative-weight",
        "weight-without-augment", "zero-temperature", "unknown-schedule", "zero-kl-rate", "kl-start-above-1",
        "zero-lr-step", "zero-gamma", "zero-intermediate-every", "negative-intermediate", "bad-callable"])
def test_invalid_schedule_and_augmentation(tiny, params, error, match):
    with pytest.raises(error, match=match):
        TreeVAE(**{**TINY, **params}).fit(tiny)


# ---- 12. importance-weighted log-likelihood (paper Table 2) ------------------------------
def _reference_log_weights(module, x, u, eps):
    """The importance log-weights, row by row and node by node, for given draws; and each row's leaf."""
    def log_normal(z, mean, var):
        return float(-0.5 * (math.log(2 * math.pi) + var.log() + (z - mean).square() / var).sum())
    d = module.bottom_up_features(x)
    weights, leaves = [], []
    for r in range(x.shape[0]):
        dr = [dk[r:r + 1] for dk in d]
        mean, var, _, _ = module._posterior(dr[0], torch.tensor([0]))
        z = mean + var.sqrt() * eps[0, r]
        lw = log_normal(z, torch.zeros_like(z), torch.ones_like(z)) - log_normal(z, mean, var)
        v, k = 0, 0
        while module.live_children(v):
            kids = module.live_children(v)
            child = kids[0]
            if len(kids) == 2:
                q = float(torch.sigmoid(module.router_q(dr[k], torch.tensor([v]))))
                p = float(torch.sigmoid(module.router_p(z, torch.tensor([v]))))
                right = float(u[r, k]) < q
                child = kids[1] if right else kids[0]
                lw += math.log(p if right else 1 - p) - math.log(q if right else 1 - q)
            mean_q, var_q, mean_p, var_p = module._posterior(dr[k + 1], torch.tensor([child]), z)
            z = mean_q + var_q.sqrt() * eps[k + 1, r]
            lw += log_normal(z, mean_p, var_p) - log_normal(z, mean_q, var_q)
            v, k = child, k + 1
        output = take_nodes(module.decoders, [module.leaf_slots.index(v)])(z)
        weights.append(lw - float(negative_log_likelihood(x[r:r + 1], output, module.likelihood)[0, 0]))
        leaves.append(v)
    return np.array(weights), leaves


def _check_log_weights(module, x):
    gen = torch.Generator().manual_seed(0)
    n_levels = len(module.plan.levels)
    u = torch.rand(x.shape[0], n_levels, generator=gen, dtype=torch.float64)
    eps = torch.randn(n_levels + 1, x.shape[0], module.latent_dim, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        log_w = module.log_weights(x, module.bottom_up_features(x), u, eps)
        reference, leaves = _reference_log_weights(module, x, u, eps)
    assert len(set(leaves)) > 1  # the draws take several paths
    assert_allclose(log_w.numpy(), reference, rtol=1e-10)


def test_log_weights_match_per_node_reference(planted, planted_model):
    module = _pruned_module()
    module.prune(6)
    module.prune(3)  # node 1 passes through
    _check_log_weights(module.eval().double(), torch.as_tensor(np.random.RandomState(0).uniform(size=(24, 6))))
    with planted_model._inference_module() as module:
        _check_log_weights(module, torch.as_tensor(planted[0][::12], dtype=torch.float64))  # all 4 blobs


def test_log_likelihood_bounds(planted, planted_model):
    """K = 100 draws: above the single-draw estimate (an unbiased ELBO estimate), not below score_samples."""
    X = planted[0][::2]
    one = planted_model.log_likelihood(X, n_importance=1)
    many = planted_model.log_likelihood(X, n_importance=100)
    assert many.shape == (150,) and many.dtype == np.float32 and np.isfinite(many).all()
    assert many.mean() >= one.mean()
    # score_samples is the ELBO at the posterior means, without the posterior noise: not a bound of
    # log p(x), above the sampled ELBO by 0.3 to 0.9 nats for these barely trained models; the
    # importance-weighted estimate lies within -0.3..+0.2 nats of it (measured for 6 fits)
    assert many.mean() >= planted_model.score_samples(X).mean() - 0.3
    assert_array_equal(many, planted_model.log_likelihood(X, n_importance=100))  # seeded by random_state


def _prior_log_likelihood(module, x, n_samples):
    """Estimate log p(x) by sampling the generative model (paths by its routers, z by its priors), ``(B,)``.

    An independent estimator of what ``log_likelihood`` estimates, usable for a 2-d latent.
    """
    rows = n_samples * x.shape[0]
    index = torch.arange(rows)
    z = torch.randn(rows, module.latent_dim, dtype=x.dtype)
    node, pos = torch.zeros(rows, dtype=torch.long), torch.zeros(rows, dtype=torch.long)
    done = torch.zeros(rows, dtype=torch.bool)
    n_nodes = 1
    for level in module.plan.levels:
        internal = torch.full((n_nodes,), -1)
        internal[level["int_pos"]] = torch.arange(len(level["int_rows"]))
        m = internal[pos]
        active = ~done & (m >= 0)
        done, m = ~active, m.clamp_min(0)
        parents = range(len(level["int_rows"]))
        first = torch.tensor([level["par"].index(j) for j in parents])
        last = torch.tensor([len(level["par"]) - 1 - level["par"][::-1].index(j) for j in parents])
        p_right = torch.sigmoid(module.router_p(z, torch.tensor(level["int_rows"])).squeeze(-1))[m, index]
        child = torch.where(torch.rand(rows, dtype=x.dtype) < p_right, last[m], first[m])  # last == first: one way
        mean, var = split_normal(module.transform(z, torch.tensor(level["child_rows"]))[child, index])
        z = torch.where(active[:, None], mean + var.sqrt() * torch.randn_like(mean), z)
        node = torch.where(active, torch.tensor(level["child_rows"])[child], node)
        pos, n_nodes = torch.where(active, child, 0), len(level["child_rows"])
    log_px = torch.empty(rows, dtype=x.dtype)
    xs = x.repeat(n_samples, 1)
    for j, leaf in enumerate(module.leaf_slots):
        sel = (node == leaf).nonzero().squeeze(1)
        log_px[sel] = -negative_log_likelihood(xs[sel], module.decoders(z[sel][None], slice(j, j + 1))[0],
                                               module.likelihood)
    return torch.logsumexp(log_px.view(n_samples, -1), 0) - math.log(n_samples)


def test_log_likelihood_agrees_with_sampling_the_prior(tiny):
    """With a 2-d latent, sampling the generative model estimates log p(x) well: the same value."""
    model = TreeVAE(latent_dim=2, hidden_dims=(16, 8), max_leaves=3, max_depth=2, n_epochs_initial=3,
                    n_epochs_grow=3, n_epochs=3, prune_threshold=0.0, batch_size=16, random_state=0).fit(tiny)
    assert model.tree_.n_leaves == 3 and model.tree_.max_depth == 2
    X = tiny[:4]
    with model._inference_module() as module, torch.random.fork_rng():
        torch.manual_seed(0)
        reference = _prior_log_likelihood(module, torch.as_tensor(X, dtype=torch.float64), 5000).numpy()
    estimate = model.log_likelihood(X, n_importance=5000)
    assert_allclose(estimate, reference, atol=0.04)  # measured: within 0.012 (0.005 at 10^5 draws each)
    assert model.log_likelihood(X, n_importance=10).mean() < estimate.mean()  # a bound that tightens with K


def test_log_likelihood_passes_are_bounded(planted, fast_model, monkeypatch):
    sizes = []
    original = TreeVAEModule.importance_log_weights

    def spy(self, x, n_importance):
        sizes.append(x.shape[0] * n_importance)
        return original(self, x, n_importance)
    monkeypatch.setattr(TreeVAEModule, "importance_log_weights", spy)
    monkeypatch.setattr(treevae_module, "LOG_LIKELIHOOD_ROWS", 40)
    out = fast_model.log_likelihood(planted[0][:20], n_importance=7)
    assert sizes == [40, 40, 40, 20] and out.shape == (20,)


def test_log_likelihood_rejects_bad_n_importance(planted, fast_model):
    X = planted[0][:5]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_importance must be a positive integer"):
            fast_model.log_likelihood(X, n_importance=bad)
    with pytest.raises(NotFittedError):
        TreeVAE().log_likelihood(X)
