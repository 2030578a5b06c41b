"""Behavioural tests of the HTVAE estimator (stacked self-organizing maps in a VAE's latent space).

All fits are tiny (a few hundred samples, a few epochs) on the CPU, where an int
``random_state`` makes every fit bit-for-bit reproducible; fitted models are shared through
module-scoped fixtures.
"""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_hierclust import ClusterTree
from sk_hierclust._testing import FAST_PARAMS, make_planted
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity
from sk_hierclust.models.htvae import HTVAE, HTVAEModule, default_map_shapes

FAST = FAST_PARAMS[HTVAE]


# Planted hierarchy. Measured for random_state 0, 1, 2 with these parameters: all three
# seeds give 4 non-empty finest codes of leaf purity 1.0 w.r.t. the sub-clusters and a
# coarse map separating the super-clusters with accuracy 1.0; the test pins seed 0.
PLANTED = dict(map_shapes=((3, 3), (1, 2)), latent_dim=8, rho=4.0, sigma_init=0.1, n_epochs=20, batch_size=16,
               lr=2e-3, random_state=0)


@pytest.fixture(scope="module")
def planted():
    """The shared planted data (two super-clusters of two sub-clusters), standardised (Gaussian likelihood)."""
    X, y = make_planted()
    return StandardScaler().fit_transform(X).astype(np.float32), y


@pytest.fixture(scope="module")
def planted_model(planted):
    return HTVAE(**PLANTED).fit(planted[0])


@pytest.fixture(scope="module")
def tiny():
    """60 x 5 standard normal data for fits that only check structure or errors."""
    return np.random.RandomState(1).normal(size=(60, 5)).astype(np.float32)


TINY = dict(map_shapes=((2, 2), (1, 2)), latent_dim=2, n_epochs=1, batch_size=16, random_state=0)


# ---- 1. planted hierarchy --------------------------------------------------------------
def test_planted_finest_codes_are_pure(planted, planted_model):
    X, y = planted
    labels = planted_model.labels_
    assert leaf_purity(y, labels) >= 0.95
    assert len(np.unique(labels)) >= 4
    assert dendrogram_purity(y, planted_model.tree_, planted_model.apply(X)) >= 0.9


def test_planted_coarse_map_separates_super_clusters(planted, planted_model):
    X, y = planted
    coarse = planted_model.predict_level(X, level=2)
    assert cluster_accuracy(y // 2, coarse) >= 0.95
    # the tree agrees: the root's children (codes of the coarse map) hold whole super-clusters
    tree, nodes = planted_model.tree_, planted_model.apply(X)
    assert tree.children[0].size == 2
    assert cluster_accuracy(y // 2, tree.cut(1)[nodes]) >= 0.95
    assert dendrogram_purity(y // 2, tree, nodes) >= 0.95


def test_planted_samples_follow_their_code(planted, planted_model):
    """Samples generated from a coarse code look like the training data under it."""
    X, _ = planted
    tree, nodes = planted_model.tree_, planted_model.apply(X)
    coarse = tree.children[0]
    routed = tree.cut(1)[nodes]
    data_means = np.array([X[routed == tree.cut(1)[v]].mean(0) for v in coarse])
    for k, v in enumerate(coarse):
        generated = planted_model.sample(100, node=int(v)).mean(0)
        dist = np.linalg.norm(data_means - generated, axis=1)
        assert dist[k] < 0.5 * dist[1 - k]


# ---- 2. tree and API consistency -----------------------------------------------------------
def test_tree_structure(planted, planted_model):
    X, _ = planted
    model, tree = planted_model, planted_model.tree_
    assert isinstance(tree, ClusterTree) and tree.max_depth == 2
    maps = model.node_codes_[:, 0]
    assert maps[0] == 0 and np.all(maps[tree.depth == 1] == 2) and np.all(maps[tree.depth == 2] == 1)
    assert np.all(tree.is_leaf == (maps == 1))
    # every node holds training samples; counts add up
    assert tree.n_node_samples[0] == X.shape[0] and np.all(tree.n_node_samples > 0)
    assert_array_equal(np.bincount(model.labels_), tree.n_node_samples[tree.label_to_node])
    # parent = nearest code one map up
    for v in range(1, tree.node_count):
        if tree.parent[v] > 0:
            level, code = model.node_codes_[v]
            code_vector = model.codes_[level - 1].reshape(-1, model.latent_dim)[code]
            up = model.codes_[level].reshape(-1, model.latent_dim)
            nearest = np.argmin(np.linalg.norm(up - code_vector, axis=1))
            assert model.node_codes_[tree.parent[v], 1] == nearest


def test_predict_proba_labels_apply(planted, planted_model):
    X, _ = planted
    model = planted_model
    proba = model.predict_proba(X)
    n_clusters = model.tree_.label_to_node.size
    assert proba.shape == (X.shape[0], n_clusters) and np.all(proba > 0)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert_array_equal(model.predict(X), proba.argmax(1))
    assert_array_equal(model.predict(X), model.labels_)
    assert set(model.labels_) == set(range(n_clusters))
    leaves = model.apply(X)
    assert np.all(model.tree_.is_leaf[leaves])
    assert_array_equal([model.tree_.leaf_to_label[int(v)] for v in leaves], model.labels_)
    path = model.decision_path(X)
    assert path.shape == (X.shape[0], model.tree_.node_count) and np.all(path.sum(1) == 3)


def test_predict_level_follows_the_chain(planted, planted_model):
    """predict_level equals the discretisation chain: nearest finest code, then nearest code one map up."""
    X, _ = planted
    model = planted_model
    Z = model.transform(X)
    fine, coarse = (c.reshape(-1, model.latent_dim) for c in model.codes_)
    chain1 = np.argmin(((Z[:, None] - fine[None]) ** 2).sum(-1), 1)
    chain2 = np.argmin(((fine[chain1][:, None] - coarse[None]) ** 2).sum(-1), 1)
    assert_array_equal(model.predict_level(X, level=1), chain1)
    assert_array_equal(model.predict_level(X, level=2), chain2)
    assert_array_equal(model.node_codes_[model.apply(X), 1], chain1)


def test_transform_score_and_history(planted, planted_model):
    X, _ = planted
    model = planted_model
    Z = model.transform(X)
    assert Z.shape == (X.shape[0], 8) and np.all(np.isfinite(Z))
    assert_array_equal(model.get_feature_names_out(), [f"htvae{i}" for i in range(8)])
    samples = model.score_samples(X)
    assert samples.shape == (X.shape[0],) and np.all(np.isfinite(samples))
    assert_allclose(model.score(X), samples.mean())
    noise = np.random.RandomState(0).normal(size=X.shape).astype(np.float32)
    assert model.score(X) > model.score(noise)
    assert [c.shape for c in model.codes_] == [(3, 3, 8), (1, 2, 8)]
    assert len(model.history_) == PLANTED["n_epochs"]
    for row in model.history_:
        assert {"rec", "hierarchy", "som", "kl", "train_loss"} <= set(row) and "must_link" not in row
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]


def test_sample(planted, planted_model):
    model = planted_model
    assert model.sample(5).shape == (5, planted[0].shape[1])
    assert_array_equal(model.sample(5, node=3), model.sample(5, node=3))  # seeded
    with pytest.raises(ValueError, match="node"):
        model.sample(2, node=model.tree_.node_count)
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0)


# ---- 3. the vectorised module vs per-map loops --------------------------------------------
def test_module_matches_per_map_reference(planted, planted_model):
    X, _ = planted
    with planted_model._inference_module() as module:
        assert isinstance(module, HTVAEModule)
        codes = module.codes.numpy()
        offsets = module.offsets
        maps = [codes[offsets[m]:offsets[m + 1]] for m in range(module.n_maps)]
        # scales: nearest 4-neighbour on each lattice, one code at a time
        scales = []
        for code_map, (rows, cols) in zip(maps, module.map_shapes):
            for r in range(rows):
                for c in range(cols):
                    nbs = [(r + dr) * cols + c + dc for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                           if 0 <= r + dr < rows and 0 <= c + dc < cols]
                    scales.append(min(np.linalg.norm(code_map[r * cols + c] - code_map[n]) for n in nbs))
        assert_allclose(module.code_scales().numpy(), np.array(scales) / module.rho, rtol=1e-12)
        x = torch.as_tensor(X[:32], dtype=torch.float64)
        z = module.encode(x)[0]
        ids = module.chain(z).numpy()
        terms = module(x)
    mu = [maps[0][np.argmin(((z.numpy()[:, None] - maps[0][None]) ** 2).sum(-1), 1)]]
    for m in range(1, module.n_maps):
        mu.append(maps[m][np.argmin(((mu[-1][:, None] - maps[m][None]) ** 2).sum(-1), 1)])
    for m in range(module.n_maps):
        assert_allclose(codes[ids[:, m]], mu[m])
    # eval mode: z_i = mu_i, so L_hierarchy is the squared length of the chain
    chain = [z.numpy(), *mu]
    hierarchy = sum(((b - a) ** 2).sum(1) for a, b in zip(chain[:-1], chain[1:]))
    assert_allclose(terms["hierarchy"].numpy(), hierarchy, rtol=1e-9)
    assert set(terms) == {"rec", "hierarchy", "som", "kl"}


def test_default_map_shapes():
    assert default_map_shapes(64, 3) == ((8, 8), (4, 4), (2, 2))
    assert default_map_shapes(10, 1) == ((2, 5),)
    assert default_map_shapes(10, 2) == ((2, 5), (1, 3))
    assert default_map_shapes(4, 3) == ((2, 2), (1, 3), (1, 2))
    model = HTVAE(max_leaves=6, max_depth=2, **{k: v for k, v in TINY.items() if k != "map_shapes"})
    assert model.fit(np.random.RandomState(0).normal(size=(40, 3))).map_shapes_ == ((2, 3), (1, 2))


# ---- 4. must-link constraints -------------------------------------------------------------
def make_must_link_problem(seed=0):
    """Four blobs at the corners of an 8 x 3 rectangle (plus noise features), standardised;
    the class is the short axis, which an unsupervised 2-code map does not follow. Returns
    X, the class, and 40 must-link pairs within classes."""
    rng = np.random.RandomState(seed)
    centers = np.array([[0, 0], [0, 3], [8, 0], [8, 3]], float)
    blob = rng.randint(4, size=200)
    X = np.hstack([centers[blob] + 0.4 * rng.normal(size=(200, 2)), 0.3 * rng.normal(size=(200, 4))])
    X = StandardScaler().fit_transform(X).astype(np.float32)
    cls = blob % 2
    pairs = np.concatenate([np.stack([rng.choice(s, 20), rng.choice(s, 20)], 1)
                            for s in (np.flatnonzero(cls == 0), np.flatnonzero(cls == 1))])
    return X, cls, pairs


# Measured for random_state 0, 1, 2: accuracy w.r.t. the class 0.52 / 0.72 / 0.69 without and
# 0.995 / 0.94 / 0.965 with the must-links (weight 5); pinned at 0.
MUST_LINK = dict(map_shapes=((1, 2),), latent_dim=2, rho=4.0, sigma_init=0.1, n_epochs=20, batch_size=16, lr=2e-3,
                 random_state=0)


@pytest.fixture(scope="module")
def must_link_fits():
    X, cls, pairs = make_must_link_problem()
    free = HTVAE(**MUST_LINK).fit(X)
    linked = HTVAE(**MUST_LINK, must_link_weight=5.0).fit(X, must_link=pairs)
    return X, cls, pairs, free, linked


def _relative_pair_distance(Z, pairs):
    """Mean squared distance of the pairs over the mean squared distance of all samples."""
    return np.mean(((Z[pairs[:, 0]] - Z[pairs[:, 1]]) ** 2).sum(1)) / (2 * Z.var(0).sum())


def test_must_link_raises_accuracy_and_pulls_pairs_together(must_link_fits):
    X, cls, pairs, free, linked = must_link_fits
    assert cluster_accuracy(cls, free.labels_) < 0.8
    assert cluster_accuracy(cls, linked.labels_) >= 0.9
    assert _relative_pair_distance(linked.transform(X), pairs) < 0.5 * _relative_pair_distance(free.transform(X), pairs)
    assert all(np.isfinite(row["must_link"]) for row in linked.history_)
    assert "must_link" not in free.history_[-1]
    # the training data is not kept by the fitted module
    assert linked.net_.module_.train_data is None and linked.net_.module_.must_link is None


def test_must_link_through_pipeline(must_link_fits):
    X, _, pairs, _, linked = must_link_fits
    pipe = Pipeline([("scale", StandardScaler()), ("htvae", HTVAE(**MUST_LINK, must_link_weight=5.0))])
    pipe.fit(X, htvae__must_link=pairs)
    # X is already standardised: the pipeline's model is the direct fit
    assert_array_equal(pipe.predict(X), linked.labels_)
    assert "must_link" in pipe[-1].history_[-1]


def test_must_link_pairs_straddle_batches(must_link_fits):
    """Pairs are encoded from the stored training data, whatever the batch holds."""
    X, _, pairs, _, _ = must_link_fits
    module = HTVAEModule(X.shape[1], 2, ((1, 2),), "gaussian", "mlp")
    far = np.array([[0, X.shape[0] - 1]])
    for data in (X, sparse.csr_matrix(X)):
        module.set_must_link(far, data)
        rows = module._pair_rows(5, torch.zeros(1))
        assert rows.shape == (10, X.shape[1]) and rows.dtype == torch.float32
        assert_array_equal(rows.numpy(), np.tile(X[[0, -1]], (5, 1)))
    module.train()
    terms = module(torch.as_tensor(X[10:26]))  # a batch holding neither sample of the pair
    assert terms["must_link"].shape == (16,) and torch.all(terms["must_link"] >= 0)
    module.set_must_link(None, None)
    assert "must_link" not in module(torch.as_tensor(X[10:26]))


@pytest.mark.parametrize("must_link, match", [
    (np.array([0, 1]), r"shape \(n_pairs, 2\)"),
    (np.zeros((3, 3), dtype=int), r"shape \(n_pairs, 2\)"),
    (np.array([[0, 60]]), r"in \[0, 59\]"),
    (np.array([[-1, 2]]), r"in \[0, 59\]"),
    (np.array([[0.0, 1.0]]), "integer"),
])
def test_bad_must_link(tiny, must_link, match):
    with pytest.raises(ValueError, match=match):
        HTVAE(**TINY).fit(tiny, must_link=must_link)


def test_must_link_level_above_the_maps(tiny):
    with pytest.raises(ValueError, match="must_link_level=3 exceeds the number of maps"):
        HTVAE(must_link_level=3, **TINY).fit(tiny, must_link=[[0, 1]])


# ---- 5. reproducibility, pickling, sparse input ----------------------------------------------
def test_reproducible_and_seed_dependent(tiny):
    a, b = HTVAE(**TINY).fit(tiny), HTVAE(**TINY).fit(tiny)
    assert_array_equal(a.transform(tiny), b.transform(tiny))
    assert_array_equal(a.labels_, b.labels_)
    c = HTVAE(**{**TINY, "random_state": 1}).fit(tiny)
    assert not np.allclose(a.transform(tiny), c.transform(tiny))


def test_global_torch_rng_untouched(tiny):
    before = torch.get_rng_state()
    HTVAE(**TINY).fit(tiny, must_link=[[0, 1], [2, 3]]).sample(3)
    assert torch.equal(before, torch.get_rng_state())


def test_pickle(planted, planted_model):
    X, _ = planted
    restored = pickle.loads(pickle.dumps(planted_model))
    assert_array_equal(restored.predict(X), planted_model.predict(X))
    assert_allclose(restored.transform(X), planted_model.transform(X))
    assert_array_equal(restored.sample(3, node=2), planted_model.sample(3, node=2))


def test_csr_equals_dense(tiny):
    pairs = [[0, 59], [1, 30]]
    dense = HTVAE(**TINY).fit(tiny, must_link=pairs)
    csr = HTVAE(**TINY).fit(sparse.csr_matrix(tiny), must_link=pairs)
    assert_array_equal(csr.labels_, dense.labels_)
    assert_allclose(csr.transform(sparse.csr_matrix(tiny)), dense.transform(tiny))
    assert_allclose(csr.predict_proba(tiny), dense.predict_proba(sparse.csr_matrix(tiny)))


# ---- 6. bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    ({"map_shapes": ((2, 2), (3, 3))}, "strictly decreasing"),
    ({"map_shapes": ((2, 2), (1, 4))}, "strictly decreasing"),
    ({"map_shapes": ((2, 2), (1, 1))}, "at least 2 codes"),
    ({"map_shapes": ((2, 2), (2,))}, r"map_shapes\[1\]"),
    ({"map_shapes": ()}, "at least one map"),
    ({"map_shapes": None, "max_leaves": 3, "max_depth": 3}, "max_leaves=3 is too small"),
])
def test_bad_map_shapes(tiny, params, match):
    with pytest.raises(ValueError, match=match):
        HTVAE(**{**TINY, **params}).fit(tiny)


@pytest.mark.parametrize("params", [{"rho": 0}, {"rho": -1.0}, {"sigma_init": 0}, {"must_link_weight": -1},
                                    {"map_shapes": "2x2"}, {"n_epochs": 0}])
def test_bad_parameters(tiny, params):
    with pytest.raises(InvalidParameterError):
        HTVAE(**{**TINY, **params}).fit(tiny)


def test_bad_level_and_not_fitted(tiny, planted_model, planted):
    with pytest.raises(NotFittedError):
        HTVAE().predict(tiny)
    for level in (0, 3, 1.5):
        with pytest.raises(ValueError, match="level must be an integer in"):
            planted_model.predict_level(planted[0], level=level)


def test_diverging_loss_raises():
    X = np.random.RandomState(0).normal(size=(40, 4)) * 1e20  # finite in float32, squares are not
    with pytest.raises(ValueError, match="diverged") as info:
        HTVAE(likelihood="gaussian", **TINY).fit(X)
    assert "epoch 1" in str(info.value)


def test_clone_keeps_params():
    model = HTVAE(map_shapes=((4, 4), (2, 2)), rho=3.0, must_link_level=2)
    assert clone(model).get_params()["map_shapes"] == ((4, 4), (2, 2))
    assert clone(model).get_params() == model.get_params()


# ---- 7. CUDA ----------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_shapes(must_link_fits):
    X, _, pairs, _, linked = must_link_fits
    model = HTVAE(**MUST_LINK, device="cuda").fit(X, must_link=pairs)
    assert next(model.net_.module_.parameters()).device.type == "cuda"
    assert_array_equal(model.predict(X), model.labels_)
    assert model.predict_proba(X).shape[0] == X.shape[0]
    assert model.transform(X).shape == linked.transform(X).shape
    assert model.sample(4).shape == (4, X.shape[1]) and model.sample(2, node=1).shape == (2, X.shape[1])
    assert np.isfinite(model.score(X))
