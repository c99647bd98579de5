"""The active verbs read the design recorded by design_pilot and refuse pilots that are not frame rows."""

import numpy as np
import pandas as pd
import pytest

import rectify
from rectify.errors import InputError
from rectify.estimators import active as core


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    N = 600
    s = rng.lognormal(-0.5, 0.7, N)
    f = rng.normal(2, 1, N)
    df = pd.DataFrame({"f": f, "err": s, "x": rng.normal(size=N), "g": rng.choice(["u", "v"], N)},
                      index=pd.RangeIndex(100, 100 + N))
    df["y"] = 0.3 + 0.9 * df["f"] + 0.5 * df["x"] + rng.normal(0, s)
    P = np.column_stack([1 / (1 + np.exp(df["f"] - 2)), 1 - 1 / (1 + np.exp(df["f"] - 2))])
    df["p0"], df["p1"] = P[:, 0], P[:, 1]
    df["ans"] = (rng.random(N) < P[:, 1]).astype(int)
    return df


@pytest.mark.parametrize("design, sampling", [("active", "poisson"), ("active", "fixed"), ("neyman", "fixed")])
def test_verb_matches_the_core_with_the_recorded_design(frame, design, sampling):
    pilot = rectify.design_pilot(frame, 60, design, error="err", strata="g", n_bins=2, sampling=sampling,
                                 random_state=3)
    r = rectify.active_mean("y", pilot, frame, "f")
    kind = "stratified" if design == "neyman" else sampling
    ref = core.active_mean(pilot["y"], pilot["f"], frame["f"], pilot["pi"], sampling=kind,
                           strata=pilot["stratum"] if design == "neyman" else None)
    assert r.estimate[0] == pytest.approx(ref.estimate[0]) and r.cov[0, 0] == pytest.approx(ref.cov[0, 0])
    assert r.diagnostics["sampling"] == kind and r.diagnostics["design"] == design and r.terms == ("mean(y)",)


def test_shares_and_ols_verbs(frame):
    pilot = rectify.design_pilot(frame, 80, "active", error="err", random_state=5)
    sh = rectify.active_shares("ans", pilot, frame, ["p0", "p1"], categories=[0, 1])
    ref = core.active_shares(pilot["ans"].to_numpy(), pilot[["p0", "p1"]], frame[["p0", "p1"]], pilot["pi"],
                             categories=[0, 1], sampling="fixed")
    assert np.allclose(sh.estimate, ref.estimate) and sh.estimate.sum() == pytest.approx(1)
    ols = rectify.active_ols("y ~ x + C(g)", pilot, frame, "f")
    X = np.column_stack([np.ones(len(frame)), frame["x"], (frame["g"] == "v").astype(float)])
    pos = frame.index.get_indexer(pilot.index)
    ref = core.active_ols(X[pos], pilot["y"], pilot["f"], X, frame["f"], pilot["pi"], sampling="fixed")
    assert ols.terms == ("Intercept", "x", "C(g)[T.v]") and np.allclose(ols.estimate, ref.estimate)


def test_explicit_design_without_attrs(frame):
    pilot = rectify.design_pilot(frame, 50, "active", error="err", sampling="poisson", random_state=8)
    bare = pd.DataFrame(pilot.to_dict("list"), index=pilot.index)  # attrs lost
    with pytest.raises(InputError, match="pi="):
        rectify.active_mean("y", bare, frame, "f")
    with pytest.raises(InputError, match="'sampling'"):
        rectify.active_mean("y", bare, frame, "f", pi="pi")
    a = rectify.active_mean("y", bare, frame, "f", pi="pi", sampling="poisson")
    b = rectify.active_mean("y", pilot, frame, "f")
    assert a.estimate[0] == pytest.approx(b.estimate[0])


def test_refusals(frame):
    pilot = rectify.design_pilot(frame, 50, "active", error="err", random_state=9)
    with pytest.raises(InputError, match="computed on 600"):
        rectify.active_mean("y", pilot, frame.iloc[:500], "f")
    moved = pilot.set_axis(pilot.index + 10_000)
    with pytest.raises(InputError, match="not frame rows"):
        rectify.active_mean("y", moved, frame, "f")
    gap = pilot.copy()
    gap.loc[gap.index[0], "y"] = np.nan
    with pytest.raises(InputError, match="non-response"):
        rectify.active_mean("y", gap, frame, "f")
    holes = frame.copy()
    holes.loc[holes.index[-1], "f"] = np.nan
    with pytest.raises(InputError, match="'predicted'|missing or infinite"):
        rectify.active_mean("y", pilot, holes, "f")
    with pytest.raises(InputError, match="'predicted'"):
        rectify.active_shares("ans", pilot, frame, "p0")
    with pytest.raises(InputError, match="'pi'"):
        rectify.active_mean("y", pilot, frame, "f", pi="nope")


def test_logit_verb_matches_the_core(frame):
    pilot = rectify.design_pilot(frame, 150, "active", error="err", random_state=6)
    r = rectify.active_logit("ans ~ x", pilot, frame, "p1")
    X = np.column_stack([np.ones(len(frame)), frame["x"]])
    pos = frame.index.get_indexer(pilot.index)
    ref = core.active_logistic(X[pos], pilot["ans"], pilot["p1"], X, frame["p1"], pilot["pi"], sampling="fixed")
    assert r.terms == ("Intercept", "x") and np.allclose(r.estimate, ref.estimate) and np.allclose(r.cov, ref.cov)
