"""Compare every method over pilot sizes and repeated random pilots, against the held-out humans.

:func:`compare` draws, for each pilot size ``n`` and repeat ``r``, one seeded simple random pilot
(the same pilot for every method, so methods are compared on paired draws), runs each registered
method (:mod:`rectify.registry`) on it and measures fidelity:

* ``source="estimate"`` -- what the method claims about the population. Per item and per subgroup
  the estimated option shares ``q`` and mean score are set beside the human answers of the whole
  frame (the finite population the estimate targets): ``wasserstein1_norm``
  ``= sum_k |H_k - Q_k| (s_{k+1} - s_k) / (s_K - s_1)`` (``H, Q`` cumulative shares),
  ``total_variation = 1/2 sum_k |h_k - q_k|``, ``jensen_shannon``, ``mean_difference = m_q - m_h``,
  ``sd_ratio = sd_q / sd_h`` and, where the method gives intervals, ``mean_coverage`` (1 if the
  human mean lies in the interval of the mean, else 0; its average over repeats is the coverage
  rate), ``share_coverage`` (share of options whose human share lies in its interval) and
  ``mean_ci_width``. Estimated shares outside [0, 1] (PPI can give them) are projected onto the
  simplex (clipped at 0, renormalised) for the distribution metrics, with a note. For the formula,
  the method's coefficients (if it gives them) are compared with the human OLS coefficients on the
  whole frame: ``lins_ccc``, ``sign_agreement``, ``attenuation_slope`` and ``coverage``.
* ``source="respondents"`` -- for methods that predict every person (simulators, classifiers):
  :func:`rectify.fidelity.fidelity_report` of their predictions for the **held-out** humans (the
  frame minus the pilot) on all three axes, overall and per subgroup.

One tidy table comes out (``Comparison.table``: method, family, n_pilot, repeat, source, axis,
metric, item, grouping, group, value, n, note) with summaries over repeats
(:meth:`Comparison.summary`): the spread across pilot draws is a result, not noise.

Finished (method, n_pilot, repeat) cells are written to ``checkpoint`` (a folder of CSV and
JSON files, no pickle) so that a killed run resumes without repeating work. Each file is written
atomically (temporary file, fsync, rename) and checksummed in the cell's done file, so a cell whose
files were cut short or damaged is computed again, never read as data;
``Comparison.meta["checkpoint"]`` counts the cells resumed, computed and found damaged.

Examples
--------
>>> from rectify.comparison import compare
>>> from rectify.datasets import load_misinfo
>>> df = load_misinfo()
>>> cmp = compare(df, ["f01", "t01"], methods=["classical", "simulator"], pilot_sizes=[100],
...               repeats=1, random_state=0, progress=False)
>>> sorted(cmp.table["method"].unique())
['classical', 'simulator']
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import registry
from .datasets import draw_pilot
from .errors import ConfigError, InputError, MissingCovariateError
from .registry import ALL, Spec
from .result import check_level

__all__ = ["compare", "Comparison", "make_spec", "summarize", "headline", "axes_table", "AXES", "TABLE_COLUMNS"]

TABLE_COLUMNS = ["method", "family", "n_pilot", "repeat", "source", "axis", "metric", "item", "grouping",
                 "group", "value", "n", "note"]
CELL_KEYS = ["method", "family", "n_pilot", "repeat"]
ITEM_MEAN = "(mean over items)"


# ---------------------------------------------------------------------------------------------
# the specification
# ---------------------------------------------------------------------------------------------
def _fill(pattern: str, name: str, **values: Any) -> str:
    """Put ``values`` into ``{item}``/``{k}`` literally: a configured pattern is data, never a
    ``str.format`` string (which would read attributes such as ``{item.__class__}``)."""
    rest, out = pattern, pattern
    for key, v in values.items():
        rest, out = rest.replace("{" + key + "}", ""), out.replace("{" + key + "}", str(v))
    if "{" in rest or "}" in rest:
        raise ConfigError(f"argument {name!r} may only use the placeholders {{item}} and {{k}}, got {pattern!r}; "
                          "for column names with other braces pass a dict item -> column(s)")
    return out


def _pattern(value: Any, items: Sequence[str], name: str, with_k: int | None = None) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        if "{item}" not in value:
            raise ConfigError(f"argument {name!r} must contain '{{item}}' (e.g. '{{item}}_llm'), got {value!r}")
        if with_k is None:
            return {it: _fill(value, name, item=it) for it in items}
        if "{k}" not in value:
            raise ConfigError(f"argument {name!r} must contain '{{item}}' and '{{k}}' (e.g. '{{item}}_p{{k}}')")
        return {it: tuple(_fill(value, name, item=it, k=k) for k in range(1, with_k + 1)) for it in items}
    if isinstance(value, Mapping):
        out = dict(value)
        extra = sorted(set(out) - set(items))
        if extra:
            raise ConfigError(f"argument {name!r} names items {extra} that are not in 'items'")
        return {k: (tuple(v) if with_k is not None else v) for k, v in out.items()}
    raise ConfigError(f"argument {name!r} must be a pattern string or a dict item -> column(s)")


def _formula_variables(formula: str) -> list[str]:
    from formulaic import Formula

    from .formula import check_formula

    check_formula(formula, "formula", ConfigError)  # formulas are data: refuse code before formulaic sees it
    rhs = formula.split("~", 1)[1]
    return sorted(v for v in Formula(rhs).required_variables if v not in ("np", "numpy", "C"))


def make_spec(frame: pd.DataFrame, items: Sequence[str], *, predicted: Any = "{item}_llm",
              probabilities: Any = None, scores: Sequence[float] | None = None, formula: str | None = None,
              scales: Mapping[str, Any] | None = None, covariates: Sequence[str] | None = None,
              groups: Sequence[str] | str | None = None, level: float = 0.95) -> Spec:
    """Validate the comparison's inputs against ``frame`` and build a :class:`~rectify.registry.Spec`.

    Every named column must exist (:class:`~rectify.errors.ConfigError` names the missing ones), an
    item must have at least one human answer, grouping columns must have no missing value.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo
    >>> s = make_spec(load_misinfo(), ["f01"], formula="f01 ~ age + ideology")
    >>> s.predicted, s.scores, s.covariates
    ({'f01': 'f01_llm'}, (1.0, 2.0, 3.0, 4.0), ('age', 'ideology'))
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"argument 'frame' must be a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(items, str) or not len(items):
        raise ConfigError("argument 'items' must be a non-empty list of item column names")
    if not frame.index.is_unique:
        dup = frame.index[frame.index.duplicated()].unique().tolist()
        raise ConfigError(f"argument 'frame' has a duplicated index (e.g. {dup[:3]}); pilots and held-out people are "
                          "found by row label, so give each person a unique one (frame.reset_index(drop=True)) "
                          "after removing any duplicated respondents")
    try:
        check_level(level)
    except InputError as err:
        raise ConfigError(str(err)) from None
    items = [str(i) for i in items]
    _need_columns(frame, items, "items")
    empty = [i for i in items if frame[i].isna().all()]
    if empty:
        raise ConfigError(f"items {empty}: every human answer is missing; drop them from 'items'")
    for i in items:
        if not pd.api.types.is_numeric_dtype(frame[i]):
            raise ConfigError(f"item column {i!r} must hold numeric option scores (got {frame[i].dtype})")
    if scores is None:
        vals = frame[items].to_numpy(dtype=float)
        scores = np.unique(vals[~np.isnan(vals)])
    sc = tuple(float(s) for s in scores)
    if len(sc) < 2 or any(b <= a for a, b in zip(sc, sc[1:])):
        raise ConfigError(f"argument 'scores' must list at least 2 increasing option scores, got {list(sc)}")
    vals = frame[items].to_numpy(dtype=float)
    off = ~np.isnan(vals) & ~np.isin(vals, sc)
    if off.any():
        raise ConfigError(f"item answers {sorted(set(vals[off].tolist()))[:5]} are not among the scores {list(sc)}; "
                          "code missing answers as NaN")
    pred = _pattern(predicted, items, "predicted")
    _need_columns(frame, list(pred.values()), "predicted")
    probs = _pattern(probabilities, items, "probabilities", with_k=len(sc))
    for it, cols in probs.items():
        if len(cols) != len(sc):
            raise ConfigError(f"probabilities of item {it!r}: {len(cols)} columns for {len(sc)} options")
        _need_columns(frame, list(cols), "probabilities")
    sc_defs: dict[str, tuple] = {}
    for name, spec in (scales or {}).items():
        if isinstance(spec, Mapping):
            plus, minus = list(spec.get("plus", [])), list(spec.get("minus", []))
        else:
            plus, minus = spec
        unknown = [c for c in sorted(set(plus) | set(minus)) if c not in items]
        if unknown:
            raise ConfigError(f"scale {name!r} uses {unknown}, which are not in 'items'")
        sc_defs[str(name)] = (tuple(plus), tuple(minus))
    grp = [groups] if isinstance(groups, str) else list(groups or [])
    _need_columns(frame, grp, "groups")
    for g in grp:
        if frame[g].isna().any():
            raise MissingCovariateError(f"grouping column {g!r} has missing values; fill or drop those rows first")
    cov = list(covariates) if covariates is not None else []
    if formula is not None:
        if not isinstance(formula, str) or formula.count("~") != 1:
            raise ConfigError(f"argument 'formula' must look like 'y ~ x1 + x2', got {formula!r}")
        lhs = formula.split("~")[0].strip()
        if lhs not in items and lhs not in sc_defs:
            raise ConfigError(f"the formula's response {lhs!r} must be an item or a scale name "
                              f"(items: {items[:5]}..., scales: {sorted(sc_defs)})")
        rhs_vars = _formula_variables(formula)
        _need_columns(frame, rhs_vars, "formula")
        holes = [v for v in rhs_vars if frame[v].isna().any()]
        if holes:
            raise MissingCovariateError(f"formula covariates {holes} have missing values; fill or drop those rows")
        if covariates is None:
            cov = rhs_vars
    _need_columns(frame, cov, "covariates")
    return Spec(items=tuple(items), scores=sc, predicted=pred, probabilities=probs, formula=formula,
                scales=sc_defs, covariates=tuple(cov), groups=tuple(grp), level=float(level))


def _need_columns(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    absent = [c for c in cols if c not in frame.columns]
    if absent:
        raise ConfigError(f"{what}: columns {absent} are not in the frame (it has {list(frame.columns)[:8]}...); "
                          "check the names or add the columns")


# ---------------------------------------------------------------------------------------------
# metrics of population estimates
# ---------------------------------------------------------------------------------------------
def _human_shares(h: np.ndarray, sc: np.ndarray) -> np.ndarray:
    return np.array([(h == s).mean() for s in sc])


def _estimate_metrics(h: np.ndarray, est: pd.DataFrame, spec: Spec, min_n: int) -> list[tuple[str, float, str]]:
    """(metric, value, note) for one item in one group: the estimated distribution vs humans ``h``."""
    from .fidelity import jensen_shannon

    sc = np.asarray(spec.scores, float)
    n = h.size
    names = [f"share:{s:g}" for s in sc]
    e = est.set_index("term")
    q_raw = e.loc[names, "estimate"].to_numpy(float)
    metrics = ["wasserstein1_norm", "total_variation", "jensen_shannon", "mean_difference", "sd_ratio"]
    if n < min_n:
        return [(m, math.nan, f"not estimable: n={n} < min_n={min_n}") for m in metrics]
    if np.isnan(q_raw).any():
        note = str(e["note"].iloc[0]) or "no estimate"
        return [(m, math.nan, note if note.startswith("not estimable") else f"not estimable: {note}")
                for m in metrics]
    q = np.clip(q_raw, 0.0, None)
    q = q / q.sum() if q.sum() > 0 else np.full(q.size, 1.0 / q.size)
    note = "estimated shares projected onto the simplex" if np.abs(q - q_raw).max() > 1e-9 else ""
    p = _human_shares(h, sc)
    out = [
        ("wasserstein1_norm", float(np.sum(np.abs(np.cumsum(p) - np.cumsum(q))[:-1] * np.diff(sc)) / (sc[-1] - sc[0])), note),
        ("total_variation", float(0.5 * np.abs(p - q).sum()), note),
        ("jensen_shannon", float(jensen_shannon(p[None, :], q[None, :])), note),
    ]
    m_h, m_q = float(h.mean()), float(e.loc["mean", "estimate"])
    out.append(("mean_difference", m_q - m_h, ""))
    sd_h = float(h.std())
    mu_q = float(q @ sc)
    sd_q = math.sqrt(max(0.0, float(q @ (sc - mu_q) ** 2)))
    out.append(("sd_ratio", sd_q / sd_h if sd_h > 0 else math.nan, note if sd_h > 0 else "not estimable: no variation"))
    lo, hi = e.loc["mean", "conf_low"], e.loc["mean", "conf_high"]
    if np.isfinite(lo) and np.isfinite(hi):
        out.append(("mean_coverage", float(lo <= m_h <= hi), ""))
        out.append(("mean_ci_width", float(hi - lo), ""))
    slo, shi = e.loc[names, "conf_low"].to_numpy(float), e.loc[names, "conf_high"].to_numpy(float)
    if np.isfinite(slo).all() and np.isfinite(shi).all():
        out.append(("share_coverage", float(np.mean((slo <= p) & (p <= shi))), ""))
    return out


def _coefficient_metrics(coefs: pd.DataFrame, human: pd.Series) -> list[tuple[str, float, str]]:
    """(metric, value, note) of a method's non-intercept coefficients against the human ones:
    ``lins_ccc``, ``sign_agreement``, ``attenuation_slope`` (``sum h s / sum h^2``, signed),
    ``magnitude_ratio`` (``mean |s| / mean |h|``, the paper's ratio of mean absolute effects, blind to
    signs) and, where every interval is finite, ``coverage``."""
    from .errors import EstimationError
    from .fidelity import attenuation_slope, interval_coverage, lins_ccc, magnitude_ratio, sign_agreement

    terms = [t for t in human.index if t != "Intercept" and t in coefs.index]
    missing = [t for t in human.index if t != "Intercept" and t not in coefs.index]
    note = f"terms not estimated: {missing}" if missing else ""
    h = human.loc[terms].to_numpy(float)
    s = coefs.loc[terms, "estimate"].to_numpy(float)
    out = []
    for name, fn in (("lins_ccc", lins_ccc), ("sign_agreement", sign_agreement),
                     ("attenuation_slope", attenuation_slope), ("magnitude_ratio", magnitude_ratio)):
        try:
            out.append((name, float(fn(h, s)), note))
        except (EstimationError, InputError) as err:
            out.append((name, math.nan, f"not estimable: {err}"))
    lo = coefs.loc[terms, "conf_low"].to_numpy(float)
    hi = coefs.loc[terms, "conf_high"].to_numpy(float)
    if np.isfinite(lo).all() and np.isfinite(hi).all() and len(terms):
        out.append(("coverage", float(interval_coverage(h, lo, hi)), note))
    return out


# ---------------------------------------------------------------------------------------------
# human reference values (computed once)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Truth:
    answers: dict  # (grouping, group, item) -> human answers (non-missing) in the whole frame
    coefficients: pd.Series | None


def _truth(frame: pd.DataFrame, spec: Spec) -> _Truth:
    from .fidelity import fit_coefficients

    answers = {}
    for gname, glabel, fr, _ in registry._group_parts(frame, frame.iloc[:0], spec):
        for it in spec.items:
            v = fr[it].to_numpy(float)
            answers[(gname, glabel, it)] = v[~np.isnan(v)]
    coefs = None
    if spec.formula:
        d = frame.assign(_y_=registry._scale_columns(frame, spec, "human")).dropna(subset=["_y_"])
        coefs = fit_coefficients(registry._verb_formula(spec), d)["estimate"]
    return _Truth(answers, coefs)


# ---------------------------------------------------------------------------------------------
# one cell
# ---------------------------------------------------------------------------------------------
def _cell_seed(random_state: int, n: int, r: int, name: str | None = None) -> np.random.Generator:
    key = [int(random_state), int(n), int(r)]
    if name is not None:
        key.append(int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little"))
    return np.random.default_rng(np.random.SeedSequence(key))


def draw_cell_pilot(frame: pd.DataFrame, n: int, repeat: int, random_state: int) -> pd.DataFrame:
    """The pilot of cell (n, repeat): the same rows for every method.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo
    >>> df = load_misinfo()
    >>> draw_cell_pilot(df, 50, 0, 1).index.equals(draw_cell_pilot(df, 50, 0, 1).index)
    True
    """
    return draw_pilot(frame, int(n), random_state=_cell_seed(random_state, n, repeat))


def _call_method(method: registry.Method, frame_x: pd.DataFrame, pilot: pd.DataFrame, spec: Spec,
                 rng: np.random.Generator) -> tuple[registry.MethodOutput, list[str]]:
    """Run ``method``; return its output and the messages of the rectify warnings it emitted (every
    warning is passed on to the caller as well: recorded in the cell's note, never swallowed)."""
    from .errors import RectifyWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RectifyWarning)
        out = method.fn(frame_x, pilot, spec, rng)
    notes = []
    for w in caught:
        if issubclass(w.category, RectifyWarning) and str(w.message) not in notes:
            notes.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not isinstance(out, registry.MethodOutput):
        raise InputError(f"method {method.name!r} returned {type(out).__name__}, not a MethodOutput")
    return out, notes


def _unanswered_note(unanswered: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence on the prompts left unanswered (item: how many rows, why)."""
    parts = []
    for it, rec in unanswered.items():
        why = [f"{rec[k]} {w}" for k, w in (("failed", "failed after retries"), ("off_scale", "off the scale"),
                                             ("not_simulated", "not simulated")) if rec.get(k)]
        parts.append(f"{it}: {len(rec['rows'])} of {rec.get('of', '?')} rows" + (f" ({', '.join(why)})" if why else ""))
    retry = any(not rec.get("not_simulated") for rec in unanswered.values())
    return ("partial answers -- " + "; ".join(parts) + "; metrics on the answered rows only"
            + (" (a resumed run retries this cell)" if retry else " (the stored answers cover a subset)"))


def _with_note(table: pd.DataFrame, note: str) -> pd.DataFrame:
    if not note or table.empty:
        return table
    old = table["note"].fillna("").astype(str)
    return table.assign(note=np.where(old == "", note, old + "; " + note))


def _run_cell(method: registry.Method, frame: pd.DataFrame, spec: Spec, truth: _Truth, n: int, r: int,
              random_state: int, min_group_n: int, evaluate: str = "frame"
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    from .fidelity import fidelity_report

    pilot = draw_cell_pilot(frame, n, r, random_state)
    if evaluate == "rest":  # the population is the people outside the pilot; the truth is theirs
        frame = frame.drop(index=pilot.index)
        truth = _truth(frame, spec)
    frame_x = frame.drop(columns=list(spec.items)).copy()  # no method sees a human answer outside the pilot
    out, notes = _call_method(method, frame_x, pilot, spec, _cell_seed(random_state, n, r, method.name))
    unanswered = dict(out.info.get("unanswered") or {})
    extra = {"warnings": notes}
    if out.info.get("note"):  # what the method says about its own output (e.g. an axis not estimable)
        notes = notes + [str(out.info["note"])]
    if unanswered:
        notes = notes + [_unanswered_note(unanswered)]
        transient = {it: rec for it, rec in unanswered.items() if not rec.get("not_simulated")}
        if transient:  # failed prompts: a resumed run retries the cell (stored subsets are final)
            extra["partial"] = {it: len(rec["rows"]) for it, rec in transient.items()}
    rows = []
    est = out.estimates.copy()
    est["truth"] = math.nan
    for (gname, glabel, it), part in est.groupby(["grouping", "group", "item"], sort=False):
        h = truth.answers.get((gname, glabel, it), np.array([]))
        p = _human_shares(h, np.asarray(spec.scores)) if h.size else np.full(len(spec.scores), math.nan)
        tv = dict(zip(spec.term_names(), list(p) + [float(h.mean()) if h.size else math.nan]))
        est.loc[part.index, "truth"] = part["term"].map(tv).to_numpy(float)
        for metric, value, note in _estimate_metrics(h, part, spec, min_group_n):
            rows.append(("estimate", "marginal", metric, it, gname, glabel, value, int(h.size), note))
    tab = pd.DataFrame(rows, columns=["source", "axis", "metric", "item", "grouping", "group", "value", "n", "note"])
    tab = _add_item_means(tab, list(spec.items))
    parts = [tab]
    coef_tab = pd.DataFrame(columns=["term", "estimate", "conf_low", "conf_high", "human"])
    if spec.formula and out.coefficients is not None and truth.coefficients is not None:
        c = out.coefficients
        lhs = spec.response()
        parts.append(pd.DataFrame(
            [("estimate", "structural", m, lhs, ALL, ALL, v, int(len(frame)), note)
             for m, v, note in _coefficient_metrics(c, truth.coefficients)], columns=tab.columns))
        coef_tab = c.reset_index().rename(columns={"index": "term"})
        coef_tab["human"] = coef_tab["term"].map(truth.coefficients).astype(float)
    if out.predictions is not None:
        held = frame.drop(index=pilot.index, errors="ignore")
        gone = {lab for rec in unanswered.values() for lab in rec["rows"]}
        held = held[~held.index.isin(list(gone))]  # rows with an unanswered item: left out, noted
        pos = pd.Series(np.arange(len(frame)), index=frame.index).loc[held.index].to_numpy()
        preds = out.predictions.loc[held.index, list(spec.items)]
        probs = {it: np.asarray(p)[pos] for it, p in (out.probabilities or {}).items()}
        rep = fidelity_report(held, preds, list(spec.items), formula=spec.formula, groups=list(spec.groups),
                              scales={k: (list(a), list(b)) for k, (a, b) in spec.scales.items()} or None,
                              probabilities=probs or None, scores=list(spec.scores), min_group_n=min_group_n)
        rep = rep.assign(source="respondents")
        parts.append(rep[tab.columns])
    table = _with_note(pd.concat(parts, ignore_index=True), "; ".join(notes))
    return table, est, coef_tab, extra


def _add_item_means(tab: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    if tab.empty:
        return tab
    per = tab[tab["item"].isin(items)]
    rows = []
    for (src, axis, metric, gname, glabel), part in per.groupby(["source", "axis", "metric", "grouping", "group"],
                                                                 sort=False):
        vals = part["value"].to_numpy(float)
        ok = ~np.isnan(vals)
        note = f"mean over {int(ok.sum())} of {len(items)} items" if ok.any() else "not estimable for any item"
        rows.append((src, axis, metric, ITEM_MEAN, gname, glabel, float(vals[ok].mean()) if ok.any() else math.nan,
                     int(part["n"].sum()), note))
        if metric == "mean_difference":
            rows.append((src, axis, "mean_abs_difference", ITEM_MEAN, gname, glabel,
                         float(np.abs(vals[ok]).mean()) if ok.any() else math.nan, int(part["n"].sum()), note))
    return pd.concat([tab, pd.DataFrame(rows, columns=tab.columns)], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# checkpointing (CSV + JSON, no pickle)
# ---------------------------------------------------------------------------------------------
def _slug(name: str, n: int, r: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    tag = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{safe}-{tag}__n{n}__r{r}"


def _fingerprint(frame: pd.DataFrame, spec: Spec, random_state: int, min_group_n: int, evaluate: str = "frame") -> str:
    h = hashlib.sha256()
    h.update(str(int(pd.util.hash_pandas_object(frame, index=True).sum())).encode())
    h.update(repr((spec, int(random_state), int(min_group_n))).encode())
    if evaluate != "frame":  # older checkpoints (whole-frame evaluation) keep their fingerprint
        h.update(evaluate.encode())
    return h.hexdigest()[:16]


class _Checkpoint:
    """Finished cells on disk: per cell three CSV files and a ``.done.json`` written last.

    Every file is written atomically (temporary file, fsync, ``os.replace``), and the done file
    records the SHA-256 of each CSV and the comparison's fingerprint, so a file cut short by a
    crash (or damaged later) is detected on load and its cell computed again, never read as data.
    ``resumed``, ``computed``, ``damaged`` and ``retried`` count the cells of this run.

    A stored failure is never final, except a deterministic input error
    (:class:`~rectify.errors.InputError`: the same data and settings give the same error, so
    recomputing cannot help; such a cell's status says ``"final": true``). Every other failed cell
    (a backend that gave up, a fit that did not converge, a crash) and every cell whose answers
    were partly missing is computed again on a rerun -- answered prompts then come from the
    response cache, so only the missing work is redone.
    """

    def __init__(self, folder: str | None, fingerprint: str):
        self.folder, self.fingerprint = folder, fingerprint
        self.resumed, self.computed, self.damaged, self.retried = 0, 0, [], []
        if folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        man = os.path.join(folder, "manifest.json")
        old = _read_json(man) if os.path.exists(man) else None
        if isinstance(old, dict) and old.get("fingerprint") not in (None, fingerprint):
            raise ConfigError(f"checkpoint folder {folder!r} belongs to another comparison (different data or "
                              "settings); give a new folder or delete it")
        if not isinstance(old, dict) or old.get("format") != _CK_FORMAT:
            # new, unreadable (cut short) or older folder: every cell is checked on its own anyway
            _write_atomic(man, json.dumps({"fingerprint": fingerprint, "format": _CK_FORMAT}).encode())

    def _path(self, slug: str, kind: str) -> str:
        return os.path.join(self.folder, f"{slug}.{kind}.csv" if kind != "done" else f"{slug}.done.json")

    def load(self, slug: str):
        """The saved cell ``(status, metrics, estimates, coefficients)``, or None: compute it."""
        if self.folder is None or not os.path.exists(self._path(slug, "done")):
            return None
        try:
            out = self._read(slug)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            self.damaged.append(slug)
            warnings.warn(f"checkpoint of cell {slug} in {self.folder!r} is damaged ({err}); computing it again",
                          RuntimeWarning, stacklevel=3)
            return None
        status = out[0]
        if (status.get("error") and not status.get("final")) or status.get("partial"):
            self.retried.append(slug)  # transient failure or partial answers: try again
            return None
        self.resumed += 1
        return out

    def _read(self, slug: str):
        status = _read_json(self._path(slug, "done"))
        if not isinstance(status, dict) or status.get("fingerprint") != self.fingerprint:
            raise ValueError("its done file is unreadable or belongs to another comparison")
        if status.get("error"):
            return status, None, None, None
        frames = []
        for kind in _CK_KINDS:
            with open(self._path(slug, kind), "rb") as fh:
                data = fh.read()
            if hashlib.sha256(data).hexdigest() != status.get("sha256", {}).get(kind):
                raise ValueError(f"{slug}.{kind}.csv does not match the checksum in its done file")
            d = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""],
                            dtype={"item": str, "group": str, "grouping": str, "term": str, "note": str})
            if "note" in d.columns:
                d["note"] = d["note"].fillna("")
            frames.append(d)
        return (status, *frames)

    def save(self, slug: str, status: dict, tab=None, est=None, coef=None) -> None:
        self.computed += 1
        if self.folder is None:
            return
        status = {**status, "fingerprint": self.fingerprint, "sha256": {}}
        for kind, d in zip(_CK_KINDS, (tab, est, coef)):
            if d is not None:
                data = d.to_csv(index=False, float_format="%.17g").encode("utf-8")
                _write_atomic(self._path(slug, kind), data)
                status["sha256"][kind] = hashlib.sha256(data).hexdigest()
        # written last, so a cell counts as done only when all its files are whole on disk
        _write_atomic(self._path(slug, "done"), json.dumps(status, indent=1, default=str).encode("utf-8"))

    def summary(self) -> dict:
        return {"folder": self.folder, "resumed": self.resumed, "computed": self.computed,
                "damaged": list(self.damaged), "retried": list(self.retried)}


_CK_FORMAT = 2
_CK_KINDS = ("metrics", "estimates", "coefficients")


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a part."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
class _Progress:
    """Cells done / total on stderr with the running cell's label, elapsed time and ETA (tqdm's
    ``<remaining``; without tqdm, the mean time per computed cell times the cells left)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self.t0 = total, 0, enabled, time.time()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="compare", unit="cell", file=sys.stderr,
                                bar_format="{desc}: {n_fmt}/{total_fmt} cells |{bar:20}| {elapsed}<{remaining} "
                                           "{postfix}")
            except ImportError:
                self.bar = None

    def _line(self, label: str) -> str:
        el = time.time() - self.t0
        eta = f"{el / self.done * (self.total - self.done):.0f} s" if self.done else "?"
        return f"\rcompare: {self.done}/{self.total} cells, {el:.0f} s elapsed, ETA {eta} | {label:<40}"

    def start(self, label: str) -> None:
        """Show the cell now running (a LoRA fit may take minutes: the user sees which)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {label}", refresh=True)
        else:
            print(self._line(f"running {label}"), end="", file=sys.stderr, flush=True)

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"done {label}", refresh=False)
            self.bar.update(1)
        else:
            print(self._line(f"done {label}"), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Outcome of :func:`compare`.

    Attributes
    ----------
    table : DataFrame
        Tidy metrics, columns :data:`TABLE_COLUMNS`.
    estimates : DataFrame
        Every method's population estimates per cell, with the human ``truth``.
    coefficients : DataFrame
        Every method's formula coefficients per cell, with the human OLS value.
    failures : DataFrame
        Cells whose method raised an error (method, n_pilot, repeat, error).
    skipped : dict
        Methods not available here -> reason.
    spec : Spec
    methods : dict
        name -> (family, description) of the methods run.
    pilot_sizes, repeats, random_state
    meta : dict
        ``n_frame``; ``planning`` (see :func:`_planning`); ``checkpoint``: the folder and the
        numbers of cells ``resumed`` from it and ``computed`` in this run, and the ``damaged``
        cells (files cut short or altered) that were computed again.
    """

    table: pd.DataFrame
    estimates: pd.DataFrame
    coefficients: pd.DataFrame
    failures: pd.DataFrame
    skipped: dict
    spec: Spec
    methods: dict
    pilot_sizes: tuple
    repeats: int
    random_state: int
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean, SD, min and max over repeats per (method, n_pilot, source, axis, metric, item, group)."""
        return summarize(self.table)

    def headline(self, n_pilot: int | None = None) -> pd.DataFrame:
        """The fidelity overview at one pilot size (default the largest): see :func:`headline`."""
        return headline(self.table, n_pilot, list(self.methods))


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Summaries over repeats: mean, sd, min, max, number of repeats and of estimable repeats.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "m", "family": "f", "n_pilot": 50, "repeat": [0, 1],
    ...     "source": "estimate", "axis": "marginal", "metric": "x", "item": "i", "grouping": "all",
    ...     "group": "all", "value": [1.0, 3.0], "n": 10, "note": ""})
    >>> s = summarize(t)
    >>> float(s["mean"].iloc[0]), round(float(s["sd"].iloc[0]), 4), int(s["n_repeats"].iloc[0])
    (2.0, 1.4142, 2)
    """
    keys = ["method", "family", "n_pilot", "source", "axis", "metric", "item", "grouping", "group"]
    g = table.groupby(keys, sort=False, dropna=False)["value"]
    out = g.agg(mean="mean", sd="std", min="min", max="max", n_estimable="count", n_repeats="size").reset_index()
    return out


#: the overview's columns: (label, source preference, axis, metric, item)
HEADLINE = [
    ("W1 (norm.)", ("estimate",), "marginal", "wasserstein1_norm", ITEM_MEAN),
    ("|mean diff|", ("estimate",), "marginal", "mean_abs_difference", ITEM_MEAN),
    ("SD ratio", ("estimate",), "marginal", "sd_ratio", ITEM_MEAN),
    ("mean coverage", ("estimate",), "marginal", "mean_coverage", ITEM_MEAN),
    ("CCC", ("estimate", "respondents"), "structural", "lins_ccc", None),
    ("attenuation", ("estimate", "respondents"), "structural", "attenuation_slope", None),
    ("coef coverage", ("estimate", "respondents"), "structural", "coverage", None),
    ("r (scale)", ("respondents",), "individual", "pearson_r", None),
    ("kappa", ("respondents",), "individual", "weighted_kappa", ITEM_MEAN),
    ("log-loss", ("respondents",), "individual", "log_loss", ITEM_MEAN),
]


def headline(table: pd.DataFrame, n_pilot: int | None = None, methods: Sequence[str] | None = None,
             numeric: bool = False, grouping: str = ALL, group: str = ALL,
             columns: Sequence[tuple] | None = None) -> pd.DataFrame:
    """One row per method: headline metrics (whole sample) as "mean ± sd" over repeats.

    Structural metrics come from the method's own coefficients when it gives them, else from
    its per-person predictions. ``numeric=True`` returns the means as floats. ``grouping`` and
    ``group`` pick one subgroup (default: the whole sample); ``columns`` replaces :data:`HEADLINE`.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "m", "family": "f", "n_pilot": 50, "repeat": [0, 1],
    ...     "source": "estimate", "axis": "marginal", "metric": "sd_ratio", "item": ITEM_MEAN,
    ...     "grouping": "all", "group": "all", "value": [0.8, 1.0], "n": 10, "note": ""})
    >>> headline(t)["SD ratio"].tolist()
    ['0.90 ± 0.14']
    """
    if table.empty:
        return pd.DataFrame()
    n_pilot = int(table["n_pilot"].max()) if n_pilot is None else int(n_pilot)
    t = table[(table["n_pilot"] == n_pilot) & (table["grouping"] == grouping) & (table["group"] == group)]
    methods = list(methods) if methods is not None else list(pd.unique(t["method"]))
    rows = []
    for m in methods:
        tm = t[t["method"] == m]
        if tm.empty:
            continue
        row: dict[str, Any] = {"method": m, "family": tm["family"].iloc[0]}
        for label, sources, axis, metric, item in (HEADLINE if columns is None else columns):
            cell = math.nan if numeric else ""
            for src in sources:
                sel = tm[(tm["source"] == src) & (tm["axis"] == axis) & (tm["metric"] == metric)]
                if item is not None:
                    sel = sel[sel["item"] == item]
                elif axis == "individual":
                    sel = sel[sel["item"] != ITEM_MEAN]
                v = sel["value"].dropna()
                if len(v):
                    if numeric:
                        cell = float(v.mean())
                    else:
                        cell = f"{v.mean():.2f}" + (f" ± {v.std():.2f}" if len(v) > 1 else "")
                    break
            row[label] = cell
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


#: the families x axes table of the seed design: (label, source preference, axis, metric, item);
#: the headline's metrics of each axis, plus the structural magnitude ratio
AXES = [(f"{axis}: {label}", src, axis, metric, item) for label, src, axis, metric, item in HEADLINE
        if metric in ("wasserstein1_norm", "mean_abs_difference", "mean_coverage", "lins_ccc", "attenuation_slope",
                      "pearson_r", "weighted_kappa")]
AXES.insert(5, ("structural: magnitude", ("estimate", "respondents"), "structural", "magnitude_ratio", None))


def axes_table(table: pd.DataFrame, n_pilot: int | None = None, methods: Sequence[str] | None = None,
               grouping: str = ALL, group: str = ALL) -> pd.DataFrame:
    """Families x axes: one row per (family, method), the mean over repeats of each axis's metrics
    (:data:`AXES`) in the whole sample or one subgroup; NaN where a method has no such metric.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "m", "family": "f", "n_pilot": 50, "repeat": [0, 1],
    ...     "source": "estimate", "axis": "marginal", "metric": "wasserstein1_norm", "item": ITEM_MEAN,
    ...     "grouping": "all", "group": "all", "value": [0.1, 0.3], "n": 10, "note": ""})
    >>> round(float(axes_table(t).loc[("f", "m"), "marginal: W1 (norm.)"]), 3)
    0.2
    """
    h = headline(table, n_pilot, methods, numeric=True, grouping=grouping, group=group, columns=AXES)
    if h.empty:
        return h
    return h.reset_index().set_index(["family", "method"]).sort_index(level=0, sort_remaining=False)


# ---------------------------------------------------------------------------------------------
# planning from a pilot
# ---------------------------------------------------------------------------------------------
def _planning(frame: pd.DataFrame, spec: Spec, n: int, seed: int, half_width: float = 0.1) -> pd.DataFrame:
    """Per item, from the first pilot of size ``n``: rho of human answers and the simulator's
    predictions, PPI++'s effective sample size and the humans needed for a +-``half_width`` interval
    of the item mean, classical vs PPI++ (:func:`rectify.planning.plan_from_pilot`)."""
    from .errors import EstimationError
    from .planning import plan_from_pilot

    if not spec.predicted:
        return pd.DataFrame()
    pilot = draw_cell_pilot(frame, n, 0, seed)
    rows = []
    for it in spec.items:
        if it not in spec.predicted:
            continue
        try:
            plan = plan_from_pilot(pilot[it], pilot[spec.predicted[it]], half_width,
                                   n_population=len(frame) - n, level=spec.level)
        except EstimationError as err:
            rows.append({"item": it, "note": f"not estimable: {err}"})
            continue
        need = plan["humans_needed"]
        rows.append({"item": it, "n_pilot": plan["n"], "rho": plan["rho"], "rho_low": plan["rho_interval"][0],
                     "rho_high": plan["rho_interval"][1], "n_eff": plan["n_eff"],
                     "needed_classical": need["classical"], "needed_ppi++": need["ppi++"],
                     "needed_ppi++_pessimistic": need["ppi++ (pessimistic)"], "note": ""})
    out = pd.DataFrame(rows)
    out.attrs["half_width"] = half_width
    return out


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def _seed_int(random_state: Any) -> int:
    if isinstance(random_state, (bool, float)) or not isinstance(random_state, (int, np.integer)):
        if isinstance(random_state, np.random.Generator):
            return int(random_state.integers(0, 2**31 - 1))
        raise InputError(f"argument 'random_state' must be an int or a numpy Generator, got {random_state!r}")
    return int(random_state)


def compare(frame: pd.DataFrame, items: Sequence[str], methods: Sequence[str] | None = None,
            pilot_sizes: Sequence[int] = (50, 100, 200), repeats: int = 5, groups: Sequence[str] | str | None = None,
            formula: str | None = None, *, scales: Mapping[str, Any] | None = None, predicted: Any = "{item}_llm",
            probabilities: Any = None, scores: Sequence[float] | None = None, covariates: Sequence[str] | None = None,
            random_state: Any = 0, checkpoint: str | None = None, progress: bool = True, min_group_n: int = 20,
            level: float = 0.95, evaluate: str = "frame") -> Comparison:
    """Run every method over pilot sizes and seeded random pilots; measure fidelity against humans.

    Parameters
    ----------
    frame : DataFrame
        One row per person: covariates, the human answers of ``items`` (option scores, NaN =
        missing) and the simulator's columns. Pilots are drawn from it; the rest are held out.
    items : list of str
        Item columns.
    methods : list of str, optional
        Registered method names (:func:`rectify.registry.available`); default
        :func:`rectify.registry.default_methods`.
    pilot_sizes : list of int
        Each at least 2 and at most ``len(frame) - 1``.
    repeats : int
        Seeded random pilots per size.
    groups : str or list of str, optional
        Grouping columns for subgroup metrics.
    formula : str, optional
        Structural model, response = an item or a scale name.
    scales : dict name -> (plus_items, minus_items) or {"plus": [...], "minus": [...]}, optional
    predicted : str or dict
        The simulator's per-person prediction: a pattern with ``{item}`` or a dict.
    probabilities : str or dict, optional
        The simulator's option probabilities: a pattern with ``{item}`` and ``{k}`` (1-based) or a
        dict item -> columns.
    scores : list of float, optional
        Option scores (default: the distinct human answers).
    covariates : list of str, optional
        For model-based methods (default: the formula's variables).
    random_state : int or Generator
        Seeds every pilot draw and every method.
    checkpoint : str, optional
        Folder where finished cells are saved and found again on a rerun.
    progress : bool
        Progress bar on stderr.
    min_group_n : int
        Smallest group size for a metric (smaller groups: not estimable).
    level : float
        Interval level.
    evaluate : {"frame", "rest"}
        ``"frame"`` (default): every method estimates the whole frame and its estimates are set
        beside the humans of the whole frame (pilot included: the finite frame). ``"rest"``: the
        paper's protocol -- the population of each cell is the frame minus its pilot, the methods
        see only those rows as the population, and the truth is the humans outside the pilot.

    Returns
    -------
    Comparison

    Notes
    -----
    Failures: a method that raises fails only its cell (recorded in ``failures``, with a
    warning). With a checkpoint, a rerun computes again every failed cell except those that
    failed on a deterministic input error (:class:`~rectify.errors.InputError`), and every cell
    whose answers were partly missing. A cell whose prompts partly failed keeps its metrics,
    computed on the answered rows, with a ``note`` on every row saying which items and how many
    rows (``meta["partial"]`` lists those cells). Rectify warnings a method emits (e.g.
    :class:`~rectify.errors.InSamplePredictionWarning`) are passed on and written in the note.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo
    >>> cmp = compare(load_misinfo(), ["f01"], methods=["classical", "ppi++"], pilot_sizes=[100],
    ...               repeats=2, random_state=1, progress=False)
    >>> cmp.summary().query("metric == 'mean_coverage' and item == 'f01'")["n_repeats"].tolist()
    [2, 2]
    """
    t0 = time.time()
    seed = _seed_int(random_state)
    spec = make_spec(frame, items, predicted=predicted, probabilities=probabilities, scores=scores,
                     formula=formula, scales=scales, covariates=covariates, groups=groups, level=level)
    names = registry.default_methods() if methods is None else list(methods)
    if isinstance(methods, str):
        raise ConfigError("argument 'methods' must be a list of method names")
    if not names:
        raise ConfigError("argument 'methods' is empty")
    names = list(dict.fromkeys(names))
    chosen = [registry.get(m) for m in names]  # ConfigError for an unknown method
    for m in chosen:
        m.check(spec)
    sizes = [int(s) for s in pilot_sizes]
    if not sizes:
        raise ConfigError("argument 'pilot_sizes' is empty")
    bad = [s for s in sizes if not 2 <= s < len(frame)]
    if bad:
        raise ConfigError(f"pilot sizes {bad} must be between 2 and len(frame) - 1 = {len(frame) - 1} "
                          "(the frame needs people left over to hold out)")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ConfigError(f"argument 'repeats' must be a positive integer, got {repeats!r}")
    if isinstance(min_group_n, bool) or not isinstance(min_group_n, (int, np.integer)) or min_group_n < 1:
        raise ConfigError(f"argument 'min_group_n' must be a positive integer, got {min_group_n!r}")
    if evaluate not in ("frame", "rest"):
        raise ConfigError(f"argument 'evaluate' must be 'frame' or 'rest', got {evaluate!r}")
    frame = frame.copy()
    truth = _truth(frame, spec)
    ck = _Checkpoint(checkpoint, _fingerprint(frame, spec, seed, min_group_n, evaluate))
    cells = [(m, n, r) for n in sizes for r in range(int(repeats)) for m in chosen]
    prog = _Progress(len(cells), progress)
    tabs, ests, coefs, fails, partial = [], [], [], [], []
    try:
        for m, n, r in cells:
            slug = _slug(m.name, n, r)
            loaded = ck.load(slug)
            if loaded is None:
                prog.start(f"{m.name} n={n} r={r}")
                t1 = time.time()
                try:
                    tab, est, coef, extra = _run_cell(m, frame, spec, truth, n, r, seed, min_group_n, evaluate)
                    status = {"method": m.name, "n_pilot": n, "repeat": r, "seconds": round(time.time() - t1, 3),
                              **{k: v for k, v in extra.items() if v}}
                except (KeyboardInterrupt, ConfigError):
                    raise
                except Exception as err:  # one failing method must not sink the comparison
                    final = isinstance(err, InputError)  # deterministic: the same inputs fail the same way
                    status = {"method": m.name, "n_pilot": n, "repeat": r, "error": f"{type(err).__name__}: {err}",
                              "final": final}
                    tab = est = coef = None
                    warnings.warn(f"method {m.name!r} failed at n_pilot={n}, repeat={r}: {status['error']}"
                                  + (" (an input error: fix the input)" if final else
                                     " (with a checkpoint, rerunning retries this cell)"), RuntimeWarning, stacklevel=2)
                ck.save(slug, status, tab, est, coef)
            else:
                status, tab, est, coef = loaded
            if status.get("partial"):
                partial.append({"method": m.name, "n_pilot": n, "repeat": r, "unanswered": status["partial"]})
            if status.get("error"):
                fails.append({"method": m.name, "n_pilot": n, "repeat": r, "error": status["error"]})
            else:
                lead = {"method": m.name, "family": m.family, "n_pilot": n, "repeat": r}
                tabs.append(tab.assign(**lead))
                ests.append(est.assign(**lead))
                coefs.append(coef.assign(**lead))
            prog.step(f"{m.name} n={n} r={r}")
    finally:
        prog.close()

    def cat(parts, cols):
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return pd.DataFrame(columns=cols)
        d = pd.concat(parts, ignore_index=True)
        return d[[c for c in cols if c in d.columns]]

    table = cat(tabs, TABLE_COLUMNS)
    planning = _planning(frame, spec, max(sizes), seed)
    est_cols = CELL_KEYS + ["item", "grouping", "group", "term", "estimate", "conf_low", "conf_high", "truth", "note"]
    coef_cols = CELL_KEYS + ["term", "estimate", "conf_low", "conf_high", "human"]
    return Comparison(
        table=table, estimates=cat(ests, est_cols), coefficients=cat(coefs, coef_cols),
        failures=pd.DataFrame(fails, columns=["method", "n_pilot", "repeat", "error"]),
        skipped=registry.unavailable(), spec=spec,
        methods={m.name: (m.family, m.description) for m in chosen},
        pilot_sizes=tuple(sizes), repeats=int(repeats), random_state=seed, seconds=time.time() - t0,
        meta={"n_frame": int(len(frame)), "planning": planning, "checkpoint": ck.summary(), "evaluate": evaluate,
              "partial": partial},
    )
