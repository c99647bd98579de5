"""Adapters of the calibration family: ``greg`` and ``raking`` (:func:`rectify.weighting.calibrate`
of the pilot on the LLM prediction).

Examples
--------
>>> from rectify.registry import get
>>> get("greg").family
'calibration'
"""

from __future__ import annotations

from typing import Callable

from .registry import (MethodOutput, _coef_table, _guarded, _result_rows, _verb_formula, _with_response,
                       estimates_by_group)



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

        if spec.design:  # a pilot drawn with unequal inclusion probabilities: design weights 1/pi
            from .adapters_design import design_calibration
            return design_calibration(frame, pilot, spec, how, aux)

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
         needs=("predicted",), design_support="weights", design_note="calibration of the design weights 1/pi")
_guarded("raking", "calibration", lambda: _calibration_adapter("raking"),
         "raking of the pilot on the LLM prediction and the grouping margins", needs=("predicted",),
         design_support="weights", design_note="raking of the design weights 1/pi")
