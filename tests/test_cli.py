"""The command line: `rectify demo` and `rectify compare CONFIG.toml`, including configuration errors."""

import os

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


def _config(d, **over):
    cfg = {
        "frame": '"survey.csv"', "items": '["f01", "t01"]', "scores": "[1, 2, 3, 4]",
        "probabilities": '"{item}_p{k}"', "formula": '"disc ~ age + ideology"', "groups": '["ideology"]',
        "methods": '["classical", "simulator", "ppi++"]', "pilot_sizes": "[60]", "repeats": "1", "seed": "3",
        "output": '"out"', "title": '"CLI <test>"',
    }
    cfg.update(over)
    body = "\n".join(f"{k} = {v}" for k, v in cfg.items() if v is not None)
    body += '\n[scales.disc]\nplus = ["t01"]\nminus = ["f01"]\n'
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


@pytest.mark.parametrize("over, match", [
    ({"methods": '["classical", "gpt-magic"]'}, "unknown method 'gpt-magic'"),
    ({"formula": '"disc ~ age + income"'}, "income"),
    ({"pilot_sizes": "[60, 900]"}, "900"),
    ({"items": '["f01", "f99"]'}, "f99"),
    ({"colour": '"blue"'}, "unknown key"),
    ({"repeats": '"five"'}, "'repeats' has the wrong type"),
    ({"frame": '"nowhere.csv"'}, "not found"),
    ({"backend": '"openai"'}, "not supported yet"),
])
def test_configuration_errors_are_clear(data_dir, capsys, over, match):
    rc = main(["compare", _config(data_dir, **over), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "configuration error" in err and match in err


def test_load_config_resolves_paths_and_defaults(data_dir):
    cfg = load_config(_config(data_dir, repeats=None, seed=None))
    assert cfg["frame"] == os.path.join(str(data_dir), "survey.csv")
    assert cfg["kwargs"]["repeats"] == 5 and cfg["kwargs"]["random_state"] == 0
    assert cfg["kwargs"]["scales"] == {"disc": (["t01"], ["f01"])}
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(data_dir / "missing.toml"))


def test_demo_prints_the_ppi_table_first_then_writes_the_report(tmp_path, capsys):
    out_dir = tmp_path / "rep"
    rc = main(["demo", "--pilot-sizes", "80", "--repeats", "1", "--methods", "classical", "simulator", "ppi++",
               "--items", "f01", "f02", "t01", "t02", "--out", str(out_dir), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    first = out.index("Mean misinformation discernment")
    assert first < out.index("Running the comparison") < out.index("Fidelity at n_pilot = 80")
    assert (out_dir / "report.html").exists()
    assert f"Report written to {out_dir / 'report.html'}" in out


def test_demo_without_comparison(capsys):
    assert main(["demo", "--no-compare", "--n-pilot", "120"]) == 0
    out = capsys.readouterr().out
    assert "pilot of 120 human answers" in out and "Running the comparison" not in out
