"""The estimator base shared by every model: validation, seeding, the skorch net, batched inference."""

import contextlib
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import ProgressBar

from ._skorch import ELBONet, ELBOTerms, KLAnnealing

INFERENCE_BATCH = 1024


def _as_csr_matrix(X):
    """A ``csr_array`` as ``csr_matrix``, whose rows stay 2-D as skorch's dataset expects; others unchanged."""
    return sp.csr_matrix(X) if sp.issparse(X) else X


class DeepClusterMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """Base class of the package's deep hierarchical clustering estimators.

    Subclasses declare their ``__init__`` parameters (stored verbatim), build a torch
    module in ``fit`` and train it through :meth:`_make_net` / :meth:`_run_phase`; this base
    provides input validation (``validate_data``: dense or CSR, finite, float32, at least 2
    samples; a sparse ``X`` is densified batch by batch, never as a whole), seeding of torch
    from ``random_state`` without touching the global torch RNG,
    the skorch :class:`~sk_hierclust._skorch.ELBONet` (composition: the estimator has
    ``net_``), deterministic batched inference in float64, the ``score`` method and the
    scikit-learn tags.

    Subclasses must define ``_n_features_out`` (columns of ``transform``) and
    ``score_samples``.
    """

    _parameter_constraints: dict = {
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "encoder": [StrOptions({"auto", "mlp", "conv"})],
        "input_shape": [tuple, list, None],
        "likelihood": [StrOptions({"auto", "bernoulli", "gaussian"})],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "verbose": ["verbose"],
        "callbacks": [list, None],
        "random_state": ["random_state"],
    }

    # ---- validation -------------------------------------------------------------------
    def _validate_fit_data(self, X):
        """Validate training data and resolve ``likelihood``/``encoder``; sets ``n_features_in_``."""
        X = _as_csr_matrix(validate_data(self, X, accept_sparse="csr", dtype=np.float32, ensure_min_samples=2))
        in_unit_interval = X.min() >= 0 and X.max() <= 1
        if self.likelihood == "auto":
            self.likelihood_ = "bernoulli" if in_unit_interval else "gaussian"
        else:
            self.likelihood_ = self.likelihood
        if self.likelihood_ == "bernoulli" and not in_unit_interval:
            raise ValueError("likelihood='bernoulli' needs X in [0, 1]; scale X (e.g. MinMaxScaler) or use 'gaussian'.")
        self.encoder_ = "mlp" if self.encoder == "auto" else self.encoder
        if self.encoder_ == "conv":
            if self.input_shape is None or len(self.input_shape) != 3:
                raise ValueError("encoder='conv' needs input_shape=(channels, height, width).")
            if int(np.prod(self.input_shape)) != X.shape[1]:
                raise ValueError(f"input_shape={tuple(self.input_shape)} has {int(np.prod(self.input_shape))} "
                                 f"values but X has {X.shape[1]} features.")
        return X

    def _validate_X(self, X):
        check_is_fitted(self)
        return _as_csr_matrix(validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False))

    # ---- seeding and training -----------------------------------------------------------
    @contextlib.contextmanager
    def _seeded(self):
        """Run the block with torch seeded from ``random_state``; the global torch RNG is restored after.

        Yields
        ------
        seed : int
        """
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        device = torch.device(self.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield seed

    def _make_net(self, module, seed, model_callbacks=()):
        """Build the skorch net that trains ``module`` (Adam, no validation split, shuffled batches).

        ``model_callbacks`` are ``(name, Callback)`` pairs of the model (e.g. tree dynamics),
        run before the user's ``callbacks``.
        """
        callbacks = [("kl_annealing", KLAnnealing()), ("elbo_terms", ELBOTerms()), *model_callbacks]
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        net = ELBONet(
            module=module,
            criterion=torch.nn.Identity,
            optimizer=torch.optim.Adam,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            max_epochs=0,
            train_split=None,
            callbacks=callbacks + list(self.callbacks or []),
            iterator_train__shuffle=True,
            iterator_train__drop_last=False,
            iterator_train__generator=torch.Generator().manual_seed(seed),
            device=self.device,
            verbose=self.verbose,
        )
        return net.initialize()

    def _run_phase(self, net, X, phase, n_epochs, anneal_epochs=None):
        """Train ``net`` on ``X`` for ``n_epochs`` epochs as one phase (its own KL annealing).

        Parameters
        ----------
        net : ELBONet
        X : ndarray of shape (n_samples, n_features)
        phase : str
            Name recorded in ``history_``.
        n_epochs : int
        anneal_epochs : int, optional
            Length of the KL ramp; ``None`` means half the phase (at least one epoch).
        """
        if n_epochs <= 0:
            return
        net.initialize_optimizer()
        net.phase = phase
        dict(net.callbacks_)["kl_annealing"].n_epochs = (
            max(1, n_epochs // 2) if anneal_epochs is None else anneal_epochs)
        # a last batch of one sample would break batch normalisation
        setattr(net, "iterator_train__drop_last", X.shape[0] % self.batch_size == 1)  # read by skorch's get_iterator
        net.partial_fit(X, epochs=n_epochs)

    # ---- inference ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _inference_module(self):
        """The fitted torch module in eval mode, float64 and without gradients (made deterministic
        and batch-size invariant); restored to float32 after."""
        module = self.net_.module_
        training = module.training
        module.eval().double()
        try:
            with torch.no_grad():
                yield module
        finally:
            module.float().train(training)

    def _infer(self, X, fn):
        """Apply ``fn(module, x_batch) -> Tensor (batch, ...)`` to ``X`` in batches; returns an ndarray.

        A sparse ``X`` is densified one batch at a time.
        """
        outputs = []
        with self._inference_module() as module:
            for start in range(0, X.shape[0], INFERENCE_BATCH):
                batch = X[start:start + INFERENCE_BATCH]
                batch = batch.toarray() if sp.issparse(batch) else batch
                x = torch.as_tensor(batch, dtype=torch.float64, device=self.device)
                outputs.append(fn(module, x).cpu().numpy())
        return np.concatenate(outputs)

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

    def _check_sample_args(self, n_samples, node=None):
        """Raise ``ValueError`` unless ``n_samples >= 1`` and ``node`` is None or a node of ``tree_``."""
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        if node is not None and not (isinstance(node, Integral) and 0 <= node < self.tree_.node_count):
            raise ValueError(f"node must be a node id of tree_ in [0, {self.tree_.node_count - 1}], got {node!r}.")

    def score(self, X, y=None):
        """Mean ELBO per sample, in nats (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.non_deterministic = torch.device(self.device).type == "cuda"
        return tags
