r"""Peers' table: every model and the baselines on every data set, one markdown table per data set.

For each data set, every model (TreeVAE, HCRL, VLAC, HTVAE, with the settings of its own
benchmark, ``bench_*.py``, and of the README's figures) is fitted on a seeded subsample of the
training set (sizes in :data:`DATASETS`) and scored on the test set (digits, which has none:
a seeded, stratified 2/3 - 1/3 split): dendrogram purity (DP, on ``apply``), leaf purity (LP),
cluster accuracy (ACC, Hungarian matching) and NMI (on ``predict``), the fit's CPU seconds
(``time.process_time``, torch and the BLAS/OpenMP pools on one thread) and the number of
leaves holding training samples. The baselines cluster the same test set:

- ``Ward, N leaves``: Ward linkage (scipy) on the raw features, cut to 20 leaves and to the
  number of classes (the TreeVAE paper's "Agg" row takes DP/LP at 20, ACC/NMI at 10);
- ``VAE + Ward``: a plain VAE (the models' encoder and decoder, standard-normal prior) fitted
  on the training subsample, then Ward on the test embeddings, cut to the number of classes;
- ``HKM``: recursive binary k-means (bisecting, largest leaf first) on the raw test features,
  down to the number of classes.

The tables go to ``--out`` (default ``benchmarks/results.md``); ``--update-readme`` also
rewrites the part of ``README.rst`` between the ``.. begin-benchmarks`` and
``.. end-benchmarks`` comments with the same tables in RST.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/run_all.py --quick --update-readme  # digits, <= 10 min
    OMP_NUM_THREADS=1 python benchmarks/run_all.py --data-home ../shared/data  # all four: hours
    python benchmarks/run_all.py --dry-run  # print the settings, fit nothing

``--n-train``, ``--n-test`` and ``--max-epochs`` shrink every run (a smoke test of the full
mode: ``--n-train 300 --n-test 300 --max-epochs 1``).
"""

import argparse
import copy
import os
import platform
import re
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import SCORE_COLUMNS, hkm_tree, score_row, timed, vae_embedding, ward_tree  # noqa: E402

from sk_hierclust import HCRL, HTVAE, VLAC, TreeVAE  # noqa: E402
from sk_hierclust.datasets import load_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results.md"
DEFAULT_README = HERE.parent / "README.rst"
BEGIN_MARKER, END_MARKER = ".. begin-benchmarks", ".. end-benchmarks"

#: Per data set: training subsample (None: all), the test set's size (None: all), the
#: data's encoder for the VAE baseline and TreeVAE (``conv`` reads 28x28 images), image shape,
#: and the leaf counts of the Ward rows (the number of classes is added).
DATASETS = {
    "digits": {"n_train": None, "n_test": None, "encoder": "mlp", "input_shape": None, "batch_size": 64},
    "mnist": {"n_train": 10_000, "n_test": None, "encoder": "conv", "input_shape": (1, 28, 28),
              "batch_size": 256},
    "fashion_mnist": {"n_train": 10_000, "n_test": None, "encoder": "conv", "input_shape": (1, 28, 28),
                      "batch_size": 256},
    "20newsgroups": {"n_train": 10_000, "n_test": None, "encoder": "mlp", "input_shape": None,
                     "batch_size": 256},
}
#: Leaf counts of the Ward rows, besides the number of classes.
WARD_LEAVES = (20,)
#: Largest depth of the HKM tree (it stops earlier, at the number of classes).
HKM_MAX_DEPTH = 8
#: Fraction of digits held out as its test set.
DIGITS_TEST_SIZE = 1 / 3

#: Each model's estimator and its parameters per data set: the settings of its benchmark
#: (``bench_treevae.py``, ``bench_hcrl.py``, ``bench_vlac.py``, ``bench_htvae.py``) and of the
#: README's figures; digits uses the command line's digits defaults (``sk_hierclust.cli``).
MODELS = {
    "treevae": ("TreeVAE", TreeVAE, {
        "digits": dict(max_leaves=10, max_depth=6, n_epochs_initial=20, n_epochs_grow=10, n_epochs=15,
                       encoder="mlp", batch_size=64),
        "mnist": dict(max_leaves=10, max_depth=6, n_epochs_initial=30, n_epochs_grow=15, n_epochs=30,
                      encoder="conv", input_shape=(1, 28, 28), batch_size=256),
        "fashion_mnist": dict(max_leaves=10, max_depth=6, n_epochs_initial=30, n_epochs_grow=15, n_epochs=30,
                              encoder="conv", input_shape=(1, 28, 28), batch_size=256),
        "20newsgroups": dict(max_leaves=20, max_depth=6, n_epochs_initial=30, n_epochs_grow=15, n_epochs=30,
                             encoder="mlp", batch_size=256),
    }),
    "hcrl": ("HCRL2", HCRL, {
        "digits": dict(max_depth=2, max_leaves=20, level_proportion="local", n_epochs_pretrain=20, n_epochs=30,
                       encoder="mlp", batch_size=64),
        "mnist": dict(max_depth=2, max_leaves=20, level_proportion="local", n_epochs_pretrain=10, n_epochs=20,
                      encoder="mlp", batch_size=128),
        "fashion_mnist": dict(max_depth=2, max_leaves=20, level_proportion="local", n_epochs_pretrain=10,
                              n_epochs=20, encoder="mlp", batch_size=128),
        "20newsgroups": dict(max_depth=3, max_leaves=20, level_proportion="local", n_epochs_pretrain=10,
                             n_epochs=20, encoder="mlp", batch_size=128),
    }),
    "vlac": ("VLAC (1,5,50,1)", VLAC, {
        "digits": dict(n_clusters=(1, 5, 50, 1), latent_dims=8, n_epochs=40, encoder="mlp", batch_size=64),
        "mnist": dict(n_clusters=(1, 5, 50, 1), latent_dims=8, n_epochs=30, encoder="mlp", batch_size=256),
        "fashion_mnist": dict(n_clusters=(1, 5, 50, 1), latent_dims=8, n_epochs=30, encoder="mlp",
                              batch_size=256),
        "20newsgroups": dict(n_clusters=(1, 5, 50, 1), latent_dims=8, n_epochs=30, encoder="mlp",
                             batch_size=256),
    }),
    "htvae": ("HTVAE (8x8,4x4,2x2)", HTVAE, {
        "digits": dict(map_shapes=((8, 8), (4, 4), (2, 2)), n_epochs=20, encoder="mlp", batch_size=64),
        "mnist": dict(map_shapes=((8, 8), (4, 4), (2, 2)), n_epochs=15, encoder="mlp", batch_size=32),
        "fashion_mnist": dict(map_shapes=((8, 8), (4, 4), (2, 2)), n_epochs=15, encoder="mlp", batch_size=32),
        "20newsgroups": dict(map_shapes=((8, 8), (4, 4), (2, 2)), n_epochs=15, encoder="mlp", batch_size=32),
    }),
}

#: The plain VAE of "VAE + Ward", per data set (encoder, image shape and batch from :data:`DATASETS`).
VAE_SETTINGS = {"digits": dict(n_epochs=30, latent_dim=10), "mnist": dict(n_epochs=30, latent_dim=10),
                "fashion_mnist": dict(n_epochs=30, latent_dim=10), "20newsgroups": dict(n_epochs=30, latent_dim=10)}

#: Baseline keys ``--models`` accepts, besides :data:`MODELS`.
BASELINES = ("ward", "vae_ward", "hkm")
#: Columns of the tables, the row name first.
COLUMNS = ("model", *SCORE_COLUMNS)


# ---- settings -------------------------------------------------------------------------
def _cap_epochs(params, max_epochs):
    """``params`` with every ``n_epochs*`` value at most ``max_epochs`` (None: unchanged)."""
    params = dict(params)
    if max_epochs is not None:
        for key, value in params.items():
            if key.startswith("n_epochs"):
                params[key] = min(value, max_epochs)
    return params


def model_params(model, dataset, *, max_epochs=None, seed=0):
    """Estimator parameters of ``model`` on ``dataset``: :data:`MODELS`, epochs capped, seeded.

    Parameters
    ----------
    model : str
        Key of :data:`MODELS`.
    dataset : str
        Key of :data:`DATASETS`.
    max_epochs : int, default=None
        Cap on every epoch parameter (None: the benchmark's epochs).
    seed : int, default=0
        ``random_state``.

    Returns
    -------
    dict
    """
    return {**_cap_epochs(copy.deepcopy(MODELS[model][2][dataset]), max_epochs), "random_state": seed}


def vae_params(dataset, *, max_epochs=None, seed=0):
    """Keyword arguments of :func:`_baselines.vae_embedding` on ``dataset`` (see :data:`VAE_SETTINGS`)."""
    info = DATASETS[dataset]
    params = {**VAE_SETTINGS[dataset], "encoder": info["encoder"], "input_shape": info["input_shape"],
              "batch_size": info["batch_size"], "random_state": seed}
    return _cap_epochs(params, max_epochs)


def _subsample(X, y, n, seed):
    """A seeded random subset of ``n`` rows, in their original order (all when n is None or too big)."""
    if n is None or n >= X.shape[0]:
        return X, y
    idx = np.sort(np.random.RandomState(seed).choice(X.shape[0], n, replace=False))
    return X[idx], y[idx]


def load_split(dataset, *, data_home=None, seed=0, n_train=None, n_test=None):
    """Training subsample and test set of ``dataset``.

    Parameters
    ----------
    dataset : str
        Key of :data:`DATASETS`. Digits has no test set: a stratified split holds out
        :data:`DIGITS_TEST_SIZE` of it (seeded by ``seed``).
    data_home : str, default=None
        Folder of the data files (see :func:`sk_hierclust.datasets.load_dataset`).
    seed : int, default=0
        Seed of the digits split and of the subsamples.
    n_train, n_test : int, default=None
        Subsample sizes; None: :data:`DATASETS`'s (``n_train``: None there means all).

    Returns
    -------
    X_train, y_train, X_test, y_test
    """
    X_train, y_train, X_test, y_test = load_dataset(dataset, data_home=data_home)
    if X_test is None:
        X_train, X_test, y_train, y_test = train_test_split(X_train, y_train, test_size=DIGITS_TEST_SIZE,
                                                            random_state=seed, stratify=y_train)
    info = DATASETS[dataset]
    X_train, y_train = _subsample(X_train, y_train, info["n_train"] if n_train is None else n_train, seed)
    X_test, y_test = _subsample(X_test, y_test, info["n_test"] if n_test is None else n_test, seed)
    return X_train, y_train, X_test, y_test


# ---- runs -----------------------------------------------------------------------------
def run_model(model, dataset, data, *, seed=0, max_epochs=None):
    """Fit ``model`` on the training data and score it on the test data.

    Parameters
    ----------
    model : str
        Key of :data:`MODELS`.
    dataset : str
        Key of :data:`DATASETS` (selects the settings).
    data : tuple
        ``(X_train, y_train, X_test, y_test)`` as from :func:`load_split`.
    seed : int, default=0
    max_epochs : int, default=None
        See :func:`model_params`.

    Returns
    -------
    row : dict
        :func:`_baselines.score_row` of the test set; ``"fit s"`` is the CPU time of ``fit``.
    """
    X_train, _, X_test, y_test = data
    name, cls, _ = MODELS[model]
    estimator = cls(**model_params(model, dataset, max_epochs=max_epochs, seed=seed))
    _, fit_s = timed(estimator.fit, X_train)
    return score_row(name, y_test, estimator.tree_, estimator.apply(X_test), fit_s,
                     labels=estimator.predict(X_test))


def run_baseline(baseline, dataset, data, *, seed=0, max_epochs=None):
    """Rows of one baseline on the test data (see the module docstring).

    Parameters
    ----------
    baseline : {"ward", "vae_ward", "hkm"}
    dataset : str
        Key of :data:`DATASETS`.
    data : tuple
        ``(X_train, y_train, X_test, y_test)`` as from :func:`load_split`.
    seed : int, default=0
    max_epochs : int, default=None
        Cap on the VAE's epochs.

    Returns
    -------
    rows : list of dict
        :func:`_baselines.score_row` rows; ``"fit s"`` is CPU time (Ward: the linkage; VAE +
        Ward: the VAE's training, both embeddings and the linkage; HKM: all the k-means).
    """
    X_train, _, X_test, y_test = data
    n_classes = len(np.unique(y_test))
    if baseline == "ward":
        leaves = sorted({*WARD_LEAVES, n_classes}, reverse=True)
        cuts, seconds = timed(ward_tree, X_test, leaves)
        return [score_row(f"Ward, {k} leaves", y_test, tree, nodes, seconds) for k, (tree, nodes) in zip(leaves, cuts)]
    if baseline == "vae_ward":
        (_, Z_test), vae_s = timed(vae_embedding, X_train, X_test, **vae_params(dataset, max_epochs=max_epochs,
                                                                                 seed=seed))
        (tree, nodes), ward_s = timed(ward_tree, Z_test, n_classes)
        return [score_row("VAE + Ward", y_test, tree, nodes, vae_s + ward_s)]
    if baseline == "hkm":
        (tree, nodes), seconds = timed(hkm_tree, X_test, HKM_MAX_DEPTH, seed, n_leaves=n_classes)
        return [score_row("HKM (binary k-means)", y_test, tree, nodes, seconds)]
    raise ValueError(f"Unknown baseline {baseline!r}; choose one of {BASELINES}.")


def run_dataset(dataset, names, *, data_home=None, seed=0, n_train=None, n_test=None, max_epochs=None,
                log=print):
    """All the rows of ``dataset``: each name of ``names`` (a model or a baseline), in order.

    Parameters
    ----------
    dataset : str
        Key of :data:`DATASETS`.
    names : sequence of str
        Keys of :data:`MODELS` and :data:`BASELINES`.
    data_home, seed, n_train, n_test
        See :func:`load_split`.
    max_epochs : int, default=None
        See :func:`model_params`.
    log : callable, default=print
        Called with one progress line per run.

    Returns
    -------
    rows : list of dict
        :func:`_baselines.score_row` rows.
    info : dict
        ``n_train``, ``n_test``, ``n_classes`` and ``wall s`` (the data set's wall-clock seconds).
    """
    start = time.perf_counter()
    data = load_split(dataset, data_home=data_home, seed=seed, n_train=n_train, n_test=n_test)
    info = {"n_train": data[0].shape[0], "n_test": data[2].shape[0], "n_classes": len(np.unique(data[3]))}
    log(f"== {dataset}: {info['n_train']} training, {info['n_test']} test samples, {info['n_classes']} classes")
    rows = []
    for name in names:
        t0 = time.perf_counter()
        if name in MODELS:
            new = [run_model(name, dataset, data, seed=seed, max_epochs=max_epochs)]
        else:
            new = run_baseline(name, dataset, data, seed=seed, max_epochs=max_epochs)
        rows += new
        for row in new:
            log(f"  {row['model']}: " + ", ".join(f"{c} {_cell(row[c], c)}" for c in SCORE_COLUMNS)
                + f" ({time.perf_counter() - t0:.0f} s wall)")
    info["wall s"] = time.perf_counter() - start
    return rows, info


# ---- tables ---------------------------------------------------------------------------
def _cell(value, column):
    """Text of one cell: scores with 3 decimals, seconds with 1, leaves as an integer."""
    if column == "model":
        return str(value)
    if column == "leaves":
        return str(int(value))
    if column == "fit s":
        return f"{value:.1f}"
    return f"{value:.3f}"


def _cells(rows):
    return [[_cell(row[c], c) for c in COLUMNS] for row in rows]


def markdown_table(rows):
    """The rows as a GitHub markdown table (columns :data:`COLUMNS`, numbers right-aligned).

    Parameters
    ----------
    rows : list of dict
        :func:`_baselines.score_row` rows.

    Returns
    -------
    str
        Header, alignment line and one line per row, without a trailing newline.
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows)]
    return "\n".join(lines)


def rst_table(rows):
    """The rows as an RST simple table (columns :data:`COLUMNS`).

    Parameters
    ----------
    rows : list of dict
        :func:`_baselines.score_row` rows.

    Returns
    -------
    str
        The table, ``=`` rules above and below the header and at the end, without a trailing
        newline.
    """
    table = [list(COLUMNS)] + _cells(rows)
    widths = [max(len(r[j]) for r in table) for j in range(len(COLUMNS))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([rule, line(table[0]), rule, *map(line, table[1:]), rule])


def _settings_lines(datasets, names, max_epochs, seed):
    """One line per model and data set: the estimator's parameters (the VAE's for VAE + Ward)."""
    lines = []
    for dataset in datasets:
        for name in names:
            if name in MODELS:
                params = model_params(name, dataset, max_epochs=max_epochs, seed=seed)
                label = MODELS[name][0]
            elif name == "vae_ward":
                params, label = vae_params(dataset, max_epochs=max_epochs, seed=seed), "VAE + Ward (VAE)"
            else:
                continue
            lines.append(f"{dataset}, {label}: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
    return lines


def _caption(dataset, info):
    return (f"{dataset}: fit on {info['n_train']} training samples, scored on {info['n_test']} test samples "
            f"({info['n_classes']} classes)")


def results_markdown(results, meta):
    """The markdown report: a header, then one table per data set, then the settings.

    Parameters
    ----------
    results : dict
        Data set -> ``(rows, info)`` from :func:`run_dataset`.
    meta : dict
        ``command``, ``date``, ``seed``, ``settings`` (list of lines), ``cpu s``, ``wall s`` and
        ``machine``.

    Returns
    -------
    str
        The whole file, ending with a newline.
    """
    out = ["# Peers' table", "",
           f"Generated by `{meta['command']}` on {meta['date']} (seed {meta['seed']}; {meta['machine']}). "
           "DP on `apply`, LP / ACC / NMI on `predict`, all on the test set; `fit s` is the fit's CPU time "
           "(`time.process_time`, one thread); `leaves` counts the leaves holding samples. "
           f"Whole run: {meta['cpu s']:.0f} s CPU, {meta['wall s']:.0f} s wall.", ""]
    for dataset, (rows, info) in results.items():
        out += [f"## {dataset}", "", _caption(dataset, info) + ".", "", markdown_table(rows), ""]
    out += ["## Settings", ""] + [f"- {line}" for line in meta["settings"]]
    return "\n".join(out) + "\n"


def readme_section(results, meta):
    """The RST text that goes between the README's markers: a caption and one table per data set.

    Parameters
    ----------
    results, meta
        As for :func:`results_markdown`.

    Returns
    -------
    str
        RST paragraphs and tables, ending with a newline.
    """
    datasets = ", ".join(results)
    out = [f"**Peers' table** ({datasets}; generated by ``{meta['command']}`` on {meta['date']}, one seed "
           f"({meta['seed']}){meta.get('label', '')}; whole run {meta['cpu s']:.0f} s CPU, {meta['wall s']:.0f} s "
           "wall). Every model with its benchmark's settings, fitted on the training samples and scored on the "
           "test samples; the baselines cluster the test samples (Ward: raw features; VAE + Ward: Ward on a "
           "plain VAE's embeddings; HKM: recursive binary k-means on raw features); ``fit s`` is CPU time on "
           "one thread. Settings and the markdown version: ``benchmarks/results.md``."]
    out = [textwrap.fill(out[0], width=95, break_long_words=False, break_on_hyphens=False), ""]
    for dataset, (rows, info) in results.items():
        out += [_caption(dataset, info) + ":", "", rst_table(rows), ""]
    return "\n".join(out)


def replace_marked_section(text, section, begin=BEGIN_MARKER, end=END_MARKER):
    """Replace what lies between the ``begin`` and ``end`` marker lines of ``text`` by ``section``.

    Parameters
    ----------
    text : str
        The document (e.g. README.rst's text).
    section : str
        The new content (a trailing newline is added if missing).
    begin, end : str, default=".. begin-benchmarks", ".. end-benchmarks"
        The marker lines, each alone on its line; both are kept.

    Returns
    -------
    str
        ``text`` with only the marked part changed.

    Raises
    ------
    ValueError
        If a marker is missing, appears more than once, or ``end`` comes before ``begin``.
    """
    found = {m: [x.start() for x in re.finditer(rf"^{re.escape(m)}[ \t]*$", text, flags=re.M)] for m in (begin, end)}
    for marker, where in found.items():
        if len(where) != 1:
            raise ValueError(f"expected the marker line {marker!r} exactly once, found it {len(where)} times")
    b, e = found[begin][0], found[end][0]
    if e < b:
        raise ValueError(f"{end!r} comes before {begin!r}")
    head = text[:b + len(begin)]
    head += text[b + len(begin):].split("\n", 1)[0] + "\n"  # the rest of the marker line
    if not section.endswith("\n"):
        section += "\n"
    return head + "\n" + section + "\n" + text[e:]


def update_readme(path, section):
    """Rewrite the marked section of the file at ``path`` (see :func:`replace_marked_section`)."""
    path = Path(path)
    path.write_text(replace_marked_section(path.read_text(), section))


# ---- command line ---------------------------------------------------------------------
def build_parser():
    """The argument parser of ``run_all.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only (<= 10 minutes on one core)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=None,
                        help="default: all four (digits with --quick)")
    parser.add_argument("--models", nargs="+", choices=[*MODELS, *BASELINES], default=None,
                        help="models and baselines to run, in table order (default: all)")
    parser.add_argument("--data-home", default=None, help="folder of mnist/, fashion_mnist/, 20newsgroups/ "
                        "(default: $SK_HIERCLUST_DATA, else ../shared/data if present)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="markdown file written (default: %(default)s)")
    parser.add_argument("--update-readme", nargs="?", const=str(DEFAULT_README), default=None, metavar="PATH",
                        help=f"rewrite the part of PATH (default {DEFAULT_README.name}) between "
                             f"{BEGIN_MARKER!r} and {END_MARKER!r}")
    parser.add_argument("--n-train", type=int, default=None, help="override every training subsample size")
    parser.add_argument("--n-test", type=int, default=None, help="override every test set size")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap every epoch parameter")
    parser.add_argument("--dry-run", action="store_true", help="print the settings and exit")
    return parser


def _default_data_home():
    if os.environ.get("SK_HIERCLUST_DATA"):
        return None
    shared = HERE.parent.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else None


def main(argv=None):
    """Run the benchmarks, write ``--out`` and, with ``--update-readme``, the README's section."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and args.datasets not in (None, ["digits"]):
        parser.error("--quick runs digits only; drop --datasets or --quick")
    datasets = args.datasets or (["digits"] if args.quick else list(DATASETS))
    names = args.models or [*MODELS, *BASELINES]
    data_home = args.data_home or _default_data_home()
    settings = _settings_lines(datasets, names, args.max_epochs, args.seed)
    command = "python benchmarks/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"run_all: datasets {datasets}, runs {names}, data_home {data_home}", flush=True)
    if args.dry_run:
        for dataset in datasets:
            info = DATASETS[dataset]
            n_train = info["n_train"] if args.n_train is None else args.n_train
            n_test = info["n_test"] if args.n_test is None else args.n_test
            print(f"{dataset}: n_train {n_train or 'all'}, n_test {n_test or 'all'}")
        print("\n".join(settings))
        return None
    torch.set_num_threads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = {}
    with threadpool_limits(1):
        for dataset in datasets:
            results[dataset] = run_dataset(dataset, names, data_home=data_home, seed=args.seed,
                                           n_train=args.n_train, n_test=args.n_test, max_epochs=args.max_epochs,
                                           log=lambda line: print(line, flush=True))
    meta = {"command": command.strip(), "date": time.strftime("%Y-%m-%d"), "seed": args.seed,
            "settings": settings, "cpu s": time.process_time() - cpu0, "wall s": time.perf_counter() - wall0,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "label": ", quick settings" if args.quick else ""}
    text = results_markdown(results, meta)
    Path(args.out).write_text(text)
    print("\n" + text, flush=True)
    print(f"wrote {args.out}; total {meta['cpu s']:.0f} s CPU, {meta['wall s']:.0f} s wall")
    if args.update_readme:
        update_readme(args.update_readme, readme_section(results, meta))
        print(f"updated the marked section of {args.update_readme}")
    return results


if __name__ == "__main__":
    main()
