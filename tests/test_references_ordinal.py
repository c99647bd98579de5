"""Independent reference for ordinal (cumulative-logit) PPI / PPI++ (issue 13).

The reference does not call rectify's ordinal code. It writes the proportional-odds model's per-row
score by hand,

    a_j = tau_j - x'beta,  F_j = logistic(a_j),  pi_k = F_k - F_{k-1}  (F_0 = 0, F_K = 1),
    l_i = sum_k P_ik log pi_ik                       (P: one-hot human answers or soft labels),
    dl/da_j = F_j (1 - F_j) (P_j / pi_j - P_{j+1} / pi_{j+1}),
    dl/dtau_j = dl/da_j,   dl/dbeta = -x sum_j dl/da_j,

solves the estimating equations ``sum_i s_i(theta) = 0`` with ``scipy.optimize.root``, takes the
Hessian ``H = -d mean(s) / d theta`` by central finite differences, the influence rows
``psi_i = H^-1 s_i``, and builds the PPI estimate ``theta_y - lam (theta_f - theta_f~)`` and its
variance ``Var(psi_y - lam psi_f) / n + lam^2 Var(psi_f~) / N`` from them. The human-answer fit is
also checked against statsmodels' ``OrderedModel``. Tolerances: the root solve is converged to
~1e-12 in the score; finite-difference Hessians carry ~1e-7 relative error.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from scipy import optimize
from scipy.special import expit

from rectify.estimators.ppi import ppi_ordinal

K = 4
CATS = [1, 2, 3, 4]


def _data(seed=7, n=150, N=3000):
    rng = np.random.default_rng(seed)
    X_all = rng.normal(size=(n + N, 2))
    lat = X_all @ np.array([0.8, -0.5]) + rng.logistic(size=n + N)
    y_all = np.digitize(lat, [-1.0, 0.2, 1.3]) + 1
    # the LLM: a noisy, shifted view of the latent, returned as an answer distribution
    v = 0.7 * lat + 0.3 + rng.normal(scale=0.8, size=n + N)
    cum = expit(np.array([-1.0, 0.2, 1.3])[None, :] - v[:, None])
    P_all = np.diff(np.column_stack([np.zeros(n + N), cum, np.ones(n + N)]), axis=1)
    return X_all[:n], y_all[:n], P_all[:n], X_all[n:], P_all[n:]


def _scores(theta, X, P):
    """Per-row scores (n, p + K - 1), beta first then the thresholds."""
    p = X.shape[1]
    beta, tau = theta[:p], theta[p:]
    a = tau[None, :] - (X @ beta)[:, None]
    F = expit(a)
    Fpad = np.column_stack([np.zeros(len(X)), F, np.ones(len(X))])
    pi = np.diff(Fpad, axis=1)
    r = P / pi
    da = F * (1 - F) * (r[:, :-1] - r[:, 1:])
    return np.column_stack([-X * da.sum(axis=1, keepdims=True), da])


def _fit(X, P):
    """Root of the mean score; theta, influence rows, Hessian."""
    p = X.shape[1]
    start = np.concatenate([np.zeros(p), np.linspace(-1, 1, K - 1)])
    sol = optimize.root(lambda t: _scores(t, X, P).mean(axis=0), start, method="hybr", tol=1e-14)
    assert sol.success, sol.message
    theta = sol.x
    d, h = len(theta), 1e-5
    H = np.empty((d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = h
        H[:, j] = -(_scores(theta + e, X, P).mean(0) - _scores(theta - e, X, P).mean(0)) / (2 * h)
    psi = _scores(theta, X, P) @ np.linalg.inv(H).T
    return theta, psi


def _onehot(y):
    return (np.asarray(y)[:, None] == np.array(CATS)[None, :]).astype(float)


@pytest.fixture(scope="module")
def ref():
    X, y, P, Xp, Pp = _data()
    ty, py = _fit(X, _onehot(y))
    tf, pf = _fit(X, P)
    tp, pp = _fit(Xp, Pp)
    return {"data": (X, y, P, Xp, Pp), "y": (ty, py), "f": (tf, pf), "pop": (tp, pp)}


def _superpopulation():
    """Pin the superpopulation target with a separate frame where the API has an ``estimand``."""
    return {"estimand": "superpopulation"} if "estimand" in inspect.signature(ppi_ordinal).parameters else {}


def test_human_fit_matches_statsmodels_ordered_model(ref):
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    X, y, *_ = ref["data"]
    sm = OrderedModel(y, X, distr="logit").fit(method="newton", disp=0, maxiter=200, tol=1e-12)
    beta = sm.params[:2]
    inc = sm.params[2:]
    tau = np.cumsum(np.concatenate([[inc[0]], np.exp(inc[1:])]))
    np.testing.assert_allclose(ref["y"][0], np.concatenate([beta, tau]), atol=2e-5)


@pytest.mark.parametrize("lam", [1.0, 0.6])
def test_ppi_estimate_and_ppi_py_variance_match_hand_derived(ref, lam):
    X, y, P, Xp, Pp = ref["data"]
    (ty, py), (tf, pf), (tp, pp) = ref["y"], ref["f"], ref["pop"]
    n, N = len(y), len(Xp)
    est_ref = ty - lam * (tf - tp)
    A = py - lam * pf
    cov_ref = A.T @ A / n**2 + lam**2 * pp.T @ pp / N**2  # ppi_py's convention: ddof 0, normal interval
    method = "ppi" if lam == 1.0 else "ppi++"  # lam = 1 is plain PPI; a fixed lam is not tuned
    r = ppi_ordinal(X, y, P, Xp, Pp, method, lam=None if lam == 1.0 else lam, categories=CATS,
                    convention="ppi_py")
    np.testing.assert_allclose(r.estimate, est_ref, rtol=0, atol=1e-7)
    np.testing.assert_allclose(r.cov, cov_ref, rtol=1e-5, atol=1e-12)


def test_small_sample_variance_is_hc1_with_satterthwaite_df(ref):
    """Default convention, superpopulation target, separate frame, fixed lambda: the pilot part is
    scaled by n / (n - d) (d = 2 slopes + 3 thresholds), the frame part by N / (N - d)."""
    X, y, P, Xp, Pp = ref["data"]
    (ty, py), (tf, pf), (tp, pp) = ref["y"], ref["f"], ref["pop"]
    n, N, d, lam = len(y), len(Xp), py.shape[1], 0.7
    A = py - lam * pf
    va = A.T @ A / (n * (n - d))
    vb = lam**2 * pp.T @ pp / (N * (N - d))
    r = ppi_ordinal(X, y, P, Xp, Pp, "ppi++", lam=lam, categories=CATS, **_superpopulation())
    np.testing.assert_allclose(r.cov, va + vb, rtol=1e-5, atol=1e-12)
    a, b = np.diag(va), np.diag(vb)
    df_ref = (a + b) ** 2 / (a**2 / (n - d) + b**2 / (N - d))
    np.testing.assert_allclose(np.asarray(r.df, float), df_ref, rtol=1e-5)


def test_tuned_lambda_minimises_the_hand_derived_variance(ref):
    """PPI++ "overall": lambda = tr Cov(psi_y, psi_f) / (tr Var(psi_f) + (n/N) tr Var(psi_f~))
    (superpopulation target, separate frame), and the estimate follows from it."""
    X, y, P, Xp, Pp = ref["data"]
    (ty, py), (tf, pf), (tp, pp) = ref["y"], ref["f"], ref["pop"]
    n, N = len(y), len(Xp)
    cy, cf = py - py.mean(0), pf - pf.mean(0)
    lam = np.trace(cy.T @ cf / n) / (np.trace(cf.T @ cf / n) + n / N * np.trace(pp.T @ pp / N))
    r = ppi_ordinal(X, y, P, Xp, Pp, "ppi++", categories=CATS, convention="ppi_py",
                    lambda_bounds=(-10.0, 10.0))
    assert r.tuning["lambda"] == pytest.approx(lam, rel=1e-5)
    np.testing.assert_allclose(r.estimate, ty - lam * (tf - tp), atol=1e-6)
