"""Command line interface: ``sk-hierclust fit ...`` (or ``python -m sk_hierclust``).

The ``fit`` subcommand trains one model on one data set, prints the
clustering scores, and saves a picture of the learned tree and the fitted
estimator.

Parsing the command line imports neither torch nor the models: the model
list and the epoch parameters come from :data:`MODEL_REGISTRY`, a static
table that the test suite checks against the estimators ``sk_hierclust``
exports. ``--help`` and bad arguments therefore answer at once; torch, the
model and the data are loaded only once the arguments have been checked.
"""

import argparse
import importlib
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "DATASETS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_ENCODER",
    "DEFAULT_EPOCHS",
    "EPOCH_PARAMS",
    "MODELS",
    "MODEL_REGISTRY",
    "THUMBNAILS",
    "main",
]

#: Models the command line can fit: lower-case name -> (module, class name, epoch
#: parameters), the epoch parameters being the class's ``_epoch_params`` (its training
#: phases, in order). Static so that parsing the command line imports no model (nor
#: torch); ``tests/test_cli.py`` checks it against the estimators ``sk_hierclust`` exports.
MODEL_REGISTRY = {
    "hcrl": ("sk_hierclust.models.hcrl", "HCRL", ("n_epochs_pretrain", "n_epochs")),
    "htvae": ("sk_hierclust.models.htvae", "HTVAE", ("n_epochs",)),
    "treevae": ("sk_hierclust.models.treevae", "TreeVAE", ("n_epochs_initial", "n_epochs_grow", "n_epochs")),
    "vlac": ("sk_hierclust.models.vlac", "VLAC", ("n_epochs",)),
}

#: The estimator parameters ``--epochs`` sets, in order: each model's training phases.
EPOCH_PARAMS = {name: spec[2] for name, spec in MODEL_REGISTRY.items()}

#: Names ``--dataset`` accepts: :data:`sk_hierclust.datasets.DATASETS`, repeated here so
#: that parsing imports no data loader (scikit-learn); checked by ``tests/test_cli.py``.
DATASETS = ("digits", "mnist", "fashion_mnist", "20newsgroups")

#: Data sets of square one-channel images, which ``--encoder conv`` can read.
IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist")

#: Choices of ``--thumbnails``: the pictures beside each node of ``tree.png``.
THUMBNAILS = ("mean", "sample", "none")

#: Images :func:`save_outputs` averages per node for ``--thumbnails sample``.
N_THUMBNAIL_SAMPLES = 16

#: Default ``--epochs`` per model and data set: the digits runs take a few minutes at
#: most on 2 CPU cores, the others about their benchmark's (benchmarks/bench_*.py).
#: TreeVAE on digits: 40/20/30 epochs gave a training-set dendrogram purity of 0.738 ±
#: 0.029 and a leaf purity of 0.869 ± 0.028 over seeds 0-7 (one thread), against 0.699 ±
#: 0.051 and 0.829 ± 0.055 with 20/10/15 and 0.740 ± 0.050 with 60/30/45 (seeds 0-5).
DEFAULT_EPOCHS = {
    "treevae": {"digits": (40, 20, 30), "mnist": (30, 15, 30), "fashion_mnist": (30, 15, 30),
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

#: TreeVAE's default ``--augment`` per data set (its contrastive extension, Manduchi et al.
#: 2023, §2.6); the other data sets train without augmentation. On digits (then 20/10/15
#: epochs, one thread) it raised the training-set dendrogram purity from 0.631 ± 0.067 to
#: 0.736 ± 0.029 and the leaf purity from 0.770 to 0.869 on seeds 0-3 (0.699 ± 0.051 and
#: 0.829 over seeds 0-7 with fused Adam); on 10,000 MNIST images with short schedules it
#: lowered the dendrogram purity (0.257 to 0.179).
DEFAULT_AUGMENT = {"digits": "affine"}

#: Default ``--contrastive-weight`` with ``--augment affine``: of the weights 1, 3, 10, 30 and
#: 100, 3 gave digits the highest dendrogram purity.
DEFAULT_CONTRASTIVE_WEIGHT = 3.0


class _ModelClasses(Mapping):
    """Read-only mapping model name -> estimator class, importing a model on first look-up.

    Iterating, ``len`` and ``in`` use :data:`MODEL_REGISTRY` only (no import).

    Parameters
    ----------
    registry : dict
        Name -> (module, class name, epoch parameters), as :data:`MODEL_REGISTRY`.
    """

    def __init__(self, registry):
        self._registry = registry

    def __getitem__(self, name):
        module, class_name, _ = self._registry[name]
        return getattr(importlib.import_module(module), class_name)

    def __iter__(self):
        return iter(self._registry)

    def __len__(self):
        return len(self._registry)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(self._registry)})"


#: Models the command line can fit: name -> estimator class (imported on first look-up).
MODELS = _ModelClasses(MODEL_REGISTRY)


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
            "OUT/tree.png (for images with a thumbnail per node, see --thumbnails) "
            "and OUT/model.joblib."
        ),
    )
    fit.add_argument("--model", choices=sorted(MODELS), default="treevae",
                     help="model to fit (default: %(default)s)")
    fit.add_argument("--dataset", choices=DATASETS, default="digits",
                     help="data set (default: %(default)s)")
    fit.add_argument("--data-home", metavar="PATH", default=None,
                     help="folder holding the mnist/, fashion_mnist/ and 20newsgroups/ "
                          "folders, e.g. ../shared/data (default: $SK_HIERCLUST_DATA, else "
                          "~/sk_hierclust_data)")
    fit.add_argument("--n-samples", type=_positive_int, metavar="N", default=None,
                     help="use only the first N training samples")
    fit.add_argument("--max-leaves", type=int, metavar="N", default=None,
                     help="maximum number of leaves (default: the model's; not for vlac)")
    fit.add_argument("--max-depth", type=int, metavar="N", default=None,
                     help="maximum depth of the learned tree, the root at depth 0 (default: the model's; "
                          "not for vlac)")
    fit.add_argument("--epochs", type=_positive_int, nargs="+", default=None, metavar="N",
                     action=_EpochsAction,
                     help="training epochs (>= 1), one number per phase of the model (a missing number "
                          "repeats the last one given): " + "; ".join(
                              f"{m}: {', '.join(p)}" for m, p in EPOCH_PARAMS.items())
                          + " (default per model and data set: " + "; ".join(
                              f"{m} {d} {' '.join(map(str, e))}" for m, per in DEFAULT_EPOCHS.items()
                              for d, e in per.items()) + "; else the model's own defaults)")
    fit.add_argument("--encoder", choices=("mlp", "conv", "conv_pool"), default=None,
                     help="encoder/decoder architecture (default per data set: " + ", ".join(
                         f"{k} {v}" for k, v in DEFAULT_ENCODER.items()) + "; conv and conv_pool only for "
                         + ", ".join(IMAGE_DATASETS) + ")")
    fit.add_argument("--batch-size", type=_positive_int, metavar="N", default=None,
                     help="mini-batch size (default per data set: " + ", ".join(
                         f"{k} {v}" for k, v in DEFAULT_BATCH_SIZE.items()) + ")")
    fit.add_argument("--augment", choices=("affine", "none"), default=None,
                     help="treevae only: augment the training images by random affine transforms and add the "
                          "contrastive term (paper section 2.6) weighted by --contrastive-weight (default: "
                          + ", ".join(f"{a} for {k}" for k, a in DEFAULT_AUGMENT.items()) + ", none otherwise)")
    fit.add_argument("--contrastive-weight", type=_non_negative_float, metavar="W", default=None,
                     help="treevae only: weight of the contrastive term with --augment affine; 0 trains on "
                          f"augmented images without it (default: {DEFAULT_CONTRASTIVE_WEIGHT:g})")
    fit.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="torch device (default: %(default)s; cuda needs a CUDA build of torch and a GPU)")
    fit.add_argument("--seed", type=int, default=0,
                     help="random seed (default: %(default)s)")
    talk = fit.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="count", default=0,
                      help="print skorch's table of the training epochs (repeat for more); by default "
                           "only the training phases and a progress bar are shown")
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="print no training progress (the scores and the files written are still "
                           "printed)")
    fit.add_argument("--thumbnails", choices=THUMBNAILS, default=None,
                     help="pictures in OUT/tree.png: the mean of the training images routed to each node "
                          f"(mean), the mean of {N_THUMBNAIL_SAMPLES} images the model generates from each "
                          "node (sample), or none (default: mean for the image data sets " + ", ".join(IMAGE_DATASETS)
                          + ", none otherwise)")
    fit.add_argument("--out", metavar="DIR", default="results",
                     help="output folder, created if needed; checked before the fit (default: %(default)s)")
    fit.set_defaults(func=fit_command, command_parser=fit)
    return parser


def _positive_int(text):
    """Argument type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text):
    """Argument type: a finite number >= 0."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def augmentation(args):
    """TreeVAE's ``(augment, contrastive_weight)`` from ``--augment`` and ``--contrastive-weight``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``fit`` arguments (``model``, ``dataset``, ``augment``, ``contrastive_weight``).

    Returns
    -------
    augment : {"affine", None}
        ``--augment`` (``none``: None); not given: :data:`DEFAULT_AUGMENT` of the data set for
        treevae, else None.
    contrastive_weight : float
        ``--contrastive-weight``; not given: :data:`DEFAULT_CONTRASTIVE_WEIGHT` with
        augmentation, else 0.
    """
    if args.augment is None:
        augment = DEFAULT_AUGMENT.get(args.dataset) if args.model == "treevae" else None
    else:
        augment = None if args.augment == "none" else args.augment
    if args.contrastive_weight is not None:
        return augment, args.contrastive_weight
    return augment, DEFAULT_CONTRASTIVE_WEIGHT if augment else 0.0


class _EpochsAction(argparse.Action):
    """Store the ``--epochs`` values (each checked >= 1 by their type) as a tuple."""

    def __call__(self, parser, namespace, values, option_string=None):
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
    from .datasets import load_dataset

    X_train, y_train, X_test, y_test = load_dataset(args.dataset, args.data_home)
    if args.n_samples is not None:
        X_train, y_train = X_train[: args.n_samples], y_train[: args.n_samples]
    return X_train, y_train, X_test, y_test


def _size_options(args):
    """The ``--max-leaves`` / ``--max-depth`` values given, as estimator parameters."""
    sizes = {"max_leaves": args.max_leaves, "max_depth": args.max_depth}
    return {name: value for name, value in sizes.items() if value is not None}


def _image_shape(n_features):
    """``(1, side, side)`` for ``n_features = side ** 2`` (square one-channel images)."""
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"--encoder conv needs square images, got {n_features} features")
    return (1, side, side)


def _needs_image_shape(encoder, augment):
    """Whether the estimator needs ``input_shape``: a convolutional encoder or image augmentation."""
    return encoder in ("conv", "conv_pool") or augment is not None


def build_model(args, epochs, n_features=None):
    """Create the (unfitted) estimator from the command line options.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.
    epochs : dict of str to int
        Epoch parameters of the model (see :func:`expand_epochs`).
    n_features : int, default=None
        Number of input features; images are assumed square with one channel
        (64 -> 8x8, 784 -> 28x28) for the convolutional encoder. None leaves
        ``input_shape`` unset, to be set once the data are loaded.

    Returns
    -------
    model : estimator
        An instance of ``MODELS[args.model]``; unless ``args.quiet``, its
        ``callbacks`` show the training progress (see :func:`progress_callbacks`).
    """
    encoder = args.encoder or DEFAULT_ENCODER[args.dataset]
    augment, contrastive_weight = augmentation(args)
    extra = {"augment": augment, "contrastive_weight": contrastive_weight} if args.model == "treevae" else {}
    input_shape = None
    if _needs_image_shape(encoder, augment) and n_features is not None:
        input_shape = _image_shape(n_features)
    return MODELS[args.model](
        **_size_options(args),
        **epochs,
        **extra,
        encoder=encoder,
        input_shape=input_shape,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE[args.dataset],
        device=args.device,
        verbose=args.verbose,
        callbacks=progress_callbacks(args.verbose, getattr(args, "quiet", False)) or None,
        random_state=args.seed,
    )


# ---- training progress ------------------------------------------------------------------
def progress_callbacks(verbose=0, quiet=False):
    """The skorch callbacks that show the training progress on the command line.

    Parameters
    ----------
    verbose : int, default=0
        ``--verbose``: when > 0 the estimator adds its own progress bar (and skorch
        prints its epoch table), so only the phase log is added.
    quiet : bool, default=False
        ``--quiet``: no callbacks.

    Returns
    -------
    callbacks : list of (str, skorch.callbacks.Callback)
        For the estimator's ``callbacks`` parameter: ``("phase_printer", PhasePrinter())``
        (one line when a training phase starts and one when it ends) and, unless
        ``verbose``, ``("progress", PhaseProgressBar())`` (a progress bar over the
        batches of the running epoch, on standard error, labelled with the phase and
        the epoch within it, e.g. ``pretrain epoch 3``).
    """
    if quiet:
        return []
    from ._skorch import PhasePrinter, PhaseProgressBar

    callbacks = [("phase_printer", PhasePrinter())]
    if not verbose:
        callbacks.append(("progress", PhaseProgressBar()))
    return callbacks


def fit_model(model, X):
    """Fit ``model`` on ``X`` and return the wall-clock time in seconds."""
    start = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - start


def thumbnail_mode(args):
    """The ``--thumbnails`` of ``args``, its default resolved from the data set.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``fit`` arguments (``thumbnails``, ``dataset``).

    Returns
    -------
    mode : {"mean", "sample", "none"}
        ``args.thumbnails`` if given, else ``"mean"`` for :data:`IMAGE_DATASETS` and
        ``"none"`` for the others.
    """
    if getattr(args, "thumbnails", None) is not None:
        return args.thumbnails
    return "mean" if args.dataset in IMAGE_DATASETS else "none"


def save_outputs(model, X_train, y_train, out, *, thumbnails="none", image_shape=None):
    """Write ``out/tree.png`` and ``out/model.joblib``.

    Parameters
    ----------
    model : fitted estimator
        Has ``tree_`` (a :class:`~sk_hierclust.ClusterTree`), ``apply`` and, for
        ``thumbnails="sample"``, ``sample``.
    X_train : ndarray of shape (n_samples, n_features)
        Training inputs, to place the samples in the tree picture.
    y_train : ndarray of shape (n_samples,)
        Training labels: each non-empty node of the picture shows its majority class and purity.
    out : str or path-like
        Output folder, created if needed.
    thumbnails : {"none", "mean", "sample"}, default="none"
        Picture drawn on each node: none; the mean of the training images routed to
        its subtree; or the mean of :data:`N_THUMBNAIL_SAMPLES` images generated from
        the node (``model.sample(N_THUMBNAIL_SAMPLES, node=v)``).
    image_shape : tuple of int, default=None
        Shape of one image, ``(h, w)`` or ``(c, h, w)``; None for square one-channel
        images (see :meth:`~sk_hierclust.ClusterTree.plot`).

    Returns
    -------
    tree_path, model_path : pathlib.Path
        The two files written.

    Raises
    ------
    ValueError
        If ``thumbnails`` is not one of :data:`THUMBNAILS`, or the images do not have
        ``image_shape``.
    """
    import joblib
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if thumbnails not in THUMBNAILS:
        raise ValueError(f"thumbnails must be one of {THUMBNAILS}; got {thumbnails!r}.")
    tree_path, model_path = out / "tree.png", out / "model.joblib"
    pictures = {}
    if thumbnails == "mean":
        pictures = {"images": X_train, "image_shape": image_shape}
    elif thumbnails == "sample":
        import numpy as np

        generated = [model.sample(N_THUMBNAIL_SAMPLES, node=v).mean(axis=0)
                     for v in range(model.tree_.node_count)]
        pictures = {"thumbnails": np.stack(generated), "image_shape": image_shape}
    ax = model.tree_.plot(y=y_train, nodes=model.apply(X_train), **pictures)
    ax.figure.savefig(tree_path, dpi=150, bbox_inches="tight")
    plt.close(ax.figure)
    joblib.dump(model, model_path)
    return tree_path, model_path


def check_out(out):
    """Check that the output folder can be written (or created), without creating it.

    Parameters
    ----------
    out : str or path-like
        The ``--out`` folder.

    Returns
    -------
    problem : str or None
        Why ``out`` cannot be used (an existing file, a folder that is not
        writable, or whose nearest existing parent is not a writable
        folder); None when it can.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            return f"--out {out} exists and is not a folder"
        if not os.access(out, os.W_OK | os.X_OK):
            return f"--out {out}: the folder is not writable"
        return None
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: cannot create the folder, {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: cannot create the folder, {parent} is not writable"
    return None


def prepare_fit(parser, args):
    """Check the ``fit`` arguments and build the estimator, before any data are loaded.

    Checks the number of ``--epochs``, the ``--out`` folder (see :func:`check_out`),
    ``--encoder conv`` against the data set, ``--device cuda`` against torch, the size
    options against the model, and the estimator's parameters (scikit-learn's
    ``_parameter_constraints``, e.g. ``--max-leaves -3``).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser, to report a usage error (exit status 2).
    args : argparse.Namespace
        Parsed ``fit`` arguments.

    Returns
    -------
    model : estimator
        The validated, unfitted estimator (``input_shape`` not yet set).
    epochs : dict of str to int
        Its epoch parameters given on the command line or by default.
    """
    n_phases = len(EPOCH_PARAMS[args.model])
    if args.epochs and len(args.epochs) > n_phases:
        parser.error(f"--epochs takes at most {n_phases} numbers for {args.model} "
                     f"({', '.join(EPOCH_PARAMS[args.model])}), got {len(args.epochs)}")
    problem = check_out(args.out)
    if problem:
        parser.error(problem)
    encoder = args.encoder or DEFAULT_ENCODER[args.dataset]
    if encoder in ("conv", "conv_pool") and args.dataset not in IMAGE_DATASETS:
        parser.error(f"--encoder {encoder} needs images; {args.dataset} is not an image data set (use mlp)")
    if args.model != "treevae" and (args.augment is not None or args.contrastive_weight is not None):
        parser.error(f"--augment and --contrastive-weight are treevae's (its contrastive extension), "
                     f"not {args.model}'s")
    if args.augment == "affine" and args.dataset not in IMAGE_DATASETS:
        parser.error(f"--augment affine needs images; {args.dataset} is not an image data set")
    augment, contrastive_weight = augmentation(args)
    if augment is None and contrastive_weight > 0:
        parser.error(f"--contrastive-weight {contrastive_weight:g} needs --augment affine (two augmented views "
                     "of each image)")
    if thumbnail_mode(args) != "none" and args.dataset not in IMAGE_DATASETS:
        parser.error(f"--thumbnails {args.thumbnails} needs images; {args.dataset} is not an image data set")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device cuda: CUDA is not available (torch {torch.__version__}); "
                         "use --device cpu")
    from sklearn.utils._param_validation import InvalidParameterError

    unknown = set(_size_options(args)) - set(MODELS[args.model]().get_params())
    if unknown:
        parser.error(f"{args.model} has no {' or '.join('--' + u.replace('_', '-') for u in sorted(unknown))} "
                     "(its tree size follows from its own parameters, e.g. VLAC's n_clusters)")
    epochs = args.epochs or DEFAULT_EPOCHS.get(args.model, {}).get(args.dataset)
    epochs = {} if epochs is None else expand_epochs(args.model, epochs)
    model = build_model(args, epochs)
    try:
        model._validate_params()
    except InvalidParameterError as exc:
        parser.error(str(exc))
    return model, epochs


#: Largest set that :func:`ward_scores` clusters (scipy's linkage needs n^2 / 2 distances).
WARD_MAX_SAMPLES = 20_000


def ward_scores(X, y, n_leaves):
    """Scores of the baseline every model must beat: Ward linkage on the raw features.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        At most :data:`WARD_MAX_SAMPLES` rows (densified if sparse).
    y : ndarray of shape (n_samples,)
        True classes.
    n_leaves : int
        Where to cut the Ward tree (the model's number of non-empty leaves).

    Returns
    -------
    dict
        :func:`sk_hierclust.metrics.hierarchy_scores` of the cut tree (DP, LP, ACC, NMI).
    """
    import numpy as np
    import scipy.sparse as sp
    from scipy.cluster.hierarchy import linkage

    from . import metrics
    from .tree import ClusterTree

    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    tree, nodes = ClusterTree.from_linkage(linkage(X, "ward"), n_leaves=n_leaves)
    return metrics.hierarchy_scores(y, tree, nodes, tree.node_to_label[nodes])


def fit_command(parser, args):
    """Run the ``fit`` subcommand: check, load, fit, score, save and report.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser, for usage errors (see :func:`prepare_fit`).
    args : argparse.Namespace
        Parsed ``fit`` arguments.
    """
    model, epochs = prepare_fit(parser, args)
    X_train, y_train, X_test, y_test = load_data(args)
    params = model.get_params()
    if _needs_image_shape(params["encoder"], params.get("augment")):
        model.set_params(input_shape=_image_shape(X_train.shape[1]))
    shown = {**epochs, **({k: params[k] for k in ("augment", "contrastive_weight")} if params.get("augment") else {})}
    print(f"Fitting {args.model} on {args.dataset}: {X_train.shape[0]} samples, "
          f"{X_train.shape[1]} features, " + ", ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
    seconds = fit_model(model, X_train)
    from . import metrics

    tree = model.tree_
    n_leaves = len(tree.label_to_node)
    rows = {"train": metrics.evaluate(model, X_train, y_train)}
    if X_test is not None:
        rows["test"] = metrics.evaluate(model, X_test, y_test)
    for split, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        if X is not None and X.shape[0] <= WARD_MAX_SAMPLES:
            rows[f"Ward {split}"] = ward_scores(X, y, n_leaves)
    print(metrics.format_scores(rows))
    print(f"(Ward: Ward linkage on the raw features, cut at the model's {n_leaves} leaves)")
    print(f"fit time: {seconds:.1f} s, leaves: {tree.n_leaves} "
          f"({len(tree.label_to_node)} holding training samples)")
    tree_path, model_path = save_outputs(model, X_train, y_train, args.out,
                                         thumbnails=thumbnail_mode(args),
                                         image_shape=_image_shape(X_train.shape[1])
                                         if args.dataset in IMAGE_DATASETS else None)
    print(f"wrote {tree_path}\nwrote {model_path}")


def main(argv=None):
    """Entry point of the ``sk-hierclust`` command.

    Parsing, ``--help`` and usage errors import neither torch nor the models.

    Parameters
    ----------
    argv : list of str, default=None
        Command line arguments without the program name; None reads
        ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 when the data files are missing (the message is
        printed to standard error). Bad arguments (including invalid model
        parameters, an unusable ``--out`` and ``--device cuda`` without CUDA)
        exit with status 2 before any data are loaded.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args.command_parser, args)
    except FileNotFoundError as exc:
        print(f"sk-hierclust: error: {exc}", file=sys.stderr)
        return 1
    return 0
