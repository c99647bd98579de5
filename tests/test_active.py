"""Active-inference estimators (issue 15): unbiasedness, coverage, design variances, refusals."""

import numpy as np
import pytest

from rectify.errors import EstimationError, InputError
from rectify.estimators.active import active_mean, active_ols, active_shares, design_variance
from rectify.pilot_design import draw_positions, inclusion_probabilities

R = 2000
COVER_TOL = 3 * np.sqrt(0.95 * 0.05 / R)


def _population(N=1200, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.lognormal(-0.3, 0.7, N)  # error sd varies across the frame
    f = rng.normal(2.0, 1.0, N)
    y = 0.4 + 0.8 * f + rng.normal(0, s)
    return y, f, s


@pytest.mark.parametrize("design, sampling", [("active", "poisson"), ("active", "fixed"), ("neyman", "fixed"),
                                              ("srs", "fixed")])
def test_unbiased_and_covering(design, sampling):
    y, f, s = _population()
    pi, st = inclusion_probabilities(s, 80, design, uniform=0.2)
    rng = np.random.default_rng(42)
    est, cover, var = np.empty(R), np.empty(R, bool), np.empty(R)
    for r in range(R):
        pos = draw_positions(pi, sampling, rng, st)
        res = active_mean(y[pos], f[pos], f, pi[pos], sampling="stratified" if st is not None else sampling,
                          strata=None if st is None else st[pos])
        lo, hi = res.conf_int()
        est[r], cover[r], var[r] = res.estimate[0], lo[0] <= y.mean() <= hi[0], res.cov[0, 0]
    mcse = est.std(ddof=1) / np.sqrt(R)
    assert abs(est.mean() - y.mean()) <= 3 * mcse
    assert abs(cover.mean() - 0.95) <= COVER_TOL
    # the variance estimator tracks the Monte-Carlo variance (plug-in tuning: within 10%)
    assert var.mean() == pytest.approx(est.var(ddof=1), rel=0.10)


def test_poisson_variance_formula_against_simulation_and_its_unbiased_estimator():
    y, f, s = _population(N=800, seed=3)
    N = y.size
    pi, _ = inclusion_probabilities(s, 60, "active", uniform=0.3)
    e = y - f  # lam = 1: the estimator is linear, so draws vectorise
    V = ((1 - pi) / pi * e**2).sum() / N**2
    reps = 20000
    rng = np.random.default_rng(7)
    S = rng.random((reps, N)) < pi
    est = f.mean() + (S * (e / pi)).sum(axis=1) / N
    vhat = (S * ((1 - pi) / pi**2 * e**2)).sum(axis=1) / N**2
    assert est.mean() == pytest.approx(y.mean(), abs=3 * est.std() / np.sqrt(reps))
    assert est.var() == pytest.approx(V, rel=4 * np.sqrt(2 / reps) * 2)  # kurtosis allowance
    assert abs(vhat.mean() - V) <= 3 * vhat.std() / np.sqrt(reps)
    # the library returns exactly these numbers on a draw
    pos = np.flatnonzero(S[0])
    r = active_mean(y[pos], f[pos], f, pi[pos], sampling="poisson", lam=1.0)
    assert r.estimate[0] == pytest.approx(est[0]) and r.cov[0, 0] == pytest.approx(vhat[0])


def test_fixed_and_stratified_variances_reduce_to_textbook_formulas():
    rng = np.random.default_rng(1)
    u = rng.normal(size=30)
    # SRS of 30 from 300: Hajek estimator = N^2 (1 - f) s^2 / n
    assert design_variance(u, np.full(30, 0.1), "fixed")[0, 0] == pytest.approx(300**2 * 0.9 * u.var(ddof=1) / 30)
    # two strata: 10 of 40 and 20 of 200
    strata = np.r_[np.zeros(10), np.ones(20)]
    pi = np.r_[np.full(10, 0.25), np.full(20, 0.1)]
    ref = 40**2 * 0.75 * u[:10].var(ddof=1) / 10 + 200**2 * 0.9 * u[10:].var(ddof=1) / 20
    assert design_variance(u, pi, "stratified", strata)[0, 0] == pytest.approx(ref)
    # certainty rows add nothing
    pi2 = np.r_[np.ones(5), np.full(25, 0.2)]
    assert design_variance(u, pi2, "poisson")[0, 0] == pytest.approx((0.8 / 0.04 * u[5:] ** 2).sum())


def test_census_is_exact():
    y, f, _ = _population(N=50)
    r = active_mean(y, f, f, np.ones(50), sampling="fixed")
    assert r.estimate[0] == pytest.approx(y.mean()) and r.std_error[0] == pytest.approx(0, abs=1e-12)


def test_tuned_lambda_is_the_weighted_least_squares_slope():
    y, f, s = _population(N=600, seed=4)
    pi, _ = inclusion_probabilities(s, 100, "active")
    pos = draw_positions(pi, "poisson", np.random.default_rng(0))
    r = active_mean(y[pos], f[pos], f, pi[pos])
    a = (1 - pi[pos]) / pi[pos] ** 2
    A = np.column_stack([np.ones(pos.size), f[pos]]) * np.sqrt(a)[:, None]
    c, lam = np.linalg.lstsq(A, y[pos] * np.sqrt(a), rcond=None)[0]
    assert r.tuning["lambda"] == pytest.approx(lam)
    e = y[pos] - c - lam * f[pos]
    assert r.estimate[0] == pytest.approx(c + lam * f.mean() + (e / pi[pos]).sum() / f.size)


def test_shares_sum_to_one_and_match_per_option_means():
    rng = np.random.default_rng(5)
    N = 500
    P = rng.dirichlet([2, 3, 1], N)
    y = np.array([rng.choice(3, p=p) for p in P]) + 1
    pi, _ = inclusion_probabilities(P.max(axis=1), 80, "active")
    pos = draw_positions(pi, "fixed", rng)
    r = active_shares(y[pos], P[pos], P, pi[pos], categories=[1, 2, 3], sampling="fixed")
    assert r.estimate.sum() == pytest.approx(1.0) and r.terms == ("share[1]", "share[2]", "share[3]")
    r1 = active_shares(y[pos], P[pos], P, pi[pos], categories=[1, 2, 3], sampling="fixed", lam=1.0)
    for k in range(3):
        m = active_mean((y[pos] == k + 1).astype(float), P[pos, k], P[:, k], pi[pos], sampling="fixed", lam=1.0)
        assert r1.estimate[k] == pytest.approx(m.estimate[0]) and r1.cov[k, k] == pytest.approx(m.cov[0, 0])


def test_ols_with_an_intercept_only_is_the_mean_and_covers_census_coefficients():
    y, f, s = _population(N=1500, seed=6)
    pi, _ = inclusion_probabilities(s, 150, "active")
    rng = np.random.default_rng(8)
    pos = draw_positions(pi, "poisson", rng)
    one = np.ones((1500, 1))
    a = active_ols(one[pos], y[pos], f[pos], one, f, pi[pos], terms=["Intercept"])
    b = active_mean(y[pos], f[pos], f, pi[pos])
    assert a.estimate[0] == pytest.approx(b.estimate[0]) and a.std_error[0] == pytest.approx(b.std_error[0])
    x = f + np.random.default_rng(9).normal(size=1500)
    X = np.column_stack([one[:, 0], x])
    truth = np.linalg.lstsq(X, y, rcond=None)[0]
    _check_regression(active_ols, X, y, f, pi, truth, 600, rng, slack=0.0)


def _check_regression(core, X, y, f, pi, truth, reps, rng, slack):
    """Unbiased (within 3 Monte-Carlo s.e. + slack) and covering (3 Monte-Carlo s.e.) over fixed-size draws."""
    hits, est = np.zeros(X.shape[1]), np.empty((reps, X.shape[1]))
    for r in range(reps):
        pos = draw_positions(pi, "fixed", rng)
        res = core(X[pos], y[pos], f[pos], X, f, pi[pos], sampling="fixed")
        lo, hi = res.conf_int()
        hits += (lo <= truth) & (truth <= hi)
        est[r] = res.estimate
    assert (np.abs(est.mean(axis=0) - truth) <= 3 * est.std(axis=0) / np.sqrt(reps) + slack).all()
    assert (np.abs(hits / reps - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / reps)).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(pi=np.zeros(10)), "'pi'"), (dict(pi=np.full(10, 1.2)), "'pi'"), (dict(pi=np.full(9, 0.1)), "'pi'"),
    (dict(sampling="cluster"), "'sampling'"), (dict(sampling="stratified"), "'strata'"),
    (dict(strata=np.zeros(10)), "'strata'"), (dict(lam="auto"), "'lam'"), (dict(lam=np.nan), "'lam'"),
    (dict(yhat=np.ones(9)), "'yhat'"), (dict(yhat_pop=np.ones(5)), "'yhat_pop'"),
    (dict(y=np.r_[np.nan, np.ones(9)]), "'y'"),
])
def test_refuses_bad_inputs(kwargs, match):
    args = dict(y=np.arange(10.0), yhat=np.arange(10.0), yhat_pop=np.arange(100.0), pi=np.full(10, 0.1),
                sampling="poisson")
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        active_mean(**args)


def test_refuses_unestimable_designs():
    with pytest.raises(InputError, match="varies within stratum"):
        design_variance(np.ones(4), [0.1, 0.2, 0.1, 0.1], "stratified", [0, 0, 1, 1])
    with pytest.raises(EstimationError, match="single pilot row"):
        design_variance(np.ones(3), [0.1, 0.1, 0.2], "stratified", [0, 0, 1])
    with pytest.raises(InputError, match="categories"):
        active_shares(np.array([1, 2, 4]), np.full((3, 2), 0.5), np.full((9, 2), 0.5), np.full(3, 0.3),
                      categories=[1, 2])


def test_logistic_covers_census_coefficients_and_refuses_non_binary():
    from scipy.optimize import root

    from rectify.estimators.active import active_logistic

    rng = np.random.default_rng(12)
    N = 2000
    x = rng.normal(size=N)
    X = np.column_stack([np.ones(N), x])
    yp = (rng.random(N) < 1 / (1 + np.exp(-(0.3 + 0.8 * x)))).astype(float)
    fp = 1 / (1 + np.exp(-(0.3 + 0.8 * x + rng.normal(0, 1, N))))  # a noisy predicted probability
    truth = root(lambda t: X.T @ (yp - 1 / (1 + np.exp(-(X @ t)))), np.zeros(2)).x
    err = np.sqrt(fp * (1 - fp))
    pi, _ = inclusion_probabilities(err, 200, "active")
    _check_regression(active_logistic, X, yp, fp, pi, truth, 500, rng, slack=0.01)  # O(1/n) bias allowed
    with pytest.raises(InputError, match="0/1"):
        active_logistic(X[:10], np.arange(10.0), fp[:10], X, fp, np.full(10, 0.1))
