"""``benchmarks/run_all.py`` and ``benchmarks/_baselines.py`` on a tiny slice of digits."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_all():
    return _load("run_all")


@pytest.fixture(scope="module")
def baselines(run_all):
    return sys.modules["_baselines"]  # run_all imports it


@pytest.fixture(scope="module")
def digits_rows(run_all):
    """Every model and baseline on 200 training / 100 test digits, one epoch per phase."""
    lines = []
    rows, info = run_all.run_dataset("digits", [*run_all.MODELS, *run_all.BASELINES], n_train=200, n_test=100,
                                     max_epochs=1, log=lines.append)
    return rows, info, lines


def test_run_dataset_rows(run_all, digits_rows):
    rows, info, lines = digits_rows
    assert info["n_train"] == 200 and info["n_test"] == 100 and info["n_classes"] == 10
    names = [row["model"] for row in rows]
    assert names == ["TreeVAE", "HCRL2", "VLAC (1,5,50,1)", "HTVAE (8x8,4x4,2x2)", "Ward, 20 leaves",
                     "Ward, 10 leaves", "VAE + Ward", "HKM (binary k-means)"]
    for row in rows:
        assert list(row) == list(run_all.COLUMNS)
        for c in ("DP", "LP", "ACC", "NMI"):
            assert 0.0 <= row[c] <= 1.0
        assert row["fit s"] >= 0 and row["leaves"] >= 1
    by_name = {row["model"]: row for row in rows}
    assert by_name["Ward, 20 leaves"]["leaves"] == 20 and by_name["Ward, 10 leaves"]["leaves"] == 10
    assert by_name["HKM (binary k-means)"]["leaves"] == 10 and by_name["VAE + Ward"]["leaves"] == 10
    # raw-pixel Ward is far better than chance on digits (LP of chance ~ 0.1)
    assert by_name["Ward, 10 leaves"]["LP"] > 0.5
    assert lines[0].startswith("== digits: 200 training, 100 test samples") and len(lines) == 1 + len(rows)


def test_load_split_digits_seeded(run_all):
    X_train, y_train, X_test, y_test = run_all.load_split("digits", seed=3)
    assert X_train.shape == (1198, 64) and X_test.shape == (599, 64)
    again = run_all.load_split("digits", seed=3)
    np.testing.assert_array_equal(X_test, again[2])
    other = run_all.load_split("digits", seed=4)
    assert not np.array_equal(X_test, other[2])
    assert np.bincount(y_test).min() >= 55  # stratified: every digit about a third of its ~180


def test_model_params_capped(run_all):
    params = run_all.model_params("treevae", "mnist", max_epochs=2, seed=5)
    assert params["n_epochs_initial"] == params["n_epochs_grow"] == params["n_epochs"] == 2
    assert params["encoder"] == "conv" and params["random_state"] == 5
    assert run_all.model_params("treevae", "mnist")["n_epochs_initial"] == 30  # the table is not changed


def test_markdown_and_rst_tables(run_all, digits_rows):
    rows = digits_rows[0]
    md = run_all.markdown_table(rows).splitlines()
    assert md[0] == "| model | DP | LP | ACC | NMI | fit s | leaves |"
    assert md[1] == "|:---|---:|---:|---:|---:|---:|---:|"
    assert len(md) == 2 + len(rows)
    assert all(line.startswith("| ") and line.endswith(" |") and line.count("|") == 8 for line in md[2:])
    assert md[2].startswith("| TreeVAE | ")

    rst = run_all.rst_table(rows).splitlines()
    rule = rst[0]
    assert rst[2] == rule and rst[-1] == rule and len(rst) == 4 + len(rows)
    assert set(rule) == {"=", " "}
    # the columns start where the rule's runs of "=" start, in every line
    starts = [i for i, ch in enumerate(rule) if ch == "=" and (i == 0 or rule[i - 1] == " ")]
    assert len(starts) == len(run_all.COLUMNS)
    for line in rst[1:2] + rst[3:-1]:
        assert len(line) <= len(rule)
        for s in starts[1:]:
            assert line[s - 1] == " " and line[s] != " "
    assert rst[1].split() == ["model", "DP", "LP", "ACC", "NMI", "fit", "s", "leaves"]
    docutils = pytest.importorskip("docutils.core")
    from docutils import nodes

    doctree = docutils.publish_doctree(run_all.rst_table(rows), settings_overrides={"report_level": 2,
                                                                                    "halt_level": 2})
    table_rows = list(doctree.findall(nodes.row))
    assert len(table_rows) == 1 + len(rows)
    assert all(len(row.children) == len(run_all.COLUMNS) for row in table_rows)


def test_results_markdown_and_readme_section(run_all, digits_rows):
    rows, info, _ = digits_rows
    meta = {"command": "python benchmarks/run_all.py --quick", "date": "2000-01-01", "seed": 0,
            "settings": ["digits, TreeVAE: ..."], "cpu s": 12.0, "wall s": 13.0, "machine": "test",
            "label": ", quick settings"}
    text = run_all.results_markdown({"digits": (rows, info)}, meta)
    assert text.startswith("# Peers' table\n") and "## digits\n" in text and text.endswith("\n")
    assert run_all.markdown_table(rows) in text and "- digits, TreeVAE: ..." in text
    section = run_all.readme_section({"digits": (rows, info)}, meta)
    assert "digits" in section and "2000-01-01" in section and "quick settings" in section
    assert run_all.rst_table(rows) in section


README = """Title
=====

Intro.

Benchmarks
----------
Other agents' text.

.. begin-benchmarks

old table
old caption

.. end-benchmarks

**TreeVAE** text after the section.

Development
-----------
More.
"""


def test_update_readme_replaces_only_the_marked_section(run_all, tmp_path):
    path = tmp_path / "README.rst"
    path.write_text(README)
    run_all.update_readme(path, "new section\n\n=  =\na  b\n=  =")
    text = path.read_text()
    before, after = README.split(".. begin-benchmarks")[0], README.split(".. end-benchmarks")[1]
    assert text.startswith(before + ".. begin-benchmarks\n\nnew section\n")
    assert text.endswith(".. end-benchmarks" + after)
    assert "old table" not in text and text.count(".. begin-benchmarks") == 1
    run_all.update_readme(path, "new section\n\n=  =\na  b\n=  =")
    assert path.read_text() == text  # idempotent


@pytest.mark.parametrize("text", ["no markers\n", ".. end-benchmarks\nx\n.. begin-benchmarks\n",
                                  ".. begin-benchmarks\n.. begin-benchmarks\n.. end-benchmarks\n"])
def test_replace_marked_section_errors(run_all, text):
    with pytest.raises(ValueError, match="benchmarks"):
        run_all.replace_marked_section(text, "x")


@pytest.mark.parametrize("name", ["hkm_tree", "rgmm_tree"])
def test_recursive_binary_trees_recover_planted_blobs(baselines, name):
    rng = np.random.RandomState(0)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    y = np.repeat(np.arange(4), 30)
    X = centers[y] + rng.normal(scale=0.3, size=(120, 2))
    tree, nodes = getattr(baselines, name)(X, depth=2, random_state=0)
    assert tree.n_leaves == 4 and tree.max_depth == 2 and tree.node_count == 7
    assert np.all(tree.is_leaf[nodes])
    row = baselines.score_row(name, y, tree, nodes, 0.5)
    assert row["DP"] == row["LP"] == row["ACC"] == pytest.approx(1.0)
    assert row["leaves"] == 4 and row["fit s"] == 0.5
    # bisecting: the largest leaf first, down to n_leaves
    tree3, nodes3 = getattr(baselines, name)(X, depth=5, random_state=0, n_leaves=3)
    assert len(tree3.label_to_node) == 3 and np.all(tree3.is_leaf[nodes3])


def test_ward_tree_and_vae_embedding(baselines):
    rng = np.random.RandomState(0)
    X = rng.rand(60, 16).astype(np.float32)
    tree, nodes = baselines.ward_tree(X, 5)
    assert len(tree.label_to_node) == 5 and nodes.shape == (60,)
    cuts = baselines.ward_tree(X, [6, 3])
    assert [len(t.label_to_node) for t, _ in cuts] == [6, 3]
    Z_train, Z_test = baselines.vae_embedding(X[:40], X[40:], n_epochs=2, latent_dim=3, batch_size=16,
                                              random_state=0)
    assert Z_train.shape == (40, 3) and Z_test.shape == (20, 3) and np.all(np.isfinite(Z_test))
    again = baselines.vae_embedding(X[:40], X[40:], n_epochs=2, latent_dim=3, batch_size=16, random_state=0)
    np.testing.assert_allclose(again[1], Z_test, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_split_consistency_against_brute_force(baselines, seed):
    from sk_hierclust import ClusterTree

    rng = np.random.RandomState(seed)
    n_nodes = rng.randint(3, 12)
    parent = np.array([-1] + [rng.randint(0, v) for v in range(1, n_nodes)])
    tree = ClusterTree(parent)
    nodes, y = rng.randint(0, n_nodes, 80), rng.randint(0, 4, 80)  # samples at internal nodes too

    def under(v):  # the samples in v's subtree
        return np.array([v in [s, *tree.ancestors(s)] for s in nodes])

    expected = {}
    for depth in range(3):
        kept = largest = total = 0
        for v in np.flatnonzero((tree.depth == depth) & ~tree.is_leaf):
            if not under(v).any():
                continue
            parts = [nodes == v] + [under(c) for c in np.flatnonzero(parent == v)]
            kept += sum(max(np.sum(p & (y == c)) for p in parts) for c in range(4))
            largest += max(p.sum() for p in parts)
            total += under(v).sum()
        if total:
            expected[depth] = (kept / total, largest / total)
    got = baselines.split_consistency(y, tree, nodes)
    assert got.keys() == expected.keys()
    for depth, value in expected.items():
        assert got[depth] == pytest.approx(value)
