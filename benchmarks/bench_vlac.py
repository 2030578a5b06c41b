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
"""

import argparse
import time

from sklearn.metrics import normalized_mutual_info_score

from sk_hierclust.datasets import load_dataset
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity
from sk_hierclust.models.vlac import VLAC

MODELS = {"VLAC (1,1,50,1)": (1, 1, 50, 1), "VLAC (1,5,50,1)": (1, 5, 50, 1), "DGM (50,)": (50,)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"], choices=["mnist", "fashion_mnist"])
    parser.add_argument("--data-home", default="../shared/data")
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--latent-dims", type=int, default=8)
    parser.add_argument("--discrete-estimator", default="gumbel", choices=["gumbel", "enumerate"])
    parser.add_argument("--encoder", default="mlp", choices=["mlp", "conv"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    layer_rows, tree_rows = [], []
    for dataset in args.datasets:
        X_train, _, X_test, y_test = load_dataset(dataset, data_home=args.data_home)
        X_train = X_train[:args.n_train]
        for name, n_clusters in MODELS.items():
            model = VLAC(n_clusters=n_clusters, latent_dims=args.latent_dims, n_epochs=args.epochs,
                         discrete_estimator=args.discrete_estimator, encoder=args.encoder, input_shape=(1, 28, 28),
                         batch_size=args.batch_size, device=args.device, random_state=args.seed)
            print(f"{dataset}: fitting {name} on {X_train.shape[0]} images ...", flush=True)
            model.fit(X_train)
            start = time.perf_counter()
            layers = model.predict_layers(X_test)
            nodes = model.apply(X_test)
            predict_s = time.perf_counter() - start
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
