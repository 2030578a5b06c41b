"""The ``"conv_pool"`` encoder and node-stacked decoder (issue 14: the HTVAE paper's architecture)."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose

from sk_hierclust._testing import FAST_PARAMS, QUICK_PARAMS
from sk_hierclust.datasets import load_digits
from sk_hierclust.nn.encoders import NodeConvPoolDecoder, make_encoder, make_node_decoders
from sk_hierclust.nn.layers import take_nodes

LATENT = 5


def _decoder(n_nodes, shape, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dec = make_node_decoders("conv_pool", n_nodes, LATENT, int(np.prod(shape)), shape).double()
        with torch.no_grad():  # batch-norm affine parameters as after training
            dec.linear_norm.weight.uniform_(0.5, 1.5)
            dec.linear_norm.bias.normal_()
    return dec


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 8, 8), (2, 10, 14), (1, 5, 7)])
def test_shapes(shape):
    n_features = int(np.prod(shape))
    encoder = make_encoder("conv_pool", n_features, shape, hidden_dims=(64, 24))
    assert encoder.out_features == 24
    assert encoder(torch.rand(6, n_features)).shape == (6, 24)
    assert make_encoder("conv_pool", n_features, shape).out_features == 128  # hidden_dims[-1] by default
    decoder = make_node_decoders("conv_pool", 3, LATENT, n_features, shape)
    assert isinstance(decoder, NodeConvPoolDecoder)
    assert decoder(torch.randn(3, 6, LATENT)).shape == (3, 6, n_features)


def test_architecture():
    encoder = make_encoder("conv_pool", 784, (1, 28, 28))
    convs = [m for m in encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == \
        [(1, 32, (3, 3), (1, 1), (1, 1)), (32, 64, (3, 3), (1, 1), (1, 1))]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in encoder) == 2
    decoder = make_node_decoders("conv_pool", 1, LATENT, 784, (1, 28, 28))
    assert [tuple(w.shape) for w in decoder.weights] == [(1, 32, 64, 3, 3), (1, 1, 32, 3, 3)]
    assert (decoder.hs, decoder.ws) == ([7, 14, 28], [7, 14, 28])


def test_divisible_sizes_upsample_by_exactly_two():
    """For H, W divisible by 4 the decoder equals nn.Upsample(scale_factor=2, mode='bilinear') + conv."""
    dec = _decoder(2, (1, 8, 12)).eval()
    z = torch.randn(2, 4, LATENT, dtype=torch.float64)
    with torch.no_grad():
        out = dec(z)
        x = F.leaky_relu(dec.linear_norm(dec.linear(z)), 0.3).transpose(0, 1).reshape(4, -1, 2, 3)
        up = torch.nn.Upsample(scale_factor=2, mode="bilinear")
        for i, (w, b) in enumerate(zip(dec.weights, dec.biases)):
            x = F.conv2d(up(x), w.flatten(0, 1), b.flatten(), padding=1, groups=2)
            x = F.relu(x) if i == 0 else x
    assert_allclose(out.numpy(), x.reshape(4, 2, -1).transpose(0, 1).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [False, True])
def test_rows_selection_equals_selecting_after_the_full_pass(training):
    dec = _decoder(4, (2, 10, 14)).train(training)
    z = torch.randn(4, 7, LATENT, dtype=torch.float64)
    with torch.no_grad():
        full = dec(z)
        assert_allclose(dec(z[1:3], slice(1, 3)).numpy(), full[1:3].numpy(), rtol=1e-12, atol=1e-12)
        rows = torch.tensor([3, 0])
        assert_allclose(dec(z[rows], rows).numpy(), full[rows].numpy(), rtol=1e-12, atol=1e-12)
        assert_allclose(take_nodes(dec, [2])(z[2:3]).numpy(), full[2:3].numpy(), rtol=1e-12, atol=1e-12)


def test_nodes_are_independent():
    """Changing one node's weights changes only that node's output."""
    dec = _decoder(3, (1, 8, 8)).eval()
    z = torch.randn(3, 5, LATENT, dtype=torch.float64)
    with torch.no_grad():
        before = dec(z)
        for p in (dec.weights[0], dec.weights[1], dec.biases[1], dec.linear.weight):
            p[1].add_(0.5)
        after = dec(z)
    assert_allclose(after[[0, 2]].numpy(), before[[0, 2]].numpy(), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(after[1], before[1])


@pytest.mark.parametrize("cls", list(FAST_PARAMS), ids=lambda c: c.__name__)
def test_tiny_fit_of_every_model(cls):
    X, _ = load_digits()
    X = X[:100] / 16.0
    params = {**FAST_PARAMS[cls], **QUICK_PARAMS[cls]}
    params = {k: (1 if k.startswith("n_epochs") else v) for k, v in params.items()}
    model = cls(**params, encoder="conv_pool", input_shape=(1, 8, 8)).fit(X)
    assert model.encoder_ == "conv_pool"
    assert model.predict(X).shape == (100,)


def test_validation():
    from sk_hierclust import HTVAE

    X = np.random.RandomState(0).rand(20, 64)
    with pytest.raises(ValueError, match="needs input_shape"):
        HTVAE(encoder="conv_pool").fit(X)
    with pytest.raises(ValueError, match="values but X has"):
        HTVAE(encoder="conv_pool", input_shape=(1, 4, 4)).fit(X)
    with pytest.raises(ValueError, match="at least 4"):
        HTVAE(encoder="conv_pool", input_shape=(1, 2, 32)).fit(X)


@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 10, 14), (1, 5, 7)])
def test_reassociated_upsample_conv_equals_interpolate_then_conv2d(shape):
    """The decoder's channel-mix-first evaluation is F.interpolate + F.conv2d, values and gradients."""
    dec = _decoder(3, shape).train()
    z = torch.randn(3, 6, LATENT, dtype=torch.float64, requires_grad=True)
    ref_dec = copy.deepcopy(dec)

    def reference(z):
        n, batch = z.shape[:2]
        x = F.leaky_relu(ref_dec.linear_norm(ref_dec.linear(z)), 0.3)
        x = x.transpose(0, 1).reshape(batch, -1, ref_dec.hs[0], ref_dec.ws[0])
        for i, (w, b) in enumerate(zip(ref_dec.weights, ref_dec.biases)):
            x = F.interpolate(x, size=(ref_dec.hs[i + 1], ref_dec.ws[i + 1]), mode="bilinear", align_corners=False)
            x = F.conv2d(x, w.flatten(0, 1), b.flatten(), padding=1, groups=n)
            x = F.relu(x) if i == 0 else x
        return x.reshape(batch, n, -1).transpose(0, 1)

    out, ref = dec(z), reference(z)
    assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-11, atol=1e-12)
    weights = torch.randn(out.shape, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), [z, *dec.parameters()])
    ref_grads = torch.autograd.grad((ref * weights).sum(), [z, *ref_dec.parameters()])
    for g, r in zip(grads, ref_grads):
        assert_allclose(g.numpy(), r.numpy(), rtol=1e-10, atol=1e-11)
    assert set(dict(dec.named_buffers())) == set(dict(ref_dec.named_buffers()))  # no new (non-node-first) buffers
