"""Shared machinery of the PPI estimators (see :mod:`rectify.estimators.ppi` for the estimators and
their conventions): PPI++'s lambda, the variance of ``mean(A) + mean(B)`` for each estimand and
overlap (:mod:`rectify.estimand`), Satterthwaite degrees of freedom and the difference estimator."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from rectify import estimand as E
from rectify.errors import InputError
from rectify.result import check_level

from . import _validate as V
from .models import Fit

__all__ = ["optimal_lambda"]


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
             target: E.Target | None = None, psi_y: np.ndarray | None = None, n_df: float | None = None):
    """Covariance of ``mean(A) + mean(B)`` and Satterthwaite df, for the estimand and overlap of ``target``.

    ``target=None`` (or the superpopulation with a separate pilot): pilot and population independent.
    Otherwise :func:`rectify.estimand.variance_parts` applies (finite-population correction, and for
    the superpopulation with the pilot inside the frame the human answers' ``psi_y`` rows).
    ``n_df`` (survey weights): the pilot's degrees of freedom before the estimated parameters are
    taken off, :func:`_weights_df` (``n`` for equal weights).

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
        df_b = min(n, n_df or n) - p if from_pilot else df_b
    cov = cov_a + cov_b
    df = _satterthwaite(np.diag(cov_a), np.diag(cov_b), min(n, n_df or n) - ddof_a, df_b)
    return cov, df


def _weights_df(w) -> float | None:
    """Degrees of freedom of a variance estimated with survey weights: ``(sum w^2)^2 / sum w^4``.

    The pilot part of every variance here is ``sum_i w_i^2 e_i^2`` (times constants); for errors of equal
    variance its Satterthwaite degrees of freedom are ``(sum w^2)^2 / sum w^4`` -- ``n`` for equal
    weights, and far fewer than Kish's effective n ``(sum w)^2 / sum w^2`` when a few rows carry large
    weights. ``None`` for equal weights (or no weights).

    Examples
    --------
    >>> _weights_df(np.ones(10)) is None, round(_weights_df(np.array([1.0, 1.0, 1.0, 3.0])), 2)
    (True, 1.71)
    """
    if w is None:
        return None
    w = np.asarray(w, float)
    if np.ptp(w) <= 1e-12 * np.abs(w).max():
        return None
    w2 = w * w
    return float(w2.sum() ** 2 / (w2 * w2).sum())


KISH_WARN_BELOW = 100


def warn_small_effective_n(w, name: str = "weights") -> None:
    """Warn (:class:`~rectify.errors.SmallEffectiveSampleWarning`) when unequal pilot weights leave a Kish
    effective sample size ``(sum w)^2 / sum w^2`` below 100.

    There the linearized (sandwich) variance of a weighted estimate is itself biased: in
    benchmarks/results/coverage_study.md weighted means and shares at Kish deff 1.5-3 and effective n
    17-67 covered 81-93% (standard errors 0.70-0.94 of the actual spread) and weighted regression slopes
    over-covered (97-99%) once their degrees of freedom were cut. No interval method here reached the
    93.5-96.5% goal in those cells, so the user is told rather than given a confident interval.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as got:
    ...     warnings.simplefilter("always")
    ...     warn_small_effective_n(np.r_[np.ones(40), np.full(10, 6.0)])
    >>> got[0].category.__name__
    'SmallEffectiveSampleWarning'
    """
    import warnings

    from rectify.errors import SmallEffectiveSampleWarning

    if w is None:
        return
    w = np.asarray(w, float)
    if w.size == 0 or np.ptp(w) <= 1e-12 * np.abs(w).max():
        return
    n_eff = float(w.sum() ** 2 / (w * w).sum())
    deff = w.size / n_eff
    if n_eff < KISH_WARN_BELOW and deff > 1.2:
        warnings.warn(f"argument {name!r}: the survey weights leave a Kish effective sample size of {n_eff:.0f} "
                      f"(design effect {deff:.2f} on {w.size} pilot rows): below an effective n of "
                      f"{KISH_WARN_BELOW} the linearized variance of weighted estimates is unreliable (weighted "
                      "means and shares covered 81-93%, regression slopes 97-99%, in "
                      "benchmarks/results/coverage_study.md); read the intervals as approximate, or enlarge the "
                      "pilot / trim the weights", SmallEffectiveSampleWarning, stacklevel=4)


def _usable_leverage(fit):
    """HC3 needs leverages below one; with a near-saturated design fall back to HC1."""
    if fit is None or fit.leverage is None or np.max(fit.leverage) >= 0.99:
        return None
    return fit.leverage


def _lambda(method: str, lam: Any, psi_y, psi_f, var_pop, N, mode, bounds, d, target=None) -> np.ndarray:
    if method == "ppi":
        return np.ones(d)
    if lam is not None:
        if isinstance(lam, (str, bytes, bool, np.bool_)):
            raise InputError(f"argument 'lam' must be a number (or None to tune it), got {lam!r}")
        try:
            arr = np.broadcast_to(np.asarray(lam, dtype=float), (d,)).copy()
        except (TypeError, ValueError):
            raise InputError(f"argument 'lam' must be a number or one number per term ({d}), got {lam!r}; "
                             "pass None to tune it") from None
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
                          lambda_mode, lambda_bounds, n, N, p, convention, target=None, frame_size=None, n_df=None):
    """theta_y - lam (theta_f - theta_f~) with its covariance, df and lambda (``target``, ``n_df``: see
    :func:`_combine`). With ``lambda_mode="element"`` in a regression (``p > 1``) every tuned lambda
    costs one degree of freedom; a mean's coordinates are separate problems (one lambda each)."""
    d = (fit_y or fit_pop).theta.shape[0]
    lev = _usable_leverage(fit_y)
    comb = partial(_combine, target=target, psi_y=None if fit_y is None else fit_y.psi, n_df=n_df)
    if method == "classical":
        cov, df = comb(fit_y.psi, None, n, frame_size or N, p, convention, leverage=lev)
        return fit_y.theta, cov, df, None
    M = fit_pop.second_moment()
    if method == "naive":
        cov, df = _combine(None, M, n, N, p, convention)
        return fit_pop.theta, cov, df, None
    lam_vec = _lambda(method, lam, fit_y.psi, fit_f.psi, np.diag(M), N, lambda_mode, lambda_bounds, d, target)
    per_lambda = lambda_mode == "element" and p > 1
    tuned = (d if per_lambda else 1) if (method == "ppi++" and lam is None) else 0
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
            tuned = int((~worse).sum()) if per_lambda else (0 if worse.all() else 1)
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
