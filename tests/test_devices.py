"""Models trained on one device and used on another: pickling across devices, ``set_params(device=...)``.

Without a GPU, a CUDA-trained model is simulated: a CPU-fitted model whose ``device`` and
``net_.device`` say ``"cuda"``, pickled with the module's tensors recorded at location
``"cuda:0"`` (what torch writes for CUDA tensors; loading them without a map location fails
on this machine, as a real CUDA pickle would). With a GPU the same checks run on a model
really fitted on ``"cuda"``, loaded as a machine without CUDA would (``torch.cuda.is_available``
patched to False).
"""

import pickle
import re
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
import torch.serialization
from skorch import NeuralNet
from skorch.exceptions import DeviceWarning

from sk_hierclust._testing import CONFIGS, make_config

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def X():
    return np.random.RandomState(0).rand(60, 6).astype(np.float32)


def _module_tensors(model):
    module = model.net_.module_
    return [*module.parameters(), *module.buffers()]


def _pickle_as_if_on(model, device):
    """Pickle a CPU-fitted ``model`` as torch would if its net lived on ``device`` (a CUDA device)."""
    model.device = device
    model.net_.device = device
    storages = {t.untyped_storage().data_ptr() for t in _module_tensors(model)}
    location_tag = torch.serialization.location_tag

    location = device if ":" in device else device + ":0"

    def tag(storage):
        return location if storage.data_ptr() in storages else location_tag(storage)

    with mock.patch.object(torch.serialization, "location_tag", tag):
        return pickle.dumps(model)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cuda_model_loads_on_cpu_with_a_warning(name, X):
    model = make_config(name).fit(X)
    labels, proba = model.predict(X), model.predict_proba(X)
    data = _pickle_as_if_on(model, "cuda")
    assert b"cuda:0" in data  # torch's record of where the tensors were
    with pytest.warns(DeviceWarning, match=r"saved on device 'cuda'.*CUDA is not available.*loaded on 'cpu'"):
        loaded = pickle.loads(data)
    assert loaded.device == "cpu" and loaded.net_.device == "cpu"
    assert all(t.device.type == "cpu" for t in _module_tensors(loaded))
    np.testing.assert_array_equal(loaded.predict(X), labels)
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    loaded.fit(X)  # refits where it now is


def test_cpu_model_round_trip_does_not_warn(X):
    model = make_config("TreeVAE").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeviceWarning)
        loaded = pickle.loads(pickle.dumps(model))
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_unreadable_torch_pickle_names_the_versions(X):
    """A pickle whose tensors this torch cannot read (simulated: a newer storage protocol) says which torch wrote it."""
    model = make_config("HTVAE").fit(X)
    getstate = NeuralNet.__getstate__

    def newer_getstate(self):
        with mock.patch.object(torch.serialization, "PROTOCOL_VERSION", torch.serialization.PROTOCOL_VERSION + 1):
            return getstate(self)

    with mock.patch.object(NeuralNet, "__getstate__", newer_getstate), mock.patch.object(torch, "__version__", "9.1.0"):
        data = _pickle_as_if_on(model, "cuda")
    message = rf"saved on device 'cuda' by torch 9\.1\.0\) cannot be read by this torch {re.escape(torch.__version__)}"
    with pytest.raises(RuntimeError, match=message) as info:
        pickle.loads(data)
    assert "Invalid protocol version" in str(info.value.__cause__)


def test_set_params_device_moves_the_fitted_net(X):
    model = make_config("HCRL1").fit(X)
    labels = model.predict(X)
    model.device = model.net_.device = "cuda"  # as if fitted on a GPU (the tensors stay on the CPU)
    with mock.patch.object(model.net_.module_, "to", wraps=model.net_.module_.to) as to:
        assert model.set_params(device="cpu") is model
    to.assert_called_once_with("cpu")
    assert model.device == "cpu" and model.net_.device == "cpu"
    np.testing.assert_array_equal(model.predict(X), labels)


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_set_params_missing_device_on_fitted_model_raises_and_changes_nothing(X):
    model = make_config("VLAC-enumerate").fit(X)
    with pytest.raises(ValueError, match="CUDA is not available"):
        model.set_params(device="cuda", lr=0.5)
    assert model.device == "cpu" and model.lr != 0.5 and model.net_.device == "cpu"
    unfitted = make_config("VLAC-enumerate").set_params(device="cuda")  # unfitted: checked at fit, as usual
    assert unfitted.device == "cuda"


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_real_gpu_model_moves_and_loads_without_cuda(name, X):
    model = make_config(name).set_params(device="cuda").fit(X)
    labels, proba = model.predict(X), model.predict_proba(X)
    data = pickle.dumps(model)
    with mock.patch.object(torch.cuda, "is_available", lambda: False), \
            pytest.warns(DeviceWarning, match="CUDA is not available"):
        loaded = pickle.loads(data)
    assert loaded.device == "cpu" and all(t.device.type == "cpu" for t in _module_tensors(loaded))
    np.testing.assert_array_equal(loaded.predict(X), labels)
    np.testing.assert_allclose(loaded.predict_proba(X), proba, atol=1e-6)
    loaded.set_params(device="cuda")
    assert all(t.device.type == "cuda" for t in _module_tensors(loaded))
    np.testing.assert_array_equal(loaded.predict(X), labels)
    model.set_params(device="cpu")
    assert all(t.device.type == "cpu" for t in _module_tensors(model))
    np.testing.assert_array_equal(model.predict(X), labels)
    if torch.cuda.device_count() == 1:  # saved on a second GPU: loaded on the first
        on_gpu = make_config(name).set_params(device="cuda").fit(X)
        model_gpu1 = _pickle_as_if_on(on_gpu, "cuda:1")
        with pytest.warns(DeviceWarning, match="1 CUDA device"):
            loaded = pickle.loads(model_gpu1)
        assert loaded.device == "cuda:0"
        np.testing.assert_array_equal(loaded.predict(X), on_gpu.predict(X))
