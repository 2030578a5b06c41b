"""
===============================================
Hierarchical clustering of digits with TreeVAE
===============================================

:class:`~sk_hierclust.TreeVAE` (Manduchi et al., NeurIPS 2023) learns a
binary tree of clusters together with a generative model: every leaf is a
cluster, and every node can generate new samples.

This example fits a small TreeVAE on the 8x8 handwritten digits shipped with
scikit-learn, scores the tree with dendrogram purity and leaf purity,
compares it with Ward agglomerative clustering on the raw pixels, draws the
tree, and generates new digits from two leaves.

The number of epochs is kept very small so that the example runs in about a
minute on a CPU; train longer for better trees.
"""

# %%
# Load the data
# -------------
# :func:`~sk_hierclust.datasets.load_digits` returns the 1797 images as
# float32 pixel intensities in [0, 1], one flattened 8x8 image per row.
import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import linkage

from sk_hierclust import ClusterTree, TreeVAE
from sk_hierclust.datasets import load_digits
from sk_hierclust.metrics import dendrogram_purity, leaf_purity

X, y = load_digits()
print(X.shape, X.dtype, X.min(), X.max())

# %%
# Fit TreeVAE
# -----------
# The tree starts with a root and two leaves (trained for ``n_epochs_initial``
# epochs) and grows one split at a time (``n_epochs_grow`` epochs for each new
# split) until it has ``max_leaves`` leaves, then the whole model is
# fine-tuned for ``n_epochs`` epochs.
model = TreeVAE(
    max_leaves=10,
    n_epochs_initial=10,
    n_epochs_grow=5,
    n_epochs=5,
    batch_size=64,  # 1797 images: small batches give enough optimisation steps
    random_state=0,
)
model.fit(X)

nodes = model.apply(X)  # the leaf (node index of model.tree_) of each sample
labels = model.predict(X)  # cluster labels 0 .. n_clusters - 1
print(f"TreeVAE dendrogram purity: {dendrogram_purity(y, model.tree_, nodes):.3f}")
print(f"TreeVAE leaf purity:       {leaf_purity(y, labels):.3f}")

# %%
# A baseline: Ward linkage
# ------------------------
# :meth:`ClusterTree.from_linkage <sk_hierclust.ClusterTree.from_linkage>`
# turns a SciPy linkage matrix into a :class:`~sk_hierclust.ClusterTree` cut
# to 10 leaves, and returns the leaf of every sample, so the same metrics
# apply.
ward_tree, ward_nodes = ClusterTree.from_linkage(linkage(X, "ward"), n_leaves=10)
print(f"Ward dendrogram purity:    {dendrogram_purity(y, ward_tree, ward_nodes):.3f}")
print(f"Ward leaf purity:          {leaf_purity(y, ward_nodes):.3f}")

# %%
# The learned tree
# ----------------
# Each leaf is annotated with the true digits of the samples it holds.
ax = model.tree_.plot(y=y, nodes=nodes)
ax.set_title("TreeVAE on digits")
plt.show()

# %%
# Generating from a leaf
# ----------------------
# :meth:`~sk_hierclust.TreeVAE.sample` draws new images from the generative
# model conditioned on one node. Here: 8 samples from each of the two
# most populated leaves.
leaves, counts = np.unique(nodes, return_counts=True)
top_leaves = leaves[np.argsort(counts)[::-1][:2]]

fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for row, leaf in zip(axes, top_leaves):
    images = np.asarray(model.sample(n_samples=8, node=leaf)).reshape(-1, 8, 8)
    for ax, image in zip(row, images):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
    digits = np.bincount(y[nodes == leaf], minlength=10)
    row[0].set_title(f"leaf {leaf}: mostly {digits.argmax()}", loc="left",
                     fontsize=9)
plt.tight_layout()
plt.show()
