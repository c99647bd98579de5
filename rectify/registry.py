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

This module holds the contract (:class:`Spec`, :class:`MethodOutput`, :class:`Method`), the registry and
the helpers the adapters share; the adapters live in one module per family group
(:mod:`rectify.adapters_basic`, :mod:`rectify.adapters_calibration`, :mod:`rectify.adapters_bayesian`,
:mod:`rectify.adapters_covariates`, :mod:`rectify.adapters_prompting`) and register themselves when this
module is imported; their public functions stay importable from here.

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
    estimand : {None, "frame", "superpopulation"}
        Passed to the estimators (:mod:`rectify.estimand`; ``None``: their default, the frame).

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
    estimand: str | None = None
    #: the cell's pilot design (:mod:`rectify.compare_designs`): ``None`` for a simple random pilot, else a dict
    #: ``{"name", "design", "sampling", "pi", "strata"}`` naming the pilot's probability and stratum columns
    #: (left out of ``repr`` so that checkpoints fingerprinted before designs existed still resume)
    design: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

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
    design_support : {"no", "weights", "ignores"}
        How the method treats a pilot drawn with unequal inclusion probabilities
        (:func:`rectify.design_pilot`, ``spec.design`` set): ``"weights"`` -- it reads the pilot's
        probabilities (design-based estimators); ``"ignores"`` -- its estimate does not use the pilot's
        answers, so the design cannot bias it; ``"no"`` -- not run under such a design
        (:func:`rectify.compare` reports it as not run, with ``design_note`` as the reason).
    design_note : str
        Why (shown in the comparison's ``not_run`` table and report).
    """

    name: str
    family: str
    fn: Callable[..., MethodOutput]
    description: str = ""
    needs: tuple = ()
    default: bool = True
    design_support: str = "no"
    design_note: str = ""

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
             needs: tuple = (), default: bool = True, design_support: str = "no", design_note: str = "") -> None:
    """Register ``name`` if ``loader()`` (which imports the family's module) works, else record why."""
    try:
        fn = loader()
    except Exception as err:  # a missing or unfinished family must never break the registry
        _UNAVAILABLE[name] = f"{type(err).__name__}: {err}"
        return
    _REGISTRY[name] = Method(name, family, fn, description, needs, default, design_support, design_note)


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
# the adapters, family by family (each module registers its methods on import, in this order)
# ---------------------------------------------------------------------------------------------
from . import adapters_basic, adapters_calibration, adapters_bayesian, adapters_covariates  # noqa: E402,F401
from . import adapters_prompting  # noqa: E402,F401

#: names that lived here before the adapters moved to their own modules (still importable from here)
_MOVED = {"_classical": "adapters_basic", "_simulator": "adapters_basic", "_ppi": "adapters_basic",
          "_calibration_adapter": "adapters_calibration", "_bayes_chain_adapter": "adapters_bayesian",
          "_bayes_hier_adapter": "adapters_bayesian", "_covariate_probs": "adapters_covariates",
          "_covariates_adapter": "adapters_covariates", "_crossfit_adapter": "adapters_covariates",
          "predictive_method": "adapters_prompting", "stored_source": "adapters_prompting",
          "prompting_methods": "adapters_prompting", "_prompt_probabilities": "adapters_prompting"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"{__name__.rsplit('.', 1)[0]}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# the fine-tuning family (lora, lora+xfit-ppi++, lora+ppi++ (in-sample)) lives in rectify.finetuning
def _finetuning_loader() -> Callable:
    from . import finetuning  # noqa: F401  (registers its methods on import)

    return finetuning.finetune_methods


try:
    _finetuning_loader()
except Exception as _err:  # a broken family must never break the registry
    for _n in ("lora", "lora+xfit-ppi++", "lora+ppi++ (in-sample)"):
        _UNAVAILABLE[_n] = f"{type(_err).__name__}: {_err}"
