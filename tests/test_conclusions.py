"""rectify.conclusions: the "What to conclude" findings on a hand-made table whose answers are known.

``example_table()`` (documented in its docstring) has, at n_pilot = 100 and over two repeats:
W1 normalised classical 0.03 ± 0.01, simulator 0.08 ± 0, ppi++ 0.025 ± 0.01, lora 0.04 ± 0.01;
coverage 0.95 for classical (width 0.30) and ppi++ (width 0.20); CCC 0.5 / 0.4 / 0.6 / 0.85 ± 0.05
(simulator ± 0) with attenuation slopes 0.9 / 0.3 / 0.95 / 0.9; r of the scale 0.2 ± 0 (simulator)
and 0.6 ± 0.1 (lora); conservatives worse by 0.02 in W1 and by 0.1 in r. At n_pilot = 50 the
W1 values and widths are 1.5 times larger.
"""

import math

import numpy as np
import pandas as pd
import pytest

from rectify import conclusions as cc
from rectify.errors import InputError


@pytest.fixture(scope="module")
def table():
    return cc.example_table()


def _flat(text):
    return " ".join(text.split())


def test_method_scores_mean_and_sd_over_repeats(table):
    s = cc.method_scores(table).set_index(["method", "key"])
    assert s.loc[("ppi++", "w1"), "mean"] == pytest.approx(0.025)
    assert s.loc[("ppi++", "w1"), "sd"] == pytest.approx(0.01)
    assert s.loc[("simulator", "w1"), "sd"] == pytest.approx(0.0)
    assert s.loc[("lora", "r"), "mean"] == pytest.approx(0.6) and s.loc[("lora", "r"), "sd"] == pytest.approx(0.1)
    assert int(s.loc[("lora", "r"), "n"]) == 2
    s50 = cc.method_scores(table, n_pilot=50).set_index(["method", "key"])
    assert s50.loc[("ppi++", "w1"), "mean"] == pytest.approx(0.0375)
    g = cc.method_scores(table, groups=True).set_index(["method", "key", "group"])
    assert g.loc[("lora", "r", "conservative"), "mean"] == pytest.approx(0.5)


def test_items_are_averaged_within_a_repeat_before_the_spread():
    rows = [("m", "prompting", 10, rep, "respondents", "individual", "pearson_r", item, "all", "all", v)
            for rep, item, v in [(0, "a", 0.2), (0, "b", 0.4), (1, "a", 0.4), (1, "b", 0.6)]]
    t = pd.DataFrame(rows, columns=cc.NEEDED)
    s = cc.method_scores(t).set_index("key")
    # per repeat 0.3 and 0.5: mean 0.4, SD sqrt(0.02) (not the SD of the four values)
    assert s.loc["r", "mean"] == pytest.approx(0.4)
    assert s.loc["r", "sd"] == pytest.approx(math.sqrt(0.02))


def test_structural_scores_prefer_the_methods_own_coefficients(table):
    extra = table[(table["method"] == "ppi++") & (table["metric"] == "lins_ccc")].assign(source="respondents",
                                                                                          value=0.99)
    s = cc.method_scores(pd.concat([table, extra], ignore_index=True)).set_index(["method", "key"])
    assert s.loc[("ppi++", "ccc"), "mean"] == pytest.approx(0.6)


def test_best_per_axis_known_answers(table):
    b = {f["axis"]: f for f in cc.best_per_axis(table)}
    m = b["marginal"]
    assert (m["best_family"], m["best_method"], m["runner_family"], m["runner_method"]) == (
        "rectification", "ppi++", "pilot only", "classical")
    assert m["mean"] == pytest.approx(0.025) and m["sd"] == pytest.approx(0.01)
    assert m["clear"] is False  # lead 0.005 < SD 0.01
    assert "within the spread over pilots" in m["text"] and "ppi++ 0.025 ± 0.010" in m["text"]
    s = b["structural"]
    assert (s["best_family"], s["best_method"], s["runner_family"]) == ("fine-tuning", "lora", "rectification")
    assert s["mean"] == pytest.approx(0.85) and s["sd"] == pytest.approx(0.05) and s["clear"] is True
    assert s["slope"] == pytest.approx(0.9) and s["ratio"] == pytest.approx(0.9)
    i = b["individual"]
    assert (i["best_family"], i["best_method"], i["runner_method"]) == ("fine-tuning", "lora", "simulator")
    assert i["mean"] == pytest.approx(0.6)
    v = b["intervals"]
    assert (v["best_family"], v["best_method"], v["runner_method"]) == ("rectification", "ppi++", "classical")
    assert v["mean"] == pytest.approx(0.20) and v["coverage"] == pytest.approx(0.95)


def test_invalid_intervals_do_not_win_however_narrow(table):
    b = {f["axis"]: f for f in cc.best_per_axis(table, thresholds={"coverage": 0.99})}
    assert b["intervals"]["best_method"] is None
    assert "no method's interval reached that coverage" in b["intervals"]["text"]
    # coverage threshold follows the level when not given: 0.99 intervals need >= 0.94 -> both valid at 0.95
    b = {f["axis"]: f for f in cc.best_per_axis(table, level=0.99)}
    assert b["intervals"]["best_method"] == "ppi++"
    # ppi++ under-covers: the wider but valid classical interval wins
    low = table.copy()
    low.loc[(low["method"] == "ppi++") & (low["metric"] == "mean_coverage"), "value"] = 0.85
    b = {f["axis"]: f for f in cc.best_per_axis(low)}
    assert b["intervals"]["best_method"] == "classical" and b["intervals"]["mean"] == pytest.approx(0.30)
    assert b["intervals"]["runner_method"] is None and "no other family gives it" in b["intervals"]["text"]


def test_tradeoffs_known_answers(table):
    t = cc.tradeoffs(table)
    fam = {f["family"]: f for f in t if f["family"]}
    assert {k: v[0] for k, v in fam["prompting"]["verdicts"].items()} == {
        "marginal": "fail", "intervals": None, "structural": "fail", "individual": "fail"}
    assert {k: v[0] for k, v in fam["fine-tuning"]["verdicts"].items()} == {
        "marginal": "pass", "intervals": None, "structural": "pass", "individual": "pass"}
    assert fam["pilot only"]["verdicts"]["individual"][0] is None
    assert fam["rectification"]["verdicts"]["intervals"] == ("pass", "ppi++", "coverage 0.950, width 0.200")
    summary = t[-1]
    assert summary["valid_intervals"] == ["pilot only", "rectification"]
    assert summary["per_person"] == ["prompting", "fine-tuning"]
    assert summary["faithful_marginals"] == ["pilot only", "rectification", "fine-tuning"]
    assert summary["balanced"] == ["fine-tuning"]
    assert summary["passes"] == {"pilot only": 2, "prompting": 0, "rectification": 2, "fine-tuning": 3}
    assert "none of them predicts each person" in summary["text"]
    assert "only fine-tuning reaches r >= 0.50" in summary["text"]
    # a stricter structural threshold takes the pass away from fine-tuning
    strict = cc.tradeoffs(table, thresholds={"ccc": 0.9})
    assert strict[-1]["passes"]["fine-tuning"] == 2


def test_worst_subgroup_per_family(table):
    w = {f["family"]: f for f in cc.worst_subgroups(table)}
    assert set(w) == {"pilot only", "prompting", "rectification", "fine-tuning"}
    assert (w["pilot only"]["key"], w["pilot only"]["group"]) == ("w1", "conservative")
    assert w["pilot only"]["value"] == pytest.approx(0.05) and w["pilot only"]["overall"] == pytest.approx(0.03)
    assert (w["fine-tuning"]["method"], w["fine-tuning"]["key"]) == ("lora", "r")
    assert w["fine-tuning"]["value"] == pytest.approx(0.5) and w["fine-tuning"]["best_value"] == pytest.approx(0.6)
    assert w["prompting"]["value"] == pytest.approx(0.1)
    assert "worst subgroup ideology = conservative" in w["rectification"]["text"]
    no_groups = table[table["grouping"] == "all"]
    assert cc.worst_subgroups(no_groups) == []


def test_trust_sentences(table):
    tr = {f["method"]: f for f in cc.trust(table)}
    assert tr["simulator"]["trusted"] == {"population shares": False, "regression coefficients": False,
                                          "per-person answers": False}
    assert tr["lora"]["trusted"] == {"population shares": True, "regression coefficients": True,
                                     "per-person answers": True}
    assert "Use its answers through a correction" in tr["simulator"]["text"] and "ppi++" in tr["simulator"]["text"]
    assert tr["lora"]["text"].startswith("lora (fine-tuning) can be trusted for population shares")
    strict = {f["method"]: f for f in cc.trust(table, thresholds={"r": 0.7})}
    assert strict["lora"]["trusted"]["per-person answers"] is False
    assert "not for per-person answers (Pearson r (scale) 0.600 < 0.70)" in strict["lora"]["text"]
    none = cc.trust(table[~table["family"].isin(cc.SIMULATOR_FAMILIES)])
    assert none[0]["method"] is None and "No simulator" in none[0]["text"]


def test_conclusions_order_setting_and_text(table):
    found = cc.conclusions(table)
    kinds = [f["kind"] for f in found]
    assert kinds == ["setting"] + ["best"] * 4 + ["tradeoff"] * 5 + ["worst_subgroup"] * 4 + ["trust"] * 2
    assert found[0]["n_pilot"] == 100 and found[0]["repeats"] == 2 and found[0]["thresholds"]["coverage"] == 0.9
    assert "the largest of 50, 100" in found[0]["text"]
    at50 = cc.conclusions(table, n_pilot=50)
    assert "chosen from 50, 100" in at50[0]["text"]
    text = cc.conclusions_text(table)
    heads = ["What to conclude", "Best per axis", "Trade-offs between families", "Worst subgroup per family",
             "Can the simulator be trusted?"]
    pos = [text.index(h) for h in heads]
    assert pos == sorted(pos)
    flat = _flat(text)
    for f in found:
        assert _flat(f["text"]) in flat


def test_bad_inputs(table):
    with pytest.raises(InputError, match="Comparison or its tidy table"):
        cc.conclusions([1, 2])
    with pytest.raises(InputError, match=r"lacks the columns \['family'\]"):
        cc.conclusions(table.drop(columns="family"))
    with pytest.raises(InputError, match="empty"):
        cc.conclusions(table.iloc[:0])
    with pytest.raises(InputError, match="unknown keys"):
        cc.conclusions(table, thresholds={"w1": 0.1})
    with pytest.raises(InputError, match="n_pilot"):
        cc.conclusions(table, n_pilot=75)
    with pytest.raises(InputError, match="level"):
        cc.conclusions(table, level=1.5)


def test_numbers_agree_with_a_real_comparison():
    from rectify.comparison import compare
    from rectify.demo import comparison_frame

    cmp = compare(comparison_frame(), ["f01", "t01"], methods=["classical", "simulator", "ppi++"], pilot_sizes=[80],
                  repeats=2, groups="ideology", formula="disc ~ age + ideology",
                  scales={"disc": (["t01"], ["f01"])}, probabilities="{item}_p{k}", random_state=2, progress=False)
    from rectify.comparison import headline

    head = headline(cmp.table, None, list(cmp.methods), numeric=True)
    b = {f["axis"]: f for f in cc.best_per_axis(cmp)}
    w1 = head["W1 (norm.)"].astype(float)
    assert b["marginal"]["best_method"] == w1.idxmin()
    assert b["marginal"]["mean"] == pytest.approx(w1.min(), rel=1e-12)
    assert b["individual"]["best_method"] == "simulator"  # the only per-person method here
    assert b["individual"]["mean"] == pytest.approx(float(head.loc["simulator", "r (scale)"]), rel=1e-12)
    sims = {f["method"] for f in cc.trust(cmp)}
    assert sims == {"simulator"}
    assert np.isfinite(b["structural"]["mean"])
