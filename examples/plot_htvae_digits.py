"""
=======================================================
Stacked self-organizing maps on digits with HTVAE
=======================================================

:class:`~sk_hierclust.models.htvae.HTVAE` is a VAE whose latent space holds a
stack of self-organizing maps: a fine map whose codes are the clusters, and
coarser maps above it. Each code hangs under the nearest code of the next
coarser map, which makes a tree; every code is also a Gaussian that can
generate new samples.

This example fits an HTVAE with a 4x4 and a 2x2 map on the 8x8 handwritten
digits shipped with scikit-learn, scores the clusters, draws the tree and the
fine map, shows how a few must-link constraints change the clusters, and
generates digits from codes of both maps.

The number of epochs is kept small so that the example runs in about a minute
on a CPU; train longer for better maps.
"""

# %%
# Load the data
# -------------
# :func:`~sk_hierclust.datasets.load_digits` returns the 1797 images as
# float32 pixel intensities in [0, 1], one flattened 8x8 image per row.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from sk_hierclust import HTVAE
from sk_hierclust.datasets import load_digits
from sk_hierclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity

X, y = load_digits()
print(X.shape, X.dtype, X.min(), X.max())

# %%
# Fit HTVAE
# ---------
# ``map_shapes`` lists the lattices finest first: 16 codes, then 4. The tree
# has one level per map: the 2x2 map at depth 1, the 4x4 map at depth 2.
model = HTVAE(map_shapes=((4, 4), (2, 2)), n_epochs=15, random_state=0)
model.fit(X)

nodes = model.apply(X)  # the finest code (a leaf of model.tree_) of each sample
labels = model.predict(X)  # cluster labels 0 .. n_clusters - 1
print(f"{labels.max() + 1} non-empty codes of {16}")
print(f"leaf purity:       {leaf_purity(y, labels):.3f}")
print(f"NMI:               {normalized_mutual_info_score(y, labels):.3f}")
print(f"dendrogram purity: {dendrogram_purity(y, model.tree_, nodes):.3f}")

# %%
# The learned tree
# ----------------
# A virtual root, the codes of the 2x2 map, and the codes of the 4x4 map that
# hold samples; each leaf is annotated with the digits it holds.
ax = model.tree_.plot(y=y, nodes=nodes)
ax.set_title("HTVAE on digits: root -> 2x2 map -> 4x4 map")
plt.show()

# %%
# The fine map
# ------------
# The majority digit of every code of the 4x4 lattice (``predict_depth``
# gives the code index of each sample in the map at any depth of the tree, by
# default the finest); neighbouring codes tend to hold similar digits.
fine = model.predict_depth(X)
grid = np.full(16, -1)
share = np.zeros(16)
for code in np.unique(fine):
    counts = np.bincount(y[fine == code], minlength=10)
    grid[code], share[code] = counts.argmax(), counts.max() / counts.sum()
fig, ax = plt.subplots(figsize=(3.5, 3.5))
ax.imshow(share.reshape(4, 4), cmap="Greens", vmin=0, vmax=1)
for code in range(16):
    r, c = divmod(code, 4)
    ax.text(c, r, "-" if grid[code] < 0 else str(grid[code]), ha="center", va="center", fontsize=14)
ax.set_title("majority digit per code (shade: purity)")
ax.set_axis_off()
plt.show()

# %%
# Must-link constraints
# ---------------------
# Pairs of samples that should share a cluster (here: 300 pairs of same-digit
# images) are passed to ``fit``; the penalty pulls the encodings of a pair
# together in proportion to the lattice distance between their codes.
rng = np.random.RandomState(0)
pairs = np.array([rng.choice(np.flatnonzero(y == y[i]), 2) for i in rng.randint(len(y), size=300)])
linked = HTVAE(map_shapes=((4, 4), (2, 2)), n_epochs=15, random_state=0)
linked.fit(X, must_link=pairs)
for name, m in (("without", model), ("with", linked)):
    lab = m.predict(X)
    print(f"{name:8s} must-links: accuracy {cluster_accuracy(y, lab):.3f}, "
          f"NMI {normalized_mutual_info_score(y, lab):.3f}")

# %%
# Generating from codes
# ---------------------
# :meth:`~sk_hierclust.models.htvae.HTVAE.sample` draws from a code's Gaussian
# at any level: the first two rows from two codes of the coarse map, the last
# two from the two most populated codes of the fine map.
tree = model.tree_
coarse_nodes = tree.children[0]
fine_nodes = tree.label_to_node[np.argsort(-tree.n_node_samples[tree.label_to_node])[:4]]
fig, axes = plt.subplots(2 * 2, 6, figsize=(6, 4.4))
for row, node in zip(axes.reshape(-1, 6), [*coarse_nodes[:2], *fine_nodes[:2]]):
    images = model.sample(n_samples=6, node=int(node)).reshape(-1, 8, 8)
    for ax, image in zip(row, images):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
    depth, code = model.node_codes_[node]
    row[0].set_title(f"depth {depth}, code {code}", loc="left", fontsize=9)
plt.tight_layout()
plt.show()
