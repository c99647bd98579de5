"""Numeric cores of calibration weighting and design-based estimation: closed forms and invariants."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectify.errors import ConvergenceError, EstimationError, InputError
from rectify.estimators.calibration import (
    calfun,
    calibrate_weights,
    cell_codes,
    poststratify,
    rake,
    trim_g,
    trim_weights,
)
from rectify.estimators.survey_estimation import (
    GregStep,
    SurveyDesign,
    bootstrap_factors,
    jkn_factors,
    quantile_math,
    stratified_cov,
    survey_mean,
    survey_ols,
    survey_shares,
    survey_total,
)


def _data(seed, n=300):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, n)
    b = rng.integers(0, 3, n)
    x = rng.gamma(2.0, 1.0, n)
    d = rng.uniform(1.0, 5.0, n)
    return rng, a, b, x, d


def _onehot(c, k):
    out = np.zeros((c.size, k))
    out[np.arange(c.size), c] = 1.0
    return out


def test_linear_calibration_closed_form():
    rng, a, b, x, d = _data(0)
    X = np.column_stack([np.ones(a.size), x, a == 1])
    T = X.T @ d * np.array([1.1, 0.95, 1.2])
    fit = calibrate_weights(X, d, T, method="linear")
    lam = np.linalg.solve(X.T @ (X * d[:, None]), T - X.T @ d)
    np.testing.assert_allclose(fit.g, 1.0 + X @ lam, rtol=1e-12)
    np.testing.assert_allclose(X.T @ fit.weights, T, rtol=1e-12)
    assert fit.iterations == 1


def test_rake_on_cells_equals_newton_raking():
    rng, a, b, x, d = _data(1)
    ta = np.array([100.0, 200.0, 300.0, 400.0])
    tb = np.array([500.0, 300.0, 200.0])
    fast = rake([a, b], [ta, tb], d, tol=1e-13)
    X = np.column_stack([_onehot(a, 4), _onehot(b, 3)])
    newton = calibrate_weights(X, d, np.concatenate([ta, tb]), method="raking", tol=1e-13)
    np.testing.assert_allclose(fast.weights, newton.weights, rtol=1e-10)
    np.testing.assert_allclose(np.bincount(a, fast.weights), ta, rtol=1e-12)
    np.testing.assert_allclose(np.bincount(b, fast.weights), tb, rtol=1e-12)
    # raking g-weights are a product of one factor per margin: log g is additive
    lg = np.log(fast.g)
    coef, *_ = np.linalg.lstsq(X, lg, rcond=None)
    np.testing.assert_allclose(X @ coef, lg, atol=1e-10)


def test_logit_respects_bounds_and_truncated_clips():
    rng, a, b, x, d = _data(2)
    X = np.column_stack([np.ones(a.size), x])
    T = X.T @ d * np.array([1.0, 1.15])
    lo, hi = 0.7, 1.4
    fit = calibrate_weights(X, d, T, method="logit", bounds=(lo, hi))
    assert lo < fit.g.min() and fit.g.max() < hi
    np.testing.assert_allclose(X.T @ fit.weights, T, rtol=1e-11)
    tr = calibrate_weights(X, d, T, method="truncated", bounds=(0.7, 1.4))
    assert tr.g.min() >= 0.7 - 1e-15 and tr.g.max() <= 1.4 + 1e-15
    assert np.isclose(tr.g, 0.7).any() or np.isclose(tr.g, 1.4).any()  # a bound binds
    np.testing.assert_allclose(X.T @ tr.weights, T, rtol=1e-11)
    # the calibration functions: g(0) = 1 and slope 1 at 0 for every method
    for m, bnd in [("linear", None), ("raking", None), ("logit", (lo, hi)), ("truncated", (0.8, 1.3))]:
        f, df = calfun(m, bnd if bnd else (-np.inf, np.inf))
        assert f(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-15)
        assert df(np.array([0.0]))[0] == pytest.approx(1.0, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.5, 2.0))
def test_calibrated_totals_hold_and_scale_equivariant(seed, scale):
    rng, a, b, x, d = _data(seed, n=120)
    ta = np.bincount(a, minlength=4) * rng.uniform(5, 15, 4)
    tb = np.bincount(b, minlength=3).astype(float)
    tb = tb / tb.sum() * ta.sum()
    if (np.bincount(a, minlength=4) == 0).any() or (tb == 0).any():
        return
    fit = rake([a, b], [ta, tb], d)
    np.testing.assert_allclose(np.bincount(a, fit.weights, 4), ta, rtol=1e-10)
    np.testing.assert_allclose(np.bincount(b, fit.weights, 3), tb, rtol=1e-10)
    # multiplying design weights by a constant leaves the final weights unchanged
    fit2 = rake([a, b], [ta, tb], d * scale)
    np.testing.assert_allclose(fit2.weights, fit.weights, rtol=1e-9)
    # row order does not matter
    perm = rng.permutation(a.size)
    fit3 = rake([a[perm], b[perm]], [ta, tb], d[perm])
    np.testing.assert_allclose(fit3.weights, fit.weights[perm], rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lo=st.floats(0.5, 0.95), hi=st.floats(1.05, 2.0))
def test_trimming_preserves_the_total(seed, lo, hi):
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.3, 2.5, 50)
    d = rng.uniform(1, 3, 50)
    gn, k = trim_g(g, d, (lo, hi))
    assert np.sum(gn * d) == pytest.approx(np.sum(g * d), rel=1e-12)
    assert k == int(np.sum((g < lo) | (g > hi)))
    w = g * d
    upper = np.quantile(w, 0.9)
    wt, _ = trim_weights(w, upper=upper, strict=True)
    assert wt.sum() == pytest.approx(w.sum(), rel=1e-12)
    assert wt.max() <= upper * (1 + 1e-12)


def test_poststratify_and_cells():
    cell = np.array([0, 0, 1, 2, 2, 2])
    fit = poststratify(cell, np.ones(6), [10.0, 5.0, 3.0])
    assert fit.weights.tolist() == [5.0, 5.0, 5.0, 1.0, 1.0, 1.0]
    c, cm = cell_codes([np.array([2, 0, 2]), np.array([1, 1, 1])], [3, 2])
    assert c.tolist() == [5, 1, 5] and cm[5].tolist() == [2, 1] and cm.shape == (6, 2)
    # a sparse table (many levels, few rows) numbers only the occupied cells
    c, cm = cell_codes([np.array([7, 900, 7]), np.array([3, 0, 3])], [1000, 5])
    assert c.tolist() == [0, 1, 0] and cm.tolist() == [[7, 3], [900, 0]]
    with pytest.raises(InputError, match="no sample rows"):
        poststratify(np.array([0, 0]), np.ones(2), [1.0, 4.0])


def test_core_errors():
    X = np.ones((4, 1))
    with pytest.raises(InputError, match="needs bounds"):
        calibrate_weights(X, np.ones(4), [8.0], method="logit")
    with pytest.raises(InputError, match="lower < 1 < upper"):
        calibrate_weights(X, np.ones(4), [8.0], method="logit", bounds=(1.2, 2))
    with pytest.raises(InputError, match="auxiliary .groupB.: population total 1 but the auxiliary is zero in every"):
        calibrate_weights(np.column_stack([np.ones(4), np.zeros(4)]), np.ones(4), [4.0, 1.0],
                          term_names=["(Intercept)", "groupB"])
    with pytest.raises(InputError, match="infeasible"):
        calibrate_weights(X, np.ones(4), [8.0], method="truncated", bounds=(0.5, 1.5))
    with pytest.raises(InputError, match="codes must be an integer"):
        rake([np.array([0.0, 1.0])], [np.array([1.0, 1.0])], np.ones(2))
    # two margins whose empty cells make the targets unreachable: IPF cannot converge
    a = np.array([0, 1])
    b = np.array([0, 1])
    with pytest.raises(ConvergenceError):
        rake([a, b], [np.array([5.0, 5.0]), np.array([2.0, 8.0])], np.ones(2), max_iter=50)


def test_stratified_variance_closed_form():
    rng = np.random.default_rng(5)
    y = rng.normal(size=40)
    h = np.repeat([0, 1], 20)
    N = np.repeat([100.0, 400.0], 20)
    V = stratified_cov(y[:, None], h, N)[0, 0]
    expect = sum((1 - 20 / Nh) * 20 * np.var(y[h == k], ddof=1) for k, Nh in [(0, 100.0), (1, 400.0)])
    assert V == pytest.approx(expect, rel=1e-12)
    with pytest.raises(EstimationError, match="single primary sampling unit"):
        stratified_cov(y[:3, None], np.array([0, 0, 1]))
    # clusters: PSU totals
    cl = np.repeat(np.arange(10), 4)
    Vc = stratified_cov(y[:, None], None, None, cl)[0, 0]
    tot = np.bincount(cl, y)
    assert Vc == pytest.approx(10 * np.var(tot, ddof=1), rel=1e-12)


def test_srs_estimators_closed_form():
    rng = np.random.default_rng(6)
    n = 80
    y = rng.normal(3, 2, n)
    des = SurveyDesign(weights=np.full(n, 10.0))
    m = survey_mean(y, des)
    assert m.estimate[0] == pytest.approx(y.mean())
    assert m.std_error[0] == pytest.approx(y.std(ddof=1) / np.sqrt(n), rel=1e-12)
    t = survey_total(y, des)
    assert t.std_error[0] == pytest.approx(10 * n * y.std(ddof=1) / np.sqrt(n), rel=1e-12)
    sh = survey_shares((y > 3).astype(int), ["low", "high"], des)
    assert sh.estimate.sum() == pytest.approx(1.0)
    # OLS: design-based SE equals HC0 sandwich times n / (n - 1) under SRS
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    yy = X @ [1.0, 2.0] + rng.normal(size=n)
    r = survey_ols(X, yy, des)
    beta = np.linalg.lstsq(X, yy, rcond=None)[0]
    e = yy - X @ beta
    bread = np.linalg.inv(X.T @ X)
    hc0 = bread @ (X.T * e**2) @ X @ bread
    np.testing.assert_allclose(r.estimate, beta, rtol=1e-12)
    np.testing.assert_allclose(r.cov, hc0 * n / (n - 1), rtol=1e-10)


def test_greg_step_is_regression_residual():
    rng = np.random.default_rng(7)
    n = 50
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = 2 + 3 * X[:, 1] + rng.normal(size=n)
    d = np.full(n, 2.0)
    fit = calibrate_weights(X, d, X.T @ d * [1.0, 1.0] + [0, 5.0])
    step = GregStep(X, d, fit.g)
    res = step.apply((fit.weights * y)[:, None])[:, 0]
    b = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(res, fit.weights * (y - X @ b), atol=1e-10)


def test_quantile_rule_and_replicate_factors():
    assert quantile_math(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4), 0.5) == 2.0
    assert quantile_math(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4), 0.51) == 3.0
    assert quantile_math(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 8.0]), 0.3) == 3.0
    F, rs, sc = jkn_factors(6, np.array([0, 0, 0, 1, 1, 1]))
    assert F.shape == (6, 6) and np.allclose(F.sum(axis=0), 6.0)
    assert np.allclose(rs, 2 / 3)
    B, rsb, scb = bootstrap_factors(30, 400, np.repeat([0, 1], 15), random_state=1)
    assert scb == pytest.approx(1 / 399)
    # rescaled bootstrap factors have mean 1 in each stratum
    assert abs(B.mean() - 1.0) < 0.02


def test_rake_speed_on_cell_table():
    rng = np.random.default_rng(8)
    n = 200_000
    codes = [rng.integers(0, 5, n) for _ in range(3)]
    d = rng.uniform(1, 3, n)
    targets = [np.array([1.0, 2, 3, 4, 5]) * 1e4 for _ in range(3)]
    t0 = time.perf_counter()
    fit = rake(codes, targets, d, tol=1e-12)
    elapsed = time.perf_counter() - t0
    assert fit.max_error < 1e-12
    np.testing.assert_allclose(np.bincount(codes[2], fit.weights), targets[2], rtol=1e-11)
    assert elapsed < 2.0  # ~0.02 s here; generous for a loaded CI machine


def test_survey_ols_with_negative_calibration_weights_solves_the_weighted_normal_equations():
    """Linear (GREG) calibration can give negative weights on small pilots; the WLS fit must then solve
    sum_i w_i x_i (y_i - x_i'b) = 0 (square roots of the weights would be NaN: the comparison's 'greg'
    method used to fail with 'SVD did not converge')."""
    rng = np.random.default_rng(4)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    y = X @ np.array([1.0, 0.5, -0.3]) + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    w[[3, 17]] = [-0.4, -0.2]
    r = survey_ols(X, y, SurveyDesign(weights=w))
    ref = np.linalg.solve((X * w[:, None]).T @ X, (X * w[:, None]).T @ y)
    np.testing.assert_allclose(r.estimate, ref, rtol=1e-10)
    np.testing.assert_allclose(X.T @ (w * (y - X @ r.estimate)), 0.0, atol=1e-9)
    assert np.all(np.isfinite(r.conf_int()[0]))
    # all weights positive: the same numbers as before (least squares on sqrt-weighted rows)
    wp = np.abs(w)
    rp = survey_ols(X, y, SurveyDesign(weights=wp))
    sw = np.sqrt(wp)
    np.testing.assert_allclose(rp.estimate, np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0], rtol=1e-12)


def test_rake_refuses_codes_outside_their_margin_by_name():
    """The cell pass checks every code's range (issue 17) and names the margin at fault."""
    from rectify.estimators.calibration import rake

    a, b = np.array([0, 1, 1, 0]), np.array([0, 2, 1, 0])
    with pytest.raises(InputError, match=r"margin 'b': a code lies outside 0\.\.1"):
        rake([a, b], [np.array([2.0, 2.0]), np.array([2.0, 2.0])], np.ones(4), names=["a", "b"])
    with pytest.raises(InputError, match=r"margin 'a': a code lies outside 0\.\.1"):
        rake([a - 1, b], [np.array([2.0, 2.0]), np.array([1.0, 1.0, 2.0])], np.ones(4), names=["a", "b"])
