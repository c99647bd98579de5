"""rectify.weighting against R's survey package (api data), plus the LLM-prediction auxiliary.

Reference values: tests/reference/survey_api/make_reference.R (R 4.x, survey 4.1.1), stored with
17 significant digits; the tests need no R.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rectify.errors import (
    ConfigError,
    ConvergenceError,
    InputError,
    MissingCovariateError,
    UnseenLevelError,
)
from rectify.result import Result
from rectify.weighting import CalibratedWeights, calibrate

REF = Path(__file__).parent / "reference" / "survey_api"
RTOL = 1e-8


@pytest.fixture(scope="module")
def api():
    s = pd.read_csv(REF / "apistrat.csv")
    s["comp_yes"] = (s["comp_imp"] == "Yes").astype(float)
    p = pd.read_csv(REF / "apipop.csv")
    return s, p, pd.read_csv(REF / "weights.csv"), pd.read_csv(REF / "estimates.csv")


KW = dict(design_weights="pw", strata="stype", fpc="fpc", tol=1e-13)
AUX = "~ stype + api99 + awards"


def _make(case, s, p):
    if case == "rake":
        return calibrate(s, p, vars=["stype", "sch_wide", "awards"], method="raking",
                         rake_variance="backfit", **KW)
    if case == "linear":
        return calibrate(s, p, formula="~ stype + api99", method="linear", **KW)
    if case == "raking":
        return calibrate(s, p, formula=AUX, method="raking", **KW)
    if case == "logit":
        return calibrate(s, p, formula=AUX, method="logit", bounds=(0.85, 1.15), **KW)
    if case == "truncated":
        return calibrate(s, p, formula=AUX, method="truncated", bounds=(0.85, 1.15), **KW)
    if case == "raking_bounded":
        return calibrate(s, p, formula=AUX, method="raking", bounds=(0.85, 1.15), **KW)
    if case == "raking_trim":
        return calibrate(s, p, formula=AUX, method="raking", trim=(0.9, 1.1), **KW)
    if case == "poststrat":
        return calibrate(s, p, vars=["sch_wide", "awards"], method="poststratify", **KW)
    lin = _make("linear", s, p)
    if case == "linear_trimweights":
        return lin.trim(lower=20, upper=40)
    if case == "linear_trimweights_upper":
        return lin.trim(upper=45)
    if case == "linear_trimweights_strict":
        return lin.trim(upper=45, strict=True)
    raise KeyError(case)


CASES = ["rake", "linear", "raking", "logit", "truncated", "raking_bounded", "raking_trim", "poststrat",
         "linear_trimweights", "linear_trimweights_upper", "linear_trimweights_strict"]


def _close(ours, theirs, rtol=RTOL):
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)


def _estimates(cw: CalibratedWeights):
    return {
        "mean": cw.mean(["api00", "ell"]),
        "total": cw.total("api00"),
        "shares": cw.shares("comp_imp"),
        "quantile": cw.quantile("api00", [0.25, 0.5]),
        "ols": cw.ols("api00 ~ ell + meals + mobility"),
        "logit": cw.logit("comp_yes ~ ell + meals"),
    }


@pytest.mark.parametrize("case", CASES)
def test_matches_r_survey(api, case):
    s, p, W, E = api
    cw = _make(case, s, p)
    _close(cw.weights, W[case])
    ref = E[E["case"] == case]
    for stat, res in _estimates(cw).items():
        r = ref[ref["statistic"] == stat]
        assert isinstance(res, Result)
        assert len(r) == len(res.estimate), stat
        _close(res.estimate, r["estimate"])
        _close(res.std_error, r["std_error"])


def test_r_bounds_are_on_g_weights(api):
    s, p, W, _ = api
    cw = _make("logit", s, p)
    g = cw.g
    assert 0.85 < g.min() and g.max() < 1.15
    tr = _make("truncated", s, p)
    assert tr.g.min() == pytest.approx(0.85, abs=1e-12)  # binding lower bound, as in R
    assert tr.diagnostics["max_margin_error"] < 1e-12


@pytest.mark.parametrize("kind", ["jkn", "boot"])
@pytest.mark.parametrize("meth,formula", [("linear", "~ stype + api99"), ("raking", AUX)])
def test_replicate_variance_matches_r(api, kind, meth, formula):
    s, p, _, E = api
    meta = pd.read_csv(REF / "rep_meta.csv")
    m = meta[meta["kind"] == kind]
    if kind == "jkn":
        extra = dict(variance="jackknife")
    else:
        D = pd.read_csv(REF / "repweights_boot.csv").to_numpy(float)
        extra = dict(replicate_factors=D, replicate_scale=(m["scale"].iloc[0], m["rscales"].to_numpy()))
    cw = calibrate(s, p, formula=formula, method=meth, **KW, **extra)
    ref = E[E["case"] == f"{kind}_{meth}"]
    r = ref[ref["statistic"] == "mean"]
    res = cw.mean(["api00", "ell"])
    _close(res.estimate, r["estimate"])
    _close(res.std_error, r["std_error"])
    if meth == "linear":
        r = ref[ref["statistic"] == "ols"]
        res = cw.ols("api00 ~ ell + meals + mobility")
        _close(res.estimate, r["estimate"])
        _close(res.std_error, r["std_error"])


def test_jackknife_scales_match_r(api):
    from rectify.estimators.survey_estimation import jkn_factors

    s, *_ = api
    meta = pd.read_csv(REF / "rep_meta.csv")
    F, rs, scale = jkn_factors(len(s), pd.factorize(s["stype"])[0], s["fpc"].to_numpy())
    assert F.shape == (200, 200) and scale == 1.0
    _close(np.sort(rs), np.sort(meta.loc[meta["kind"] == "jkn", "rscales"].to_numpy()))


def test_bootstrap_option_is_seeded_and_close_to_linearization(api):
    s, p, *_ = api
    a = calibrate(s, p, formula="~ stype + api99", method="linear", variance="bootstrap",
                  n_replicates=60, random_state=3, **KW).mean("api00")
    b = calibrate(s, p, formula="~ stype + api99", method="linear", variance="bootstrap",
                  n_replicates=60, random_state=3, **KW).mean("api00")
    lin = calibrate(s, p, formula="~ stype + api99", method="linear", **KW).mean("api00")
    assert a.std_error[0] == b.std_error[0]
    # 60 replicates: the bootstrap SE estimates the linearized one within ~30%
    assert 0.6 < a.std_error[0] / lin.std_error[0] < 1.5


def test_margins_equal_population_route_and_diagnostics(api):
    s, p, *_ = api
    margins = {v: p[v].value_counts().to_dict() for v in ["stype", "sch_wide", "awards"]}
    a = calibrate(s, margins=margins, design_weights="pw", tol=1e-13)
    b = calibrate(s, p, vars=["stype", "sch_wide", "awards"], design_weights="pw", tol=1e-13)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12)
    dg = a.diagnostics
    w = a.weights.to_numpy()
    assert dg["kish_deff"] == pytest.approx(len(w) * np.sum(w**2) / np.sum(w) ** 2)
    assert dg["ess"] == pytest.approx(len(w) / dg["kish_deff"])
    assert dg["weight_ratio"] == pytest.approx(w.max() / w.min())
    assert dg["max_margin_error"] < 1e-12
    tab = a.margin_table()
    np.testing.assert_allclose(tab["achieved"], tab["target"], rtol=1e-12)
    assert "Kish deff" in a.summary()


# --------------------------------------------------------------------------- LLM prediction auxiliary
def _synthetic(seed, N=20000, n=400):
    """A population whose pilot over-samples high-z people; y_hat is a biased LLM prediction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=N)
    ideology = np.where(z + rng.normal(size=N) > 0.5, "right", np.where(z < -0.5, "left", "centre"))
    y = 1.0 + z + rng.normal(scale=0.7, size=N)
    y_hat = 0.4 + 0.8 * z + rng.normal(scale=0.2, size=N)  # biased: mean 0.4 instead of 1
    y_hat_cat = pd.cut(y_hat, [-np.inf, -0.5, 0.4, 1.3, np.inf], labels=["1", "2", "3", "4"]).astype(str)
    pop = pd.DataFrame({"ideology": ideology, "y_hat": y_hat, "y_hat_cat": y_hat_cat})
    p_sel = np.exp(0.8 * z)
    take = rng.choice(N, size=n, replace=False, p=p_sel / p_sel.sum())
    pilot = pop.iloc[take].assign(y=y[take]).reset_index(drop=True)
    return pop, pilot, float(y.mean())


def test_llm_prediction_as_auxiliary_removes_pilot_bias():
    errs = {"naive": [], "demog": [], "yhat": [], "yhat_cat": []}
    cover = []
    for seed in range(40):
        pop, pilot, truth = _synthetic(seed)
        errs["naive"].append(pilot["y"].mean() - truth)
        d = calibrate(pilot, pop, vars=["ideology"]).mean("y")
        errs["demog"].append(d.estimate[0] - truth)
        r = calibrate(pilot, pop, formula="~ ideology + y_hat", method="linear").mean("y")
        errs["yhat"].append(r.estimate[0] - truth)
        lo, hi = r.conf_int()
        cover.append(lo[0] <= truth <= hi[0])
        c = calibrate(pilot, pop, vars=["ideology", "y_hat_cat"], method="raking").mean("y")
        errs["yhat_cat"].append(c.estimate[0] - truth)
    bias = {k: float(np.mean(v)) for k, v in errs.items()}
    # the pilot is badly biased; demographics alone only partly fix it; y_hat removes the bias
    assert bias["naive"] > 0.5
    assert abs(bias["yhat"]) < 0.05 * bias["naive"]
    assert abs(bias["yhat_cat"]) < 0.2 * bias["naive"]
    assert abs(bias["yhat"]) < abs(bias["demog"])
    # Monte-Carlo check of the interval (40 draws: a loose band)
    assert np.mean(cover) >= 0.85


def test_numeric_vars_alone_also_calibrate_the_count():
    """vars=[numeric] is GREG with an intercept (as R's calibrate(~ x)): the weights sum to N and the
    mean is the regression estimator ybar + b (Xbar_N - xbar) with b the pilot's OLS slope (closed form).
    Before the fix the weights matched only sum(x) and the mean was off by ~0.15 here."""
    rng = np.random.default_rng(11)
    N = 20_000
    x = rng.normal(size=N)
    y = np.clip(np.round(3 + x + rng.normal(size=N)), 1, 5)
    pop = pd.DataFrame({"y": y, "f": 3.5 + 0.5 * x})
    pilot = pop.sample(150, random_state=2)
    cw = calibrate(pilot, pop, vars=["f"], method="linear")
    assert cw.weights.sum() == pytest.approx(N, rel=1e-12)
    assert (cw.weights * pilot["f"]).sum() == pytest.approx(pop["f"].sum(), rel=1e-12)
    b = np.polyfit(pilot["f"], pilot["y"], 1)[0]
    reg = pilot["y"].mean() + b * (pop["f"].mean() - pilot["f"].mean())
    assert cw.mean("y").estimate[0] == pytest.approx(reg, abs=1e-10)
    same = calibrate(pilot, pop, formula="~ f", method="linear").mean("y")
    assert cw.mean("y").estimate[0] == pytest.approx(same.estimate[0], abs=1e-12)
    assert cw.mean("y").std_error[0] == pytest.approx(same.std_error[0], rel=1e-10)


# --------------------------------------------------------------------------- bad input
def _toy():
    s = pd.DataFrame({"a": ["x", "x", "y", "y", "z"], "b": ["u", "v", "u", "v", "v"],
                      "num": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    return s


def test_unseen_population_category_is_refused():
    s = _toy()
    pop = pd.DataFrame({"a": ["x", "y", "z", "w"], "num": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(UnseenLevelError, match="'a'.*'w'"):
        calibrate(s, pop, vars=["a"])
    with pytest.raises(UnseenLevelError):
        calibrate(s, pop, formula="~ a + num", method="linear")


def test_missing_values_are_refused():
    s = _toy()
    pop = pd.DataFrame({"a": ["x", None, "z"], "num": [1.0, 2.0, 3.0]})
    with pytest.raises(MissingCovariateError, match="'a'"):
        calibrate(s, pop, vars=["a"])
    with pytest.raises(MissingCovariateError):
        calibrate(s, pop, formula="~ a + num", method="linear")
    s2 = s.copy()
    s2.loc[0, "num"] = np.nan
    with pytest.raises(MissingCovariateError, match="'num'"):
        calibrate(s2, margins={"num": 10.0}, method="linear")


def test_margin_errors_name_margin_and_category():
    s = _toy()
    with pytest.raises(InputError, match=r"margin 'a', category 'z'.*population count 0"):
        calibrate(s, margins={"a": {"x": 5, "y": 5, "z": 0}})
    with pytest.raises(InputError, match="margins disagree"):
        calibrate(s, margins={"a": {"x": 5, "y": 5, "z": 5}, "b": {"u": 5, "v": 6}})
    with pytest.raises(InputError, match=r"sample categories \['z'\]"):
        calibrate(s, margins={"a": {"x": 5, "y": 5}})
    with pytest.raises(InputError, match="strictly positive"):
        calibrate(s, margins={"a": {"x": 5, "y": 5, "z": 5}}, design_weights=[1, 1, -1, 1, 1])
    with pytest.raises(InputError, match="missing"):
        calibrate(s, margins={"a": {"x": 5, "y": 5, "z": 5}}, design_weights=[1, 1, np.nan, 1, 1])


def test_positive_target_without_rows_is_refused():
    s = _toy()
    with pytest.raises(InputError, match=r"category 'w'.*no sample rows"):
        calibrate(s, margins={"a": {"x": 5, "y": 5, "z": 5, "w": 3}})


def test_infeasible_bounds_and_nonconvergence():
    s = _toy()
    with pytest.raises(InputError, match="infeasible"):
        calibrate(s, margins={"a": {"x": 10, "y": 2, "z": 2}}, method="logit", bounds=(0.5, 1.5),
                  max_iter=50)
    with pytest.raises(ConvergenceError, match="did not converge"):
        calibrate(s, margins={"a": {"x": 10, "y": 4, "z": 3}, "b": {"u": 2, "v": 15}}, max_iter=2)


def test_config_errors():
    s = _toy()
    with pytest.raises(ConfigError):
        calibrate(s, margins={"a": {"x": 1, "y": 1, "z": 1}}, method="bogus")
    with pytest.raises(ConfigError):
        calibrate(s)
    with pytest.raises(ConfigError):
        calibrate(s, pd.DataFrame({"a": ["x"]}), margins={"a": {"x": 1}})


def test_poststratify_cells_and_unseen_cell():
    s = _toy()
    pop = pd.DataFrame({"a": list("xxxyyyzzz"), "b": list("uvvuuvvvv")})
    cw = calibrate(s, pop, vars=["a", "b"], method="poststratify")
    # each sample cell gets its population count spread over its rows
    assert cw.weights.tolist() == [1.0, 2.0, 2.0, 1.0, 3.0]
    pop2 = pd.concat([pop, pd.DataFrame({"a": ["z"], "b": ["u"]})])
    with pytest.raises(UnseenLevelError, match="post-strata"):
        calibrate(s, pop2, vars=["a", "b"], method="poststratify")


def test_default_design_weights_make_g_relative_to_srs():
    pop, pilot, truth = _synthetic(0)
    cw = calibrate(pilot, pop, formula="~ ideology + y_hat", method="logit", bounds=(0.2, 5.0))
    dg = cw.diagnostics
    assert np.allclose(cw.design_weights_, len(pop) / len(pilot))
    assert 0.2 < dg["g_min"] and dg["g_max"] < 5.0
    assert cw.weights.sum() == pytest.approx(len(pop), rel=1e-10)
    assert dg["max_margin_error"] < 1e-10
    # the bounded estimator still removes most of the pilot's bias
    naive = pilot["y"].mean() - truth
    assert abs(cw.mean("y").estimate[0] - truth) < 0.2 * naive


def test_categorical_columns_rake_like_text_columns():
    """Category codes are used directly (issue 17): the same weights as the text columns, whatever the
    order of the categories or unused ones; a used category without a target is still refused."""
    rng = np.random.default_rng(17)
    n = 400
    a = rng.choice(["x", "y", "z"], size=n, p=[0.5, 0.3, 0.2])
    b = rng.choice(["u", "v"], size=n)
    margins = {"a": {"x": 300.0, "y": 400.0, "z": 300.0}, "b": {"u": 450.0, "v": 550.0}}
    text = pd.DataFrame({"a": a, "b": b})
    cat = pd.DataFrame({"a": pd.Categorical(a, categories=["z", "w", "x", "y"]),  # other order + unused level
                        "b": pd.Categorical(b, categories=["u", "v"])})
    w_text = calibrate(text, margins=margins).weights.to_numpy()
    w_cat = calibrate(cat, margins=margins).weights.to_numpy()
    np.testing.assert_allclose(w_cat, w_text, rtol=1e-12)
    for col, lv in (("a", ["x", "y", "z"]), ("b", ["u", "v"])):
        sums = pd.Series(w_cat).groupby(text[col].to_numpy()).sum()
        np.testing.assert_allclose(sums[lv].to_numpy(), [margins[col][k] for k in lv], rtol=1e-10)
    no_target = {"a": {"x": 300.0, "y": 700.0}, "b": margins["b"]}
    with pytest.raises(InputError, match=r"margin 'a'.*\['z'\]"):
        calibrate(cat, margins=no_target)
