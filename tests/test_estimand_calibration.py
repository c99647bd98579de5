"""Calibration (rectify.weighting.calibrate) with an explicit estimand: coverage with the sample inside a
frame of twice its size (2,000 repetitions, 3 Monte Carlo SE around 0.95), and the four variance cases
against their closed forms."""

import numpy as np
import pandas as pd
import pytest

from rectify.errors import InputError
from rectify.weighting import calibrate

REPS = 2000
TOL = 3 * np.sqrt(0.95 * 0.05 / REPS)


def _frame(rng, N):
    x = rng.normal(size=N)
    return pd.DataFrame({"x": x, "y": 1.0 + x + 0.8 * rng.normal(size=N)})


def _greg_mean(pilot, N, T, target):
    """The linear calibration (GREG) of ``y`` on ``1, x`` to the frame totals T, through the numeric core."""
    from rectify.estimators.survey_estimation import GregStep, SurveyDesign, survey_mean

    n = len(pilot)
    X = np.column_stack([np.ones(n), pilot["x"].to_numpy()])
    d = np.full(n, N / n)
    g = 1 + X @ np.linalg.solve(X.T @ (d[:, None] * X), T - X.T @ d)
    des = SurveyDesign(weights=d * g, steps=(GregStep(X, d, g),), target=target, frame_size=N)
    return survey_mean(pilot["y"].to_numpy(), des)


@pytest.mark.parametrize("estimand", ["frame", "superpopulation"])
def test_linear_calibration_covers_with_the_sample_inside_the_frame(estimand):
    from rectify.estimand import Target

    rng = np.random.default_rng(31 + len(estimand))
    n, N = 100, 200
    frame = _frame(rng, N)
    hits = 0
    for _ in range(REPS):
        if estimand == "superpopulation":
            frame = _frame(rng, N)
        pilot = frame.iloc[rng.choice(N, n, replace=False)]
        r = _greg_mean(pilot, N, np.array([N, frame["x"].sum()]), Target(estimand, True))
        lo, hi = r.conf_int()
        truth = frame["y"].mean() if estimand == "frame" else 1.0
        hits += lo[0] <= truth <= hi[0]
    assert r.target == estimand and r.pilot_in_frame is True
    assert abs(hits / REPS - 0.95) <= TOL, f"{estimand}: coverage {hits / REPS:.4f}"


def test_calibrate_passes_the_estimand_and_the_four_cases():
    from rectify.estimators.survey_estimation import stratified_cov

    rng = np.random.default_rng(4)
    frame = _frame(rng, 400)
    pilot = frame.sample(100, random_state=5)
    n, N = 100, 400
    cw = calibrate(pilot, frame, formula="~ x", method="linear")
    base = cw.mean("y")  # R's variance
    assert base.target is None
    v0 = base.cov[0, 0]

    def get(est, ov):
        return calibrate(pilot, frame, formula="~ x", method="linear", estimand=est, overlap=ov).mean("y")

    fi = get("frame", "inside")
    assert fi.target == "frame" and fi.pilot_in_frame is True
    assert fi.cov[0, 0] == pytest.approx((1 - n / N) * v0, rel=1e-10)
    assert get("frame", "separate").cov[0, 0] == pytest.approx((1 + n / N) * v0, rel=1e-10)
    # with the sample inside, the superpopulation adds the answers' own variance over the frame
    w = cw.weights.to_numpy()
    y = pilot["y"].to_numpy()
    raw = w * (y - np.average(y, weights=w)) / w.sum()
    vy = stratified_cov(raw[:, None])[0, 0]
    assert get("superpopulation", "inside").cov[0, 0] == pytest.approx((1 - n / N) * v0 + n / N * vy, rel=1e-10)
    # auto-detection from the index (the sample keeps the frame's labels)
    assert calibrate(pilot, frame, formula="~ x", method="linear", estimand="frame").mean("y").cov[0, 0] == \
        pytest.approx(fi.cov[0, 0], rel=1e-12)


def test_margins_need_a_stated_overlap():
    s = pd.DataFrame({"g": ["a", "a", "b", "b"], "y": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(InputError, match="overlap="):
        calibrate(s, margins={"g": {"a": 10, "b": 10}}, estimand="frame")
    r = calibrate(s, margins={"g": {"a": 10, "b": 10}}, estimand="frame", overlap="inside").mean("y")
    assert r.pilot_in_frame is True
