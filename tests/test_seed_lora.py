"""The paper's seed protocol end to end with every family on a tiny slice, the fine-tuning family
fitted live on the real embedded model (SmolLM2-135M, a few LoRA steps): `rectify compare --design
seed` with stored prompting answers, LoRA, its cross-fitted PPI++ and the in-sample degeneracy case."""

import numpy as np
import pandas as pd
import pytest

from rectify.cli import main
from rectify.demo import misinfo_seed_frame

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def seed_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("seedlora")
    df = misinfo_seed_frame()
    df = df[df["f03_zs_llm"].notna() & df["f03_fs_llm"].notna()].head(300)  # rows the embedded model answered
    cols = ["respondent_id", "age", "gender", "education", "region", "ideology", "f03", "t09"]
    cols += [c for c in df.columns if c.startswith(("f03_", "t09_"))]
    df[cols].to_csv(d / "survey.csv", index=False)
    (d / "seed.toml").write_text("\n".join([
        'frame = "survey.csv"', 'items = ["f03", "t09"]', "scores = [1, 2, 3, 4]",
        'predicted = "{item}_zs_llm"', 'probabilities = "{item}_zs_p{k}"',
        'covariates = ["age", "gender", "education", "ideology"]', "repeats = 1", "seed = 2",
        'pilot_fraction = 0.2',
        'methods = ["classical", "simulator", "ppi++", "covariates", "smol-fs", "smol-fs+ppi++", "lora", '
        '"lora+xfit-ppi++", "lora+ppi++ (in-sample)"]',
        'output = "out"',
        "[simulators.smol-fs]", 'kind = "columns"', 'predicted = "{item}_fs_llm"', 'probabilities = "{item}_fs_p{k}"',
        "[finetune]", "rank = 4", "layers = 1", "epochs = 1", "folds = 2", "threads = 2", ""]))
    return d


def test_seed_design_with_live_lora_on_the_embedded_model(seed_dir, capsys):
    rc = main(["compare", str(seed_dir / "seed.toml"), "--design", "seed", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "families x axes at n_pilot = 60 of 300" in out and "judged on the people outside the pilot" in out
    tidy = pd.read_csv(seed_dir / "out" / "fidelity.csv")
    fam = tidy.groupby("method")["family"].first()
    assert fam["lora"] == "fine-tuning" and fam["smol-fs"] == "prompting"
    assert fam["lora+xfit-ppi++"] == fam["lora+ppi++ (in-sample)"] == "rectification"
    # every family answered on every axis it can: LoRA predicts each person (individual axis) ...
    lo = tidy.query("method == 'lora' and source == 'respondents' and metric == 'weighted_kappa'")
    assert len(lo) and np.isfinite(lo["value"]).all()
    # ... the rectified versions give intervals whose coverage of the held-out humans is measured
    cov = tidy.query("metric == 'mean_coverage' and grouping == 'all'").groupby("method")["value"].mean()
    assert {"lora+xfit-ppi++", "lora+ppi++ (in-sample)", "ppi++", "classical"} <= set(cov.index)
    assert cov.between(0, 1).all()
    # the degeneracy case is labelled as such in every row it produced
    notes = tidy.query("method == 'lora+ppi++ (in-sample)'")["note"].fillna("")
    assert notes.str.contains("in-sample").all() and notes.str.contains("lora\\+xfit-ppi\\+\\+").all()
    est = pd.read_csv(seed_dir / "out" / "estimates.csv") if (seed_dir / "out" / "estimates.csv").exists() else None
    if est is not None:
        a = est.query("method == 'lora+xfit-ppi++' and term == 'mean' and grouping == 'all'")["estimate"].to_numpy()
        b = est.query("method == 'lora+ppi++ (in-sample)' and term == 'mean' and grouping == 'all'")["estimate"].to_numpy()
        assert a.shape == b.shape and not np.allclose(a, b)
