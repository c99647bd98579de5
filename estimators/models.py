"""M-estimation building blocks: fits with per-row influence functions.

Why one module of ~1,070 lines: one Newton solver per model (OLS, logistic, cumulative logit: the
single implementation used by the PPI cores and the covariates baseline) over the same blocked,
fused passes (``row_blocks``, ``block_gram``, ``one_blas_thread``) that keep them near one pass over
the frame.

A fit over a frame (``keep_psi=False``) makes few passes (issue 17): it starts from a fit on a
subsample spread over the frame; the first pass sums only the gradient (a chord step with the
subsample's Hessian); the next step is Newton's with a second-order correction (third derivatives
from the subsample); the last pass also sums the meat, and its own step (below ``_FINISH``) is applied
with the sums moved to first order -- three passes on benchmarks/floor.py's frames. Passes over at
least ``_FAST_MIN_ROWS`` rows run the optional numba kernels of ``_numba_kernels.py``
(:func:`fast_kernels`; the NumPy code is the reference and the fallback); passes over at least
``_PAR_MIN_ROWS`` rows of a design held as columns run their parallel versions on every usable core
(``prange`` over ``_PAR_CHUNKS`` fixed row chunks, so the sums do not depend on the thread count).

Each ``fit_*`` function solves a (weighted) estimating equation and returns the estimate, the
per-row influence rows ``psi`` (so that ``theta_hat - theta ~= mean(psi)``) and the averaged
Hessian. Labels may be soft: a logistic label in [0, 1] or an ordinal label given as a probability
vector over the K categories -- this is how an LLM's answer distribution enters the PPI cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

from rectify.errors import ConvergenceError, EstimationError

__all__ = ["Fit", "ColumnDesign", "NonFiniteData", "fit_ols", "fit_logistic", "fit_ordinal", "ordinal_probabilities"]

# rows per block of a population pass: a block of a few covariates stays in the CPU's cache while it
# is used for every sum of that pass
_BLOCK = 32768


class NonFiniteData(ValueError):
    """A population pass met NaN or infinite values (the caller validates the inputs and says which)."""


class ColumnDesign:
    """An (N, p) design held as its columns, so that a frame is never copied into an N x p matrix.

    ``columns`` are 1-D float arrays of length N, or ``None`` for a column of ones (the intercept).
    Population passes fill one cache-sized block of rows at a time; ``np.asarray`` materialises it.

    Examples
    --------
    >>> d = ColumnDesign([None, np.array([1.0, 2.0, 3.0])])
    >>> d.shape, np.asarray(d)[:, 0].tolist()
    ((3, 2), [1.0, 1.0, 1.0])
    """

    ndim = 2
    dtype = np.dtype(float)

    def __init__(self, columns):
        self.columns = tuple(None if c is None else np.asarray(c, dtype=float) for c in columns)
        lengths = {c.shape[0] for c in self.columns if c is not None}
        if len(lengths) != 1:
            raise ValueError("ColumnDesign needs at least one data column and columns of equal length")
        self.shape = (lengths.pop(), len(self.columns))

    def __len__(self) -> int:
        return self.shape[0]

    def fill(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start:stop`` written into ``out`` (shape (stop - start, p))."""
        for j, c in enumerate(self.columns):
            out[:, j] = 1.0 if c is None else c[start:stop]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self.fill(0, self.shape[0], np.empty(self.shape[::-1]).T)
        return out if dtype is None else out.astype(dtype, copy=False)


# up to this many columns a ColumnDesign's blocks stay columns (products are dot products of
# contiguous slices, faster than BLAS on tall, thin blocks); wider designs are copied block by block
_MAX_COLUMN_BLOCK = 10


def row_blocks(X, block: int = _BLOCK):
    """``(start, stop, rows)`` over an (N, p) array or :class:`ColumnDesign`, ``block`` rows at a time.

    ``rows`` is an array, or, for a narrow :class:`ColumnDesign`, a tuple of column slices (``None``
    for the intercept); :func:`block_matvec`, :func:`block_tvec` and :func:`block_gram` work on both.
    A wide design's rows are written into one reused buffer: use each block before the next.

    Examples
    --------
    >>> [(i, j, b.shape) for i, j, b in row_blocks(np.zeros((5, 2)), block=2)]
    [(0, 2, (2, 2)), (2, 4, (2, 2)), (4, 5, (1, 2))]
    """
    N, p = X.shape
    if isinstance(X, ColumnDesign) and p <= _MAX_COLUMN_BLOCK:
        for i in range(0, N, block):
            j = min(i + block, N)
            yield i, j, tuple(None if c is None else c[i:j] for c in X.columns)
    elif isinstance(X, ColumnDesign):
        buf = np.empty((p, min(block, N)))  # column-major blocks: each column is one contiguous copy
        for i in range(0, N, block):
            j = min(i + block, N)
            yield i, j, X.fill(i, j, buf[:, : j - i].T)
    else:
        for i in range(0, N, block):
            yield i, min(i + block, N), X[i:i + block]


_CONTROLLER: list = []


def one_blas_thread():
    """A context in which BLAS runs on one thread (threadpoolctl, a scikit-learn dependency).

    A population pass makes many small products over cache-sized blocks: BLAS threads only wait on
    each other there, and on a busy machine they wait for a core (a 32k-row dot product took 5 ms
    with two threads under load against 0.01 ms with one).
    """
    import contextlib

    try:
        if not _CONTROLLER:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        return _CONTROLLER[0].limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or unable to act: run with BLAS's own threads
        return contextlib.nullcontext()


def block_matvec(Xb, theta: np.ndarray) -> np.ndarray:
    """``Xb @ theta`` for a block from :func:`row_blocks`."""
    if not isinstance(Xb, tuple):
        return Xb @ theta
    out = None
    const = 0.0
    for c, t in zip(Xb, theta):
        if c is None:
            const += t
        elif out is None:
            out = c * t
        else:
            out += c * t
    out += const
    return out


def block_tvec(Xb, v: np.ndarray) -> np.ndarray:
    """``Xb' v`` for a block from :func:`row_blocks`."""
    if not isinstance(Xb, tuple):
        return Xb.T @ v
    return np.array([v.sum() if c is None else c @ v for c in Xb])


def block_gram(Xb, c: np.ndarray | None = None) -> np.ndarray:
    """``Xb' diag(c) Xb`` (``c=None``: ``Xb' Xb``) for a block from :func:`row_blocks`."""
    if not isinstance(Xb, tuple):
        Xc = Xb if c is None else Xb * c[:, None]
        return Xc.T @ Xb
    p = len(Xb)
    G = np.empty((p, p))
    n = next(len(a) for a in Xb if a is not None)
    for a in range(p):
        xa = Xb[a]
        if xa is None:
            ca = c
        else:
            ca = xa if c is None else c * xa
        for b in range(a, p):
            xb = Xb[b]
            if ca is None:  # intercept, unweighted
                val = float(n) if xb is None else xb.sum()
            else:
                val = ca.sum() if xb is None else ca @ xb
            G[a, b] = G[b, a] = val
    return G


def block_outer(Xb, s: np.ndarray) -> np.ndarray:
    """``sum_i s_i^2 x_i x_i'`` = ``U' U`` with ``U = diag(s) Xb``, for a block from :func:`row_blocks`."""
    if not isinstance(Xb, tuple):
        U = Xb * s[:, None]
        return U.T @ U
    u = [s if c is None else c * s for c in Xb]
    p = len(u)
    G = np.empty((p, p))
    for a in range(p):
        for b in range(a, p):
            G[a, b] = G[b, a] = u[a] @ u[b]
    return G


def _finite(*arrays) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise NonFiniteData("the population data contain NaN or infinite values")


@dataclass
class Fit:
    """A fitted M-estimator: estimate, influence rows (or only their second moment) and mean Hessian.

    ``meat`` is ``psi' psi / n`` (the influence rows have mean zero at the fit), kept instead of ``psi``
    for population-sized fits; ``leverage`` holds the diagonal of the (weighted) hat matrix where the
    model has one, for HC3-type small-sample variances.
    """

    theta: np.ndarray
    psi: np.ndarray | None
    hessian: np.ndarray
    iterations: int = 0
    meat: np.ndarray | None = None
    leverage: np.ndarray | None = None

    def second_moment(self) -> np.ndarray:
        """``psi' psi / n`` (from ``meat`` when the rows were not kept)."""
        if self.meat is not None:
            return self.meat
        return self.psi.T @ self.psi / self.psi.shape[0]


def _influence(X, score_weight, Hinv, keep_psi):
    """Influence rows ``(X * score_weight) @ Hinv'`` or only their second moment."""
    n = X.shape[0]
    if keep_psi:
        return (X * score_weight[:, None]) @ Hinv.T, None
    S2 = (X * (score_weight**2)[:, None]).T @ X / n
    return None, Hinv @ S2 @ Hinv.T


def _leverage(X, curvature, Hinv):
    n = X.shape[0]
    return curvature * np.einsum("ij,jk,ik->i", X, Hinv, X) / n


def _solve(H: np.ndarray, g: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.solve(H, g)
    except np.linalg.LinAlgError:
        raise EstimationError(
            f"the {what} Hessian is singular: the design has collinear columns or an empty category"
        ) from None


def fit_ols(X: np.ndarray, z: np.ndarray, w: np.ndarray, keep_psi: bool = True) -> Fit:
    """Weighted least squares of ``z`` on ``X`` with its influence rows.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    z : ndarray, shape (n,)
    w : ndarray, shape (n,)
        Weights scaled to mean one.

    Returns
    -------
    Fit

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
    >>> fit = fit_ols(X, np.array([1.0, 3.0, 5.0, 7.0]), np.ones(4))
    >>> np.round(fit.theta, 6).tolist()
    [1.0, 2.0]
    """
    if not keep_psi:
        with one_blas_thread():
            return _ols_population(X, z, w)
    n = X.shape[0]
    Xw = X * w[:, None]
    H = Xw.T @ X / n
    theta = _solve(H, Xw.T @ z / n, "least-squares")
    resid = z - X @ theta
    Hinv = np.linalg.inv(H)
    psi, meat = _influence(X, w * resid, Hinv, keep_psi)
    lev = _leverage(X, w, Hinv) if keep_psi else None
    return Fit(theta, psi, H, meat=meat, leverage=lev)


def _ols_population(X, z, w) -> Fit:
    """:func:`fit_ols` without influence rows, in two blocked passes (no N x p temporaries).

    Pass one sums ``X'WX`` and ``X'Wz``; pass two the meat ``sum w^2 r^2 x x'`` at the fit. ``w=None``
    means unweighted (no multiplies by ones).
    """
    N, p = X.shape
    G = np.zeros((p, p))
    b = np.zeros(p)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf data: refused by _finite below
        for i, j, Xb in row_blocks(X):
            G += block_gram(Xb, None if w is None else w[i:j])
            b += block_tvec(Xb, z[i:j] if w is None else w[i:j] * z[i:j])
    _finite(G, b)
    H = G / N
    theta = _solve(H, b / N, "least-squares")
    S2 = np.zeros((p, p))
    for i, j, Xb in row_blocks(X):
        s = z[i:j] - block_matvec(Xb, theta)
        if w is not None:
            s *= w[i:j]
        S2 += block_outer(Xb, s)
    Hinv = np.linalg.inv(H)
    return Fit(theta, None, H, meat=Hinv @ (S2 / N) @ Hinv.T)


def _logistic_pass(X, z, w, theta, meat: bool = False, hessian: bool = True):
    """One blocked pass at ``theta``: ``sum x (mu - z) w``, ``sum w mu (1 - mu) x x'`` (unless not
    ``hessian``: then None) and, when ``meat``, the score sums ``sum u``, ``sum u u'`` with
    ``u = x w (z - mu)``."""
    p = X.shape[1]
    g = np.zeros(p)
    H = np.zeros((p, p)) if hessian else None
    S2 = np.zeros((p, p)) if meat else None
    us = np.zeros(p) if meat else None
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf data: refused by _finite below
        g, H, S2, us = _logistic_sums(X, z, w, theta, g, H, S2, us)
    _finite(g, *([] if H is None else [H]))
    return g, H, S2, us


# rows per block of a fused logistic / ordinal pass: its few temporaries stay in the L2 cache
_PASS_BLOCK = 8192


def t_blocks(X, block: int = _PASS_BLOCK):
    """``(start, stop, XT)`` with ``XT`` the (p, rows) transpose of each block of an (N, p) array or
    :class:`ColumnDesign` (a ColumnDesign's block is copied into one reused buffer, its intercept
    row written once): the products of a pass are then a few BLAS calls on the whole block.

    Examples
    --------
    >>> [(i, j, b.shape) for i, j, b in t_blocks(ColumnDesign([None, np.arange(5.0)]), block=2)]
    [(0, 2, (2, 2)), (2, 4, (2, 2)), (4, 5, (2, 1))]
    """
    N, p = X.shape
    if not isinstance(X, ColumnDesign):
        for i in range(0, N, block):
            yield i, min(i + block, N), X[i:i + block].T
        return
    buf = np.empty((p, min(block, N)))
    for k, c in enumerate(X.columns):
        if c is None:
            buf[k] = 1.0
    for i in range(0, N, block):
        j = min(i + block, N)
        XT = buf[:, : j - i]
        for k, c in enumerate(X.columns):
            if c is not None:
                XT[k] = c[i:j]
        yield i, j, XT


# passes over at least this many rows run the numba kernels of _numba_kernels.py when numba can be
# imported (the `bayes` extra brings it): importing numba costs ~0.5 s once per process, so smaller
# calls never pay it. The NumPy code below is the reference and the fallback.
_FAST_MIN_ROWS = 500_000
_NB_BLOCK = 8192  # rows per block of a numba logistic pass
_FAST: dict = {}


def fast_kernels(rows: int):
    """The numba kernels (module :mod:`rectify.estimators._numba_kernels`) for a pass over ``rows`` rows,
    or ``None`` -- then the NumPy code runs: under ``_FAST_MIN_ROWS`` rows, without numba, or with the
    environment variable ``RECTIFY_NO_NUMBA`` set.

    Examples
    --------
    >>> fast_kernels(10) is None
    True
    """
    if rows < _FAST_MIN_ROWS and not getattr(_FAST_SCOPE, "on", False):
        return None
    if "mod" not in _FAST:
        import os

        mod = None
        if not os.environ.get("RECTIFY_NO_NUMBA"):
            try:
                from . import _numba_kernels as mod
            except Exception:  # numba missing or broken: the NumPy passes
                mod = None
        _FAST["mod"] = mod
    return _FAST["mod"]


_FAST_SCOPE = __import__("threading").local()


class _fast_for:
    """A context in which every pass uses the kernels if a pass over ``rows`` rows would: the
    subsample solves and corrections of a frame-sized fit (numba is then imported already)."""

    def __init__(self, rows: int):
        self.on = fast_kernels(rows) is not None

    def __enter__(self):
        self.saved = getattr(_FAST_SCOPE, "on", False)
        _FAST_SCOPE.on = self.saved or self.on

    def __exit__(self, *exc):
        _FAST_SCOPE.on = self.saved


# passes over at least this many rows run the parallel kernels (``prange`` over _PAR_CHUNKS fixed row
# chunks: the result does not depend on the number of threads) when more than one core is usable; a
# design of at most _PAR_COLS columns held as contiguous columns (a ColumnDesign or a Fortran-ordered array)
_PAR_MIN_ROWS = _FAST_MIN_ROWS
_PAR_CHUNKS = 32
# inside a frame-sized fit (:class:`_fast_for`: its subsample solves and corrections) from this many rows
_PAR_SCOPED_MIN_ROWS = 16384
_PAR_COLS = 10


def _parallel_threads(rows: int) -> int:
    """Threads for a parallel pass over ``rows`` rows: numba's thread count (``NUMBA_NUM_THREADS``,
    ``numba.set_num_threads``) capped by the cores this process may run on; 1 (the serial kernels)
    under ``_PAR_MIN_ROWS`` rows (``_PAR_SCOPED_MIN_ROWS`` inside a frame-sized fit)."""
    if rows < (_PAR_SCOPED_MIN_ROWS if getattr(_FAST_SCOPE, "on", False) else _PAR_MIN_ROWS):
        return 1
    import os

    import numba

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        cores = os.cpu_count() or 1
    return max(1, min(numba.get_num_threads(), cores))


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view (numba compiles one signature for read-only arrays, whatever their source)."""
    v = a.view()
    v.flags.writeable = False
    return v


def _par_columns(X):
    """``(cols, ones)`` for the parallel kernels: ``_PAR_COLS`` read-only contiguous 1-D columns (empty
    past ``p`` and for the intercept) and the intercept flags; ``None`` when ``X`` is not held as columns."""
    p = X.shape[1]
    if p > _PAR_COLS:
        return None
    if isinstance(X, ColumnDesign):
        cols = X.columns
    elif isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype == float and X.flags.f_contiguous:
        cols = tuple(X.T)
    else:
        return None
    empty = _readonly(np.empty(0))
    ones = np.array([c is None for c in cols] + [False] * (_PAR_COLS - p))
    cols = tuple(empty if c is None else _readonly(np.ascontiguousarray(c)) for c in cols)
    return cols + (empty,) * (_PAR_COLS - p), ones


def _chunk_bounds(N: int) -> np.ndarray:
    return np.arange(_PAR_CHUNKS + 1, dtype=np.int64) * N // _PAR_CHUNKS


class _numba_threads:
    """A context in which numba's parallel kernels use ``n`` threads (restored afterwards)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import numba

        self.saved = numba.get_num_threads()
        if self.n != self.saved:
            numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        import numba

        if self.n != self.saved:
            numba.set_num_threads(self.saved)


def _parallel_setup(X):
    """``(threads, cols, ones)`` when a pass over ``X`` runs the parallel kernels, else ``None``."""
    threads = _parallel_threads(X.shape[0])
    if threads < 2:
        return None
    cols = _par_columns(X)
    return None if cols is None else (threads, *cols)


def _logistic_sums_parallel(nb, par, X, z, w, theta, g, H, S2, us):
    """:func:`_logistic_sums_numba` with the parallel kernel (its chunks' sums added in order)."""
    threads, cols, ones = par
    N, p = X.shape
    if np.shape(theta) != (p,) or np.shape(z) != (N,) or (w is not None and np.shape(w) != (N,)):
        raise ValueError("logistic pass: theta, z and w must match X (the kernel does not check bounds)")
    z = _readonly(np.ascontiguousarray(z, dtype=float))
    w = _readonly(np.empty(0) if w is None else np.ascontiguousarray(w, dtype=float))
    Gc, Hc, Sc = np.zeros((_PAR_CHUNKS, p)), np.zeros((_PAR_CHUNKS, p, p)), np.zeros((_PAR_CHUNKS, p, p))
    with _numba_threads(threads):
        nb.logistic_chunks(cols, ones, np.ascontiguousarray(theta, dtype=float), z, w, _chunk_bounds(N),
                           H is not None, S2 is not None, Gc, Hc, Sc)
    gs = Gc.sum(axis=0)
    g += gs
    if H is not None:
        H += _upper_to_full(Hc.sum(axis=0))
    if S2 is not None:
        S2 += _upper_to_full(Sc.sum(axis=0))
        us -= gs
    return g, H, S2, us


def _ordinal_sums_parallel(nb, par, X, P, w, beta, tau, hessian, meat, loglik):
    """:func:`_ordinal_sums_numba` with the parallel kernel (its chunks' sums added in order)."""
    threads, cols, ones = par
    N, p = X.shape
    K = P.shape[1]
    d = p + K - 1
    if np.shape(beta) != (p,) or np.shape(tau) != (K - 1,) or P.shape[0] != N or (w is not None and np.shape(w) != (N,)):
        raise ValueError("ordinal pass: beta, tau, P and w must match X (the kernel does not check bounds)")
    if not (P.flags.c_contiguous or P.flags.f_contiguous) or P.dtype != float:
        P = np.ascontiguousarray(P, dtype=float)
    w = _readonly(np.empty(0) if w is None else np.ascontiguousarray(w, dtype=float))
    Gc, Hc, Sc = np.zeros((_PAR_CHUNKS, d)), np.zeros((_PAR_CHUNKS, d, d)), np.zeros((_PAR_CHUNKS, d, d))
    LL, BAD = np.zeros(_PAR_CHUNKS), np.zeros(_PAR_CHUNKS, dtype=np.int64)
    with _numba_threads(threads):
        nb.ordinal_chunks(cols, ones, _readonly(P), w, np.ascontiguousarray(beta, dtype=float),
                          np.exp(-np.asarray(tau, dtype=float)), _chunk_bounds(N), hessian, meat, loglik,
                          Gc, Hc, Sc, LL, BAD)
    if BAD.any():
        raise EstimationError("ordinal model: a category probability underflowed; thresholds collapsed")
    return ((LL.sum() if loglik else np.nan), Gc.sum(axis=0), (_upper_to_full(Hc.sum(axis=0)) if hessian else None),
            (_upper_to_full(Sc.sum(axis=0)) if meat else None))


class ProbMatrix(np.ndarray):
    """An (N, K) matrix of answer probabilities gathered from separate columns by
    :func:`gather_prob_columns`, carrying what that pass found: ``stats = (smallest entry, smallest row
    sum, largest row sum, all finite, column sums)``. Views and copies carry nothing (``stats`` None),
    so the figures always belong to the object they came with; nothing in rectify writes into it."""

    stats = None

    def __array_finalize__(self, obj):
        self.stats = None


def gather_prob_columns(columns) -> np.ndarray:
    """The 1-D float columns ``columns`` (one per answer option) as one (N, K) column-major matrix.

    Over a frame-sized matrix with the compiled kernels (:func:`fast_kernels`) one parallel pass copies
    the columns and takes the checks of :func:`prob_row_checks` and the column sums on the way (a
    :class:`ProbMatrix` carrying them: they are then not taken again); otherwise ``np.stack``.

    Examples
    --------
    >>> gather_prob_columns([np.array([0.25, 0.5]), np.array([0.75, 0.5])]).tolist()
    [[0.25, 0.75], [0.5, 0.5]]
    """
    N, K = columns[0].shape[0], len(columns)
    nb = fast_kernels(N)
    threads = _parallel_threads(N) if nb is not None else 1
    if nb is None or threads < 2 or K > _PAR_COLS or any(c.dtype != float or c.ndim != 1 for c in columns):
        return np.stack(columns).T
    empty = _readonly(np.empty(0))
    cols = tuple(_readonly(np.ascontiguousarray(c)) for c in columns) + (empty,) * (_PAR_COLS - K)
    if any(c.shape[0] != N for c in cols[:K]):
        return np.stack(columns).T  # (raises NumPy's own error)
    P = np.empty((N, K), order="F")
    out = np.empty((_PAR_CHUNKS, 4 + K))
    with _numba_threads(threads):
        nb.gather_probs(cols, K, _chunk_bounds(N), P, out)
    M = P.view(ProbMatrix)
    M.stats = (float(out[:, 0].min()), float(out[:, 1].min()), float(out[:, 2].max()), not out[:, 3].any(),
               out[:, 4:].sum(axis=0))
    return M


def prob_row_checks(P: np.ndarray):
    """``(smallest entry, smallest row sum, largest row sum, all finite)`` of an (N, K) float matrix of
    answer probabilities: one parallel numba pass over a frame-sized matrix (:func:`fast_kernels`),
    else NumPy's row sums (on one BLAS thread) and minimum. The minimum and the row sums are taken
    over the rows with finite values; an empty matrix gives ``(0, 1, 1, True)``.

    Examples
    --------
    >>> prob_row_checks(np.array([[0.25, 0.75], [0.5, 0.5]]))
    (0.25, 1.0, 1.0, True)
    """
    N = P.shape[0]
    if not P.size:
        return 0.0, 1.0, 1.0, True
    if getattr(P, "stats", None) is not None:  # taken when the columns were gathered
        return P.stats[:4]
    nb = fast_kernels(N)
    if nb is not None and P.dtype == float and (P.flags.c_contiguous or P.flags.f_contiguous):
        out = np.empty((_PAR_CHUNKS, 4))
        with _numba_threads(_parallel_threads(max(N, _PAR_MIN_ROWS))):
            nb.prob_rows(_readonly(P), _chunk_bounds(N), out)
        return float(out[:, 0].min()), float(out[:, 1].min()), float(out[:, 2].max()), not out[:, 3].any()
    with one_blas_thread():  # (BLAS threads left spinning would slow the passes that follow)
        rs = P @ np.ones(P.shape[1])
    lo, hi = float(rs.min()), float(rs.max())  # (NaN propagates, inf shows at an end)
    return float(P.min()), lo, hi, bool(np.isfinite(lo) and np.isfinite(hi))


def _c_block(XT):
    """``XT`` as a C-contiguous (p, m) block (the kernels' layout)."""
    return XT if XT.flags.c_contiguous else np.ascontiguousarray(XT)


def _upper_to_full(A: np.ndarray) -> np.ndarray:
    return np.triu(A) + np.triu(A, 1).T


def _logistic_sums_numba(nb, X, z, w, theta, g, H, S2, us):
    """:func:`_logistic_sums` with the numba kernel: the block's ``exp(-x'theta)`` in NumPy, the rest in
    one kernel (the parallel kernel over many rows, :func:`_parallel_setup`)."""
    par = _parallel_setup(X)
    if par is not None:
        return _logistic_sums_parallel(nb, par, X, z, w, theta, g, H, S2, us)
    N, p = X.shape
    m0 = min(_NB_BLOCK, N)
    e, r, c, q = (np.empty(m0) for _ in range(4))
    z = np.ascontiguousarray(z, dtype=float)
    w = np.empty(0) if w is None else np.ascontiguousarray(w, dtype=float)
    Hu, Su = np.zeros((p, p)), np.zeros((p, p))
    gs = np.zeros(p)
    neg = -np.asarray(theta, dtype=float)
    with np.errstate(over="ignore"):
        for i, j, XT in t_blocks(X, m0):
            m = j - i
            XT = _c_block(XT)
            eb = np.exp(np.dot(neg, XT, out=e[:m]), out=e[:m])  # exp(-eta): the kernel takes 1 / (1 + it)
            nb.logistic_block(XT, z[i:j], w[i:j] if w.shape[0] else w, eb, gs, Hu, Su, H is not None,
                              S2 is not None, r[:m], c[:m], q[:m])
    g += gs
    if H is not None:
        H += _upper_to_full(Hu)
    if S2 is not None:
        S2 += _upper_to_full(Su)
        us -= gs
    return g, H, S2, us


def _logistic_sums(X, z, w, theta, g, H, S2, us):
    """The sums of :func:`_logistic_pass`, fused per block: ``eta`` and the gradient are one
    matrix-vector product each, the Hessian and the meat one small matrix product each (or one
    numba kernel per block, :func:`fast_kernels`)."""
    nb = fast_kernels(X.shape[0])
    if nb is not None:
        return _logistic_sums_numba(nb, X, z, w, theta, g, H, S2, us)
    m0 = min(_PASS_BLOCK, X.shape[0])
    e, r, c, A = np.empty(m0), np.empty(m0), np.empty(m0), np.empty((X.shape[1], m0))
    for i, j, XT in t_blocks(X):
        m = j - i
        mu = _expit(np.dot(theta, XT, out=e[:m]))
        rb = np.subtract(mu, z[i:j], out=r[:m])
        if w is not None:
            rb *= w[i:j]
        gb = XT @ rb
        g += gb
        if H is not None:
            cb = np.subtract(1.0, mu, out=c[:m])
            cb *= mu
            if w is not None:
                cb *= w[i:j]
            H += np.multiply(XT, cb, out=A[:, :m]) @ XT.T
        if S2 is not None:
            U = np.multiply(XT, rb, out=A[:, :m])
            S2 += U @ U.T
            us -= gb
    return g, H, S2, us


def _check_separation(theta: np.ndarray) -> None:
    if np.max(np.abs(theta)) > 50:
        raise EstimationError(
            "logistic regression diverges (coefficients beyond +/-50): the outcome is perfectly "
            "separated by the predictors in this sample; merge categories or use fewer predictors"
        )


def _spread_rows(N: int, rows: int, run: int = 32) -> np.ndarray:
    """About ``rows`` row positions out of ``N``: runs of ``run`` neighbouring rows at evenly spaced starts
    (a systematic sample of ``rows // run`` strata; copying runs reads a fraction of the frame, where
    every k-th row reads all of it)."""
    starts = (np.arange(rows // run) * (N // (rows // run)))[:, None]
    return (starts + np.arange(run)[None, :]).ravel()


def _take_rows(X, idx: np.ndarray):
    """Rows ``idx`` of an array or :class:`ColumnDesign`, copied contiguous in the same order (``np.take``
    on columns; indexing on row-major 2-D arrays, where ``np.take(axis=0)`` of a column-major array is
    ten times slower)."""
    if isinstance(X, ColumnDesign):
        return ColumnDesign([None if c is None else np.take(c, idx) for c in X.columns])
    if X.ndim == 2 and X.flags.f_contiguous and not X.flags.c_contiguous:
        # column-major stays column-major: the subsample's passes then run the frame's compiled kernel
        out = np.empty((idx.shape[0], X.shape[1]), dtype=X.dtype, order="F")
        for k in range(X.shape[1]):
            np.take(X[:, k], idx, out=out[:, k])
        return out
    return np.take(X, idx) if X.ndim == 1 else np.ascontiguousarray(X[idx])


def _subsample_start(fit, X, labels, w, theta, rows: int = 65536):
    """``fit(X_sub, labels_sub, w_sub, theta)`` on ``rows`` rows spread over the frame from ``theta``:
    a start within sampling error of the optimum, so that the full passes begin in Newton's quadratic
    phase. Returns ``(start, fit, data)``: the subsample's :class:`Fit` (its mean Hessian approximates
    the frame's to sampling error, good for a first chord step) and its ``(X, labels, w)``, or
    ``None, None`` for frames under ``4 * rows`` rows and on any failure (the start is then ``theta``)."""
    if X.shape[0] // rows < 4:
        return theta, None, None
    idx = _spread_rows(X.shape[0], rows)
    data = (_take_rows(X, idx), _take_rows(labels, idx), None if w is None else np.take(w, idx))
    try:
        sub = fit(*data, theta)
    except (EstimationError, ConvergenceError, NonFiniteData, np.linalg.LinAlgError):
        return theta, None, None
    return sub.theta, sub, data


# a fit over the frame stops at the first point whose own Newton step (with the Hessian summed at that
# point) is below this: that step is applied (its error is of the order of its square), and the
# Hessian and meat summed at that point are kept -- they differ from the solution's by the order of
# the step, a few 1e-11 relative
_FINISH = 3e-11


def _expit(eta: np.ndarray) -> np.ndarray:
    """The logistic function, in place on a temporary (three times faster than scipy's expit here)."""
    with np.errstate(over="ignore"):
        np.negative(eta, out=eta)
        np.exp(eta, out=eta)
        eta += 1.0
        return np.reciprocal(eta, out=eta)


def _logistic_loss(X, z, w, t, pen) -> float:
    total = 0.0
    for i, j, Xb in row_blocks(X):
        eta = block_matvec(Xb, t)
        zb = z[i:j]
        part = zb * log_expit(eta) + (1 - zb) * log_expit(-eta)
        total += float((part if w is None else w[i:j] * part).sum())
    return -total / X.shape[0] + 0.5 * float((pen * t * t).sum())


class _LogisticSub:
    """Derivatives of the logistic sums beyond the Hessian, from a subsample of the frame (the
    corrections they give need only a few digits): ``third(theta, s)`` is ``T(s, s) / 2`` of the mean
    loss (``sum w mu (1 - mu) (1 - 2 mu) (x's)^2 x / 2n``); ``moved(theta, d, N)`` the change of the
    Hessian sum ``sum w mu (1 - mu) x x'`` and of the meat sum ``sum w^2 (mu - z)^2 x x'`` of ``N`` rows
    when ``theta`` moves by ``d`` (to first order)."""

    def __init__(self, X, z, w):
        self.X, self.z, self.w = np.asarray(X), z, w

    def _mu(self, theta):
        return expit(self.X @ theta)

    def third(self, theta, s):
        mu = self._mu(theta)
        v = mu * (1.0 - mu) * (1.0 - 2.0 * mu) * (self.X @ s) ** 2
        if self.w is not None:
            v *= self.w
        return 0.5 * (self.X.T @ v) / self.X.shape[0]

    def moved(self, theta, d, N):
        # every 4th subsample row: this first-order move is of the order of 1e-11, needed to 1e-2
        X, z = self.X[::4], self.z[::4]
        mu = expit(X @ theta)
        c = mu * (1.0 - mu) * (X @ d)
        ch, cs = c * (1.0 - 2.0 * mu), 2.0 * c * (mu - z)
        if self.w is not None:
            w = self.w[::4]
            ch, cs = ch * w, cs * w * w
        scale = N / X.shape[0]
        return scale * (X.T * ch) @ X, scale * (X.T * cs) @ X


def _logistic_population(X, z, w, tol, max_iter, start, ridge, cov: bool = True) -> Fit:
    """:func:`fit_logistic` without influence rows: one fused blocked pass per Newton step.

    Each pass at a candidate gives its gradient and Hessian together, so an accepted step costs one
    pass over the frame. The fit stops at the first point whose own Newton step is below ``tol``
    (that point's gradient and Hessian are already summed); the pass expected to be the last also
    sums the meat of the sandwich. ``cov=False`` skips the meat (a start value only).
    """
    N, p = X.shape
    theta = np.zeros(p) if start is None else np.array(start, float)
    pen = np.full(p, ridge / N)
    if ridge:
        ones = np.ones(p, bool)
        for _, _, Xb in row_blocks(X):
            ones &= [True if c is None else bool(np.all(c == 1.0)) for c in Xb] if isinstance(Xb, tuple) \
                else np.all(Xb == 1.0, axis=0)
        pen[ones] = 0.0
    with _fast_for(N):
        theta, sub, sdata = _subsample_start(
            lambda *a: _logistic_population(*a[:3], 1e-4, 50, a[3], ridge, cov=False), X, z, w, theta)
    derivs = _LogisticSub(*sdata) if (sub is not None and cov) else None
    if sub is not None:
        n_sub = sdata[0].shape[0]
        # first step: a chord step with the subsample's mean Hessian (its error, like the start's, is
        # of sampling order, so the step lands as close as an exact Newton step would) -- the first
        # pass sums only the gradient
        Hs = (sub.hessian - np.diag(pen * (N / n_sub))) * N  # its penalty was ridge / n_sub: taken off
        g, _, S2, us = _logistic_pass(X, z, w, theta, hessian=False)
        exact = False
    else:
        g, Hs, S2, us = _logistic_pass(X, z, w, theta)
        exact = True  # Hs was summed at theta (not kept from an earlier point)
    grad = g / N + pen * theta
    prev = None
    for it in range(1, max_iter + 1):
        H = Hs / N + np.diag(pen)
        step = _solve(H, grad, "logistic")
        size = float(np.max(np.abs(step)))
        if S2 is not None and exact and size < _FINISH:
            # the last step applied; the Hessian, meat and score sums of this pass moved with it (to first
            # order: the score by the Hessian, the others from the subsample's derivatives)
            if derivs is not None:
                dH, dS = derivs.moved(theta, -step, N)
                us = us + Hs @ step
                Hs, S2 = Hs + dH, S2 + dS
            theta = theta - step
            break
        if size < tol:
            break
        # Newton converges quadratically: size^3 / prev^2 predicts the next step. The pass expected to
        # be the last also sums the meat; short of that, close to the optimum, the Hessian of the last
        # full pass is kept (its relative change is of the order of the step, so the steps still
        # shrink by orders of magnitude) and the pass sums only the gradient
        nxt = size ** 3 / max(prev * prev, 1e-300) if prev else np.inf
        if derivs is not None and exact and size < 1e-3:
            # a second-order step: with the third derivatives (from the subsample, to a few per cent)
            # the next step is a few per cent of this correction (plus a term of order size^3) instead
            # of the order of size^2 -- one pass fewer before the last
            corr = _solve(H, derivs.third(theta, step), "logistic")
            big = float(np.max(np.abs(corr)))
            step = step + corr
            nxt = 0.05 * big + big * big / size
        cand = theta - step
        near = cov and nxt < _FINISH
        chord = size < 1e-4 and not near
        g, Hs_c, S2_c, us_c = _logistic_pass(X, z, w, cand, meat=near, hessian=not chord)
        grad_c = g / N + pen * cand
        t = 1.0
        if np.linalg.norm(grad_c) >= np.linalg.norm(grad):
            cur = _logistic_loss(X, z, w, theta, pen)
            while True:
                t /= 2
                cand = theta - t * step
                if _logistic_loss(X, z, w, cand, pen) <= cur + 1e-14 or t < 1e-10:
                    break
            chord = False
            g, Hs_c, S2_c, us_c = _logistic_pass(X, z, w, cand, meat=near)
            grad_c = g / N + pen * cand
        exact = not chord
        theta, grad, S2, us = cand, grad_c, S2_c, us_c
        Hs = Hs if chord else Hs_c
        prev = t * size
        _check_separation(theta)
    else:
        raise ConvergenceError(f"logistic regression did not converge in {max_iter} Newton steps")
    if not cov:
        return Fit(theta, None, Hs / N + np.diag(pen), it)
    if S2 is None or not exact:
        _, Hs, S2, us = _logistic_pass(X, z, w, theta, meat=True)
    H = Hs / N + np.diag(pen)
    Hinv = np.linalg.inv(H)
    if ridge:  # scores u - a with a = pen * theta: sum (u - a)(u - a)' from sum u u' and sum u
        a = pen * theta
        S2 = S2 - np.outer(us, a) - np.outer(a, us) + N * np.outer(a, a)
    return Fit(theta, None, H, it, meat=Hinv @ (S2 / N) @ Hinv.T)


def fit_logistic(X: np.ndarray, z: np.ndarray, w: np.ndarray, tol: float = 1e-12,
                 max_iter: int = 100, start: np.ndarray | None = None, ridge: float = 0.0,
                 keep_psi: bool = True) -> Fit:
    """Weighted logistic regression (labels in [0, 1], soft labels allowed) by Newton's method.

    ``ridge`` adds ``ridge / (2 n) * ||beta||^2`` to the mean loss (an intercept column of ones is
    not penalised); the default 0 is the maximum-likelihood fit.

    Examples
    --------
    >>> X = np.column_stack([np.ones(6), [-2.0, -1.0, 0.0, 0.0, 1.0, 2.0]])
    >>> fit = fit_logistic(X, np.array([0, 1, 0, 1, 0, 1.0]), np.ones(6))
    >>> np.round(fit.theta, 4).tolist()
    [0.0, 0.4196]
    """
    if not keep_psi:
        with one_blas_thread():
            return _logistic_population(X, z, w, tol, max_iter, start, ridge)
    n, p = X.shape
    theta = np.zeros(p) if start is None else np.array(start, float)
    pen = np.full(p, ridge / n)
    if ridge:
        pen[np.all(X == 1.0, axis=0)] = 0.0

    def loss(t: np.ndarray) -> float:
        eta = X @ t
        return float(-(w * (z * log_expit(eta) + (1 - z) * log_expit(-eta))).sum() / n + 0.5 * (pen * t * t).sum())

    mu = expit(X @ theta)
    grad = X.T @ (w * (mu - z)) / n + pen * theta
    for it in range(1, max_iter + 1):
        H = (X * (w * mu * (1 - mu))[:, None]).T @ X / n + np.diag(pen)
        step = _solve(H, grad, "logistic")
        # a full Newton step is accepted when it shrinks the gradient (the usual case); otherwise
        # backtrack on the loss itself
        cand = theta - step
        mu_c = expit(X @ cand)
        grad_c = X.T @ (w * (mu_c - z)) / n + pen * cand
        t = 1.0
        if np.linalg.norm(grad_c) >= np.linalg.norm(grad) and np.max(np.abs(step)) > tol:
            cur = loss(theta)
            while True:
                t /= 2
                cand = theta - t * step
                if loss(cand) <= cur + 1e-14 or t < 1e-10:
                    break
            mu_c = expit(X @ cand)
            grad_c = X.T @ (w * (mu_c - z)) / n + pen * cand
        theta, mu, grad = cand, mu_c, grad_c
        if np.max(np.abs(t * step)) < tol:
            break
        _check_separation(theta)
    else:
        raise ConvergenceError(f"logistic regression did not converge in {max_iter} Newton steps")
    H = (X * (w * mu * (1 - mu))[:, None]).T @ X / n + np.diag(pen)
    Hinv = np.linalg.inv(H)
    if ridge:
        psi = (X * (w * (z - mu))[:, None] - pen * theta) @ Hinv.T
        meat = None
        if not keep_psi:
            psi, meat = None, Hinv @ ((X * (w * (z - mu))[:, None] - pen * theta).T
                                      @ (X * (w * (z - mu))[:, None] - pen * theta) / n) @ Hinv.T
    else:
        psi, meat = _influence(X, w * (z - mu), Hinv, keep_psi)
    lev = _leverage(X, w * mu * (1 - mu), Hinv) if keep_psi else None
    return Fit(theta, psi, H, it, meat=meat, leverage=lev)


def ordinal_probabilities(X: np.ndarray, beta: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Category probabilities of the cumulative-logit model P(y <= k | x) = F(tau_k - x'beta).

    Examples
    --------
    >>> P = ordinal_probabilities(np.zeros((1, 1)), np.array([0.0]), np.array([0.0]))
    >>> P.round(3).tolist()
    [[0.5, 0.5]]
    """
    eta = X @ beta
    cum = expit(tau[None, :] - eta[:, None])
    cum = np.column_stack([np.zeros(len(eta)), cum, np.ones(len(eta))])
    return np.diff(cum, axis=1)


def _ordinal_block(XT, PT, w, beta, tau, hessian=True, meat=False, rows=False, loglik=True):
    """Log-likelihood sums of the cumulative-logit model on one block, vectorised over categories.

    ``XT`` (p, m) and ``PT`` (K, m) are the block's design and soft labels, transposed. With
    ``a_j = tau_j - x'beta`` the likelihood ``sum_k P_k log(F(a_k) - F(a_{k-1}))`` has a tridiagonal
    Hessian in ``a``; the parameters enter through ``d a_j / d tau_j = 1``, ``d a_j / d beta = -x``.
    Returns ``(ll, score, H, S2, S)``: the sums of the log-likelihood (NaN unless ``loglik``: the
    logarithms are the dearest part of a pass) and of its score (beta then tau), of its Hessian (``None`` unless ``hessian``), of the score's outer products (``meat``) and
    the per-row scores (``rows``, shape (m, p + K - 1)).
    """
    K, m = PT.shape
    F = _expit(tau[:, None] - (beta @ XT)[None, :]) if XT.shape[0] else _expit(np.repeat(tau[:, None], m, 1))
    f = F * (1.0 - F)
    pi = np.empty((K, m))
    pi[0] = F[0]
    np.subtract(F[1:], F[:-1], out=pi[1:-1])
    np.subtract(1.0, F[-1], out=pi[-1])
    Pw = PT if w is None else PT * w
    if pi.min() > 0:  # the usual case: no masks
        ll = float((Pw * np.log(pi)).sum()) if loglik else np.nan
        q = Pw / pi  # P_k / pi_k
    else:
        ok = pi > 0
        if np.any(PT[~ok] > 0):
            raise EstimationError("ordinal model: a category probability underflowed; thresholds collapsed")
        pi = np.where(ok, pi, 1.0)  # rows without weight on a vanished category: they add nothing
        ll = float((Pw * np.log(pi)).sum()) if loglik else np.nan
        q = np.where(ok, Pw / pi, 0.0)
    dq = q[:-1] - q[1:]
    d = f * dq  # score of tau_j; the score of beta is -x sum_j d_j
    D = d.sum(axis=0)
    score = np.concatenate([-(XT @ D), d.sum(axis=1)])
    H = S2 = S = None
    if hessian:
        q2 = q / pi  # P_k / pi_k^2
        fp = f * (1.0 - 2.0 * F)
        diag = fp * dq - f * f * (q2[:-1] + q2[1:])  # d2 ll / d a_j^2
        off = f[:-1] * f[1:] * q2[1:-1]  # d2 ll / d a_j d a_{j+1}
        r = diag.copy()  # row sums of the per-row Hessian in a
        r[:-1] += off
        r[1:] += off
        p = XT.shape[0]
        H = np.empty((p + K - 1, p + K - 1))
        H[:p, :p] = (XT * r.sum(axis=0)) @ XT.T
        H[:p, p:] = -(XT @ r.T)
        H[p:, :p] = H[:p, p:].T
        Htt = np.diag(diag.sum(axis=1))
        o = off.sum(axis=1)
        Htt[np.arange(K - 2), np.arange(1, K - 1)] = o
        Htt[np.arange(1, K - 1), np.arange(K - 2)] = o
        H[p:, p:] = Htt
    if meat or rows:
        U = XT * D
        if meat:
            p = XT.shape[0]
            S2 = np.empty((p + K - 1, p + K - 1))
            S2[:p, :p] = U @ U.T
            S2[:p, p:] = -(U @ d.T)
            S2[p:, :p] = S2[:p, p:].T
            S2[p:, p:] = d @ d.T
        if rows:
            S = np.concatenate([-U, d]).T
    return ll, score, H, S2, S


def _ordinal_sums_numba(nb, X, P, w, beta, tau, hessian, meat, loglik):
    """The sums of :func:`_ordinal_pass` (no per-row scores) with the numba kernel: the block's
    ``exp(x'beta)`` in NumPy, everything else in one kernel per block (the parallel kernel over many
    rows, :func:`_parallel_setup`)."""
    par = _parallel_setup(X)
    if par is not None:
        return _ordinal_sums_parallel(nb, par, X, P, w, beta, tau, hessian, meat, loglik)
    n, p = X.shape
    K = P.shape[1]
    d = p + K - 1
    g, H, S2 = np.zeros(d), np.zeros((d, d)), np.zeros((d, d))
    w = np.empty(0) if w is None else np.ascontiguousarray(w, dtype=float)
    ct = np.exp(-np.asarray(tau, dtype=float))
    ll, m_prev, scratch = 0.0, -1, None
    for i, j, XT in t_blocks(X):
        m = j - i
        XT = _c_block(XT)
        if m != m_prev:  # scratch of this block's length (C-contiguous rows)
            scratch = (np.empty((K - 1, m)), np.empty((K, m)), np.empty((K, m)), np.empty((K - 1, m)),
                       np.empty((K - 1, m)), np.empty(m), np.empty(m))
            m_prev = m
        e = np.exp(np.dot(beta, XT)) if p else np.ones(m)
        lb, bad = nb.ordinal_block(XT, np.ascontiguousarray(P[i:j].T), w[i:j] if w.shape[0] else w, e, ct, hessian,
                                   meat, loglik, g, H, S2, *scratch)
        if bad:
            raise EstimationError("ordinal model: a category probability underflowed; thresholds collapsed")
        ll += lb
    return (ll if loglik else np.nan), g, (_upper_to_full(H) if hessian else None), \
        (_upper_to_full(S2) if meat else None)


def _ordinal_pass(X, P, w, beta, tau, hessian=True, meat=False, rows=False, loglik=True):
    """:func:`_ordinal_block` summed over the row blocks of ``X`` (an array or :class:`ColumnDesign`)
    and ``P``; returns the mean log-likelihood, the summed score, the mean Hessian of the mean
    negative log-likelihood, the summed meat and the per-row scores (``rows``). Large passes without
    per-row scores run the numba kernel (:func:`fast_kernels`)."""
    n = X.shape[0]
    nb = None if rows else fast_kernels(n)
    if nb is not None:
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            ll, g, H, S2 = _ordinal_sums_numba(nb, X, P, w, beta, tau, hessian, meat, loglik)
        _finite(g, *([] if H is None else [H]))
        return ll / n, g, (None if H is None else -H / n), S2, None
    ll, g, H, S2, S = 0.0, 0.0, 0.0, 0.0, []
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for i, j, XT in t_blocks(X, n if rows else _PASS_BLOCK):
            b = _ordinal_block(XT, np.ascontiguousarray(P[i:j].T), None if w is None else w[i:j], beta, tau,
                               hessian, meat, rows, loglik)
            ll, g = ll + b[0], g + b[1]
            H = H + b[2] if hessian else None
            S2 = S2 + b[3] if meat else None
            if rows:
                S.append(b[4])
    _finite(np.atleast_1d(g), *([] if H is None else [H]))
    return ll / n, g, (None if H is None else -H / n), S2, (np.concatenate(S) if rows else None)


def _column_sums(P: np.ndarray) -> np.ndarray:
    """``P.sum(axis=0)``; over a frame-sized float matrix one parallel numba pass (:func:`fast_kernels`)."""
    nb = fast_kernels(P.shape[0])
    if nb is None or P.ndim != 2 or P.dtype != float or not (P.flags.c_contiguous or P.flags.f_contiguous):
        return P.sum(axis=0)
    out = np.empty((_PAR_CHUNKS, P.shape[1]))
    with _numba_threads(_parallel_threads(max(P.shape[0], _PAR_MIN_ROWS))):
        nb.col_sums(_readonly(P), _chunk_bounds(P.shape[0]), out)
    return out.sum(axis=0)


def _ordinal_start(P, w, p, start, sums=None):
    if w is None:
        marg = (_column_sums(P) if sums is None else sums) / P.shape[0]
    else:
        marg = (w @ P) / w.sum()
    if np.any(marg <= 0):
        empty = [str(k) for k in np.where(marg <= 0)[0]]
        raise EstimationError(
            f"ordinal model: answer categor{'y' if len(empty) == 1 else 'ies'} {', '.join(empty)} "
            f"never occur in this sample; its threshold is not estimable -- merge it with a neighbour"
        )
    if start is not None and np.all(np.diff(np.asarray(start, float)[p:]) > 0):
        return np.array(start, float)  # e.g. a fit on the pilot
    cum = np.clip(np.cumsum(marg)[:-1], 1e-6, 1 - 1e-6)
    return np.concatenate([np.zeros(p), np.log(cum / (1 - cum))])


class _OrdinalSub:
    """Derivatives of the cumulative-logit sums beyond the Hessian, as central differences (step 1e-3:
    an error of order 1e-6 from truncation and 1e-9 from rounding) of passes over a subsample of a frame
    of ``rows`` rows (the corrections they give need a few digits): ``third(theta, s)`` is
    ``T(s, s) / 2`` of the mean negative log-likelihood (or None); ``moved(theta, d)`` the first-order
    change of its mean Hessian and of the frame's meat sum when ``theta`` moves by ``d`` (or None)."""

    h = 1e-3

    def __init__(self, X, P, w, p, rows):
        self.X, self.P, self.w, self.p, self.rows = X, P, w, p, rows

    def _passes(self, theta, d, centre, **kw):
        size = float(np.sqrt(d @ d))
        if not size > 0:
            return None, size
        u = d / size
        pts = (theta + self.h * u, theta - self.h * u) + ((theta,) if centre else ())
        p = self.p
        if not all(np.all(np.diff(t[p:]) > 0) for t in pts):
            return None, size
        try:
            with _fast_for(self.rows):
                return [_ordinal_pass(self.X, self.P, self.w, t[:p], t[p:], loglik=False, **kw) for t in pts], size
        except (EstimationError, NonFiniteData):
            return None, size

    def third(self, theta, s):
        res, size = self._passes(theta, s, True, hessian=False)
        if res is None:
            return None
        gp, gm, g0 = (r[1] for r in res)
        return -0.5 * (gp + gm - 2.0 * g0) / self.X.shape[0] / (self.h * self.h) * size * size

    def moved(self, theta, d):
        res, size = self._passes(theta, d, False, meat=True)
        if res is None:
            return None
        (_, _, Hp, Sp, _), (_, _, Hm, Sm, _) = res
        k = size / (2.0 * self.h)
        return k * (Hp - Hm), k * (Sp - Sm) * (self.rows / self.X.shape[0])


def _ordinal_newton(X, P, w, tol, max_iter, start, ridge, cov=True, rows=False, hess0=None, derivs=None):
    """Newton's method on the (penalised) mean log-likelihood; one fused pass over the rows per
    accepted step (score and Hessian together). A full step is accepted when it shrinks the score;
    otherwise a line search on the log-likelihood itself backtracks (the only passes that take the
    logarithms). The pass expected to be the last also sums the meat (``cov``) or keeps the per-row
    scores (``rows``).

    A frame-sized fit (``cov`` without ``rows``) makes as few passes as the logistic one: with
    ``hess0`` (the mean Hessian of a subsample's fit) the first pass sums only the score (a chord
    step), close to the optimum a pass keeps the last Hessian, ``derivs`` (:class:`_OrdinalSub`) makes
    the steps second-order, and the fit ends at the meat pass whose own Newton step is below
    ``_FINISH`` (that step applied, see ``_FINISH``)."""
    n, p = X.shape
    theta = np.asarray(start, float)
    pen = np.r_[np.full(p, ridge / n), np.zeros(P.shape[1] - 1)]
    finishing = cov and not rows

    def run(t, last, loglik=False, hessian=True):
        ll, g, H, S2, S = _ordinal_pass(X, P, w, t[:p], t[p:], hessian=hessian, meat=cov and last and not rows,
                                        rows=rows and last, loglik=loglik)
        return ll - 0.5 * float((pen * t * t).sum()), g, (None if H is None else H + np.diag(pen)), S2, S

    def ordered(t):
        return bool(np.all(np.diff(t[p:]) > 0))

    exact = not (finishing and hess0 is not None)
    _, g, H, S2, S = run(theta, False, hessian=exact)
    if not exact:
        H = hess0 + np.diag(pen)
    grad = -g / n + pen * theta
    prev = None
    for it in range(1, max_iter + 1):
        step = _solve(H, grad, "ordinal")
        size = float(np.max(np.abs(step)))
        # (a step below tol after one below tol: rounding noise, whatever _FINISH asks)
        if finishing and S2 is not None and exact and (size < _FINISH or (prev is not None and prev < tol)):
            # the last step applied; the sums of this pass moved with it to first order (as in
            # _logistic_population): the score by the Hessian, the others from the subsample
            moved = None if derivs is None else derivs.moved(theta, -step)
            if moved is not None:
                g = g + n * (H - np.diag(pen)) @ step
                H, S2 = H + moved[0], S2 + moved[1]
            theta = theta - step
            break
        nxt = size**3 / max(prev * prev, 1e-300) if prev is not None else np.inf
        corr = derivs.third(theta, step) if (derivs is not None and exact and size < 1e-3) else None
        if corr is not None:  # a second-order step, as in _logistic_population
            corr = _solve(H, corr, "ordinal")
            big = float(np.max(np.abs(corr)))
            step = step + corr
            nxt = 0.05 * big + big * big / size
        near = nxt < (_FINISH if finishing else tol)
        last = near or size < tol
        chord = finishing and size < 1e-4 and not last
        t, new = 1.0, None
        if ordered(theta - step):
            try:
                new = run(theta - step, last, hessian=not chord)
            except EstimationError:
                new = None
        if new is None or np.linalg.norm(-new[1] / n + pen * (theta - step)) >= np.linalg.norm(grad):
            chord = False
            cur = run(theta, False, loglik=True, hessian=False)[0]
            while True:
                t /= 2
                if t < 1e-12:
                    raise ConvergenceError("ordinal model: line search failed; the likelihood is flat or separated")
                cand = theta - t * step
                if not ordered(cand):
                    continue
                try:
                    new = run(cand, near or t * size < tol, loglik=True)
                except EstimationError:
                    continue
                if new[0] >= cur - 1e-14:
                    break
        theta = theta - t * step
        _, g, H_new, S2, S = new
        H = H if chord else H_new
        exact = not chord
        grad = -g / n + pen * theta
        prev = t * size
        if prev < tol and not finishing:
            break
        if np.max(np.abs(theta[:p])) > 50:
            raise EstimationError(
                "ordinal model diverges (coefficients beyond +/-50): the answers are perfectly separated by "
                "the predictors in this sample"
            )
    else:
        raise ConvergenceError(f"ordinal model did not converge in {max_iter} Newton steps")
    if (finishing and (S2 is None or not exact)) or (rows and S is None):
        _, g, H, S2, S = run(theta, True)
    fit = Fit(theta, None, H, it)
    if not (cov or rows):
        return fit
    a = pen * theta  # the penalty's part of each row's score
    Hinv = np.linalg.inv(H)
    if rows:
        fit.psi = (S - a) @ Hinv.T
    else:
        us = g
        S2 = S2 - np.outer(us, a) - np.outer(a, us) + n * np.outer(a, a)
        fit.meat = Hinv @ (S2 / n) @ Hinv.T
    return fit


def fit_ordinal(X: np.ndarray, P: np.ndarray, w: np.ndarray | None, tol: float = 1e-10,
                max_iter: int = 200, keep_psi: bool = True, start: np.ndarray | None = None,
                ridge: float = 0.0) -> Fit:
    """Weighted cumulative-logit (proportional odds) regression with soft labels.

    ``X`` has no intercept column; ``P`` is (n, K): one-hot human answers or an LLM's answer
    distribution. Parameters are ``(beta_1..beta_p, tau_1..tau_{K-1})`` with
    ``P(y <= k | x) = logistic(tau_k - x'beta)`` (the parameterisation of statsmodels' OrderedModel,
    but with the thresholds themselves rather than log increments). ``ridge`` adds
    ``ridge / (2 n) * ||beta||^2`` to the mean negative log-likelihood (the thresholds are not
    penalised). The one cumulative-logit solver of rectify: the PPI ordinal core and the covariates
    baseline (:func:`rectify.llm.baseline.fit_cumulative_logit`) both call it.

    Newton's method with a line search; each step is one fused pass over row blocks (``X`` may be a
    :class:`ColumnDesign`). ``keep_psi=False`` (population-sized fits) starts from a fit on a
    subsample and keeps only the second moment of the influence rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 1))
    >>> y = (X[:, 0] + rng.logistic(size=400) > 0).astype(int) + (X[:, 0] + rng.logistic(size=400) > 1)
    >>> fit = fit_ordinal(X, np.eye(3)[y], np.ones(400))
    >>> fit.theta.shape
    (3,)
    """
    if not isinstance(X, ColumnDesign):
        X = np.asarray(X, dtype=float)
    sums = None if getattr(P, "stats", None) is None else P.stats[4]  # (from gather_prob_columns)
    P = np.asarray(P, dtype=float)
    n, p = X.shape
    K = P.shape[1]
    if K < 2:
        raise EstimationError("ordinal model needs at least two categories")
    w = None if w is None else np.asarray(w, dtype=float)
    theta = _ordinal_start(P, w, p, start, sums)
    with one_blas_thread() if not keep_psi else _nullcontext():
        if not keep_psi:
            with _fast_for(n):
                theta, sub, sdata = _subsample_start(
                    lambda *a: _ordinal_newton(*a[:3], 1e-4, 50, a[3], ridge, cov=False), X, P, w, theta)
            hess0 = derivs = None
            if sub is not None:
                hess0 = sub.hessian - np.diag(np.r_[np.full(p, ridge / sdata[0].shape[0]), np.zeros(K - 1)])
                derivs = _OrdinalSub(*sdata, p, n)
            return _ordinal_newton(X, P, w, tol, max_iter, theta, ridge, cov=True, hess0=hess0, derivs=derivs)
        return _ordinal_newton(X, P, w, tol, max_iter, theta, ridge, cov=False, rows=True)


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()
