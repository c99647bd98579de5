"""Predicting a design's interval width before anyone is surveyed (issue 15)."""

import numpy as np
import pytest
from scipy.stats import norm

from rectify.design_planning import anticipated_variance, calibrated_sigma, predict_widths
from rectify.errors import InputError
from rectify.estimators.active import active_mean
from rectify.pilot_design import draw_positions, inclusion_probabilities


def test_srs_prediction_is_the_textbook_width():
    t = predict_widths(np.full(2000, 1.5), [100, 400], designs=("srs",))
    z = norm.ppf(0.975)
    assert t["half_width"].tolist() == pytest.approx([z * 1.5 * np.sqrt((1 - n / 2000) / n) for n in (100, 400)])


def test_active_ratio_matches_the_closed_form_without_floor_or_cap():
    sigma = np.r_[np.full(5000, 0.5), np.full(5000, 1.5)]
    N, n = sigma.size, 100
    t = predict_widths(sigma, n, designs=("srs", "active"), uniform=1e-9)
    v_act = (sigma.sum() ** 2 / n - (sigma**2).sum()) / N**2
    v_srs = (N / n - 1) * (sigma**2).sum() / N**2
    assert t["ratio_to_srs"].iloc[1] == pytest.approx(np.sqrt(v_act / v_srs), rel=1e-6)
    # 1 / (1 + CV^2) to first order in n / N
    cv2 = sigma.var() / sigma.mean() ** 2
    assert t["ratio_to_srs"].iloc[1] ** 2 == pytest.approx(1 / (1 + cv2), rel=0.02)


def test_prediction_matches_simulated_standard_errors():
    rng = np.random.default_rng(3)
    N = 1500
    sigma = rng.lognormal(-0.2, 0.8, N)
    f = rng.normal(size=N)
    y = 1 + 0.5 * f + rng.normal(0, sigma)
    for design, sampling in (("active", "fixed"), ("neyman", "fixed"), ("active", "poisson")):
        pi, st = inclusion_probabilities(sigma, 120, design)
        pred = np.sqrt(anticipated_variance(sigma, pi))
        draws = np.empty(400)
        for r in range(400):
            pos = draw_positions(pi, sampling, rng, st)
            draws[r] = active_mean(y[pos], f[pos], f, pi[pos], sampling="stratified" if st is not None else sampling,
                                   strata=None if st is None else st[pos]).estimate[0]
        # Monte-Carlo sd of 400 draws is within ~7% (3.5 s.e.) of the truth; the frame's residuals add a bit
        assert draws.std() == pytest.approx(pred, rel=0.12)


def test_calibrated_sigma_and_refusals():
    rng = np.random.default_rng(0)
    f = rng.normal(size=4000)
    s = np.where(f > 0, 2.0, 0.5)
    y = 1 + f + rng.normal(0, s)
    sig = calibrated_sigma(y, f, (f > 0).astype(float), np.array([-1.0, 1.0]), np.array([0.0, 1.0]))
    assert sig == pytest.approx([0.5, 2.0], rel=0.05)
    with pytest.raises(InputError, match="'pi'"):
        anticipated_variance(np.ones(3), [0.5, 0.0, 1.0])
    with pytest.raises(InputError, match="'sigma'"):
        predict_widths([1.0, np.nan, 1.0], 2)
    with pytest.raises(InputError, match="'design'"):
        predict_widths(np.ones(10), 2, designs=("cluster",))
    with pytest.raises(InputError, match="'y'"):
        calibrated_sigma([1.0, 2.0], [1.0], [0.0, 1.0], [0.0], [0.0])
