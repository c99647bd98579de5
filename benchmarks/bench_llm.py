"""Scoring speed of the embedded SmolLM2-135M-Instruct on a CPU: transformers against llama.cpp.

One run, the same persona prompts for every engine: personas of the two bundled surveys
(synthetic misinformation survey, two claims; ANES 1996, left-right self-placement, with the
persona template of ``scripts/simulate_anes96.py``), one ``score()`` call per item as
``PromptSimulator`` makes them, no response cache. Engines:

- ``transformers fp32``: ``LocalBackend(dtype="float32", reuse_prefix=False)``, plain padded passes;
- ``transformers bf16``: the same in bf16 (only where the CPU has native bf16: AMX/AVX-512 bf16);
- ``transformers fp32 + prefix``: fp32 with the shared prompt prefix computed once per batch;
- ``transformers auto + prefix``: the default ``LocalBackend()`` (dtype chosen from the CPU flags,
  prefix reuse on);
- ``llama.cpp server``: llama-cpp-python's OpenAI-compatible server on the same GGUF (Q4_1), same
  thread count, scored through rectify's ``OpenAIBackend`` (top-20 log-probs of one answer token;
  the server needs ``--logits_all true`` for log-probs). Needs ``RECTIFY_LLAMA_CPP_PYTHON`` naming
  a Python with ``llama-cpp-python[server]`` (``make test-deps`` builds one) or ``llama_cpp``
  importable here.

Repetitions are interleaved (every engine once per repetition, in turn) and each repetition's
ratio to llama.cpp is taken within that repetition, so a change of machine load between
repetitions moves both sides. The load average is recorded before and after every measurement.

Usage: python benchmarks/bench_llm.py [--personas 48] [--reps 2] [--threads N] [--no-llama-cpp] [--tag T]
Writes benchmarks/results/llm_speed{T}.{md,csv,json}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _provenance import code_version  # noqa: E402

from rectify.datasets import load_anes96, load_misinfo, misinfo_items  # noqa: E402
from rectify.llm.cpu import BF16_FLAGS, cpu_flags, cpu_model, physical_cores, resolve_dtype  # noqa: E402
from rectify.llm.persona import build_prompt, render_personas  # noqa: E402

LLAMA = "llama.cpp server"
SHOWN_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _anes_script():
    spec = importlib.util.spec_from_file_location("simulate_anes96", os.path.join(ROOT, "scripts", "simulate_anes96.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def survey_prompts(n_personas: int) -> list[tuple[str, list]]:
    """``[(group name, prompts)]``: one group per item, ``n_personas`` personas each."""
    mis = load_misinfo()
    items = {it.name: it for it in misinfo_items()}
    cov = ["age", "gender", "education", "region", "ideology"]
    personas = list(render_personas(mis[cov].iloc[:n_personas]))
    false_claim = items["f01"]
    true_claim = next(it for name, it in items.items() if name.startswith("t"))
    groups = [(f"misinfo {it.name}", [build_prompt(p, it) for p in personas]) for it in (false_claim, true_claim)]
    anes = _anes_script()
    X = anes.persona_frame(load_anes96()).iloc[:n_personas]
    groups.append(("anes96 self_lr", [build_prompt(p, anes.SELF_LR) for p in render_personas(X, anes.PERSONA_TEMPLATE)]))
    return groups


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(python: str, gguf: str, threads: int, log_path: str) -> tuple[subprocess.Popen, str]:
    """Start llama-cpp-python's server on 127.0.0.1; wait until it answers (at most 180 s)."""
    port = _free_port()
    log = open(log_path, "wb")  # a file, never an unread pipe
    proc = subprocess.Popen(
        [python, "-m", "llama_cpp.server", "--model", gguf, "--logits_all", "true", "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--n_threads_batch", str(threads)],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited; see {log_path}")
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"llama_cpp.server did not answer within 180 s; see {log_path}")


def llama_cpp_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True,
                         text=True, timeout=60)
    return out.stdout.strip() or "unknown"


def timed_score(backend, groups) -> tuple[float, np.ndarray, list[str]]:
    """Seconds to score every group (one call per item), all raw probabilities (flattened), statuses."""
    t = time.perf_counter()
    results = [backend.score(prompts) for _, prompts in groups]
    wall = time.perf_counter() - t
    status = [s for r in results for s in r.status]
    return wall, np.concatenate([r.raw.ravel() for r in results]), status


def make_engines(threads: int, server_url: str | None) -> dict:
    """Name -> backend, each warmed up on prompts outside the measured set."""
    from rectify.llm.local import LocalBackend
    from rectify.llm.openai_backend import OpenAIBackend

    auto = resolve_dtype("auto")
    fp32 = LocalBackend(dtype="float32", num_threads=threads, reuse_prefix=False, batch_size=32).load()
    engines = {"transformers fp32": fp32}
    bf16 = None
    if BF16_FLAGS & cpu_flags():
        bf16 = LocalBackend(dtype="bfloat16", num_threads=threads, reuse_prefix=False, batch_size=32).load()
        engines["transformers bf16"] = bf16
    engines["transformers fp32 + prefix"] = _sharing(fp32, reuse_prefix=True)
    engines[f"transformers auto ({auto}) + prefix"] = _sharing(bf16 if auto == "bfloat16" and bf16 else fp32,
                                                                reuse_prefix=True)
    if server_url is not None:
        engines[LLAMA] = OpenAIBackend("smollm2", base_url=server_url, max_concurrency=2, timeout=600, cache=None)
    warm = survey_prompts(60)
    warm = [(name, prompts[-4:]) for name, prompts in warm]  # personas not in the measured set
    for be in engines.values():
        timed_score(be, warm)
    return engines


def _sharing(loaded, **changes):
    """A second LocalBackend over the same loaded model, with other scoring settings."""
    from rectify.llm.local import LocalBackend

    be = LocalBackend(dtype=loaded.dtype, num_threads=loaded.num_threads, batch_size=loaded.batch_size, **changes)
    be._model, be._tok, be.dtype_ = loaded._model, loaded._tok, loaded.dtype_
    return be


def run(args) -> tuple[pd.DataFrame, dict]:
    from rectify.llm.local import embedded_model_file

    threads = args.threads or physical_cores()
    groups = survey_prompts(args.personas)
    n_prompts = sum(len(p) for _, p in groups)
    server_python = None
    if not args.no_llama_cpp:
        server_python = os.environ.get("RECTIFY_LLAMA_CPP_PYTHON") or (
            sys.executable if importlib.util.find_spec("llama_cpp") else None)
        if server_python is None:
            raise SystemExit("no llama-cpp-python server: set RECTIFY_LLAMA_CPP_PYTHON (make test-deps builds one) "
                             "or pass --no-llama-cpp")
    rows, raws = [], {}
    with tempfile.TemporaryDirectory() as work:
        proc = url = None
        if server_python:
            proc, url = start_llama_server(server_python, embedded_model_file(), threads,
                                           os.path.join(work, "server.log"))
        try:
            engines = make_engines(threads, url)
            for rep in range(args.reps):
                for name, be in engines.items():
                    load0 = os.getloadavg()[0]
                    wall, raw, status = timed_score(be, groups)
                    load1 = os.getloadavg()[0]
                    rows.append(dict(rep=rep, engine=name, n_prompts=n_prompts, wall_s=round(wall, 3),
                                     prompts_per_s=round(n_prompts / wall, 3), n_failed=sum(s != "ok" for s in status),
                                     load_before=load0, load_after=load1))
                    raws.setdefault(name, raw)
                    print(rows[-1], flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    df = pd.DataFrame(rows)
    ref = raws["transformers fp32"]
    meta = dict(
        cpu_model=cpu_model(), cpu_flags=[f for f in SHOWN_FLAGS if f in cpu_flags()],
        logical_cpus=os.cpu_count(), physical_cores=physical_cores(), threads=threads,
        auto_dtype=resolve_dtype("auto"), personas_per_item=args.personas, items=[g for g, _ in groups],
        n_prompts=n_prompts, reps=args.reps, python=platform.python_version(), commit=code_version(),
        torch=_version("torch"), transformers=_version("transformers"),
        llama_cpp_python=llama_cpp_version(server_python) if server_python else None,
        max_abs_diff_vs_fp32={k: float(np.nanmax(np.abs(v - ref))) for k, v in raws.items()},
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), niceness=os.nice(0),
    )
    return df, meta


def _version(mod: str) -> str:
    from importlib.metadata import version

    return version(mod)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per engine: median / min / max prompts per second and the median within-repetition ratio to
    llama.cpp (engine speed / llama.cpp speed; > 1 means faster than llama.cpp)."""
    out = []
    has_llama = LLAMA in set(df["engine"])
    for name, g in df.groupby("engine", sort=False):
        row = dict(engine=name, median_per_s=g["prompts_per_s"].median(), min_per_s=g["prompts_per_s"].min(),
                   max_per_s=g["prompts_per_s"].max(), reps=len(g))
        if has_llama:
            ll = df[df["engine"] == LLAMA].set_index("rep")["prompts_per_s"]
            row["ratio_to_llama_cpp"] = float(np.median([r.prompts_per_s / ll[r.rep] for r in g.itertuples()]))
        out.append(row)
    return pd.DataFrame(out)


def verdict(summary: pd.DataFrame) -> str:
    """The conclusion the numbers support (which engine to use for scoring on this CPU)."""
    tf = summary[summary["engine"].str.startswith("transformers")]
    best = tf.loc[tf["median_per_s"].idxmax()]
    text = [f"Fastest transformers path: **{best.engine}**, {best.median_per_s:.2f} prompts/s (median)."]
    if "ratio_to_llama_cpp" not in summary:
        return " ".join(text + ["llama.cpp was not measured in this run."])
    ll = summary[summary["engine"] == LLAMA].iloc[0]
    r = best.ratio_to_llama_cpp
    text.append(f"llama.cpp server: {ll.median_per_s:.2f} prompts/s; best transformers / llama.cpp = {r:.2f}.")
    if r >= 1 / 1.5:
        text.append(
            "llama.cpp is not clearly faster (less than 1.5x the best transformers path), so scoring stays on "
            "transformers: one engine for scoring and LoRA fine-tuning, exact fp32 probabilities where the CPU "
            "lacks bf16, no second virtual environment, no source build of llama-cpp-python and no server "
            "process to manage; the llama.cpp server remains usable through `OpenAIBackend` for anyone who runs one.")
    else:
        text.append("llama.cpp is clearly faster (> 1.5x): use `LlamaCppBackend` (rectify.llm.llamacpp) for scoring.")
    target = max(5.0, ll.median_per_s / 1.5)
    text.append(f"Target (>= 5 prompts/s or within 1.5x of llama.cpp, whichever is faster: {target:.2f} prompts/s): "
                + ("met." if best.median_per_s >= target else "NOT met."))
    return " ".join(text)


def write(df: pd.DataFrame, meta: dict, out_dir: str, tag: str = "") -> None:
    os.makedirs(out_dir, exist_ok=True)
    summary = summarise(df)
    df.to_csv(os.path.join(out_dir, f"llm_speed{tag}.csv"), index=False)
    with open(os.path.join(out_dir, f"llm_speed{tag}.json"), "w") as fh:
        json.dump(dict(meta=meta, summary=summary.to_dict(orient="records"), runs=df.to_dict(orient="records")),
                  fh, indent=1)
    lines = [
        "# Scoring speed of the embedded SmolLM2-135M-Instruct: transformers vs llama.cpp",
        "",
        "Written by `benchmarks/bench_llm.py` (one run; every engine on the same prompts, repetitions",
        "interleaved). Persona prompts/s for one answer distribution each, no response cache.",
        "",
        f"- CPU: {meta['cpu_model']}; {meta['logical_cpus']} logical CPUs, {meta['physical_cores']} physical cores; "
        f"flags: {', '.join(meta['cpu_flags']) or 'none of the listed'}",
        f"- threads: {meta['threads']} (torch and llama.cpp); `dtype=\"auto\"` resolves to **{meta['auto_dtype']}** here",
        f"- prompts: {meta['n_prompts']} = {meta['personas_per_item']} personas x {len(meta['items'])} items "
        f"({', '.join(meta['items'])}), one score() call per item; {meta['reps']} repetitions",
        f"- load average (1 min) during the run: {df['load_before'].min():.1f} to {df['load_after'].max():.1f} "
        f"(the machine is shared; this process ran at niceness {meta.get('niceness', 'unknown')}: ratios within a "
        "repetition are the figures to quote)",
        f"- versions: torch {meta['torch']}, transformers {meta['transformers']}, llama-cpp-python "
        f"{meta['llama_cpp_python']}, Python {meta['python']}; commit {meta['commit']}; {meta['date']}",
        "",
        "| engine | prompts/s (median) | min | max | reps | x llama.cpp | max abs diff of p vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary.itertuples():
        ratio = f"{r.ratio_to_llama_cpp:.2f}" if "ratio_to_llama_cpp" in summary else "n/a"
        lines.append(f"| {r.engine} | {r.median_per_s:.2f} | {r.min_per_s:.2f} | {r.max_per_s:.2f} | {r.reps} | "
                     f"{ratio} | {meta['max_abs_diff_vs_fp32'][r.engine]:.4f} |")
    lines += [
        "",
        "## Conclusion",
        "",
        verdict(summary),
        "",
        "## Notes",
        "",
        "- The shared prefix of one item's persona prompts is the chat header, the system message and the",
        "  start of the persona template (the persona comes before the question in `build_prompt`); the",
        "  question after the persona cannot be shared under causal attention. Batches are planned by",
        "  `rectify.llm.prefix.plan_batches` (similar lengths, or one persona's items together when cheaper).",
        "- bf16 is only chosen by `dtype=\"auto\"` on CPUs with `amx_bf16` or `avx512_bf16`; on an AMD EPYC",
        "  with AVX2 only, bf16 was measured 3.7x slower than fp32 (issue 12), so there `auto` gives fp32.",
        "- llama.cpp works on the Q4_1 weights directly; transformers on the dequantised weights: the",
        "  last column shows how far each engine's option probabilities are from transformers fp32.",
        "- llama-cpp-python's server returns log-probs only with `--logits_all true` (full-vocabulary logits",
        "  at every prompt position) and serves one request at a time; it reuses the previous request's",
        "  matching prompt prefix by itself.",
        f"- Full rows: `llm_speed{tag}.csv`; metadata and summary: `llm_speed{tag}.json`.",
    ]
    with open(os.path.join(out_dir, f"llm_speed{tag}.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--personas", type=int, default=48, help="personas per item (3 items)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp server")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default="", help="suffix of the output file names (e.g. _1thread)")
    args = ap.parse_args()
    df, meta = run(args)
    write(df, meta, args.out_dir, args.tag)
    print(open(os.path.join(args.out_dir, f"llm_speed{args.tag}.md")).read())


if __name__ == "__main__":
    main()
