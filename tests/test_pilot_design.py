"""Pilot designs (issue 15): inclusion probabilities, draws, seeds and refusals."""

import numpy as np
import pandas as pd
import pytest

from rectify.errors import InputError, MissingCovariateError
from rectify.pilot_design import (design_pilot, draw_positions, fit_error_model, inclusion_probabilities,
                                  llm_uncertainty)


def _frame(N=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"err": rng.lognormal(-0.5, 0.9, N), "grp": rng.choice(["a", "b", "c"], N),
                         "y": rng.normal(size=N)}, index=np.arange(1000, 1000 + N))


@pytest.mark.parametrize("uniform", [0.05, 0.2, 0.7])
def test_active_pi_sum_floor_cap_and_proportionality(uniform):
    e = np.r_[np.full(95, 1.0), [40.0, 60.0, 80.0, 100.0, 200.0]]  # big errors force the cap
    N, n = e.size, 20
    pi, st = inclusion_probabilities(e, n, "active", uniform=uniform)
    assert st is None
    assert pi.sum() == pytest.approx(n, abs=1e-9)
    assert pi.min() >= uniform * n / N - 1e-12 and pi.max() <= 1.0
    score = (1 - uniform) * e / e.sum() + uniform / N
    free = pi < 1 - 1e-12
    ratio = pi[free] / score[free]
    assert np.ptp(ratio) < 1e-9 * ratio.mean()  # proportional to the mixed score where not capped
    capped = ~free
    assert (score[capped] * ratio.mean() >= 1 - 1e-9).all()  # the cap only binds where t*score >= 1
    if uniform < 0.5:
        assert capped.sum() >= 3  # the iteration had to cap several rows


def test_neyman_allocation_matches_hand_computation():
    # two error bins of 50 rows each: errors 1 and 3 -> n_h proportional to 50*1 and 50*3
    e = np.r_[np.ones(50), np.full(50, 3.0)]
    pi, st = inclusion_probabilities(e, 20, "neyman", n_bins=2)
    assert np.bincount(st).tolist() == [50, 50]
    nh = np.bincount(st, weights=pi)
    assert nh.round(9).tolist() == [5.0, 15.0]
    # with a covariate crossed in, at least 2 rows per stratum and sum n
    cov = np.tile([0, 1], 50)
    pi2, st2 = inclusion_probabilities(e, 10, "neyman", n_bins=2, strata_codes=cov)
    nh2 = np.bincount(st2, weights=pi2)
    assert nh2.sum() == pytest.approx(10) and nh2.min() >= 2 - 1e-9
    assert np.allclose(nh2, np.round(nh2))


def test_neyman_refuses_too_many_strata():
    with pytest.raises(InputError, match="'n'"):
        inclusion_probabilities(np.arange(1.0, 101), 5, "neyman", n_bins=4)


@pytest.mark.parametrize("sampling", ["fixed", "poisson"])
def test_draws_have_the_stated_inclusion_probabilities(sampling):
    e = np.r_[np.linspace(0.1, 1, 15), [5.0, 9.0]]
    pi, _ = inclusion_probabilities(e, 6, "active", uniform=0.2)
    rng = np.random.default_rng(5)
    R = 4000
    counts = np.zeros(e.size)
    sizes = np.empty(R)
    for r in range(R):
        pos = draw_positions(pi, sampling, rng)
        counts[pos] += 1
        sizes[r] = pos.size
    freq = counts / R
    se = np.sqrt(pi * (1 - pi) / R) + 1e-12
    assert (np.abs(freq - pi) <= 3.5 * se + 1e-12).all()
    if sampling == "fixed":
        assert (sizes == 6).all()
    else:
        assert abs(sizes.mean() - 6) < 3 * sizes.std() / np.sqrt(R)


def test_stratified_draw_takes_the_allocation_exactly():
    e = np.r_[np.ones(60), np.full(40, 4.0)]
    pi, st = inclusion_probabilities(e, 20, "neyman", n_bins=2)
    pos = draw_positions(pi, "fixed", np.random.default_rng(0), st)
    assert np.bincount(st[pos], minlength=2).tolist() == np.bincount(st, weights=pi).round().astype(int).tolist()


def test_design_pilot_keeps_index_records_design_and_reproduces():
    df = _frame()
    p1 = design_pilot(df, 40, "active", error="err", random_state=11)
    p2 = design_pilot(df, 40, "active", error="err", random_state=11)
    p3 = design_pilot(df, 40, "active", error="err", random_state=12)
    assert p1.index.equals(p2.index) and not p1.index.equals(p3.index)
    assert p1.index.isin(df.index).all() and len(p1) == 40
    pi_all, _ = inclusion_probabilities(df["err"].to_numpy(), 40, "active")
    assert np.allclose(p1["pi"], pd.Series(pi_all, index=df.index)[p1.index])
    d = p1.attrs["rectify_design"]
    assert (d["design"], d["sampling"], d["n"], d["N"], d["pi"]) == ("active", "fixed", 40, 400, "pi")
    assert "pi" not in df.columns  # the frame is not modified
    ney = design_pilot(df, 40, "neyman", error="err", strata="grp", n_bins=2, random_state=1)
    assert ney.attrs["rectify_design"]["strata"] == "stratum" and (1 / ney["pi"]).sum() == pytest.approx(400)
    srs = design_pilot(df, 40, "srs", random_state=1)
    assert np.allclose(srs["pi"], 0.1)


def test_design_pilot_from_probabilities_uses_the_llm_sd():
    P = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.2, 0.6, 0.2]] * 10)
    df = pd.DataFrame(P, columns=["p1", "p2", "p3"])
    pi_ref, _ = inclusion_probabilities(llm_uncertainty(P), 6, "active")
    p = design_pilot(df, 6, "active", probs=["p1", "p2", "p3"], random_state=0, sampling="poisson")
    assert np.allclose(p["pi"], pi_ref[p.index])
    # Neyman strata of the entropy: the certain rows (entropy 0) form the low bin
    ent = llm_uncertainty(P, kind="entropy")
    pi_e, st_e = inclusion_probabilities(ent, 8, "neyman", n_bins=2)
    q = design_pilot(df, 8, "neyman", probs=["p1", "p2", "p3"], uncertainty="entropy", n_bins=2, random_state=0)
    assert np.allclose(q["pi"], pi_e[q.index]) and (q["stratum"] == st_e[q.index]).all()


def test_llm_uncertainty_reference_values():
    P = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    sd = llm_uncertainty(P)
    mu = P[1] @ [1, 2, 3, 4]
    assert sd[0] == pytest.approx(np.sqrt(1.25))
    assert sd[1] == pytest.approx(np.sqrt(P[1] @ (np.arange(1, 5) - mu) ** 2))
    assert llm_uncertainty(P, kind="entropy")[0] == pytest.approx(np.log(4))
    assert llm_uncertainty([[2.0, 2.0]], scores=[0, 10])[0] == pytest.approx(5.0)  # rows renormalised


def test_error_model_recovers_a_variance_function():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 2, 20000)
    y = rng.normal(0, np.sqrt(0.5 + 2 * x))
    e = fit_error_model(y, np.zeros_like(y), x, np.array([0.0, 1.0, 2.0]))
    assert np.allclose(e, np.sqrt([0.5, 2.5, 4.5]), rtol=0.03)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=1), "'n'"), (dict(n=401), "'n'"), (dict(n=10.0), "'n'"),
    (dict(design="optimal"), "'design'"), (dict(sampling="cluster"), "'sampling'"),
    (dict(uniform=0.0), "'uniform'"), (dict(uniform=1.5), "'uniform'"),
    (dict(error="nope"), "'error'"), (dict(error=-np.ones(400)), "'error'"),
    (dict(error=np.r_[np.nan, np.ones(399)]), "'error'"), (dict(error=np.ones(3)), "'error'"),
    (dict(error=None), "error=<column"), (dict(probs=["p9"], error=None), "'probs'"),
    (dict(random_state=None), "'random_state'"), (dict(random_state=1.5), "'random_state'"),
    (dict(column="y"), "'column'"), (dict(design="neyman", strata="nope"), "'strata'"),
])
def test_design_pilot_refuses_bad_inputs(kwargs, match):
    args = dict(n=40, design="active", error="err", random_state=0)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        design_pilot(_frame(), **args)


def test_design_pilot_refuses_missing_strata_and_non_frames():
    df = _frame()
    df.loc[df.index[0], "grp"] = None
    with pytest.raises(MissingCovariateError, match="strata"):
        design_pilot(df, 40, "neyman", error="err", strata="grp", random_state=0)
    with pytest.raises(InputError, match="'frame'"):
        design_pilot(df.to_numpy(), 40, random_state=0)
    with pytest.raises(InputError, match="'kind'"):
        llm_uncertainty([[0.5, 0.5]], kind="variance")
    with pytest.raises(InputError, match="'probs'"):
        llm_uncertainty([[0.5, -0.5]])
