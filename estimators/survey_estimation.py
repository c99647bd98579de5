"""Design-based estimation on (calibrated) weights: means, totals, shares, quantiles, OLS, logit.

Why one module of ~750 lines: every estimator here (mean, total, shares, quantile, OLS, logit) goes
through the same design object and the same residualised linearization or replicate driver;
splitting would separate the estimators from the variance code they share to keep R ``survey``'s
numbers.

Standard errors come from Taylor linearization of the estimating equations, with the influence
values residualized for every weighting step (the "residual method" of calibration: a GREG step
replaces ``w_i u_i`` by ``w_i (u_i - x_i' B)``), and the stratified (and optionally clustered)
with-replacement variance with a finite population correction. This reproduces R's ``survey``
package (``svyrecvar``): :class:`GregStep` is ``calibrate()``, :class:`PostStratStep` is
``postStratify()`` and :class:`RakeBackfitStep` is the ten back-fitting sweeps of ``rake()``.

Small-sample option (not in R): with ``SurveyDesign(small_sample="hc3")`` the residualized influence
values are divided by ``1 - h_i``, where ``h_i = d_i x_i' (X' D X)^- x_i`` is the leverage of row ``i``
in the calibration regression (``"hc2"``: by ``sqrt(1 - h_i)``), and means, totals and shares get
Student-t intervals with ``degf - rank(X) + 1`` degrees of freedom. ``"hc3"`` is the linearized
jackknife of a calibration estimator (Valliant 1993; Valliant, Dorfman and Royall 2000, the ``v_J``
estimator): the plain linearization under-states the variance when a few heavily weighted rows
carry a calibration category, because those rows' residuals are pulled towards zero by the fit.
The default (``None``) is R's ``svyrecvar``, which has no such correction.

Estimand (:mod:`rectify.estimand`): with ``SurveyDesign(target=Target(...), frame_size=N)`` the
linearization follows the estimand and the pilot's place in the frame: ``a`` are the residualized
influence values, ``psi(y)`` the raw ones and ``b = psi(y) - a`` the part the calibration totals
carry. Frame, inside: ``(1 - n/N) V(a)``; superpopulation, inside: ``(1 - n/N) V(a) + (n/N) V(psi(y))``;
frame, separate: ``(1 + n/N) V(a)``; superpopulation, separate: ``V(a) + (n/N) V(b)`` (``V``: the
with-replacement linearization of the pilot rows). A design with its own ``fpc`` keeps it and is
not adjusted again; ``target=None`` is R's variance.

Replicate-weight variance (jackknife or bootstrap) is the alternative: the weights are
recomputed (recalibrated) per replicate by the caller and the estimator is rerun on each column;
:func:`jkn_factors` and :func:`bootstrap_factors` build the replicate factors.

Every estimator returns a :class:`rectify.result.Result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from rectify.errors import ConvergenceError, EstimationError, InputError
from rectify.result import Result

SMALL_SAMPLE = (None, "hc3", "hc2")

__all__ = [
    "SMALL_SAMPLE",
    "SurveyDesign",
    "Replicates",
    "GregStep",
    "PostStratStep",
    "RakeBackfitStep",
    "stratified_cov",
    "jkn_factors",
    "bootstrap_factors",
    "survey_mean",
    "survey_total",
    "survey_shares",
    "survey_quantile",
    "survey_ols",
    "survey_logit",
    "quantile_math",
]


# --------------------------------------------------------------------------- residualization steps
class GregStep:
    """Residualize influence values for a calibration on ``X`` (R's ``greg_calibration``).

    ``x -> x - g d X B`` with ``B = (X' D X)^- X' (x / g)``, where ``d`` are the weights before the
    calibration and ``g`` its g-weights (after any trimming).
    """

    def __init__(self, X, d, g):
        X = np.asarray(X, float)
        self.d = np.asarray(d, float)
        self.g = np.asarray(g, float)
        self._sd = np.sqrt(self.d)
        self._A = X * self._sd[:, None]
        self._pinv = np.linalg.pinv(self._A, rcond=1e-10)

    def apply(self, x: np.ndarray) -> np.ndarray:
        z = x / (self.g * self._sd)[:, None]
        r = z - self._A @ (self._pinv @ z)
        return r * (self.g * self._sd)[:, None]

    def leverage(self) -> np.ndarray:
        """Diagonal of the hat matrix of the calibration regression, ``d_i x_i' (X' D X)^- x_i``."""
        return np.einsum("ij,ji->i", self._A, self._pinv)

    def rank(self) -> int:
        """Number of linearly independent calibration constraints."""
        return int(np.linalg.matrix_rank(self._A))


class PostStratStep:
    """Residualize for post-stratification on ``cell`` (R's ``postStratify``)."""

    def __init__(self, cell, oldw, psw):
        self.cell = np.asarray(cell, np.int64)
        self.oldw = np.asarray(oldw, float)
        self.psw = np.asarray(psw, float)
        self.k = int(self.cell.max()) + 1
        self.den = np.bincount(self.cell, weights=self.oldw, minlength=self.k)

    def leverage(self) -> np.ndarray:
        """Leverage of each row in its post-stratum: its share of the stratum's prior weight."""
        return self.oldw / np.where(self.den > 0, self.den, 1.0)[self.cell]

    def rank(self) -> int:
        """Number of occupied post-strata."""
        return int(np.count_nonzero(self.den > 0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        z = x * (self.oldw / self.psw)[:, None]
        sums = np.stack([np.bincount(self.cell, weights=z[:, j], minlength=self.k)
                         for j in range(x.shape[1])], axis=1)
        means = sums / np.where(self.den > 0, self.den, 1.0)[:, None]
        return x - means[self.cell] * self.psw[:, None]


class RakeBackfitStep:
    """Residualize for raking as R's ``rake()`` does: ten back-fitting sweeps over the margins,
    ``x -> x - w * ave(x / w, margin)`` (unweighted within-category means)."""

    def __init__(self, codes: Sequence[np.ndarray], w, sweeps: int = 10):
        self.codes = [np.asarray(c, np.int64) for c in codes]
        self.w = np.asarray(w, float)
        self.sweeps = sweeps
        self.counts = [np.bincount(c) for c in self.codes]

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = x.copy()
        for _ in range(self.sweeps):
            for c, cnt in zip(self.codes, self.counts):
                z = x / self.w[:, None]
                sums = np.stack([np.bincount(c, weights=z[:, j], minlength=cnt.size)
                                 for j in range(x.shape[1])], axis=1)
                means = sums / np.where(cnt > 0, cnt, 1)[:, None]
                x = x - self.w[:, None] * means[c]
        return x


@dataclass(frozen=True)
class Replicates:
    """Replicate weights for variance estimation.

    Attributes
    ----------
    weights : ndarray, shape (n, B)
        Final (recalibrated) analysis weights of each replicate.
    scale : float
    rscales : ndarray, shape (B,)
        ``var = scale * sum_r rscales_r (theta_r - center)^2``.
    mse : bool
        Centre at the full-sample estimate (True) or at the mean of the replicates (False, R's
        default).
    kind : str
    """

    weights: np.ndarray
    scale: float
    rscales: np.ndarray
    mse: bool = False
    kind: str = "replicates"


@dataclass(frozen=True)
class SurveyDesign:
    """A sample design with final weights, for estimation.

    Attributes
    ----------
    weights : ndarray, shape (n,)
        Final analysis weights.
    strata : int ndarray or None
        Stratum code of each row.
    fpc : ndarray or None
        Population size of each row's stratum (number of PSUs), for the finite population
        correction; ``None`` for with-replacement variance.
    clusters : int ndarray or None
        Primary sampling unit of each row (``None``: every row is its own PSU).
    steps : tuple
        Residualization steps (:class:`GregStep`, ...) applied in order.
    replicates : Replicates or None
        When given, variances use the replicates instead of linearization.
    small_sample : {None, "hc3", "hc2"}
        Leverage-adjusted linearization and Student-t intervals for means, totals and shares (see
        the module notes). ``None`` (default) reproduces R's ``survey``.
    target : rectify.estimand.Target or None
        The estimand and whether the sample is inside the frame (module notes); ``None``: R's variance.
    frame_size : int
        Frame rows N for ``target``.
    """

    weights: np.ndarray
    strata: np.ndarray | None = None
    fpc: np.ndarray | None = None
    clusters: np.ndarray | None = None
    steps: tuple = ()
    replicates: Replicates | None = None
    info: dict = field(default_factory=dict)
    small_sample: str | None = None
    target: object = None
    frame_size: int = 0

    def __post_init__(self):
        if self.small_sample not in SMALL_SAMPLE:
            raise InputError(f"argument 'small_sample' must be one of {SMALL_SAMPLE}, got {self.small_sample!r}")
        if self.small_sample is not None:
            if self.replicates is not None:
                raise InputError("argument 'small_sample' adjusts the linearization variance; it does not "
                                 "apply to replicate weights (their jackknife already adapts to small samples)")
            if self.clusters is not None:
                raise InputError("argument 'small_sample' needs one row per primary sampling unit; it is "
                                 "not implemented for clustered designs")
            for step in self.steps:
                if not hasattr(step, "leverage"):
                    raise InputError(f"argument 'small_sample' is not available with {type(step).__name__} "
                                     "(R rake()'s back-fitting); use the calibration residuals instead")

    def calibration_rank(self) -> int:
        """Number of calibration constraints (summed over the weighting steps)."""
        return int(sum(step.rank() for step in self.steps if hasattr(step, "rank")))

    def mean_df(self) -> float | None:
        """Degrees of freedom of t intervals for means, totals and shares (None: normal, as R)."""
        if self.small_sample is None:
            return None
        return float(max(self.degf() - max(self.calibration_rank(), 1) + 1, 1))

    @property
    def n(self) -> int:
        return int(np.asarray(self.weights).shape[0])

    def degf(self) -> int:
        """Design degrees of freedom: number of PSUs minus number of strata."""
        psu = np.arange(self.n) if self.clusters is None else np.asarray(self.clusters)
        h = np.zeros(self.n, np.int64) if self.strata is None else np.asarray(self.strata)
        n_psu = len(np.unique(np.column_stack([h, psu]), axis=0))
        return int(n_psu - len(np.unique(h)))


def stratified_cov(x, strata=None, fpc=None, clusters=None) -> np.ndarray:
    """Covariance of the weighted totals ``sum_i x_i`` under stratified (cluster) sampling.

    ``V = sum_h (1 - n_h / N_h) n_h / (n_h - 1) sum_j (x_hj - xbar_h)(x_hj - xbar_h)'`` over the
    PSU totals ``x_hj``; ``fpc`` gives ``N_h`` per row (omit for with replacement).

    Examples
    --------
    >>> float(stratified_cov(np.array([[1.0], [3.0]]))[0, 0])
    4.0
    """
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    h = np.zeros(n, np.int64) if strata is None else np.asarray(strata)
    if clusters is not None:
        key = np.column_stack([h, np.asarray(clusters)])
        uk, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.ravel()
        xs = np.stack([np.bincount(inv, weights=x[:, j], minlength=len(uk)) for j in range(x.shape[1])], 1)
        hs = uk[:, 0]
        fs = None
        if fpc is not None:
            fs = np.zeros(len(uk))
            fs[inv] = np.asarray(fpc, float)
        x, h, fpc = xs, hs, fs
    _, hcode = np.unique(h, return_inverse=True)
    hcode = hcode.ravel()
    V = np.zeros((x.shape[1], x.shape[1]))
    for k in range(hcode.max() + 1):
        rows = hcode == k
        nh = int(rows.sum())
        if nh < 2:
            raise EstimationError(
                f"stratum {np.unique(h)[k]!r} has a single primary sampling unit: its variance "
                "cannot be estimated; merge it with a neighbouring stratum")
        xh = x[rows]
        dev = xh - xh.mean(axis=0)
        f = 0.0
        if fpc is not None:
            Nh = np.asarray(fpc, float)[rows][0]
            if Nh < nh:
                raise InputError(f"fpc: stratum {np.unique(h)[k]!r} has population size {Nh:g} below "
                                 f"its sample size {nh}")
            f = nh / Nh
        V += (1.0 - f) * nh / (nh - 1.0) * (dev.T @ dev)
    return V


def _leverage_factor(design: SurveyDesign) -> np.ndarray:
    """``1 / (1 - h)`` (hc3) or ``1 / sqrt(1 - h)`` (hc2) per row, h summed over the steps."""
    h = np.zeros(design.n)
    for step in design.steps:
        h = h + step.leverage()
    if np.any(h > 1.0 - 1e-8):
        i = int(np.argmax(h))
        raise EstimationError(
            f"row {i} has leverage {h[i]:.6g} in the calibration (it alone carries a calibration "
            "category or total), so small_sample variance cannot be computed; collapse that "
            "category with a neighbour or use small_sample=None")
    return 1.0 / (1.0 - h) if design.small_sample == "hc3" else 1.0 / np.sqrt(1.0 - h)


def _lin_cov(x: np.ndarray, design: SurveyDesign) -> np.ndarray:
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    raw = x
    for step in design.steps:
        x = step.apply(x)
    b = raw - x
    if design.small_sample is not None:
        x = x * _leverage_factor(design)[:, None]
    cov = stratified_cov(x, design.strata, design.fpc, design.clusters)
    if design.target is None or design.fpc is not None or not design.frame_size:
        return cov
    from rectify.estimand import variance_parts

    n, N = design.n, design.frame_size
    cov_b = stratified_cov(b, design.strata, None, design.clusters) * (n / N)
    a, bb, _ = variance_parts(cov, cov_b, lambda: stratified_cov(raw, design.strata, None, design.clusters),
                              n, N, design.target)
    return a + bb


def _rep_cov(thetas: np.ndarray, full: np.ndarray, rep: Replicates) -> np.ndarray:
    center = full if rep.mse else thetas.mean(axis=0)
    dev = thetas - center
    return rep.scale * (dev * np.asarray(rep.rscales)[:, None]).T @ dev


def _drive(design: SurveyDesign, point: Callable, infl: Callable) -> tuple[np.ndarray, np.ndarray]:
    est = np.atleast_1d(point(design.weights))
    if design.replicates is None:
        return est, _lin_cov(infl(design.weights, est), design)
    R = design.replicates.weights
    thetas = np.stack([np.atleast_1d(point(R[:, r])) for r in range(R.shape[1])])
    return est, _rep_cov(thetas, est, design.replicates)


def _tfields(design: SurveyDesign) -> dict:
    """Result fields stating the estimand, where the linearization applied it."""
    t = design.target
    if t is None or design.replicates is not None or not design.frame_size:
        return {}
    return {"target": t.estimand, "pilot_in_frame": t.inside}


def _method(design: SurveyDesign) -> str:
    return "calibration" if design.replicates is None else f"calibration ({design.replicates.kind})"


def _diag(design: SurveyDesign) -> dict:
    out = dict(design.info)
    out["variance"] = "linearization" if design.replicates is None else design.replicates.kind
    if design.small_sample is not None:
        out["small_sample"] = design.small_sample
    return out


def _mean_df(design: SurveyDesign, d: int):
    df = design.mean_df()
    return None if df is None else np.full(d, df)


def _col(y, n, name="y") -> np.ndarray:
    y = np.asarray(y, float)
    if y.shape[0] != n:
        raise InputError(f"argument '{name}' has {y.shape[0]} rows for a design of {n} rows")
    if not np.isfinite(y).all():
        raise InputError(f"argument '{name}' contains missing or infinite values; remove them first")
    return y


# --------------------------------------------------------------------------- estimators
def survey_mean(y, design: SurveyDesign, terms: Sequence[str] | None = None, n_population: int = 0) -> Result:
    """Weighted (Hajek) mean of one or more columns with design-based standard errors.

    Examples
    --------
    >>> des = SurveyDesign(weights=np.array([1.0, 1.0, 2.0, 2.0]))
    >>> r = survey_mean(np.array([1.0, 2.0, 3.0, 4.0]), des)
    >>> float(round(r.estimate[0], 4))
    2.8333
    """
    Y = _col(y, design.n)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    terms = list(terms) if terms is not None else ["mean"] if Y2.shape[1] == 1 else [f"y{j}" for j in range(Y2.shape[1])]

    def point(w):
        return (w @ Y2) / w.sum()

    def infl(w, est):
        return w[:, None] * (Y2 - est) / w.sum()

    est, cov = _drive(design, point, infl)
    return Result(est, cov, terms, _method(design), "mean", design.n, n_population, **_tfields(design),
                  df=_mean_df(design, len(est)), diagnostics=_diag(design))


def survey_total(y, design: SurveyDesign, terms: Sequence[str] | None = None, n_population: int = 0) -> Result:
    """Weighted (Horvitz-Thompson type) total with design-based standard errors.

    Examples
    --------
    >>> des = SurveyDesign(weights=np.array([2.0, 2.0]))
    >>> float(survey_total(np.array([1.0, 3.0]), des).estimate[0])
    8.0
    """
    Y = _col(y, design.n)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    terms = list(terms) if terms is not None else ["total"] if Y2.shape[1] == 1 else [f"y{j}" for j in range(Y2.shape[1])]
    est, cov = _drive(design, lambda w: w @ Y2, lambda w, e: w[:, None] * Y2)
    return Result(est, cov, terms, _method(design), "total", design.n, n_population, **_tfields(design),
                  df=_mean_df(design, len(est)), diagnostics=_diag(design))


def survey_shares(codes, labels: Sequence, design: SurveyDesign, n_population: int = 0,
                  interval: str = "wald") -> Result:
    """Weighted shares of the categories of one variable (they sum to 1).

    Parameters
    ----------
    codes : int array, shape (n,)
        Category code (0 .. K-1) of each row.
    labels : sequence
        Category labels, length K.
    interval : {"wald", "xlogit"}, default "wald"
        ``"wald"``: estimate +- critical value x s.e. (R's ``confint(svymean(...))``; normal unless
        the design has ``small_sample``). ``"xlogit"``: the same s.e. mapped through the logit,
        ``expit(logit(p) +- t_df se / (p (1 - p)))`` with the design degrees of freedom (R's
        ``svyciprop(method="xlogit")``); asymmetric, inside (0, 1), and it keeps its coverage for
        rare categories where the Wald interval does not. ``"wilson"``: Wilson's score interval at the
        design's effective sample size ``n* = p (1 - p) / V`` (``V``: the linearized variance; Kish's
        ``(sum w)^2 / sum w^2`` where ``p`` is 0 or 1), normal critical value -- an interval that
        does not collapse to a point when a category has no or few respondents.

    Examples
    --------
    >>> des = SurveyDesign(weights=np.array([1.0, 3.0]))
    >>> survey_shares(np.array([0, 1]), ["a", "b"], des).estimate.tolist()
    [0.25, 0.75]
    """
    codes = np.asarray(codes)
    K = len(labels)
    if codes.shape[0] != design.n or codes.min(initial=0) < 0 or codes.max(initial=0) >= K:
        raise InputError("argument 'codes' must hold one code in 0..K-1 per design row")
    ind = np.zeros((design.n, K))
    ind[np.arange(design.n), codes] = 1.0
    if interval not in ("wald", "xlogit", "wilson"):
        raise InputError(f"argument 'interval' must be 'wald', 'xlogit' or 'wilson', got {interval!r}")
    r = survey_mean(ind, design, terms=[str(l) for l in labels], n_population=n_population)
    fn = None
    if interval == "xlogit":
        p, se = r.estimate, r.std_error
        df = design.mean_df() or design.degf()

        def fn(level: float):
            crit = stats.t.ppf(0.5 + level / 2.0, df)
            with np.errstate(divide="ignore", invalid="ignore"):
                eta, half = np.log(p / (1.0 - p)), crit * se / (p * (1.0 - p))
                lo, hi = 1.0 / (1.0 + np.exp(-(eta - half))), 1.0 / (1.0 + np.exp(-(eta + half)))
            # a share estimated as 0 or 1 has no logit: its interval is the point
            return np.where(np.isfinite(lo), lo, p), np.where(np.isfinite(hi), hi, p)

    if interval == "wilson":
        fn = partial(_wilson_effective_n, p=r.estimate, var=np.diag(r.cov), w=np.asarray(design.weights, float))
    diag = dict(r.diagnostics)
    diag["interval"] = interval
    return Result(r.estimate, r.cov, r.terms, r.method, "shares", r.n_pilot, r.n_population, **_tfields(design),
                  df=r.df, diagnostics=diag, bounds=(0.0, 1.0), interval_fn=fn)


def _wilson_effective_n(level: float, *, p, var, w):
    """Wilson's interval at the effective sample size ``n* = p (1 - p) / var`` (Kish's where p is 0 or 1)."""
    z2 = stats.norm.ppf(0.5 + level / 2.0) ** 2
    kish = w.sum() ** 2 / (w**2).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        n_star = np.where((p > 0) & (p < 1) & (var > 0), p * (1 - p) / var, kish)
    k = z2 / n_star
    centre = (p + k / 2) / (1 + k)
    half = np.sqrt(k * p * (1 - p) + k**2 / 4) / (1 + k)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def quantile_math(y, w, p: float) -> float:
    """Weighted quantile, R's ``qrule_math``: the smallest ``y`` whose weight share reaches ``p``.

    Examples
    --------
    >>> quantile_math(np.array([3.0, 1.0, 2.0]), np.ones(3), 0.5)
    2.0
    """
    y = np.asarray(y, float)
    w = np.asarray(w, float)
    keep = w != 0
    y, w = y[keep], w[keep]
    order = np.argsort(y, kind="stable")
    ys, cw = y[order], np.cumsum(w[order])
    total = cw[-1]
    pos = int(np.searchsorted(cw, p * total, side="right")) - 1  # last with cumw <= p*W
    if pos < 0:
        return float(ys[0])
    if p - cw[pos] / total == 0:
        return float(ys[pos])
    return float(ys[min(pos + 1, len(ys) - 1)])


def survey_quantile(y, q: float | Sequence[float], design: SurveyDesign, level: float = 0.95,
                    n_population: int = 0) -> Result:
    """Weighted quantiles with Woodruff intervals (R's ``svyquantile``, ``qrule="math"``).

    The interval for ``F(q_hat)`` (a weighted mean of ``y <= q_hat`` with its design-based standard
    error and Student-t critical values with the design degrees of freedom) is mapped back through
    the weighted quantile function; the reported standard error is the interval width over
    ``2 t_{1 - alpha/2}``, as in R. With replicate weights, the variance of the replicate
    quantiles is used instead (normal intervals).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> des = SurveyDesign(weights=np.ones(200))
    >>> r = survey_quantile(rng.normal(size=200), 0.5, des)
    >>> bool(abs(r.estimate[0]) < 0.3)
    True
    """
    Y = _col(y, design.n)
    qs = [float(v) for v in np.atleast_1d(q)]
    for v in qs:
        if not 0.0 < v < 1.0:
            raise InputError(f"argument 'q' must lie strictly between 0 and 1, got {v!r}")
    w = design.weights
    est = np.array([quantile_math(Y, w, v) for v in qs])
    terms = [f"q{v:g}" for v in qs]
    df = design.degf()
    if design.replicates is not None:
        R = design.replicates.weights
        thetas = np.stack([[quantile_math(Y, R[:, r], v) for v in qs] for r in range(R.shape[1])])
        cov = _rep_cov(thetas, est, design.replicates)
        return Result(est, cov, terms, _method(design), "quantile", design.n, n_population,
                      diagnostics=_diag(design))

    def woodruff(lev: float):
        crit = stats.t.ppf(0.5 + lev / 2.0, df) if np.isfinite(df) else stats.norm.ppf(0.5 + lev / 2.0)
        lows, highs = [], []
        for v, qh in zip(qs, est):
            ind = (Y <= qh).astype(float)
            m = survey_mean(ind, design)
            f, se = m.estimate[0], m.std_error[0]
            pl, pu = f - crit * se, f + crit * se
            lows.append(np.nan if pl < 0 else quantile_math(Y, w, pl))
            highs.append(np.nan if pu > 1 else quantile_math(Y, w, pu))
        return np.array(lows), np.array(highs)

    low, high = woodruff(0.95)
    crit95 = stats.t.ppf(0.975, df)
    se = (high - low) / (2.0 * crit95)
    cov = np.diag(se**2)
    return Result(est, cov, terms, _method(design), "quantile", design.n, n_population,
                  df=np.full(len(qs), float(df)), level=level, interval_fn=woodruff,
                  diagnostics=_diag(design))


def _check_X(X, n):
    X = np.asarray(X, float)
    if X.ndim != 2 or X.shape[0] != n:
        raise InputError(f"argument 'X' must have shape ({n}, p), got {X.shape}")
    if not np.isfinite(X).all():
        raise InputError("argument 'X' contains missing or infinite values")
    return X


def _no_small_sample(design: SurveyDesign, where: str) -> None:
    if design.small_sample is not None:
        raise InputError(f"{where}: small_sample={design.small_sample!r} is implemented for means, totals, "
                         "shares and quantiles only; calibrate with small_sample=None (or use "
                         "variance='jackknife') for regressions")


def _wls(X, y, w):
    """Weighted least squares; with negative weights (linear calibration can give them) the weighted
    normal equations sum_i w_i x_i (y_i - x_i'b) = 0 are solved directly (square roots would be NaN)."""
    if np.all(w >= 0):
        sw = np.sqrt(w)
        beta, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
        return beta
    xtwx = X.T @ (w[:, None] * X)
    if np.linalg.cond(xtwx) > 1e12:
        raise EstimationError("the weighted design X'WX is singular with these (partly negative) calibration "
                              "weights; bound the weights (method='logit' or 'truncated') or drop terms")
    return np.linalg.solve(xtwx, X.T @ (w * y))


def survey_ols(X, y, design: SurveyDesign, terms: Sequence[str] | None = None, n_population: int = 0) -> Result:
    """Weighted least squares with design-based (sandwich, calibration-aware) standard errors.

    Matches R's ``svyglm(family=gaussian())``; degrees of freedom ``degf - p + 1``.

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
    >>> des = SurveyDesign(weights=np.ones(4))
    >>> np.round(survey_ols(X, np.array([1.0, 3.0, 5.0, 7.1]), des).estimate, 3).tolist()
    [0.98, 2.03]
    """
    _no_small_sample(design, "survey_ols")
    X = _check_X(X, design.n)
    y = _col(y, design.n)
    p = X.shape[1]
    if np.linalg.matrix_rank(X) < p:
        raise EstimationError("the design matrix 'X' is rank deficient; drop collinear terms")
    terms = list(terms) if terms is not None else [f"x{j}" for j in range(p)]

    def infl(w, beta):
        A = X.T @ (X * w[:, None])
        e = y - X @ beta
        return (X * (w * e)[:, None]) @ np.linalg.inv(A)

    est, cov = _drive(design, lambda w: _wls(X, y, w), infl)
    df = max(design.degf() - p + 1, 1)
    return Result(est, cov, terms, _method(design), "ols", design.n, n_population, **_tfields(design),
                  df=np.full(p, float(df)), diagnostics=_diag(design))


def _logit_fit(X, y, w, max_iter=100, tol=1e-12):
    beta = np.zeros(X.shape[1])
    for it in range(max_iter):
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        W = w * mu * (1.0 - mu)
        H = X.T @ (X * W[:, None])
        step = np.linalg.solve(H, X.T @ (w * (y - mu)))
        beta = beta + step
        if np.max(np.abs(step)) < tol * (1.0 + np.max(np.abs(beta))):
            return beta
    raise ConvergenceError(f"weighted logistic regression did not converge in {max_iter} iterations "
                           "(perfect separation?)")


def survey_logit(X, y, design: SurveyDesign, terms: Sequence[str] | None = None, n_population: int = 0) -> Result:
    """Weighted logistic regression with design-based standard errors.

    Matches R's ``svyglm(family=quasibinomial())``; degrees of freedom ``degf - p + 1``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=300); y = (rng.random(300) < 1 / (1 + np.exp(-x))).astype(float)
    >>> r = survey_logit(np.column_stack([np.ones(300), x]), y, SurveyDesign(weights=np.ones(300)))
    >>> bool(0.5 < r.estimate[1] < 1.6)
    True
    """
    _no_small_sample(design, "survey_logit")
    X = _check_X(X, design.n)
    y = _col(y, design.n)
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("argument 'y' of a logistic regression must be 0/1")
    p = X.shape[1]
    terms = list(terms) if terms is not None else [f"x{j}" for j in range(p)]

    def infl(w, beta):
        mu = 1.0 / (1.0 + np.exp(-(X @ beta)))
        A = X.T @ (X * (w * mu * (1.0 - mu))[:, None])
        return (X * (w * (y - mu))[:, None]) @ np.linalg.inv(A)

    est, cov = _drive(design, lambda w: _logit_fit(X, y, w), infl)
    df = max(design.degf() - p + 1, 1)
    return Result(est, cov, terms, _method(design), "logit", design.n, n_population, **_tfields(design),
                  df=np.full(p, float(df)), diagnostics=_diag(design))


# --------------------------------------------------------------------------- replicate factors
def _strata_psu(n, strata, clusters):
    h = np.zeros(n, np.int64) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1].ravel()
    psu = np.arange(n) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()
    return h, psu


def jkn_factors(n: int, strata=None, fpc=None, clusters=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Stratified delete-one-PSU jackknife (JKn) replicate factors.

    Returns
    -------
    (factors, rscales, scale)
        ``factors`` (n, B): multiply design weights by a column to get a replicate; dropping PSU
        j of stratum h sets its rows to 0 and the other rows of h to ``n_h / (n_h - 1)``.
        ``rscales_r = (1 - f_h) (n_h - 1) / n_h``; ``scale = 1``. As R's ``as.svrepdesign(type="JKn")``.

    Examples
    --------
    >>> f, rs, s = jkn_factors(3)
    >>> f[:, 0].tolist(), float(rs[0])
    ([0.0, 1.5, 1.5], 0.6666666666666666)
    """
    h, psu = _strata_psu(n, strata, clusters)
    cols, rsc = [], []
    for k in np.unique(h):
        rows = h == k
        units = np.unique(psu[rows])
        nh = len(units)
        if nh < 2:
            raise EstimationError(f"stratum {k} has one PSU; the jackknife needs at least two")
        f = 0.0 if fpc is None else nh / float(np.asarray(fpc, float)[rows][0])
        for u in units:
            col = np.ones(n)
            col[rows] = nh / (nh - 1.0)
            col[rows & (psu == u)] = 0.0
            cols.append(col)
            rsc.append((1.0 - f) * (nh - 1.0) / nh)
    return np.column_stack(cols), np.array(rsc), 1.0


def bootstrap_factors(n: int, n_replicates: int = 200, strata=None, clusters=None,
                      random_state=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Rescaled (Rao-Wu) bootstrap replicate factors: ``n_h - 1`` PSUs drawn with replacement per
    stratum, factor ``n_h / (n_h - 1) * count`` (R's ``subbootstrap``).

    Returns
    -------
    (factors, rscales, scale)
        ``scale = 1 / (B - 1)``, ``rscales = 1``.

    Examples
    --------
    >>> f, rs, s = bootstrap_factors(10, 5, random_state=0)
    >>> f.shape, float(s)
    ((10, 5), 0.25)
    """
    rng = np.random.default_rng(random_state)
    if int(n_replicates) < 2:
        raise InputError("argument 'n_replicates' must be at least 2")
    h, psu = _strata_psu(n, strata, clusters)
    F = np.zeros((n, int(n_replicates)))
    for k in np.unique(h):
        rows = np.flatnonzero(h == k)
        units, uidx = np.unique(psu[rows], return_inverse=True)
        nh = len(units)
        if nh < 2:
            raise EstimationError(f"stratum {k} has one PSU; the bootstrap needs at least two")
        for b in range(int(n_replicates)):
            counts = np.bincount(rng.integers(0, nh, nh - 1), minlength=nh)
            F[rows, b] = counts[uidx.ravel()] * nh / (nh - 1.0)
    return F, np.ones(int(n_replicates)), 1.0 / (int(n_replicates) - 1.0)
