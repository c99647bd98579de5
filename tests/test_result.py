"""The Result type: immutability, intervals at any level, tidy/summary/etable."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rectify import Result, etable
from rectify.errors import InputError


def _r(**kw):
    base = dict(estimate=[1.0, -2.0], cov=[[0.04, 0.01], [0.01, 0.09]], terms=["a", "b"], method="ppi++",
                estimand="ols", n_pilot=50, n_population=1000, df=[40, 40], tuning={"lambda": 0.7})
    base.update(kw)
    return Result(**base)


def test_intervals_are_t_based_at_any_level():
    r = _r()
    for level in (0.8, 0.95, 0.99):
        lo, hi = r.conf_int(level)
        q = stats.t.ppf(0.5 + level / 2, 40)
        np.testing.assert_allclose(hi - lo, 2 * q * np.sqrt([0.04, 0.09]))
    assert r.level == 0.95


def test_p_values_and_statistics():
    r = _r()
    np.testing.assert_allclose(r.statistic, [1 / 0.2, -2 / 0.3])
    np.testing.assert_allclose(r.p_value, 2 * stats.t.sf(np.abs(r.statistic), 40))


def test_immutable():
    r = _r()
    with pytest.raises(Exception):
        r.method = "x"
    with pytest.raises(ValueError):
        r.estimate[0] = 5.0


def test_tidy_columns_and_values():
    t = _r().tidy()
    assert list(t.columns) == ["term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high",
                               "method", "n_pilot", "n_population"]
    assert t["std_error"].tolist() == pytest.approx([0.2, 0.3])


def test_summary_text_and_html_escape():
    r = _r(terms=["<script>x</script>", "b"])
    assert "lambda = 0.7000" in r.summary()
    html = r.summary(html_output=True)
    assert "<script>x" not in html and "&lt;script&gt;" in html


def test_draws_give_quantile_intervals():
    draws = np.random.default_rng(0).normal(size=(4000, 1))
    r = Result([0.0], [[1.0]], ["m"], "bayes", "mean", 10, 100, draws=draws)
    lo, hi = r.conf_int(0.9)
    assert lo[0] == pytest.approx(np.quantile(draws, 0.05))


def test_bounds_clip_intervals():
    r = Result([0.02], [[0.01]], ["share"], "classical", "shares", 10, 0, bounds=(0, 1))
    assert r.conf_int()[0][0] == 0.0


def test_etable_side_by_side():
    a = _r(method="classical", tuning={})
    b = _r()
    tab = etable([a, b])
    assert list(tab.columns) == ["classical", "ppi++"]
    assert tab.loc["a", "ppi++"] == "1 (0.2)"
    assert tab.loc["lambda", "ppi++"] == "0.7"
    with pytest.raises(InputError):
        etable([])


def test_bad_construction():
    with pytest.raises(InputError):
        _r(cov=[[1.0]])
    with pytest.raises(InputError, match="'level'"):
        _r(level=0)
