"""One table of fast test parameters and of expected check failures, for every estimator.

Used by ``tests/test_common.py`` (scikit-learn's ``parametrize_with_checks``) and the
model tests, so that a new model is added to the common tests in one place.
"""

import numpy as np

from .models.hcrl import HCRL
from .models.htvae import HTVAE
from .models.treevae import TreeVAE
from .models.vlac import VLAC

FAST_PARAMS = {
    TreeVAE: dict(max_leaves=3, max_depth=2, n_epochs=8, n_epochs_grow=4, n_epochs_finetune=2,
                  batch_size=16, random_state=0),
    # check_clustering's 3 blobs were recovered (ARI >= 0.73) for seeds 0-3 with these
    HCRL: dict(max_depth=2, max_leaves=3, init_branching=3, hidden_dims=(64, 32), n_epochs=4,
               n_epochs_pretrain=30, lock_epochs=20, batch_size=16, random_state=0),
    # check_clustering passed for random_state 0-5 with these
    HTVAE: dict(map_shapes=((2, 2), (1, 2)), latent_dim=4, rho=4.0, sigma_init=0.1, n_epochs=10, batch_size=16,
                lr=2e-3, random_state=0),
    # check_clustering (one layer, n_clusters=3): ARI 0.53-0.94 for random_state 0-5 with these
    VLAC: dict(n_clusters=(2, 3), latent_dims=2, discrete_estimator="enumerate", n_epochs=30, batch_size=16,
               random_state=0),
}

_SPARSE_REASON = ("sparse X is supported (CSR, densified batch by batch), but the check asserts that "
                  "predict_proba has a classifier's 2 or 4 columns (it reads classifier_tags, None for a "
                  "clusterer); a clusterer's has one per cluster. Sparse input is tested in the model tests.")

# {estimator class: {check name: reason}}; every entry needs a reason.
EXPECTED_FAILED_CHECKS = {
    cls: {"check_estimator_sparse_array": _SPARSE_REASON, "check_estimator_sparse_matrix": _SPARSE_REASON}
    for cls in FAST_PARAMS
}


def fast_instances():
    """One fast-to-fit instance of every estimator of the package."""
    return [cls(**params) for cls, params in FAST_PARAMS.items()]


def expected_failed_checks(estimator):
    """``{check_name: reason}`` for ``parametrize_with_checks(expected_failed_checks=...)``."""
    return EXPECTED_FAILED_CHECKS.get(type(estimator), {})


def make_planted(n_per_cluster=75, n_features=16, high=5.0, pattern=1.5, noise=0.5, seed=0):
    """Four Gaussian blobs forming two super-clusters of two sub-clusters each.

    Super-cluster ``s`` is "high" (``high``) on its own half of the features and 0 on the
    other half; its sub-cluster ``t`` adds ``+pattern`` on the even (t=0) or odd (t=1)
    features of that half and ``-pattern`` on the others. Sub-clusters of one super-cluster
    are ``2 * pattern * sqrt(n_features / 2) = 8.5`` apart, super-clusters about 21.

    Returns
    -------
    X : ndarray of shape (4 * n_per_cluster, n_features), raw (not in [0, 1])
    y : ndarray of shape (4 * n_per_cluster,)
        Sub-cluster label 0..3; the super-cluster label is ``y // 2``.
    """
    rng = np.random.RandomState(seed)
    half = n_features // 2
    means = np.zeros((4, n_features))
    for c in range(4):
        s, t = divmod(c, 2)
        block = slice(s * half, (s + 1) * half)
        means[c, block] = high + np.where(np.arange(half) % 2 == t, pattern, -pattern)
    y = np.repeat(np.arange(4), n_per_cluster)
    X = means[y] + noise * rng.normal(size=(y.size, n_features))
    return X, y
