"""Tests for sk_hierclust.datasets."""

import csv
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_files
from sklearn.feature_extraction.text import TfidfVectorizer

import sk_hierclust.datasets
from sk_hierclust.datasets import (
    DATASETS,
    FASHION_MNIST_CLASS_NODE,
    FASHION_MNIST_HIERARCHY,
    get_data_home,
    load_20newsgroups,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)
from sk_hierclust.datasets._newsgroups import _NEWSGROUPS_SIX_TOPICS, _dotted_name_levels
from sk_hierclust.metrics import hierarchical_f_score
from sk_hierclust.tree import ClusterTree

# The shared data folder beside the repository (../shared/data): the real-data
# tests pass it explicitly and are skipped when it is absent.
REAL_HOME = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
    """Build a data_home with tiny mnist/ and fashion_mnist/ folders."""
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


@pytest.fixture
def fake_user_home(tmp_path, monkeypatch):
    """Point ``~`` (HOME, and USERPROFILE for Windows) to a fresh folder; unset SK_HIERCLUST_DATA."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.delenv("SK_HIERCLUST_DATA", raising=False)
    return home


def test_get_data_home_argument(fake_user_home, monkeypatch):
    assert get_data_home("/some/where") == Path("/some/where")
    assert get_data_home(Path("relative/dir")) == Path("relative/dir")
    assert get_data_home("~/data") == fake_user_home / "data"
    monkeypatch.setenv("SK_HIERCLUST_DATA", "/from/env")
    assert get_data_home("/some/where") == Path("/some/where")  # the argument wins
    assert isinstance(get_data_home("x"), Path)
    with pytest.raises(TypeError):
        get_data_home(3)


def test_get_data_home_environment(fake_user_home, monkeypatch):
    monkeypatch.setenv("SK_HIERCLUST_DATA", "/from/env")
    assert get_data_home() == Path("/from/env")
    monkeypatch.setenv("SK_HIERCLUST_DATA", "~/env_data")
    assert get_data_home() == fake_user_home / "env_data"
    monkeypatch.setenv("SK_HIERCLUST_DATA", "")  # empty: ignored
    assert get_data_home() == fake_user_home / "sk_hierclust_data"


def test_get_data_home_default_does_not_create(fake_user_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert get_data_home() == fake_user_home / "sk_hierclust_data"
    assert get_data_home().is_absolute()
    assert not (fake_user_home / "sk_hierclust_data").exists()  # nothing created


def test_default_data_home_is_home_not_cwd(fake_user_home, tmp_path, monkeypatch):
    # ../shared/data beside the working directory is no longer looked at
    _write_split(tmp_path / "shared" / "data" / "mnist", "t10k", np.zeros((2, 28, 28)), [4, 5])
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    with pytest.raises(FileNotFoundError) as excinfo:
        load_mnist(subset="test")
    msg = str(excinfo.value)
    default = fake_user_home / "sk_hierclust_data"
    assert str(default / "mnist" / "t10k-images-idx3-ubyte.gz") in msg
    assert "default ~/sk_hierclust_data" in msg
    assert "data_home=" in msg and "SK_HIERCLUST_DATA" in msg
    # ~/sk_hierclust_data/mnist is where the loaders look by default
    _write_split(default / "mnist", "t10k", np.zeros((2, 28, 28)), [6, 7])
    _, y = load_mnist(subset="test")
    np.testing.assert_array_equal(y, [6, 7])


def test_missing_files_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as excinfo:
        load_mnist(tmp_path)
    msg = str(excinfo.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in msg
    assert f"Looked in {tmp_path / 'mnist'} and {tmp_path}" in msg
    assert "from the data_home argument" in msg
    assert "data_home=" in msg and "SK_HIERCLUST_DATA" in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg
    with pytest.raises(FileNotFoundError, match="zalandoresearch/fashion-mnist"):
        load_fashion_mnist(tmp_path, subset="test")
    monkeypatch.setenv("SK_HIERCLUST_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as excinfo:
        load_fashion_mnist(subset="test")
    msg = str(excinfo.value)
    assert str(tmp_path / "env" / "fashion_mnist" / "t10k-images-idx3-ubyte.gz") in msg
    assert "from the SK_HIERCLUST_DATA environment variable" in msg


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
    np.testing.assert_array_equal(
        np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )


def test_load_dataset(fake_home):
    home, data = fake_home
    X_train, y_train, X_test, y_test = load_dataset("digits")
    assert X_train.shape == (1797, 64) and X_test is None and y_test is None
    X_train, y_train, X_test, y_test = load_dataset("mnist", data_home=home)
    assert X_train.shape == (5, 784) and X_test.shape == (3, 784)
    np.testing.assert_array_equal(y_test, data["mnist"][3])
    with pytest.raises(ValueError, match="Unknown data set"):
        load_dataset("cifar10")


def test_public_names():
    assert sorted(sk_hierclust.datasets.__all__) == [
        "BACKGROUND_PALETTE", "DATASETS", "FASHION_MNIST_CLASS_NODE", "FASHION_MNIST_HIERARCHY",
        "FOREGROUND_PALETTE", "get_data_home", "load_20newsgroups", "load_dataset", "load_digits",
        "load_fashion_mnist", "load_mnist", "make_colored_digits",
    ]
    assert DATASETS == ("digits", "mnist", "fashion_mnist", "20newsgroups")
    # classes 0..9 at leaves 9..18: T-shirt and Shirt are siblings (light tops),
    # Sandal, Sneaker and Ankle boot share the shoes node 8
    assert FASHION_MNIST_HIERARCHY.node_count == 19
    np.testing.assert_array_equal(FASHION_MNIST_CLASS_NODE, np.arange(9, 19))
    parents = FASHION_MNIST_HIERARCHY.parent[FASHION_MNIST_CLASS_NODE]
    np.testing.assert_array_equal(parents, [3, 5, 4, 6, 4, 8, 3, 8, 7, 8])


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


# --- 20 Newsgroups ---------------------------------------------------------

# A tiny bydate archive: 3 groups, distinct vocabularies, 4 train / 2 test
# messages each. Test message "9" of sci.space only has words unseen in train.
_NG_GROUPS = ("alt.atheism", "comp.graphics", "sci.space")
_NG_WORDS = {
    "alt.atheism": "god belief faith atheism religion",
    "comp.graphics": "image pixel render polygon graphics",
    "sci.space": "orbit rocket nasa launch moon",
}
_NG_HIERARCHY = (
    "label_id,newsgroup,top_level_prefix,six_topic_group\n"
    "0,alt.atheism,alt,religion\n"
    "1,comp.graphics,comp,computers\n"
    "2,sci.space,sci,science\n"
)


def _ng_messages():
    """{split: {group: {file name: text}}} of the synthetic archive."""
    messages = {"train": {}, "test": {}}
    for g, group in enumerate(_NG_GROUPS):
        words = _NG_WORDS[group].split()
        train = {}
        for i in range(4):  # file names 10, 11, 8, 9 sort as strings
            name = str(8 + i)
            text = " ".join(words[: 2 + i]) + " the common" + " caf\xe9" * (i % 2)
            train[name] = f"From: user{i}@example.com\nSubject: post {i}\n\n{text}\n"
        messages["train"][group] = train
        messages["test"][group] = {
            "100": f"Subject: reply\n\n{words[0]} {words[-1]} common\n",
            "101": f"Subject: other\n\n{words[1]} {words[2]}\n",
        }
    messages["test"]["sci.space"]["101"] = "zzzunseen qqqunknown\n"
    return messages


def _write_ng_archive(path, messages, extra=()):
    """Write ``messages`` as a bydate-layout .tar.gz (plus ``extra`` members)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folders = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
    with tarfile.open(path, "w:gz") as archive:
        def add(name, payload=None):
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))

        for split, groups in messages.items():
            add(folders[split] + "/")
            for group, files in groups.items():
                add(f"{folders[split]}/{group}/")
                for name, text in files.items():
                    add(f"{folders[split]}/{group}/{name}", text.encode("latin-1"))
        for name, payload in extra:
            add(name, payload)


@pytest.fixture
def ng_home(tmp_path):
    """Build a data_home with a tiny 20newsgroups/ folder (archive + hierarchy.csv)."""
    messages = _ng_messages()
    folder = tmp_path / "20newsgroups"
    _write_ng_archive(
        folder / "20news-bydate.tar.gz", messages,
        extra=[("__MACOSX/20news-bydate-train/sci.space/._8", b"junk")],
    )
    (folder / "hierarchy.csv").write_text(_NG_HIERARCHY)
    return tmp_path, messages


def _ng_texts(messages, split):
    """Texts, labels and member names of a split in group / file-name order."""
    texts, target, names = [], [], []
    for label, group in enumerate(sorted(messages[split])):
        for name in sorted(messages[split][group]):
            texts.append(messages[split][group][name])
            target.append(label)
            names.append(f"20news-bydate-{split}/{group}/{name}")
    return texts, np.array(target), np.array(names)


def _check_tfidf_matrix(X, n_rows, n_cols):
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    assert X.shape == (n_rows, n_cols)
    assert X.data.min() >= 0.0 and X.data.max() <= 1.0
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel()
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


def test_20newsgroups_synthetic_features(ng_home):
    home, messages = ng_home
    train_texts, train_y, train_names = _ng_texts(messages, "train")
    vec = TfidfVectorizer(stop_words="english", max_df=0.95, max_features=2000)
    expected_train = vec.fit_transform(train_texts).toarray()

    news = load_20newsgroups(home, shuffle=False)
    assert news.target_names == list(_NG_GROUPS)
    np.testing.assert_array_equal(news.feature_names, vec.get_feature_names_out())
    for term in ("subject", "common"):  # in every training message: max_df
        assert term not in news.feature_names
    assert "the" not in news.feature_names  # English stop word
    assert "caf\xe9" in news.feature_names  # latin-1 decoded
    n_terms = len(vec.vocabulary_)
    _check_tfidf_matrix(news.data, 12, n_terms)
    assert news.target.dtype == np.int64
    # Rows are a permutation of the files; match them by member name.
    order = np.argsort(news.filenames)
    ref = np.argsort(train_names)
    np.testing.assert_array_equal(news.filenames[order], train_names[ref])
    np.testing.assert_array_equal(news.target[order], train_y[ref])
    np.testing.assert_allclose(news.data.toarray()[order], expected_train[ref],
                               rtol=1e-5, atol=1e-7)

    # The test split is transformed with the vectorizer fitted on train.
    test_texts, test_y, test_names = _ng_texts(messages, "test")
    test = load_20newsgroups(home, subset="test", shuffle=False)
    np.testing.assert_array_equal(test.feature_names, news.feature_names)
    _check_tfidf_matrix(test.data, 6, n_terms)
    order, ref = np.argsort(test.filenames), np.argsort(test_names)
    np.testing.assert_array_equal(test.target[order], test_y[ref])
    expected_test = vec.transform(test_texts).toarray()
    np.testing.assert_allclose(test.data.toarray()[order], expected_test[ref],
                               rtol=1e-5, atol=1e-7)
    unseen = list(test.filenames).index("20news-bydate-test/sci.space/101")
    assert test.data[unseen].nnz == 0

    # "all" is train followed by test before shuffling.
    both = load_20newsgroups(home, subset="all", shuffle=False)
    assert both.data.shape == (18, n_terms)
    np.testing.assert_array_equal(both.filenames[:12], news.filenames)
    np.testing.assert_array_equal(both.filenames[12:], test.filenames)
    np.testing.assert_allclose(both.data[12:].toarray(), test.data.toarray())


def test_20newsgroups_order_matches_sklearn(ng_home, tmp_path):
    """Same order as fetch_20newsgroups: load_files(random_state=0), then shuffle."""
    home, _ = ng_home
    with tarfile.open(home / "20newsgroups" / "20news-bydate.tar.gz") as archive:
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(tmp_path / "extracted", **kwargs)
    for subset in ("train", "test"):
        ref = load_files(tmp_path / "extracted" / f"20news-bydate-{subset}",
                         encoding="latin1")  # shuffle=True, random_state=0
        names = np.array([
            "/".join(Path(f).parts[-3:]) for f in ref.filenames
        ])
        news = load_20newsgroups(home, subset=subset, shuffle=False)
        np.testing.assert_array_equal(news.filenames, names)
        np.testing.assert_array_equal(news.target, ref.target)
        indices = np.arange(len(names))
        np.random.RandomState(42).shuffle(indices)
        news = load_20newsgroups(home, subset=subset)  # shuffle, random_state=42
        np.testing.assert_array_equal(news.filenames, names[indices])
        np.testing.assert_array_equal(news.target, ref.target[indices])
    a = load_20newsgroups(home, subset="all", random_state=0)
    b = load_20newsgroups(home, subset="all", random_state=0)
    np.testing.assert_array_equal(a.filenames, b.filenames)
    assert (a.data != b.data).nnz == 0


def test_20newsgroups_hierarchy_and_options(ng_home):
    home, messages = ng_home
    news = load_20newsgroups(home, n_features=3)
    assert news.data.shape == (12, 3)
    vec = TfidfVectorizer(stop_words="english", max_df=0.95, max_features=3)
    vec.fit(_ng_texts(messages, "train")[0])  # the 3 most frequent terms
    np.testing.assert_array_equal(news.feature_names, vec.get_feature_names_out())
    h = news.hierarchy
    assert h.top_level_names == ["alt", "comp", "sci"]
    assert h.six_topic_names == ["computers", "religion", "science"]
    np.testing.assert_array_equal(h.top_level, [0, 1, 2])
    np.testing.assert_array_equal(h.six_topic, [1, 0, 2])
    assert h.top_level.dtype == np.int64 and isinstance(news.DESCR, str)

    # the hierarchy of the dotted names: no name has more than 2 parts here
    assert h.level_names == [["alt", "comp", "sci"], list(_NG_GROUPS), list(_NG_GROUPS)]
    np.testing.assert_array_equal(h.levels, [[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    assert h.levels.dtype == np.int64
    assert news.hierarchy_levels.shape == (12, 3) and news.hierarchy_levels.dtype == np.int64
    np.testing.assert_array_equal(news.hierarchy_levels, h.levels[news.target])
    np.testing.assert_array_equal(news.hierarchy_levels[:, 2], news.target)
    assert news.hierarchy_level_names == h.level_names

    X, y = load_20newsgroups(home, subset="test", n_features=5, return_X_y=True)
    assert sp.issparse(X) and X.shape == (6, 5) and y.shape == (6,)

    # Without hierarchy.csv the standard grouping is used.
    (home / "20newsgroups" / "hierarchy.csv").unlink()
    h2 = load_20newsgroups(home, n_features=3).hierarchy
    for key in h:
        np.testing.assert_array_equal(h2[key], h[key])


def test_20newsgroups_dotted_name_levels():
    names = sorted(_NEWSGROUPS_SIX_TOPICS)  # the 20 standard groups
    levels, level_names = _dotted_name_levels(names)
    assert levels.shape == (20, 3) and levels.dtype == np.int64
    # counted from the 20 names: 7 first parts; alt.atheism, comp.{graphics, os, sys,
    # windows}, misc.forsale, rec.{autos, motorcycles, sport}, sci.{crypt, electronics,
    # med, space}, soc.religion, talk.{politics, religion}: 16; the 20 groups
    assert [len(n) for n in level_names] == [7, 16, 20]
    assert level_names[0] == ["alt", "comp", "misc", "rec", "sci", "soc", "talk"]
    assert level_names[1] == [
        "alt.atheism", "comp.graphics", "comp.os", "comp.sys", "comp.windows",
        "misc.forsale", "rec.autos", "rec.motorcycles", "rec.sport", "sci.crypt",
        "sci.electronics", "sci.med", "sci.space", "soc.religion", "talk.politics",
        "talk.religion",
    ]
    assert level_names[2] == names
    np.testing.assert_array_equal(levels[:, 2], np.arange(20))
    path = {g: [level_names[k][levels[i, k]] for k in range(3)] for i, g in enumerate(names)}
    assert path["comp.sys.mac.hardware"] == ["comp", "comp.sys", "comp.sys.mac.hardware"]
    assert path["comp.os.ms-windows.misc"] == ["comp", "comp.os", "comp.os.ms-windows.misc"]
    assert path["alt.atheism"] == ["alt", "alt.atheism", "alt.atheism"]
    assert path["rec.sport.hockey"] == ["rec", "rec.sport", "rec.sport.hockey"]
    assert path["misc.forsale"] == ["misc", "misc.forsale", "misc.forsale"]
    # other depths, and a group whose name is a prefix of another's
    levels, level_names = _dotted_name_levels(["a", "a.b", "a.b.c.d"], n_levels=2)
    assert level_names == [["a"], ["a", "a.b", "a.b.c.d"]]
    np.testing.assert_array_equal(levels, [[0, 0], [0, 1], [0, 2]])


def test_20newsgroups_data_home_variants(ng_home, monkeypatch):
    home, _ = ng_home
    ref = load_20newsgroups(home, subset="test").filenames
    direct = load_20newsgroups(str(home / "20newsgroups"), subset="test")
    np.testing.assert_array_equal(direct.filenames, ref)
    monkeypatch.setenv("SK_HIERCLUST_DATA", str(home))
    np.testing.assert_array_equal(load_20newsgroups(subset="test").filenames, ref)


def test_20newsgroups_load_dataset(ng_home):
    home, _ = ng_home
    assert "20newsgroups" in DATASETS
    X_train, y_train, X_test, y_test = load_dataset("20newsgroups", data_home=home)
    train = load_20newsgroups(home)
    test = load_20newsgroups(home, subset="test")
    assert sp.issparse(X_train) and X_train.dtype == np.float32
    assert (X_train != train.data).nnz == 0 and (X_test != test.data).nnz == 0
    np.testing.assert_array_equal(y_train, train.target)
    np.testing.assert_array_equal(y_test, test.target)


@pytest.mark.parametrize("kwargs, match", [
    ({"subset": "validation"}, "subset"),
    ({"n_features": 0}, "n_features"),
    ({"n_features": 2.5}, "n_features"),
    ({"n_features": True}, "n_features"),
])
def test_20newsgroups_bad_arguments(ng_home, kwargs, match):
    home, _ = ng_home
    with pytest.raises(ValueError, match=match):
        load_20newsgroups(home, **kwargs)


def test_20newsgroups_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        load_20newsgroups(tmp_path)
    msg = str(excinfo.value)
    assert str(tmp_path / "20newsgroups" / "20news-bydate.tar.gz") in msg
    assert f"Looked in {tmp_path / '20newsgroups'} and {tmp_path}" in msg
    assert "data_home=" in msg and "SK_HIERCLUST_DATA" in msg
    assert "qwone.com" in msg and "Nothing is downloaded" in msg
    with pytest.raises(FileNotFoundError):
        load_dataset("20newsgroups", data_home=tmp_path)


def test_20newsgroups_bad_archives(tmp_path):
    path = tmp_path / "20newsgroups" / "20news-bydate.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="not a valid .tar.gz"):
        load_20newsgroups(tmp_path)
    messages = _ng_messages()
    _write_ng_archive(path, {"train": messages["train"]})  # no test split
    assert load_20newsgroups(tmp_path).data.shape[0] == 12
    with pytest.raises(ValueError, match="no 20news-bydate-test"):
        load_20newsgroups(tmp_path, subset="test")
    del messages["test"]["sci.space"]
    _write_ng_archive(path, messages)
    with pytest.raises(ValueError, match="different newsgroups"):
        load_20newsgroups(tmp_path, subset="all")
    messages = _ng_messages()
    messages["train"]["rec.unknown"] = messages["train"].pop("sci.space")
    messages["test"]["rec.unknown"] = messages["test"].pop("sci.space")
    _write_ng_archive(path, messages)  # no hierarchy.csv, non-standard group
    with pytest.raises(FileNotFoundError, match="hierarchy.csv"):
        load_20newsgroups(tmp_path)


@pytest.mark.parametrize("text, match", [
    ("id,group,prefix,topic\n", "header"),
    (_NG_HIERARCHY.replace("2,sci.space,sci,science\n", ""), "lists the newsgroups"),
    (_NG_HIERARCHY.replace("2,sci.space,sci,", "2,sci.space,,"), "line 4"),
    (_NG_HIERARCHY.replace("0,alt.", "5,alt."), "label_id 5, expected 0"),
])
def test_20newsgroups_bad_hierarchy(ng_home, text, match):
    home, _ = ng_home
    (home / "20newsgroups" / "hierarchy.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_20newsgroups(home)


_NG_REAL = REAL_HOME / "20newsgroups"
_NG_TRAIN_COUNTS = [480, 584, 591, 590, 578, 593, 585, 594, 598, 597,
                    600, 595, 591, 594, 593, 599, 546, 564, 465, 377]
_NG_TEST_COUNTS = [319, 389, 394, 392, 385, 395, 390, 396, 398, 397,
                   399, 396, 393, 396, 394, 398, 364, 376, 310, 251]


@pytest.fixture(scope="module")
def real_20newsgroups():
    if not (_NG_REAL / "20news-bydate.tar.gz").is_file():
        pytest.skip("20 Newsgroups archive not found in the shared data folder")
    return load_20newsgroups(REAL_HOME), load_20newsgroups(REAL_HOME, subset="test")


@pytest.mark.slow
def test_real_20newsgroups(real_20newsgroups):
    train, test = real_20newsgroups
    _check_tfidf_matrix(train.data, 11314, 2000)
    _check_tfidf_matrix(test.data, 7532, 2000)
    np.testing.assert_array_equal(np.bincount(train.target), _NG_TRAIN_COUNTS)
    np.testing.assert_array_equal(np.bincount(test.target), _NG_TEST_COUNTS)
    assert len(train.target_names) == 20 and train.target_names == test.target_names
    assert train.target_names == sorted(train.target_names)
    np.testing.assert_array_equal(train.feature_names, test.feature_names)
    assert len(set(train.filenames)) == 11314
    assert all(f.startswith("20news-bydate-test/") for f in test.filenames)
    # Test rows with no training term would be all zero: there are few.
    assert (np.diff(test.data.indptr) == 0).sum() < 10


@pytest.mark.slow
def test_real_20newsgroups_hierarchy(real_20newsgroups):
    train, _ = real_20newsgroups
    h = train.hierarchy
    assert h.top_level.shape == h.six_topic.shape == (20,)
    assert h.top_level_names == ["alt", "comp", "misc", "rec", "sci", "soc", "talk"]
    assert h.six_topic_names == ["computers", "forsale", "politics",
                                 "recreation", "religion", "science"]
    sizes = dict(zip(h.six_topic_names, np.bincount(h.six_topic)))
    assert sizes == {"computers": 5, "recreation": 4, "science": 4,
                     "politics": 3, "religion": 3, "forsale": 1}
    with open(_NG_REAL / "hierarchy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["newsgroup"] for r in rows] == train.target_names
    for label, row in enumerate(rows):
        assert int(row["label_id"]) == label
        assert row["top_level_prefix"] == row["newsgroup"].split(".")[0]
        assert h.top_level_names[h.top_level[label]] == row["top_level_prefix"]
        assert h.six_topic_names[h.six_topic[label]] == row["six_topic_group"]


@pytest.mark.slow
def test_real_20newsgroups_hierarchy_levels(real_20newsgroups):
    for news, n in zip(real_20newsgroups, (11314, 7532)):
        levels, names = news.hierarchy_levels, news.hierarchy_level_names
        assert levels.shape == (n, 3) and levels.dtype == np.int64
        assert [len(level) for level in names] == [7, 16, 20]
        assert names[0] == ["alt", "comp", "misc", "rec", "sci", "soc", "talk"]
        assert names[2] == news.target_names
        np.testing.assert_array_equal(levels[:, 2], news.target)
        np.testing.assert_array_equal(levels, news.hierarchy.levels[news.target])
        assert news.hierarchy.level_names == names
        # the first level is the top-level prefix of hierarchy.csv
        assert names[0] == news.hierarchy.top_level_names
        np.testing.assert_array_equal(news.hierarchy.levels[:, 0], news.hierarchy.top_level)
    train = real_20newsgroups[0]
    levels, names = train.hierarchy_levels, train.hierarchy_level_names
    mac = train.target_names.index("comp.sys.mac.hardware")
    row = levels[np.flatnonzero(train.target == mac)[0]]
    assert [names[k][row[k]] for k in range(3)] == ["comp", "comp.sys", "comp.sys.mac.hardware"]
    atheism = levels[np.flatnonzero(train.target == 0)[0]]
    assert [names[k][atheism[k]] for k in range(3)] == ["alt", "alt.atheism", "alt.atheism"]
    # documents per first-level class, from _NG_TRAIN_COUNTS: alt 480, comp the labels
    # 1-5, misc 585, rec 6-10, sci 11-14, soc 599, talk 16-19
    assert dict(zip(names[0], np.bincount(levels[:, 0]).tolist())) == {
        "alt": 480, "comp": 2936, "misc": 585, "rec": 2389, "sci": 2373, "soc": 599,
        "talk": 1952,
    }
    assert np.bincount(levels[:, 1])[names[1].index("comp.sys")] == 590 + 578  # labels 3, 4

    # the levels nest, so hierarchical_f_score accepts them; the tree of the dotted
    # names itself (root, 7, 16 and 20 nodes, each document at its group's node) scores 1
    first = levels[:, 0]
    parent_1 = np.zeros(7, dtype=np.int64)
    parent_2 = np.zeros(16, dtype=np.int64)
    parent_2[levels[:, 1]] = 1 + first
    parent_3 = np.zeros(20, dtype=np.int64)
    parent_3[levels[:, 2]] = 8 + levels[:, 1]
    tree = ClusterTree(np.concatenate([[-1], parent_1, parent_2, parent_3]))
    assert tree.node_count == 44 and tree.max_depth == 3
    assert hierarchical_f_score(levels, tree, 24 + levels[:, 2]) == 1.0
    # all documents at the root: 2 p / (1 + p) for each class of each level
    p = np.concatenate([np.bincount(levels[:, k]) for k in range(3)]) / levels.shape[0]
    expected = np.sum(p * 2 * p / (1 + p)) / 3
    score = hierarchical_f_score(levels, ClusterTree([-1]), np.zeros(levels.shape[0], dtype=int))
    assert score == pytest.approx(expected, rel=1e-12)
