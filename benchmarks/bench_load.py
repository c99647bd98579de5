"""Load test of the OpenAI backend against a local OpenAI-compatible server (issue 8, part 5).

A small HTTP/1.1 server (stdlib asyncio streams, run in its own process so the client's memory is
measured alone) answers ``POST /v1/chat/completions`` like a model: the option log-probs are a
deterministic function of the prompt text (so every answer can be checked), each answer takes
20-80 ms, and it misbehaves like a rate-limited API: more than ``--limit`` requests in flight get
HTTP 429 with ``Retry-After``; on top of that a seeded share of requests gets a random 429 or 500;
a fixed share of prompts (by hash) answers off the scale. ``GET /stats`` returns its counters,
including the gap between each 429 and the next attempt of the same prompt (is Retry-After
honoured?).

The client (a separate process per size, so peak RSS is per run) scores synthetic personas x 10
items through :class:`rectify.llm.openai_backend.OpenAIBackend` with the real ``AsyncOpenAI``
client (``max_retries=0``, so rectify's own retries do the work), checks every answer, samples its
RSS, then scores the same prompts again (all cache hits, no server call).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_load.py                        # 10,000 and 50,000 requests
    .venv/bin/python benchmarks/bench_load.py --sizes 3000 --tag _quick
    git show 870869e:llm/openai_backend.py > /tmp/old.py   # the one-task-per-prompt version
    .venv/bin/python benchmarks/bench_load.py --backend-file /tmp/old.py --tag _before

Writes ``benchmarks/results/load{tag}.csv`` and ``load{tag}.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

N_ITEMS = 10
K = 5
RETRY_AFTER = 0.05
OFFSCALE_SHARE = 0.002  # prompts (by hash) whose answer is off the scale

# -- the deterministic "model" ---------------------------------------------------------------------


def model_answer(text: str) -> tuple[list[float], bool]:
    """The fake model's probabilities of the labels "1".."K" (displayed order) and whether the
    prompt is answered off the scale; a pure function of the prompt text."""
    h = hashlib.sha256(text.encode("utf-8")).digest()
    u = [int.from_bytes(h[4 * j : 4 * j + 4], "big") / 2**32 + 0.05 for j in range(K)]
    mass = 0.3 + 0.6 * int.from_bytes(h[20:24], "big") / 2**32
    off = int.from_bytes(h[24:28], "big") / 2**32 < OFFSCALE_SHARE
    total = sum(u)
    return [mass * x / total for x in u], off


def prompt_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def completion_body(text: str) -> dict:
    probs, off = model_answer(text)
    if off:
        alts = [("I", math.log(0.7)), ("Sorry", math.log(0.3))]
    else:
        alts = [(str(j + 1), math.log(p)) for j, p in enumerate(probs)] + [("The", math.log(1 - sum(probs)))]
        alts.sort(key=lambda a: -a[1])
    top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in alts]
    return {
        "id": "chatcmpl-load", "object": "chat.completion", "created": 0, "model": "load-model",
        "choices": [{"index": 0, "finish_reason": "length",
                     "message": {"role": "assistant", "content": alts[0][0]},
                     "logprobs": {"content": [{"token": alts[0][0], "logprob": alts[0][1], "bytes": None,
                                               "top_logprobs": top}]}}],
        "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 1, "total_tokens": len(text) // 4 + 1},
    }


# -- the server --------------------------------------------------------------------------------------


class LoadServer:
    """OpenAI-compatible chat-completions server with a concurrency limit and seeded faults."""

    def __init__(self, limit: int, p429: float, p500: float, latency: tuple[float, float], seed: int):
        self.limit, self.p429, self.p500, self.latency = limit, p429, p500, latency
        self.rng = random.Random(seed)
        self.inflight = 0
        self.last429: dict[str, float] = {}  # prompt -> when its 429 was sent
        self.stats = {"requests": 0, "ok": 0, "offscale": 0, "limit_429": 0, "injected_429": 0,
                      "injected_500": 0, "max_inflight": 0, "retries_after_429": 0,
                      "retry_after_violations": 0, "min_gap_after_429": None}

    def _gap_check(self, text: str, now: float) -> None:
        sent = self.last429.pop(text, None)
        if sent is None:
            return
        gap = now - sent
        s = self.stats
        s["retries_after_429"] += 1
        s["min_gap_after_429"] = gap if s["min_gap_after_429"] is None else min(s["min_gap_after_429"], gap)
        if gap < RETRY_AFTER * 0.95:
            s["retry_after_violations"] += 1

    async def chat(self, body: bytes) -> tuple[int, dict, dict]:
        s = self.stats
        s["requests"] += 1
        req = json.loads(body)
        text = prompt_text(req["messages"])
        self._gap_check(text, time.monotonic())
        self.inflight += 1
        try:
            s["max_inflight"] = max(s["max_inflight"], self.inflight)
            if self.inflight > self.limit:
                s["limit_429"] += 1
                self.last429[text] = time.monotonic()
                return 429, {"error": {"message": "too many requests in flight"}}, {"Retry-After": str(RETRY_AFTER)}
            u = self.rng.random()
            if u < self.p429:
                s["injected_429"] += 1
                self.last429[text] = time.monotonic()
                return 429, {"error": {"message": "rate limited"}}, {"Retry-After": str(RETRY_AFTER)}
            if u < self.p429 + self.p500:
                s["injected_500"] += 1
                return 500, {"error": {"message": "internal error"}}, {}
            await asyncio.sleep(self.rng.uniform(*self.latency))
            out = completion_body(text)
            s["offscale" if model_answer(text)[1] else "ok"] += 1
            return 200, out, {}
        finally:
            self.inflight -= 1

    async def route(self, method: str, path: str, body: bytes) -> tuple[int, dict, dict]:
        if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
            return await self.chat(body)
        if method == "GET" and path == "/stats":
            return 200, dict(self.stats), {}
        return 404, {"error": {"message": f"no route {method} {path}"}}, {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reasons = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode("latin-1").split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                code, payload, extra = await self.route(method, path, body)
                data = json.dumps(payload).encode()
                head = [f"HTTP/1.1 {code} {reasons[code]}", "Content-Type: application/json",
                        f"Content-Length: {len(data)}"] + [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def serve(args: argparse.Namespace) -> None:
    async def main() -> None:
        srv = LoadServer(args.limit, args.p429, args.p500, (args.latency_min, args.latency_max), args.seed)
        server = await asyncio.start_server(srv.handle, "127.0.0.1", args.port, backlog=1024)
        print("LISTENING", server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_server(limit: int = 48, p429: float = 0.05, p500: float = 0.005, latency: tuple[float, float] = (0.02, 0.08),
                 seed: int = 0) -> tuple[subprocess.Popen, int]:
    """Start the server in its own process; returns (process, port). Stop it with ``proc.terminate()``."""
    cmd = [sys.executable, __file__, "serve", "--limit", str(limit), "--p429", str(p429), "--p500", str(p500),
           "--latency-min", str(latency[0]), "--latency-max", str(latency[1]), "--seed", str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        proc.kill()
        raise RuntimeError(f"load server did not start: {line!r}")
    return proc, int(line.split()[1])


def server_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


# -- memory -----------------------------------------------------------------------------------------


def proc_status_mb(field: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class RssMonitor:
    """Peak RSS over a block: resets the kernel's high-water mark (VmHWM) on entry when allowed and
    samples VmRSS every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_sampled = 0.0
        self.peak_hwm: float | None = None
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_sampled = max(self.peak_sampled, proc_status_mb("VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssMonitor":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_sampled = max(self.peak_sampled, proc_status_mb("VmRSS"))
        if self._hwm_reset:
            self.peak_hwm = proc_status_mb("VmHWM")

    @property
    def peak(self) -> float:
        return max(self.peak_sampled, self.peak_hwm or 0.0)


# -- the client --------------------------------------------------------------------------------------


def make_prompts(n_personas: int, seed: int = 0) -> list:
    """n_personas synthetic personas x 10 five-point items, options shown in a random order."""
    import numpy as np

    from rectify.llm.items import Item
    from rectify.llm.persona import build_prompt, render_persona

    opts = ["Strongly disagree", "Disagree", "Neither", "Agree", "Strongly agree"]
    items = [Item(f"q{j}", f"Statement {j}: the claim number {j} about public health is accurate.", opts)
             for j in range(N_ITEMS)]
    rng = np.random.default_rng(seed)
    regions = ["North", "South", "East", "West"]
    edu = ["primary", "secondary", "college", "graduate"]
    prompts = []
    for i in range(n_personas):
        row = {"respondent": f"{seed}-{i}", "age": int(rng.integers(18, 90)),
               "gender": ["woman", "man"][int(rng.integers(2))], "education": edu[int(rng.integers(4))],
               "region": regions[int(rng.integers(4))], "ideology": int(rng.integers(1, 8))}
        persona = render_persona(row)
        for it in items:
            prompts.append(build_prompt(persona, it, order=rng.permutation(K)))
    return prompts


def check_answers(prompts: list, res) -> dict:
    """Compare every answer with the fake model's; counts of each outcome."""
    import numpy as np

    status = np.array(res.status, dtype=object)
    n = len(prompts)
    counts = {s: int((status == s).sum()) for s in ("ok", "off_scale", "failed")}
    wrong = wrong_status = 0
    for i, p in enumerate(prompts):
        probs, off = model_answer(prompt_text(list(p.messages)))
        want = "off_scale" if off else "ok"
        if status[i] != want:
            wrong_status += 1
            continue
        exp = np.zeros(K) if off else p.to_canonical(np.array(probs))
        if not np.allclose(res.raw[i], exp, rtol=1e-9, atol=0):
            wrong += 1
    return {"answers_ok": counts["ok"], "answers_off_scale": counts["off_scale"], "answers_failed": counts["failed"],
            "answers_lost": n - sum(counts.values()),
            "answers_wrong_status": wrong_status, "ok_answers_wrong": wrong,
            "failed_errors": sorted({e for e in res.errors if e})[:3]}


def run_client(port: int, n_personas: int, cache_path: str, max_concurrency: int = 64, max_retries: int = 20,
               seed: int = 0, backend_file: str | None = None) -> dict:
    """Score n_personas x 10 prompts against the server at ``port``; the figures as a dict.

    ``backend_file``: load ``OpenAIBackend`` from another file (to measure an older version).
    """
    import resource

    rss_start = proc_status_mb("VmRSS")
    if backend_file:
        import importlib.util

        spec = importlib.util.spec_from_file_location("_backend_under_test", backend_file)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        OpenAIBackend = mod.OpenAIBackend
    else:
        from rectify.llm.openai_backend import OpenAIBackend
    import openai  # noqa: F401  (imported before the baseline RSS is read)

    prompts = make_prompts(n_personas, seed=seed)
    n = len(prompts)
    rss_prompts = proc_status_mb("VmRSS")

    def backend() -> "OpenAIBackend":
        # the default client: AsyncOpenAI(max_retries=0) built per score() call
        return OpenAIBackend("load-model", base_url=f"http://127.0.0.1:{port}/v1", api_key_env="RECTIFY_LOAD_NO_KEY",
                             cache=cache_path, max_concurrency=max_concurrency, max_retries=max_retries,
                             timeout=30.0, backoff=0.002, max_backoff=0.2, random_state=seed)

    be = backend()
    s0 = server_stats(port)
    with RssMonitor() as mon:
        t0 = time.perf_counter()
        res = be.score(prompts)
        wall = time.perf_counter() - t0
    s1 = server_stats(port)
    rss_after = proc_status_mb("VmRSS")
    out = {"requests": n, "distinct_prompts": len({prompt_text(list(p.messages)) for p in prompts}),
           "max_concurrency": max_concurrency, "wall_s": round(wall, 2), "requests_per_s": round(n / wall, 1)}
    for k in ("requests", "limit_429", "injected_429", "injected_500", "retries_after_429", "retry_after_violations"):
        out[f"server_{k}"] = s1[k] - s0[k]
    out["server_max_inflight"] = s1["max_inflight"]
    out["server_min_gap_after_429_s"] = s1["min_gap_after_429"]
    out["client_http_calls"] = be.n_http_calls_
    out["retries"] = be.n_http_calls_ - (n - be.last_run.n_cached)
    out.update(check_answers(prompts, res))
    out["run_n_requests"], out["run_n_cached"], out["run_n_failed"] = (
        be.last_run.n_requests, be.last_run.n_cached, be.last_run.n_failed)
    out["rss_start_mb"] = round(rss_start, 1)
    out["rss_after_prompts_mb"] = round(rss_prompts, 1)
    out["rss_peak_scoring_mb"] = round(mon.peak, 1)
    out["rss_peak_sampled_mb"] = round(mon.peak_sampled, 1)
    out["rss_after_scoring_mb"] = round(rss_after, 1)
    out["scoring_growth_mb"] = round(mon.peak - rss_prompts, 1)
    out["ru_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    # a second run over the same prompts: everything from the cache, nothing sent
    be2 = backend()
    t0 = time.perf_counter()
    res2 = be2.score(prompts)
    out["rerun_wall_s"] = round(time.perf_counter() - t0, 2)
    s2 = server_stats(port)
    out["rerun_server_requests"] = s2["requests"] - s1["requests"]
    out["rerun_cache_hits"] = be2.last_run.n_cached
    import numpy as np

    out["rerun_identical"] = bool(np.array_equal(res2.raw, res.raw, equal_nan=True) and res2.status == res.status)
    out["cache_rows"] = len(be2.cache)
    return out


def run_client_process(port: int, n_personas: int, cache_path: str, **kw) -> dict:
    """:func:`run_client` in a fresh Python process (so its peak RSS is this run's alone)."""
    cmd = [sys.executable, __file__, "client", "--port", str(port), "--personas", str(n_personas),
           "--cache", cache_path]
    for k, v in kw.items():
        if v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                              str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))})
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the benchmark -----------------------------------------------------------------------------------

COLUMNS = ["requests", "distinct_prompts", "max_concurrency", "wall_s", "requests_per_s", "server_requests",
           "server_limit_429", "server_injected_429", "server_injected_500", "retries", "retry_after_violations",
           "min_gap_after_429_s", "answers_ok", "answers_off_scale", "answers_failed", "answers_lost",
           "answers_wrong", "rss_start_mb", "rss_after_prompts_mb", "rss_peak_scoring_mb", "scoring_growth_mb",
           "rss_after_scoring_mb", "ru_maxrss_mb", "cache_rows", "rerun_cache_hits", "rerun_server_requests",
           "rerun_wall_s"]


def table_row(r: dict) -> dict:
    row = dict(r)
    row["retry_after_violations"] = r["server_retry_after_violations"]
    row["min_gap_after_429_s"] = round(r["server_min_gap_after_429_s"] or 0.0, 4)
    row["answers_wrong"] = r["ok_answers_wrong"] + r["answers_wrong_status"]
    return {c: row[c] for c in COLUMNS}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--limit", type=int, default=48)
    s.add_argument("--p429", type=float, default=0.05)
    s.add_argument("--p500", type=float, default=0.005)
    s.add_argument("--latency-min", type=float, default=0.02)
    s.add_argument("--latency-max", type=float, default=0.08)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--personas", type=int, required=True)
    c.add_argument("--cache", required=True)
    c.add_argument("--max-concurrency", type=int, default=64)
    c.add_argument("--max-retries", type=int, default=20)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--backend-file", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--limit", type=int, default=48)
    ap.add_argument("--max-concurrency", type=int, default=64)
    ap.add_argument("--tag", default="")
    ap.add_argument("--backend-file", default=None, help="measure OpenAIBackend from this file instead")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve(args)
        return
    if args.cmd == "client":
        out = run_client(args.port, args.personas, args.cache, args.max_concurrency, args.max_retries, args.seed,
                         args.backend_file)
        print(json.dumps(out))
        return
    proc, port = start_server(limit=args.limit)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as d:
            for n in args.sizes:
                r = run_client_process(port, n // N_ITEMS, os.path.join(d, f"cache{n}.sqlite"),
                                       max_concurrency=args.max_concurrency, backend_file=args.backend_file)
                print(json.dumps(r), flush=True)
                rows.append(table_row(r))
    finally:
        proc.terminate()
        proc.wait()
    write_results(rows, args.tag, args.limit, args.max_concurrency, args.backend_file)


def write_results(rows: list[dict], tag: str, limit: int, max_concurrency: int, backend_file: str | None) -> None:
    """``results/load{tag}.csv`` and a Markdown table (one column per size)."""
    import pandas as pd

    out = Path(__file__).resolve().parent / "results"
    df = pd.DataFrame(rows)
    df.to_csv(out / f"load{tag}.csv", index=False)
    who = f"OpenAIBackend from {backend_file}" if backend_file else "rectify's OpenAIBackend"
    lines = ["# Load test: OpenAI backend vs a local rate-limited server", "",
             f"{who}. Server limit {limit} in flight (429, Retry-After {RETRY_AFTER} s), 5% random 429, 0.5% "
             f"random 500, 20-80 ms per answer, {OFFSCALE_SHARE:.1%} of prompts answered off the scale; client "
             f"max_concurrency {max_concurrency}, max_retries 20, the real AsyncOpenAI client (max_retries=0); "
             "client and server in separate processes. Memory in MB (VmRSS; peak from a 5 ms sampler and the "
             "reset VmHWM); scoring_growth = peak while scoring - RSS after building the prompts.", "",
             "| measure | " + " | ".join(f"{r['requests']:,}" for r in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    for c in COLUMNS[1:]:
        lines.append(f"| {c} | " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for r in rows) + " |")
    (out / f"load{tag}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'load{tag}.csv'} and .md")


if __name__ == "__main__":
    main()
