"""The packed passes of TreeVAE training (node networks) against dense references, and the leaf decoders.

In training mode (``leaf_prob_threshold > 0``) each node's routers and posterior networks
run only on the samples that reach the node with probability at least the threshold
(:func:`sk_hierclust.nn.layers.apply_to_pairs`); the reference runs them on the whole batch
with the other samples' batch-norm weights set to 0 and their outputs zeroed. Both run in
float64 on random trees and must give the same loss, gradients and running statistics up to
rounding. The leaf decoders run on every sample whatever the routing
(``TreeVAEModule.expected_nll``).
"""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose, assert_array_equal

from sk_hierclust.models import treevae
from sk_hierclust.models.treevae import TreeVAEModule
from sk_hierclust.nn.encoders import _ConvTranspose2d, make_node_decoders
from sk_hierclust.nn.layers import NodeBatchNorm, NodeMLP, PairLayout, apply_to_pairs, take_nodes
from sk_hierclust.nn.losses import negative_log_likelihood

IMAGE = (2, 10, 14)  # two channels, odd and even sizes: every output_padding case of the decoder
FEATURES = int(np.prod(IMAGE))
LATENT = 3
HIDDEN = (12, 10, 8)  # the MLP decoder is 3 -> 8 -> 10 -> 12 -> D


def _decoders(kind, n_leaves, seed):
    """Float64 decoders in training mode, batch-norm affine parameters random as after training."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        decoders = make_node_decoders(kind, n_leaves, LATENT, FEATURES, IMAGE, HIDDEN).double().train()
        with torch.no_grad():
            for name, p in decoders.named_parameters():
                if "norm" in name:
                    p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_()
    return decoders


def _routing(rng, n_leaves, batch):
    """Leaf probabilities ``(n_leaves, B)`` as trained routers give: mostly one leaf per sample.

    Leaf 0 reaches no sample (probabilities about e^-50), leaf 1 exactly one; the others
    random shares.
    """
    logits = rng.normal(scale=4.0, size=(n_leaves, batch))
    logits[0] = -50.0
    logits[1] = -50.0
    logits[1, rng.randint(batch)] = 50.0
    p = np.exp(logits - logits.max(0))
    return torch.as_tensor(p / p.sum(0))


def _data(rng, likelihood, batch):
    x = rng.uniform(size=(batch, FEATURES)) if likelihood == "bernoulli" else rng.normal(size=(batch, FEATURES))
    return torch.as_tensor(x)


def _assert_same_gradients(grads, ref_grads, names):
    """Equal up to float64 rounding: relative 1e-10, absolute 1e-12 of the largest gradient.

    (Some gradients are 0 analytically, e.g. of a bias just before a batch norm, and their
    rounding noise scales with the rest.)
    """
    scale = max(1.0, *(float(r.abs().max()) for r in ref_grads if r is not None and r.numel()))
    for name, g, r in zip(names, grads, ref_grads):
        if r is None:
            assert g is None, name
            continue
        assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-12 * scale, err_msg=name)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_decoders_run_on_every_sample_whatever_the_routing(kind):
    """In training, ``expected_nll`` is ``sum_j P_j nll_j`` with every decoder on the whole batch.

    One decoder call for all leaves, and the decoders' batch-norm statistics (running buffers
    and outputs) are the same for any routing, even one that gives a leaf no sample.
    """
    rng = np.random.RandomState(0)
    owner = SimpleNamespace(likelihood="bernoulli")
    z = torch.as_tensor(rng.normal(size=(4, 30, LATENT)))
    x = _data(rng, "bernoulli", 30)
    results = []
    for routing in (_routing(rng, 4, 30), torch.full((4, 30), 0.25, dtype=torch.float64)):
        decoders, reference = _decoders(kind, 4, 0), _decoders(kind, 4, 0)
        calls = []
        decoders.register_forward_hook(lambda *args: calls.append(1))
        rec = TreeVAEModule.expected_nll(owner, x, z, routing, decoders)
        expected = (routing * negative_log_likelihood(x, reference(z), "bernoulli")).sum(0)
        assert len(calls) == 1
        assert_allclose(rec.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
        results.append([b.clone() for b in decoders.buffers()])
    for b, r in zip(*results):
        assert_array_equal(b.numpy(), r.numpy())


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("training", [True, False])
def test_grouped_pass_equals_each_group_alone(kind, training):
    """``n_groups``: row ``g`` is the expected NLL of the ``g``-th group of leaves on its own.

    (The candidate sub-trees of a growth phase: one packed pass for all of them.)
    """
    rng = np.random.RandomState(3)
    n_groups, per_group, batch = 3, 3, 30
    owner = SimpleNamespace(likelihood="bernoulli")
    decoders = _decoders(kind, n_groups * per_group, 3).train(training)
    z = torch.as_tensor(rng.normal(size=(n_groups * per_group, batch, LATENT)))
    probs = torch.cat([_routing(rng, per_group, batch) for _ in range(n_groups)])  # each group sums to 1
    x = _data(rng, "bernoulli", batch)
    rec = TreeVAEModule.expected_nll(owner, x, z, probs, copy.deepcopy(decoders), n_groups=n_groups)
    assert rec.shape == (n_groups, batch)
    for g in range(n_groups):
        rows = list(range(per_group * g, per_group * (g + 1)))
        alone = TreeVAEModule.expected_nll(owner, x, z[rows], probs[rows], take_nodes(decoders, rows))
        assert_allclose(rec[g].detach().numpy(), alone.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert not np.allclose(rec[0].detach().numpy(), rec[1].detach().numpy())


def test_layout_packs_each_node_in_its_row():
    mask = torch.zeros(4, 30, dtype=torch.bool)
    mask[0, :23] = True
    mask[2, 5:9] = True
    mask[3, ::3] = True  # 10 pairs
    layout = PairLayout(mask)
    assert (layout.capacity, layout.n_pairs) == (23, 37)
    values = torch.arange(4 * 30.0).reshape(4, 30, 1)
    packed = layout.pack(values)
    assert packed.shape == (4, 23, 1)
    assert_array_equal(layout.unpack(packed)[:, 0].numpy(), values[mask][:, 0].numpy())
    real = torch.arange(23) < mask.sum(1)[:, None]
    assert (packed[~real] == 0).all() and int(real.sum()) == 37
    assert_array_equal(torch.stack([layout.node, layout.sample]).numpy(), torch.stack(mask.nonzero(as_tuple=True)))


def _random_tree_module(kind, likelihood, n_splits, seed, threshold):
    """A float64 training-mode module split at random leaves, routers sharpened as after training."""
    rng = np.random.RandomState(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = TreeVAEModule(FEATURES, LATENT, 4, likelihood, kind, IMAGE, threshold, hidden_dims=(16, 8))
        for _ in range(n_splits):
            leaves = [v for v in module.leaf_slots if module.depth(v) < 4]
            module.start_split(leaves[rng.randint(len(leaves))])
            module.commit_split()
        with torch.no_grad():
            module.router_q.linears[-1].weight.mul_(30.0)
    return module.double().train()


def _training_pass(module, x, seed):
    """Terms of ``module(x)`` (reparameterisation noise seeded) and the gradients of their sum."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        terms = module(x)
    params = [p for p in module.parameters() if p.requires_grad]
    return terms, torch.autograd.grad(sum(t.sum() for t in terms.values()), params, allow_unused=True)


def _assert_same_training_pass(module, result, reference):
    """Two :func:`_training_pass` results agree: every term and gradient, up to float64 rounding."""
    (terms, grads), (ref_terms, ref_grads) = result, reference
    assert set(terms) == set(ref_terms)
    for name in terms:
        assert_allclose(np.asarray(terms[name].detach()), np.asarray(ref_terms[name].detach()), rtol=1e-12,
                        atol=1e-12, err_msg=name)
    _assert_same_gradients(grads, ref_grads, [name for name, p in module.named_parameters() if p.requires_grad])


def _dense_masked(net, x, rows, pairs=None, weights=None):
    """The reference of ``apply_to_pairs``: ``net`` on every pair, unselected pairs weighted 0 and zeroed.

    Contiguous, as ``apply_to_pairs``'s output (``randn_like`` of a tensor computed from it
    draws its noise in memory order).
    """
    if pairs is None:
        return apply_to_pairs(net, x, rows, None, weights)
    mask = pairs.mask
    out = net(x, rows) if weights is None else net(x, rows, weights * mask)
    return (out * mask[..., None]).contiguous()


@pytest.mark.parametrize("shared", [False, True])
def test_pairs_of_a_node_stack_equal_the_masked_dense_pass(shared):
    """``apply_to_pairs``: outputs, gradients and running statistics of the dense pass with 0 weights."""
    rng = np.random.RandomState(0)
    torch.manual_seed(0)
    net = NodeMLP(5, (4, 6, 3)).double().train()
    with torch.no_grad():
        net.norms[0].weight.uniform_(0.5, 1.5)
        net.norms[0].bias.normal_()
    reference = copy.deepcopy(net)
    rows = torch.tensor([3, 0, 4])
    x = torch.as_tensor(rng.normal(size=(9, 4) if shared else (3, 9, 4))).requires_grad_()
    weights = torch.as_tensor(rng.uniform(size=(3, 9)))
    mask = torch.as_tensor(rng.uniform(size=(3, 9)) < 0.5)
    mask[2] = False  # a node no sample reaches keeps its running statistics
    grad = torch.as_tensor(rng.normal(size=(3, 9, 3)))
    out = apply_to_pairs(net, x, rows, PairLayout(mask), weights)
    expected = _dense_masked(reference, x, rows, PairLayout(mask), weights)
    assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert_array_equal(out.detach().numpy()[~mask.numpy()], 0.0)
    got = torch.autograd.grad(out, [x, *net.parameters()], grad)
    ref = torch.autograd.grad(expected, [x, *reference.parameters()], grad)
    _assert_same_gradients(got, ref, ["x", *(name for name, _ in net.named_parameters())])
    for (name, b), r in zip(net.named_buffers(), reference.buffers()):
        assert_allclose(b.numpy(), r.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
    assert_array_equal(net.norms[0].running_mean[[1, 2, 4]].numpy(), 0.0)  # node 4 (row 2) unreached
    assert_array_equal(net.norms[0].running_var[4].numpy(), 1.0)


@pytest.mark.parametrize("kind, seed", [("mlp", 0), ("conv", 1)])
def test_module_node_networks_run_on_the_reached_pairs(kind, seed, monkeypatch):
    """Whole training pass of random trees: node networks on the reached pairs, as in the masked dense pass."""
    rng = np.random.RandomState(seed)
    module = _random_tree_module(kind, "bernoulli", rng.randint(3, 5), seed, 1e-2)
    reference = copy.deepcopy(module)
    x = _data(rng, "bernoulli", 48)
    dropped = []

    def sparse(net, x, rows, pairs=None, weights=None):
        dropped.append(0 if pairs is None else pairs.mask.numel() - pairs.n_pairs)
        return apply_to_pairs(net, x, rows, pairs, weights)

    monkeypatch.setattr(treevae, "apply_to_pairs", sparse)
    result = _training_pass(module, x, seed)
    monkeypatch.setattr(treevae, "apply_to_pairs", _dense_masked)
    _assert_same_training_pass(module, result, _training_pass(reference, x, seed))
    for (name, b), r in zip(module.named_buffers(), reference.buffers()):
        assert_allclose(b.numpy(), r.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
    assert max(dropped) > 0  # some node skipped some samples


# ---- the building blocks against plain torch ---------------------------------------------
def _plain_batch_norm(x, weight, bias, weights=None):
    """The batch norm of ``x`` ``(n, B, C)`` written out with autograd (the former NodeBatchNorm)."""
    if weights is None:
        mean, var = x.mean(1), x.var(1, unbiased=False)
    else:
        w = weights.unsqueeze(-1) / (weights.sum(1, keepdim=True).unsqueeze(-1) + 1e-12)
        mean = (w * x).sum(1)
        var = (w * (x - mean.unsqueeze(1)).square()).sum(1)
    out = (x - mean.unsqueeze(1)) * (weight * torch.rsqrt(var + 1e-5)).unsqueeze(1) + bias.unsqueeze(1)
    return out, mean, var


@pytest.mark.parametrize("weighted", [False, True])
def test_node_batch_norm_equals_plain_formula(weighted):
    """Outputs, gradients and running statistics of the hand-written backward, on node rows."""
    rng = np.random.RandomState(0)
    norm = NodeBatchNorm(5, 4).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    rows = torch.tensor([3, 0, 4])
    x = torch.as_tensor(rng.normal(size=(3, 9, 4)) * 3 + 1).requires_grad_()
    weights = torch.as_tensor(rng.uniform(size=(3, 9))) if weighted else None
    grad = torch.as_tensor(rng.normal(size=(3, 9, 4)))
    out = norm(x, rows, weights)
    got = torch.autograd.grad(out, [x, norm.weight, norm.bias], grad)
    weight, bias = norm.weight.detach().clone().requires_grad_(), norm.bias.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    expected, mean, var = _plain_batch_norm(x_ref, weight[rows], bias[rows], weights)
    ref = torch.autograd.grad(expected, [x_ref, weight, bias], grad)
    assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for g, r in zip(got, ref):
        assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-12)
    unbiased = var * 9 / 8 if weights is None else var
    assert_allclose(norm.running_mean[rows].numpy(), 0.1 * mean.detach().numpy(), rtol=1e-12, atol=1e-15)
    assert_allclose(norm.running_var[rows].numpy(), 0.9 + 0.1 * unbiased.detach().numpy(), rtol=1e-12)
    assert_array_equal(norm.running_mean[[1, 2]].numpy(), 0.0)  # other nodes untouched


@pytest.mark.parametrize("size, groups", [((7, 5), 1), ((14, 10), 3)])
def test_conv_transpose_equals_torch(size, groups):
    """The decoders' transposed convolution (as the adjoint of conv2d) against ``F.conv_transpose2d``."""
    rng = np.random.RandomState(1)
    h, w = (size[0] + 1) // 2, (size[1] + 1) // 2
    x = torch.as_tensor(rng.normal(size=(4, groups * 3, h, w))).requires_grad_()
    weight = torch.as_tensor(rng.normal(size=(groups * 3, 2, 3, 3))).requires_grad_()
    bias = torch.as_tensor(rng.normal(size=groups * 2)).requires_grad_()
    out = _ConvTranspose2d.apply(x, weight, bias, [2, 2], groups, size)
    expected = F.conv_transpose2d(x, weight, bias, stride=2, padding=1, groups=groups,
                                  output_padding=(size[0] - 2 * h + 1, size[1] - 2 * w + 1))
    assert out.shape == expected.shape == (4, groups * 2, *size)
    assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad = torch.as_tensor(rng.normal(size=out.shape))
    for g, r in zip(torch.autograd.grad(out, [x, weight, bias], grad),
                    torch.autograd.grad(expected, [x, weight, bias], grad)):
        assert_allclose(g.numpy(), r.numpy(), rtol=1e-12, atol=1e-12)
