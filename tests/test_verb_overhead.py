"""The verbs' fixed work cut for issue 17 gives the same numbers and the same refusals as before.

* The mean's population moments from one sum and one sum of squares equal the centred, blocked
  passes (and numpy) to 1e-12, and fall back to those passes where cancellation would cost digits.
* ``rectify.mean`` reads the frame's prediction column without its own NaN/inf pass; a damaged
  column is still refused with the checked read's message (NaN or inf at the first or last row).
* Overlap detection by index labels (arithmetic on a default RangeIndex, pandas' lookup otherwise)
  decides as before on shuffled, non-zero-based, duplicated, text and partly outside labels.
* The ordinal verb's fast path (probability columns read one by one) equals the formulaic path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rectify
from rectify import verbs
from rectify.errors import InputError, MissingCovariateError
from rectify.estimand import pilot_in_frame
from rectify.estimators.ppi import ppi_mean
from rectify.estimators.ppi_means import _mean_population


def _frame(N=3000, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    y = shift + rng.normal(size=N)
    return pd.DataFrame({"y": y, "f": 0.8 * y + 0.3 + rng.normal(scale=0.6, size=N), "x": rng.normal(size=N)})


def _blocked(Z):
    """The centred, blocked passes: weights of one take the weighted branch, which never uses raw sums."""
    return _mean_population(Z, np.ones(Z.shape[0]))


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (3.0, 0.8), (-40.0, 7.0), (1e6, 1.0), (0.0, 1e-8)])
def test_one_pass_moments_equal_the_centred_passes(shift, scale):
    z = shift + scale * np.random.default_rng(1).normal(size=(200_001, 1))
    fast, slow = _mean_population(z, None), _blocked(z)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-12)
    np.testing.assert_allclose(fast.meat, slow.meat, rtol=1e-12)
    np.testing.assert_allclose(fast.meat[0, 0], z.var(), rtol=1e-12)


def test_constant_and_multi_column_moments():
    const = np.full((1000, 1), 2.5)
    assert _mean_population(const, None).meat[0, 0] == 0.0  # centred exactly, not 2.5**2 - 2.5**2 noise
    rng = np.random.default_rng(2)
    onehot = np.eye(4)[rng.choice(4, size=50_000, p=[0.5, 0.3, 0.1995, 0.0005])]
    fast, slow = _mean_population(onehot, None), _blocked(onehot)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-12)
    np.testing.assert_allclose(fast.meat, slow.meat, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(fast.meat, np.cov(onehot.T, ddof=0), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("convention", ["small-sample", "ppi_py"])
@pytest.mark.parametrize("shift", [0.0, 500.0])
def test_ppi_mean_unweighted_equals_the_blocked_weighted_path(convention, shift):
    df = _frame(20_000, 3, shift)
    idx = np.random.default_rng(4).choice(len(df), 150, replace=False)
    y, f, fp = df["y"].to_numpy()[idx], df["f"].to_numpy()[idx], df["f"].to_numpy()
    for overlap in ("inside", "separate"):
        a = ppi_mean(y, f, fp, convention=convention, overlap=overlap)
        b = ppi_mean(y, f, fp, weights_pop=np.ones(len(fp)), convention=convention, overlap=overlap)
        np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-12)
        np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10)
        assert a.tuning["lambda"] == pytest.approx(b.tuning["lambda"], rel=1e-10)


def _checked_mean(y, pilot, population, predicted, **kw):
    """``rectify.mean`` with the frame's column read through the checked reader (the code before)."""
    place = verbs._placement(pilot, population, kw.pop("estimand", None), kw.pop("overlap", "auto"), None,
                             predicted, "ppi++")
    return verbs._mean_run(y, pilot, population, predicted, "ppi++", kw.pop("weights", None),
                           kw.pop("weights_pop", None), None, None, None, 0.95, kw.pop("convention", "small-sample"),
                           place, verbs._numeric_column)


def _refusal(call):
    with pytest.raises(InputError) as err:
        call()
    return type(err.value), str(err.value)


@pytest.mark.parametrize("row", [0, -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("predicted", ["f", ["f"]])
def test_mean_refuses_a_damaged_frame_column_as_before(row, bad, predicted):
    df = _frame()
    pilot = df.iloc[10:60]
    damaged = df.copy()
    damaged.iloc[row, damaged.columns.get_loc("f")] = bad
    got = _refusal(lambda: rectify.mean("y", pilot, damaged, predicted=predicted))
    assert got == _refusal(lambda: _checked_mean("y", pilot, damaged, "f"))
    assert got[0] is (MissingCovariateError if np.isnan(bad) else InputError)
    assert "'f'" in got[1] and "population" in got[1]
    assert ("missing value" if np.isnan(bad) else "1 infinite value") in got[1]


def test_mean_refusal_order_is_kept():
    """A NaN prediction in the frame is named before a missing weight column is."""
    df = _frame()
    damaged = df.copy()
    damaged.loc[len(df) - 1, "f"] = np.nan
    msg = _refusal(lambda: rectify.mean("y", df.iloc[:40], damaged, predicted="f", weights_pop="w"))[1]
    assert "missing value" in msg and "'f'" in msg


def test_mean_equals_the_checked_read():
    df = _frame(50_000, 5, 3.0)
    df.index = np.random.default_rng(6).permutation(len(df)) + 1000  # shuffled, non-Range labels
    pilot = df.sample(200, random_state=7)
    for convention in ("small-sample", "ppi_py"):
        a = rectify.mean("y", pilot, df, predicted="f", convention=convention)
        b = _checked_mean("y", pilot, df, "f", convention=convention)
        np.testing.assert_array_equal(a.estimate, b.estimate)
        np.testing.assert_array_equal(a.cov, b.cov)
        assert a.pilot_in_frame is True


def _old_positions(pilot, frame):
    return np.asarray(pd.Index(frame.index).get_indexer(pd.Index(pilot.index)))


@pytest.mark.parametrize("index", ["range", "shifted_range", "shuffled", "text"])
def test_overlap_detection_by_labels(index):
    df = _frame(2000, 8)
    if index == "shifted_range":
        df.index = pd.RangeIndex(5, 2005)
    elif index == "shuffled":
        df.index = np.random.default_rng(9).permutation(2000)
    elif index == "text":
        df.index = [f"r{i}" for i in range(2000)]
    rows = np.random.default_rng(10).choice(2000, 100, replace=False)
    pilot = df.iloc[rows]
    assert pilot_in_frame(pilot, df, predicted="f") is True
    assert pilot_in_frame(pilot.iloc[[3, 3, 7]], df, predicted="f") is True  # duplicated labels: each found
    separate = pilot.copy()
    separate.index = [f"new{i}" for i in range(100)] if index == "text" else np.arange(100) + 10_000
    assert pilot_in_frame(separate, df, predicted="f") is False
    partly = separate.copy()
    partly.index = list(pilot.index[:60]) + list(separate.index[60:])
    with pytest.raises(InputError, match="60 of the pilot's 100 rows"):
        pilot_in_frame(partly, df, predicted="f")
    changed = pilot.copy()
    changed.iloc[[0, -1], changed.columns.get_loc("f")] += 1.0
    with pytest.raises(InputError, match="2 pilot rows differ"):
        pilot_in_frame(changed, df, predicted="f")


def test_range_frame_labels_outside_its_bounds():
    """On a default RangeIndex frame the labels are positions: negative or too large ones are not rows."""
    df = _frame(500, 11)
    pilot = df.iloc[[0, 499, 250]].copy()
    assert pilot_in_frame(pilot, df, predicted="f") is True
    for labels in ([-1, -2, -3], [500, 501, 10**12]):
        pilot.index = labels
        assert pilot_in_frame(pilot, df, predicted="f") is False
    pilot.index = [-1, 499, 250]
    with pytest.raises(InputError, match="2 of the pilot's 3 rows"):
        pilot_in_frame(pilot, df, predicted="f")
    pilot.index = pd.Index(np.array([0, 499, 250], dtype=np.uint64))
    assert pilot_in_frame(pilot, df, predicted="f") is True
    pilot.index = pd.Index([0.0, 499.0, 250.0])  # float labels: pandas' lookup, as before
    np.testing.assert_array_equal(_old_positions(pilot, df), [0, 499, 250])
    assert pilot_in_frame(pilot, df, predicted="f") is True


def _ordinal_frame(N=4000, seed=12):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=N), "x2": rng.normal(size=N)})
    eta = df["x1"].to_numpy() * 0.5 - 0.3 * df["x2"].to_numpy() + rng.logistic(size=N)
    df["o"] = np.digitize(eta, [-1.0, 0.0, 1.0]) + 1
    P = rng.dirichlet(np.ones(4), size=N)
    for k in range(4):
        df[f"p{k + 1}"] = P[:, k]
    return df


PROBS = ["p1", "p2", "p3", "p4"]


def _ordinal_paths(pilot, df, fast=True):
    place = verbs._placement(pilot, df, None, "auto", None, PROBS, "ppi++")
    slow = verbs._checked_regression("ppi_ordinal", "o ~ x1 + x2", pilot, df, pd.Index(PROBS), "ppi++", None, None,
                                     None, "overall", None, 0.95, "small-sample", False, [1, 2, 3, 4], place)
    if not fast:
        return slow
    return rectify.ordinal("o ~ x1 + x2", pilot, df, predicted=PROBS, categories=[1, 2, 3, 4]), slow


def test_ordinal_fast_path_equals_formulaic():
    df = _ordinal_frame()
    pilot = df.sample(300, random_state=13)
    fast, slow = _ordinal_paths(pilot, df)
    assert fast.terms == slow.terms
    np.testing.assert_allclose(fast.estimate, slow.estimate, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fast.cov, slow.cov, rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("row", [0, -1])
@pytest.mark.parametrize("bad, what", [(np.nan, "missing value"), (np.inf, "infinite"), (-1e-13, "negative")])
def test_ordinal_refuses_damaged_probability_columns(row, bad, what):
    df = _ordinal_frame()
    pilot = df.iloc[100:400]
    damaged = df.copy()
    damaged.iloc[row, damaged.columns.get_loc("p3")] = bad
    got = _refusal(lambda: rectify.ordinal("o ~ x1 + x2", pilot, damaged, predicted=PROBS, categories=[1, 2, 3, 4]))
    assert what in got[1] and "population" in got[1]
    # the formulaic path with the checked reads, as every list of probability columns took before
    assert got == _refusal(lambda: _ordinal_paths(pilot, damaged, fast=False))


@pytest.mark.parametrize("verb, formula, pred", [("ols", "y ~ x", "f"), ("logit", "b ~ x", "pb")])
@pytest.mark.parametrize("row", [0, -1])
def test_regressions_name_an_infinite_frame_prediction(verb, formula, pred, row):
    df = _frame(3000, 14)
    df["b"] = (df["y"] > 0).astype(float)
    df["pb"] = 1 / (1 + np.exp(-df["f"]))
    pilot = df.iloc[100:300]
    damaged = df.copy()
    damaged.iloc[row, damaged.columns.get_loc(pred)] = np.inf
    with pytest.raises(InputError, match=f"1 infinite value.*column '{pred}' of the population"):
        getattr(rectify, verb)(formula, pilot, damaged, predicted=pred)


@pytest.mark.parametrize("order", ["C", "F"])
def test_multi_column_moments_in_either_layout(order):
    P = np.random.default_rng(15).dirichlet(np.ones(5), size=30_000)
    Z = np.asarray(P, order=order)
    fast, slow = _mean_population(Z, None), _blocked(Z)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-12)
    np.testing.assert_allclose(fast.meat, slow.meat, rtol=1e-11, atol=1e-16)


def _prob_frame(N=2000, seed=16):
    df = pd.DataFrame(np.random.default_rng(seed).dirichlet(np.ones(4), size=N), columns=PROBS)
    df["p2"] = df["p2"].astype(np.float32).astype(float)  # blocks of several origins
    df["k"] = np.arange(N) % 3  # an int column among them
    return df


def test_probability_columns_read_one_by_one_equal_pandas():
    df = _prob_frame()
    cols = ["p1", "k", "p2", "p4"]
    got = verbs._prob_columns(df, cols, "population")
    np.testing.assert_array_equal(got, df[cols].to_numpy(dtype=float))
    assert got.flags.f_contiguous


@pytest.mark.parametrize("row", [0, -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e-13, "text"])
def test_probability_columns_refused_as_before(row, bad):
    df = _prob_frame()
    if isinstance(bad, str):
        df["p3"] = df["p3"].astype(object)
    df.iloc[row, df.columns.get_loc("p3")] = bad
    got = _refusal(lambda: verbs._prob_columns(df, PROBS, "population"))
    # a pd.Index of names is not a list: it takes the checked reads only, the code before
    assert got == _refusal(lambda: verbs._prob_columns(df, pd.Index(PROBS), "population"))
    assert "p3" in got[1]


def _rows_in_frame_by_sorting(pilot, frame):
    """The content check as first written (np.unique / np.isin), the reference for the hash-table one."""
    shared = [c for c in pilot.columns if c in frame.columns]
    hp = pd.util.hash_pandas_object(pilot[shared], index=False).to_numpy()
    hf = pd.util.hash_pandas_object(frame[shared], index=False).to_numpy()
    if len(np.unique(hf)) != len(hf):
        return None
    found = np.isin(hp, hf)
    return True if found.all() else False if not found.any() else None


def test_default_range_frames_decided_by_row_contents_as_before():
    from rectify.estimand import _rows_in_frame

    df = _frame(5000, 17)
    inside = df.iloc[np.sort(np.random.default_rng(18).choice(5000, 80, replace=False))].reset_index(drop=True)
    outside = inside.assign(f=inside["f"] + 1.0)
    partly = pd.concat([inside.iloc[:40], outside.iloc[40:]], ignore_index=True)
    doubled = pd.concat([df.iloc[:100], df.iloc[:100]], ignore_index=True)
    cases = [(inside, df, True), (outside, df, False), (partly, df, None), (doubled.iloc[:5], doubled, None)]
    for pilot, frame, expected in cases:
        assert _rows_in_frame(pilot, frame) is expected
        assert _rows_in_frame_by_sorting(pilot, frame) is expected
    assert pilot_in_frame(inside, df, predicted="f") is True
    assert pilot_in_frame(outside, df, predicted="f") is False
    with pytest.raises(InputError, match="default RangeIndex"):
        pilot_in_frame(partly, df, predicted="f")
