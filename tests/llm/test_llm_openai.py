"""OpenAI-compatible backend against an in-process fake server (httpx2 MockTransport).

The fake server is a deterministic "model": the option distribution of a prompt is a function of
its text (sha256-seeded), so every answer the backend returns can be checked exactly. Faults are
injected per attempt: 429 with Retry-After, 500, timeouts (raised and real hangs), truncated
JSON; some prompts always fail, some always answer off the scale.
"""

import asyncio
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import httpx2  # noqa: E402
import openai  # noqa: E402

from rectify.errors import ConfigError  # noqa: E402
from rectify.llm.cache import ResponseCache  # noqa: E402
from rectify.llm.items import Item  # noqa: E402
from rectify.llm.openai_backend import OpenAIBackend  # noqa: E402
from rectify.llm.persona import build_prompt  # noqa: E402

ITEM = Item("q", "How accurate is the claim?", ["Not at all", "Not very", "Somewhat", "Very"])
K = 4


def fake_dist(text):
    """The fake model's next-token distribution: 4 digit tokens (+ ' 1' variant) and 'The'."""
    h = int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)
    rng = np.random.default_rng(h)
    w = rng.dirichlet(np.ones(K))
    mass = 0.3 + 0.6 * rng.random()
    return w * mass, 1 - mass


def prompt_text(req_json):
    return "\n".join(m["content"] for m in req_json["messages"])


def completion(text, top=True, content="1"):
    raw, other = fake_dist(text)
    alts = [{"token": str(j + 1), "logprob": math.log(raw[j] * 0.75), "bytes": None} for j in range(K)]
    alts += [{"token": f" {j + 1}", "logprob": math.log(raw[j] * 0.25), "bytes": None} for j in range(K)]
    alts.append({"token": "The", "logprob": math.log(other), "bytes": None})
    alts.sort(key=lambda a: -a["logprob"])
    lp = {"content": [{"token": alts[0]["token"], "logprob": alts[0]["logprob"], "bytes": None,
                       "top_logprobs": alts}]} if top else None
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "length", "logprobs": lp,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 1, "total_tokens": len(text) // 4 + 1}}


def offscale(text):
    body = completion(text)
    body["choices"][0]["logprobs"]["content"][0]["top_logprobs"] = [
        {"token": "I", "logprob": math.log(0.7), "bytes": None}, {"token": "Sorry", "logprob": math.log(0.3), "bytes": None}]
    body["choices"][0]["logprobs"]["content"][0]["token"] = "I"
    return body


def expected_raw(prompt):
    raw, _ = fake_dist("\n".join(m["content"] for m in prompt.messages))
    return prompt.to_canonical(raw)


def make_prompts(n, order_seed=None):
    rng = np.random.default_rng(order_seed)
    out = []
    for i in range(n):
        order = rng.permutation(K) if order_seed is not None else None
        out.append(build_prompt(f"You are respondent number {i}.", ITEM, order=order))
    return out


class FaultyServer:
    """Per-attempt faults; deterministic given the prompt and its attempt number."""

    def __init__(self, p_fault=0.3, always_fail=(), always_offscale=(), hang=(), hang_s=3.0):
        self.attempts = {}
        self.p_fault = p_fault
        self.always_fail = set(always_fail)
        self.always_offscale = set(always_offscale)
        self.hang = set(hang)
        self.hang_s = hang_s
        self.faults = {"429": 0, "500": 0, "timeout": 0, "truncated": 0, "hang": 0, "offscale": 0}
        self.calls = 0

    def decide(self, text):
        a = self.attempts.get(text, 0)
        self.attempts[text] = a + 1
        self.calls += 1
        ident = int(text.split("respondent number ")[1].split(".")[0])
        if ident in self.always_fail:
            return "500"
        if ident in self.always_offscale:
            return "offscale"
        if ident in self.hang and a == 0:
            return "hang"
        u = int(hashlib.sha256(f"{text}|{a}".encode()).hexdigest()[:8], 16) / 2**32
        if u < self.p_fault:
            return ["429", "500", "timeout", "truncated"][int(u / self.p_fault * 4)]
        return "ok"

    def respond(self, request, kind, text):
        if kind != "ok":
            self.faults[kind] += 1
        if kind == "429":
            return httpx2.Response(429, json={"error": {"message": "rate limited"}}, headers={"retry-after": "0.01"})
        if kind == "500":
            return httpx2.Response(500, json={"error": {"message": "internal"}})
        if kind == "timeout":
            raise httpx2.ReadTimeout("read timed out", request=request)
        if kind == "truncated":
            return httpx2.Response(200, content=json.dumps(completion(text))[:80].encode(),
                                   headers={"content-type": "application/json"})
        if kind == "offscale":
            return httpx2.Response(200, json=offscale(text))
        return httpx2.Response(200, json=completion(text))

    async def async_handler(self, request):
        body = json.loads(request.content)
        text = prompt_text(body)
        kind = self.decide(text)
        if kind == "hang":
            self.faults["hang"] += 1
            await asyncio.sleep(self.hang_s)
            kind = "ok"
        return self.respond(request, kind, text)

    def sync_handler(self, request):
        body = json.loads(request.content)
        text = prompt_text(body)
        kind = self.decide(text)
        if kind == "hang":
            kind = "timeout"
        return self.respond(request, kind, text)


def async_client(server):
    return openai.AsyncOpenAI(api_key="test", base_url="http://fake/v1", max_retries=0,
                              http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(server.async_handler)))


def test_fault_injection_1000_requests_none_lost(tmp_path):
    n = 1000
    fail_ids = {7, 123, 555}
    off_ids = {11, 222, 777, 901}
    server = FaultyServer(p_fault=0.3, always_fail=fail_ids, always_offscale=off_ids, hang={3, 500, 998}, hang_s=3.0)
    cache = ResponseCache(tmp_path / "c.sqlite")
    be = OpenAIBackend("fake", base_url="http://fake/v1", client=async_client(server), cache=cache,
                       max_concurrency=32, max_retries=8, timeout=0.5, backoff=0.001, max_backoff=0.05,
                       random_state=0)
    prompts = make_prompts(n, order_seed=1)
    t0 = time.perf_counter()
    res = be.score(prompts)
    wall = time.perf_counter() - t0
    assert res.raw.shape == (n, K) and len(res.status) == n  # none lost
    status = np.array(res.status)
    ids = np.arange(n)
    for i in ids[status == "ok"]:
        np.testing.assert_allclose(res.raw[i], expected_raw(prompts[i]), rtol=1e-9)
    assert set(ids[status == "off_scale"]) == off_ids
    assert np.all(res.raw[status == "off_scale"] == 0)
    failed = set(ids[status == "failed"])
    assert fail_ids <= failed and len(failed - fail_ids) <= 2  # P(9 faults in a row) ~ 2e-5 each
    assert all(res.errors[i] and "gave up" in res.errors[i] for i in failed)
    assert np.isnan(res.raw[list(failed)]).all()
    assert min(server.faults[k] for k in ("429", "500", "timeout", "truncated")) > 50
    assert server.faults["hang"] == 3
    # the run record counts everything
    assert be.last_run.n_requests == n and be.last_run.n_failed == len(failed) and be.last_run.n_cached == 0
    # a rerun pays only for the failed ones
    calls_before = server.calls
    res2 = be.score(prompts)
    assert server.calls - calls_before == len(failed) * 9
    assert be.last_run.n_cached == n - len(failed)
    np.testing.assert_array_equal(np.isnan(res2.raw), np.isnan(res.raw))
    tab = res.table(ITEM.options)
    assert (tab["status"] == "failed").sum() == len(failed)
    print(f"\nfault injection: {n} requests, faults={server.faults}, failed={len(failed)}, lost=0, {wall:.1f}s")


def test_sync_client_and_cache_hit(tmp_path):
    server = FaultyServer(p_fault=0.2)
    client = openai.OpenAI(api_key="test", base_url="http://fake/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(server.sync_handler)))
    be = OpenAIBackend("fake", client=client, cache=str(tmp_path / "c.sqlite"), max_concurrency=4,
                       max_retries=10, backoff=0.001, max_backoff=0.01, prices=(1.0, 2.0))
    prompts = make_prompts(60)
    res = be.score(prompts)
    assert res.status == ["ok"] * 60
    np.testing.assert_allclose(res.raw, np.vstack([expected_raw(p) for p in prompts]), rtol=1e-9)
    run = be.last_run
    assert run.prompt_tokens > 0 and run.completion_tokens == 60
    assert run.cost == pytest.approx((run.prompt_tokens * 1.0 + 60 * 2.0) / 1e6)
    calls = server.calls
    be.score(prompts)
    assert server.calls == calls and be.last_run.n_cached == 60


def test_fallback_to_sampling_when_logprobs_refused(tmp_path):
    seen = {"logprob_requests": 0, "sample_requests": 0}

    def handler(request):
        body = json.loads(request.content)
        text = prompt_text(body)
        if body.get("logprobs"):
            seen["logprob_requests"] += 1
            return httpx2.Response(400, json={"error": {"message": "logprobs are not supported with reasoning models"}})
        seen["sample_requests"] += 1
        n = body.get("n", 1)
        raw, _ = fake_dist(text)
        rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
        # servers may return fewer choices than asked: give at most 7 per call
        answers = [str(rng.choice(K, p=raw / raw.sum()) + 1) if rng.random() < 0.9 else "I won't say"
                   for _ in range(min(n, 7))]
        body = completion(text, top=False)
        body["choices"] = [{"index": j, "finish_reason": "stop", "logprobs": None,
                            "message": {"role": "assistant", "content": a}} for j, a in enumerate(answers)]
        return httpx2.Response(200, json=body)

    client = openai.OpenAI(api_key="t", base_url="http://fake/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    be = OpenAIBackend("reasoner", client=client, n_samples=20, max_concurrency=1, cache=str(tmp_path / "c.sqlite"))
    prompts = make_prompts(5)
    res = be.score(prompts)
    assert be.logprobs_refused_ and res.status == ["ok"] * 5
    assert seen["logprob_requests"] == 1  # detected once, then straight to sampling
    assert seen["sample_requests"] == 5 * 3  # 7 + 7 + 6 answers per prompt
    # each row is a share of 20 samples; the unparsable ones are mass off the options
    assert np.allclose(res.raw * 20, np.round(res.raw * 20))
    assert np.all(res.raw.sum(axis=1) <= 1) and np.all(res.raw.sum(axis=1) > 0.5)
    # a new backend object finds the sampled answers in the cache
    be2 = OpenAIBackend("reasoner", client=client, n_samples=20, cache=be.cache)
    before = dict(seen)
    np.testing.assert_array_equal(be2.score(prompts).raw, res.raw)
    assert seen == before


def test_api_key_from_env_never_stored(tmp_path, monkeypatch):
    secret = "sk-test-SECRET-1234567890"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    got = []

    async def handler(request):
        got.append(request.headers.get("authorization"))
        return httpx2.Response(200, json=completion(prompt_text(json.loads(request.content))))

    path = tmp_path / "c.sqlite"
    be = OpenAIBackend("fake", base_url="http://fake/v1", api_key_env="MY_LLM_KEY", cache=str(path),
                       http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    be.score(make_prompts(3))
    assert got == [f"Bearer {secret}"] * 3
    be.cache.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in blob
    assert secret not in repr(be) and secret not in repr(be.__getstate__()) and secret not in repr(vars(be))
    monkeypatch.delenv("MY_LLM_KEY")
    with pytest.raises(ConfigError, match="MY_LLM_KEY"):
        OpenAIBackend("fake", api_key_env="MY_LLM_KEY", cache=None).score(make_prompts(1))


KILL_SCRIPT = textwrap.dedent('''
    import asyncio, json, sys, time
    import httpx2, openai
    sys.path.insert(0, {testdir!r})
    from test_llm_openai import make_prompts, completion, prompt_text
    from rectify.llm.openai_backend import OpenAIBackend
    log = open({log!r}, "a")
    async def handler(request):
        text = prompt_text(json.loads(request.content))
        log.write(text.split("respondent number ")[1].split(".")[0] + "\\n"); log.flush()
        await asyncio.sleep(0.01)
        return httpx2.Response(200, json=completion(text))
    client = openai.AsyncOpenAI(api_key="t", base_url="http://fake/v1", max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    be = OpenAIBackend("fake", client=client, cache={cache!r}, max_concurrency=4)
    res = be.score(make_prompts({n}))
    print("DONE", res.status.count("ok"))
''')


def test_sigkill_midrun_resumes_without_repeating(tmp_path):
    n = 300
    cache_path = str(tmp_path / "c.sqlite")
    testdir = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}

    def start(log):
        script = KILL_SCRIPT.format(testdir=testdir, log=str(log), cache=cache_path, n=n)
        return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    log1 = tmp_path / "run1.log"
    p = start(log1)
    deadline = time.time() + 60
    while time.time() < deadline:
        if log1.exists() and len(log1.read_text().split()) >= 80:
            break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done_before = len(ResponseCache(cache_path))
    assert 0 < done_before < n
    log2 = tmp_path / "run2.log"
    p2 = start(log2)
    out, err = p2.communicate(timeout=120)
    assert p2.returncode == 0, err.decode()[-2000:]
    assert f"DONE {n}" in out.decode()
    second = [int(x) for x in log2.read_text().split()]
    assert len(second) == len(set(second)) == n - done_before  # no completed request repeated
    assert len(ResponseCache(cache_path)) == n


def test_batch_api_submit_poll_collect(tmp_path):
    state = {"files": {}, "batches": {}, "polls": 0, "live": 0}

    def handler(request):
        path = request.url.path
        if path.endswith("/files") and request.method == "POST":
            raw = request.content
            start = raw.index(b'{"custom_id"')
            end = raw.rindex(b"}\n") + 2
            fid = f"file-{len(state['files'])}"
            state["files"][fid] = raw[start:end].decode()
            return httpx2.Response(200, json={"id": fid, "object": "file", "bytes": end - start, "created_at": 0,
                                              "filename": "requests.jsonl", "purpose": "batch", "status": "processed"})
        if path.endswith("/batches") and request.method == "POST":
            body = json.loads(request.content)
            lines = [json.loads(x) for x in state["files"][body["input_file_id"]].splitlines()]
            out = []
            for j, line in enumerate(lines):
                text = prompt_text(line["body"])
                if j == 0:  # one request fails inside the batch
                    out.append({"id": f"r{j}", "custom_id": line["custom_id"], "response": {"status_code": 500, "body": {}}})
                else:
                    out.append({"id": f"r{j}", "custom_id": line["custom_id"],
                                "response": {"status_code": 200, "body": completion(text)}})
            state["files"]["file-out"] = "\n".join(json.dumps(o) for o in out) + "\n"
            state["batches"]["batch-1"] = len(lines)
            return httpx2.Response(200, json=batch_obj("validating", None))
        if "/batches/" in path:
            state["polls"] += 1
            done = state["polls"] >= 3
            return httpx2.Response(200, json=batch_obj("completed" if done else "in_progress", "file-out" if done else None))
        if path.endswith("/content"):
            return httpx2.Response(200, content=state["files"]["file-out"].encode())
        if path.endswith("/chat/completions"):
            state["live"] += 1
            return httpx2.Response(200, json=completion(prompt_text(json.loads(request.content))))
        return httpx2.Response(404, json={"error": {"message": path}})

    def batch_obj(status, out):
        return {"id": "batch-1", "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": "file-0",
                "completion_window": "24h", "status": status, "created_at": 0, "output_file_id": out, "errors": None}

    client = openai.OpenAI(api_key="t", base_url="http://fake/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    be = OpenAIBackend("fake", client=client, cache=str(tmp_path / "c.sqlite"))
    prompts = make_prompts(30, order_seed=4)
    be.score(prompts[:5])  # already cached: not resubmitted
    assert len(be.batch_requests(prompts)) == 25
    bid = be.submit_batch(prompts)
    assert bid == "batch-1" and state["batches"]["batch-1"] == 25
    got = be.collect_batch(bid, prompts, poll_interval=0.01)
    assert got == {"status": "completed", "stored": 24, "failed": 1} and state["polls"] == 3
    live = state["live"]
    res = be.score(prompts)  # only the request that failed in the batch goes out live
    assert state["live"] - live == 1 and res.status == ["ok"] * 30
    np.testing.assert_allclose(res.raw, np.vstack([expected_raw(p) for p in prompts]), rtol=1e-9)
    assert be.submit_batch(prompts) is None


def test_client_errors_fail_fast_without_retry():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        text = prompt_text(json.loads(request.content))
        code = 401 if "number 0." in text else 422
        return httpx2.Response(code, json={"error": {"message": "no"}})

    client = openai.OpenAI(api_key="t", base_url="http://fake/v1", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    res = OpenAIBackend("fake", client=client, max_retries=5, backoff=0.001).score(make_prompts(2))
    assert res.status == ["failed", "failed"] and calls["n"] == 2
    assert "401" in res.errors[0] and "422" in res.errors[1]
