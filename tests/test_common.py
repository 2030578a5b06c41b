"""scikit-learn's estimator checks over every configuration of the test table.

Every check gets the quick settings (``QUICK_PARAMS``) except the ``SLOW_CHECKS``
(``check_clustering``), which get the tuned ``FAST_PARAMS``.
"""

from functools import partial

import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_get_feature_names_out_error,
    check_global_output_transform_pandas,
    check_param_validation,
    check_set_output_transform,
    check_set_output_transform_pandas,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    parametrize_with_checks,
)

from sk_hierclust._testing import CONFIGS, check_params, expected_failed_checks, make_config


def _check_name(check):
    while isinstance(check, partial):
        check = check.func
    return check.__name__


@parametrize_with_checks([make_config(name) for name in CONFIGS], expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    # a clone: parametrize_with_checks hands every check of a configuration the same instance
    check(clone(estimator).set_params(**check_params(estimator, _check_name(check))))


EXPLICIT_CHECKS = [
    check_param_validation,
    check_dataframe_column_names_consistency,
    check_set_output_transform,
    check_set_output_transform_pandas,
    check_global_output_transform_pandas,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    check_get_feature_names_out_error,
]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("check", EXPLICIT_CHECKS, ids=lambda c: c.__name__)
def test_checks_not_yielded_by_check_estimator(name, check):
    pytest.importorskip("pandas")
    estimator = make_config(name)
    check(type(estimator).__name__, estimator)
