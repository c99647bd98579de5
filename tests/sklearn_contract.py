"""scikit-learn's estimator checks as pytest parameters, for the sklearn-style classes of rectify.

Same as ``sklearn.utils.estimator_checks.parametrize_with_checks`` except that
``check_array_api_input`` is left out: rectify converts every input to a NumPy array and does not
claim array-API support, and scikit-learn only runs that check when the process was started with
``SCIPY_ARRAY_API=1`` (otherwise it reports a skip, which would hide nothing but noise).
"""

import pytest
from sklearn.utils.estimator_checks import _get_check_estimator_ids, estimator_checks_generator

NOT_CLAIMED = ("check_array_api_input",)


def _name(check):
    func = getattr(check, "func", check)
    return getattr(func, "__name__", str(func))


def sklearn_contract(estimators, expected_failed_checks=None):
    """A ``pytest.mark.parametrize`` over ``(estimator, check)`` pairs (see module notes)."""
    params = []
    for est in estimators:
        expected = expected_failed_checks(est) if callable(expected_failed_checks) else expected_failed_checks
        for item in estimator_checks_generator(est, legacy=True, expected_failed_checks=expected, mark="xfail"):
            check = item.values[1] if hasattr(item, "values") else item[1]
            if _name(check) in NOT_CLAIMED:
                continue
            params.append(item)
    return pytest.mark.parametrize("estimator, check", params, ids=_get_check_estimator_ids)
