"""What to conclude from a comparison: computed from its tidy table, never typed.

Why one module of ~680 lines: every finding (best per axis, trade-offs, worst subgroup, trust per
simulator) reads the same thresholds and the same per-pilot summary of the tidy table; split apart
they would have to pass that summary and its thresholds around.

:func:`conclusions` reads a :class:`~rectify.comparison.Comparison` (or its tidy ``table``) at one
pilot size (default: the largest) and returns a list of findings, each a dict with a ``kind``, a
plain-text ``text`` and the numbers behind it:

* ``"setting"`` -- the pilot size, the number of repeated pilots and the thresholds used;
* ``"best"`` -- per axis (marginal, structural, individual, intervals) the best family and its best
  method, with the number as mean ± SD over the repeated pilots, and the runner-up family;
* ``"tradeoff"`` -- per family, which axes it passes, fails or does not measure, and one summary
  of the trade-off between families (which give valid intervals, which predict each person, which
  is the most balanced);
* ``"worst_subgroup"`` -- per family, the subgroup where its best method does worst;
* ``"trust"`` -- one plain sentence per simulator (a method of the ``prompting``, ``fine-tuning``
  or ``simulator`` family) on whether it can be trusted for population shares, regression
  coefficients and per-person answers.

Axes and metrics (whole sample, mean over the repeated pilots of the per-pilot value):

* marginal: normalised Wasserstein-1 distance of the estimated answer distribution from the human
  one, mean over items (lower is better);
* structural: Lin's concordance (CCC) of the method's coefficients with the human ones (higher is
  better); the attenuation slope ``sum h s / sum h^2`` and the magnitude ratio
  ``mean|s| / mean|h|`` are shown beside it;
* individual: Pearson r of the per-person scale score (the formula's response) with the held-out
  humans, or the quadratic-weighted kappa (mean over items) where there is no scale (higher is
  better);
* intervals: among methods whose interval of the item mean covers the human mean at least at
  the coverage threshold, the narrowest mean width (a method below the threshold is not valid,
  however narrow).

Thresholds (:data:`THRESHOLDS`, each can be overridden): coverage >= level - 0.05 (0.90 for 95%
intervals: the rate over a handful of repeats is noisy, so a method just under nominal is not
failed); normalised W1 <= 0.05 (a twentieth of the answer scale: on a 4-point scale 0.15 points of
probability mass moved one option); CCC >= 0.80 and attenuation slope within [0.80, 1.25] (effects
within a fifth of their human size and in the right direction); r >= 0.50 (a per-person
prediction that explains at least a quarter of the variance).

Examples
--------
>>> from rectify.conclusions import conclusions, example_table
>>> found = conclusions(example_table())
>>> [f["text"] for f in found if f["kind"] == "best" and f["axis"] == "marginal"][0][:54]
'Marginal (W1 normalised, lower is better): best family'
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["THRESHOLDS", "SIMULATOR_FAMILIES", "LABELS", "method_scores", "best_per_axis", "tradeoffs",
           "worst_subgroups", "trust", "conclusions", "conclusions_text", "example_table"]

ALL = "all"
ITEM_MEAN = "(mean over items)"

#: default thresholds for the verdicts; ``coverage=None`` means ``level - 0.05``
THRESHOLDS: dict[str, Any] = {"coverage": None, "w1_norm": 0.05, "ccc": 0.80, "slope_low": 0.80,
                              "slope_high": 1.25, "r": 0.50}

#: families whose methods are simulators (an LLM's answers, prompted or fine-tuned)
SIMULATOR_FAMILIES = ("prompting", "fine-tuning", "simulator")

#: readable names of the table's metrics and of the scores below
LABELS = {
    "wasserstein1": "Wasserstein-1", "wasserstein1_norm": "W1 normalised", "total_variation": "total variation",
    "jensen_shannon": "Jensen-Shannon divergence", "mean_difference": "mean difference",
    "mean_abs_difference": "|mean difference|", "sd_ratio": "SD ratio", "mean_coverage": "coverage of the mean",
    "share_coverage": "coverage of the shares", "mean_ci_width": "interval width of the mean",
    "lins_ccc": "CCC of coefficients", "sign_agreement": "sign agreement", "attenuation_slope": "attenuation slope",
    "magnitude_ratio": "magnitude ratio", "coverage": "coefficient coverage", "pearson_r": "Pearson r",
    "mae": "mean absolute error", "weighted_kappa": "weighted kappa", "accuracy": "accuracy",
    "log_loss": "log-loss", "brier_score": "Brier score",
    "w1": "W1 normalised", "ccc": "CCC of coefficients", "slope": "attenuation slope", "ratio": "magnitude ratio",
    "width": "interval width of the mean", "coef_coverage": "coefficient coverage", "r": "Pearson r (scale)",
    "kappa": "weighted kappa", "n_pilot": "humans in the pilot", "worst_group": "worst group",
    "worst_value": "worst value", "best_group": "best group", "best_value": "best value", "spread": "spread",
    "grouping": "grouping", "item": "item", "method": "method", "axis": "axis", "metric": "metric",
    "family": "family",
}

#: the scores read from the table: key -> (axis, sources in order of preference, metric, item)
#: (item None = the scale / formula response, i.e. every item but the mean over items)
SCORES = {
    "w1": ("marginal", ("estimate",), "wasserstein1_norm", ITEM_MEAN),
    "coverage": ("marginal", ("estimate",), "mean_coverage", ITEM_MEAN),
    "width": ("marginal", ("estimate",), "mean_ci_width", ITEM_MEAN),
    "ccc": ("structural", ("estimate", "respondents"), "lins_ccc", None),
    "slope": ("structural", ("estimate", "respondents"), "attenuation_slope", None),
    "ratio": ("structural", ("estimate", "respondents"), "magnitude_ratio", None),
    "coef_coverage": ("structural", ("estimate", "respondents"), "coverage", None),
    "r": ("individual", ("respondents",), "pearson_r", None),
    "kappa": ("individual", ("respondents",), "weighted_kappa", ITEM_MEAN),
}
#: larger is better for these keys; smaller for the others ("w1", "width")
HIGHER = {"coverage", "ccc", "coef_coverage", "r", "kappa"}
AXIS_NAMES = {"marginal": "Marginal", "structural": "Structural", "individual": "Individual",
              "intervals": "Intervals"}
NEEDED = ["method", "family", "n_pilot", "repeat", "source", "axis", "metric", "item", "grouping", "group", "value"]


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def _table_and_level(cmp: Any, level: float | None) -> tuple[pd.DataFrame, float]:
    if isinstance(cmp, pd.DataFrame):
        table = cmp
        lev = 0.95 if level is None else level
    elif hasattr(cmp, "table") and hasattr(cmp, "spec"):
        table = cmp.table
        lev = float(cmp.spec.level) if level is None else level
    else:
        raise InputError(f"argument 'cmp' must be a Comparison or its tidy table, got {type(cmp).__name__}")
    absent = [c for c in NEEDED if c not in table.columns]
    if absent:
        raise InputError(f"the comparison table lacks the columns {absent}; pass Comparison.table unchanged")
    if table.empty:
        raise InputError("the comparison table is empty: no method finished a cell, so there is nothing to conclude")
    if not 0 < float(lev) < 1:
        raise InputError(f"argument 'level' must lie strictly between 0 and 1, got {lev!r}")
    return table, float(lev)


def _thresholds(thresholds: Mapping[str, Any] | None, level: float) -> dict[str, float]:
    th = dict(THRESHOLDS)
    unknown = sorted(set(thresholds or {}) - set(th))
    if unknown:
        raise InputError(f"argument 'thresholds' has unknown keys {unknown}; known: {sorted(th)}")
    th.update(thresholds or {})
    if th["coverage"] is None:
        th["coverage"] = round(level - 0.05, 10)
    return {k: float(v) for k, v in th.items()}


def _pick_n(table: pd.DataFrame, n_pilot: int | None) -> int:
    sizes = sorted(int(n) for n in pd.unique(table["n_pilot"]))
    if n_pilot is None:
        return sizes[-1]
    if int(n_pilot) not in sizes:
        raise InputError(f"argument 'n_pilot' = {n_pilot} is not a pilot size of the table ({sizes})")
    return int(n_pilot)


# ---------------------------------------------------------------------------------------------
# scores per method (and per group)
# ---------------------------------------------------------------------------------------------
def method_scores(cmp: Any, n_pilot: int | None = None, groups: bool = False) -> pd.DataFrame:
    """Each method's scores (:data:`SCORES`) at one pilot size: mean, SD and count over repeats.

    Within a repeat, values over several items are averaged first (the scale response, or the
    mean over items already in the table); the mean and SD (``ddof=1``) are then taken over the
    repeated pilots. Structural scores come from the method's own coefficients where it gives
    them, else from its per-person predictions.

    Parameters
    ----------
    cmp : Comparison or DataFrame
        A comparison or its tidy table.
    n_pilot : int, optional
        Default: the largest pilot size.
    groups : bool, default False
        False: the whole sample only; True: every subgroup (not the whole sample).

    Returns
    -------
    DataFrame
        Columns method, family, grouping, group, key, mean, sd, n (repeats with a value).

    Examples
    --------
    >>> s = method_scores(example_table())
    >>> s.query("method == 'ppi++' and key == 'w1'")[["mean", "sd"]].round(3).values.tolist()
    [[0.025, 0.01]]
    """
    table, _ = _table_and_level(cmp, None)
    n = _pick_n(table, n_pilot)
    t = table[table["n_pilot"] == n]
    t = t[t["grouping"] != ALL] if groups else t[t["grouping"] == ALL]
    parts = []
    for key, (axis, sources, metric, item) in SCORES.items():
        base = t[(t["axis"] == axis) & (t["metric"] == metric)]
        base = base[base["item"] == item] if item is not None else base[base["item"] != ITEM_MEAN]
        if base.empty:
            continue
        # per method, the first source (in order of preference) that has a value
        have = base.dropna(subset=["value"]).groupby("method", sort=False)["source"].agg(set)
        pick = {m: next((src for src in sources if src in got), None) for m, got in have.items()}
        sel = base[base["source"] == base["method"].map(pick)]
        if len(sel):
            parts.append(sel.assign(key=key))
    cols = ["method", "family", "grouping", "group", "key", "mean", "sd", "n"]
    if not parts:
        return pd.DataFrame(columns=cols)
    both = pd.concat(parts, ignore_index=True)
    keys = ["method", "family", "grouping", "group", "key"]
    per_rep = both.groupby(keys + ["repeat"], sort=False)["value"].mean()
    agg = per_rep.groupby(level=keys, sort=False).agg(["mean", "std", "count"]).reset_index()
    return agg.rename(columns={"std": "sd", "count": "n"})[cols]


def _wide(scores: pd.DataFrame, stat: str = "mean") -> pd.DataFrame:
    """method x key table of one statistic (whole sample), with the family as a column."""
    if scores.empty:
        return pd.DataFrame(columns=["family"])
    w = scores.pivot_table(index="method", columns="key", values=stat, aggfunc="first", sort=False)
    fam = scores.drop_duplicates("method").set_index("method")["family"]
    return w.assign(family=fam.reindex(w.index))


def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def _pm(mean: float, sd: float, n: int) -> str:
    """``mean ± sd`` over repeats (or a note that one pilot gives no spread)."""
    if n <= 1 or sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return f"{_num(mean)} (one pilot, no spread)"
    return f"{_num(mean)} ± {_num(sd)}"


def _and(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _cell(scores: pd.DataFrame, method: str, key: str) -> tuple[float, float, int]:
    r = scores[(scores["method"] == method) & (scores["key"] == key)]
    if r.empty:
        return math.nan, math.nan, 0
    r = r.iloc[0]
    return float(r["mean"]), float(r["sd"]), int(r["n"])


def _rank(w: pd.DataFrame, key: str, eligible: pd.Series | None = None) -> list[tuple[str, str, float]]:
    """(family, best method, value) per family, best family first, for one key of the wide table."""
    if key not in w.columns:
        return []
    col = w[key]
    ok = col.notna() if eligible is None else col.notna() & eligible.reindex(w.index).fillna(False).astype(bool)
    sub = w[ok]
    if sub.empty:
        return []
    asc = key not in HIGHER
    sub = sub.assign(_v=sub[key]).sort_values("_v", ascending=asc, kind="stable")
    out, seen = [], set()
    for method, row in sub.iterrows():
        if row["family"] in seen:
            continue
        seen.add(row["family"])
        out.append((row["family"], method, float(row["_v"])))
    return out


# ---------------------------------------------------------------------------------------------
# the findings
# ---------------------------------------------------------------------------------------------
def best_per_axis(cmp: Any, n_pilot: int | None = None, thresholds: Mapping[str, Any] | None = None,
                  level: float | None = None) -> list[dict]:
    """Per axis: the best family and method (mean ± SD over repeats) and the runner-up family.

    A family is as good as its best method. The winner is called clear when its lead over the
    runner-up family exceeds the larger of the two SDs over repeats; otherwise the text says the
    two are within the spread of the pilot draws.

    Returns
    -------
    list of dict
        Keys: kind ("best"), axis, key, best_family, best_method, mean, sd, n_repeats,
        runner_family, runner_method, runner_mean, clear, text (and, for the structural axis,
        slope and ratio of the best method; for intervals, its coverage).

    Examples
    --------
    >>> b = {f["axis"]: f for f in best_per_axis(example_table())}
    >>> b["individual"]["best_family"], b["individual"]["best_method"], b["intervals"]["best_method"]
    ('fine-tuning', 'lora', 'ppi++')
    """
    table, lev = _table_and_level(cmp, level)
    th = _thresholds(thresholds, lev)
    n = _pick_n(table, n_pilot)
    scores = method_scores(table, n)
    w = _wide(scores)
    out = []
    indiv = "r" if "r" in w.columns and w["r"].notna().any() else "kappa"
    plan = [("marginal", "w1", None), ("structural", "ccc", None), ("individual", indiv, None)]
    if "coverage" in w.columns and "width" in w.columns:
        plan.append(("intervals", "width", w["coverage"] >= th["coverage"] - 1e-12))
    for axis, key, eligible in plan:
        ranking = _rank(w, key, eligible)
        head = f"{AXIS_NAMES[axis]} ({LABELS[key]}, {'higher' if key in HIGHER else 'lower'} is better)"
        if axis == "intervals":
            head = (f"Intervals (narrowest {LABELS['width']} among methods whose coverage of the human mean is "
                    f">= {th['coverage']:.2f})")
        if not ranking:
            why = ("no method's interval reached that coverage" if axis == "intervals"
                   else "no method gives this metric")
            out.append({"kind": "best", "axis": axis, "key": key, "best_family": None, "best_method": None,
                        "mean": math.nan, "sd": math.nan, "n_repeats": 0, "runner_family": None,
                        "runner_method": None, "runner_mean": math.nan, "clear": False, "text": f"{head}: {why}."})
            continue
        fam, method, _ = ranking[0]
        mean, sd, k = _cell(scores, method, key)
        rec = {"kind": "best", "axis": axis, "key": key, "best_family": fam, "best_method": method, "mean": mean,
               "sd": sd, "n_repeats": k, "runner_family": None, "runner_method": None, "runner_mean": math.nan,
               "clear": True}
        text = f"{head}: best family {fam} ({method} {_pm(mean, sd, k)})"
        if axis == "structural":
            rec["slope"], rec["ratio"] = _cell(scores, method, "slope")[0], _cell(scores, method, "ratio")[0]
            text += f", attenuation slope {_num(rec['slope'])}, magnitude ratio {_num(rec['ratio'])}"
        if axis == "intervals":
            c = _cell(scores, method, "coverage")
            rec["coverage"] = c[0]
            text += f", coverage {_pm(*c)}"
        if len(ranking) > 1:
            rf, rm, _ = ranking[1]
            rmean, rsd, rk = _cell(scores, rm, key)
            spread = np.nanmax([sd if k > 1 else np.nan, rsd if rk > 1 else np.nan, 0.0])
            rec.update(runner_family=rf, runner_method=rm, runner_mean=rmean, clear=bool(abs(mean - rmean) > spread))
            text += f"; next {rf} ({rm} {_pm(rmean, rsd, rk)})"
            if not rec["clear"]:
                text += " -- within the spread over pilots, not a clear winner"
        else:
            text += "; no other family gives it"
        rec["text"] = text + "."
        out.append(rec)
    return out


def _verdicts(w: pd.DataFrame, fam_methods: pd.DataFrame, th: dict) -> dict[str, tuple[str | None, str, str]]:
    """Per axis: (verdict "pass"/"fail"/None, method, evidence) for one family's methods (rows of ``w``)."""
    def best(key):
        col = fam_methods[key].dropna() if key in fam_methods.columns else pd.Series(dtype=float)
        if col.empty:
            return None, math.nan
        m = col.idxmax() if key in HIGHER else col.idxmin()
        return m, float(col[m])

    out: dict[str, tuple[str | None, str, str]] = {}
    m, v = best("w1")
    out["marginal"] = (None, "", "no population estimate") if m is None else (
        "pass" if v <= th["w1_norm"] else "fail", m, f"W1 normalised {_num(v)}")
    cov = fam_methods["coverage"] if "coverage" in fam_methods.columns else pd.Series(math.nan, fam_methods.index)
    width = fam_methods["width"] if "width" in fam_methods.columns else pd.Series(math.nan, fam_methods.index)
    valid = cov >= th["coverage"] - 1e-12
    if cov.isna().all():
        out["intervals"] = (None, "", "no intervals")
    elif not valid.any():
        m, v = best("coverage")
        out["intervals"] = ("fail", m, f"coverage {_num(v)} < {th['coverage']:.2f}")
    else:
        w_ok = width[valid]
        m = w_ok.idxmin() if w_ok.notna().any() else w_ok.index[0]
        out["intervals"] = ("pass", m, f"coverage {_num(cov[m])}, width {_num(width[m])}")
    m, v = best("ccc")
    if m is None:
        out["structural"] = (None, "", "no coefficients")
    else:
        slope = fam_methods.loc[m, "slope"] if "slope" in fam_methods.columns else math.nan
        ratio = fam_methods.loc[m, "ratio"] if "ratio" in fam_methods.columns else math.nan
        ok = v >= th["ccc"] and th["slope_low"] <= slope <= th["slope_high"]
        out["structural"] = ("pass" if ok else "fail", m,
                             f"CCC {_num(v)}, attenuation slope {_num(slope)}, magnitude ratio {_num(ratio)}")
    key = "r" if "r" in fam_methods.columns and fam_methods["r"].notna().any() else "kappa"
    m, v = best(key)
    out["individual"] = (None, "", "no per-person predictions") if m is None else (
        "pass" if v >= th["r"] else "fail", m, f"{LABELS[key]} {_num(v)}")
    return out


def tradeoffs(cmp: Any, n_pilot: int | None = None, thresholds: Mapping[str, Any] | None = None,
              level: float | None = None) -> list[dict]:
    """Per family: the axes it passes, fails or does not measure; then one trade-off summary.

    A family passes an axis when its best method on that axis meets the threshold
    (:data:`THRESHOLDS`); structural needs both the CCC and the attenuation slope in range.

    Returns
    -------
    list of dict
        One ``{"kind": "tradeoff", "family": ..., "verdicts": {axis: (verdict, method, evidence)},
        "text": ...}`` per family, then one with ``family=None`` summarising the trade-off.

    Examples
    --------
    >>> t = tradeoffs(example_table())
    >>> t[-1]["balanced"], t[-1]["valid_intervals"]
    (['fine-tuning'], ['pilot only', 'rectification'])
    """
    table, lev = _table_and_level(cmp, level)
    th = _thresholds(thresholds, lev)
    w = _wide(method_scores(table, _pick_n(table, n_pilot)))
    out, passes = [], {}
    families = list(dict.fromkeys(w["family"]))
    for fam in families:
        v = _verdicts(w, w[w["family"] == fam], th)
        passes[fam] = v
        good = [a for a in v if v[a][0] == "pass"]
        bad = [a for a in v if v[a][0] == "fail"]
        none = [a for a in v if v[a][0] is None]
        parts = []
        for label, axes in (("passes", good), ("fails", bad)):
            if axes:
                parts.append(f"{label} " + _and([f"{a} ({v[a][1]}: {v[a][2]})" for a in axes]))
        if none:
            parts.append("gives " + _and([v[a][2] for a in none]))
        out.append({"kind": "tradeoff", "family": fam, "verdicts": v, "text": f"{fam}: " + "; ".join(parts) + "."})
    valid = [f for f in families if passes[f]["intervals"][0] == "pass"]
    person = [f for f in families if passes[f]["individual"][0] is not None]
    faithful = [f for f in families if passes[f]["marginal"][0] == "pass"]
    count = {f: sum(passes[f][a][0] == "pass" for a in ("marginal", "intervals", "structural", "individual"))
             for f in families}
    top = max(count.values()) if count else 0
    balanced = [f for f in families if count[f] == top and top > 0]
    both = [f for f in valid if f in person]
    lines = []
    lines.append(("Valid intervals: " + ", ".join(valid) if valid else "No family gives valid intervals")
                 + (f" (of these, {', '.join(both)} also predict each person)." if both else
                    "; none of them predicts each person." if valid else "."))
    if person:
        good_person = [f for f in person if passes[f]["individual"][0] == "pass"]
        lines.append("Per-person predictions: " + ", ".join(f"{f} ({passes[f]['individual'][2]})" for f in person)
                     + (f"; only {_and(good_person)} reach{'es' if len(good_person) == 1 else ''} r >= {th['r']:.2f}."
                        if good_person
                        else f"; none reaches r >= {th['r']:.2f}."))
    lines.append("Faithful marginals (W1 normalised <= " + f"{th['w1_norm']:.2f}): "
                 + (", ".join(faithful) if faithful else "none") + ".")
    lines.append(("Most balanced: " + ", ".join(balanced) + f" (passes {top} of 4 axes)." if balanced
                  else "No family passes any axis."))
    out.append({"kind": "tradeoff", "family": None, "valid_intervals": valid, "per_person": person,
                "faithful_marginals": faithful, "balanced": balanced, "passes": count, "text": " ".join(lines)})
    return out


def worst_subgroups(cmp: Any, n_pilot: int | None = None, level: float | None = None) -> list[dict]:
    """Per family: the subgroup where its best method does worst, with the number and the whole sample's.

    The metric is the family's per-person one (Pearson r of the scale, or kappa) when it predicts
    each person, else the marginal W1 normalised; the family's best method on that metric (whole
    sample) is the one examined. Groups that are not estimable (NaN) are left out.

    Returns
    -------
    list of dict
        ``{"kind": "worst_subgroup", "family", "method", "key", "grouping", "group", "value",
        "overall", "best_group", "best_value", "text"}``; none when the table has no subgroups.

    Examples
    --------
    >>> w = worst_subgroups(example_table())
    >>> [(f["family"], f["group"], round(f["value"], 2)) for f in w][:2]
    [('pilot only', 'conservative', 0.05), ('prompting', 'conservative', 0.1)]
    """
    table, _ = _table_and_level(cmp, level)
    n = _pick_n(table, n_pilot)
    overall, sub = method_scores(table, n), method_scores(table, n, groups=True)
    if sub.empty:
        return []
    w = _wide(overall)
    out = []
    for fam in dict.fromkeys(w["family"]):
        fw = w[w["family"] == fam]
        key = next((k for k in ("r", "kappa", "w1") if k in fw.columns and fw[k].notna().any()
                    and not sub[(sub["key"] == k) & sub["method"].isin(fw.index)]["mean"].dropna().empty), None)
        if key is None:
            continue
        col = fw[key].dropna()
        method = col.idxmax() if key in HIGHER else col.idxmin()
        g = sub[(sub["method"] == method) & (sub["key"] == key)].dropna(subset=["mean"])
        if g.empty:
            continue
        g = g.sort_values("mean", ascending=key in HIGHER, kind="stable")
        worst, best = g.iloc[0], g.iloc[-1]
        rec = {"kind": "worst_subgroup", "family": fam, "method": method, "key": key, "grouping": worst["grouping"],
               "group": worst["group"], "value": float(worst["mean"]), "sd": float(worst["sd"]),
               "n_repeats": int(worst["n"]), "overall": float(col[method]), "best_group": best["group"],
               "best_value": float(best["mean"])}
        rec["text"] = (f"{fam} ({method}): worst subgroup {worst['grouping']} = {worst['group']}, {LABELS[key]} "
                       f"{_pm(rec['value'], rec['sd'], rec['n_repeats'])} against {_num(rec['overall'])} in the whole "
                       f"sample (best: {best['group']}, {_num(rec['best_value'])}).")
        out.append(rec)
    return out


def trust(cmp: Any, n_pilot: int | None = None, thresholds: Mapping[str, Any] | None = None,
          level: float | None = None) -> list[dict]:
    """One plain sentence per simulator: can it be trusted for shares, coefficients, per-person answers?

    Population shares: its answers' distribution is within W1 normalised ``w1_norm`` of the
    humans'. Regression coefficients: CCC >= ``ccc`` and attenuation slope within
    [``slope_low``, ``slope_high``]. Per-person answers: r (or kappa) >= ``r``. A simulator is a
    method of a family in :data:`SIMULATOR_FAMILIES`.

    Examples
    --------
    >>> print(trust(example_table())[0]["text"])  # doctest: +NORMALIZE_WHITESPACE
    simulator (prompting) can be trusted for nothing checked here: not for population shares (W1 normalised
    0.080 > 0.05), not for regression coefficients (CCC 0.400, attenuation slope 0.300, outside 0.80-1.25),
    not for per-person answers (Pearson r (scale) 0.200 < 0.50). Use its answers through a correction (best
    marginal fidelity with valid intervals: ppi++).
    """
    table, lev = _table_and_level(cmp, level)
    th = _thresholds(thresholds, lev)
    scores = method_scores(table, _pick_n(table, n_pilot))
    w = _wide(scores)
    sims = [m for m in w.index if w.loc[m, "family"] in SIMULATOR_FAMILIES]
    if not sims:
        return [{"kind": "trust", "method": None, "text": "No simulator (a prompting or fine-tuning method) is in this "
                 "comparison, so nothing is said about trusting one."}]
    corrected = w[(w["family"].map(lambda f: f not in SIMULATOR_FAMILIES))]
    if "coverage" in corrected.columns:
        corrected = corrected[corrected["coverage"] >= th["coverage"] - 1e-12]
    else:
        corrected = corrected.iloc[:0]
    fix = corrected["w1"].idxmin() if "w1" in corrected.columns and corrected["w1"].notna().any() else None
    out = []
    for m in sims:
        row = w.loc[m]
        uses = {}
        v = row.get("w1", math.nan)
        uses["population shares"] = (None if pd.isna(v) else bool(v <= th["w1_norm"]),
                                     f"W1 normalised {_num(v)} {'<=' if v <= th['w1_norm'] else '>'} "
                                     f"{th['w1_norm']:.2f}")
        ccc, slope = row.get("ccc", math.nan), row.get("slope", math.nan)
        ok = ccc >= th["ccc"] and th["slope_low"] <= slope <= th["slope_high"]
        uses["regression coefficients"] = (None if pd.isna(ccc) else bool(ok),
                                           f"CCC {_num(ccc)}, attenuation slope {_num(slope)}, "
                                           f"{'within' if th['slope_low'] <= slope <= th['slope_high'] else 'outside'} "
                                           f"{th['slope_low']:.2f}-{th['slope_high']:.2f}")
        key = "r" if not pd.isna(row.get("r", math.nan)) else "kappa"
        v = row.get(key, math.nan)
        uses["per-person answers"] = (None if pd.isna(v) else bool(v >= th["r"]),
                                      f"{LABELS[key]} {_num(v)} {'>=' if v >= th['r'] else '<'} {th['r']:.2f}")
        yes = [u for u, (ok, _) in uses.items() if ok]
        no = [u for u, (ok, _) in uses.items() if ok is False]
        unknown = [u for u, (ok, _) in uses.items() if ok is None]
        lead = f"{m} ({row['family']}) can be trusted for "
        lead += _and([f"{u} ({uses[u][1]})" for u in yes]) if yes else "nothing checked here"
        if no:
            lead += (": " if not yes else "; ") + ", ".join(f"not for {u} ({uses[u][1]})" for u in no)
        if unknown:
            lead += "; not measured: " + ", ".join(unknown)
        lead += "."
        if "population shares" in no and fix is not None:
            lead += f" Use its answers through a correction (best marginal fidelity with valid intervals: {fix})."
        out.append({"kind": "trust", "method": m, "family": row["family"],
                    "trusted": {u: ok for u, (ok, _) in uses.items()}, "text": lead})
    return out


def conclusions(cmp: Any, n_pilot: int | None = None, thresholds: Mapping[str, Any] | None = None,
                level: float | None = None) -> list[dict]:
    """Every finding of the "What to conclude" section, in order: setting, best, tradeoff,
    worst_subgroup, trust (see the module's docstring for the definitions and thresholds).

    Parameters
    ----------
    cmp : Comparison or DataFrame
        A comparison or its tidy table (:data:`rectify.comparison.TABLE_COLUMNS`).
    n_pilot : int, optional
        The pilot size to conclude at; default the largest.
    thresholds : dict, optional
        Overrides of :data:`THRESHOLDS`.
    level : float, optional
        The intervals' nominal level (default: the comparison's, or 0.95 for a bare table).

    Returns
    -------
    list of dict
        Each with ``kind`` and ``text`` plus the numbers behind the text.

    Examples
    --------
    >>> found = conclusions(example_table())
    >>> [f["kind"] for f in found][:3]
    ['setting', 'best', 'best']
    >>> found[0]["text"][:56]
    'At n_pilot = 100 humans (the largest of 50, 100 humans),'
    """
    table, lev = _table_and_level(cmp, level)
    th = _thresholds(thresholds, lev)
    n = _pick_n(table, n_pilot)
    sizes = sorted(int(s) for s in pd.unique(table["n_pilot"]))
    reps = int(table[table["n_pilot"] == n]["repeat"].nunique())
    which = "the largest of" if n == sizes[-1] else "chosen from"
    setting = (f"At n_pilot = {n} humans ({which} {', '.join(map(str, sizes))} humans), over {reps} repeated random "
               f"pilot{'s' if reps != 1 else ''}; numbers are mean ± SD over the pilots, whole sample unless a "
               f"subgroup is named. Thresholds: coverage >= {th['coverage']:.2f} (nominal {lev:.2f}), W1 normalised "
               f"<= {th['w1_norm']:.2f}, CCC >= {th['ccc']:.2f} with attenuation slope in "
               f"{th['slope_low']:.2f}-{th['slope_high']:.2f}, Pearson r >= {th['r']:.2f}.")
    out = [{"kind": "setting", "n_pilot": n, "pilot_sizes": sizes, "repeats": reps, "thresholds": th,
            "text": setting}]
    # every finding reads only this pilot size and these metrics: filter once
    table = table[(table["n_pilot"] == n) & table["metric"].isin({v[2] for v in SCORES.values()})]
    out += best_per_axis(table, n, thresholds, lev)
    out += tradeoffs(table, n, thresholds, lev)
    out += worst_subgroups(table, n, lev)
    out += trust(table, n, thresholds, lev)
    return out


SECTION_TITLES = {"best": "Best per axis", "tradeoff": "Trade-offs between families",
                  "worst_subgroup": "Worst subgroup per family", "trust": "Can the simulator be trusted?"}


def conclusions_text(cmp: Any, n_pilot: int | None = None, thresholds: Mapping[str, Any] | None = None,
                     level: float | None = None, width: int = 100) -> str:
    """The findings of :func:`conclusions` as plain text for the command line.

    Examples
    --------
    >>> print(conclusions_text(example_table()).splitlines()[0])
    What to conclude
    """
    import textwrap

    found = conclusions(cmp, n_pilot, thresholds, level)
    lines = ["What to conclude", "================"]
    lines += textwrap.wrap(found[0]["text"], width)
    for kind, title in SECTION_TITLES.items():
        part = [f for f in found if f["kind"] == kind]
        if not part:
            continue
        lines += ["", title]
        for f in part:
            lines += textwrap.wrap(f["text"], width, initial_indent="- ", subsequent_indent="  ")
    return "\n".join(lines)


def example_table() -> pd.DataFrame:
    """A small hand-made comparison table with known conclusions (for examples and tests).

    Two pilot sizes (50, 100), two repeats, one subgroup column ``ideology``; methods classical
    (pilot only), simulator (prompting), ppi++ (rectification), lora (fine-tuning). At n=100:
    W1 normalised 0.03/0.08/0.025/0.04 (± 0.01 except the simulator's 0), coverage 0.95 for
    classical and ppi++ with widths 0.30 and 0.20, CCC 0.5/0.4/0.6/0.85, attenuation slope
    0.9/0.3/0.95/0.9, r of the scale 0.2 (simulator) and 0.6 (lora).

    Examples
    --------
    >>> t = example_table()
    >>> sorted(t["method"].unique()), sorted(t["n_pilot"].unique().tolist())
    (['classical', 'lora', 'ppi++', 'simulator'], [50, 100])
    """
    fam = {"classical": "pilot only", "simulator": "prompting", "ppi++": "rectification", "lora": "fine-tuning"}
    # method -> key -> value at n=100 (repeat offsets +-d below); None = not given
    vals = {
        "classical": {"w1": 0.03, "coverage": 0.95, "width": 0.30, "ccc": 0.5, "slope": 0.9, "ratio": 1.1},
        "simulator": {"w1": 0.08, "ccc": 0.4, "slope": 0.3, "ratio": 0.35, "r": 0.2},
        "ppi++": {"w1": 0.025, "coverage": 0.95, "width": 0.20, "ccc": 0.6, "slope": 0.95, "ratio": 1.05},
        "lora": {"w1": 0.04, "ccc": 0.85, "slope": 0.9, "ratio": 0.9, "r": 0.6},
    }
    spread = {"w1": 0.01 / math.sqrt(2), "ccc": 0.05 / math.sqrt(2), "r": 0.1 / math.sqrt(2)}
    groups = {"liberal": 0.0, "conservative": 1.0}  # conservative is worse on every metric
    rows = []
    for n, shift in ((50, 1.5), (100, 1.0)):
        for method, kv in vals.items():
            for rep, sign in ((0, -1.0), (1, 1.0)):
                if method == "simulator":
                    sign = 0.0
                for key, v in kv.items():
                    axis, sources, metric, item = SCORES[key]
                    src = "respondents" if key == "r" else sources[0]
                    item = "disc" if item is None else item
                    base = v * shift if key in ("w1", "width") else v
                    val = base + sign * spread.get(key, 0.0)
                    rows.append((method, fam[method], n, rep, src, axis, metric, item, ALL, ALL, val))
                    if key in ("w1", "r"):
                        for g, bad in groups.items():
                            worse = (val + 0.02 * bad) if key == "w1" else (val - 0.1 * bad)
                            rows.append((method, fam[method], n, rep, src, axis, metric, item, "ideology", g, worse))
    t = pd.DataFrame(rows, columns=NEEDED)
    return t.assign(n=100, note="")

