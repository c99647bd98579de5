"""Tests of the three-axis fidelity metrics: hand-computed cases, library references, and the
planted facts of the synthetic misinformation survey."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from rectify import fidelity as fd
from rectify.datasets import (
    MISINFO_FORMULA,
    load_misinfo,
    misinfo_item_names,
    misinfo_items,
    misinfo_llm_probs,
    misinfo_truth,
)
from rectify.errors import EstimationError, InputError, MissingCovariateError
from rectify.result import Result

# ------------------------------------------------------------------------------------ marginal


def test_wasserstein_hand_case_and_normalisation():
    # human P = (1/2, 0, 0, 1/2), simulated Q = (0, 1/2, 1/2, 0) on 1..4:
    # CDFs (.5,.5,.5,1) and (0,.5,1,1): W1 = .5 + 0 + .5 = 1; normalised by K-1 = 3
    h, s = [1, 4], [2, 3]
    assert fd.wasserstein1(h, s) == pytest.approx(1.0)
    assert fd.wasserstein1(h, s, scores=[1, 2, 3, 4], normalise=True) == pytest.approx(1 / 3)
    assert fd.wasserstein1([1.0, 2.0, np.nan], [1.0, 2.0]) == 0.0  # NaN skipped
    with pytest.raises(InputError, match="scores"):
        fd.wasserstein1(h, s, normalise=True)


def test_wasserstein_matches_scipy_on_samples_and_probabilities():
    rng = np.random.default_rng(1)
    h = rng.integers(1, 5, size=300).astype(float)
    s = rng.uniform(1, 4, size=200)  # continuous expected scores
    assert fd.wasserstein1(h, s) == pytest.approx(stats.wasserstein_distance(h, s), rel=1e-12)
    p = rng.dirichlet(np.ones(4), size=50)
    assert fd.wasserstein1(h, p) == pytest.approx(
        stats.wasserstein_distance(h, np.arange(1, 5), v_weights=p.mean(axis=0)), rel=1e-12
    )
    assert fd.wasserstein1(h, p, normalise=True) == pytest.approx(fd.wasserstein1(h, p) / 3)


def test_total_variation_and_jensen_shannon():
    h = [1, 1, 2, 4]  # P = (.5, .25, 0, .25)
    s = [1, 2, 2, 3]  # Q = (.25, .5, .25, 0)
    assert fd.total_variation(h, s) == pytest.approx(0.5 * (0.25 + 0.25 + 0.25 + 0.25))
    p = np.array([0.5, 0.25, 0, 0.25])
    q = np.array([0.25, 0.5, 0.25, 0])
    m = (p + q) / 2
    kl = lambda a: sum(a_i * math.log2(a_i / m_i) for a_i, m_i in zip(a, m) if a_i > 0)  # noqa: E731
    assert fd.jensen_shannon(h, s) == pytest.approx(0.5 * kl(p) + 0.5 * kl(q), abs=1e-12)
    assert fd.jensen_shannon(h, s) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    # probability matrix: the mixture is used, with scores 1..K
    probs = np.array([[0.5, 0.5, 0, 0], [0, 0.5, 0, 0.5]])  # mixture (.25, .5, 0, .25)
    assert fd.total_variation(h, probs) == pytest.approx(0.5 * (0.25 + 0.25 + 0 + 0))
    # a corrected share vector enters as a (1, K) matrix
    assert fd.total_variation(h, [[0.5, 0.25, 0, 0.25]]) == pytest.approx(0.0)
    # continuous simulated values are refused (pass probabilities or round explicitly)
    with pytest.raises(InputError, match="not option scores"):
        fd.total_variation(h, [1.5, 2.2])
    with pytest.raises(InputError, match="probabilities"):
        fd.total_variation(h, [[0.5, 0.6, 0, 0]])


def test_mean_difference_and_sd_ratio():
    h = np.array([1, 2, 3, 4, np.nan])
    s = np.array([2.0, 2.5, 3.0])
    assert fd.mean_difference(h, s) == pytest.approx(2.5 - 2.5)
    assert fd.sd_ratio(h, s) == pytest.approx(np.std(s) / np.std(h[:4]))
    # mixture moments: mixture (.5, 0, 0, .5) has mean 2.5 and SD 1.5
    probs = np.array([[1.0, 0, 0, 0], [0, 0, 0, 1.0]])
    assert fd.sd_ratio([2, 3], probs) == pytest.approx(1.5 / 0.5)
    with pytest.raises(EstimationError, match="do not vary"):
        fd.sd_ratio([2, 2, 2], [1, 2, 3])
    m = fd.marginal_fidelity(h, s)
    assert math.isnan(m["total_variation"]) and math.isnan(m["wasserstein1_norm"])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=30),
    st.lists(st.integers(1, 5), min_size=1, max_size=30),
)
def test_distance_invariants(h, s):
    tv = fd.total_variation(h, s, scores=[1, 2, 3, 4, 5])
    js = fd.jensen_shannon(h, s, scores=[1, 2, 3, 4, 5])
    w = fd.wasserstein1(h, s, scores=[1, 2, 3, 4, 5], normalise=True)
    assert 0 <= js <= tv + 1e-12 <= 1 + 1e-12  # JS(base 2) <= TV
    assert 0 <= w <= 1 + 1e-12 and tv <= 4 * w + 1e-12  # W1 >= TV * min gap (1) / (K-1)
    assert fd.wasserstein1(h, s) == pytest.approx(fd.wasserstein1(s, h))
    assert fd.total_variation(h, h) == 0 and fd.jensen_shannon(h, h) == 0


# ---------------------------------------------------------------------------------- structural


def test_lins_ccc_sign_agreement_coverage_by_hand():
    assert fd.lins_ccc([1, 2, 3], [0.5, 1, 1.5]) == pytest.approx(4 / 11)
    x, y = np.array([0.2, -1.0, 0.7, 0.1]), np.array([0.1, -0.4, 0.9, -0.2])
    ref = 2 * np.cov(x, y, ddof=0)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert fd.lins_ccc(x, y) == pytest.approx(ref)
    assert fd.sign_agreement(x, y) == 0.75
    assert fd.interval_coverage([0, 1, 2, 3], [-1, 1, 2.5, 2], [1, 1, 3, 2.9]) == 0.5


def test_attenuation_slope_against_statsmodels():
    import statsmodels.api as sm

    h = np.array([0.4, -0.2, 1.1, 0.05, -0.6])
    s = np.array([0.1, -0.15, 0.5, 0.1, -0.2])
    assert fd.attenuation_slope(h, s) == pytest.approx(sm.OLS(s, h).fit().params[0], rel=1e-10)
    with_const = sm.OLS(s, sm.add_constant(h)).fit().params[1]
    assert fd.attenuation_slope(h, s, intercept=True) == pytest.approx(with_const, rel=1e-10)
    assert fd.attenuation_slope([1, -2], [0.5, -1]) == pytest.approx(0.5)
    with pytest.raises(EstimationError):
        fd.attenuation_slope([0, 0], [1, 2])


def test_magnitude_ratio_by_hand_and_against_the_slope():
    h = np.array([0.4, -0.2, 1.1, 0.05, -0.6])
    s = np.array([0.1, 0.15, -0.5, 0.1, -0.2])
    # by hand: (0.1 + 0.15 + 0.5 + 0.1 + 0.2) / 5 = 0.21 over (0.4 + 0.2 + 1.1 + 0.05 + 0.6) / 5 = 0.47
    assert fd.magnitude_ratio(h, s) == pytest.approx(0.21 / 0.47, rel=1e-12)
    # a ratio of means, not a mean of ratios (which would be (0.25 + 0.75 + 0.4545 + 2 + 0.3333) / 5)
    assert fd.magnitude_ratio(h, s) != pytest.approx(np.mean(np.abs(s) / np.abs(h)), rel=1e-3)
    # every sign flipped: the slope says -1, the magnitude ratio says the sizes are right
    assert fd.magnitude_ratio(h, -h) == pytest.approx(1.0) and fd.attenuation_slope(h, -h) == pytest.approx(-1.0)
    # every effect scaled by a: both equal |a| and a
    assert fd.magnitude_ratio(h, 0.3 * h) == pytest.approx(0.3) == fd.attenuation_slope(h, 0.3 * h)
    with pytest.raises(EstimationError, match="all human coefficients are 0"):
        fd.magnitude_ratio([0, 0], [1, 2])
    with pytest.raises(InputError, match="without NaN"):
        fd.magnitude_ratio([1, np.nan], [1, 2])
    with pytest.raises(InputError, match="same length"):
        fd.magnitude_ratio([1, 2], [1])


def test_compare_reports_the_magnitude_ratio_beside_the_slope():
    from rectify.comparison import _coefficient_metrics

    human = pd.Series({"Intercept": 5.0, "x": 2.0, "z": -1.0, "w": 0.5})
    coefs = pd.DataFrame({"estimate": [9.0, 1.0, 0.5, -0.5], "conf_low": [8.0, 0.5, -2.0, -1.0],
                          "conf_high": [10.0, 1.5, 1.0, 1.0]}, index=["Intercept", "x", "z", "w"])
    got = {m: v for m, v, _ in _coefficient_metrics(coefs, human)}
    # intercepts left out: mean|s| = (1 + 0.5 + 0.5) / 3, mean|h| = (2 + 1 + 0.5) / 3
    assert got["magnitude_ratio"] == pytest.approx(2.0 / 3.5, rel=1e-12)
    assert got["attenuation_slope"] == pytest.approx((2 - 0.5 - 0.25) / (4 + 1 + 0.25), rel=1e-12)
    assert got["coverage"] == pytest.approx(2 / 3)  # x = 2 lies outside [0.5, 1.5]


@pytest.fixture(scope="module")
def survey():
    df = load_misinfo()
    items = misinfo_item_names()
    sim = df[[i + "_llm" for i in items]].set_axis(items, axis=1)
    return df, sim, items


def test_fit_coefficients_matches_statsmodels_formula(survey):
    import statsmodels.formula.api as smf

    df, _, _ = survey
    d = df.assign(y=df["t01"].fillna(2.0))
    ours = fd.fit_coefficients("y ~ age + education + ideology", d)
    ref = smf.ols("y ~ age + education + ideology", d).fit()
    np.testing.assert_allclose(ours["estimate"], ref.params[ours.index], rtol=1e-9)
    np.testing.assert_allclose(ours["std_error"], ref.bse[ours.index], rtol=1e-9)
    with pytest.raises(InputError, match="missing values"):
        fd.fit_coefficients("t01 ~ age", df)
    with pytest.raises(InputError, match="party"):
        fd.fit_coefficients("y ~ age + party", d)


def test_structural_fidelity_exact_attenuation_and_coverage():
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"x": rng.normal(size=300), "g": rng.choice(["a", "b", "c"], size=300)})
    d["y"] = 1 + 2 * d["x"] + (d["g"] == "b") * 0.7 + rng.normal(size=300)
    human = fd.fit_coefficients("y ~ x + g", d)["estimate"]
    X = np.column_stack([np.ones(300), d["x"], d["g"] == "b", d["g"] == "c"]).astype(float)
    sim = 3.0 + 0.5 * (X[:, 1:] @ human.to_numpy()[1:])  # every effect exactly halved
    m, tab = fd.structural_fidelity("y ~ x + g", d, sim)
    assert m["attenuation_slope"] == pytest.approx(0.5, abs=1e-10)
    assert m["magnitude_ratio"] == pytest.approx(0.5, abs=1e-10)
    assert m["sign_agreement"] == 1.0
    hv, sv = human.to_numpy()[1:], 0.5 * human.to_numpy()[1:]
    assert m["lins_ccc"] == pytest.approx(fd.lins_ccc(hv, sv), abs=1e-10)
    # coverage from a Result, a tidy table or a dict; the intercept is not counted
    terms = list(tab.index)
    res = Result(estimate=tab["human"].to_numpy(), cov=np.diag(tab["human_se"].to_numpy() ** 2) * 1e-8,
                 terms=terms, method="test", estimand="ols", n_pilot=300, n_population=0)
    assert fd.structural_fidelity("y ~ x + g", d, sim, intervals=res)[0]["coverage"] == 1.0
    ints = {t: (v - 0.01, v + 0.01) for t, v in tab["simulated"].items()}
    assert fd.structural_fidelity("y ~ x + g", d, sim, intervals=ints)[0]["coverage"] == 0.0
    with pytest.raises(InputError, match="intervals"):
        fd.structural_fidelity("y ~ x + g", d, sim, intervals={"zzz": (0, 1)})


# ---------------------------------------------------------------------------------- individual


def test_pearson_mae_accuracy():
    h = [1.0, 2.0, 3.0, np.nan, 5.0]
    s = [1.5, 1.0, 4.0, 2.0, 4.0]
    ref = stats.pearsonr([1, 2, 3, 5], [1.5, 1, 4, 4])[0]
    assert fd.pearson_r(h, s) == pytest.approx(ref, rel=1e-12)
    assert fd.mean_absolute_error(h, s) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert fd.accuracy([1, 2, 3, 4], [1, 2, 4, 4]) == 0.75
    with pytest.raises(EstimationError, match="does not vary"):
        fd.pearson_r([1, 2, 3], [2, 2, 2])


def test_weighted_kappa_hand_and_sklearn():
    from sklearn.metrics import cohen_kappa_score

    # hand case, scores (0, 1), h = (0,0,1,1), s = (0,1,1,1): observed shares O(0,1) = 1/4, so the
    # weighted disagreement is 1/4; margins (1/2, 1/2) and (1/4, 3/4) give expected off-diagonal
    # shares 1/2 * 3/4 + 1/2 * 1/4 = 1/2; kappa = 1 - (1/4) / (1/2) = 1/2
    assert fd.weighted_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5)
    rng = np.random.default_rng(5)
    h = rng.integers(1, 5, size=400)
    s = np.clip(h + rng.integers(-1, 2, size=400), 1, 4)
    ref = cohen_kappa_score(h, s, weights="quadratic")
    assert fd.weighted_kappa(h, s) == pytest.approx(ref, rel=1e-12)
    assert fd.weighted_kappa(h, s, scores=[1, 2, 3, 4]) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(InputError, match="round"):
        fd.weighted_kappa([1, 2, 3], [1.5, 2, 3], scores=[1, 2, 3, 4])


def test_log_loss_and_brier():
    from sklearn.metrics import log_loss as sk_log_loss

    y = np.array([1, 3, 2, np.nan])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])
    hand = -(math.log(0.7) + math.log(0.6) + math.log(0.5)) / 3
    assert fd.log_loss(y, p) == pytest.approx(hand)
    assert fd.log_loss(y, p) == pytest.approx(sk_log_loss([1, 3, 2], p[:3], labels=[1, 2, 3]))
    brier = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.3**2 + 0.4**2) + (0.2**2 + 0.5**2 + 0.3**2)) / 3
    assert fd.brier_score(y, p) == pytest.approx(brier)
    assert fd.log_loss([1], [[0.0, 1.0]]) == math.inf  # no clipping


def test_scale_score_matches_item_scale():
    from rectify.llm.items import Scale

    df = load_misinfo().head(50)
    items = {it.name: it for it in misinfo_items()}
    t, f = misinfo_item_names("true"), misinfo_item_names("false")
    scale = Scale("discernment", [items[n] for n in t + f], signs=[1] * 18 + [-1] * 18)
    np.testing.assert_allclose(fd.scale_score(df, t, f), scale.score(df[t + f]), atol=1e-12)


# ---------------------------------------------------------------------------------- subgroups


def test_by_group_small_or_degenerate_groups_are_not_estimable_never_zero():
    g = np.array(["a"] * 30 + ["b"] * 5 + ["c"] * 25)
    h = np.r_[np.tile([1.0, 2, 3], 10), [1, 2, 3, 4, 4], np.full(25, 2.0)]
    s = h + 0.5
    out = fd.by_group(fd.pearson_r, g, h, s, min_n=20).set_index("group")
    assert out.loc["a", "value"] == pytest.approx(1.0)
    assert math.isnan(out.loc["b", "value"]) and "n=5 < min_n=20" in out.loc["b", "note"]
    assert math.isnan(out.loc["c", "value"]) and "does not vary" in out.loc["c", "note"]
    with pytest.raises(MissingCovariateError):
        fd.by_group(fd.pearson_r, [None] * 60, h, s)


# ------------------------------------------------------------------------ report on the survey


@pytest.fixture(scope="module")
def report(survey):
    df, sim, items = survey
    probs = {i: misinfo_llm_probs(df, i) for i in ("f01", "t01")}
    scales = {"discernment": (misinfo_item_names("true"), misinfo_item_names("false"))}
    return fd.fidelity_report(df, sim, items, formula=MISINFO_FORMULA, groups="ideology",
                              scales=scales, probabilities=probs)


def _val(rep, metric, item, group="all"):
    row = rep[(rep.metric == metric) & (rep.item == item) & (rep.group == group)]
    assert len(row) == 1
    return float(row["value"].iloc[0])


def test_report_recovers_planted_facts(report, survey):
    df, sim, _ = survey
    assert list(report.columns) == fd.REPORT_COLUMNS
    # attenuation < 1 and compressed variance, overall
    assert _val(report, "attenuation_slope", "discernment") < 0.7
    assert _val(report, "sd_ratio", fd.ITEM_MEAN) < 0.5
    # the structural axis agrees with the population OLS of the planted truth
    pop = misinfo_truth()["population"]
    keys = [k for k in pop["ols_human"] if k != "Intercept"]
    h = np.array([pop["ols_human"][k] for k in keys])
    s = np.array([pop["ols_llm"][k] for k in keys])
    assert _val(report, "attenuation_slope", "discernment") == pytest.approx(h @ s / (h @ h), rel=1e-9)
    assert _val(report, "lins_ccc", "discernment") == pytest.approx(fd.lins_ccc(h, s), rel=1e-9)
    assert _val(report, "magnitude_ratio", "discernment") == pytest.approx(np.abs(s).sum() / np.abs(h).sum(),
                                                                           rel=1e-9)
    # skewed marginals: false claims under-stated by the simulator
    assert _val(report, "mean_difference", "f03") == pytest.approx(
        df.loc[df.f03.notna(), "f03_llm"].mean() - df["f03"].mean(), rel=1e-9
    )
    assert _val(report, "mean_difference", "f03") < -0.2
    # the planted worst group is found on the individual axis
    summ = fd.group_summary(report).set_index(["metric", "item"])
    assert summ.loc[("pearson_r", "discernment"), "worst_group"] == "conservative"
    assert summ.loc[("weighted_kappa", fd.ITEM_MEAN), "worst_group"] == "conservative"
    assert summ.loc[("log_loss", fd.ITEM_MEAN), "worst_group"] == "conservative"
    assert summ.loc[("lins_ccc", "discernment"), "worst_group"] == "conservative"
    # within-group structural fits drop the grouping variable and say so
    note = report[(report.metric == "lins_ccc") & (report.group == "liberal")]["note"].iloc[0]
    assert "ideology[T.conservative]" in note
    # TV/JS: from probabilities where given, otherwise not estimable (never 0)
    assert _val(report, "total_variation", "f01") > 0
    tv = report[(report.metric == "total_variation") & (report.item == "f02") & (report.group == "all")]
    assert math.isnan(tv["value"].iloc[0]) and "not estimable" in tv["note"].iloc[0]


def test_report_small_group_not_estimable_and_deterministic(survey):
    df, sim, items = survey
    d = df.assign(tiny=np.where(np.arange(len(df)) < 10, "few", "many"))
    rep = fd.fidelity_report(d, sim, items[:3], formula="f01 ~ age + gender", groups=["tiny"])
    few = rep[rep.group == "few"]
    assert few["value"].isna().all() and few["note"].str.startswith("not estimable").all()
    # Item objects give the same table (their scores 1..4 are the option scale)
    rep2 = fd.fidelity_report(d, sim, misinfo_items()[:3], formula="f01 ~ age + gender", groups=["tiny"])
    pd.testing.assert_frame_equal(rep, rep2)


def test_report_bad_input(survey):
    df, sim, items = survey
    with pytest.raises(InputError, match="party"):
        fd.fidelity_report(df, sim, items[:2], formula="f01 ~ age + party")
    with pytest.raises(InputError, match="every human answer is missing"):
        fd.fidelity_report(df.assign(f01=np.nan), sim, items[:2])
    with pytest.raises(InputError, match="groups"):
        fd.fidelity_report(df, sim, items[:2], groups=["nope"])
    with pytest.raises(InputError, match="same index"):
        fd.fidelity_report(df, sim.iloc[::-1], items[:2])
    with pytest.raises(InputError, match="neither a scale nor a column"):
        fd.fidelity_report(df, sim, items[:2], formula="discernment ~ age")
    with pytest.raises(MissingCovariateError, match="age"):
        fd.fidelity_report(df.assign(age=df["age"].where(df.index > 0)), sim, items[:2], formula="f01 ~ age")


def test_group_summary_spread_with_infinite_ratios():
    """An SD ratio is infinite in a group whose humans all answer alike: the spread is then infinite
    (one such group) or 0 (all groups alike), never NaN with a RuntimeWarning (inf - inf)."""
    def rep(values):
        return pd.DataFrame({"axis": "marginal", "metric": "sd_ratio", "item": "q", "grouping": "g",
                             "group": list("abc")[: len(values)], "value": values, "n": 40, "note": ""})

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        one = fd.group_summary(rep([0.8, np.inf, 1.1])).iloc[0]
        both = fd.group_summary(rep([np.inf, np.inf])).iloc[0]
    assert one["spread"] == np.inf and one["worst_group"] == "b"
    assert both["spread"] == 0.0
    assert fd.group_summary(rep([0.8, 1.1])).iloc[0]["spread"] == pytest.approx(0.3, rel=1e-12)
