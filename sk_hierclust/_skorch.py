"""The skorch pieces every model trains with: an ELBO-minimising ``NeuralNet`` and its callbacks."""

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback


class ELBONet(NeuralNet):
    """A skorch ``NeuralNet`` whose module returns a dict of per-sample negative-ELBO terms.

    The loss is the batch mean of ``sum(terms)``, the terms whose name starts with ``"kl"``
    multiplied by the annealing weight :attr:`kl_weight` (set by :class:`KLAnnealing`)
    during training. Each term's batch mean is recorded in ``history`` and checked: a
    non-finite term raises ``ValueError`` naming the term and the epoch. Parameters with
    ``requires_grad=False`` (frozen parts of a growing tree) are left out of the optimizer.

    Raises
    ------
    ValueError
        From :meth:`get_loss`, when a term of the ELBO is NaN or infinite.
    """

    kl_weight = 1.0
    phase = "train"

    def get_loss(self, y_pred, y_true=None, X=None, training=False):
        weight = self.kl_weight if training else 1.0
        loss = 0.0
        for name, term in y_pred.items():
            value = term.mean()
            if not torch.isfinite(value):
                raise ValueError(
                    f"The ELBO diverged: its term {name!r} became {value.item()} in epoch "
                    f"{len(self.history)} (training phase {self.phase!r}). Lower the learning rate, "
                    "or scale X (e.g. MinMaxScaler to [0, 1], or StandardScaler)."
                )
            if training:
                self.history.record_batch(name, value.item())
            loss = loss + (weight * value if name.startswith("kl") else value)
        return loss

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param


class KLAnnealing(Callback):
    """Raise the KL weight linearly from 0 to 1 over the first ``n_epochs`` of every ``partial_fit``.

    The weight is updated before every training batch (Manduchi et al. 2023, App. D; a
    training phase of a growing tree is one ``partial_fit`` call).

    Parameters
    ----------
    n_epochs : float
        Length of the ramp in epochs; 0 means weight 1 from the start.
    """

    def __init__(self, n_epochs=1):
        self.n_epochs = n_epochs

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.total_steps_ = self.n_epochs * math.ceil(X.shape[0] / net.batch_size)
        self.step_ = 0

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            net.kl_weight = min(1.0, self.step_ / self.total_steps_) if self.total_steps_ else 1.0
            self.step_ += 1


class ELBOTerms(Callback):
    """Record, per epoch, the training phase, the KL weight and the size-weighted mean of every ELBO term."""

    def on_epoch_end(self, net, **kwargs):
        batches = [b for b in net.history[-1, "batches"] if "train_batch_size" in b]
        sizes = np.array([b["train_batch_size"] for b in batches], dtype=float)
        for key in batches[0]:
            if key not in ("train_loss", "train_batch_size"):
                net.history.record(key, float(np.dot(sizes, [b[key] for b in batches]) / sizes.sum()))
        net.history.record("phase", net.phase)
        net.history.record("kl_weight", net.kl_weight)
