"""rectify: make LLM-simulated survey answers statistically trustworthy with a small human pilot.

The user-facing verbs take a pilot (human answers) and a population frame (the LLM's predictions for
everyone) and return a :class:`Result`::

    import rectify
    r = rectify.mean("trust", pilot, frame, predicted="trust_llm")          # PPI++ by default
    rectify.etable([rectify.mean(..., method=m) for m in ("classical", "naive", "ppi", "ppi++")])

Heavy dependencies (torch, transformers, peft, pymc, openai) load only inside the functions that need
them: ``import rectify`` stays light.
"""

from . import errors
from .errors import (
    ConvergenceError,
    EstimationError,
    InputError,
    MissingCovariateError,
    RectifyError,
    UnseenLevelError,
)

__version__ = "0.1.0"

_LAZY = {"result", "datasets", "fidelity", "weighting", "bayes", "comparison", "registry", "planning", "report", "demo", "llm", "conclusions", "config", "finetuning",
         "estimators"}


_LAZY_ATTRS = {
    "Result": "result", "etable": "result",  # numpy loads with them, on first use
    "mean": "verbs", "shares": "verbs", "quantile": "verbs", "ols": "verbs", "logit": "verbs",
    "ordinal": "verbs", "calibrate": "weighting", "CalibratedWeights": "weighting",
    "compare": "comparison", "Comparison": "comparison", "write_report": "report",
    "effective_sample_size": "planning", "humans_needed": "planning", "plan_from_pilot": "planning",
    "fidelity_report": "fidelity", "group_summary": "fidelity",
    "Item": "llm.items", "Scale": "llm.items",
    "bayes_shares": "bayes", "BayesianCalibrator": "bayes",
    "conclusions_text": "conclusions",
    "missingness_diagnostic": "missingness",
    "design_pilot": "pilot_design", "llm_uncertainty": "pilot_design", "fit_error_model": "pilot_design",
    "active_mean": "active", "active_shares": "active", "active_ols": "active", "active_logit": "active",
    "predict_widths": "design_planning", "calibrated_sigma": "design_planning", "cheapest_split": "budget",
}


def __getattr__(name):  # submodules load on first use, so ``import rectify`` stays fast
    import importlib

    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_ATTRS[name]}"), name)
    raise AttributeError(f"module 'rectify' has no attribute {name!r}")

__all__ = [
    "Result",
    "etable",
    "mean",
    "shares",
    "quantile",
    "ols",
    "logit",
    "ordinal",
    "calibrate",
    "CalibratedWeights",
    "compare",
    "Comparison",
    "write_report",
    "effective_sample_size",
    "humans_needed",
    "plan_from_pilot",
    "fidelity_report",
    "group_summary",
    "Item",
    "Scale",
    "bayes_shares",
    "BayesianCalibrator",
    "conclusions_text",
    "missingness_diagnostic",
    "design_pilot",
    "llm_uncertainty",
    "fit_error_model",
    "active_mean",
    "active_shares",
    "active_ols",
    "active_logit",
    "predict_widths",
    "calibrated_sigma",
    "cheapest_split",
    "datasets",
    "errors",
    "RectifyError",
    "InputError",
    "UnseenLevelError",
    "MissingCovariateError",
    "ConvergenceError",
    "EstimationError",
]
