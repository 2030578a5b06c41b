"""The skorch layer every model trains with: an ELBO-minimising ``NeuralNet`` and its callbacks.

A model's torch module declares what the net needs to know about it:

- ``forward(x)`` returns a dict of per-sample negative-ELBO terms, each of shape ``(B,)``;
- ``elbo_terms``: the names of all terms it can return (each gets a per-epoch mean in
  ``history`` through skorch's :class:`~skorch.callbacks.PassthroughScoring`);
- ``annealed_terms``: the names of the terms multiplied by the KL weight of
  :class:`KLAnnealing` during training.

Each training phase is configured through ``net.set_params(phase=..., kl_anneal_epochs=...,
kl_start=..., kl_rate=...)`` (plain net parameters, so the callbacks, the user's included, keep
their state; ``set_params(callbacks__...)`` would re-initialise them all), never by editing the
net's internals or its callbacks. A learning-rate step decay restarted at every phase is
:func:`step_lr_scheduler`.
"""

import math
import time
import warnings

import scipy.sparse as sp
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EpochTimer, LRScheduler, PassthroughScoring, PrintLog, ProgressBar
from skorch.exceptions import DeviceWarning

from ._lazy import BatchDataset, LazyRows


class ELBONet(NeuralNet):
    """A skorch ``NeuralNet`` minimising the mean negative ELBO that its module returns.

    The loss is the batch mean of ``sum(terms)``, the module's ``annealed_terms``
    multiplied by the annealing weight :attr:`kl_weight` (set by :class:`KLAnnealing`)
    during training. Each term's batch mean is recorded in ``history`` (its epoch mean by
    the default callbacks), and checked: a non-finite term raises ``ValueError`` naming
    the term, the epoch and the training phase. Parameters with ``requires_grad=False``
    (frozen parts of a growing tree) are left out of the optimizer. There is no criterion:
    the module computes its own loss terms.

    Parameters
    ----------
    module : torch.nn.Module
        Returns a dict of per-sample negative-ELBO terms; declares ``elbo_terms`` and
        ``annealed_terms`` (tuples of term names).
    phase : str, default="train"
        Name of the current training phase, recorded in ``history`` every epoch.
    kl_anneal_epochs : float, default=0
        Length in epochs of the KL weight's ramp from 0 to 1 at the start of every
        ``partial_fit`` (see :class:`KLAnnealing`); 0 means weight 1 from the start.
        Ignored when ``kl_rate`` is set.
    kl_start : float, default=0.0
        KL weight of the first epoch of a ``partial_fit`` when ``kl_rate`` is set.
    kl_rate : float, optional
        Per-epoch increase of the KL weight (see :class:`KLAnnealing`): the weight of the
        ``e``-th epoch (from 0) of a ``partial_fit`` is ``min(1, kl_start + e * kl_rate)``.
        None: the per-batch ramp over ``kl_anneal_epochs``.
    **kwargs
        Passed to :class:`skorch.NeuralNet` (``optimizer``, ``lr``, ``batch_size``, ...).

    model_name : str, optional
        Name of the estimator, used in error messages (default: the module's class name).

    Raises
    ------
    ValueError
        When training diverges (see :class:`DivergenceGuard`): a term of the ELBO becomes
        NaN or infinite (from :meth:`get_loss`), a gradient becomes non-finite, or the loss
        grows by orders of magnitude. The message names the model, the epoch, the phase,
        the term or parameter, and the likely cause.
    """

    kl_weight = 1.0

    def __init__(self, module, *args, criterion=None, phase="train", kl_anneal_epochs=0, kl_start=0.0,
                 kl_rate=None, model_name=None, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)
        self.phase = phase
        self.kl_anneal_epochs = kl_anneal_epochs
        self.kl_start = kl_start
        self.kl_rate = kl_rate
        self.model_name = model_name

    @property
    def _default_callbacks(self):
        terms = getattr(self.module, "elbo_terms", ())
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            *((term, PassthroughScoring(name=term, on_train=True, lower_is_better=None)) for term in terms),
            ("kl_annealing", KLAnnealing()),
            ("divergence_guard", DivergenceGuard()),
            ("phase_log", PhaseLog()),
            ("print_log", PrintLog()),
        ]

    def initialize_criterion(self):
        """No criterion: the module returns its loss terms (see :meth:`get_loss`)."""
        self.criterion_ = None
        return self

    def get_dataset(self, X, y=None):
        """The dataset: skorch's, except for a lazy ``X`` (memmap, h5py/zarr) or a CSR matrix: a :class:`BatchDataset`.

        A :class:`BatchDataset` reads (and densifies) each batch's rows in one go as a
        float32 tensor, so a memmap is never converted as a whole nor read row by row. The
        batches are the ones skorch's per-sample dataset would give (same sampler, same
        values).
        """
        if y is None and (isinstance(X, LazyRows) or sp.issparse(X)):
            return BatchDataset(X)
        return super().get_dataset(X, y)

    def get_iterator(self, dataset, training=False):
        """Return skorch's iterator; in training, drop a last batch of one sample.

        A batch of one sample would break batch normalisation. A :class:`BatchDataset` gets
        its ``collate_fn`` (its batches come collated).
        """
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = {"batch_size": self.batch_size, **self.get_params_for(prefix)}
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if training and len(dataset) % kwargs["batch_size"] == 1:
            kwargs["drop_last"] = True
        if isinstance(dataset, BatchDataset):
            kwargs.setdefault("collate_fn", BatchDataset.collate)
        return (self.iterator_train if training else self.iterator_valid)(dataset, **kwargs)

    def get_loss(self, y_pred, y_true=None, X=None, training=False):
        annealed = getattr(self.module_, "annealed_terms", ())
        weight = self.kl_weight if training else 1.0
        loss = 0.0
        for name, term in y_pred.items():
            value = term.mean()
            if not torch.isfinite(value):
                self.diverged(f"the ELBO term {name!r} became {value.item()}")
            if training:
                self.history.record_batch(name, value.item())
            loss = loss + (weight * value if name in annealed else value)
        return loss

    def diverged(self, what):
        """Raise the ``ValueError`` that stops a diverging fit, saying ``what`` happened, where and why.

        Raises
        ------
        ValueError
            Always.
        """
        name = self.model_name or type(self.module_).__name__
        raise ValueError(
            f"{name}: training diverged in epoch {len(self.history)} (phase {self.phase!r}): {what}. "
            f"Likely cause: a learning rate too high for this data (lr={self.lr:g}; try 10 times lower), "
            "or X far from the scale the likelihood expects (scale it, e.g. MinMaxScaler to [0, 1] or "
            "StandardScaler)."
        )

    def __getstate__(self):
        # the ``module`` parameter is the initialised ``module_`` (one instance): pickle it once
        state = super().__getstate__()
        if state.get("module") is getattr(self, "module_", None):
            state["module"] = None
            state["_module_is_module_"] = True
        state["_torch_version"] = str(torch.__version__)  # named if another torch cannot read the tensors
        return state

    def __setstate__(self, state):
        """Unpickle; tensors saved on a device this machine lacks are loaded on one it has, with a warning.

        skorch maps the tensors to ``state["device"]`` when loading; a CUDA device is
        replaced first by ``"cpu"`` when CUDA is not available, or by ``"cuda:0"`` when the
        saved GPU index is not on this machine, and ``device`` then says where the net is.

        Raises
        ------
        RuntimeError
            If the pickled tensors cannot be loaded (e.g. written by a torch version this one
            cannot read); the message names both torch versions and the saved device.
        """
        shared = state.pop("_module_is_module_", False)
        saved_torch = state.pop("_torch_version", None)
        saved_device = state.get("device")
        state["device"] = _loadable_device(saved_device)
        name = state.get("model_name") or "the model"
        try:
            super().__setstate__(state)
        except Exception as exc:
            raise RuntimeError(
                f"Cannot load the pickled {name}: its torch tensors (saved on device {saved_device!r} by torch "
                f"{saved_torch or 'unknown (an older sk_hierclust)'}) cannot be read by this torch "
                f"{torch.__version__}: {type(exc).__name__}: {exc}. Load it with the torch version that saved it "
                "(or one that reads its format), or fit the model again with this one.") from exc
        if shared:
            self.module = self.module_
        if saved_device is not None and not _same_device(saved_device, self.device):
            warnings.warn(
                f"{name} was saved on device {str(saved_device)!r}, which this machine does not have "
                f"({_missing_device_reason(saved_device)}): it is loaded on {str(self.device)!r}, and its device "
                f"is now {str(self.device)!r} (set_params(device=...) moves it).", DeviceWarning, stacklevel=2)

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param


def _same_device(a, b):
    """Whether two device specifications name the same device (``"cuda"`` is ``"cuda:0"``)."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _loadable_device(device):
    """``device``, or the device its tensors load on here: ``"cpu"`` without CUDA, ``"cuda:0"`` for a missing GPU."""
    if device is None:
        return device
    parsed = torch.device(device)
    if parsed.type != "cuda":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    if (parsed.index or 0) >= torch.cuda.device_count():
        return "cuda:0"
    return device


def _missing_device_reason(device):
    if not torch.cuda.is_available():
        return "CUDA is not available"
    return f"it has {torch.cuda.device_count()} CUDA device(s)"


class KLAnnealing(Callback):
    r"""Set the KL weight ``net.kl_weight`` (``alpha``) of every training batch; restarted at every ``partial_fit``.

    A training phase (e.g. of a growing tree) is one ``partial_fit`` call; its schedule is
    read from the net's parameters at the start of the phase
    (``net.set_params(kl_anneal_epochs=..., kl_start=..., kl_rate=...)``):

    - ``kl_rate`` None: a per-batch linear ramp from 0 to 1 over the first
      ``kl_anneal_epochs`` epochs (Manduchi et al. 2023, App. D),
      :math:`\alpha_t = \min(1, t / (E_a S))` at the ``t``-th batch (from 0) of the phase,
      ``S`` batches per epoch; ``kl_anneal_epochs=0`` means weight 1 from the start.
    - ``kl_rate`` set: a per-epoch step, :math:`\alpha_e = \min(1, \alpha_0 + e\,r)` during
      the ``e``-th epoch (from 0) of the phase, ``alpha_0 = kl_start``, ``r = kl_rate``. This
      is the authors' ``AnnealKLCallback`` (Manduchi et al. 2023, public code): the weight
      starts at ``kl_start`` and is set to ``min(1, kl_start + (e + 1) * kl_rate)`` at the end
      of epoch ``e``. A phase of ``n`` epochs trains with ``alpha_0, ..., alpha_0 + (n - 1) r``
      and reaches ``min(1, alpha_0 + n r)`` when it ends (:meth:`weight_after`; 0.15 after
      150 epochs at ``kl_rate=0.001``, a weight the authors' next phase never uses, as it
      restarts at ``kl_start``).

    The weight of every epoch's last batch is recorded as ``kl_weight`` (:class:`PhaseLog`).
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.total_steps_ = net.kl_anneal_epochs * math.ceil(X.shape[0] / net.batch_size)
        self.step_ = 0
        self.first_epoch_ = len(net.history)
        self.kl_start_, self.kl_rate_ = getattr(net, "kl_start", 0.0), getattr(net, "kl_rate", None)

    @staticmethod
    def epoch_weight(kl_start, kl_rate, epoch):
        """KL weight ``min(1, kl_start + epoch * kl_rate)`` of the ``epoch``-th epoch (from 0) of a phase."""
        return min(1.0, kl_start + epoch * kl_rate)

    def weight_after(self, n_epochs):
        """The weight the per-epoch schedule reaches at the end of ``n_epochs`` epochs (the next epoch's)."""
        return self.epoch_weight(self.kl_start_, self.kl_rate_, n_epochs)

    def on_epoch_begin(self, net, **kwargs):
        if self.kl_rate_ is not None:
            # the net's own on_epoch_begin has already opened this epoch's history row
            net.kl_weight = self.epoch_weight(self.kl_start_, self.kl_rate_, len(net.history) - 1 - self.first_epoch_)

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training and self.kl_rate_ is None:
            net.kl_weight = min(1.0, self.step_ / self.total_steps_) if self.total_steps_ else 1.0
            self.step_ += 1


def step_lr_scheduler(step_epochs, gamma):
    r"""A learning-rate step decay restarted at every phase: skorch's ``LRScheduler`` with torch's ``StepLR``.

    In the ``e``-th epoch (from 0) of every ``partial_fit`` the learning rate is
    :math:`\eta_e = \eta\, \gamma^{\lfloor e / s \rfloor}`, ``eta`` the net's ``lr``,
    ``s = step_epochs``: skorch creates the scheduler at the start of every ``partial_fit``
    on the optimizer of that phase, and ``last_epoch=-1`` starts it afresh (skorch's default
    would resume from the net's total epoch count). The rate is recorded in ``history``
    as ``lr`` by :class:`PhaseLog`. When a phase ends the callback drops its scheduler, which
    would otherwise keep that phase's optimizer (and its Adam state) in a pickled model.

    Parameters
    ----------
    step_epochs : int
        Epochs between two decays (the authors' 100).
    gamma : float
        Factor of each decay (the authors' 0.1).

    Returns
    -------
    skorch.callbacks.LRScheduler
    """
    return _PhaseLRScheduler(policy="StepLR", step_size=step_epochs, gamma=gamma, last_epoch=-1, event_name=None)


class _PhaseLRScheduler(LRScheduler):
    """skorch's ``LRScheduler``, without a reference to the optimizer once a ``partial_fit`` ends."""

    def on_train_end(self, net, **kwargs):
        self.lr_scheduler_ = None


class DivergenceGuard(Callback):
    """Stop a diverging fit with a clear ``ValueError`` (see :meth:`ELBONet.diverged`).

    Checks every training step: the total norm of the gradients is finite (else names the
    first parameter whose gradient is not), and the batch loss is not more than ``growth``
    times the lowest batch loss of the current ``partial_fit`` (at least 1 nat). Non-finite
    ELBO terms are caught by :meth:`ELBONet.get_loss`.

    Parameters
    ----------
    growth : float, default=1e4
        Allowed growth of the loss over its lowest value in the phase.
    """

    def __init__(self, growth=1e4):
        self.growth = growth

    def on_train_begin(self, net, **kwargs):
        self.lowest_ = math.inf

    def on_grad_computed(self, net, named_parameters, **kwargs):
        named = [(name, p.grad) for name, p in named_parameters if p.grad is not None]
        if named and not torch.isfinite(torch.nn.utils.get_total_norm([g for _, g in named])):
            bad = next((name for name, g in named if not torch.isfinite(g).all()), None)
            net.diverged("the gradients became so large that their norm overflowed" if bad is None
                         else f"the gradient of the parameter {bad!r} became non-finite")

    def on_batch_end(self, net, training=False, loss=None, **kwargs):
        if not training:
            return
        value = float(loss.detach())
        if self.lowest_ < math.inf and value > self.growth * max(abs(self.lowest_), 1.0):
            net.diverged(f"the loss grew from {self.lowest_:.4g} (its lowest in this phase) to {value:.4g}")
        self.lowest_ = min(self.lowest_, value)


class GeometricAnnealing(Callback):
    """Set a module attribute each epoch, from ``start`` to ``end`` geometrically over ``n_epochs``.

    Used for the Gumbel-softmax temperature of VLAC (Jang et al. 2017 anneal it the same
    way); the value of each epoch is recorded in ``history`` under ``attribute``.

    Parameters
    ----------
    attribute : str
        Attribute of ``net.module_`` to set.
    start, end : float
        Values at the first and at the ``n_epochs``-th epoch (and after), both > 0.
    n_epochs : int
    """

    def __init__(self, attribute, start, end, n_epochs):
        self.attribute, self.start, self.end, self.n_epochs = attribute, start, end, n_epochs

    def on_epoch_begin(self, net, **kwargs):
        progress = min(1.0, (len(net.history) - 1) / max(1, self.n_epochs - 1))
        value = self.start * (self.end / self.start) ** progress
        setattr(net.module_, self.attribute, value)
        net.history.record(self.attribute, value)


class PhaseLog(Callback):
    """Record, per epoch, the training phase (``net.phase``), the learning rate and the last KL weight.

    ``lr`` is the learning rate of the optimizer's first parameter group during the epoch
    (read when the epoch begins, after any scheduler's step of the previous epoch);
    ``kl_weight`` the weight of the epoch's last batch.
    """

    def on_epoch_begin(self, net, **kwargs):
        optimizer = getattr(net, "optimizer_", None)
        if optimizer is not None and optimizer.param_groups:
            net.history.record("lr", optimizer.param_groups[0]["lr"])

    def on_epoch_end(self, net, **kwargs):
        net.history.record("phase", net.phase)
        net.history.record("kl_weight", net.kl_weight)


class PhasePrinter(Callback):
    """Print each training phase: its name and size when it starts, its epochs and time when it ends.

    The phase is the net's ``phase``, which the estimator sets before each phase's
    ``partial_fit``; it is also recorded in the estimator's ``history_``. The command line
    shows it unless ``--quiet``.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.first_epoch_ = len(net.history)
        self.start_ = time.perf_counter()
        print(f"phase {net.phase}: training on {X.shape[0]} samples", flush=True)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        n_epochs = len(net.history) - self.first_epoch_
        print(f"phase {net.phase}: {n_epochs} epoch{'s' * (n_epochs != 1)} in "
              f"{time.perf_counter() - self.start_:.1f} s", flush=True)


class PhaseProgressBar(ProgressBar):
    """skorch's :class:`~skorch.callbacks.ProgressBar` over an epoch's batches, labelled "<phase> epoch <k>"."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.first_epoch_ = len(net.history)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        self.pbar_.set_description(f"{net.phase} epoch {len(net.history) - self.first_epoch_}")
