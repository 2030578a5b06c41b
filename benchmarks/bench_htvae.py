r"""HTVAE benchmark on MNIST / Fashion-MNIST: stacked SOMs vs one SOM vs recursive k-means / GMM.

For each dataset, trains on the (first ``--n-train``) training images and evaluates on all
test images:

- ``HTVAE``: three maps, ``(8, 8), (4, 4), (2, 2)`` (64 finest codes);
- ``SOM-VAE (M=1)``: the same model with the single map ``(8, 8)``;
- ``VAE+HKM`` / ``VAE+HGMM``: recursive k-means / Gaussian mixtures (branching 4, depth 3,
  so 64 leaves as the HTVAE's finest map) on HTVAE's embeddings ``transform(X) = mu_0`` (the
  VAE is HTVAE's encoder, so the baselines differ from HTVAE only in the clustering);
- ``HTVAE + must-link``: HTVAE trained with must-link pairs drawn from 1% of the same-class
  pairs of the training set.

Columns: leaf purity (LP), NMI and cluster accuracy (ACC, Hungarian matching; with 64 leaves
the samples of unmatched leaves count as errors) of the finest clusters, dendrogram purity
(DP) of the tree, and for Fashion-MNIST the tree distance error ``D_tree`` (paper eq. 15)
against :data:`FASHION_MNIST_HIERARCHY` (lower is better).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_htvae.py --datasets mnist fashion_mnist \\
        --n-train 10000 --epochs 12

``--protocol paper`` (issue 14) trains HTVAE only, with the paper's setup: all 60,000
training images minus a validation set of 600 drawn with each seed (``min(600, n // 10)``
of ``n`` images when ``--n-train`` limits them), 20 epochs, lr 5e-4, batch 32, the
``encoder="conv_pool"`` architecture (``input_shape=(1, 28, 28)``), one fit per seed of
``--seeds``; it prints, for each fit as it ends, the wall seconds per epoch (mean of
``history_``'s ``dur``), the fit's wall and CPU seconds (``time.process_time``), the
validation ELBO term (``score``, mean per sample) and the test-set columns, then their mean
and standard deviation over the seeds, with VAE+HKM and VAE+RGMM on each HTVAE's embeddings
and Ward linkage on the raw test images cut to as many leaves as the finest map has codes
(``--must-link also|only``: HTVAE with must-link pairs too, or alone; ``--somvae``: SOM-VAE)::

    OMP_NUM_THREADS=1 python benchmarks/bench_htvae.py --protocol paper --seeds 0 1 2

Paper anchors: MNIST LP 0.95, NMI 0.54; Fashion LP 0.81, NMI 0.48, D_tree 3.49.
Target (issue 5): HTVAE >= SOM-VAE (M=1) and VAE+HKM on LP and NMI.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from sk_hierclust import HTVAE, ClusterTree
from sk_hierclust.datasets import FASHION_MNIST_CLASS_NODE, FASHION_MNIST_HIERARCHY, load_dataset
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity, tree_distance_error

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _baselines import ward_tree  # noqa: E402


class RecursiveClustering:
    """Divisive hierarchy: recursive k-means or Gaussian mixtures.

    ``make(n)`` (a KMeans or GaussianMixture of ``n`` components) splits every node of at
    least ``min_size`` training samples into ``branching`` children, ``depth`` times. After
    :meth:`fit`, ``tree_`` is a :class:`ClusterTree` (nodes numbered breadth-first) and
    :meth:`apply` routes samples down the fitted models to a leaf.
    """

    def __init__(self, make, branching=4, depth=3, min_size=20):
        self.make, self.branching, self.depth, self.min_size = make, branching, depth, min_size

    def fit(self, Z):
        """Grow the tree on the embeddings ``Z`` (n_samples, n_dims); returns self."""
        self.parent_, self.models_, self.children_ = [-1], {}, {}
        frontier = [(0, np.arange(len(Z)))]
        for _ in range(self.depth):
            next_frontier = []
            for node, idx in frontier:
                if len(idx) < max(self.min_size, self.branching):
                    continue
                model = self.make(self.branching).fit(Z[idx])
                labels = model.predict(Z[idx])
                self.models_[node], self.children_[node] = model, []
                for k in range(self.branching):
                    self.children_[node].append(len(self.parent_))
                    self.parent_.append(node)
                    next_frontier.append((self.children_[node][-1], idx[labels == k]))
            frontier = next_frontier
        self.tree_ = ClusterTree.from_sample_nodes(self.parent_, self.apply(Z))
        return self

    def apply(self, Z):
        """Leaf node of ``tree_`` of each row of ``Z``, routed down the fitted models."""
        nodes = np.zeros(len(Z), dtype=int)
        for _ in range(self.depth):
            for node, model in self.models_.items():
                idx = np.flatnonzero(nodes == node)
                if idx.size:
                    nodes[idx] = np.asarray(self.children_[node])[model.predict(Z[idx])]
        return nodes


def must_link_pairs(y, fraction, seed):
    """Pairs drawn uniformly (with replacement) from ``fraction`` of the same-class pairs of ``y``."""
    rng = np.random.RandomState(seed)
    pairs = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n = int(round(fraction * len(members) * (len(members) - 1) / 2))
        a, b = rng.choice(members, n), rng.choice(members, n)
        pairs.append(np.stack([a[a != b], b[a != b]], 1))
    return np.concatenate(pairs)


def scores(y, tree, nodes, labels, fashion):
    row = {"LP": leaf_purity(y, labels), "NMI": normalized_mutual_info_score(y, labels),
           "ACC": cluster_accuracy(y, labels), "DP": dendrogram_purity(y, tree, nodes)}
    row["D_tree"] = (tree_distance_error(tree, nodes, FASHION_MNIST_HIERARCHY, FASHION_MNIST_CLASS_NODE[y])
                     if fashion else np.nan)
    return row


def _format(row):
    """``"LP 0.864, NMI 0.580, ..."``: one printed row of :func:`scores` columns."""
    return ", ".join(f"{k} {v:.3f}" for k, v in row.items())


PAPER = dict(n_epochs=20, lr=5e-4, batch_size=32, n_val=600, map_shapes=((8, 8), (4, 4), (2, 2)))


def run_paper(args):
    """``--protocol paper``: HTVAE with ``encoder="conv_pool"``, one fit per seed, validation held out.

    Each seed's fit also gives the rows ``VAE+HKM`` and ``VAE+RGMM`` (recursive k-means and
    Gaussian mixtures, branching 4, depth 3, on that HTVAE's embeddings ``mu_0`` of the
    training images); ``--must-link also`` adds a fit with must-link pairs (``only``: that
    fit alone), ``--somvae`` a SOM-VAE fit (the single map ``(8, 8)``, same protocol).
    """
    n_epochs = PAPER["n_epochs"] if args.epochs is None else args.epochs
    lr = PAPER["lr"] if args.lr is None else args.lr
    batch_size = PAPER["batch_size"] if args.batch_size is None else args.batch_size
    columns = ("s/epoch", "val score", "LP", "NMI", "ACC", "DP", "D_tree")
    for dataset in args.datasets:
        X_all, y_all, X_test, y_test = load_dataset(dataset, data_home=args.data_home)
        X_all, y_all = X_all[:args.n_train], y_all[:args.n_train]
        n_val = min(PAPER["n_val"], len(X_all) // 10)
        fashion = dataset == "fashion_mnist"
        print(f"\n== {dataset} (paper protocol): {len(X_all) - n_val} training, {n_val} validation, "
              f"{len(X_test)} test images; {n_epochs} epochs, lr {lr:g}, batch {batch_size}, encoder='conv_pool'",
              flush=True)
        results = {}

        def fit(name, seed, X, map_shapes=PAPER["map_shapes"], must_link=None, X_val=None):
            model = HTVAE(map_shapes=map_shapes, encoder="conv_pool", input_shape=(1, 28, 28), n_epochs=n_epochs,
                          lr=lr, batch_size=batch_size, device=args.device, random_state=seed)
            cpu = time.process_time()
            model.fit(X, must_link=must_link)
            cpu = time.process_time() - cpu
            per_epoch = float(np.mean([row["dur"] for row in model.history_]))
            val_score = model.score(X_val) if X_val is not None and len(X_val) else np.nan
            row = scores(y_test, model.tree_, model.apply(X_test), model.predict(X_test), fashion)
            results.setdefault(name, []).append([per_epoch, val_score, *row.values()])
            print(f"  seed {seed}, {name}: {per_epoch:.1f} s per epoch ({model.fit_time_:.0f} s fit, {cpu:.0f} s CPU), "
                  + _format(dict(zip(columns[1:], results[name][-1][1:]))), flush=True)
            return model

        for seed in args.seeds:
            order = np.random.RandomState(seed).permutation(len(X_all))
            val, train = order[:n_val], np.sort(order[n_val:])
            if args.must_link != "only":
                model = fit("HTVAE", seed, X_all[train], X_val=X_all[val])
                Z_train, Z_test = model.transform(X_all[train]), model.transform(X_test)
                for name, make in (("VAE+HKM", lambda k: KMeans(k, n_init=3, random_state=seed)),
                                   ("VAE+RGMM", lambda k: GaussianMixture(k, covariance_type="diag",
                                                                          random_state=seed))):
                    rec = RecursiveClustering(make).fit(Z_train)
                    nodes = rec.apply(Z_test)
                    row = scores(y_test, rec.tree_, nodes, rec.tree_.node_to_label[nodes], fashion)
                    results.setdefault(name, []).append([np.nan, np.nan, *row.values()])
                    print(f"  seed {seed}, {name}: " + _format(row), flush=True)
            if args.somvae:
                fit("SOM-VAE (8x8)", seed, X_all[train], map_shapes=((8, 8),), X_val=X_all[val])
            if args.must_link != "off":
                pairs = must_link_pairs(y_all[train], args.must_link_fraction, seed)
                print(f"  must-link: {len(pairs)} pairs ({args.must_link_fraction:.0%} of the same-class pairs)",
                      flush=True)
                fit("HTVAE + must-link", seed, X_all[train], must_link=pairs, X_val=X_all[val])
        n_codes = int(np.prod(PAPER["map_shapes"][0]))
        tree, nodes = ward_tree(X_test, n_codes)
        row = scores(y_test, tree, nodes, tree.node_to_label[nodes], fashion)
        results[f"Ward ({n_codes}, raw)"] = [[np.nan, np.nan, *row.values()]]
        print(f"  Ward on the raw test images, {n_codes} leaves: " + _format(row), flush=True)
        print(f"\n{dataset} (test set; val score on the held-out validation images; VAE+HKM / VAE+RGMM on "
              f"HTVAE's embeddings, Ward on the raw images), {len(args.seeds)} seed(s): mean (std)")
        print(f"{'':20s}" + "".join(f"{k:>18s}" for k in columns))
        for name, rows in results.items():
            rows = np.asarray(rows)
            print(f"{name:20s}" + "".join(f"{f'{m:.3f} ({s:.3f})' if np.isfinite(m) else '-':>18s}"
                                          for m, s in zip(rows.mean(0), rows.std(0))))
        print("(D_tree only for fashion_mnist; lower is better)", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"],
                        choices=["mnist", "fashion_mnist"])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--protocol", choices=["default", "paper"], default="default",
                        help="'paper': HTVAE alone with the paper's setup (see the module docstring)")
    parser.add_argument("--epochs", type=int, default=None, help="default 12 (20 for --protocol paper)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32")
    parser.add_argument("--lr", type=float, default=None, help="default 5e-4")
    parser.add_argument("--must-link-fraction", type=float, default=0.01)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="--protocol paper: one fit per seed")
    parser.add_argument("--must-link", choices=["off", "also", "only"], default="off",
                        help="--protocol paper: also (or only) fit HTVAE with must-link pairs")
    parser.add_argument("--somvae", action="store_true", help="--protocol paper: also fit SOM-VAE (8x8)")
    args = parser.parse_args(argv)
    if args.protocol == "paper":
        return run_paper(args)
    args.epochs = 12 if args.epochs is None else args.epochs
    args.batch_size = 32 if args.batch_size is None else args.batch_size

    common = dict(n_epochs=args.epochs, batch_size=args.batch_size, device=args.device, random_state=args.seed)
    if args.lr is not None:
        common["lr"] = args.lr
    for dataset in args.datasets:
        X_train, y_train, X_test, y_test = load_dataset(dataset, data_home=args.data_home)
        X_train, y_train = X_train[:args.n_train], y_train[:args.n_train]
        fashion = dataset == "fashion_mnist"
        print(f"\n== {dataset}: {len(X_train)} training, {len(X_test)} test images; {args.epochs} epochs, "
              f"batch {args.batch_size}", flush=True)
        rows, times = {}, {}

        def run_htvae(name, must_link=None, **params):
            start = time.perf_counter()
            model = HTVAE(**params, **common).fit(X_train, must_link=must_link)
            times[name] = time.perf_counter() - start
            nodes = model.apply(X_test)
            rows[name] = scores(y_test, model.tree_, nodes, model.predict(X_test), fashion)
            print(f"  {name}: {times[name]:.0f} s, {model.tree_.label_to_node.size} non-empty finest codes",
                  flush=True)
            return model

        htvae = run_htvae("HTVAE (8x8, 4x4, 2x2)", map_shapes=((8, 8), (4, 4), (2, 2)))
        run_htvae("SOM-VAE (M=1, 8x8)", map_shapes=((8, 8),))
        Z_train, Z_test = htvae.transform(X_train), htvae.transform(X_test)
        for name, make in (("VAE+HKM (4, 4, 4)", lambda k: KMeans(k, n_init=3, random_state=args.seed)),
                           ("VAE+HGMM (4, 4, 4)", lambda k: GaussianMixture(k, covariance_type="diag",
                                                                            random_state=args.seed))):
            start = time.perf_counter()
            rec = RecursiveClustering(make).fit(Z_train)
            times[name] = time.perf_counter() - start
            nodes = rec.apply(Z_test)
            rows[name] = scores(y_test, rec.tree_, nodes, rec.tree_.node_to_label[nodes], fashion)
        pairs = must_link_pairs(y_train, args.must_link_fraction, args.seed)
        print(f"  must-link: {len(pairs)} pairs ({args.must_link_fraction:.0%} of the same-class pairs)", flush=True)
        run_htvae("HTVAE + must-link", must_link=pairs, map_shapes=((8, 8), (4, 4), (2, 2)))

        print(f"\n{dataset} (test set)")
        print(f"{'':26s}" + "".join(f"{k:>8s}" for k in ("LP", "NMI", "ACC", "DP", "D_tree", "fit s")))
        for name, row in rows.items():
            print(f"{name:26s}" + "".join(f"{v:8.3f}" for v in row.values()) + f"{times[name]:8.0f}")
        print("(D_tree only for fashion_mnist; lower is better)", flush=True)


if __name__ == "__main__":
    main()
