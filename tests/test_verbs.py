"""Formula verbs: same numbers as the cores on hand-built designs; strict replay; subgroups."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import rectify
from rectify.errors import InputError, MissingCovariateError, UnseenLevelError
from rectify.estimators.ppi import ppi_mean, ppi_ols


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    N = 3000
    pop = pd.DataFrame({
        "age": rng.integers(18, 90, N).astype(float),
        "ideology": rng.choice(["liberal", "moderate", "conservative"], N),
    })
    eff = pop["ideology"].map({"liberal": 0.5, "moderate": 0.0, "conservative": -0.5})
    pop["trust"] = 3 + 0.01 * pop["age"] + eff + rng.normal(0, 1, N)
    pop["trust_llm"] = 3.2 + 0.005 * pop["age"] + 0.5 * eff + 0.5 * (pop["trust"] - 3) + rng.normal(0, 0.3, N)
    pilot = pop.sample(200, random_state=3)
    return pilot, pop.drop(columns="trust")


def test_mean_verb_equals_core(data):
    pilot, pop = data
    r = rectify.mean("trust", pilot, pop, predicted="trust_llm")
    c = ppi_mean(pilot["trust"], pilot["trust_llm"], pop["trust_llm"], overlap="inside")
    np.testing.assert_allclose(r.estimate, c.estimate)
    np.testing.assert_allclose(r.cov, c.cov)
    assert r.terms == ("mean(trust)",)


def test_ols_verb_equals_core_and_classical_equals_statsmodels(data):
    pilot, pop = data
    formula = "trust ~ age + C(ideology)"
    r = rectify.ols(formula, pilot, pop, predicted="trust_llm")
    X = np.column_stack([np.ones(len(pilot)), pilot["age"], pilot["ideology"] == "liberal",
                         pilot["ideology"] == "moderate"]).astype(float)
    Xp = np.column_stack([np.ones(len(pop)), pop["age"], pop["ideology"] == "liberal",
                          pop["ideology"] == "moderate"]).astype(float)
    c = ppi_ols(X, pilot["trust"], pilot["trust_llm"], Xp, pop["trust_llm"], overlap="inside")
    np.testing.assert_allclose(r.estimate, c.estimate, rtol=1e-10)
    assert r.terms == ("Intercept", "age", "C(ideology)[T.liberal]", "C(ideology)[T.moderate]")
    ref = smf.ols(formula, pilot).fit(cov_type="HC3")
    cl = rectify.ols(formula, pilot, method="classical")
    names = list(cl.terms)  # patsy orders categorical terms first: compare by name
    np.testing.assert_allclose(cl.estimate, ref.params[names].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(cl.std_error, ref.bse[names].to_numpy(), rtol=1e-10)


def test_by_gives_subgroup_estimates_equal_to_separate_runs(data):
    pilot, pop = data
    r = rectify.mean("trust", pilot, pop, predicted="trust_llm", by="ideology")
    assert r.groups == ("conservative", "liberal", "moderate")
    for g, est in zip(r.groups, r.estimate):
        sub = rectify.mean("trust", pilot[pilot.ideology == g], pop[pop.ideology == g], predicted="trust_llm")
        assert est == pytest.approx(sub.estimate[0])
    tidy = r.tidy()
    assert list(tidy["group"]) == ["conservative", "liberal", "moderate"]


def test_strata_verb_is_stratified_ppi(data):
    pilot, pop = data
    r = rectify.mean("trust", pilot, pop, predicted="trust_llm", strata="ideology")
    c = ppi_mean(pilot["trust"], pilot["trust_llm"], pop["trust_llm"], strata=pilot["ideology"].to_numpy(),
                 strata_pop=pop["ideology"].to_numpy())
    np.testing.assert_allclose(r.estimate, c.estimate)
    assert r.method == "stratified ppi++"


def test_unseen_level_in_population_is_refused(data):
    pilot, pop = data
    pop2 = pop.copy()
    pop2.loc[pop2.index[0], "ideology"] = "libertarian"
    with pytest.raises(UnseenLevelError, match="libertarian"):
        rectify.ols("trust ~ age + C(ideology)", pilot, pop2, predicted="trust_llm")


def test_missing_covariate_in_population_is_refused(data):
    pilot, pop = data
    pop2 = pop.copy()
    pop2.loc[pop2.index[:3], "age"] = np.nan
    with pytest.raises(MissingCovariateError, match="'age' has 3 missing"):
        rectify.ols("trust ~ age", pilot, pop2, predicted="trust_llm")


def test_formula_naming_a_missing_column(data):
    pilot, pop = data
    with pytest.raises(MissingCovariateError, match="'income'"):
        rectify.ols("trust ~ income", pilot, pop, predicted="trust_llm")


def test_missing_outcome_in_pilot_is_refused(data):
    pilot, pop = data
    p2 = pilot.copy()
    p2.loc[p2.index[0], "trust"] = np.nan
    with pytest.raises(MissingCovariateError, match="'trust'"):
        rectify.mean("trust", p2, pop, predicted="trust_llm")


def test_group_without_pilot_rows(data):
    pilot, pop = data
    with pytest.raises(InputError, match="no pilot rows"):
        rectify.mean("trust", pilot[pilot.ideology != "moderate"], pop, predicted="trust_llm", by="ideology")


def test_ppi_without_predicted_column(data):
    pilot, pop = data
    with pytest.raises(InputError, match="'predicted'"):
        rectify.mean("trust", pilot, pop)


def test_shares_verb_with_probability_columns():
    df = rectify.datasets.load_misinfo()
    probs = rectify.datasets.misinfo_llm_probs(df, "t01")
    cols = [f"p{k}" for k in range(4)]
    df[cols] = probs
    pilot = rectify.datasets.draw_pilot(df, 250, random_state=2).dropna(subset=["t01"])
    r = rectify.shares("t01", pilot, df, predicted=cols, categories=[1.0, 2.0, 3.0, 4.0])
    assert r.estimate.sum() == pytest.approx(1.0)
    c = rectify.shares("t01", pilot, method="classical", categories=[1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(c.estimate, pilot["t01"].value_counts(normalize=True).sort_index().to_numpy())
