"""Node-batched layers: one weight tensor holds the parameters of many tree nodes.

Every parameter and buffer of a *node stack* has the node as its first dimension, so the
nodes of one depth (or all leaves) are evaluated by a single batched matmul / grouped
convolution instead of a Python loop over nodes, and a stack grows or shrinks by
concatenating or selecting rows (:func:`cat_nodes`, :func:`take_nodes`, :func:`put_nodes`).
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.3
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def dense_block(n_in, n_out):
    """``[Linear(n_in, n_out), BatchNorm1d(n_out), LeakyReLU(0.3)]``: the layers of one dense block.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.

    Returns
    -------
    list of nn.Module
    """
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.LeakyReLU(LEAKY_SLOPE)]


class DenseBlock(nn.Sequential):
    """Dense blocks ``sizes[0] -> sizes[1] -> ...`` applied to the last dimension of a ``(..., in)`` tensor.

    Parameters
    ----------
    *sizes : int
        Widths, input first; one :func:`dense_block` per consecutive pair.
    """

    def __init__(self, *sizes):
        super().__init__(*(layer for a, b in zip(sizes[:-1], sizes[1:]) for layer in dense_block(a, b)))

    def forward(self, x):
        """Apply the blocks to the last dimension of ``x`` ``(..., sizes[0])``; returns ``(..., sizes[-1])``."""
        return super().forward(x.flatten(0, -2)).unflatten(0, x.shape[:-1])


class NodeLinear(nn.Module):
    """Affine maps of ``n_nodes`` nodes, ``y[i] = x[i] @ weight[i] + bias[i]``.

    Parameters
    ----------
    n_nodes : int
        Number of nodes (first dimension of every parameter).
    in_features, out_features : int
        Input and output sizes of each node's map.

    Notes
    -----
    ``forward(x, rows=None)`` takes ``x`` of shape ``(n, B, in)`` (one input per node) or
    ``(B, in)`` (one input shared by all nodes, computed as one GEMM) and returns
    ``(n, B, out)``; ``rows`` (int tensor of shape ``(n,)``, or a slice) selects which
    stored nodes to apply, all of them when None. Initialised like :class:`torch.nn.Linear`.
    """

    def __init__(self, n_nodes, in_features, out_features):
        super().__init__()
        self.n_nodes = n_nodes
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(n_nodes, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_nodes, 1, out_features).uniform_(-bound, bound))

    def forward(self, x, rows=None):
        """``x @ W_i + b_i`` for the nodes ``rows`` (all when None): ``(n, B, in)`` or ``(B, in)`` → ``(n, B, out)``."""
        weight = self.weight if rows is None else self.weight[rows]
        bias = self.bias if rows is None else self.bias[rows]
        if x.dim() == 2:  # shared input: one GEMM against all nodes' weights side by side
            n, d_in, d_out = weight.shape
            out = x @ weight.transpose(0, 1).reshape(d_in, n * d_out)
            return out.reshape(x.shape[0], n, d_out).transpose(0, 1) + bias
        return torch.baddbmm(bias, x, weight)


class NodeBatchNorm(nn.Module):
    """Batch normalisation with separate statistics and affine parameters per node.

    Parameters
    ----------
    n_nodes : int
        Number of nodes.
    n_channels : int
        Features (or image channels) per node.

    Notes
    -----
    ``forward(x, rows=None, weights=None)`` accepts ``(n, B, C)`` node-stacked features,
    normalised over the batch per node and feature (running statistics of the selected
    ``rows`` are updated in training mode); ``weights`` ``(n, B)`` (e.g. the probability
    that each sample reaches each node) makes the batch statistics weighted, so that a
    node is normalised by the samples that actually reach it. It also accepts
    ``(B, n*C, H, W)`` grouped feature maps (the nodes ``rows``, a slice, or all),
    normalised per node and channel over batch and space, unweighted.
    """

    def __init__(self, n_nodes, n_channels):
        super().__init__()
        self.n_nodes = n_nodes
        self.weight = nn.Parameter(torch.ones(n_nodes, n_channels))
        self.bias = nn.Parameter(torch.zeros(n_nodes, n_channels))
        self.register_buffer("running_mean", torch.zeros(n_nodes, n_channels))
        self.register_buffer("running_var", torch.ones(n_nodes, n_channels))

    def forward(self, x, rows=None, weights=None):
        """Normalise ``x`` ``(n, B, C, ...)`` per node; in training, by batch statistics weighted by ``weights``."""
        sel = slice(None) if rows is None else rows
        if x.dim() == 4:  # rows, if given, must be a slice (contiguous nodes: views share storage)
            return F.batch_norm(x, self.running_mean[sel].view(-1), self.running_var[sel].view(-1),
                                self.weight[sel].reshape(-1), self.bias[sel].reshape(-1), self.training,
                                BN_MOMENTUM, BN_EPS)
        if self.training:
            if weights is None:
                mean, var = x.mean(1), x.var(1, unbiased=False)
            else:
                w = weights.detach().unsqueeze(-1)
                w = w / (w.sum(1, keepdim=True) + 1e-12)
                mean = (w * x).sum(1)
                var = (w * (x - mean.unsqueeze(1)).square()).sum(1)
            with torch.no_grad():
                n = x.shape[1]
                unbiased = var * (n / (n - 1)) if n > 1 and weights is None else var
                self.running_mean[sel] = torch.lerp(self.running_mean[sel], mean.to(self.running_mean), BN_MOMENTUM)
                self.running_var[sel] = torch.lerp(self.running_var[sel], unbiased.to(self.running_var), BN_MOMENTUM)
        else:
            mean, var = self.running_mean[sel], self.running_var[sel]
        scale = self.weight[sel] * torch.rsqrt(var + BN_EPS)
        return (x - mean.unsqueeze(1)) * scale.unsqueeze(1) + self.bias[sel].unsqueeze(1)


class NodeMLP(nn.Module):
    """Per-node multilayer perceptrons, ``Linear -> BatchNorm -> LeakyReLU(0.3)`` per hidden layer.

    Parameters
    ----------
    n_nodes : int
        Number of nodes.
    sizes : sequence of int
        ``[in, hidden_1, ..., out]``; the last layer is affine only.

    Notes
    -----
    ``forward(x, rows=None, weights=None)``: ``x`` of shape ``(n, B, in)`` or shared
    ``(B, in)``, output ``(n, B, out)``; ``weights`` ``(n, B)`` weight the batch-norm
    statistics (see :class:`NodeBatchNorm`). In eval mode ``x[:, None]`` with ``rows`` of shape ``(B,)`` applies a
    different node to every sample (used for ancestral sampling).
    """

    def __init__(self, n_nodes, sizes):
        super().__init__()
        self.n_nodes = n_nodes
        self.linears = nn.ModuleList(NodeLinear(n_nodes, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(NodeBatchNorm(n_nodes, b) for b in sizes[1:-1])

    def forward(self, x, rows=None, weights=None):
        """Run the node MLPs ``rows`` (all when None) on ``x``; ``weights`` weight the batch-norm statistics."""
        for i, linear in enumerate(self.linears):
            x = linear(x, rows)
            if i < len(self.norms):
                x = F.leaky_relu(self.norms[i](x, rows, weights), LEAKY_SLOPE)
        return x


def _node_tensors(module):
    """Every parameter and buffer of a node stack (node dimension first)."""
    return [*module.parameters(), *module.buffers()]


def _set_n_nodes(module, n_nodes):
    for m in module.modules():
        if hasattr(m, "n_nodes"):
            m.n_nodes = n_nodes
    return module


def take_nodes(module, rows):
    """Copy of a node stack keeping only the given node rows.

    Parameters
    ----------
    module : nn.Module
        A node stack (all parameters and buffers node-first).
    rows : sequence of int
        Rows to keep, in the new order (may repeat).

    Returns
    -------
    nn.Module
        A new stack of ``len(rows)`` nodes; ``module`` is unchanged.
    """
    out = copy.deepcopy(module)
    index = torch.as_tensor(list(rows), dtype=torch.long, device=next(module.parameters()).device)
    with torch.no_grad():
        for t in _node_tensors(out):
            t.data = t.data[index].clone()
    return _set_n_nodes(out, len(index))


def cat_nodes(first, second):
    """Node stack holding the nodes of ``first`` followed by those of ``second``.

    Parameters
    ----------
    first, second : nn.Module
        Node stacks built with the same configuration.

    Returns
    -------
    nn.Module
        A new stack; the inputs are unchanged.
    """
    out = copy.deepcopy(first)
    with torch.no_grad():
        for t, u in zip(_node_tensors(out), _node_tensors(second)):
            t.data = torch.cat([t.data, u.data.to(t.device)])
    return _set_n_nodes(out, first.n_nodes + second.n_nodes)


def put_nodes(module, rows, source):
    """Overwrite node rows of ``module`` in place with the nodes of ``source``.

    Parameters
    ----------
    module : nn.Module
        Node stack to modify.
    rows : sequence of int
        ``len(rows) == source.n_nodes`` destination rows.
    source : nn.Module
        Node stack with the same configuration.
    """
    index = torch.as_tensor(list(rows), dtype=torch.long)
    with torch.no_grad():
        for t, u in zip(_node_tensors(module), _node_tensors(source)):
            t.data[index.to(t.device)] = u.data.to(t.device)

