"""Formula verbs for pilots drawn with known inclusion probabilities (issue 15).

``active_mean``, ``active_shares``, ``active_ols`` and ``active_logit`` take a pilot from :func:`rectify.design_pilot`
(or any pilot with an inclusion-probability column) and the frame it was drawn from, and call the cores
of :mod:`rectify.estimators.active`. An active pilot is by definition inside the frame and the target
is the frame's quantity: the pilot's index labels must be frame rows, and the frame must be the one
the probabilities were computed on (same size). The design (probability column, Poisson / fixed-size /
stratified) is read from ``pilot.attrs["rectify_design"]`` where :func:`rectify.design_pilot` recorded
it, or given with ``pi=`` and ``sampling=``.

Examples
--------
>>> import rectify
>>> from rectify.datasets import load_anes96_llm
>>> a = load_anes96_llm()
>>> probs = [f"self_lr_p{k}" for k in range(1, 8)]
>>> pilot = rectify.design_pilot(a, 150, "active", probs=probs, random_state=7)
>>> r = rectify.active_mean("self_lr", pilot, a, predicted="self_lr_llm")
>>> r.method, r.diagnostics["sampling"], r.n_pilot, r.n_population
('active', 'fixed', 150, 944)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .result import Result

__all__ = ["active_mean", "active_shares", "active_ols", "active_logit"]


def _design(pilot: pd.DataFrame, frame: pd.DataFrame, pi: Any, sampling: Any, strata: Any):
    """Inclusion probabilities, sampling kind and strata of the pilot rows; checks the pilot is in the frame."""
    for name, df in (("pilot", pilot), ("frame", frame)):
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"argument '{name}' must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise InputError(f"argument '{name}' is empty")
    rec = pilot.attrs.get("rectify_design") or {}
    col = pi if pi is not None else rec.get("pi")
    if col is None:
        raise InputError("the pilot carries no design: pass pi=<its inclusion-probability column> and sampling=... "
                         "(or draw it with rectify.design_pilot, which records both)")
    if rec.get("N") is not None and rec["N"] != len(frame):
        raise InputError(f"argument 'frame' has {len(frame)} rows but the pilot's probabilities were computed on "
                         f"{rec['N']}: pass the frame the pilot was drawn from (unfiltered)")
    if not frame.index.is_unique:
        raise InputError("argument 'frame' has duplicated index labels; the pilot's rows are found by label")
    outside = ~pilot.index.isin(frame.index)
    if outside.any():
        raise InputError(f"{int(outside.sum())} pilot row(s) (index {list(pilot.index[outside][:3])}) are not frame "
                         f"rows: an active pilot is drawn from the frame and keeps its index labels")
    if isinstance(col, str):
        if col not in pilot.columns:
            raise InputError(f"argument 'pi' names column {col!r}, which the pilot lacks")
        p = pilot[col].to_numpy(dtype=float)
    else:
        p = np.asarray(col, dtype=float)
    kind = sampling if sampling is not None else rec.get("sampling")
    if kind is None:
        raise InputError("argument 'sampling' is required when the pilot carries no design: 'poisson', 'fixed' or "
                         "'stratified'")
    st = strata if strata is not None else rec.get("strata")
    if kind == "fixed" and st is not None:
        kind = "stratified"
    if isinstance(st, str):
        if st not in pilot.columns:
            raise InputError(f"argument 'strata' names column {st!r}, which the pilot lacks")
        st = pilot[st].to_numpy()
    return p, kind, st, rec.get("design")


def _answers(pilot: pd.DataFrame, col: str, numeric: bool = True) -> np.ndarray:
    if not isinstance(col, str) or col not in pilot.columns:
        raise InputError(f"argument 'y' must name a column of the pilot, got {col!r}")
    s = pilot[col]
    if s.isna().any():
        raise InputError(f"column {col!r} of the pilot has {int(s.isna().sum())} missing answer(s); in a probability "
                         f"pilot a non-response is not ignorable: adjust for it (or follow it up) before estimating")
    if numeric and not pd.api.types.is_numeric_dtype(s):
        raise InputError(f"column {col!r} of the pilot must be numeric (got {s.dtype}); recode the answers as numbers")
    return s.to_numpy(dtype=float) if numeric else s.to_numpy()


def _predictions(df: pd.DataFrame, cols: Any, where: str) -> np.ndarray:
    names = [cols] if isinstance(cols, str) else list(cols)
    absent = [c for c in names if c not in df.columns]
    if absent:
        raise InputError(f"argument 'predicted' names columns not in the {where}: {absent}")
    out = df[names].to_numpy(dtype=float)
    if not np.isfinite(out).all():
        raise InputError(f"column(s) {names} of the {where} have missing or infinite LLM predictions; every frame "
                         f"row needs one (simulate the missing rows)")
    return out[:, 0] if isinstance(cols, str) else out


def active_mean(y: str, pilot: pd.DataFrame, frame: pd.DataFrame, predicted: str, *, pi: Any = None,
                sampling: str | None = None, strata: Any = None, lam: Any = "tuned", level: float = 0.95) -> Result:
    """Frame mean of a numeric answer from a pilot drawn with known inclusion probabilities.

    Parameters
    ----------
    y : str
        Column of human answers in ``pilot``.
    pilot : DataFrame
        The pilot rows (frame index labels kept), e.g. from :func:`rectify.design_pilot`.
    frame : DataFrame
        The frame the pilot was drawn from, with the LLM's predictions for every row.
    predicted : str
        Column of the LLM's predictions (in both).
    pi : str or array-like, optional
        Inclusion probabilities (default: the column recorded by ``design_pilot``).
    sampling : {"poisson", "fixed", "stratified"}, optional
        Default: recorded by ``design_pilot``.
    strata : str or array-like, optional
        Stratum of each pilot row (``"stratified"``; default: recorded).
    lam : "tuned" or float
        See :func:`rectify.estimators.active.active_mean`.
    level : float

    Returns
    -------
    Result

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo
    >>> df = load_misinfo().dropna(subset=["f01"])
    >>> pilot = rectify.design_pilot(df, 100, "srs", random_state=2)
    >>> round(float(rectify.active_mean("f01", pilot, df, "f01_llm").std_error[0]), 3)
    0.096
    """
    from .estimators.active import active_mean as core

    p, kind, st, design = _design(pilot, frame, pi, sampling, strata)
    r = core(_answers(pilot, y), _predictions(pilot, predicted, "pilot"), _predictions(frame, predicted, "frame"), p,
             sampling=kind, strata=st, lam=lam, level=level, terms=[f"mean({y})"])
    return _recorded(r, design)


def active_shares(item: str, pilot: pd.DataFrame, frame: pd.DataFrame, predicted: Sequence[str], *,
                  categories: Sequence | None = None, pi: Any = None, sampling: str | None = None, strata: Any = None,
                  lam: Any = "tuned", level: float = 0.95) -> Result:
    """Frame option shares of an item; ``predicted`` lists the LLM's option-probability columns.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_gss_spending_llm
    >>> g = load_gss_spending_llm().dropna(subset=["natarms"])
    >>> probs = [f"natarms_zs_p{k}" for k in (1, 2, 3)]
    >>> pilot = rectify.design_pilot(g, 200, "active", probs=probs, random_state=1, sampling="poisson")
    >>> r = rectify.active_shares("natarms", pilot, g, probs, categories=[1.0, 2.0, 3.0])
    >>> round(float(r.estimate.sum()), 10), len(r.terms)
    (1.0, 3)
    """
    from .estimators.active import active_shares as core

    if isinstance(predicted, str):
        raise InputError("argument 'predicted' must list the LLM's option-probability columns, one per category")
    p, kind, st, design = _design(pilot, frame, pi, sampling, strata)
    r = core(_answers(pilot, item, numeric=False), _predictions(pilot, predicted, "pilot"),
             _predictions(frame, predicted, "frame"), p, categories=categories, sampling=kind, strata=st, lam=lam,
             level=level)
    return _recorded(r, design)


def active_ols(formula: str, pilot: pd.DataFrame, frame: pd.DataFrame, predicted: str, *, pi: Any = None,
               sampling: str | None = None, strata: Any = None, lam: Any = "tuned", level: float = 0.95) -> Result:
    """Census OLS coefficients of the frame; the formula's spec is learned on the pilot, replayed on the frame.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_anes96_llm
    >>> a = load_anes96_llm()
    >>> pilot = rectify.design_pilot(a, 200, "srs", random_state=4)
    >>> rectify.active_ols("self_lr ~ age + educ", pilot, a, "self_lr_llm").terms
    ('Intercept', 'age', 'educ')
    """
    return _regression("active_ols", formula, pilot, frame, predicted, pi, sampling, strata, lam, level)


def active_logit(formula: str, pilot: pd.DataFrame, frame: pd.DataFrame, predicted: str, *, pi: Any = None,
                 sampling: str | None = None, strata: Any = None, lam: Any = "tuned", level: float = 0.95) -> Result:
    """Census logistic-regression coefficients of a 0/1 answer; ``predicted`` holds probabilities or 0/1.

    Arguments as in :func:`active_ols`; the answer must be coded 0/1.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_anes96_llm
    >>> a = load_anes96_llm()
    >>> a["right"] = (a["self_lr"] >= 5).astype(float)
    >>> a["right_llm"] = a[[f"self_lr_p{k}" for k in (5, 6, 7)]].sum(axis=1)
    >>> pilot = rectify.design_pilot(a, 300, "srs", random_state=4)
    >>> rectify.active_logit("right ~ age", pilot, a, "right_llm").estimand
    'logistic'
    """
    return _regression("active_logistic", formula, pilot, frame, predicted, pi, sampling, strata, lam, level)


def _regression(core_name, formula, pilot, frame, predicted, pi, sampling, strata, lam, level) -> Result:
    from .estimators import active as cores
    from .formula import build_design

    p, kind, st, design = _design(pilot, frame, pi, sampling, strata)
    mf = build_design(formula, pilot, frame)
    y = np.asarray(mf.y, dtype=float)
    r = getattr(cores, core_name)(mf.X, y, _predictions(pilot, predicted, "pilot"), mf.X_pop,
                                  _predictions(frame, predicted, "frame"), p, sampling=kind, strata=st, lam=lam,
                                  level=level, terms=list(mf.terms))
    return _recorded(r, design)


def _recorded(r: Result, design: str | None) -> Result:
    """The result with the pilot's design name (``design_pilot``'s record) in its diagnostics."""
    from dataclasses import replace

    return replace(r, diagnostics={**r.diagnostics, "design": design})
