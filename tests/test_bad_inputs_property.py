"""Random malformed frames thrown at the verbs (issue 16): the only acceptable outcomes are a rectify
error or a correct result.

A clean frame (a numeric answer, the LLM's prediction, a numeric and a categorical covariate) is
damaged by a random sequence of mutations -- a duplicated column, numbers stored as text, text, a
missing or infinite value, a non-string column label, a timezone-aware datetime, a boolean column,
an empty or one-row frame, a dropped column -- and given to :func:`rectify.mean` (classical, on the
pilot), :func:`rectify.mean` (naive, on the frame), :func:`rectify.ols` (classical) and
:func:`rectify.shares` (classical). Whatever
comes back is either a :class:`rectify.errors.RectifyError` or an estimate equal to a reference
computed with numpy on the same (then necessarily clean) columns. Hypothesis runs derandomised
(a fixed seed), so a failure reproduces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rectify
from rectify.errors import RectifyError

COLUMNS = ("y", "yhat", "x", "g")
MUTATIONS = ("duplicate", "numeric_text", "text", "nan", "inf", "int_label", "tz_datetime", "bool", "empty",
             "one_row", "drop", "none")


def _clean(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 2.0 + x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "yhat": y + rng.normal(scale=0.5, size=n), "x": x,
                         "g": rng.choice(["a", "b", "c"], size=n)})


def _mutate(df: pd.DataFrame, kind: str, col: str, row: int) -> pd.DataFrame:
    df = df.copy()
    row = row % max(len(df), 1)
    if kind == "duplicate":
        return pd.concat([df, df[[col]]], axis=1)
    if kind == "numeric_text":
        df[col] = df[col].astype(str)
    elif kind == "text":
        df[col] = df[col].astype(object)
        if len(df):
            df.iloc[row, df.columns.get_loc(col)] = "n/a"
    elif kind in ("nan", "inf") and len(df):
        numeric = isinstance(df[col].dtype, np.dtype) and df[col].dtype.kind in "fiub"
        df[col] = df[col].astype(float) if numeric else df[col].astype(object)
        df.iloc[row, df.columns.get_loc(col)] = (np.nan if kind == "nan" else np.inf) if numeric or kind == "inf" else None
    elif kind == "int_label":
        df = df.rename(columns={col: 7})
    elif kind == "tz_datetime":
        df[col] = pd.date_range("2024-01-01", periods=len(df), freq="h", tz="UTC")
    elif kind == "bool":
        df[col] = np.arange(len(df)) % 2 == 0
    elif kind == "empty":
        df = df.iloc[:0]
    elif kind == "one_row":
        df = df.iloc[:1]
    elif kind == "drop":
        df = df.drop(columns=[col])
    return df


@st.composite
def damaged(draw):
    n = draw(st.integers(min_value=8, max_value=60))
    df = _clean(n, draw(st.integers(min_value=0, max_value=10_000)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        kind = draw(st.sampled_from(MUTATIONS))
        present = [c for c in COLUMNS if c in df.columns]
        if not present:
            break
        df = _mutate(df, kind, draw(st.sampled_from(present)), draw(st.integers(min_value=0, max_value=10_000)))
    return df


def _numbers(df: pd.DataFrame, col: str) -> np.ndarray:
    """The reference's view of a column: it must be one plain, finite, numeric column."""
    s = df[col]
    assert isinstance(s, pd.Series) and s.dtype.kind in "fiub", f"accepted a non-numeric column {col!r}"
    v = s.to_numpy(dtype=float)
    assert np.isfinite(v).all(), f"accepted a non-finite value in {col!r}"
    return v


def _outcome(call):
    try:
        return call()
    except RectifyError:
        return None  # a refusal by rectify is always acceptable


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_classical_mean_is_refused_or_equals_numpy(df):
    r = _outcome(lambda: rectify.mean("y", df, method="classical"))
    if r is not None:
        y = _numbers(df, "y")
        assert r.estimate[0] == pytest.approx(y.mean(), rel=1e-12, abs=1e-12)
        assert r.std_error[0] == pytest.approx(y.std(ddof=1) / np.sqrt(len(y)), rel=1e-9)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_naive_mean_is_refused_or_equals_numpy(df):
    r = _outcome(lambda: rectify.mean("y", None, df, "yhat", method="naive"))
    if r is not None:
        assert r.estimate[0] == pytest.approx(_numbers(df, "yhat").mean(), rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_classical_ols_is_refused_or_equals_least_squares(df):
    r = _outcome(lambda: rectify.ols("y ~ x", df, method="classical"))
    if r is not None:
        y, x = _numbers(df, "y"), _numbers(df, "x")
        X = np.column_stack([np.ones(len(x)), x])
        ref = np.linalg.lstsq(X, y, rcond=None)[0]
        np.testing.assert_allclose(r.estimate, ref, rtol=1e-8, atol=1e-10)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_classical_shares_are_refused_or_equal_the_counts(df):
    r = _outcome(lambda: rectify.shares("g", df, method="classical", categories=["a", "b", "c"]))
    if r is not None:
        s = df["g"]
        assert isinstance(s, pd.Series) and s.notna().all(), "accepted a missing or duplicated answer column"
        ref = np.array([(s == c).mean() for c in ("a", "b", "c")])
        np.testing.assert_allclose(r.estimate, ref, rtol=1e-12, atol=1e-12)


def test_the_mutations_do_reach_both_outcomes():
    """The property tests are not vacuous: some damaged frames are refused, some are estimated."""
    clean = _clean(30, 1)
    assert _outcome(lambda: rectify.mean("y", clean, method="classical")) is not None
    for kind in ("duplicate", "numeric_text", "text", "nan", "inf", "tz_datetime", "empty", "one_row", "drop"):
        assert _outcome(lambda: rectify.mean("y", _mutate(clean, kind, "y", 3), method="classical")) is None, kind
    # damage to a column the verb does not read leaves the estimate as it was
    r = rectify.mean("y", _mutate(clean, "duplicate", "x", 0), method="classical")
    assert r.estimate[0] == pytest.approx(clean["y"].mean(), rel=1e-12)
