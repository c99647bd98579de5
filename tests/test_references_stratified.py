"""Independent reference for the stratified PPI / PPI++ mean (issue 13).

Written from the formulas, not from ``ppi_mean``: in stratum h with pilot rows S_h (n_h of them),
frame rows U_h (N_h) and frame share W_h = N_h / N,

    lambda_h = Cov_h(y, f) / (Var_h(f) + (n_h / N_h) Var_h(f~))         (moments with divisor n_h, N_h)
    theta_h  = mean_S_h(y - lambda_h f) + lambda_h mean_U_h(f~)
    V_h      = S^2_h(y - lambda_h f) / n_h + lambda_h^2 S^2_h(f~) / N_h

and the stratified estimate ``sum_h W_h theta_h`` with variance ``sum_h W_h^2 V_h``. rectify's default
small-sample convention divides the pilot sum of squares by ``n_h - 2`` when lambda_h is tuned (one
degree of freedom for the mean, one for lambda; ``n_h - 1`` when lambda is fixed) and the frame's by
``N_h - 1``, and falls back to lambda_h = 0 (the stratum's pilot mean) when the tuned variance is no
smaller than the pilot-only one. The superpopulation target with a separate frame is pinned (where
the API has ``estimand``), so these are the PPI papers' formulas.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from rectify.estimators.ppi import ppi_mean


def _data(seed=11):
    rng = np.random.default_rng(seed)
    N = 6000
    h_pop = rng.choice(np.array(["a", "b", "c"]), N, p=[0.5, 0.3, 0.2])
    shift = {"a": 0.0, "b": 1.0, "c": -0.5}
    mu = np.array([shift[h] for h in h_pop])
    u = rng.normal(size=N)
    f_pop = 2.0 + mu + 0.8 * u + 0.3 * rng.normal(size=N)
    # a separate pilot: 40 / 30 / 25 rows per stratum (not proportional), a stratum-specific LLM bias
    sizes = {"a": 40, "b": 30, "c": 25}
    h = np.repeat(list(sizes), list(sizes.values()))
    m = np.array([shift[k] for k in h])
    v = rng.normal(size=len(h))
    y = 2.3 + m + v + 0.5 * rng.normal(size=len(h))
    f = 2.0 + m + 0.8 * v + 0.3 * rng.normal(size=len(h)) + np.where(h == "c", 0.4, 0.0)
    return y, f, h, f_pop, h_pop


def _superpopulation():
    return {"estimand": "superpopulation"} if "estimand" in inspect.signature(ppi_mean).parameters else {}


def _stratum(y, f, fp, tuned: bool):
    n, N = len(y), len(fp)
    if tuned:
        cov = np.mean((y - y.mean()) * (f - f.mean()))
        lam = cov / (np.var(f) + n / N * np.var(fp))
    else:
        lam = 1.0
    a = y - lam * f
    theta = a.mean() + lam * fp.mean()
    V = np.sum((a - a.mean()) ** 2) / (n * (n - 1 - tuned)) + lam**2 * np.var(fp, ddof=1) / N
    if tuned and V >= np.var(y, ddof=1) / n:
        return y.mean(), np.var(y, ddof=1) / n, 0.0
    return theta, V, lam


@pytest.mark.parametrize("method", ["ppi", "ppi++"])
def test_stratified_mean_matches_hand_formula(method):
    y, f, h, fp, hp = _data()
    N = len(fp)
    est = var = 0.0
    lams = {}
    for s in ["a", "b", "c"]:
        W = np.mean(hp == s)
        t, V, lam = _stratum(y[h == s], f[h == s], fp[hp == s], tuned=method == "ppi++")
        est += W * t
        var += W**2 * V
        lams[s] = lam
    r = ppi_mean(y, f, fp, method, strata=h, strata_pop=hp, **_superpopulation())
    assert r.estimate[0] == pytest.approx(est, abs=1e-12)
    assert r.std_error[0] == pytest.approx(np.sqrt(var), rel=1e-10)
    if method == "ppi++":
        for s, lam in lams.items():
            assert r.tuning["lambda_by_stratum"][s] == pytest.approx(lam, rel=1e-10)
    assert r.n_population == N


def test_stratification_is_not_the_pooled_estimator():
    """The strata matter: the pooled (unstratified) PPI mean differs, so the test above can fail."""
    y, f, h, fp, hp = _data()
    strat = ppi_mean(y, f, fp, "ppi", strata=h, strata_pop=hp, **_superpopulation()).estimate[0]
    pooled = ppi_mean(y, f, fp, "ppi", **_superpopulation()).estimate[0]
    assert abs(strat - pooled) > 0.02
