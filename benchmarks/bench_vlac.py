"""VLAC benchmark on Fashion-MNIST / MNIST: ladder models against the single-layer Gaussian-mixture DGM.

The comparison of Willetts et al. (on SVHN: cluster accuracy 0.351 for K = (1, 1, 50, 1), 0.378
for K = (1, 5, 50, 1), 0.252 for the single-layer model with K = 50). Each model is fitted on
the same training images and evaluated on the test images: for every layer with K > 1, the
cluster accuracy with a one-to-one Hungarian matching (ACC), the majority-vote accuracy (leaf
purity, LP: each cluster counts as its most frequent class; the "unsupervised accuracy" of the
Gaussian-mixture VAE literature) and NMI; for ``tree_``, dendrogram purity (DP, nodes from
``apply``) and leaf purity of ``predict``. K lists the layers top first (see ``VLAC``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_vlac.py --datasets fashion_mnist mnist --n-train 10000 --epochs 50

Target (issue 4): the ladder models beat the single-layer model on accuracy.

``--datasets colored_mnist`` (issue 13): MNIST painted by
:func:`sk_hierclust.datasets.make_colored_digits` (3 stroke colours, 2 background colours, drawn
independently of the digit; seed 0 for the training images, 1 for the test images), fitted with
the conv encoder on ``input_shape=(3, 28, 28)`` by default. The models are the ladders
``(6, 10)`` and ``(1, 5, 50, 1)`` and the single-layer ``(K,)`` (``--k``, default 50). A
ladder that disentangles should put colour in one layer and digit in another: for every layer
with K > 1 and every attribute (digit, foreground, background), ACC and NMI, then the best layer
per attribute; for ``tree_``, DP and LP against the digit and the hierarchical F-score (HF)
against the two-level hierarchy (foreground colour, digit within colour). Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_vlac.py --datasets colored_mnist --n-train 10000 --epochs 50
"""

import argparse
import time

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from sk_hierclust.datasets import load_dataset, make_colored_digits
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, hierarchical_f_score, leaf_purity
from sk_hierclust.models.vlac import VLAC

MODELS = {"VLAC (1,1,50,1)": (1, 1, 50, 1), "VLAC (1,5,50,1)": (1, 5, 50, 1), "DGM (50,)": (50,)}
#: Attributes of the colored_mnist images, in the order of the per-layer table.
ATTRIBUTES = ("digit", "foreground", "background")
#: Seeds of the colour draws of the colored_mnist training and test images.
COLOR_SEEDS = {"train": 0, "test": 1}


def colored_models(k):
    """The colored_mnist models: two ladders and the single-layer model with ``k`` components."""
    return {"VLAC (6,10)": (6, 10), "VLAC (1,5,50,1)": (1, 5, 50, 1), f"DGM ({k},)": (k,)}


def load_colored_mnist(data_home, n_train=None, n_test=None):
    """MNIST train/test painted by ``make_colored_digits`` (fixed seeds); attributes as dicts of arrays."""
    X_train, y_train, X_test, y_test = load_dataset("mnist", data_home=data_home)
    X_train, y_train, X_test, y_test = X_train[:n_train], y_train[:n_train], X_test[:n_test], y_test[:n_test]
    X_train, att_train = make_colored_digits(X_train, y_train, random_state=COLOR_SEEDS["train"])
    X_test, att_test = make_colored_digits(X_test, y_test, random_state=COLOR_SEEDS["test"])
    return (X_train, {a: att_train[a] for a in ATTRIBUTES}, X_test, {a: att_test[a] for a in ATTRIBUTES})


def layer_scores(layers, n_clusters, attributes):
    """ACC (Hungarian) and NMI of every layer with K > 1 against every attribute.

    ``layers`` is ``model.predict_layers(X)`` (shape (n, n_layers), component per layer, top
    first), ``attributes`` a dict name -> labels of shape (n,). Returns a list of
    ``(layer, k, {name: (acc, nmi)})``.
    """
    rows = []
    for layer, k in enumerate(n_clusters):
        if k > 1:
            labels = layers[:, layer]
            rows.append((layer, k, {name: (cluster_accuracy(y, labels), normalized_mutual_info_score(y, labels))
                                    for name, y in attributes.items()}))
    return rows


def best_layers(rows):
    """For each attribute, the layer of ``layer_scores`` rows with the highest NMI: name -> (layer, k, acc, nmi)."""
    best = {}
    for layer, k, scores in rows:
        for name, (acc, nmi) in scores.items():
            if name not in best or nmi > best[name][3]:
                best[name] = (layer, k, acc, nmi)
    return best


def print_attribute_table(results, names):
    """Per-layer table of ``results`` (list of (dataset, model, rows)), then the best layer per attribute."""
    header = f"{'dataset':15s}{'model':18s}{'layer':>6s}{'K':>4s}"
    header += "".join(f"{name[:6] + ' ACC':>12s}{name[:6] + ' NMI':>12s}" for name in names)
    print(header)
    for dataset, model, rows in results:
        for layer, k, scores in rows:
            line = f"{dataset:15s}{model:18s}{layer:6d}{k:4d}"
            print(line + "".join(f"{scores[name][0]:12.3f}{scores[name][1]:12.3f}" for name in names))
    print("\nbest layer per attribute (highest NMI)")
    for dataset, model, rows in results:
        for name, (layer, k, acc, nmi) in best_layers(rows).items():
            print(f"{dataset:15s}{model:18s}{name:11s}: layer {layer} (K={k}), ACC {acc:.3f}, NMI {nmi:.3f}")


def fit_and_predict(args, dataset, name, n_clusters, encoder, input_shape, X_train, X_test):
    """Fit one VLAC layout; return it, its test layers and nodes, and the prediction seconds."""
    model = VLAC(n_clusters=n_clusters, latent_dims=args.latent_dims, n_epochs=args.epochs,
                 discrete_estimator=args.discrete_estimator, encoder=args.encoder or encoder,
                 input_shape=input_shape, batch_size=args.batch_size, device=args.device, random_state=args.seed)
    print(f"{dataset}: fitting {name} on {X_train.shape[0]} images ...", flush=True)
    model.fit(X_train)
    start = time.perf_counter()
    layers, nodes = model.predict_layers(X_test), model.apply(X_test)
    return model, layers, nodes, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", "--dataset", nargs="+", default=["fashion_mnist", "mnist"],
                        choices=["mnist", "fashion_mnist", "colored_mnist"])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--n-test", type=int, default=None, help="evaluate on the first N test images only")
    parser.add_argument("--k", type=int, default=50, help="components of the single-layer model on colored_mnist")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--latent-dims", type=int, default=8)
    parser.add_argument("--discrete-estimator", default="gumbel", choices=["gumbel", "enumerate"])
    parser.add_argument("--encoder", default=None, choices=["mlp", "conv"],
                        help="default: mlp for mnist / fashion_mnist, conv for colored_mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    layer_rows, tree_rows, colored_rows, colored_tree_rows = [], [], [], []
    for dataset in args.datasets:
        if dataset == "colored_mnist":
            X_train, _, X_test, attributes = load_colored_mnist(args.data_home, args.n_train, args.n_test)
            fg, digit = attributes["foreground"], attributes["digit"]
            # two nested levels: colour, then (colour, digit); a digit alone is not nested in a colour
            levels = np.stack([fg, fg * (digit.max() + 1) + digit], axis=1)
            for name, n_clusters in colored_models(args.k).items():
                model, layers, nodes, predict_s = fit_and_predict(args, dataset, name, n_clusters, "conv", (3, 28, 28),
                                                                  X_train, X_test)
                colored_rows.append((dataset, name, layer_scores(layers, n_clusters, attributes)))
                tree = model.tree_
                labels = tree.node_to_label[nodes]
                colored_tree_rows.append((dataset, name, len(tree.label_to_node), tree.max_depth,
                                          dendrogram_purity(digit, tree, nodes), leaf_purity(digit, labels),
                                          hierarchical_f_score(levels, tree, nodes), model.fit_time_, predict_s))
            continue
        X_train, _, X_test, y_test = load_dataset(dataset, data_home=args.data_home)
        X_train, X_test, y_test = X_train[:args.n_train], X_test[:args.n_test], y_test[:args.n_test]
        for name, n_clusters in MODELS.items():
            model, layers, nodes, predict_s = fit_and_predict(args, dataset, name, n_clusters, "mlp", (1, 28, 28),
                                                              X_train, X_test)
            for layer, k in enumerate(n_clusters):
                if k > 1:
                    labels = layers[:, layer]
                    layer_rows.append((dataset, name, layer, k, cluster_accuracy(y_test, labels),
                                       leaf_purity(y_test, labels), normalized_mutual_info_score(y_test, labels)))
            tree = model.tree_
            labels = tree.node_to_label[nodes]
            tree_rows.append((dataset, name, len(tree.label_to_node), tree.max_depth,
                              dendrogram_purity(y_test, tree, nodes), leaf_purity(y_test, labels),
                              model.fit_time_, predict_s))

    if colored_rows:
        print(f"\ncolored_mnist per layer and attribute, test set ({args.epochs} epochs, {args.discrete_estimator}, "
              f"seed {args.seed})")
        print_attribute_table(colored_rows, ATTRIBUTES)
        print("\ncolored_mnist tree_, test set (DP, LP: digit; HF: (foreground, digit))")
        print(f"{'dataset':15s}{'model':18s}{'leaves':>7s}{'depth':>6s}{'DP':>8s}{'LP':>8s}{'HF':>8s}"
              f"{'fit s':>8s}{'pred s':>8s}")
        for dataset, name, n_leaves, depth, dp, lp, hf, fit_s, predict_s in colored_tree_rows:
            print(f"{dataset:15s}{name:18s}{n_leaves:7d}{depth:6d}{dp:8.3f}{lp:8.3f}{hf:8.3f}{fit_s:8.0f}"
                  f"{predict_s:8.0f}")
    if not tree_rows:
        return
    print(f"\nper layer, test set ({args.epochs} epochs, {args.discrete_estimator}, seed {args.seed})")
    print(f"{'dataset':15s}{'model':18s}{'layer':>6s}{'K':>4s}{'ACC':>8s}{'LP':>8s}{'NMI':>8s}")
    for dataset, name, layer, k, acc, lp, nmi in layer_rows:
        print(f"{dataset:15s}{name:18s}{layer:6d}{k:4d}{acc:8.3f}{lp:8.3f}{nmi:8.3f}")
    print("\ntree_, test set")
    print(f"{'dataset':15s}{'model':18s}{'leaves':>7s}{'depth':>6s}{'DP':>8s}{'LP':>8s}{'fit s':>8s}{'pred s':>8s}")
    for dataset, name, n_leaves, depth, dp, lp, fit_s, predict_s in tree_rows:
        print(f"{dataset:15s}{name:18s}{n_leaves:7d}{depth:6d}{dp:8.3f}{lp:8.3f}{fit_s:8.0f}{predict_s:8.0f}")


if __name__ == "__main__":
    main()
