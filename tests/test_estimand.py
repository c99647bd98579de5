"""Estimand (frame / superpopulation) and the pilot's place in the frame: coverage by simulation and
detection of the overlap (rectify.estimand).

Coverage cells: 2,000 repetitions each; the tolerance is 3 Monte Carlo standard errors around 0.95
(sqrt(0.95 * 0.05 / 2000) = 0.0049, so [0.9354, 0.9646]). Superpopulation cells draw a new frame per
repetition; the frame cell with the pilot inside keeps one frame (design-based: the frame is fixed,
only the pilot is random); the frame cell with a separate pilot draws a new frame per repetition (its
variance counts the frame's own deviation from the superpopulation).
"""

import numpy as np
import pandas as pd
import pytest

import rectify
from rectify.datasets import draw_pilot
from rectify.errors import InputError
from rectify.estimand import pilot_in_frame, variance_parts, Target
from rectify.estimators.ppi import ppi_mean, ppi_ols

REPS = 2000
TOL = 3 * np.sqrt(0.95 * 0.05 / REPS)


def _world(rng, N):
    x = rng.normal(size=N)
    y = 1.0 + x + 0.8 * rng.standard_t(5, size=N)  # superpopulation mean 1
    f = 0.7 * x + 1.3  # a biased, informative simulator
    return x, y, f


def _coverage_mean(n, N, estimand, overlap, seed):
    rng = np.random.default_rng(seed)
    x, y, f = _world(rng, N)
    hits = 0
    for _ in range(REPS):
        if estimand == "superpopulation" or overlap == "separate":
            x, y, f = _world(rng, N)
        if overlap == "inside":
            idx = rng.choice(N, n, replace=False)
            ys, fs = y[idx], f[idx]
        else:
            _, ys, fs = _world(rng, n)
        r = ppi_mean(ys, fs, f, estimand=estimand, overlap=overlap)
        truth = y.mean() if estimand == "frame" else 1.0
        lo, hi = r.conf_int()
        hits += lo[0] <= truth <= hi[0]
    return hits / REPS


@pytest.mark.parametrize("n,N", [(100, 2000), (100, 200)])  # n/N = 0.05 and 0.5
@pytest.mark.parametrize("estimand,overlap", [("frame", "inside"), ("superpopulation", "inside"),
                                              ("superpopulation", "separate"), ("frame", "separate")])
def test_mean_coverage_for_each_estimand_and_overlap(n, N, estimand, overlap):
    cov = _coverage_mean(n, N, estimand, overlap, seed=n + N + len(estimand) + len(overlap))
    assert abs(cov - 0.95) <= TOL, f"{estimand}/{overlap} n/N={n / N}: coverage {cov:.4f}"


def test_independent_sample_variance_fails_with_the_pilot_inside():
    """The reason for all this: the old variance (superpopulation, separate) with a pilot inside a frame
    of twice its size under-covers the superpopulation mean (the issue measured 89.8%)."""
    rng = np.random.default_rng(5)
    hits = 0
    reps = 1000
    for _ in range(reps):
        x, y, f = _world(rng, 200)
        idx = rng.choice(200, 100, replace=False)
        lo, hi = ppi_mean(y[idx], f[idx], f, estimand="superpopulation", overlap="separate").conf_int()
        hits += lo[0] <= 1.0 <= hi[0]
    assert hits / reps < 0.93


@pytest.mark.parametrize("estimand", ["frame", "superpopulation"])
def test_ols_coverage_pilot_inside_half_the_frame(estimand):
    rng = np.random.default_rng(17 + len(estimand))
    n, N = 100, 200

    def world():
        x = rng.normal(size=N)
        y = 0.5 + 2.0 * x + rng.normal(size=N)
        X = np.column_stack([np.ones(N), x])
        return X, y, 0.4 + 1.6 * x + 0.5 * rng.normal(size=N)

    X, y, f = world()
    hits = 0
    for _ in range(REPS):
        if estimand == "superpopulation":
            X, y, f = world()
        idx = rng.choice(N, n, replace=False)
        r = ppi_ols(X[idx], y[idx], f[idx], X, f, estimand=estimand, overlap="inside")
        truth = np.linalg.lstsq(X, y, rcond=None)[0][1] if estimand == "frame" else 2.0
        lo, hi = r.conf_int()
        hits += lo[1] <= truth <= hi[1]
    assert abs(hits / REPS - 0.95) <= TOL, f"{estimand}: slope coverage {hits / REPS:.4f}"


def test_frame_variance_closed_form():
    """Frame estimand, pilot inside: (1 - n/N) s_a^2 / n with a = y - lam f, lam = Cov(y, f) / Var(f)."""
    rng = np.random.default_rng(3)
    N, n = 500, 50
    _, y, f = _world(rng, N)
    idx = rng.choice(N, n, replace=False)
    r = ppi_mean(y[idx], f[idx], f, overlap="inside")
    ys, fs = y[idx], f[idx]
    lam = np.cov(ys, fs, ddof=0)[0, 1] / fs.var()
    assert r.tuning["lambda"] == pytest.approx(lam, rel=1e-12)
    a = ys - lam * fs
    assert r.estimate[0] == pytest.approx(lam * f.mean() + a.mean(), rel=1e-12)
    assert r.std_error[0] == pytest.approx(np.sqrt((1 - n / N) * a.var(ddof=2) / n), rel=1e-12)
    assert r.df[0] == n - 2
    # the whole frame as the pilot: the frame's mean exactly, no variance
    full = ppi_mean(y, f, f, overlap="inside", method="ppi")
    assert full.estimate[0] == pytest.approx(y.mean(), rel=1e-12)
    assert full.std_error[0] == 0.0


def test_variance_parts_each_case():
    ca, cb, cy = np.eye(1) * 2.0, np.eye(1) * 3.0, np.eye(1) * 5.0
    n, N = 25, 100
    assert [float(v[0, 0]) for v in variance_parts(ca, cb, cy, n, N, Target("superpopulation", False))[:2]] == [2, 3]
    assert [float(v[0, 0]) for v in variance_parts(ca, cb, cy, n, N, Target("superpopulation", True))[:2]] == \
        [1.5, 1.25]
    assert [float(v[0, 0]) for v in variance_parts(ca, cb, cy, n, N, Target("frame", True))[:2]] == [1.5, 0.0]
    assert [float(v[0, 0]) for v in variance_parts(ca, cb, cy, n, N, Target("frame", False))[:2]] == [2.0, 0.5]
    with pytest.raises(InputError, match="cannot\nbe larger|cannot be larger"):
        variance_parts(ca, cb, cy, 200, N, Target("frame", True))


# ----------------------------------------------------------------------------- detection
@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    N = 400
    df = pd.DataFrame({"x": rng.normal(size=N)})
    df["y"] = df["x"] + rng.normal(size=N)
    df["f"] = df["x"]
    df["pid"] = [f"r{i}" for i in range(N)]
    return df


def test_draw_pilot_is_detected_inside(frame):
    pilot = draw_pilot(frame, 80, random_state=1)
    r = rectify.mean("y", pilot, frame.drop(columns="y"), predicted="f")
    assert r.pilot_in_frame is True and r.target == "frame"
    core = ppi_mean(pilot["y"], pilot["f"], frame["f"], overlap="inside")
    np.testing.assert_allclose(r.cov, core.cov, rtol=1e-12)
    assert "pilot inside the frame" in r.summary()
    sup = rectify.mean("y", pilot, frame, predicted="f", estimand="superpopulation")
    assert sup.target == "superpopulation" and sup.std_error[0] > r.std_error[0]


def test_disjoint_labels_are_a_separate_sample(frame):
    rest = frame.iloc[100:]
    pilot = frame.iloc[:100]
    r = rectify.mean("y", pilot, rest, predicted="f")
    assert r.pilot_in_frame is False
    core = ppi_mean(pilot["y"], pilot["f"], rest["f"], overlap="separate")
    np.testing.assert_allclose(r.cov, core.cov, rtol=1e-12)


def test_partial_overlap_is_refused(frame):
    pilot = frame.iloc[350:].copy()
    with pytest.raises(InputError, match="cannot tell whether the pilot is a sample from the frame"):
        rectify.mean("y", pilot, frame.iloc[:380], predicted="f")


def test_default_range_indexes_decide_by_rows_or_are_refused(frame):
    pilot = frame.sample(50, random_state=1).reset_index(drop=True)
    pop = frame.reset_index(drop=True)
    # labels identify nobody; the rows' contents do: every pilot row is a frame row
    assert rectify.mean("y", pilot, pop, predicted="f").pilot_in_frame is True
    other = pd.DataFrame({"x": [0.1, 0.2, 0.3], "y": [1.0, 2.0, 0.5], "f": [0.3, 0.1, 0.2], "pid": ["a", "b", "c"]})
    assert rectify.mean("y", other, pop, predicted="f").pilot_in_frame is False
    # rows that do not tell people apart (only a few categories): refused
    cat = pd.DataFrame({"g": ["a", "b"] * 100, "f": [1.0, 2.0] * 100, "y": [1.0, 0.0] * 100})
    with pytest.raises(InputError, match="RangeIndex"):
        rectify.mean("y", cat.iloc[[0, 3, 5]].reset_index(drop=True), cat, predicted="f")
    mixed = pd.concat([pilot.iloc[:5], other]).reset_index(drop=True)
    with pytest.raises(InputError, match="RangeIndex"):
        rectify.mean("y", mixed, pop, predicted="f")
    assert rectify.mean("y", pilot, pop, predicted="f", overlap="inside").pilot_in_frame is True
    assert rectify.mean("y", pilot, pop, predicted="f", overlap="separate").pilot_in_frame is False
    # a respondent-id column tells: the same people
    assert rectify.mean("y", pilot, pop, predicted="f", id="pid").pilot_in_frame is True
    with pytest.raises(InputError, match="column 'nope'"):
        rectify.mean("y", pilot, pop, predicted="f", id="nope")


def test_labels_that_do_not_identify_people_are_refused(frame):
    pilot = frame.sample(60, random_state=2)
    pop = frame.copy()
    pop["f"] = pop["f"].sample(frac=1, random_state=3).to_numpy()  # same labels, other people's rows
    with pytest.raises(InputError, match="do not identify people"):
        rectify.mean("y", pilot, pop, predicted="f")


def test_regression_verbs_and_subgroups_carry_the_target(frame):
    df = frame.assign(g=np.where(frame["x"] > 0, "a", "b"))
    pilot = draw_pilot(df, 120, random_state=4)
    r = rectify.ols("y ~ x", pilot, df, predicted="f")
    assert r.pilot_in_frame is True and r.target == "frame"
    rb = rectify.mean("y", pilot, df, predicted="f", by="g")
    assert rb.pilot_in_frame is True and rb.target == "frame"
    # per group: the finite-population correction of that group
    ra = rectify.mean("y", pilot[pilot.g == "a"], df[df.g == "a"], predicted="f", overlap="inside")
    np.testing.assert_allclose(rb.cov[0, 0], ra.cov[0, 0], rtol=1e-12)


def test_pilot_in_frame_function(frame):
    assert pilot_in_frame(frame.iloc[[3, 7]], frame) is True
    assert pilot_in_frame(frame.iloc[[3, 7]], None) is None
    with pytest.raises(InputError, match="overlap"):
        pilot_in_frame(frame, frame, overlap="maybe")


def test_bad_estimand_and_ppi_py_frame_are_refused():
    y = np.arange(10.0)
    with pytest.raises(InputError, match="estimand"):
        ppi_mean(y, y, y, estimand="population")
    with pytest.raises(InputError, match="superpopulation"):
        ppi_mean(y, y, y, estimand="frame", convention="ppi_py")


def test_compare_adapters_pass_the_estimand():
    """compare(estimand=...) reaches the numeric cores through Spec.estimand; the pilot drawn by compare
    keeps the frame's labels, so it is detected inside the frame (frame: finite-population correction)."""
    from dataclasses import replace

    from rectify.adapters_basic import _ppi
    from rectify.comparison import draw_cell_pilot, make_spec
    from rectify.demo import comparison_frame

    frame = comparison_frame()
    spec = make_spec(frame, ["f01"], probabilities="{item}_p{k}")
    pilot = draw_cell_pilot(frame, 150, 0, 7)
    fx = frame.drop(columns=["f01"])
    width = {}
    for est in ("frame", "superpopulation"):
        e = _ppi(fx, pilot, replace(spec, estimand=est), 0).estimates
        width[est] = (e["conf_high"] - e["conf_low"]).to_numpy()
    assert np.all(width["superpopulation"] > width["frame"])
    with pytest.raises(InputError, match="estimand"):
        rectify.compare(frame, ["f01"], methods=["classical"], pilot_sizes=[50], repeats=1, estimand="census",
                        progress=False)


@pytest.mark.parametrize("estimand", ["frame", "superpopulation"])
def test_logistic_coverage_pilot_inside_half_the_frame(estimand):
    from rectify.estimators.ppi import ppi_logistic

    rng = np.random.default_rng(23 + len(estimand))
    n, N = 150, 300

    def world():
        x = rng.normal(size=N)
        X = np.column_stack([np.ones(N), x])
        p = 1 / (1 + np.exp(-(-0.3 + 1.0 * x)))
        y = (rng.uniform(size=N) < p).astype(float)
        return X, y, np.clip(p + 0.1 * rng.normal(size=N), 0.01, 0.99)

    X, y, f = world()
    census = ppi_logistic(X, y, method="classical").estimate[1]
    hits = 0
    for _ in range(REPS):
        if estimand == "superpopulation":
            X, y, f = world()
        idx = rng.choice(N, n, replace=False)
        lo, hi = ppi_logistic(X[idx], y[idx], f[idx], X, f, estimand=estimand, overlap="inside").conf_int()
        truth = census if estimand == "frame" else 1.0
        hits += lo[1] <= truth <= hi[1]
    assert abs(hits / REPS - 0.95) <= TOL, f"{estimand}: logistic slope coverage {hits / REPS:.4f}"


def test_frame_size_with_and_without_the_pilot_inside():
    y = np.arange(20.0)
    sep = ppi_mean(y, method="classical", frame_size=200)  # frame estimand, separate pilot: 1/n + 1/N
    assert sep.std_error[0] == pytest.approx(np.sqrt(y.var(ddof=1) * (1 / 20 + 1 / 200)), rel=1e-12)
    r = ppi_mean(y, method="classical", frame_size=200, overlap="inside")
    assert r.std_error[0] == pytest.approx(np.sqrt((1 - 20 / 200) * y.var(ddof=1) / 20), rel=1e-12)
    assert r.pilot_in_frame is True and r.n_population == 200
