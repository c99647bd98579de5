"""rectify.planning: closed forms, the optimum of the PPI++ variance, and a seeded simulation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from rectify.errors import EstimationError, InputError
from rectify.planning import (
    effective_sample_size,
    humans_needed,
    optimal_lambda,
    plan_from_pilot,
    planning_table,
    ppi_variance,
)


@pytest.mark.parametrize("n, N, rho", [(100, 1000, 0.6), (50, 10**6, 0.9), (300, 300, 0.3), (200, None, -0.7)])
def test_optimal_lambda_minimises_the_variance(n, N, rho):
    sy, sf = 1.3, 0.7
    res = minimize_scalar(lambda lam: ppi_variance(n, rho, sy, sf, N, lam=lam), bounds=(-5, 5), method="bounded",
                          options={"xatol": 1e-10})
    assert res.x == pytest.approx(optimal_lambda(n, rho, sy, sf, N), abs=1e-6)
    w = 1.0 if N is None else N / (N + n)
    closed = sy**2 / n * (1 - rho**2 * w)
    assert ppi_variance(n, rho, sy, sf, N) == pytest.approx(closed, rel=1e-12)
    assert effective_sample_size(n, rho, N) == pytest.approx(sy**2 / closed, rel=1e-12)


def test_special_cases():
    assert ppi_variance(100, 0.5, 2.0, 1.0, 500, lam=0.0) == pytest.approx(0.04)  # classical
    # plain PPI (lambda = 1) with a weak predictor is worse than classical
    assert ppi_variance(100, 0.1, 1.0, 1.0, 10**6, lam=1.0) > ppi_variance(100, 0.1, lam=0.0)
    assert effective_sample_size(100, 0.0, 50) == 100
    assert math.isinf(effective_sample_size(100, 1.0))
    assert effective_sample_size(100, 0.8) == pytest.approx(100 / 0.36)


@pytest.mark.parametrize("h, sd, rho, N", [(0.05, 1.0, 0.5, 2000), (0.1, 0.8, 0.9, 10**6), (0.02, 1.0, 0.3, None),
                                           (0.1, 1.0, 0.95, 400)])
def test_humans_needed_is_the_smallest_sufficient_pilot(h, sd, rho, N):
    z = norm.ppf(0.975)
    n_c = humans_needed(h, sd, method="classical")
    assert z * sd / math.sqrt(n_c) <= h < z * sd / math.sqrt(n_c - 1)
    n = humans_needed(h, sd, rho, N)
    assert z * math.sqrt(ppi_variance(n, rho, sd, 1.0, N)) <= h * (1 + 1e-12)
    if n > 1:
        assert z * math.sqrt(ppi_variance(n - 1, rho, sd, 1.0, N)) > h
    assert n <= n_c


def test_infinite_population_limit():
    n_c = (norm.ppf(0.975) / 0.05) ** 2
    assert humans_needed(0.05, 1.0, 0.6) == math.ceil(n_c * 0.64)
    assert humans_needed(0.05, 1.0, 0.6, n_population=10**12) == humans_needed(0.05, 1.0, 0.6)


def test_seeded_simulation_matches_the_variance_formula():
    """4,000 simulated pilots (n = 100) and independent frames (N = 1,000): oracle-lambda PPI++ has the
    variance the formula gives (tolerance 8%: the SE of a variance from 4,000 draws is ~2.2%)."""
    rng = np.random.default_rng(20261127)
    R, n, N, rho, sy, sf = 4000, 100, 1000, 0.7, 1.5, 0.8
    cov = [[sy**2, rho * sy * sf], [rho * sy * sf, sf**2]]
    lab = rng.multivariate_normal([0, 0], cov, size=(R, n))
    unl = rng.normal(0, sf, size=(R, N))
    lam = optimal_lambda(n, rho, sy, sf, N)
    est = lab[..., 0].mean(1) - lam * (lab[..., 1].mean(1) - unl.mean(1))
    assert est.var(ddof=1) == pytest.approx(ppi_variance(n, rho, sy, sf, N), rel=0.08)
    classical = lab[..., 0].mean(1)
    ratio = classical.var(ddof=1) / est.var(ddof=1)
    assert ratio == pytest.approx(effective_sample_size(n, rho, N) / n, rel=0.1)


def test_plan_from_pilot():
    rng = np.random.default_rng(1)
    f = rng.normal(size=300)
    y = 0.8 * f + rng.normal(scale=0.6, size=300)
    y[:5] = np.nan
    plan = plan_from_pilot(y, f, half_width=0.05, n_population=5000)
    ok = ~np.isnan(y)
    assert plan["n"] == 295
    assert plan["rho"] == pytest.approx(np.corrcoef(y[ok], f[ok])[0, 1])
    lo, hi = plan["rho_interval"]
    assert lo < plan["rho"] < hi
    need = plan["humans_needed"]
    assert need["ppi++ (optimistic)"] <= need["ppi++"] <= need["ppi++ (pessimistic)"] <= need["classical"]
    assert need["classical"] == humans_needed(0.05, plan["sd"], method="classical")


def test_planning_table():
    t = planning_table(0.6, 1.0, pilot_sizes=[100, 400], half_widths=[0.1])
    assert t["n_eff"].tolist() == pytest.approx([156.25, 625.0])
    z = norm.ppf(0.975)
    assert t["half_width_classical"].iloc[0] == pytest.approx(z / 10)
    assert t["half_width_ppi++"].iloc[0] == pytest.approx(z * 0.08)
    # n_c = (1.959964 / 0.1)^2 = 384.15 -> 385; PPI++: ceil(384.15 * 0.64) = 246
    assert t.attrs["humans_needed"][0.1] == {"classical": 385, "ppi++": 246}


@pytest.mark.parametrize("call, match", [
    (lambda: effective_sample_size(0, 0.5), "'n'"),
    (lambda: effective_sample_size(10, 1.5), "rho"),
    (lambda: humans_needed(-1, 1.0), "half_width"),
    (lambda: humans_needed(0.1, 1.0, method="bayes"), "method"),
    (lambda: ppi_variance(10, 0.5, sd_y=0), "sd_y"),
])
def test_bad_input(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_pilot_without_variation():
    with pytest.raises(EstimationError, match="do not vary"):
        plan_from_pilot(np.ones(20), np.arange(20.0), 0.1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), N=st.integers(1, 10**6), r1=st.floats(-1, 1), r2=st.floats(-1, 1))
def test_effective_size_invariants(n, N, r1, r2):
    e1, e2 = effective_sample_size(n, r1, N), effective_sample_size(n, r2, N)
    assert e1 >= n - 1e-9
    if abs(r1) <= abs(r2):
        assert e1 <= e2 * (1 + 1e-12)


@pytest.mark.parametrize("estimand", ["frame", "superpopulation"])
def test_pilot_inside_the_frame_variance_matches_simulation(estimand):
    """Pilot drawn from a frame of N = 2n: the variance of rectify's PPI++ mean (frame estimand: around the
    frame's mean, one fixed frame; superpopulation: around the model mean, a new frame per repetition)
    matches ppi_variance(overlap="inside") within 3 Monte Carlo standard errors of a variance
    (relative SE sqrt(2 / R)) plus 3% for the tuned lambda's own noise at n = 100."""
    from rectify.estimators.ppi import ppi_mean

    rng = np.random.default_rng(21)
    n, N, R = 100, 200, 3000
    rho, sy, sf = 0.8, 1.5, 1.0

    def frame():
        f = rng.normal(0, sf, N)
        y = 2.0 + rho * sy / sf * f + rng.normal(0, sy * math.sqrt(1 - rho**2), N)
        return f, y

    f, y = frame()
    err = np.empty(R)
    for r in range(R):
        if estimand == "superpopulation":
            f, y = frame()
        idx = rng.choice(N, n, replace=False)
        est = ppi_mean(y[idx], f[idx], f, estimand=estimand, overlap="inside").estimate[0]
        err[r] = est - (y.mean() if estimand == "frame" else 2.0)
    if estimand == "frame":  # the frame's own moments
        rho_, sy_, sf_ = np.corrcoef(y, f)[0, 1], y.std(), f.std()
    else:
        rho_, sy_, sf_ = rho, sy, sf
    V = ppi_variance(n, rho_, sy_, sf_, N, overlap="inside", estimand=estimand)
    assert np.mean(err**2) == pytest.approx(V, rel=3 * math.sqrt(2 / R) + 0.03)
    # and the separate-sample formula applied to the whole frame is off (it ignores the overlap)
    assert abs(ppi_variance(n, rho_, sy_, sf_, N) / np.mean(err**2) - 1) > 0.15


def test_effective_sample_size_inside_the_frame():
    # n_eff = n / (1 - rho^2 (1 - n/N)): the separate formula with the N - n other people
    assert effective_sample_size(100, 0.6, 400, overlap="inside") == pytest.approx(100 / (1 - 0.36 * 0.75))
    assert effective_sample_size(100, 0.6, 400, overlap="inside") == pytest.approx(effective_sample_size(100, 0.6, 300))
    assert effective_sample_size(100, 0.9, 100, overlap="inside") == pytest.approx(100.0)  # a census
    # a classical pilot of n_eff from the same frame has PPI++'s variance, for either target
    m = effective_sample_size(100, 0.6, 400, overlap="inside")
    v = ppi_variance(100, 0.6, 1.0, 1.0, 400, overlap="inside", estimand="frame")
    assert (1 - m / 400) / m == pytest.approx(v, rel=1e-12)
    v = ppi_variance(100, 0.6, 1.0, 1.0, 400, overlap="inside", estimand="superpopulation")
    assert 1 / m == pytest.approx(v, rel=1e-12)
    with pytest.raises(InputError, match="cannot be inside"):
        effective_sample_size(500, 0.5, 400, overlap="inside")


@pytest.mark.parametrize("estimand", ["frame", "superpopulation"])
def test_humans_needed_inside_the_frame_is_the_smallest(estimand):
    z = norm.ppf(0.975)
    for method, rho in (("classical", 0.0), ("ppi++", 0.7)):
        n = humans_needed(0.1, 1.0, rho, 2000, method=method, overlap="inside", estimand=estimand)
        lam = 0.0 if method == "classical" else None
        assert z * math.sqrt(ppi_variance(n, rho, 1.0, 1.0, 2000, lam=lam, overlap="inside",
                                          estimand=estimand)) <= 0.1 * (1 + 1e-12)
        assert z * math.sqrt(ppi_variance(n - 1, rho, 1.0, 1.0, 2000, lam=lam, overlap="inside",
                                          estimand=estimand)) > 0.1
    with pytest.raises(EstimationError, match="frame itself"):
        humans_needed(0.01, 1.0, 0.5, 2000, overlap="inside", estimand="superpopulation")
