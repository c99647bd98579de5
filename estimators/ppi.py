"""Prediction-powered inference: classical, naive, PPI and PPI++ for means, option shares,
quantiles, OLS, logistic and ordinal (cumulative-logit) regression.

The estimators
--------------
Write ``theta_y`` for the estimate from the pilot's human answers, ``theta_f`` for the same
estimator applied to the LLM's predictions on the pilot rows and ``theta_f~`` for it applied to the
predictions on the population frame. Then

* ``classical``: ``theta_y`` (the pilot alone);
* ``naive``: ``theta_f~`` (LLM answers taken as truth; its interval ignores the LLM's bias);
* ``ppi`` (Angelopoulos et al., 2023): ``theta_y - (theta_f - theta_f~)``;
* ``ppi++`` (Angelopoulos, Duchi & Zrnic, 2023): ``theta_y - lambda * (theta_f - theta_f~)`` with the
  lambda that minimises the estimated variance -- one lambda for all coordinates (``"overall"``) or
  one per coordinate (``"element"``). Lambda is *not* clipped to [0, 1]: a strongly informative
  predictor on a large frame can warrant lambda > 1, and ``lambda_bounds`` restores a clip.

For means and OLS this is exactly the PPI/PPI++ estimator of the papers. For logistic and ordinal
regression it is the asymptotically equivalent one-step ("difference") form, which needs three
ordinary fits instead of a lambda-dependent joint optimisation: that is what makes it fast at
N = 1e6. Its variance is the exact sandwich of the estimator actually computed,

    Var = Cov(psi_y - lambda psi_f) / n + lambda^2 Cov(psi_f~) / N,

where ``psi`` are per-row influence functions (inverse Hessian times score).

Intervals
---------
``convention="small-sample"`` (default): for OLS and logistic regression the pilot's influence rows
are divided by ``1 - h_ii`` (HC3: the classical OLS interval is statsmodels' HC3 interval); for
means and ordinal models the pilot part is scaled by n / (n - p) (HC1). A lambda tuned on
the same pilot costs one more degree of freedom (one per lambda with ``lambda_mode="element"`` in a
regression), and a tuned lambda that does not beat the pilot alone after that cost falls back to 0.
Intervals use Student's t with Welch-Satterthwaite degrees of freedom combining the pilot
(n - p [- tuned lambdas]) and population (N - p) parts; with survey weights the pilot's n becomes
``(sum w^2)^2 / sum w^4`` (the Satterthwaite df of a weighted sum of squares; ``ppi_base._weights_df``),
which keeps weighted pilots with Kish deff 2 at 95% (tests/test_degrees_of_freedom.py). Shares use a
score (Wilson-type) interval (:mod:`rectify.estimators.ppi_categorical`). This keeps 95% coverage at
pilots of n = 50 (see benchmarks/ppi_coverage.py).

Estimand (:mod:`rectify.estimand`): ``estimand="frame"`` (default) or ``"superpopulation"``, and
``overlap="inside"`` when ``yhat_pop`` is the frame the pilot was drawn from (the formula verbs detect
it): the variance then carries the finite-population correction or the frame's own sampling error.

Modules: :mod:`.ppi_base` (lambda, variance, df), :mod:`.ppi_means` (means, stratified means,
quantiles), :mod:`.ppi_categorical` (shares), :mod:`.ppi_regression` (OLS, logistic, ordinal); their
names stay importable from here.

``convention="ppi_py"``: normal (z) intervals with the variance conventions of the reference package
ppi_py 0.2.3, lambda clipped to [0, 1] and, for logistic regression, its joint-loss point estimate.
Use it to reproduce ppi_py's numbers (the test suite checks agreement to 1e-8).
"""

from __future__ import annotations

# the estimators live in modules of one job each; their names stay importable from here
from .ppi_base import (_check_common, _combine, _difference_estimator, _float_array, _lambda, _lambda_tuning,  # noqa: F401
                       _optimal_lambda, _satterthwaite, _target_fields, optimal_lambda)
from .ppi_categorical import _as_shares_matrix, _logit_share_interval, _one_hot, _share_result, ppi_shares  # noqa: F401,E501
from .ppi_means import _mean_core, _mean_fit, _prepare_mean_inputs, _stratified, ppi_mean, ppi_quantile  # noqa: F401
from .ppi_regression import _fit_in, _prepare_regression, _regression, ppi_logistic, ppi_ols, ppi_ordinal  # noqa: F401

__all__ = [
    "ppi_mean",
    "ppi_shares",
    "ppi_quantile",
    "ppi_ols",
    "ppi_logistic",
    "ppi_ordinal",
    "optimal_lambda",
]
