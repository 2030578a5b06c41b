r"""HCRL1 / HCRL2 benchmark on MNIST and 20 Newsgroups, with their initial trees and the baselines.

For every data set, fits HCRL1 (``level_proportion="global"``) and HCRL2 (``"local"``) at
each ``--depths`` (HCRL's ``max_depth``, root = 0: "depth 3" of the paper, three levels, is
``max_depth=2``; "depth 4" is ``max_depth=3``) on the training set and scores them on the
test set, next to

* the model's **initial tree**: the same fitted run, snapshotted by a skorch callback at
  the start of the first epoch of the joint training phase, i.e. right after the
  auto-encoder pre-training and the recursive k-means initial tree (the snapshot's
  ``tree_`` is its training samples' most probable full paths, as for the fitted model);
  the callback only copies the module, so the trained model is the one a fit without it
  gives;
* HKM on the raw test features (recursive binary k-means, ``_baselines.hkm_tree``);
* "VAE + recursive k-means" / "VAE + recursive GMM": the package's plain VAE
  (``_baselines.vae_embedding``) trained on the training set, then recursive binary k-means
  or Gaussian mixtures (``_baselines.rgmm_tree``) of the test embeddings, a VaDE-style
  two-stage pipeline;
* Ward (scipy) on the raw test inputs, cut to ``--max-leaves`` and to the number of classes.

On 20 Newsgroups the HCRL models and the VAE get the TF-IDF rows times ``sqrt(n_features)``
(entries of mean square 1) and a Gaussian likelihood: on the raw rows (norm 1) the Bernoulli
or unit-variance Gaussian likelihood carries so little information that the VAE's posterior
collapses. HKM and Ward see the raw rows (a global scale does not change their trees).
``--posteriors`` fits each model with the joint ``q(path, level | x)`` (the default) and/or
the paper's mean field (rows tagged "MF").

The recursive baselines are cut to ``--max-leaves`` leaves (largest leaf split first).
Columns: dendrogram purity (DP, on ``apply``: HCRL's samples may sit at internal nodes;
"DP leaf" with every sample at its ``predict`` leaf), leaf purity (LP), cluster accuracy
(ACC), NMI (on ``predict``), the hierarchical F-score (HF, 20 Newsgroups only: its 4-level
newsgroup hierarchy of the test documents, 7/16/20 classes),
the importance-sampled test NLL (MNIST only, ``-log_likelihood(X).mean()``), the leaves of
the tree, the used paths (leaves predicted for at least 1% of the test samples) and the CPU
seconds of the fit (``time.process_time``, one torch thread). Per HCRL model it also prints
the first and last training-epoch values of ``history_``'s ``path_entropy``,
``n_used_paths`` and ``internal_fraction``, and, for HCRL2, the spread of the per-sample
level proportion ``E[eta | x]`` (``transform`` with ``transform_features="level_proportion"``)
over the test samples, and its mean for the samples whose largest leaf posterior
(``predict_proba``) is in the top and the bottom quartile.

Usage::

    python benchmarks/bench_hcrl.py --data-home ../shared/data --datasets 20newsgroups
    python benchmarks/bench_hcrl.py --data-home ../shared/data --datasets mnist --n-train 10000

Targets (issue 12): the trained tree beats its initial tree on DP and LP; MNIST: HCRL2 DP >=
Ward's 0.637 and LP >= 0.786 at <= 20 leaves, HCRL2 >= HCRL1 on DP and NLL; 20 Newsgroups:
HF HCRL2 > HCRL1 > VAE + recursive k-means > HKM, >= 6 used paths, DP >= Ward's 0.119.
"""

import argparse
import copy
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import hkm_tree, rgmm_tree, score_row, timed, vae_embedding, ward_tree  # noqa: E402

from sk_hierclust import HCRL  # noqa: E402
from sk_hierclust.datasets import load_20newsgroups, load_dataset  # noqa: E402
from sk_hierclust.metrics import dendrogram_purity, hierarchical_f_score  # noqa: E402

COLUMNS = ("DP", "DP leaf", "LP", "ACC", "NMI", "HF", "NLL", "leaves", "used", "fit s")
USED_SHARE = 0.01  # a leaf predicted for this share of the test samples is a used path
HISTORY_KEYS = ("path_entropy", "n_used_paths", "internal_fraction")
HKM_MAX_DEPTH = 8  # depth cap of the recursive baselines (they stop at --max-leaves leaves)
#: Reference figures of the targets (README's Ward at 20 leaves on the test sets).
WARD_REF = {"mnist": {"DP": 0.637, "LP": 0.786}, "20newsgroups": {"DP": 0.119}}


class InitialTreeSnapshot(Callback):
    """Copy the module at the start of the first epoch after pre-training (the initial tree)."""

    def initialize(self):
        """Keep a snapshot over skorch's re-initialisations (one per training phase)."""
        if not hasattr(self, "module_"):
            self.module_ = None
        return self

    def on_epoch_begin(self, net, **kwargs):
        """Copy ``net.module_`` once, at the first epoch that is not pre-training."""
        if self.module_ is None and not net.module_.pretraining:
            self.module_ = copy.deepcopy(net.module_)


def initial_model(model, snapshot, X_train):
    """The fitted ``model`` with its module replaced by the initial-tree ``snapshot`` (a shallow copy).

    ``tree_`` is rebuilt from the snapshot's training assignments, as ``fit`` builds it.
    """
    init = copy.copy(model)
    init.net_ = types.SimpleNamespace(module_=snapshot, device=model.net_.device)
    parent, sample_nodes, module_nodes = init._tree_assignment(init._validate_X(X_train))
    init.tree_ = type(model.tree_).from_sample_nodes(parent, sample_nodes)
    init._module_node_ = np.asarray(module_nodes)
    return init


def subsample(X, y, n, seed):
    if n is None or n >= X.shape[0]:
        return X, y, None
    idx = np.sort(np.random.RandomState(seed).choice(X.shape[0], n, replace=False))
    return X[idx], y[idx], idx


def used_paths(labels):
    counts = np.bincount(np.asarray(labels))
    return int((counts >= USED_SHARE * len(labels)).sum())


def row_of(name, y, tree, nodes, labels, fit_s, levels):
    row = score_row(name, y, tree, nodes, fit_s if fit_s is not None else np.nan, labels=labels)
    row["fit s"] = fit_s
    row["used"] = used_paths(labels)
    row["DP leaf"] = dendrogram_purity(y, tree, tree.label_to_node[np.asarray(labels)])
    if levels is not None:
        row["HF"] = hierarchical_f_score(levels, tree, nodes)
    return row


def hcrl_row(name, model, X, y, levels, nll_samples, fit_s):
    labels = model.predict(X)
    row = row_of(name, y, model.tree_, model.apply(X), labels, fit_s, levels)
    if nll_samples:
        row["NLL"] = -float(np.mean(model.log_likelihood(X, n_importance=nll_samples)))
    return row


def history_summary(model):
    train = [r for r in model.history_ if r.get("phase") == "train"]
    if not train:
        return "no training epochs"
    parts = []
    for key in HISTORY_KEYS:
        first, last = train[0].get(key), train[-1].get(key)
        fmt = "{:d}" if key == "n_used_paths" else "{:.3f}"
        parts.append(f"{key} {fmt.format(first)} -> {fmt.format(last)}")
    events = [r["tree_event"] for r in train if r.get("tree_event")]
    leaves = [r.get("n_leaves") for r in train]
    return "; ".join(parts) + f"; n_leaves {leaves[0]} -> {leaves[-1]}; events {events}"


def eta_spread(model, X):
    """Spread of E[eta | x] over ``X`` and its mean in the top / bottom quartile of max leaf posterior."""
    model.set_params(transform_features="level_proportion")
    try:
        eta = model.transform(X).astype(np.float64)
    finally:
        model.set_params(transform_features="embedding")
    top = model.predict_proba(X).max(1)
    lo, hi = np.quantile(top, [0.25, 0.75])
    high, low = top >= hi, top <= lo

    def vec(v):
        return "[" + ", ".join(f"{x:.3f}" for x in v) + "]"
    lines = [f"  E[eta|x] (levels root..leaf): mean {vec(eta.mean(0))}, std over test samples {vec(eta.std(0))} "
             f"(max {eta.std(0).max():.3f})",
             f"  max leaf posterior: quartiles {lo:.3f} / {hi:.3f}; E[eta|x] mean, top quartile (fits a leaf) "
             f"{vec(eta[high].mean(0))}, bottom quartile (between clusters) {vec(eta[low].mean(0))}; "
             f"leaf-level difference {eta[high, -1].mean() - eta[low, -1].mean():+.3f}",
             f"  corr(E[eta_leaf|x], max leaf posterior) {np.corrcoef(eta[:, -1], top)[0, 1]:+.3f}"]
    return "\n".join(lines), float(eta.std(0).max())


def format_table(rows):
    width = max(24, max(len(k) for k in rows) + 1)
    lines = [f"{'':{width}s}" + "".join(f"{c:>8s}" for c in COLUMNS)]
    for name, row in rows.items():
        cells = []
        for c in COLUMNS:
            v = row.get(c)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                cells.append(f"{'-':>8s}")
            elif c in ("leaves", "used"):
                cells.append(f"{int(v):8d}")
            elif c in ("NLL", "fit s"):
                cells.append(f"{v:8.1f}")
            else:
                cells.append(f"{v:8.3f}")
        lines.append(f"{name:{width}s}" + "".join(cells))
    return "\n".join(lines)


def _mark(ok):
    return "MET" if ok else "MISSED"


def verdict(dataset, rows, depths, max_leaves):
    lines = ["targets:"]
    for name, row in rows.items():
        init = rows.get(f"{name} initial")
        if init is not None:
            ok = row["DP"] > init["DP"] and row["LP"] > init["LP"]
            lines.append(f"  {name} beats its initial tree on DP and LP: {_mark(ok)} (DP {row['DP']:.3f} vs "
                         f"{init['DP']:.3f}, LP {row['LP']:.3f} vs {init['LP']:.3f})")
    ward = rows.get(f"Ward, {max_leaves} leaves")
    for d in depths:
        h1, h2 = rows.get(f"HCRL1 d{d}"), rows.get(f"HCRL2 d{d}")
        if h2 is None:
            continue
        tag = f"HCRL2 d{d}"
        if dataset == "mnist":
            ref = WARD_REF["mnist"]
            ok = h2["DP"] >= ref["DP"] and h2["LP"] >= ref["LP"] and h2["leaves"] <= 20
            here = f"; this run's Ward {ward['DP']:.3f} / {ward['LP']:.3f}" if ward else ""
            lines.append(f"  {tag} DP >= 0.637 and LP >= 0.786 at <= 20 leaves: {_mark(ok)} (DP {h2['DP']:.3f}, "
                         f"LP {h2['LP']:.3f}, {h2['leaves']} leaves{here})")
            if h1 is not None:
                ok = h2["DP"] >= h1["DP"] and h2.get("NLL", np.inf) <= h1.get("NLL", -np.inf)
                lines.append(f"  {tag} >= HCRL1 on DP and NLL: {_mark(ok)} (DP {h2['DP']:.3f} vs {h1['DP']:.3f}, "
                             f"NLL {h2.get('NLL', np.nan):.1f} vs {h1.get('NLL', np.nan):.1f})")
        if dataset == "20newsgroups" and h1 is not None:
            rkm, hkm = rows.get("VAE + rec. k-means"), rows.get("HKM (raw)")
            chain = [h2["HF"], h1["HF"], rkm["HF"], hkm["HF"]]
            ok = all(a > b for a, b in zip(chain, chain[1:]))
            lines.append(f"  HF HCRL2 > HCRL1 > VAE + rec. k-means > HKM (d{d}): {_mark(ok)} ("
                         + " > ".join(f"{v:.3f}" for v in chain) + ")")
            lines.append(f"  {tag} >= 6 used paths: {_mark(h2['used'] >= 6)} ({h2['used']})")
            ref = WARD_REF["20newsgroups"]["DP"]
            here = f"; this run's Ward {ward['DP']:.3f}" if ward else ""
            lines.append(f"  {tag} DP >= Ward's 0.119: {_mark(h2['DP'] >= ref)} ({h2['DP']:.3f}{here})")
    return "\n".join(lines)


def load(dataset, data_home, n_train, n_test, seed):
    """Train/test inputs and labels, and the test documents' hierarchy levels (20 Newsgroups; else None)."""
    if dataset == "20newsgroups":
        train = load_20newsgroups(data_home, subset="train")
        test = load_20newsgroups(data_home, subset="test")
        X_train, y_train, X_test, y_test = train.data, train.target, test.data, test.target
        levels = test.hierarchy_levels  # 7 / 16 / 20 classes, coarsest first
    else:
        X_train, y_train, X_test, y_test = load_dataset(dataset, data_home=data_home)
        levels = None
    X_train, y_train, _ = subsample(X_train, y_train, n_train, seed)
    X_test, y_test, idx = subsample(X_test, y_test, n_test, seed)
    if levels is not None and idx is not None:
        levels = levels[idx]
    return X_train, y_train, X_test, y_test, levels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "20newsgroups"],
                        choices=["mnist", "fashion_mnist", "20newsgroups"])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=None, help="random subsample of the training set (seeded)")
    parser.add_argument("--n-test", type=int, default=None, help="random subsample of the test set (seeded)")
    parser.add_argument("--epochs", type=int, nargs=2, default=(10, 30), metavar=("PRETRAIN", "TRAIN"),
                        help="HCRL n_epochs_pretrain and n_epochs")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 3],
                        help="HCRL max_depth values (root = 0; 2 is the paper's depth 3, 3 its depth 4)")
    parser.add_argument("--models", nargs="+", default=["HCRL1", "HCRL2"], choices=["HCRL1", "HCRL2"])
    parser.add_argument("--posteriors", nargs="+", default=["joint"], choices=["joint", "mean_field"],
                        help="HCRL's q(path, level | x): joint, and/or the paper's mean field (rows 'MF')")
    parser.add_argument("--max-leaves", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=1.0, help="HCRL's Dirichlet parameter of the level proportion")
    parser.add_argument("--nll-samples", type=int, default=100,
                        help="importance samples of the MNIST test NLL (0: skip)")
    parser.add_argument("--vae-epochs", type=int, default=30, help="epochs of the VAE baseline's VAE")
    parser.add_argument("--no-baselines", action="store_true", help="HCRL rows only")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--save", default=None, metavar="PATH", help="also write the printed report there")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    report = []

    def emit(text=""):
        print(text, flush=True)
        report.append(text)

    wall = time.perf_counter()
    emit(f"bench_hcrl: {vars(args)}")
    for dataset in args.datasets:
        X_train, y_train, X_test, y_test, levels = load(dataset, args.data_home, args.n_train, args.n_test,
                                                        args.seed)
        # the HCRL and VAE inputs: 20 Newsgroups' TF-IDF rows scaled up, with a Gaussian likelihood
        Xs_train, Xs_test, likelihood = X_train, X_test, "auto"
        if dataset == "20newsgroups":
            scale = np.float32(np.sqrt(X_train.shape[1]))
            Xs_train, Xs_test, likelihood = X_train * scale, X_test * scale, "gaussian"
        n_classes = len(np.unique(y_train))
        nll = args.nll_samples if dataset in ("mnist", "fashion_mnist") else 0
        emit(f"\n=== {dataset}: train {X_train.shape}, test {X_test.shape}, {n_classes} classes, max "
             f"{args.max_leaves} leaves, HCRL epochs {tuple(args.epochs)}, seed {args.seed} ===")
        rows, spreads = {}, {}
        for depth, posterior, name in ((d, p, n) for d in args.depths for p in args.posteriors for n in args.models):
            level = "global" if name == "HCRL1" else "local"
            tag = f"{name} d{depth}" + (" MF" if posterior == "mean_field" else "")
            snap = InitialTreeSnapshot()
            model = HCRL(max_depth=depth, max_leaves=args.max_leaves, level_proportion=level, posterior=posterior,
                         alpha=args.alpha, likelihood=likelihood, n_epochs_pretrain=args.epochs[0],
                         n_epochs=args.epochs[1], batch_size=args.batch_size, verbose=args.verbose,
                         random_state=args.seed, callbacks=[("initial_tree", snap)])
            emit(f"fitting {tag} (max_depth={depth}, {depth + 1} levels, posterior={posterior}) ...")
            _, fit_s = timed(model.fit, Xs_train)
            start = time.perf_counter()
            rows[tag] = hcrl_row(tag, model, Xs_test, y_test, levels, nll, fit_s)
            init = initial_model(model, snap.module_, Xs_train)
            rows[f"{tag} initial"] = hcrl_row(f"{tag} initial", init, Xs_test, y_test, levels, nll, None)
            emit(f"  fit {fit_s:.0f} CPU s; tree {model.tree_!r}; initial tree {init.tree_!r}")
            emit(f"  history (first -> last training epoch): {history_summary(model)}")
            if level == "local":
                text, spreads[tag] = eta_spread(model, Xs_test)
                emit(text)
            emit(format_table({tag: rows[tag], f"{tag} initial": rows[f"{tag} initial"]}))
            emit(f"  scored in {time.perf_counter() - start:.0f} s; wall so far {time.perf_counter() - wall:.0f} s")
        if not args.no_baselines:
            emit("HKM on the raw test features ...")
            (tree, nodes), s = timed(hkm_tree, X_test, HKM_MAX_DEPTH, args.seed, n_leaves=args.max_leaves)
            rows["HKM (raw)"] = row_of("HKM (raw)", y_test, tree, nodes, tree.node_to_label[nodes], s, levels)
            emit(f"VAE ({args.vae_epochs} epochs) on the training set, then recursive k-means / GMM of the test "
                 "embeddings ...")
            (_, Z_test), vae_s = timed(vae_embedding, Xs_train, Xs_test, n_epochs=args.vae_epochs, latent_dim=10,
                                       encoder="mlp", batch_size=256, random_state=args.seed, likelihood=likelihood)
            for name, fn in (("VAE + rec. k-means", hkm_tree), ("VAE + rec. GMM", rgmm_tree)):
                (tree, nodes), s = timed(fn, Z_test, HKM_MAX_DEPTH, args.seed, n_leaves=args.max_leaves)
                rows[name] = row_of(name, y_test, tree, nodes, tree.node_to_label[nodes], vae_s + s, levels)
                emit(format_table({name: rows[name]}))
            emit("Ward on the raw test inputs ...")
            leaves = sorted({args.max_leaves, n_classes}, reverse=True)
            cuts, s = timed(ward_tree, X_test, leaves)
            for k, (tree, nodes) in zip(leaves, cuts):
                rows[f"Ward, {k} leaves"] = row_of(f"Ward, {k} leaves", y_test, tree, nodes,
                                                   tree.node_to_label[nodes], s, levels)
        emit()
        emit(format_table(rows))
        emit(f"(test set; DP on apply, DP leaf and LP/ACC/NMI on predict; HF = hierarchical F-score on the "
             f"{'7/16/20-class hierarchy' if levels is not None else '-'}; NLL = -mean IS log p(x), {nll} samples; "
             f"used = leaves predicted for >= {USED_SHARE:.0%} of the test samples; fit s = CPU s, 1 thread; "
             "'initial' = the same run's tree after pre-training + k-means initialisation; the baselines' fit s "
             "is their clustering of the test set (VAE rows: + the VAE's training)")
        emit(verdict(dataset, rows, args.depths, args.max_leaves))
        for tag, spread in spreads.items():
            emit(f"  {tag} E[eta|x] spread (max over levels of the std over test samples): {spread:.3f}")
        emit(f"wall so far {time.perf_counter() - wall:.0f} s")
    if args.save:
        with open(args.save, "w") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
