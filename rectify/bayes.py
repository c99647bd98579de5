"""Bayesian calibration over data frames: thin verbs and a class over ``rectify.estimators`` cores.

* :func:`bayes_shares` -- population option shares and mean score of an item by the conjugate
  chain rule (``method="chain"``, numpy only, the default) or the misclassification model
  (``method="misclass"``, for a population whose answer prevalence differs from the pilot's);
* :class:`BayesianCalibrator` -- the hierarchical calibration model (pymc, extra ``bayes``):
  ``fit(pilot)``, ``poststratify(population)``, ``predict_proba(frame)``.

Answers are given as option labels (``categories`` lists them in order); the LLM's answer is a
column of labels or a list of option-probability columns (reduced to the most likely option, see
:mod:`rectify.estimators.bayes_chain`). Labels outside ``categories`` and missing values are refused
with an error naming the column.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sklearn.base import BaseEstimator
from ._checks import as_label
from .errors import InputError
from .formula import build_design, check_columns, replay_design
from .result import Result

__all__ = ["bayes_shares", "BayesianCalibrator"]


def _categories(categories) -> list:
    if categories is None:
        raise InputError("argument 'categories' is required: the item's options in order, e.g. [1, 2, 3, 4, 5]")
    cats = list(categories)
    if len(cats) < 2 or len(set(cats)) != len(cats):
        raise InputError(f"argument 'categories' must list at least two distinct options, got {cats!r}")
    return cats


def _codes(df: pd.DataFrame, col: str, cats: list, frame: str) -> np.ndarray:
    from rectify.estimators.bayes_chain import label_codes

    check_columns(df, [col], frame)
    return label_codes(df[col], cats, col, frame)


def _llm(df: pd.DataFrame, predicted, cats: list, frame: str) -> np.ndarray:
    if predicted is None:
        raise InputError("argument 'predicted' is required: a column of LLM answers or a list of "
                         "option-probability columns")
    if isinstance(predicted, str):
        return _codes(df, predicted, cats, frame)
    cols = list(predicted)
    if len(cols) != len(cats):
        raise InputError(f"argument 'predicted' lists {len(cols)} probability columns for {len(cats)} options")
    check_columns(df, cols, frame)
    return df[cols].to_numpy(dtype=float)


def _frame(df, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"argument '{name}' must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise InputError(f"argument '{name}' is empty")
    return df


def _relabel(r: Result, item: str, cats: list) -> Result:
    names = {str(i + 1): f"{item}={c}" for i, c in enumerate(cats)}
    terms = tuple(names.get(t, f"mean({item})" if t == "mean" else t) for t in r.terms)
    return replace(r, terms=terms)


def bayes_shares(item: str, pilot: pd.DataFrame, population: pd.DataFrame, predicted, *,
                 categories: Sequence, method: str = "chain", scores: Sequence | None = None,
                 strata: str | None = None, estimand: str = "both", level: float = 0.95,
                 random_state: Any = None, **options) -> Result:
    """Posterior of the population option shares and mean score of an item.

    Parameters
    ----------
    item : str
        Column of human answers in the pilot.
    pilot, population : DataFrame
        The pilot (human and LLM answers) and the frame (LLM answers for everyone).
    predicted : str or list of str
        Column of LLM answers (option labels) or the option-probability columns, in option order.
    categories : sequence
        The item's options in order.
    method : {"chain", "misclass"}
        Chain rule (transports ``P(y | LLM answer)``) or misclassification model (transports
        ``P(LLM answer | y)``; use it when the pilot's prevalence differs from the population's).
    scores : sequence, optional
        Numeric score of each option (default: the categories when numeric, else ``1 .. K``).
    strata : str, optional
        Column of strata for the chain rule (per-stratum chain rule, population-weighted).
    estimand, level, random_state
        As in the cores; ``**options`` go to them (priors, draws, sampler...).

    Returns
    -------
    Result
        Terms ``item=option`` and ``mean(item)``; intervals are posterior quantiles.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pop = pd.DataFrame({"llm": rng.choice(["agree", "neutral", "disagree"], 1000)})
    >>> pilot = pop.iloc[:120].assign(human=pop["llm"].iloc[:120].to_numpy())
    >>> r = bayes_shares("human", pilot, pop, "llm", categories=["agree", "neutral", "disagree"],
    ...                  estimand="shares", random_state=1)
    >>> r.terms
    ('human=agree', 'human=neutral', 'human=disagree')
    """
    from rectify.estimators.bayes_chain import chain_rule

    cats = _categories(categories)
    pilot, population = _frame(pilot, "pilot"), _frame(population, "population")
    y = _codes(pilot, item, cats, "pilot")
    a = _llm(pilot, predicted, cats, "pilot")
    a_pop = _llm(population, predicted, cats, "population")
    if scores is None:
        scores = (np.asarray(cats, dtype=float) if all(isinstance(c, (int, float, np.number)) for c in cats)
                  else None)
    if method == "chain":
        s = sp = None
        if strata is not None:
            check_columns(pilot, [strata], "pilot")
            check_columns(population, [strata], "population")
            s, sp = pilot[strata].to_numpy(), population[strata].to_numpy()
        r = chain_rule(y, a, a_pop, n_options=len(cats), scores=scores, strata=s, strata_pop=sp,
                       estimand=estimand, level=level, random_state=random_state, **options)
    elif method == "misclass":
        if strata is not None:
            raise InputError("argument 'strata' is only supported with method='chain'")
        from rectify.estimators.bayes_misclass import misclassification

        r = misclassification(y, a, a_pop, n_options=len(cats), scores=scores, estimand=estimand,
                              level=level, random_state=random_state, **options)
    else:
        raise InputError(f"argument 'method' must be 'chain' or 'misclass', got {method!r}")
    return _relabel(r, item, cats)


class BayesianCalibrator(BaseEstimator):
    """Hierarchical Bayesian calibration of an LLM against the pilot, post-stratified over the frame.

    A scikit-learn estimator over data frames: ``__init__`` stores the settings, ``fit(pilot)``
    learns the model (pymc), ``predict_proba``/``predict``/``predict_score`` follow the convention
    shared with :class:`~rectify.llm.simulator.PromptSimulator` and
    :class:`~rectify.llm.finetune.LoRAClassifier`: an ``(n, K)`` array over ``classes_``, the modal
    option, the expected option score.

    Parameters
    ----------
    item : str
        Column of human answers.
    predicted : str or list of str
        Column of LLM answers (labels) or option-probability columns.
    categories : sequence
        The item's options in order (2 gives a logistic model, more a cumulative logit).
    formula : str, optional
        Fixed effects, e.g. ``"age + C(education)"`` (formulaic syntax, right-hand side only; the
        intercept is dropped after encoding because the cut points play its role).
    groups : sequence of str
        Columns with group-varying intercepts (and slopes on the LLM answer).
    scores : sequence, optional
        Option scores (default: the categories when numeric, else ``1 .. K``).
    llm_effect, varying_slopes, prior_beta, prior_cut, prior_sigma, chains, draws, tune, target_accept, \
rhat_threshold, sampler, random_state
        Passed to :class:`rectify.estimators.bayes_hier.HierarchicalCalibrator` (same defaults).

    Attributes
    ----------
    classes_ : ndarray
        The categories (columns of ``predict_proba``).
    model_ : HierarchicalCalibrator
    terms_ : list of str
        Fixed-effect terms (with ``formula``).

    Examples
    --------
    >>> cal = BayesianCalibrator("y", "y_llm", [1, 2, 3, 4, 5], formula="age", groups=["region"], chains=2)
    >>> cal.get_params()["groups"], cal.get_params()["chains"]
    (['region'], 2)
    """

    def __init__(self, item: str | None = None, predicted=None, categories: Sequence | None = None,
                 formula: str | None = None, groups: Sequence[str] = (), scores: Sequence | None = None,
                 llm_effect: str = "score", varying_slopes: bool = True, prior_beta: float = 2.5,
                 prior_cut: float = 2.5, prior_sigma: float = 1.0, chains: int = 4, draws: int = 1000,
                 tune: int = 1000, target_accept: float = 0.9, rhat_threshold: float = 1.01, sampler: str = "auto",
                 random_state: Any = None):
        self.item = item
        self.predicted = predicted
        self.categories = categories
        self.formula = formula
        self.groups = groups
        self.scores = scores
        # the sampler's settings, in alphabetical order
        self.chains = chains
        self.draws = draws
        self.llm_effect = llm_effect
        self.prior_beta = prior_beta
        self.prior_cut = prior_cut
        self.prior_sigma = prior_sigma
        self.random_state = random_state
        self.rhat_threshold = rhat_threshold
        self.sampler = sampler
        self.target_accept = target_accept
        self.tune = tune
        self.varying_slopes = varying_slopes

    _MODEL_PARAMS = ("llm_effect", "varying_slopes", "prior_beta", "prior_cut", "prior_sigma", "chains", "draws",
                     "tune", "target_accept", "rhat_threshold", "sampler", "random_state")

    def _group_list(self) -> list[str]:
        groups = [self.groups] if isinstance(self.groups, str) else list(self.groups or ())
        for g in groups:
            as_label(g, "groups")
        return groups

    def _X(self, df: pd.DataFrame, frame: str):
        if self.formula is None:
            return None
        X = replay_design(self.spec_, df, frame)
        return np.delete(X, self.intercept_col_, axis=1) if self.intercept_col_ is not None else X

    def _groups(self, df: pd.DataFrame, frame: str):
        groups = self._group_list()
        if not groups:
            return None
        check_columns(df, groups, frame)
        return {g: df[g].to_numpy(dtype=object) for g in groups}

    def _check_fitted(self) -> None:
        from .errors import NotFittedError

        if not hasattr(self, "model_"):
            raise NotFittedError("this BayesianCalibrator is not fitted yet; call fit(pilot) first")

    def fit(self, pilot: pd.DataFrame, population: pd.DataFrame | None = None) -> "BayesianCalibrator":
        """Fit on the pilot; ``population`` (optional) declares every group level of the frame."""
        from rectify.estimators.bayes_hier import HierarchicalCalibrator

        cats = _categories(self.categories)
        pilot = _frame(pilot, "pilot")
        if population is not None:
            population = _frame(population, "population")
        y = _codes(pilot, as_label(self.item, "item"), cats, "pilot")
        a = _llm(pilot, self.predicted, cats, "pilot")
        X = None
        self.intercept_col_ = None
        if self.formula is not None:
            f = self.formula if "~" in self.formula else "~ " + self.formula
            mf = build_design(f, pilot)
            self.spec_ = mf.spec
            self.intercept_col_ = mf.terms.index("Intercept") if "Intercept" in mf.terms else None
            self.terms_ = [t for t in mf.terms if t != "Intercept"]
            X = self._X(pilot, "pilot")
        scores = self.scores
        if scores is None and all(isinstance(c, (int, float, np.number)) for c in cats):
            scores = np.asarray(cats, dtype=float)
        self.model_ = HierarchicalCalibrator(n_options=len(cats), scores=scores,
                                             **{k: getattr(self, k) for k in self._MODEL_PARAMS})
        pop_groups = None if population is None else self._groups(population, "population")
        self.model_.fit(y, a, X=X, groups=self._groups(pilot, "pilot"), population_groups=pop_groups)
        self.categories_ = cats
        self.classes_ = np.asarray(cats, dtype=object)
        return self

    def poststratify(self, population: pd.DataFrame, *, estimand: str = "both",
                     level: float = 0.95) -> Result:
        """Posterior of the population and per-group-level shares and mean scores."""
        self._check_fitted()
        population = _frame(population, "population")
        a = _llm(population, self.predicted, self.categories_, "population")
        r = self.model_.poststratify(a, self._X(population, "population"), self._groups(population, "population"),
                                     estimand=estimand, level=level)
        return _relabel(r, self.item, self.categories_)

    def predict_proba(self, data: pd.DataFrame, *, allow_new_groups: bool = False) -> np.ndarray:
        """Calibrated answer distribution of each row (posterior mean): an ``(n, K)`` array whose
        columns follow ``classes_`` (``pd.DataFrame(p, index=data.index, columns=cal.classes_)``
        labels it)."""
        self._check_fitted()
        data = _frame(data, "data")
        a = _llm(data, self.predicted, self.categories_, "data")
        return self.model_.predict_proba(a, self._X(data, "data"), self._groups(data, "data"),
                                         allow_new_groups=allow_new_groups)

    def predict(self, data: pd.DataFrame, *, allow_new_groups: bool = False) -> np.ndarray:
        """The most probable option of each row (an element of ``classes_``)."""
        from rectify.llm.simulator import modal_option

        return modal_option(self.predict_proba(data, allow_new_groups=allow_new_groups), self.classes_)

    def predict_score(self, data: pd.DataFrame, *, allow_new_groups: bool = False) -> np.ndarray:
        """Expected option score of each row (``scores``, else numeric categories, else ``1..K``)."""
        P = self.predict_proba(data, allow_new_groups=allow_new_groups)
        if self.scores is not None:
            s = np.asarray(self.scores, dtype=float)
        elif all(isinstance(c, (int, float, np.number)) for c in self.categories_):
            s = np.asarray(self.categories_, dtype=float)
        else:
            s = np.arange(1, len(self.categories_) + 1, dtype=float)
        return P @ s
