"""Structural axis of :mod:`rectify.fidelity`: one regression formula fitted on human and on
simulated answers -- Lin's concordance of the coefficients, sign agreement, attenuation slope,
magnitude ratio and the coverage of the human coefficients by a method's intervals."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import EstimationError, InputError, MissingCovariateError
from .fidelity_inputs import _numeric, _pair

__all__ = ["lins_ccc", "sign_agreement", "attenuation_slope", "magnitude_ratio", "interval_coverage",
           "fit_coefficients", "structural_fidelity"]


# ---------------------------------------------------------------------------------------------
# structural axis
# ---------------------------------------------------------------------------------------------
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
