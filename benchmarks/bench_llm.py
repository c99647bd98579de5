"""Speed of the LLM simulators (rectify.llm).

Local backend (embedded SmolLM2-135M-Instruct, CPU): personas x items per second for
  - "logprob-bf16" / "logprob-fp32": one batched forward pass per prompt, left padding, last
    position's logits only (the LocalBackend path);
  - "naive-sample-k": the naive way, generate k sampled answers per prompt and parse them;
  - "cache-hit": the same prompts again, answered from the SQLite cache.
OpenAI backend (--parts mock / llama-cpp): requests per second through the real openai client against an in-process
OpenAI-compatible fake server (httpx2 MockTransport, so it measures client + backend + cache
overhead, not a model), and the cost of a rerun answered from the cache. With --parts llama-cpp and
llama-cpp-python installed (or RECTIFY_LLAMA_CPP_PYTHON naming an interpreter
that has it), the same against a real llama.cpp server on 127.0.0.1.

Usage: python benchmarks/bench_llm.py [--n 200] [--threads 1] [--parts mock,local,llama-cpp] [--out CSV]
Writes benchmarks/results/llm_speed.csv.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time

import numpy as np
import pandas as pd

from rectify.llm.cache import ResponseCache
from rectify.llm.distribution import probs_from_samples
from rectify.llm.items import Item
from rectify.llm.persona import build_prompt, render_personas

ITEMS = [
    Item("trust_sci", "How much do you trust scientists?", ["Not at all", "A little", "Somewhat", "A lot"]),
    Item("claim_a", "How accurate is this claim: 'Vaccines alter your DNA'?",
         ["Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate"]),
]


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 90, n),
        "gender": rng.choice(["man", "woman"], n),
        "education": rng.choice(["no degree", "high school", "some college", "a college degree"], n),
        "ideology": rng.choice(["very liberal", "liberal", "moderate", "conservative", "very conservative"], n),
    })


def prompts_for(X: pd.DataFrame) -> list:
    personas = render_personas(X, "You are a $age-year-old $gender with $education; politically you are $ideology.")
    return [build_prompt(p, it) for it in ITEMS for p in personas]


def bench_local(n: int, threads: int, k: int, rows: list) -> None:
    import torch

    from rectify.llm.local import LocalBackend

    prompts = prompts_for(frame(n))
    with tempfile.TemporaryDirectory() as d:
        for dtype in ("bfloat16", "float32"):
            be = LocalBackend(dtype=dtype, batch_size=64, num_threads=threads, cache=ResponseCache(os.path.join(d, f"{dtype}.sqlite"))).load()
            be.score(prompts[:8])  # warm-up (not cached: different prompts below are all new)
            t = time.perf_counter()
            res = be.score(prompts)
            wall = time.perf_counter() - t
            rows.append(dict(backend="local", method=f"logprob-{'bf16' if dtype == 'bfloat16' else 'fp32'}",
                             n_prompts=len(prompts), wall_s=wall, per_s=len(prompts) / wall,
                             mean_mass_on_options=float(np.nanmean(res.raw.sum(axis=1)))))
            t = time.perf_counter()
            be.score(prompts)
            wall = time.perf_counter() - t
            rows.append(dict(backend="local", method=f"cache-hit-{dtype}", n_prompts=len(prompts), wall_s=wall,
                             per_s=len(prompts) / wall))
            print(rows[-2], rows[-1], flush=True)
        # naive: sample k answers per prompt with generate() and parse (bf16, same threads)
        be = LocalBackend(dtype="bfloat16", num_threads=threads).load()
        sub = prompts[: max(8, n // 10)]
        texts = [be.render(p) for p in sub]
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        t = time.perf_counter()
        masses = []
        for i in range(0, len(texts), 8):
            enc = be._tok(texts[i:i + 8], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = be._model.generate(**enc, do_sample=True, temperature=1.0, max_new_tokens=3,
                                         num_return_sequences=k, pad_token_id=be._tok.pad_token_id)
            dec = be._tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for j in range(len(dec) // k):
                masses.append(probs_from_samples(dec[j * k:(j + 1) * k], sub[0].labels).sum())
        wall = time.perf_counter() - t
        torch.set_num_threads(old)
        rows.append(dict(backend="local", method=f"naive-sample-{k}", n_prompts=len(sub), wall_s=wall,
                         per_s=len(sub) / wall, mean_mass_on_options=float(np.mean(masses))))
        print(rows[-1], flush=True)


def bench_openai_mock(n: int, rows: list) -> None:
    import httpx2
    import openai

    from rectify.llm.openai_backend import OpenAIBackend

    def handler(request):
        body = json.loads(request.content)
        alts = [{"token": str(j), "logprob": math.log(0.2), "bytes": None} for j in range(1, 5)]
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "1"},
                         "logprobs": {"content": [{"token": "1", "logprob": math.log(0.2), "bytes": None,
                                                   "top_logprobs": alts}]}}],
            "usage": {"prompt_tokens": len(json.dumps(body["messages"])) // 4, "completion_tokens": 1,
                      "total_tokens": 0}})

    prompts = prompts_for(frame(n // 2, seed=1))
    with tempfile.TemporaryDirectory() as d:
        client = openai.AsyncOpenAI(api_key="x", base_url="http://fake/v1", max_retries=0,
                                    http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
        be = OpenAIBackend("fake", client=client, cache=os.path.join(d, "c.sqlite"), max_concurrency=16)
        t = time.perf_counter()
        be.score(prompts)
        wall = time.perf_counter() - t
        rows.append(dict(backend="openai-mock", method="logprob", n_prompts=len(prompts), wall_s=wall,
                         per_s=len(prompts) / wall, prompt_tokens=be.last_run.prompt_tokens))
        t = time.perf_counter()
        be.score(prompts)
        wall = time.perf_counter() - t
        rows.append(dict(backend="openai-mock", method="cache-hit", n_prompts=len(prompts), wall_s=wall,
                         per_s=len(prompts) / wall, prompt_tokens=be.last_run.prompt_tokens))
        print(rows[-2], rows[-1], flush=True)


def bench_llama_cpp(n: int, rows: list) -> None:
    import socket
    import subprocess
    import sys
    import urllib.request

    from rectify.llm.local import embedded_model_file
    from rectify.llm.openai_backend import OpenAIBackend

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_python = os.environ.get("RECTIFY_LLAMA_CPP_PYTHON") or sys.executable
    proc = subprocess.Popen([server_python, "-m", "llama_cpp.server", "--model", embedded_model_file(),
                             "--logits_all", "true", "--port", str(port), "--n_ctx", "2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # never an unread pipe
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/models", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        prompts = prompts_for(frame(n // 2, seed=2))
        with tempfile.TemporaryDirectory() as d:
            be = OpenAIBackend("smollm2", base_url=url, cache=os.path.join(d, "c.sqlite"), max_concurrency=2, timeout=300)
            t = time.perf_counter()
            res = be.score(prompts)
            wall = time.perf_counter() - t
            rows.append(dict(backend="openai-llama.cpp", method="logprob", n_prompts=len(prompts), wall_s=wall,
                             per_s=len(prompts) / wall, mean_mass_on_options=float(np.nanmean(res.raw.sum(axis=1)))))
            t = time.perf_counter()
            be.score(prompts)
            wall = time.perf_counter() - t
            rows.append(dict(backend="openai-llama.cpp", method="cache-hit", n_prompts=len(prompts), wall_s=wall,
                             per_s=len(prompts) / wall))
            print(rows[-2], rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="personas (x 2 items)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--k", type=int, default=10, help="samples per prompt for the naive way")
    ap.add_argument("--parts", default="mock,local", help="comma list of: mock, local, llama-cpp")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "llm_speed.csv"))
    args = ap.parse_args()
    rows: list = []
    parts = set(args.parts.split(","))
    if "mock" in parts:
        bench_openai_mock(args.n * 2, rows)
    if "local" in parts:
        bench_local(args.n, args.threads, args.k, rows)
    if "llama-cpp" in parts:
        bench_llama_cpp(min(args.n, 100), rows)
    df = pd.DataFrame(rows)
    df["threads"] = args.threads
    df["machine"] = f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    df.to_csv(args.out, index=False)
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
