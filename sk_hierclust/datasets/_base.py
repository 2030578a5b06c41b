"""Where the data files live, and the small data set that ships with scikit-learn.

Nothing in :mod:`sk_hierclust.datasets` downloads anything: the loaders read
local files from a *data home* folder (see :func:`get_data_home`).
"""

import os
from pathlib import Path

import numpy as np
import sklearn.datasets

__all__ = ["get_data_home", "load_digits"]

#: Environment variable naming the data home when ``data_home`` is not given.
_DATA_HOME_ENV = "SK_HIERCLUST_DATA"
#: The data home when neither ``data_home`` nor ``$SK_HIERCLUST_DATA`` is given.
_DEFAULT_DATA_HOME = "~/sk_hierclust_data"


def get_data_home(data_home=None):
    """Return the folder holding the data sets' subfolders.

    The loaders of :mod:`sk_hierclust.datasets` look for their files in
    ``<data home>/mnist/``, ``<data home>/fashion_mnist/`` and
    ``<data home>/20newsgroups/``. The data home is, in this order:

    1. the ``data_home`` argument, when it is not None;
    2. the environment variable ``SK_HIERCLUST_DATA``, when it is set and
       not empty;
    3. ``~/sk_hierclust_data``.

    A leading ``~`` is expanded to the user's home folder in every case. The
    folder is neither created nor checked: nothing is ever downloaded, so
    the files must already be there.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The data home; ``None`` falls back to ``$SK_HIERCLUST_DATA``, then
        to ``~/sk_hierclust_data``.

    Returns
    -------
    data_home : pathlib.Path
        The data home, user-expanded (not made absolute, not created).

    Raises
    ------
    TypeError
        If ``data_home`` is neither None, a str nor a path-like object.

    See Also
    --------
    sklearn.datasets.get_data_home : The scikit-learn equivalent (which
        also creates the folder).

    References
    ----------
    .. [1] scikit-learn, ``sklearn.datasets.get_data_home``,
       https://scikit-learn.org/stable/modules/generated/sklearn.datasets.get_data_home.html

    Examples
    --------
    >>> from sk_hierclust.datasets import get_data_home
    >>> get_data_home("/data/sets").as_posix()
    '/data/sets'
    >>> get_data_home() == get_data_home("~/sk_hierclust_data")  # doctest: +SKIP
    True
    """
    if data_home is None:
        data_home = os.environ.get(_DATA_HOME_ENV) or _DEFAULT_DATA_HOME
    return Path(data_home).expanduser()


def _data_home_origin(data_home):
    """Where :func:`get_data_home` took the data home from, for error messages."""
    if data_home is not None:
        return "the data_home argument"
    if os.environ.get(_DATA_HOME_ENV):
        return f"the {_DATA_HOME_ENV} environment variable"
    return (
        f"the default {_DEFAULT_DATA_HOME}: neither data_home= nor the "
        f"{_DATA_HOME_ENV} environment variable was given"
    )


def _where_we_looked(data_home, name):
    """Sentence of an error message naming the data home searched and its origin.

    Parameters
    ----------
    data_home : str, path-like or None
        As passed to the loader.
    name : str
        Subfolder of the data set, e.g. ``"mnist"``.

    Returns
    -------
    text : str
        E.g. ``"Looked in /home/u/sk_hierclust_data/mnist and
        /home/u/sk_hierclust_data (the data home, from the default ...)."``
        followed by how to point the loader elsewhere.
    """
    home = get_data_home(data_home)
    return (
        f"Looked in {home / name} and {home} (the data home, from "
        f"{_data_home_origin(data_home)}). Pass data_home=, or set the "
        f"{_DATA_HOME_ENV} environment variable, to the folder holding a "
        f"{name}/ subfolder (or to that subfolder itself)."
    )


def _dataset_folder(data_home, name, known):
    """Folder that should hold the files of data set ``name``.

    ``data_home/name`` is used when it is a folder. Otherwise ``data_home``
    itself is used if it already contains one of the ``known`` files (the
    caller passed the data set folder directly). Else ``data_home/name`` is
    returned so that the error message names the expected location.
    ``data_home`` is resolved by :func:`get_data_home`.

    Parameters
    ----------
    data_home : str, path-like or None
        As passed to the loader.
    name : str
        Subfolder of the data set, e.g. ``"mnist"``.
    known : sequence of str
        File names of the data set, to recognise its folder.

    Returns
    -------
    folder : pathlib.Path
    """
    home = get_data_home(data_home)
    folder = home / name
    if folder.is_dir():
        return folder
    if any((home / fname).is_file() for fname in known):
        return home
    return folder


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

    See Also
    --------
    sklearn.datasets.load_digits : The unscaled data set.

    References
    ----------
    .. [1] E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten
       Digits", UCI Machine Learning Repository, 1998.

    Examples
    --------
    >>> from sk_hierclust.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, float(X.max())
    ((1797, 64), dtype('float32'), 1.0)
    """
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    return X.astype(np.float32) / np.float32(16.0), y.astype(np.int64)
