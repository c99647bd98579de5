"""Bad-input matrix over the public API (issue 8, part 1).

One table of cases, each a distinct bad input to a public verb, class or the command line. Every case
asserts (a) the most specific :mod:`rectify.errors` class and (b) that the message names the argument
or column at fault (``names``) and says what to do (``todo``). A second test checks that near-miss
inputs are refused or kept as given: never silently dropped, re-coded or clipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import pandas as pd
import pytest

import rectify
from rectify import errors as E
from rectify.cli import main
from rectify.comparison import compare, make_spec
from rectify.estimators import ppi_mean, ppi_ols, ppi_shares
from rectify.fidelity import fidelity_report, group_summary, pearson_r
from rectify.llm.items import Item, Scale
from rectify.llm.simulator import PromptSimulator
from rectify.planning import effective_sample_size, humans_needed, plan_from_pilot, planning_table


# ------------------------------------------------------------------------------------------ data
@lru_cache(maxsize=1)
def _base() -> pd.DataFrame:
    """A small seeded frame: covariates, a 1-4 answer, the LLM's prediction and option probabilities."""
    rng = np.random.default_rng(8)
    n = 240
    g = rng.choice(["a", "b", "c"], size=n)
    x = rng.normal(size=n)
    y = np.clip(np.round(2.5 + x + rng.normal(size=n)), 1, 4)
    yhat = y + rng.normal(scale=0.7, size=n)
    P = rng.dirichlet(np.ones(4), size=n)
    df = pd.DataFrame({"respondent_id": np.arange(1, n + 1), "region": g, "income": x, "trust": y,
                       "trust_llm": yhat, "agree": (y >= 3).astype(float), "agree_llm": (yhat >= 3).astype(float),
                       "wt": rng.uniform(0.5, 2.0, size=n)})
    for k in range(4):
        df[f"p{k + 1}"] = P[:, k]
    # respondent ids as the index: a pilot cut from the frame is then recognisably inside it (rectify.estimand)
    return df.set_axis(pd.Index(np.arange(1001, 1001 + n)), axis=0)


def frame() -> pd.DataFrame:
    return _base().copy()


def pilot(n: int = 80) -> pd.DataFrame:
    return _base().iloc[:n].copy()


def with_value(df: pd.DataFrame, col: str, row: int, value) -> pd.DataFrame:
    df = df.copy()
    if not (isinstance(value, float) or value is None):
        df[col] = df[col].astype(object)
    df.loc[df.index[row], col] = value
    return df


class _Backend:
    """Never called: the simulator cases fail while validating."""

    def score(self, prompts):  # pragma: no cover - not reached
        raise AssertionError("the backend must not be reached")


ITEM = Item("trust", "How much do you trust scientists?", ["None", "A little", "Some", "A lot"],
            missing=["Don't know"])


def _fidelity_frames():
    h = frame()[["region", "income", "trust"]].rename(columns={"trust": "q1"})
    h["q2"] = h["q1"]
    s = h.copy()
    s["q1"] = frame()["trust_llm"].round().clip(1, 4)
    return h, s


def _compare_frame():
    df = frame().rename(columns={"trust": "q1", "trust_llm": "q1_llm"})
    return df


# ------------------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable[[], object]
    exc: type
    names: str  # regex: the argument or column at fault
    todo: str  # regex: what the user should do


def _calib_sample():
    return pd.DataFrame({"sex": ["f", "f", "m", "m", "m", "f"], "reg": ["n", "s", "n", "s", "n", "s"],
                         "trust": [1.0, 2.0, 2.0, 3.0, 4.0, 2.0]})


CASES = [
    # --- formula verbs: NaN / inf / dtypes / lengths / empty frames
    Case("mean_nan_answer",
         lambda: rectify.mean("trust", with_value(pilot(), "trust", 3, np.nan), frame(), "trust_llm"),
         E.MissingCovariateError, r"'trust'", r"impute|subset"),
    Case("mean_inf_prediction",
         lambda: rectify.mean("trust", pilot(), with_value(frame(), "trust_llm", 200, np.inf), "trust_llm"),
         E.InputError, r"'trust_llm'", r"fix or remove"),
    Case("mean_text_answers",
         lambda: rectify.mean("trust", pilot().assign(trust=lambda d: d["trust"].astype(str)), frame(), "trust_llm"),
         E.InputError, r"'trust'.*numbers stored as text", r"pd\.to_numeric"),
    Case("mean_empty_pilot", lambda: rectify.mean("trust", pilot().iloc[:0], frame(), "trust_llm"),
         E.InputError, r"'pilot'", r"pass the pilot rows"),
    Case("mean_empty_population", lambda: rectify.mean("trust", pilot(), frame().iloc[:0], "trust_llm"),
         E.InputError, r"'population'", r"pass the population rows"),
    Case("mean_pilot_not_a_frame", lambda: rectify.mean("trust", pilot().to_numpy(), frame(), "trust_llm"),
         E.InputError, r"'pilot'", r"wrap it with pd\.DataFrame"),
    Case("mean_unknown_method", lambda: rectify.mean("trust", pilot(), frame(), "trust_llm", method="ppi+"),
         E.InputError, r"method 'ppi\+'", r"choose"),
    Case("mean_level_out_of_range", lambda: rectify.mean("trust", pilot(), frame(), "trust_llm", level=95),
         E.InputError, r"'level'", r"between 0 and 1 \(e\.g\. 0\.95\)"),
    Case("mean_level_as_text", lambda: rectify.mean("trust", pilot(), frame(), "trust_llm", level="0.9"),
         E.InputError, r"'level'", r"pass a number, not text"),
    Case("ppi_mean_lam_as_text",
         lambda: __import__("rectify.estimators.ppi", fromlist=["ppi_mean"]).ppi_mean(
             np.arange(10.0), np.arange(10.0), np.arange(30.0), lam="x"),
         E.InputError, r"'lam'", r"None to tune it"),
    Case("ppi_mean_lam_wrong_length",
         lambda: __import__("rectify.estimators.ppi", fromlist=["ppi_mean"]).ppi_mean(
             np.arange(10.0), np.arange(10.0), np.arange(30.0), lam=[0.5, 0.5]),
         E.InputError, r"'lam'", r"None to tune it"),
    Case("compare_min_group_n_absurd",
         lambda: rectify.compare(frame(), ["trust"], methods=["classical"], pilot_sizes=[10], repeats=1,
                                 min_group_n=10**9, progress=False),
         E.ConfigError, r"'min_group_n'", r"such as 20"),
    Case("mean_negative_weight",
         lambda: rectify.mean("trust", with_value(pilot(), "wt", 2, -1.0), frame(), "trust_llm", weights="wt"),
         E.InputError, r"'wt'", r"fix or remove"),
    Case("mean_weights_wrong_length",
         lambda: rectify.mean("trust", pilot(), frame(), "trust_llm", weights=np.ones(5)),
         E.InputError, r"'weights'", r"one weight per pilot row"),
    Case("mean_missing_prediction_column", lambda: rectify.mean("trust", pilot(), frame(), "y_gpt"),
         E.MissingCovariateError, r"'y_gpt'", r"available columns"),
    Case("mean_ppi_without_predicted", lambda: rectify.mean("trust", pilot(), frame()),
         E.InputError, r"'predicted'", r"pass predicted="),
    Case("mean_single_pilot_row", lambda: rectify.mean("trust", pilot(1), frame(), "trust_llm"),
         E.InputError, r"'trust'", r"collect more"),
    Case("mean_by_group_too_small",
         lambda: rectify.mean("trust", pd.concat([pilot(60).query("region != 'c'"),
                                                  pilot().query("region == 'c'").head(1)]),
                              frame(), "trust_llm", by="region"),
         E.InputError, r"group 'c' of 'region'", r"collect more|merge"),
    Case("mean_by_group_without_pilot",
         lambda: rectify.mean("trust", pilot().query("region != 'c'"), frame(), "trust_llm", by="region"),
         E.InputError, r"group 'c' of 'region'", r"sample it|merge"),
    Case("mean_strata_in_pilot_not_population",
         lambda: rectify.mean("trust", pilot(), frame().query("region != 'c'"), "trust_llm", strata="region",
                              overlap="separate"),
         E.InputError, r"strata \['c'\]", r"add them|merge"),
    Case("shares_answer_outside_categories",
         lambda: rectify.shares("trust", pilot().assign(trust_mode=1.0), frame().assign(trust_mode=1.0),
                                "trust_mode", categories=[1.0, 2.0, 3.0]),
         E.InputError, r"column 'trust' of the pilot", r"fix the coding|add the option"),
    Case("shares_probabilities_negative",
         lambda: rectify.shares("trust", pilot(), frame().assign(p1=lambda d: d["p1"] - 0.5), ["p1", "p2", "p3", "p4"],
                                categories=[1.0, 2.0, 3.0, 4.0], overlap="separate"),
         E.InputError, r"columns \['p1', 'p2', 'p3', 'p4'\] of the population", r"check"),
    Case("quantile_q_out_of_range", lambda: rectify.quantile("trust", 1.5, pilot(), frame(), "trust_llm"),
         E.InputError, r"'q'", r"between 0 and 1"),
    # --- formula verbs: formulas, unseen categories, missing covariates, separation
    Case("ols_formula_names_missing_column",
         lambda: rectify.ols("trust ~ income + age", pilot(), frame(), "trust_llm"),
         E.MissingCovariateError, r"'age'", r"check the spelling or add"),
    Case("ols_formula_missing_outcome", lambda: rectify.ols("opinion ~ income", pilot(), frame(), "trust_llm"),
         E.MissingCovariateError, r"'opinion'", r"check the spelling or add"),
    Case("ols_formula_syntax", lambda: rectify.ols("trust ~ (income", pilot(), frame(), "trust_llm"),
         E.InputError, r"formula 'trust ~ \(income'", r"check its brackets"),
    Case("ols_formula_without_tilde", lambda: rectify.ols("trust + income", pilot(), frame(), "trust_llm"),
         E.InputError, r"'formula'", r"like 'y ~ x1 \+ x2'"),
    Case("ols_formula_with_several_parts", lambda: rectify.ols("trust ~ income | region", pilot(), frame(), "trust_llm"),
         E.InputError, r"'trust ~ income \| region'", r"write the terms on one right-hand side"),
    Case("ols_unseen_category_in_population",
         lambda: rectify.ols("trust ~ income + C(region)", pilot(), with_value(frame(), "region", 7, "d"), "trust_llm"),
         E.UnseenLevelError, r"column 'region' has \['d'\]", r"merge .* or restrict"),
    Case("ols_missing_covariate_in_population",
         lambda: rectify.ols("trust ~ income", pilot(), with_value(frame(), "income", 7, np.nan), "trust_llm"),
         E.MissingCovariateError, r"'income'", r"impute|subset"),
    Case("ols_too_few_pilot_rows", lambda: rectify.ols("trust ~ income", pilot(2), frame(), "trust_llm"),
         E.InputError, r"design of 'trust ~ income'", r"collect more pilot answers|simplify the formula"),
    Case("ols_constant_covariate",
         lambda: rectify.ols("trust ~ income + z", pilot().assign(z=1.0), frame().assign(z=1.0), "trust_llm"),
         E.InputError, r"\bz\b", r"drop"),
    Case("logit_outcome_not_binary", lambda: rectify.logit("trust ~ income", pilot(), frame(), "agree_llm"),
         E.InputError, r"'trust'", r"recode|0/1"),
    Case("logit_perfect_separation",
         lambda: rectify.logit("agree ~ income", pilot().assign(agree=lambda d: (d["income"] > 0).astype(float)),
                               frame(), "agree_llm"),
         E.EstimationError, r"separat", r"merge categories or use fewer predictors"),
    Case("ordinal_answer_outside_options",
         lambda: rectify.ordinal("trust ~ income", pilot(), frame(), ["p1", "p2", "p3"], categories=[1.0, 2.0, 3.0]),
         E.InputError, r"column 'trust' of the pilot", r"fix the coding|add the option"),
    # --- numeric cores
    Case("ppi_mean_length_mismatch", lambda: ppi_mean(np.ones(10), np.ones(9), np.ones(50)),
         E.InputError, r"'yhat'", r"same respondents"),
    Case("ppi_mean_nan_in_population", lambda: ppi_mean(np.arange(10.0), np.arange(10.0),
                                                        np.r_[np.arange(49.0), np.nan]),
         E.InputError, r"'yhat_pop'", r"remove or impute"),
    Case("ppi_mean_lambda_bounds_impossible", lambda: ppi_mean(np.arange(10.0), np.arange(10.0), np.arange(50.0),
                                                               lambda_bounds=(1.0, 0.0)),
         E.InputError, r"'lambda_bounds'", r"low <= high"),
    Case("ppi_mean_unknown_convention", lambda: ppi_mean(np.arange(10.0), np.arange(10.0), np.arange(50.0),
                                                         convention="R"),
         E.InputError, r"convention 'R'", r"choose"),
    Case("ppi_ols_population_columns", lambda: ppi_ols(np.ones((20, 2)) + np.c_[np.zeros(20), np.arange(20)],
                                                       np.arange(20.0), np.arange(20.0), np.ones((50, 3)),
                                                       np.arange(50.0)),
         E.InputError, r"'X_pop'", r"same formula"),
    Case("ppi_shares_negative_weights", lambda: ppi_shares(np.array([0, 1, 1, 0, 1]), None, None, "classical",
                                                           weights=[1, 1, -1, 1, 1]),
         E.InputError, r"'weights'", r"fix or remove"),
    # --- scikit-learn classes
    Case("sklearn_ols_yhat_length", lambda: rectify.estimators.PPILinearRegression().fit(
        np.arange(20.0)[:, None], np.arange(20.0), yhat=np.arange(19.0), X_unlabeled=np.ones((30, 1)),
        yhat_unlabeled=np.ones(30)),
         E.InputError, r"'yhat'", r"same respondents"),
    Case("sklearn_ols_unknown_method", lambda: rectify.estimators.PPILinearRegression(method="gpt").fit(
        np.arange(20.0)[:, None], np.arange(20.0), yhat=np.arange(20.0), X_unlabeled=np.ones((30, 1)),
        yhat_unlabeled=np.ones(30)),
         E.InputError, r"method 'gpt'", r"choose"),
    Case("sklearn_logit_three_classes", lambda: rectify.estimators.PPILogisticRegression().fit(
        np.arange(30.0)[:, None], np.arange(30) % 3),
         E.InputError, r"'y'", r"rectify\.ordinal"),
    Case("sklearn_logit_partial_llm_args", lambda: rectify.estimators.PPILogisticRegression().fit(
        np.arange(30.0)[:, None], np.arange(30) % 2, yhat=np.ones(30)),
         E.InputError, r"'X_unlabeled'", r"give all"),
    # --- Bayesian estimators (validation only: nothing is sampled)
    Case("chain_rule_code_outside_options", lambda: rectify.estimators.chain_rule(
        [0, 1, 4], [0, 1, 1], [0, 1, 1, 0], n_options=4),
         E.InputError, r"'y'", r"check the item's options"),
    Case("chain_rule_nan_answer", lambda: rectify.estimators.chain_rule(
        [0, 1, np.nan], [0, 1, 1], [0, 1, 1, 0], n_options=4),
         E.InputError, r"'y'", r"remove them"),
    Case("chain_rule_length_mismatch", lambda: rectify.estimators.chain_rule(
        [0, 1, 2, 3], [0, 1, 2], [0, 1, 2, 3, 3], n_options=4),
         E.InputError, r"'yhat'", r"give the LLM's answer for each pilot respondent"),
    Case("misclassification_unknown_sampler", lambda: rectify.estimators.misclassification(
        [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3, 3], n_options=4, sampler="gibbs"),
         E.InputError, r"'sampler'", r"'auto', 'importance' or 'nuts'"),
    Case("hierarchical_unknown_llm_effect", lambda: rectify.estimators.HierarchicalCalibrator(
        n_options=4, llm_effect="slope").fit([0, 1, 2, 3], [0, 1, 2, 3]),
         E.InputError, r"'llm_effect'", r"'score' or 'category'"),
    Case("hierarchical_one_option", lambda: rectify.estimators.HierarchicalCalibrator(n_options=1).fit(
        [0, 0, 0], [0, 0, 0]),
         E.InputError, r"'n_options'", r"integer >= 2"),
    # --- calibration weights
    Case("calibrate_unknown_method", lambda: rectify.calibrate(_calib_sample(), margins={"sex": {"f": 5, "m": 5}},
                                                               method="ipf"),
         E.ConfigError, r"'method'", r"one of"),
    Case("calibrate_empty_raking_cell", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 40, "x": 10}}),
         E.InputError, r"margin 'sex', category 'x'", r"merge the category"),
    Case("calibrate_sample_category_without_target", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50}}),
         E.InputError, r"'sex'", r"add them"),
    Case("calibrate_unseen_population_category", lambda: rectify.calibrate(
        _calib_sample(), pd.DataFrame({"sex": ["f", "m", "x"] * 10}), vars=["sex"]),
         E.UnseenLevelError, r"'sex'", r"collapse"),
    Case("calibrate_impossible_bounds", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}, method="logit", bounds=(2.0, 1.0)),
         E.InputError, r"'bounds'", r"lower < upper"),
    Case("calibrate_unreachable_bounds", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 90, "m": 10}}, method="logit", bounds=(0.9, 1.1)),
         E.InputError, r"bounds \(0\.9, 1\.1\).*margin 'sex'", r"widen the bounds"),
    Case("calibrate_negative_design_weight", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}, design_weights=[1, 1, -1, 1, 1, 1]),
         E.InputError, r"'design_weights'", r"fix or remove"),
    Case("calibrate_raking_no_convergence", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 30, "m": 70}, "reg": {"n": 20, "s": 80}}, max_iter=1),
         E.ConvergenceError, r"margin 'sex'", r"raise max_iter"),
    Case("calibrate_inconsistent_margins", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}, "reg": {"n": 50, "s": 80}}, method="linear"),
         E.InputError, r"margin 'reg'", r"give margins of the same population"),
    Case("calibrate_missing_variable", lambda: rectify.calibrate(
        _calib_sample(), pd.DataFrame({"sex": ["f", "m"] * 5}), vars=["sex", "age"]),
         E.MissingCovariateError, r"'age'", r"check the name"),
    Case("calibrate_nan_auxiliary", lambda: rectify.calibrate(
        with_value(_calib_sample(), "sex", 1, None), margins={"sex": {"f": 50, "m": 50}}),
         E.MissingCovariateError, r"'sex'", r"impute or remove"),
    Case("calibrate_population_and_margins", lambda: rectify.calibrate(
        _calib_sample(), pd.DataFrame({"sex": ["f", "m"]}), margins={"sex": {"f": 1, "m": 1}}),
         E.ConfigError, r"'population'.*'margins'", r"give either"),
    Case("calibrated_shares_value_not_in_levels", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}).shares("reg", levels=["n"]),
         E.UnseenLevelError, r"'reg'", r"add them to 'levels'"),
    # --- fidelity
    Case("fidelity_all_missing_item", lambda: fidelity_report(
        _fidelity_frames()[0].assign(q2=np.nan), _fidelity_frames()[1], ["q1", "q2"]),
         E.InputError, r"'q2'", r"drop them"),
    Case("fidelity_pilot_rows_missing_from_simulated", lambda: fidelity_report(
        _fidelity_frames()[0], _fidelity_frames()[1].iloc[5:], ["q1"]),
         E.InputError, r"5 rows of human_df are missing from simulated_df", r"align them"),
    Case("fidelity_unknown_group_column", lambda: fidelity_report(
        *_fidelity_frames(), ["q1"], groups="district"),
         E.InputError, r"'district'", r"check the names or add"),
    Case("fidelity_min_group_n_zero", lambda: fidelity_report(*_fidelity_frames(), ["q1"], min_group_n=0),
         E.InputError, r"'min_group_n'", r"positive integer"),
    Case("fidelity_probabilities_not_a_distribution", lambda: fidelity_report(
        *_fidelity_frames(), ["q1"], probabilities={"q1": np.full((240, 4), 0.3)}),
         E.InputError, r"probabilities\['q1'\]", r"rows that sum to 1"),
    Case("fidelity_metric_group_too_small", lambda: pearson_r([1.0, 2.0], [1.0, 3.0]),
         E.EstimationError, r"pearson_r", r"collect more respondents or merge"),
    Case("group_summary_not_a_report", lambda: group_summary(pd.DataFrame({"metric": ["x"]})),
         E.InputError, r"'report'", r"pass the output of fidelity_report"),
    # --- items, scales and the prompt simulator
    Case("item_duplicated_options", lambda: Item("q", "Q?", ["yes", "no", "yes"]),
         E.InputError, r"'q'.*'yes'", r"unique"),
    Case("item_single_option", lambda: Item("q", "Q?", ["yes"]),
         E.InputError, r"'q'", r"list every answer option"),
    Case("item_scores_length", lambda: Item("q", "Q?", ["no", "yes"], scores=[0, 1, 2]),
         E.InputError, r"'q'.*'scores'", r"give one score per option"),
    Case("likert_answer_outside_options", lambda: ITEM.encode(["Some", "Completely"]),
         E.InputError, r"'trust'.*'Completely'", r"recode"),
    Case("scale_bad_sign", lambda: Scale("s", [ITEM], signs=[0]),
         E.InputError, r"'s'.*signs", r"\+1 or -1"),
    Case("scale_missing_item_column", lambda: Scale("s", [ITEM]).score(pd.DataFrame({"other": [1]})),
         E.InputError, r"'trust'", r"pass a table with one column per item"),
    Case("simulator_unknown_strategy", lambda: PromptSimulator(_Backend(), ITEM, strategy="cot").fit(),
         E.InputError, r"'strategy'", r"one of"),
    Case("simulator_nan_pilot_answer", lambda: PromptSimulator(_Backend(), ITEM, strategy="few-shot").fit(
        pd.DataFrame({"age": [30, 40, 50]}), ["Some", np.nan, "A lot"]),
         E.InputError, r"pilot_y", r"pass only answered pilot rows"),
    Case("simulator_pilot_answer_outside_options", lambda: PromptSimulator(_Backend(), ITEM, strategy="few-shot").fit(
        pd.DataFrame({"age": [30, 40, 50]}), ["Some", "Always", "A lot"]),
         E.InputError, r"'trust'.*'Always'", r"recode"),
    Case("simulator_duplicated_respondent_ids", lambda: PromptSimulator(_Backend(), ITEM, strategy="few-shot").fit(
        pd.DataFrame({"age": [30, 40, 50]}, index=[7, 7, 9]), ["Some", "None", "A lot"]),
         E.InputError, r"pilot_X", r"unique label"),
    # --- comparison
    Case("make_spec_all_missing_item", lambda: make_spec(_compare_frame().assign(q2=np.nan, q2_llm=1.0),
                                                         ["q1", "q2"]),
         E.ConfigError, r"'q2'", r"drop them"),
    Case("make_spec_answer_off_scores", lambda: make_spec(with_value(_compare_frame(), "q1", 3, 7.0), ["q1"],
                                                          scores=[1, 2, 3, 4]),
         E.ConfigError, r"\[7\.0\] are not among the scores", r"code missing answers as NaN"),
    Case("make_spec_missing_prediction_column", lambda: make_spec(_compare_frame(), ["q1"], predicted="{item}_gpt"),
         E.ConfigError, r"predicted: columns \['q1_gpt'\]", r"check the names or add"),
    Case("make_spec_formula_response", lambda: make_spec(_compare_frame(), ["q1"], formula="trust ~ x"),
         E.ConfigError, r"'trust'", r"must be an item or a scale"),
    Case("make_spec_duplicated_respondent_ids", lambda: make_spec(
        _compare_frame().set_index("respondent_id").pipe(lambda d: d.set_axis(np.r_[d.index[:-1], 1])), ["q1"]),
         E.ConfigError, r"'frame' has a duplicated index \(e\.g\. \[1\]\)", r"reset_index"),
    Case("make_spec_level", lambda: make_spec(_compare_frame(), ["q1"], level=1.5),
         E.ConfigError, r"'level'", r"between 0 and 1"),
    Case("compare_unknown_method", lambda: compare(_compare_frame(), ["q1"], methods=["ppi+++"], progress=False),
         E.ConfigError, r"'ppi\+\+\+'", r"choose from"),
    Case("compare_pilot_larger_than_frame", lambda: compare(_compare_frame(), ["q1"], methods=["classical"],
                                                            pilot_sizes=[5000], progress=False),
         E.ConfigError, r"pilot sizes \[5000\]", r"between 2 and"),
    # --- planning
    Case("humans_needed_level", lambda: humans_needed(0.1, 1.0, level=1.5),
         E.InputError, r"'level'", r"between 0 and 1 \(e\.g\. 0\.95\)"),
    Case("humans_needed_rho", lambda: humans_needed(0.1, 1.0, rho=1.5),
         E.InputError, r"'rho'", r"in \[-1, 1\]"),
    Case("effective_sample_size_zero_pilot", lambda: effective_sample_size(0, 0.5),
         E.InputError, r"'n'", r"positive integer"),
    Case("plan_from_pilot_inf", lambda: plan_from_pilot(np.r_[np.arange(10.0), np.inf], np.arange(11.0), 0.1),
         E.InputError, r"'y'", r"remove or fix"),
    Case("plan_from_pilot_text", lambda: plan_from_pilot(["a", "b", "c", "d", "e"], np.arange(5.0), 0.1),
         E.InputError, r"'y'", r"recode"),
    Case("planning_table_level", lambda: planning_table(0.5, 1.0, level=95),
         E.InputError, r"'level'", r"between 0 and 1 \(e\.g\. 0\.95\)"),
]


# ------------------------------------------------------------------------------------------ issue 16: kinds of input
def spilot(n: int = 80) -> pd.DataFrame:
    """A pilot drawn from the frame (its index labels are frame rows)."""
    return frame().sample(n, random_state=5)


def dup(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """``df`` with a second column named ``col``."""
    return pd.concat([df, df[[col]]], axis=1)


class _SpecialTok:
    """A tokenizer's special and added tokens (SmolLM2's ``<file_sep>`` is an added token)."""

    all_special_tokens = ["<|im_start|>", "<|im_end|>"]

    def get_added_vocab(self):
        return {"<file_sep>": 5, "<|im_start|>": 1}


def _local_with(tok):
    from rectify.llm.local import LocalBackend

    be = LocalBackend()
    be._model, be._tok = object(), tok  # loaded: the check runs before any forward pass
    return be


def _openai(**kw):
    from rectify.llm.openai_backend import OpenAIBackend

    return OpenAIBackend("gpt-4o-mini", **kw)


def _lora(**kw):
    from rectify.llm.finetune import LoRAClassifier

    return LoRAClassifier(options=[1, 2], **kw).fit(pd.DataFrame({"age": [20, 30, 40, 50]}), [1, 2, 1, 2])


_TZ = pd.date_range("2024-01-01", periods=240, freq="D", tz="Europe/Paris")

KIND_CASES = [
    # --- duplicated column names
    Case("mean_duplicated_answer_column", lambda: rectify.mean("trust", dup(spilot(), "trust"), frame(), "trust_llm"),
         E.InputError, r"column 'trust' appears 2 times in the pilot", r"unique name"),
    Case("mean_duplicated_prediction_column",
         lambda: rectify.mean("trust", spilot(), dup(frame(), "trust_llm"), "trust_llm"),
         E.InputError, r"'trust_llm' appears 2 times in the population", r"unique name"),
    Case("ols_duplicated_covariate", lambda: rectify.ols("trust ~ income", dup(spilot(), "income"), frame(), "trust_llm"),
         E.InputError, r"'income' appears 2 times", r"unique name"),
    Case("calibrate_duplicated_margin_column", lambda: rectify.calibrate(
        dup(_calib_sample(), "sex"), margins={"sex": {"f": 50, "m": 50}}),
         E.InputError, r"'sex' appears 2 times in the sample", r"unique name"),
    Case("fidelity_duplicated_item_column", lambda: fidelity_report(
        dup(_fidelity_frames()[0], "q1"), _fidelity_frames()[1], ["q1"]),
         E.InputError, r"'q1' appears 2 times in the human_df", r"unique name"),
    Case("make_spec_duplicated_item_column", lambda: make_spec(dup(_compare_frame(), "q1"), ["q1"]),
         E.ConfigError, r"'q1' appears 2 times", r"unique name"),
    Case("persona_duplicated_covariate", lambda: PromptSimulator(_Backend(), ITEM).fit().prompts(
        dup(frame()[["region", "income"]], "region")),
         E.InputError, r"'region' appears 2 times in the X", r"unique name"),
    Case("sklearn_ols_duplicated_feature_name", lambda: rectify.estimators.PPILinearRegression().fit(
        dup(frame()[["income", "wt"]], "wt"), frame()["trust"]),
         E.InputError, r"'wt' appears 2 times", r"unique name"),
    # --- non-string column labels
    Case("mean_integer_column_label", lambda: rectify.mean(
        0, spilot().rename(columns={"trust": 0}), method="classical"),
         E.InputError, r"argument 'y' must be a column name.*got int 0", r"astype\(str\)"),
    Case("persona_integer_column_label", lambda: PromptSimulator(_Backend(), ITEM).fit().prompts(
        pd.DataFrame({0: [30, 40]})),
         E.InputError, r"column of the X must be named by one string, got int 0", r"astype\(str\)"),
    Case("calibrate_integer_variable", lambda: rectify.calibrate(
        _calib_sample().rename(columns={"sex": 1}), pd.DataFrame({1: ["f", "m"] * 5}), vars=[1]),
         E.InputError, r"named by one string, got int 1", r"astype\(str\)"),
    # --- a list, Series or array where a column name is expected (one name in a list is read as that name)
    Case("mean_two_names_for_y", lambda: rectify.mean(["trust", "income"], spilot(), frame(), "trust_llm"),
         E.InputError, r"argument 'y' must name one column.*list of 2", r"once per column"),
    Case("mean_series_as_predicted", lambda: rectify.mean("trust", spilot(), frame(), frame()["trust_llm"]),
         E.InputError, r"argument 'predicted'.*pandas Series", r"pass its name \(e\.g\. 'trust_llm'\)"),
    Case("mean_array_as_predicted", lambda: rectify.mean("trust", spilot(), frame(),
                                                        frame()["trust_llm"].to_numpy()),
         E.InputError, r"argument 'predicted'.*numpy array of shape \(240,\)", r"pass one column name"),
    Case("mean_by_two_columns", lambda: rectify.mean("trust", spilot(), method="classical", by=["region", "agree"]),
         E.InputError, r"argument 'by' must name one column", r"once per column"),
    Case("mean_strata_series", lambda: rectify.mean("trust", spilot(), frame(), "trust_llm",
                                                    strata=frame()["region"]),
         E.InputError, r"argument 'strata'.*pandas Series", r"pass its name"),
    Case("quantile_two_probabilities", lambda: rectify.quantile("trust", [0.25, 0.5], spilot(), method="classical"),
         E.InputError, r"argument 'q' must be a number, got a list of 2", r"once per q"),
    Case("quantile_probability_as_text", lambda: rectify.quantile("trust", "0.5", spilot(), method="classical"),
         E.InputError, r"argument 'q' must be a number, got str", r"between 0 and 1"),
    # --- numbers stored as text
    Case("mean_prediction_as_text", lambda: rectify.mean(
        "trust", spilot(), frame().assign(trust_llm=lambda d: d["trust_llm"].astype(str)), "trust_llm"),
         E.InputError, r"'trust_llm' of the population holds numbers stored as text", r"pd\.to_numeric"),
    Case("ols_covariate_as_text", lambda: rectify.ols(
        "trust ~ income", spilot().assign(income=lambda d: d["income"].astype(str)), frame(), "trust_llm"),
         E.InputError, r"'income' of the pilot holds numbers stored as text", r"pd\.to_numeric.*C\(income\)"),
    Case("ols_outcome_as_text", lambda: rectify.ols(
        "trust ~ income", spilot().assign(trust=lambda d: d["trust"].astype(str)), frame(), "trust_llm"),
         E.InputError, r"'trust' of the pilot holds numbers stored as text", r"pd\.to_numeric"),
    Case("fidelity_item_as_text", lambda: fidelity_report(
        _fidelity_frames()[0].assign(q1=lambda d: d["q1"].astype(str)), _fidelity_frames()[1], ["q1"]),
         E.InputError, r"'q1' of the human_df holds numbers stored as text", r"pd\.to_numeric"),
    # --- string outcome to logit
    Case("logit_text_outcome", lambda: rectify.logit(
        "yn ~ income", spilot().assign(yn=lambda d: np.where(d["agree"] > 0, "yes", "no")), frame(), "agree_llm"),
         E.InputError, r"outcome column 'yn' of the pilot is not numeric", r"recode it as numbers.*0/1"),
    # --- datetimes (timezone-aware or not)
    Case("ols_timezone_aware_covariate", lambda: rectify.ols(
        "trust ~ when", frame().assign(when=_TZ).sample(80, random_state=5), frame().assign(when=_TZ), "trust_llm"),
         E.InputError, r"'when' of the pilot holds timezone-aware datetimes \(Europe/Paris\)", r"dt\.year"),
    Case("mean_timezone_aware_answer", lambda: rectify.mean("when", frame().assign(when=_TZ), method="classical"),
         E.InputError, r"'when' of the pilot holds timezone-aware", r"convert it first"),
    Case("ols_naive_datetime_covariate", lambda: rectify.ols(
        "trust ~ when", frame().assign(when=_TZ.tz_localize(None)), method="classical"),
         E.InputError, r"'when' of the pilot holds dates or times", r"dt\.year"),
    # --- negative or absurd numeric settings
    Case("calibrate_max_iter_negative", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}, max_iter=-1),
         E.InputError, r"'max_iter' must be a whole number >= 1, got -1", r"whole number"),
    Case("calibrate_tol_negative", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}, tol=-1e-9),
         E.InputError, r"'tol' must be a number > 0", r"<= 1"),
    Case("calibrate_trim_not_a_pair", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}, trim=0.5),
         E.InputError, r"'trim' must be a pair \(lower, upper\)", r"write e\.g\. \(0\.5, 3\.0\)"),
    Case("calibrated_trim_pair_and_upper", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}).trim((1.0, 20.0), 30.0),
         E.InputError, r"trim\(\(lower, upper\)\)", r"not both"),
    Case("calibrated_trim_reversed_pair", lambda: rectify.calibrate(
        _calib_sample(), margins={"sex": {"f": 50, "m": 50}}).trim((20.0, 1.0)),
         E.InputError, r"'trim' must have lower < upper", r"swap or widen"),
    Case("openai_timeout_negative", lambda: _openai(timeout=-1),
         E.InputError, r"'timeout' must be a number > 0", r"seconds one request may take"),
    Case("openai_timeout_zero", lambda: _openai(timeout=0),
         E.InputError, r"'timeout' must be a number > 0", r"seconds one request may take"),
    Case("openai_max_retries_absurd", lambda: _openai(max_retries=10_000),
         E.InputError, r"'max_retries' must be a whole number >= 0 and <= 100", r"<= 100"),
    Case("openai_temperature_negative", lambda: _openai(temperature=-0.5),
         E.InputError, r"'temperature' must be a number >= 0 and <= 2", r">= 0"),
    Case("simulator_seed_negative", lambda: PromptSimulator(_Backend(), ITEM, random_state=-1).fit(),
         E.InputError, r"'random_state' must be a whole number >= 0, got -1", r"give a seed >= 0"),
    Case("local_dtype_unknown", lambda: __import__("rectify.llm.local", fromlist=["LocalBackend"]).LocalBackend(
        dtype="float8"), E.ConfigError, r"'dtype' must be 'auto', 'float32'.*got 'float8'", r"'auto' picks bf16"),
    Case("lora_seed_negative", lambda: _lora(random_state=-3),
         E.InputError, r"'random_state' must be an integer >= 0, got -3", r"fixed seed"),
    Case("lora_learning_rate_negative", lambda: _lora(lr=-0.1),
         E.InputError, r"'lr' must be a number in \(0\.0, 1\.0\]", r"got -0\.1"),
    # --- credentials anywhere in a URL: see _URL_CASES below
    # --- tokenizer special tokens in persona text (any special or added token, not only turn markers)
    Case("local_persona_with_added_token", lambda: _local_with(_SpecialTok()).score(
        PromptSimulator(_Backend(), ITEM).fit().prompts(pd.DataFrame({"bio": ["likes <file_sep> cats"]}))),
         E.InputError, r"prompt 1, message \d \(\w+\) contains the tokenizer's special token '<file_sep>'",
         r"Remove or rewrite it"),
]
_URL_CASES = [  # (id, base_url, what the message names); the message never repeats the URL
    ("userinfo", "https://me:sk-abcdefghijklmnop@api.example.org/v1", r"credentials"),
    ("query_with_innocuous_name", "https://api.example.org/v1?x=sk-abc123def456ghi",
     r"key-like value in query parameter 'x'"),
    ("query_hex_key", "https://h.example.org/v1?deployment=0123456789abcdef0123456789abcdef",
     r"key-like value in query parameter 'deployment'"),
    ("fragment", "https://api.example.org/v1#sk-abcdefghijklmnop", r"a fragment"),
    ("key_in_path", "https://api.example.org/sk-proj-abcdefghijklmnop/v1", r"key-like segment in its path"),
    ("secret_name", "https://api.example.org/v1?access_token=abc", r"secret-like query parameter 'access_token'"),
]
KIND_CASES += [Case(f"openai_url_{name}", lambda url=url: _openai(base_url=url), E.ConfigError,
                    rf"'base_url' carries .*{what}", r"api_key_env") for name, url, what in _URL_CASES]
CASES += KIND_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_a_useful_message(case):
    with pytest.raises(Exception) as info:
        case.fn()
    err = info.value
    assert type(err) is case.exc, f"{case.id}: got {type(err).__name__}: {err}"
    msg = str(err)
    assert re.search(case.names, msg, re.S), f"{case.id}: message does not name the culprit: {msg}"
    assert re.search(case.todo, msg, re.S | re.I), f"{case.id}: message does not say what to do: {msg}"


# ------------------------------------------------------------------------------------------ command line
_STANDARD = {"frame": '"survey.csv"', "items": '["q1"]', "scores": "[1, 2, 3, 4]", "methods": '["classical"]',
             "pilot_sizes": "[40]", "repeats": "1", "seed": "1", "output": '"out"'}


def _toml(**over) -> str:
    cfg = {**_STANDARD, **over}
    return "\n".join(f"{k} = {v}" for k, v in cfg.items() if v is not None) + "\n"


@dataclass(frozen=True)
class CliCase:
    id: str
    toml: str | None  # None: the configuration file does not exist
    names: str
    todo: str
    frame_text: str | None = None  # replaces the frame file's content


CLI_CASES = [
    CliCase("cli_malformed_toml", _toml() + 'title = "unclosed\n', r"not valid TOML", r"fix the syntax"),
    CliCase("cli_unknown_key", _toml(colour='"blue"'), r"'colour'", r"remove or rename"),
    CliCase("cli_unknown_method", _toml(methods='["ppi+++"]'), r"'ppi\+\+\+'", r"choose from"),
    CliCase("cli_missing_frame_file", _toml(frame='"nowhere.csv"'), r"nowhere\.csv", r"check the path"),
    CliCase("cli_missing_config_file", None, r"config\.toml", r"check the path"),
    CliCase("cli_wrong_type_repeats", _toml(repeats='"five"'), r"'repeats'", r"give a TOML whole number"),
    CliCase("cli_wrong_type_items", _toml(items='"q1"'), r"'items'", r"give a TOML list"),
    CliCase("cli_missing_items_key", _toml(items=None), r"'items'", r"add it"),
    CliCase("cli_empty_methods", _toml(methods="[]"), r"'methods'", r"list at least one"),
    CliCase("cli_fractional_pilot_size", _toml(pilot_sizes="[40.5]"), r"'pilot_sizes'", r"write e\.g\."),
    CliCase("cli_pilot_size_too_large", _toml(pilot_sizes="[100000]"), r"pilot sizes \[100000\]", r"between 2 and"),
    CliCase("cli_level_out_of_range", _toml(level="1.5"), r"'level'", r"between 0 and 1"),
    CliCase("cli_answers_off_the_scores", _toml(scores="[1, 2, 3]"), r"\[4\.0\]", r"code missing answers as NaN"),
    CliCase("cli_frame_not_a_table", _toml(), r"survey\.csv", r"check that it is a UTF-8 CSV", frame_text=""),
    CliCase("cli_frame_without_rows", _toml(), r"survey\.csv", r"give one row per person",
            frame_text="respondent_id,q1,q1_llm\n"),
    CliCase("cli_frame_unknown_extension", _toml(frame='"survey.xlsx"'), r"survey\.xlsx", r"use a \.csv"),
    CliCase("cli_scale_without_plus", _toml() + '[scales.trust]\nminus = ["q1"]\n', r"scale 'trust'",
            r"must be a table with 'plus'"),
    CliCase("cli_seed_negative", _toml(seed="-3"), r"'seed' must be a non-negative whole number, got -3",
            r"non-negative whole number"),
    CliCase("cli_scores_text", _toml(scores='["a", "b", "c", "d"]'), r"'scores' must be a list of numbers",
            r"e\.g\. \[1, 2, 3, 4\]"),
    CliCase("cli_repeats_absurd", _toml(repeats="100000000"), r"'repeats' = 100000000", r"give e\.g\. 5 to 200"),
    CliCase("cli_finetune_lr_negative", _toml() + "[finetune]\nlr = -1.0\n", r"\[finetune\].*'lr'",
            r"\(0\.0, 1\.0\]"),
    CliCase("cli_scale_plus_not_a_list", _toml() + '[scales.trust]\nplus = "q1"\n', r"scale 'trust': 'plus'",
            r"list of item names"),
    CliCase("cli_openai_url_with_key", _toml() + '[simulators.gpt]\nkind = "openai"\nmodel = "m"\n'
            'base_url = "https://api.example.org/v1?k=sk-abcdefghijklmnopq"\n', r"base_url' carries",
            r"api_key_env"),
    CliCase("cli_openai_timeout_negative", _toml() + '[simulators.gpt]\nkind = "openai"\nmodel = "m"\n'
            "timeout = -1.0\n", r"'timeout' must be a number > 0", r"<= 86400"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_bad_config_exits_with_a_message_and_no_traceback(case, tmp_path, capsys):
    text = case.frame_text if case.frame_text is not None else _compare_frame().to_csv(index=False)
    (tmp_path / "survey.csv").write_text(text)
    (tmp_path / "survey.xlsx").write_text("not a spreadsheet")
    path = tmp_path / "config.toml"
    if case.toml is not None:
        path.write_text(case.toml)
    rc = main(["compare", str(path), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err  # one line
    assert err.startswith("rectify: configuration error:"), err
    assert re.search(case.names, err, re.S), f"{case.id}: stderr does not name the culprit: {err}"
    assert re.search(case.todo, err, re.S | re.I), f"{case.id}: stderr does not say what to do: {err}"
    assert not (tmp_path / "out").exists()  # nothing was run, no report written


def test_cli_bad_data_exits_with_a_data_error_and_no_traceback(tmp_path, capsys):
    """Errors other than configuration errors (here a grouping column with a missing value) also end
    with one line on stderr naming the column, exit code 2 and no traceback."""
    df = _compare_frame()
    df.loc[df.index[3], "region"] = np.nan
    df.to_csv(tmp_path / "survey.csv", index=False)
    (tmp_path / "config.toml").write_text(_toml(groups='["region"]'))
    rc = main(["compare", str(tmp_path / "config.toml"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in out + err
    assert err.startswith("rectify: data error:"), err
    assert "'region'" in err


def test_the_matrix_covers_at_least_45_distinct_bad_inputs():
    ids = [c.id for c in CASES] + [c.id for c in CLI_CASES]
    assert len(ids) == len(set(ids)) >= 45


# ------------------------------------------------------------------------------------------ near misses
def test_near_misses_are_refused_or_kept_never_dropped_recoded_or_clipped():
    # 1. one NaN answer in the pilot: refused (not dropped), and the caller's frame is left as it was
    p = with_value(pilot(), "trust", 3, np.nan)
    before = p.copy()
    with pytest.raises(E.MissingCovariateError, match="'trust'"):
        rectify.mean("trust", p, frame(), "trust_llm")
    pd.testing.assert_frame_equal(p, before)

    # 2. an extreme (but valid) weight is used as given, not clipped: the classical weighted mean is exact
    p = pilot()
    w = np.ones(len(p))
    w[0] = 1000.0
    r = rectify.mean("trust", p.assign(wt=w), method="classical", weights="wt")
    expected = np.sum(w * p["trust"]) / np.sum(w)
    assert r.estimate[0] == pytest.approx(expected, rel=1e-12)
    # ... and calibrated linear (GREG) weights may go below zero: they are reported, not clipped
    s = pd.DataFrame({"x": [1.0, 2.0, 3.0, 10.0]})
    cw = rectify.calibrate(s, margins={"x": 2.0}, method="linear")
    assert cw.weights.min() < 0
    assert float(cw.weights @ s["x"]) == pytest.approx(2.0, rel=1e-9)

    # 3. a category the pilot never showed is refused, not re-coded to NaN or to the reference level
    from rectify.formula import build_design, replay_design

    mf = build_design("trust ~ C(region)", pilot())
    with pytest.raises(E.UnseenLevelError, match="column 'region' has \\['d'\\]"):
        replay_design(mf.spec, pd.DataFrame({"region": ["a", "d"]}))
    with pytest.raises(E.InputError, match="'Completely'"):
        ITEM.encode(["Completely"])  # not NaN

    # 4. probabilities that are slightly negative are refused, not clipped and renormalised
    f = frame()
    f.loc[f.index[0], ["p1", "p2"]] = [-1e-3, f.loc[f.index[0], "p2"] + 1e-3]
    with pytest.raises(E.InputError, match="negative"):
        rectify.shares("trust", pilot(), f, ["p1", "p2", "p3", "p4"], categories=[1.0, 2.0, 3.0, 4.0],
                       overlap="separate")

    # 5. a group too small for a metric is reported as not estimable (NaN with a reason), never as 0
    h, sim = _fidelity_frames()
    h["tiny"] = np.where(np.arange(len(h)) < 3, "few", "many")
    rep = fidelity_report(h, sim, ["q1"], groups="tiny", min_group_n=20)
    few = rep[(rep["grouping"] == "tiny") & (rep["group"] == "few") & (rep["item"] == "q1")]
    assert len(few) and few["value"].isna().all()
    assert few["note"].str.contains("not estimable").all()


def test_url_refusals_never_repeat_the_secret_and_nothing_is_kept():
    import pickle

    for name, url, _ in _URL_CASES:
        with pytest.raises(E.ConfigError) as info:
            _openai(base_url=url)
        msg = str(info.value)
        secret = url.split("//", 1)[1].split("/", 1)[1] if name == "key_in_path" else url.rsplit("=", 1)[-1]
        assert url not in msg and "sk-abc" not in msg and "0123456789abcdef" not in msg, (name, msg)
        assert secret not in msg or len(secret) < 4, (name, msg)
    # a kept URL (no credential) survives pickling as given, and no key is stored on the backend
    be = _openai(base_url="http://127.0.0.1:8000/v1?api-version=2024-06-01")
    state = pickle.dumps(be)
    assert b"api-version=2024-06-01" in state and b"sk-" not in state
