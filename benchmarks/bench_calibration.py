"""Speed of raking: 1,000,000 rows, 3 margins of 5 categories, unequal design weights, to 1e-12.

Run from the repository root::

    .venv/bin/python benchmarks/bench_calibration.py [--rows 1000000] [--reps 5]

Writes benchmarks/results/calibration_speed.csv (one row per method: median and minimum wall time
over the repetitions, the worst relative margin error reached, the machine). Methods:

- ``rectify.rake (cell table)``: the numeric core, aggregation + IPF on the 125 cells + mapping back;
- ``rectify.calibrate (DataFrame)``: the user-facing call, including factorizing the columns;
- ``rectify.calibrate_weights (row-level Newton raking)``: the generic Newton solver on the
  1e6 x 15 indicator matrix, for comparison;
- ``ipfn numpy mode (cell table)``: the same aggregation and mapping back around ``ipfn``'s numpy
  IPF, when the ``ipfn`` package is importable (it is not a dependency of rectify; put it on
  ``PYTHONPATH`` to include it).

``benchmarks/floor.py`` times the same task beside ``svy`` (PyPI, in the ``bench`` extra) and says why
``balance`` is not measured (it cannot be installed beside pandas 3); FIELD-NOTES.md reports about
1.2 s (balance) and 2.2 s (svy) on this kind of machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rectify.estimators.calibration import calibrate_weights, rake  # noqa: E402
from rectify.weighting import calibrate  # noqa: E402


def make_data(n: int, seed: int = 20261127):
    rng = np.random.default_rng(seed)
    probs = [np.array(p) / np.sum(p) for p in ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [2, 3, 5, 3, 2])]
    codes = [rng.choice(5, size=n, p=p).astype(np.int64) for p in probs]
    d = rng.uniform(1.0, 5.0, n)
    total = 10.0 * n
    targets = [total * np.array(t) / np.sum(t) for t in ([3, 3, 2, 1, 1], [1, 2, 3, 2, 2], [2, 2, 2, 2, 2])]
    return codes, d, targets


def worst_error(codes, w, targets) -> float:
    return max(float(np.max(np.abs(np.bincount(c, w, len(t)) - t) / (1.0 + t))) for c, t in zip(codes, targets))


def run_rake(codes, d, targets):
    return rake(codes, targets, d, tol=1e-12).weights


def run_calibrate_df(df, margins):
    return calibrate(df, margins=margins, design_weights="d", tol=1e-12).weights.to_numpy()


def run_newton(codes, d, targets):
    n = d.size
    X = np.zeros((n, 15))
    for j, c in enumerate(codes):
        X[np.arange(n), 5 * j + c] = 1.0
    return calibrate_weights(X, d, np.concatenate(targets), method="raking", tol=1e-12).weights


def run_ipfn(codes, d, targets):
    from ipfn import ipfn

    flat = np.ravel_multi_index(tuple(codes), (5, 5, 5))
    table = np.bincount(flat, weights=d, minlength=125).reshape(5, 5, 5)
    solver = ipfn.ipfn(table.copy(), [t.copy() for t in targets], [[0], [1], [2]],
                       convergence_rate=1e-13, max_iteration=2000, rate_tolerance=0.0)
    out = solver.iteration()
    out = out[0] if isinstance(out, tuple) else out
    g = (out / np.where(table > 0, table, 1.0)).ravel()
    return d * g[flat]


def timed(fn, reps):
    times, w = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        w = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times)), w


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calibration_speed.csv"))
    args = ap.parse_args(argv)
    codes, d, targets = make_data(args.rows)
    levels = list("abcde")
    df = pd.DataFrame({f"m{j}": pd.Categorical.from_codes(c, levels) for j, c in enumerate(codes)})
    df["d"] = d
    margins = {f"m{j}": dict(zip(levels, t)) for j, t in enumerate(targets)}
    methods = {
        "rectify.rake (cell table)": lambda: run_rake(codes, d, targets),
        "rectify.calibrate (DataFrame)": lambda: run_calibrate_df(df, margins),
        "rectify.calibrate_weights (row-level Newton raking)": lambda: run_newton(codes, d, targets),
    }
    try:
        import ipfn  # noqa: F401

        methods["ipfn numpy mode (cell table)"] = lambda: run_ipfn(codes, d, targets)
    except ImportError:
        print("ipfn not importable: skipped", file=sys.stderr)
    rows = []
    machine = f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    for name, fn in methods.items():
        reps = args.reps if "Newton" not in name else max(1, min(args.reps, 3))
        med, mn, w = timed(fn, reps)
        rows.append({"method": name, "rows": args.rows, "margins": 3, "categories": 5,
                     "reps": reps, "median_s": med, "min_s": mn,
                     "max_rel_margin_error": worst_error(codes, w, targets), "machine": machine})
        print(f"{name:55s} median {med:8.4f} s  min {mn:8.4f} s  err {rows[-1]['max_rel_margin_error']:.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
