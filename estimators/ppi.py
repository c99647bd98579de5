"""Prediction-powered inference: classical, naive, PPI and PPI++ for means, option shares,
quantiles, OLS, logistic and ordinal (cumulative-logit) regression.

The estimators
--------------
Write ``theta_y`` for the estimate from the pilot's human answers, ``theta_f`` for the same
estimator applied to the LLM's predictions on the pilot rows and ``theta_f~`` for it applied to the
predictions on the population frame. Then

* ``classical``: ``theta_y`` (the pilot alone);
* ``naive``: ``theta_f~`` (LLM answers taken as truth; its interval ignores the LLM's bias);
* ``ppi`` (Angelopoulos et al., 2023): ``theta_y - (theta_f - theta_f~)``;
* ``ppi++`` (Angelopoulos, Duchi & Zrnic, 2023): ``theta_y - lambda * (theta_f - theta_f~)`` with the
  lambda that minimises the estimated variance -- one lambda for all coordinates (``"overall"``) or
  one per coordinate (``"element"``). Lambda is *not* clipped to [0, 1]: a strongly informative
  predictor on a large frame can warrant lambda > 1, and ``lambda_bounds`` restores a clip.

For means and OLS this is exactly the PPI/PPI++ estimator of the papers. For logistic and ordinal
regression it is the asymptotically equivalent one-step ("difference") form, which needs three
ordinary fits instead of a lambda-dependent joint optimisation: that is what makes it fast at
N = 1e6. Its variance is the exact sandwich of the estimator actually computed,

    Var = Cov(psi_y - lambda psi_f) / n + lambda^2 Cov(psi_f~) / N,

where ``psi`` are per-row influence functions (inverse Hessian times score).

Intervals
---------
``convention="small-sample"`` (default): for OLS and logistic regression the pilot's influence rows
are divided by ``1 - h_ii`` (HC3: the classical OLS interval is statsmodels' HC3 interval); for
means, shares and ordinal models the pilot part is scaled by n / (n - p) (HC1). A lambda tuned on
the same pilot costs one more degree of freedom, and a tuned lambda that does not beat the pilot
alone after that cost falls back to 0. Intervals use Student's t with Welch-Satterthwaite degrees of
freedom combining the pilot (n - p [- 1]) and population (N - p) parts. This keeps 95% coverage at
pilots of n = 50 (see benchmarks/ppi_coverage.py).

``convention="ppi_py"``: normal (z) intervals with the variance conventions of the reference package
ppi_py 0.2.3, lambda clipped to [0, 1] and, for logistic regression, its joint-loss point estimate.
Use it to reproduce ppi_py's numbers (the test suite checks agreement to 1e-8).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np
from scipy import special

from rectify import estimand as E
from rectify.errors import InputError
from rectify.result import Result, check_level

from . import _validate as V
from .models import (ColumnDesign, Fit, NonFiniteData, _logistic_pass, _solve, block_gram, block_matvec, block_outer,
                     block_tvec,
                     fit_logistic, fit_ols, fit_ordinal, one_blas_thread, row_blocks)

__all__ = [
    "ppi_mean",
    "ppi_shares",
    "ppi_quantile",
    "ppi_ols",
    "ppi_logistic",
    "ppi_ordinal",
    "optimal_lambda",
]


# ----------------------------------------------------------------------------- shared machinery
def optimal_lambda(psi_y: np.ndarray, psi_f: np.ndarray, psi_pop: np.ndarray, mode: str = "overall",
                   bounds: tuple | None = None) -> np.ndarray | float:
    """Variance-minimising power-tuning parameter of PPI++.

    Minimises ``tr Var(psi_y - lam psi_f)/n + lam^2 tr Var(psi_pop)/N`` (``"overall"``), or each
    coordinate's variance separately (``"element"``)::

        lam* = tr Cov(psi_y, psi_f) / (tr Var(psi_f) + (n / N) tr Var(psi_pop))

    Parameters
    ----------
    psi_y, psi_f : ndarray, shape (n, d)
        Influence rows of the pilot estimator on human answers and on predictions.
    psi_pop : ndarray, shape (N, d)
        Influence rows of the estimator on the population's predictions.
    mode : {"overall", "element"}
    bounds : (low, high), optional
        Clip lambda to this range (``(0, 1)`` reproduces ppi_py).

    Returns
    -------
    float or ndarray of shape (d,)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=(100000, 1)); y = f + rng.normal(size=(100000, 1))
    >>> round(float(optimal_lambda(y - y.mean(), f - f.mean(), f - f.mean())), 2)
    0.5
    """
    cp = psi_pop - psi_pop.mean(axis=0)
    return _optimal_lambda(psi_y, psi_f, (cp * cp).sum(axis=0) / psi_pop.shape[0], psi_pop.shape[0], mode, bounds)


def _optimal_lambda(psi_y, psi_f, var_p, N, mode, bounds):
    """:func:`optimal_lambda` from the population part's variances only (no N-row arrays)."""
    n = psi_y.shape[0]
    cy = psi_y - psi_y.mean(axis=0)
    cf = psi_f - psi_f.mean(axis=0)
    cov = (cy * cf).sum(axis=0) / n
    var_f = (cf * cf).sum(axis=0) / n
    denom = var_f + (n / N) * var_p
    # predictions whose estimator has (numerically) no variance carry no information: lambda = 0
    var_y = (cy * cy).sum(axis=0) / n
    tiny = 1e-10 * (var_y + np.finfo(float).tiny)
    if mode == "overall":
        den = denom.sum()
        lam = cov.sum() / den if den > tiny.sum() else 0.0
    else:
        ok = denom > tiny
        lam = np.where(ok, cov / np.where(ok, denom, 1.0), 0.0)
    if bounds is not None:
        lam = np.clip(lam, bounds[0], bounds[1])
    return lam


def _satterthwaite(va: np.ndarray, vb: np.ndarray, dfa: float, dfb: float) -> np.ndarray:
    num = (va + vb) ** 2
    den = np.where(va > 0, va**2 / max(dfa, 1.0), 0.0) + np.where(vb > 0, vb**2 / max(dfb, 1.0), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)


def _combine(A: np.ndarray | None, MB: np.ndarray | None, n: int, N: int, p: int,
             convention: str, tuned: int = 0, leverage: np.ndarray | None = None,
             target: E.Target | None = None, psi_y: np.ndarray | None = None):
    """Covariance of ``mean(A) + mean(B)`` and Satterthwaite df, for the estimand and overlap of ``target``.

    ``target=None`` (or the superpopulation with a separate pilot): pilot and population independent.
    Otherwise :func:`rectify.estimand.variance_parts` applies (finite-population correction, and for
    the superpopulation with the pilot inside the frame the human answers' ``psi_y`` rows).

    ``A`` holds the pilot's influence rows and ``MB = B'B / N`` the population rows' second moment.
    Small-sample convention: the pilot rows are divided by ``1 - h_ii`` (HC3, where the model has a
    hat matrix) or the pilot part is scaled by ``n / (n - p)`` (HC1); a lambda estimated from the same
    pilot costs one more degree of freedom (PPI++ with a tuned lambda is a regression estimator: like
    a fitted slope, it makes the residual variance look smaller than it is). The population part is
    scaled by ``N / (N - p)``.
    """
    small = convention == "small-sample"
    ddof_a = p + tuned if small else 0
    ddof_b = p if small else 0
    d = (A if A is not None else MB).shape[1]
    if A is not None and n - ddof_a < 1:
        raise InputError(
            f"the pilot has {n} rows for {ddof_a} estimated parameters; collect more pilot answers or fix lambda"
        )
    if A is None:
        cov_a = np.zeros((d, d))
    elif small and leverage is not None:
        Ah = A / (1.0 - leverage)[:, None]
        cov_a = Ah.T @ Ah / (n * (n - tuned))
    else:
        cov_a = A.T @ A / (n * (n - ddof_a))
    cov_b = np.zeros((d, d)) if MB is None else MB / (N - ddof_b)
    if convention == "ppi_py":
        return cov_a + cov_b, None
    df_b = N - ddof_b
    if A is not None and target is not None:
        def cov_y():
            return _combine(psi_y, None, n, N, p, convention, leverage=leverage)[0]
        cov_a, cov_b, from_pilot = E.variance_parts(cov_a, cov_b, cov_y, n, N, target)
        df_b = n - p if from_pilot else df_b
    cov = cov_a + cov_b
    df = _satterthwaite(np.diag(cov_a), np.diag(cov_b), n - ddof_a, df_b)
    return cov, df


def _usable_leverage(fit):
    """HC3 needs leverages below one; with a near-saturated design fall back to HC1."""
    if fit is None or fit.leverage is None or np.max(fit.leverage) >= 0.99:
        return None
    return fit.leverage


def _lambda(method: str, lam: Any, psi_y, psi_f, var_pop, N, mode, bounds, d, target=None) -> np.ndarray:
    if method == "ppi":
        return np.ones(d)
    if lam is not None:
        arr = np.broadcast_to(np.asarray(lam, dtype=float), (d,)).copy()
        if not np.all(np.isfinite(arr)):
            raise InputError("argument 'lam' must be finite")
        return arr
    if not E.tunes_with_frame_variance(target):
        var_pop = np.zeros_like(var_pop)  # mean_U(b) carries no variance of its own (see rectify.estimand)
    out = _optimal_lambda(psi_y, psi_f, var_pop, N, mode, bounds)
    return np.broadcast_to(np.asarray(out, float), (d,)).copy()


def _lambda_tuning(lam_vec: np.ndarray, mode: str, method: str) -> dict:
    if method not in ("ppi", "ppi++"):
        return {}
    if method == "ppi++" and mode == "element":
        return {"lambda": lam_vec.copy(), "lambda_mode": "element"}
    return {"lambda": float(lam_vec[0]), "lambda_mode": "overall" if method == "ppi++" else "fixed"}


def _check_common(method, convention, level, lambda_mode, lambda_bounds):
    V.check_method(method)
    V.check_convention(convention)
    check_level(level)
    V.check_lambda_mode(lambda_mode)
    if lambda_bounds is None and convention == "ppi_py":
        lambda_bounds = (0.0, 1.0)
    if lambda_bounds is not None:
        lo, hi = lambda_bounds
        if not lo <= hi:
            raise InputError(f"argument 'lambda_bounds' must be (low, high) with low <= high, got {lambda_bounds!r}")
    return lambda_bounds


def _difference_estimator(fit_y: Fit | None, fit_f: Fit | None, fit_pop: Fit | None, method, lam,
                          lambda_mode, lambda_bounds, n, N, p, convention, target=None, frame_size=None):
    """theta_y - lam (theta_f - theta_f~) with its covariance, df and lambda (``target``: see :func:`_combine`)."""
    d = (fit_y or fit_pop).theta.shape[0]
    lev = _usable_leverage(fit_y)
    comb = partial(_combine, target=target, psi_y=None if fit_y is None else fit_y.psi)
    if method == "classical":
        cov, df = comb(fit_y.psi, None, n, frame_size or N, p, convention, leverage=lev)
        return fit_y.theta, cov, df, None
    M = fit_pop.second_moment()
    if method == "naive":
        cov, df = _combine(None, M, n, N, p, convention)
        return fit_pop.theta, cov, df, None
    lam_vec = _lambda(method, lam, fit_y.psi, fit_f.psi, np.diag(M), N, lambda_mode, lambda_bounds, d, target)
    tuned = 1 if (method == "ppi++" and lam is None) else 0
    est = fit_y.theta - lam_vec * (fit_f.theta - fit_pop.theta)
    A = fit_y.psi - lam_vec * fit_f.psi
    cov, df = comb(A, M * np.outer(lam_vec, lam_vec), n, N, p, convention, tuned=tuned, leverage=lev)
    if tuned and convention == "small-sample":
        # a tuned lambda that does not beat the pilot alone (after paying its degree of freedom) falls
        # back to lambda = 0: PPI++ is then the classical estimate, never a wider interval
        cov0, df0 = comb(fit_y.psi, None, n, N, p, convention, leverage=lev)
        worse = np.diag(cov) >= np.diag(cov0) if lambda_mode == "element" else \
            np.full(d, np.trace(cov) >= np.trace(cov0))
        if worse.any():
            lam_vec = np.where(worse, 0.0, lam_vec)
            est = fit_y.theta - lam_vec * (fit_f.theta - fit_pop.theta)
            A = fit_y.psi - lam_vec * fit_f.psi
            tuned = 0 if worse.all() else 1
            cov, df = comb(A, M * np.outer(lam_vec, lam_vec), n, N, p, convention, tuned=tuned, leverage=lev)
    return est, cov, df, lam_vec


def _frame_size(frame_size, N, method, target):
    """N for the finite-population correction: the frame rows read, else ``frame_size`` (classical)."""
    if N:
        return N
    if frame_size is None:
        return 0
    if isinstance(frame_size, bool) or not isinstance(frame_size, (int, np.integer)) or frame_size < 1:
        raise InputError(f"argument 'frame_size' must be a positive integer (the number of frame rows), got "
                         f"{frame_size!r}")
    return int(frame_size)


def _target_fields(target: E.Target, N: int, method: str) -> dict:
    """Result fields that state the estimand and where the pilot stands (None: no frame known)."""
    known = bool(N) and method != "naive"
    return {"target": target.estimand, "pilot_in_frame": target.inside if known else None}


# ----------------------------------------------------------------------------- means and shares
def _mean_fit(Z: np.ndarray, w: np.ndarray | None, keep_psi: bool = True) -> Fit:
    if not keep_psi:
        return _mean_population(Z, w)
    theta = (w[:, None] * Z).mean(axis=0)
    psi = w[:, None] * (Z - theta)
    return Fit(theta, psi, np.eye(Z.shape[1]))


def _mean_population(Z: np.ndarray, w: np.ndarray | None) -> Fit:
    """Mean and ``psi' psi / N`` of the population rows in blocked passes (``w=None``: unweighted)."""
    N, d = Z.shape
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


def _ppi_py_mean_lambda(Y, F, Fp, w, wp, pop_mean):
    """ppi_py 0.2.3's lambda for the mean: gradients at the lambda = 1 estimate, clipped to [0, 1]."""
    theta1 = pop_mean + (w[:, None] * (Y - F)).mean(0)
    g = w[:, None] * (Y - theta1)
    gh = w[:, None] * (F - theta1)
    n, N = len(Y), len(Fp)
    gc, hc = g - g.mean(0), gh - gh.mean(0)
    cov = (gc.T @ hc + hc.T @ gc) / n
    # np.cov of the stacked pilot and population gradients, the population part as sums
    s1, s2 = _pop_mean_sums(Fp, wp, theta1)
    mean = (gh.sum(0) + s1) / (n + N)
    var = (gh.T @ gh + s2 - (n + N) * np.outer(mean, mean)) / (n + N - 1)
    return float(np.clip(np.trace(cov) / (2 * (1 + n / N) * np.trace(var)), 0, 1))


def _mean_core(Y, F, Fp, w, wp, method, lam, lambda_mode, lambda_bounds, convention, target=None,
               frame_size=None):
    n = 0 if Y is None else Y.shape[0]
    N = 0 if Fp is None else Fp.shape[0]
    d = Y.shape[1] if method != "naive" else Fp.shape[1]
    fit_y = _mean_fit(Y, w) if method != "naive" else None
    fit_f = _mean_fit(F, w) if method in ("ppi", "ppi++") else None
    fit_pop = _mean_fit(Fp, wp, keep_psi=False) if method != "classical" else None
    if convention == "ppi_py" and method in ("ppi", "ppi++"):
        # the population enters through the mean and centred second moment of wp * Fp
        pop_mean = fit_pop.theta
        if method == "ppi":
            lam_vec = np.ones(d)
        elif lam is not None:
            lam_vec = np.broadcast_to(np.asarray(lam, float), (d,)).copy()
        else:
            lam_vec = np.full(d, _ppi_py_mean_lambda(Y, F, Fp, w, wp, pop_mean))
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
                                 n, N, 1, convention, target, frame_size)


def _float_array(x, name: str, ndim) -> np.ndarray:
    """``V.as_float_array`` with a cheap test first: a sum is finite only when every value is finite."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        arr = None
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr is not None and arr.ndim in dims and np.isfinite(arr.sum()):
        return arr
    return V.as_float_array(x, name, ndim)


def _prepare_mean_inputs(y, yhat, yhat_pop, method, weights, weights_pop, ndim=(1, 2)):
    """Validated answers and predictions; ``wp`` is None for an unweighted population."""
    Y = _float_array(y, "y", ndim) if method != "naive" else None
    F = _float_array(yhat, "yhat", ndim) if method in ("ppi", "ppi++") else None
    Fp = _float_array(yhat_pop, "yhat_pop", ndim) if method != "classical" else None
    if Y is not None:
        V.check_nonempty(Y, "y", "pilot")
    if F is not None:
        V.check_same_length(Y.shape[0], F, "yhat", "y")
    if Fp is not None:
        V.check_nonempty(Fp, "yhat_pop", "population")
    n = 0 if Y is None else Y.shape[0]
    N = 0 if Fp is None else Fp.shape[0]
    w = V.normalise_weights(weights, n, "weights") if Y is not None else None
    wp = V.normalise_weights(weights_pop, N, "weights_pop") if (Fp is not None and weights_pop is not None) else None
    def two(a):
        return None if a is None else (a[:, None] if a.ndim == 1 else a)
    Y, F, Fp = two(Y), two(F), two(Fp)
    if Y is not None and Fp is not None and Y.shape[1] != Fp.shape[1]:
        raise InputError(f"'y' has {Y.shape[1]} columns but 'yhat_pop' has {Fp.shape[1]}")
    if Y is not None and n < 2:
        raise InputError("argument 'y' must have at least 2 pilot rows to estimate a variance; collect more pilot "
                         "answers (or merge a small group with a neighbouring one)")
    return Y, F, Fp, w, wp, n, N


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
        Number of frame rows N when ``yhat_pop`` is not given (``method="classical"``), for the
        finite-population correction.

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
    Y, F, Fp, w, wp, n, N = _prepare_mean_inputs(y, yhat, yhat_pop, method, weights, weights_pop)
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
                                           target, frame_size)
        tuning = {} if lam_vec is None else _lambda_tuning(lam_vec, lambda_mode, method)
        meth = method
    names = list(terms) if terms is not None else (["mean"] if d == 1 else [f"mean[{j}]" for j in range(d)])
    return Result(est, cov, names, meth, "mean", n, frame_size, level=level, df=df, tuning=tuning,
                  diagnostics=diagnostics, **_target_fields(target, frame_size, method))


def _one_hot(labels, categories, name) -> np.ndarray:
    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        raise InputError(f"argument '{name}' must be 1-D answer labels or an (n, K) probability matrix")
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
        raise InputError(f"argument '{name}' has missing answers; remove them (or model them as a category) first")
    index = {c: k for k, c in enumerate(categories)}
    codes = np.empty(len(arr), dtype=int)
    for i, v in enumerate(arr):
        k = index.get(v)
        if k is None and isinstance(v, (float, np.floating)) and float(v).is_integer():
            k = index.get(int(v))
        if k is None:
            raise InputError(
                f"argument '{name}' has answer {v!r}, which is not one of the item's options "
                f"{list(categories)}; fix the coding or add the option"
            )
        codes[i] = k
    return np.eye(len(categories))[codes]


def _as_shares_matrix(a, categories, name):
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.ndim == 2:
        P = V.as_float_array(arr, name, 2)
        if P.shape[1] != len(categories):
            raise InputError(f"argument '{name}' has {P.shape[1]} columns for {len(categories)} options")
        if (P < -1e-12).any():
            raise InputError(f"argument '{name}' has negative probabilities; check the LLM's probability columns "
                             "(give one non-negative distribution per row)")
        rs = P.sum(axis=1)
        if np.any(np.abs(rs - 1) > 1e-6):
            raise InputError(
                f"rows of '{name}' must sum to one (found sums from {rs.min():.3g} to {rs.max():.3g}); "
                f"renormalise the LLM's answer distribution explicitly and report the mass it put outside the options"
            )
        return P
    return _one_hot(arr, categories, name)


def ppi_shares(y=None, yhat=None, yhat_pop=None, method: str = "ppi++", *, categories=None, weights=None,
               weights_pop=None, lam=None, lambda_bounds=None, strata=None, strata_pop=None,
               level: float = 0.95, convention: str = "small-sample", estimand: str | None = None,
               overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Population option shares of a categorical (e.g. Likert) item, with their joint covariance.

    Human answers ``y`` are labels; LLM predictions may be labels or an (n, K) matrix of answer
    probabilities over ``categories`` (rows summing to one). One lambda is shared by all options so the
    shares sum to one exactly. Intervals are built on the log-odds scale from the same standard errors
    (as R's ``svyciprop(method="xlogit")``): Wald intervals for small shares under-cover at small pilots.

    Parameters
    ----------
    y, yhat, yhat_pop : array-like
        Pilot answers, pilot predictions, population predictions (see :func:`ppi_mean`).
    categories : sequence
        The item's options in order. Default: sorted labels seen in ``y`` and ``yhat_pop``.
    Other parameters as in :func:`ppi_mean`.

    Returns
    -------
    Result
        One term per option, ``share[option]``; ``cov`` is the K x K joint covariance.

    Examples
    --------
    >>> y = np.array([1, 2, 2, 3, 3, 3, 4, 4, 2, 3])
    >>> r = ppi_shares(y, method="classical", categories=[1, 2, 3, 4])
    >>> r.estimate.tolist()
    [0.1, 0.3, 0.4, 0.2]
    >>> float(r.estimate.sum())
    1.0
    """
    if method not in ("classical", "naive", "ppi", "ppi++"):
        V.check_method(method)
    if categories is None:
        seen = []
        for a in (y, yhat_pop):
            if a is not None and np.asarray(a).ndim == 1:
                seen.extend(np.asarray(a, dtype=object).tolist())
        try:
            categories = sorted(set(seen))
        except TypeError:
            raise InputError("pass 'categories' (the item's options in order): the labels are not sortable") from None
        if not categories:
            raise InputError("pass 'categories': they cannot be inferred from probability matrices")
    categories = list(categories)
    if len(categories) < 2:
        raise InputError("argument 'categories' must list at least two options")
    Y = _as_shares_matrix(y, categories, "y") if method != "naive" else None
    F = _as_shares_matrix(yhat, categories, "yhat") if method in ("ppi", "ppi++") else None
    Fp = _as_shares_matrix(yhat_pop, categories, "yhat_pop") if method != "classical" else None
    if method in ("ppi", "ppi++") and F is None:
        raise InputError("argument 'yhat' is required for PPI")
    r = ppi_mean(Y, F, Fp, method, weights=weights, weights_pop=weights_pop, lam=lam, lambda_mode="overall",
                 lambda_bounds=lambda_bounds, strata=strata, strata_pop=strata_pop, level=level,
                 convention=convention, terms=[f"share[{c}]" for c in categories], estimand=estimand,
                 overlap=overlap, frame_size=frame_size)
    from dataclasses import replace
    fn = partial(_logit_share_interval, estimate=r.estimate, se=r.std_error, df=r.df)
    return replace(r, estimand="shares", bounds=(0.0, 1.0), interval_fn=fn,
                   diagnostics={**r.diagnostics, "categories": categories,
                                "interval": "logit-scale (Wald on the log-odds, back-transformed)"})


def _logit_share_interval(level, *, estimate, se, df):
    """Intervals for shares built on the log-odds scale (as R's ``svyciprop(method="xlogit")``).

    A Wald interval for a share near 0 or 1 under-covers at small pilots; on the logit scale the
    interval is asymmetric and stays inside (0, 1). A share estimated at or beyond 0 or 1 (possible for
    PPI) keeps the Wald interval, clipped to [0, 1].
    """
    level = check_level(level)
    q = 0.5 + level / 2
    crit = special.ndtri(q) if df is None else np.where(
        np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), q), special.ndtri(q))
    p = np.asarray(estimate, float)
    inside = (p > 0) & (p < 1) & (se > 0)
    pc = np.where(inside, p, 0.5)
    eta = np.log(pc / (1 - pc))
    se_eta = se / (pc * (1 - pc))
    lo_l = 1 / (1 + np.exp(-(eta - crit * se_eta)))
    hi_l = 1 / (1 + np.exp(-(eta + crit * se_eta)))
    lo = np.where(inside, lo_l, p - crit * se)
    hi = np.where(inside, hi_l, p + crit * se)
    return np.clip(lo, 0, 1), np.clip(hi, 0, 1)


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
    Y, F, Fp, w, wp, n, N = _prepare_mean_inputs(y, yhat, yhat_pop, method, weights, weights_pop, ndim=1)
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


# ----------------------------------------------------------------------------- regressions
def _prepare_regression(X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, terms, label_dim=1):
    need_pilot = method != "naive"
    need_pop = method != "classical"
    Xa = V.as_float_array(X, "X", 2) if need_pilot else None
    # a ColumnDesign (from the formula verbs' fast path) is checked for NaN/inf by the population pass
    Xp = (X_pop if isinstance(X_pop, ColumnDesign) else _float_array(X_pop, "X_pop", 2)) if need_pop else None
    p = (Xa if Xa is not None else Xp).shape[1]
    if Xa is not None and Xp is not None and Xp.shape[1] != p:
        raise InputError(f"'X' has {p} columns but 'X_pop' has {Xp.shape[1]}; build both from the same formula")
    terms = list(terms) if terms is not None else [f"x{j}" for j in range(p)]
    if len(terms) != p:
        raise InputError(f"{len(terms)} term names for {p} columns")
    Y = F = Fp = None
    if need_pilot:
        V.check_nonempty(Xa, "X", "pilot")
        Y = V.as_float_array(y, "y", label_dim)
        V.check_same_length(Xa.shape[0], Y, "y", "X")
        V.check_design(Xa, "X", terms)
        if method in ("ppi", "ppi++"):
            F = V.as_float_array(yhat, "yhat", label_dim)
            V.check_same_length(Xa.shape[0], F, "yhat", "X")
    if need_pop:
        V.check_nonempty(Xp, "X_pop", "population")
        Fp = _float_array(yhat_pop, "yhat_pop", label_dim)
        V.check_same_length(Xp.shape[0], Fp, "yhat_pop", "X_pop")
        if method == "naive":
            V.check_design(np.asarray(Xp), "X_pop", terms)
    n = 0 if Xa is None else Xa.shape[0]
    N = 0 if Xp is None else Xp.shape[0]
    w = V.normalise_weights(weights, n, "weights") if need_pilot else None
    # unweighted population: None, so that the population passes skip the multiplies by ones
    wp = V.normalise_weights(weights_pop, N, "weights_pop") if (need_pop and weights_pop is not None) else None
    return Xa, Y, F, Xp, Fp, w, wp, n, N, p, terms


def _fit_in(fitter, X, z, w, where):
    from rectify.errors import ConvergenceError, EstimationError
    try:
        return fitter(X, z, w)
    except (EstimationError, ConvergenceError) as err:
        hint = ""
        if "prediction" in where:
            hint = " (hard predicted answers often miss categories: pass the LLM's answer probabilities instead)"
        raise type(err)(f"fitting {where}: {err}{hint}") from None


def _pop_fit(fitter, Xp, Fp, wp):
    try:
        return _fit_in(fitter, Xp, Fp, wp, "the LLM's predictions for the population")
    except NonFiniteData:
        if isinstance(Xp, ColumnDesign):
            raise  # the formula verbs re-run their checked path, which names the column
        V.as_float_array(Xp, "X_pop", 2)
        raise InputError("the population design or predictions overflow to infinity in the sums; rescale the "
                         "covariates (e.g. thousands instead of units)") from None


def _regression(fitter, X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, lam, lambda_mode,
                lambda_bounds, level, convention, terms, kind, label_dim=1, check_labels=None,
                ppi_py_fn=None, extra_terms=None, estimand=None, overlap="separate", frame_size=None):
    lambda_bounds = _check_common(method, convention, level, lambda_mode, lambda_bounds)
    target = E.core_target(estimand, overlap, convention)
    Xa, Y, F, Xp, Fp, w, wp, n, N, p, terms = _prepare_regression(
        X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, terms, label_dim)
    frame_size = _frame_size(frame_size, N, method, target)
    if check_labels is not None:
        Y, F, Fp = check_labels(Y, F, Fp)
    n_par = p + (0 if extra_terms is None else len(extra_terms(Y if Y is not None else Fp)))
    if convention == "ppi_py" and ppi_py_fn is not None and method in ("ppi", "ppi++"):
        est, cov, lam_vec = ppi_py_fn(Xa, Y, F, Xp, Fp, w, wp, method, lam)
        df = None
        diag = {}
    else:
        fit_y = _fit_in(fitter, Xa, Y, w, "the pilot's human answers") if method != "naive" else None
        fit_f = _fit_in(fitter, Xa, F, w, "the LLM's predictions for the pilot") if method in ("ppi", "ppi++") else None
        pop_fitter = partial(fitter, keep_psi=False)
        if fit_f is not None and getattr(fitter, "func", fitter) in (fit_logistic, fit_ordinal):
            # Newton from the pilot-prediction fit: fewer passes over the frame, the same optimum
            pop_fitter = partial(pop_fitter, start=fit_f.theta)
        fit_pop = _pop_fit(pop_fitter, Xp, Fp, wp) if method != "classical" else None
        est, cov, df, lam_vec = _difference_estimator(fit_y, fit_f, fit_pop, method, lam, lambda_mode,
                                                      lambda_bounds, n, N, n_par, convention, target, frame_size)
        diag = {"iterations": {k: f.iterations for k, f in (("pilot", fit_y), ("pilot_pred", fit_f),
                                                             ("population", fit_pop)) if f is not None}}
    names = terms + ([] if extra_terms is None else extra_terms(Y if Y is not None else Fp))
    tuning = {} if lam_vec is None else _lambda_tuning(lam_vec, lambda_mode, method)
    return Result(est, cov, names, method, kind, n, frame_size, level=level, df=df, tuning=tuning, diagnostics=diag,
                  **_target_fields(target, frame_size, method))


class _PopScores:
    """Population sums of ppi_py's gradient rows ``x w (m(x'theta) - f)``: their sum, raw second moment
    and count, plus the population part of the Hessian. Replaces the (N, p) arrays ppi_py builds."""

    def __init__(self, su, Suu, N, Hp):
        self.su, self.Suu, self.N, self.Hp = su, Suu, N, Hp

    def cov(self, scale: float = 1.0) -> np.ndarray:
        """``np.cov`` of the rows (ddof = 1), times ``scale**2``."""
        m = self.su / self.N
        return scale**2 * (self.Suu - self.N * np.outer(m, m)) / (self.N - 1)


def _pop_scores(theta, Xp, Fp, wp, kind, G=None) -> _PopScores:
    """One blocked pass over the population at ``theta`` (``G``: the OLS population Hessian sum)."""
    N, p = Xp.shape
    with one_blas_thread():
        if kind == "logistic":
            su, Hp, Suu, _ = _logistic_pass(Xp, Fp, wp, theta, meat=True)
            return _PopScores(su, Suu, N, Hp)
        su, Suu = np.zeros(p), np.zeros((p, p))
        for i, j, Xb in row_blocks(Xp):
            r = block_matvec(Xb, theta) - Fp[i:j]
            if wp is not None:
                r *= wp[i:j]
            su += block_tvec(Xb, r)
            Suu += block_outer(Xb, r)
    return _PopScores(su, Suu, N, G)


def _ppi_py_glm_stats(theta, X, Y, F, Xp, Fp, w, wp, kind, use_unlabeled=True, G=None):
    """Gradients and pooled inverse Hessian as ppi_py 0.2.3 computes them (the population as sums)."""
    n, N = X.shape[0], Xp.shape[0]
    if kind == "ols":
        m = X @ theta
        h = np.ones(n)
    else:
        m = 1 / (1 + np.exp(-(X @ theta)))
        h = m * (1 - m)
    pop = _pop_scores(theta, Xp, Fp, wp, kind, G)
    Hl = (X * (w * h)[:, None]).T @ X
    # ppi_py drops the population from the Hessian when lambda == 0
    H = (pop.Hp + Hl) / (N + n) if use_unlabeled else Hl / n
    g = X * (w * (m - Y))[:, None]
    gh = X * (w * (m - F))[:, None]
    return g, gh, pop, np.linalg.inv(H)


def _ppi_py_lambda(g, gh, pop: _PopScores, Hinv):
    n, N = g.shape[0], pop.N
    gc, hc = g - g.mean(0), gh - gh.mean(0)
    cov = (gc.T @ hc + hc.T @ gc) / n
    # np.cov of the stacked pilot and population rows, from the population's sums
    mean = (gh.sum(0) + pop.su) / (n + N)
    var = (gh.T @ gh + pop.Suu - (n + N) * np.outer(mean, mean)) / (n + N - 1)
    num = np.trace(Hinv @ cov @ Hinv)
    den = 2 * (1 + n / N) * np.trace(Hinv @ var @ Hinv)
    return float(np.clip(num / den, 0, 1))


def _ppi_py_cov(g, gh, pop: _PopScores, Hinv, lam):
    n, N = g.shape[0], pop.N
    var_u = pop.cov(lam)
    var = np.atleast_2d(np.cov((g - lam * gh).T))
    return Hinv @ (n / N * var_u + var) @ Hinv / n


def _ppi_py_ols(X, Y, F, Xp, Fp, w, wp, method, lam):
    N = Xp.shape[0]
    with one_blas_thread():  # the population fit is linear in lambda: one gram, then any lambda
        G, b = np.zeros((X.shape[1],) * 2), np.zeros(X.shape[1])
        for i, j, Xb in row_blocks(Xp):
            G += block_gram(Xb, None if wp is None else wp[i:j])
            b += block_tvec(Xb, Fp[i:j] if wp is None else wp[i:j] * Fp[i:j])
    theta_pop = _solve(G / N, b / N, "least-squares")

    def point(lv):
        return lv * theta_pop + fit_ols(X, Y - lv * F, w).theta
    lv = 1.0 if method == "ppi" else lam
    if lv is None:
        # ppi_py's ppi_ols_ci tunes twice: lambda at the lambda = 1 fit, then again at that tuned fit
        for _ in range(2):
            g, gh, pop, Hinv = _ppi_py_glm_stats(point(1.0 if lv is None else lv), X, Y, F, Xp, Fp, w, wp, "ols",
                                                 G=G)
            lv = _ppi_py_lambda(g, gh, pop, Hinv)
    est = point(lv)
    g, gh, pop, Hinv = _ppi_py_glm_stats(est, X, Y, F, Xp, Fp, w, wp, "ols", use_unlabeled=lv != 0, G=G)
    return est, _ppi_py_cov(g, gh, pop, Hinv, lv), np.full(X.shape[1], lv)


def _joint_logistic(X, Y, F, Xp, Fp, w, wp, lv, start):
    """Minimiser of ppi_py's joint PPI loss for logistic regression (Newton's method)."""
    from scipy.special import expit
    n, N = X.shape[0], Xp.shape[0]
    theta = start.copy()
    for _ in range(100):
        mu = expit(X @ theta)
        grad = X.T @ (w * (mu - Y)) / n - lv / n * X.T @ (w * (mu - F))
        H = (1 - lv) / n * (X * (w * mu * (1 - mu))[:, None]).T @ X
        if lv != 0:  # one blocked pass over the population for its gradient and Hessian
            with one_blas_thread():
                gp, Hp, _, _ = _logistic_pass(Xp, Fp, wp, theta)
            grad = lv / N * gp + grad
            H = lv / N * Hp + H
        step = np.linalg.solve(H, grad)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-13:
            break
    return theta


def _ppi_py_logistic(X, Y, F, Xp, Fp, w, wp, method, lam):
    start = fit_logistic(X, Y, w).theta
    lv = 1.0 if method == "ppi" else lam
    if lv is None:
        # as ppi_py's ppi_logistic_ci: tune at the lambda = 1 fit, refit, tune again at the refit
        for _ in range(2):
            # each refit starts where the last one ended: the same minimiser in fewer population passes
            start = _joint_logistic(X, Y, F, Xp, Fp, w, wp, 1.0 if lv is None else lv, start)
            g, gh, pop, Hinv = _ppi_py_glm_stats(start, X, Y, F, Xp, Fp, w, wp, "logistic")
            lv = _ppi_py_lambda(g, gh, pop, Hinv)
    est = _joint_logistic(X, Y, F, Xp, Fp, w, wp, lv, start)
    g, gh, pop, Hinv = _ppi_py_glm_stats(est, X, Y, F, Xp, Fp, w, wp, "logistic", use_unlabeled=lv != 0)
    return est, _ppi_py_cov(g, gh, pop, Hinv, lv), np.full(X.shape[1], lv)


def ppi_ols(X=None, y=None, yhat=None, X_pop=None, yhat_pop=None, method: str = "ppi++", *, weights=None,
            weights_pop=None, lam=None, lambda_mode: str = "overall", lambda_bounds=None, level: float = 0.95,
            convention: str = "small-sample", terms=None, estimand: str | None = None, overlap: str = "separate",
            frame_size: int | None = None) -> Result:
    """Linear-regression coefficients of the human answer on covariates, corrected with LLM predictions.

    ``theta = b_y - lam (b_f - b_f~)`` where ``b`` are (weighted) least-squares fits of the human answers
    and of the predictions on the pilot and of the predictions on the population. The covariance is
    the HC1-type sandwich of that estimator; intervals use Student's t (see the module notes).

    Parameters
    ----------
    X : array-like, shape (n, p)
        Pilot design matrix (include the intercept column yourself, or use :func:`rectify.ols`).
    y, yhat : array-like, shape (n,)
    X_pop : array-like, shape (N, p)
    yhat_pop : array-like, shape (N,)
    method, weights, weights_pop, lam, lambda_mode, lambda_bounds, level, convention
        As in :func:`ppi_mean`.
    terms : list of str, optional
        Coefficient names.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Xp = np.column_stack([np.ones(2000), rng.normal(size=2000)])
    >>> X = Xp[:100]; y = X @ [1.0, 2.0] + rng.normal(size=100)
    >>> f = X @ [0.8, 1.5] + 0.1 * rng.normal(size=100); fp = Xp @ [0.8, 1.5]
    >>> r = ppi_ols(X, y, f, Xp, fp, terms=["Intercept", "x"])
    >>> bool(abs(r.estimate[1] - 2.0) < 0.2)
    True
    """
    return _regression(fit_ols, X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, lam, lambda_mode,
                       lambda_bounds, level, convention, terms, "ols", ppi_py_fn=_ppi_py_ols, estimand=estimand,
                       overlap=overlap, frame_size=frame_size)


def _check_binary(Y, F, Fp):
    if Y is not None and not np.all((Y == 0) | (Y == 1)):
        bad = np.unique(Y[(Y != 0) & (Y != 1)])[:5]
        raise InputError(
            f"logistic regression needs a binary outcome coded 0/1; 'y' contains {bad.tolist()}. "
            f"Recode it (e.g. agree = 1) or use ordinal()"
        )
    for a, nm in ((F, "yhat"), (Fp, "yhat_pop")):
        if a is not None and ((a < 0) | (a > 1)).any():
            raise InputError(f"'{nm}' must be probabilities or 0/1 predictions in [0, 1]")
    return Y, F, Fp


def ppi_logistic(X=None, y=None, yhat=None, X_pop=None, yhat_pop=None, method: str = "ppi++", *, weights=None,
                 weights_pop=None, lam=None, lambda_mode: str = "overall", lambda_bounds=None,
                 level: float = 0.95, convention: str = "small-sample", terms=None, ridge: float = 0.0,
                 estimand: str | None = None, overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Logistic-regression coefficients of a binary human answer, corrected with LLM predictions.

    Predictions may be probabilities (soft labels). Default estimator: the one-step PPI++ form
    ``b_y - lam (b_f - b_f~)`` of three Newton fits (see module notes); ``convention="ppi_py"``
    computes ppi_py's joint-loss estimate instead. ``ridge`` (default 0: maximum likelihood) adds an
    L2 penalty ``ridge / 2 * ||beta||^2`` (intercept excluded) to each fit; the estimand is then the
    penalised one.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Xp = np.column_stack([np.ones(3000), rng.normal(size=3000)])
    >>> pp = 1 / (1 + np.exp(-(Xp @ [-0.5, 1.0])))
    >>> yp = (rng.uniform(size=3000) < pp).astype(float)
    >>> r = ppi_logistic(Xp[:200], yp[:200], pp[:200], Xp, pp, terms=["Intercept", "x"])
    >>> r.terms
    ('Intercept', 'x')
    """
    if ridge < 0 or not np.isfinite(ridge):
        raise InputError(f"argument 'ridge' must be a finite number >= 0, got {ridge!r}")
    if ridge and convention == "ppi_py":
        raise InputError("argument 'ridge' is not available under convention='ppi_py'")
    fitter = fit_logistic if not ridge else partial(fit_logistic, ridge=ridge)
    return _regression(fitter, X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, lam,
                       lambda_mode, lambda_bounds, level, convention, terms, "logistic",
                       check_labels=_check_binary, ppi_py_fn=_ppi_py_logistic, estimand=estimand, overlap=overlap,
                       frame_size=frame_size)


def ppi_ordinal(X=None, y=None, yhat=None, X_pop=None, yhat_pop=None, method: str = "ppi++", *,
                categories=None, weights=None, weights_pop=None, lam=None, lambda_mode: str = "overall",
                lambda_bounds=None, level: float = 0.95, convention: str = "small-sample", terms=None,
                estimand: str | None = None, overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Cumulative-logit (proportional-odds) coefficients and thresholds, corrected with LLM predictions.

    ``P(y <= k | x) = logistic(tau_k - x'beta)``. ``X`` has no intercept. Human answers ``y`` are
    labels among ``categories``; predictions are labels or (n, K) answer distributions, which enter as
    soft labels (expected log-likelihood). Classical fits equal statsmodels' ``OrderedModel``.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> Xp = rng.normal(size=(2000, 1))
    >>> yp = np.digitize(Xp[:, 0] + rng.logistic(size=2000), [-1, 0, 1]) + 1
    >>> r = ppi_ordinal(Xp[:300], yp[:300], method="classical", categories=[1, 2, 3, 4], terms=["x"])
    >>> r.terms
    ('x', 'threshold[1|2]', 'threshold[2|3]', 'threshold[3|4]')
    """
    ref = y if y is not None else yhat_pop
    if categories is None:
        if ref is None or np.asarray(ref).ndim != 1:
            raise InputError("pass 'categories' (the item's options in order)")
        categories = sorted(set(np.asarray(ref).tolist()))
    categories = list(categories)
    if len(categories) < 2:
        raise InputError("argument 'categories' must list at least two options")
    Y = _as_shares_matrix(y, categories, "y") if (y is not None and method != "naive") else None
    F = _as_shares_matrix(yhat, categories, "yhat") if (yhat is not None and method in ("ppi", "ppi++")) else None
    Fp = _as_shares_matrix(yhat_pop, categories, "yhat_pop") if (yhat_pop is not None and method != "classical") else None
    thr = [f"threshold[{a}|{b}]" for a, b in zip(categories[:-1], categories[1:])]
    return _regression(fit_ordinal, X, Y, F, X_pop, Fp, method, weights, weights_pop, lam, lambda_mode,
                       lambda_bounds, level, convention, terms, "ordinal", label_dim=2,
                       extra_terms=lambda _: thr, estimand=estimand, overlap=overlap, frame_size=frame_size)
