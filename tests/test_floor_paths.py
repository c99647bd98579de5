"""The population passes near the floor (issue 17): the optional numba kernels give the NumPy passes'
sums to 1e-10, and the population fits make no more passes over the frame than they did when measured.
"""

import numpy as np
import pytest

from rectify.estimators import models as M


def _logit_data(N, seed):
    rng = np.random.default_rng(seed)
    cols = [rng.normal(size=N) for _ in range(3)]
    eta = 0.3 + 0.5 * cols[0] - 0.4 * cols[1] + 0.2 * cols[2]
    z = 1 / (1 + np.exp(-(0.8 * eta + rng.normal(size=N))))
    return cols, z, rng.uniform(0.5, 2.0, N)


def _ordinal_data(N, seed, K=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    P = M.ordinal_probabilities(X, np.array([0.8, -0.5]), np.linspace(-1.2, 1.2, K - 1))
    y = (rng.random(N)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    return X, 0.6 * np.eye(K)[y] + 0.4 * P, rng.uniform(0.5, 2.0, N)


def _both(monkeypatch, fn):
    """``fn()`` with the NumPy passes, then with the numba kernels on every pass."""
    monkeypatch.setattr(M, "_FAST_MIN_ROWS", 10**15)
    ref = fn()
    monkeypatch.setattr(M, "_FAST_MIN_ROWS", 0)
    return ref, fn()


def _close(a, b, rtol=1e-10):
    for x, y in zip(a, b):
        if x is None or (np.ndim(x) == 0 and np.isnan(x)):
            assert y is None or np.isnan(y)
            continue
        np.testing.assert_allclose(y, x, rtol=rtol, atol=rtol * np.max(np.abs(x)))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hessian,meat", [(True, False), (True, True), (False, True)])
def test_numba_logistic_pass_equals_numpy(monkeypatch, weighted, hessian, meat):
    pytest.importorskip("numba")
    cols, z, w = _logit_data(20_000, 1)
    X = M.ColumnDesign([None] + cols)
    theta = np.array([0.2, 0.4, -0.3, 0.1])
    ref, fast = _both(monkeypatch, lambda: M._logistic_pass(X, z, w if weighted else None, theta, meat, hessian))
    assert M.fast_kernels(1) is not None  # the kernels ran
    _close(ref, fast)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hessian,meat,loglik", [(True, False, False), (True, True, True), (False, True, False)])
def test_numba_ordinal_pass_equals_numpy(monkeypatch, weighted, hessian, meat, loglik):
    pytest.importorskip("numba")
    X, P, w = _ordinal_data(20_000, 2)
    args = (X, P, w if weighted else None, np.array([0.7, -0.4]), np.array([-1.1, 0.1, 1.3]))
    ref, fast = _both(monkeypatch, lambda: M._ordinal_pass(*args, hessian=hessian, meat=meat, loglik=loglik)[:4])
    _close(ref, fast)


def test_numba_ordinal_pass_refuses_a_vanished_category(monkeypatch):
    pytest.importorskip("numba")
    X, P, _ = _ordinal_data(2_000, 3)
    X[5] = 80.0  # this row's first category gets probability 0 while its label puts weight on it
    P[5] = [0.7, 0.1, 0.1, 0.1]
    monkeypatch.setattr(M, "_FAST_MIN_ROWS", 0)
    with pytest.raises(M.EstimationError, match="underflowed"):
        M._ordinal_pass(X, P, None, np.array([8.0, 8.0]), np.array([-1.0, 0.0, 1.0]))


def test_numba_fits_equal_numpy_fits(monkeypatch):
    pytest.importorskip("numba")
    cols, z, w = _logit_data(300_000, 4)
    X = M.ColumnDesign([None] + cols)
    ref, fast = _both(monkeypatch, lambda: M.fit_logistic(X, z, w / w.mean(), keep_psi=False))
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.meat, ref.meat, rtol=1e-10)
    Xo, P, _ = _ordinal_data(300_000, 5)
    ref, fast = _both(monkeypatch, lambda: M.fit_ordinal(Xo, P, None, keep_psi=False))
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fast.meat, ref.meat, rtol=1e-9)


def test_no_numba_means_numpy(monkeypatch):
    monkeypatch.setattr(M, "_FAST", {})
    monkeypatch.setenv("RECTIFY_NO_NUMBA", "1")
    assert M.fast_kernels(10**9) is None
    monkeypatch.setattr(M, "_FAST", {})
    monkeypatch.delenv("RECTIFY_NO_NUMBA")
    assert M.fast_kernels(10) is None  # small passes never import numba


def _count_full_passes(monkeypatch, name, N, fn):
    calls = []
    orig = getattr(M, name)

    def counted(X, *a, **k):
        if X.shape[0] == N:
            calls.append(k)
        return orig(X, *a, **k)

    monkeypatch.setattr(M, name, counted)
    fit = fn()
    return fit, len(calls)


def test_logistic_population_fit_makes_three_passes(monkeypatch):
    # measured: a chord step from the subsample's Hessian (gradient only), one Newton pass with a
    # second-order correction (third derivatives from the subsample) and the last pass with the meat --
    # three passes over the frame (five before issue 17)
    N = 400_000
    cols, z, _ = _logit_data(N, 6)
    X = M.ColumnDesign([None] + cols)
    dense = M.fit_logistic(np.column_stack([np.ones(N)] + cols), z, np.ones(N))
    fit, passes = _count_full_passes(monkeypatch, "_logistic_sums", N,
                                     lambda: M.fit_logistic(X, z, None, keep_psi=False, start=dense.theta + 0.05))
    assert passes <= 3
    np.testing.assert_allclose(fit.theta, dense.theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fit.meat, dense.second_moment(), rtol=1e-10)


def test_ordinal_population_fit_makes_at_most_four_passes(monkeypatch):
    # as the logistic fit: chord step, Newton step with a second-order correction (third derivatives as
    # a second difference of the subsample's score), last pass with the meat -- three passes on
    # benchmarks/floor.py's frame; here the correction's accuracy is not predicted good enough and one
    # chord pass is added: four (seven before issue 17)
    N = 400_000
    X, P, _ = _ordinal_data(N, 7)
    dense = M.fit_ordinal(X[:5000], P[:5000], None)
    fit, passes = _count_full_passes(monkeypatch, "_ordinal_pass", N,
                                     lambda: M.fit_ordinal(X, P, None, keep_psi=False, start=dense.theta))
    assert passes <= 4
    full = M.fit_ordinal(X, P, None, keep_psi=True)  # the dense fit of the same rows, to 1e-10
    np.testing.assert_allclose(fit.theta, full.theta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fit.meat, full.second_moment(), rtol=1e-9)


def test_third_derivative_corrections_match_the_hessians_change():
    # T(s, s) / 2 from the closed form (logistic) and from a second difference of the score (ordinal)
    # equals the change of the Hessian along s (a central difference of the Hessians), times s / 2
    cols, z, _ = _logit_data(20_000, 8)
    X = np.column_stack([np.ones(20_000)] + cols)
    theta, s, h = np.array([0.2, 0.4, -0.3, 0.1]), np.array([0.3, -0.2, 0.1, 0.4]), 1e-5

    def hess(t):
        return M._logistic_pass(X, z, None, t)[1] / len(z)

    want = 0.5 * (hess(theta + h * s) - hess(theta - h * s)) / (2 * h) @ s
    np.testing.assert_allclose(M._LogisticSub(X, z, None).third(theta, s), want, rtol=1e-6)
    Xo, P, w = _ordinal_data(20_000, 9)
    theta, s = np.array([0.7, -0.4, -1.1, 0.1, 1.3]), np.array([0.2, 0.1, -0.3, 0.2, 0.1])

    def ohess(t):
        return M._ordinal_pass(Xo, P, w, t[:2], t[2:])[2]  # mean Hessian of the mean negative log-likelihood

    want = 0.5 * (ohess(theta + h * s) - ohess(theta - h * s)) / (2 * h) @ s
    np.testing.assert_allclose(M._OrdinalSub(Xo, P, w, 2, len(Xo)).third(theta, s), want, rtol=1e-5)


def test_first_order_moves_of_hessian_and_meat_match_central_differences():
    # what the last step does to the sums of the last pass: closed form (logistic) and subsample
    # differences (ordinal) against central differences of full passes over the same rows
    cols, z, w = _logit_data(20_000, 10)
    X = np.column_stack([np.ones(20_000)] + cols)
    theta, d, h = np.array([0.2, 0.4, -0.3, 0.1]), np.array([0.3, -0.2, 0.1, 0.4]) * 1e-3, 1e-2
    dH, dS = M._LogisticSub(X, z, w).moved(theta, d, 4 * len(z[::4]))  # (from every 4th row given)
    plus, minus = (M._logistic_pass(X[::4], z[::4], w[::4], t, meat=True) for t in (theta + h * d, theta - h * d))
    np.testing.assert_allclose(dH, 4 * (plus[1] - minus[1]) / (2 * h), rtol=1e-6, atol=1e-9 * np.abs(dH).max())
    np.testing.assert_allclose(dS, 4 * (plus[2] - minus[2]) / (2 * h), rtol=1e-6, atol=1e-9 * np.abs(dS).max())
    Xo, P, w = _ordinal_data(20_000, 11)
    theta, d = np.array([0.7, -0.4, -1.1, 0.1, 1.3]), np.array([0.2, 0.1, -0.3, 0.2, 0.1]) * 1e-3
    dH, dS = M._OrdinalSub(Xo, P, w, 2, 3 * len(Xo)).moved(theta, d)
    plus, minus = (M._ordinal_pass(Xo, P, w, t[:2], t[2:], meat=True) for t in (theta + h * d, theta - h * d))
    np.testing.assert_allclose(dH, (plus[2] - minus[2]) / (2 * h), rtol=1e-4, atol=1e-6 * np.abs(dH).max())
    np.testing.assert_allclose(dS, 3 * (plus[3] - minus[3]) / (2 * h), rtol=1e-4, atol=1e-6 * np.abs(dS).max())


def test_ppi_py_joint_solve_from_a_subsample_equals_the_plain_solve(monkeypatch):
    # convention="ppi_py" logistic: the joint solve started on a subsample and ended at a step below 1e-9
    # (population sums moved to the minimiser) gives the plain solve's minimiser and sums
    from rectify.estimators import ppi_regression as R

    N = 300_000
    cols, f, _ = _logit_data(N, 12)
    Xp = M.ColumnDesign([None] + cols)
    rng = np.random.default_rng(13)
    X = np.column_stack([np.ones(200)] + [c[:200] for c in cols])
    Y = (rng.random(200) < f[:200]).astype(float)
    w = np.ones(200)
    start = M.fit_logistic(X, Y, w).theta
    idx = M._spread_rows(N, 65536)
    sub = (M._take_rows(Xp, idx), f[idx], None)
    calls = []
    orig = R._logistic_pass
    monkeypatch.setattr(R, "_logistic_pass", lambda X_, *a, **k: calls.append(X_.shape[0] == N) or orig(X_, *a, **k))
    plain, pop0 = R._joint_logistic(X, Y, f[:200], Xp, f, w, None, 0.7, start)
    full_passes = sum(calls)
    calls.clear()
    fast, pop = R._joint_logistic(X, Y, f[:200], Xp, f, w, None, 0.7, start, sub)
    assert sum(calls) <= 3 < full_passes
    pop0 = pop0 or R._pop_scores(plain, Xp, f, None, "logistic")
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-12)
    for a, b in ((pop.su, pop0.su), (pop.Suu, pop0.Suu), (pop.Hp, pop0.Hp)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
