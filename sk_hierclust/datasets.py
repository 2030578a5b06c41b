"""Dataset loaders used by the examples, the benchmarks and the command line.

Nothing here downloads anything. MNIST and Fashion-MNIST are read from the
standard gzip-compressed IDX files in a local folder; 20 Newsgroups is read
from the standard ``20news-bydate.tar.gz`` archive in a local folder; the
small UCI digits data set ships with scikit-learn.
"""

import csv
import gzip
import numbers
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import scipy.sparse as sp
import sklearn.datasets
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils import Bunch, check_random_state

from .tree import ClusterTree

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASS_NODE",
    "FASHION_MNIST_HIERARCHY",
    "load_20newsgroups",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion_mnist", "20newsgroups")

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
_SUBSETS_20NG = {"train": ("train",), "test": ("test",), "all": ("train", "test")}

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


def _dataset_folder(data_home, name, known=None):
    """Folder that should hold the files of data set ``name``.

    ``data_home/name`` is used when it is a folder. Otherwise ``data_home``
    itself is used if it already contains one of the ``known`` files (the
    caller passed the data set folder directly; default: the MNIST IDX file
    names). Else ``data_home/name`` is returned so that the error message
    names the expected location.
    """
    home = Path(_default_data_home() if data_home is None else data_home)
    home = home.expanduser()
    folder = home / name
    if folder.is_dir():
        return folder
    if known is None:
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


_NEWSGROUPS_ARCHIVE = "20news-bydate.tar.gz"
_NEWSGROUPS_HIERARCHY = "hierarchy.csv"
_NEWSGROUPS_FOLDERS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
_NEWSGROUPS_SOURCE = (
    "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz (the archive "
    "sklearn.datasets.fetch_20newsgroups downloads)"
)
_HIERARCHY_COLUMNS = ["label_id", "newsgroup", "top_level_prefix", "six_topic_group"]

#: The usual six-topic grouping of the 20 groups; used only when the data
#: folder has no ``hierarchy.csv`` (the shared data folder's file holds the
#: same grouping).
_NEWSGROUPS_SIX_TOPICS = {
    "alt.atheism": "religion",
    "comp.graphics": "computers",
    "comp.os.ms-windows.misc": "computers",
    "comp.sys.ibm.pc.hardware": "computers",
    "comp.sys.mac.hardware": "computers",
    "comp.windows.x": "computers",
    "misc.forsale": "forsale",
    "rec.autos": "recreation",
    "rec.motorcycles": "recreation",
    "rec.sport.baseball": "recreation",
    "rec.sport.hockey": "recreation",
    "sci.crypt": "science",
    "sci.electronics": "science",
    "sci.med": "science",
    "sci.space": "science",
    "soc.religion.christian": "religion",
    "talk.politics.guns": "politics",
    "talk.politics.mideast": "politics",
    "talk.politics.misc": "politics",
    "talk.religion.misc": "religion",
}

_NEWSGROUPS_DESCR = """\
20 Newsgroups, "bydate" split (Jason Rennie), as TF-IDF features.

Messages posted before / after a date: 11,314 training and 7,532 test
documents in 20 newsgroups, read from the raw 20news-bydate.tar.gz archive
(latin-1, headers, signatures and quotes kept). Features: scikit-learn's
TfidfVectorizer fitted on the training messages, English stop words and terms
in more than 95% of the training messages removed, the n_features most
frequent remaining terms kept, rows L2-normalised. Coarse labels: the 7
top-level name prefixes and the usual 6-topic grouping of the groups.
"""


def _read_newsgroups_archive(path, splits):
    """Read the raw messages of some splits from the bydate archive, in one pass.

    Parameters
    ----------
    path : pathlib.Path
        The ``20news-bydate.tar.gz`` file.
    splits : sequence of {"train", "test"}
        The splits to read; members of other splits are skipped unread.

    Returns
    -------
    docs : dict
        ``docs[split][newsgroup][file_name]`` is the message text, decoded
        as latin-1 (every byte string is valid latin-1).

    Raises
    ------
    ValueError
        If the file is not a readable ``.tar.gz`` archive, a split has no
        ``20news-bydate-<split>/<newsgroup>/<message>`` members, or the splits
        do not hold the same newsgroups.
    """
    wanted = {_NEWSGROUPS_FOLDERS[split]: split for split in splits}
    docs = {split: {} for split in splits}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                if (
                    len(parts) < 3
                    or parts[-3] not in wanted
                    or parts[-1].startswith(".")
                    or "__MACOSX" in parts
                ):
                    continue
                raw = archive.extractfile(member).read()
                group_docs = docs[wanted[parts[-3]]].setdefault(parts[-2], {})
                group_docs[parts[-1]] = raw.decode("latin-1")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is not a valid .tar.gz archive: {exc}") from exc
    for split in splits:
        if not docs[split]:
            raise ValueError(
                f"{path} holds no {_NEWSGROUPS_FOLDERS[split]}/<newsgroup>/"
                "<message> files; is it the 20news-bydate archive?"
            )
    groups = sorted(docs[splits[0]])
    for split in splits[1:]:
        if sorted(docs[split]) != groups:
            raise ValueError(
                f"{path}: the {splits[0]} and {split} splits hold different "
                f"newsgroups ({groups} vs {sorted(docs[split])})."
            )
    return docs


def _newsgroups_split(group_docs, folder):
    """Texts, labels and member names of one split, in scikit-learn's order.

    Groups are numbered alphabetically and files sorted by name, then the
    documents are permuted with ``RandomState(0)`` exactly as
    :func:`sklearn.datasets.load_files` (which builds the cache of
    :func:`sklearn.datasets.fetch_20newsgroups`) does.
    """
    texts, target, names = [], [], []
    for label, group in enumerate(sorted(group_docs)):
        for fname in sorted(group_docs[group]):
            texts.append(group_docs[group][fname])
            target.append(label)
            names.append(f"{folder}/{group}/{fname}")
    order = np.arange(len(texts))
    np.random.RandomState(0).shuffle(order)
    texts = np.array(texts, dtype=object)[order]
    return texts, np.array(target, dtype=np.int64)[order], np.array(names)[order]


def _newsgroups_hierarchy(folder, target_names):
    """Coarse labels of the newsgroups, from ``hierarchy.csv`` when present.

    Parameters
    ----------
    folder : pathlib.Path
        The folder holding the archive (and possibly ``hierarchy.csv``).
    target_names : list of str
        The newsgroups, in label order.

    Returns
    -------
    hierarchy : Bunch
        ``top_level`` / ``six_topic``: int64 arrays of shape
        (n_newsgroups,) indexing ``top_level_names`` / ``six_topic_names``
        (sorted lists of str).

    Raises
    ------
    ValueError
        If ``hierarchy.csv`` does not have the expected columns, or does not
        list every newsgroup once with its alphabetical label id.
    FileNotFoundError
        If there is no ``hierarchy.csv`` and a newsgroup is not one of the
        standard 20 (whose grouping is built in).
    """
    path = folder / _NEWSGROUPS_HIERARCHY
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row]
        if not rows or [c.strip() for c in rows[0]] != _HIERARCHY_COLUMNS:
            raise ValueError(
                f"{path} must start with the header line "
                f"{','.join(_HIERARCHY_COLUMNS)}."
            )
        by_group = {}
        for line, row in enumerate(rows[1:], start=2):
            row = [c.strip() for c in row]
            if len(row) != 4 or not all(row) or row[1] in by_group:
                raise ValueError(
                    f"{path}, line {line}: expected 4 non-empty fields and a "
                    f"newsgroup not listed before, got {row}."
                )
            by_group[row[1]] = row
        if sorted(by_group) != sorted(target_names):
            raise ValueError(
                f"{path} lists the newsgroups {sorted(by_group)} but the "
                f"archive holds {sorted(target_names)}."
            )
        for label, group in enumerate(target_names):
            if by_group[group][0] != str(label):
                raise ValueError(
                    f"{path} gives {group} label_id {by_group[group][0]}, "
                    f"expected {label} (alphabetical order)."
                )
        top = [by_group[group][2] for group in target_names]
        six = [by_group[group][3] for group in target_names]
    else:
        unknown = [g for g in target_names if g not in _NEWSGROUPS_SIX_TOPICS]
        if unknown:
            raise FileNotFoundError(
                f"{path} not found and the newsgroups {unknown} are not among "
                "the standard 20, so their coarse labels are unknown. Add a "
                f"{_NEWSGROUPS_HIERARCHY} with the columns "
                f"{','.join(_HIERARCHY_COLUMNS)}."
            )
        top = [group.split(".")[0] for group in target_names]
        six = [_NEWSGROUPS_SIX_TOPICS[group] for group in target_names]
    top_names, top_ids = np.unique(top, return_inverse=True)
    six_names, six_ids = np.unique(six, return_inverse=True)
    return Bunch(
        top_level=top_ids.astype(np.int64),
        top_level_names=[str(name) for name in top_names],
        six_topic=six_ids.astype(np.int64),
        six_topic_names=[str(name) for name in six_names],
    )


def _load_20newsgroups_subsets(data_home, subsets, n_features, shuffle, random_state):
    """Shared implementation of :func:`load_20newsgroups` and :func:`load_dataset`.

    The archive is read and the vectorizer fitted once for all ``subsets``.

    Returns
    -------
    results : dict
        ``results[subset] = (X, y, filenames)`` for each requested subset.
    target_names : list of str
    feature_names : ndarray of str objects
    hierarchy : Bunch
    """
    for subset in subsets:
        if subset not in _SUBSETS_20NG:
            raise ValueError(
                f"subset must be one of {sorted(_SUBSETS_20NG)}, got {subset!r}."
            )
    if (
        not isinstance(n_features, numbers.Integral)
        or isinstance(n_features, bool)
        or n_features < 1
    ):
        raise ValueError(f"n_features must be an integer >= 1, got {n_features!r}.")
    folder = _dataset_folder(data_home, "20newsgroups", known=(_NEWSGROUPS_ARCHIVE,))
    path = folder / _NEWSGROUPS_ARCHIVE
    if not path.is_file():
        raise FileNotFoundError(
            f"20newsgroups file not found: {path}. Put the archive "
            f"{_NEWSGROUPS_ARCHIVE} (holding the folders 20news-bydate-train/ "
            f"and 20news-bydate-test/) in {folder} (or pass data_home=, or set "
            "the SK_HIERCLUST_DATA environment variable, to the folder holding "
            f"a 20newsgroups/ subfolder). Public source: {_NEWSGROUPS_SOURCE}. "
            "Nothing is downloaded automatically."
        )
    # The vocabulary is always fitted on the training split.
    splits = ["train"] + (["test"] if set(subsets) - {"train"} else [])
    docs = _read_newsgroups_archive(path, splits)
    target_names = sorted(docs["train"])
    hierarchy = _newsgroups_hierarchy(folder, target_names)
    parts = {s: _newsgroups_split(docs[s], _NEWSGROUPS_FOLDERS[s]) for s in splits}
    del docs
    vectorizer = TfidfVectorizer(
        stop_words="english", max_df=0.95, max_features=int(n_features),
        dtype=np.float32,
    )
    matrices = {"train": vectorizer.fit_transform(parts["train"][0])}
    if "test" in parts:
        matrices["test"] = vectorizer.transform(parts["test"][0])
    results = {}
    for subset in subsets:
        splits_in = _SUBSETS_20NG[subset]
        X = sp.vstack([matrices[s] for s in splits_in], format="csr", dtype=np.float32)
        y = np.concatenate([parts[s][1] for s in splits_in])
        filenames = np.concatenate([parts[s][2] for s in splits_in])
        if shuffle:
            order = np.arange(y.shape[0])
            check_random_state(random_state).shuffle(order)
            X, y, filenames = X[order], y[order], filenames[order]
        X.sort_indices()
        # L2-normalised non-negative rows: clip float32 rounding above 1.
        np.clip(X.data, 0.0, 1.0, out=X.data)
        results[subset] = (X, y, filenames)
    feature_names = vectorizer.get_feature_names_out()
    return results, target_names, feature_names, hierarchy


def load_20newsgroups(
    data_home=None,
    subset="train",
    n_features=2000,
    *,
    shuffle=True,
    random_state=42,
    return_X_y=False,
):
    """Load 20 Newsgroups (bydate split) as TF-IDF features from a local archive.

    The raw messages are read from ``data_home/20newsgroups/20news-bydate.tar.gz``
    (the archive holding the folders ``20news-bydate-train/<newsgroup>/<id>``
    and ``20news-bydate-test/<newsgroup>/<id>``), decoded as latin-1 like
    :func:`sklearn.datasets.fetch_20newsgroups`. Nothing is downloaded: get
    the archive from http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz
    and put it there.

    The features are computed with scikit-learn's
    :class:`~sklearn.feature_extraction.text.TfidfVectorizer`, always fitted
    on the **training** messages (whatever ``subset`` is), so that every
    subset shares the same ``n_features`` columns; test messages are only
    transformed. Settings: ``stop_words="english"``, ``max_df=0.95`` (terms
    in more than 95% of the training messages, i.e. the header field names
    such as "subject" and "lines", are dropped), ``max_features=n_features``
    (the most frequent remaining terms), raw term counts
    (``sublinear_tf=False``), smoothed idf and L2-normalised rows, as in the
    plain TF-IDF representation used by the TreeVAE paper. The messages are
    kept whole (headers, signatures and quoted replies are not stripped):
    this is the standard bydate benchmark, but note that headers make the
    task easier than with ``remove=("headers", "footers", "quotes")`` in
    scikit-learn.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder holding the ``20newsgroups/`` subfolder, or the folder holding
        ``20news-bydate.tar.gz`` itself. ``None`` uses the environment
        variable ``SK_HIERCLUST_DATA`` if set, else ``../shared/data``
        relative to the current working directory.
    subset : {"train", "test", "all"}, default="train"
        ``"train"``: the 11,314 training messages; ``"test"``: the 7,532 test
        messages; ``"all"``: training messages followed by test messages
        (before shuffling).
    n_features : int, default=2000
        Number of terms (columns) kept, at least 1. Fewer columns are
        returned if the training vocabulary is smaller.
    shuffle : bool, default=True
        Whether to shuffle the documents with ``random_state``. The document
        order is that of :func:`sklearn.datasets.fetch_20newsgroups` called
        with the same ``subset``, ``shuffle`` and ``random_state`` (for an
        int or None ``random_state``); with ``shuffle=False`` that is a fixed
        order that already mixes the classes.
    random_state : int, RandomState instance or None, default=42
        Seed of the shuffle (scikit-learn's default for this data set).
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        data : scipy.sparse.csr_matrix of shape (n_samples, n_features), dtype float32
            TF-IDF features; rows have unit L2 norm (or are all zero when a
            message has none of the terms), so every value is in [0, 1].
        target : ndarray of shape (n_samples,), dtype int64
            Newsgroup labels 0-19, the index in ``target_names``.
        target_names : list of str
            The 20 newsgroup names in alphabetical order (scikit-learn's
            label order).
        feature_names : ndarray of shape (n_features,), dtype object
            The terms of the columns (alphabetical), identical for every
            subset.
        filenames : ndarray of shape (n_samples,), dtype str
            Archive member of each message, e.g.
            ``"20news-bydate-train/sci.space/60804"``.
        hierarchy : :class:`~sklearn.utils.Bunch`
            Coarse labels of the newsgroups, read from
            ``data_home/20newsgroups/hierarchy.csv`` (columns ``label_id,
            newsgroup, top_level_prefix, six_topic_group``) when present,
            else derived from the standard names: ``top_level`` (int64 array
            of shape (20,)) indexes ``top_level_names``, the 7 name prefixes
            ``alt, comp, misc, rec, sci, soc, talk``; ``six_topic`` (int64
            array of shape (20,)) indexes ``six_topic_names``, the 6 topics
            ``computers, forsale, politics, recreation, religion, science``.
            Coarse labels of the documents are ``hierarchy.top_level[target]``
            and ``hierarchy.six_topic[target]``.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True
        The CSR matrix and the label array described above.

    Raises
    ------
    ValueError
        If ``subset`` or ``n_features`` is invalid, the archive is not a
        readable ``.tar.gz`` file or lacks the bydate folders, or
        ``hierarchy.csv`` is malformed or does not match the newsgroups.
    FileNotFoundError
        If the archive is missing; the message names the path.

    See Also
    --------
    sklearn.datasets.fetch_20newsgroups : The raw texts, downloaded.
    load_dataset : Train and test sets of a data set by name.

    Examples
    --------
    >>> from sk_hierclust.datasets import load_20newsgroups
    >>> news = load_20newsgroups(subset="test")  # doctest: +SKIP
    >>> news.data.shape, news.data.dtype  # doctest: +SKIP
    ((7532, 2000), dtype('float32'))
    >>> coarse = news.hierarchy.six_topic[news.target]  # doctest: +SKIP
    """
    results, target_names, feature_names, hierarchy = _load_20newsgroups_subsets(
        data_home, (subset,), n_features, shuffle, random_state
    )
    X, y, filenames = results[subset]
    if return_X_y:
        return X, y
    return Bunch(
        data=X,
        target=y,
        target_names=target_names,
        feature_names=feature_names,
        filenames=filenames,
        hierarchy=hierarchy,
        DESCR=_NEWSGROUPS_DESCR,
    )


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
    name : {"digits", "mnist", "fashion_mnist", "20newsgroups"}
        The data set. ``"digits"`` (see :func:`load_digits`) has no separate
        test set; the others are read with :func:`load_mnist`,
        :func:`load_fashion_mnist` and :func:`load_20newsgroups` (default
        settings: 2000 TF-IDF terms fitted on the training messages,
        scikit-learn's shuffled order; the archive is read once).
    data_home : str or path-like, default=None
        Passed to the loader; ignored for ``"digits"``.

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
        If the data files are missing.
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
