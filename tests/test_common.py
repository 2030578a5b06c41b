"""scikit-learn's estimator checks over every estimator of the package."""

import pytest
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

from sk_hierclust._testing import expected_failed_checks, fast_instances


@parametrize_with_checks(fast_instances(), expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


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


@pytest.mark.parametrize("estimator", fast_instances(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", EXPLICIT_CHECKS, ids=lambda c: c.__name__)
def test_checks_not_yielded_by_check_estimator(estimator, check):
    pytest.importorskip("pandas")
    check(type(estimator).__name__, estimator)
