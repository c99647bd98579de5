"""The parallel numba passes (issue 17): ``prange`` over fixed row chunks gives the serial kernels' sums
to 1e-12 (weighted or not, soft labels), the same bits on every call, and runs only where it should.
"""

import contextlib

import numpy as np
import pytest

pytest.importorskip("numba")

from rectify.errors import EstimationError  # noqa: E402
from rectify.estimators import _numba_kernels as K  # noqa: E402
from rectify.estimators import models as M  # noqa: E402


def _logit_data(N, seed=5):
    rng = np.random.default_rng(seed)
    cols = [None] + [rng.normal(size=N) for _ in range(3)]
    z = rng.uniform(size=N)  # soft labels
    return M.ColumnDesign(cols), z, rng.uniform(0.5, 2.0, N), np.array([0.2, 0.5, -0.4, 0.1])


def _ordinal_data(N, seed=6, K_=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    P = 0.6 * rng.dirichlet(np.ones(K_), size=N) + 0.4 * M.ordinal_probabilities(X, np.array([0.8, -0.5]),
                                                                                np.linspace(-1.2, 1.2, K_ - 1))
    return X, P, rng.uniform(0.5, 2.0, N)


@pytest.fixture
def kernels(monkeypatch):
    """Returns ``run(parallel, fn)``: ``fn()`` on the serial numba kernels or forced onto the parallel
    ones (whatever the number of cores: the chunks run one after the other on one thread)."""
    monkeypatch.setattr(M, "_FAST_MIN_ROWS", 0)

    def run(parallel, fn):
        monkeypatch.setattr(M, "_PAR_MIN_ROWS", 0 if parallel else 10**15)
        monkeypatch.setattr(M, "_parallel_threads", (lambda rows: 2) if parallel else (lambda rows: 1))
        monkeypatch.setattr(M, "_numba_threads", lambda n: contextlib.nullcontext())
        return fn()

    return run


def _close(ref, got, rtol=1e-12):
    """Each array of ``got`` within ``rtol`` of the largest entry of its reference (None / NaN alike)."""
    for x, y in zip(ref, got):
        if x is None:
            assert y is None
        elif np.ndim(x) == 0 and np.isnan(x):
            assert np.isnan(y)
        else:
            assert np.max(np.abs(np.asarray(y) - x)) <= rtol * np.max(np.abs(x))


def test_vexp_equals_numpys_exponential():
    x = np.concatenate([np.random.default_rng(1).normal(scale=30.0, size=5000), [0.0, 1.0, -1.0, 700.0, -700.0]])
    out = np.empty_like(x)
    K.vexp(x, out, np.empty_like(x))
    np.testing.assert_allclose(out, np.exp(x), rtol=5e-16, atol=0)
    odd = np.array([np.nan, 800.0, -800.0])  # NaN stays NaN; out of range: clamped to exp(709), exp(-708)
    K.vexp(odd, out[:3], np.empty(3))
    assert np.isnan(out[0]) and out[1] == pytest.approx(np.exp(709.0)) and out[2] == pytest.approx(np.exp(-708.0))


@pytest.mark.parametrize("chunks", [3, 32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hessian,meat", [(True, False), (True, True), (False, True)])
def test_parallel_logistic_pass_equals_serial(kernels, monkeypatch, chunks, weighted, hessian, meat):
    monkeypatch.setattr(M, "_PAR_CHUNKS", chunks)  # 3 chunks: several blocks per chunk, a shorter last one
    X, z, w, theta = _logit_data(40_003)
    f = lambda: M._logistic_pass(X, z, w if weighted else None, theta, meat, hessian)  # noqa: E731
    ref, par = kernels(False, f), kernels(True, f)
    _close(ref, par)
    again = kernels(True, f)
    for a, b in zip(par, again):  # the same bits on every call
        assert (a is None and b is None) or np.array_equal(a, b)


def test_parallel_logistic_pass_on_a_fortran_array(kernels):
    X, z, w, theta = _logit_data(20_001)
    F = np.asfortranarray(np.asarray(X))
    _close(kernels(False, lambda: M._logistic_pass(F, z, w, theta, True)),
           kernels(True, lambda: M._logistic_pass(F, z, w, theta, True)))


@pytest.mark.parametrize("chunks", [3, 32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hessian,meat,loglik", [(True, False, True), (True, True, False), (False, True, True)])
def test_parallel_ordinal_pass_equals_serial(kernels, monkeypatch, chunks, weighted, hessian, meat, loglik):
    monkeypatch.setattr(M, "_PAR_CHUNKS", chunks)
    X, P, w = _ordinal_data(30_001)
    Xc = M.ColumnDesign([X[:, 0], X[:, 1]])
    for PP in (P, np.asfortranarray(P)):  # the label matrix in either layout
        f = lambda: M._ordinal_pass(Xc, PP, w if weighted else None, np.array([0.7, -0.4]),  # noqa: E731
                                    np.array([-1.0, 0.1, 1.1]), hessian=hessian, meat=meat, loglik=loglik)[:4]
        ref, par = kernels(False, f), kernels(True, f)
        _close(ref, par)
        for a, b in zip(par, kernels(True, f)):
            assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)


def test_parallel_ordinal_pass_refuses_a_vanished_category(kernels):
    X, P, _ = _ordinal_data(5000)
    Xc = M.ColumnDesign([X[:, 0], X[:, 1]])
    with pytest.raises(EstimationError, match="underflowed"):
        kernels(True, lambda: M._ordinal_pass(Xc, P, None, np.array([0.7, -0.4]), np.array([-1.0, 1.0, 1.0])))


def test_parallel_fits_equal_serial_fits(kernels):
    X, z, w, _ = _logit_data(30_000, seed=8)
    ref = kernels(False, lambda: M.fit_logistic(X, z, w / w.mean(), keep_psi=False))
    par = kernels(True, lambda: M.fit_logistic(X, z, w / w.mean(), keep_psi=False))
    np.testing.assert_allclose(par.theta, ref.theta, rtol=1e-10)
    Xo, P, _ = _ordinal_data(30_000, seed=9)
    Xc = M.ColumnDesign([Xo[:, 0], Xo[:, 1]])
    ref = kernels(False, lambda: M.fit_ordinal(Xc, P, None, keep_psi=False))
    par = kernels(True, lambda: M.fit_ordinal(Xc, P, None, keep_psi=False))
    np.testing.assert_allclose(par.theta, ref.theta, rtol=1e-10)


def test_parallel_path_only_above_the_threshold_and_with_two_threads(monkeypatch):
    import numba

    X, *_ = _logit_data(100)
    assert M._parallel_threads(M._PAR_MIN_ROWS - 1) == 1
    with M._fast_for(10**9):  # a frame-sized fit's subsample passes: from _PAR_SCOPED_MIN_ROWS rows
        assert M._parallel_threads(M._PAR_SCOPED_MIN_ROWS) == M._parallel_threads(M._PAR_MIN_ROWS)
        assert M._parallel_threads(M._PAR_SCOPED_MIN_ROWS - 1) == 1
    assert M._parallel_threads(M._PAR_SCOPED_MIN_ROWS) == 1
    monkeypatch.setattr(M, "_PAR_MIN_ROWS", 0)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert M._parallel_threads(10) == min(numba.get_num_threads(), cores)
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert M._parallel_threads(10) == 1 and M._parallel_setup(X) is None  # one thread: the serial kernels
    finally:
        numba.set_num_threads(saved)
    monkeypatch.setattr(M, "_parallel_threads", lambda rows: 2)
    assert M._parallel_setup(X) is not None
    assert M._parallel_setup(np.ascontiguousarray(np.asarray(X))) is None  # row-major arrays: serial kernels
    assert M._parallel_setup(M.ColumnDesign([np.ones(5)] * (M._PAR_COLS + 1))) is None


@pytest.mark.parametrize("case", ["clean", "negative", "nan", "inf", "off-sum"])
def test_probability_row_checks_in_one_pass_equal_numpys(monkeypatch, case):
    rng = np.random.default_rng(11)
    P = rng.dirichlet(np.ones(4), size=7001)
    if case == "negative":
        P[10] = [-0.25, 0.5, 0.5, 0.25]
    elif case == "nan":
        P[20, 1] = np.nan
    elif case == "inf":
        P[30, 2] = np.inf
    elif case == "off-sum":
        P[40] *= 1.5
    got = []
    for fast in (10**15, 0):  # NumPy, then the numba pass (C and Fortran order)
        monkeypatch.setattr(M, "_FAST_MIN_ROWS", fast)
        got += [M.prob_row_checks(P), M.prob_row_checks(np.asfortranarray(P))]
    ref = got[0]
    assert all(g[3] == ref[3] for g in got) and ref[3] == (case not in ("nan", "inf"))
    if ref[3]:  # finite: the same minimum and extreme row sums
        for g in got[1:]:
            np.testing.assert_allclose(g[:3], ref[:3], rtol=1e-14)
    assert (ref[0] < 0) == (case == "negative")


def test_column_sums_in_one_parallel_pass_equal_numpys(monkeypatch):
    P = np.random.default_rng(12).dirichlet(np.ones(5), size=9001)
    monkeypatch.setattr(M, "_FAST_MIN_ROWS", 0)
    for Q in (P, np.asfortranarray(P)):
        np.testing.assert_allclose(M._column_sums(Q), P.sum(axis=0), rtol=1e-14)


def test_parallel_passes_refuse_mismatched_shapes(kernels):
    X, z, w, theta = _logit_data(1000)
    with pytest.raises(ValueError, match="must match X"):
        kernels(True, lambda: M._logistic_pass(X, z, w, theta[:3], True))
    Xo, P, _ = _ordinal_data(1000)
    Xc = M.ColumnDesign([None, Xo[:, 0], Xo[:, 1]])  # three columns, two coefficients
    with pytest.raises(ValueError, match="must match X"):
        kernels(True, lambda: M._ordinal_pass(Xc, P, None, np.array([0.7, -0.4]), np.array([-1.0, 0.1, 1.1])))


def test_subsample_rows_keep_a_column_major_matrix_column_major():
    P = np.asfortranarray(np.random.default_rng(13).normal(size=(1000, 4)))
    idx = np.sort(np.random.default_rng(14).choice(1000, 100, replace=False))
    Q = M._take_rows(P, idx)  # (one compiled kernel for the frame's and the subsample's passes)
    assert Q.flags.f_contiguous and np.array_equal(Q, P[idx])
    assert M._take_rows(np.ascontiguousarray(P), idx).flags.c_contiguous


# ----------------------------------------------------------------------------- gathered probability columns
def test_gathered_columns_are_the_stacked_matrix_with_its_checks_and_sums(kernels):
    _, P, _ = _ordinal_data(3001, K_=5)
    cols = [np.ascontiguousarray(P[:, k]) for k in range(5)]
    G = kernels(True, lambda: M.gather_prob_columns(cols))
    assert isinstance(G, M.ProbMatrix) and G.flags.f_contiguous
    assert np.array_equal(np.asarray(G), np.stack(cols).T)  # the same bits
    ref = kernels(False, lambda: M.prob_row_checks(np.stack(cols).T))
    _close(ref[:3], G.stats[:3])
    assert G.stats[3] is True and ref[3] is True
    _close([P.sum(axis=0)], [G.stats[4]])
    # views and copies carry no figures (they could be changed); the serial path gives a plain matrix
    assert G[:10].stats is None and G.copy().stats is None
    assert type(kernels(False, lambda: M.gather_prob_columns(cols))) is np.ndarray


@pytest.mark.parametrize("bad, message", [(-0.1, "negative"), (np.nan, "1 NaN"), (np.inf, "1 infinite"),
                                          (0.9, "sum to one")])
def test_gathered_checks_still_refuse(kernels, bad, message):
    from rectify.errors import InputError
    from rectify.estimators.ppi_categorical import _as_shares_matrix

    _, P, _ = _ordinal_data(2000)
    P[1234, 2] = bad
    G = kernels(True, lambda: M.gather_prob_columns([np.ascontiguousarray(P[:, k]) for k in range(4)]))
    assert G.stats is not None
    with pytest.raises(InputError, match=message):
        _as_shares_matrix(G, [1, 2, 3, 4], "yhat_pop", keep=True)


def test_ordinal_fit_from_gathered_columns_equals_the_plain_fit(kernels):
    X, P, _ = _ordinal_data(4000)
    G = kernels(True, lambda: M.gather_prob_columns([np.ascontiguousarray(P[:, k]) for k in range(4)]))
    a = kernels(True, lambda: M.fit_ordinal(X, G, None, keep_psi=False))
    b = kernels(True, lambda: M.fit_ordinal(X, np.asfortranarray(P), None, keep_psi=False))
    _close([b.theta, b.meat], [a.theta, a.meat], rtol=1e-12)


def test_shares_from_gathered_columns_are_plain_arrays(kernels):
    from rectify.estimators.ppi_categorical import _as_shares_matrix

    _, P, _ = _ordinal_data(1000)
    G = kernels(True, lambda: M.gather_prob_columns([np.ascontiguousarray(P[:, k]) for k in range(4)]))
    plain = _as_shares_matrix(G, [1, 2, 3, 4], "yhat_pop")
    assert type(plain) is np.ndarray and np.array_equal(plain, P)
    assert _as_shares_matrix(G, [1, 2, 3, 4], "yhat_pop", keep=True) is G
