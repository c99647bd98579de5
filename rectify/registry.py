"""The method registry of :func:`rectify.compare`: every family plugs in through a small adapter.

A **method** is a name, a family and a function::

    fn(frame, pilot, spec, random_state) -> MethodOutput

* ``frame``: every person of the population with covariates and the simulator's columns, but
  **without** the human answers (compare removes them, so no method can peek at held-out humans);
* ``pilot``: the pilot rows, with their human answers;
* ``spec``: a :class:`Spec` (items, option scores, the simulator's columns, formula, scales,
  covariates, grouping columns, level);
* ``random_state``: a numpy Generator owned by this (method, pilot size, repeat) cell.

It returns a :class:`MethodOutput`: population **estimates** per item (option shares and the
mean score, with intervals when the method has them, overall and per subgroup), optionally
**predictions** (one expected score per person and item) and **probabilities** (``(N, K)`` per
item) for every frame row, and optionally **coefficients** of the spec's formula with intervals.

Families: ``"pilot only"``, ``"prompting"``, ``"rectification"``, ``"calibration"``,
``"bayesian"``, ``"fine-tuning"``, ``"covariates"``. Methods whose module is missing or lacks the
expected public function are not registered; :func:`unavailable` says why. Nothing here imports a
heavy dependency at import time.

Wired adapters: ``classical`` (pilot only), ``simulator`` (the dataset's LLM columns taken at face
value), ``ppi++`` (rectification), ``greg`` and ``raking`` (calibration weighting of the pilot on
the LLM prediction, :func:`rectify.weighting.calibrate`), ``bayes-chain`` (Bayesian chain rule,
:func:`rectify.estimators.bayes_chain.chain_rule`), ``covariates`` (an ordinal classifier on the
covariates, :class:`rectify.llm.baseline.CovariateClassifier`), ``covariates+ppi++`` (that
classifier cross-fitted on the pilot and rectified, :func:`rectify.estimators.crossfit.crossppi_shares`;
not in the default set), ``bayes-hier`` (:class:`rectify.bayes.BayesianCalibrator`, pymc; slow, not in
the default set). The fine-tuning family comes from :mod:`rectify.finetuning`: ``lora`` (LoRA classifier fine-tuned
on the pilot), ``lora+xfit-ppi++`` (cross-fitted on the pilot's folds, then PPI++) and the degeneracy
case ``lora+ppi++ (in-sample)``. :func:`prompting_methods` builds zero-shot and few-shot prompting
methods (and their PPI++ versions) around a backend (:class:`rectify.llm.simulator.PromptSimulator`);
a configuration does it from its ``[simulators]`` (:mod:`rectify.config`). Register your own with
:func:`register`.

Examples
--------
>>> from rectify.registry import available, get
>>> "ppi++" in available() and get("classical").family
'pilot only'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, EstimationError, InputError

__all__ = [
    "FAMILIES",
    "Spec",
    "MethodOutput",
    "Method",
    "register",
    "get",
    "available",
    "unavailable",
    "default_methods",
    "ESTIMATE_COLUMNS",
    "estimates_by_group",
    "estimates_from_probabilities",
    "nearest_option",
    "simulator_probabilities",
    "prompting_methods",
    "prediction_rows",
    "with_predictions",
    "crossppi_rows",
]

FAMILIES = ("pilot only", "prompting", "rectification", "calibration", "bayesian", "fine-tuning", "covariates")
ESTIMATE_COLUMNS = ["item", "grouping", "group", "term", "estimate", "conf_low", "conf_high", "note"]
ALL = "all"


# ---------------------------------------------------------------------------------------------
# the contract
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """What is compared: items, option scores, simulator columns, formula, scales, groups.

    Parameters
    ----------
    items : tuple of str
        Item columns holding human answers (option scores, NaN = missing).
    scores : tuple of float
        Option scores in order (e.g. ``(1, 2, 3, 4)``); the same for every item.
    predicted : dict item -> column, optional
        The simulator's per-person prediction (an expected score or an answer) for each item.
    probabilities : dict item -> tuple of K columns, optional
        The simulator's option probabilities for each item.
    formula : str, optional
        Structural model; its left-hand side is an item or a scale name.
    scales : dict name -> (plus_items, minus_items), optional
    covariates : tuple of str
        Covariate columns for model-based methods (default: the formula's variables).
    groups : tuple of str
        Grouping columns for subgroup metrics.
    level : float
        Interval level.

    Examples
    --------
    >>> s = Spec(items=("q1",), scores=(1.0, 2.0, 3.0))
    >>> s.term_names()
    ['share:1', 'share:2', 'share:3', 'mean']
    """

    items: tuple
    scores: tuple
    predicted: Mapping[str, str] = field(default_factory=dict)
    probabilities: Mapping[str, tuple] = field(default_factory=dict)
    formula: str | None = None
    scales: Mapping[str, tuple] = field(default_factory=dict)
    covariates: tuple = ()
    groups: tuple = ()
    level: float = 0.95

    def term_names(self) -> list[str]:
        """Names of the estimate terms per item: ``share:<score>`` for each option, then ``mean``."""
        return [f"share:{_fmt(s)}" for s in self.scores] + ["mean"]

    def response(self) -> str | None:
        """Left-hand side of the formula (an item or a scale), or None."""
        if not self.formula:
            return None
        return self.formula.split("~")[0].strip()


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass
class MethodOutput:
    """What a method returns for one pilot.

    Attributes
    ----------
    estimates : DataFrame
        Columns :data:`ESTIMATE_COLUMNS`: per item, grouping (``"all"`` or a grouping column),
        group and term (``share:<score>`` or ``mean``) an estimate and its interval (NaN if none).
    predictions : DataFrame, optional
        Index = the frame's index, one column per item: a point prediction (expected score).
    probabilities : dict item -> (N, K) array, optional
        Rows aligned with the frame.
    coefficients : DataFrame, optional
        Index = term; columns ``estimate``, ``conf_low``, ``conf_high`` for the spec's formula.
    info : dict
        Anything worth recording (e.g. lambda, notes).
    """

    estimates: pd.DataFrame
    predictions: pd.DataFrame | None = None
    probabilities: dict | None = None
    coefficients: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A registered method.

    Parameters
    ----------
    name : str
    family : str
        One of :data:`FAMILIES`.
    fn : callable
        ``fn(frame, pilot, spec, random_state) -> MethodOutput``.
    description : str
    needs : tuple of str
        Spec fields the method needs (``"predicted"``, ``"covariates"``).
    default : bool
        Part of the default comparison (slow methods are not).
    """

    name: str
    family: str
    fn: Callable[..., MethodOutput]
    description: str = ""
    needs: tuple = ()
    default: bool = True

    def check(self, spec: Spec) -> None:
        """Raise :class:`~rectify.errors.ConfigError` if ``spec`` lacks what the method needs."""
        for need in self.needs:
            if need == "predicted" and set(spec.items) - set(spec.predicted):
                missing = sorted(set(spec.items) - set(spec.predicted))
                raise ConfigError(f"method {self.name!r} needs the simulator's column for items {missing}")
            if need == "covariates" and not spec.covariates:
                raise ConfigError(f"method {self.name!r} needs covariates (give 'covariates' or a formula)")


_REGISTRY: dict[str, Method] = {}
_UNAVAILABLE: dict[str, str] = {}


def register(method: Method, replace: bool = False) -> Method:
    """Add a method to the registry.

    Examples
    --------
    >>> m = Method("my-copy", "pilot only", get("classical").fn, default=False)
    >>> register(m, replace=True).name
    'my-copy'
    """
    if not isinstance(method, Method):
        raise InputError("argument 'method' must be a rectify.registry.Method")
    if method.family not in FAMILIES:
        raise InputError(f"family {method.family!r} of method {method.name!r} must be one of {FAMILIES}")
    if method.name in _REGISTRY and not replace:
        raise InputError(f"a method named {method.name!r} is already registered; pass replace=True")
    _REGISTRY[method.name] = method
    _UNAVAILABLE.pop(method.name, None)
    return method


def get(name: str) -> Method:
    """The registered method ``name``; :class:`~rectify.errors.ConfigError` names the choices.

    Examples
    --------
    >>> get("ppi++").family
    'rectification'
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _UNAVAILABLE:
        raise ConfigError(f"method {name!r} is not available here: {_UNAVAILABLE[name]}")
    raise ConfigError(f"unknown method {name!r}; choose from {sorted(_REGISTRY)}")


def available() -> dict[str, str]:
    """Registered methods: name -> family."""
    return {k: m.family for k, m in _REGISTRY.items()}


def unavailable() -> dict[str, str]:
    """Methods whose family could not be loaded: name -> reason."""
    return dict(_UNAVAILABLE)


def default_methods() -> list[str]:
    """Names of the methods run by default (fast enough for the demo)."""
    return [k for k, m in _REGISTRY.items() if m.default]


def _guarded(name: str, family: str, loader: Callable[[], Callable], description: str,
             needs: tuple = (), default: bool = True) -> None:
    """Register ``name`` if ``loader()`` (which imports the family's module) works, else record why."""
    try:
        fn = loader()
    except Exception as err:  # a missing or unfinished family must never break the registry
        _UNAVAILABLE[name] = f"{type(err).__name__}: {err}"
        return
    _REGISTRY[name] = Method(name, family, fn, description, needs, default)


# ---------------------------------------------------------------------------------------------
# helpers shared by the adapters
# ---------------------------------------------------------------------------------------------
def _group_parts(frame: pd.DataFrame, pilot: pd.DataFrame, spec: Spec):
    yield ALL, ALL, frame, pilot
    for g in spec.groups:
        col = frame[g]
        levels = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else sorted(pd.unique(col), key=str)
        for lev in levels:
            yield g, str(lev), frame[frame[g] == lev], pilot[pilot[g] == lev]


def _nan_rows(item: str, spec: Spec, note: str) -> list[dict]:
    return [{"item": item, "term": t, "estimate": math.nan, "conf_low": math.nan, "conf_high": math.nan,
             "note": note} for t in spec.term_names()]


def estimates_by_group(one: Callable[[str, pd.DataFrame, pd.DataFrame], list[dict]], frame: pd.DataFrame,
                       pilot: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """Run ``one(item, frame_part, pilot_part) -> rows`` overall and in every subgroup.

    A part where the method cannot estimate (no pilot rows, an estimation error) gets NaN rows
    with the reason in ``note`` -- not estimable, never 0.

    Examples
    --------
    >>> spec = Spec(items=("y",), scores=(1.0, 2.0))
    >>> f = pd.DataFrame({"g": ["a", "b"]}); p = pd.DataFrame({"g": ["a", "a"], "y": [1.0, 2.0]})
    >>> def one(item, fr, pi):
    ...     return [{"item": item, "term": "mean", "estimate": float(pi[item].mean()),
    ...              "conf_low": float("nan"), "conf_high": float("nan"), "note": ""}]
    >>> estimates_by_group(one, f, p, Spec(("y",), (1.0, 2.0), groups=("g",)))["estimate"].tolist()
    [1.5, 1.5, nan, nan, nan]
    """
    rows: list[dict] = []
    for gname, glabel, fr, pi in _group_parts(frame, pilot, spec):
        for item in spec.items:
            pi_i = pi[pi[item].notna()] if item in pi.columns else pi
            if len(fr) == 0:
                part = _nan_rows(item, spec, "not estimable: no population rows in this group")
            elif len(pi_i) < 2:
                part = _nan_rows(item, spec, f"not estimable: {len(pi_i)} pilot answers in this group")
            else:
                try:
                    part = one(item, fr, pi_i)
                except (EstimationError, InputError, np.linalg.LinAlgError, ZeroDivisionError) as err:
                    part = _nan_rows(item, spec, f"not estimable: {err}")
            for r in part:
                rows.append({"grouping": gname, "group": glabel, **r})
    return pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)


def _result_rows(item: str, spec: Spec, shares_res: Any, mean_res: Any, note: str = "") -> list[dict]:
    """Rows from a shares Result (K terms) and a mean Result (1 term); either may be None."""
    rows = []
    names = spec.term_names()
    for res, terms in ((shares_res, names[:-1]), (mean_res, names[-1:])):
        if res is None:
            rows += [{"item": item, "term": t, "estimate": math.nan, "conf_low": math.nan,
                      "conf_high": math.nan, "note": "no estimate"} for t in terms]
            continue
        est = np.asarray(res.estimate, float)[: len(terms)]
        lo, hi = (np.asarray(a, float)[: len(terms)] for a in res.conf_int(spec.level))
        for t, e, a, b in zip(terms, est, lo, hi):
            rows.append({"item": item, "term": t, "estimate": float(e), "conf_low": float(a),
                         "conf_high": float(b), "note": note})
    return rows


def estimates_from_probabilities(probs: Mapping[str, np.ndarray], frame: pd.DataFrame, spec: Spec,
                                 note: str = "mean of predicted probabilities; no interval") -> pd.DataFrame:
    """Population estimates of a predictive method: the average predicted distribution per group.

    ``share_k = mean_i p_ik`` and ``mean = sum_k s_k share_k`` over the frame rows of each group.
    Rows with NaN probabilities (unanswered prompts) are left out, and the note says how many.

    Examples
    --------
    >>> spec = Spec(items=("y",), scores=(1.0, 2.0))
    >>> est = estimates_from_probabilities({"y": np.array([[1.0, 0.0], [0.5, 0.5]])},
    ...                                    pd.DataFrame(index=[0, 1]), spec)
    >>> est["estimate"].tolist()
    [0.75, 0.25, 1.25]
    """
    sc = np.asarray(spec.scores, float)
    rows = []
    pos = pd.Series(np.arange(len(frame)), index=frame.index)
    for gname, glabel, fr, _ in _group_parts(frame, frame.iloc[:0], spec):
        idx = pos.loc[fr.index].to_numpy()
        for item in spec.items:
            p = np.asarray(probs[item], float)[idx]
            ok = ~np.isnan(p).any(axis=1)
            if len(idx) == 0:
                part = _nan_rows(item, spec, "not estimable: no population rows in this group")
            elif not ok.any():
                part = _nan_rows(item, spec, "not estimable: no row of this group was answered")
            else:
                sh = p[ok].mean(axis=0)
                vals = list(sh) + [float(sh @ sc)]
                nt = note if ok.all() else f"{note}; {int((~ok).sum())} of {ok.size} rows unanswered, left out"
                part = [{"item": item, "term": t, "estimate": float(v), "conf_low": math.nan,
                         "conf_high": math.nan, "note": nt} for t, v in zip(spec.term_names(), vals)]
            rows += [{"grouping": gname, "group": glabel, **r} for r in part]
    return pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)


def nearest_option(values: np.ndarray, scores: Sequence[float]) -> np.ndarray:
    """Index (0-based) of the option score nearest to each value (ties: the lower option).

    Examples
    --------
    >>> nearest_option(np.array([1.2, 2.5, 3.9]), [1, 2, 3, 4]).tolist()
    [0, 1, 3]
    """
    sc = np.asarray(scores, float)
    return np.argmin(np.abs(np.asarray(values, float)[:, None] - sc[None, :]), axis=1)


def simulator_probabilities(frame: pd.DataFrame, spec: Spec, item: str) -> np.ndarray:
    """The simulator's (N, K) option probabilities: the given columns, else one-hot of the nearest option."""
    if item in spec.probabilities:
        return frame[list(spec.probabilities[item])].to_numpy(dtype=float)
    vals = frame[spec.predicted[item]].to_numpy(dtype=float)
    out = np.zeros((len(vals), len(spec.scores)))
    out[np.arange(len(vals)), nearest_option(vals, spec.scores)] = 1.0
    return out


def _scale_columns(df: pd.DataFrame, spec: Spec, source: str) -> pd.Series:
    """The formula's response for ``df``: human answers (``source='human'``) or the simulator's."""
    from .fidelity import scale_score

    lhs = spec.response()
    if source == "human":
        if lhs in spec.scales:
            return scale_score(df, *spec.scales[lhs])
        return df[lhs].astype(float)
    rename = {spec.predicted[i]: i for i in spec.predicted}
    sim = df[list(rename)].rename(columns=rename)
    if lhs in spec.scales:
        return scale_score(sim, *spec.scales[lhs])
    return sim[lhs].astype(float)


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _coef_table(res: Any, level: float) -> pd.DataFrame:
    lo, hi = res.conf_int(level)
    return pd.DataFrame({"estimate": np.asarray(res.estimate, float), "conf_low": lo, "conf_high": hi},
                        index=pd.Index(list(res.terms), name="term"))


def _verb_formula(spec: Spec) -> str:
    return "_y_ ~ " + spec.formula.split("~", 1)[1].strip()


def _with_response(pilot: pd.DataFrame, frame: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = pilot.assign(_y_=_scale_columns(pilot, spec, "human"), _yhat_=_scale_columns(pilot, spec, "sim"))
    p = p[p["_y_"].notna() & p["_yhat_"].notna()]
    f = frame.assign(_yhat_=_scale_columns(frame, spec, "sim"))
    return p, f


def prediction_rows(frame: pd.DataFrame, pilot: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The rows a simulator must predict for a correction: the frame's, then pilot rows not in it.

    Examples
    --------
    >>> f = pd.DataFrame({"x": [1, 2]}, index=[0, 1]); p = pd.DataFrame({"x": [2, 3]}, index=[1, 5])
    >>> prediction_rows(f, p, ["x"]).index.tolist()
    [0, 1, 5]
    """
    cols = list(columns)
    extra = pilot.loc[~pilot.index.isin(frame.index), cols]
    return pd.concat([frame[cols], extra]) if len(extra) else frame[cols]


def with_predictions(frame: pd.DataFrame, pilot: pd.DataFrame, spec: Spec, probs: Mapping[str, np.ndarray],
                     index: pd.Index) -> tuple[pd.DataFrame, pd.DataFrame, Spec]:
    """Frame, pilot and spec whose simulator columns are ``probs`` (rows aligned with ``index``).

    Any correction registered for the dataset's simulator columns (``ppi++``, ``greg``, ...) then
    runs on these predictions instead. Rows with an unanswered item (NaN) are left out of both.

    Examples
    --------
    >>> spec = Spec(items=("y",), scores=(1.0, 2.0))
    >>> f = pd.DataFrame({"x": [0, 1]}); p = pd.DataFrame({"y": [2.0]}, index=[1])
    >>> fr, pi, s2 = with_predictions(f, p, spec, {"y": np.array([[0.5, 0.5], [0.0, 1.0]])}, f.index)
    >>> s2.predicted, pi["_y_pred_"].tolist()
    ({'y': '_y_pred_'}, [2.0])
    """
    from dataclasses import replace

    sc = np.asarray(spec.scores, float)
    cols = {it: f"_{it}_pred_" for it in spec.items}
    pcols = {it: tuple(f"_{it}_p{j}_" for j in range(len(sc))) for it in spec.items}
    add = {cols[it]: np.asarray(probs[it], float) @ sc for it in spec.items}
    add.update({c: np.asarray(probs[it], float)[:, j] for it in spec.items for j, c in enumerate(pcols[it])})
    add = pd.DataFrame(add, index=index)
    add = add[add.notna().all(axis=1)]
    fr = frame.join(add, how="inner")
    pi = pilot.join(add, how="inner")
    return fr, pi, replace(spec, predicted=cols, probabilities=pcols)


def crossppi_rows(item: str, y: np.ndarray, f_pilot: np.ndarray, f_population: np.ndarray, spec: Spec,
                  note: str, lam: Any = 1.0) -> list[dict]:
    """Estimate rows (shares, then the mean score with a normal interval) of cross-prediction PPI.

    ``f_pilot``: (n, K) out-of-fold probabilities of the pilot rows; ``f_population``:
    (n_folds, N, K) each fold model's probabilities for the population; ``lam="tune"``: PPI++.

    Examples
    --------
    >>> spec = Spec(items=("y",), scores=(1.0, 2.0))
    >>> rows = crossppi_rows("y", np.array([1.0, 2.0, 2.0, 1.0]), np.full((4, 2), 0.5),
    ...                      np.full((2, 3, 2), 0.5), spec, "cross-fit")
    >>> [round(r["estimate"], 3) for r in rows]
    [0.5, 0.5, 1.5]
    """
    from .estimators.crossfit import crossppi_shares

    sc = np.asarray(spec.scores, float)
    r = crossppi_shares(y, f_pilot, f_population, options=list(spec.scores), lam=lam, level=spec.level)
    lo, hi = r.conf_int(spec.level)
    shares_ = np.asarray(r.estimate, float)[: len(sc)]
    rows = [{"item": item, "term": t, "estimate": float(e), "conf_low": float(a), "conf_high": float(b), "note": note}
            for t, e, a, b in zip(spec.term_names()[:-1], shares_, lo, hi)]
    est_m = float(shares_ @ sc)
    cov = np.asarray(r.cov, float)[: len(sc), : len(sc)]
    half = _z(spec.level) * math.sqrt(max(0.0, float(sc @ cov @ sc)))
    rows.append({"item": item, "term": "mean", "estimate": est_m, "conf_low": est_m - half,
                 "conf_high": est_m + half, "note": f"{note}; mean score from the shares (normal interval)"})
    return rows


# ---------------------------------------------------------------------------------------------
# adapters: pilot only, simulator, PPI++
# ---------------------------------------------------------------------------------------------
def _classical(frame, pilot, spec, random_state):
    from .estimators.ppi import ppi_mean, ppi_shares
    from .verbs import ols

    cats = list(spec.scores)

    def one(item, fr, pi):
        y = pi[item].to_numpy(float)
        s = ppi_shares(y, None, None, "classical", categories=cats, level=spec.level)
        m = ppi_mean(y, None, None, "classical", level=spec.level)
        return _result_rows(item, spec, s, m, "pilot answers only")

    coefs = None
    if spec.formula:
        p = pilot.assign(_y_=_scale_columns(pilot, spec, "human")).dropna(subset=["_y_"])
        coefs = _coef_table(ols(_verb_formula(spec), p, None, method="classical", level=spec.level), spec.level)
    return MethodOutput(estimates_by_group(one, frame, pilot, spec), coefficients=coefs)


def _simulator(frame, pilot, spec, random_state):
    from .verbs import ols

    probs = {it: simulator_probabilities(frame, spec, it) for it in spec.items}
    preds = pd.DataFrame({it: frame[spec.predicted[it]].to_numpy(dtype=float) for it in spec.items},
                         index=frame.index)
    note = "average of the simulator's probabilities" if spec.probabilities else "simulator's nearest options"
    est = estimates_from_probabilities(probs, frame, spec, note=note)
    # the naive interval of the mean: the simulator's answers taken as if they were human answers
    coefs = None
    if spec.formula:
        f = frame.assign(_yhat_=_scale_columns(frame, spec, "sim"))
        coefs = _coef_table(ols(_verb_formula(spec).replace("_y_", "_yhat_"), f.dropna(subset=["_yhat_"]), None,
                                method="classical", level=spec.level), spec.level)
    return MethodOutput(est, predictions=preds, probabilities=probs, coefficients=coefs,
                        info={"note": "the simulator's answers at face value (naive)"})


def _ppi(frame, pilot, spec, random_state):
    from .estimators.ppi import ppi_mean, ppi_shares
    from .verbs import ols

    cats = list(spec.scores)

    def one(item, fr, pi):
        y = pi[item].to_numpy(float)
        col = spec.predicted[item]
        s = ppi_shares(y, simulator_probabilities(pi, spec, item), simulator_probabilities(fr, spec, item),
                       "ppi++", categories=cats, level=spec.level)
        m = ppi_mean(y, pi[col].to_numpy(float), fr[col].to_numpy(float), "ppi++", level=spec.level)
        return _result_rows(item, spec, s, m, "PPI++ (tuned lambda)")

    coefs, info = None, {}
    if spec.formula:
        p, f = _with_response(pilot, frame, spec)
        try:
            coefs = _coef_table(ols(_verb_formula(spec), p, f, predicted="_yhat_", method="ppi++", level=spec.level),
                                spec.level)
        except (InputError, EstimationError) as err:  # e.g. too few pilot rows with the simulator's answers
            if len(p) > 2 * len(spec.term_names()) + 20:
                raise
            info["note"] = f"structural axis not estimable: {err}"
    return MethodOutput(estimates_by_group(one, frame, pilot, spec), coefficients=coefs, info=info)


register(Method("classical", "pilot only", _classical, "the pilot's human answers alone (design-based)"))
register(Method("simulator", "prompting", _simulator,
                "the simulator's answers at face value (naive)", needs=("predicted",)))
register(Method("ppi++", "rectification", _ppi, "PPI++ on the simulator's answers (tuned lambda)",
                needs=("predicted",)))


# ---------------------------------------------------------------------------------------------
# adapters: calibration weighting (rectify.weighting)
# ---------------------------------------------------------------------------------------------
def _calibration_adapter(how: str) -> Callable:
    from .weighting import calibrate  # fails here, at registration, if the family is missing

    if not hasattr(__import__("rectify.weighting", fromlist=["CalibratedWeights"]).CalibratedWeights, "shares"):
        raise ImportError("rectify.weighting.CalibratedWeights has no shares()")

    def fn(frame, pilot, spec, random_state):
        cats = list(spec.scores)

        def aux(fr, pi, pred_col):
            vars_ = [pred_col]
            if how == "raking":
                vars_ += [g for g in spec.groups if fr[g].nunique() > 1]
            return vars_

        def one(item, fr, pi):
            col = spec.predicted[item]
            cw = calibrate(pi, fr, vars=aux(fr, pi, col), method="linear" if how == "greg" else "raking")
            return _result_rows(item, spec, cw.shares(item, levels=cats), cw.mean(item), f"calibration ({how})")

        coefs = None
        if spec.formula:
            p, f = _with_response(pilot, frame, spec)
            cw = calibrate(p, f, vars=aux(f, p, "_yhat_"), method="linear" if how == "greg" else "raking")
            coefs = _coef_table(cw.ols(_verb_formula(spec)), spec.level)
        return MethodOutput(estimates_by_group(one, frame, pilot, spec), coefficients=coefs)

    return fn


_guarded("greg", "calibration", lambda: _calibration_adapter("greg"),
         "linear (GREG) calibration of the pilot to the frame's total of the LLM prediction",
         needs=("predicted",))
_guarded("raking", "calibration", lambda: _calibration_adapter("raking"),
         "raking of the pilot on the LLM prediction and the grouping margins", needs=("predicted",))


# ---------------------------------------------------------------------------------------------
# adapter: Bayesian chain rule (rectify.estimators.bayes_chain)
# ---------------------------------------------------------------------------------------------
def _bayes_chain_adapter() -> Callable:
    from .estimators.bayes_chain import chain_rule

    def fn(frame, pilot, spec, random_state):
        K = len(spec.scores)
        sc = np.asarray(spec.scores, float)

        def one(item, fr, pi):
            import warnings

            y = nearest_option(pi[item].to_numpy(float), sc)
            a = simulator_probabilities(pi, spec, item)
            a_pop = simulator_probabilities(fr, spec, item)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = chain_rule(y, a, a_pop, n_options=K, scores=sc, n_draws=1000, level=spec.level,
                               random_state=random_state)
            note = "posterior mean, equal-tailed credible interval"
            if any("prior" in str(w.message).lower() for w in caught):
                note += "; some LLM answers unseen in the pilot rest on the prior"
            lo, hi = r.conf_int(spec.level)
            names = spec.term_names()
            return [{"item": item, "term": t, "estimate": float(e), "conf_low": float(a_), "conf_high": float(b_),
                     "note": note} for t, e, a_, b_ in zip(names, r.estimate, lo, hi)]

        return MethodOutput(estimates_by_group(one, frame, pilot, spec))

    return fn


_guarded("bayes-chain", "bayesian", _bayes_chain_adapter,
         "Bayesian chain rule P(y) = sum_a P(yhat=a) P(y | yhat=a), conjugate Dirichlet posteriors",
         needs=("predicted",))


# ---------------------------------------------------------------------------------------------
# adapters: covariates-only classifier (rectify.llm.baseline), cross-fitted + PPI (estimators.crossfit)
# ---------------------------------------------------------------------------------------------
def _covariate_probs(frame, pilot, spec, item, seed):
    from .llm.baseline import CovariateClassifier

    clf = CovariateClassifier(kind="ordinal", options=list(spec.scores), covariates=list(spec.covariates),
                              missing_y="skip", random_state=seed)
    pi = pilot[pilot[item].notna()]
    clf.fit(pi[list(spec.covariates)], pi[item].to_numpy(float))
    return clf.predict_proba(frame[list(spec.covariates)])


def _covariates_adapter() -> Callable:
    from .llm.baseline import CovariateClassifier  # noqa: F401

    def fn(frame, pilot, spec, random_state):
        sc = np.asarray(spec.scores, float)
        seed = int(random_state.integers(0, 2**31 - 1))
        probs = {it: _covariate_probs(frame, pilot, spec, it, seed) for it in spec.items}
        preds = pd.DataFrame({it: probs[it] @ sc for it in spec.items}, index=frame.index)
        est = estimates_from_probabilities(probs, frame, spec, note="average predicted distribution; no interval")
        return MethodOutput(est, predictions=preds, probabilities=probs)

    return fn


_guarded("covariates", "covariates", _covariates_adapter,
         "ordinal (cumulative-logit) classifier on the covariates, fitted on the pilot", needs=("covariates",))


def _crossfit_adapter() -> Callable:
    from .estimators.crossfit import make_folds

    def fn(frame, pilot, spec, random_state):
        seed = int(random_state.integers(0, 2**31 - 1))

        def one(item, fr, pi):
            n_folds = 5 if len(pi) >= 50 else 2
            folds = make_folds(len(pi), n_folds, random_state=seed)
            f_pi = np.zeros((len(pi), len(spec.scores)))
            f_pop = []
            for k in range(n_folds):
                train, test = pi.iloc[folds != k], pi.iloc[folds == k]
                f_pop.append(_covariate_probs(fr, train, spec, item, seed))
                f_pi[folds == k] = _covariate_probs(test, train, spec, item, seed)
            return crossppi_rows(item, pi[item].to_numpy(float), f_pi, np.stack(f_pop), spec,
                                 "cross-fitted covariate classifier + PPI")

        return MethodOutput(estimates_by_group(one, frame, pilot, spec))

    return fn


_guarded("covariates+ppi", "rectification", _crossfit_adapter,
         "covariate classifier cross-fitted on the pilot, rectified with cross-prediction PPI",
         needs=("covariates",), default=False)


# ---------------------------------------------------------------------------------------------
# predictive methods: a source of per-person option probabilities (a prompted LLM, stored answers),
# used as is (the simulator's own estimates) or through a correction (PPI++, GREG, ...)
# ---------------------------------------------------------------------------------------------
def predictive_method(name: str, source: Callable, description: str, rectified: str | None = None,
                      note: str = "mean of predicted probabilities; no interval", family: str = "prompting",
                      columns: Sequence[str] = ()) -> Method:
    """A method from ``source(rows, pilot, spec, item, seed) -> ((M, K) probabilities, record)``.

    NaN rows of the probabilities are unanswered (a failed prompt, a person the stored answers do not
    cover): they are left out of the estimates and of the correction, and ``record`` (``rows``,
    counts, ``of``) goes to ``MethodOutput.info["unanswered"]``, which :func:`rectify.compare` turns
    into a note on every metric of the cell. With ``rectified`` (a registered correction on the
    simulator's predictions, e.g. ``"ppi++"``) the correction runs on these probabilities.
    ``columns``: frame columns the source reads besides the covariates (e.g. stored answers).

    Examples
    --------
    >>> def src(rows, pilot, spec, item, seed):
    ...     return np.tile([0.25, 0.75], (len(rows), 1)), {"rows": [], "of": len(rows)}
    >>> m = predictive_method("flat", src, "always 25/75")
    >>> out = m.fn(pd.DataFrame(index=range(4)), pd.DataFrame(), Spec(items=("y",), scores=(1.0, 2.0)),
    ...            np.random.default_rng(0))
    >>> out.estimates["estimate"].round(3).tolist()
    [0.25, 0.75, 1.75]
    """
    def fn(frame, pilot, spec, random_state):
        seed = int(random_state.integers(0, 2**31 - 1))
        sc = np.asarray(spec.scores, float)
        need = list(dict.fromkeys([*spec.covariates, *columns]))
        rows = prediction_rows(frame, pilot, need) if rectified else frame
        probs, unanswered = {}, {}
        for it in spec.items:
            probs[it], rec = source(rows, pilot, spec, it, seed)
            if rec["rows"]:
                unanswered[it] = rec
        info = {"unanswered": unanswered} if unanswered else {}
        if not rectified:
            preds = pd.DataFrame({it: probs[it] @ sc for it in spec.items}, index=frame.index)
            est = estimates_from_probabilities(probs, frame, spec, note=note)
            return MethodOutput(est, predictions=preds, probabilities=probs, info=info)
        fr, pi, spec2 = with_predictions(frame, pilot, spec, probs, rows.index)
        out = get(rectified).fn(fr, pi, spec2, random_state)
        out.info.update(info)
        return out

    fam = (get(rectified).family if rectified != "ppi++" else "rectification") if rectified else family
    return Method(name, fam, fn, description + (f" + {rectified}" if rectified else ""), needs=("covariates",),
                  default=False)


def stored_source(probabilities: Mapping[str, Sequence[str]], what: str = "stored answers") -> Callable:
    """A :func:`predictive_method` source reading stored option probabilities (columns per item).

    Rows whose stored probabilities are missing (the simulation covered only some people) are
    unanswered: left out and counted in the cell's note, never imputed. An item with no stored
    answer in the rows raises :class:`~rectify.errors.InputError`.

    Examples
    --------
    >>> src = stored_source({"y": ["p1", "p2"]})
    >>> rows = pd.DataFrame({"p1": [0.2, np.nan], "p2": [0.8, np.nan]})
    >>> p, rec = src(rows, None, None, "y", 0)
    >>> p[0].tolist(), rec["rows"], rec["of"]
    ([0.2, 0.8], [1], 2)
    """
    def source(rows, pilot, spec, item, seed):
        cols = list(probabilities[item])
        missing = [c for c in cols if c not in rows.columns]
        if missing:
            raise InputError(f"{what}: columns {missing} of item {item!r} are not in the frame; check the "
                             "simulator's probabilities pattern")
        p = rows[cols].to_numpy(dtype=float, copy=True)
        bad = np.isnan(p).any(axis=1)
        if bad.all():
            raise InputError(f"{what}: item {item!r} has no stored answer in these {len(p)} rows; simulate them "
                             "first or leave this simulator out")
        if (p[~bad] < 0).any():
            raise InputError(f"{what}: item {item!r} has negative stored probabilities; check the columns {cols}")
        p[~bad] = p[~bad] / p[~bad].sum(axis=1, keepdims=True)
        return p, {"rows": rows.index[bad].tolist(), "not_simulated": int(bad.sum()), "of": int(len(p))}

    return source


# ---------------------------------------------------------------------------------------------
# prompting a live LLM (rectify.llm.simulator.PromptSimulator): a factory, since it needs a backend
# ---------------------------------------------------------------------------------------------
def _prompt_probabilities(rows, pilot, spec, item_obj, backend, strategy, k, selection, seed):
    """(M, K) probabilities for ``rows`` (NaN rows: unanswered) and a record of the unanswered rows.

    Every prompt unanswered raises :class:`~rectify.errors.BackendError` (the cell fails and a
    resumed comparison retries it); some unanswered is a partial answer, recorded, never hidden."""
    from .errors import BackendError
    from .llm.simulator import PromptSimulator

    if item_obj.n_options != len(spec.scores):
        raise ConfigError(f"item {item_obj.name!r}: {item_obj.n_options} option labels for {len(spec.scores)} "
                          f"option scores {list(spec.scores)}; give one label per score")
    cov = list(spec.covariates)
    sim = PromptSimulator(backend, item_obj, strategy=strategy, k=k, selection=selection, random_state=seed)
    if strategy == "few-shot":
        pi = pilot[pilot[item_obj.name].notna()]
        sim.fit(pi[cov], pi[item_obj.name])
    else:
        sim.fit()
    p = np.asarray(sim.predict_proba(rows[cov]), float)
    bad = np.isnan(p).any(axis=1)
    scores = getattr(sim, "last_scores_", None)
    status = np.asarray(scores.status if scores is not None else ["failed"] * len(p), dtype=object)
    if bad.all():
        errs = [e for e in (scores.errors if scores is not None else []) if e]
        raise BackendError(f"item {item_obj.name!r}: all {len(p)} prompts failed or were answered off the scale"
                           + (f" (first error: {errs[0]})" if errs else "") + "; check the backend and rerun "
                           "(a resumed comparison retries this cell; answered prompts come from the cache)")
    record = {"rows": rows.index[bad].tolist(), "failed": int(np.sum(bad & (status == "failed"))),
              "off_scale": int(np.sum(bad & (status != "failed"))), "of": int(len(p))}
    return p, record


def prompting_methods(backend: Any, items: Sequence[Any], prefix: str = "prompt", k: int = 5,
                      register_them: bool = True, strategies: Sequence[str] = ("zero-shot", "few-shot"),
                      selection: str = "random", description: str = "",
                      corrections: Sequence[str] = ("ppi++",)) -> list[Method]:
    """Methods that prompt an LLM through ``backend``: zero-shot, few-shot, and each + PPI++.

    ``items`` are :class:`rectify.llm.items.Item` objects (name = the item column; options in the
    order of the spec's scores). The personas come from the spec's covariates. Few-shot examples
    (``k`` per prompt, chosen by ``selection``: ``"random"`` or ``"nearest"``) come from the pilot
    and never include the person predicted, so the PPI++ versions may use the pilot's own
    predictions. Not in the default set (a real LLM is slow); every request goes through the
    backend's cache. ``corrections`` names the registered methods run on the prompted predictions
    (default PPI++; e.g. ``"greg"``, ``"raking"``, ``"bayes-chain"``).

    A prompt that still fails after the backend's retries (or is answered off the scale) does not
    fail the method: its row is left out of the estimates and listed in
    ``MethodOutput.info["unanswered"]`` (item -> rows, counts), which :func:`rectify.compare`
    turns into a note on every metric of the cell. Only an item with no answered prompt at all
    raises :class:`~rectify.errors.BackendError`.

    Returns
    -------
    list of Method (``<prefix>-<strategy>`` and ``<prefix>-<strategy>+<correction>`` per strategy),
    registered unless ``register_them=False``.

    Examples
    --------
    >>> from rectify.llm.items import Item
    >>> ms = prompting_methods(object(), [Item("q", "Trust?", ["No", "Yes"])], prefix="demo-llm",
    ...                        register_them=False)
    >>> [(m.name, m.family) for m in ms]  # doctest: +NORMALIZE_WHITESPACE
    [('demo-llm-zero-shot', 'prompting'), ('demo-llm-zero-shot+ppi++', 'rectification'),
     ('demo-llm-few-shot', 'prompting'), ('demo-llm-few-shot+ppi++', 'rectification')]
    """
    by_name = {it.name: it for it in items}
    bad = [s for s in strategies if s not in ("zero-shot", "few-shot")]
    if bad or not strategies:
        raise ConfigError(f"prompting strategies {list(strategies)}: choose among 'zero-shot' and 'few-shot'")
    if selection not in ("random", "nearest"):
        raise ConfigError(f"few-shot selection {selection!r}: choose 'random' or 'nearest'")

    def make(strategy: str, rectified: str | None) -> Method:
        def source(rows, pilot, spec, item, seed):
            missing = [i for i in spec.items if i not in by_name]
            if missing:
                raise ConfigError(f"no wording (Item) given for items {missing}; define them for the prompted "
                                  "simulator (configuration: [items.NAME] tables or items_file)")
            return _prompt_probabilities(rows, pilot, spec, by_name[item], backend, strategy, k, selection, seed)

        name = f"{prefix}-{strategy}" + (f"+{rectified}" if rectified else "")
        what = f"{strategy} prompting" + (f" (k={k}, {selection} examples)" if strategy == "few-shot" else "")
        return predictive_method(name, source, (description + ": " if description else "") + what, rectified,
                                 note=f"{strategy} prompting; no interval")

    for c in corrections:
        if c not in _REGISTRY or "predicted" not in _REGISTRY[c].needs:
            raise ConfigError(f"correction {c!r} is not a registered method on the simulator's predictions; use one "
                              f"of {sorted(k for k, m in _REGISTRY.items() if 'predicted' in m.needs)}")
    out = [make(s, r) for s in strategies for r in (None, *corrections)]
    if register_them:
        for m in out:
            register(m, replace=True)
    return out


# ---------------------------------------------------------------------------------------------
# adapter: hierarchical Bayesian calibration (rectify.bayes.BayesianCalibrator; pymc, slow)
# ---------------------------------------------------------------------------------------------
def _bayes_hier_adapter() -> Callable:
    from .bayes import BayesianCalibrator  # pymc is imported lazily inside fit

    def fn(frame, pilot, spec, random_state):
        sc = np.asarray(spec.scores, float)
        cats = list(spec.scores)
        seed = int(random_state.integers(0, 2**31 - 1))
        probs, fitted = {}, {}
        for it in spec.items:
            pcols = list(spec.probabilities[it]) if it in spec.probabilities else None
            if pcols is None:  # the simulator's nearest option as its answer label
                lab = sc[nearest_option(frame[spec.predicted[it]].to_numpy(float), sc)]
                frame = frame.assign(**{f"_{it}_lab_": lab})
                pilot = pilot.join(frame[[f"_{it}_lab_"]], how="left")
            pred = pcols if pcols is not None else f"_{it}_lab_"
            pi = pilot[pilot[it].notna()]
            cal = BayesianCalibrator(it, pred, cats, groups=list(spec.groups), chains=2, draws=300, tune=300,
                                     random_state=seed).fit(pi, frame)
            fitted[it] = cal
            probs[it] = cal.predict_proba(frame).to_numpy(float)

        def one(item, fr, pi):
            r = fitted[item].poststratify(fr, level=spec.level)
            k = len(cats)
            lo, hi = r.conf_int(spec.level)
            est = np.asarray(r.estimate, float)
            names = spec.term_names()
            return [{"item": item, "term": t, "estimate": float(e), "conf_low": float(a), "conf_high": float(b),
                     "note": "posterior mean, equal-tailed credible interval"}
                    for t, e, a, b in zip(names, np.r_[est[:k], est[k]], np.r_[lo[:k], lo[k]], np.r_[hi[:k], hi[k]])]

        preds = pd.DataFrame({it: probs[it] @ sc for it in spec.items}, index=frame.index)
        return MethodOutput(estimates_by_group(one, frame, pilot, spec), predictions=preds, probabilities=probs)

    return fn


_guarded("bayes-hier", "bayesian", _bayes_hier_adapter,
         "hierarchical Bayesian calibration (cumulative logit on the LLM answer, group-varying effects; pymc)",
         needs=("predicted",), default=False)


# the fine-tuning family (lora, lora+xfit-ppi++, lora+ppi++ (in-sample)) lives in rectify.finetuning
def _finetuning_loader() -> Callable:
    from . import finetuning  # noqa: F401  (registers its methods on import)

    return finetuning.finetune_methods


try:
    _finetuning_loader()
except Exception as _err:  # a broken family must never break the registry
    for _n in ("lora", "lora+xfit-ppi++", "lora+ppi++ (in-sample)"):
        _UNAVAILABLE[_n] = f"{type(_err).__name__}: {_err}"
