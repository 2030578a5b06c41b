"""Scale benchmark: data larger than memory, inference throughput and the metrics at 10^7 samples (issue 15).

Three parts, each printing its figures (CPU seconds of this process, ``time.process_time``,
one torch thread; peak resident set size of the part):

``memmap``
    Builds a uint8 memmap of ``--memmap-rows`` rows x 784 in a temporary folder by tiling the
    MNIST training images, binarised (pixel > 127) with 2% of the bits flipped at random,
    fits a small TreeVAE (MLP) on it and predicts it. The values are 0/1, so the model gets
    the Bernoulli likelihood with the uint8 values used as they are. Target: peak RSS <=
    1.5 GiB at 2,000,000 rows (a float32 copy of X alone would be 5.8 GiB).
``predict``
    Fits TreeVAE (MLP) on scikit-learn's digits (64 features, scaled to [0, 1]) and predicts
    ``--predict-rows`` rows (the digits tiled with noise, a float32 memmap): rows/s and peak RSS.
``metrics``
    :func:`~sk_hierclust.metrics.dendrogram_purity` and :func:`~sk_hierclust.metrics.leaf_purity`
    of ``--metric-samples`` samples on a random binary tree of ``--metric-leaves`` leaves with
    ``--metric-classes`` classes: seconds and peak RSS.

Peak RSS is ``VmHWM`` of ``/proc/self/status`` after resetting it (``/proc/self/clear_refs``)
at the start of each measured step, so each figure is that step's own peak; elsewhere
``ru_maxrss`` (the peak of the whole process) is printed instead.

Usage::

    python benchmarks/bench_scale.py --data-home ../shared/data      # full sizes (about 40 min)
    python benchmarks/bench_scale.py --memmap-rows 60000 --predict-rows 100000 --metric-samples 1000000
        --metric-leaves 1000                                         # a quick run (one line)
"""

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from sk_hierclust import ClusterTree, TreeVAE
from sk_hierclust.datasets import load_dataset
from sk_hierclust.metrics import dendrogram_purity, leaf_purity

GiB = 2**30


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss():
    """Reset the kernel's peak-RSS counter of this process (Linux); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_gib():
    """Peak resident set size in GiB: ``VmHWM`` (since the last reset), else ``ru_maxrss`` (whole process)."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (GiB if sys.platform == "darwin" else 2**20)


class Measure:
    """``with Measure("fit") as m: ...``: CPU seconds and peak RSS of the block; ``m.seconds``, ``m.peak``."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        reset_peak_rss()
        self.start = time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.process_time() - self.start
        self.peak = peak_rss_gib()
        anon, file = _status_kib("RssAnon"), _status_kib("RssFile")
        extra = (f", RSS now {anon / 2**20:.2f} GiB anonymous + {file / 2**20:.2f} GiB file pages"
                 if anon is not None and file is not None else "")
        print(f"  {self.what}: {self.seconds:.1f} s CPU, peak RSS {self.peak:.2f} GiB{extra}", flush=True)


def _model_gib(model):
    return sum(p.numel() * p.element_size() for p in model.net_.module_.parameters()) / GiB


def build_mnist_memmap(path, n_rows, data_home, seed=0):
    """A uint8 memmap (n_rows, 784) of MNIST training images tiled, binarised, 2% of the bits flipped; its labels."""
    X_train, y_train, _, _ = load_dataset("mnist", data_home=data_home)
    binary = (X_train > 0.5).astype(np.uint8)
    del X_train
    rng = np.random.RandomState(seed)
    out = np.memmap(path, dtype=np.uint8, mode="w+", shape=(n_rows, binary.shape[1]))
    labels = np.empty(n_rows, dtype=np.int64)
    for start in range(0, n_rows, binary.shape[0]):
        stop = min(n_rows, start + binary.shape[0])
        tile = binary[:stop - start]
        out[start:stop] = tile ^ (rng.random_sample(tile.shape) < 0.02)
        labels[start:stop] = y_train[:stop - start]
    out.flush()
    del out
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(n_rows, binary.shape[1])), labels


def bench_memmap(args):
    print(f"[memmap] TreeVAE on a {args.memmap_rows:,} x 784 uint8 memmap "
          f"({args.memmap_rows * 784 / GiB:.2f} GiB on disk; {args.memmap_rows * 784 * 4 / GiB:.2f} GiB as float32)")
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        with Measure("build the memmap"):
            X, y = build_mnist_memmap(os.path.join(tmp, "mnist_tiled.u8"), args.memmap_rows, args.data_home)
        model = TreeVAE(max_leaves=args.memmap_leaves, max_depth=3, latent_dim=8, hidden_dims=(128, 64),
                        n_epochs_initial=1, n_epochs_grow=1, n_epochs=1, batch_size=args.batch_size,
                        lr=2e-3, random_state=0)
        with Measure("fit") as fit:
            model.fit(X)
        with Measure("predict") as pred:
            labels = model.predict(X)
        print(f"  model parameters {_model_gib(model) * 1024:.1f} MiB, {len(np.unique(labels))} clusters, "
              f"leaf purity {leaf_purity(y, labels):.3f}, likelihood {model.likelihood_!r}")
        print(f"  fit {args.memmap_rows / fit.seconds:,.0f} rows/s ({len(model.history_)} epochs over phases), "
              f"predict {args.memmap_rows / pred.seconds:,.0f} rows/s; peak RSS fit {fit.peak:.2f} GiB, "
              f"predict {pred.peak:.2f} GiB (target <= 1.5 GiB)")
        del X


def bench_predict(args):
    n_rows = args.predict_rows
    print(f"[predict] TreeVAE (MLP) fitted on digits, predicting {n_rows:,} x 64 rows (a float32 memmap, "
          f"{n_rows * 64 * 4 / GiB:.2f} GiB)")
    digits = load_digits().data.astype(np.float32) / 16
    model = TreeVAE(max_leaves=10, random_state=0)
    with Measure("fit on digits (1797 x 64)"):
        model.fit(digits)
    rng = np.random.RandomState(0)
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        path = os.path.join(tmp, "digits_tiled.f32")
        out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n_rows, 64))
        with Measure("build the memmap"):
            step = 100 * digits.shape[0]
            for start in range(0, n_rows, step):
                stop = min(n_rows, start + step)
                rows = digits[rng.randint(0, digits.shape[0], stop - start)]
                out[start:stop] = np.clip(rows + rng.normal(0, 0.05, rows.shape).astype(np.float32), 0, 1)
            out.flush()
        del out
        X = np.memmap(path, dtype=np.float32, mode="r", shape=(n_rows, 64))
        with Measure("predict") as pred:
            labels = model.predict(X)
        print(f"  predict {n_rows / pred.seconds:,.0f} rows/s, peak RSS {pred.peak:.2f} GiB "
              f"({len(np.unique(labels))} clusters)")
        del X


def random_tree(n_leaves, rng):
    """A random binary tree: split a uniformly chosen leaf until there are ``n_leaves``."""
    parent = [-1]
    leaves = [0]
    while len(leaves) < n_leaves:
        i = rng.randint(len(leaves))
        leaf = leaves[i]
        first = len(parent)
        parent += [leaf, leaf]
        leaves[i] = first
        leaves.append(first + 1)
    return ClusterTree(np.array(parent)), np.array(leaves)


def bench_metrics(args):
    n, n_leaves, n_classes = args.metric_samples, args.metric_leaves, args.metric_classes
    print(f"[metrics] {n:,} samples x {n_leaves:,} leaves x {n_classes} classes")
    rng = np.random.RandomState(0)
    tree, leaves = random_tree(n_leaves, rng)
    leaf_class = rng.randint(0, n_classes, n_leaves)
    which = rng.randint(0, n_leaves, n)
    nodes = leaves[which]
    y = np.where(rng.random_sample(n) < 0.7, leaf_class[which], rng.randint(0, n_classes, n))
    labels = tree.node_to_label[nodes]
    del which
    with Measure("dendrogram_purity") as dp:
        score = dendrogram_purity(y, tree, nodes)
    print(f"  dendrogram purity {score:.4f} in {dp.seconds:.2f} s")
    with Measure("leaf_purity") as lp:
        score = leaf_purity(y, labels)
    print(f"  leaf purity {score:.4f} in {lp.seconds:.2f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["memmap", "predict", "metrics"],
                        choices=["memmap", "predict", "metrics"])
    parser.add_argument("--data-home", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--tmp-dir", default=None, help="where the memmaps are written (default: the system's)")
    parser.add_argument("--memmap-rows", type=int, default=2_000_000)
    parser.add_argument("--memmap-leaves", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--predict-rows", type=int, default=10_000_000)
    parser.add_argument("--metric-samples", type=int, default=10_000_000)
    parser.add_argument("--metric-leaves", type=int, default=10_000)
    parser.add_argument("--metric-classes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); RSS at start "
          f"{(_status_kib('VmRSS') or 0) / 2**20:.2f} GiB")
    for part in args.parts:
        {"memmap": bench_memmap, "predict": bench_predict, "metrics": bench_metrics}[part](args)


if __name__ == "__main__":
    main()
