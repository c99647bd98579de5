"""Adapters of the covariates family: an ordinal classifier on the covariates (``covariates``) and
that classifier cross-fitted on the pilot and rectified (``covariates+ppi``).

Examples
--------
>>> from rectify.registry import get
>>> get("covariates").needs
('covariates',)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .registry import MethodOutput, _guarded, crossppi_rows, estimates_by_group, estimates_from_probabilities



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
         "ordinal (cumulative-logit) classifier on the covariates, fitted on the pilot", needs=("covariates",),
         design_note="the classifier is fitted on the pilot unweighted and its average prediction is the estimate: "
                     "a pilot chosen on the LLM's uncertainty would bias it")


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
         needs=("covariates",), default=False,
         design_note="cross-prediction PPI averages the pilot's residuals unweighted (no 1/pi)")
