"""Tests of cross-fitting and cross-prediction-powered inference (rectify.estimators.crossfit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from rectify.errors import InputError
from rectify.estimators.crossfit import (
    cross_fit,
    crossfit_ppi,
    crossppi_mean,
    crossppi_shares,
    make_folds,
)
from rectify.llm.baseline import CovariateClassifier

CUTS = np.array([-1.0, 0.3, 1.5])


def _draw(n, rng):
    x = rng.normal(size=(n, 2))
    latent = x[:, 0] + 0.5 * x[:, 1] + rng.logistic(size=n)
    return x, np.digitize(latent, CUTS) + 1


def _true_shares():
    # latent = z + L, z ~ N(0, 1.25), L logistic: P(latent > c) = E[expit(z - c)] (Gauss-Hermite)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = nodes * np.sqrt(1.25)
    w = weights / weights.sum()
    surv = np.array([np.sum(w * special.expit(z - c)) for c in CUTS])  # P(Y > k), k = 1..3
    cdf = np.r_[1 - surv, 1.0]
    return np.diff(np.r_[0.0, cdf])


def test_true_shares_by_simulation():
    rng = np.random.default_rng(0)
    _, y = _draw(400_000, rng)
    emp = np.bincount(y - 1, minlength=4) / y.size
    np.testing.assert_allclose(emp, _true_shares(), atol=3e-3)  # ~4 SE of a share at n=4e5


def test_matches_ppi_py_crossppi_mean():
    from ppi_py import crossppi_mean_ci

    rng = np.random.default_rng(1)
    x, y = _draw(150, rng)
    xp, _ = _draw(2000, rng)
    cf = cross_fit(LogisticRegression(), x, y, X_population=xp, n_folds=5, random_state=3)
    s = np.arange(1.0, 5.0)
    yhat, pop = cf.oof @ s, cf.population_folds @ s
    res = crossppi_mean(y.astype(float), yhat, pop, interval="z", level=0.9)
    low, high = crossppi_mean_ci(y.astype(float), yhat, pop.T, alpha=0.1)
    r_low, r_high = res.conf_int()
    np.testing.assert_allclose([r_low[0], r_high[0]], [low[0], high[0]], rtol=1e-12)


def test_oof_predictions_come_from_models_that_never_saw_the_row():
    rng = np.random.default_rng(2)
    x, y = _draw(90, rng)
    xp, _ = _draw(50, rng)
    cf = cross_fit(LogisticRegression(), x, y, X_population=xp, n_folds=3, random_state=7)
    assert len(cf.estimators) == 3
    for k in range(3):
        train = cf.folds != k
        ref = LogisticRegression().fit(x[train], y[train])
        np.testing.assert_allclose(cf.oof[cf.folds == k], ref.predict_proba(x[cf.folds == k]),
                                   rtol=1e-10)
        np.testing.assert_allclose(cf.population_folds[k], ref.predict_proba(xp), rtol=1e-10)
    np.testing.assert_allclose(cf.population, cf.population_folds.mean(0))
    again = cross_fit(LogisticRegression(), x, y, X_population=xp, n_folds=3, random_state=7)
    np.testing.assert_array_equal(again.folds, cf.folds)


def test_lambda_zero_is_classical_and_shares_sum_to_one():
    rng = np.random.default_rng(3)
    x, y = _draw(120, rng)
    xp, _ = _draw(500, rng)
    cf = cross_fit(LogisticRegression(), x, y, X_population=xp, n_folds=4, random_state=0)
    r0 = crossppi_mean(y, cf.oof @ np.arange(1, 5), cf.population_folds @ np.arange(1, 5), lam=0,
                       estimand="superpopulation")
    assert r0.estimate[0] == pytest.approx(y.mean(), rel=1e-12)
    assert r0.std_error[0] == pytest.approx(y.std(ddof=1) / np.sqrt(y.size), rel=1e-12)
    # the frame estimand with a separate pilot adds the frame's own deviation: factor 1 + n/N
    rf = crossppi_mean(y, cf.oof @ np.arange(1, 5), cf.population_folds @ np.arange(1, 5), lam=0)
    assert rf.std_error[0] == pytest.approx(r0.std_error[0] * np.sqrt(1 + y.size / 500), rel=1e-12)
    assert r0.df[0] == y.size - 1
    sh = crossppi_shares(y, cf.oof, cf.population_folds, options=[1, 2, 3, 4])
    assert sh.estimate.sum() == pytest.approx(1.0, abs=1e-12)
    # the joint covariance of a vector that sums to one is singular along (1, ..., 1)
    assert np.ones(4) @ sh.cov @ np.ones(4) == pytest.approx(0.0, abs=1e-12)
    # a share is the mean of its indicator
    one = crossppi_mean((y == 2).astype(float), cf.oof[:, 1], cf.population_folds[:, :, 1])
    assert sh.estimate[1] == pytest.approx(one.estimate[0], rel=1e-12)
    assert sh.std_error[1] == pytest.approx(one.std_error[0], rel=1e-12)
    # tuned lambda never does worse than lambda = 1 on its own variance criterion
    tuned = crossppi_mean(y, cf.oof @ np.arange(1, 5), cf.population_folds @ np.arange(1, 5),
                          lam="tune")
    plain = crossppi_mean(y, cf.oof @ np.arange(1, 5), cf.population_folds @ np.arange(1, 5))
    assert tuned.std_error[0] <= plain.std_error[0] + 1e-15
    assert tuned.method == "crossppi++"


def test_tuned_shares_use_one_trace_optimal_lambda():
    """lam="tune" for shares: one lambda, sum_k Cov(Y_k, F_k) / sum_k (Var F_k + n/N Var Fpop_k), which
    minimises the trace of the covariance, so that the shares still sum to one."""
    rng = np.random.default_rng(8)
    x, y = _draw(150, rng)
    xp, _ = _draw(600, rng)
    cf = cross_fit(LogisticRegression(), x, y, X_population=xp, n_folds=5, random_state=1)
    Y = np.eye(4)[y - 1]
    F, P = cf.oof, cf.population_folds.mean(axis=0)
    n, N = Y.shape[0], P.shape[0]
    cyf = ((Y - Y.mean(0)) * (F - F.mean(0))).sum(0) / (n - 1)
    lam = cyf.sum() / (F.var(axis=0, ddof=1) + n / N * P.var(axis=0, ddof=1)).sum()
    sup = {"estimand": "superpopulation"}  # the n/N term of lambda belongs to a separate pilot's superpopulation
    sh = crossppi_shares(y, cf.oof, cf.population_folds, options=[1, 2, 3, 4], lam="tune", **sup)
    assert sh.tuning["lambda"] == pytest.approx(lam, rel=1e-12)
    fixed = crossppi_shares(y, cf.oof, cf.population_folds, options=[1, 2, 3, 4], lam=lam, **sup)
    np.testing.assert_allclose(sh.estimate, fixed.estimate, rtol=1e-12)
    assert sh.estimate.sum() == pytest.approx(1.0, abs=1e-12)
    grid = [crossppi_shares(y, cf.oof, cf.population_folds, options=[1, 2, 3, 4], lam=lam + d, **sup)
            for d in (-0.05, 0.05)]
    assert all(np.trace(g.cov) >= np.trace(sh.cov) - 1e-15 for g in grid)


def test_make_folds_balances_classes():
    y = np.array([1] * 7 + [2] * 23 + [3] * 3)
    f = make_folds(33, 3, y=y, random_state=0)
    for c in (1, 2, 3):
        counts = np.bincount(f[y == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert not np.array_equal(f, make_folds(33, 3, y=y, random_state=1))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 10), st.integers(0, 40), st.integers(0, 2**20))
def test_make_folds_partition(n_folds, extra, seed):
    n = n_folds + extra
    f = make_folds(n, n_folds, random_state=seed)
    counts = np.bincount(f, minlength=n_folds)
    assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_bad_inputs():
    x = np.arange(8.0)[:, None]
    with pytest.raises(InputError, match="fewer than n_folds"):
        cross_fit(LogisticRegression(), x[:3], [1, 2, 1], n_folds=5)
    with pytest.raises(InputError, match="single answer class"):
        cross_fit(LogisticRegression(), x, [1] * 8, n_folds=2)
    with pytest.raises(InputError, match="n_folds"):
        make_folds(10, 1)
    with pytest.raises(InputError, match="outside the item's options"):
        crossppi_shares([1, 2, 9], np.full((3, 2), 0.5), np.full((4, 2), 0.5), options=[1, 2])
    with pytest.raises(InputError, match="NaN"):
        crossppi_mean([1.0, np.nan], [1.0, 1.0], [[1.0, 2.0]])
    with pytest.raises(InputError, match="different lengths"):
        cross_fit(LogisticRegression(), x, [1, 2], n_folds=2)
    frame = pd.DataFrame({"a": np.arange(20.0)})
    with pytest.raises(InputError, match="outside the item's options"):
        crossfit_ppi(CovariateClassifier(options=[1, 2]), frame, [1, 2, 3, 1] * 5, frame,
                     n_folds=2)


def test_crossfit_ppi_with_the_covariate_classifier():
    rng = np.random.default_rng(5)
    x, y = _draw(3000, rng)
    frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1]})
    res = crossfit_ppi(CovariateClassifier(kind="ordinal", options=[1, 2, 3, 4]), frame.iloc[:300],
                       y[:300], frame.iloc[300:], estimand="shares", lam="tune", random_state=0,
                       target="superpopulation")
    assert res.terms == ("1", "2", "3", "4")
    low, high = res.conf_int()
    truth = _true_shares()
    assert np.all((low < truth) & (truth < high))
    # tuned lambda is never wider than the pilot-only (classical) interval (lambda = 0 is one of
    # its candidates), and clearly narrower for the end options, which the covariates predict well
    p = np.bincount(y[:300] - 1, minlength=4) / 300
    classical_se = np.sqrt(p * (1 - p) / 299)
    assert np.all(res.std_error <= classical_se + 1e-12)
    assert np.all(res.std_error[[0, 3]] < 0.95 * classical_se[[0, 3]])


def test_coverage_in_sample_ppi_undercovers_crossfit_covers():
    """Seeded study: a simulator trained on the pilot (an unpruned decision tree, which memorises
    its training rows) fed to PPI with its in-sample pilot predictions, against cross-fitted PPI.

    500 repetitions, n = 150 pilot rows, N = 1,500 population rows, 5 folds, 95% t-intervals for
    the mean score. Monte-Carlo standard error of a coverage near 0.95 is
    sqrt(0.95 * 0.05 / 500) = 0.0097; we accept cross-fitted coverage within 3 of them
    ([0.921, 0.979]). In-sample PPI sees zero pilot residuals, so its interval only carries the
    population term: it must cover far less (< 0.80; it covers about a third of the time).
    """
    rng = np.random.default_rng(20261127)
    truth = _true_shares() @ np.arange(1, 5)
    s = np.arange(1.0, 5.0)
    reps, n, N = 500, 150, 1500
    cover_cross = cover_in = cover_share = 0
    truth_share = _true_shares()[0]
    for _ in range(reps):
        x, y = _draw(n, rng)
        xp, _ = _draw(N, rng)
        tree = DecisionTreeClassifier(random_state=0)
        cf = cross_fit(tree, x, y, X_population=xp, n_folds=5, random_state=rng,
                       keep_estimators=False)
        r = crossppi_mean(y, cf.oof @ s, cf.population_folds @ s)
        lo, hi = r.conf_int()
        cover_cross += lo[0] <= truth <= hi[0]
        sh = crossppi_shares(y, cf.oof, cf.population_folds, options=[1, 2, 3, 4])
        lo, hi = sh.conf_int()
        cover_share += lo[0] <= truth_share <= hi[0]
        fitted = DecisionTreeClassifier(random_state=0).fit(x, y)
        r_in = crossppi_mean(y, fitted.predict_proba(x) @ s, fitted.predict_proba(xp) @ s)
        lo, hi = r_in.conf_int()
        cover_in += lo[0] <= truth <= hi[0]
    assert 0.921 <= cover_cross / reps <= 0.979, cover_cross / reps
    assert 0.921 <= cover_share / reps <= 0.979, cover_share / reps
    assert cover_in / reps < 0.80, cover_in / reps


class _MarginalItemModel:
    """A simulator with an ``item`` (like LoRAClassifier): predicts the training shares."""

    def __init__(self, item=None):
        self.item = item

    def get_params(self, deep=True):
        return {"item": self.item}

    def set_params(self, **kw):
        self.item = kw.get("item", self.item)
        return self

    def fit(self, X, y):
        codes = self.item.to_index(list(y))
        self.p_ = np.bincount(codes[codes >= 0], minlength=self.item.n_options) / np.sum(codes >= 0)
        self.classes_ = np.asarray(self.item.options)
        return self

    def predict_proba(self, X):
        return np.tile(self.p_, (len(X), 1))


def test_crossfit_ppi_uses_the_items_options_and_scores():
    from rectify.llm.items import Item

    item = Item("q", "Agree?", ["no", "maybe", "yes"], missing=["dk"], scores=[0, 5, 10])
    rng = np.random.default_rng(8)
    y = rng.choice(["no", "maybe", "yes"], size=60, p=[0.5, 0.3, 0.2])
    X = pd.DataFrame({"a": np.arange(60.0)})
    res = crossfit_ppi(_MarginalItemModel(item), X, y, X.iloc[:30], estimand="mean", n_folds=3,
                       random_state=0)
    # a constant predictor: the estimate is the pilot mean score plus the population term minus
    # the fold-model average over the pilot, which cancel up to fold imbalance
    score = np.array([0.0, 5.0, 10.0])[item.to_index(list(y))]
    assert res.estimate[0] == pytest.approx(score.mean(), abs=0.05)
    sh = crossfit_ppi(_MarginalItemModel(item), X, y, X.iloc[:30], estimand="shares", n_folds=3,
                      random_state=0)
    assert sh.terms == ("no", "maybe", "yes")
    with pytest.raises(InputError, match="missing answers"):
        crossfit_ppi(_MarginalItemModel(item), X, np.concatenate([y[:-1], ["dk"]]), X, n_folds=3)


@settings(max_examples=25, deadline=None)
@given(st.floats(-5, 5), st.integers(0, 2**16))
def test_crossppi_mean_is_shift_equivariant(c, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=30)
    f = y + rng.normal(size=30)
    pop = rng.normal(size=(3, 50))
    a = crossppi_mean(y, f, pop)
    b = crossppi_mean(y + c, f + c, pop + c)
    assert b.estimate[0] == pytest.approx(a.estimate[0] + c, abs=1e-9)
    assert b.std_error[0] == pytest.approx(a.std_error[0], rel=1e-7, abs=1e-12)
    perm = rng.permutation(30)
    p = crossppi_mean(y[perm], f[perm], pop)
    assert p.estimate[0] == pytest.approx(a.estimate[0], abs=1e-12)


def test_pilot_rows_inside_the_frame_use_out_of_fold_predictions():
    """With the pilot inside the frame, its rows' frame predictions become their out-of-fold ones: the
    estimate is then the frame total (pilot's answers + the rest's rectified predictions) and the
    frame estimand's variance carries 1 - n/N."""
    rng = np.random.default_rng(8)
    x, y = _draw(400, rng)
    rows = rng.choice(400, 100, replace=False)
    cf = cross_fit(LogisticRegression(), x[rows], y[rows], X_population=x, n_folds=4, random_state=0)
    s = np.arange(1, 5)
    f, P = cf.oof @ s, cf.population_folds @ s
    r = crossppi_mean(y[rows], f, P, lam=1.0, pilot_rows=rows)
    assert r.pilot_in_frame is True and r.target == "frame"
    rest = np.setdiff1d(np.arange(400), rows)
    total = y[rows].sum() + P.mean(0)[rest].sum() + len(rest) * (y[rows] - f).mean()
    assert r.estimate[0] == pytest.approx(total / 400, rel=1e-12)
    a = y[rows] - f
    assert r.std_error[0] == pytest.approx(np.sqrt((1 - 100 / 400) * a.var(ddof=1) / 100), rel=1e-12)
    with pytest.raises(InputError, match="pilot_rows"):
        crossppi_mean(y[rows], f, P, pilot_rows=rows[:5])
