"""Input larger than memory: memmaps and h5py/zarr-style array-likes are read batch by batch (issue 15).

A lazy ``X`` must give exactly what the equivalent in-memory float32 array gives, read only
blocks of rows (never the whole of it, never converted as a whole), and be rejected with a
clear message when its shape or dtype is wrong.
"""

import os
import tracemalloc

import numpy as np
import pytest

import sk_hierclust._base as base
import sk_hierclust._lazy as lazy
from sk_hierclust._lazy import BatchDataset, LazyRows, take_rows
from sk_hierclust._testing import make_config, make_planted

MODELS = ["TreeVAE", "HCRL1"]


@pytest.fixture(scope="module")
def X_uint8():
    """The planted blobs quantised to integers 0..20, as uint8 (Gaussian likelihood: not in [0, 1])."""
    X, _ = make_planted(n_per_cluster=40)
    return np.round(20 * (X - X.min()) / (X.max() - X.min())).astype(np.uint8)


def _memmap(path, X):
    out = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    out[:] = X
    out.flush()
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


class ArrayLike:
    """A minimal h5py-style dataset: ``shape``, ``dtype``, ``__getitem__`` with slices or increasing index arrays.

    Records the number of rows of every read; ``fancy=False`` accepts slices only (like a
    store without fancy indexing).
    """

    def __init__(self, data, fancy=True):
        self._data, self.fancy, self.reads = data, fancy, []
        self.shape, self.dtype = data.shape, data.dtype

    def __getitem__(self, key):
        if isinstance(key, slice):
            out = self._data[key]
        elif self.fancy:
            key = np.asarray(key)
            assert np.all(np.diff(key) > 0), "h5py needs increasing indices"
            out = self._data[key]
        else:
            raise TypeError("only slices")
        self.reads.append(len(out))
        return out.copy()


@pytest.fixture(scope="module")
def reference(X_uint8):
    """Each model fitted on the in-memory float32 copy of ``X_uint8``."""
    X = X_uint8.astype(np.float32)
    return {name: make_config(name).fit(X) for name in MODELS}


def _assert_same(model, ref, X_lazy, X):
    np.testing.assert_array_equal(model.labels_, ref.labels_)
    np.testing.assert_array_equal(model.predict(X_lazy), ref.predict(X))
    np.testing.assert_array_equal(model.transform(X_lazy), ref.transform(X))
    np.testing.assert_array_equal(ref.apply(X_lazy), ref.apply(X))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_memmap_equals_in_memory(name, dtype, X_uint8, reference, tmp_path):
    X = X_uint8.astype(np.float32)
    mm = _memmap(tmp_path / "X.dat", X_uint8.astype(dtype))
    model = make_config(name).fit(mm)
    assert model.likelihood_ == "gaussian"  # uint8 values are used as they are, not divided by 255
    assert model.n_features_in_ == X.shape[1] and not hasattr(model, "feature_names_in_")
    _assert_same(model, reference[name], mm, X)


def test_array_like_reads_batches_only(X_uint8, reference, monkeypatch):
    """An h5py-style array-like: same model as in memory, and no read larger than a block."""
    monkeypatch.setattr(lazy, "BLOCK_ROWS", 64)
    monkeypatch.setattr(base, "INFERENCE_BATCH", 64)
    X = X_uint8.astype(np.float32)
    store = ArrayLike(X_uint8)
    model = make_config("TreeVAE").fit(store)  # the growth phases train on a lazy subset
    assert max(store.reads) <= 64 < X.shape[0]
    assert model.n_features_in_ == X.shape[1]
    _assert_same(model, reference["TreeVAE"], store, X)
    assert max(store.reads) <= 64


def test_array_like_without_fancy_indexing(X_uint8, reference):
    store = ArrayLike(X_uint8, fancy=False)
    model = make_config("HCRL1").fit(store)
    assert 1 in store.reads  # training batches are read row by row (no fancy indexing), not the whole X at once
    np.testing.assert_array_equal(model.labels_, reference["HCRL1"].labels_)


def test_binary_uint8_gets_bernoulli(tmp_path):
    X, _ = make_planted(n_per_cluster=20)
    mm = _memmap(tmp_path / "X.u8", (X > X.mean()).astype(np.uint8))
    assert make_config("HCRL1").fit(mm).likelihood_ == "bernoulli"


def test_lazy_rows_indexing(X_uint8):
    rows = LazyRows(ArrayLike(X_uint8))
    assert rows.shape == X_uint8.shape and rows.dtype == np.float32 and len(rows) == X_uint8.shape[0]
    expected = X_uint8.astype(np.float32)
    idx = np.array([5, 3, 3, 100, 0])
    np.testing.assert_array_equal(rows[idx], expected[idx])  # any order, repeats
    np.testing.assert_array_equal(rows[10:20], expected[10:20])
    np.testing.assert_array_equal(rows[::7], expected[::7])
    np.testing.assert_array_equal(rows[-1], expected[-1])
    sub = take_rows(rows, np.array([7, 2, 9]))
    assert isinstance(sub, LazyRows) and sub.shape == (3, X_uint8.shape[1])
    np.testing.assert_array_equal(sub[[2, 0]], expected[[9, 7]])
    np.testing.assert_array_equal(take_rows(sub, [1])[0:1], expected[[2]])
    np.testing.assert_array_equal(take_rows(expected, [1, 2]), expected[[1, 2]])
    with pytest.raises(IndexError):
        rows[[X_uint8.shape[0]]]
    x, y = BatchDataset(rows).__getitems__([4, 1])
    assert str(x.dtype) == "torch.float32"
    np.testing.assert_array_equal(x.numpy(), expected[[4, 1]])
    assert tuple(y.shape) == (2, 1)


def _rss_file_kib():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("RssFile:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc/self/status")
def test_random_batches_keep_the_memmap_pages_bounded(tmp_path):
    # without releasing after each scattered read, 40 batches of 512 random rows map most of this
    # 157 MB file (one batch mapped 30-300 MB when measured: whole page-cache folios per row)
    n, d = 200_000, 784
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(n, d))
    X[:] = 1
    X.flush()
    X = np.load(tmp_path / "x.npy", mmap_mode="r")
    rows, rng = LazyRows(X), np.random.RandomState(0)
    before = _rss_file_kib()
    grown = 0
    for _ in range(40):
        batch = rows[rng.choice(n, 512, replace=False)]
        grown = max(grown, _rss_file_kib() - before)
    assert batch.shape == (512, d) and batch.dtype == np.float32 and np.all(batch == 1)
    assert grown < 64 * 1024, f"file pages grew by {grown / 1024:.0f} MiB"


def test_predict_allocates_far_less_than_X(tmp_path):
    """Predicting a uint8 memmap allocates batches, not a float32 copy of X (8 MiB here)."""
    rng = np.random.RandomState(0)
    small = rng.randint(0, 2, size=(64, 64)).astype(np.float32)
    model = make_config("HCRL1").fit(small)
    n = 32768
    mm = _memmap(tmp_path / "big.u8", rng.randint(0, 2, size=(n, 64)).astype(np.uint8))
    float32_size = n * 64 * 4
    model.predict(mm[:2048])  # warm-up (lazy imports, caches)
    tracemalloc.start()
    try:
        labels = model.predict(mm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (n,)
    assert peak < float32_size / 8, f"predict allocated {peak} bytes; X as float32 is {float32_size}"
    np.testing.assert_array_equal(labels[:2048], model.predict(np.asarray(mm[:2048], dtype=np.float32)))


class NoShape:
    dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        return np.zeros((1, 3), dtype=np.float32)


@pytest.mark.parametrize("make, error, match", [
    (lambda p: np.memmap(p, dtype=np.float32, mode="w+", shape=(50,)), ValueError, "2-D X"),
    (lambda p: np.memmap(p, dtype=np.float32, mode="w+", shape=(5, 2, 3)), ValueError, "2-D X"),
    (lambda p: np.memmap(p, dtype=np.complex64, mode="w+", shape=(10, 3)), TypeError, "numeric dtype"),
    (lambda p: ArrayLike(np.array([["a", "b"]] * 4, dtype=object)), TypeError, "numeric dtype"),
    (lambda p: ArrayLike(np.array([["a", "b"]] * 4)), TypeError, "numeric dtype"),
    (lambda p: NoShape(), TypeError, "no shape attribute"),
    (lambda p: np.memmap(p, dtype=np.float32, mode="w+", shape=(1, 3)), ValueError, "minimum of 2"),
    (lambda p: ArrayLike(np.zeros((4, 0))), ValueError, "0 feature"),
])
def test_bad_input_in_fit(make, error, match, tmp_path):
    with pytest.raises(error, match=match):
        make_config("HCRL1").fit(make(tmp_path / "bad.dat"))


def test_bad_values_and_shape_mismatch(X_uint8, reference, tmp_path):
    X = X_uint8.astype(np.float32)
    X[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(in rows 0\.\."):
        make_config("HCRL1").fit(_memmap(tmp_path / "nan.f32", X))
    model = reference["HCRL1"]
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(_memmap(tmp_path / "nan2.f32", X))
    wrong = _memmap(tmp_path / "wide.u8", np.zeros((5, X.shape[1] + 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=f"X has {X.shape[1] + 1} features, but HCRL is expecting {X.shape[1]}"):
        model.predict(wrong)

    class Lying(ArrayLike):  # says (n, d) but gives rows of d - 1 columns
        def __getitem__(self, key):
            return super().__getitem__(key)[:, 1:]

    with pytest.raises(ValueError, match="gave a block of shape"):
        make_config("HCRL1").fit(Lying(X_uint8))
