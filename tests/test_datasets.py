"""Tests of the bundled datasets (synthetic misinformation survey, ANES 1996)."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from rectify import datasets as ds
from rectify.errors import InputError, MissingCovariateError


@pytest.fixture(scope="module")
def survey() -> pd.DataFrame:
    return ds.load_misinfo()


def test_regenerating_with_the_seed_reproduces_the_shipped_file(survey):
    regen = ds.make_misinfo_survey()
    # byte-for-byte on the CSV text, and equal frames after loading
    assert ds._to_csv_text(regen) == ds._shipped_csv_text()
    pd.testing.assert_frame_equal(regen, survey)


def test_seed_controls_the_draw():
    a = ds.make_misinfo_survey(n=50, random_state=3)
    b = ds.make_misinfo_survey(n=50, random_state=np.random.default_rng(3))
    c = ds.make_misinfo_survey(n=50, random_state=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_layout_and_ranges(survey):
    names = ds.misinfo_item_names()
    assert names[:18] == [f"f{i:02d}" for i in range(1, 19)]
    assert names[18:] == [f"t{i:02d}" for i in range(1, 19)]
    assert list(survey.columns) == (
        ["respondent_id", "age", "gender", "education", "region", "ideology"]
        + names
        + [n + "_llm" for n in names]
    )
    assert survey["respondent_id"].tolist() == list(range(1, 1501))
    assert survey["age"].between(18, 90).all()
    assert list(survey["education"].cat.categories) == list(ds.EDUCATION)
    assert list(survey["ideology"].cat.categories) == ["liberal", "moderate", "conservative"]
    human = survey[names].to_numpy()
    ok = ~np.isnan(human)
    assert set(np.unique(human[ok])) == {1.0, 2.0, 3.0, 4.0}
    llm = survey[[n + "_llm" for n in names]].to_numpy()
    assert np.all((llm > 1) & (llm < 4))


def test_missingness_rate_and_dependence_on_covariates(survey):
    names = ds.misinfo_item_names()
    miss = survey[names].isna()
    per_item = miss.mean()
    assert 0.05 <= per_item.min() and per_item.max() <= 0.15
    # planted: older and less educated respondents more often "have not seen it"
    old = miss[survey["age"] >= 60].to_numpy().mean()
    young = miss[survey["age"] < 35].to_numpy().mean()
    assert old > young + 0.02
    low = miss[survey["education"] == "hs_or_less"].to_numpy().mean()
    high = miss[survey["education"] == "postgrad"].to_numpy().mean()
    assert low > high + 0.02


def test_missing_code_option(survey):
    coded = ds.load_misinfo(missing="code")
    assert (coded["f01"] == ds.MISINFO_MISSING_CODE).sum() == survey["f01"].isna().sum()
    with pytest.raises(InputError, match="missing code 9"):
        ds.misinfo_discernment(coded)
    with pytest.raises(InputError, match="'missing'"):
        ds.load_misinfo(missing="zero")


def test_planted_failures_of_the_simulator(survey):
    f = ds.misinfo_item_names("false")
    t = ds.misinfo_item_names("true")
    # skewed marginals: under-states false, over-states true claims (on average)
    assert (survey[[c + "_llm" for c in f]].mean().to_numpy() < survey[f].mean().to_numpy()).all()
    assert survey[[c + "_llm" for c in t]].mean().mean() > survey[t].mean().mean()
    # compressed variance on every item
    sd_ratio = survey[[c + "_llm" for c in f + t]].std().to_numpy() / survey[f + t].std().to_numpy()
    assert sd_ratio.max() < 0.5
    # worst group: conservatives' discernment is much less well predicted
    hum = ds.misinfo_discernment(survey, "human")
    sim = ds.misinfo_discernment(survey, "llm")
    r = {g: np.corrcoef(hum[survey.ideology == g], sim[survey.ideology == g])[0, 1] for g in ds.IDEOLOGY}
    assert r["conservative"] < 0.08 < 0.12 < min(r["liberal"], r["moderate"])


def test_simulator_sees_only_covariates_and_claims():
    """Same covariates, different person-specific traits: the simulator's answers do not move."""
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    _, traits = ds._covariates(300, rng_a)
    ds._covariates(300, rng_b)
    a_part = ds._covariate_part(*traits)
    ds._human_answers(a_part, traits, rng_a)  # one draw of the human traits ...
    for _ in range(3):  # ... and a different number of draws on the other stream
        ds._human_answers(a_part, traits, rng_b)
    state = np.random.default_rng(9)
    m1 = ds._simulator_location(a_part, traits, np.random.default_rng(state.integers(1 << 30)))
    m2 = ds._simulator_location(a_part, traits, np.random.default_rng(int(np.random.default_rng(9).integers(1 << 30))))
    np.testing.assert_array_equal(m1, m2)
    # without its own noise the simulator is a function of A (covariates and claim) and ideology
    sim = dict(ds._SIMULATOR)
    try:
        ds._SIMULATOR.update(noise_sd={g: 0.0 for g in ds.IDEOLOGY}, person_noise_sd={g: 0.0 for g in ds.IDEOLOGY},
                             item_bias_sd=0.0)
        m = ds._simulator_location(a_part, traits, np.random.default_rng(0))
    finally:
        ds._SIMULATOR.clear()
        ds._SIMULATOR.update(sim)
    ideo = traits[3]
    for g in range(3):
        rows = ideo == g
        dev = a_part[rows] - a_part[rows].mean(axis=0)
        att = ds._SIMULATOR["attenuation"][ds.IDEOLOGY[g]]
        np.testing.assert_allclose(m[rows] - m[rows].mean(axis=0), att * dev, atol=1e-12)


def _two_draw_ceiling_items(n: int, seed: int) -> dict:
    """Reference for the item ceilings by another route: Cov of two conditionally independent
    full answers (no quadrature), among those who saw the claim in draw 1."""
    rng = np.random.default_rng(seed)
    _, traits = ds._covariates(n, rng)
    a_part = ds._covariate_part(*traits)
    y1, seen1 = ds._human_answers(a_part, traits, rng)
    y2, _ = ds._human_answers(a_part, traits, rng)
    out = []
    for j in range(y1.shape[1]):
        a, b = y1[seen1[:, j], j], y2[seen1[:, j], j]
        out.append(np.cov(a, b)[0, 1] / np.var(a, ddof=1))  # the squared ceiling, unbiased
    return np.array(out)


def test_covariate_ceiling_agrees_with_a_two_draw_monte_carlo():
    c = ds.misinfo_covariate_ceiling()
    ref = _two_draw_ceiling_items(200_000, seed=11)
    names = ds.misinfo_item_names()
    mine = np.array([c["item"][nm]["all"] for nm in names])
    # on the squared scale each reference value has a Monte Carlo SE of about 0.0022, their mean 0.0004
    assert np.abs(mine**2 - ref).max() < 0.01
    assert abs(np.mean(mine**2) - ref.mean()) < 0.002
    assert c["item_mean"]["all"] == pytest.approx(mine.mean(), abs=1e-12)


def test_answer_moments_match_direct_integration():
    a = np.array([-2.0, 0.0, 0.7, 3.0])
    mean, var = ds._answer_moments(a)
    sd_r = np.hypot(ds._HUMAN["credulity"]["sd"], ds._HUMAN["discernment"]["sd"] / 2)
    r = np.linspace(-8 * sd_r, 8 * sd_r, 20001)
    dens = np.exp(-0.5 * (r / sd_r) ** 2)
    dens /= dens.sum()
    for i, av in enumerate(a):
        pmf = (ds._ordinal_probs(av + r, ds._HUMAN["thresholds"]) * dens[:, None]).sum(axis=0)
        k = np.arange(1, 5)
        assert mean[i] == pytest.approx(pmf @ k, abs=1e-5)
        assert var[i] == pytest.approx(pmf @ k**2 - (pmf @ k) ** 2, abs=1e-5)


def test_simulator_stays_below_the_covariate_ceiling(survey):
    c = ds.misinfo_covariate_ceiling()
    names = ds.misinfo_item_names()
    hum = ds.misinfo_discernment(survey, "human")
    sim = ds.misinfo_discernment(survey, "llm")
    for g in ("all",) + ds.IDEOLOGY:
        rows = np.ones(len(survey), bool) if g == "all" else (survey["ideology"] == g).to_numpy()
        r_disc = np.corrcoef(hum[rows], sim[rows])[0, 1]
        r_items = np.mean([survey.loc[rows, [nm, nm + "_llm"]].dropna().corr().iloc[0, 1] for nm in names])
        assert r_disc < c["discernment"][g] and r_items < c["item_mean"][g]
        # the conditional mean itself, estimated per person, reaches about the ceiling on these 1,500
        assert abs(c["realised"]["discernment"][g] - c["discernment"][g]) < 0.1
    # ideology matters: the pooled ceiling is above every within-group one
    assert c["discernment"]["all"] > max(c["discernment"][g] for g in ds.IDEOLOGY)
    assert 0.3 < c["discernment"]["all"] < 0.5 and 0.15 < c["item_mean"]["all"] < 0.25
    with pytest.raises(InputError, match="n_mc"):
        ds.misinfo_covariate_ceiling(n_mc=0)


def test_truth_matches_data_and_statsmodels(survey):
    import statsmodels.formula.api as smf

    truth = ds.misinfo_truth()
    assert truth["seed"] == ds.MISINFO_SEED
    assert truth["simulator"]["worst_group"] == ("ideology", "conservative")
    pop = truth["population"]
    assert pop["item_mean"]["t05"] == pytest.approx(survey["t05"].mean(), abs=1e-12)
    assert sum(pop["item_shares"]["f07"]) == pytest.approx(1.0)
    data = survey.assign(discernment=ds.misinfo_discernment(survey))
    fit = smf.ols(ds.MISINFO_FORMULA, data).fit()
    for k, v in fit.params.items():
        assert pop["ols_human"][k] == pytest.approx(v, abs=1e-12)
    # attenuation: the simulator's non-intercept coefficients are smaller (through-origin slope)
    keys = [k for k in pop["ols_human"] if k != "Intercept"]
    h = np.array([pop["ols_human"][k] for k in keys])
    s = np.array([pop["ols_llm"][k] for k in keys])
    assert 0.2 < (h @ s) / (h @ h) < 0.8
    # the planted discernment gap conservative < liberal is in the data
    by = pop["discernment_mean_by_ideology"]
    assert by["conservative"] < by["liberal"] - 0.1
    # mutating the returned dict does not change the module's parameters
    truth["simulator"]["attenuation"] = 99
    truth["covariate_ceiling"]["discernment"]["all"] = 99
    fresh = ds.misinfo_truth()
    assert fresh["simulator"]["attenuation"] == {"liberal": 0.5, "moderate": 0.5, "conservative": 0.25}
    assert fresh["covariate_ceiling"]["discernment"]["all"] < 1


def test_llm_probs_are_recovered_exactly():
    df = ds.make_misinfo_survey(n=40, random_state=7)
    p = ds.misinfo_llm_probs(df, "t03")
    assert p.shape == (40, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p @ np.arange(1, 5), df["t03_llm"], atol=2e-6)
    # against a closed form: location 0 gives logistic(0 - tau_k) exceedances
    tau = np.array(ds._HUMAN["thresholds"])
    exceed = 1 / (1 + np.exp(tau))
    one = pd.DataFrame({"f01_llm": [1 + exceed.sum()]})
    np.testing.assert_allclose(
        ds.misinfo_llm_probs(one, "f01")[0],
        [1 - exceed[0], exceed[0] - exceed[1], exceed[1] - exceed[2], exceed[2]],
        atol=1e-9,
    )
    with pytest.raises(InputError, match="f99_llm"):
        ds.misinfo_llm_probs(df, "f99")


def test_items_metadata_and_shipped_json():
    recs = ds.misinfo_items(as_dicts=True)
    assert len(recs) == 36
    assert sum(r["veracity"] == "false" for r in recs) == 18
    assert all(r["synthetic"] and r["missing_code"] == 9 for r in recs)
    ref = resources.files("rectify.data").joinpath(ds.MISINFO_ITEMS_FILE)
    assert json.loads(ref.read_text(encoding="utf-8")) == json.loads(ds._items_json_text())
    items = ds.misinfo_items()
    assert items[0].name == "f01" and items[0].options == ds.MISINFO_OPTIONS
    assert items[0].missing == (ds.MISINFO_MISSING_LABEL,)
    np.testing.assert_array_equal(items[0].encode(["Very accurate", ds.MISINFO_MISSING_LABEL]), [4.0, np.nan])


def test_draw_pilot_random_and_quota(survey):
    p1 = ds.draw_pilot(survey, 120, random_state=5)
    p2 = ds.draw_pilot(survey, 120, random_state=5)
    pd.testing.assert_frame_equal(p1, p2)
    assert p1.index.is_unique and p1.index.is_monotonic_increasing and len(p1) == 120
    q = ds.draw_pilot(survey, 100, random_state=1, by=["ideology", "gender"])
    counts = q.groupby(["ideology", "gender"], observed=True).size()
    share = survey.groupby(["ideology", "gender"], observed=True).size() / len(survey)
    # largest-remainder allocation: every cell within 1 of its exact quota, total exact
    assert (abs(counts - 100 * share) < 1).all() and counts.sum() == 100
    full = ds.draw_pilot(survey, len(survey), random_state=0)
    assert len(full) == len(survey)
    with pytest.raises(InputError, match="between 1 and len"):
        ds.draw_pilot(survey, 1501, random_state=0)
    with pytest.raises(InputError, match="not in df"):
        ds.draw_pilot(survey, 10, random_state=0, by="party")
    with pytest.raises(InputError, match="random_state"):
        ds.draw_pilot(survey, 10, random_state="seed")
    holes = survey.head(20).assign(ideology=lambda d: d["ideology"].where(d.index > 0))
    with pytest.raises(MissingCovariateError, match="ideology"):
        ds.draw_pilot(holes, 5, random_state=0, by="ideology")


def test_load_anes96_matches_statsmodels():
    from statsmodels.datasets import anes96

    raw = anes96.load_pandas().data
    a = ds.load_anes96()
    assert len(a) == 944
    np.testing.assert_array_equal(a["party_id"], raw["PID"])
    np.testing.assert_array_equal(a["self_lr"], raw["selfLR"])
    np.testing.assert_array_equal(a["income"], raw["income"])
    assert a.loc[a["party_id"] == 0, "party_id_label"].unique().tolist() == ["Strong Democrat"]
    assert a.loc[a["self_lr"] == 4, "self_lr_label"].unique().tolist() == ["Moderate"]
    assert a.loc[a["educ"] == 7, "educ_label"].unique().tolist() == ["PhD"]
    assert a["party_id_label"].cat.ordered
