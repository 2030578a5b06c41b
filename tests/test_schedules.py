"""The training schedules of the skorch layer: the KL weight and the learning rate per epoch.

The authors' schedule (Manduchi et al. 2023, public code) is checked at their epoch counts on
a dummy net (a history and an optimizer, no training); the callbacks' restart at every
training phase on a tiny real :class:`~sk_hierclust._skorch.ELBONet`.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skorch.history import History

from sk_hierclust._skorch import ELBONet, KLAnnealing, PhaseLog, step_lr_scheduler


def _dummy_net(kl_start=0.0, kl_rate=None, kl_anneal_epochs=0, batch_size=256, lr=1e-3):
    param = torch.nn.Parameter(torch.zeros(1))
    return SimpleNamespace(history=History(), kl_weight=1.0, kl_start=kl_start, kl_rate=kl_rate,
                           kl_anneal_epochs=kl_anneal_epochs, batch_size=batch_size, phase="train",
                           optimizer_=torch.optim.Adam([param], lr=lr))


def _run_phase(net, callbacks, n_epochs, n_samples=512):
    """Drive the callbacks through one phase as skorch does: train begin, then epochs of batches.

    Returns the KL weight of every batch, ``(n_epochs, n_batches)``.
    """
    X = np.zeros((n_samples, 1))
    n_batches = math.ceil(n_samples / net.batch_size)
    for cb in callbacks:
        cb.on_train_begin(net, X=X)
    weights = []
    for _ in range(n_epochs):
        net.history.new_epoch()  # the net's own on_epoch_begin
        for cb in callbacks:
            cb.on_epoch_begin(net)
        epoch = []
        for _ in range(n_batches):
            for cb in callbacks:
                cb.on_batch_begin(net, training=True)
            epoch.append(net.kl_weight)
            net.optimizer_.step()
        for cb in callbacks:
            cb.on_epoch_end(net)
        weights.append(epoch)
    return np.array(weights)


# ---- the KL weight ---------------------------------------------------------------------
def test_authors_kl_schedule_in_a_growth_phase():
    """kl_start 0, 0.001 per epoch over 150 epochs: 0, 0.001, ..., 0.149 during it, 0.15 at its end."""
    net, kl = _dummy_net(kl_start=0.0, kl_rate=0.001), KLAnnealing()
    weights = _run_phase(net, [kl, PhaseLog()], 150)
    expected = [min(1.0, 0.0 + e * 0.001) for e in range(150)]
    assert np.all(weights == np.array(expected)[:, None])  # constant within an epoch
    assert [row["kl_weight"] for row in net.history] == expected
    assert weights[0, 0] == 0.0 and weights[-1, -1] == pytest.approx(0.149, abs=1e-15)
    assert kl.weight_after(150) == pytest.approx(0.15, abs=1e-15)  # what the authors' callback is left at
    assert max(expected) <= 0.15


def test_authors_kl_schedule_in_the_finetuning():
    """The fine-tuning's rate max(0.01, 1 / (200 - 1)) = 0.01: alpha reaches 1 in epoch 100 (from 0)."""
    rate = max(0.01, 1 / max(1, 200 - 1))
    assert rate == 0.01
    net = _dummy_net(kl_start=0.0, kl_rate=rate)
    _run_phase(net, [KLAnnealing(), PhaseLog()], 200, n_samples=300)
    weights = [row["kl_weight"] for row in net.history]
    assert weights == [min(1.0, e * 0.01) for e in range(200)]
    assert weights[99] < 1.0 and weights[100] == 1.0 and weights[-1] == 1.0


def test_kl_schedule_restarts_every_phase_and_starts_at_kl_start():
    net, kl = _dummy_net(kl_start=0.2, kl_rate=0.3), KLAnnealing()
    first = _run_phase(net, [kl], 4)[:, 0]
    second = _run_phase(net, [kl], 2)[:, 0]
    assert first.tolist() == [0.2, 0.5, min(1.0, 0.2 + 2 * 0.3), 1.0]
    assert second.tolist() == first[:2].tolist()


def test_per_batch_ramp_without_kl_rate():
    """kl_rate None: the linear per-batch ramp over kl_anneal_epochs (the default schedule)."""
    net = _dummy_net(kl_anneal_epochs=2, batch_size=100)
    weights = _run_phase(net, [KLAnnealing()], 3, n_samples=350)  # 4 batches per epoch, a ramp of 8
    assert weights.ravel().tolist() == [min(1.0, t / 8) for t in range(12)]
    net = _dummy_net(kl_anneal_epochs=0)
    assert np.all(_run_phase(net, [KLAnnealing()], 2) == 1.0)


# ---- the learning rate -----------------------------------------------------------------
def test_step_decay_per_epoch_and_restart():
    """lr_e = lr * gamma ** (e // step), recorded as ``lr``; a new phase (a new optimizer) starts again."""
    net = _dummy_net(lr=1e-3)
    callbacks = [PhaseLog(), step_lr_scheduler(100, 0.1)]
    for cb in callbacks:
        if hasattr(cb, "initialize"):
            cb.initialize()
    _run_phase(net, callbacks, 250, n_samples=1)
    lrs = [row["lr"] for row in net.history]
    assert lrs == pytest.approx([1e-3 * 0.1 ** (e // 100) for e in range(250)], rel=1e-12)
    assert lrs[99] == pytest.approx(1e-3) and lrs[100] == pytest.approx(1e-4) and lrs[200] == pytest.approx(1e-5)
    # the next phase: a fresh optimizer (as every phase has), the scheduler created on it anew
    net.optimizer_ = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    _run_phase(net, callbacks, 101, n_samples=1)
    lrs = [row["lr"] for row in net.history[250:]]
    assert lrs[0] == 1e-3 and lrs[99] == 1e-3 and lrs[100] == pytest.approx(1e-4)


# ---- a real net: phases set through net.set_params ------------------------------------
class _Toy(torch.nn.Module):
    elbo_terms = ("rec", "kl")
    annealed_terms = ("kl",)

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 3)

    def forward(self, x):
        return {"rec": (self.linear(x) - x).square().sum(1), "kl": self.linear.weight.square().sum().expand(len(x))}


def test_phases_on_a_real_net():
    """Each partial_fit restarts both schedules; set_params keeps the callbacks (the user's too)."""
    X = np.random.RandomState(0).normal(size=(40, 3)).astype(np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ELBONet(_Toy(), optimizer=torch.optim.Adam, lr=0.01, batch_size=10, max_epochs=0, train_split=None,
                      callbacks=[("lr_step", step_lr_scheduler(2, 0.5))]).initialize()
        scheduler = dict(net.callbacks_)["lr_step"]
        for phase, n_epochs, kl_rate in (("a", 5, 0.25), ("b", 3, None), ("c", 3, 0.5)):
            net.set_params(phase=phase, kl_anneal_epochs=2, kl_start=0.1, kl_rate=kl_rate)
            net.initialize_optimizer()
            net.partial_fit(X, epochs=n_epochs)
    assert dict(net.callbacks_)["lr_step"] is scheduler  # not re-initialised by set_params
    rows = list(net.history)
    assert [r["phase"] for r in rows] == ["a"] * 5 + ["b"] * 3 + ["c"] * 3
    assert [r["kl_weight"] for r in rows[:5]] == [0.1, 0.35, 0.6, 0.85, 1.0]
    assert [r["kl_weight"] for r in rows[5:8]] == [3 / 8, 7 / 8, 1.0]  # per batch: 4 batches, ramp of 8
    assert [r["kl_weight"] for r in rows[8:]] == [0.1, 0.6, 1.0]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025,
                                                     0.01, 0.01, 0.005, 0.01, 0.01, 0.005])
