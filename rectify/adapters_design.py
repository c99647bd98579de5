"""Design-based versions of the adapters, for pilots drawn with unequal inclusion probabilities.

When a cell of :func:`rectify.compare` draws its pilot with :func:`rectify.design_pilot` (a ``"neyman"``
or ``"active"`` design), ``spec.design`` names the pilot's inclusion-probability column (and its stratum
column), and the adapters of ``classical``, ``ppi++``, ``greg`` and ``raking`` hand over to the functions
here:

* ``classical`` -- the pilot's answers alone, inverse-probability weighted: the design-based estimator of
  :mod:`rectify.estimators.active` with no LLM prediction (working model a fitted constant, i.e. a
  Hájek-type mean; exactly the sample mean under simple random sampling); the formula's coefficients
  are the census OLS coefficients with the frame's ``X'X`` (``active_ols`` with no prediction);
* ``ppi++`` -- :func:`rectify.estimators.active.active_mean` / ``active_shares`` / ``active_ols``: the
  frame sum of the tuned working prediction plus the inverse-probability-weighted correction;
* ``greg`` / ``raking`` -- :func:`rectify.weighting.calibrate` with ``design_weights = 1 / pi`` to the frame's
  count and total of the LLM prediction (and, for raking, the grouping margins): a model formula with an
  intercept, so the weights also sum to the frame size -- the sum of ``1 / pi`` over a designed pilot is
  random, and calibrating the prediction's total alone would tilt the weights (its linearized variance
  treats the pilot as drawn with replacement: slightly conservative here).

Missing answers: a pilot row without an answer to an item is left out of that item's estimates, and
the inclusion probabilities of the answering rows are multiplied by the response rate (per stratum for
a stratified design): answers missing at random within strata, as everywhere in the comparison.

Subgroups (domains): the design variance of a domain is estimated with the Poisson formula
``sum (1 - pi) u^2 / pi^2`` over the domain's pilot rows -- a domain's share of a fixed-size or stratified
pilot is random, and with the domain's residuals centred by the fitted constant that formula is the
fixed-size one with the out-of-domain zeros included, up to a factor ``n / (n - 1)``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> adjusted_pi(pd.DataFrame({"_pi_": [0.5, 0.5, 0.25], "y": [1.0, np.nan, 2.0]}), "y",
...             {"pi": "_pi_", "strata": None}).tolist()
[0.3333333333333333, 0.16666666666666666]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import (ALL, MethodOutput, Spec, _coef_table, _result_rows, _scale_columns, _verb_formula,  # noqa: F401
                       estimates_by_group, simulator_probabilities)

__all__ = ["adjusted_pi", "design_rectified", "design_calibration"]


def adjusted_pi(pilot: pd.DataFrame, answered, design) -> pd.Series:
    """Inclusion probabilities of the pilot rows that answered, times the response rate (per stratum).

    ``answered``: an item column of ``pilot`` (rows with an answer) or a boolean mask.

    Examples
    --------
    >>> p = pd.DataFrame({"pi": [0.2, 0.2, 0.5, 0.5], "s": [0, 0, 1, 1], "y": [1.0, None, 2.0, 3.0]})
    >>> adjusted_pi(p, "y", {"pi": "pi", "strata": "s"}).tolist()
    [0.1, 0.5, 0.5]
    """
    ok = pilot[answered].notna().to_numpy() if isinstance(answered, str) else np.asarray(answered, bool)
    pi = pilot[design["pi"]].to_numpy(float)
    if design.get("strata"):
        codes = pd.factorize(pilot[design["strata"]])[0]
        rate = np.bincount(codes, weights=ok, minlength=codes.max() + 1) / np.bincount(codes)
        pi = pi * rate[codes]
    else:
        pi = pi * ok.mean()
    return pd.Series(pi[ok], index=pilot.index[ok])


def _sampling(design, pilot_part: pd.DataFrame, domain: bool) -> dict:
    """The design keywords of the active cores for these pilot rows (a domain: the Poisson formula)."""
    if domain:
        return {"sampling": "poisson"}
    if design.get("strata"):
        return {"sampling": "stratified", "strata": pilot_part[design["strata"]].to_numpy()}
    return {"sampling": design["sampling"]}


def design_rectified(frame: pd.DataFrame, pilot: pd.DataFrame, spec: Spec, use_llm: bool) -> MethodOutput:
    """``ppi++`` (``use_llm=True``) or ``classical`` on a designed pilot (see the module notes).

    Examples
    --------
    >>> import rectify
    >>> from rectify.comparison import make_spec
    >>> from rectify.datasets import load_misinfo
    >>> df = load_misinfo().dropna(subset=["f01"]); spec = make_spec(df, ["f01"])
    >>> pilot = rectify.design_pilot(df, 100, "active", error="f01_llm", random_state=0, column="_pi_")
    >>> from dataclasses import replace
    >>> sp = replace(spec, design={"name": "active", "sampling": "fixed", "pi": "_pi_", "strata": None})
    >>> out = design_rectified(df.drop(columns=["f01"]), pilot, sp, use_llm=True)
    >>> est = float(out.estimates.query("term == 'mean'")["estimate"].iloc[0])
    >>> est == float(rectify.active_mean("f01", pilot, df, "f01_llm").estimate[0]), round(est, 3)
    (True, 2.196)
    """
    from .estimators.active import active_mean, active_shares

    design = spec.design
    cats = list(spec.scores)
    adj = {it: adjusted_pi(pilot, it, design) for it in spec.items}
    n_frame = len(frame)

    def one(item, fr, part):
        pi = adj[item].loc[part.index].to_numpy(float)
        kw = _sampling(design, part, len(fr) < n_frame)
        y = part[item].to_numpy(float)
        if use_llm:
            col = spec.predicted[item]
            f, f_pop = part[col].to_numpy(float), fr[col].to_numpy(float)
            P, P_pop = simulator_probabilities(part, spec, item), simulator_probabilities(fr, spec, item)
        else:
            f, f_pop = np.zeros(len(part)), np.zeros(len(fr))
            P, P_pop = np.zeros((len(part), len(cats))), np.zeros((len(fr), len(cats)))
        s = active_shares(y, P, P_pop, pi, categories=cats, level=spec.level, **kw)
        m = active_mean(y, f, f_pop, pi, level=spec.level, **kw)
        what = "design-based PPI++ (active inference, tuned)" if use_llm else "pilot answers only, weighted by 1/pi"
        return _result_rows(item, spec, s, m, f"{what}; design {design['name']}")

    coefs = None
    if spec.formula:
        coefs = _design_ols(frame, pilot, spec, use_llm)
    return MethodOutput(estimates_by_group(one, frame, pilot, spec), coefficients=coefs)


def _design_ols(frame: pd.DataFrame, pilot: pd.DataFrame, spec: Spec, use_llm: bool) -> pd.DataFrame:
    """Census OLS coefficients of the formula from the designed pilot (``active_ols``)."""
    from .estimators.active import active_ols
    from .formula import build_design

    p = pilot.assign(_y_=_scale_columns(pilot, spec, "human"))
    f = frame
    if use_llm:
        p = p.assign(_yhat_=_scale_columns(pilot, spec, "sim"))
        f = frame.assign(_yhat_=_scale_columns(frame, spec, "sim"))
    ok = p["_y_"].notna() & (p["_yhat_"].notna() if use_llm else True)
    pi = adjusted_pi(p, ok.to_numpy(), spec.design).to_numpy(float)
    p = p[ok]
    mf = build_design(_verb_formula(spec), p, f)
    F = p["_yhat_"].to_numpy(float) if use_llm else np.zeros(len(p))
    Fp = f["_yhat_"].to_numpy(float) if use_llm else np.zeros(len(f))
    r = active_ols(mf.X, np.asarray(mf.y, float), F, mf.X_pop, Fp, pi, level=spec.level, terms=list(mf.terms),
                   **_sampling(spec.design, p, False))
    return _coef_table(r, spec.level)


def _count_formula(variables, numeric: str) -> str:
    """``~ numeric + C(group) ...``: the calibration model with an intercept (the frame's count).

    Examples
    --------
    >>> _count_formula(["q_llm", "region"], "q_llm")
    '~ `q_llm` + C(`region`)'
    """
    return "~ " + " + ".join(f"`{v}`" if v == numeric else f"C(`{v}`)" for v in variables)


def design_calibration(frame: pd.DataFrame, pilot: pd.DataFrame, spec: Spec, how: str, aux) -> MethodOutput:
    """``greg`` / ``raking`` on a designed pilot: :func:`rectify.weighting.calibrate` with ``1 / pi``.

    ``aux(frame_part, pilot_part, prediction column)`` lists the calibration variables (the prediction,
    then categorical margins); the calibration also matches the frame's count (see the module notes).

    Examples
    --------
    >>> import rectify
    >>> from dataclasses import replace
    >>> from rectify.comparison import make_spec
    >>> from rectify.datasets import load_misinfo
    >>> df = load_misinfo().dropna(subset=["f01"]); spec = make_spec(df, ["f01"])
    >>> pilot = rectify.design_pilot(df, 100, "active", error="f01_llm", random_state=0, column="_pi_")
    >>> sp = replace(spec, design={"name": "active", "sampling": "fixed", "pi": "_pi_", "strata": None})
    >>> out = design_calibration(df.drop(columns=["f01"]), pilot, sp, "greg", lambda f, p, c: [c])
    >>> round(float(out.estimates.query("term == 'mean'")["estimate"].iloc[0]), 3)
    2.193
    """
    from .weighting import calibrate

    design = spec.design
    cats = list(spec.scores)
    adj = {it: adjusted_pi(pilot, it, design) for it in spec.items}
    method = "linear" if how == "greg" else "raking"

    def one(item, fr, part):
        col = spec.predicted[item]
        w = 1.0 / adj[item].loc[part.index].to_numpy(float)
        cw = calibrate(part, fr, formula=_count_formula(aux(fr, part, col), col), method=method, design_weights=w)
        return _result_rows(item, spec, cw.shares(item, levels=cats), cw.mean(item),
                            f"calibration ({how}) of the design weights 1/pi; design {design['name']}")

    coefs = None
    if spec.formula:
        p = pilot.assign(_y_=_scale_columns(pilot, spec, "human"), _yhat_=_scale_columns(pilot, spec, "sim"))
        ok = (p["_y_"].notna() & p["_yhat_"].notna()).to_numpy()
        w = 1.0 / adjusted_pi(p, ok, design).to_numpy(float)
        p = p[ok]
        f = frame.assign(_yhat_=_scale_columns(frame, spec, "sim"))
        cw = calibrate(p, f, formula=_count_formula(aux(f, p, "_yhat_"), "_yhat_"), method=method, design_weights=w)
        coefs = _coef_table(cw.ols(_verb_formula(spec)), spec.level)
    return MethodOutput(estimates_by_group(one, frame, pilot, spec), coefficients=coefs)
