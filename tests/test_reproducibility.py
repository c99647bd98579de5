"""Seeds reproduce across cold and warm model caches and across processes (issue 16).

The first use of the embedded model converts its GGUF file into an fp32 copy in the model cache
(``$RECTIFY_CACHE_DIR/models``); the conversion builds a model from its configuration, which draws
random initial weights. Those draws must not move a seeded fit that follows: a ``LoRAClassifier``
fitted with the same ``random_state`` gives the same probabilities whether its process converted the
model (cold cache) or found it converted (warm cache), and in a fresh process. The fits are tiny
(8 personas, one adapted layer, one epoch) on the real embedded model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

_ROWS = pd.DataFrame({"age": [23, 35, 47, 59, 64, 31, 42, 70],
                      "party": ["left", "right", "left", "centre", "right", "centre", "left", "right"]})
_Y = np.array([1, 2, 1, 3, 3, 2, 1, 3])
_PARAMS = dict(options=[1, 2, 3], r=2, lora_layers=1, epochs=1, batch_size=4, val_fraction=0.0, head_hidden=8,
               max_length=48, dtype="float32", num_threads=1, random_state=11)

_CHILD = """
import json, sys
import numpy as np, pandas as pd
from rectify.llm.finetune import LoRAClassifier
X = pd.DataFrame(json.loads(sys.argv[1])); y = np.array(json.loads(sys.argv[2]))
clf = LoRAClassifier(**json.loads(sys.argv[3])).fit(X, y)
print(json.dumps(clf.predict_proba(X).tolist()))
"""


def _fit_proba():
    from rectify.llm.finetune import LoRAClassifier

    return LoRAClassifier(**_PARAMS).fit(_ROWS, _Y).predict_proba(_ROWS)


@pytest.mark.slow
def test_lora_seed_gives_the_same_model_on_a_cold_and_a_warm_cache_and_in_another_process(tmp_path, monkeypatch):
    import rectify.llm.local as local

    cache = tmp_path / "cache"
    monkeypatch.setenv("RECTIFY_CACHE_DIR", str(cache))
    target = os.path.join(local._model_cache_dir(), local._CONVERTED)
    assert not os.path.exists(target)  # cold: nothing converted yet in this cache

    torch.manual_seed(1234)
    expected_next = torch.rand(4)
    torch.manual_seed(1234)
    cold = _fit_proba()  # converts the model first
    assert os.path.exists(os.path.join(target, local._MARKER))
    # neither the conversion nor the fit moved the caller's torch RNG
    torch.testing.assert_close(torch.rand(4), expected_next, rtol=0, atol=0)

    warm = _fit_proba()
    np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-6)

    # a fresh process, same warm cache: the same probabilities again
    env = {**os.environ, "RECTIFY_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", _CHILD, _ROWS.to_json(orient="columns"), json.dumps(_Y.tolist()),
                          json.dumps(_PARAMS)], capture_output=True, text=True, env=env, timeout=600, check=True)
    child = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(child, cold, rtol=0, atol=1e-6)
    # the check can fail: another seed gives other probabilities
    from rectify.llm.finetune import LoRAClassifier

    clf = LoRAClassifier(**{**_PARAMS, "random_state": 12}).fit(_ROWS, _Y)
    other = clf.predict_proba(_ROWS)
    assert np.abs(other - cold).max() > 1e-4

    # the embedded tokenizer's added tokens (not only chat-turn markers) are refused in persona text
    from rectify.errors import InputError

    tok = local._load_tokenizer(target)
    assert "<file_sep>" in tok.get_added_vocab()
    with pytest.raises(InputError, match="persona 2 contains the tokenizer's special token '<file_sep>'"):
        clf.predict_proba(_ROWS.assign(party=["left", "right <file_sep> x"] + ["centre"] * 6))

