"""Log-likelihoods, KL divergences and reparameterisation shared by the models.

All functions work on tensors whose last dimension is the event dimension and reduce it;
leading dimensions (nodes, batch) broadcast.
"""

import math

import torch
import torch.nn.functional as F

PROB_EPS = 1e-7
VAR_EPS = 1e-7
LOG_2PI = math.log(2 * math.pi)


def split_normal(params):
    """Split ``(..., 2 L)`` raw outputs into a mean and a positive variance ``softplus(.)``.

    Parameters
    ----------
    params : Tensor of shape (..., 2 * latent_dim)

    Returns
    -------
    mean, var : Tensors of shape (..., latent_dim)
    """
    mean, raw = params.chunk(2, dim=-1)
    return mean, F.softplus(raw) + VAR_EPS


def reparameterize(mean, var, sample):
    """``mean + sqrt(var) * eps`` with ``eps ~ N(0, I)`` when ``sample``, else ``mean``."""
    return mean + var.sqrt() * torch.randn_like(mean) if sample else mean


def precision_weighted(mean_hat, var_hat, mean_p, var_p):
    """Ladder-VAE combination of a bottom-up and a top-down Gaussian (Sønderby et al. 2016, eq. 19).

    ``var_q = 1 / (1/var_hat + 1/var_p)``, ``mean_q = (mean_hat/var_hat + mean_p/var_p) var_q``;
    used by TreeVAE (Manduchi et al. 2023, eq. 6).

    Returns
    -------
    mean_q, var_q : Tensors of the broadcast shape
    """
    prec_hat, prec_p = 1.0 / (var_hat + VAR_EPS), 1.0 / (var_p + VAR_EPS)
    var_q = 1.0 / (prec_hat + prec_p)
    return (mean_hat * prec_hat + mean_p * prec_p) * var_q, var_q


def kl_normal(mean_q, var_q, mean_p=None, var_p=None):
    """KL(N(mean_q, diag var_q) || N(mean_p, diag var_p)) in nats, summed over the last dim.

    ``mean_p``/``var_p`` None means the standard normal prior.

    Returns
    -------
    Tensor of shape ``mean_q.shape[:-1]``
    """
    if mean_p is None:
        return 0.5 * (var_q + mean_q.square() - 1.0 - var_q.log()).sum(-1)
    return 0.5 * ((var_p / var_q).log() + (var_q + (mean_q - mean_p).square()) / var_p - 1.0).sum(-1)


def kl_bernoulli(q, p):
    """KL(Bern(q) || Bern(p)) in nats, elementwise, probabilities clamped to [1e-7, 1 - 1e-7]."""
    q = q.clamp(PROB_EPS, 1 - PROB_EPS)
    p = p.clamp(PROB_EPS, 1 - PROB_EPS)
    return q * (q.log() - p.log()) + (1 - q) * ((1 - q).log() - (1 - p).log())


def negative_log_likelihood(x, output, likelihood):
    """``-log p(x | output)`` in nats, summed over features.

    Parameters
    ----------
    x : Tensor of shape (B, D)
        Data; in [0, 1] for the Bernoulli likelihood.
    output : Tensor of shape (..., B, D)
        Decoder output: logits (``"bernoulli"``) or means of a unit-variance Gaussian
        (``"gaussian"``).
    likelihood : {"bernoulli", "gaussian"}

    Returns
    -------
    Tensor of shape (..., B)
    """
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(output, x.expand_as(output), reduction="none").sum(-1)
    return 0.5 * (x - output).square().sum(-1) + 0.5 * x.shape[-1] * LOG_2PI


def output_mean(output, likelihood):
    """Mean of p(x | output): ``sigmoid(logits)`` for Bernoulli, the output itself for Gaussian."""
    return torch.sigmoid(output) if likelihood == "bernoulli" else output


def kl_beta(a, b, a0, b0):
    """KL(Beta(a, b) || Beta(a0, b0)) in nats, elementwise (broadcasting).

    Parameters
    ----------
    a, b : Tensor
        Parameters of the posterior Beta (> 0).
    a0, b0 : Tensor or float
        Parameters of the prior Beta (> 0).

    Returns
    -------
    Tensor
        The elementwise KL divergence (e.g. of the stick-breaking proportions of a nested
        CRP in HCRL's ELBO, Shin et al. 2020).
    """
    def log_beta(p, q):
        return torch.lgamma(p) + torch.lgamma(q) - torch.lgamma(p + q)
    a0, b0 = torch.as_tensor(a0, dtype=a.dtype, device=a.device), torch.as_tensor(b0, dtype=a.dtype, device=a.device)
    return (log_beta(a0, b0) - log_beta(a, b) + (a - a0) * torch.digamma(a) + (b - b0) * torch.digamma(b)
            + (a0 - a + b0 - b) * torch.digamma(a + b))


def expected_gaussian_loglik(mean, var, node_mean, node_logvar):
    """``E_{N(z; mean, var)}[log N(z; node_mean, exp(node_logvar))]`` for every (sample, node) pair.

    Parameters
    ----------
    mean, var : Tensor of shape (B, J)
        Posterior ``q(z | x)`` (diagonal); ``var = 0`` gives the log-density at ``mean``.
    node_mean, node_logvar : Tensor of shape (N, J)
        The nodes' diagonal Gaussians.

    Returns
    -------
    Tensor of shape (B, N)
        Nats. Computed by three matmuls, never per pair (the expected log-likelihood in
        the coordinate updates of HCRL's ``S`` and ``omega``, Shin et al. 2020).
    """
    prec = torch.exp(-node_logvar)
    quad = ((var + mean.square()) @ prec.T - 2 * mean @ (node_mean * prec).T
            + (node_mean.square() * prec).sum(1))
    return -0.5 * (node_mean.shape[1] * LOG_2PI + node_logvar.sum(1) + quad)


def nt_xent(z1, z2, temperature=0.5, reduction="mean"):
    r"""NT-Xent, SimCLR's normalized temperature-scaled cross entropy (Chen et al. 2020, eq. 1).

    The ``2N`` rows ``u = normalize(cat(z1, z2))`` (unit L2 norm) form ``N`` positive pairs:
    row ``i`` of ``z1`` and row ``i`` of ``z2`` (two views of one sample). Each row ``i`` is an
    anchor whose positive is its pair ``j(i) = i ± N`` and whose negatives are the other
    ``2N - 2`` rows:

    .. math::

        \ell_i = -\log \frac{\exp(u_i^\top u_{j(i)} / \tau)}{\sum_{k \ne i} \exp(u_i^\top u_k / \tau)},
        \qquad \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i .

    Used by TreeVAE's contrastive extension (Manduchi et al. 2023, §2.6).

    Parameters
    ----------
    z1, z2 : Tensor of shape (..., N, F)
        The two views' embeddings (or probability vectors); leading dimensions are
        independent problems (e.g. one per depth). ``N >= 2``.
    temperature : float, default=0.5
        ``tau > 0``.
    reduction : {"mean", "none"}, default="mean"
        ``"mean"``: ``L``, shape ``(...)``; ``"none"``: the per-anchor ``l_i``, shape
        ``(..., 2N)``, rows of ``z1`` first.

    Returns
    -------
    Tensor
        Nats.
    """
    n = z1.shape[-2]
    u = F.normalize(torch.cat([z1, z2], -2), dim=-1)
    sim = u @ u.transpose(-1, -2) / temperature
    index = torch.arange(2 * n, device=u.device)
    positive = sim[..., index, (index + n) % (2 * n)]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    loss = torch.logsumexp(sim, -1) - positive
    return loss.mean(-1) if reduction == "mean" else loss
