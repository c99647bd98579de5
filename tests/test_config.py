"""rectify.config: simulators, prompting settings, fine-tuning settings, pipelines and designs become
registered methods with the configured parameters (nothing is loaded or contacted)."""

import os

import pytest

from rectify import registry
from rectify.config import DESIGNS, apply_design, check_config, load_config, prepare
from rectify.demo import comparison_frame
from rectify.errors import ConfigError

CFG = '''frame = "survey.csv"
scores = [1, 2, 3, 4]
covariates = ["age", "ideology"]
strategies = ["few-shot"]
k = 3
selection = "nearest"
checkpoint = "ck"

[items.f01]
wording = "Drinking hot lemon water prevents the flu."
options = ["Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate"]

[items.t01]
wording = "Washing hands reduces infections."
options = ["Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate"]

[simulators.smol]
kind = "local"
dtype = "float32"
batch_size = 8
threads = 1

[simulators.srv]
kind = "openai"
base_url = "http://127.0.0.1:8080/v1"
model = "smollm2"
api_key_env = "RECTIFY_TEST_KEY"
max_retries = 2

[simulators.stored]
kind = "columns"
predicted = "{item}_llm"
probabilities = "{item}_p{k}"

[finetune]
rank = 4
layers = 2
epochs = 1
dtype = "float32"
max_pilot_rows = 50
folds = 3

[pipelines.smol-greg]
simulator = "smol"
strategy = "few-shot"
correction = "greg"

[pipelines.cov-xfit]
simulator = "covariates"
correction = "xfit-ppi++"

[pipelines.lora-insample]
simulator = "lora"
correction = "ppi++"
'''


@pytest.fixture()
def setup(tmp_path):
    df = comparison_frame().head(300)
    df.to_csv(tmp_path / "survey.csv", index=False)
    (tmp_path / "c.toml").write_text(CFG)
    return tmp_path, df


def test_simulators_become_methods_with_their_settings(setup):
    d, df = setup
    cfg = load_config(str(d / "c.toml"))
    assert cfg["kwargs"]["items"] == ["f01", "t01"]
    assert cfg["kwargs"]["predicted"] == "{item}_llm"  # the columns simulator is the dataset's simulator
    kw, rec = prepare(cfg, df, progress=False)
    names = kw["methods"]  # default: the fast methods + every configured method
    for n in ("classical", "ppi++", "smol-few-shot", "smol-few-shot+ppi++", "srv-few-shot", "srv-few-shot+ppi++",
              "smol-greg", "cov-xfit", "lora-insample"):
        assert n in names, n
    assert "smol-zero-shot" not in names and "stored" not in names  # strategies; the twin of 'simulator'
    local = rec["backends"]["backend:smol"]
    assert (local.dtype, local.batch_size, local.num_threads) == ("float32", 8, 1)
    assert local.cache.path == os.path.join(str(d), "ck", "cache", "smol.sqlite")
    srv = rec["backends"]["backend:srv"]
    assert (srv.base_url, srv.model, srv.api_key_env, srv.max_retries) == ("http://127.0.0.1:8080/v1", "smollm2",
                                                                            "RECTIFY_TEST_KEY", 2)
    assert rec["sources"]["srv-few-shot+ppi++"] == "srv" and rec["sources"]["smol-greg"] == "smol"
    assert "k=3, nearest examples" in registry.get("smol-few-shot").description
    assert registry.get("smol-greg").family == "calibration"
    assert "xfit-ppi++" in registry.get("cov-xfit").description
    assert "DEGENERACY" in registry.get("lora-insample").description
    assert "3 folds" in registry.get("lora+xfit-ppi++").description  # [finetune] re-registered the lora methods


def test_seed_design_is_settings_under_the_configuration(setup):
    d, df = setup
    assert apply_design({"groups": ["gender"]}, "seed")["groups"] == ["gender"]
    cfg = load_config(str(d / "c.toml"), design="seed")
    assert cfg["kwargs"]["evaluate"] == "rest" and cfg["kwargs"]["groups"] == ["ideology"]
    kw, rec = prepare(cfg, df, progress=False)
    assert kw["pilot_sizes"] == [round(0.05 * 300)]
    assert {"lora", "lora+xfit-ppi++", "lora+ppi++ (in-sample)", "bayes-chain", "smol-few-shot"} <= set(kw["methods"])
    assert "bayes-hier" not in kw["methods"]
    with pytest.raises(ConfigError, match="unknown design"):
        apply_design({}, "paper")
    assert set(DESIGNS["seed"]) >= {"pilot_fraction", "evaluate", "groups", "methods"}


def test_prompted_simulator_without_wording_is_refused(setup):
    d, df = setup
    raw = {"frame": "survey.csv", "items": ["f01"], "covariates": ["age"],
           "simulators": {"smol": {"kind": "local"}}}
    cfg = check_config(raw, str(d), "inline")
    with pytest.raises(ConfigError, match=r"no wording"):
        prepare(cfg, df, progress=False)
