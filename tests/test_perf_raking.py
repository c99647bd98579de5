"""Raking from a DataFrame through category codes equals the core on codes (issue 17 fast path)."""

import numpy as np
import pandas as pd
import pytest

from rectify.errors import InputError
from rectify.estimators.calibration import rake
from rectify.weighting import calibrate


def _data(n=20_000, seed=4):
    rng = np.random.default_rng(seed)
    codes = [rng.choice(4, n, p=p) for p in ([0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25] * 4)]
    d = rng.uniform(1.0, 3.0, n)
    targets = [5e4 * np.array(t) / np.sum(t) for t in ([3, 3, 2, 2], [1, 2, 3, 4], [2, 1, 1, 2])]
    return codes, d, targets


def test_validated_core_equals_checked_core():
    codes, d, targets = _data()
    a = rake(codes, targets, d, tol=1e-12)
    b = rake(codes, targets, d, tol=1e-12, validated=True)
    np.testing.assert_array_equal(a.weights, b.weights)
    for c, t in zip(codes, targets):
        np.testing.assert_allclose(np.bincount(c, a.weights, 4), t, rtol=1e-11)


@pytest.mark.parametrize("kind", ["categorical", "shuffled categories", "text"])
def test_calibrate_from_a_dataframe_equals_the_core_on_codes(kind):
    codes, d, targets = _data()
    levels = ["w", "x", "y", "z"]
    cols = {}
    for j, c in enumerate(codes):
        lab = np.array(levels)[c]
        if kind == "categorical":
            cols[f"m{j}"] = pd.Categorical(lab, categories=levels)
        elif kind == "shuffled categories":  # category order differs from the margin's, plus an unused one
            cols[f"m{j}"] = pd.Categorical(lab, categories=["z", "unused", "x", "w", "y"])
        else:
            cols[f"m{j}"] = lab
    df = pd.DataFrame(cols).assign(d=d)
    margins = {f"m{j}": dict(zip(levels, t)) for j, t in enumerate(targets)}
    w = calibrate(df, margins=margins, design_weights="d", tol=1e-12).weights.to_numpy()
    np.testing.assert_allclose(w, rake(codes, targets, d, tol=1e-12).weights, rtol=1e-12)


def test_a_sample_category_without_a_target_is_named():
    codes, d, targets = _data(2000)
    df = pd.DataFrame({"m0": pd.Categorical(np.array(["w", "x", "y", "q"])[codes[0]])}).assign(d=d)
    with pytest.raises(InputError, match=r"margin 'm0'.*\['q'\]"):
        calibrate(df, margins={"m0": {"w": 1.0, "x": 1.0, "y": 1.0}}, design_weights="d")
