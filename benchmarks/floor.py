"""How close rectify runs to the machine's floor, beside its peers and an older rectify (issue 17).

One run measures, on this machine and under its current load:

* the **floor**: one pass over the frame's design, ``X.T @ X`` and ``X.T @ yhat`` (N = 1e6, p = 4,
  intercept included), with NumPy's default BLAS threads and with one thread; for the mean, the
  sum and sum of squares of the predictions;
* **rectify**'s formula verbs on a DataFrame (tuned PPI++ with a 95% interval): ``mean``, ``ols``,
  ``logit`` (N = 1e6, the first three also with ``convention="ppi_py"``) and ``ordinal`` (N = 1e6,
  soft labels over 4 options; its floor is one pass of ``X.T @ X`` and ``X.T @ P``), on a random
  pilot of frame rows;
* **ppi_py** (``ppi_mean_ci`` / ``ppi_ols_ci`` / ``ppi_logistic_ci``, alpha = 0.05) on the same arrays;
* **raking** 1e6 rows x 3 margins x 5 categories to 1e-12: ``rectify.calibrate`` from a DataFrame
  (categorical and text columns), the core ``rake`` on codes, and ``ipfn``'s numpy mode on the cell
  table (aggregation and mapping back included), and ``svy``'s raking from its own polars frame
  (PyPI ``svy``, in the ``bench`` extra); ``balance`` cannot be installed beside pandas 3 (it pins an
  older pandas that pip builds from source, and that build fails), which the results file says;
* the **chain rule** at N = 1e6 (the core on codes, and ``rectify.bayes_shares`` from a DataFrame);
* ``import rectify`` (best of 5 fresh interpreters, ``-X importtime``) and the **peak memory** of
  ``rectify.ols`` at N = 1e7 over the frame's arrays (tracemalloc, in a fresh interpreter).

With ``--old ROOT`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/old HEAD~8``;
repeatable) every rectify row is measured again with that code, in its own process, in the same run. Each timing is
the median (and minimum) of ``--reps`` repetitions after one warm-up call; each process measures
the floor before and after its rows and the table divides by the median of those floor samples.

Run from the repository root::

    git worktree add /tmp/old-c21fe34 c21fe34   # the code before issue 17
    .venv/bin/python benchmarks/floor.py --old /tmp/old-c21fe34 [--old /tmp/another]

Writes ``benchmarks/results/floor.md`` and ``floor.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
N_BIG, N_ORD, N_MEM, N_PILOT = 1_000_000, 1_000_000, 10_000_000, 200


# ----------------------------------------------------------------------------- importing a given rectify
def use_code(root: Path) -> None:
    """Import ``rectify`` (and its ``estimators`` / ``llm`` subpackages) from the checkout ``root``."""
    import importlib.util

    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (HERE, ROOT)]
    sys.path.insert(0, str(root))
    import rectify

    for sub in ("estimators", "llm"):
        if (root / "rectify" / sub).exists() or not (root / sub / "__init__.py").exists():
            continue  # a checkout where the subpackage already sits under rectify/
        name = f"rectify.{sub}"
        spec = importlib.util.spec_from_file_location(name, root / sub / "__init__.py",
                                                      submodule_search_locations=[str(root / sub)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        setattr(rectify, sub, mod)
        spec.loader.exec_module(mod)


# ----------------------------------------------------------------------------- data
def ppi_frame(N: int, seed: int = 17):
    """A frame with three covariates, a numeric and a binary answer with LLM predictions."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    df = pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2]})
    df["y"] = X @ [0.3, -0.2, 0.1] + 0.5 + rng.normal(size=N)
    df["f"] = 0.9 * df["y"] + 0.2 + 0.6 * rng.normal(size=N)
    eta = X @ [0.5, -0.4, 0.2] + rng.logistic(size=N)
    df["b"] = (eta > 0).astype(float)
    df["pb"] = 1 / (1 + np.exp(-(0.8 * eta + 0.2 + rng.normal(size=N))))
    return df


def pilot_rows(N: int, n: int, seed: int = 3) -> np.ndarray:
    """Positions of a simple random pilot inside the frame (sorted; the same rows for every tool)."""
    return np.sort(np.random.default_rng(seed).choice(N, n, replace=False))


def ordinal_frame(N: int, seed: int = 18):
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 2))
    df = pd.DataFrame({"x1": X[:, 0], "x2": X[:, 1]})
    eta = X @ [0.5, -0.3] + rng.logistic(size=N)
    df["o"] = np.digitize(eta, [-1.0, 0.0, 1.0]) + 1
    P = np.exp(-0.5 * (np.arange(1, 5)[None, :] - (df["o"].to_numpy()[:, None] + 0.5 * rng.normal(size=(N, 1)))) ** 2)
    P /= P.sum(axis=1, keepdims=True)
    for k in range(4):
        df[f"p{k + 1}"] = P[:, k]
    return df


def _bench_calibration():
    """benchmarks/bench_calibration.py (its data and its ipfn call), loaded from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_calibration", HERE / "bench_calibration.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rake_data(n: int):
    """As benchmarks/bench_calibration.py: unequal design weights, three margins of five categories."""
    return _bench_calibration().make_data(n)


# ----------------------------------------------------------------------------- timing
def timed(fn, reps: int) -> dict:
    fn()  # warm-up (first use, caches, numba compile for ppi_py)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(ts)), "min_s": float(np.min(ts)), "reps": reps}


def one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


ORDINAL = "ordinal (N=1e6, 4 options, soft labels)"
ORD_FLOOR = "floor: X'X and X'P (N=1e6, p=3, K=4)"


def ordinal_floor_rows(od, reps: int) -> list[dict]:
    """The ordinal fit's floor: one pass over its design (intercept, x1, x2) and the K probability
    columns of the LLM's answer distribution."""
    D = np.column_stack([np.ones(len(od)), od[["x1", "x2"]].to_numpy()])
    P = od[[f"p{k}" for k in range(1, 5)]].to_numpy()
    return [{"task": ORD_FLOOR, "impl": "numpy", **timed(lambda: (D.T @ D, D.T @ P), reps)}]


def floor_rows(df, reps: int) -> list[dict]:
    """The floor: one pass over the frame's design and predictions (default threads and one)."""
    N = len(df)
    D = np.column_stack([np.ones(N), df[["x1", "x2", "x3"]].to_numpy()])
    f = df["f"].to_numpy()
    out = [{"task": "floor: X'X and X'yhat (N=1e6, p=4)", "impl": "numpy", **timed(lambda: (D.T @ D, D.T @ f), reps)}]
    with one_blas_thread():  # (a dot product over 1e6 values on two busy BLAS threads takes 40x longer)
        out.append({"task": "floor: X'X and X'yhat (N=1e6, p=4)", "impl": "numpy, 1 BLAS thread",
                    **timed(lambda: (D.T @ D, D.T @ f), reps)})
        out.append({"task": "floor: sum and sum of squares of yhat (N=1e6)", "impl": "numpy",
                    **timed(lambda: (f.sum(), f @ f), reps)})
    return out


def rectify_rows(reps: int, ordinal_reps: int) -> list[dict]:
    """Every rectify row, with whatever rectify is importable now."""
    import warnings

    import pandas as pd

    import rectify
    from rectify.estimators.bayes_chain import chain_rule
    from rectify.estimators.calibration import rake
    from rectify.weighting import calibrate

    df = ppi_frame(N_BIG)
    pilot = df.iloc[pilot_rows(N_BIG, N_PILOT)].copy()
    rows = []
    # convention="ppi_py" on a pilot inside the frame warns that ppi_py's variance ignores the overlap
    warnings.simplefilter("ignore")

    def add(task, fn, r=reps, impl="rectify"):
        rows.append({"task": task, "impl": impl, **timed(fn, r)})
        print(f"  {task:58s} {rows[-1]['median_s'] * 1e3:9.1f} ms", flush=True)

    rows += floor_rows(df, reps)
    for conv, tag in (("small-sample", ""), ("ppi_py", " [convention=ppi_py]")):
        add(f"mean{tag}", lambda c=conv: rectify.mean("y", pilot, df, predicted="f", convention=c).conf_int())
        add(f"ols{tag}", lambda c=conv: rectify.ols("y ~ x1 + x2 + x3", pilot, df, predicted="f",
                                                    convention=c).conf_int())
        add(f"logit{tag}", lambda c=conv: rectify.logit("b ~ x1 + x2 + x3", pilot, df, predicted="pb",
                                                        convention=c).conf_int())
    od = ordinal_frame(N_ORD)
    opilot = od.iloc[pilot_rows(N_ORD, 300)].copy()
    probs = [f"p{k}" for k in range(1, 5)]
    rows += ordinal_floor_rows(od, reps)
    add(ORDINAL,
        lambda: rectify.ordinal("o ~ x1 + x2", opilot, od, predicted=probs, categories=[1, 2, 3, 4]).conf_int(),
        ordinal_reps)
    codes, d, targets = rake_data(N_BIG)
    levels = list("abcde")
    cat = pd.DataFrame({f"m{j}": pd.Categorical.from_codes(c, levels) for j, c in enumerate(codes)})
    cat["d"] = d
    text = cat.astype({f"m{j}": str for j in range(3)})
    margins = {f"m{j}": dict(zip(levels, t)) for j, t in enumerate(targets)}
    import importlib.util

    ipfn = None
    if importlib.util.find_spec("ipfn") is not None:  # timed beside rectify, in the same process
        run_ipfn = _bench_calibration().run_ipfn

        def ipfn():
            add("raking: ipfn numpy mode on the cell table", lambda: run_ipfn(codes, d, targets), impl="ipfn")
        ipfn()
    add("raking: rake core on codes (1e6 x 3 x 5, 1e-12)", lambda: rake(codes, targets, d, tol=1e-12).weights)
    add("raking: calibrate from a DataFrame, categorical columns",
        lambda: calibrate(cat, margins=margins, design_weights="d", tol=1e-12).weights.to_numpy())
    add("raking: calibrate from a DataFrame, text columns",
        lambda: calibrate(text, margins=margins, design_weights="d", tol=1e-12).weights.to_numpy())
    if ipfn is not None:
        ipfn()
    rng = np.random.default_rng(5)
    a_pop = rng.integers(0, 5, N_BIG)
    y = rng.integers(0, 5, 300)
    a = np.clip(y + rng.integers(-1, 2, 300), 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        add("chain rule: core on codes (N=1e6)", lambda: chain_rule(y, a, a_pop, n_options=5, random_state=1))
        pop = pd.DataFrame({"llm": a_pop + 1})
        cpilot = pd.DataFrame({"llm": a + 1, "human": y + 1})
        add("chain rule: bayes_shares from a DataFrame (N=1e6)",
            lambda: rectify.bayes_shares("human", cpilot, pop, "llm", categories=[1, 2, 3, 4, 5], random_state=1))
    rows += floor_rows(df, reps)
    return rows


def peer_rows(reps: int, peer_reps: int) -> list[dict]:
    """ppi_py, ipfn, balance and svy on the same data (those that are installed)."""
    import importlib.util

    rows = []
    df = ppi_frame(N_BIG)
    pilot = df.iloc[pilot_rows(N_BIG, N_PILOT)]
    if importlib.util.find_spec("ppi_py") is not None:
        from ppi_py import ppi_logistic_ci, ppi_mean_ci, ppi_ols_ci

        def design(frame):
            return np.column_stack([np.ones(len(frame)), frame[["x1", "x2", "x3"]].to_numpy()])
        X, Xp = design(pilot), design(df)
        arrays = {
            "mean": lambda: ppi_mean_ci(pilot["y"].to_numpy(), pilot["f"].to_numpy(), df["f"].to_numpy(), alpha=0.05),
            "ols": lambda: ppi_ols_ci(X, pilot["y"].to_numpy(), pilot["f"].to_numpy(), Xp, df["f"].to_numpy(),
                                      alpha=0.05),
            "logit": lambda: ppi_logistic_ci(X, pilot["b"].to_numpy(), pilot["pb"].to_numpy(), Xp,
                                             df["pb"].to_numpy(), alpha=0.05),
        }
        for task, fn in arrays.items():
            rows.append({"task": task, "impl": "ppi_py", **timed(fn, peer_reps)})
            print(f"  ppi_py {task:51s} {rows[-1]['median_s'] * 1e3:9.1f} ms", flush=True)
    else:
        rows.append({"task": "ppi_py", "impl": "ppi_py", "note": "not installed"})
    if importlib.util.find_spec("ipfn") is None:
        rows.append({"task": "raking: ipfn numpy mode on the cell table", "impl": "ipfn", "note": "not installed"})
    if importlib.util.find_spec("svy") is not None:
        rows.append({"task": "raking: svy (polars frame, 1e-12)", "impl": "svy", **timed(svy_rake(), max(3, reps // 2))})
        print(f"  svy raking {rows[-1]['median_s'] * 1e3:47.1f} ms", flush=True)
    else:
        rows.append({"task": "raking: svy", "impl": "svy", "note": "not installed (pip install svy: the bench extra)"})
    if importlib.util.find_spec("balance") is None:
        rows.append({"task": "raking: balance", "impl": "balance",
                     "note": "not installable here: balance 0.x pins pandas < 3 and pip builds that pandas from "
                             "source, which fails (no pkg_resources); FIELD-NOTES.md reports about 1.2 s on this "
                             "kind of machine"})
    return rows


def svy_rake():
    """svy's raking (``Sample.weighting.rake``) on the same rows, from its own (polars) frame."""
    import polars as pl
    import svy

    codes, d, targets = rake_data(N_BIG)
    levels = np.array(list("abcde"))
    frame = pl.DataFrame({**{f"m{j}": levels[c] for j, c in enumerate(codes)}, "d": d})
    controls = {f"m{j}": dict(zip(levels.tolist(), t)) for j, t in enumerate(targets)}

    def run():
        out = svy.Sample(frame, svy.Design(wgt="d")).weighting.rake(controls=controls, tol=1e-12, max_iter=1000)
        return out.data["rk_wgt"].to_numpy()
    return run


# ----------------------------------------------------------------------------- fresh processes
def import_time(root: Path, tries: int = 5) -> float:
    """Best of ``tries`` cumulative ``-X importtime`` figures of ``import rectify`` (seconds)."""
    best = np.inf
    env = {**os.environ, "PYTHONPATH": str(root)}
    for _ in range(tries):
        res = subprocess.run([sys.executable, "-X", "importtime", "-c", "import rectify"], capture_output=True,
                             text=True, cwd="/", env=env, check=True)
        for line in res.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "rectify":
                best = min(best, int(parts[1]) / 1e6)
    return float(best)


MEMORY = """
import sys, json, time, tracemalloc
sys.path.insert(0, {here!r})
import floor
floor.use_code(__import__("pathlib").Path({root!r}))
import numpy as np, rectify
df = floor.ppi_frame({N})[["x1", "x2", "x3", "y", "f"]]
pilot = df.iloc[floor.pilot_rows(len(df), 200)].copy()
warm = df.iloc[:5000]
rectify.ols("y ~ x1 + x2 + x3", warm.iloc[::50], warm, predicted="f")
frame = int(df[["x1", "x2", "x3", "f"]].memory_usage(index=False).sum())
tracemalloc.start()
t = time.perf_counter()
rectify.ols("y ~ x1 + x2 + x3", pilot, df, predicted="f").conf_int()
elapsed = time.perf_counter() - t
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"frame_bytes": frame, "peak_extra_bytes": peak, "seconds": elapsed}}))
"""


def memory(root: Path) -> dict:
    code = MEMORY.format(here=str(HERE), root=str(root), N=N_MEM)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    return json.loads(res.stdout.strip().splitlines()[-1])


def worker(root: Path, reps: int, ordinal_reps: int, out: Path) -> None:
    use_code(root)
    import rectify

    print(f"rectify from {Path(rectify.__file__).parent}", flush=True)
    out.write_text(json.dumps(rectify_rows(reps, ordinal_reps)))


def run_worker(root: Path, args) -> list[dict]:
    out = Path(args.out) / f".floor_{os.getpid()}_{root.name}.json"
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(root), "--reps", str(args.reps),
                    "--ordinal-reps", str(args.ordinal_reps), "--out", str(args.out), "--json", str(out)],
                   check=True, cwd="/")
    rows = json.loads(out.read_text())
    out.unlink()
    return rows


# ----------------------------------------------------------------------------- machine and report
def machine() -> dict:
    info = {"cpu": "unknown", "flags": ""}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and info["cpu"] == "unknown":
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not info["flags"]:
                have = set(line.split(":", 1)[1].split())
                keep = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
                info["flags"] = " ".join(f for f in keep if f in have)
    except OSError:
        pass
    sys.path.append(str(HERE))
    from _provenance import code_version

    info.update({"nproc": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                 "code": code_version(), "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())})
    return info


XX = "floor: X'X and X'yhat (N=1e6, p=4)"
REGRESSIONS = ("mean", "ols", "logit")


def _floors(rows) -> dict:
    def floor_of(task, impl="numpy"):
        vals = [r["median_s"] for r in rows if r["task"] == task and r["impl"] == impl]
        return float(np.median(vals)) if vals else np.nan
    return {"default": floor_of(XX), "one": floor_of(XX, "numpy, 1 BLAS thread"),
            "mean": floor_of("floor: sum and sum of squares of yhat (N=1e6)"), "ordinal": floor_of(ORD_FLOOR)}


def _over_floor(task: str, seconds: float, fl: dict, one: bool = False) -> float:
    """A row's time over its floor (of the same process): the mean against the pass over yhat, the
    regressions against X'X and X'yhat, the ordinal fit against X'X and X'P; NaN for other rows."""
    kind = task.split(" ")[0]
    if kind == "mean":
        return seconds / fl["mean"]
    if kind in ("ols", "logit"):
        return seconds / fl["one" if one else "default"]
    if kind == "ordinal" and not one:
        return seconds / fl["ordinal"]
    return np.nan


PEER_FOR = {"mean": "mean", "ols": "ols", "logit": "logit", "mean [convention=ppi_py]": "mean",
            "ols [convention=ppi_py]": "ols", "logit [convention=ppi_py]": "logit"}
IPFN = "raking: ipfn numpy mode on the cell table"


def build_table(new, olds: dict, peers, imports, mem) -> tuple[list[dict], dict]:
    """One row per rectify task: new and each old code's median, its ratio to the floor of its own
    process, and the speed-up against the peer measured in the same run."""
    floors = {"new": _floors(new), **{k: _floors(rows) for k, rows in olds.items()}}
    peer = {r["task"]: r for r in peers if "median_s" in r}
    ipfn = [r["median_s"] for r in new if r["impl"] == "ipfn"]
    if ipfn:  # timed in the new code's process, before and after the raking rows
        peer[IPFN] = {"impl": "ipfn", "median_s": float(np.median(ipfn))}
    for t in [r["task"] for r in new if r["task"].startswith("raking: ")]:
        PEER_FOR.setdefault(t, IPFN)
    oldm = {k: {r["task"]: r["median_s"] for r in rows if r["impl"] == "rectify"} for k, rows in olds.items()}
    table = []
    for r in new:
        if r["impl"] != "rectify":
            continue
        t = r["task"]
        row = {"task": t, "new_ms": 1e3 * r["median_s"], "new_min_ms": 1e3 * r["min_s"], "reps": r["reps"],
               "new_over_floor": _over_floor(t, r["median_s"], floors["new"]),
               "new_over_floor_1thread": _over_floor(t, r["median_s"], floors["new"], one=True)}
        if t.startswith("mean"):  # the issue's floor for every verb: one pass of X'X and X'yhat
            row["new_over_xx_floor"] = r["median_s"] / floors["new"]["default"]
        for k, m in oldm.items():
            if t in m:
                row[f"old_{k}_ms"] = 1e3 * m[t]
                row[f"old_{k}_over_floor"] = _over_floor(t, m[t], floors[k])
        key = PEER_FOR.get(t)
        if key in peer:
            row["peer"] = peer[key]["impl"]
            row["peer_ms"] = 1e3 * peer[key]["median_s"]
            row["speedup_vs_peer"] = peer[key]["median_s"] / r["median_s"]
        table.append(row)
    for which, root_t in imports.items():
        table.append({"task": "import rectify (best of 5, -X importtime)", "version": which, "ms": 1e3 * root_t})
    for which, m in mem.items():
        table.append({"task": "rectify.ols at N=1e7: peak memory over the frame's arrays", "version": which,
                      "peak_over_frame": (m["frame_bytes"] + m["peak_extra_bytes"]) / m["frame_bytes"],
                      "peak_extra_MB": m["peak_extra_bytes"] / 1e6, "frame_MB": m["frame_bytes"] / 1e6,
                      "ms": 1e3 * m["seconds"]})
    return table, floors


def fmt(v, spec):
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _goals(table, bayes: dict | None) -> list[tuple[str, bool | None]]:
    by = {r["task"]: r for r in table if "version" not in r}
    fresh = {(r["task"].split(" ")[0], r["version"]): r for r in table if "version" in r}

    def ratio(task, key):
        return by.get(task, {}).get(key, np.nan)
    goals = [
        ("mean within 3x of the X'X floor", ratio("mean", "new_over_xx_floor") <= 3),
        ("ols within 3x of the floor", ratio("ols", "new_over_floor") <= 3),
        ("logit within 5x of the floor", ratio("logit", "new_over_floor") <= 5),
        ("ordinal within 5x of its floor (X'X and X'P)", ratio(ORDINAL, "new_over_floor") <= 5),
        ("convention='ppi_py' at least 10x ppi_py",
         min(ratio(f"{v} [convention=ppi_py]", "speedup_vs_peer") for v in REGRESSIONS) >= 10),
        ("raking core faster than ipfn", ratio("raking: rake core on codes (1e6 x 3 x 5, 1e-12)", "speedup_vs_peer") >= 1),
        ("raking from a DataFrame (categorical) no slower than ipfn",
         ratio("raking: calibrate from a DataFrame, categorical columns", "speedup_vs_peer") >= 1),
        ("chain rule core under 30 ms", ratio("chain rule: core on codes (N=1e6)", "new_ms") < 30),
        ("chain rule from a DataFrame under 30 ms", ratio("chain rule: bayes_shares from a DataFrame (N=1e6)", "new_ms") < 30),
        ("import rectify under 0.35 s", fresh[("import", "new")]["ms"] < 350 if ("import", "new") in fresh else None),
        ("rectify.ols at N=1e7 peak at most 2x the frame's arrays",
         fresh[("rectify.ols", "new")]["peak_over_frame"] <= 2 if ("rectify.ols", "new") in fresh else None),
    ]
    if bayes:
        goals.append(("Bayesian refit without a compile (benchmarks/results/bayes_speed.md)", bayes.get("refit_ok")))
    return goals


def to_markdown(table, floors, peers, info, args, olds_info: dict) -> str:
    olds = list(olds_info)
    lines = [
        "# Close to the floor: rectify against one pass over the frame, its peers and its previous code",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}; flags {info['flags']}), Python {info['python']}, "
        f"NumPy {info['numpy']}; code {info['code']}; load average {info['loadavg_start']} at start, "
        f"{info['loadavg_end']} at end (a machine shared with other jobs: every figure is a median of "
        f"{args.reps} repetitions after a warm-up, {args.peer_reps} for ppi_py, {args.ordinal_reps} for ordinal). "
        "Old code, measured in the same run in its own process: "
        + ("; ".join(f"**{k}** = {v}" for k, v in olds_info.items()) or "not measured")
        + ". Generated by `benchmarks/floor.py`.",
        "",
        "Floors (median of the samples taken in each process): X'X and X'yhat at N = 1e6, p = 4: "
        + "; ".join(f"{k} run {fmt(1e3 * f['default'], '.1f')} ms" for k, f in floors.items())
        + f" (new run, one BLAS thread: {fmt(1e3 * floors['new']['one'], '.1f')} ms); sum and sum of squares of "
        f"yhat: {fmt(1e3 * floors['new']['mean'], '.2f')} ms; X'X and X'P for the ordinal fit (N = 1e6, p = 3, "
        f"K = 4): {fmt(1e3 * floors['new']['ordinal'], '.1f')} ms.",
        "",
        "Verbs take a pandas DataFrame (a random pilot of n = 200 frame rows for mean/ols/logit, 300 for ordinal) "
        "and return the tuned PPI++ 95% interval. x floor = median / floor of the same process (the mean against "
        "the pass over yhat, the regressions against X'X and X'yhat, the ordinal fit against X'X and X'P); "
        "speed-up = peer median / rectify median.",
        "",
        "| task | new ms | new x floor | new x floor (1 thread) | "
        + " | ".join(f"{k} ms | {k} x floor" for k in olds)
        + (" | " if olds else "") + "peer | peer ms | new speed-up vs peer |",
        "|---|---:|---:|---:|" + "---:|---:|" * len(olds) + "---|---:|---:|",
    ]
    for r in table:
        if "version" in r:
            continue
        cells = [r["task"], fmt(r["new_ms"], ".1f"), fmt(r.get("new_over_floor"), ".1f"),
                 fmt(r.get("new_over_floor_1thread"), ".1f")]
        for k in olds:
            cells += [fmt(r.get(f"old_{k}_ms"), ".1f"), fmt(r.get(f"old_{k}_over_floor"), ".1f")]
        cells += [r.get("peer", ""), fmt(r.get("peer_ms"), ".1f"), fmt(r.get("speedup_vs_peer"), ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| fresh process | version | ms | peak / frame arrays | peak extra MB | frame MB |",
              "|---|---|---:|---:|---:|---:|"]
    for r in table:
        if "version" in r:
            lines.append(f"| {r['task']} | {r['version']} | {fmt(r.get('ms'), '.1f')} | "
                         f"{fmt(r.get('peak_over_frame'), '.3f')} | {fmt(r.get('peak_extra_MB'), '.1f')} | "
                         f"{fmt(r.get('frame_MB'), '.0f')} |")
    others = [r for r in peers if "median_s" in r and r["impl"] not in ("ppi_py",)]
    if others:
        lines += ["", "Other peers on the raking task (same rows, margins and tolerance): " + "; ".join(
            f"{r['impl']} {1e3 * r['median_s']:.1f} ms (median of {r['reps']})" for r in others) + "."]
    goals = _goals(table, getattr(args, "bayes", None))
    lines += ["", "Goals (issue 17), from this run: "
              + "; ".join(f"{g}: {'met' if f else 'NOT met'}" for g, f in goals if f is not None) + "."]
    notes = [f"{r['impl']}: {r['note']}" for r in peers if "note" in r]
    if notes:
        lines += ["", "Peers not measured: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="rectify against the one-pass floor, its peers and older code.")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--peer-reps", type=int, default=5, help="repetitions for ppi_py (seconds per call)")
    ap.add_argument("--ordinal-reps", type=int, default=5)
    ap.add_argument("--old", action="append", default=[],
                    help="a checkout of older rectify code to time in the same run (repeatable), e.g. "
                         "`git worktree add /tmp/old <commit>`")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--no-memory", action="store_true", help="skip the N = 1e7 memory rows")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(Path(args.worker), args.reps, args.ordinal_reps, Path(args.json))
        return 0
    import pandas as pd

    info = machine()
    print("machine:", info, flush=True)
    roots, olds_info = {"new": ROOT}, {}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for path in args.old:
        root = Path(path).resolve()
        desc = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True).stdout.strip()
        label = f"old {desc.split(' ')[0]}" if desc else f"old {root.name}"
        roots[label] = root
        olds_info[label] = desc[:90] or str(root)
    print("new code:", flush=True)
    new = run_worker(ROOT, args)
    olds = {}
    for label, root in roots.items():
        if label != "new":
            print(f"{label}:", flush=True)
            olds[label] = run_worker(root, args)
    print("peers:", flush=True)
    use_code(ROOT)  # the raking data come from bench_calibration, which imports this checkout's rectify
    peers = peer_rows(args.reps, args.peer_reps)
    imports = {k: import_time(r) for k, r in roots.items()}
    mem = {} if args.no_memory else {k: memory(r) for k, r in roots.items()}
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table, floors = build_table(new, olds, peers, imports, mem)
    out = Path(args.out)
    pd.DataFrame(table).assign(cpu=info["cpu"], flags=info["flags"], load_start=info["loadavg_start"],
                               load_end=info["loadavg_end"]).to_csv(out / "floor.csv", index=False)
    md = to_markdown(table, floors, peers, info, args, olds_info)
    (out / "floor.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
