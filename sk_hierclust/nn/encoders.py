"""Encoder and node-stacked decoder factories: ``"mlp"`` for feature vectors, ``"conv"``, ``"conv_pool"`` for images."""

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LEAKY_SLOPE, NodeBatchNorm, NodeLinear, NodeMLP, dense_block, node_rows

#: Widths of the MLP encoder after the input when ``hidden_dims`` is None; the last is its output.
DEFAULT_HIDDEN_DIMS = (512, 512, 256, 128)
CONV_CHANNELS = (8, 16, 32)
#: Channels of the two convolutions of the ``"conv_pool"`` encoder (the decoder mirrors them).
POOL_CHANNELS = (32, 64)


def _conv_sizes(size):
    """Spatial sizes through the stride-2, kernel-3, padding-1 convolutions, input first."""
    sizes = [size]
    for _ in CONV_CHANNELS:
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


def _pool_sizes(size):
    """Spatial sizes through the ``"conv_pool"`` encoder's two 2x2 max-poolings (floor), input first."""
    if size < 4:
        raise ValueError(f"encoder='conv_pool' needs images of height and width at least 4, got {size}.")
    return [size, size // 2, size // 4]


def make_encoder(kind, n_features, input_shape=None, hidden_dims=None):
    """Build the shared encoder ``x -> d_H`` (every model's first network).

    Parameters
    ----------
    kind : {"mlp", "conv", "conv_pool"}
        ``"mlp"``: ``D -> 512 -> 512 -> 256 -> 128`` by default (Linear, BatchNorm,
        LeakyReLU(0.3)). ``"conv"``: three ``Conv2d`` (channels 8, 16, 32; kernel 3, stride
        2, padding 1; BatchNorm, LeakyReLU), flattened, then a dense block to
        ``hidden_dims[-1]`` (128 by default; Manduchi et al. 2023, App. D). ``"conv_pool"``
        (the HTVAE paper's architecture): ``Conv2d(3x3, padding 1) -> ReLU -> MaxPool2d(2)``
        twice (channels :data:`POOL_CHANNELS`, 32 then 64; the pooling floors odd sizes, so
        ``H x W`` becomes ``H//4 x W//4``, which needs ``H, W >= 4``), flattened, then a dense
        block to ``hidden_dims[-1]``.
    n_features : int
        ``D``, the length of a flattened sample.
    input_shape : tuple (C, H, W), optional
        Image shape, required for ``"conv"`` and ``"conv_pool"``; ``C * H * W`` must equal
        ``n_features``.
    hidden_dims : tuple of int, optional
        Widths of the ``"mlp"`` encoder's layers after the input, the last one being the
        output (also the output width of ``"conv"`` and ``"conv_pool"``); default
        :data:`DEFAULT_HIDDEN_DIMS`.

    Returns
    -------
    nn.Sequential
        Maps ``(B, D)`` to ``(B, out_features)``; its attribute ``out_features`` is
        ``hidden_dims[-1]``, the width every model's heads read.
    """
    hidden_dims = tuple(hidden_dims or DEFAULT_HIDDEN_DIMS)
    if kind == "mlp":
        widths = (n_features, *hidden_dims)
        encoder = nn.Sequential(*(layer for a, b in zip(widths[:-1], widths[1:]) for layer in dense_block(a, b)))
    elif kind == "conv_pool":
        c, h, w = input_shape
        hs, ws = _pool_sizes(h), _pool_sizes(w)
        layers = [nn.Unflatten(1, (c, h, w))]
        for c_in, c_out in zip((c, *POOL_CHANNELS[:-1]), POOL_CHANNELS):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        flat = POOL_CHANNELS[-1] * hs[-1] * ws[-1]
        encoder = nn.Sequential(*layers, nn.Flatten(), *dense_block(flat, hidden_dims[-1]))
    elif kind == "conv":
        c, h, w = input_shape
        layers = [nn.Unflatten(1, (c, h, w))]
        for c_in, c_out in zip((c, *CONV_CHANNELS[:-1]), CONV_CHANNELS):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(LEAKY_SLOPE)]
        flat = CONV_CHANNELS[-1] * _conv_sizes(h)[-1] * _conv_sizes(w)[-1]
        encoder = nn.Sequential(*layers, nn.Flatten(), *dense_block(flat, hidden_dims[-1]))
    else:
        raise ValueError(f"Unknown encoder kind {kind!r}; expected 'mlp', 'conv' or 'conv_pool'.")
    encoder.out_features = hidden_dims[-1]
    return encoder


class _ConvTranspose2d(torch.autograd.Function):
    """``F.conv_transpose2d`` (kernel 3, padding 1) computed as the adjoint of ``conv2d``.

    The transposed convolution is the input gradient of the convolution with the same
    weight, and its gradients are that convolution and its weight gradient; on the CPU these
    (``aten.convolution_backward`` for the forward, ``conv2d`` for the input gradient) run
    two to three times faster than ``conv_transpose2d`` and its backward at the decoders' sizes.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, groups, out_size):
        out_shape = (x.shape[0], weight.shape[1] * groups, *out_size)
        out = torch.ops.aten.convolution_backward(x, x.new_empty(out_shape), weight, None, stride, [1, 1], [1, 1],
                                                  False, [0, 0], groups, [True, False, False])[0]
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.groups = stride, groups
        return out.add_(bias[None, :, None, None])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight, None, ctx.stride, 1, 1, ctx.groups)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.aten.convolution_backward(x, grad, weight, None, ctx.stride, [1, 1], [1, 1], False,
                                                              [0, 0], ctx.groups, [False, True, False])[1]
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None, None


class NodeConvDecoder(nn.Module):
    """Convolutional decoders of ``n_nodes`` nodes, evaluated together as grouped transposed convolutions.

    ``z (n, B, L) -> Linear -> (32, h, w) -> ConvTranspose2d x 3 (32 -> 16 -> 8 -> C, kernel 3,
    stride 2)`` mirroring the conv encoder's sizes; output ``(n, B, C*H*W)``. ``rows`` (a
    slice) selects a contiguous range of the stored nodes, all of them when None.

    Parameters
    ----------
    n_nodes : int
    latent_dim : int
    input_shape : tuple (C, H, W)
    """

    def __init__(self, n_nodes, latent_dim, input_shape):
        super().__init__()
        self.n_nodes = n_nodes
        c, h, w = input_shape
        self.input_shape = input_shape
        self.hs, self.ws = _conv_sizes(h)[::-1], _conv_sizes(w)[::-1]
        channels = (*CONV_CHANNELS[::-1], c)
        self.linear = NodeLinear(n_nodes, latent_dim, channels[0] * self.hs[0] * self.ws[0])
        self.linear_norm = NodeBatchNorm(n_nodes, channels[0] * self.hs[0] * self.ws[0])
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            conv = nn.ConvTranspose2d(c_in, c_out, 3)  # its default initialisation, per node
            self.weights.append(nn.Parameter(conv.weight.detach().expand(n_nodes, -1, -1, -1, -1).clone()))
            self.biases.append(nn.Parameter(conv.bias.detach().expand(n_nodes, -1).clone()))
        self.norms = nn.ModuleList(NodeBatchNorm(n_nodes, c_out) for c_out in channels[1:-1])

    def forward(self, z, rows=None):
        """Decode ``z`` ``(n, B, L)`` by the nodes ``rows`` (all when None) into ``(n, B, C*H*W)``."""
        n, batch = z.shape[:2]
        x = F.leaky_relu(self.linear_norm(self.linear(z, rows), rows), LEAKY_SLOPE)
        x = x.transpose(0, 1).reshape(batch, -1, self.hs[0], self.ws[0])
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            weight, bias = node_rows(weight, rows).flatten(0, 1), node_rows(bias, rows).flatten()
            x = _ConvTranspose2d.apply(x, weight, bias, [2, 2], n, (self.hs[i + 1], self.ws[i + 1]))
            if i < len(self.norms):
                x = F.leaky_relu(self.norms[i](x, rows), LEAKY_SLOPE)
        return x.reshape(batch, n, -1).transpose(0, 1)


class _BatchLast(torch.autograd.Function):
    """``x.transpose(1, 2).contiguous()`` whose gradient is made contiguous too.

    The gradient of a plain transpose is a strided view, and the element-wise backward
    passes behind it (activation, batch norm) run markedly slower on it than on contiguous
    memory.
    """

    @staticmethod
    def forward(ctx, x):
        return x.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(1, 2).contiguous()


class NodeConvPoolDecoder(nn.Module):
    """The ``"conv_pool"`` decoders of ``n_nodes`` nodes: bilinear upsampling and grouped 3x3 convolutions.

    ``z (n, B, L) -> Linear -> BatchNorm -> LeakyReLU(0.3) -> (64, H//4, W//4) -> Upsample ->
    Conv2d(64 -> 32, 3x3) -> ReLU -> Upsample -> Conv2d(32 -> C, 3x3)`` (channels
    :data:`POOL_CHANNELS` reversed; the dense block mirrors the encoder's), output ``(n, B,
    C*H*W)``, logits or means (the models' likelihood applies sigmoid or identity). The
    nodes are evaluated together, as :class:`NodeConvDecoder`: ``(n, B, ...)`` activations
    are laid out as ``(B, n * channels, h, w)`` feature maps and every convolution is one
    grouped ``conv2d`` (``groups=n``), so ``rows`` (None, a slice, or an int tensor) works
    the same.

    Sizes: each upsampling is bilinear (``align_corners=False``) to the encoder's size at
    that depth, ``H//4 -> H//2 -> H`` (likewise ``W``). For ``H`` and ``W`` divisible by 4
    this is exactly ``nn.Upsample(scale_factor=2, mode="bilinear")``; otherwise the factor is
    slightly above 2 where the encoder's pooling floored an odd size, so the output is
    always exactly ``H x W`` (no crop or pad needed).

    Parameters
    ----------
    n_nodes : int
    latent_dim : int
    input_shape : tuple (C, H, W)
        ``H, W >= 4``.
    """

    def __init__(self, n_nodes, latent_dim, input_shape):
        super().__init__()
        self.n_nodes = n_nodes
        c, h, w = input_shape
        self.input_shape = input_shape
        self.hs, self.ws = _pool_sizes(h)[::-1], _pool_sizes(w)[::-1]
        channels = (*POOL_CHANNELS[::-1], c)
        width = channels[0] * self.hs[0] * self.ws[0]
        self.linear = NodeLinear(n_nodes, latent_dim, width)
        self.linear_norm = NodeBatchNorm(n_nodes, width)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1)  # its default initialisation, per node
            self.weights.append(nn.Parameter(conv.weight.detach().expand(n_nodes, -1, -1, -1, -1).clone()))
            self.biases.append(nn.Parameter(conv.bias.detach().expand(n_nodes, -1).clone()))

    def forward(self, z, rows=None):
        """Decode ``z`` ``(n, B, L)`` by the nodes ``rows`` (all when None) into ``(n, B, C*H*W)``."""
        n, batch = z.shape[:2]
        x = F.leaky_relu(self.linear_norm(self.linear(z, rows), rows), LEAKY_SLOPE)
        # batch-last layout (n, C, h, w, B): every permutation below moves contiguous runs of >= B values
        x = _BatchLast.apply(x).view(n, -1, self.hs[0], self.ws[0], batch)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = self._upsample_conv(x, node_rows(weight, rows), node_rows(bias, rows), i)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x.reshape(n, -1, batch).transpose(1, 2)

    def _interpolation(self, i, like):
        """Bilinear upsampling ``hs[i] -> hs[i + 1]`` (and ``ws``) fused with the 3x3 kernel's shifts.

        Returns ``(Bh, Bw)``: ``Bh[H, (k, p)]`` is the weight of row ``p`` of the input in
        row ``H + k - 1`` of the upsampled map (0 outside it: the convolution's zero padding),
        the matrix ``F.interpolate(..., mode="bilinear", align_corners=False)`` applies along
        the height, shifted by the kernel row ``k``; ``Bw`` likewise along the width. Cached
        per dtype and device (plain attributes, not buffers: every buffer of a node stack is
        node-first).
        """
        key = (i, like.dtype, like.device)
        cache = self.__dict__.setdefault("_interp_cache", {})
        if key not in cache:
            mats = []
            for sizes in (self.hs, self.ws):
                small, big = sizes[i], sizes[i + 1]
                eye = torch.eye(small, dtype=torch.float64)[None, :, :, None]  # channel c: the unit vector e_c
                a = F.interpolate(eye, size=(big, 1), mode="bilinear", align_corners=False)[0, :, :, 0].T
                shifted = F.pad(a, (0, 0, 1, 1))  # rows -1 .. big of the upsampled map, zero outside
                mats.append(torch.stack([shifted[k:k + big] for k in range(3)], 1).reshape(big, 3 * small)
                            .to(like))
            cache[key] = tuple(mats)
        return cache[key]

    def _upsample_conv(self, x, weight, bias, i):
        """``conv2d(upsample(x), weight, bias, padding=1, groups=n)`` in a cheaper order, batch-last.

        ``x`` ``(n, C_in, h, w, B)``, ``weight`` ``(n, C_out, C_in, 3, 3)``, ``bias`` ``(n,
        C_out)``; returns ``(n, C_out, H, W, B)``. The convolution is a sum over the 9 kernel
        taps ``(k, l)`` of a channel mix ``weight[..., k, l]`` followed by a shift, and the
        bilinear upsampling acts on each channel alone, so it commutes with the channel mix:
        ``y = sum_kl shift_kl(A_h (W_kl x) A_w^T)``. The channel mix runs at the low
        resolution (4x fewer pixels than the convolution's), and the upsampling with the
        shifts is two small matrix products (:meth:`_interpolation`), one along the height
        (summing the kernel rows ``k``), one along the width (the columns ``l``). The same
        linear map as ``F.interpolate`` + ``F.conv2d``, up to rounding; dense matrix products
        only, so deterministic, and on the CPU several times cheaper, forward and backward,
        than the upsampling and convolution kernels at the decoders' sizes.
        """
        n, c_in, h, w, batch = x.shape
        c_out = weight.shape[1]
        big_h, big_w = self.hs[i + 1], self.ws[i + 1]
        bh, bw = self._interpolation(i, x)
        # channel mix of every tap, rows (C_out, l, k): (n, 9 C_out, C_in) @ (n, C_in, h*w*B)
        mix = weight.permute(0, 1, 4, 3, 2).reshape(n, c_out * 9, c_in)
        p = torch.bmm(mix, x.reshape(n, c_in, h * w * batch))
        # height, summing the kernel rows: (H, 3h) @ ((k, h), w*B) -> (n, C_out, l, H, w, B)
        t = torch.matmul(bh, p.view(n * c_out * 3, 3 * h, w * batch))
        # width, summing the kernel columns: (W, 3w) @ ((l, w), B) -> (n, C_out, H, W, B)
        t = t.view(n, c_out, 3, big_h, w, batch).transpose(2, 3).reshape(n * c_out * big_h, 3 * w, batch)
        t = torch.matmul(bw, t)
        return t.view(n, c_out, big_h, big_w, batch).add_(bias[:, :, None, None, None])


def make_node_decoders(kind, n_nodes, latent_dim, n_features, input_shape=None, hidden_dims=None):
    """Build the decoders ``p(x | z)`` of ``n_nodes`` nodes as one node stack.

    Parameters
    ----------
    kind : {"mlp", "conv", "conv_pool"}
        ``"mlp"`` mirrors the MLP encoder: ``L -> 128 -> 256 -> 512 -> 512 -> D``.
        ``"conv"`` is :class:`NodeConvDecoder`, ``"conv_pool"`` :class:`NodeConvPoolDecoder`.
    n_nodes, latent_dim, n_features : int
    input_shape : tuple (C, H, W), optional
        Required for ``"conv"`` and ``"conv_pool"``.
    hidden_dims : tuple of int, optional
        The ``"mlp"`` encoder's widths, mirrored (default :data:`DEFAULT_HIDDEN_DIMS`).

    Returns
    -------
    nn.Module
        Maps ``(n_nodes, B, latent_dim)`` to ``(n_nodes, B, n_features)`` (logits or means).
    """
    if kind == "mlp":
        return NodeMLP(n_nodes, (latent_dim, *tuple(hidden_dims or DEFAULT_HIDDEN_DIMS)[::-1], n_features))
    if kind == "conv_pool":
        return NodeConvPoolDecoder(n_nodes, latent_dim, input_shape)
    if kind == "conv":
        return NodeConvDecoder(n_nodes, latent_dim, input_shape)
    raise ValueError(f"Unknown decoder kind {kind!r}; expected 'mlp', 'conv' or 'conv_pool'.")
