"""Adapters of the pilot-only, naive-simulator and rectification families: ``classical``,
``simulator`` and ``ppi++`` (registered in :mod:`rectify.registry` on import).

Examples
--------
>>> from rectify.registry import get
>>> get("ppi++").fn is _ppi
True
"""

from __future__ import annotations

import pandas as pd

from .errors import EstimationError, InputError
from .estimand import core_keywords
from .registry import (Method, MethodOutput, _coef_table, _result_rows, _scale_columns, _verb_formula,
                       _with_response, estimates_by_group, estimates_from_probabilities, register,
                       simulator_probabilities)



# ---------------------------------------------------------------------------------------------
# adapters: pilot only, simulator, PPI++
# ---------------------------------------------------------------------------------------------
def _classical(frame, pilot, spec, random_state):
    from .estimators.ppi import ppi_mean, ppi_shares
    from .verbs import ols

    if spec.design:  # a pilot drawn with unequal inclusion probabilities: weighted by 1/pi
        from .adapters_design import design_rectified
        return design_rectified(frame, pilot, spec, use_llm=False)
    cats = list(spec.scores)

    def one(item, fr, pi):
        y = pi[item].to_numpy(float)
        kw = core_keywords(fr, pi, spec.estimand)  # the estimand, and the pilot's place in the frame
        s = ppi_shares(y, None, None, "classical", categories=cats, level=spec.level, **kw)
        m = ppi_mean(y, None, None, "classical", level=spec.level, **kw)
        return _result_rows(item, spec, s, m, "pilot answers only")

    coefs = None
    if spec.formula:
        p = pilot.assign(_y_=_scale_columns(pilot, spec, "human")).dropna(subset=["_y_"])
        coefs = _coef_table(ols(_verb_formula(spec), p, None, method="classical", level=spec.level,
                                estimand=spec.estimand), spec.level)
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

    if spec.design:  # a pilot drawn with unequal inclusion probabilities: active inference
        from .adapters_design import design_rectified
        return design_rectified(frame, pilot, spec, use_llm=True)
    cats = list(spec.scores)

    def one(item, fr, pi):
        y = pi[item].to_numpy(float)
        col = spec.predicted[item]
        kw = core_keywords(fr, pi, spec.estimand)  # the estimand, and the pilot's place in the frame
        s = ppi_shares(y, simulator_probabilities(pi, spec, item), simulator_probabilities(fr, spec, item),
                       "ppi++", categories=cats, level=spec.level, **kw)
        m = ppi_mean(y, pi[col].to_numpy(float), fr[col].to_numpy(float), "ppi++", level=spec.level, **kw)
        return _result_rows(item, spec, s, m, "PPI++ (tuned lambda)")

    coefs, info = None, {}
    if spec.formula:
        p, f = _with_response(pilot, frame, spec)
        try:
            coefs = _coef_table(ols(_verb_formula(spec), p, f, predicted="_yhat_", method="ppi++", level=spec.level,
                                    estimand=spec.estimand), spec.level)
        except (InputError, EstimationError) as err:  # e.g. too few pilot rows with the simulator's answers
            if len(p) > 2 * len(spec.term_names()) + 20:
                raise
            info["note"] = f"structural axis not estimable: {err}"
    return MethodOutput(estimates_by_group(one, frame, pilot, spec), coefficients=coefs, info=info)


register(Method("classical", "pilot only", _classical, "the pilot's human answers alone (design-based)",
                design_support="weights", design_note="the pilot's answers weighted by 1/pi (Hajek-type mean)"))
register(Method("simulator", "prompting", _simulator,
                "the simulator's answers at face value (naive)", needs=("predicted",), design_support="ignores",
                design_note="its estimate averages the LLM's answers over the frame and never reads the pilot"))
register(Method("ppi++", "rectification", _ppi, "PPI++ on the simulator's answers (tuned lambda)",
                needs=("predicted",), design_support="weights",
                design_note="design-based PPI++ (active inference with the pilot's 1/pi)"))
