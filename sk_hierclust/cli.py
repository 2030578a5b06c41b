"""Command line interface: ``sk-hierclust fit ...`` (or ``python -m sk_hierclust``).

The ``fit`` subcommand trains one model on one data set, prints the
clustering scores, and saves a picture of the learned tree and the fitted
estimator.
"""

import argparse
import sys
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from . import metrics
from .datasets import DATASETS, load_dataset
from .models.hcrl import HCRL
from .models.htvae import HTVAE
from .models.treevae import TreeVAE
from .models.vlac import VLAC

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_ENCODER", "DEFAULT_EPOCHS", "EPOCH_PARAMS", "MODELS", "main"]

#: Models the command line can fit: name -> estimator class.
MODELS = {"treevae": TreeVAE, "hcrl": HCRL, "htvae": HTVAE, "vlac": VLAC}

#: The estimator parameters ``--epochs`` sets, in order, per model.
EPOCH_PARAMS = {
    "treevae": ("n_epochs", "n_epochs_grow", "n_epochs_finetune"),
    "hcrl": ("n_epochs_pretrain", "n_epochs"),
    "htvae": ("n_epochs",),
    "vlac": ("n_epochs",),
}

#: Default ``--epochs`` per model and data set: the digits runs take a few minutes at
#: most on 2 CPU cores, the others about their benchmark's (benchmarks/bench_*.py).
DEFAULT_EPOCHS = {
    "treevae": {"digits": (20, 10, 15), "mnist": (30, 15, 30), "fashion_mnist": (30, 15, 30),
                "20newsgroups": (30, 15, 30)},
    "hcrl": {"digits": (20, 30), "mnist": (10, 20), "fashion_mnist": (10, 20), "20newsgroups": (10, 20)},
    "htvae": {"digits": (20,), "mnist": (15,), "fashion_mnist": (15,), "20newsgroups": (15,)},
    "vlac": {"digits": (40,), "mnist": (30,), "fashion_mnist": (30,), "20newsgroups": (30,)},
}

#: Default ``--batch-size`` per data set (digits has only 1797 samples: small batches
#: give it enough optimisation steps).
DEFAULT_BATCH_SIZE = {"digits": 64, "mnist": 256, "fashion_mnist": 256, "20newsgroups": 256}

#: Default ``--encoder`` per data set (20 Newsgroups is TF-IDF text: no images).
DEFAULT_ENCODER = {"digits": "mlp", "mnist": "conv", "fashion_mnist": "conv", "20newsgroups": "mlp"}


def build_parser():
    """Build the argument parser.

    Returns
    -------
    parser : argparse.ArgumentParser
        Parser with one subcommand, ``fit``.
    """
    parser = argparse.ArgumentParser(
        prog="sk-hierclust",
        description="Deep hierarchical clustering as scikit-learn estimators.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fit = sub.add_parser(
        "fit",
        help="fit a model on a data set, print scores, save the tree",
        description=(
            "Fit a model on the training set, print dendrogram purity (DP), "
            "leaf purity (LP), cluster accuracy (ACC) and normalized mutual "
            "information (NMI) on the training (and test) set, and write "
            "OUT/tree.png and OUT/model.joblib."
        ),
    )
    fit.add_argument("--model", choices=sorted(MODELS), default="treevae",
                     help="model to fit (default: %(default)s)")
    fit.add_argument("--dataset", choices=DATASETS, default="digits",
                     help="data set (default: %(default)s)")
    fit.add_argument("--data-home", metavar="PATH", default=None,
                     help="folder holding the mnist/ and fashion_mnist/ "
                          "folders (default: $SK_HIERCLUST_DATA, else "
                          "../shared/data)")
    fit.add_argument("--n-samples", type=_positive_int, metavar="N", default=None,
                     help="use only the first N training samples")
    fit.add_argument("--max-leaves", type=int, metavar="N", default=None,
                     help="maximum number of leaves (default: the model's; not for vlac)")
    fit.add_argument("--max-depth", type=int, metavar="N", default=None,
                     help="maximum tree depth (default: the model's; not for vlac)")
    fit.add_argument("--epochs", type=int, nargs="+", default=None, metavar="N", action=_EpochsAction,
                     help="training epochs, one number per phase of the model (a missing number "
                          "repeats the last one given): " + "; ".join(
                              f"{m}: {', '.join(p)}" for m, p in EPOCH_PARAMS.items())
                          + " (default per model and data set: " + "; ".join(
                              f"{m} {d} {' '.join(map(str, e))}" for m, per in DEFAULT_EPOCHS.items()
                              for d, e in per.items()) + ")")
    fit.add_argument("--encoder", choices=("mlp", "conv"), default=None,
                     help="encoder/decoder architecture (default per data set: " + ", ".join(
                         f"{k} {v}" for k, v in DEFAULT_ENCODER.items()) + ")")
    fit.add_argument("--batch-size", type=_positive_int, metavar="N", default=None,
                     help="mini-batch size (default per data set: " + ", ".join(
                         f"{k} {v}" for k, v in DEFAULT_BATCH_SIZE.items()) + ")")
    fit.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="torch device (default: %(default)s)")
    fit.add_argument("--seed", type=int, default=0,
                     help="random seed (default: %(default)s)")
    fit.add_argument("-v", "--verbose", action="count", default=0,
                     help="print training progress (repeat for more)")
    fit.add_argument("--out", metavar="DIR", default="results",
                     help="output folder (default: %(default)s)")
    fit.set_defaults(func=fit_command)
    return parser


def _positive_int(text):
    """Argument type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class _EpochsAction(argparse.Action):
    """Check that ``--epochs`` values are non-negative."""

    def __call__(self, parser, namespace, values, option_string=None):
        if min(values) < 0:
            parser.error(f"{option_string} takes non-negative integers")
        setattr(namespace, self.dest, tuple(values))


def expand_epochs(model, epochs):
    """``--epochs`` of ``model``: one number per phase, the last one repeated.

    Parameters
    ----------
    model : str
        Key of :data:`MODELS`.
    epochs : tuple of int
        Between 1 and ``len(EPOCH_PARAMS[model])`` numbers (checked by :func:`main`).

    Returns
    -------
    dict of str to int
        Estimator parameter -> epochs.
    """
    names = EPOCH_PARAMS[model]
    return dict(zip(names, epochs + epochs[-1:] * (len(names) - len(epochs))))


def load_data(args):
    """Load the data set, keeping the first ``args.n_samples`` training rows.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (``dataset``, ``data_home``, ``n_samples``).

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarray or None
        As returned by :func:`sk_hierclust.datasets.load_dataset`; the test
        pair is None for data sets without a test set.
    """
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, args.data_home)
    if args.n_samples is not None:
        X_train, y_train = X_train[: args.n_samples], y_train[: args.n_samples]
    return X_train, y_train, X_test, y_test


def _size_options(args):
    """The ``--max-leaves`` / ``--max-depth`` values given, as estimator parameters."""
    sizes = {"max_leaves": args.max_leaves, "max_depth": args.max_depth}
    return {name: value for name, value in sizes.items() if value is not None}


def build_model(args, epochs, n_features):
    """Create the (unfitted) estimator from the command line options.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.
    epochs : dict of str to int
        Epoch parameters of the model (see :func:`expand_epochs`).
    n_features : int
        Number of input features; images are assumed square with one channel
        (64 -> 8x8, 784 -> 28x28) for the convolutional encoder.

    Returns
    -------
    model : estimator
        An instance of ``MODELS[args.model]``.
    """
    encoder = args.encoder or DEFAULT_ENCODER[args.dataset]
    input_shape = None
    if encoder == "conv":
        side = int(round(np.sqrt(n_features)))
        input_shape = (1, side, side)
    return MODELS[args.model](
        **_size_options(args),
        **epochs,
        encoder=encoder,
        input_shape=input_shape,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE[args.dataset],
        device=args.device,
        verbose=args.verbose,
        random_state=args.seed,
    )


def fit_model(model, X):
    """Fit ``model`` on ``X`` and return the wall-clock time in seconds."""
    start = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - start


def evaluate(model, X, y):
    """Score a fitted model against true labels.

    Parameters
    ----------
    model : fitted estimator
        Has ``tree_``, ``apply`` and ``predict``.
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    y : ndarray of shape (n_samples,)
        True class labels.

    Returns
    -------
    scores : dict
        ``{"DP": ..., "LP": ..., "ACC": ..., "NMI": ...}``, each a float in
        [0, 1]: dendrogram purity, leaf purity, cluster accuracy and
        normalized mutual information.
    """
    labels = model.predict(X)
    return {
        "DP": metrics.dendrogram_purity(y, model.tree_, model.apply(X)),
        "LP": metrics.leaf_purity(y, labels),
        "ACC": metrics.cluster_accuracy(y, labels),
        "NMI": normalized_mutual_info_score(y, labels),
    }


def format_table(rows):
    """Format ``{row name: scores dict}`` as a plain text table.

    Parameters
    ----------
    rows : dict of str to dict of str to float
        One entry per row (e.g. ``"train"``, ``"test"``), all with the same
        score names.

    Returns
    -------
    table : str
        Header line and one line per row, scores with 3 decimals.
    """
    columns = list(next(iter(rows.values())))
    lines = [f"{'':<6}" + "".join(f"{c:>8}" for c in columns)]
    for name, scores in rows.items():
        lines.append(f"{name:<6}" + "".join(f"{scores[c]:>8.3f}" for c in columns))
    return "\n".join(lines)


def save_outputs(model, X_train, y_train, out):
    """Write ``out/tree.png`` and ``out/model.joblib``.

    Parameters
    ----------
    model : fitted estimator
        Has ``tree_`` (a :class:`~sk_hierclust.ClusterTree`) and ``apply``.
    X_train : ndarray of shape (n_samples, n_features)
        Training inputs, to place the samples in the tree picture.
    y_train : ndarray of shape (n_samples,)
        Training labels, to colour the tree picture.
    out : str or path-like
        Output folder, created if needed.

    Returns
    -------
    tree_path, model_path : pathlib.Path
        The two files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tree_path, model_path = out / "tree.png", out / "model.joblib"
    ax = model.tree_.plot(y=y_train, nodes=model.apply(X_train))
    ax.figure.savefig(tree_path, dpi=150, bbox_inches="tight")
    plt.close(ax.figure)
    joblib.dump(model, model_path)
    return tree_path, model_path


def fit_command(args):
    """Run the ``fit`` subcommand: load, fit, score, save and report."""
    epochs = expand_epochs(args.model, args.epochs or DEFAULT_EPOCHS[args.model][args.dataset])
    X_train, y_train, X_test, y_test = load_data(args)
    model = build_model(args, epochs, X_train.shape[1])
    print(f"Fitting {args.model} on {args.dataset}: {X_train.shape[0]} samples, "
          f"{X_train.shape[1]} features, " + ", ".join(f"{k}={v}" for k, v in epochs.items()))
    seconds = fit_model(model, X_train)
    rows = {"train": evaluate(model, X_train, y_train)}
    if X_test is not None:
        rows["test"] = evaluate(model, X_test, y_test)
    print(format_table(rows))
    tree = model.tree_
    print(f"fit time: {seconds:.1f} s, leaves: {tree.n_leaves} "
          f"({len(tree.label_to_node)} holding training samples)")
    tree_path, model_path = save_outputs(model, X_train, y_train, args.out)
    print(f"wrote {tree_path}\nwrote {model_path}")


def main(argv=None):
    """Entry point of the ``sk-hierclust`` command.

    Parameters
    ----------
    argv : list of str, default=None
        Command line arguments without the program name; None reads
        ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 when the data files are missing (the message is
        printed to standard error). Bad arguments exit with status 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fit":
        if args.epochs and len(args.epochs) > len(EPOCH_PARAMS[args.model]):
            parser.error(f"--epochs takes at most {len(EPOCH_PARAMS[args.model])} numbers for {args.model} "
                         f"({', '.join(EPOCH_PARAMS[args.model])}), got {len(args.epochs)}")
        unknown = set(_size_options(args)) - set(MODELS[args.model]().get_params())
        if unknown:
            parser.error(f"{args.model} has no {' or '.join('--' + u.replace('_', '-') for u in sorted(unknown))} "
                         "(its tree size follows from its own parameters, e.g. VLAC's n_clusters)")
    try:
        args.func(args)
    except FileNotFoundError as exc:
        print(f"sk-hierclust: error: {exc}", file=sys.stderr)
        return 1
    return 0
