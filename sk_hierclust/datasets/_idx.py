"""MNIST and Fashion-MNIST from the standard gzip-compressed IDX files.

The four files ``{train,t10k}-images-idx3-ubyte.gz`` and
``{train,t10k}-labels-idx1-ubyte.gz`` are read from a local folder; nothing is
downloaded. Also holds the Fashion-MNIST super-class hierarchy.
"""

import gzip

import numpy as np

from ..tree import ClusterTree
from ._base import _dataset_folder, _where_we_looked

__all__ = [
    "FASHION_MNIST_CLASS_NODE",
    "FASHION_MNIST_HIERARCHY",
    "load_fashion_mnist",
    "load_mnist",
]

#: Fashion-MNIST super-class hierarchy (issue 5, for
#: :func:`~sk_hierclust.metrics.tree_distance_error`): root 0; clothes 1, accessories 2;
#: light tops 3, heavy tops 4, bottoms 5, dresses 6 (under clothes); bags 7, shoes 8 (under
#: accessories); the ten classes as leaves 9..18.
FASHION_MNIST_HIERARCHY = ClusterTree([-1, 0, 0, 1, 1, 1, 1, 2, 2, 3, 5, 4, 6, 4, 8, 3, 8, 7, 8])
#: Leaf of each Fashion-MNIST class 0..9 (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal,
#: Shirt, Sneaker, Bag, Ankle boot) in :data:`FASHION_MNIST_HIERARCHY`.
FASHION_MNIST_CLASS_NODE = np.arange(9, 19)

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


def _file_names(prefix):
    """IDX file names (images, labels) for a split prefix ``train``/``t10k``."""
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


#: The four IDX file names, to recognise a data set folder passed as ``data_home``.
_IDX_FILES = _file_names("train") + _file_names("t10k")


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
    folder = _dataset_folder(data_home, name, _IDX_FILES)
    Xs, ys = [], []
    for prefix in _SUBSETS[subset]:
        images_path, labels_path = (folder / f for f in _file_names(prefix))
        for path in (images_path, labels_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{name} file not found: {path}. "
                    f"{_where_we_looked(data_home, name)} Put the four files "
                    "{train,t10k}-images-idx3-ubyte.gz and "
                    "{train,t10k}-labels-idx1-ubyte.gz in "
                    f"{folder}. Public source: {_SOURCES[name]}. Nothing is "
                    "downloaded automatically."
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
        ``SK_HIERCLUST_DATA`` if set and not empty, else
        ``~/sk_hierclust_data`` (see :func:`get_data_home`).
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
        If one of the needed files is missing; the message names the path,
        the data home searched and where it came from.

    See Also
    --------
    load_fashion_mnist : The same loader for Fashion-MNIST.
    load_dataset : Train and test sets of a data set by name.
    get_data_home : How ``data_home=None`` is resolved.

    References
    ----------
    .. [1] Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based
       learning applied to document recognition", Proceedings of the IEEE
       86(11), 1998. Files: https://ossci-datasets.s3.amazonaws.com/mnist/

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
        ``SK_HIERCLUST_DATA`` if set and not empty, else
        ``~/sk_hierclust_data`` (see :func:`get_data_home`).
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
        If one of the needed files is missing; the message names the path,
        the data home searched and where it came from.

    See Also
    --------
    load_mnist : The same loader for MNIST.
    load_dataset : Train and test sets of a data set by name.
    get_data_home : How ``data_home=None`` is resolved.
    FASHION_MNIST_HIERARCHY : Super-classes of the ten classes.

    References
    ----------
    .. [1] H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a novel image
       dataset for benchmarking machine learning algorithms",
       arXiv:1708.07747, 2017.

    Examples
    --------
    >>> from sk_hierclust.datasets import load_fashion_mnist
    >>> X, y = load_fashion_mnist(subset="test")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((10000, 784), (10000,))
    """
    return _load_idx_dataset("fashion_mnist", data_home, subset)

