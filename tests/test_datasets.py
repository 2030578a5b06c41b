"""Tests for sk_hierclust.datasets."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from sk_hierclust.datasets import (
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)


def _write_idx(path, array, magic):
    """Write ``array`` (uint8) as a gzip-compressed IDX file."""
    array = np.asarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _write_split(folder, prefix, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)


@pytest.fixture
def fake_home(tmp_path):
    """A data_home with tiny mnist/ and fashion_mnist/ folders."""
    rng = np.random.RandomState(0)
    data = {}
    for name in ("mnist", "fashion_mnist"):
        train = rng.randint(0, 256, size=(5, 28, 28))
        train[0, 0, 0], train[0, 0, 1] = 0, 255
        test = rng.randint(0, 256, size=(3, 28, 28))
        y_train, y_test = np.array([0, 1, 2, 3, 9]), np.array([7, 8, 9])
        _write_split(tmp_path / name, "train", train, y_train)
        _write_split(tmp_path / name, "t10k", test, y_test)
        data[name] = (train, y_train, test, y_test)
    return tmp_path, data


@pytest.mark.parametrize(
    "loader, name", [(load_mnist, "mnist"), (load_fashion_mnist, "fashion_mnist")]
)
def test_load_idx_shapes_dtypes_values(fake_home, loader, name):
    home, data = fake_home
    train, y_train, test, y_test = data[name]

    X, y = loader(home)  # default subset="train"
    assert X.shape == (5, 784) and X.dtype == np.float32
    assert y.shape == (5,) and y.dtype == np.int64
    assert X[0, 0] == 0.0 and X[0, 1] == 1.0
    assert X.min() >= 0.0 and X.max() <= 1.0
    np.testing.assert_allclose(X, train.reshape(5, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, y_train)

    X, y = loader(home, subset="test")
    np.testing.assert_allclose(X, test.reshape(3, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, y_test)

    X, y = loader(home, subset="all")
    assert X.shape == (8, 784)
    np.testing.assert_allclose(X[5:], test.reshape(3, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, np.concatenate([y_train, y_test]))


def test_data_home_can_be_the_dataset_folder(fake_home):
    home, data = fake_home
    X, y = load_mnist(str(home / "mnist"), subset="test")
    np.testing.assert_array_equal(y, data["mnist"][3])


def test_data_home_from_environment(fake_home, monkeypatch):
    home, data = fake_home
    monkeypatch.setenv("SK_HIERCLUST_DATA", str(home))
    _, y = load_fashion_mnist(subset="test")
    np.testing.assert_array_equal(y, data["fashion_mnist"][3])


def test_default_data_home_is_relative_to_cwd(tmp_path, monkeypatch):
    data_home = tmp_path / "shared" / "data"
    _write_split(data_home / "mnist", "t10k", np.zeros((2, 28, 28)), [4, 5])
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.delenv("SK_HIERCLUST_DATA", raising=False)
    _, y = load_mnist(subset="test")
    np.testing.assert_array_equal(y, [4, 5])


def test_missing_files_error(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        load_mnist(tmp_path)
    msg = str(excinfo.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg
    with pytest.raises(FileNotFoundError, match="zalandoresearch/fashion-mnist"):
        load_fashion_mnist(tmp_path, subset="test")


def test_missing_labels_named(fake_home):
    home, _ = fake_home
    (home / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    load_mnist(home)  # train is still complete
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(home, subset="test")


def test_bad_subset(fake_home):
    home, _ = fake_home
    with pytest.raises(ValueError, match="subset"):
        load_mnist(home, subset="validation")


def test_corrupt_magic_number(fake_home):
    home, _ = fake_home
    path = home / "mnist" / "train-images-idx3-ubyte.gz"
    _write_idx(path, np.zeros((5, 28, 28)), 2049)  # labels magic on images
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        load_mnist(home)


def test_corrupt_size_and_gzip(fake_home):
    home, _ = fake_home
    path = home / "mnist" / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:  # header says 5 labels, holds 4
        f.write((2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(4))
    with pytest.raises(ValueError, match="announces dimensions"):
        load_mnist(home)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        load_mnist(home)


def test_image_label_count_mismatch(fake_home):
    home, _ = fake_home
    _write_idx(home / "mnist" / "train-labels-idx1-ubyte.gz", [1, 2], 2049)
    with pytest.raises(ValueError, match="5 images but"):
        load_mnist(home)


def test_load_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y).sum(), 1797)


def test_load_dataset(fake_home):
    home, data = fake_home
    X_train, y_train, X_test, y_test = load_dataset("digits")
    assert X_train.shape == (1797, 64) and X_test is None and y_test is None
    X_train, y_train, X_test, y_test = load_dataset("mnist", data_home=home)
    assert X_train.shape == (5, 784) and X_test.shape == (3, 784)
    np.testing.assert_array_equal(y_test, data["mnist"][3])
    with pytest.raises(ValueError, match="Unknown data set"):
        load_dataset("cifar10")


def _real_data_home():
    env = os.environ.get("SK_HIERCLUST_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


REAL_HOME = _real_data_home()


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL_HOME / "mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="MNIST files not found in the shared data folder",
)
def test_real_mnist_test_set():
    X, y = load_mnist(REAL_HOME, subset="test")
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    np.testing.assert_array_equal(np.bincount(y), counts)
    # mean pixel 33.79 on the 0-255 scale (see the data folder's SOURCE.txt)
    assert abs(X.mean() * 255 - 33.79) < 0.01


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL_HOME / "fashion_mnist" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST files not found in the shared data folder",
)
def test_real_fashion_mnist_test_set():
    X, y = load_fashion_mnist(REAL_HOME, subset="test")
    assert X.shape == (10000, 784) and X.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    assert abs(X.mean() - 0.2868) < 1e-3
