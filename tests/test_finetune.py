"""Tests of the fine-tuning family (rectify.llm.finetune) on a tiny randomly initialised backbone.

The backbone is a 2-layer Llama with hidden size 32 and a word-level tokenizer built here, so the
tests need no model file and run in seconds; the embedded SmolLM2 is exercised in
benchmarks/bench_finetune.py instead.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn_contract import sklearn_contract

import torch  # noqa: E402

from rectify.errors import ConfigError, InputError  # noqa: E402
from rectify.estimators.crossfit import cross_fit  # noqa: E402
from rectify.llm.finetune import LoRAClassifier, auto_target_modules  # noqa: E402
from rectify.llm.items import Item  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REGIONS = ["north", "south", "east", "west"]
IDEOLOGY = ["left", "centre", "right"]
GENDER = ["woman", "man"]
WORDS = (["You", "are", "a", "person", "with", "these", "characteristics", ":", ";", ".", "age",
          "region", "ideology", "gender"] + REGIONS + IDEOLOGY + GENDER
         + [str(a) for a in range(18, 91)])


def tiny_backbone():
    """Factory: a 2-layer Llama (hidden 32) with a fixed random initialisation and a word-level
    tokenizer. Module-level, so a classifier using it can be pickled and saved."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]"] + WORDS)}
    core = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = LlamaModel(cfg)
    return model, tok


def synthetic_pilot(n, seed):
    """Personas with a planted rule: answer 1..4 = ideology level (+1 in the south), 10% noise;
    a second item = 1 + (gender == woman), 10% noise, 20% missing ("Don't know")."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"age": rng.integers(18, 91, size=n),
                      "region": rng.choice(REGIONS, size=n),
                      "ideology": rng.choice(IDEOLOGY, size=n),
                      "gender": rng.choice(GENDER, size=n)})
    y1 = X.ideology.map({"left": 1, "centre": 2, "right": 3}).to_numpy() + (X.region == "south")
    noise = rng.random(n) < 0.1
    y1 = np.where(noise, rng.integers(1, 5, size=n), y1)
    y2 = np.where(X.gender == "woman", "agree", "disagree").astype(object)
    flip = rng.random(n) < 0.1
    y2[flip] = np.where(y2[flip] == "agree", "disagree", "agree")
    y2[rng.random(n) < 0.2] = "Don't know"
    return X, y1.astype(int), y2


def _clf(**kw):
    base = dict(backbone=tiny_backbone, options=[1, 2, 3, 4], lr=3e-3, epochs=12, batch_size=16,
                val_fraction=0.15, patience=3, dtype="float32", device="cpu", random_state=0,
                r=8, alpha=16, head_hidden=32)
    base.update(kw)
    return LoRAClassifier(**base)


@pytest.fixture(scope="module")
def fitted():
    X, y, _ = synthetic_pilot(360, seed=1)
    clf = _clf().fit(X.iloc[:300], y[:300])
    return clf, X, y


# scikit-learn's checks feed numeric arrays; LoRAClassifier renders each numeric row as a text
# ("x0 0.52 x1 -1.30"), which the tiny word-level tokenizer maps to unknown tokens. One check
# cannot apply to a text model:
_NOT_APPLICABLE = {
    "check_classifiers_train": "requires > 83% accuracy on numeric blobs; numbers rendered as text "
                               "are unknown tokens to the test tokenizer, so nothing is learnable",
    "check_classifier_data_not_an_array": "fits a pandas DataFrame with integer column labels; a persona "
                                          "names each covariate by its column label, so rectify refuses "
                                          "non-string labels (rectify.errors.InputError) instead of "
                                          "writing '0: 1.3' into the prompt",
}


@sklearn_contract(
    [LoRAClassifier(backbone=tiny_backbone, epochs=2, dtype="float32", device="cpu", lr=3e-3)],
    expected_failed_checks=lambda est: _NOT_APPLICABLE,
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_learns_planted_rule_well_above_chance(fitted):
    clf, X, y = fitted
    test = slice(300, None)
    p = clf.predict_proba(X.iloc[test])
    assert p.shape == (60, 4)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    acc = np.mean(clf.predict(X.iloc[test]) == y[test])
    chance = np.max(np.bincount(y[:300])) / 300
    # the rule is deterministic up to 10% noise (best possible accuracy ~0.92); chance ~0.35
    assert acc > 0.7 and acc > chance + 0.3, (acc, chance)
    ll = -np.mean(np.log(p[np.arange(60), y[test] - 1]))
    assert ll < np.log(4) - 0.5
    assert clf.target_modules_ == ["q_proj", "v_proj"]
    assert 1 <= clf.best_epoch_ <= 12 and len(clf.history_) >= clf.best_epoch_
    assert clf.n_val_ > 0 and np.isfinite(clf.history_[0]["val_loss"])


def test_refit_is_repeatable(fitted):
    clf, X, y = fitted
    again = _clf().fit(X.iloc[:300], y[:300])
    np.testing.assert_allclose(again.predict_proba(X.iloc[300:]), clf.predict_proba(X.iloc[300:]),
                               atol=1e-6)


def test_save_load_and_pickle_round_trips(fitted, tmp_path):
    clf, X, _ = fitted
    p = clf.predict_proba(X)
    clf.save_pretrained(str(tmp_path / "m"))
    saved = {f.name for f in (tmp_path / "m").iterdir()}
    assert saved == {"rectify_lora_config.json", "adapter.safetensors", "head.safetensors"}
    # the backbone is a test function: importing it from what a file names needs consent
    with pytest.raises(ConfigError, match="allow_callables=True"):
        LoRAClassifier.load(str(tmp_path / "m"))
    loaded = LoRAClassifier.load(str(tmp_path / "m"), allow_callables=True)
    np.testing.assert_array_equal(loaded.predict_proba(X), p)
    given = LoRAClassifier.load(str(tmp_path / "m"), backbone=tiny_backbone)  # passed in: nothing imported
    np.testing.assert_array_equal(given.predict_proba(X), p)
    assert loaded.get_params()["lr"] == clf.get_params()["lr"]
    blob = pickle.dumps(clf)
    backbone_bytes = sum(v.numel() * v.element_size() for v in clf._net.encoder.state_dict().values())
    assert len(blob) < backbone_bytes / 2  # the frozen backbone is not in the pickle
    back = pickle.loads(blob)
    assert getattr(back, "_net", None) is None  # rebuilt on demand
    np.testing.assert_array_equal(back.predict_proba(X), p)


def test_battery_one_head_per_item_with_missing_answers():
    X, y1, y2 = synthetic_pilot(300, seed=2)
    items = [Item("q1", "Scale question", ["a", "b", "c", "d"], scores=[1, 2, 3, 4]),
             Item("q2", "Agree?", ["disagree", "agree"], missing=["Don't know"])]
    Y = pd.DataFrame({"q1": y1[:240], "q2": y2[:240]})
    clf = _clf(options=None, item=items, epochs=10).fit(X.iloc[:240], Y)
    assert clf.item_names_ == ["q1", "q2"]
    assert clf.n_missing_.tolist() == [0, int(np.sum(y2[:240] == "Don't know"))]
    p1, p2 = clf.predict_proba(X.iloc[240:])
    assert p1.shape == (60, 4) and p2.shape == (60, 2)
    assert list(clf.classes_[1]) == ["disagree", "agree"]
    pred = clf.predict(X.iloc[240:])
    acc1 = np.mean(pred[0] == np.asarray(items[0].options)[y1[240:] - 1])
    answered = y2[240:] != "Don't know"
    acc2 = np.mean(pred[1][answered] == y2[240:][answered])
    assert acc1 > 0.6 and acc2 > 0.75, (acc1, acc2)
    e1, e2 = clf.expected_score(X.iloc[240:])
    np.testing.assert_allclose(e1, p1 @ np.arange(1, 5))
    np.testing.assert_allclose(e2, p2 @ np.array([1.0, 2.0]))


def test_cross_fitting_exposes_the_in_sample_trap():
    """Trained on the pilot, the model's in-sample log-loss is optimistic; out-of-fold
    predictions (what PPI must be fed) are honest: worse than in-sample."""
    X, y, _ = synthetic_pilot(160, seed=3)
    clf = _clf(epochs=15, val_fraction=0.0, lr=5e-3)
    cf = cross_fit(clf, X, y, X_population=X.iloc[:20], n_folds=2, random_state=0)
    full = clf.fit(X, y)
    p_in = full.predict_proba(X)

    def ll(p):
        return -np.mean(np.log(p[np.arange(len(y)), y - 1]))

    assert ll(p_in) < ll(cf.oof)
    assert cf.population_folds.shape == (2, 20, 4)


def test_bad_inputs_have_clear_errors():
    X, y, _ = synthetic_pilot(40, seed=4)
    with pytest.raises(InputError, match="single answer class"):
        _clf(epochs=1).fit(X, np.ones(40, dtype=int))
    with pytest.raises(InputError, match="outside the item's options"):
        _clf(epochs=1).fit(X, np.where(y == 4, 7, y))
    with pytest.raises(InputError, match="longer than 10 tokens"):
        _clf(epochs=1, max_length=10).fit(X, y)
    with pytest.raises(InputError, match="fewer than n_folds"):
        cross_fit(_clf(epochs=1), X.iloc[:3], y[:3], n_folds=5)
    with pytest.raises(InputError, match="val_fraction"):
        _clf(val_fraction=0.9).fit(X, y)
    with pytest.raises(InputError, match="class_weight"):
        _clf(class_weight="auto").fit(X, y)


def test_lora_layers_adapts_only_the_top_layers():
    X, y, _ = synthetic_pilot(40, seed=5)
    clf = _clf(epochs=1, lora_layers=1).fit(X, y)
    layers = {k.split("layers.")[1].split(".")[0] for k in clf.adapter_state_}
    assert layers == {"1"}  # the top one of the 2 layers
    with pytest.raises(InputError, match="lora_layers"):
        _clf(epochs=1, lora_layers=5).fit(X, y)


def test_auto_target_modules_bert():
    from transformers import BertConfig, BertModel

    m = BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32))
    assert auto_target_modules(m) == ["query", "value"]


def test_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, rectify.llm.finetune, rectify.llm.baseline, rectify.estimators.crossfit;"
            "print('torch' in sys.modules, 'transformers' in sys.modules, 'peft' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False False"


# ----------------------------------------------------------------------------- the activation cache
def _probs_both_ways(clf, X):
    """Probabilities from the full backbone, and from the cached bottom states run through the top
    layers only, on the same batch."""
    net = clf._net
    ids_list, _ = clf._tokenize(clf.texts(X))
    ids, mask = clf._batch(ids_list, np.arange(len(ids_list)))
    with torch.no_grad():
        full = [torch.softmax(lg.double(), -1).numpy() for lg in net(ids, mask)]
        cached = [torch.softmax(lg.double(), -1).numpy()
                  for lg in net(ids, mask, net.bottom(ids, mask))]
    return full, cached


def test_activation_cache_equals_the_full_model():
    """Top layer adapted, bottom layer cached: the split forward is the full forward, and a fit that
    runs the whole backbone at every step follows the same losses to the same model (fp32)."""
    X, y, _ = synthetic_pilot(80, seed=6)
    kw = dict(epochs=3, lora_layers=1, lr=5e-3)
    fast = _clf(**kw).fit(X.iloc[:60], y[:60])
    assert fast.n_cached_layers_ == 1
    full, cached = _probs_both_ways(fast, X.iloc[60:])
    np.testing.assert_allclose(cached[0], full[0], atol=1e-6)
    assert np.abs(full[0] - 0.25).max() > 0.05  # a trained model, not a uniform one
    slow = _clf(cache_activations=False, **kw).fit(X.iloc[:60], y[:60])
    assert slow.n_cached_layers_ == 0
    for a, b in zip(fast.history_, slow.history_):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    np.testing.assert_allclose(fast.predict_proba(X.iloc[60:]), slow.predict_proba(X.iloc[60:]),
                               atol=1e-5)


def test_max_rows_trains_on_a_seeded_subsample():
    X, y, _ = synthetic_pilot(40, seed=7)
    sub = _clf(epochs=2, max_rows=24).fit(X, y)
    assert sub.rows_used_.size == 24 and len(set(sub.rows_used_)) == 24
    np.testing.assert_array_equal(_clf(epochs=2, max_rows=24).fit(X, y).rows_used_, sub.rows_used_)
    direct = _clf(epochs=2).fit(X.iloc[sub.rows_used_], y[sub.rows_used_])
    np.testing.assert_allclose(sub.predict_proba(X), direct.predict_proba(X), atol=1e-6)
    assert _clf(epochs=1, max_rows=100).fit(X, y).rows_used_.tolist() == list(range(40))


def test_progress_bars_name_the_steps(capsys):
    X, y, _ = synthetic_pilot(30, seed=8)
    clf = _clf(epochs=2, lora_layers=1, val_fraction=0.0, progress=True).fit(X, y)
    clf.predict_proba(X)
    err = capsys.readouterr().err
    assert "LoRA: 1 frozen layers" in err and "LoRA fit" in err and "LoRA predict" in err
    assert "epoch=2" in err  # 2 epochs x 2 batches of 16


def test_dtype_auto_follows_the_cpu_and_an_explicit_dtype_wins():
    from rectify.llm.cpu import resolve_dtype

    X, y, _ = synthetic_pilot(20, seed=9)
    assert _clf(epochs=1, dtype="float32").fit(X, y).dtype_ == "float32"
    auto = _clf(epochs=1, dtype="auto").fit(X, y)
    assert auto.dtype_ == resolve_dtype("auto", "cpu")
    assert next(auto._net.encoder.get_base_model().parameters()).dtype == getattr(torch, auto.dtype_)


# settings a configuration file carries: each wrong value is refused by name before any model loads
BAD_SETTINGS = [
    ("r", 0), ("r", 2.5), ("r", True), ("r", "8"),
    ("lora_layers", 0), ("lora_layers", "2"), ("lora_layers", 1.0),
    ("epochs", -1), ("epochs", None), ("batch_size", 0), ("max_length", 0),
    ("lr", 0), ("lr", -1e-3), ("lr", float("nan")), ("lr", "0.01"), ("lr", 5.0),
    ("alpha", 0), ("alpha", float("inf")),
    ("dtype", "bf16"), ("dtype", 16), ("max_rows", 1), ("max_rows", 10.5), ("max_rows", "all"),
    ("num_threads", 0), ("cache_activations", "yes"), ("progress", 1),
    ("val_fraction", 0.6), ("dropout", 1.0), ("head_dropout", -0.1), ("random_state", -3),
    ("random_state", None), ("pooling", "max"), ("class_weight", "auto"),
]


@pytest.mark.parametrize("name,value", BAD_SETTINGS, ids=[f"{n}={v!r}" for n, v in BAD_SETTINGS])
def test_bad_settings_are_refused_by_name(name, value):
    X, y, _ = synthetic_pilot(20, seed=10)

    def boom():
        raise AssertionError("the backbone must not load for a bad setting")

    with pytest.raises(InputError, match=f"'{name}'"):
        LoRAClassifier(backbone=boom, options=[1, 2, 3, 4], **{name: value}).fit(X, y)


def test_good_settings_from_a_config_pass():
    X, y, _ = synthetic_pilot(24, seed=11)
    clf = _clf(r=4, lora_layers=1, epochs=1, lr=0.01, dtype="float32", max_rows=20,
               num_threads=1, progress=False).fit(X, y)
    assert clf.rows_used_.size == 20 and torch.get_num_threads() == 1


# ----------------------------------------------------------------------------- seeds
_CHILD = """
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from rectify.llm.local import embedded_model_dir, _model_cache_dir
import os
marker = os.path.join(_model_cache_dir(), "SmolLM2-135M-Instruct.Q4_1-fp32", "rectify-converted.ok")
cold = not os.path.exists(marker)
sys.path.insert(0, sys.argv[1])
from test_finetune import _embedded_fit
p = _embedded_fit()
print(json.dumps({"cold": cold, "converted": os.path.exists(marker), "p": np.concatenate(p, 1).tolist()}))
"""


def _embedded_fit():
    """A few LoRA steps on the embedded SmolLM2 (2 items, 12 rows); probabilities of 6 rows."""
    from rectify.llm.items import Item

    X, y1, y2 = synthetic_pilot(18, seed=12)
    items = [Item("q1", "Scale", ["a", "b", "c", "d"], scores=[1, 2, 3, 4]),
             Item("q2", "Agree?", ["disagree", "agree"], missing=["Don't know"])]
    Y = pd.DataFrame({"q1": y1, "q2": y2})
    clf = LoRAClassifier(item=items, lora_layers=1, epochs=2, batch_size=4, val_fraction=0.0,
                         dtype="float32", lr=5e-3, random_state=3)
    clf.fit(X.iloc[:12], Y.iloc[:12])
    return clf.predict_proba(X.iloc[12:])


@pytest.mark.slow
def test_seed_reproduces_on_a_cold_and_a_warm_model_cache_and_across_processes(tmp_path,
                                                                              monkeypatch):
    """The first fit converts the embedded model in a fresh cache (a random initialisation, in
    another process); a fit in this process then finds the cache warm: the same seed must give the
    same probabilities (issue 16)."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("peft")
    env = dict(os.environ, RECTIFY_CACHE_DIR=str(tmp_path / "cache"))
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", _CHILD, here], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    child = json.loads(out.stdout.strip().splitlines()[-1])
    assert child["cold"] and child["converted"]
    monkeypatch.setenv("RECTIFY_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(999)  # whatever the global RNG holds before the fit
    warm = np.concatenate(_embedded_fit(), 1)
    np.testing.assert_allclose(warm, np.asarray(child["p"]), atol=1e-6)
    assert np.abs(warm[:, :4] - 0.25).max() > 1e-3  # the adapters and head moved something


def test_frozen_layer_memo_is_shared_across_classifiers_and_changes_nothing(monkeypatch):
    """A deterministic backbone's frozen layers are computed once per persona for the whole process
    (cross-fitted folds, repeated pilots, prediction): the memo is hit by a second classifier and
    the probabilities equal those computed without it."""
    from rectify.llm import finetune as ft

    X, y, _ = synthetic_pilot(90, seed=12)
    monkeypatch.setattr(tiny_backbone, "deterministic", True, raising=False)
    ft.clear_activation_memo()
    kw = dict(epochs=2, lora_layers=1, lr=5e-3)
    first = _clf(**kw).fit(X.iloc[:60], y[:60])
    p_first = first.predict_proba(X.iloc[60:])
    n_after_first = len(ft._BOTTOM_MEMO)
    assert n_after_first == len({tuple(t) for t in first._tokenize(first.texts(X))[0]})
    second = _clf(random_state=3, **kw).fit(X.iloc[:60], y[:60])  # every persona already in the memo
    assert len(ft._BOTTOM_MEMO) == n_after_first
    p_second = second.predict_proba(X.iloc[60:])
    ft.clear_activation_memo()
    monkeypatch.setattr(tiny_backbone, "deterministic", False, raising=False)
    np.testing.assert_allclose(_clf(**kw).fit(X.iloc[:60], y[:60]).predict_proba(X.iloc[60:]), p_first, atol=1e-6)
    np.testing.assert_allclose(_clf(random_state=3, **kw).fit(X.iloc[:60], y[:60]).predict_proba(X.iloc[60:]),
                               p_second, atol=1e-6)
    assert len(ft._BOTTOM_MEMO) == 0  # a factory that does not declare itself deterministic is not memoised
