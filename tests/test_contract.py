"""What every model promises, tested once over every configuration of the test table.

Each configuration of ``sk_hierclust._testing.CONFIGS`` is fitted once on the planted
hierarchy (quick settings); the read-only tests share that fit.
"""

import inspect
import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from sk_hierclust._base import INFERENCE_BATCH
from sk_hierclust._testing import CONFIGS, make_config

NAMES = list(CONFIGS)


@pytest.fixture(scope="module")
def data(planted):
    X, _ = planted
    return X[::2]  # 150 samples of the 4 planted blobs, in [0, 1]


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, data):
    """``(name, model, rng_before, rng_after)``: one quick fit per configuration."""
    model = make_config(request.param)
    before = torch.random.get_rng_state()
    model.fit(data)
    return request.param, model, before, torch.random.get_rng_state()


def test_keyword_only_constructor():
    for cls, _ in CONFIGS.values():
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), cls.__name__
        with pytest.raises(TypeError):
            cls(3)


def test_global_torch_rng_untouched(fitted, data):
    _, model, before, after = fitted
    assert torch.equal(before, after)
    state = torch.random.get_rng_state()
    model.sample(2)
    model.predict(data[:5])
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform", "apply", "decision_path",
                                    "score_samples", "score"])
@pytest.mark.parametrize("name", NAMES)
def test_not_fitted(name, method, data):
    with pytest.raises(NotFittedError):
        getattr(make_config(name), method)(data)


@pytest.mark.parametrize("name", NAMES)
def test_sample_not_fitted(name):
    with pytest.raises(NotFittedError):
        make_config(name).sample(2)


@pytest.mark.parametrize("param, value", [("lr", -1.0), ("batch_size", 1), ("n_epochs", 0), ("encoder", "rnn"),
                                          ("likelihood", "poisson"), ("kl_anneal_epochs", -1)])
@pytest.mark.parametrize("name", NAMES)
def test_invalid_shared_parameter(name, param, value, data):
    with pytest.raises(InvalidParameterError, match=param):
        make_config(name).set_params(**{param: value}).fit(data)


class _PoisonWeights(Callback):
    """Set every parameter to NaN before the second training batch."""

    def __init__(self):
        self.batches = 0

    def on_batch_begin(self, net, training=False, **kwargs):
        self.batches += training
        if self.batches == 2:
            with torch.no_grad():
                for p in net.module_.parameters():
                    p.fill_(float("nan"))


@pytest.mark.parametrize("name", NAMES)
def test_divergence_raises_naming_the_term(name, data):
    model = make_config(name).set_params(callbacks=[("poison", _PoisonWeights())])
    with pytest.raises(ValueError, match=rf"{type(model).__name__}: training diverged in epoch 1 \(phase "
                                         r"'[\w:]+'\): the ELBO term '\w+' became nan. Likely cause"):
        model.fit(data)


def test_tree_and_labels(fitted, data):
    _, model, _, _ = fitted
    tree = model.tree_
    assert tree.n_node_samples[0] == data.shape[0]
    np.testing.assert_array_equal(np.unique(model.labels_), np.arange(len(tree.label_to_node)))
    # every labelled leaf holds training samples, and the labels are the leaves' samples
    np.testing.assert_array_equal(np.bincount(model.labels_), tree.n_node_samples[tree.label_to_node])


def test_history_records_phases_and_terms(fitted):
    _, model, _, _ = fitted
    terms = set(model.net_.module_.elbo_terms)
    assert set(model.net_.module_.annealed_terms) <= terms
    for row in model.history_:
        assert "batches" not in row
        assert {"phase", "kl_weight", "train_loss", "dur"} <= set(row)
        assert set(row) & terms


@pytest.mark.parametrize("name", NAMES)
def test_train_loss_is_the_sum_of_the_recorded_terms(name, data):
    # without annealing, each epoch's loss is the sum of its terms' epoch means
    model = make_config(name).set_params(kl_anneal_epochs=0).fit(data)
    for row in model.history_:
        assert row["kl_weight"] == 1.0
        recorded = [row[t] for t in model.net_.module_.elbo_terms if t in row]
        assert sum(recorded) == pytest.approx(row["train_loss"], rel=1e-5, abs=1e-5)


def test_predict_proba_predict_apply_agree(fitted, data):
    _, model, _, _ = fitted
    proba = model.predict_proba(data)
    labels = model.predict(data)
    assert proba.shape == (data.shape[0], len(model.tree_.label_to_node))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, proba.argmax(1))
    # apply's node lies on the root path of the predicted leaf (HCRL may stop above it)
    nodes = model.apply(data)
    paths = model.tree_.decision_path(model.tree_.label_to_node[labels]).toarray()
    assert paths[np.arange(len(nodes)), nodes].all()
    np.testing.assert_array_equal(model.decision_path(data).toarray(), model.tree_.decision_path(nodes).toarray())


def test_pickle_and_joblib_identical(fitted, data, tmp_path):
    _, model, _, _ = fitted
    expected = model.predict_proba(data)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(data), expected)
    joblib.dump(model, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict_proba(data), expected)
    np.testing.assert_array_equal(restored.sample(3), model.sample(3))


def test_refit_identical_and_sparse_equals_dense(fitted, data):
    name, model, _, _ = fitted
    again = make_config(name).fit(data)
    np.testing.assert_array_equal(again.labels_, model.labels_)
    np.testing.assert_array_equal(again.predict_proba(data), model.predict_proba(data))
    sparse = make_config(name).fit(sp.csr_matrix(data))
    np.testing.assert_array_equal(sparse.labels_, model.labels_)
    np.testing.assert_allclose(sparse.transform(sp.csr_array(data)), model.transform(data), rtol=1e-5, atol=1e-6)


def test_sample_seeded_and_shaped(fitted, data):
    _, model, _, _ = fitted
    first = model.sample(4)
    assert first.shape == (4, data.shape[1]) and first.dtype == np.float32
    np.testing.assert_array_equal(first, model.sample(4))
    for node in range(model.tree_.node_count):
        out = model.sample(2, node=node)
        assert out.shape == (2, data.shape[1]) and np.isfinite(out).all()
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n_samples"):
            model.sample(bad)
    for bad in (-1, model.tree_.node_count, 1.5):
        with pytest.raises(ValueError, match="node"):
            model.sample(2, node=bad)


def test_transform_shape_and_feature_names(fitted, data):
    _, model, _, _ = fitted
    out = model.transform(data)
    assert out.shape == (data.shape[0], model._n_features_out)
    assert len(model.get_feature_names_out()) == out.shape[1]


@pytest.mark.parametrize("name", [n for n in NAMES if "max_depth" in CONFIGS[n][0]().get_params()])
def test_max_depth_is_the_depth_of_tree(name, data):
    model = make_config(name).set_params(max_depth=1, max_leaves=4)
    if "map_shapes" in model.get_params():
        model.set_params(map_shapes=None)
    assert model.fit(data).tree_.max_depth == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda(name, data):
    model = make_config(name).set_params(device="cuda").fit(data)
    assert next(model.net_.module_.parameters()).device.type == "cuda"
    cpu = make_config(name).fit(data)
    assert model.predict_proba(data).shape == cpu.predict_proba(data).shape
    assert (model.predict(data) == cpu.predict(data)).mean() > 0.9


# ---- failures: a clear ValueError before the work is spent --------------------------------
@pytest.mark.parametrize("lr, shown", [(1e3, "1000"), (1e6, "1e\\+06")])
@pytest.mark.parametrize("name", NAMES)
def test_huge_learning_rate_raises_divergence(name, lr, shown, data):
    model = make_config(name).set_params(lr=lr)
    with pytest.raises(ValueError, match=rf"{type(model).__name__}: training diverged in epoch \d+ \(phase "
                                         rf"'[\w:]+'\): .*Likely cause: a learning rate too high .*lr={shown};"):
        model.fit(data)
    assert not hasattr(model, "tree_")


@pytest.mark.parametrize("name", NAMES)
def test_constant_data_is_refused(name, data):
    with pytest.raises(ValueError, match=r"X is constant: all 150 samples are identical"):
        make_config(name).fit(np.tile(data[:1], (150, 1)))


@pytest.mark.parametrize("name", NAMES)
def test_nan_message_says_how_to_impute(name, data):
    X = data.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN or infinity\..*SimpleImputer"):
        make_config(name).fit(X)


@pytest.mark.parametrize("device, match", [("meta", "only 'cpu' and 'cuda'"), ("tpu", "not a torch device"),
                                           ("cuda:7", "CUDA")])
def test_device_is_validated_before_training(device, match, data):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(ValueError, match=match):
        make_config("TreeVAE").set_params(device=device).fit(data)


def test_booleans_are_not_integers(fitted):
    _, model, _, _ = fitted
    with pytest.raises(ValueError, match="n_samples must be a positive integer, got True"):
        model.sample(n_samples=True)
    with pytest.raises(ValueError, match="node must be a node id of tree_"):
        model.sample(2, node=True)


def test_inference_never_returns_nan(fitted, data):
    _, model, _, _ = fitted
    broken = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        for p in broken.net_.module_.parameters():
            p.fill_(float("nan"))
    for method in ("predict_proba", "transform", "score_samples"):
        with pytest.raises(ValueError, match="produced NaN or infinite values at inference"):
            getattr(broken, method)(data)


def test_pickle_holds_no_optimizer_state(fitted, data):
    _, model, _, _ = fitted
    param_bytes = sum(p.numel() * p.element_size() for p in model.net_.module_.parameters())
    assert not model.net_.optimizer_.state
    # the parameters, plus about 50 kB of history, tree and settings (these test models are small:
    # the digits main job's TreeVAE pickles at 1.02 times its 25 MB of parameters)
    assert len(pickle.dumps(model)) <= 1.5 * param_bytes + 100_000


@pytest.mark.parametrize("method", ["transform", "predict", "predict_proba"])
def test_inference_writes_into_one_preallocated_output(fitted, data, method):
    import tracemalloc

    # 40 inference batches; what the output does not hold stays near 10 kB (measured: 1.04 * out.nbytes
    # at most), while gathering the batches' results before writing them would at least double the peak
    _, model, _, _ = fitted
    n = 40 * INFERENCE_BATCH
    X = np.ascontiguousarray(np.tile(data, (n // len(data) + 1, 1))[:n], dtype=np.float32)
    tracemalloc.start()
    out = getattr(model, method)(X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape[0] == n and out.dtype == (np.int64 if method == "predict" else np.float32)
    assert peak < 1.1 * out.nbytes, (peak, out.nbytes)
