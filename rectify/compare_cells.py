"""One cell of a comparison (method x pilot size x repeat): its seeded pilot, the method's run and the
metrics of its estimates and predictions against the human answers.

The cell's random numbers come from a seed derived from the cell's key (comparison seed, pilot
size, repeat, method name and, for a pilot design other than simple random, the design's token) only,
never from the order in which cells run, so every backend of :func:`rectify.compare` gives the same
numbers. A designed pilot (:mod:`rectify.compare_designs`) is drawn once per (pilot size, repeat,
design), the same rows for every method, and reaches the methods through ``spec.design``; per-person
metrics are then not computed (the people outside a designed pilot are not a random remainder).

Missing answers: pilot and frame rows without a human answer to an item are left out of that item's
estimates and metrics (counted, never imputed). That is valid for the frame only if answers are missing
at random given what each method adjusts for (its covariates, margins or strata);
:func:`rectify.missingness_diagnostic` shows how respondents with and without an answer differ.

Examples
--------
>>> int(_cell_seed(0, 50, 1, "ppi++").integers(10**6)) == int(_cell_seed(0, 50, 1, "ppi++").integers(10**6))
True
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import registry
from .compare_spec import ITEM_MEAN
from .datasets import draw_pilot
from .errors import InputError
from .registry import ALL, Spec


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


def draw_design_cell_pilot(frame: pd.DataFrame, n: int, repeat: int, random_state: int, design: Any = None,
                           error: Any = None) -> tuple[pd.DataFrame, dict | None]:
    """The pilot of cell (n, repeat, design) and the design record (None for a simple random pilot).

    A simple random pilot is :func:`draw_cell_pilot`'s (the seed of comparisons made before designs
    existed); any other design draws with :func:`rectify.design_pilot`, seeded by the cell's key and the
    design's token (:mod:`rectify.compare_designs`), the same rows for every method.

    Examples
    --------
    >>> from rectify.compare_designs import DesignSpec
    >>> from rectify.datasets import load_misinfo
    >>> df = load_misinfo(); e = np.linspace(0.1, 1.0, len(df))
    >>> a, rec = draw_design_cell_pilot(df, 50, 0, 1, DesignSpec("active"), e)
    >>> b, _ = draw_design_cell_pilot(df, 50, 0, 1, DesignSpec("active"), e)
    >>> a.index.equals(b.index), rec["name"]
    (True, 'active')
    """
    if design is None or design.is_srs:
        return draw_cell_pilot(frame, n, repeat, random_state), None
    from .compare_designs import draw_design_pilot

    return draw_design_pilot(frame, int(n), design, error, _cell_seed(random_state, n, repeat, "design:" + design.token))


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
              random_state: int, min_group_n: int, evaluate: str = "frame", design: Any = None, error: Any = None
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    from dataclasses import replace

    from .fidelity import fidelity_report

    pilot, rec = draw_design_cell_pilot(frame, n, r, random_state, design, error)
    if evaluate == "rest":  # the population is the people outside the pilot; the truth is theirs
        frame = frame.drop(index=pilot.index)
        truth = _truth(frame, spec)
    frame_x = frame.drop(columns=list(spec.items)).copy()  # no method sees a human answer outside the pilot
    key = method.name if rec is None else f"{method.name}@{design.token}"
    out, notes = _call_method(method, frame_x, pilot, spec if rec is None else replace(spec, design=rec),
                              _cell_seed(random_state, n, r, key))
    unanswered = dict(out.info.get("unanswered") or {})
    extra = {"warnings": notes}
    if out.info.get("note"):  # what the method says about its own output (e.g. an axis not estimable)
        notes = notes + [str(out.info["note"])]
    if rec is not None and out.predictions is not None:
        notes = notes + [f"per-person metrics not computed under design {rec['name']!r}: the people outside a "
                         "designed pilot are not a random sample of the frame"]
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
    if out.predictions is not None and rec is None:
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


def cell_name(name: str, design: Any = None) -> str:
    """The name a cell is checkpointed under: the method's, with the design's token for a non-SRS design
    (so checkpoints written before designs existed resume as the SRS cells).

    Examples
    --------
    >>> from rectify.compare_designs import DesignSpec
    >>> cell_name("ppi++"), cell_name("ppi++", DesignSpec("srs")), cell_name("ppi++", DesignSpec("active"))
    ('ppi++', 'ppi++', 'ppi++@active|u=0.2|e=llm')
    """
    return name if design is None or design.is_srs else f"{name}@{design.token}"


def compute_cell(shared: Mapping[str, Any], cell: tuple) -> tuple:
    """Compute one cell ``(method name, n_pilot, repeat[, design token])`` from the comparison's shared inputs.

    ``shared`` holds what every cell reads and none changes (shipped once per worker by
    :mod:`rectify.parallel`): ``frame``, ``spec``, ``truth``, ``seed``, ``min_group_n``,
    ``evaluate``, ``methods`` (name -> :class:`~rectify.registry.Method`), for cells with a design token
    ``designs`` (token -> :class:`~rectify.compare_designs.DesignSpec`) and ``design_errors`` (token ->
    the expected error per frame row) and, for a checkpoint,
    ``folder`` and ``fingerprint`` -- the cell is then written there by whoever computed it. With
    ``capture`` (a worker process) the warnings the cell emits are recorded and returned, so that
    the caller can pass them on. A method that raises fails only its cell (its status says why);
    a :class:`~rectify.errors.ConfigError` stops the comparison.

    Returns
    -------
    (status, metrics, estimates, coefficients, warnings) -- the tables are None for a failed cell;
    ``warnings`` is a list of (category module, category name, message).

    Examples
    --------
    >>> from rectify.comparison import make_spec
    >>> from rectify.datasets import load_misinfo
    >>> from rectify.registry import get
    >>> df = load_misinfo(); spec = make_spec(df, ["f01"])
    >>> shared = {"frame": df, "spec": spec, "truth": _truth(df, spec), "seed": 0, "min_group_n": 20,
    ...           "evaluate": "frame", "methods": {"classical": get("classical")}}
    >>> status, tab, *_ = compute_cell(shared, ("classical", 50, 0))
    >>> status["method"], "error" in status, tab["metric"].iloc[0]
    ('classical', False, 'wasserstein1_norm')
    """
    import time

    from .compare_checkpoint import _slug, write_cell
    from .errors import ConfigError

    name, n, r, *token = cell  # a fourth element: the token of a design other than simple random
    design = shared["designs"][token[0]] if token else None
    method = shared["methods"][name]
    t1 = time.time()
    rec = None
    try:
        with warnings.catch_warnings(record=bool(shared.get("capture"))) as rec:
            if rec is not None:
                warnings.simplefilter("always")
            tab, est, coef, extra = _run_cell(method, shared["frame"], shared["spec"], shared["truth"], n, r,
                                              shared["seed"], shared["min_group_n"], shared["evaluate"], design,
                                              shared["design_errors"][token[0]] if token else None)
        status = {"method": name, "n_pilot": n, "repeat": r, "seconds": round(time.time() - t1, 3),
                  **({"design": design.label} if token else {}), **{k: v for k, v in extra.items() if v}}
    except (KeyboardInterrupt, ConfigError):
        raise
    except Exception as err:  # one failing method must not sink the comparison
        final = isinstance(err, InputError)  # deterministic: the same inputs fail the same way
        status = {"method": name, "n_pilot": n, "repeat": r, **({"design": design.label} if token else {}),
                  "error": f"{type(err).__name__}: {err}", "final": final}
        tab = est = coef = None
    if shared.get("folder"):
        write_cell(shared["folder"], shared["fingerprint"], _slug(cell_name(name, design), n, r), status, tab, est,
                   coef)
    # categories travel by name: a worker's class need not unpickle in the caller (another version)
    return status, tab, est, coef, [(w.category.__module__, w.category.__qualname__, str(w.message))
                                     for w in (rec or [])]
