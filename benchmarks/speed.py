"""Speed of PPI++ intervals: rectify against ppi_py 0.2.3 (issue 2, "How it is checked: Speed").

Times tuned (PPI++) 95% intervals for the mean, OLS and logistic regression at a pilot of n = 200 and
population frames of N in {1e4, 1e5, 1e6}, for

* ``rectify``: ``ppi_mean / ppi_ols / ppi_logistic(..., method="ppi++")`` and ``conf_int(0.95)``
  with the default ``convention="small-sample"`` (one-step PPI++ for logistic regression);
* ``rectify[ppi_py]``: the same with ``convention="ppi_py"`` (reproduces ppi_py's numbers, including
  its joint-loss logistic estimate and clipped lambda);
* ``ppi_py``: ``ppi_mean_ci / ppi_ols_ci / ppi_logistic_ci(..., alpha=0.05)`` (lambda tuned).

Every function is called once before timing (ppi_py compiles with numba on first use); the table
reports the median (and minimum) of ``--reps`` repetitions. Separately, "first call in a fresh
process" runs a new Python process that imports the package and makes one call at N = 1e4; the time
is measured inside that process from just before the package import to just after the call (numpy
and the data are ready before the clock starts), and the whole process wall time is reported too.

The design has an intercept and ``--p - 1`` standard-normal covariates (default p = 4).

Output: ``benchmarks/results/speed{tag}.csv`` and ``.md``. Run::

    .venv/bin/python benchmarks/speed.py              # 5 repetitions
    .venv/bin/python benchmarks/speed.py --profile    # also cProfile rectify at N = 1e6
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# benchmarks/ppi_coverage.py would shadow the `coverage` package (which numba imports): keep this folder
# off the import path
sys.path[:] = [q for q in sys.path if Path(q or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.append(str(HERE))  # last, for _provenance only

from _provenance import code_version  # noqa: E402

N_PILOT = 200
SIZES = (10_000, 100_000, 1_000_000)
ESTIMANDS = ("mean", "ols", "logistic")


# ----------------------------------------------------------------------------- data
def make_data(estimand: str, n: int, N: int, p: int, seed: int = 0):
    """Pilot (X, y, f) and frame (Xp, fp) from a model with a good, biased predictor."""
    rng = np.random.default_rng([seed, ESTIMANDS.index(estimand), N])

    def draw(m):
        X = np.column_stack([np.ones(m), rng.normal(size=(m, p - 1))])
        beta = np.linspace(0.5, -0.5, p)
        if estimand == "logistic":
            eta = X @ beta + rng.logistic(size=m)
            y = (eta > 0).astype(float)
            f = 1 / (1 + np.exp(-(0.8 * eta + 0.2 + rng.normal(size=m))))
        else:
            y = X @ beta + rng.normal(size=m)
            f = 0.9 * y + 0.2 + 0.6 * rng.normal(size=m)
        return X, y, f

    X, y, f = draw(n)
    Xp, _, fp = draw(N)
    return X, y, f, Xp, fp


# ----------------------------------------------------------------------------- callables
def rectify_call(estimand: str, convention: str = "small-sample"):
    from rectify.estimators.ppi import ppi_logistic, ppi_mean, ppi_ols

    def run(X, y, f, Xp, fp):
        if estimand == "mean":
            r = ppi_mean(y, f, fp, "ppi++", convention=convention)
        elif estimand == "ols":
            r = ppi_ols(X, y, f, Xp, fp, "ppi++", convention=convention)
        else:
            r = ppi_logistic(X, y, f, Xp, fp, "ppi++", convention=convention)
        return r.conf_int(0.95)

    return run


def ppi_py_call(estimand: str):
    from ppi_py import ppi_logistic_ci, ppi_mean_ci, ppi_ols_ci

    def run(X, y, f, Xp, fp):
        if estimand == "mean":
            return ppi_mean_ci(y, f, fp, alpha=0.05)
        if estimand == "ols":
            return ppi_ols_ci(X, y, f, Xp, fp, alpha=0.05)
        return ppi_logistic_ci(X, y, f, Xp, fp, alpha=0.05)

    return run


IMPLS = {
    "rectify": lambda e: rectify_call(e, "small-sample"),
    "rectify[ppi_py]": lambda e: rectify_call(e, "ppi_py"),
    "ppi_py": ppi_py_call,
}


def time_call(fn, args, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


# ----------------------------------------------------------------------------- fresh process
FRESH = textwrap.dedent(
    """
    import sys, time, json, importlib.util
    sys.path.insert(0, {root!r})
    import numpy as np
    spec = importlib.util.spec_from_file_location("rectify_bench_speed", {bench!r})
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    make_data = mod.make_data
    args = make_data({estimand!r}, {n}, {N}, {p})
    t0 = time.perf_counter()
    if {impl!r} == "ppi_py":
        from ppi_py import ppi_ols_ci, ppi_logistic_ci
        fn = ppi_ols_ci if {estimand!r} == "ols" else ppi_logistic_ci
        fn(*args, alpha=0.05)
    else:
        from rectify.estimators.ppi import ppi_ols, ppi_logistic
        fn = ppi_ols if {estimand!r} == "ols" else ppi_logistic
        fn(*args, method="ppi++").conf_int(0.95)
    print(json.dumps({{"import_and_call_s": time.perf_counter() - t0}}))
    """
)


def fresh_process(impl: str, estimand: str, N: int, p: int) -> tuple[float, float]:
    code = FRESH.format(root=str(ROOT), bench=str(Path(__file__).resolve()), estimand=estimand, n=N_PILOT,
                        N=N, p=p, impl=impl)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    import json

    return json.loads(res.stdout.strip().splitlines()[-1])["import_and_call_s"], wall


# ----------------------------------------------------------------------------- machine
def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ppi_py  # noqa: F401
    from importlib.metadata import version

    return {
        "code": code_version(),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ppi_py": version("ppi-python"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def profile_rectify(estimand: str, N: int, p: int, top: int = 15) -> str:
    args = make_data(estimand, N_PILOT, N, p)
    fn = rectify_call(estimand)
    fn(*args)
    pr = cProfile.Profile()
    pr.enable()
    fn(*args)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(top)
    return s.getvalue()


# ----------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time PPI++ intervals: rectify vs ppi_py.")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per cell (median reported)")
    ap.add_argument("--fresh-reps", type=int, default=3, help="fresh processes per first-call cell (rectify)")
    ap.add_argument("--fresh-reps-ppi-py", type=int, default=1,
                    help="fresh processes per first-call cell for ppi_py (each compiles with numba: slow)")
    ap.add_argument("--p", type=int, default=4, help="regression coefficients incl. intercept")
    ap.add_argument("--N", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--profile", action="store_true", help="cProfile rectify's tuned OLS/logistic at the largest N")
    ap.add_argument("--rerender", metavar="TAG", help="rewrite results/speed{TAG}.md from its CSV (no timing)")
    args = ap.parse_args(argv)
    if args.rerender is not None:
        out = Path(args.out)
        rerender(out / f"speed{args.rerender}.csv", out / f"speed{args.rerender}.md")
        return 0
    import pandas as pd

    info = machine()
    print("machine:", info, flush=True)
    rows = []
    for N in args.N:
        for est in ESTIMANDS:
            data = make_data(est, N_PILOT, N, args.p)
            ref = None
            for impl, make in IMPLS.items():
                fn = make(est)
                ci = fn(*data)  # warm-up (numba compile for ppi_py)
                ts = time_call(fn, data, args.reps)
                low, high = (np.atleast_1d(np.asarray(c, float)) for c in ci)
                if impl == "ppi_py":
                    ref = (low, high)
                rows.append({"estimand": est, "n": N_PILOT, "N": N, "p": 1 if est == "mean" else args.p,
                             "impl": impl, "reps": args.reps, "median_s": float(np.median(ts)),
                             "min_s": float(np.min(ts)), "ci_low": low, "ci_high": high})
                print(f"N={N:>9,} {est:9s} {impl:16s} median {np.median(ts):.4f} s  (min {np.min(ts):.4f})",
                      flush=True)
            for r in rows[-len(IMPLS):]:
                r["speedup_vs_ppi_py"] = rows[-1]["median_s"] / r["median_s"]
                r["max_abs_ci_diff_vs_ppi_py"] = float(max(np.max(np.abs(r.pop("ci_low") - ref[0])),
                                                           np.max(np.abs(r.pop("ci_high") - ref[1]))))
    fresh = []
    for est in ("ols", "logistic"):
        for impl in ("rectify", "ppi_py"):
            k = args.fresh_reps if impl == "rectify" else args.fresh_reps_ppi_py
            vals = [fresh_process(impl, est, 10_000, args.p) for _ in range(k)]
            inner = float(np.median([v[0] for v in vals]))
            wall = float(np.median([v[1] for v in vals]))
            fresh.append({"estimand": est, "n": N_PILOT, "N": 10_000, "p": args.p, "impl": impl,
                          "reps": k, "first_call_import_and_call_s": inner,
                          "first_call_process_wall_s": wall})
            print(f"fresh process {est:9s} {impl:8s} import+call {inner:.3f} s, process {wall:.3f} s", flush=True)
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    df = pd.DataFrame(rows)
    fdf = pd.DataFrame(fresh)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.concat([df.assign(kind="warm"), fdf.assign(kind="first_call")], ignore_index=True).to_csv(
        out / f"speed{args.tag}.csv", index=False)
    md = to_markdown(df, fdf, info, args)
    prof = ""
    if args.profile:
        prof = "\n".join(f"### cProfile: rectify tuned {e}, N = {max(args.N):,}\n\n```\n"
                         f"{profile_rectify(e, max(args.N), args.p)}```\n" for e in ("ols", "logistic"))
        md += "\n" + prof
    (out / f"speed{args.tag}.md").write_text(md)
    print(md)
    return 0


def _wide(df):
    """One row per (estimand, N): ppi_py, rectify with ppi_py's estimator, rectify's default."""
    rows = []
    for (est, N), g in df.groupby(["estimand", "N"], sort=False):
        by = {r["impl"]: r for _, r in g.iterrows()}
        ref, same, dflt = by["ppi_py"], by["rectify[ppi_py]"], by["rectify"]
        rows.append({"estimand": est, "N": N, "ppi_py_s": ref["median_s"], "same_s": same["median_s"],
                     "same_x": ref["median_s"] / same["median_s"], "same_diff": same["max_abs_ci_diff_vs_ppi_py"],
                     "default_s": dflt["median_s"], "default_x": ref["median_s"] / dflt["median_s"],
                     "default_diff": dflt["max_abs_ci_diff_vs_ppi_py"]})
    return rows


def to_markdown(df, fdf, info, args, header: str | None = None) -> str:
    """The results table: like-for-like speed-up (ppi_py's estimator in rectify) beside the default's."""
    reps = int(df["reps"].iloc[0])
    lines = [
        "# Speed of tuned PPI++ 95% intervals: rectify vs ppi_py",
        "",
        header or (
            f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, NumPy {info['numpy']}, "
            f"ppi_py {info['ppi_py']}; code {info['code']}; load average {info['loadavg']} at start, "
            f"{info['loadavg_end']} at end (a shared machine: timings are noisy; the ratios compare calls "
            f"timed in the same run). Pilot n = {N_PILOT}, p = {args.p} coefficients (intercept + {args.p - 1} "
            f"covariates) for the regressions; median of {reps} timed repetitions after one warm-up call. "
            f"Generated by `benchmarks/speed.py`."),
        "",
        "**Like for like** = rectify with `convention='ppi_py'`: the same estimator and interval as ppi_py "
        "(clipped lambda, normal interval, joint-loss logistic estimate; the endpoints agree to the `diff` "
        "shown). **Default** = rectify's `convention='small-sample'`: a different estimator and interval "
        "(one-step PPI++ for logistic regression, unclipped lambda, HC3 and Student-t intervals), so "
        "its speed-up is not a like-for-like comparison; its intervals differ from ppi_py's by `diff`. "
        "Speed-up = ppi_py median / rectify median; diff = max |interval endpoint - ppi_py's|.",
        "",
        "| estimand | N | ppi_py s | like for like s | like-for-like speed-up | diff | default s | default speed-up | default diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    wide = _wide(df)
    for r in wide:
        lines.append(f"| {r['estimand']} | {r['N']:,} | {r['ppi_py_s']:.4f} | {r['same_s']:.4f} | {r['same_x']:.1f}x | "
                     f"{r['same_diff']:.2g} | {r['default_s']:.4f} | {r['default_x']:.1f}x | {r['default_diff']:.2g} |")
    if fdf is not None and len(fdf):
        lines += [
            "",
            "## First call in a fresh process (N = 10,000; rectify's default)",
            "",
            "import + one tuned call, timed inside the process (numpy loaded and data ready before the clock), "
            "and the whole process's wall time; median over the processes shown.",
            "",
            "| estimand | implementation | processes | import + first call s | process wall s |",
            "|---|---|---:|---:|---:|",
        ]
        for _, r in fdf.iterrows():
            lines.append(f"| {r['estimand']} | {r['impl']} | {int(r['reps'])} | {r['first_call_import_and_call_s']:.3f} | "
                         f"{r['first_call_process_wall_s']:.3f} |")
    big = [r for r in wide if r["N"] == df["N"].max() and r["estimand"] in ("ols", "logistic")]
    like = ", ".join(f"{r['estimand']} {r['same_x']:.1f}x" for r in big)
    dflt = ", ".join(f"{r['estimand']} {r['default_x']:.1f}x" for r in big)
    met = all(r["same_x"] >= 10 for r in big)
    lines += ["", f"Issue 2's goal, >= 10x faster for tuned OLS and logistic at N = {df['N'].max():,}: like for like "
              f"(ppi_py's estimator) {like}: {'met' if met else 'NOT met'}; with rectify's default estimator {dflt} "
              f"(a different estimator: not the like-for-like figure)."]
    if fdf is not None and len(fdf):
        first = fdf[fdf["impl"] == "rectify"]
        ok = bool((first["first_call_import_and_call_s"] < 1).all())
        lines.append(f"First call in a fresh process < 1 s: {'met' if ok else 'NOT met'} ("
                     + ", ".join(f"{e} {s:.2f} s" for e, s in zip(first["estimand"], first["first_call_import_and_call_s"]))
                     + ").")
    return "\n".join(lines) + "\n"


def rerender(csv: Path, md: Path) -> None:
    """Rewrite ``md`` from its CSV, keeping the machine paragraph of the run that made it."""
    import pandas as pd

    raw = pd.read_csv(csv)
    old = md.read_text().split("\n\n")
    header = next(b for b in old if b.startswith("Machine:"))
    warm = raw[raw["kind"] == "warm"]
    fresh = raw[raw["kind"] == "first_call"]

    class A:
        p = int(warm.loc[warm["estimand"] != "mean", "p"].iloc[0])
    md.write_text(to_markdown(warm, fresh, {}, A, header=header))


if __name__ == "__main__":
    sys.exit(main())
