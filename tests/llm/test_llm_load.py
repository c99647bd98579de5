"""Load: the OpenAI backend against a local rate-limited OpenAI-compatible server (issue 8, part 5).

A small version of ``benchmarks/bench_load.py`` (which runs 10,000 and 50,000 requests): the server
runs in its own process and answers deterministically from the prompt text, refuses requests beyond
its in-flight limit with 429 + Retry-After, and injects seeded random 429s and 500s. The client (the
real ``AsyncOpenAI`` with ``max_retries=0``, so rectify's own retries do the work) runs in a fresh
process per size so that its peak RSS is its own. Checked: no answer lost, every answer equal to the
server's, every fault retried exactly once more, Retry-After honoured, the rerun served from the
cache alone, and memory growth from 1,000 to 3,000 requests within the arrays' budget.
"""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_load.py"
_spec = importlib.util.spec_from_file_location("bench_load", _PATH)
bench_load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_load)

LIMIT = 32  # server's in-flight limit, below the client's max_concurrency of 64


@pytest.fixture(scope="module")
def server():
    proc, port = bench_load.start_server(limit=LIMIT, p429=0.05, p500=0.005, latency=(0.02, 0.08), seed=1)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_3000_requests_rate_limited_none_lost_memory_bounded(server, tmp_path):
    small = bench_load.run_client_process(server, 100, str(tmp_path / "small.sqlite"), max_concurrency=64)
    r = bench_load.run_client_process(server, 300, str(tmp_path / "big.sqlite"), max_concurrency=64)
    n = 3000
    assert small["requests"] == 1000 and r["requests"] == r["distinct_prompts"] == n
    # every answer accounted for, and right
    assert r["answers_lost"] == 0 and r["answers_failed"] == 0
    assert r["answers_ok"] + r["answers_off_scale"] == n and r["answers_off_scale"] > 0
    assert r["answers_wrong_status"] == 0 and r["ok_answers_wrong"] == 0
    assert (r["run_n_requests"], r["run_n_cached"], r["run_n_failed"]) == (n, 0, 0)
    # faults were injected, and each one cost exactly one more request
    faults = r["server_limit_429"] + r["server_injected_429"] + r["server_injected_500"]
    assert r["server_injected_429"] > 50 and r["server_limit_429"] > 0 and r["server_injected_500"] > 0
    assert r["server_requests"] == r["client_http_calls"] == n + faults and r["retries"] == faults
    # Retry-After (0.05 s) honoured: every 429'd prompt came back, none sooner
    assert r["server_retries_after_429"] == r["server_limit_429"] + r["server_injected_429"]
    assert r["server_retry_after_violations"] == 0 and r["server_min_gap_after_429_s"] >= 0.0475
    # the rerun comes from the cache alone
    assert r["rerun_server_requests"] == 0 and r["rerun_cache_hits"] == n and r["rerun_identical"]
    assert r["cache_rows"] == n
    # memory: per prompt the backend keeps two 64-byte keys, the option order, probabilities in
    # display and canonical order (K = 5 each, 8 bytes), a few indices and the status/error
    # pointers: ~0.3 KB. Allow 6x that for temporaries and the allocator, plus 2 MB for SQLite's
    # page cache; the old one-task-per-prompt design grew ~5 KB per request (~10 MB here).
    per_request = 2 * 64 + 3 * 5 * 8 + 3 * 8 + 2 * 8
    bound_mb = 2.0 + (n - 1000) * 6 * per_request / 2**20
    growth = r["scoring_growth_mb"] - small["scoring_growth_mb"]
    assert growth < bound_mb, (growth, bound_mb, small, r)
    print(f"\nload: {n} requests, faults={faults} (limit 429 {r['server_limit_429']}, random 429 "
          f"{r['server_injected_429']}, 500 {r['server_injected_500']}), lost=0, {r['wall_s']} s, "
          f"{r['requests_per_s']} req/s, peak RSS {r['rss_peak_scoring_mb']} MB, growth 1k->3k {growth:.1f} MB "
          f"(bound {bound_mb:.1f})")


def test_duplicates_sent_once_and_lazy_prompt_sequence(tmp_path):
    """Identical prompts in one call cost one request; a lazy sequence is read once in order and
    then only where a request goes out."""
    import json
    from collections.abc import Sequence

    import httpx2
    import numpy as np
    import openai

    from rectify.llm.openai_backend import OpenAIBackend

    calls = []

    async def handler(request):
        text = bench_load.prompt_text(json.loads(request.content)["messages"])
        calls.append(text)
        return httpx2.Response(200, json=bench_load.completion_body(text))

    client = openai.AsyncOpenAI(api_key="t", base_url="http://fake/v1", max_retries=0,
                                http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    base = bench_load.make_prompts(6, seed=3)  # 60 distinct prompts
    dup = [base[i % 12] for i in range(24)]
    prompts = base + dup
    be = OpenAIBackend("m", client=client, cache=str(tmp_path / "c.sqlite"), max_concurrency=7, random_state=0)
    res = be.score(prompts)
    assert len(calls) == len(set(calls)) == 60
    assert (be.last_run.n_requests, be.last_run.n_cached, be.last_run.n_failed) == (84, 0, 0)
    for i, p in enumerate(prompts):
        probs, off = bench_load.model_answer(bench_load.prompt_text(list(p.messages)))
        assert res.status[i] == ("off_scale" if off else "ok")
        np.testing.assert_allclose(res.raw[i], np.zeros(5) if off else p.to_canonical(np.array(probs)), rtol=1e-12)
    np.testing.assert_array_equal(res.raw[60:], res.raw[[i % 12 for i in range(24)]])
    be.score(prompts)
    assert len(calls) == 60 and be.last_run.n_cached == 84

    class Lazy(Sequence):
        def __init__(self, items):
            self.items, self.reads = items, []

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            self.reads.append(i)
            return self.items[i]

        def __iter__(self):
            return (self[i] for i in range(len(self)))

    lazy = Lazy(base[:30] + bench_load.make_prompts(2, seed=4))  # 30 cached, 20 new
    res2 = be.score(lazy)
    assert len(calls) == 80 and be.last_run.n_cached == 30
    # the first prompt (for the number of options), all in order once, then the 20 sent
    assert lazy.reads[:51] == [0] + list(range(50)) and sorted(lazy.reads[51:]) == list(range(30, 50))
    np.testing.assert_array_equal(res2.raw[:30], res.raw[:30])
