"""
=================================================================
Clustering digits at two levels of abstraction with VLAC
=================================================================

:class:`~sk_hierclust.models.vlac.VLAC` (Willetts, Roberts, Holmes) is a
variational ladder autoencoder whose latent layers each have a
Gaussian-mixture prior: every layer clusters the data, and layers further
from the pixels pass through more computation, so they cluster by more
abstract factors.

This example fits a two-layer VLAC on the 8x8 handwritten digits shipped
with scikit-learn, with ``n_clusters=(4, 10)`` (layers listed top first: 4
clusters in the top layer, 10 in the layer next to the pixels). It scores
each layer's clustering, draws the tree that nests the 10 clusters under the
4, and generates digits with one layer's cluster fixed and the other drawn
from its prior.

The number of epochs is kept small so that the example runs in about a
minute on a CPU; train longer for better clusters.
"""

# %%
# Load the data
# -------------
# :func:`~sk_hierclust.datasets.load_digits` returns the 1797 images as
# float32 pixel intensities in [0, 1], one flattened 8x8 image per row.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from sk_hierclust.datasets import load_digits
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity
from sk_hierclust.models.vlac import VLAC

X, y = load_digits()
print(X.shape, X.dtype, X.min(), X.max())

# %%
# Fit VLAC
# --------
# ``n_clusters`` gives the number of mixture components of each latent layer,
# top layer first, and ``latent_dims`` the size of each layer's continuous
# latent. The layer with the most clusters (here the bottom one) gives
# ``labels_`` and the leaves of ``tree_``. (Layers with a single cluster, as
# in the paper's ``(1, 5, 50, 1)``, are plain VLAE layers; on data this small
# they tend to take up the information the clustered layers would need.)
model = VLAC(
    n_clusters=(4, 10),
    latent_dims=(2, 6),
    n_epochs=40,
    batch_size=64,  # 1797 images: small batches give enough optimisation steps
    random_state=0,
)
model.fit(X)

# %%
# Each layer's clustering
# -----------------------
# :meth:`~sk_hierclust.models.vlac.VLAC.predict_layers` returns the most
# probable component of every layer.
layers = model.predict_layers(X)
for layer, k in enumerate(model.n_clusters_):
    if k > 1:
        labels = layers[:, layer]
        print(f"layer {layer} (K={k}): accuracy {cluster_accuracy(y, labels):.3f}, "
              f"purity {leaf_purity(y, labels):.3f}, NMI {normalized_mutual_info_score(y, labels):.3f}")

# %%
# The tree
# --------
# ``tree_`` puts each of the 10 bottom clusters under the top-layer
# cluster that most of its samples fall into. Each leaf is annotated with
# the true digits of the samples it holds.
nodes = model.apply(X)
print(f"dendrogram purity: {dendrogram_purity(y, model.tree_, nodes):.3f}")
ax = model.tree_.plot(y=y, nodes=nodes)
ax.set_title("VLAC on digits: root -> top layer -> bottom layer")
plt.show()

# %%
# Generating with one layer fixed
# -------------------------------
# :meth:`~sk_hierclust.models.vlac.VLAC.sample_layer` fixes ``y`` of one layer
# to a component and draws every other layer from its prior (Willetts et al.,
# Fig. 3); every call draws the other layer's latents with the same seed, so
# a column shows one draw under each fixed cluster. Rows: the 4 components of
# the top layer, then the 4 most populated components of the bottom layer.
# (``model.sample(n, node=v)`` does the same for the layer and component of a
# node ``v`` of ``tree_``.)
rows = [(0, k) for k in range(model.n_clusters_[0])]
bottom, counts = np.unique(layers[:, 1], return_counts=True)
rows += [(1, int(k)) for k in bottom[np.argsort(counts)[::-1][:4]]]

fig, axes = plt.subplots(len(rows), 8, figsize=(8, 1.1 * len(rows)))
for row, (layer, k) in zip(axes, rows):
    images = model.sample_layer(n_samples=8, layer=layer, cluster=k).reshape(-1, 8, 8)
    for ax, image in zip(row, images):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
    row[0].set_title(f"layer {layer}, cluster {k}", loc="left", fontsize=8)
plt.tight_layout()
plt.show()
