"""rectify.estimators: corrections of LLM predictions against a human pilot.

Pure numeric cores over numpy arrays, each returning a :class:`rectify.Result`:

* prediction-powered inference (:mod:`.ppi`): ``ppi_mean``, ``ppi_shares``, ``ppi_quantile``,
  ``ppi_ols``, ``ppi_logistic``, ``ppi_ordinal`` with methods classical / naive / ppi / ppi++;
* calibration weighting (:mod:`.calibration`, :mod:`.survey_estimation`): raking, GREG, bounded and
  trimmed calibration, post-stratification and design-based estimation on the weights;
* scikit-learn-style classes (:mod:`.sklearn_api`), loaded on first use.
"""

from .ppi import optimal_lambda, ppi_logistic, ppi_mean, ppi_ols, ppi_ordinal, ppi_quantile, ppi_shares

_LAZY = {
    "PPILinearRegression": "sklearn_api",
    "PPILogisticRegression": "sklearn_api",
    "CalibrationWeighter": "calibration_sklearn",
    **{k: "bayes_chain" for k in ("chain_rule", "chain_rule_posterior", "chain_rule_moments", "PriorOnlyWarning",
                                  "BayesDiagnosticWarning")},
    **{k: "bayes_misclass" for k in ("misclassification", "misclassification_importance", "MisclassificationModel")},
    **{k: "bayes_hier" for k in ("hierarchical_calibration", "HierarchicalCalibrator")},
    **{k: "active" for k in ("active_mean", "active_shares", "active_ols", "active_logistic", "design_variance")},
    **{k: "crossfit" for k in ("CrossFit", "cross_fit", "make_folds", "crossppi_mean", "crossppi_shares", "crossfit_ppi")},
    **{k: "calibration" for k in ("CalibrationFit", "calibrate_weights", "poststratify", "rake", "trim_g",
                                  "trim_weights")},
    **{k: "survey_estimation" for k in ("Replicates", "SurveyDesign", "bootstrap_factors", "jkn_factors",
                                        "survey_logit", "survey_mean", "survey_ols", "survey_quantile",
                                        "survey_shares", "survey_total")},
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ppi_mean", "ppi_shares", "ppi_quantile", "ppi_ols", "ppi_logistic", "ppi_ordinal", "optimal_lambda",
    "calibrate_weights", "rake", "poststratify", "trim_weights", "trim_g", "CalibrationFit",
    "SurveyDesign", "Replicates", "survey_mean", "survey_total", "survey_shares", "survey_quantile",
    "survey_ols", "survey_logit", "jkn_factors", "bootstrap_factors",
    "PPILinearRegression", "PPILogisticRegression", "CalibrationWeighter",
    "chain_rule", "chain_rule_posterior", "chain_rule_moments", "misclassification", "misclassification_importance",
    "MisclassificationModel", "hierarchical_calibration", "HierarchicalCalibrator", "PriorOnlyWarning",
    "BayesDiagnosticWarning", "CrossFit", "cross_fit", "make_folds", "crossppi_mean", "crossppi_shares", "crossfit_ppi",
    "active_mean", "active_shares", "active_ols", "active_logistic", "design_variance",
]
