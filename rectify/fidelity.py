"""Three-axis fidelity of simulated (or corrected) survey answers against human answers.

* **marginal** (per item): how far the simulated answer distribution is from the human one --
  Wasserstein-1 on the ordinal scale (raw and divided by the scale range ``K - 1``), total
  variation, Jensen-Shannon divergence, mean difference and SD ratio;
* **structural** (one regression formula fitted on human and on simulated answers): Lin's
  concordance correlation of the coefficient vectors, sign agreement, attenuation slope, magnitude
  ratio (mean ``|beta_sim|`` over mean ``|beta_human|``) and the coverage of the human coefficients by
  a method's intervals;
* **individual** (per respondent): Pearson r and mean absolute error of a per-respondent summary
  (e.g. discernment), quadratic-weighted kappa and accuracy per item, log-loss and Brier score
  when option probabilities are given.

Every axis can be computed per subgroup; a group too small for a metric is reported as not
estimable (NaN with the reason in ``note``), never as 0. :func:`fidelity_report` does it all
in one call and returns a tidy table; :func:`group_summary` gives the worst group and the spread.

A corrected estimate of the option shares (e.g. PPI++ shares) enters the distribution metrics as
a ``(1, K)`` probability matrix.

Conventions: missing values (NaN, e.g. "have not seen it") are skipped -- pairwise for paired
metrics -- and the number of values used is reported; a simulated value is either an answer on
the option scale, a continuous score (e.g. an expected score) or, for the distribution metrics, an
``(n, K)`` matrix of option probabilities.

Examples
--------
>>> import numpy as np
>>> human = np.array([1, 2, 2, 3, 4, 4])
>>> sim = np.array([2, 2, 2, 3, 3, 3])
>>> float(wasserstein1(human, sim)), float(total_variation(human, sim))
(0.5, 0.5)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import EstimationError, InputError, MissingCovariateError

__all__ = [
    "wasserstein1",
    "total_variation",
    "jensen_shannon",
    "mean_difference",
    "sd_ratio",
    "marginal_fidelity",
    "lins_ccc",
    "sign_agreement",
    "attenuation_slope",
    "magnitude_ratio",
    "interval_coverage",
    "fit_coefficients",
    "structural_fidelity",
    "pearson_r",
    "mean_absolute_error",
    "weighted_kappa",
    "accuracy",
    "log_loss",
    "brier_score",
    "scale_score",
    "by_group",
    "group_summary",
    "fidelity_report",
    "METRICS",
    "REPORT_COLUMNS",
]

REPORT_COLUMNS = ["axis", "metric", "item", "grouping", "group", "value", "n", "note"]
ALL = "all"
ITEM_MEAN = "(mean over items)"

#: metric name -> (axis, how "bad" a value is: larger = worse). Used to find the worst group.
METRICS: dict[str, tuple[str, Callable[[float], float]]] = {
    "wasserstein1": ("marginal", lambda v: v),
    "wasserstein1_norm": ("marginal", lambda v: v),
    "total_variation": ("marginal", lambda v: v),
    "jensen_shannon": ("marginal", lambda v: v),
    "mean_difference": ("marginal", abs),
    "mean_abs_difference": ("marginal", lambda v: v),
    "sd_ratio": ("marginal", lambda v: abs(math.log(v)) if v > 0 else math.inf),
    "lins_ccc": ("structural", lambda v: -v),
    "sign_agreement": ("structural", lambda v: -v),
    "attenuation_slope": ("structural", lambda v: abs(1.0 - v)),
    "magnitude_ratio": ("structural", lambda v: abs(math.log(v)) if v > 0 else math.inf),
    "coverage": ("structural", lambda v: -v),
    "pearson_r": ("individual", lambda v: -v),
    "mae": ("individual", lambda v: v),
    "weighted_kappa": ("individual", lambda v: -v),
    "accuracy": ("individual", lambda v: -v),
    "log_loss": ("individual", lambda v: v),
    "brier_score": ("individual", lambda v: v),
}


# ---------------------------------------------------------------------------------------------
# input helpers
# ---------------------------------------------------------------------------------------------
def _numeric(x: Any, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    if isinstance(x, (pd.Series, pd.DataFrame)):
        x = x.to_numpy(dtype=float, na_value=np.nan)
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"argument {name!r} must be numeric; encode option labels as scores first") from None
    if arr.ndim not in ndim:
        raise InputError(f"argument {name!r} must have {' or '.join(map(str, ndim))} dimension(s), got {arr.ndim}")
    if np.isinf(arr).any():
        raise InputError(f"argument {name!r} contains infinite values; remove them first")
    return arr


def _probs(p: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = _numeric(p, name, ndim=(2,))
    if np.isnan(arr).any():
        raise InputError(f"argument {name!r} (option probabilities) contains NaN; give a full distribution per row")
    if (arr < 0).any() or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-6):
        raise InputError(f"argument {name!r} must hold probabilities: non-negative rows that sum to 1")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"argument {name!r} has {arr.shape[0]} rows, expected {n}")
    return arr


def _scores_arg(scores: Any, k: int | None = None) -> np.ndarray | None:
    if scores is None:
        return None if k is None else np.arange(1, k + 1, dtype=float)
    sc = _numeric(scores, "scores")
    if sc.size < 2 or np.isnan(sc).any() or np.any(np.diff(sc) <= 0):
        raise InputError("argument 'scores' must list at least 2 finite option scores in increasing order")
    if k is not None and sc.size != k:
        raise InputError(f"argument 'scores' has {sc.size} values but the probabilities have {k} columns")
    return sc


def _distribution(x: Any, name: str, scores: Any = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(support, weights, n) of a sample (1-D, NaN skipped) or of the mixture of (n, K) probabilities."""
    arr = _numeric(x, name, ndim=(1, 2))
    if arr.ndim == 2:
        arr = _probs(arr, name)
        sc = _scores_arg(scores, arr.shape[1])
        return sc, arr.mean(axis=0), arr.shape[0]
    vals = arr[~np.isnan(arr)]
    if vals.size == 0:
        raise EstimationError(f"argument {name!r} has no non-missing value")
    support, counts = np.unique(vals, return_counts=True)
    return support, counts / vals.size, int(vals.size)


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality up to 1e-9 (relative) -- a fast ``np.isclose`` for option scores."""
    return np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(b))


def _on_grid(support: np.ndarray, weights: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    idx = np.searchsorted(grid, support)
    idx = np.clip(idx, 0, grid.size - 1)
    bad = ~_close(grid[idx], support)
    if bad.any():
        raise InputError(
            f"argument {name!r} has values {support[bad][:3].tolist()} that are not option scores "
            f"{grid.tolist()}; pass option probabilities or round the values explicitly"
        )
    out = np.zeros(grid.size)
    np.add.at(out, idx, weights)
    return out


def _two_pmfs(human: Any, simulated: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    sh, wh, _ = _distribution(human, "human", scores)
    ss, ws, _ = _distribution(simulated, "simulated", scores)
    grid = _scores_arg(scores)
    if grid is None:
        if np.ndim(human) == 2 or np.ndim(simulated) == 2:
            grid = sh if np.ndim(human) == 2 else ss  # 1..K of the probability matrix
        elif np.allclose(ss, np.rint(ss)) and np.allclose(sh, np.rint(sh)):
            grid = np.union1d(sh, ss)  # integer answers on both sides
        else:
            grid = sh  # the human answers define the scale; other simulated values are refused
    return _on_grid(sh, wh, grid, "human"), _on_grid(ss, ws, grid, "simulated")


# ---------------------------------------------------------------------------------------------
# marginal axis
# ---------------------------------------------------------------------------------------------
def wasserstein1(human: Any, simulated: Any, scores: Any = None, normalise: bool = False) -> float:
    """Wasserstein-1 (earth mover's) distance between two answer distributions on the score scale.

    ``W1 = integral |F_h(t) - F_s(t)| dt = sum_j |F_h(x_j) - F_s(x_j)| (x_{j+1} - x_j)`` over the
    merged sorted support ``x``, where ``F`` are the cumulative distribution functions. With
    ``normalise=True`` it is divided by the scale range ``max(scores) - min(scores)`` (``K - 1``
    for scores ``1..K``), so it lies in [0, 1].

    Parameters
    ----------
    human, simulated : array-like
        1-D answers or scores (NaN skipped; continuous values such as expected scores are
        allowed) or an ``(n, K)`` matrix of option probabilities (their mixture is used).
    scores : sequence of float, optional
        Option scores (default ``1..K`` for probabilities). Needed with ``normalise=True`` when
        neither input is a probability matrix.
    normalise : bool, default False

    Returns
    -------
    float

    Examples
    --------
    >>> float(wasserstein1([1, 1, 4], [1, 2, 4], scores=[1, 2, 3, 4], normalise=True))
    0.1111111111111111
    """
    sh, wh, _ = _distribution(human, "human", scores)
    ss, ws, _ = _distribution(simulated, "simulated", scores)
    x = np.union1d(sh, ss)
    fh = np.cumsum(_on_grid(sh, wh, x, "human"))
    fs = np.cumsum(_on_grid(ss, ws, x, "simulated"))
    w1 = float(np.sum(np.abs(fh - fs)[:-1] * np.diff(x)))
    if not normalise:
        return w1
    sc = _scores_arg(scores)
    if sc is None:
        k = next((np.shape(a)[1] for a in (human, simulated) if np.ndim(a) == 2), None)
        if k is None:
            raise InputError("normalise=True needs 'scores' (the option scores) when no probabilities are given")
        sc = np.arange(1.0, k + 1)
    return w1 / float(sc[-1] - sc[0])


def total_variation(human: Any, simulated: Any, scores: Any = None) -> float:
    """Total variation distance between two distributions over the options.

    ``TV = 1/2 sum_k |p_k - q_k|`` in [0, 1], ``p`` the human and ``q`` the simulated option shares.

    Parameters
    ----------
    human, simulated : array-like
        1-D answers on the option scale (NaN skipped) or ``(n, K)`` option probabilities.
    scores : sequence of float, optional
        The option scores. Default: ``1..K`` for probabilities; for two samples, the values
        observed (simulated values off the human scale raise :class:`~rectify.errors.InputError`:
        pass probabilities or round them explicitly).

    Returns
    -------
    float

    Examples
    --------
    >>> float(total_variation([1, 2, 2, 3], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    0.25
    """
    p, q = _two_pmfs(human, simulated, scores)
    return float(0.5 * np.abs(p - q).sum())


def jensen_shannon(human: Any, simulated: Any, scores: Any = None) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two distributions over the options.

    ``JS = 1/2 KL(p || m) + 1/2 KL(q || m)``, ``m = (p + q) / 2``, ``KL(a || b) = sum_k a_k
    log2(a_k / b_k)`` with ``0 log 0 = 0``. It equals the square of
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` (the JS *distance*).

    Parameters
    ----------
    human, simulated : array-like
        As in :func:`total_variation`.
    scores : sequence of float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> float(jensen_shannon([1, 1], [2, 2]))
    1.0
    """
    p, q = _two_pmfs(human, simulated, scores)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        ok = a > 0
        return float(np.sum(a[ok] * np.log2(a[ok] / m[ok])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def _moments(x: Any, name: str, scores: Any) -> tuple[float, float]:
    support, w, _ = _distribution(x, name, scores)
    mu = float(np.sum(w * support))
    return mu, float(np.sqrt(max(0.0, np.sum(w * (support - mu) ** 2))))


def mean_difference(human: Any, simulated: Any, scores: Any = None) -> float:
    """Mean simulated score minus mean human score: ``mu_s - mu_h``.

    For probabilities the mean of the mixture ``sum_k s_k qbar_k`` is used.

    Parameters
    ----------
    human, simulated : array-like
        1-D values (NaN skipped) or ``(n, K)`` option probabilities.
    scores : sequence of float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> float(mean_difference([1, 2, 3], [2.5, 2.5]))
    0.5
    """
    return _moments(simulated, "simulated", scores)[0] - _moments(human, "human", scores)[0]


def sd_ratio(human: Any, simulated: Any, scores: Any = None) -> float:
    """Ratio of standard deviations ``sigma_s / sigma_h`` (< 1: compressed variance).

    Both are SDs of the answer distribution (divisor ``n``): ``sigma^2 = sum_j w_j (x_j - mu)^2``.
    For probabilities it is the SD of the mixture distribution (what sampled answers would show);
    for expected scores it is the spread of the scores themselves.

    Parameters
    ----------
    human, simulated : array-like
    scores : sequence of float, optional

    Returns
    -------
    float

    Raises
    ------
    EstimationError
        If the human answers do not vary.

    Examples
    --------
    >>> float(sd_ratio([1, 3], [1.5, 2.5]))
    0.5
    """
    sh = _moments(human, "human", scores)[1]
    if sh == 0:
        raise EstimationError("sd_ratio is not estimable: the human answers do not vary")
    return _moments(simulated, "simulated", scores)[1] / sh


def marginal_fidelity(human: Any, simulated: Any, scores: Any = None) -> dict[str, float]:
    """All marginal metrics for one item, as a dict (see the single functions for formulas).

    Total variation and Jensen-Shannon need simulated answers on the option scale or
    probabilities; for continuous simulated values they are NaN.

    Examples
    --------
    >>> m = marginal_fidelity([1, 2, 3, 4], [2, 2, 3, 3], scores=[1, 2, 3, 4])
    >>> round(m["sd_ratio"], 3), m["wasserstein1_norm"]
    (0.447, 0.16666666666666666)
    """
    out = {
        "wasserstein1": wasserstein1(human, simulated, scores),
        "mean_difference": mean_difference(human, simulated, scores),
        "sd_ratio": sd_ratio(human, simulated, scores),
    }
    try:
        out["wasserstein1_norm"] = wasserstein1(human, simulated, scores, normalise=True)
    except InputError:
        out["wasserstein1_norm"] = math.nan
    try:
        out["total_variation"] = total_variation(human, simulated, scores)
        out["jensen_shannon"] = jensen_shannon(human, simulated, scores)
    except InputError:
        out["total_variation"] = out["jensen_shannon"] = math.nan
    return out


# ---------------------------------------------------------------------------------------------
# structural axis
# ---------------------------------------------------------------------------------------------
def _pair(x: Any, y: Any, xname: str, yname: str) -> tuple[np.ndarray, np.ndarray]:
    a = _numeric(x, xname)
    b = _numeric(y, yname)
    if a.shape != b.shape:
        raise InputError(f"arguments {xname!r} and {yname!r} must have the same length, got {a.size} and {b.size}")
    return a, b


def lins_ccc(x: Any, y: Any) -> float:
    """Lin's concordance correlation coefficient of two vectors (e.g. coefficient vectors).

    ``rho_c = 2 s_xy / (s_x^2 + s_y^2 + (xbar - ybar)^2)`` with moments of divisor ``n``
    (Lin 1989). 1 only if ``y = x`` exactly; it penalises both scatter and shrinkage.

    Parameters
    ----------
    x, y : array-like, same length (>= 2, no NaN)

    Returns
    -------
    float

    Examples
    --------
    >>> float(lins_ccc([1, 2, 3], [1, 2, 3])), round(float(lins_ccc([1, 2, 3], [0.5, 1, 1.5])), 4)
    (1.0, 0.3636)
    """
    a, b = _pair(x, y, "x", "y")
    if np.isnan(a).any() or np.isnan(b).any():
        raise InputError("lins_ccc: the vectors contain NaN; drop those entries first")
    if a.size < 2:
        raise EstimationError("lins_ccc is not estimable from fewer than 2 pairs")
    sxy = np.mean((a - a.mean()) * (b - b.mean()))
    den = a.var() + b.var() + (a.mean() - b.mean()) ** 2
    if den == 0:
        raise EstimationError("lins_ccc is not estimable: both vectors are the same constant")
    return float(2 * sxy / den)


def sign_agreement(x: Any, y: Any) -> float:
    """Share of positions where ``sign(x_j) == sign(y_j)`` (a zero only agrees with a zero).

    Examples
    --------
    >>> float(sign_agreement([0.3, -0.2, 0.1, 0.0], [0.1, 0.2, 0.4, 0.0]))
    0.75
    """
    a, b = _pair(x, y, "x", "y")
    if a.size == 0 or np.isnan(a).any() or np.isnan(b).any():
        raise InputError("sign_agreement needs non-empty vectors without NaN")
    return float(np.mean(np.sign(a) == np.sign(b)))


def attenuation_slope(human_coef: Any, simulated_coef: Any, intercept: bool = False) -> float:
    """Slope of the simulated coefficients regressed on the human ones (< 1: attenuation).

    Through the origin (default): ``b = sum_j h_j s_j / sum_j h_j^2`` -- if every simulated
    effect is the human effect times ``a``, ``b = a``. With ``intercept=True``: the OLS slope
    ``b = cov(h, s) / var(h)``, insensitive to a common shift of all coefficients.

    Parameters
    ----------
    human_coef, simulated_coef : array-like, same length
    intercept : bool, default False

    Returns
    -------
    float

    Examples
    --------
    >>> float(attenuation_slope([1.0, -2.0, 0.5], [0.5, -1.0, 0.25]))
    0.5
    """
    h, s = _pair(human_coef, simulated_coef, "human_coef", "simulated_coef")
    if np.isnan(h).any() or np.isnan(s).any():
        raise InputError("attenuation_slope: the coefficient vectors contain NaN")
    if intercept:
        if h.size < 2 or h.var() == 0:
            raise EstimationError("attenuation_slope with intercept needs >= 2 different human coefficients")
        return float(np.mean((h - h.mean()) * (s - s.mean())) / h.var())
    hh = float(h @ h)
    if hh == 0:
        raise EstimationError("attenuation_slope is not estimable: all human coefficients are 0")
    return float(h @ s) / hh


def magnitude_ratio(human_coef: Any, simulated_coef: Any) -> float:
    """Mean absolute simulated coefficient over mean absolute human coefficient (the paper's magnitude ratio).

    ``M = mean_j |s_j| / mean_j |h_j| = sum_j |s_j| / sum_j |h_j|`` -- a ratio of means, not a mean of
    per-coefficient ratios (which a near-zero human coefficient would blow up). Below 1 the simulated
    effects are smaller overall, above 1 larger.

    How it differs from :func:`attenuation_slope` (``sum h s / sum h^2``): the slope compares the
    coefficients *with their signs*, so a simulator whose effects point the wrong way gets a small or
    negative slope, whereas the magnitude ratio ignores signs and measures only the overall size of the
    effects (a vector with every sign flipped has slope -1 and ratio 1). The slope weights each
    coefficient by ``h_j^2``; the ratio by ``|h_j|``. Both depend on the units of the covariates, so
    compare them across methods on the same formula, not across formulas. Estimation noise
    inflates the ratio (``E|b_hat| >= |b|``): coefficients fitted on a small pilot show ratios well
    above 1 even when unbiased, while the slope stays unbiased for a fixed human vector.

    Parameters
    ----------
    human_coef, simulated_coef : array-like, same length, no NaN
        Usually the non-intercept coefficients.

    Returns
    -------
    float
        ``M >= 0``; 1 when the effects are as large as the human ones on average.

    Raises
    ------
    EstimationError
        If every human coefficient is 0.

    Examples
    --------
    >>> float(magnitude_ratio([1.0, -2.0, 0.5], [0.5, 1.0, 0.25]))
    0.5
    >>> float(magnitude_ratio([1.0, -3.0], [-1.0, 3.0])), float(attenuation_slope([1.0, -3.0], [-1.0, 3.0]))
    (1.0, -1.0)
    """
    h, s = _pair(human_coef, simulated_coef, "human_coef", "simulated_coef")
    if h.size == 0 or np.isnan(h).any() or np.isnan(s).any():
        raise InputError("magnitude_ratio needs non-empty coefficient vectors without NaN")
    den = float(np.abs(h).mean())
    if den == 0:
        raise EstimationError("magnitude_ratio is not estimable: all human coefficients are 0")
    return float(np.abs(s).mean()) / den


def interval_coverage(values: Any, lower: Any, upper: Any) -> float:
    """Share of ``values`` inside their closed intervals: ``mean(lower_j <= v_j <= upper_j)``.

    Examples
    --------
    >>> float(interval_coverage([0.0, 1.0, 2.0], [-1, 1.5, 1.9], [1, 2, 2.1]))
    0.6666666666666666
    """
    v = _numeric(values, "values")
    lo = _numeric(lower, "lower")
    hi = _numeric(upper, "upper")
    if not (v.shape == lo.shape == hi.shape) or v.size == 0:
        raise InputError("arguments 'values', 'lower' and 'upper' must be non-empty and of equal length")
    if np.isnan(v).any() or np.isnan(lo).any() or np.isnan(hi).any() or np.any(lo > hi):
        raise InputError("interval_coverage: NaN values or intervals with lower > upper")
    return float(np.mean((lo <= v) & (v <= hi)))


def _split_formula(formula: str) -> tuple[str, str]:
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise InputError(f"argument 'formula' must look like 'y ~ x1 + x2', got {formula!r}")
    lhs, rhs = (part.strip() for part in formula.split("~"))
    if not lhs or not rhs:
        raise InputError(f"argument 'formula' needs a response and terms, got {formula!r}")
    return lhs, rhs


def _design(rhs: str, data: pd.DataFrame) -> pd.DataFrame:
    from formulaic import Formula

    from .formula import check_formula

    f = Formula(check_formula(rhs))  # refuses code before formulaic evaluates anything
    need = sorted(v for v in f.required_variables if v not in ("np", "numpy", "C"))
    absent = [v for v in need if v not in data.columns]
    if absent:
        raise InputError(f"formula terms {absent} are not columns of the data; add them or fix the formula")
    holes = [v for v in need if data[v].isna().any()]
    if holes:
        raise MissingCovariateError(f"covariates {holes} have missing values; fill or drop those rows first")
    mm = f.get_model_matrix(data, na_action="raise")
    return pd.DataFrame(np.asarray(mm, dtype=float), columns=list(mm.columns), index=data.index)


def _ols(y: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
    import statsmodels.api as sm

    fit = sm.OLS(y, X.to_numpy()).fit()
    return pd.DataFrame({"estimate": fit.params, "std_error": fit.bse}, index=X.columns)


def _prune(X: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Drop non-intercept columns that are constant (e.g. the grouping variable in a subgroup)."""
    const = [c for c in X.columns if c != "Intercept" and np.ptp(X[c].to_numpy()) == 0]
    return X.drop(columns=const), const


def fit_coefficients(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """OLS coefficients of ``formula`` on ``data`` (formulaic design, statsmodels OLS).

    ``beta = (X'X)^{-1} X'y``; the design is built by formulaic (treatment coding, first level
    of a Categorical as reference). Rows whose response is NaN are refused: drop them first.

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + x2"``.
    data : DataFrame

    Returns
    -------
    DataFrame indexed by term with columns ``estimate`` and ``std_error``.

    Examples
    --------
    >>> d = pd.DataFrame({"y": [1.0, 2.0, 3.5, 4.0], "x": [0.0, 1.0, 2.0, 3.0]})
    >>> fit_coefficients("y ~ x", d)["estimate"].round(3).tolist()
    [1.05, 1.05]
    """
    lhs, rhs = _split_formula(formula)
    if lhs not in data.columns:
        raise InputError(f"response {lhs!r} of the formula is not a column of the data")
    y = data[lhs].to_numpy(dtype=float)
    if np.isnan(y).any():
        raise InputError(f"response {lhs!r} has {int(np.isnan(y).sum())} missing values; drop those rows first")
    X = _design(rhs, data)
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise EstimationError(f"the design of {formula!r} is rank deficient; remove collinear terms")
    return _ols(y, X)


def _intervals_table(intervals: Any) -> pd.DataFrame:
    if intervals is None:
        return None
    if hasattr(intervals, "tidy") and callable(intervals.tidy):
        intervals = intervals.tidy()
    if isinstance(intervals, pd.DataFrame):
        if {"term", "conf_low", "conf_high"} <= set(intervals.columns):
            return intervals.set_index("term")[["conf_low", "conf_high"]].astype(float)
        if {"conf_low", "conf_high"} <= set(intervals.columns):
            return intervals[["conf_low", "conf_high"]].astype(float)
    elif isinstance(intervals, Mapping):
        return pd.DataFrame.from_dict(
            {k: tuple(map(float, v)) for k, v in intervals.items()}, orient="index", columns=["conf_low", "conf_high"]
        )
    raise InputError(
        "argument 'intervals' must be a Result, a DataFrame with term/conf_low/conf_high "
        "columns, or a dict term -> (low, high)"
    )


def structural_fidelity(
    formula: str,
    human_data: pd.DataFrame,
    simulated_response: Any,
    intervals: Any = None,
    include_intercept: bool = False,
    intercept_in_slope: bool = False,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Compare the regression of ``formula`` on human answers with the same on simulated answers.

    The design ``X`` comes from ``human_data``; ``beta_h`` is fitted on the human response
    (the formula's left-hand side column) and ``beta_s`` on ``simulated_response`` with the
    same ``X``. Rows where either response is missing are left out of both fits. Metrics on the
    coefficient vectors (the intercept excluded unless ``include_intercept``): ``lins_ccc``,
    ``sign_agreement``, ``attenuation_slope`` (``beta_s`` on ``beta_h``, through the origin
    unless ``intercept_in_slope``), ``magnitude_ratio`` (``mean|beta_s| / mean|beta_h|``, see
    :func:`magnitude_ratio`) and, where ``intervals`` are given, ``coverage`` = share of
    ``beta_h`` inside the given intervals (matched by term name).

    Parameters
    ----------
    formula : str
    human_data : DataFrame
        Covariates and the human response column.
    simulated_response : array-like or Series
        One simulated (or corrected) value per row of ``human_data``.
    intervals : Result, DataFrame or dict, optional
        A method's intervals for the coefficients.
    include_intercept, intercept_in_slope : bool, default False

    Returns
    -------
    (dict, DataFrame)
        The metrics and a per-term table (human and simulated estimates, std errors, intervals).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"x": rng.normal(size=200), "z": rng.normal(size=200)})
    >>> d["y"] = 1 + 2 * d["x"] - d["z"] + rng.normal(size=200)
    >>> m, tab = structural_fidelity("y ~ x + z", d, 1 + 1.0 * d["x"] - 0.5 * d["z"])
    >>> round(m["attenuation_slope"], 2), round(m["magnitude_ratio"], 2), m["sign_agreement"]
    (0.49, 0.5, 1.0)
    """
    lhs, rhs = _split_formula(formula)
    if lhs not in human_data.columns:
        raise InputError(f"response {lhs!r} of the formula is not a column of 'human_data'")
    sim = _numeric(simulated_response, "simulated_response")
    if sim.size != len(human_data):
        raise InputError(f"argument 'simulated_response' has {sim.size} values for {len(human_data)} rows")
    X = _design(rhs, human_data)
    return _structural_core(human_data[lhs].to_numpy(dtype=float), sim, X, intervals, include_intercept, intercept_in_slope)


def _structural_core(
    yh: np.ndarray, ys: np.ndarray, X: pd.DataFrame, intervals: Any, include_intercept: bool, intercept_in_slope: bool
) -> tuple[dict[str, float], pd.DataFrame]:
    ok = ~np.isnan(yh) & ~np.isnan(ys)
    X = X.loc[ok]
    X, dropped = _prune(X)
    n, p = X.shape
    if n <= p + 1:
        raise EstimationError(f"not estimable: {n} respondents for {p} coefficients")
    if np.linalg.matrix_rank(X.to_numpy()) < p:
        raise EstimationError("not estimable: the design is rank deficient in these rows")
    h = _ols(yh[ok], X)
    s = _ols(ys[ok], X)
    tab = pd.DataFrame(
        {
            "human": h["estimate"],
            "human_se": h["std_error"],
            "simulated": s["estimate"],
            "simulated_se": s["std_error"],
        }
    )
    terms = [t for t in tab.index if include_intercept or t != "Intercept"]
    hv = tab.loc[terms, "human"].to_numpy()
    sv = tab.loc[terms, "simulated"].to_numpy()
    out: dict[str, float] = {"n": float(n)}
    notes: dict[str, str] = {}
    for name, fn, kw in (
        ("lins_ccc", lins_ccc, {}),
        ("sign_agreement", sign_agreement, {}),
        ("attenuation_slope", attenuation_slope, {"intercept": intercept_in_slope}),
        ("magnitude_ratio", magnitude_ratio, {}),
    ):
        try:
            out[name] = fn(hv, sv, **kw) if hv.size else math.nan
            if not hv.size:
                notes[name] = "not estimable: no coefficient besides the intercept"
        except EstimationError as err:
            out[name], notes[name] = math.nan, f"not estimable: {err}"
    ints = _intervals_table(intervals)
    if ints is not None:
        tab = tab.join(ints, how="left")
        have = [t for t in terms if t in ints.index]
        if not have:
            raise InputError(f"argument 'intervals' names none of the terms {terms}")
        out["coverage"] = interval_coverage(tab.loc[have, "human"], tab.loc[have, "conf_low"], tab.loc[have, "conf_high"])
    tab.attrs["dropped_terms"] = dropped
    tab.attrs["notes"] = notes
    return out, tab


# ---------------------------------------------------------------------------------------------
# individual axis
# ---------------------------------------------------------------------------------------------
def _paired(h: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(h, s, "human", "simulated")
    ok = ~np.isnan(a) & ~np.isnan(b)
    return a[ok], b[ok]


def pearson_r(human: Any, simulated: Any) -> float:
    """Pearson correlation over respondents with both values (pairs with a NaN skipped).

    ``r = sum (h_i - hbar)(s_i - sbar) / sqrt(sum (h_i - hbar)^2 sum (s_i - sbar)^2)``.

    Raises
    ------
    EstimationError
        With fewer than 3 pairs or no variation in either vector.

    Examples
    --------
    >>> round(float(pearson_r([1, 2, 3, float("nan")], [2, 4, 7, 1])), 4)
    0.9934
    """
    a, b = _paired(human, simulated)
    if a.size < 3:
        raise EstimationError(f"pearson_r is not estimable from {a.size} complete pairs (need 3); collect more "
                              f"respondents or merge the group with a neighbouring one")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        raise EstimationError("pearson_r is not estimable: one of the vectors does not vary")
    a = a - a.mean()
    b = b - b.mean()
    return float(np.clip(a @ b / math.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def mean_absolute_error(human: Any, simulated: Any) -> float:
    """``MAE = mean_i |s_i - h_i|`` over respondents with both values.

    Examples
    --------
    >>> float(mean_absolute_error([1, 2, float("nan")], [2, 2, 3]))
    0.5
    """
    a, b = _paired(human, simulated)
    if a.size == 0:
        raise EstimationError("mean_absolute_error is not estimable: no complete pair")
    return float(np.mean(np.abs(b - a)))


def _codes(a: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    idx = np.clip(np.searchsorted(grid, a), 0, grid.size - 1)
    bad = ~_close(grid[idx], a)
    if bad.any():
        raise InputError(
            f"argument {name!r} has values {np.unique(a[bad])[:3].tolist()} that are not option "
            f"scores {grid.tolist()}; round them to options explicitly"
        )
    return idx


def weighted_kappa(human: Any, simulated: Any, scores: Any = None) -> float:
    """Quadratic-weighted Cohen's kappa between human and simulated answers on the option scale.

    ``kappa = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij``, ``O`` the observed joint shares,
    ``E`` the product of the margins, ``w_ij = (s_i - s_j)^2`` (scores ``s``; equal to
    ``(i - j)^2 / (K - 1)^2`` up to a factor that cancels for scores ``1..K``). Pairs with a NaN
    are skipped. With all options observed it equals
    ``sklearn.metrics.cohen_kappa_score(h, s, weights="quadratic")``.

    Parameters
    ----------
    human, simulated : array-like of option scores
    scores : sequence of float, optional
        Default: the values observed in either vector.

    Examples
    --------
    >>> round(float(weighted_kappa([1, 2, 3, 4, 4], [1, 2, 3, 3, 4])), 4)
    0.918
    """
    a, b = _paired(human, simulated)
    if a.size < 2:
        raise EstimationError(f"weighted_kappa is not estimable from {a.size} complete pairs")
    grid = _scores_arg(scores)
    if grid is None:
        grid = np.union1d(a, b)
    ia, ib = _codes(a, grid, "human"), _codes(b, grid, "simulated")
    k = grid.size
    obs = np.zeros((k, k))
    np.add.at(obs, (ia, ib), 1.0)
    obs /= a.size
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    w = (grid[:, None] - grid[None, :]) ** 2
    den = float(np.sum(w * exp))
    if den == 0:
        raise EstimationError("weighted_kappa is not estimable: both raters use a single option")
    return 1.0 - float(np.sum(w * obs)) / den


def accuracy(human: Any, simulated: Any) -> float:
    """Share of respondents whose simulated answer equals the human answer (NaN pairs skipped).

    Examples
    --------
    >>> float(accuracy([1, 2, 3, 4], [1, 2, 2, 2]))
    0.5
    """
    a, b = _paired(human, simulated)
    if a.size == 0:
        raise EstimationError("accuracy is not estimable: no complete pair")
    return float(np.mean(_close(a, b)))


def _prob_pairs(human: Any, probs: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _numeric(human, "human")
    p = _probs(probs, "probs", n=y.size)
    grid = _scores_arg(scores, p.shape[1])
    ok = ~np.isnan(y)
    if not ok.any():
        raise EstimationError("not estimable: every human answer is missing")
    return _codes(y[ok], grid, "human"), p[ok]


def log_loss(human: Any, probs: Any, scores: Any = None) -> float:
    """Mean negative log-likelihood of the human answers under the simulated distributions.

    ``LL = -(1/n) sum_i log p_i(y_i)`` (natural log; respondents with a missing answer skipped).
    No clipping: a zero probability on an observed answer gives ``inf``.

    Parameters
    ----------
    human : array-like of option scores (n,)
    probs : array-like (n, K)
    scores : sequence of float, optional (default ``1..K``)

    Examples
    --------
    >>> round(float(log_loss([1, 2], [[0.5, 0.5], [0.2, 0.8]])), 4)
    0.4581
    """
    idx, p = _prob_pairs(human, probs, scores)
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(p[np.arange(idx.size), idx])))


def brier_score(human: Any, probs: Any, scores: Any = None) -> float:
    """Multi-class Brier score ``(1/n) sum_i sum_k (p_ik - 1[y_i = k])^2`` (0 best, 2 worst).

    Examples
    --------
    >>> float(brier_score([1, 2], [[1.0, 0.0], [0.5, 0.5]]))
    0.25
    """
    idx, p = _prob_pairs(human, probs, scores)
    onehot = np.zeros_like(p)
    onehot[np.arange(idx.size), idx] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def scale_score(data: pd.DataFrame, plus: Sequence[str], minus: Sequence[str] = ()) -> pd.Series:
    """Per-respondent scale score ``mean(plus items) - mean(minus items)``, NaN skipped.

    A respondent with no answered item in ``plus`` (or in a non-empty ``minus``) gets NaN.
    Example: discernment = ``scale_score(df, true_items, false_items)``.

    Examples
    --------
    >>> d = pd.DataFrame({"t": [4.0, 3.0], "f": [1.0, float("nan")]})
    >>> scale_score(d, ["t"], ["f"]).tolist()
    [3.0, nan]
    """
    cols = list(plus) + list(minus)
    absent = [c for c in cols if c not in data.columns]
    if absent or not plus:
        raise InputError(f"scale items {absent or '(none)'} are not columns of the data")
    vals = data[cols].to_numpy(dtype=float)
    k = len(plus)

    def mean(block: np.ndarray) -> np.ndarray:
        cnt = (~np.isnan(block)).sum(axis=1)
        return np.where(cnt > 0, np.nansum(block, axis=1) / np.maximum(cnt, 1), np.nan)

    out = mean(vals[:, :k])
    if len(minus):
        out = out - mean(vals[:, k:])
    return pd.Series(out, index=data.index)


# ---------------------------------------------------------------------------------------------
# subgroups
# ---------------------------------------------------------------------------------------------
def by_group(
    metric: Callable[..., float], groups: Any, *arrays: Any, min_n: int = 20, **kwargs: Any
) -> pd.DataFrame:
    """Apply ``metric(*arrays_in_group, **kwargs)`` in each group.

    A group with fewer than ``min_n`` rows, or where the metric raises
    :class:`~rectify.errors.EstimationError`, gets ``value = NaN`` and the reason in ``note``.

    Parameters
    ----------
    metric : callable
    groups : array-like
        One group label per row (no missing labels).
    *arrays : array-like
        Row-aligned inputs of the metric (1-D or (n, K)).
    min_n : int, default 20

    Returns
    -------
    DataFrame with columns ``group``, ``value``, ``n``, ``note``.

    Examples
    --------
    >>> g = ["a"] * 30 + ["b"] * 5
    >>> h = np.r_[np.tile([1.0, 2.0, 3.0], 10), [1.0, 2, 3, 4, 4]]
    >>> by_group(mean_difference, g, h, h + 0.5)[["group", "value", "n"]].to_dict("list")
    {'group': ['a', 'b'], 'value': [0.5, nan], 'n': [30, 5]}
    """
    g = pd.Series(np.asarray(groups, dtype=object))
    if g.isna().any():
        raise MissingCovariateError("argument 'groups' has missing labels; fill or drop those rows first")
    arrs = [np.asarray(a) for a in arrays]
    for a in arrs:
        if a.shape[0] != len(g):
            raise InputError(f"every array must have {len(g)} rows like 'groups', got {a.shape[0]}")
    rows = []
    for label in pd.unique(g):
        mask = (g == label).to_numpy()
        n = int(mask.sum())
        rows.append(_safe(metric, [a[mask] for a in arrs], kwargs, n, min_n) | {"group": label})
    return pd.DataFrame(rows, columns=["group", "value", "n", "note"])


def _safe(metric: Callable[..., float], args: list, kwargs: dict, n: int, min_n: int) -> dict[str, Any]:
    if n < min_n:
        return {"value": math.nan, "n": n, "note": f"not estimable: n={n} < min_n={min_n}"}
    try:
        return {"value": float(metric(*args, **kwargs)), "n": n, "note": ""}
    except EstimationError as err:
        return {"value": math.nan, "n": n, "note": f"not estimable: {err}"}


def group_summary(report: pd.DataFrame) -> pd.DataFrame:
    """Worst group, best group and spread per (axis, metric, item, grouping) of a report.

    "Worst" follows each metric's direction in :data:`METRICS` (e.g. the largest distance, the
    lowest correlation, the SD ratio farthest from 1 on the log scale, the attenuation slope
    farthest from 1). ``spread = max(value) - min(value)`` over the estimable groups; groups
    that are not estimable are counted in ``n_not_estimable``.

    Parameters
    ----------
    report : DataFrame
        As returned by :func:`fidelity_report`.

    Returns
    -------
    DataFrame with columns axis, metric, item, grouping, worst_group, worst_value, best_group,
    best_value, spread, n_groups, n_not_estimable.

    Examples
    --------
    >>> rep = pd.DataFrame({"axis": "individual", "metric": "pearson_r", "item": "d",
    ...     "grouping": "g", "group": ["a", "b", "c"], "value": [0.6, 0.2, float("nan")],
    ...     "n": 50, "note": ""})
    >>> s = group_summary(rep).iloc[0]
    >>> s["worst_group"], round(float(s["spread"]), 2), int(s["n_not_estimable"])
    ('b', 0.4, 1)
    """
    missing = [c for c in REPORT_COLUMNS if c not in report.columns]
    if missing:
        raise InputError(f"argument 'report' lacks columns {missing}; pass the output of fidelity_report")
    sub = report[report["grouping"] != ALL]
    rows = []
    for key, part in sub.groupby(["axis", "metric", "item", "grouping"], sort=False):
        ok = part[part["value"].notna()]
        badness = METRICS.get(key[1], (None, lambda v: v))[1]
        row = dict(zip(["axis", "metric", "item", "grouping"], key))
        row.update(n_groups=len(part), n_not_estimable=int(part["value"].isna().sum()))
        if len(ok):
            bad = ok["value"].map(badness).to_numpy()
            w, b = int(np.argmax(bad)), int(np.argmin(bad))
            row.update(
                worst_group=ok["group"].iloc[w],
                worst_value=float(ok["value"].iloc[w]),
                best_group=ok["group"].iloc[b],
                best_value=float(ok["value"].iloc[b]),
                spread=_spread(ok["value"].to_numpy(dtype=float)),
            )
        else:
            row.update(worst_group=None, worst_value=math.nan, best_group=None, best_value=math.nan, spread=math.nan)
        rows.append(row)
    cols = ["axis", "metric", "item", "grouping", "worst_group", "worst_value", "best_group", "best_value",
            "spread", "n_groups", "n_not_estimable"]
    return pd.DataFrame(rows, columns=cols)


def _spread(v: np.ndarray) -> float:
    """max - min of a metric over groups; infinite when a group's value is infinite (a ratio with a
    zero denominator), 0 when every group has the same infinite value."""
    hi, lo = float(v.max()), float(v.min())
    return 0.0 if hi == lo else hi - lo


# ---------------------------------------------------------------------------------------------
# one-call report
# ---------------------------------------------------------------------------------------------
def _item_names(items: Any) -> tuple[list[str], dict[str, np.ndarray]]:
    if items is None or isinstance(items, str):
        raise InputError("argument 'items' must be a list of item names or Item objects")
    names, scores = [], {}
    for it in items:
        if isinstance(it, str):
            names.append(it)
        elif hasattr(it, "name") and hasattr(it, "score_values"):
            names.append(it.name)
            scores[it.name] = np.asarray(it.score_values, dtype=float)
        else:
            raise InputError(f"argument 'items' has an entry {it!r} that is neither a name nor an Item")
    if not names:
        raise InputError("argument 'items' is empty")
    return names, scores


def _scales_arg(scales: Any) -> dict[str, tuple[list[str], list[str]]]:
    out: dict[str, tuple[list[str], list[str]]] = {}
    if scales is None:
        return out
    if not isinstance(scales, Mapping):
        scales = {s.name: s for s in scales}
    for name, spec in scales.items():
        if hasattr(spec, "items") and hasattr(spec, "signs") and not isinstance(spec, Mapping):
            plus = [it.name for it, sg in zip(spec.items, spec.signs) if sg > 0]
            minus = [it.name for it, sg in zip(spec.items, spec.signs) if sg < 0]
        else:
            try:
                plus, minus = spec
            except (TypeError, ValueError):
                raise InputError(
                    f"scale {name!r} must be a Scale or a pair (plus_items, minus_items)"
                ) from None
        out[str(name)] = (list(plus), list(minus))
    return out


def fidelity_report(
    human_df: pd.DataFrame,
    simulated_df: pd.DataFrame,
    items: Sequence[Any],
    formula: str | None = None,
    groups: Sequence[str] | str | None = None,
    scales: Any = None,
    probabilities: Mapping[str, Any] | None = None,
    intervals: Any = None,
    scores: Any = None,
    min_group_n: int = 20,
) -> pd.DataFrame:
    """All fidelity metrics, overall and per subgroup, as one tidy table.

    Rows are paired by position: row ``i`` of ``simulated_df`` is the simulated answer set of
    the person in row ``i`` of ``human_df`` (the indexes must be equal). Per item, respondents
    with a missing human answer are left out (marginal and individual metrics use the same
    respondents for both sides).

    * marginal (per item): wasserstein1, wasserstein1_norm, total_variation, jensen_shannon,
      mean_difference, sd_ratio. TV and JS need simulated answers on the option scale or
      ``probabilities``; otherwise NaN with a note.
    * individual (per item): weighted_kappa and accuracy on the point prediction (the simulated
      value if it is an option score, otherwise the option nearest to it -- noted), log_loss and
      brier_score when ``probabilities`` are given; per scale (``scales``; default the mean over
      ``items``): pearson_r and mae.
    * structural: ``formula``'s left-hand side is a column or a scale name; it is fitted on the
      human and on the simulated values with the same design (see :func:`structural_fidelity`).
      In a subgroup, terms that do not vary within the group (such as the grouping variable)
      are dropped from both fits.
    * per-item metrics also get a row ``item = "(mean over items)"`` (mean of the estimable items;
      for ``mean_difference`` also ``mean_abs_difference``, the mean of its absolute values).

    Parameters
    ----------
    human_df : DataFrame
        Covariates, grouping columns and the human answers (NaN = missing).
    simulated_df : DataFrame
        The simulated (or corrected) answers, same index and item columns.
    items : list of str or Item
    formula : str, optional
        E.g. ``"discernment ~ age + gender + education + ideology"``.
    groups : str or list of str, optional
        Columns of ``human_df``; each is analysed separately.
    scales : dict name -> Scale or (plus_items, minus_items), optional
    probabilities : dict item -> (n, K) array, optional
    intervals : Result, DataFrame or dict, optional
        Intervals for the structural coefficients (whole sample only).
    scores : sequence of float, optional
        Option scores for every item (default: from Item objects, else the sorted values seen in
        the human answers over all items).
    min_group_n : int, default 20
        Fewer usable respondents than this in a group -> not estimable.

    Returns
    -------
    DataFrame with columns axis, metric, item, grouping, group, value, n, note.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo, misinfo_item_names
    >>> df = load_misinfo()
    >>> items = misinfo_item_names()[:4]
    >>> sim = df[[i + "_llm" for i in items]].set_axis(items, axis=1)
    >>> rep = fidelity_report(df, sim, items, groups="ideology")
    >>> row = rep.query("metric == 'sd_ratio' and item == 'f01' and grouping == 'all'")
    >>> bool(row["value"].iloc[0] < 0.5)  # the simulator's planted compressed variance
    True
    >>> sorted(rep.query("grouping == 'ideology'")["group"].unique())
    ['conservative', 'liberal', 'moderate']
    """
    names, item_scores = _item_names(items)
    _check_frames(human_df, simulated_df, names)
    grouping = [groups] if isinstance(groups, str) else list(groups or [])
    absent = [g for g in grouping if g not in human_df.columns]
    if absent:
        raise InputError(f"argument 'groups' names columns not in human_df: {absent}; check the names or add "
                         f"the columns to human_df")
    for g in grouping:
        if human_df[g].isna().any():
            raise MissingCovariateError(f"grouping column {g!r} has missing values; fill or drop those rows first")
    if isinstance(min_group_n, bool) or not isinstance(min_group_n, (int, np.integer)) or min_group_n < 1:
        raise InputError(f"argument 'min_group_n' must be a positive integer, got {min_group_n!r}")
    probs = {k: _probs(v, f"probabilities[{k!r}]", n=len(human_df)) for k, v in (probabilities or {}).items()}
    unknown = sorted(set(probs) - set(names))
    if unknown:
        raise InputError(f"argument 'probabilities' has items {unknown} that are not in 'items'")
    grid_all = _scores_arg(scores)
    if grid_all is None:
        seen = human_df[names].to_numpy(dtype=float)
        grid_all = np.unique(seen[~np.isnan(seen)])
    scale_defs = _scales_arg(scales) or {"mean_score": (names, [])}

    parts = [(ALL, ALL, np.ones(len(human_df), dtype=bool))]
    for g in grouping:
        col = human_df[g]
        levels = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else pd.unique(col)
        for lev in levels:
            parts.append((g, str(lev), (col == lev).to_numpy()))

    h_all = _numeric(human_df[names], "human_df", ndim=(2,))
    s_all = _numeric(simulated_df[names], "simulated_df", ndim=(2,))
    scale_values = {
        k: (scale_score(human_df, *v).to_numpy(), scale_score(simulated_df, *v).to_numpy())
        for k, v in scale_defs.items()
    }
    structural = _structural_inputs(formula, human_df, simulated_df, scale_defs) if formula else None
    rows: list[dict[str, Any]] = []
    for gname, glabel, mask in parts:
        for j, item in enumerate(names):
            grid = item_scores.get(item, grid_all)
            rows += _item_rows(h_all[mask, j], s_all[mask, j], probs[item][mask] if item in probs else None,
                               grid, min_group_n, item, gname, glabel)
        for sname, (h_scale, s_scale) in scale_values.items():
            hs, ss = h_scale[mask], s_scale[mask]
            n_ok = int((~np.isnan(hs) & ~np.isnan(ss)).sum())
            for metric, fn in (("pearson_r", pearson_r), ("mae", mean_absolute_error)):
                rows.append(_row("individual", metric, sname, gname, glabel, _safe(fn, [hs, ss], {}, n_ok, min_group_n)))
        if formula is not None:
            rows += _structural_rows(structural, mask, gname, glabel, intervals if gname == ALL else None,
                                     min_group_n)
    rep = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    return _add_item_means(rep, names)


def _check_frames(human_df: Any, simulated_df: Any, names: list[str]) -> None:
    for arg, d in (("human_df", human_df), ("simulated_df", simulated_df)):
        if not isinstance(d, pd.DataFrame):
            raise InputError(f"argument {arg!r} must be a pandas DataFrame, got {type(d).__name__}")
        absent = [c for c in names if c not in d.columns]
        if absent:
            raise InputError(f"argument {arg!r} lacks item columns {absent}")
    if not human_df.index.equals(simulated_df.index):
        lost = human_df.index.difference(simulated_df.index)
        extra = simulated_df.index.difference(human_df.index)
        detail = (f"{len(lost)} rows of human_df are missing from simulated_df (e.g. {lost[:3].tolist()})" if len(lost)
                  else f"{len(extra)} rows of simulated_df are not in human_df" if len(extra)
                  else "the rows are in a different order or duplicated")
        raise InputError(f"human_df and simulated_df must have the same index (one simulated row per person): "
                         f"{detail}; align them first, e.g. simulated_df.loc[human_df.index] or "
                         f"human_df.loc[simulated_df.index]")
    empty = [c for c in names if human_df[c].isna().all()]
    if empty:
        raise InputError(f"items {empty}: every human answer is missing; drop them from 'items'")


def _row(axis: str, metric: str, item: str, grouping: str, group: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"axis": axis, "metric": metric, "item": item, "grouping": grouping, "group": group,
            "value": res["value"], "n": res["n"], "note": res["note"]}


def _item_rows(h: np.ndarray, s: np.ndarray, p: np.ndarray | None, grid: np.ndarray, min_n: int,
               item: str, gname: str, glabel: str) -> list[dict[str, Any]]:
    ok = ~np.isnan(h) & ~np.isnan(s)
    h, s = h[ok], s[ok]
    p = p[ok] if p is not None else None
    n = int(ok.sum())
    on_scale = bool(np.all(_close(grid[np.clip(np.searchsorted(grid, s), 0, grid.size - 1)], s)))
    disc = s if on_scale else None
    rows = []

    def add(axis: str, metric: str, fn: Callable[..., float], args: list, note: str = "", **kw: Any) -> None:
        res = _safe(fn, args, kw, n, min_n)
        if note and not res["note"]:
            res["note"] = note
        rows.append(_row(axis, metric, item, gname, glabel, res))

    for metric, fn, kw in (
        ("wasserstein1", wasserstein1, {}),
        ("wasserstein1_norm", wasserstein1, {"scores": grid, "normalise": True}),
        ("mean_difference", mean_difference, {}),
        ("sd_ratio", sd_ratio, {}),
    ):
        add("marginal", metric, fn, [h, s], **kw)
    for metric, fn in (("total_variation", total_variation), ("jensen_shannon", jensen_shannon)):
        if disc is not None:
            add("marginal", metric, fn, [h, disc], scores=grid)
        elif p is not None:
            add("marginal", metric, fn, [h, p], scores=grid, note="simulated side: option probabilities")
        else:
            rows.append(_row("marginal", metric, item, gname, glabel, {
                "value": math.nan, "n": n,
                "note": "not estimable: simulated values are not option scores; give probabilities"}))
    point = disc
    note = ""
    if point is None:
        point = grid[np.argmin(np.abs(s[:, None] - grid[None, :]), axis=1)] if n else s
        note = "point prediction = option nearest to the simulated value"
    add("individual", "weighted_kappa", weighted_kappa, [h, point], note=note, scores=grid)
    add("individual", "accuracy", accuracy, [h, point], note=note)
    if p is not None:
        add("individual", "log_loss", log_loss, [h, p], scores=grid)
        add("individual", "brier_score", brier_score, [h, p], scores=grid)
    return rows


def _structural_inputs(formula: str, human_df: pd.DataFrame, simulated_df: pd.DataFrame,
                       scale_defs: dict) -> tuple[str, np.ndarray, np.ndarray, pd.DataFrame]:
    lhs, rhs = _split_formula(formula)
    if lhs in scale_defs:
        yh = scale_score(human_df, *scale_defs[lhs]).to_numpy()
        ys = scale_score(simulated_df, *scale_defs[lhs]).to_numpy()
    elif lhs in human_df.columns and lhs in simulated_df.columns:
        yh = human_df[lhs].to_numpy(dtype=float)
        ys = simulated_df[lhs].to_numpy(dtype=float)
    else:
        raise InputError(f"response {lhs!r} of 'formula' is neither a scale nor a column of both frames")
    return lhs, yh, ys, _design(rhs, human_df)


def _structural_rows(structural: tuple, mask: np.ndarray, gname: str, glabel: str,
                     intervals: Any, min_n: int) -> list[dict[str, Any]]:
    lhs, yh, ys, X = structural
    yh, ys, Xg = yh[mask], ys[mask], X.loc[mask]
    n = int((~np.isnan(yh) & ~np.isnan(ys)).sum())
    metrics = (["lins_ccc", "sign_agreement", "attenuation_slope", "magnitude_ratio"]
               + (["coverage"] if intervals is not None else []))
    if n < min_n:
        res = {m: {"value": math.nan, "n": n, "note": f"not estimable: n={n} < min_n={min_n}"} for m in metrics}
    else:
        try:
            vals, tab = _structural_core(yh, ys, Xg, intervals, False, False)
            dropped = tab.attrs.get("dropped_terms", [])
            note = f"terms constant in group dropped: {', '.join(dropped)}" if dropped else ""
            res = {m: {"value": vals[m], "n": n, "note": tab.attrs["notes"].get(m, note)} for m in metrics}
        except EstimationError as err:
            res = {m: {"value": math.nan, "n": n, "note": f"not estimable: {err}"} for m in metrics}
    return [_row("structural", m, lhs, gname, glabel, res[m]) for m in metrics]


def _add_item_means(rep: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    per_item = rep[rep["item"].isin(names)]
    if per_item.empty:
        return rep
    agg = (
        per_item.groupby(["axis", "metric", "grouping", "group"], sort=False)
        .agg(value=("value", "mean"), n=("n", "sum"), n_est=("value", "count"))
        .reset_index()
    )
    agg["item"] = ITEM_MEAN
    # a signed mean difference would cancel across items: aggregate its absolute value instead
    signed = per_item[per_item["metric"] == "mean_difference"].assign(value=lambda d: d["value"].abs())
    if not signed.empty:
        extra = (
            signed.groupby(["axis", "metric", "grouping", "group"], sort=False)
            .agg(value=("value", "mean"), n=("n", "sum"), n_est=("value", "count"))
            .reset_index()
            .assign(metric="mean_abs_difference", item=ITEM_MEAN)
        )
        agg = pd.concat([agg, extra], ignore_index=True)
    agg["note"] = np.where(
        agg["n_est"] == 0,
        "not estimable for any item",
        "mean over " + agg["n_est"].astype(str) + f" of {len(names)} items; n = answers used",
    )
    return pd.concat([rep, agg[REPORT_COLUMNS]], ignore_index=True)
