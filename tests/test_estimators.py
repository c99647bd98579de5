"""Numeric cores against closed forms and statsmodels, plus invariants (hypothesis)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings, strategies as st
from scipy import stats

from rectify.errors import EstimationError, InputError
from rectify.estimators.ppi import (
    optimal_lambda,
    ppi_logistic,
    ppi_mean,
    ppi_ols,
    ppi_ordinal,
    ppi_quantile,
    ppi_shares,
)


def _reg_data(seed=0, n=120, N=4000):
    rng = np.random.default_rng(seed)
    Xp = sm.add_constant(rng.normal(size=(N, 2)))
    X = sm.add_constant(rng.normal(size=(n, 2)))
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=n)
    f = X @ [0.7, 1.5, -0.5] + 0.5 * (y - X @ [1.0, 2.0, -1.0]) + 0.3 * rng.normal(size=n)
    fp = Xp @ [0.7, 1.5, -0.5] + 0.6 * rng.normal(size=N)
    return X, y, f, Xp, fp


# ----------------------------------------------------------------------------- classical = references
def test_classical_mean_is_the_t_interval():
    rng = np.random.default_rng(3)
    y = rng.normal(2, 1.5, 40)
    r = ppi_mean(y, method="classical")
    lo, hi = stats.t.interval(0.95, 39, loc=y.mean(), scale=stats.sem(y))
    np.testing.assert_allclose(r.conf_int(), ([lo], [hi]), rtol=1e-12)


def test_classical_ols_equals_statsmodels_hc3():
    X, y, *_ = _reg_data()
    ref = sm.OLS(y, X).fit(cov_type="HC3")
    r = ppi_ols(X, y, method="classical")
    np.testing.assert_allclose(r.estimate, ref.params, rtol=1e-10)
    np.testing.assert_allclose(r.cov, ref.cov_params(), rtol=1e-10)
    lo, hi = r.conf_int()
    q = stats.t.ppf(0.975, len(y) - 3)
    np.testing.assert_allclose(lo, ref.params - q * ref.bse, rtol=1e-10)


def test_weighted_classical_ols_equals_statsmodels_wls_hc3():
    X, y, *_ = _reg_data(1)
    w = np.random.default_rng(2).uniform(0.3, 3, len(y))
    ref = sm.WLS(y, X, weights=w).fit(cov_type="HC3")
    r = ppi_ols(X, y, method="classical", weights=w)
    np.testing.assert_allclose(r.estimate, ref.params, rtol=1e-10)
    np.testing.assert_allclose(r.std_error, ref.bse, rtol=1e-10)


def test_classical_logistic_equals_statsmodels():
    rng = np.random.default_rng(0)
    n = 150
    X = sm.add_constant(rng.normal(size=(n, 2)))
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-X @ [0.2, 1, -1]))).astype(float)
    ref = sm.Logit(y, X).fit(disp=0, cov_type="HC0")
    r = ppi_logistic(X, y, method="classical")
    np.testing.assert_allclose(r.estimate, ref.params, rtol=1e-8)
    # ppi_py convention: HC0 exactly
    r0 = ppi_logistic(X, y, method="classical", convention="ppi_py")
    np.testing.assert_allclose(r0.std_error, ref.bse, rtol=1e-8)
    # small-sample convention: HC3 with the GLM hat matrix (statsmodels' leverages)
    glm = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    h = glm.get_hat_matrix_diag()
    e = (y - glm.mu) / (1 - h)
    bread = np.linalg.inv(glm.model.hessian(glm.params) * -1)
    meat = (X * e[:, None]).T @ (X * e[:, None])
    np.testing.assert_allclose(r.cov, bread @ meat @ bread, rtol=1e-7)
    w = rng.uniform(0.5, 2, n)
    refw = sm.GLM(y, X, family=sm.families.Binomial(), var_weights=w).fit(cov_type="HC0")
    rw = ppi_logistic(X, y, method="classical", weights=w, convention="ppi_py")
    np.testing.assert_allclose(rw.estimate, refw.params, rtol=1e-8)
    np.testing.assert_allclose(rw.std_error, refw.bse, rtol=1e-8)


def test_classical_ordinal_equals_statsmodels_orderedmodel():
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    rng = np.random.default_rng(1)
    n = 300
    X = rng.normal(size=(n, 2))
    y = np.digitize(X @ [1.0, -0.5] + rng.logistic(size=n), [-1, 0, 1.5]) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = OrderedModel(y, X, distr="logit").fit(method="bfgs", disp=0, gtol=1e-12, maxiter=10000)
    phi = np.asarray(ref.params)
    tau = np.cumsum(np.r_[phi[2], np.exp(phi[3:])])
    r = ppi_ordinal(X, y, method="classical", categories=[1, 2, 3, 4], terms=["x1", "x2"])
    np.testing.assert_allclose(r.estimate, np.r_[phi[:2], tau], rtol=1e-6, atol=1e-7)
    # model-based covariance: our inverse Hessian equals statsmodels' after the delta method
    from rectify.estimators.models import fit_ordinal
    fit = fit_ordinal(X, np.eye(4)[y - 1], np.ones(n))
    J = np.zeros((5, 5))
    J[:2, :2] = np.eye(2)
    for k in range(3):
        J[2 + k, 2] = 1.0
        for j in range(1, k + 1):
            J[2 + k, 2 + j] = np.exp(phi[2 + j])
    ref_cov = J @ np.asarray(ref.cov_params()) @ J.T
    np.testing.assert_allclose(np.linalg.inv(fit.hessian) / n, ref_cov, rtol=1e-4)
    assert r.terms[-1] == "threshold[3|4]"


# ----------------------------------------------------------------------------- PPI closed forms
def test_mean_ppi_plus_plus_lambda_and_variance_closed_form():
    rng = np.random.default_rng(7)
    n, N = 200, 20000
    f = rng.normal(size=n)
    y = 0.8 * f + 0.6 * rng.normal(size=n) + 1
    fp = rng.normal(size=N)
    r = ppi_mean(y, f, fp, estimand="superpopulation")
    lam = np.cov(y, f, ddof=0)[0, 1] / (f.var() + n / N * fp.var())
    assert r.tuning["lambda"] == pytest.approx(lam, rel=1e-12)
    est = y.mean() - lam * (f.mean() - fp.mean())
    assert r.estimate[0] == pytest.approx(est, rel=1e-12)
    # one degree of freedom for the mean and one for the tuned lambda
    var_a = np.sum((y - y.mean() - lam * (f - f.mean())) ** 2) / (n * (n - 2))
    var_b = lam**2 * np.var(fp, ddof=1) / N
    assert r.std_error[0] == pytest.approx(np.sqrt(var_a + var_b), rel=1e-12)
    df = (var_a + var_b) ** 2 / (var_a**2 / (n - 2) + var_b**2 / (N - 1))
    assert r.df[0] == pytest.approx(df, rel=1e-12)
    # a fixed lambda costs no degree of freedom
    fixed = ppi_mean(y, f, fp, lam=lam, estimand="superpopulation")
    assert fixed.std_error[0] < r.std_error[0]


def test_naive_is_the_population_prediction_mean():
    fp = np.arange(10.0)
    r = ppi_mean(yhat_pop=fp, method="naive")
    assert r.estimate[0] == 4.5
    assert r.n_pilot == 0 and r.n_population == 10


def test_element_lambda_minimises_each_coordinate():
    X, y, f, Xp, fp = _reg_data(4)
    r = ppi_ols(X, y, f, Xp, fp, lambda_mode="element")
    lam = np.asarray(r.tuning["lambda"])
    assert lam.shape == (3,)
    r = ppi_ols(X, y, f, Xp, fp, lam=lam)  # same lambda, held fixed: comparable variances
    for j in range(3):
        for eps in (-0.05, 0.05):
            lv = lam.copy()
            lv[j] += eps
            alt = ppi_ols(X, y, f, Xp, fp, lam=lv)
            assert alt.std_error[j] >= r.std_error[j] * (1 - 1e-9)


def test_tuned_is_not_wider_than_classical_or_ppi():
    X, y, f, Xp, fp = _reg_data(5)
    tuned = ppi_ols(X, y, f, Xp, fp)
    assert np.sum(tuned.std_error**2) <= np.sum(ppi_ols(X, y, method="classical").std_error**2) * 1.01
    assert np.sum(tuned.std_error**2) <= np.sum(ppi_ols(X, y, f, Xp, fp, method="ppi").std_error**2) * 1.0001


def test_perfect_predictions_give_the_population_value():
    rng = np.random.default_rng(0)
    pop = rng.normal(size=5000)
    idx = rng.choice(5000, 100, replace=False)
    r = ppi_mean(pop[idx], pop[idx], pop, method="ppi")
    assert r.estimate[0] == pytest.approx(pop.mean(), abs=1e-12)


def test_shares_sum_to_one_with_probability_predictions():
    rng = np.random.default_rng(0)
    K, n, N = 4, 150, 3000
    Pp = rng.dirichlet(np.ones(K), N)
    Pf = rng.dirichlet(np.ones(K), n)
    y = np.array([rng.choice(K, p=p) for p in Pf]) + 1
    r = ppi_shares(y, Pf, Pp, categories=[1, 2, 3, 4])
    assert r.estimate.sum() == pytest.approx(1.0, abs=1e-12)
    lo, hi = r.conf_int()
    assert (lo >= 0).all() and (hi <= 1).all()
    # joint covariance of a probability vector: rows sum to zero
    np.testing.assert_allclose(r.cov.sum(axis=1), 0, atol=1e-14)


def test_stratified_mean_combines_strata():
    rng = np.random.default_rng(2)
    N, n = 6000, 300
    sp = rng.choice(["a", "b", "c"], N, p=[0.5, 0.3, 0.2])
    fp = rng.normal(size=N) + (sp == "b")
    s = rng.choice(["a", "b", "c"], n)
    f = rng.normal(size=n) + (s == "b")
    y = f + 0.5 * rng.normal(size=n) + 0.3 * (s == "c")
    r = ppi_mean(y, f, fp, strata=s, strata_pop=sp)
    est, var = 0.0, 0.0
    for h in ["a", "b", "c"]:
        Wh = np.mean(sp == h)
        rh = ppi_mean(y[s == h], f[s == h], fp[sp == h])
        est += Wh * rh.estimate[0]
        var += Wh**2 * rh.std_error[0] ** 2
        assert r.tuning["lambda_by_stratum"][h] == pytest.approx(rh.tuning["lambda"])
    assert r.estimate[0] == pytest.approx(est, rel=1e-12)
    assert r.std_error[0] == pytest.approx(np.sqrt(var), rel=1e-12)
    one = ppi_mean(y, f, fp, strata=np.zeros(n), strata_pop=np.zeros(N))
    assert one.estimate[0] == pytest.approx(ppi_mean(y, f, fp).estimate[0], rel=1e-12)


def test_quantile_classical_interval_contains_median():
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    r = ppi_quantile(y, q=0.5, method="classical")
    lo, hi = r.conf_int()
    assert lo[0] < np.median(y) < hi[0]
    # the order-statistic (binomial) interval of the median has comparable width
    k_lo, k_hi = stats.binom.interval(0.95, 300, 0.5)
    ys = np.sort(y)
    assert (hi[0] - lo[0]) == pytest.approx(ys[int(k_hi)] - ys[int(k_lo) - 1], rel=0.25)


def test_ppi_logistic_with_soft_labels_is_closer_with_better_predictor():
    rng = np.random.default_rng(3)
    N, n = 20000, 200
    Xp = sm.add_constant(rng.normal(size=(N, 1)))
    pp = 1 / (1 + np.exp(-(Xp @ [-0.3, 1.2])))
    yp = (rng.uniform(size=N) < pp).astype(float)
    idx = rng.choice(N, n, replace=False)
    # a predictor that knows something about each person's answer beyond the covariates
    f = np.clip(0.6 * yp + 0.4 * pp + rng.normal(0, 0.1, N), 0.0, 1.0)
    r = ppi_logistic(Xp[idx], yp[idx], f[idx], Xp, f)
    c = ppi_logistic(Xp[idx], yp[idx], method="classical")
    assert r.std_error[1] < c.std_error[1]
    assert r.tuning["lambda"] > 0.5


def test_ordinal_ppi_with_soft_labels_runs_and_tunes():
    from rectify.estimators.models import ordinal_probabilities
    rng = np.random.default_rng(4)
    N, n = 5000, 300
    Xp = rng.normal(size=(N, 1))
    P = ordinal_probabilities(Xp, np.array([1.0]), np.array([-1.0, 0.0, 1.0]))
    yp = np.array([rng.choice(4, p=p) for p in P]) + 1
    idx = rng.choice(N, n, replace=False)
    F = 0.5 * np.eye(4)[yp - 1] + 0.5 * P  # an answer distribution informed by the person's answer
    sup = dict(estimand="superpopulation", overlap="inside")  # the truth 1.0 is the superpopulation's
    r = ppi_ordinal(Xp[idx], yp[idx], F[idx], Xp, F, categories=[1, 2, 3, 4], terms=["x"], **sup)
    c = ppi_ordinal(Xp[idx], yp[idx], method="classical", categories=[1, 2, 3, 4], terms=["x"], **sup)
    assert r.std_error[0] < c.std_error[0]
    lo, hi = r.conf_int()
    assert lo[0] < 1.0 < hi[0]


def test_predictions_without_variance_get_lambda_zero():
    rng = np.random.default_rng(3)
    N, n = 5000, 200
    Xp = sm.add_constant(rng.normal(size=(N, 1)))
    pp = 1 / (1 + np.exp(-(Xp @ [-0.3, 1.2])))  # soft labels that the model fits exactly
    yp = (rng.uniform(size=N) < pp).astype(float)
    r = ppi_logistic(Xp[:n], yp[:n], pp[:n], Xp, pp)
    assert r.tuning["lambda"] == 0.0
    np.testing.assert_allclose(r.estimate, ppi_logistic(Xp[:n], yp[:n], method="classical").estimate)


def test_optimal_lambda_bounds():
    a = np.random.default_rng(0).normal(size=(100, 1))
    assert optimal_lambda(3 * a, a, a, bounds=(0, 1)) == 1.0


# ----------------------------------------------------------------------------- invariants (hypothesis)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(5, 60))
def test_lambda_zero_is_classical(seed, n):
    rng = np.random.default_rng(seed)
    y, f, fp = rng.normal(size=n), rng.normal(size=n), rng.normal(size=200)
    r0 = ppi_mean(y, f, fp, lam=0.0, estimand="superpopulation")
    rc = ppi_mean(y, method="classical")
    assert r0.estimate[0] == pytest.approx(rc.estimate[0], rel=1e-12, abs=1e-12)
    assert r0.std_error[0] == pytest.approx(rc.std_error[0], rel=1e-10)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_ols_lambda_zero_is_classical(seed):
    X, y, f, Xp, fp = _reg_data(seed, n=40, N=300)
    r0 = ppi_ols(X, y, f, Xp, fp, lam=0.0, estimand="superpopulation")
    rc = ppi_ols(X, y, method="classical")
    np.testing.assert_allclose(r0.estimate, rc.estimate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r0.std_error, rc.std_error, rtol=1e-8)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100))
def test_permutation_and_weight_scale_invariance(seed, scale):
    X, y, f, Xp, fp = _reg_data(seed, n=50, N=400)
    rng = np.random.default_rng(seed)
    w, wp = rng.uniform(0.5, 2, 50), rng.uniform(0.5, 2, 400)
    base = ppi_ols(X, y, f, Xp, fp, weights=w, weights_pop=wp)
    perm, permp = rng.permutation(50), rng.permutation(400)
    alt = ppi_ols(X[perm], y[perm], f[perm], Xp[permp], fp[permp], weights=scale * w[perm],
                  weights_pop=wp[permp] / scale)
    np.testing.assert_allclose(alt.estimate, base.estimate, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(alt.std_error, base.std_error, rtol=1e-8)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(2, 6))
def test_shares_always_sum_to_one_and_stay_in_unit_interval(seed, K):
    rng = np.random.default_rng(seed)
    cats = list(range(K))
    y = rng.integers(0, K, 30)
    y[:K] = cats
    r = ppi_shares(y, rng.integers(0, K, 30), rng.integers(0, K, 500), categories=cats)
    assert r.estimate.sum() == pytest.approx(1.0, abs=1e-12)
    lo, hi = r.conf_int()
    assert (lo >= 0).all() and (hi <= 1).all() and (lo <= hi).all()


# ----------------------------------------------------------------------------- bad input
BAD = [
    ("nan in y", lambda: ppi_mean([1.0, np.nan, 2.0], [1, 2, 3.0], [1.0, 2.0]), "'y'"),
    ("inf in yhat", lambda: ppi_mean([1.0, 2, 3], [1, np.inf, 3.0], [1.0, 2.0]), "'yhat'"),
    ("length mismatch", lambda: ppi_mean([1.0, 2, 3], [1, 2.0], [1.0, 2.0]), "'yhat'"),
    ("empty pilot", lambda: ppi_mean([], [], [1.0, 2.0]), "'y'"),
    ("pilot smaller than coefficients", lambda: ppi_ols(np.ones((2, 3)), [1.0, 2], [1.0, 2], np.ones((5, 3)),
                                                        np.ones(5)), "coefficients"),
    ("constant column", lambda: ppi_ols(np.column_stack([np.ones(6), np.arange(6.0), np.full(6, 2.0)]),
                                        np.arange(6.0), method="classical", terms=["Intercept", "x", "z"]), "z"),
    ("non-binary logistic", lambda: ppi_logistic(np.column_stack([np.ones(6), np.arange(6.0)]),
                                                 [0, 1, 2, 0, 1, 0.0], method="classical"), "binary"),
    ("negative weights", lambda: ppi_mean([1.0, 2, 3], method="classical", weights=[1, -1, 1]), "'weights'"),
    ("all-zero weights", lambda: ppi_mean([1.0, 2, 3], method="classical", weights=[0, 0, 0]), "'weights'"),
    ("unknown method", lambda: ppi_mean([1.0, 2, 3], method="magic"), "magic"),
    ("level outside (0,1)", lambda: ppi_mean([1.0, 2, 3], method="classical", level=1.5), "'level'"),
    ("share label outside options", lambda: ppi_shares([1, 2, 5], method="classical", categories=[1, 2, 3]),
     "options"),
    ("probabilities not summing to one", lambda: ppi_shares([1, 2], [[0.5, 0.4], [0.5, 0.5]],
                                                            [[0.5, 0.5]], categories=[1, 2]), "sum to one"),
    ("quantile q outside (0,1)", lambda: ppi_quantile([1.0, 2, 3], q=1.0, method="classical"), "'q'"),
    ("stratum without pilot rows", lambda: ppi_mean([1.0, 2, 3, 4], [1.0, 2, 3, 4], [1.0, 2, 3], strata=list("aaaa"),
                                                    strata_pop=list("abb")), "no pilot rows"),
]


@pytest.mark.parametrize("name,call,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_clear_error(name, call, needle):
    with pytest.raises(InputError) as err:
        call()
    assert needle in str(err.value)


def test_separation_is_reported():
    X = np.column_stack([np.ones(8), np.arange(8.0)])
    with pytest.raises(EstimationError, match="separated"):
        ppi_logistic(X, (np.arange(8) > 3).astype(float), method="classical")


def test_useless_predictor_falls_back_to_classical():
    rng = np.random.default_rng(12)
    n, N = 60, 5000
    y = rng.normal(size=n)
    f, fp = rng.normal(size=n), rng.normal(size=N)  # predictions unrelated to the answers
    r = ppi_mean(y, f, fp, estimand="superpopulation")
    c = ppi_mean(y, method="classical")
    # the raw tuned lambda is not zero, but its variance gain does not pay for its degree of freedom
    from rectify.estimators.ppi import optimal_lambda
    raw = optimal_lambda((y - y.mean())[:, None], (f - f.mean())[:, None], (fp - fp.mean())[:, None])
    assert raw != 0.0
    assert r.tuning["lambda"] == 0.0
    assert r.estimate[0] == pytest.approx(c.estimate[0], rel=1e-12)
    assert r.std_error[0] == pytest.approx(c.std_error[0], rel=1e-12)
    np.testing.assert_allclose(r.conf_int(), c.conf_int(), rtol=1e-12)


def test_population_fit_without_rows_matches_full_influence():
    from rectify.estimators.models import fit_logistic, fit_ols
    X, y, f, Xp, fp = _reg_data(6)
    a, b = fit_ols(Xp, fp, np.ones(len(fp))), fit_ols(Xp, fp, np.ones(len(fp)), keep_psi=False)
    np.testing.assert_allclose(b.meat, a.psi.T @ a.psi / len(fp), rtol=1e-10)
    # soft labels off the model (exact probabilities would leave only rounding noise in the meat)
    p = 1 / (1 + np.exp(-(Xp[:, 1] - 0.5 + np.random.default_rng(6).normal(size=len(fp)))))
    a, b = fit_logistic(Xp, p, np.ones(len(p))), fit_logistic(Xp, p, np.ones(len(p)), keep_psi=False)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.meat, a.psi.T @ a.psi / len(p), rtol=1e-8)


def test_share_intervals_are_logit_scale():
    y = np.array([1] * 6 + [2] * 30 + [3] * 14)
    r = ppi_shares(y, method="classical", categories=[1, 2, 3], interval="logit")
    p = np.array([6, 30, 14]) / 50
    se = np.sqrt(p * (1 - p) / 49)  # HC1: n / (n - 1) on the ddof-0 variance
    np.testing.assert_allclose(r.std_error, se, rtol=1e-12)
    q = stats.t.ppf(0.975, 49)
    eta = np.log(p / (1 - p))
    lo = 1 / (1 + np.exp(-(eta - q * se / (p * (1 - p)))))
    hi = 1 / (1 + np.exp(-(eta + q * se / (p * (1 - p)))))
    np.testing.assert_allclose(r.conf_int(), (lo, hi), rtol=1e-12)
    assert r.conf_int()[0][0] > 0  # a Wald interval would reach below 0.04


def test_ordinal_standard_errors_are_orderedmodel_hc0_with_hc1_scaling():
    """The relation stated in ppi_ordinal's docstring: classical coefficient SEs equal statsmodels'
    OrderedModel(cov_type="HC0") times sqrt(n / (n - p)); its default (inverse Hessian) differs."""
    import warnings

    from statsmodels.miscmodels.ordinal_model import OrderedModel

    rng = np.random.default_rng(2)
    n = 300
    X = rng.normal(size=(n, 2))
    y = np.digitize(X @ [1.0, -0.5] + rng.logistic(size=n), [-1, 0, 1]) + 1
    r = ppi_ordinal(X, y, method="classical", categories=[1, 2, 3, 4], terms=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = OrderedModel(y, X, distr="logit")
        hc0 = m.fit(method="bfgs", disp=False, maxiter=2000, gtol=1e-10, cov_type="HC0")
        plain = m.fit(method="bfgs", disp=False, maxiter=2000, gtol=1e-10)
    p = len(r.estimate)
    np.testing.assert_allclose(r.estimate[:2], hc0.params[:2], rtol=1e-6)
    np.testing.assert_allclose(r.std_error[:2], hc0.bse[:2] * np.sqrt(n / (n - p)), rtol=1e-6)
    assert not np.allclose(r.std_error[:2], plain.bse[:2], rtol=1e-2)
