"""rectify.compare and rectify.registry: metrics against hand computations, the planted facts of the
synthetic survey, determinism, checkpoint/resume, guarded registration and bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from rectify import registry
from rectify.comparison import ITEM_MEAN, compare, draw_cell_pilot
from rectify.datasets import MISINFO_FORMULA, misinfo_item_names
from rectify.demo import comparison_frame
from rectify.errors import ConfigError, MissingCovariateError

ITEMS = ["f01", "f05", "t01", "t09"]
SCALES = {"disc": (["t01", "t09"], ["f01", "f05"])}
FORMULA = "disc ~ age + gender + education + ideology"


@pytest.fixture(scope="module")
def frame():
    return comparison_frame()


@pytest.fixture(scope="module")
def base(frame):
    return compare(frame, ITEMS, methods=["classical", "simulator", "ppi++"], pilot_sizes=[150], repeats=2,
                   groups="ideology", formula=FORMULA, scales=SCALES, probabilities="{item}_p{k}",
                   random_state=7, progress=False)


def _val(table, **kw):
    sel = table
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    return sel["value"].to_numpy(float)


def test_classical_metrics_match_hand_computation(frame, base):
    pilot = draw_cell_pilot(frame, 150, 0, 7)
    h_pop = frame["f01"].dropna().to_numpy()
    h_pil = pilot["f01"].dropna().to_numpy()
    p = np.array([(h_pop == k).mean() for k in (1, 2, 3, 4)])
    q = np.array([(h_pil == k).mean() for k in (1, 2, 3, 4)])
    t = base.table[(base.table["method"] == "classical") & (base.table["repeat"] == 0)
                   & (base.table["grouping"] == "all") & (base.table["item"] == "f01")]
    assert _val(t, metric="mean_difference")[0] == pytest.approx(h_pil.mean() - h_pop.mean(), abs=1e-12)
    assert _val(t, metric="total_variation")[0] == pytest.approx(0.5 * np.abs(p - q).sum(), abs=1e-12)
    w1 = np.abs(np.cumsum(p) - np.cumsum(q))[:-1].sum() / 3
    assert _val(t, metric="wasserstein1_norm")[0] == pytest.approx(w1, abs=1e-12)
    # scipy's Wasserstein distance of the two samples agrees (normalised by K - 1 = 3)
    from scipy.stats import wasserstein_distance

    assert w1 == pytest.approx(wasserstein_distance(h_pop, h_pil) / 3, abs=1e-12)
    sd_ratio = h_pil.std() / h_pop.std()
    assert _val(t, metric="sd_ratio")[0] == pytest.approx(sd_ratio, rel=1e-9)


def test_structural_estimate_metrics_against_statsmodels(frame, base):
    import statsmodels.formula.api as smf

    from rectify.fidelity import attenuation_slope, lins_ccc, scale_score

    d = frame.assign(disc=scale_score(frame, *SCALES["disc"])).dropna(subset=["disc"])
    human = smf.ols(FORMULA, d).fit().params.drop("Intercept")
    pilot = draw_cell_pilot(frame, 150, 0, 7)
    dp = pilot.assign(disc=scale_score(pilot, *SCALES["disc"])).dropna(subset=["disc"])
    fit = smf.ols(FORMULA, dp).fit().params.drop("Intercept")
    t = base.table[(base.table["method"] == "classical") & (base.table["repeat"] == 0)
                   & (base.table["axis"] == "structural")]
    assert _val(t, metric="attenuation_slope")[0] == pytest.approx(attenuation_slope(human, fit[human.index]), rel=1e-6)
    assert _val(t, metric="lins_ccc")[0] == pytest.approx(lins_ccc(human, fit[human.index]), rel=1e-6)


def test_same_seed_same_results(frame, base):
    again = compare(frame, ITEMS, methods=["classical", "simulator", "ppi++"], pilot_sizes=[150], repeats=2,
                    groups="ideology", formula=FORMULA, scales=SCALES, probabilities="{item}_p{k}",
                    random_state=7, progress=False)
    pd.testing.assert_frame_equal(base.table, again.table)
    pd.testing.assert_frame_equal(base.estimates, again.estimates)
    # the repeats are different pilots
    a = _val(base.table, method="classical", repeat=0, metric="mean_difference", item="f01", grouping="all")
    b = _val(base.table, method="classical", repeat=1, metric="mean_difference", item="f01", grouping="all")
    assert a[0] != b[0]


def test_planted_facts_are_recovered(frame):
    items = misinfo_item_names()
    cmp = compare(frame, items, methods=["simulator", "ppi++"], pilot_sizes=[200], repeats=1, groups="ideology",
                  formula=MISINFO_FORMULA,
                  scales={"discernment": (misinfo_item_names("true"), misinfo_item_names("false"))},
                  probabilities="{item}_p{k}", random_state=3, progress=False)
    t = cmp.table
    sim = t[(t["method"] == "simulator") & (t["grouping"] == "all")]
    # attenuation < 1 and compressed variance (per-person expected scores)
    assert _val(sim, source="respondents", metric="attenuation_slope")[0] < 0.7
    assert _val(sim, source="estimate", metric="attenuation_slope")[0] < 0.7
    assert _val(sim, source="respondents", metric="sd_ratio", item=ITEM_MEAN)[0] < 0.5
    # the planted worst group is found: individual fidelity is lowest for conservatives
    grp = t[(t["method"] == "simulator") & (t["grouping"] == "ideology") & (t["metric"] == "pearson_r")]
    assert grp.loc[grp["value"].idxmin(), "group"] == "conservative"
    # rectification shrinks the marginal error
    err = {m: _val(t, method=m, source="estimate", metric="mean_abs_difference", item=ITEM_MEAN, grouping="all")[0]
           for m in ("simulator", "ppi++")}
    assert err["ppi++"] < 0.5 * err["simulator"]


@pytest.mark.parametrize("method", ["greg", "raking", "bayes-chain", "covariates"])
def test_other_families_adapters(frame, method):
    assert method in registry.available(), f"{method}: {registry.unavailable().get(method)}"
    cmp = compare(frame, ["f01", "t01"], methods=[method, "simulator"], pilot_sizes=[200], repeats=1,
                  groups="ideology", probabilities="{item}_p{k}", covariates=["age", "education", "ideology"],
                  random_state=2, progress=False)
    assert cmp.failures.empty, cmp.failures.to_dict("records")
    est = cmp.estimates[(cmp.estimates["method"] == method) & (cmp.estimates["grouping"] == "all")]
    shares = est[est["term"].str.startswith("share:")].groupby("item")["estimate"].sum()
    np.testing.assert_allclose(shares.to_numpy(), 1.0, atol=1e-6)
    t = cmp.table
    err_m = _val(t, method=method, source="estimate", metric="mean_abs_difference", item=ITEM_MEAN, grouping="all")[0]
    err_s = _val(t, method="simulator", source="estimate", metric="mean_abs_difference", item=ITEM_MEAN,
                 grouping="all")[0]
    assert err_m < 0.15 < err_s  # the simulator's planted bias (~0.25 on the mean) is not carried over


def test_checkpoint_resume_does_not_repeat_work(frame, tmp_path):
    calls = []

    def counting(fr, pilot, spec, rng):
        calls.append(len(pilot))
        return registry.get("classical").fn(fr, pilot, spec, rng)

    registry.register(registry.Method("counting-test", "pilot only", counting, default=False), replace=True)
    kw = dict(methods=["counting-test"], pilot_sizes=[60, 80], repeats=2, random_state=5, progress=False,
              checkpoint=str(tmp_path / "ck"))
    first = compare(frame, ["f01"], **kw)
    assert len(calls) == 4
    second = compare(frame, ["f01"], **kw)
    assert len(calls) == 4  # every cell came from the checkpoint
    pd.testing.assert_frame_equal(first.table, second.table, check_dtype=False)
    pd.testing.assert_frame_equal(first.estimates, second.estimates, check_dtype=False)
    # a larger run only computes the new cells
    compare(frame, ["f01"], **{**kw, "repeats": 3})
    assert len(calls) == 6
    with pytest.raises(ConfigError, match="another comparison"):
        compare(frame, ["t01"], **kw)


def test_failing_method_is_recorded_not_raised(frame):
    def broken(fr, pilot, spec, rng):
        raise RuntimeError("boom")

    registry.register(registry.Method("broken-test", "pilot only", broken, default=False), replace=True)
    with pytest.warns(RuntimeWarning, match="boom"):
        cmp = compare(frame, ["f01"], methods=["broken-test", "classical"], pilot_sizes=[50], repeats=1,
                      random_state=1, progress=False)
    assert cmp.failures["error"].str.contains("boom").all()
    assert set(cmp.table["method"]) == {"classical"}


def test_guarded_registration_records_the_reason():
    def loader():
        raise ImportError("No module named 'rectify.not_there'")

    registry._guarded("ghost-test", "bayesian", loader, "never loads")
    assert "ghost-test" not in registry.available()
    assert "not_there" in registry.unavailable()["ghost-test"]
    with pytest.raises(ConfigError, match="not available here"):
        registry.get("ghost-test")


def test_small_group_is_not_estimable(frame):
    f = frame.copy()
    f["tiny"] = np.where(np.arange(len(f)) < 10, "few", "many")
    cmp = compare(f, ["f01"], methods=["simulator"], pilot_sizes=[100], repeats=1, groups="tiny",
                  probabilities="{item}_p{k}", random_state=1, progress=False)
    few = cmp.table[(cmp.table["group"] == "few") & (cmp.table["item"] == "f01")]
    assert few["value"].isna().all()
    assert few["note"].str.startswith("not estimable").all()


@pytest.mark.parametrize("kwargs, match", [
    ({"methods": ["no-such-method"]}, "unknown method"),
    ({"formula": "f01 ~ age + shoe_size"}, "shoe_size"),
    ({"pilot_sizes": [50, 5000]}, "5000"),
    ({"groups": "planet"}, "planet"),
    ({"predicted": "{item}_gpt"}, "f01_gpt"),
    ({"formula": "nothing ~ age"}, "response"),
])
def test_bad_input_gives_clear_errors(frame, kwargs, match):
    args = dict(methods=["classical"], pilot_sizes=[50], repeats=1, progress=False)
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        compare(frame, ["f01"], **args)


def test_item_without_human_answers_and_missing_group_values(frame):
    f = frame.assign(f01=np.nan)
    with pytest.raises(ConfigError, match="every human answer is missing"):
        compare(f, ["f01"], methods=["classical"], pilot_sizes=[50], repeats=1, progress=False)
    g = frame.assign(grp=np.where(np.arange(len(frame)) == 3, None, "a"))
    with pytest.raises(MissingCovariateError, match="grp"):
        compare(g, ["t01"], methods=["classical"], pilot_sizes=[50], repeats=1, groups="grp", progress=False)


def test_summary_spread_over_repeats(base):
    s = base.summary()
    row = s[(s["method"] == "classical") & (s["metric"] == "mean_difference") & (s["item"] == "f01")
            & (s["grouping"] == "all")].iloc[0]
    vals = _val(base.table, method="classical", metric="mean_difference", item="f01", grouping="all")
    assert row["mean"] == pytest.approx(vals.mean())
    assert row["sd"] == pytest.approx(vals.std(ddof=1))
    assert int(row["n_repeats"]) == 2
    assert not math.isnan(row["sd"])


def test_prompting_factory_with_a_fake_backend(frame):
    from rectify.datasets import misinfo_items
    from rectify.llm.base import Scores

    class Constant:
        """Raw option probabilities 0.05, 0.1, 0.15, 0.2 (mass 0.5) for every prompt."""

        def __init__(self):
            self.prompts = 0

        def score(self, prompts):
            self.prompts += len(prompts)
            raw = np.tile([0.05, 0.1, 0.15, 0.2], (len(prompts), 1))
            return Scores(raw, ["ok"] * len(prompts), [None] * len(prompts))

    backend = Constant()
    methods = registry.prompting_methods(backend, misinfo_items(), prefix="const", register_them=False)
    for m in methods[:2]:
        registry.register(m, replace=True)
    cmp = compare(frame, ["f01"], methods=["const-zero-shot", "const-zero-shot+ppi++"], pilot_sizes=[100],
                  repeats=1, covariates=["age", "gender", "ideology"], random_state=1, progress=False)
    assert backend.prompts == 2 * len(frame)
    e = cmp.estimates[(cmp.estimates["method"] == "const-zero-shot") & (cmp.estimates["term"] != "mean")]
    np.testing.assert_allclose(e["estimate"], [0.1, 0.2, 0.3, 0.4])  # renormalised over the options
    t = cmp.table
    err = {m: _val(t, method=m, metric="mean_abs_difference", item=ITEM_MEAN)[0] for m in
           ("const-zero-shot", "const-zero-shot+ppi++")}
    assert err["const-zero-shot+ppi++"] < err["const-zero-shot"]


def test_planning_table_from_the_first_pilot(frame, base):
    from rectify.planning import effective_sample_size

    plan = base.meta["planning"].set_index("item")
    pilot = draw_cell_pilot(frame, 150, 0, 7)
    ok = pilot["t01"].notna()
    rho = np.corrcoef(pilot.loc[ok, "t01"], pilot.loc[ok, "t01_llm"])[0, 1]
    assert plan.loc["t01", "rho"] == pytest.approx(rho)
    assert plan.loc["t01", "n_eff"] == pytest.approx(effective_sample_size(int(ok.sum()), rho, len(frame) - 150))
    assert (plan["needed_ppi++"] <= plan["needed_classical"]).all()
