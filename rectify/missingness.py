"""Who did not answer: a diagnostic comparing pilot respondents with and without an answer.

Why it matters
--------------
Wherever rectify leaves a pilot row without a usable answer out of an estimate (an item's missing
code such as "have not seen it", a NaN, a stored simulator answer that does not cover the row), the
estimate describes the people who answered. It equals the frame's quantity only under an
assumption about why answers are missing:

* **MCAR** (missing completely at random): whether a person answered is unrelated to anything,
  including the answer. Plain estimates over the answered rows are then unbiased.
* **MAR** (missing at random given covariates): whether a person answered depends only on observed
  covariates ``x``, not on the answer itself given ``x``. Estimates are then unbiased only after an
  adjustment on those covariates -- calibration weighting on them (``rectify.calibrate``), strata
  (``strata=``), or a regression that includes them.
* **MNAR** (missing not at random): the answer itself drives non-response (e.g. people who would
  choose "too much" skip the item). No method that uses the observed data alone removes this bias.

:func:`missingness_diagnostic` compares the two groups on the covariates you name. Large
standardized mean differences (the usual rule of thumb: ``|smd| > 0.1``) are evidence *against*
MCAR: adjust for those covariates. Small differences are consistent with MCAR on those covariates,
but no diagnostic can confirm MAR or rule out MNAR -- it never sees the missing answers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["missingness_diagnostic"]

#: the conventional threshold of a noteworthy standardized mean difference
SMD_FLAG = 0.1


def _missing_mask(s: pd.Series, missing_codes: Sequence) -> np.ndarray:
    mask = s.isna().to_numpy().copy()
    if missing_codes:
        mask |= s.isin(list(missing_codes)).to_numpy()
    return mask


def _smd(a: np.ndarray, b: np.ndarray, binary: bool) -> float:
    """(mean a - mean b) / sqrt((var a + var b) / 2); NaN when a group is empty or both are constant."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    ma, mb = a.mean(), b.mean()
    if binary:
        va, vb = ma * (1 - ma), mb * (1 - mb)
    else:
        va = a.var(ddof=1) if len(a) > 1 else 0.0
        vb = b.var(ddof=1) if len(b) > 1 else 0.0
    pooled = np.sqrt((va + vb) / 2)
    if pooled == 0:
        return 0.0 if ma == mb else float("inf") * np.sign(ma - mb)
    return float((ma - mb) / pooled)


def _row(covariate, level, x, answered, binary) -> dict:
    ok = ~np.isnan(x)
    a, b = x[ok & answered], x[ok & ~answered]
    return {
        "covariate": covariate,
        "level": level,
        "mean_answered": float(a.mean()) if len(a) else float("nan"),
        "mean_missing": float(b.mean()) if len(b) else float("nan"),
        "smd": _smd(a, b, binary),
        "n_answered": int(len(a)),
        "n_missing": int(len(b)),
        "covariate_missing": int((~ok).sum()),
    }


def missingness_diagnostic(pilot: pd.DataFrame, answer: str, covariates: Sequence[str], *,
                           missing_codes: Sequence = ()) -> pd.DataFrame:
    """Compare pilot respondents with and without an answer on their covariates.

    rectify's estimators use the rows that have an answer. That is valid for the frame only if the
    answers are **missing at random**: whether someone answered may depend on observed covariates
    (and is then adjusted for by calibrating, stratifying or regressing on them) but not on the
    answer itself. This function shows how the two groups differ on the covariates: a large
    standardized mean difference says the missingness is *not* completely at random, so adjust for
    that covariate. It cannot show that answers are missing at random -- the missing answers are
    never seen -- so a clean table is necessary, not sufficient.

    Parameters
    ----------
    pilot : pandas.DataFrame
        The pilot, one row per respondent, answered or not.
    answer : str
        The answer column. NaN (and any of ``missing_codes``) counts as no answer.
    covariates : sequence of str
        Columns to compare. Numeric and boolean columns give one row each (means); categorical,
        string or object columns give one row per level (shares of that level).
    missing_codes : sequence, optional
        Answer values that mean "no answer" (e.g. ``["Don't know"]``, or an item's ``missing``).

    Returns
    -------
    pandas.DataFrame
        One row per covariate (or covariate level): ``covariate``, ``level`` (missing for numeric
        columns), ``mean_answered``, ``mean_missing`` (shares for levels), ``smd`` (standardized mean
        difference: difference of means over the root mean of the two group variances, answered minus
        missing), ``n_answered``, ``n_missing`` (rows with the covariate known), ``covariate_missing``
        (rows where the covariate itself is NaN, left out of that row) and ``flag`` (``|smd| > 0.1``).
        ``attrs`` holds ``n_answered``, ``n_missing``, ``missing_rate`` and a one-line ``note``.

    Raises
    ------
    InputError
        If ``pilot`` is not a DataFrame, a column is absent, or ``covariates`` is empty.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1, 2, None, 4, None, 3], "age": [20, 30, 60, 40, 70, 35],
    ...                    "sex": ["f", "m", "f", "m", "f", "f"]})
    >>> t = missingness_diagnostic(df, "y", ["age", "sex"])
    >>> t[["covariate", "mean_answered", "mean_missing"]].values.tolist()
    [['age', 31.25, 65.0], ['sex', 0.5, 1.0], ['sex', 0.5, 0.0]]
    >>> t["level"].tolist()[1:]
    ['f', 'm']
    >>> bool(t.loc[0, "flag"]), t.attrs["missing_rate"]
    (True, 0.3333333333333333)
    """
    if not isinstance(pilot, pd.DataFrame):
        raise InputError(f"argument 'pilot' must be a pandas DataFrame, got {type(pilot).__name__}")
    if isinstance(covariates, str):
        covariates = [covariates]
    covariates = list(covariates)
    if not covariates:
        raise InputError("argument 'covariates' must name at least one column to compare the two groups on")
    absent = [c for c in [answer, *covariates] if c not in pilot.columns]
    if absent:
        raise InputError(f"column(s) {absent} not in the pilot; available: {list(pilot.columns)[:12]}")
    if answer in covariates:
        raise InputError(f"column {answer!r} is the answer; it cannot also be a covariate")
    answered = ~_missing_mask(pilot[answer], missing_codes)
    rows = []
    for c in covariates:
        s = pilot[c]
        if pd.api.types.is_bool_dtype(s) or (pd.api.types.is_numeric_dtype(s) and not isinstance(
                s.dtype, pd.CategoricalDtype)):
            x = s.astype(float).to_numpy()
            binary = bool(pd.api.types.is_bool_dtype(s) or np.isin(x[~np.isnan(x)], [0.0, 1.0]).all())
            rows.append(_row(c, None, x, answered, binary))
            continue
        known = s.notna().to_numpy()
        levels = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else \
            list(dict.fromkeys(s[known].tolist()))
        for lev in levels:
            x = np.where(known, (s == lev).to_numpy(float), np.nan)
            rows.append(_row(c, lev, x, answered, True))
    out = pd.DataFrame(rows)
    out["flag"] = out["smd"].abs() > SMD_FLAG
    n_ans, n_miss = int(answered.sum()), int((~answered).sum())
    flagged = sorted(set(out.loc[out["flag"], "covariate"]))
    if n_miss == 0:
        note = f"every pilot row answered {answer!r}: nothing was left out"
    elif flagged:
        note = (f"{n_miss} of {len(pilot)} pilot rows have no answer to {answer!r}; they differ on {flagged} "
                f"(|smd| > {SMD_FLAG}): not missing completely at random -- adjust for these covariates "
                f"(calibrate, strata or regression); MAR given them is still an assumption")
    else:
        note = (f"{n_miss} of {len(pilot)} pilot rows have no answer to {answer!r}; no covariate differs by "
                f"|smd| > {SMD_FLAG}: consistent with answers missing at random, which no diagnostic can prove")
    out.attrs.update({"n_answered": n_ans, "n_missing": n_miss, "missing_rate": n_miss / len(pilot) if len(pilot) else
                      float("nan"), "note": note})
    return out
