"""TreeVAE benchmark on MNIST / Fashion-MNIST: clustering quality, fit time and epoch cost.

Fits TreeVAE on the training images, evaluates on the test images and prints dendrogram
purity (DP), leaf purity (LP), cluster accuracy (ACC) and NMI, next to the Ward baseline
(scipy, raw pixels) on the same test set, and the seconds per full-tree training epoch.

Usage::

    python benchmarks/bench_treevae.py --dataset mnist --data-home ../shared/data

Targets on a 2-core CPU (issue 2): test DP >= 0.80, LP >= 0.90, ACC >= 0.80, NMI >= 0.80;
fit <= 30 min; one full-tree epoch over 60,000 images at 10 leaves <= 15 s.
"""

import argparse
import copy
import time

import joblib
import numpy as np
from scipy.cluster.hierarchy import linkage
from sklearn.metrics import normalized_mutual_info_score

from sk_hierclust import ClusterTree, TreeVAE
from sk_hierclust.datasets import load_dataset
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity


def scores(y, tree, nodes, labels):
    return {"DP": dendrogram_purity(y, tree, nodes), "LP": leaf_purity(y, labels),
            "ACC": cluster_accuracy(y, labels), "NMI": normalized_mutual_info_score(y, labels)}


def ward_rows(X, y):
    """Ward on raw pixels: DP/LP cut to 20 leaves, ACC/NMI cut to 10 (the TreeVAE paper's "Agg" row)."""
    Z = linkage(X.astype(np.float64), "ward")
    rows = {}
    for n_leaves in (20, 10):
        tree, nodes = ClusterTree.from_linkage(Z, n_leaves=n_leaves)
        rows[f"Ward, {n_leaves} leaves"] = scores(y, tree, nodes, tree.node_to_label[nodes])
    return rows


def epoch_seconds(model, X, n_leaves_list):
    """Seconds of one full-tree training epoch over X, routers as trained, at several leaf counts.

    A copy of the fitted model is cut back to each leaf count (the deepest sub-trees that fit
    the excess are pruned) or grown with untrained children, then trained for one epoch.
    """
    out = {}
    for n_leaves in n_leaves_list:
        est = copy.deepcopy(model)
        module = est.net_.module_
        while len(module.leaf_slots) > n_leaves:
            excess = len(module.leaf_slots) - n_leaves
            n_under = {v: sum(v in module.path(leaf) for leaf in module.leaf_slots)
                       for v in range(1, len(module.parent)) if module.alive[v]}
            node = max((v for v, n in n_under.items()
                        if n <= excess and len(module.live_children(module.parent[v])) == 2), key=module.depth)
            module.prune(node)
        while len(module.leaf_slots) < n_leaves:
            module.start_split(min(module.leaf_slots, key=module.depth))
            module.commit_split()
        start = time.perf_counter()
        est._run_phase(est.net_, X, "timing", 1)
        out[n_leaves] = time.perf_counter() - start
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--max-leaves", type=int, default=10)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--epochs", type=int, nargs=3, default=(30, 15, 30), metavar=("INITIAL", "GROW", "FINETUNE"))
    parser.add_argument("--encoder", default="mlp", choices=["mlp", "conv"])
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--save", default=None, metavar="PATH", help="joblib-dump the fitted model there")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_home=args.data_home)
    X_train, y_train = X_train[:args.n_train], y_train[:args.n_train]
    model = TreeVAE(max_leaves=args.max_leaves, max_depth=args.max_depth, n_epochs_initial=args.epochs[0],
                    n_epochs_grow=args.epochs[1], n_epochs=args.epochs[2], encoder=args.encoder,
                    input_shape=(1, 28, 28), device=args.device, verbose=args.verbose, random_state=args.seed)
    print(f"fitting {model!r} on {len(X_train)} {args.dataset} images ...", flush=True)
    model.fit(X_train)
    if args.save:
        joblib.dump(model, args.save)
    print(f"fit time: {model.fit_time_:.0f} s; {len(model.tree_.label_to_node)} non-empty leaves, "
          f"tree depth {model.tree_.max_depth}")

    rows = {}
    for split, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        rows[f"TreeVAE {split}"] = scores(y, model.tree_, model.apply(X), model.predict(X))
    rows.update(ward_rows(X_test, y_test))
    print(f"\n{'':24s}" + "".join(f"{k:>8s}" for k in ("DP", "LP", "ACC", "NMI")))
    for name, row in rows.items():
        print(f"{name:24s}" + "".join(f"{v:8.3f}" for v in row.values()))
    print(f"test ELBO per image: {model.score(X_test):.1f} nats")

    phases = {}
    for row in model.history_:
        phases.setdefault(row["phase"].split(":")[0], []).append(row["dur"])
    print("\nseconds per epoch, by phase: " + ", ".join(f"{k} {np.mean(v):.1f} (x{len(v)})" for k, v in phases.items()))
    timing = epoch_seconds(model, X_train, (2, 5, 10))
    print("seconds per full-tree epoch over the training set (trained routers): "
          + ", ".join(f"{k} leaves {v:.1f}" for k, v in timing.items()))


if __name__ == "__main__":
    main()
