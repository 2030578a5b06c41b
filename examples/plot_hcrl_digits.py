"""
=====================================================
Hierarchically clustered representations of digits
=====================================================

:class:`~sk_hierclust.HCRL` (Shin, Song, Moon, AAAI 2020) is a variational
autoencoder whose latent ``z`` follows a nested Chinese restaurant process
mixture: every sample takes a path through a tree and a level on that path,
and *every* node of the tree, internal or leaf, owns a Gaussian that
generates embeddings. The tree grows, is pruned and merges branches during
training.

This example fits HCRL2 (a per-sample level proportion, the default
``level_proportion="local"``) on the 8x8 handwritten digits shipped with
scikit-learn, scores the tree with dendrogram purity and leaf purity, draws
the tree, generates new digits from a leaf, its parent and the root, and
looks at the learned level proportions.

The number of epochs is kept very small so that the example runs in well
under a minute on a CPU; train longer for better trees.
"""

# %%
# Load the data
# -------------
# Pixel intensities are scaled to [0, 1], so HCRL picks a Bernoulli
# likelihood for the decoder.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from sk_hierclust import HCRL
from sk_hierclust.metrics import dendrogram_purity, leaf_purity

X, y = load_digits(return_X_y=True)
X = (X / 16.0).astype(np.float32)
print(X.shape, X.min(), X.max())

# %%
# Fit HCRL2
# ---------
# The encoder and decoder are first pre-trained as a plain VAE, the initial
# tree comes from recursive k-means of the embeddings, then the model is
# trained with the nested-CRP prior while the tree changes (GROW / PRUNE /
# MERGE); the node Gaussians and the sticks follow in closed form.
# ``max_depth`` is the depth of the leaves (the root has depth 0), so the
# tree below has 3 levels; ``history_`` records each epoch's tree event.
model = HCRL(
    max_depth=2,
    max_leaves=12,
    init_branching=3,  # the initial k-means tree: 3 x 3 = 9 leaves, the most within max_leaves
    level_proportion="local",  # HCRL2; "global" is HCRL1
    n_epochs_pretrain=10,
    n_epochs=5,
    batch_size=64,  # 1797 images: small batches give enough optimisation steps
    random_state=0,
)
model.fit(X)

nodes = model.apply(X)  # node of each sample: may be an internal node
labels = model.predict(X)  # most probable leaf, as labels 0 .. n_clusters - 1
print(f"fit in {model.fit_time_:.0f} s, tree: {model.tree_!r}")
print("tree events:", [row["tree_event"] for row in model.history_ if row.get("tree_event")])
print(f"HCRL2 dendrogram purity: {dendrogram_purity(y, model.tree_, nodes):.3f}")
print(f"HCRL2 leaf purity:       {leaf_purity(y, labels):.3f}")
print(f"ELBO per image:          {model.score(X):.1f} nats")
at_internal = ~model.tree_.is_leaf[nodes]
print(f"samples placed at an internal node by apply: {at_internal.mean():.0%}")

# %%
# The learned tree
# ----------------
# Each node shows the number of samples in its subtree (samples placed at
# an internal node count there and at its ancestors); each leaf also shows
# its majority digit and purity.
fig, ax = plt.subplots(figsize=(10, 4))
model.tree_.plot(ax=ax, y=y, nodes=nodes)
ax.set_title("HCRL2 on digits")
plt.show()

# %%
# Generating from a node
# ----------------------
# :meth:`~sk_hierclust.HCRL.sample` draws ``z`` from one node's Gaussian and
# decodes it. Here: 8 samples from the most populated leaf, from its parent
# and from the root. Deeper nodes generate more specific digits.
leaves = model.tree_.label_to_node
leaf = int(leaves[np.bincount(labels, minlength=len(leaves)).argmax()])
lineage = [leaf] + [int(v) for v in model.tree_.ancestors(leaf)]  # leaf, parent, ..., root

fig, axes = plt.subplots(len(lineage), 8, figsize=(8, 1.2 * len(lineage)), squeeze=False)
for row, node in zip(axes, lineage):
    images = model.sample(8, node=node).reshape(-1, 8, 8)
    for ax, image in zip(row, images):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
    kind = "leaf" if model.tree_.is_leaf[node] else ("root" if node == 0 else "internal")
    row[0].set_title(f"node {node} ({kind}, depth {model.tree_.depth[node]})", loc="left", fontsize=9)
plt.tight_layout()
plt.show()

# %%
# Level proportions
# -----------------
# HCRL2 infers a level proportion ``eta`` (a distribution over the tree's
# levels) for every sample: how much of its embedding is explained by the
# root, the middle level and the leaves. ``transform_features`` switches
# :meth:`~sk_hierclust.HCRL.transform` from the embedding to these
# "level-proportion features"; it only changes what ``transform`` returns,
# so it can be set on the fitted model.
embedding = model.transform(X)
model.set_params(transform_features="level_proportion")
eta = model.transform(X)
model.set_params(transform_features="embedding")
print("embedding:", embedding.shape, " level proportions:", eta.shape)
print("mean level proportion (root first):", np.round(eta.mean(0), 3))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3))
ax1.bar(np.arange(eta.shape[1]), eta.mean(0), yerr=eta.std(0), capsize=4)
ax1.set_xticks(np.arange(eta.shape[1]))
ax1.set_xticklabels(["root"] + [f"level {i}" for i in range(1, eta.shape[1])])
ax1.set_ylabel("mean level proportion")
for level in range(eta.shape[1]):
    ax2.hist(eta[:, level], bins=30, range=(0, 1), alpha=0.6, label=f"level {level}")
ax2.set_xlabel("level proportion per sample")
ax2.legend()
plt.tight_layout()
plt.show()
