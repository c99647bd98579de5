"""PPI estimators of means (plain and stratified) and quantiles; see :mod:`rectify.estimators.ppi`."""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np
from scipy import special

from rectify import estimand as E
from rectify.errors import InputError
from rectify.result import Result, check_level

from . import _validate as V
from .models import Fit, one_blas_thread, row_blocks
from .ppi_base import (warn_small_effective_n, _check_common, _difference_estimator, _float_array, _frame_size, _lambda_tuning,
                       _optimal_lambda, _target_fields, _weights_df)

__all__ = ["ppi_mean", "ppi_quantile"]


# ----------------------------------------------------------------------------- means
def _mean_fit(Z: np.ndarray, w: np.ndarray | None, keep_psi: bool = True, raw=None) -> Fit:
    if not keep_psi:
        return _mean_population(Z, w, raw)
    theta = (w[:, None] * Z).mean(axis=0)
    psi = w[:, None] * (Z - theta)
    return Fit(theta, psi, np.eye(Z.shape[1]))


# the raw second moment may exceed the centred one this many times before the one-pass form loses
# more than about 1e-13 of its digits to cancellation (then the rows are centred in a second pass)
_MAX_CANCEL = 100.0


def _raw_moments(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum z`` and ``sum z z'`` over the rows of ``Z`` ((N,) or (N, d)): one sum and one product.

    A NaN or an infinite value anywhere makes both non-finite, so they double as the finiteness check.
    One thread: BLAS's threads only wait for a core on a busy machine (a 1e6-row dot product took 8 ms
    with two threads under load against 0.3 ms with one); ``einsum`` multiplies without BLAS.
    """
    if Z.ndim == 1 or Z.shape[1] == 1:
        z = Z.reshape(-1)
        return np.array([z.sum()]), np.array([[np.einsum("i,i->", z, z)]])
    with one_blas_thread():  # a row-major sum over axis 0 runs row by row: five times slower than a product
        s = Z.sum(axis=0) if Z.flags.f_contiguous else np.ones(Z.shape[0]) @ Z
        return s, Z.T @ Z


def _centred(raw, N: int):
    """Mean and ``psi' psi / N`` from :func:`_raw_moments`; None when not finite or too cancelling."""
    s, G = raw
    if not (np.isfinite(s).all() and np.isfinite(G).all()):
        return None
    theta = s / N
    M = G / N - np.outer(theta, theta)
    if np.any(np.diag(M) * _MAX_CANCEL < np.diag(G) / N):
        return None  # a mean far from zero against the spread (or a constant column): centre the rows
    return theta, M


def _mean_population(Z: np.ndarray, w: np.ndarray | None, raw=None) -> Fit:
    """Mean and ``psi' psi / N`` of the population rows (``w=None``: unweighted).

    Unweighted, one sum and one product ``Z'Z`` (``raw``, when the caller already has them) give
    both unless cancellation would cost digits; otherwise, and weighted, the rows are centred in
    blocked passes.
    """
    N, d = Z.shape
    if w is None:
        fast = _centred(raw if raw is not None else _raw_moments(Z), N)
        if fast is not None:
            return Fit(fast[0], None, np.eye(d), meat=fast[1])
    theta = Z.mean(axis=0) if w is None else (w[:, None] * Z).mean(axis=0)
    M = np.zeros((d, d))
    with one_blas_thread():
        for i, j, Zb in row_blocks(Z):
            C = Zb - theta
            if w is not None:
                C *= w[i:j, None]
            M += C.T @ C
    return Fit(theta, None, np.eye(d), meat=M / N)


def _weights_or_ones(w, n):
    return np.ones(n) if w is None else w


def _pop_mean_sums(Fp, wp, shift):
    """``sum v`` and ``sum v v'`` of the population rows ``v = wp (Fp - shift)``, in blocks."""
    d = Fp.shape[1]
    s1, s2 = np.zeros(d), np.zeros((d, d))
    with one_blas_thread():
        for i, j, Fb in row_blocks(Fp):
            v = Fb - shift
            if wp is not None:
                v *= wp[i:j, None]
            s1 += v.sum(0)
            s2 += v.T @ v
    return s1, s2


def _ppi_py_mean_lambda(Y, F, Fp, w, wp, fit_pop):
    """ppi_py 0.2.3's lambda for the mean: gradients at the lambda = 1 estimate, clipped to [0, 1]."""
    pop_mean = fit_pop.theta
    theta1 = pop_mean + (w[:, None] * (Y - F)).mean(0)
    g = w[:, None] * (Y - theta1)
    gh = w[:, None] * (F - theta1)
    n, N = len(Y), len(Fp)
    gc, hc = g - g.mean(0), gh - gh.mean(0)
    cov = (gc.T @ hc + hc.T @ gc) / n
    # np.cov of the stacked pilot and population gradients, the population part as sums
    if wp is None:  # sums about theta1 from those about the population mean: no pass over the frame
        shift = pop_mean - theta1
        s1, s2 = N * shift, N * (fit_pop.meat + np.outer(shift, shift))
    else:
        s1, s2 = _pop_mean_sums(Fp, wp, theta1)
    mean = (gh.sum(0) + s1) / (n + N)
    var = (gh.T @ gh + s2 - (n + N) * np.outer(mean, mean)) / (n + N - 1)
    return float(np.clip(np.trace(cov) / (2 * (1 + n / N) * np.trace(var)), 0, 1))


def _mean_core(Y, F, Fp, w, wp, method, lam, lambda_mode, lambda_bounds, convention, target=None,
               frame_size=None, raw=None):
    n = 0 if Y is None else Y.shape[0]
    N = 0 if Fp is None else Fp.shape[0]
    d = Y.shape[1] if method != "naive" else Fp.shape[1]
    fit_y = _mean_fit(Y, w) if method != "naive" else None
    fit_f = _mean_fit(F, w) if method in ("ppi", "ppi++") else None
    fit_pop = _mean_fit(Fp, wp, keep_psi=False, raw=raw) if method != "classical" else None
    if convention == "ppi_py" and method in ("ppi", "ppi++"):
        # the population enters through the mean and centred second moment of wp * Fp
        pop_mean = fit_pop.theta
        if method == "ppi":
            lam_vec = np.ones(d)
        elif lam is not None:
            lam_vec = np.broadcast_to(np.asarray(lam, float), (d,)).copy()
        else:
            lam_vec = np.full(d, _ppi_py_mean_lambda(Y, F, Fp, w, wp, fit_pop))
        est = lam_vec * pop_mean + (w[:, None] * (Y - lam_vec * F)).mean(0)
        A = w[:, None] * (Y - lam_vec * F)
        A = A - A.mean(0)
        if wp is None:
            CB = fit_pop.meat * N
        else:
            s1, s2 = _pop_mean_sums(Fp * wp[:, None], None, pop_mean)
            CB = s2 - np.outer(s1, s1) / N
        cov = A.T @ A / n**2 + np.outer(lam_vec, lam_vec) * CB / N**2
        return est, cov, None, lam_vec
    return _difference_estimator(fit_y, fit_f, fit_pop, method, lam, lambda_mode, lambda_bounds,
                                 n, N, 1, convention, target, frame_size, _weights_df(w))


def _population_array(yhat_pop, ndim, moments: bool):
    """The frame's predictions as floats, refused by name if not finite, and (``moments``) their
    :func:`_raw_moments`, which also serve as the finiteness check (None when they overflow)."""
    if not moments:
        return _float_array(yhat_pop, "yhat_pop", ndim), None
    try:
        arr = np.asarray(yhat_pop, dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is not None and arr.ndim in ((ndim,) if isinstance(ndim, int) else ndim):
        raw = _raw_moments(arr)
        if np.isfinite(raw[1]).all() and np.isfinite(raw[0]).all():
            return arr, raw
    return V.as_float_array(yhat_pop, "yhat_pop", ndim), None


def _prepare_mean_inputs(y, yhat, yhat_pop, method, weights, weights_pop, ndim=(1, 2), moments=False):
    """Validated answers and predictions; ``wp`` is None for an unweighted population; ``raw``: the
    population's :func:`_raw_moments` (with ``moments`` and no population weights, else None)."""
    Y = _float_array(y, "y", ndim) if method != "naive" else None
    F = _float_array(yhat, "yhat", ndim) if method in ("ppi", "ppi++") else None
    Fp = raw = None
    if method != "classical":
        Fp, raw = _population_array(yhat_pop, ndim, moments and weights_pop is None)
    if Y is not None:
        V.check_nonempty(Y, "y", "pilot")
    if F is not None:
        V.check_same_length(Y.shape[0], F, "yhat", "y")
    if Fp is not None:
        V.check_nonempty(Fp, "yhat_pop", "population")
    n = 0 if Y is None else Y.shape[0]
    N = 0 if Fp is None else Fp.shape[0]
    w = V.normalise_weights(weights, n, "weights") if Y is not None else None
    warn_small_effective_n(w)
    wp = V.normalise_weights(weights_pop, N, "weights_pop") if (Fp is not None and weights_pop is not None) else None
    def two(a):
        return None if a is None else (a[:, None] if a.ndim == 1 else a)
    Y, F, Fp = two(Y), two(F), two(Fp)
    if Y is not None and Fp is not None and Y.shape[1] != Fp.shape[1]:
        raise InputError(f"'y' has {Y.shape[1]} columns but 'yhat_pop' has {Fp.shape[1]}")
    if Y is not None and n < 2:
        raise InputError("argument 'y' must have at least 2 pilot rows to estimate a variance; collect more pilot "
                         "answers (or merge a small group with a neighbouring one)")
    return Y, F, Fp, w, wp, n, N, raw


def _strata_codes(strata, n, name):
    if strata is None:
        return None
    arr = np.asarray(strata)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"argument '{name}' must be 1-D with one label per row ({n} rows)")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InputError(f"argument '{name}' has missing stratum labels; every row needs a stratum")
    if arr.dtype == object and any(v is None for v in arr):
        raise InputError(f"argument '{name}' has missing stratum labels; every row needs a stratum")
    return arr


def _stratified(core, Y, F, Fp, w, wp, s, sp, method, lam, lambda_mode, lambda_bounds, convention, p):
    """Stratified PPI++: lambda per stratum, strata combined with population stratum weights."""
    labels_pop = list(dict.fromkeys(sp.tolist()))
    labels_pilot = set(s.tolist()) if s is not None else set()
    if s is not None:
        extra = labels_pilot - set(labels_pop)
        if extra:
            raise InputError(f"strata {sorted(map(str, extra))} occur in the pilot but not in the population; add them "
                             "to the population frame or merge them with a stratum it has")
        missing = [h for h in labels_pop if h not in labels_pilot]
        if missing:
            raise InputError(
                f"strata {missing[:5]} have population rows but no pilot rows; stratified estimation needs "
                f"pilot answers in every stratum (merge small strata or sample them)"
            )
    wp = _weights_or_ones(wp, len(sp))
    total = wp.sum()
    est = 0.0
    cov = 0.0
    dfs = []
    lams = {}
    for h in labels_pop:
        mp = sp == h
        Wh = wp[mp].sum() / total
        if s is not None:
            m = s == h
            if m.sum() < 2:
                raise InputError(f"stratum {h!r} has {m.sum()} pilot row; at least 2 are needed for a variance: "
                                 "collect more pilot answers there or merge it with a neighbouring stratum")
            Yh, Fh, wh = Y[m], (None if F is None else F[m]), w[m] * m.sum() / w[m].sum()
        else:
            Yh = Fh = wh = None
        wph = wp[mp] * mp.sum() / wp[mp].sum()
        e, c, df, lv = core(Yh, Fh, Fp[mp], wh, wph, method, lam, lambda_mode, lambda_bounds, convention)
        est = est + Wh * e
        cov = cov + Wh**2 * c
        dfs.append((Wh**2 * np.diag(c), df))
        if lv is not None:
            lams[str(h)] = float(lv[0]) if lambda_mode == "overall" else lv.copy()
    df_tot = None
    if convention == "small-sample":
        num = sum(v for v, _ in dfs) ** 2
        den = sum(np.where(np.isfinite(df), v**2 / df, 0.0) for v, df in dfs)
        df_tot = np.where(den > 0, num / np.where(den > 0, den, 1), np.inf)
    return np.asarray(est), np.asarray(cov), df_tot, lams


def ppi_mean(y=None, yhat=None, yhat_pop=None, method: str = "ppi++", *, weights=None, weights_pop=None,
             lam=None, lambda_mode: str = "overall", lambda_bounds=None, strata=None, strata_pop=None,
             level: float = 0.95, convention: str = "small-sample", terms: Sequence[str] | None = None,
             estimand: str | None = None, overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Population mean of a human answer, corrected with LLM predictions.

    Parameters
    ----------
    y : array-like, shape (n,) or (n, d)
        Human answers in the pilot (not needed for ``method="naive"``).
    yhat : array-like, shape (n,) or (n, d)
        LLM predictions for the pilot rows (``ppi``/``ppi++``).
    yhat_pop : array-like, shape (N,) or (N, d)
        LLM predictions for the population frame (not needed for ``classical``).
    method : {"classical", "naive", "ppi", "ppi++"}
    weights, weights_pop : array-like, optional
        Survey weights of pilot and population rows (scaled to mean one; Hajek form).
    lam : float or array, optional
        Fix lambda instead of tuning it (``lam=0`` is the classical estimate).
    lambda_mode : {"overall", "element"}
        One lambda for all coordinates, or one per coordinate.
    lambda_bounds : (low, high), optional
        Clip the tuned lambda (default: no clip; ``(0, 1)`` under ``convention="ppi_py"``).
    strata, strata_pop : array-like, optional
        Stratum labels of pilot and population rows: stratified PPI++ with one lambda per stratum,
        strata combined with their (weighted) population shares.
    level : float, default 0.95
    convention : {"small-sample", "ppi_py"}
        Student-t intervals with Satterthwaite df (default) or ppi_py's normal intervals.
    estimand : {"frame", "superpopulation"}, optional
        The finite frame's mean (default; ``"superpopulation"`` under ``convention="ppi_py"``) or the
        superpopulation's (see :mod:`rectify.estimand`).
    overlap : {"separate", "inside"}
        Whether the pilot is a separate sample (default) or a sample from the frame whose
        predictions ``yhat_pop`` include the pilot's own rows: then the variance carries the
        finite-population correction ``1 - n/N``. The formula verbs detect it.
    frame_size : int, optional
        Number of frame rows N when ``yhat_pop`` is not given (``method="classical"``). With
        ``overlap="inside"`` it gives the finite-population correction ``1 - n/N``; with the default
        ``overlap="separate"`` and the frame estimand the variance grows to ``Var(y) (1/n + 1/N)`` (the
        frame's own deviation) -- pass ``overlap="inside"`` when the pilot was drawn from that frame.

    Returns
    -------
    Result

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> f_pop = rng.normal(3, 1, 5000); f = rng.normal(3, 1, 100)
    >>> y = f + 0.3 + rng.normal(0, 0.5, 100)
    >>> r = ppi_mean(y, f, f_pop)
    >>> r.method, r.n_pilot, r.n_population
    ('ppi++', 100, 5000)
    >>> bool(r.std_error[0] < ppi_mean(y, method="classical").std_error[0])
    True
    """
    lambda_bounds = _check_common(method, convention, level, lambda_mode, lambda_bounds)
    target = E.core_target(estimand, overlap, convention)
    Y, F, Fp, w, wp, n, N, raw = _prepare_mean_inputs(y, yhat, yhat_pop, method, weights, weights_pop,
                                                      moments=strata_pop is None and strata is None)
    frame_size = _frame_size(frame_size, N, method, target)
    d = (Y if Y is not None else Fp).shape[1]
    if F is not None and F.shape[1] != d:
        raise InputError(f"'yhat' has {F.shape[1]} columns but 'y' has {d}")
    diagnostics: dict[str, Any] = {}
    if strata_pop is not None or strata is not None:
        if method == "classical":
            raise InputError("stratified estimation needs 'strata_pop' and population predictions; "
                             "use method='ppi++' (or 'ppi'/'naive')")
        if strata_pop is None or (strata is None and method != "naive"):
            raise InputError("give both 'strata' (pilot) and 'strata_pop' (population) for stratified estimation")
        s = _strata_codes(strata, n, "strata") if method != "naive" else None
        sp = _strata_codes(strata_pop, N, "strata_pop")
        est, cov, df, lams = _stratified(partial(_mean_core, target=target), Y, F, Fp, w, wp, s, sp, method, lam,
                                         lambda_mode, lambda_bounds, convention, 1)
        tuning = {"lambda_by_stratum": lams} if lams else {}
        diagnostics["strata"] = len(lams) or len(set(sp.tolist()))
        meth = f"stratified {method}"
    else:
        est, cov, df, lam_vec = _mean_core(Y, F, Fp, w, wp, method, lam, lambda_mode, lambda_bounds, convention,
                                           target, frame_size, raw)
        tuning = {} if lam_vec is None else _lambda_tuning(lam_vec, lambda_mode, method)
        meth = method
    names = list(terms) if terms is not None else (["mean"] if d == 1 else [f"mean[{j}]" for j in range(d)])
    return Result(est, cov, names, meth, "mean", n, frame_size, level=level, df=df, tuning=tuning,
                  diagnostics=diagnostics, **_target_fields(target, frame_size, method))


# ----------------------------------------------------------------------------- quantiles
def _split_sum(a, b, _from_pilot):
    return a + b


def _rectified_cdf_parts(grid, y, f, fp, w, wp):
    Iy = (y[:, None] <= grid[None, :]) * w[:, None]
    If = (f[:, None] <= grid[None, :]) * w[:, None]
    Ip = (fp[:, None] <= grid[None, :]) * wp[:, None]
    return Iy, If, Ip


def _quantile_ci(level, *, grid, cdf, se, df, q, estimate):
    level = check_level(level)
    crit = special.ndtri(0.5 + level / 2) if df is None else special.stdtrit(df, 0.5 + level / 2)
    ok = np.abs(cdf - q) <= crit * np.maximum(se, 1e-16)
    if not ok.any():
        return np.array([estimate]), np.array([estimate])
    return np.array([grid[ok][0]]), np.array([grid[ok][-1]])


def ppi_quantile(y=None, yhat=None, yhat_pop=None, q: float = 0.5, method: str = "ppi++", *, weights=None,
                 weights_pop=None, lam=None, lambda_bounds=None, level: float = 0.95,
                 convention: str = "small-sample", grid_size: int = 5000, estimand: str | None = None,
                 overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Population quantile from the (power-tuned) rectified distribution function.

    The rectified CDF is ``F(t) = lam * F~_f(t) + F_y(t) - lam * F_f(t)``; the estimate is the grid
    point where it is closest to ``q`` and the interval inverts the test of ``F(t) = q`` over the grid
    (Angelopoulos et al., 2023), so it is not symmetric. Lambda is tuned at the estimate:
    ``Cov(1{y<=t}, 1{f<=t}) / (Var(1{f<=t}) + (n/N) Var(1{f~<=t}))``. Small-sample convention uses
    t critical values with n - 1 df; ``"ppi_py"`` uses normal values, ddof = 0 and lambda = 1.
    ``estimand``, ``overlap`` and ``frame_size`` as in :func:`ppi_mean`: the CDF's variance at each grid
    point follows :mod:`rectify.estimand` (indicator rows as the influence rows).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=200)
    >>> r = ppi_quantile(y, q=0.5, method="classical")
    >>> bool(abs(r.estimate[0] - np.median(y)) < 0.01)
    True
    """
    lambda_bounds = _check_common(method, convention, level, "overall", lambda_bounds)
    if not (0 < float(q) < 1):
        raise InputError(f"argument 'q' must lie strictly between 0 and 1, got {q!r}")
    target = E.core_target(estimand, overlap, convention)
    Y, F, Fp, w, wp, n, N, _ = _prepare_mean_inputs(y, yhat, yhat_pop, method, weights, weights_pop, ndim=1)
    frame_size = _frame_size(frame_size, N, method, target)
    part = None if convention == "ppi_py" else target
    wp = None if Fp is None else _weights_or_ones(wp, N)
    y1 = None if Y is None else Y[:, 0]
    f1 = None if F is None else F[:, 0]
    p1 = None if Fp is None else Fp[:, 0]
    pool = np.concatenate([a for a in (y1, f1, p1) if a is not None])
    grid = np.linspace(pool.min(), pool.max(), grid_size) if grid_size else np.sort(pool)
    ddof = 0 if convention == "ppi_py" else 1
    if method == "classical":
        Iy = (y1[:, None] <= grid) * w[:, None]
        cdf, var = Iy.mean(0), Iy.var(0, ddof=ddof) / n
        var = _split_sum(*E.variance_parts(var, 0 * var, var, n, frame_size, part))
        lam_val = None
    elif method == "naive":
        Ip = (p1[:, None] <= grid) * wp[:, None]
        cdf, var = Ip.mean(0), Ip.var(0, ddof=ddof) / N
        lam_val = None
    else:
        Iy, If, Ip = _rectified_cdf_parts(grid, y1, f1, p1, w, wp)
        if method == "ppi" or convention == "ppi_py" and lam is None:
            lam_val = 1.0
        elif lam is not None:
            lam_val = float(lam)
        else:
            c1 = Ip.mean(0) + (Iy - If).mean(0)
            k = int(np.argmin(np.abs(c1 - q)))
            var_p = np.array([Ip[:, k].var() if E.tunes_with_frame_variance(part) else 0.0])
            lam_val = float(_optimal_lambda(Iy[:, [k]], If[:, [k]], var_p, N, "overall", lambda_bounds))
        R = Iy - lam_val * If
        cdf = lam_val * Ip.mean(0) + R.mean(0)
        var = _split_sum(*E.variance_parts(R.var(0, ddof=ddof) / n, lam_val**2 * Ip.var(0, ddof=ddof) / N,
                                           lambda: Iy.var(0, ddof=ddof) / n, n, N, part))
    k = int(np.argmin(np.abs(cdf - q)))
    est = grid[k]
    df = None if convention == "ppi_py" else float(max(n - 1, 1) if method != "naive" else N - 1)
    fn = partial(_quantile_ci, grid=grid, cdf=cdf, se=np.sqrt(var), df=df, q=float(q), estimate=est)
    # a local density estimate turns the CDF's standard error into one for the quantile (reporting only)
    lo, hi = fn(level)
    se = (hi[0] - lo[0]) / (2 * special.ndtri(0.5 + level / 2))
    tuning = {} if lam_val is None else {"lambda": lam_val, "lambda_mode": "overall" if method == "ppi++" else "fixed"}
    return Result([est], [[se**2]], [f"quantile[{q:g}]"], method, "quantile", n, frame_size, level=level, df=None,
                  tuning=tuning, interval_fn=fn, **_target_fields(target, frame_size, method),
                  diagnostics={"std_error": "interval half-width / z; the interval inverts the CDF test"})
