"""Tests of the chain-rule conjugate Bayesian corrector (rectify.estimators.bayes_chain)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rectify.errors import EstimationError, InputError
from rectify.estimators.bayes_chain import (
    BayesDiagnosticWarning,
    PriorOnlyWarning,
    chain_rule,
    chain_rule_moments,
    chain_rule_posterior,
    contingency,
)

C = np.array([[12, 5, 1], [3, 20, 4], [0, 6, 9]])
N_POP = np.array([4000, 3500, 2500])


def test_single_llm_answer_reduces_to_dirichlet():
    # with one LLM answer p = theta_0 exactly: Dirichlet(alpha + counts)
    c = np.array([[7, 3, 10]])
    m = chain_rule_moments(c, np.array([100]), alpha_y=0.5)
    a = 0.5 + c[0]
    np.testing.assert_allclose(m["shares_mean"], stats.dirichlet.mean(a), rtol=1e-12)
    np.testing.assert_allclose(np.diag(m["shares_cov"]), stats.dirichlet.var(a), rtol=1e-12)
    a0 = a.sum()
    np.testing.assert_allclose(m["shares_cov"][0, 1], -a[0] * a[1] / (a0**2 * (a0 + 1)), rtol=1e-12)


def test_fixed_population_variance_closed_form():
    # pi fixed: Var(p_k) = sum_a pi_a^2 Var(theta_ak), theta rows independent Dirichlets
    m = chain_rule_moments(C, N_POP, alpha_y=1.0, population_uncertainty=False)
    pi = N_POP / N_POP.sum()
    var = sum(pi[a] ** 2 * stats.dirichlet.var(1.0 + C[a]) for a in range(3))
    np.testing.assert_allclose(np.diag(m["shares_cov"]), var, rtol=1e-12)
    mean = sum(pi[a] * stats.dirichlet.mean(1.0 + C[a]) for a in range(3))
    np.testing.assert_allclose(m["shares_mean"], mean, rtol=1e-12)


@pytest.mark.parametrize("pop_unc", [True, False])
def test_draws_match_closed_form_moments(pop_unc):
    s = 200_000
    d = chain_rule_posterior(C, N_POP, alpha_y=1.0, alpha_pop=0.5, population_uncertainty=pop_unc,
                             n_draws=s, random_state=11)
    m = chain_rule_moments(C, N_POP, alpha_y=1.0, alpha_pop=0.5, population_uncertainty=pop_unc)
    sd = np.sqrt(np.diag(m["shares_cov"]))
    # Monte Carlo error of the mean is sd / sqrt(S); allow 5 of those
    np.testing.assert_allclose(d.mean(axis=0), m["shares_mean"], atol=float(5 * sd.max() / np.sqrt(s)))
    np.testing.assert_allclose(np.cov(d, rowvar=False), m["shares_cov"], rtol=0.03, atol=1e-6)
    score = d @ np.arange(1, 4)
    assert abs(score.mean() - m["mean"]) < 5 * np.sqrt(m["mean_var"] / s)
    assert score.var() == pytest.approx(m["mean_var"], rel=0.03)


def test_result_estimate_and_interval_are_posterior_summaries():
    rng = np.random.default_rng(3)
    a_pop = rng.choice(3, 5000, p=[0.5, 0.3, 0.2])
    a = a_pop[:200]
    y = np.where(rng.random(200) < 0.6, a, rng.integers(0, 3, 200))
    r = chain_rule(y, a, a_pop, n_options=3, n_draws=100_000, random_state=0)
    m = chain_rule_moments(contingency(a, y, 3, 3), np.bincount(a_pop, minlength=3))
    np.testing.assert_allclose(r.estimate[:3], m["shares_mean"], atol=2e-3)
    assert r.estimate[3] == pytest.approx(m["mean"], abs=3e-3)
    assert r.std_error[3] == pytest.approx(np.sqrt(m["mean_var"]), rel=0.02)
    low, high = r.conf_int()
    np.testing.assert_allclose([low[3], high[3]], np.quantile(r.draws[:, 3], [0.025, 0.975]))
    assert r.terms == ("1", "2", "3", "mean") and r.method == "bayes-chain"


def _simulate(rng, n, N=20_000, K=5):
    # LLM answers with a first-option bias; human answers depend on the LLM answer
    a_pop = rng.choice(K, N, p=[0.35, 0.25, 0.2, 0.12, 0.08])
    theta = np.array([[0.4, 0.3, 0.15, 0.1, 0.05],
                      [0.2, 0.4, 0.2, 0.1, 0.1],
                      [0.1, 0.2, 0.4, 0.2, 0.1],
                      [0.05, 0.1, 0.25, 0.4, 0.2],
                      [0.05, 0.05, 0.2, 0.3, 0.4]])
    cum = theta.cumsum(axis=1)
    y_pop = (rng.random(N)[:, None] > cum[a_pop]).sum(axis=1)
    idx = rng.choice(N, n, replace=False)
    return y_pop, a_pop, idx


def test_coverage_of_population_mean_seeded_simulation():
    # the truth is the finite population's mean score; 300 random pilots of 150 rows
    rng = np.random.default_rng(2024)
    hits, reps = 0, 300
    for _ in range(reps):
        y_pop, a_pop, idx = _simulate(rng, 150)
        truth = (y_pop + 1).mean()
        r = chain_rule(y_pop[idx], a_pop[idx], a_pop, n_options=5, estimand="mean",
                       n_draws=1500, random_state=rng)
        low, high = r.conf_int()
        hits += low[0] <= truth <= high[0]
    # nominal 0.95; Monte Carlo standard error over 300 reps is sqrt(0.95 * 0.05 / 300) = 0.0126: 3 of them
    mc_se = np.sqrt(0.95 * 0.05 / reps)
    assert abs(hits / reps - 0.95) <= 3 * mc_se, hits / reps


def test_strata_combine_with_population_weights():
    rng = np.random.default_rng(5)
    N = 6000
    h_pop = rng.choice(["a", "b", "c"], N, p=[0.5, 0.3, 0.2])
    a_pop = rng.integers(0, 3, N)
    idx = rng.choice(N, 300, replace=False)
    y = np.where(rng.random(300) < 0.5, a_pop[idx], rng.integers(0, 3, 300))
    r = chain_rule(y, a_pop[idx], a_pop, n_options=3, strata=h_pop[idx], strata_pop=h_pop,
                   estimand="mean", n_draws=50_000, random_state=1)
    assert r.groups == ("all", "a", "b", "c")
    w = np.array([np.mean(h_pop == h) for h in "abc"])
    # per-draw combination, so the posterior means combine exactly
    assert r.estimate[0] == pytest.approx(w @ r.estimate[1:], rel=1e-12)
    for j, h in enumerate("abc", start=1):
        mp, mq = h_pop[idx] == h, h_pop == h
        m = chain_rule_moments(contingency(a_pop[idx][mp], y[mp], 3, 3),
                               np.bincount(a_pop[mq], minlength=3))
        assert r.estimate[j] == pytest.approx(m["mean"], abs=4e-3)
        assert r.std_error[j] == pytest.approx(np.sqrt(m["mean_var"]), rel=0.03)


def test_probability_matrix_is_reduced_to_hard_labels():
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(4), 1000)
    y = rng.integers(0, 4, 100)
    r1 = chain_rule(y, P[:100], P, n_options=4, random_state=7)
    r2 = chain_rule(y, P[:100].argmax(1), P.argmax(1), n_options=4, random_state=7)
    np.testing.assert_array_equal(r1.draws, r2.draws)


def test_bad_input_is_refused_or_announced():
    a_pop = np.array([0, 1, 2, 2, 1, 0, 2])
    with pytest.raises(InputError, match="'y'.*outside"):
        chain_rule([0, 5], [0, 1], a_pop, n_options=3)
    with pytest.raises(InputError, match="'yhat'.*NaN"):
        chain_rule([0, 1], [0, np.nan], a_pop, n_options=3)
    with pytest.raises(InputError, match="differ in length"):
        chain_rule([0, 1, 1], [0, 1], a_pop, n_options=3)
    # LLM answer 2 is in the population but not in the pilot
    with pytest.warns(PriorOnlyWarning, match=r"code\(s\) \[2\].*42.9%"):
        r = chain_rule([0, 1], [0, 1], a_pop, n_options=3, random_state=0)
    assert r.diagnostics["prior_only_llm_answers"] == [2]
    with pytest.raises(EstimationError, match="never in the pilot"):
        chain_rule([0, 1], [0, 1], a_pop, n_options=3, on_empty="raise")
    with pytest.raises(EstimationError, match="stratum 'z'.*no pilot rows"):
        chain_rule([0, 1], [0, 1], [0, 1, 1], n_options=3, strata=["x", "x"],
                   strata_pop=["x", "x", "z"])
    with pytest.raises(InputError, match="alpha_y"):
        chain_rule([0, 1], [0, 1], a_pop, n_options=3, alpha_y=0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=9, max_size=9),
       st.lists(st.integers(1, 50), min_size=3, max_size=3),
       st.permutations([0, 1, 2]))
def test_moments_invariant_to_relabelling_llm_answers(cells, pop, perm):
    c = np.array(cells).reshape(3, 3)
    n = np.array(pop)
    m1 = chain_rule_moments(c, n)
    m2 = chain_rule_moments(c[list(perm)], n[list(perm)])
    np.testing.assert_allclose(m1["shares_mean"], m2["shares_mean"], atol=1e-12)
    np.testing.assert_allclose(m1["shares_cov"], m2["shares_cov"], atol=1e-12)
    assert m1["shares_mean"].sum() == pytest.approx(1.0)
    # the shares' covariance is singular along the all-ones direction (they sum to one)
    np.testing.assert_allclose(m1["shares_cov"].sum(axis=1), 0.0, atol=1e-12)


# ------------------------------------------------------------------ misclassification (numpy sampler)
from rectify.estimators.bayes_misclass import (  # noqa: E402
    MisclassificationModel,
    misclassification_importance,
)


def test_importance_sampler_matches_grid_integration():
    # K = 2: parameters m0 = P(yhat=1 | y=0), m1 = P(yhat=1 | y=1), p = P(y=1), uniform priors.
    # Posterior by brute-force integration on a grid versus the importance sampler.
    C = np.array([[14, 6], [4, 16]])  # rows: human answer, columns: LLM answer
    n_pop = np.array([70, 130])
    g = (np.arange(160) + 0.5) / 160
    m0, m1, p = np.meshgrid(g, g, g, indexing="ij", sparse=True)
    q1 = (1 - p) * m0 + p * m1
    logpost = (C[0, 1] * np.log(m0) + C[0, 0] * np.log1p(-m0) + C[1, 1] * np.log(m1)
               + C[1, 0] * np.log1p(-m1) + n_pop[1] * np.log(q1) + n_pop[0] * np.log1p(-q1))
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    p_full = np.broadcast_to(p, w.shape)
    mean_grid = float((w * p_full).sum())
    sd_grid = float(np.sqrt((w * p_full**2).sum() - mean_grid**2))
    d, info = misclassification_importance(C, n_pop, n_draws=40_000, n_proposals=400_000, random_state=3)
    assert info["acceptance"] > 0.5
    assert d[:, 1].mean() == pytest.approx(mean_grid, abs=max(3e-3, 4 * sd_grid / np.sqrt(info["ess_importance"])))
    assert d[:, 1].std() == pytest.approx(sd_grid, rel=0.03)


def test_misclassification_recovers_truth_when_prevalence_shifts():
    # a balanced quota pilot, a skewed population; the LLM errs alike given the true answer
    rng = np.random.default_rng(8)
    K = 4
    M = 0.6 * np.eye(K) + 0.4 * np.random.default_rng(1).dirichlet(2 * np.ones(K), K)
    p_pop = np.array([0.5, 0.25, 0.15, 0.1])
    hits_m = hits_c = 0
    reps = 40
    for r in range(reps):
        y = rng.integers(0, K, 300)
        yh = (rng.random(300)[:, None] > M[y].cumsum(1)).sum(1)
        yp = rng.choice(K, 20_000, p=p_pop)
        yhp = (rng.random(yp.size)[:, None] > M[yp].cumsum(1)).sum(1)
        truth = (yp + 1).mean()
        m = MisclassificationModel(K, chains=1, draws=1000, random_state=r).fit(y, yh, yhp)
        lo, hi = m.result(estimand="mean").conf_int()
        hits_m += lo[0] <= truth <= hi[0]
        c = chain_rule(y, yh, yhp, n_options=K, estimand="mean", n_draws=1000, random_state=r)
        lo, hi = c.conf_int()
        hits_c += lo[0] <= truth <= hi[0]
        assert m.diagnostics_["ess_importance"] > 1000
    assert hits_m >= 35  # nominal 38 of 40
    assert hits_c <= 10  # the chain rule transports P(y | yhat) from the wrong prevalence


def test_misclassification_refuses_bad_input():
    with pytest.raises(InputError, match="'y'.*outside"):
        MisclassificationModel(3).fit([0, 3], [0, 1], [0, 1, 2])
    with pytest.raises(InputError, match="n_llm_options == n_options"):
        MisclassificationModel(3, n_llm_options=4, sampler="importance").fit([0, 1], [0, 3], [0, 1, 2])
    with pytest.warns(PriorOnlyWarning, match=r"human answer code\(s\) \[2\]"), \
            pytest.warns(BayesDiagnosticWarning, match="effective sample size"):
        MisclassificationModel(3, chains=1, draws=200, random_state=0).fit(
            [0, 1, 0, 1], [0, 1, 1, 1], [0, 1, 2, 2, 1])


# ------------------------------------------------------------------ data-frame verbs (rectify.bayes)
import pandas as pd  # noqa: E402

from rectify.bayes import bayes_shares  # noqa: E402


def test_bayes_shares_over_frames_matches_the_core():
    rng = np.random.default_rng(4)
    cats = ["disagree", "neutral", "agree"]
    pop = pd.DataFrame({"llm": rng.choice(cats, 3000), "region": rng.choice(["n", "s"], 3000)})
    pilot = pop.iloc[:200].copy()
    pilot["human"] = np.where(rng.random(200) < 0.7, pilot["llm"], rng.choice(cats, 200))
    r = bayes_shares("human", pilot, pop, "llm", categories=cats, strata="region", random_state=5)
    code = {c: i for i, c in enumerate(cats)}
    core = chain_rule(pilot["human"].map(code).to_numpy(), pilot["llm"].map(code).to_numpy(),
                      pop["llm"].map(code).to_numpy(), n_options=3, strata=pilot["region"].to_numpy(),
                      strata_pop=pop["region"].to_numpy(), random_state=5)
    np.testing.assert_array_equal(r.draws, core.draws)
    assert r.terms[:4] == ("human=disagree", "human=neutral", "human=agree", "mean(human)")
    bad = pilot.copy()
    bad.loc[bad.index[0], "human"] = "strongly agree"
    with pytest.raises(InputError, match="column 'human'.*strongly agree"):
        bayes_shares("human", bad, pop, "llm", categories=cats)
    gap = pop.copy()
    gap.loc[gap.index[5], "llm"] = None
    with pytest.raises(InputError, match="'llm'.*missing"):
        bayes_shares("human", pilot, gap, "llm", categories=cats)
    m = bayes_shares("human", pilot, pop, "llm", categories=cats, method="misclass", estimand="mean",
                     chains=1, draws=1000, random_state=0)
    assert m.method == "bayes-misclass" and m.terms == ("mean(human)",)


def test_label_codes_match_a_lookup_per_row_and_refuse_unknown_labels():
    """The vectorised label coding (issue 17) equals a dictionary look-up per row."""
    from rectify.estimators.bayes_chain import label_codes

    rng = np.random.default_rng(17)
    cats = ["agree", "neutral", "disagree"]
    vals = rng.choice(cats, size=500)
    pos = {c: i for i, c in enumerate(cats)}
    np.testing.assert_array_equal(label_codes(vals, cats, "llm"), [pos[v] for v in vals])
    nums = rng.integers(1, 6, size=200).astype(float)  # whole floats match integer options, as a dict does
    np.testing.assert_array_equal(label_codes(nums, [1, 2, 3, 4, 5], "llm"), nums.astype(int) - 1)
    with pytest.raises(InputError, match=r"\['maybe'\]"):
        label_codes(["agree", "maybe"], cats, "llm")
    with pytest.raises(InputError, match="missing"):
        label_codes(pd.Series(["agree", None]), cats, "llm")


def test_label_codes_integer_and_categorical_paths_match_a_lookup_per_row():
    """Integer columns (lookup table), categorical columns (their own codes) and the factorize path
    give the codes a dictionary look-up gives, and name the unknown labels."""
    from rectify.estimators.bayes_chain import label_codes

    rng = np.random.default_rng(3)
    for cats in ([1, 2, 3, 4, 5], [0, 2, 7], [-1, 0, 1], [10, 20]):
        vals = rng.choice(cats, size=400)
        pos = {c: i for i, c in enumerate(cats)}
        expect = [pos[v] for v in vals.tolist()]
        np.testing.assert_array_equal(label_codes(pd.Series(vals), cats, "llm"), expect)
        np.testing.assert_array_equal(label_codes(pd.Series(vals.astype(np.uint8 if min(cats) >= 0 else np.int8)),
                                                  cats, "llm"), expect)
        np.testing.assert_array_equal(label_codes(pd.Series(pd.Categorical(vals)), cats, "llm"), expect)
    with pytest.raises(InputError, match=r"column 'h' of the pilot data has value\(s\) \[4\]"):
        label_codes(pd.Series([1, 2, 4, 5]), [1, 2, 3, 5], "h", "pilot")  # 4 lies inside the options' range
    with pytest.raises(InputError, match=r"\[9\]"):
        label_codes(pd.Series([1, 9]), [1, 2], "llm")
    # a categorical column with an unused category outside the options is fine; a used one is named
    cat = pd.Series(pd.Categorical(["a", "b"], categories=["a", "b", "zzz"]))
    np.testing.assert_array_equal(label_codes(cat, ["b", "a"], "llm"), [1, 0])
    with pytest.raises(InputError, match=r"\['zzz'\]"):
        label_codes(pd.Series(pd.Categorical(["a", "zzz"])), ["a", "b"], "llm")


def test_as_codes_refuses_out_of_range_integer_codes():
    from rectify.estimators.bayes_chain import as_codes

    assert as_codes(np.array([0, 2, 1], dtype=np.int8), "y", 3).tolist() == [0, 2, 1]
    with pytest.raises(InputError, match=r"2 values outside the codes 0\.\.2 \(e\.g\. 3\)"):
        as_codes(np.array([0, 3, -1]), "y", 3)
