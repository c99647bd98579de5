"""Adapters of the Bayesian family: ``bayes-chain`` (conjugate chain rule) and ``bayes-hier``
(:class:`rectify.bayes.BayesianCalibrator`, pymc; slow, not in the default set).

Examples
--------
>>> from rectify.registry import available
>>> available()["bayes-chain"]
'bayesian'
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .registry import MethodOutput, _guarded, estimates_by_group, nearest_option, simulator_probabilities



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
         needs=("predicted",),
         design_note="its posterior of P(y | LLM answer) counts the pilot's answers unweighted; a pilot chosen "
                     "on the LLM's uncertainty is not representative within an LLM answer")


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
            probs[it] = np.asarray(cal.predict_proba(frame), float)

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
         needs=("predicted",), default=False,
         design_note="its likelihood counts the pilot's answers unweighted; a pilot chosen on the LLM's uncertainty "
                     "is not a random sample given the model's covariates")
