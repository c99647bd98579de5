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

The metrics of each axis live in their own module (:mod:`rectify.fidelity_marginal`,
:mod:`rectify.fidelity_structural`, :mod:`rectify.fidelity_individual`, shared input checks in
:mod:`rectify.fidelity_inputs`); this module re-exports them all, so ``from rectify.fidelity import
lins_ccc`` keeps working, and holds what combines the axes: subgroups, the worst-group summary and
the one-call report.

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

from ._checks import check_labels, check_numeric_text, check_unique
from .errors import EstimationError, InputError, MissingCovariateError
from .fidelity_individual import (
    accuracy,
    brier_score,
    log_loss,
    mean_absolute_error,
    pearson_r,
    scale_score,
    weighted_kappa,
)
from .fidelity_inputs import _close, _numeric, _probs, _scores_arg
from .fidelity_marginal import (
    jensen_shannon,
    marginal_fidelity,
    mean_difference,
    sd_ratio,
    total_variation,
    wasserstein1,
)
from .fidelity_structural import (
    _design,
    _split_formula,
    _structural_core,
    attenuation_slope,
    fit_coefficients,
    interval_coverage,
    lins_ccc,
    magnitude_ratio,
    sign_agreement,
    structural_fidelity,
)

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
    grouping = [groups] if isinstance(groups, str) else list(groups or [])
    check_labels(grouping, "human_df")
    for frame, df in (("human_df", human_df), ("simulated_df", simulated_df)):
        if isinstance(df, pd.DataFrame):
            check_unique(df, names + (grouping if frame == "human_df" else []), frame)
            for c in names:
                if c in df.columns:
                    check_numeric_text(df[c], c, frame)
    _check_frames(human_df, simulated_df, names)
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
