"""The estimator template every model subclasses: the ``fit`` shell and the shared inference methods."""

import contextlib
import os
import sys
import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted, validate_data
from skorch.callbacks import ProgressBar

from ._lazy import LazyRows, check_finite_block, check_lazy_array, is_lazy_array, looks_like_dataset_without_shape
from ._skorch import ELBONet, _same_device
from .tree import ClusterTree

INFERENCE_BATCH = 1024


def _as_csr_matrix(X):
    """A ``csr_array`` as ``csr_matrix``, whose rows stay 2-D as skorch's dataset expects; others unchanged."""
    return sp.csr_matrix(X) if sp.issparse(X) else X


def _check_device(device):
    """Raise ``ValueError`` unless ``device`` names a torch device that this machine has."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available (a CPU-only torch build, or no GPU); "
                         "use device='cpu'.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r} but this machine has {torch.cuda.device_count()} CUDA device(s).")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r}: only 'cpu' and 'cuda' devices are supported.")


def _dask_worker_threads():
    """Torch threads of a task run by a Dask worker, or None outside a Dask worker.

    One thread per task (a worker runs up to ``nthreads`` tasks at once, one per core of its
    budget), unless the worker's environment sets ``OMP_NUM_THREADS`` (its Nanny sets it to
    1 before starting it; ``LocalCluster(env=...)`` or ``distributed.nanny.environ`` set it
    in the worker), read when the task runs: then that many.
    ``distributed`` is not imported here: a process that has not imported it runs no Dask task.
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        distributed.get_worker()
    except (ValueError, AttributeError):
        return None
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1").split(",")[0]))
    except ValueError:
        return 1


@contextlib.contextmanager
def _torch_threads():
    """Run the block with the torch thread count of :class:`BaseDeepClusterer`'s rule; restore it after.

    Outside a Dask worker nothing is changed. ``torch.set_num_threads`` sets the OpenMP count
    of the calling thread (and the default of threads started later): the count is saved and
    restored in the thread that runs the block, so the tasks that a worker runs at once in
    its threads each keep their own.
    """
    n_threads = _dask_worker_threads()
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class BaseDeepClusterer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """Base class of the package's deep hierarchical clustering estimators (a template).

    :meth:`fit` runs the same shell for every model: validate ``X`` (dense or CSR, finite,
    float32, at least 2 samples; a sparse ``X`` is densified batch by batch, never as a
    whole; a memmap or h5py/zarr-style array is read batch by batch, see :meth:`_check_X`)
    → ``_check_params_vs_input(X, **fit_params)`` → seed torch from ``random_state`` (the
    global torch RNG is restored after) → ``_build_module(X)`` → the skorch
    :class:`~sk_hierclust._skorch.ELBONet` (``net_``, with the model's ``_model_callbacks(seed)``
    and the user's ``callbacks``) → ``_train(net, X, seed, **fit_params)`` → ``tree_`` from
    ``_tree_assignment(X)`` → ``labels_``, ``history_``, ``fit_time_``.

    The base then provides ``predict_proba`` (the model's leaf probabilities renormalised
    over the labelled leaves), ``predict`` (their argmax, batch by batch), ``apply`` (the leaf of
    ``predict``), ``decision_path``, ``score_samples`` (minus the sum of the module's
    terms; see each model for what they are), ``score`` (their mean), ``sample`` (argument
    checks, seeding, the tree node mapped to the model's own node id), deterministic batched
    inference (computed in float64, returned as float32 arrays written into one preallocated
    output, so ``transform`` of a large ``X`` needs little more memory than its result) and
    the scikit-learn tags.

    Failures are ``ValueError`` with a message saying what to do: NaN or infinite ``X``,
    constant ``X``, a ``device`` this machine lacks, a diverging training (see
    :class:`~sk_hierclust._skorch.DivergenceGuard`), non-finite inference outputs.

    A fitted model keeps no optimizer state (every training phase starts a fresh Adam, and
    ``fit`` always trains from scratch), so it pickles at about the size of its parameters.
    Adam runs fused (``torch.optim.Adam(fused=True)``: one kernel for every parameter, on the
    CPU as on CUDA): the same update rule, to float rounding, at a fraction of the cost of
    one update per parameter tensor (on one CPU thread, a 60,000-image epoch of an MLP
    TreeVAE with 20 leaves takes 55 s instead of 75 s).

    Devices: a model fitted on ``device="cuda"`` unpickles on a machine without CUDA (or
    with fewer GPUs) on ``"cpu"`` (``"cuda:0"``), with a ``skorch.exceptions.DeviceWarning``,
    and its ``device`` parameter says where it now is; a pickle that this torch cannot read
    raises ``RuntimeError`` naming the torch version that wrote it. ``set_params(device=...)``
    on a fitted model moves ``net_`` to that device (no retraining).

    Torch threads: each ``fit`` and each inference call (``predict``, ``transform``, ...) run
    by a Dask worker sets ``torch.set_num_threads`` to the task's share of the worker's
    budget, one thread (a worker runs up to ``nthreads`` tasks at once on its ``nthreads``
    cores), or ``OMP_NUM_THREADS`` of the worker's environment when set, and restores the
    previous count after. Elsewhere the count is left as it is: torch's default (all cores,
    or ``OMP_NUM_THREADS`` when torch was imported, which joblib's loky workers set to their
    share of the cores) or a ``threadpoolctl`` limit. See the "Scaling out" page.

    A model defines:

    ``_build_module(X) -> torch.nn.Module``
        The model's network (``forward(x)`` → dict of per-sample negative-ELBO terms,
        ``elbo_terms`` and ``annealed_terms`` declared; see :mod:`sk_hierclust._skorch`).
    ``_tree_assignment(X) -> (parent, sample_nodes, module_nodes)``
        After training: the ``parent`` array of ``tree_`` (topological order), the node of
        ``tree_`` of each training sample (a labelled leaf), and for each node of ``tree_``
        the model's own id of it (kept as ``_module_node_``; used by ``_generate``).
    ``_leaf_proba_fn() -> fn(module, x) -> Tensor (B, n_labels)``
        The function giving the probability of each labelled leaf (column ``j`` = label
        ``j`` = leaf ``tree_.label_to_node[j]``) of a batch, not necessarily normalised.
    ``_generate(module, n_samples, module_node) -> Tensor (n_samples, n_features)``
        Decoder means of samples from the model's node ``module_node`` (None: the root).
    ``transform(X)`` and ``_transform_width()`` (its number of columns; default ``latent_dim``).

    and may override ``_check_params_vs_input`` (default: no checks, no fit parameters),
    ``_model_callbacks`` (default: none), ``_train`` (default: one phase ``"train"`` of
    ``n_epochs`` epochs) and ``_elbo_terms`` (default: the module's forward pass).

    Class attribute ``_epoch_params`` lists the model's epoch parameters in the order of
    its training phases (the command line's ``--epochs``).
    """

    _parameter_constraints: dict = {
        "encoder": [StrOptions({"auto", "mlp", "conv", "conv_pool"})],
        "hidden_dims": [tuple, list, None],
        "input_shape": [tuple, list, None],
        "likelihood": [StrOptions({"auto", "bernoulli", "gaussian"})],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "kl_anneal_epochs": [Interval(Integral, 0, None, closed="left"), None],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "verbose": ["verbose"],
        "callbacks": [list, None],
        "random_state": ["random_state"],
    }

    #: Epoch parameters, in the order of the training phases.
    _epoch_params = ("n_epochs",)

    # ---- the fit template ---------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the model on ``X`` (unsupervised) and build ``tree_`` and ``labels_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data: finite values, at least 2 samples; in [0, 1] for the Bernoulli
            likelihood. A CSR matrix (e.g. TF-IDF) is densified batch by batch. A
            ``np.memmap`` or an h5py/zarr-style array (``shape``, ``dtype``, ``__getitem__``)
            of a numeric dtype is read and converted to float32 batch by batch, never
            copied as a whole; its values are used as they are (uint8 pixels are not
            divided by 255).
        y : Ignored
            Present for API consistency (e.g. ``GridSearchCV`` scoring).

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        ValueError
            Invalid parameters or data (NaN/inf, fewer than 2 samples, 0 features, X outside
            [0, 1] with ``likelihood="bernoulli"``), or a diverging ELBO (non-finite term).
        """
        return self._fit(X)

    def _fit(self, X, **fit_params):
        """The template of :meth:`fit`; ``fit_params`` go to ``_check_params_vs_input``."""
        start = time.perf_counter()
        X = self._validate_fit_data(X)
        fit_params = self._check_params_vs_input(X, **fit_params) or {}
        with _torch_threads(), self._seeded(self.device) as seed:
            self.net_ = self._make_net(self._build_module(X), seed)
            self._train(self.net_, X, seed, **fit_params)
        self.net_.initialize_optimizer()  # every phase starts a fresh optimizer: keep no state in the model
        self.history_ = [{k: v for k, v in row.items() if k != "batches"} for row in self.net_.history]
        parent, sample_nodes, module_nodes = self._tree_assignment(X)
        self.tree_ = ClusterTree.from_sample_nodes(parent, sample_nodes)
        self._module_node_ = np.asarray(module_nodes)
        self.labels_ = self.tree_.node_to_label[np.asarray(sample_nodes)]
        self.fit_time_ = time.perf_counter() - start
        return self

    def _check_params_vs_input(self, X, **fit_params):
        """Check the parameters against ``X``; return the fit parameters for ``_train`` (a dict)."""
        return fit_params

    def _model_callbacks(self, seed):
        """``(name, Callback)`` pairs of the model (e.g. tree dynamics), run before the user's."""
        return []

    def _train(self, net, X, seed):
        """Train the net: by default one phase ``"train"`` of ``n_epochs`` epochs."""
        self._run_phase(net, X, "train", self.n_epochs, self.kl_anneal_epochs)

    # ---- validation -------------------------------------------------------------------
    def _check_X(self, X, reset, return_ranges=False):
        """Validate ``X``: dense or CSR float32 (``validate_data``), or a lazily read memmap / array-like.

        A ``np.memmap`` or an array-like with ``shape``, ``dtype`` and ``__getitem__`` (h5py,
        zarr) is not copied: it is checked (2-D, numeric dtype, feature count, at least 2
        samples in fit; in fit its values too, finite, in one pass over row blocks, which also
        gives the column ranges) and returned as a :class:`~sk_hierclust._lazy.LazyRows` that
        gives float32 rows batch by batch (its values as they are: uint8 is not rescaled). At
        inference its values are checked batch by batch by :meth:`_infer`.

        Returns ``X``, or ``(X, ranges)`` with ``return_ranges``: the column minima and
        maxima of a lazy ``X`` scanned in fit, else None.
        """
        name = type(self).__name__
        if looks_like_dataset_without_shape(X):
            raise TypeError(f"X ({type(X).__name__}) has a dtype and __getitem__ but no shape attribute: {name} "
                            "reads such an array-like (h5py/zarr style) block by block and needs X.shape = "
                            "(n_samples, n_features); or pass an ndarray.")
        if is_lazy_array(X):
            X, ranges = check_lazy_array(X, name, min_samples=2 if reset else 1, scan=reset)
            _check_feature_names(self, X, reset=reset)
            _check_n_features(self, X, reset=reset)
            return (X, ranges) if return_ranges else X
        X = _as_csr_matrix(validate_data(self, X, accept_sparse="csr", dtype=np.float32, ensure_all_finite=False,
                                         ensure_min_samples=2 if reset else 1, reset=reset))
        check_finite_block(X.data if sp.issparse(X) else X, None, name)
        return (X, None) if return_ranges else X

    def _validate_fit_data(self, X):
        """Validate X and ``device``; set ``n_features_in_``, ``likelihood_``, ``encoder_``, ``input_shape_``."""
        _check_device(self.device)
        X, ranges = self._check_X(X, reset=True, return_ranges=True)
        if ranges is not None:  # a lazy X: from the one pass over it in _check_X
            low, high = ranges
        else:
            low, high = X.min(axis=0), X.max(axis=0)
            low, high = (low.toarray(), high.toarray()) if sp.issparse(X) else (low, high)
        if np.all(low == high):
            raise ValueError(f"X is constant: all {X.shape[0]} samples are identical, so there is nothing to "
                             f"cluster ({type(self).__name__} needs samples that differ in at least one feature).")
        in_unit_interval = low.min() >= 0 and high.max() <= 1
        self.likelihood_ = ("bernoulli" if in_unit_interval else "gaussian") if self.likelihood == "auto" \
            else self.likelihood
        if self.likelihood_ == "bernoulli" and not in_unit_interval:
            raise ValueError("likelihood='bernoulli' needs X in [0, 1]; scale X (e.g. MinMaxScaler) or use 'gaussian'.")
        self.encoder_ = "mlp" if self.encoder == "auto" else self.encoder
        self.input_shape_ = None if self.input_shape is None else tuple(int(s) for s in self.input_shape)
        if self.encoder_ in ("conv", "conv_pool"):
            if self.input_shape_ is None or len(self.input_shape_) != 3:
                raise ValueError(f"encoder={self.encoder_!r} needs input_shape=(channels, height, width).")
            if int(np.prod(self.input_shape_)) != X.shape[1]:
                raise ValueError(f"input_shape={self.input_shape_} has {int(np.prod(self.input_shape_))} "
                                 f"values but X has {X.shape[1]} features.")
            if self.encoder_ == "conv_pool" and min(self.input_shape_[1:]) < 4:
                raise ValueError(f"encoder='conv_pool' needs images of height and width at least 4 (two 2x2 "
                                 f"max-poolings), got input_shape={self.input_shape_}.")
        return X

    def _validate_X(self, X):
        check_is_fitted(self)
        return self._check_X(X, reset=False)

    # ---- seeding and training -----------------------------------------------------------
    @contextlib.contextmanager
    def _seeded(self, device):
        """Run the block with torch seeded from ``random_state``; the global torch RNG is restored after.

        Yields
        ------
        seed : int
        """
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        device = torch.device(device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield seed

    def _make_net(self, module, seed):
        """The skorch net that trains ``module`` (fused Adam, no validation split, shuffled seeded batches)."""
        callbacks = list(self._model_callbacks(seed))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        return ELBONet(
            module,
            optimizer=torch.optim.Adam,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            optimizer__fused=True,
            batch_size=self.batch_size,
            max_epochs=0,
            train_split=None,
            callbacks=callbacks + list(self.callbacks or []),
            iterator_train__shuffle=True,
            iterator_train__generator=torch.Generator().manual_seed(seed),
            device=self.device,
            verbose=self.verbose,
            model_name=type(self).__name__,
        ).initialize()

    @staticmethod
    def _run_phase(net, X, phase, n_epochs, anneal_epochs=None):
        """Train ``net`` on ``X`` for ``n_epochs`` epochs as one phase, with a fresh optimizer.

        Parameters
        ----------
        net : ELBONet
        X : {ndarray, csr_matrix} of shape (n_samples, n_features)
        phase : str
            Name recorded in ``history_``.
        n_epochs : int
        anneal_epochs : int, optional
            Length of the phase's KL ramp; ``None`` means half the phase (at least one epoch).
        """
        if n_epochs <= 0:
            return
        net.set_params(phase=phase, kl_anneal_epochs=max(1, n_epochs // 2) if anneal_epochs is None else anneal_epochs)
        net.initialize_optimizer()
        net.partial_fit(X, epochs=n_epochs)

    # ---- inference ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _inference_module(self):
        """The fitted torch module in eval mode, float64 and without gradients; restored to float32 after.

        Float64 makes inference deterministic and independent of the batch size.
        """
        module = self.net_.module_
        training = module.training
        module.eval().double()
        try:
            with torch.no_grad(), _torch_threads():
                yield module
        finally:
            module.float().train(training)

    def _infer(self, X, fn, dtype=np.float32):
        """Apply ``fn(module, x_batch) -> Tensor (batch, ...)`` to ``X`` in batches; returns an ndarray.

        Computes in float64 (deterministic) on ``net_.device`` and writes into one preallocated
        output of ``dtype`` for floating-point results (float32 for the public outputs; the
        models' own decisions during fit ask for float64); integer results keep their type. A
        sparse ``X`` is densified one batch at a time, a lazy ``X`` (memmap, h5py/zarr; a
        :class:`~sk_hierclust._lazy.LazyRows`) read and converted one batch at a time, its
        values checked per batch (NaN or infinity: the ``ValueError`` of :meth:`_check_X`).
        Raises ``ValueError`` if the model outputs NaN or infinity.
        """
        out = None
        lazy = isinstance(X, LazyRows)
        with self._inference_module() as module:
            for start in range(0, X.shape[0], INFERENCE_BATCH):
                batch = X[start:start + INFERENCE_BATCH]
                batch = batch.toarray() if sp.issparse(batch) else batch
                if lazy:
                    check_finite_block(batch, start, type(self).__name__)
                values = fn(module, torch.as_tensor(batch, dtype=torch.float64, device=self.net_.device))
                if not torch.isfinite(values).all():
                    raise ValueError(f"{type(self).__name__} produced NaN or infinite values at inference (rows "
                                     f"{start}..{start + len(batch) - 1}): the fitted model is broken (did its "
                                     "training diverge?) or X is far outside the range it was trained on.")
                values = values.cpu().numpy()
                if out is None:
                    kind = dtype if np.issubdtype(values.dtype, np.floating) else values.dtype
                    out = np.empty((X.shape[0], *values.shape[1:]), dtype=kind)
                out[start:start + len(batch)] = values
        return out

    @property
    def _n_features_out(self):
        """Columns of ``transform``; an AttributeError before fit, as ``get_feature_names_out`` expects."""
        if not hasattr(self, "net_"):
            raise AttributeError("_n_features_out is defined after fit.")
        return self._transform_width()

    def _transform_width(self):
        return self.latent_dim

    def _normalised_proba_fn(self):
        """``fn(module, x)``: the model's leaf probabilities of a batch, renormalised, as float32."""
        leaf_proba = self._leaf_proba_fn()

        def fn(module, x):
            probs = leaf_proba(module, x)
            return (probs / probs.sum(1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)).float()
        return fn

    def predict_proba(self, X):
        """Probability of each cluster (labelled leaf of ``tree_``) for each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_clusters), float32
            Column ``j`` is the leaf with label ``j`` (``tree_.label_to_node[j]``); rows are
            renormalised over the labelled leaves and sum to 1. How a model computes them is
            in its class docstring.
        """
        X = self._validate_X(X)
        return self._infer(X, self._normalised_proba_fn())

    def predict(self, X):
        """Cluster label of each sample: the most probable labelled leaf (the argmax of ``predict_proba``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
            Consecutive labels ``0 .. n_clusters - 1`` (``tree_.label_to_node`` gives the
            leaves, ``tree_.node_to_label`` the inverse).
        """
        X = self._validate_X(X)
        proba = self._normalised_proba_fn()
        return self._infer(X, lambda module, x: proba(module, x).argmax(1))

    def apply(self, X):
        """Node of ``tree_`` of each sample: the leaf of its ``predict`` label.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Node ids of ``tree_``.
        """
        labels = self.predict(X)  # checks that the model is fitted
        return self.tree_.label_to_node[labels]

    def decision_path(self, X):
        """Root-to-node path indicator of each sample's node of ``tree_`` (see ``apply``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        scipy.sparse.csr_matrix of shape ``(n_samples, tree_.node_count)``
        """
        nodes = self.apply(X)  # checks that the model is fitted
        return self.tree_.decision_path(nodes)

    def _elbo_terms(self, module, x):
        """The per-sample terms that ``score_samples`` sums (default: the module's forward pass)."""
        return module(x)

    def score_samples(self, X):
        """Minus the sum of the model's per-sample loss terms, at the posterior means (higher is better).

        For TreeVAE, HCRL and VLAC this is the ELBO in nats; for HTVAE minus its loss (nats
        plus squared latent distances). Deterministic.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        X = self._validate_X(X)
        return self._infer(X, lambda m, x: -sum(self._elbo_terms(m, x).values()))

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` over ``X`` (the mean ELBO in nats, except for HTVAE).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def _check_sample_args(self, n_samples, node=None):
        """Raise ``ValueError`` unless ``n_samples >= 1`` and ``node`` is None or a node of ``tree_``."""
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        if node is not None and (isinstance(node, bool) or not (isinstance(node, Integral)
                                                                and 0 <= node < self.tree_.node_count)):
            raise ValueError(f"node must be a node id of tree_ in [0, {self.tree_.node_count - 1}], got {node!r}.")

    def sample(self, n_samples=1, node=None):
        """Generate samples from the model, optionally from one node of ``tree_``.

        Seeded by ``random_state`` (identical calls give identical samples). What a node's
        samples are is in the model's ``_generate`` docstring.

        Parameters
        ----------
        n_samples : int, default=1
        node : int, optional
            Node id of ``tree_``; None samples from the whole model.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float32
            Decoder means, in the units of X (probabilities for the Bernoulli likelihood).

        Raises
        ------
        ValueError
            If ``n_samples < 1`` or ``node`` is not a node of ``tree_``.
        """
        self._check_sample_args(n_samples, node)
        module_node = None if node is None else self._module_node_[node]
        with self._seeded(self.net_.device), self._inference_module() as module:
            return self._generate(module, n_samples, module_node).cpu().numpy().astype(np.float32)

    # ---- devices ------------------------------------------------------------------------
    def set_params(self, **params):
        """Set the parameters of this estimator; a new ``device`` moves a fitted model's net there.

        Parameters
        ----------
        **params : dict
            Estimator parameters, as for :meth:`sklearn.base.BaseEstimator.set_params`. On a
            fitted model, ``device`` moves ``net_`` (its module's parameters and buffers) to
            that device without retraining: it then predicts on that device.

        Returns
        -------
        self : object

        Raises
        ------
        ValueError
            On a fitted model, if ``device`` is not a device this machine has (the model is
            left unchanged).
        """
        moving = "device" in params and hasattr(self, "net_")
        if moving:
            _check_device(params["device"])
        super().set_params(**params)
        if moving and not _same_device(self.net_.device, self.device):
            self.net_.module_.to(self.device)
            self.net_.set_params(device=self.device)  # a plain attribute of skorch's net: nothing re-initialised
        return self

    def __setstate__(self, state):
        super().__setstate__(state)
        net = self.__dict__.get("net_")
        if net is not None and not _same_device(net.device, self.device):
            self.device = net.device  # the net was loaded elsewhere (ELBONet.__setstate__ warned)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.non_deterministic = torch.device(self.device).type == "cuda"
        tags.transformer_tags.preserves_dtype = ["float32"]  # every output is float32 (see _infer)
        return tags
