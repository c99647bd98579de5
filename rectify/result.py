"""One immutable result type for every estimator in rectify.

A :class:`Result` holds point estimates, their covariance, the interval convention (Student-t with
per-term degrees of freedom, normal, posterior draws, or a test-inverted interval), the method and
sample sizes, tuning parameters such as PPI++'s lambda, and diagnostics. ``tidy()`` gives one row
per term in the broom/R convention; ``summary()`` prints a table a survey methodologist can read;
:func:`etable` puts several results side by side.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .errors import InputError

if TYPE_CHECKING:  # pandas loads on first use: keeps `import rectify` fast
    import pandas as pd

__all__ = ["Result", "etable", "check_level"]

TIDY_COLUMNS = [
    "term",
    "estimate",
    "std_error",
    "statistic",
    "p_value",
    "conf_low",
    "conf_high",
    "method",
    "n_pilot",
    "n_population",
]


def check_level(level: float) -> float:
    """Validate a confidence level and return it as a float.

    Parameters
    ----------
    level : float
        Confidence level, strictly between 0 and 1 (e.g. 0.95).

    Returns
    -------
    float

    Examples
    --------
    >>> check_level(0.9)
    0.9
    """
    if isinstance(level, (str, bytes, bool, np.bool_)):
        raise InputError(f"argument 'level' must be a number in (0, 1) such as 0.95, got {level!r}: pass a number, "
                         "not text or True/False")
    try:
        level_f = float(level)
    except (TypeError, ValueError):
        raise InputError(f"argument 'level' must be a number in (0, 1), got {level!r}") from None
    if not (0.0 < level_f < 1.0) or not np.isfinite(level_f):
        raise InputError(
            f"argument 'level' must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}"
        )
    return level_f


def _frozen(a: Any, ndim: int | None = None) -> np.ndarray | None:
    if a is None:
        return None
    arr = np.array(a, dtype=float, copy=True)
    if ndim == 1:
        arr = np.atleast_1d(arr)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Result:
    """The outcome of one estimation: estimates, uncertainty, and how they were obtained.

    Parameters
    ----------
    estimate : array-like, shape (d,)
        Point estimates, one per term.
    cov : array-like, shape (d, d)
        Estimated covariance matrix of the estimates.
    terms : sequence of str
        Term names (coefficient names, option labels, ``"mean"``...).
    method : str
        Estimation method (``"classical"``, ``"naive"``, ``"ppi"``, ``"ppi++"``, ...).
    estimand : str
        What is estimated (``"mean"``, ``"shares"``, ``"ols"``, ...).
    n_pilot, n_population : int
        Number of human-labelled pilot rows and of population (frame) rows used.
    level : float, default 0.95
        Default confidence level for intervals.
    df : array-like or None
        Degrees of freedom of the Student-t reference distribution per term; ``None`` or
        ``inf`` means the normal distribution.
    tuning : mapping
        Tuning parameters, e.g. ``{"lambda": 0.73}``.
    diagnostics : mapping
        Anything else worth reporting (iterations, effective sample size, warnings).
    groups : sequence of str, optional
        Subgroup label of each term, for subgroup (``by=``) results.
    draws : array-like, shape (S, d), optional
        Posterior or bootstrap draws; when given, intervals are their equal-tailed quantiles.
    interval_fn : callable, optional
        ``interval_fn(level) -> (low, high)`` for intervals that are not of the Wald type
        (e.g. test-inverted quantile intervals).
    bounds : tuple of float, optional
        The parameter space (e.g. ``(0, 1)`` for shares); intervals are intersected with it.
    posterior : object, optional
        An ArviZ ``InferenceData`` for Bayesian fits.
    target : {"frame", "superpopulation"}, optional
        Whether the interval covers the finite frame's quantity or the superpopulation's
        (see :mod:`rectify.estimand`); ``None`` where the estimator does not say.
    pilot_in_frame : bool, optional
        Whether the pilot's people are frame rows (``None``: unknown or no frame).

    Examples
    --------
    >>> r = Result(estimate=[2.0], cov=[[0.25]], terms=["mean"], method="classical",
    ...            estimand="mean", n_pilot=30, n_population=0, df=[29])
    >>> float(round(r.std_error[0], 3))
    0.5
    >>> low, high = r.conf_int()
    >>> float(round(low[0], 3)), float(round(high[0], 3))
    (0.977, 3.023)
    """

    estimate: np.ndarray
    cov: np.ndarray
    terms: tuple
    method: str
    estimand: str
    n_pilot: int
    n_population: int
    level: float = 0.95
    df: np.ndarray | None = None
    tuning: Mapping[str, Any] = field(default_factory=dict)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple | None = None
    draws: np.ndarray | None = None
    interval_fn: Callable[[float], tuple] | None = None
    bounds: tuple | None = None
    posterior: Any = None
    target: str | None = None
    pilot_in_frame: bool | None = None

    def __post_init__(self) -> None:
        est = _frozen(self.estimate, ndim=1)
        d = est.shape[0]
        cov = _frozen(self.cov)
        if cov.shape == () and d == 1:
            cov = _frozen(np.reshape(cov, (1, 1)))
        if cov.shape != (d, d):
            raise InputError(f"Result: 'cov' must have shape ({d}, {d}), got {cov.shape}")
        terms = tuple(str(t) for t in self.terms)
        if len(terms) != d:
            raise InputError(f"Result: {len(terms)} term names for {d} estimates")
        df = None
        if self.df is not None:
            df = np.broadcast_to(np.asarray(self.df, dtype=float), (d,)).copy()
            df.setflags(write=False)
        groups = None if self.groups is None else tuple(str(g) for g in self.groups)
        if groups is not None and len(groups) != d:
            raise InputError(f"Result: {len(groups)} group labels for {d} estimates")
        draws = _frozen(self.draws)
        if draws is not None and (draws.ndim != 2 or draws.shape[1] != d):
            raise InputError(f"Result: 'draws' must have shape (S, {d})")
        object.__setattr__(self, "estimate", est)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "df", df)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "draws", draws)
        object.__setattr__(self, "level", check_level(self.level))
        object.__setattr__(self, "tuning", dict(self.tuning))
        object.__setattr__(self, "diagnostics", dict(self.diagnostics))

    # ------------------------------------------------------------------ basic quantities
    @property
    def std_error(self) -> np.ndarray:
        """Standard errors: square roots of the covariance diagonal."""
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    @property
    def params(self):
        """Estimates as a pandas Series indexed by term (and group, if any)."""
        import pandas as pd

        return pd.Series(self.estimate, index=self._index(), name=self.method)

    def _index(self):
        import pandas as pd

        if self.groups is None:
            return pd.Index(self.terms, name="term")
        return pd.MultiIndex.from_arrays([self.groups, self.terms], names=["group", "term"])

    def _critical(self, level: float) -> np.ndarray:
        from scipy import special  # on first use: keeps ``import rectify`` fast

        q = 0.5 + level / 2.0
        if self.df is None:
            return np.full(self.estimate.shape, special.ndtri(q))
        df = np.asarray(self.df, dtype=float)
        return np.where(np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), q),
                        special.ndtri(q))

    def conf_int(self, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Confidence (or credible) interval bounds at ``level`` (default: the result's level).

        Returns
        -------
        (low, high) : tuple of ndarray

        Examples
        --------
        >>> r = Result([0.0], [[1.0]], ["x"], "classical", "mean", 10, 0)
        >>> [round(float(v[0]), 2) for v in r.conf_int(0.9)]
        [-1.64, 1.64]
        """
        level = self.level if level is None else check_level(level)
        if self.interval_fn is not None:
            low, high = self.interval_fn(level)
            low, high = np.asarray(low, float), np.asarray(high, float)
        elif self.draws is not None:
            a = (1.0 - level) / 2.0
            low, high = np.quantile(self.draws, [a, 1.0 - a], axis=0)
        else:
            half = self._critical(level) * self.std_error
            low, high = self.estimate - half, self.estimate + half
        if self.bounds is not None:
            low = np.clip(low, self.bounds[0], self.bounds[1])
            high = np.clip(high, self.bounds[0], self.bounds[1])
        return low, high

    @property
    def statistic(self) -> np.ndarray:
        """Wald statistics (estimate / standard error) for the null value 0."""
        se = self.std_error
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(se > 0, self.estimate / se, np.nan)

    @property
    def p_value(self) -> np.ndarray:
        """Two-sided p-values for the null value 0 (t or normal reference, as the intervals)."""
        from scipy import special

        t = np.abs(self.statistic)
        if self.df is None:
            return 2.0 * special.ndtr(-t)
        df = np.asarray(self.df, float)
        return np.where(np.isfinite(df), 2.0 * special.stdtr(np.where(np.isfinite(df), df, 1.0), -t),
                        2.0 * special.ndtr(-t))

    # ------------------------------------------------------------------ presentation
    def tidy(self, level: float | None = None):
        """One row per term: term, estimate, std_error, statistic, p_value, conf_low, conf_high,
        method, n_pilot, n_population (plus ``group`` for subgroup results).

        Examples
        --------
        >>> r = Result([1.0, 2.0], [[1, 0], [0, 4]], ["a", "b"], "ppi++", "mean", 50, 1000)
        >>> list(r.tidy().columns)[:4]
        ['term', 'estimate', 'std_error', 'statistic']
        """
        import pandas as pd

        low, high = self.conf_int(level)
        out = pd.DataFrame(
            {
                "term": list(self.terms),
                "estimate": self.estimate,
                "std_error": self.std_error,
                "statistic": self.statistic,
                "p_value": self.p_value,
                "conf_low": low,
                "conf_high": high,
                "method": self.method,
                "n_pilot": self.n_pilot,
                "n_population": self.n_population,
            }
        )
        if self.groups is not None:
            out.insert(0, "group", list(self.groups))
        return out

    def _header(self) -> list[str]:
        lines = [f"{self.estimand} estimated by {self.method}"]
        lines.append(f"pilot n = {self.n_pilot}, population N = {self.n_population}")
        if self.target is not None:
            lines.append(self._target_line())
        if self.tuning:
            parts = []
            for k, v in self.tuning.items():
                if isinstance(v, (list, tuple, np.ndarray)):
                    v = np.asarray(v, float)
                    parts.append(f"{k} = [" + ", ".join(f"{x:.3f}" for x in v.ravel()) + "]")
                elif isinstance(v, (float, np.floating)):
                    parts.append(f"{k} = {v:.4f}")
                else:
                    parts.append(f"{k} = {v}")
            lines.append("tuning: " + "; ".join(parts))
        if self.draws is not None:
            lines.append("intervals: equal-tailed posterior quantiles")
        elif self.interval_fn is not None:
            lines.append("intervals: inverted test (not Wald)")
        elif self.df is None:
            lines.append("intervals: normal (z)")
        else:
            lines.append("intervals: Student t, df = " + ", ".join(f"{d:.1f}" for d in np.unique(np.round(self.df, 1))[:4]))
        return lines

    def _target_line(self) -> str:
        head = "target: the finite frame" if self.target == "frame" else f"target: the {self.target}"
        if self.pilot_in_frame is None:
            return head + ("; no frame size given, so no finite-population correction" if self.target == "frame"
                           and not self.n_population else "")
        if not self.pilot_in_frame:
            return head + "; pilot a separate sample from the frame"
        fpc = 1 - self.n_pilot / self.n_population if self.n_population else float("nan")
        return head + f"; pilot inside the frame (finite-population correction 1 - n/N = {fpc:.3g})"

    def summary(self, level: float | None = None, html_output: bool = False) -> str:
        """A readable summary table (text, or HTML with ``html_output=True``).

        Examples
        --------
        >>> r = Result([1.0], [[0.01]], ["mean"], "ppi++", "mean", 50, 1000, tuning={"lambda": 0.5})
        >>> print(r.summary().splitlines()[0])
        mean estimated by ppi++
        """
        level = self.level if level is None else check_level(level)
        tab = self.tidy(level)
        pct = f"{100 * level:g}%"
        show = tab.drop(columns=["method", "n_pilot", "n_population"]).rename(
            columns={"conf_low": f"{pct} low", "conf_high": f"{pct} high"}
        )
        if html_output:
            head = "".join(f"<p>{html.escape(l)}</p>" for l in self._header())
            return head + show.to_html(index=False, float_format=lambda v: f"{v:.4g}", escape=True)
        body = show.to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return "\n".join(self._header() + [body])

    def _repr_html_(self) -> str:
        return self.summary(html_output=True)

    def __repr__(self) -> str:
        return self.summary()

    def with_level(self, level: float) -> "Result":
        """A copy whose default interval level is ``level``."""
        return replace(self, level=check_level(level))


def etable(
    results: Sequence[Result] | Mapping[str, Result],
    level: float | None = None,
    stat: str = "se",
    digits: int = 3,
) -> "pd.DataFrame":
    """Several results side by side: one column per result, one row per term.

    Parameters
    ----------
    results : sequence of Result or mapping name -> Result
        Results to compare (e.g. classical, naive, PPI and PPI++ on the same estimand).
    level : float, optional
        Interval level when ``stat="ci"`` (default: each result's own level).
    stat : {"se", "ci"}
        Show the standard error or the confidence interval under each estimate.
    digits : int
        Significant digits.

    Returns
    -------
    pandas.DataFrame
        Cells are strings such as ``"0.512 (0.031)"``; the last rows give n_pilot, n_population
        and lambda.

    Examples
    --------
    >>> a = Result([1.0], [[0.04]], ["mean"], "classical", "mean", 50, 0)
    >>> b = Result([1.1], [[0.01]], ["mean"], "ppi++", "mean", 50, 1000, tuning={"lambda": 0.8})
    >>> etable([a, b]).loc["mean"].tolist()
    ['1 (0.2)', '1.1 (0.1)']
    """
    if stat not in ("se", "ci"):
        raise InputError(f"argument 'stat' must be 'se' or 'ci', got {stat!r}")
    if isinstance(results, Mapping):
        names, items = list(results.keys()), list(results.values())
    else:
        items = list(results)
        names = [r.method for r in items]
        seen: dict[str, int] = {}
        for i, nm in enumerate(names):
            if nm in seen:
                seen[nm] += 1
                names[i] = f"{nm} ({seen[nm]})"
            else:
                seen[nm] = 1
    if not items:
        raise InputError("argument 'results' is empty; pass at least one Result")
    for r in items:
        if not isinstance(r, Result):
            raise InputError(f"etable expects Result objects, got {type(r).__name__}")
    fmt = f"{{:.{digits}g}}"
    cols: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for name, r in zip(names, items):
        low, high = r.conf_int(level)
        col = {}
        for i, t in enumerate(r.terms):
            key = t if r.groups is None else f"{r.groups[i]}: {t}"
            if key not in order:
                order.append(key)
            if stat == "se":
                col[key] = f"{fmt.format(r.estimate[i])} ({fmt.format(r.std_error[i])})"
            else:
                col[key] = f"{fmt.format(r.estimate[i])} [{fmt.format(low[i])}, {fmt.format(high[i])}]"
        col["n_pilot"] = str(r.n_pilot)
        col["n_population"] = str(r.n_population)
        lam = r.tuning.get("lambda")
        if lam is None:
            col["lambda"] = ""
        else:
            arr = np.atleast_1d(np.asarray(lam, float))
            col["lambda"] = ", ".join(fmt.format(v) for v in arr[:6]) + (" ..." if arr.size > 6 else "")
        cols[name] = col
    import pandas as pd

    index = order + ["n_pilot", "n_population", "lambda"]
    return pd.DataFrame({n: [c.get(k, "") for k in index] for n, c in cols.items()}, index=index)
