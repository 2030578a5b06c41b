"""Dataset loaders used by the examples, the benchmarks and the command line.

Nothing here downloads anything. MNIST and Fashion-MNIST are read from the
standard gzip-compressed IDX files in a local folder; 20 Newsgroups is read
from the standard ``20news-bydate.tar.gz`` archive in a local folder; the
small UCI digits data set ships with scikit-learn. The local folder is the
``data_home`` argument of the loaders, else ``$SK_HIERCLUST_DATA``, else
``~/sk_hierclust_data`` (see :func:`get_data_home`).
"""

from ._base import get_data_home, load_digits
from ._idx import (
    FASHION_MNIST_CLASS_NODE,
    FASHION_MNIST_HIERARCHY,
    load_fashion_mnist,
    load_mnist,
)
from ._newsgroups import _load_20newsgroups_subsets, load_20newsgroups
from ._synthetic import (
    BACKGROUND_PALETTE,
    FOREGROUND_PALETTE,
    make_colored_digits,
)

__all__ = [
    "BACKGROUND_PALETTE",
    "DATASETS",
    "FASHION_MNIST_CLASS_NODE",
    "FASHION_MNIST_HIERARCHY",
    "FOREGROUND_PALETTE",
    "get_data_home",
    "load_20newsgroups",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_colored_digits",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion_mnist", "20newsgroups")


def load_dataset(name, data_home=None):
    """Load the training and test sets of a data set by name.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion_mnist", "20newsgroups"}
        The data set. ``"digits"`` (see :func:`load_digits`) has no separate
        test set; the others are read with :func:`load_mnist`,
        :func:`load_fashion_mnist` and :func:`load_20newsgroups` (default
        settings: 2000 TF-IDF terms fitted on the training messages,
        scikit-learn's shuffled order; the archive is read once).
    data_home : str or path-like, default=None
        Passed to the loader (see :func:`get_data_home` for ``None``);
        ignored for ``"digits"``.

    Returns
    -------
    X_train : ndarray or csr_matrix of shape (n_train, n_features), float32
        Training inputs in [0, 1] (``n_features`` is 64 for digits, 784
        for the MNIST pair, 2000 for 20newsgroups, whose inputs are a
        :class:`scipy.sparse.csr_matrix`; the others are dense).
    y_train : ndarray of shape (n_train,), dtype int64
        Training labels.
    X_test : ndarray or csr_matrix of shape (n_test, n_features), float32, or None
        Test inputs in [0, 1], in the same format as ``X_train``; ``None``
        for ``"digits"``.
    y_test : ndarray of shape (n_test,), dtype int64, or None
        Test labels; ``None`` for ``"digits"``.

    Raises
    ------
    ValueError
        If ``name`` is unknown, or a data file is corrupt.
    FileNotFoundError
        If the data files are missing; the message names the paths searched.

    See Also
    --------
    DATASETS : The accepted names.
    get_data_home : Where the files are looked for.

    References
    ----------
    .. [1] The references of :func:`load_digits`, :func:`load_mnist`,
       :func:`load_fashion_mnist` and :func:`load_20newsgroups`.

    Examples
    --------
    >>> from sk_hierclust.datasets import load_dataset
    >>> X_train, y_train, X_test, y_test = load_dataset("digits")
    >>> X_train.shape, X_test is None
    ((1797, 64), True)
    """
    if name == "digits":
        X, y = load_digits()
        return X, y, None, None
    if name == "20newsgroups":
        results = _load_20newsgroups_subsets(
            data_home, ("train", "test"), 2000, True, 42
        )[0]
        (X_train, y_train, _), (X_test, y_test, _) = results["train"], results["test"]
        return X_train, y_train, X_test, y_test
    loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}
    if name not in loaders:
        raise ValueError(f"Unknown data set {name!r}; choose one of {DATASETS}.")
    X_train, y_train = loaders[name](data_home, subset="train")
    X_test, y_test = loaders[name](data_home, subset="test")
    return X_train, y_train, X_test, y_test
