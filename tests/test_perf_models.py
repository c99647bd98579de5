"""The fused, blocked population passes of the logistic and ordinal fits equal the dense fits.

Issue 17: the population fits run over row blocks (one pass per Newton step, a start from a
subsample); these tests check that they give the dense path's numbers to 1e-10, that the one
cumulative-logit solver matches statsmodels' OrderedModel, and that the covariates baseline uses it.
"""

import numpy as np
import pytest

from rectify.estimators.models import (ColumnDesign, _ordinal_pass, fit_logistic, fit_ordinal,
                                       ordinal_probabilities)
from rectify.llm.baseline import fit_cumulative_logit


def _logit_data(N, seed):
    rng = np.random.default_rng(seed)
    cols = [rng.normal(size=N) for _ in range(3)]
    eta = 0.3 + 0.5 * cols[0] - 0.4 * cols[1] + 0.2 * cols[2]
    z = 1 / (1 + np.exp(-(0.8 * eta + rng.normal(size=N))))  # soft labels, as an LLM's probabilities
    return cols, z, rng.uniform(0.5, 2.0, N)


@pytest.mark.parametrize("weighted", [False, True])
def test_logistic_population_pass_equals_dense_fit(weighted):
    # 300k rows: the subsample start and many blocks are used
    cols, z, w = _logit_data(300_000, 1)
    w = w / w.mean() if weighted else None
    X = np.column_stack([np.ones(len(z))] + cols)
    pop = fit_logistic(ColumnDesign([None] + cols), z, w, keep_psi=False)
    dense = fit_logistic(X, z, np.ones(len(z)) if w is None else w, keep_psi=True)
    np.testing.assert_allclose(pop.theta, dense.theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pop.hessian, dense.hessian, rtol=1e-10)
    np.testing.assert_allclose(pop.meat, dense.second_moment(), rtol=1e-10)


def test_logistic_population_pass_with_ridge_equals_dense_fit():
    cols, z, _ = _logit_data(40_000, 2)
    X = np.column_stack([np.ones(len(z))] + cols)
    pop = fit_logistic(ColumnDesign([None] + cols), z, None, keep_psi=False, ridge=50.0)
    dense = fit_logistic(X, z, np.ones(len(z)), keep_psi=True, ridge=50.0)
    np.testing.assert_allclose(pop.theta, dense.theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pop.meat, dense.second_moment(), rtol=1e-9)


def _ordinal_data(N, seed, K=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    P = ordinal_probabilities(X, np.array([0.8, -0.5]), np.linspace(-1.2, 1.2, K - 1))
    y = (rng.random(N)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    soft = 0.6 * np.eye(K)[y] + 0.4 * P
    return X, y, soft, rng.uniform(0.5, 2.0, N)


def test_ordinal_score_and_hessian_are_the_derivatives_of_the_loglik():
    X, _, P, w = _ordinal_data(3000, 3)
    beta, tau = np.array([0.3, -0.2]), np.array([-0.9, 0.1, 1.0])
    theta = np.r_[beta, tau]
    ll, g, H, S2, S = _ordinal_pass(X, P, w, beta, tau, meat=True, rows=True)
    n, h = len(X), 1e-6
    num_g = np.zeros(5)
    num_H = np.zeros((5, 5))
    for j in range(5):
        e = np.zeros(5)
        e[j] = h
        lp = _ordinal_pass(X, P, w, (theta + e)[:2], (theta + e)[2:])
        lm = _ordinal_pass(X, P, w, (theta - e)[:2], (theta - e)[2:])
        num_g[j] = (lp[0] - lm[0]) / (2 * h) * n
        num_H[:, j] = -(lp[1] - lm[1]) / (2 * h) / n
    np.testing.assert_allclose(g, num_g, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(H, num_H, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(S.sum(axis=0), g, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(S2, S.T @ S, rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_ordinal_population_pass_equals_dense_fit(weighted):
    X, _, P, w = _ordinal_data(300_000, 4)
    w = w / w.mean() if weighted else None
    pop = fit_ordinal(ColumnDesign(list(X.T)), P, w, keep_psi=False)
    dense = fit_ordinal(X, P, np.ones(len(X)) if w is None else w, keep_psi=True)
    np.testing.assert_allclose(pop.theta, dense.theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pop.hessian, dense.hessian, rtol=1e-10)
    np.testing.assert_allclose(pop.meat, dense.second_moment(), rtol=1e-9)


def test_one_cumulative_logit_solver_for_ppi_and_baseline_equals_statsmodels():
    import warnings

    from statsmodels.miscmodels.ordinal_model import OrderedModel

    X, y, _, _ = _ordinal_data(1500, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = OrderedModel(y, X, distr="logit").fit(method="bfgs", disp=0, gtol=1e-12, maxiter=10000)
    phi = np.asarray(ref.params)
    ref_theta = np.r_[phi[:2], np.cumsum(np.r_[phi[2], np.exp(phi[3:])])]
    core = fit_ordinal(X, np.eye(4)[y], None).theta  # the PPI ordinal core's solver
    beta, tau = fit_cumulative_logit(X, y, 4, C=np.inf)  # the covariates baseline
    np.testing.assert_allclose(core, ref_theta, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.r_[beta, tau], core, rtol=0, atol=1e-10)


def test_baseline_ridge_is_the_penalised_maximum_likelihood():
    from scipy import optimize

    X, y, _, w = _ordinal_data(400, 6, K=3)
    C = 0.5
    beta, tau = fit_cumulative_logit(X, y, 3, C=C, sample_weight=w)

    def objective(t):
        P = ordinal_probabilities(X, t[:2], t[2:])
        return -(w * np.log(P[np.arange(len(y)), y])).sum() + 0.5 / C * t[:2] @ t[:2]

    ref = optimize.minimize(objective, np.r_[0.0, 0.0, -0.5, 0.5], method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000})
    np.testing.assert_allclose(np.r_[beta, tau], ref.x, atol=1e-5)
    # the penalty shrinks the slopes against the plain maximum-likelihood fit
    assert np.linalg.norm(beta) < np.linalg.norm(fit_cumulative_logit(X, y, 3, C=np.inf, sample_weight=w)[0])
