"""The issue-17 fast paths (plain-column formulas, fused frame passes) give the same numbers as before.

``tests/reference/fastpath/fastpath_reference.json`` was written by ``make_reference.py`` (beside it)
from the implementation *before* the fast paths; every case is recomputed here and must agree to
1e-10. The strict replay of the formula spec must survive the fast path: an unseen category or a
missing covariate in the frame still raises.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from functools import partial

import rectify
from rectify.errors import InputError, MissingCovariateError, UnseenLevelError

REF_DIR = Path(__file__).parent / "reference" / "fastpath"
_spec = importlib.util.spec_from_file_location("fastpath_make_reference", REF_DIR / "make_reference.py")
MAKE = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MAKE)
REFERENCE = json.loads((REF_DIR / "fastpath_reference.json").read_text())
CASES = dict(MAKE.cases())


@pytest.fixture(scope="module")
def frames():
    return MAKE.make_frame()


class _BeforeIssue13:
    """The verbs as the reference saw them: superpopulation estimand, pilot a separate sample (issue 13 made
    the frame the default estimand and refuses two default RangeIndex frames without overlap=)."""

    def __getattr__(self, name):
        from functools import partial

        return partial(getattr(rectify, name), estimand="superpopulation", overlap="separate")


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_numbers_as_before_the_fast_paths(name, frames, monkeypatch):
    import rectify.estimators.ppi as core
    from functools import partial

    df, pilot = frames
    monkeypatch.setattr(core, "ppi_logistic", partial(core.ppi_logistic, estimand="superpopulation"))
    got = MAKE.summarise(CASES[name](_BeforeIssue13(), df, pilot))
    ref = REFERENCE[name]
    assert got["terms"] == ref["terms"]
    # issue 13 changed these intervals on purpose (weighted pilots' degrees of freedom, one per tuned
    # lambda in element mode, the score interval for shares): their estimates and covariances still hold
    # (element mode: each tuned lambda's degree of freedom also scales the HC3 covariance)
    changed = any(k in name for k in ("weighted", "element", "shares"))
    keys = ("estimate",) if "element" in name else ("estimate", "cov") if changed else ("estimate", "cov",
                                                                                        "conf_low", "conf_high")
    for key in keys:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-10, atol=1e-12, err_msg=f"{name}: {key}")
    if ref["lambda"] is None:
        assert got["lambda"] is None
    else:
        np.testing.assert_allclose(got["lambda"], ref["lambda"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("verb, formula, pred", [("ols", "y ~ x1 + x2", "f"), ("logit", "b ~ x1 + x2", "pb")])
def test_fast_path_keeps_strict_replay(verb, formula, pred, frames):
    df, pilot = frames
    fn = getattr(rectify, verb)
    fn = partial(fn, overlap="inside")  # the pilot is the frame's head (both have the default RangeIndex)
    bad = df.copy()
    bad.loc[5, "x2"] = np.nan
    with pytest.raises(MissingCovariateError, match="x2"):
        fn(formula, pilot, bad, predicted=pred)
    inf = df.copy()
    inf.loc[7, "x1"] = np.inf
    with pytest.raises(InputError, match="infinite"):
        fn(formula, pilot, inf, predicted=pred)
    with pytest.raises(MissingCovariateError, match="x2"):
        fn(formula, pilot, df.drop(columns=["x2"]), predicted=pred)
    with pytest.raises(MissingCovariateError, match=pred):
        fn(formula, pilot, df.drop(columns=[pred]), predicted=pred)
    nanpred = df.copy()
    nanpred.loc[3, pred] = np.nan
    with pytest.raises(InputError, match=pred):
        fn(formula, pilot, nanpred, predicted=pred)


def test_fast_path_refuses_a_column_that_changed_type(frames):
    """A covariate numeric in the pilot but text in the frame is a category the spec never saw."""
    df, pilot = frames
    text = df.copy()
    text["x1"] = text["x1"].astype(str)
    with pytest.raises((UnseenLevelError, InputError)):
        rectify.ols("y ~ x1 + x2", pilot, text, predicted="f", overlap="inside")
    ints = df.copy()
    ints["x1"] = (ints["x1"] * 10).round().astype(int)
    r_int = rectify.ols("y ~ x1 + x2", pilot, ints, predicted="f", overlap="inside")
    r_flt = rectify.ols("y ~ x1 + x2", pilot, ints.astype({"x1": float}), predicted="f", overlap="inside")
    np.testing.assert_allclose(r_int.estimate, r_flt.estimate, rtol=1e-12)


def test_fast_path_matches_formulaic_on_bool_and_int_columns(frames):
    df, pilot = frames
    d = df.assign(flag=df["x1"] > 0, cnt=(df["x3"] * 3).round().astype("int64"))
    p = d.iloc[:150].copy()
    from rectify.formula import build_design
    mf = build_design("y ~ x1 + flag + cnt", p, d)
    fast = rectify.ols("y ~ x1 + flag + cnt", p, d, predicted="f", overlap="inside")
    from rectify.estimators.ppi import ppi_ols
    slow = ppi_ols(mf.X, p["y"], p["f"], mf.X_pop, d["f"], terms=mf.terms, overlap="inside")
    assert fast.terms == slow.terms
    np.testing.assert_allclose(fast.estimate, slow.estimate, rtol=1e-10)
    np.testing.assert_allclose(fast.cov, slow.cov, rtol=1e-10)
