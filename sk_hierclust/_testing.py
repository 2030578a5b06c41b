"""One table of fast test parameters and of expected check failures, for every estimator.

Used by ``tests/test_common.py`` (scikit-learn's ``parametrize_with_checks``) and the
model tests, so that a new model is added to the common tests in one place.
"""

from .models.treevae import TreeVAE

FAST_PARAMS = {
    TreeVAE: dict(max_leaves=3, max_depth=2, n_epochs=8, n_epochs_grow=4, n_epochs_finetune=2,
                  batch_size=16, random_state=0),
}

# {estimator class: {check name: reason}}; every entry needs a reason.
EXPECTED_FAILED_CHECKS = {
    TreeVAE: {},
}


def fast_instances():
    """One fast-to-fit instance of every estimator of the package."""
    return [cls(**params) for cls, params in FAST_PARAMS.items()]


def expected_failed_checks(estimator):
    """``{check_name: reason}`` for ``parametrize_with_checks(expected_failed_checks=...)``."""
    return EXPECTED_FAILED_CHECKS.get(type(estimator), {})
