"""Calibration weighting: pure numeric cores over arrays.

Why one module of ~760 lines: the calibration functions, the Newton solver, raking on the cell
table, post-stratification and trimming share the cell-table machinery and the margin checks, and R
``survey``'s parity tests exercise them together.

Design weights ``d`` are adjusted to final weights ``w = d * g`` so that weighted sample totals of
auxiliary variables equal known population totals. The g-weights solve

    sum_i d_i F(x_i' lambda) x_i = T,

with ``F`` the calibration function (Deville and Sarndal 1992): linear (GREG), raking
(exponential), logit (bounded in ``(L, U)``) and truncated linear (clipped to ``[L, U]``). The
Newton iteration, the convergence criterion ``max |misfit| / (1 + |T|)`` and the meaning of
``bounds`` (on the g-weights, not on the weights) follow R's ``survey::calibrate``.

Categorical margins are raked by iterative proportional fitting on the table of cells
(:func:`rake`): a million rows with three five-category margins aggregate to 125 cells, so the
iterations cost nothing and only the aggregation and the mapping back touch the rows.

Every function validates its input and raises :class:`rectify.errors.InputError` (bad input),
or :class:`rectify.errors.ConvergenceError` (no convergence within ``max_iter``; never a silent
return).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rectify.errors import ConvergenceError, InputError

__all__ = [
    "CalibrationFit",
    "calfun",
    "calibrate_weights",
    "rake",
    "poststratify",
    "trim_weights",
    "trim_g",
    "check_design_weights",
    "check_margin_targets",
    "cell_codes",
    "margin_totals_consistent",
]

_METHODS = ("linear", "raking", "logit", "truncated")


@dataclass(frozen=True)
class CalibrationFit:
    """Outcome of a calibration.

    Attributes
    ----------
    weights : ndarray
        Final weights ``d * g``.
    g : ndarray
        g-weights (final weight / design weight).
    iterations : int
        Newton steps (or raking sweeps) used.
    max_error : float
        Worst relative margin error ``max |T - X'w| / (1 + |T|)`` at the end.
    lam : ndarray or None
        Lagrange multipliers (Newton methods only).
    method : str
        Calibration function used.
    """

    weights: np.ndarray
    g: np.ndarray
    iterations: int
    max_error: float
    lam: np.ndarray | None = None
    method: str = "linear"
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- validation
def check_design_weights(d, n: int | None = None, name: str = "design_weights",
                         allow_zero: bool = False) -> np.ndarray:
    """Validate design weights: finite, strictly positive (or >= 0 with ``allow_zero``; replicate
    weights drop rows by zeroing them), right length.

    Examples
    --------
    >>> check_design_weights([1.0, 2.5]).tolist()
    [1.0, 2.5]
    """
    try:
        d = np.asarray(d, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"argument '{name}' must be numeric: one design weight per sample row") from None
    if d.ndim != 1:
        raise InputError(f"argument '{name}' must be one-dimensional, got shape {d.shape}")
    if n is not None and d.shape[0] != n:
        raise InputError(f"argument '{name}' has {d.shape[0]} values for {n} sample rows; give one per row")
    # the usual case in two reductions, no temporaries (a comparison with NaN is False; a sum is
    # finite only if every value is)
    low = d.min(initial=np.inf)
    if ((low >= 0) if allow_zero else (low > 0)) and np.isfinite(d.sum()):
        return d
    if np.isnan(d).any():
        raise InputError(
            f"argument '{name}' has {int(np.isnan(d).sum())} missing values; every sample row "
            "needs a design weight (use 1 for an equal-probability sample)"
        )
    if not np.isfinite(d).all():
        raise InputError(f"argument '{name}' has infinite values; fix or remove those rows")
    bad = d < 0 if allow_zero else d <= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"argument '{name}' must be strictly positive; row {i} has {float(d[i])!r} "
            f"({int(bad.sum())} rows); fix or remove those rows (rectify never clips weights)"
        )
    return d


def _check_bounds(bounds, method: str) -> tuple[float, float]:
    if bounds is None:
        lo, hi = -np.inf, np.inf
    else:
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise InputError(f"argument 'bounds' must be a pair (lower, upper), got {bounds!r}") from None
    if not lo < hi:
        raise InputError(f"argument 'bounds' must satisfy lower < upper, got {bounds!r}")
    if method == "logit":
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError("method 'logit' needs finite bounds on the g-weights, e.g. bounds=(0.5, 2)")
        if not lo < 1.0 < hi:
            raise InputError(f"method 'logit' needs bounds with lower < 1 < upper, got {bounds!r}")
    if method == "truncated" and not (lo <= 1.0 <= hi):
        raise InputError(f"method 'truncated' needs bounds with lower <= 1 <= upper, got {bounds!r}")
    return lo, hi


# --------------------------------------------------------------------------- calibration functions
def calfun(method: str, bounds=(-np.inf, np.inf)):
    """Return ``(Fm1, dF)``: the calibration function minus one and its derivative.

    ``g = 1 + Fm1(u)`` for ``u = x' lambda``; the same functions as R's ``cal.linear``,
    ``cal.raking`` and ``cal.logit``.

    Examples
    --------
    >>> f, df = calfun("raking")
    >>> float(f(np.array([0.0]))[0]), float(df(np.array([0.0]))[0])
    (0.0, 1.0)
    """
    if method not in _METHODS:
        raise InputError(f"argument 'method' must be one of {_METHODS}, got {method!r}")
    lo, hi = _check_bounds(bounds, method)
    if method == "raking":
        if not (np.isfinite(lo) or np.isfinite(hi)):
            def fm1_exp(u):  # an overflow to inf is caught by the step halving of the Newton loop
                with np.errstate(over="ignore"):
                    return np.expm1(u)

            def df_exp(u):
                with np.errstate(over="ignore"):
                    return np.exp(u)

            return fm1_exp, df_exp
        llo = np.log(lo) if lo > 0 else -np.inf
        lhi = np.log(hi) if hi > 0 else -np.inf

        def fm1_rake(u):
            return np.clip(np.exp(u), lo, hi) - 1.0

        def df_rake(u):
            return np.where((u < llo) | (u > lhi), 0.0, np.exp(u))

        return fm1_rake, df_rake
    if method in ("linear", "truncated"):
        def fm1(u):
            return np.clip(u + 1.0, lo, hi) - 1.0

        def dfun(u):
            return np.where((u < lo - 1.0) | (u > hi - 1.0), 0.0, 1.0)

        return fm1, dfun
    a = (hi - lo) / ((1.0 - lo) * (hi - 1.0))

    def fm1_logit(u):
        with np.errstate(over="ignore", invalid="ignore"):
            eu = np.exp(a * u)
            g = (lo * (hi - 1.0) + hi * (1.0 - lo) * eu) / (hi - 1.0 + (1.0 - lo) * eu)
        g = np.where(np.isinf(eu), hi, g)
        return g - 1.0

    def df_logit(u):
        with np.errstate(over="ignore", invalid="ignore"):
            eu = np.exp(a * u)
            den = hi - 1.0 + (1.0 - lo) * eu
            val = a * eu * (hi - lo) * (1.0 - lo) * (hi - 1.0) / den**2
        return np.where(np.isinf(eu), 0.0, val)

    return fm1_logit, df_logit


def _label(name: str) -> str:
    """``"a[x]"`` (an indicator of a categorical margin) -> ``"margin 'a', category 'x'"``."""
    m = re.fullmatch(r"(.+)\[(.+)\]", str(name))
    if m:
        return f"margin {m.group(1)!r}, category {m.group(2)!r}"
    return f"auxiliary {name!r}"


def _check_reachable(X, d, T, lo, hi, names) -> None:
    """Refuse a total that no g-weights in ``[lo, hi]`` can reach, one auxiliary at a time."""
    # sums of the positive (P) and negative (M) parts of d x per column, without an n x p copy
    # when X is non-negative (indicator margins)
    xd = X.T @ d
    axd = xd if X.min(initial=0.0) >= 0 else np.abs(X).T @ d
    P, M = (axd + xd) / 2.0, (xd - axd) / 2.0

    def mul(b, v):  # b * v with 0 * inf = 0
        with np.errstate(invalid="ignore"):
            return np.where(v == 0, 0.0, b * v)

    low = mul(lo, P) + mul(hi, M)
    high = mul(hi, P) + mul(lo, M)
    slack = 1e-9 * (1.0 + np.abs(T))
    for j in np.flatnonzero((T < low - slack) | (T > high + slack)):
        cur = float(xd[j])
        raise InputError(
            f"bounds {(lo, hi)} on the g-weights make the calibration infeasible for {_label(names[j])}: "
            f"its target {T[j]:g} lies outside [{low[j]:g}, {high[j]:g}], the range the bounded "
            f"weights can reach (the design weights give {cur:g}); widen the bounds or merge the category")


def _rel_error(X, w, totals) -> np.ndarray:
    return np.abs(totals - X.T @ w) / (1.0 + np.abs(totals))


def _infeasible(X, d, totals, lo, hi) -> bool:
    """True when no g in [lo, hi] reproduces the totals (a linear program)."""
    from scipy.optimize import linprog

    A = (X * d[:, None]).T
    scale = 1.0 + np.abs(totals)
    res = linprog(np.zeros(X.shape[0]), A_eq=A / scale[:, None], b_eq=totals / scale,
                  bounds=(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None),
                  method="highs")
    return res.status == 2


def _merit(err: np.ndarray) -> float:
    """Squared relative margin error (inf when a far overshoot overflows)."""
    with np.errstate(over="ignore"):
        return float(np.sum(np.square(err)))


def _backtrack(X, d, T, fm1, dfun, lam, step, merit, full):
    """Shorten a Newton step that made the margins worse.

    A full step of raking or logit calibration can overshoot by orders of magnitude when the design
    weights are far from the scale of the totals (g near 45 makes the first step ``exp(44)``), and
    Newton's method can then wander off. The Newton direction decreases the squared relative margin
    error, so halving the step finds a point that improves it; if none does (rounding at the
    solution, a non-smooth calibration function), the full step ``full`` is kept.
    """
    t = 1.0
    for _ in range(50):
        t /= 2.0
        lam_t = lam + t * step
        u = X @ lam_t
        g = 1.0 + fm1(u)
        if not (np.isfinite(g).all() and np.isfinite(dfun(u)).all()):
            continue
        err = _rel_error(X, d * g, T)
        if _merit(err) < merit:
            return lam_t, u, g, err
    return full


def calibrate_weights(
    X,
    d,
    totals,
    method: str = "linear",
    bounds=None,
    trim=None,
    max_iter: int = 100,
    tol: float = 1e-12,
    term_names: Sequence[str] | None = None,
    allow_zero: bool = False,
) -> CalibrationFit:
    """Calibrate design weights to population totals by Newton's method.

    Parameters
    ----------
    X : array-like, shape (n, p)
        Auxiliary variables of the sample (a model matrix; categorical variables as indicators).
    d : array-like, shape (n,)
        Design weights, strictly positive.
    totals : array-like, shape (p,)
        Population totals of the columns of ``X``.
    method : {"linear", "raking", "logit", "truncated"}
        Calibration function: GREG, exponential, logit bounded in ``bounds``, or linear clipped
        to ``bounds``.
    bounds : (lower, upper), optional
        Bounds on the g-weights (final / design weight), as in R's ``calibrate(bounds=)``.
        Required for ``logit`` and ``truncated``; with ``linear`` they truncate as ``truncated``
        does, with ``raking`` they clip ``exp(x' lambda)`` (as R's ``cal.raking``).
    trim : (lower, upper), optional
        After calibration, clip the g-weights to this range and spread the trimmed weight over
        the untrimmed rows in proportion to their design weights (one pass, as R's
        ``calibrate(trim=)``); the totals then hold only approximately.
    max_iter : int
        Maximum Newton steps.
    tol : float
        Convergence when ``max |T - X'w| / (1 + |T|) < tol``.
    term_names : sequence of str, optional
        Column names, used in error messages.

    Returns
    -------
    CalibrationFit

    Raises
    ------
    InputError
        Bad shapes, NaN, non-positive design weights, a column that is zero in the sample but has a
        non-zero population total, bounds that make the problem infeasible.
    ConvergenceError
        No convergence within ``max_iter`` steps.

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [1.0, 2.0, 3.0, 4.0]])
    >>> fit = calibrate_weights(X, np.full(4, 2.0), [10.0, 30.0])
    >>> np.round(fit.weights, 4).tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    n, p = X.shape
    names = list(term_names) if term_names is not None else [f"column {j}" for j in range(p)]
    if not np.isfinite(X).all():
        bad = [names[j] for j in range(p) if not np.isfinite(X[:, j]).all()]
        raise InputError(f"auxiliary variables contain missing or infinite values in {bad}")
    d = check_design_weights(d, n, allow_zero=allow_zero)
    T = np.asarray(totals, dtype=float).ravel()
    if T.shape[0] != p:
        raise InputError(f"argument 'totals' has {T.shape[0]} values for {p} auxiliary columns")
    if not np.isfinite(T).all():
        raise InputError("argument 'totals' contains missing or infinite values")
    if method not in _METHODS:
        raise InputError(f"argument 'method' must be one of {_METHODS}, got {method!r}")
    if method in ("logit", "truncated") and bounds is None:
        raise InputError(f"method {method!r} needs bounds on the g-weights, e.g. bounds=(0.5, 2)")
    lo, hi = _check_bounds(bounds, method)
    allzero = (np.abs(X).T @ (d > 0).astype(float)) == 0 if X.min(initial=0.0) < 0 else \
        (X.T @ (d > 0).astype(float)) == 0
    for j in np.flatnonzero(allzero):
        if T[j] != 0:
            raise InputError(
                f"{_label(names[j])}: population total {T[j]:g} but the auxiliary is zero in every "
                "sample row (no sample rows), so no weighting can reach it; merge that category with another"
            )
    if np.isfinite(lo) or np.isfinite(hi) or method == "raking":
        # raking g-weights are positive: its bounds are at least (0, inf)
        _check_reachable(X, d, T, max(lo, 0.0) if method == "raking" else lo, hi, names)
    fm1, dfun = calfun(method, (lo, hi))
    lam = np.zeros(p)
    u = np.zeros(n)
    g = 1.0 + fm1(u)
    it = 0
    err = _rel_error(X, d * g, T)
    while not np.all(err < tol):
        if it >= max_iter:
            worst = _label(names[int(err.argmax())])
            msg = (f"calibration ({method}) did not converge in {max_iter} iterations: worst "
                   f"relative margin error {err.max():.3g} on {worst}")
            if (np.isfinite(lo) or np.isfinite(hi)) and _infeasible(X, d, T, lo, hi):
                raise InputError(
                    f"bounds {(lo, hi)} on the g-weights make the calibration infeasible: no weights "
                    f"within them reproduce all the totals together (worst at the last iteration: "
                    f"{worst}); widen the bounds or merge categories") from None
            raise ConvergenceError(msg + "; raise max_iter or widen the bounds")
        deriv = dfun(u)
        Tmat = (X * (d * deriv)[:, None]).T @ X
        misfit = T - X.T @ (d * g)
        step = np.linalg.pinv(Tmat, rcond=256 * np.finfo(float).eps, hermitian=True) @ misfit
        lam_old, merit = lam, _merit(err)
        lam = lam + step
        u = X @ lam
        g = 1.0 + fm1(u)
        it += 1
        halvings = 0
        while not (np.isfinite(g).all() and np.isfinite(dfun(u)).all()) and halvings < 60:
            step = step / 2.0
            lam = lam - step
            u = X @ lam
            g = 1.0 + fm1(u)
            halvings += 1
        err = _rel_error(X, d * g, T)
        if _merit(err) > merit:
            lam, u, g, err = _backtrack(X, d, T, fm1, dfun, lam_old, lam - lam_old, merit, (lam, u, g, err))
    info = {}
    if trim is not None:
        g, n_trim = trim_g(g, d, trim)
        info["n_trimmed"] = n_trim
    w = d * g
    return CalibrationFit(weights=w, g=g, iterations=it, max_error=float(_rel_error(X, w, T).max()),
                          lam=lam, method=method, info=info)


def trim_g(g, d, trim) -> tuple[np.ndarray, int]:
    """Clip g-weights to ``trim`` and spread the excess over the other rows (R ``calibrate(trim=)``).

    The trimmed weight ``sum (g - g_clipped) d`` is added to the untrimmed rows in proportion to
    their design weights, so the weight total is preserved. One pass, as in R.

    Examples
    --------
    >>> g, k = trim_g(np.array([0.5, 1.0, 1.5]), np.ones(3), (0.8, 1.2))
    >>> g.tolist(), k
    ([0.8, 1.0, 1.2], 2)
    """
    lo, hi = (float(t) for t in trim)
    if not lo < hi:
        raise InputError(f"argument 'trim' must satisfy lower < upper, got {trim!r}")
    g = np.asarray(g, float)
    d = np.asarray(d, float)
    gnew = np.clip(g, lo, hi)
    outside = (g < lo) | (g > hi)
    if outside.any():
        if outside.all():
            raise InputError(f"every g-weight lies outside trim={trim!r}; nothing to redistribute to")
        gnew[~outside] += np.sum((g - gnew) * d) / np.sum(d[~outside])
    return gnew, int(outside.sum())


def trim_weights(w, lower=-np.inf, upper=np.inf, strict: bool = False, max_iter: int = 100):
    """Trim weights to ``[lower, upper]`` and share the excess equally among the other rows.

    The semantics of R's ``trimWeights``: the trimmed amount is divided equally (not in
    proportion) among the rows inside the range; with ``strict=True`` this repeats until no
    weight lies outside.

    Returns
    -------
    (ndarray, int)
        Trimmed weights and the number of rows trimmed in the first pass.

    Examples
    --------
    >>> trim_weights(np.array([1.0, 2.0, 9.0]), upper=6.0)[0].tolist()
    [2.5, 3.5, 6.0]
    """
    w = np.asarray(w, float).copy()
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        raise InputError(f"trim bounds must satisfy lower < upper, got ({lower}, {upper})")
    if lower * w.size > w.sum() or upper * w.size < w.sum():
        raise InputError(
            f"trim bounds ({lower}, {upper}) cannot hold the weight total {w.sum():g} over {w.size} "
            "rows; widen them")
    n_first = None
    for _ in range(max_iter):
        outside = (w < lower) | (w > upper)
        if n_first is None:
            n_first = int(outside.sum())
        if not outside.any():
            return w, n_first
        wnew = np.clip(w, lower, upper)
        wnew[~outside] += np.sum(w - wnew) / np.sum(~outside)
        w = wnew
        if not strict:
            return w, n_first
    raise ConvergenceError(f"strict weight trimming did not settle in {max_iter} passes")


# --------------------------------------------------------------------------- categorical margins
def cell_codes(codes: Sequence[np.ndarray], n_levels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Combine integer codes of several categorical variables into cell codes.

    Returns
    -------
    cell : ndarray of int, shape (n,)
        Cell index of each row (0 .. n_cells - 1): in the full cross-classification when it has
        at most ``4 n + 1024`` cells (empty cells included), else among the occupied cells only.
    cell_margins : ndarray of int, shape (n_cells, m)
        Level of each variable in each cell.

    Examples
    --------
    >>> cell, cm = cell_codes([np.array([0, 1]), np.array([0, 1])], [2, 2])
    >>> cell.tolist(), cm.tolist()
    ([0, 3], [[0, 0], [0, 1], [1, 0], [1, 1]])
    """
    n_levels = [int(k) for k in n_levels]
    full = float(np.prod(np.asarray(n_levels, float)))
    n = len(codes[0])
    if full <= 4 * n + 1024:
        # small table: the full cross-classification (empty cells stay empty under IPF)
        flat = np.asarray(codes[0], np.int64)
        for c, k in zip(codes[1:], n_levels[1:]):
            flat = flat * k + c
        cm = np.column_stack(np.unravel_index(np.arange(int(full)), n_levels))
        return flat, cm
    stacked = np.column_stack(codes)
    cm, cell = np.unique(stacked, axis=0, return_inverse=True)
    return cell.ravel().astype(np.int64), cm


_ROWS = 65536  # rows per block of the cell pass: the block's codes and cell indices stay in cache


def _cells(codes, n_levels, names, d, check: bool = True):
    """Cell of every row and the design-weight total of every cell, refusing out-of-range codes.

    Returns ``(cell, cm, c0)`` as :func:`cell_codes` plus the cell totals of ``d``. For a small table
    the rows are taken in cache-sized blocks and the cell index is kept in the narrowest integer
    type that holds it: no million-row temporaries besides that index.
    """
    n = len(codes[0])
    full = float(np.prod(np.asarray(n_levels, float)))
    if full > 4 * n + 1024:
        _check_ranges(codes, n_levels, names)
        cell, cm = cell_codes(codes, n_levels)
        return cell, cm, np.bincount(cell, weights=d, minlength=cm.shape[0])
    n_cells = int(full)
    dt = np.int16 if full < 2**15 else np.int32 if full < 2**31 else np.int64
    cell = np.empty(n, dtype=dt)
    c0 = np.zeros(n_cells)
    for i in range(0, n, _ROWS):
        j = min(i + _ROWS, n)
        blocks = [c[i:j] for c in codes]
        if check and any(b.min() < 0 or b.max() >= k for b, k in zip(blocks, n_levels)):
            _check_ranges(codes, n_levels, names)  # names the first margin at fault
        flat = blocks[0].astype(np.intp)
        for b, k in zip(blocks[1:], n_levels[1:]):
            flat *= k
            flat += b
        cell[i:j] = flat
        c0 += np.bincount(flat, weights=d[i:j], minlength=n_cells)
    return cell, np.column_stack(np.unravel_index(np.arange(n_cells), n_levels)), c0


def _check_ranges(codes, n_levels, names) -> None:
    for c, k, nm in zip(codes, n_levels, names):
        if c.min(initial=0) < 0 or c.max(initial=0) >= k:
            raise InputError(f"margin {nm!r}: a code lies outside 0..{k - 1}")


def _map_back(gc, cell, d):
    """``g = gc[cell]`` and ``w = d * g``, block by block (small cell indices widened in cache)."""
    g = np.empty(len(cell))
    for i in range(0, len(cell), _ROWS):
        j = min(i + _ROWS, len(cell))
        np.take(gc, cell[i:j], out=g[i:j], mode="clip")  # in range by construction; "clip" is unbuffered
    return g, d * g


def margin_totals_consistent(targets: Sequence[np.ndarray], names: Sequence[str], rtol: float = 1e-9) -> float:
    """Check that every margin sums to the same population total; return it.

    Examples
    --------
    >>> margin_totals_consistent([np.array([2.0, 3.0]), np.array([5.0])], ["a", "b"])
    5.0
    """
    sums = [float(np.sum(t)) for t in targets]
    ref = sums[0]
    for nm, s in zip(names, sums):
        if abs(s - ref) > rtol * max(1.0, abs(ref)):
            raise InputError(
                f"margins disagree on the population total: margin {names[0]!r} sums to {ref:g} "
                f"but margin {nm!r} sums to {s:g}; give margins of the same population")
    return ref


def check_margin_targets(codes: Sequence[np.ndarray], targets: Sequence[np.ndarray], d,
                         names: Sequence[str], levels: Sequence[Sequence]) -> None:
    """Validate the targets of categorical margins against the sample.

    Every target must be finite and non-negative; a category with a positive target needs sample
    rows (with positive design weight), and a category with a zero target must have none. Errors
    name the margin and the category.

    Examples
    --------
    >>> check_margin_targets([np.array([0, 1])], [np.array([3.0, 0.0])], np.ones(2), ["sex"], [["f", "m"]])
    Traceback (most recent call last):
    ...
    rectify.errors.InputError: margin 'sex', category 'm': population count 0 but 1 sample rows; those rows would need weight 0 -- remove them or fix the margin
    """
    d = np.asarray(d, float)
    sums = [np.bincount(c, weights=d, minlength=len(t)) for c, t in zip(codes, targets)]
    _check_margin_sums(sums, lambda j: np.bincount(codes[j][d > 0], minlength=len(targets[j])), targets, names,
                       levels)


def _check_margin_sums(sums, count_rows, targets, names, levels) -> None:
    """:func:`check_margin_targets` from each margin's design-weight sums (``count_rows(j)``: the
    rows with positive weight per category of margin j, asked for only where a zero target needs it)."""
    for j, (s, t) in enumerate(zip(sums, targets)):
        t = np.asarray(t, float)
        for k in range(len(t)):
            if not np.isfinite(t[k]) or t[k] < 0:
                raise InputError(f"margin {names[j]!r}, category {levels[j][k]!r}: population count "
                                 f"{float(t[k])} must be finite and non-negative")
        rows = count_rows(j) if (t == 0).any() else None
        for k in range(len(t)):
            if t[k] > 0 and s[k] == 0:
                raise InputError(
                    f"margin {names[j]!r}, category {levels[j][k]!r}: population count {t[k]:g} but "
                    "no sample rows, so no weighting can reach it (raking would never converge); merge the category "
                    "with a neighbour or drop it from the margin")
            if t[k] == 0 and rows[k] > 0:
                raise InputError(
                    f"margin {names[j]!r}, category {levels[j][k]!r}: population count 0 but "
                    f"{int(rows[k])} sample rows; those rows would need weight 0 -- remove them or fix "
                    "the margin")


def rake(
    codes: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    d,
    names: Sequence[str] | None = None,
    levels: Sequence[Sequence] | None = None,
    max_iter: int = 1000,
    tol: float = 1e-12,
    allow_zero: bool = False,
    validated: bool = False,
) -> CalibrationFit:
    """Rake design weights to categorical margins (iterative proportional fitting).

    The rows are aggregated to the table of occupied cells first; the iterations run on that
    table and the cell factors are mapped back to rows at the end.

    Parameters
    ----------
    codes : sequence of int arrays, each shape (n,)
        Level code (0 .. K_m - 1) of each row on each margin.
    targets : sequence of arrays, each shape (K_m,)
        Population count of each level of each margin.
    d : array-like, shape (n,)
        Design weights, strictly positive.
    names, levels : optional
        Margin names and level labels, for error messages.
    max_iter : int
        Maximum sweeps over the margins.
    tol : float
        Convergence when every margin total is within ``tol * (1 + target)`` of its target.
    validated : bool
        The caller already checked ``d`` with :func:`check_design_weights` and every code's range
        (e.g. pandas category codes of columns without missing values): skip those passes over the
        rows. The margins are validated on the cell table either way.

    Returns
    -------
    CalibrationFit

    Examples
    --------
    >>> a = np.array([0, 0, 1, 1]); b = np.array([0, 1, 0, 1])
    >>> fit = rake([a, b], [np.array([6.0, 4.0]), np.array([5.0, 5.0])], np.ones(4))
    >>> np.round(fit.weights, 6).tolist()
    [3.0, 3.0, 2.0, 2.0]
    """
    m = len(codes)
    if m == 0 or len(targets) != m:
        raise InputError("rake needs one target vector per margin and at least one margin")
    names = list(names) if names is not None else [f"margin {j}" for j in range(m)]
    codes = [np.asarray(c) for c in codes]
    n = codes[0].shape[0]
    d = np.asarray(d, dtype=float) if validated else check_design_weights(d, n, allow_zero=allow_zero)
    targets = [np.asarray(t, float).ravel() for t in targets]
    if levels is None:
        levels = [list(range(len(t))) for t in targets]
    for j in range(m):
        c = codes[j]
        if c.shape != (n,) or not np.issubdtype(c.dtype, np.integer):
            raise InputError(f"margin {names[j]!r}: codes must be an integer array of length {n}")
    # one pass over the rows to their cell (checking every code's range), one for the cell totals;
    # the margins are then validated and raked on the cell table
    cell, cm, c0 = _cells(codes, [len(t) for t in targets], names, d, check=not validated)
    n_cells = cm.shape[0]
    _check_margin_sums([np.bincount(cm[:, j], weights=c0, minlength=len(targets[j])) for j in range(m)],
                       lambda j: np.bincount(cm[:, j], weights=np.bincount(cell[d > 0], minlength=n_cells),
                                             minlength=len(targets[j])).astype(np.int64),
                       targets, names, levels)
    margin_totals_consistent(targets, names)
    cw = c0.copy()
    it = 0
    errs = np.inf
    while True:
        worst, where = 0.0, (0, 0)
        for j in range(m):
            s = np.bincount(cm[:, j], weights=cw, minlength=len(targets[j]))
            e = np.abs(s - targets[j]) / (1.0 + targets[j])
            if e.max() > worst:
                worst, where = float(e.max()), (j, int(e.argmax()))
        errs = worst
        if errs < tol:
            break
        if it >= max_iter:
            j, k = where
            raise ConvergenceError(
                f"raking did not converge in {max_iter} sweeps: worst relative margin error "
                f"{errs:.3g} on margin {names[j]!r}, category {levels[j][k]!r}; the margins may be "
                "incompatible with the sample's empty cells -- raise max_iter or collapse categories")
        for j in range(m):
            s = np.bincount(cm[:, j], weights=cw, minlength=len(targets[j]))
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(s > 0, targets[j] / s, 0.0)
            cw = cw * f[cm[:, j]]
        it += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        gc = np.where(c0 > 0, cw / np.where(c0 > 0, c0, 1.0), 1.0)
    g, w = _map_back(gc, cell, d)
    return CalibrationFit(weights=w, g=g, iterations=it, max_error=float(errs), method="raking",
                          info={"n_cells": int(n_cells)})


def poststratify(cell, d, targets, labels: Sequence | None = None, name: str = "cell",
                 allow_zero: bool = False) -> CalibrationFit:
    """Post-stratify: scale design weights so that each cell's weight total equals its count.

    Parameters
    ----------
    cell : int array, shape (n,)
        Cell code (0 .. C - 1) of each row.
    d : array-like, shape (n,)
        Design weights.
    targets : array-like, shape (C,)
        Population count of each cell.

    Examples
    --------
    >>> poststratify(np.array([0, 0, 1]), np.ones(3), [4.0, 1.0]).weights.tolist()
    [2.0, 2.0, 1.0]
    """
    cell = np.asarray(cell)
    d = check_design_weights(d, cell.shape[0], allow_zero=allow_zero)
    t = np.asarray(targets, float).ravel()
    labels = list(labels) if labels is not None else list(range(len(t)))
    if cell.min(initial=0) < 0 or cell.max(initial=0) >= len(t):
        raise InputError(f"{name}: a cell code lies outside 0..{len(t) - 1}")
    s = np.bincount(cell, weights=d, minlength=len(t))
    for k in range(len(t)):
        if t[k] > 0 and s[k] == 0:
            raise InputError(f"{name} {labels[k]!r}: population count {t[k]:g} but no sample rows; "
                             "collapse it with a neighbouring cell")
        if t[k] == 0 and s[k] > 0:
            raise InputError(f"{name} {labels[k]!r}: population count 0 but sample rows present")
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(s > 0, t / s, 0.0)
    g = f[cell]
    w = d * g
    err = np.abs(np.bincount(cell, weights=w, minlength=len(t)) - t) / (1.0 + t)
    return CalibrationFit(weights=w, g=g, iterations=1, max_error=float(err.max()),
                          method="poststratify")
