"""Scale benchmarks (issue 14).

``compare``: :func:`rectify.compare` on each backend -- sequential, joblib (local processes) and a
Dask LocalCluster (processes, 1 thread each, started and closed inside the call) -- for two studies:

* ``demo``: the bundled survey's demo comparison (:func:`rectify.demo.run_comparison`: 36 items,
  every default method, pilot sizes 50/100/200, 3 repeats = 63 cells; no LoRA -- the seed design's
  live LoRA fits would dominate the time and are not what is measured here);
* ``cells1000``: 1,000 cheap cells (classical and PPI++ on two items, 5 pilot sizes x 100 repeats).

Each backend's time includes starting its workers (that is the overhead a user pays); the tables
are checked to be byte-identical to the sequential one. Speed-up = sequential / backend;
overhead per cell = (workers x backend time - sequential time) / cells, the worker-seconds each
cell costs beyond its own work.

Usage (from the repository root; time-box it, the machine is shared)::

    timeout 1500 nice -n 10 .venv/bin/python benchmarks/bench_scale.py compare
    timeout 300 nice -n 10 .venv/bin/python benchmarks/bench_scale.py compare --quick   # 2 cheap studies

Writes ``benchmarks/results/scale.csv`` and ``scale.md``.

``frames``: a synthetic frame of ``--rows`` rows (default 10^8) written as a Parquet folder of 10^7-row
files (with ``nice``; deleted afterwards unless ``--keep``), then, each in a fresh process (so its
peak RSS is its own): :func:`rectify.mean` (one pass), :func:`rectify.ols` (two passes) and
:func:`rectify.logit` (one pass per Newton step) on the streamed folder, and the same verbs on the
first 10^7 rows streamed and in memory (the anchor: time per 10^6 rows of each path). Writes
``benchmarks/results/scale_frames.csv`` and ``scale_frames.md``.

``tokens``: tokens per prompt of the bundled misinformation survey (its 1,500 personas x 36 claims,
zero-shot, the prompts ``rectify simulate`` sends), counted with the embedded model's tokenizer and
chat template -- the input of the cost and time estimates in benchmarks/README.md. Writes
``benchmarks/results/scale_tokens.csv`` and ``scale_tokens.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _provenance import code_version  # noqa: E402


def machine() -> dict:
    from rectify.llm.cpu import cpu_flags, cpu_model

    flags = sorted(f for f in cpu_flags() if f.startswith(("amx", "avx512_bf16", "avx2", "avx512f")))
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "flags": " ".join(flags)}


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def digest(c) -> str:
    return hashlib.sha256(b"".join(d.to_csv().encode() for d in (c.table, c.estimates, c.coefficients,
                                                                    c.failures))).hexdigest()[:16]


def studies(quick: bool) -> dict:
    from rectify.datasets import load_misinfo
    from rectify.demo import comparison_frame, comparison_settings

    demo = dict(frame=comparison_frame(), methods=None, pilot_sizes=(50, 100, 200), repeats=3, random_state=1,
                **comparison_settings())
    cheap = dict(frame=load_misinfo(), items=["f01", "t01"], methods=["classical", "ppi++"],
                 pilot_sizes=(50, 100, 200, 400, 800), repeats=100, random_state=0)
    if quick:
        demo.update(items=["f01", "f02", "t01", "t02"], scales={"discernment": (["t01", "t02"], ["f01", "f02"])},
                    pilot_sizes=(50, 100), repeats=2)
        cheap.update(repeats=10)
    return {"demo": demo, "cells1000": cheap}


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its exited, reaped descendants (workers)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _shutdown_loky() -> None:
    """Stop joblib's reusable worker processes, so that every timed joblib run starts cold."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def cold_start(backend: str, frame, workers: int, kw: dict) -> float:
    """Seconds a one-cell comparison costs on ``backend`` beyond the same cell run here: starting the
    workers (processes, imports) and shipping the frame."""
    from rectify.comparison import compare

    one = {**kw, "pilot_sizes": kw["pilot_sizes"][:1], "repeats": 1, "methods": ["classical"]}
    t0 = time.perf_counter()
    compare(frame, progress=False, **one)
    t_seq = time.perf_counter() - t0
    _shutdown_loky()
    t0 = time.perf_counter()
    compare(frame, progress=False, backend=backend, n_jobs=workers, **one)
    return max(time.perf_counter() - t0 - t_seq, 0.0)


def bench_compare(args) -> None:
    from rectify.comparison import compare

    rows = []
    for name, kw in studies(args.quick).items():
        if args.study not in ("both", name):
            continue
        frame = kw.pop("frame")
        ref = None
        for backend in ("sequential", "joblib", "dask"):
            startup = cold_start(backend, frame, args.workers, kw) if backend != "sequential" else 0.0
            _shutdown_loky()
            l0, t0, c0 = load(), time.perf_counter(), cpu_seconds()
            c = compare(frame, progress=False, backend=backend, n_jobs=args.workers, **kw)
            wall = time.perf_counter() - t0
            _shutdown_loky()  # its workers' CPU time is counted once they have exited
            cpu = cpu_seconds() - c0
            n_cells = len(c.methods) * len(c.pilot_sizes) * c.repeats
            d = digest(c)
            ref = ref or (wall, d, cpu)
            workers = 1 if backend == "sequential" else args.workers
            rows.append({"study": name, "backend": backend, "workers": workers, "cells": n_cells,
                         "wall_s": round(wall, 2), "per_cell_ms": round(1000 * wall / n_cells, 1),
                         "speedup": round(ref[0] / wall, 2),
                         "startup_s": round(startup, 2), "cpu_s": round(cpu, 1),
                         "cpu_overhead_per_cell_ms": round(1000 * (cpu - ref[2]) / n_cells, 1),
                         "overhead_per_cell_ms": round(1000 * (workers * max(wall - startup, 0) - ref[0]) / n_cells, 1),
                         "identical": d == ref[1], "load_before": l0, "load_after": load()})
            print(rows[-1], flush=True)
    m = machine()
    out = pd.DataFrame(rows).assign(cpu=m["cpu"], flags=m["flags"], reps=1, code=code_version())
    res = HERE / "results"
    out.to_csv(res / f"scale{args.tag}.csv", index=False)
    cols = ["study", "backend", "workers", "cells", "wall_s", "per_cell_ms", "speedup", "startup_s",
            "overhead_per_cell_ms", "cpu_s", "cpu_overhead_per_cell_ms",
            "identical", "load_before", "load_after"]
    md = [f"# compare on each backend (issue 14){' -- quick run' if args.quick else ''}", "",
          f"CPU: {m['cpu']}, {m['cores']} cores, flags: {m['flags'] or 'n/a'}; one repetition per cell of the table; "
          f"code {code_version()}. Times include starting the workers (joblib: loky processes; dask: a LocalCluster "
          "of processes x 1 thread, started and closed inside compare). `identical`: the tables' bytes equal the "
          "sequential run's. Speed-up = sequential / backend; startup: what a one-cell run costs on the backend "
          "beyond the same cell run in the caller (starting workers, imports, shipping the frame); overhead per "
          "cell = (workers x (wall - startup) - sequential wall) / cells (it counts waiting for a busy core as overhead); "
          "`cpu_s`: CPU seconds of the caller and its workers (counted after they exit), and CPU overhead per cell = "
          "(cpu_s - sequential cpu_s) / cells, the work a backend adds whatever the load. The machine is shared (the load average is beside each run): read ratios, not "
          "absolute seconds.", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (res / f"scale{args.tag}.md").write_text("\n".join(md) + "\n")


FILE_ROWS = 10_000_000


def write_frame(folder: Path, rows: int, seed: int = 0) -> float:
    """A synthetic frame (age, educ: int16; f: the LLM's score, q: its probability of a yes: float32) as
    Parquet files of 10^7 rows; returns seconds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    done = 0
    while done < rows:
        n_file = min(FILE_ROWS, rows - done)
        with pq.ParquetWriter(folder / f"part{done // FILE_ROWS:03d}.parquet", _schema()) as w:
            for start in range(0, n_file, 1_000_000):
                m = min(1_000_000, n_file - start)
                age = rng.integers(18, 90, m).astype(np.int16)
                educ = rng.integers(1, 6, m).astype(np.int16)
                f = (1.5 + 0.02 * age + 0.2 * educ + rng.normal(0, 0.7, m)).astype(np.float32)
                q = (1 / (1 + np.exp(-(-2 + 0.03 * age + 0.1 * educ)))).astype(np.float32)
                w.write_table(pa.table({"age": age, "educ": educ, "f": f, "q": q}, schema=_schema()),
                              row_group_size=1_000_000)
        done += n_file
    return time.perf_counter() - t0


def _schema():
    import pyarrow as pa

    return pa.schema([("age", pa.int16()), ("educ", pa.int16()), ("f", pa.float32()), ("q", pa.float32())])


def _pilot(n: int = 1000, seed: int = 1):
    import numpy as np

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n).astype(float)
    educ = rng.integers(1, 6, n).astype(float)
    f = 1.5 + 0.02 * age + 0.2 * educ + rng.normal(0, 0.7, n)
    y = f + rng.normal(0.3, 0.5, n)
    q = 1 / (1 + np.exp(-(-2 + 0.03 * age + 0.1 * educ)))
    return pd.DataFrame({"age": age, "educ": educ, "f": f, "y": y, "q": q, "b": (rng.random(n) < q).astype(float)})


VERBS = {"mean": "rectify.mean('y', pilot, pop, predicted='f', overlap='separate')",
         "ols": "rectify.ols('y ~ age + educ', pilot, pop, predicted='f', overlap='separate')",
         "logit": "rectify.logit('b ~ age + educ', pilot, pop, predicted='q', overlap='separate')"}


def _one(verb: str, source: str, files: int, in_memory: bool) -> dict:
    """Run one verb in a fresh process; its wall time (verb only) and peak RSS."""
    import json
    import subprocess

    code = f"""
import json, resource, time, sys
sys.path.insert(0, {str(HERE.parent)!r})
import pandas as pd, pyarrow.dataset as ds, rectify
sys.path.insert(0, {str(HERE)!r})
from bench_scale import _pilot
pilot = _pilot()
files = sorted(__import__('glob').glob({source!r} + '/*.parquet'))[:{files}]
pop = ds.dataset(files, format='parquet')
if {in_memory!r}:
    pop = pop.to_table().to_pandas()
t0 = time.perf_counter()
r = {VERBS[verb]}
wall = time.perf_counter() - t0
print(json.dumps({{"wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "estimate": float(r.estimate[-1]), "std_error": float(r.std_error[-1]), "N": int(r.n_population),
                  "passes": r.diagnostics.get("iterations", {{}}).get("population", 1)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_frames(args) -> None:
    import shutil

    folder = Path(args.folder)
    m = machine()
    l0 = load()
    write_s = write_frame(folder, args.rows) if not (folder / "part000.parquet").exists() else float("nan")
    disk_gb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e9
    n_files = len(list(folder.glob("*.parquet")))
    rows = []
    try:
        for verb in VERBS:
            for label, files, mem in (("streamed, all rows", n_files, False), ("streamed, 10^7 rows", 1, False),
                                      ("in memory, 10^7 rows", 1, True)):
                lb = load()
                r = _one(verb, str(folder), files, mem)
                rows.append({"verb": verb, "path": label, "rows": r["N"], "wall_s": round(r["wall_s"], 2),
                             "s_per_1e6_rows": round(r["wall_s"] / (r["N"] / 1e6), 4),
                             "peak_rss_mb": round(r["rss_mb"]), "passes": r["passes"],
                             "estimate": r["estimate"], "std_error": r["std_error"], "load_before": lb})
                print(rows[-1], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    out = pd.DataFrame(rows).assign(cpu=m["cpu"], flags=m["flags"], reps=1, code=code_version())
    res = HERE / "results"
    out.to_csv(res / f"scale_frames{args.tag}.csv", index=False)
    cols = ["verb", "path", "rows", "wall_s", "s_per_1e6_rows", "peak_rss_mb", "passes", "load_before"]
    md = ["# Frames larger than memory (issue 14)", "",
          f"CPU: {m['cpu']}, {m['cores']} cores, flags: {m['flags'] or 'n/a'}; one repetition; code {code_version()}; "
          f"load average {l0:.1f} at the start. A synthetic frame of {args.rows:,} rows (age, educ int16; the "
          f"LLM's score f and probability q float32) in {n_files} Parquet files ({disk_gb:.2f} GB on disk, written "
          f"in {write_s:.0f} s). Each verb runs in a fresh process on a 1,000-row pilot (`overlap='separate'`); "
          "`wall_s` times the verb alone (not the imports, nor, in memory, loading the table); peak RSS is the "
          "process's, loading included. `passes`: population passes (mean 1, OLS 2, logistic 1 per Newton step).",
          "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (res / f"scale_frames{args.tag}.md").write_text("\n".join(md) + "\n")


def bench_tokens(args) -> None:
    import numpy as np

    from rectify.datasets import MISINFO_OPTIONS, MISINFO_QUESTION, load_misinfo, misinfo_items
    from rectify.llm.items import Item
    from rectify.llm.local import _load_tokenizer, embedded_model_dir
    from rectify.llm.simulator import PromptSimulator

    class _Prompts:  # prompts only: never asked to score
        def score(self, prompts):
            raise RuntimeError("not used")

    tok = _load_tokenizer(embedded_model_dir())
    df = load_misinfo()[["age", "gender", "education", "region", "ideology"]]
    counts, first = [], None
    for r in misinfo_items(as_dicts=True):
        item = Item(r["name"], MISINFO_QUESTION.format(claim=r["wording"]), list(MISINFO_OPTIONS), scores=[1, 2, 3, 4])
        prompts = PromptSimulator(_Prompts(), item).fit().prompts(df)
        texts = [tok.apply_chat_template(list(p.messages), tokenize=False, add_generation_prompt=True) for p in prompts]
        counts += [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        first = first or texts[0]
    c = np.array(counts)
    m = machine()
    row = {"prompts": len(c), "personas": len(df), "items": len(c) // len(df), "mean_tokens": round(float(c.mean()), 1),
           "p50": int(np.median(c)), "p95": int(np.percentile(c, 95)), "max": int(c.max()),
           "tokenizer": "SmolLM2-135M-Instruct (embedded), chat template with generation prompt", "cpu": m["cpu"],
           "code": code_version()}
    res = HERE / "results"
    pd.DataFrame([row]).to_csv(res / f"scale_tokens{args.tag}.csv", index=False)
    md = ["# Tokens per prompt (issue 14)", "",
          f"The bundled misinformation survey's {len(df):,} personas x {row['items']} claims, zero-shot, as "
          "`rectify simulate` sends them, counted with the embedded model's tokenizer (its chat template, with the "
          "generation prompt). Other models' tokenizers differ by some tens of percent.", "",
          "| prompts | mean tokens | median | p95 | max |", "|---|---|---|---|---|",
          f"| {row['prompts']:,} | {row['mean_tokens']} | {row['p50']} | {row['p95']} | {row['max']} |", "",
          "One prompt, as the model sees it:", "", "```", first.strip(), "```"]
    (res / f"scale_tokens{args.tag}.md").write_text("\n".join(md) + "\n")
    print(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["compare", "frames", "tokens"])
    ap.add_argument("--study", choices=["both", "demo", "cells1000"], default="both", help="compare: which study")
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--folder", default="/tmp/rectify_bench_frame")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.part == "compare":
        bench_compare(args)
    elif args.part == "frames":
        bench_frames(args)
    else:
        bench_tokens(args)


if __name__ == "__main__":
    main()
