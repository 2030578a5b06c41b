"""Node-batched layers: one weight tensor holds the parameters of many tree nodes.

Every parameter and buffer of a *node stack* has the node as its first dimension, so the
nodes of one depth (or all leaves) are evaluated by a single batched matmul / grouped
convolution instead of a Python loop over nodes, and a stack grows or shrinks by
concatenating or selecting rows (:func:`cat_nodes`, :func:`take_nodes`, :func:`put_nodes`).

When every node has its own subset of a batch (e.g. each node's networks run only on the
samples that reach it), :class:`PairLayout` packs the (node, sample) pairs into a padded
``(n_nodes, capacity, ...)`` tensor; the stacks then run on it in one batched pass, their
batch-norm statistics weighted 0 on the padding (:func:`apply_to_pairs`).
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.3
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


def node_rows(tensor, rows):
    """The node rows ``rows`` of a node-first tensor (a parameter or buffer of a node stack).

    Parameters
    ----------
    tensor : Tensor of shape (n_nodes, ...)
    rows : None, slice or int Tensor
        None: all rows (``tensor`` itself); a slice: a view; an int tensor of any shape:
        those rows, selected with ``index_select`` (whose gradient, an ``index_add``, costs
        less than that of advanced indexing).

    Returns
    -------
    Tensor of shape ``rows.shape + tensor.shape[1:]`` (for a tensor ``rows``)
    """
    if rows is None:
        return tensor
    if torch.is_tensor(rows):
        return torch.index_select(tensor, 0, rows.reshape(-1)).view(*rows.shape, *tensor.shape[1:])
    return tensor[rows]


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
        weight, bias = node_rows(self.weight, rows), node_rows(self.bias, rows)
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
    ``forward(x, rows=None, weights=None)`` accepts ``(n, B, C)`` node-stacked
    features, normalised over the batch per node and feature (running statistics of the
    selected ``rows`` are updated in training mode); ``weights`` ``(n, B)`` (e.g. the
    probability that each sample reaches each node) makes the batch statistics weighted, so
    that a node is normalised by the samples that actually reach it (a node whose weights
    are all 0 keeps its running statistics). It also accepts
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
        """Normalise ``x`` ``(n, B, C)`` per node; in training, by batch statistics weighted by ``weights``.

        Grouped ``(B, n*C, H, W)`` feature maps: see the class notes.
        """
        sel = slice(None) if rows is None else rows
        if x.dim() == 4:  # rows, if given, must be a slice (views share storage)
            return F.batch_norm(x, self.running_mean[sel].view(-1), self.running_var[sel].view(-1),
                                self.weight[sel].reshape(-1), self.bias[sel].reshape(-1), self.training,
                                BN_MOMENTUM, BN_EPS)
        weight, bias = node_rows(self.weight, rows), node_rows(self.bias, rows)
        if not self.training:
            scale = weight * torch.rsqrt(self.running_var[sel] + BN_EPS)
            return torch.addcmul(bias[:, None], x - self.running_mean[sel][:, None], scale[:, None])
        if weights is None:
            n = x.shape[1]
            w = x.new_full(x.shape[:2], 1.0 / n)
            factor, seen = (n / (n - 1) if n > 1 else 1.0), None
        else:  # a node whose weights are all 0 (no sample reaches it) keeps its running statistics
            w = weights.detach().to(x.dtype)
            total = w.sum(1, keepdim=True)
            w, factor, seen = w / (total + 1e-12), 1.0, total > 0
        out, mean, var = _BatchNormFunction.apply(x, w, weight, bias)
        with torch.no_grad():
            self._update_running(sel, mean, var * factor, seen)
        return out

    def _update_running(self, sel, mean, var, seen=None):
        """Move the running statistics of the nodes ``sel`` towards ``mean``, ``var`` (where ``seen``)."""
        momentum = BN_MOMENTUM if seen is None else seen.to(self.running_mean.dtype) * BN_MOMENTUM
        for buffer, value in ((self.running_mean, mean), (self.running_var, var)):
            value = value.to(buffer)
            if torch.is_tensor(sel):
                buffer.index_copy_(0, sel, buffer[sel].lerp_(value, momentum))
            else:  # a view of the buffer
                buffer[sel].lerp_(value, momentum)


class _BatchNormFunction(torch.autograd.Function):
    """Batch normalisation of ``(G, B, C)`` by weighted statistics, per group and channel, with a hand-written backward.

    ``mean = sum_i w_i x_i``, ``var = sum_i w_i (x_i - mean)^2`` (sums over the rows ``i``
    of a group; weights ``w`` ``(G, B)`` not differentiated), ``out = gamma (x - mean) /
    sqrt(var + eps) + beta``. Returns ``out``, ``mean`` and ``var`` (the last two ``(G, C)``,
    not differentiable). The backward needs about a third of the passes over ``x`` that
    autograd of the same formula makes.
    """

    @staticmethod
    def forward(ctx, x, w, gamma, beta):
        mean = torch.bmm(w[:, None, :], x)[:, 0]
        centred = x - mean[:, None]
        var = torch.bmm(w[:, None, :], centred * centred)[:, 0]
        inv_std = torch.rsqrt(var + BN_EPS)
        normed = centred.mul_(inv_std[:, None])
        out = torch.addcmul(beta[:, None], normed, gamma[:, None])
        # d out / d x with total weight W != 1 has one more term, through sum_i w_i (x_i - mean)
        shift = mean * (1 - w.sum(1, keepdim=True)) * inv_std
        ctx.save_for_backward(normed, w, gamma * inv_std, shift)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        normed, w, scale, shift = ctx.saved_tensors
        grad_beta = grad.sum(1)
        grad_gamma = (grad * normed).sum(1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            inner = torch.addcmul((grad_beta - shift * grad_gamma)[:, None], normed, grad_gamma[:, None])
            inner.mul_(w[:, :, None])
            grad_x = torch.sub(grad, inner).mul_(scale[:, None])
        return grad_x, None, grad_gamma, grad_beta


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
    statistics (see :class:`NodeBatchNorm`). In eval
    mode ``x[:, None]`` with ``rows`` of shape ``(B,)`` applies a different node to every
    sample (used for ancestral sampling).
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


class PairLayout:
    """Padded, node-major layout of the (node, sample) pairs selected by a mask, for one batched pass.

    The pairs where ``mask`` ``(n_nodes, B)`` is true are sorted by node, then sample; a
    ``(n_nodes, capacity, ...)`` tensor holds each node's pairs in its row, zero-padded to
    the largest node's count. A node stack evaluated on it with the pairs' batch-norm
    weights (0 for padding; see :func:`apply_to_pairs`) computes, for every pair, what the
    pair's node would compute on the node's pairs alone.

    Parameters
    ----------
    mask : bool Tensor of shape (n_nodes, B)

    Attributes
    ----------
    mask : bool Tensor of shape (n_nodes, B)
    node, sample : Tensors of shape (n_pairs,)
        The pairs, sorted by node then sample (as ``mask.nonzero()``).
    n_pairs, capacity : int
    slot : Tensor of shape (n_pairs,)
        Row of each pair in its node's padded row.

    Notes
    -----
    Building the layout reads the largest node size on the host (one synchronisation, as
    ``nonzero`` needs anyway); the rest is a fixed number of tensor operations whatever
    the number of nodes.
    """

    def __init__(self, mask):
        self.mask = mask
        self.node, self.sample = mask.nonzero(as_tuple=True)
        self.n_pairs = int(self.node.shape[0])
        sizes = mask.sum(1)
        start = torch.cumsum(sizes, 0) - sizes
        self.slot = torch.arange(self.n_pairs, device=mask.device) - start[self.node]
        self.capacity = max(int(sizes.max()), 1) if mask.shape[0] else 1

    def pack(self, values):
        """Place the pairs' rows of a node-stacked tensor in the padded layout.

        Parameters
        ----------
        values : Tensor of shape (n_nodes, B, ...)

        Returns
        -------
        Tensor of shape (n_nodes, capacity, ...)
            ``values[node, sample]`` of every pair at its node's row and slot; zeros elsewhere.
        """
        out = values.new_zeros(self.mask.shape[0], self.capacity, *values.shape[2:])
        return out.index_put((self.node, self.slot), values[self.node, self.sample])

    def unpack(self, padded):
        """Read the pairs' rows back from the padded layout.

        Parameters
        ----------
        padded : Tensor of shape (n_nodes, capacity, ...)

        Returns
        -------
        Tensor of shape (n_pairs, ...)
            The rows of the pairs, in pair order (node, then sample).
        """
        return padded[self.node, self.slot]


def apply_to_pairs(net, x, rows, pairs=None, weights=None):
    """Run a node stack only on the (node, sample) pairs of a layout, zeros elsewhere.

    Parameters
    ----------
    net : nn.Module
        A node stack with ``forward(x, rows)`` (:class:`NodeLinear`) or ``forward(x, rows,
        weights)`` (:class:`NodeMLP`).
    x : Tensor of shape (n, B, in) or (B, in)
        Input of each node (or one input shared by all ``n`` nodes).
    rows : int Tensor of shape (n,)
        The stored nodes to apply.
    pairs : PairLayout or None
        The pairs to evaluate, a :class:`PairLayout` (built once for all the stacks run on
        the same pairs); None: all (``net`` runs on ``x`` as it is).
    weights : Tensor of shape (n, B), optional
        Batch-norm weights of the pairs (see :class:`NodeBatchNorm`); only the selected
        pairs enter the statistics.

    Returns
    -------
    Tensor of shape (n, B, out)
        Where ``pairs.mask`` holds, what ``net(x, rows, weights)`` computes for the pair with
        every unselected pair's weight set to 0 (exactly, up to float rounding); zeros
        elsewhere. All selected pairs are evaluated in one padded batched pass; with every
        pair selected, ``net`` runs on ``x`` directly.
    """
    if pairs is None or pairs.n_pairs == pairs.mask.numel():
        return net(x, rows) if weights is None else net(x, rows, weights)
    n, batch = pairs.mask.shape
    inputs = pairs.pack(x.expand(n, *x.shape[-2:]))
    if weights is None:
        out = net(inputs, rows)
    else:
        out = net(inputs, rows, pairs.pack(weights[..., None])[..., 0])
    dense = out.new_zeros(n, batch, out.shape[-1])
    return dense.index_put((pairs.node, pairs.sample), pairs.unpack(out))


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

