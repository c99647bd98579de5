"""ANES 1996 with the embedded model's stored answers: the shipped file, its loader, the comparison."""

import gzip
import importlib.util
import io
import os
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from rectify.datasets import load_anes96, load_anes96_llm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITEMS = {"self_lr": np.arange(1, 8, dtype=float), "party_id": np.arange(0, 7, dtype=float)}


@pytest.fixture(scope="module")
def stored():
    raw = resources.files("rectify.data").joinpath("anes96_llm.csv.gz").read_bytes()
    return pd.read_csv(io.BytesIO(gzip.decompress(raw)))


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("simulate_anes96", os.path.join(ROOT, "scripts", "simulate_anes96.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stored_file_has_every_respondent_and_the_documented_columns(stored):
    cols = ["respondent_id"]
    for item in ITEMS:
        cols += [f"{item}_p{k}" for k in range(1, 8)] + [f"{item}_mass", f"{item}_llm"]
    assert stored.columns.tolist() == cols
    assert stored["respondent_id"].tolist() == list(range(1, 945))
    assert not stored.isna().any().any()


@pytest.mark.parametrize("item", list(ITEMS))
def test_stored_probabilities_mass_and_expected_score_agree(stored, item):
    p = stored[[f"{item}_p{k}" for k in range(1, 8)]].to_numpy()
    mass = stored[f"{item}_mass"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    # raw next-token probabilities: the options take part of the mass, never more than all of it
    assert (p.sum(axis=1) <= 1 + 4e-4).all() and (mass <= 1).all() and (mass > 0).all()
    # each value rounded to 4 decimals: 7 roundings of the parts + 1 of the sum
    np.testing.assert_allclose(p.sum(axis=1), mass, atol=8 * 0.5e-4)
    s = ITEMS[item]
    expected = (p / p.sum(axis=1, keepdims=True)) @ s
    # the expected score was computed before rounding: |error| <= sum_k |dp_k| |s_k - E| / mass
    bound = 7 * 0.5e-4 * (s[-1] - s[0]) / (p.sum(axis=1) - 3.5e-4)
    assert (np.abs(stored[f"{item}_llm"] - expected) <= bound + 0.5e-4).all()
    s = ITEMS[item]
    assert stored[f"{item}_llm"].between(s[0], s[-1]).all()


def test_loader_is_aligned_with_load_anes96(stored):
    base = load_anes96()
    full = load_anes96_llm()
    assert full.index.equals(base.index)
    pd.testing.assert_frame_equal(full[base.columns], base)
    for item, s in ITEMS.items():
        p = full[[f"{item}_p{k}" for k in range(1, 8)]].to_numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(full[f"{item}_llm"], stored[f"{item}_llm"])
        np.testing.assert_allclose(full[f"{item}_llm"], p @ s, atol=0.05)
        np.testing.assert_array_equal(full[f"{item}_mass"], stored[f"{item}_mass"])


def test_personas_never_carry_the_answers(script):
    X = script.persona_frame(load_anes96())
    assert set(X.columns) == {"age", "education", "income", "place", "tv_news"}
    from rectify.llm.persona import render_personas

    text = " ".join(render_personas(X, script.PERSONA_TEMPLATE)).lower()
    for word in ("liberal", "conservative", "democrat", "republican", "clinton", "dole", "vote"):
        assert word not in text
    # the items carry the real ANES scales: party ID 0..6 as in statsmodels' PID, selfLR 1..7
    assert script.PARTY_ID.score_values.tolist() == list(range(7))
    assert script.SELF_LR.score_values.tolist() == list(range(1, 8))


def test_small_comparison_on_real_humans():
    from rectify.demo import anes_comparison_frame, run_anes_comparison

    df = anes_comparison_frame()
    assert len(df) == 944 and (df["party_id7"] == load_anes96()["party_id"] + 1).all()
    kw = dict(pilot_sizes=(60,), repeats=2, methods=["classical", "simulator", "ppi++"], seed=5, progress=False)
    a = run_anes_comparison(**kw)
    b = run_anes_comparison(**kw)
    pd.testing.assert_frame_equal(a.table, b.table)  # same seed, same numbers
    est = a.estimates.query("grouping == 'all' and term == 'mean'").set_index(["method", "repeat", "item"])
    for item in ("self_lr", "party_id7"):
        # the truth is the whole frame's human mean; the simulator's estimate is the mean of its
        # answer distributions (probabilities times the scores 1..7)
        assert est.loc[("classical", 0, item), "truth"] == pytest.approx(df[item].mean(), abs=1e-12)
        dist_mean = (df[[f"{item}_p{k}" for k in range(1, 8)]].to_numpy() @ np.arange(1, 8)).mean()
        assert est.loc[("simulator", 0, item), "estimate"] == pytest.approx(dist_mean, abs=1e-9)
        # PPI++ falls back towards the pilot when the simulator is poor; its interval covers here
        lo, hi = est.loc[("ppi++", 0, item), ["conf_low", "conf_high"]]
        assert lo < df[item].mean() < hi
