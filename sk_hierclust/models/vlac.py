"""VLAC: a variational ladder autoencoder with a Gaussian-mixture prior on every latent layer.

Willetts, Roberts, Holmes, "Disentangled Clustering with Variational Ladder Autoencoders for
Clustering" (VLAC), on the VLAE backbone of Zhao, Song, Ermon, "Learning Hierarchical
Features from Generative Models", ICML 2017.
"""

import math
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted
from torch import nn

from .._base import INFERENCE_BATCH, BaseDeepClusterer
from .._skorch import GeometricAnnealing
from ..nn.encoders import make_encoder, make_node_decoders
from ..nn.layers import DenseBlock
from ..nn.losses import VAR_EPS, kl_normal, negative_log_likelihood, output_mean, reparameterize, split_normal

UNIT_VARIANCE_RAW = math.log(math.e - 1.0)  # softplus(UNIT_VARIANCE_RAW) == 1


class VLACModule(nn.Module):
    """The VLAC network: a ladder encoder and decoder with a discrete ``y_l`` and Gaussian ``z_l`` per layer.

    Layers are indexed top (most abstract, ``0``) to bottom (next to the data, ``L - 1``).
    Inference (Willetts et al., eqs. 7-8) runs bottom-up: ``h_{L-1} = g_{L-1}(x)`` (the shared
    encoder), ``h_l = g_l(h_{l+1}, y_{l+1})``; ``q(y_l | x, y_{>l}) = Cat(softmax(a_l(h_l)))`` and
    ``q(z_l | x, y_{>=l}) = N(mu_l(h_l, y_l), sigma_l^2(h_l, y_l))`` with one affine head per
    component. Generation (eq. 6, VLAE) runs top-down: ``y_l ~ Cat(1 / K_l)``,
    ``z_l ~ N(m_{l, y_l}, s^2_{l, y_l})`` (learned per component), ``zt_0 = f_0(z_0)``,
    ``zt_l = f_l(z_l, zt_{l-1})``, ``x ~ p(x | decoder(zt_{L-1}))``. Every hidden width
    (``h_l``, ``zt_l``) is the encoder's ``out_features``.

    ``forward(x)`` returns the per-sample negative-ELBO terms (eq. 9), each of shape ``(B,)``:
    ``rec`` (``-E log p(x | z)``), ``kl_z`` (``sum_l E_y KL(q(z_l | x, y) || p(z_l | y_l))``) and
    ``kl_y`` (``sum_l E KL(q(y_l | x, y_{>l}) || Cat(1 / K_l))``); the two KL terms are the
    annealed ones. The expectation over ``y`` is taken by the Gumbel-softmax relaxation in
    training mode with ``discrete_estimator="gumbel"``, and exactly otherwise (always in eval
    mode): every combination of components is a row of the leading "combination" dimension,
    ``prod_l K_l`` rows in all (see :meth:`encode`).

    Parameters
    ----------
    n_features : int
    n_clusters : tuple of int
        ``K_l`` per layer, top first.
    latent_dims : tuple of int
        Size of ``z_l`` per layer, top first.
    likelihood : {"bernoulli", "gaussian"}
    encoder : {"mlp", "conv", "conv_pool"}
    input_shape : tuple or None
    discrete_estimator : {"gumbel", "enumerate"}
    hidden_dims : tuple of int or None
        Widths of the MLP encoder (see :func:`~sk_hierclust.nn.encoders.make_encoder`).
    """

    elbo_terms = ("rec", "kl_z", "kl_y")
    annealed_terms = ("kl_z", "kl_y")

    def __init__(self, n_features, n_clusters, latent_dims, likelihood, encoder, input_shape=None,
                 discrete_estimator="gumbel", hidden_dims=None):
        super().__init__()
        self.n_clusters, self.latent_dims = tuple(n_clusters), tuple(latent_dims)
        self.likelihood, self.discrete_estimator = likelihood, discrete_estimator
        self.temperature = 1.0
        n_layers = len(self.n_clusters)
        self.encoder = make_encoder(encoder, n_features, input_shape, hidden_dims)
        width = self.encoder.out_features
        # ladder[l] computes h_l from (h_{l+1}, y_{l+1}); the bottom layer's is the encoder
        self.ladder = nn.ModuleList(DenseBlock(width + self.n_clusters[layer + 1], width, width)
                                    for layer in range(n_layers - 1))
        self.cluster_heads = nn.ModuleList(nn.Linear(width, k) for k in self.n_clusters)
        self.latent_heads = nn.ModuleList(nn.Linear(width, k * 2 * d) for k, d in zip(self.n_clusters,
                                                                                        self.latent_dims))
        self.prior_mean = nn.ParameterList(torch.randn(k, d) for k, d in zip(self.n_clusters, self.latent_dims))
        self.prior_raw_var = nn.ParameterList(torch.full((k, d), UNIT_VARIANCE_RAW)
                                              for k, d in zip(self.n_clusters, self.latent_dims))
        self.top_down = nn.ModuleList(DenseBlock(d + (width if layer else 0), width, width)
                                      for layer, d in enumerate(self.latent_dims))
        self.decoder = make_node_decoders(encoder, 1, width, n_features, input_shape, hidden_dims)

    def prior(self, layer):
        """Means and variances ``(K_l, d_l)`` of the mixture components of ``p(z_layer | y_layer)``."""
        return self.prior_mean[layer], F.softplus(self.prior_raw_var[layer]) + VAR_EPS

    def encode(self, x, estimator, stop=0):
        """The bottom-up inference pass, from the bottom layer up to layer ``stop``.

        With ``estimator="enumerate"`` the pass branches over every component of every layer:
        after layer ``l`` the leading dimension holds ``C_l = prod_{j >= l} K_j`` combinations
        ``(y_{L-1}, ..., y_l)`` (row ``c * K_l + k`` extends row ``c`` of the layer below with
        ``y_l = k``). With ``"gumbel"`` there is one row, ``y_l`` a Gumbel-softmax sample at
        ``self.temperature``.

        Parameters
        ----------
        x : Tensor of shape (B, D)
        estimator : {"enumerate", "gumbel"}
        stop : int, default=0
            The highest layer to compute; the layers above it are None.

        Returns
        -------
        list of dict or None, one per layer, top first
            ``weight_in`` ``(C_{l+1}, B)``: ``q(y_{>l} | x)`` of the combinations below;
            ``logits`` ``(C_{l+1}, B, K_l)`` of ``q(y_l | x, y_{>l})``; ``weight`` ``(C_l, B)``:
            ``q(y_{>=l} | x)`` (1 for the relaxed sample); ``mean``, ``var``, ``prior_mean``,
            ``prior_var`` ``(C_l, B or 1, d_l)`` of ``q(z_l | x, y_{>=l})`` and ``p(z_l | y_l)``.
        """
        h, weight, y = self.encoder(x)[None], x.new_ones(1, x.shape[0]), None
        layers = [None] * len(self.n_clusters)
        for layer in reversed(range(stop, len(self.n_clusters))):
            k = self.n_clusters[layer]
            if y is not None:
                h = self.ladder[layer](torch.cat([h, y], -1))
            logits = self.cluster_heads[layer](h)
            params = self.latent_heads[layer](h).unflatten(-1, (k, -1))  # (C, B, K, 2 d)
            prior_mean, prior_var = self.prior(layer)
            if estimator == "enumerate":
                n_comb, batch = logits.shape[:2]
                eye = torch.eye(k, dtype=x.dtype, device=x.device)
                y = eye[None, :, None].expand(n_comb, k, batch, k).flatten(0, 1)
                params = params.transpose(1, 2).flatten(0, 1)
                new_weight = (weight[..., None] * logits.softmax(-1)).transpose(1, 2).flatten(0, 1)
                prior_mean, prior_var = prior_mean.repeat(n_comb, 1)[:, None], prior_var.repeat(n_comb, 1)[:, None]
                h = h.repeat_interleave(k, 0)
            else:
                y = F.gumbel_softmax(logits, tau=self.temperature)
                params = (y[..., None] * params).sum(-2)
                new_weight = weight
                prior_mean, prior_var = y @ prior_mean, y @ prior_var
            mean, var = split_normal(params)
            layers[layer] = {"weight_in": weight, "logits": logits, "weight": new_weight, "mean": mean, "var": var,
                         "prior_mean": prior_mean, "prior_var": prior_var}
            weight = new_weight
        return layers

    def decode(self, z):
        """Decoder outputs ``(C, B, D)`` (logits or means) from the latents ``z`` of every layer.

        ``z[l]`` is ``(C_l, B, d_l)`` with ``C_l`` dividing ``C = C_0``; each of its rows is
        repeated for the ``C / C_l`` combinations of the layers above that extend it.
        """
        n_comb, zt = z[0].shape[0], None
        for layer, z_l in enumerate(z):
            z_l = z_l.repeat_interleave(n_comb // z_l.shape[0], 0)
            zt = self.top_down[layer](z_l if zt is None else torch.cat([z_l, zt], -1))
        return self.decoder(zt.flatten(0, 1)[None])[0].unflatten(0, zt.shape[:2])

    def forward(self, x):
        """Compute the negative-ELBO terms of :meth:`loss_terms`.

        In training mode with the training estimator and sampled ``z``; in eval mode by exact
        enumeration, at the posterior means.
        """
        return self.loss_terms(x, self.discrete_estimator if self.training else "enumerate", self.training)

    def loss_terms(self, x, estimator, sample):
        """The negative-ELBO terms ``rec``, ``kl_z``, ``kl_y`` ``(B,)`` (eq. 9) under ``estimator``.

        Parameters
        ----------
        x : Tensor of shape (B, D)
        estimator : {"enumerate", "gumbel"}
            Exact expectation over ``y`` or one relaxed sample (see :meth:`encode`).
        sample : bool
            Draw ``z`` by reparameterisation; False uses the posterior means.

        Returns
        -------
        dict of str to Tensor of shape (B,)
            The terms named in :attr:`elbo_terms`, in nats.
        """
        layers = self.encode(x, estimator)
        kl_z = kl_y = 0.0
        for layer in layers:
            kl_z = kl_z + (layer["weight"] * kl_normal(layer["mean"], layer["var"], layer["prior_mean"],
                                                       layer["prior_var"])).sum(0)
            log_q = layer["logits"].log_softmax(-1)
            kl_cat = (log_q.exp() * (log_q + math.log(log_q.shape[-1]))).sum(-1)
            kl_y = kl_y + (layer["weight_in"] * kl_cat).sum(0)
        output = self.decode([reparameterize(layer["mean"], layer["var"], sample) for layer in layers])
        rec = (layers[0]["weight"] * negative_log_likelihood(x, output, self.likelihood)).sum(0)
        return {"rec": rec, "kl_z": kl_z, "kl_y": kl_y}

    def posterior(self, x, stop=0):
        """Exact ``q(y_l | x)`` (marginalised over the layers below) and ``E[z_l | x]`` of the layers ``>= stop``.

        The cost grows with the number of combinations of the layers below ``stop``'s
        (``prod_{l > stop} K_l``), so callers stop as low as they can.

        Returns
        -------
        Tensor of shape (B, sum(n_clusters[stop:]) + sum(latent_dims[stop:]))
            The probabilities of layers ``stop, ..., L - 1``, then their posterior means.
        """
        layers = self.encode(x, "enumerate", stop)[stop:]
        probs = [(layer["weight_in"][..., None] * layer["logits"].softmax(-1)).sum(0) for layer in layers]
        means = [(layer["weight"][..., None] * layer["mean"]).sum(0) for layer in layers]
        return torch.cat(probs + means, -1)

    def generate(self, n_samples, layer=None, cluster=None):
        """Draw ancestral samples: ``y_l ~ Cat(1 / K_l)`` (except ``y_layer = cluster``), ``z_l ~ p(z_l | y_l)``.

        Parameters
        ----------
        n_samples : int
        layer, cluster : int, optional
            The layer whose component is fixed and that component; None fixes none.

        Returns
        -------
        Tensor of shape (n_samples, D)
            Means of ``p(x | z)`` (probabilities for the Bernoulli likelihood).
        """
        param = self.prior_mean[0]
        z = []
        for index, k in enumerate(self.n_clusters):
            if index == layer:
                comp = torch.full((n_samples,), cluster, dtype=torch.long, device=param.device)
            else:
                comp = torch.randint(k, (n_samples,), device=param.device)
            mean, var = self.prior(index)
            z.append(reparameterize(mean[comp], var[comp], True)[None])
        return output_mean(self.decode(z)[0], self.likelihood)


class VLAC(BaseDeepClusterer):
    """Variational Ladder Autoencoder for Clustering: one Gaussian-mixture latent layer per level of abstraction.

    A VLAE (Zhao et al. 2017) whose every latent layer ``l`` has a discrete cluster variable
    ``y_l`` with ``K_l`` components, ``p(y_l) = Cat(1 / K_l)`` and ``p(z_l | y_l) =
    N(m_{y_l}, s^2_{y_l})`` with learned means and variances (Willetts et al., eq. 6). Layers
    further from the data pass through more computation on both the inference and the
    generative side, so they capture more abstract factors; a layer with ``K_l = 1`` is a plain
    VLAE layer. The inference network (eqs. 7-8) is a ladder, ``h_{L-1} = g(x)``,
    ``h_l = g_l(h_{l+1}, y_{l+1})``, ``q(y_l | .) = Cat(pi_l(h_l))``,
    ``q(z_l | .) = N(mu_l(h_l, y_l), sigma^2_l(h_l, y_l))``; the negative ELBO minimised is
    ``rec + alpha (KL_z + KL_y)`` (eq. 9), ``alpha`` ramping from 0 to 1. See
    :class:`VLACModule` for the network.

    **Layers are indexed top first, from 0**: layer 0 is the top of the ladder (the most
    abstract layer, furthest from the data), nearest the root of ``tree_``; layer
    ``len(n_clusters) - 1`` is the layer next to the data. So a tuple ``n_clusters`` reads like
    the tree it induces, root side first. The paper's SVHN model ``(1, 5, 50, 1)`` is then 5
    clusters in layer 1, each holding some of the 50 clusters of layer 2.

    **The tree** (``tree_``): the clustered layers (``K_l >= 2``) from the top down to
    ``cluster_layer_`` form a nested partition, most abstract at the top: root -> clusters of
    the top clustered layer -> ... -> leaves = the non-empty clusters of ``cluster_layer_``
    (so ``tree_`` leaves and ``labels_`` agree). The components of a clustered layer ``l``
    sit at tree depth ``t`` = the number of clustered layers ``l' <= l`` (the root is depth 0):
    for ``(1, 5, 50, 1)``, layer 1's components at depth 1, layer 2's (the leaves) at depth 2;
    for ``(2, 4)``, layer 0's at depth 1 and layer 1's at depth 2. Layers with ``K_l = 1`` and
    the layers below ``cluster_layer_`` have no nodes in the tree. Each cluster of a lower
    level goes under the cluster of the level above that most of its training samples fall
    into; upper clusters that receive no lower cluster are left out, as are empty clusters.
    So ``tree_.max_depth`` is at most the number of clustered layers down to
    ``cluster_layer_``, and the number of leaves at most ``K_cluster_layer``: to search over
    depth and leaf count, search over ``n_clusters``, e.g.
    ``GridSearchCV(VLAC(), {"n_clusters": [(10,), (2, 10), (4, 10), (2, 4, 10)]})`` tries
    depth 1 to 3 with at most 10 leaves. An int ``K`` is the single-layer model ``(K,)``
    (the Gaussian-mixture DGM of the paper's comparison). The tree needs at least two
    clusters: at least one layer must have ``K_l >= 2``, and so must ``cluster_layer``.

    **Generation**: :meth:`sample_layer` fixes ``y`` of one layer to a component and draws
    every other layer from its prior (paper Fig. 3). ``sample(node=v)`` (from the base class)
    is ``sample_layer(layer=l, cluster=k)`` for the layer ``l`` and component ``k`` of node
    ``v`` of ``tree_`` (the priors of the layers are independent: the components of the
    other layers, ancestors included, are drawn from their priors); ``node=0`` (the root) and
    ``node=None`` fix no component.

    Choices the paper leaves open, as made here:

    - Networks: the bottom ``g`` is the package's shared encoder (``"mlp"`` or ``"conv"``);
      ``g_l`` (input ``[h_{l+1}, y_{l+1}]``) and ``f_l`` (input ``[z_l, zt_{l-1}]``) are two
      ``Linear-BatchNorm-LeakyReLU`` layers as wide as the encoder's output
      (``hidden_dims[-1]``, 128 by default); the decoder mirrors the encoder.
      ``pi_l`` is affine in ``h_l``; ``mu_l, sigma_l^2`` have one affine head per component,
      mixed by the relaxed one-hot ``y_l`` under the Gumbel-softmax estimator (the prior's
      mean and variance are mixed the same way).
    - ``p(y_l)`` is uniform and fixed; component means are initialised ``N(0, I)``, variances 1.
    - Gumbel-softmax (Jang et al. 2017) without straight-through; the temperature falls
      geometrically from ``temperature`` to ``final_temperature`` over the epochs.
    - ``discrete_estimator="enumerate"`` takes the expectation over all layers' ``y`` exactly:
      every combination of components (``prod_l K_l`` of them) is evaluated in one batched pass,
      the decoder included; the cost grows with that product, so it suits small ``K``.
    - Inference (``predict``, ``predict_proba``, ``transform``, ``score_samples``) is exact in
      ``y`` whatever the training estimator: ``q(y_l | x)`` marginalises the layers below,
      ``transform`` gives ``E[z_l | x]`` (mixture of the component posteriors), and
      ``score_samples`` is the ELBO in nats (eq. 9), exact in ``y``; latents at their
      posterior means, no Gumbel noise, batch norm in eval mode. ``predict_proba`` (no
      ``layer``) is ``q(y | x)`` of ``cluster_layer_``, renormalised over the non-empty
      components (the labels).
    - The Gaussian likelihood has unit variance (the paper used a fixed variance on SVHN).

    With the MLP networks, layers with ``K_l = 1`` can take up most of the information and leave
    a clustered layer's ``z`` close to its prior (posterior collapse of that layer): on the 8x8
    digits, ``n_clusters=(1, 10, 1, 1)`` trained 20 epochs put 2.2 nats in the top layer,
    0.7 in the bottom one and 0.01 in the clustered one, while the single-layer ``(10,)`` used
    all of its 3.2 nats for clustering. ``benchmarks/bench_vlac.py`` shows the effect on
    MNIST and Fashion-MNIST: the ladders cluster worse than the single-layer model there.

    Parameters
    ----------
    n_clusters : int or tuple of int, default=(1, 5, 50, 1)
        Components ``K_l`` of each layer's mixture, **top layer first**; its length is the
        number of latent layers. An int ``K`` means ``(K,)``. Entries >= 1, at least one
        >= 2 (a ValueError otherwise: the tree needs at least 2 clusters).
    latent_dims : int or tuple of int, default=8
        Size of each layer's ``z_l`` (top first); an int applies to every layer.
    cluster_layer : int, default=None
        Layer (0-based index into ``n_clusters``, 0 = top) whose ``y`` gives ``predict`` /
        ``labels_`` and the tree's leaves; it must have ``K >= 2``. None means the layer with
        the most clusters (the lowest among ties).
    discrete_estimator : {"gumbel", "enumerate"}, default="gumbel"
        How training takes the expectation over ``y``: the Gumbel-softmax (Concrete) relaxation,
        the paper's choice, or exact enumeration of the ``prod_l K_l`` combinations.
    temperature : float, default=1.0
        Gumbel-softmax temperature of the first epoch.
    final_temperature : float, default=0.5
        Temperature of the last epoch (geometric schedule in between).
    encoder : {"auto", "mlp", "conv", "conv_pool"}, default="auto"
        ``"mlp"`` (``"auto"``): ``D -> 512 -> 512 -> 256 -> 128`` encoder (``hidden_dims``),
        decoder mirrored. ``"conv"``: convolutional encoder and decoder for images of
        ``input_shape`` (see :func:`sk_hierclust.nn.encoders.make_encoder`). ``"conv_pool"``:
        the HTVAE paper's architecture (3x3 convolutions with 2x2 max-pooling, decoder with
        bilinear upsampling), for ``input_shape`` with height and width at least 4.
    hidden_dims : tuple of int, default=None
        Widths of the MLP encoder's layers after the input; None means
        :data:`~sk_hierclust.nn.encoders.DEFAULT_HIDDEN_DIMS` ``(512, 512, 256, 128)``. The
        last one is also the width of the ladder's ``g_l``, ``f_l`` and heads (for
        ``"conv"`` too).
    input_shape : tuple of int (C, H, W), default=None
        Image shape of a flattened sample; required for ``encoder="conv"``.
    likelihood : {"auto", "bernoulli", "gaussian"}, default="auto"
        ``p(x | z)``: Bernoulli (X in [0, 1]) or Gaussian with unit variance; ``"auto"`` picks
        Bernoulli when all of X is in [0, 1].
    n_epochs : int, default=30
        Training epochs.
    kl_anneal_epochs : int, default=None
        Epochs over which the KL weight ``alpha`` rises from 0 to 1; None means half of
        ``n_epochs``.
    batch_size : int, default=256
    lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-5
        Adam weight decay.
    device : str or torch.device, default="cpu"
    verbose : int, default=0
        >= 1 prints skorch's epoch table and a progress bar.
    callbacks : list of skorch callbacks, default=None
        Extra callbacks passed to the skorch ``NeuralNet``.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, batch order, Gumbel and Gaussian noise (the global torch RNG is
        left untouched). An int gives identical refits on CPU.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the :class:`VLACModule`.
    n_clusters_, latent_dims_ : tuple of int
        The resolved per-layer settings, top first.
    cluster_layer_ : int
        The resolved ``cluster_layer``.
    tree_ : ClusterTree
        The nested partition described above; ``n_node_samples`` counts training samples.
    labels_ : ndarray of shape (n_samples,)
        Cluster label of each training sample: the most probable component of
        ``cluster_layer_``, relabelled consecutively over the non-empty components.
    cluster_components_ : ndarray of shape (n_labels,)
        Component of ``cluster_layer_`` of each label (labels are in component order).
    history_ : list of dict
        One dict per epoch: ``train_loss``, ``rec``, ``kl_z``, ``kl_y`` (nats per sample),
        ``kl_weight``, ``temperature``, ``phase``, ``dur`` (s).
    fit_time_ : float
        Seconds spent in ``fit``.
    likelihood_, encoder_ : str
        The resolved choices.
    input_shape_ : tuple of int or None
    n_features_in_ : int
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Defined only when X has string column names.

    References
    ----------
    .. [1] Willetts, M., Roberts, S., Holmes, C. "Disentangled Clustering with Variational
       Ladder Autoencoders for Clustering" (VLAC).
    .. [2] Zhao, S., Song, J., Ermon, S. "Learning Hierarchical Features from Generative
       Models". ICML 2017.
    .. [3] Jang, E., Gu, S., Poole, B. "Categorical Reparameterization with Gumbel-Softmax".
       ICLR 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_hierclust.models.vlac import VLAC
    >>> X, y = load_digits(return_X_y=True)
    >>> model = VLAC(n_clusters=(2, 10), n_epochs=2, random_state=0).fit(X / 16)
    >>> model.predict_layers(X[:5] / 16).shape
    (5, 2)
    >>> model.sample_layer(3, layer=0, cluster=1).shape
    (3, 64)
    """

    _parameter_constraints: dict = {
        **BaseDeepClusterer._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "latent_dims": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "cluster_layer": [Interval(Integral, 0, None, closed="left"), None],
        "discrete_estimator": [StrOptions({"gumbel", "enumerate"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "final_temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, n_clusters=(1, 5, 50, 1), latent_dims=8, cluster_layer=None, discrete_estimator="gumbel",
                 temperature=1.0, final_temperature=0.5, encoder="auto", hidden_dims=None, input_shape=None,
                 likelihood="auto", n_epochs=30, kl_anneal_epochs=None, batch_size=256, lr=1e-3, weight_decay=1e-5,
                 device="cpu", verbose=0, callbacks=None, random_state=None):
        self.n_clusters = n_clusters
        self.latent_dims = latent_dims
        self.cluster_layer = cluster_layer
        self.discrete_estimator = discrete_estimator
        self.temperature = temperature
        self.final_temperature = final_temperature
        self.encoder = encoder
        self.hidden_dims = hidden_dims
        self.input_shape = input_shape
        self.likelihood = likelihood
        self.n_epochs = n_epochs
        self.kl_anneal_epochs = kl_anneal_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.verbose = verbose
        self.callbacks = callbacks
        self.random_state = random_state

    # ---- the fit template's steps -------------------------------------------------------
    def _check_params_vs_input(self, X):
        """Resolve ``n_clusters_``, ``latent_dims_`` and ``cluster_layer_``; ValueError with the allowed range."""
        n_clusters = (self.n_clusters,) if isinstance(self.n_clusters, Integral) else tuple(self.n_clusters)
        if not n_clusters or not all(isinstance(k, Integral) and k >= 1 for k in n_clusters):
            raise ValueError(f"n_clusters must be an int >= 1 or a non-empty tuple of ints >= 1 (one per layer, "
                             f"top first), got {self.n_clusters!r}.")
        if max(n_clusters) < 2:
            raise ValueError(f"n_clusters={self.n_clusters!r} has no clustered layer: at least one layer needs >= 2 "
                             f"components (the tree needs at least 2 clusters).")
        n_layers = len(n_clusters)
        if isinstance(self.latent_dims, Integral):
            latent_dims = (self.latent_dims,) * n_layers
        else:
            latent_dims = tuple(self.latent_dims)
        if len(latent_dims) != n_layers or not all(isinstance(d, Integral) and d >= 1 for d in latent_dims):
            raise ValueError(f"latent_dims must be an int >= 1 or a tuple of {n_layers} ints >= 1 (one per layer "
                             f"of n_clusters={n_clusters}), got {self.latent_dims!r}.")
        if self.cluster_layer is None:
            cluster_layer = n_layers - 1 - int(np.argmax(n_clusters[::-1]))
        elif self.cluster_layer >= n_layers:
            raise ValueError(f"cluster_layer must be in [0, {n_layers - 1}] (n_clusters has {n_layers} layers), "
                             f"got {self.cluster_layer}.")
        elif n_clusters[self.cluster_layer] < 2:
            clustered = [layer for layer, k in enumerate(n_clusters) if k >= 2]
            raise ValueError(f"cluster_layer={self.cluster_layer} has 1 component in n_clusters={n_clusters}: the "
                             f"leaves need a layer with >= 2 components (one of layers {clustered}).")
        else:
            cluster_layer = int(self.cluster_layer)
        self.n_clusters_, self.latent_dims_ = tuple(map(int, n_clusters)), tuple(map(int, latent_dims))
        self.cluster_layer_ = cluster_layer
        return {}

    def _build_module(self, X):
        return VLACModule(X.shape[1], self.n_clusters_, self.latent_dims_, self.likelihood_, self.encoder_,
                          self.input_shape_, self.discrete_estimator, self.hidden_dims)

    def _model_callbacks(self, seed):
        return [("temperature", GeometricAnnealing("temperature", self.temperature, self.final_temperature,
                                                   self.n_epochs))]

    def _tree_assignment(self, X):
        """``tree_`` from the training samples' components (see the class docstring); sets ``cluster_components_``.

        Returns
        -------
        parent : ndarray of shape (node_count,)
        sample_nodes : ndarray of shape (n_samples,)
            The leaf of each training sample (the node of its ``cluster_layer_`` component).
        module_nodes : ndarray of shape (node_count, 2)
            ``(layer, component)`` of each node; ``(-1, -1)`` for the root (no component).
        """
        layer_labels = self._layer_labels(X)
        levels = [layer for layer in range(self.cluster_layer_) if self.n_clusters_[layer] > 1] + [self.cluster_layer_]
        own = [layer_labels[:, layer] for layer in levels]  # each sample's component at each level
        routed = [own[-1]]  # components along the tree: a sample follows its leaf's ancestors
        parent_of = [None] * len(levels)  # parent_of[t][k]: component at level t - 1 above component k of level t
        for t in range(len(levels) - 1, 0, -1):
            counts = np.zeros((self.n_clusters_[levels[t]], self.n_clusters_[levels[t - 1]]), dtype=np.int64)
            np.add.at(counts, (routed[0], own[t - 1]), 1)
            parent_of[t] = counts.argmax(1)
            routed.insert(0, parent_of[t][routed[0]])
        parent, module_nodes, node_of = [np.array([-1])], [np.array([[-1, -1]])], []
        n_nodes = 1
        for t, comps in enumerate(routed):
            present = np.unique(comps)
            node = np.full(self.n_clusters_[levels[t]], -1)
            node[present] = np.arange(n_nodes, n_nodes + present.size)
            parent.append(np.zeros(present.size, dtype=np.int64) if t == 0 else node_of[-1][parent_of[t][present]])
            module_nodes.append(np.column_stack([np.full(present.size, levels[t]), present]))
            node_of.append(node)
            n_nodes += present.size
        self.cluster_components_ = np.flatnonzero(node_of[-1] >= 0)
        return (np.concatenate(parent).astype(np.int64), node_of[-1][routed[-1]],
                np.concatenate(module_nodes).astype(np.int64))

    # ---- inference ----------------------------------------------------------------------
    def _posterior(self, X, stop=0, dtype=np.float32):
        """``[q(y_l | x) (n, K_l)]``, ``[E[z_l | x] (n, d_l)]`` for each layer; None above layer ``stop``."""
        out = self._infer(X, lambda m, x: m.posterior(x, stop), dtype=dtype)
        sizes = self.n_clusters_[stop:] + self.latent_dims_[stop:]
        parts = np.split(out, np.cumsum(sizes)[:-1], axis=1)
        n_computed = len(sizes) // 2
        return [None] * stop + parts[:n_computed], [None] * stop + parts[n_computed:]

    def _layer_labels(self, X):
        """Most probable component of every layer ``(n, L)``; layers above the top clustered layer (K = 1) get 0."""
        top = next(layer for layer, k in enumerate(self.n_clusters_) if k > 1)
        probs = self._posterior(X, top, dtype=np.float64)[0]
        return np.stack([np.zeros(X.shape[0], dtype=np.int64) if p is None else p.argmax(1) for p in probs], axis=1)

    def _leaf_proba_fn(self):
        """``q(y_cluster_layer | x)`` of the labelled components (``cluster_components_``)."""
        layer = self.cluster_layer_  # posterior(x, layer) starts with that layer's K probabilities
        columns = torch.as_tensor(self.cluster_components_, device=self.net_.device)
        return lambda module, x: module.posterior(x, layer)[:, columns]

    def _elbo_terms(self, module, x):
        """Compute the module's terms (exact in ``y``) in chunks: the decoder runs on every combination."""
        chunk = max(1, INFERENCE_BATCH // math.prod(self.n_clusters_))
        parts = [module(part) for part in x.split(chunk)]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def _generate(self, module, n_samples, module_node):
        """Generate with the component ``module_node = (layer, component)`` fixed, the other layers' drawn.

        The root's ``(-1, -1)`` and None fix no component; see :meth:`VLACModule.generate`.
        """
        if module_node is None or module_node[0] < 0:
            return module.generate(n_samples)
        return module.generate(n_samples, int(module_node[0]), int(module_node[1]))

    def _transform_width(self):
        return sum(self.latent_dims_)

    def _check_layer(self, layer):
        n_layers = len(self.n_clusters_)
        if not (isinstance(layer, Integral) and 0 <= layer < n_layers):
            raise ValueError(f"layer must be an int in [0, {n_layers - 1}], got {layer!r}.")
        return int(layer)

    def predict_proba(self, X, layer=None):
        """Cluster probabilities ``q(y_layer | x)``, exactly marginalised over the layers below.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        layer : int, optional
            None: ``cluster_layer_``, columns = the labels of ``labels_`` (the non-empty
            components, renormalised), as ``predict`` uses. An int (0 = the top layer): that
            layer, columns = all its ``K_layer`` components.

        Returns
        -------
        ndarray of shape (n_samples, n_labels) or (n_samples, K_layer)
            Rows sum to 1.

        Raises
        ------
        ValueError
            If ``layer`` is not in ``[0, n_layers - 1]``.
        """
        if layer is None:
            return super().predict_proba(X)
        check_is_fitted(self)
        layer = self._check_layer(layer)
        return self._posterior(self._validate_X(X), layer)[0][layer]

    def predict_layers(self, X):
        """Most probable component of every layer.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_layers)
            Column ``l``: ``argmax_k q(y_l = k | x)``, a component index in ``[0, K_l - 1]``
            (layers top first; 0 in the layers above the top clustered layer).
        """
        return self._layer_labels(self._validate_X(X))

    def transform(self, X):
        """Posterior means ``E[z_l | x]`` of all layers, concatenated, top layer first.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, ``sum(latent_dims_)``)
            Column names from :meth:`get_feature_names_out`.
        """
        X = self._validate_X(X)
        n_probs = sum(self.n_clusters_)  # the latents only, written straight into the output
        return self._infer(X, lambda m, x: m.posterior(x)[:, n_probs:])

    def get_feature_names_out(self, input_features=None):
        """Names of the ``transform`` columns: ``"vlac_layer{l}_{j}"`` for dimension ``j`` of layer ``l``.

        Parameters
        ----------
        input_features : array-like of str, optional
            Only checked against the fitted input features.

        Returns
        -------
        ndarray of str objects, shape (``sum(latent_dims_)``,)
        """
        check_is_fitted(self, "latent_dims_")
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray([f"vlac_layer{layer}_{j}" for layer, d in enumerate(self.latent_dims_) for j in range(d)],
                          dtype=object)

    def sample_layer(self, n_samples=1, layer=None, cluster=None):
        """Generate samples, optionally with one layer's component fixed (paper Fig. 3).

        Every ``y_l`` is drawn from its uniform prior, except ``y_layer = cluster`` when
        ``cluster`` is given; then ``z_l ~ p(z_l | y_l)`` and the top-down pass. Seeded by
        ``random_state``, as :meth:`sample`, which does the same for a node of ``tree_``.

        Parameters
        ----------
        n_samples : int, default=1
        layer : int, optional
            Layer whose component is fixed (0 = the top layer); None means ``cluster_layer_``.
        cluster : int, optional
            Component of ``layer`` in ``[0, n_clusters_[layer] - 1]`` (for a label ``j`` of
            ``labels_``, ``cluster_components_[j]``); None draws every layer from its prior.

        Returns
        -------
        ndarray of shape (n_samples, n_features), float32
            Decoder means, in the units of X (probabilities for the Bernoulli likelihood).

        Raises
        ------
        ValueError
            If ``n_samples < 1``, ``layer`` is not in ``[0, n_layers - 1]`` or ``cluster`` not
            in ``[0, n_clusters_[layer] - 1]``.
        """
        self._check_sample_args(n_samples)
        layer = self.cluster_layer_ if layer is None else self._check_layer(layer)
        n_comp = self.n_clusters_[layer]
        if cluster is not None and not (isinstance(cluster, Integral) and 0 <= cluster < n_comp):
            raise ValueError(f"cluster must be a component of layer {layer} in [0, {n_comp - 1}], got {cluster!r}.")
        module_node = None if cluster is None else (layer, int(cluster))
        with self._seeded(self.net_.device), self._inference_module() as module:
            return self._generate(module, n_samples, module_node).cpu().numpy().astype(np.float32)
