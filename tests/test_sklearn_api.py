"""scikit-learn contract of the PPI classes, and their agreement with the cores."""

import numpy as np
import pytest
from sklearn_contract import sklearn_contract

from rectify.estimators.ppi import ppi_logistic, ppi_ols
from rectify.estimators.sklearn_api import PPILinearRegression, PPILogisticRegression

# The default logistic fit is unpenalised and refuses perfectly separated data with a clear error;
# scikit-learn's generic checks fit separable blobs, so they run on a weakly penalised instance.
# One check cannot apply: it fits 30 features on 27 rows, and the classical (pilot) part of PPI refuses a
# pilot with fewer rows than coefficients instead of returning a minimum-norm solution.
EXPECTED = {
    "check_sample_weight_equivalence_on_dense_data":
        "fits more coefficients than rows; rectify refuses an unidentified regression",
}


@sklearn_contract([PPILinearRegression(), PPILogisticRegression(alpha=1.0)],
                  expected_failed_checks=lambda est: EXPECTED)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_linear_class_equals_core():
    rng = np.random.default_rng(0)
    X, Xu = rng.normal(size=(80, 2)), rng.normal(size=(900, 2))
    y = X @ [1.0, -1.0] + rng.normal(size=80)
    f, fu = X @ [0.8, -0.6] + 0.5 * rng.normal(size=80), Xu @ [0.8, -0.6]
    m = PPILinearRegression().fit(X, y, yhat=f, X_unlabeled=Xu, yhat_unlabeled=fu)
    core = ppi_ols(np.column_stack([np.ones(80), X]), y, f, np.column_stack([np.ones(900), Xu]), fu)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], core.estimate)
    assert float(m.lambda_) == pytest.approx(core.tuning["lambda"])


def test_logistic_class_maps_labels_and_equals_core():
    rng = np.random.default_rng(1)
    X, Xu = rng.normal(size=(150, 1)), rng.normal(size=(1000, 1))
    p = 1 / (1 + np.exp(-X[:, 0]))
    y01 = (rng.uniform(size=150) < p).astype(int)
    y = np.where(y01 == 1, "agree", "disagree")  # classes_ sorted: agree < disagree
    m = PPILogisticRegression(method="classical").fit(X, y)
    with pytest.raises(Exception, match="separated"):
        PPILogisticRegression().fit(np.arange(10.0)[:, None], np.arange(10) > 4)
    core = ppi_logistic(np.column_stack([np.ones(150), X]), (y == "disagree").astype(float), method="classical")
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], core.estimate)
    assert m.predict_proba(X).shape == (150, 2)
