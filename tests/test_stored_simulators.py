"""Stored simulator answers that cover only some people (the embedded model run on a subset):
the rows it did not answer are left out of its estimates, of its PPI++ correction and of its
fidelity metrics, the note says how many, and the cell is final (not retried)."""

import numpy as np
import pandas as pd
import pytest

from rectify import registry
from rectify.comparison import compare, draw_cell_pilot
from rectify.config import check_config, prepare
from rectify.demo import comparison_frame
from rectify.errors import InputError
from rectify.verbs import mean as rectify_mean

ITEM = "f01"
SC = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def frame():
    df = comparison_frame().head(500).copy()
    rng = np.random.default_rng(11)
    p = rng.dirichlet([2.0, 1.0, 1.0, 1.0], size=len(df))
    covered = rng.random(len(df)) < 0.6  # the stored answers cover a random 60% of the people
    for k in range(4):
        df[f"{ITEM}_st_p{k + 1}"] = np.where(covered, p[:, k], np.nan)
    df[f"{ITEM}_st_llm"] = np.where(covered, p @ np.asarray(SC), np.nan)
    return df


def test_stored_source_leaves_unanswered_rows_out_and_renormalises():
    src = registry.stored_source({"y": ["a", "b"]})
    rows = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [1.0, np.nan, 1.0]}, index=[10, 11, 12])
    p, rec = src(rows, None, None, "y", 0)
    np.testing.assert_allclose(p[[0, 2]], [[0.5, 0.5], [0.75, 0.25]])
    assert np.isnan(p[1]).all() and rec == {"rows": [11], "not_simulated": 1, "of": 3}
    with pytest.raises(InputError, match="no stored answer"):
        src(rows.loc[[11]], None, None, "y", 0)


def _methods(frame):
    raw = {"dataset": "misinfo", "items": [ITEM], "scores": SC, "methods": ["st", "st+ppi++"],
           "covariates": ["age", "education", "ideology"],
           "simulators": {"st": {"kind": "columns", "predicted": "{item}_st_llm", "probabilities": "{item}_st_p{k}"}}}
    cfg = check_config(raw, ".", "inline")
    kw, _ = prepare(cfg, frame, progress=False)
    return kw


def test_partial_stored_simulator_in_compare_matches_hand_computation(frame):
    kw = _methods(frame)
    cmp = compare(frame, pilot_sizes=[100], repeats=1, random_state=3, evaluate="rest", progress=False,
                  **{k: v for k, v in kw.items() if k not in ("pilot_sizes", "repeats", "random_state", "evaluate")})
    assert cmp.failures.empty
    assert not cmp.meta.get("partial")  # stored subsets are final: nothing to retry
    pilot = draw_cell_pilot(frame, 100, 0, 3)
    rest = frame.drop(index=pilot.index)
    ok = rest[f"{ITEM}_st_p1"].notna()
    # the simulator's population mean: the average stored distribution over the answered rows
    est = cmp.estimates.query("method == 'st' and grouping == 'all' and term == 'mean'")["estimate"].item()
    P = rest.loc[ok, [f"{ITEM}_st_p{k}" for k in range(1, 5)]].to_numpy(float)
    P = P / P.sum(axis=1, keepdims=True)
    assert est == pytest.approx(float(P.mean(axis=0) @ np.asarray(SC)), abs=1e-12)
    note = cmp.table.query("method == 'st'")["note"].iloc[0]
    assert f"{ITEM}: {int((~ok).sum())} of {len(rest)} rows ({int((~ok).sum())} not simulated)" in note
    assert "stored answers cover a subset" in note
    # PPI++ on the covered rows only: the verb on the explicitly subset data gives the same estimate
    pilot_ok = pilot[pilot[f"{ITEM}_st_p1"].notna() & pilot[ITEM].notna()]
    pop_ok = rest[ok]
    ref = rectify_mean(ITEM, pilot_ok, pop_ok, predicted=f"{ITEM}_st_llm", method="ppi++")
    got = cmp.estimates.query("method == 'st+ppi++' and grouping == 'all' and term == 'mean'")["estimate"].item()
    assert got == pytest.approx(float(np.asarray(ref.estimate).ravel()[0]), abs=1e-9)
    # a respondent-level metric: Pearson r between expected score and human answer on answered rows
    r = cmp.table.query("method == 'st' and source == 'respondents' and metric == 'pearson_r' "
                        "and grouping == 'all' and item == 'mean_score'")["value"].iloc[0]
    h = rest.loc[ok, ITEM]
    e = pd.Series(P @ np.asarray(SC), index=rest.index[ok])
    both = h.notna()
    assert r == pytest.approx(np.corrcoef(h[both], e[both])[0, 1], abs=1e-9)
