"""20 Newsgroups (bydate split) from the local ``20news-bydate.tar.gz`` archive.

The raw messages are read from the archive (nothing is downloaded), turned
into TF-IDF features and given the coarse labels of ``hierarchy.csv`` (or the
usual six-topic grouping of the 20 standard groups) and the three levels of
the hierarchy of the groups' dotted names.
"""

import csv
import numbers
import tarfile
import zlib
from pathlib import PurePosixPath

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils import Bunch, check_random_state

from ._base import _dataset_folder, _where_we_looked

__all__ = ["load_20newsgroups"]

_SUBSETS_20NG = {"train": ("train",), "test": ("test",), "all": ("train", "test")}

_NEWSGROUPS_ARCHIVE = "20news-bydate.tar.gz"
_NEWSGROUPS_HIERARCHY = "hierarchy.csv"
_NEWSGROUPS_FOLDERS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
_NEWSGROUPS_SOURCE = (
    "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz (the archive "
    "sklearn.datasets.fetch_20newsgroups downloads)"
)
_HIERARCHY_COLUMNS = ["label_id", "newsgroup", "top_level_prefix", "six_topic_group"]

#: Levels below the root of the hierarchy of dotted names (a tree of depth 4 with the root).
_NEWSGROUPS_N_LEVELS = 3

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
top-level name prefixes and the usual 6-topic grouping of the groups. Hierarchy
of depth 4 from the dotted names: root, first part (7 classes), first two parts
(16), whole name (the 20 groups), e.g. comp / comp.sys / comp.sys.mac.hardware;
a name with fewer parts stays at its last level (alt / alt.atheism / alt.atheism).
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


def _dotted_name_levels(target_names, n_levels=_NEWSGROUPS_N_LEVELS):
    """Classes of the groups at the levels of the hierarchy of their dotted names.

    Level ``k`` (``1 <= k < n_levels``) is the name's first ``k`` dot-separated
    parts, the last level the whole name; a name with fewer parts stays at its
    last level (``alt.atheism``: ``alt``, ``alt.atheism``, ``alt.atheism``).

    Parameters
    ----------
    target_names : list of str
        The newsgroups, in label order.
    n_levels : int, default=3
        Number of levels below the root.

    Returns
    -------
    levels : ndarray of shape (n_newsgroups, n_levels), dtype int64
        ``levels[g, k]`` indexes ``level_names[k]``, coarsest level first.
    level_names : list of n_levels lists of str
        The sorted class names of each level.
    """
    parts = [group.split(".") for group in target_names]
    names = [
        [".".join(p[: k + 1]) if k + 1 < n_levels else ".".join(p) for p in parts]
        for k in range(n_levels)
    ]
    levels = np.empty((len(target_names), n_levels), dtype=np.int64)
    level_names = []
    for k, column in enumerate(names):
        unique, ids = np.unique(column, return_inverse=True)
        levels[:, k] = ids.ravel()
        level_names.append([str(name) for name in unique])
    return levels, level_names


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
        (sorted lists of str); ``levels``: int64 array of shape
        (n_newsgroups, 3) indexing the 3 sorted lists of ``level_names``
        (see :func:`_dotted_name_levels`; always from the names, whatever
        ``hierarchy.csv`` says).

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
    levels, level_names = _dotted_name_levels(target_names)
    return Bunch(
        top_level=top_ids.astype(np.int64),
        top_level_names=[str(name) for name in top_names],
        six_topic=six_ids.astype(np.int64),
        six_topic_names=[str(name) for name in six_names],
        levels=levels,
        level_names=level_names,
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
            f"20newsgroups file not found: {path}. "
            f"{_where_we_looked(data_home, '20newsgroups')} Put the archive "
            f"{_NEWSGROUPS_ARCHIVE} (holding the folders 20news-bydate-train/ "
            f"and 20news-bydate-test/) in {folder}. Public source: "
            f"{_NEWSGROUPS_SOURCE}. Nothing is downloaded automatically."
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
        variable ``SK_HIERCLUST_DATA`` if set and not empty, else
        ``~/sk_hierclust_data`` (see :func:`get_data_home`).
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
            and ``hierarchy.six_topic[target]``. Also ``levels`` (int64 array
            of shape (20, 3)) and ``level_names``: the hierarchy of the
            dotted names per newsgroup, see ``hierarchy_levels``.
        hierarchy_levels : ndarray of shape (n_samples, 3), dtype int64
            Class of each document at the 3 levels below the root of the
            hierarchy of the dotted newsgroup names (a tree of depth 4),
            coarsest first: the name's first part (``comp``), its first two
            parts (``comp.sys``) and the whole name
            (``comp.sys.mac.hardware``); a name with fewer parts stays at its
            last level (``alt.atheism``: ``alt``, ``alt.atheism``,
            ``alt.atheism``). Column ``k`` indexes
            ``hierarchy_level_names[k]``. For the 20 standard groups the
            levels have 7, 16 and 20 classes; the last column equals
            ``target``. Equal to ``hierarchy.levels[target]``. The levels
            nest, as :func:`~sk_hierclust.metrics.hierarchical_f_score`
            requires of its ``y_true_levels``.
        hierarchy_level_names : list of 3 lists of str
            The sorted class names of each level of ``hierarchy_levels``
            (the last one is ``target_names``).
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
        If the archive is missing (the message names the path, the data home
        searched and where it came from), or there is no ``hierarchy.csv``
        and a newsgroup is not one of the standard 20.

    See Also
    --------
    sklearn.datasets.fetch_20newsgroups : The raw texts, downloaded.
    load_dataset : Train and test sets of a data set by name.
    get_data_home : How ``data_home=None`` is resolved.

    References
    ----------
    .. [1] K. Lang, "NewsWeeder: learning to filter netnews", ICML 1995.
    .. [2] J. Rennie, "20 Newsgroups" (the bydate version),
       http://qwone.com/~jason/20Newsgroups/
    .. [3] L. Manduchi, M. Vandenhirtz, A. Ryser, J. Vogt, "Tree Variational
       Autoencoders", NeurIPS 2023 (TF-IDF features of 20 Newsgroups).

    Examples
    --------
    >>> from sk_hierclust.datasets import load_20newsgroups
    >>> news = load_20newsgroups(subset="test")  # doctest: +SKIP
    >>> news.data.shape, news.data.dtype  # doctest: +SKIP
    ((7532, 2000), dtype('float32'))
    >>> coarse = news.hierarchy.six_topic[news.target]  # doctest: +SKIP
    >>> news.hierarchy_levels.shape, [len(n) for n in news.hierarchy_level_names]  # doctest: +SKIP
    ((7532, 3), [7, 16, 20])
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
        hierarchy_levels=hierarchy.levels[y],
        hierarchy_level_names=[list(names) for names in hierarchy.level_names],
        DESCR=_NEWSGROUPS_DESCR,
    )

