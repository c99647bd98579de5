"""CalibrationWeighter (scikit-learn-style wrapper) and the small-sample variance option.

The weighter is thin: its weights and estimates must equal those of ``rectify.calibrate`` (which
the R reference tests in test_weighting.py pin to R's survey package), and it must follow the
scikit-learn conventions that apply to a weighting class (see the module docstring of
rectify.estimators.calibration_sklearn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from rectify.errors import ConfigError, EstimationError, InputError
from rectify.estimators.calibration_sklearn import CalibrationWeighter
from rectify.estimators.survey_estimation import PostStratStep, SurveyDesign, survey_mean
from rectify.weighting import calibrate

REF = Path(__file__).parent / "reference" / "survey_api"


@pytest.fixture(scope="module")
def api():
    s = pd.read_csv(REF / "apistrat.csv")
    p = pd.read_csv(REF / "apipop.csv")
    return s, p, pd.read_csv(REF / "weights.csv"), pd.read_csv(REF / "estimates.csv")


def test_weighter_reproduces_r_through_calibrate(api):
    s, p, W, E = api
    w = CalibrationWeighter(method="logit", bounds=(0.85, 1.15), formula="~ stype + api99 + awards", tol=1e-13)
    w.fit(s, population=p, design_weights="pw", strata="stype", fpc="fpc")
    np.testing.assert_allclose(w.weights_, W["logit"], rtol=1e-8)
    ref = E[(E["case"] == "logit") & (E["statistic"] == "mean") & (E["term"] == "api00")]
    r = w.estimate("api00")
    np.testing.assert_allclose(r.estimate, ref["estimate"], rtol=1e-8)
    np.testing.assert_allclose(r.std_error, ref["std_error"], rtol=1e-8)
    # learned attributes agree with the object the weighter wraps
    np.testing.assert_allclose(w.g_, w.weights_ / w.design_weights_, rtol=1e-14)
    assert 0.85 <= w.diagnostics_["g_min"] and w.diagnostics_["g_max"] <= 1.15
    assert w.diagnostics_["max_margin_error"] < 1e-10
    assert list(w.margin_table_["achieved"].round(6)) == list(w.margin_table_["target"].round(6))
    assert w.n_features_in_ == s.shape[1] and list(w.feature_names_in_) == list(s.columns)


def test_weighter_equals_calibrate_for_margins_and_shares():
    rng = np.random.default_rng(0)
    s = pd.DataFrame({"g": rng.choice(["a", "b", "c"], 80), "x": rng.gamma(2.0, 1.0, 80)})
    s["y"] = s["x"] + rng.normal(size=80)
    s["k"] = rng.choice(["lo", "hi"], 80)
    margins = {"g": {"a": 300, "b": 500, "c": 200}, "x": 2100.0}
    w = CalibrationWeighter(method="linear").fit(s, margins=margins)
    cw = calibrate(s, margins=margins, method="linear")
    np.testing.assert_array_equal(w.weights_, cw.weights.to_numpy())
    np.testing.assert_array_equal(w.shares("k").estimate, cw.shares("k").estimate)
    np.testing.assert_array_equal(w.mean("y").std_error, cw.mean("y").std_error)
    out = w.fit_transform(s, margins=margins)
    np.testing.assert_array_equal(out["weight"].to_numpy(), cw.weights.to_numpy())
    assert float(out["weight"].sum()) == pytest.approx(1000.0, rel=1e-12)
    assert w.estimate("y", "total").estimate[0] == pytest.approx(cw.total("y").estimate[0], rel=1e-14)


def test_sklearn_conventions():
    w = CalibrationWeighter(method="logit", bounds=(0.5, 2.0), trim=None)
    assert w.get_params()["bounds"] == (0.5, 2.0)
    c = clone(w).set_params(method="raking", bounds=None)
    assert c.get_params()["method"] == "raking" and w.get_params()["method"] == "logit"
    assert not hasattr(w, "weights_")
    with pytest.raises(NotFittedError):
        w.transform(pd.DataFrame({"g": ["a"]}))
    s = pd.DataFrame({"g": ["a", "a", "b"], "y": [1.0, 2.0, 3.0]})
    fitted = CalibrationWeighter().fit(s, margins={"g": {"a": 2, "b": 2}})
    assert isinstance(fitted, CalibrationWeighter)
    with pytest.raises(InputError, match="calibrated on 3 rows"):
        fitted.transform(s.iloc[:2])
    with pytest.raises(InputError, match="pandas DataFrame"):
        CalibrationWeighter().fit(s.to_numpy(), margins={"g": {"a": 2, "b": 2}})
    with pytest.raises(ConfigError, match="'vars'"):
        CalibrationWeighter().fit(s, population=s)
    with pytest.raises(ConfigError, match="set vars=None"):
        CalibrationWeighter(vars=["g"]).fit(s, margins={"g": {"a": 2, "b": 2}})
    with pytest.raises(ConfigError, match="estimand"):
        fitted.estimate("y", "median")


# --------------------------------------------------------------------------- small_sample option
def _strat_sample(seed=4):
    rng = np.random.default_rng(seed)
    g = np.repeat(["a", "b", "c"], [30, 12, 6])
    y = rng.normal(size=g.size) + (g == "b") * 2.0
    return pd.DataFrame({"g": g, "y": y}), {"a": 500.0, "b": 300.0, "c": 200.0}


def test_small_sample_hc2_poststratified_mean_is_the_stratified_formula():
    s, counts = _strat_sample()
    n = len(s)
    # textbook stratified variance sum_h W_h^2 s_h^2 / n_h (times n / (n - 1) for the overall
    # with-replacement centring), df = n - H
    Wh = pd.Series(counts) / sum(counts.values())
    grp = s.groupby("g")["y"]
    v = float((Wh**2 * grp.var(ddof=1) / grp.size()).sum()) * n / (n - 1)
    for method in ("poststratify", "linear", "raking"):
        if method == "poststratify":
            cw = calibrate(s, margins={"g": pd.Series(counts)}, method=method, small_sample="hc2")
        else:
            cw = calibrate(s, margins={"g": counts}, method=method, small_sample="hc2")
        r = cw.mean("y")
        assert r.std_error[0] == pytest.approx(np.sqrt(v), rel=1e-10), method
        assert r.df[0] == n - 3
        lo, hi = r.conf_int()
        assert hi[0] - lo[0] == pytest.approx(2 * stats.t.ppf(0.975, n - 3) * np.sqrt(v), rel=1e-10)
        # hc3 divides each squared residual by (1 - h)^2 = ((n_h - 1) / n_h)^2 instead
        v3 = float((Wh**2 * grp.var(ddof=1) / (grp.size() - 1)).sum()) * n / (n - 1)
        r3 = calibrate(s, margins={"g": pd.Series(counts) if method == "poststratify" else counts},
                       method=method, small_sample="hc3").mean("y")
        assert r3.std_error[0] == pytest.approx(np.sqrt(v3), rel=1e-10), method
        # the default stays R's: no leverage correction, normal intervals
        r0 = calibrate(s, margins={"g": pd.Series(counts) if method == "poststratify" else counts},
                       method=method).mean("y")
        assert r0.df is None and r0.std_error[0] < r.std_error[0] < r3.std_error[0]


def test_small_sample_on_the_core_design_and_its_limits():
    s, counts = _strat_sample()
    cell = pd.factorize(s["g"], sort=True)[0]
    d = np.full(len(s), 1000.0 / len(s))
    t = np.array([counts[k] for k in ("a", "b", "c")])
    w = d * (t / np.bincount(cell, weights=d))[cell]
    des = SurveyDesign(weights=w, steps=(PostStratStep(cell, d, w),), small_sample="hc2")
    assert des.calibration_rank() == 3 and des.mean_df() == len(s) - 3
    via_api = calibrate(s, margins={"g": pd.Series(counts)}, method="poststratify", small_sample="hc2")
    assert survey_mean(s["y"].to_numpy(), des).std_error[0] == pytest.approx(
        via_api.mean("y").std_error[0], rel=1e-12)
    with pytest.raises(InputError, match="small_sample"):
        SurveyDesign(weights=w, small_sample="hc9")
    with pytest.raises(InputError, match="clustered"):
        SurveyDesign(weights=w, clusters=np.arange(len(s)) // 2, small_sample="hc3")
    with pytest.raises(ConfigError, match="replicate"):
        calibrate(s, margins={"g": counts}, variance="jackknife", small_sample="hc3")
    with pytest.raises(InputError, match="means, totals"):
        calibrate(s.assign(x=np.arange(len(s), dtype=float)), margins={"g": counts},
                  small_sample="hc3").ols("y ~ x")
    # a category carried by a single row has leverage 1: refused, not a silent zero variance
    one = pd.concat([s, pd.DataFrame({"g": ["d"], "y": [0.0]})], ignore_index=True)
    with pytest.raises(EstimationError, match="leverage 1"):
        calibrate(one, margins={"g": {**counts, "d": 10.0}}, small_sample="hc3").mean("y")


def test_xlogit_share_intervals_match_r_svyciprop(api):
    s, p, _, _ = api
    x = pd.read_csv(REF / "xlogit.csv")  # make_xlogit.R
    w = CalibrationWeighter(method="linear", formula="~ stype + api99", tol=1e-13)
    w.fit(s, population=p, design_weights="pw", strata="stype", fpc="fpc")
    r = w.shares("comp_imp", interval="xlogit")
    assert list(r.terms) == ["No", "Yes"] and r.diagnostics["interval"] == "xlogit"
    for level in (0.95, 0.9):
        lo, hi = r.conf_int(level)
        ref = x[x["level"] == level].set_index("term").loc[["No", "Yes"]]
        np.testing.assert_allclose(r.estimate, ref["estimate"], rtol=1e-8)
        np.testing.assert_allclose(lo, ref["conf_low"], rtol=1e-8)
        np.testing.assert_allclose(hi, ref["conf_high"], rtol=1e-8)
    # the default stays the symmetric Wald interval of R's svymean
    lo, hi = w.shares("comp_imp").conf_int()
    np.testing.assert_allclose(hi - r.estimate, r.estimate - lo, rtol=1e-12)
    with pytest.raises(InputError, match="'wald', 'xlogit' or 'wilson'"):
        w.shares("comp_imp", interval="exact")
