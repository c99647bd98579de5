"""rectify.missingness_diagnostic: respondents with and without an answer, compared on covariates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rectify
from rectify.errors import InputError
from rectify.missingness import missingness_diagnostic


def test_numeric_smd_by_hand():
    df = pd.DataFrame({"y": [1.0, 2.0, np.nan, 4.0, np.nan, 3.0], "age": [20, 30, 60, 40, 70, 35]})
    t = missingness_diagnostic(df, "y", ["age"])
    a, b = np.array([20, 30, 40, 35.0]), np.array([60, 70.0])
    smd = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    assert t.loc[0, "smd"] == pytest.approx(smd, rel=1e-12)
    assert (t.loc[0, "n_answered"], t.loc[0, "n_missing"]) == (4, 2)
    assert t.attrs["n_missing"] == 2 and t.attrs["missing_rate"] == pytest.approx(1 / 3)


def test_levels_use_the_binary_variance_and_keep_unused_categories():
    sex = pd.Categorical(["f", "m", "f", "m", "f", "f", "m", "f"], categories=["f", "m", "x"])
    df = pd.DataFrame({"y": [1, None, 2, 3, None, None, 1, 2], "sex": sex})
    t = missingness_diagnostic(df, "y", ["sex"])
    assert t["level"].tolist() == ["f", "m", "x"]
    pa, pm = 3 / 5, 2 / 3  # share of "f" among answered (rows 0, 2, 3, 6, 7) and missing (1, 4, 5)
    want = (pa - pm) / np.sqrt((pa * (1 - pa) + pm * (1 - pm)) / 2)
    assert t.loc[0, "smd"] == pytest.approx(want, rel=1e-12)
    assert t.loc[2, "smd"] == 0.0  # an unused level is balanced, not NaN


def test_missing_codes_count_as_no_answer_and_covariate_nans_are_reported():
    df = pd.DataFrame({"y": ["agree", "dk", "disagree", "dk", "agree"], "age": [30, 50, np.nan, 52, 28]})
    t = missingness_diagnostic(df, "y", "age", missing_codes=["dk"])
    assert t.attrs["n_missing"] == 2
    assert (t.loc[0, "n_answered"], t.loc[0, "n_missing"], t.loc[0, "covariate_missing"]) == (2, 2, 1)
    assert t.loc[0, "mean_missing"] == pytest.approx(51.0)


def test_flags_missingness_that_depends_on_a_covariate_but_not_random_missingness():
    rng = np.random.default_rng(13)
    n = 4000
    age = rng.normal(45, 15, n)
    educ = rng.integers(0, 5, n)
    y = rng.normal(size=n)
    # MAR on age: older respondents skip the item more often; education plays no part
    p_skip = 1 / (1 + np.exp(-(age - 60) / 8))
    y_mar = np.where(rng.random(n) < p_skip, np.nan, y)
    y_mcar = np.where(rng.random(n) < 0.25, np.nan, y)
    df = pd.DataFrame({"age": age, "educ": educ, "mar": y_mar, "mcar": y_mcar})
    mar = missingness_diagnostic(df, "mar", ["age", "educ"]).set_index("covariate")
    mcar = missingness_diagnostic(df, "mcar", ["age", "educ"]).set_index("covariate")
    assert mar.loc["age", "flag"] and mar.loc["age", "smd"] < -0.5  # answered are younger
    assert not mar.loc["educ", "flag"]
    # under MCAR each SMD is ~ N(0, 1 / n_ans + 1 / n_miss) = sd 0.037 here: 0.1 is 2.7 sd
    assert not mcar["flag"].any(), mcar["smd"]
    assert "not missing completely at random" in missingness_diagnostic(df, "mar", ["age"]).attrs["note"]


def test_nothing_missing_is_said_not_hidden():
    df = pd.DataFrame({"y": [1, 2, 3], "x": [1.0, 2.0, 3.0]})
    t = missingness_diagnostic(df, "y", ["x"])
    assert np.isnan(t.loc[0, "smd"]) and t.attrs["n_missing"] == 0
    assert "nothing was left out" in t.attrs["note"]


@pytest.mark.parametrize("args, match", [
    (([1, 2], "y", ["x"]), "DataFrame"),
    ((pd.DataFrame({"y": [1]}), "y", ["x"]), r"\['x'\]"),
    ((pd.DataFrame({"y": [1], "x": [1]}), "y", []), "at least one"),
    ((pd.DataFrame({"y": [1], "x": [1]}), "y", ["y"]), "is the answer"),
])
def test_bad_input_names_the_argument(args, match):
    with pytest.raises(InputError, match=match):
        missingness_diagnostic(*args)


def test_exported_lazily_from_rectify():
    assert rectify.missingness_diagnostic is missingness_diagnostic
