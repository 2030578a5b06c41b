"""Dataset loaders used by the examples, the benchmarks and the command line.

Nothing here downloads anything. MNIST and Fashion-MNIST are read from the
standard gzip-compressed IDX files in a local folder; the small UCI digits
data set ships with scikit-learn.
"""

import gzip
import os
from pathlib import Path

import numpy as np
import sklearn.datasets

__all__ = [
    "DATASETS",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion_mnist")

_IMAGES_MAGIC = 2051  # IDX header: unsigned byte data, 3 dimensions
_LABELS_MAGIC = 2049  # IDX header: unsigned byte data, 1 dimension

_SUBSETS = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}

_SOURCES = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": (
        "https://github.com/zalandoresearch/fashion-mnist "
        "(folder data/fashion/)"
    ),
}


def _default_data_home():
    """Folder holding the ``mnist/`` and ``fashion_mnist/`` subfolders.

    Returns
    -------
    path : pathlib.Path
        ``$SK_HIERCLUST_DATA`` when that environment variable is set and not
        empty, else ``../shared/data`` relative to the current directory.
    """
    env = os.environ.get("SK_HIERCLUST_DATA")
    if env:
        return Path(env)
    return Path("..") / "shared" / "data"


def _file_names(prefix):
    """IDX file names (images, labels) for a split prefix ``train``/``t10k``."""
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _dataset_folder(data_home, name):
    """Folder that should hold the IDX files of data set ``name``.

    ``data_home/name`` is used when it is a folder. Otherwise ``data_home``
    itself is used if it already contains one of the IDX files (the caller
    passed the data set folder directly). Else ``data_home/name`` is returned
    so that the error message names the expected location.
    """
    home = Path(_default_data_home() if data_home is None else data_home)
    home = home.expanduser()
    folder = home / name
    if folder.is_dir():
        return folder
    known = _file_names("train") + _file_names("t10k")
    if any((home / fname).is_file() for fname in known):
        return home
    return folder


def _read_idx(path, magic, ndim):
    """Read one gzip-compressed IDX file of unsigned bytes.

    Parameters
    ----------
    path : pathlib.Path
        The ``.gz`` file.
    magic : int
        Expected magic number (2051 for images, 2049 for labels).
    ndim : int
        Number of dimensions announced in the header (3 or 1).

    Returns
    -------
    array : ndarray of uint8, shape given by the header
        The stored values.

    Raises
    ------
    ValueError
        If the file is not valid gzip, the magic number differs or the
        payload size does not match the dimensions in the header.
    """
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a valid gzip file: {exc}") from exc
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{path} is too short to be an IDX file.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"{path} has IDX magic number {found}, expected {magic}; "
            "the file is corrupt or not the expected file."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    size = int(np.prod(dims))
    if len(data) - header_size != size:
        raise ValueError(
            f"{path} announces dimensions {dims} ({size} bytes) but holds "
            f"{len(data) - header_size} bytes of data."
        )
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def _load_idx_dataset(name, data_home, subset):
    """Shared implementation of :func:`load_mnist` and :func:`load_fashion_mnist`."""
    if subset not in _SUBSETS:
        raise ValueError(
            f"subset must be one of {sorted(_SUBSETS)}, got {subset!r}."
        )
    folder = _dataset_folder(data_home, name)
    Xs, ys = [], []
    for prefix in _SUBSETS[subset]:
        images_path, labels_path = (folder / f for f in _file_names(prefix))
        for path in (images_path, labels_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{name} file not found: {path}. Put the four files "
                    "{train,t10k}-images-idx3-ubyte.gz and "
                    "{train,t10k}-labels-idx1-ubyte.gz in "
                    f"{folder} (or pass data_home=, or set the "
                    "SK_HIERCLUST_DATA environment variable, to the folder "
                    f"holding a {name}/ subfolder). Public source: "
                    f"{_SOURCES[name]}. Nothing is downloaded automatically."
                )
        images = _read_idx(images_path, _IMAGES_MAGIC, 3)
        labels = _read_idx(labels_path, _LABELS_MAGIC, 1)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{images_path} holds {images.shape[0]} images but "
                f"{labels_path} holds {labels.shape[0]} labels."
            )
        Xs.append(images.reshape(images.shape[0], -1))
        ys.append(labels)
    X = np.concatenate(Xs).astype(np.float32) / np.float32(255.0)
    y = np.concatenate(ys).astype(np.int64)
    return X, y


def load_mnist(data_home=None, subset="train"):
    """Load the MNIST handwritten digits from local IDX files.

    The four standard files ``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
    ``t10k-labels-idx1-ubyte.gz`` are read from ``data_home/mnist/``.
    Nothing is downloaded: get the files from
    https://ossci-datasets.s3.amazonaws.com/mnist/ and put them there.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding the ``mnist/`` subfolder, or the folder holding the
        ``.gz`` files themselves. ``None`` uses the environment variable
        ``SK_HIERCLUST_DATA`` if set, else ``../shared/data`` relative to
        the current working directory.
    subset : {"train", "test", "all"}, default="train"
        ``"train"``: the 60,000 training images; ``"test"``: the 10,000 test
        images; ``"all"``: training images followed by test images.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), dtype float32
        Pixel intensities divided by 255, in [0, 1]; each row is a 28x28
        image flattened in row-major order.
    y : ndarray of shape (n_samples,), dtype int64
        Digit labels 0-9.

    Raises
    ------
    ValueError
        If ``subset`` is not one of the accepted values, or a file is corrupt
        (bad gzip data, wrong magic number, size not matching its header).
    FileNotFoundError
        If one of the needed files is missing; the message names the path.

    See Also
    --------
    load_fashion_mnist : The same loader for Fashion-MNIST.
    load_dataset : Train and test sets of a data set by name.

    Examples
    --------
    >>> from sk_hierclust.datasets import load_mnist
    >>> X, y = load_mnist(subset="test")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((10000, 784), (10000,))
    """
    return _load_idx_dataset("mnist", data_home, subset)


def load_fashion_mnist(data_home=None, subset="train"):
    """Load Fashion-MNIST (Zalando article images) from local IDX files.

    The four files, with the same names as for MNIST
    (``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``), are read from
    ``data_home/fashion_mnist/``. Nothing is downloaded: get the files from
    https://github.com/zalandoresearch/fashion-mnist (folder
    ``data/fashion/``) and put them there.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding the ``fashion_mnist/`` subfolder, or the folder holding
        the ``.gz`` files themselves. ``None`` uses the environment variable
        ``SK_HIERCLUST_DATA`` if set, else ``../shared/data`` relative to
        the current working directory.
    subset : {"train", "test", "all"}, default="train"
        ``"train"``: the 60,000 training images; ``"test"``: the 10,000 test
        images; ``"all"``: training images followed by test images.

    Returns
    -------
    X : ndarray of shape (n_samples, 784), dtype float32
        Pixel intensities divided by 255, in [0, 1]; each row is a 28x28
        image flattened in row-major order.
    y : ndarray of shape (n_samples,), dtype int64
        Class labels 0-9 (T-shirt/top, Trouser, Pullover, Dress, Coat,
        Sandal, Shirt, Sneaker, Bag, Ankle boot).

    Raises
    ------
    ValueError
        If ``subset`` is not one of the accepted values, or a file is corrupt
        (bad gzip data, wrong magic number, size not matching its header).
    FileNotFoundError
        If one of the needed files is missing; the message names the path.

    See Also
    --------
    load_mnist : The same loader for MNIST.
    load_dataset : Train and test sets of a data set by name.
    """
    return _load_idx_dataset("fashion_mnist", data_home, subset)


def load_digits():
    """Load the UCI handwritten digits bundled with scikit-learn, in [0, 1].

    A thin wrapper around :func:`sklearn.datasets.load_digits` that scales
    the 8x8 images (integer intensities 0-16) to [0, 1]. This is the
    package's default data set: small and always available.

    Returns
    -------
    X : ndarray of shape (1797, 64), dtype float32
        Pixel intensities divided by 16, in [0, 1]; each row is an 8x8 image
        flattened in row-major order.
    y : ndarray of shape (1797,), dtype int64
        Digit labels 0-9.

    Examples
    --------
    >>> from sk_hierclust.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, float(X.max())
    ((1797, 64), dtype('float32'), 1.0)
    """
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    return X.astype(np.float32) / np.float32(16.0), y.astype(np.int64)


def load_dataset(name, data_home=None):
    """Load the training and test sets of a data set by name.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion_mnist"}
        The data set. ``"digits"`` (see :func:`load_digits`) has no separate
        test set; the other two are read with :func:`load_mnist` and
        :func:`load_fashion_mnist`.
    data_home : str or path-like, default=None
        Passed to :func:`load_mnist` / :func:`load_fashion_mnist`; ignored
        for ``"digits"``.

    Returns
    -------
    X_train : ndarray of shape (n_train, n_features), dtype float32
        Training inputs in [0, 1] (``n_features`` is 64 for digits, 784
        otherwise).
    y_train : ndarray of shape (n_train,), dtype int64
        Training labels.
    X_test : ndarray of shape (n_test, n_features), dtype float32, or None
        Test inputs in [0, 1]; ``None`` for ``"digits"``.
    y_test : ndarray of shape (n_test,), dtype int64, or None
        Test labels; ``None`` for ``"digits"``.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or a data file is corrupt.
    FileNotFoundError
        If the MNIST / Fashion-MNIST files are missing.
    """
    if name == "digits":
        X, y = load_digits()
        return X, y, None, None
    loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}
    if name not in loaders:
        raise ValueError(f"Unknown data set {name!r}; choose one of {DATASETS}.")
    X_train, y_train = loaders[name](data_home, subset="train")
    X_test, y_test = loaders[name](data_home, subset="test")
    return X_train, y_train, X_test, y_test
