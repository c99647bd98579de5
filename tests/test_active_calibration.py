"""Calibration weighting with design weights 1/pi on an active pilot gives design-valid intervals (issue 15).

``rectify.calibrate`` takes the design weights of an unequal-probability pilot; its linearisation
variance treats the pilot as drawn with replacement (no finite-population correction), so under the
active design its intervals are valid and somewhat conservative.
"""

import numpy as np
import pandas as pd

import rectify
from rectify.pilot_design import draw_positions, inclusion_probabilities


def test_greg_with_inverse_pi_weights_is_unbiased_and_covers_under_an_active_design():
    rng = np.random.default_rng(0)
    N = 1200
    s = rng.lognormal(-0.3, 0.7, N)
    f = rng.normal(2, 1, N)
    y = 0.4 + 0.8 * f + rng.normal(0, s)
    frame = pd.DataFrame({"y": y, "f": f})
    pi, _ = inclusion_probabilities(s, 80, "active", uniform=0.2)
    reps = 200
    est, hit = np.empty(reps), np.empty(reps, bool)
    for r in range(reps):
        pos = draw_positions(pi, "fixed", rng)
        pilot = frame.iloc[pos].assign(d=1 / pi[pos])
        res = rectify.calibrate(pilot, frame, formula="~ f", method="linear", design_weights="d").mean("y")
        lo, hi = res.conf_int()
        est[r], hit[r] = res.estimate[0], lo[0] <= y.mean() <= hi[0]
    assert abs(est.mean() - y.mean()) <= 3 * est.std(ddof=1) / np.sqrt(reps)
    assert hit.mean() >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / reps)
