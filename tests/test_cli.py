"""The command line: `rectify demo` and `rectify compare CONFIG.toml`, including configuration errors."""

import os

import numpy as np

import pandas as pd
import pytest

from rectify.cli import load_config, main
from rectify.demo import comparison_frame
from rectify.errors import ConfigError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    df = comparison_frame().head(400)
    cols = ["respondent_id", "age", "gender", "education", "ideology", "f01", "t01", "f01_llm", "t01_llm"]
    cols += [f"{i}_p{k}" for i in ("f01", "t01") for k in range(1, 5)]
    df[cols].to_csv(d / "survey.csv", index=False)
    return d


def _config(d, tables="", **over):
    cfg = {
        "frame": '"survey.csv"', "items": '["f01", "t01"]', "scores": "[1, 2, 3, 4]",
        "probabilities": '"{item}_p{k}"', "formula": '"disc ~ age + ideology"', "groups": '["ideology"]',
        "methods": '["classical", "simulator", "ppi++"]', "pilot_sizes": "[60]", "repeats": "1", "seed": "3",
        "output": '"out"', "title": '"CLI <test>"',
    }
    cfg.update(over)
    body = "\n".join(f"{k} = {v}" for k, v in cfg.items() if v is not None)
    body += '\n[scales.disc]\nplus = ["t01"]\nminus = ["f01"]\n' + tables
    path = d / "config.toml"
    path.write_text(body)
    return str(path)


def test_compare_command_writes_the_report(data_dir, capsys):
    rc = main(["compare", _config(data_dir), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Fidelity at n_pilot = 60" in out and "ppi++" in out
    report = data_dir / "out" / "report.html"
    assert report.exists() and f"Report written to {report}" in out
    tidy = pd.read_csv(data_dir / "out" / "fidelity.csv")
    assert set(tidy["method"]) == {"classical", "simulator", "ppi++"}
    assert "CLI &lt;test&gt;" in report.read_text()


SERVER = '[simulators.srv]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
PROMPTED = {"items_file": '"items.json"', "covariates": '["age", "ideology"]'}


@pytest.mark.parametrize("over, tables, match", [
    ({"methods": '["classical", "gpt-magic"]'}, "", "unknown method 'gpt-magic'"),
    ({"formula": '"disc ~ age + income"'}, "", "income"),
    ({"pilot_sizes": "[60, 900]"}, "", "900"),
    ({"items": '["f01", "f99"]'}, "", "f99"),  # a missing item column
    ({"colour": '"blue"'}, "", "unknown key"),
    ({"repeats": '"five"'}, "", "'repeats' has the wrong type"),  # wrong types
    ({"k": "2.5"}, "", "'k' has the wrong type"),
    ({"frame": '"nowhere.csv"'}, "", "not found"),
    ({"backend": '"openai"'}, "", "'backend' is not a key"),
    ({"seed": "-3"}, "", "'seed' must be a non-negative"),
    ({"scores": '["low", "mid", "high", "top"]'}, "", "'scores' must be a list of numbers"),
    ({}, '[simulators.x]\nkind = "gpt"\n', "kind 'gpt' is unknown"),
    ({}, '[simulators.x]\nkind = "local"\nbatch_size = "big"\n', "'batch_size' has the wrong type"),
    ({}, SERVER + 'api_key = "sk-secret-123"\n', "never be written in the configuration"),
    ({}, '[pipelines.p]\nsimulator = "ghost"\ncorrection = "ppi++"\n', "simulator 'ghost' is not defined"),
    ({"methods": '["classical", "ghost-few-shot+ppi++"]'}, "", "prompts simulator 'ghost', which is not defined"),
    ({}, '[pipelines.p]\nsimulator = "lora"\ncorrection = "greg"\n', "does not apply"),
    ({}, '[simulators.st]\nkind = "columns"\npredicted = "{item}_gpt"\n', "f01_gpt"),  # missing column
    ({}, '[finetune]\nrank = "eight"\n', "'rank' must be int"),
    ({"strategies": '["three-shot"]'}, "", "unknown strategies"),
    ({**PROMPTED, "methods": '["srv-zero-shot"]'}, SERVER, "cannot reach the server at http://127.0.0.1:9/v1"),
])
def test_bad_configurations_give_one_clear_line_and_exit_2(data_dir, capsys, over, tables, match):
    _items_json(data_dir)
    rc = main(["compare", _config(data_dir, tables=tables, **over), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("rectify: ") and match in lines[0], lines[0]
    assert "Traceback" not in cap.err + cap.out and "sk-secret-123" not in cap.err


def _items_json(d):
    import json

    from rectify.datasets import misinfo_items

    recs = [{"name": it.name, "wording": it.wording, "options": list(it.options)} for it in misinfo_items()
            if it.name in ("f01", "t01")]
    (d / "items.json").write_text(json.dumps(recs))


def test_load_config_resolves_paths_and_defaults(data_dir):
    cfg = load_config(_config(data_dir, repeats=None, seed=None))
    assert cfg["frame"] == os.path.join(str(data_dir), "survey.csv")
    assert cfg["kwargs"]["repeats"] == 5 and cfg["kwargs"]["random_state"] == 0
    assert cfg["kwargs"]["scales"] == {"disc": (["t01"], ["f01"])}
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(data_dir / "missing.toml"))


def test_demo_prints_the_ppi_table_first_then_the_seed_design_and_conclusions(tmp_path, capsys):
    out_dir = tmp_path / "rep"
    rc = main(["demo", "--surveys", "gss", "--repeats", "1", "--methods", "classical", "simulator", "ppi++",
               "--out", str(out_dir), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    first = out.index("Mean misinformation discernment")
    seed = out.index("=== GSS 2018 spending (real humans): the seed design")
    assert first < seed < out.index("Design 'seed': families x axes") < out.index("What to conclude")
    assert "[ideology = conservative]" in out
    report = out_dir / "gss" / "report.html"
    assert report.exists() and f"Report written to {report}" in out


def test_demo_without_comparison(capsys):
    assert main(["demo", "--no-compare", "--n-pilot", "120"]) == 0
    out = capsys.readouterr().out
    assert "pilot of 120 human answers" in out and "Running the comparison" not in out


def test_methods_command_lists_every_registered_method(capsys):
    from rectify import registry

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["method", "family", "default", "needs", "description"]
    for name, fam in registry.available().items():
        row = [ln for ln in lines if ln.strip().startswith(name + " ") and fam in ln]
        assert row, f"{name} ({fam}) not listed"
    insample = next(ln for ln in lines if ln.strip().startswith("lora+ppi++ (in-sample)"))
    assert "DEGENERACY CASE" in insample and "rectification" in insample
    assert next(ln for ln in lines if ln.strip().startswith("classical ")).split()[1:4] == ["pilot", "only", "yes"]


def test_methods_command_with_a_configuration_lists_its_simulators(data_dir, capsys):
    cfg = _config(data_dir, tables='[simulators.stored]\nkind = "columns"\npredicted = "{item}_llm"\n'
                  '[pipelines.stored-greg]\nsimulator = "stored"\ncorrection = "greg"\n')
    assert main(["methods", cfg]) == 0
    out = capsys.readouterr().out
    assert any(ln.strip().startswith("stored+ppi++") and "rectification" in ln for ln in out.splitlines())
    assert any(ln.strip().startswith("stored-greg") and "pipeline stored -> greg" in ln for ln in out.splitlines())


SEED_METHODS = ["classical", "simulator", "ppi++", "greg", "covariates", "covariates+ppi", "stored+ppi++",
                "stored-greg"]


def _printed_rows(out, block):
    """Lines of one ``[block]`` of the printed families x axes table: method -> the numbers."""
    part = out.split(f"[{block}]\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for ln in part.splitlines()[2:]:  # header lines: columns, index names
        toks = ln.split()
        for m in SEED_METHODS:
            if m in toks:
                rows[m] = toks[-8:]
    return rows


def _fmt(v):
    return "NaN" if np.isnan(v) else f"{v:.3f}"


def test_seed_design_end_to_end_on_a_tiny_slice(data_dir, capsys):
    from rectify.comparison import axes_table, compare

    tables = ('[simulators.stored]\nkind = "columns"\npredicted = "{item}_llm"\nprobabilities = "{item}_p{k}"\n'
              '[pipelines.stored-greg]\nsimulator = "stored"\ncorrection = "greg"\n')
    cfg = _config(data_dir, tables=tables, pilot_sizes=None, probabilities=None, groups=None, repeats="2",
                  covariates='["age", "education", "ideology"]', methods=str(SEED_METHODS).replace("'", '"'),
                  checkpoint='"ck-seed"')
    rc = main(["compare", "--design", "seed", cfg, "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Design 'seed': families x axes at n_pilot = 20 of 400" in out  # 5% pilot
    assert "judged on the people outside the pilot" in out
    # the same comparison through the API
    frame = pd.read_csv(data_dir / "survey.csv")
    ref = compare(frame, ["f01", "t01"], methods=SEED_METHODS, pilot_sizes=[20], repeats=2, groups=["ideology"],
                  formula="disc ~ age + ideology", scales={"disc": (["t01"], ["f01"])}, predicted="{item}_llm",
                  probabilities="{item}_p{k}", scores=[1, 2, 3, 4], covariates=["age", "education", "ideology"],
                  random_state=3, evaluate="rest", progress=False)
    assert ref.failures.empty
    blocks = [("all", "all", "all")] + [(f"ideology = {g}", "ideology", g) for g in ("liberal", "moderate",
                                                                                      "conservative")]
    for block, grouping, group in blocks:
        want = axes_table(ref.table, 20, SEED_METHODS, grouping=grouping, group=group)
        got = _printed_rows(out, block)
        assert set(got) == set(SEED_METHODS)
        for (_, m), row in want.iterrows():
            assert got[m] == [_fmt(v) for v in row.to_numpy(float)], (block, m)
    # every family is there, on every axis
    allt = axes_table(ref.table, 20, SEED_METHODS)
    assert {"pilot only", "prompting", "rectification", "calibration", "covariates"} <= set(allt.index.get_level_values(0))
    assert allt[[c for c in allt.columns if c.startswith("individual")]].notna().any().all()


def test_an_unforeseen_error_is_one_line_and_exit_2_with_the_traceback_on_demand(monkeypatch, capsys):
    """No bad input should reach this path, but if one does the user still gets one line, exit code 2."""
    import rectify.cli as cli

    def boom(args):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(cli, "_cmd_compare", boom)
    monkeypatch.delenv("RECTIFY_DEBUG", raising=False)
    assert cli.main(["compare", "x.toml"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("rectify: unexpected error: TypeError: unhashable type: 'list'") and "RECTIFY_DEBUG=1" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err
    monkeypatch.setenv("RECTIFY_DEBUG", "1")
    with pytest.raises(TypeError, match="unhashable"):
        cli.main(["compare", "x.toml"])
