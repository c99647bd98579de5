"""Seeded coverage study of rectify's PPI cores (issue 2, "How it is checked: Coverage").

What it simulates
-----------------
For every estimand (mean, option shares of a 4-point Likert item, OLS slope, logistic slope), every
predictor strength (a strong LLM, correlation rho ~ 0.8 between the human answer and the
prediction, and a weak one, rho ~ 0.2) and every pilot size n in {50, 100, 200, 500}, each
repetition draws

* a fresh pilot of n rows (human answer y, LLM prediction yhat, covariate x) and
* a fresh, *independent* population frame of N = 10,000 rows (yhat and x only)

from a fixed superpopulation model, and computes 95% intervals with the methods ``classical``
(pilot only), ``naive`` (LLM answers as truth, for reference: it should under-cover), ``ppi``
(lambda = 1) and ``ppi++`` (tuned lambda), all with rectify's default ``convention="small-sample"``.

The estimand is the **superpopulation parameter** (the mean 3, the shares (0.15, 0.35, 0.30, 0.20),
the OLS slope 0.5, the logistic slope 1.0), known in closed form. Because the pilot and the frame are
drawn separately, the PPI model holds exactly: the pilot is independent of the frame rows, and the
variance of the frame's predictions enters through the ``Var(psi_pop) / N`` term.

The LLM predictions are *biased* (shifted and shrunk) so that ``naive`` is wrong and the
correction matters; the correlation rho of each set-up is computed by Monte Carlo (1e6 draws) and
written to the table.

For the mean the best possible PPI++ width (the variance-optimal lambda with N rows in the frame) is
``sqrt(1 - rho^2 * N / (N + n))`` times the classical width; the table reports this bound and the
ratio of the tuned width to it.

Output: ``benchmarks/results/coverage{tag}.csv`` and ``.md``. Run::

    .venv/bin/python benchmarks/ppi_coverage.py --reps 2000 --shares-file   # the full study
    .venv/bin/python benchmarks/ppi_coverage.py --reps 200 --tag _quick

Randomness: repetition ``r`` of cell (estimand, strength, n) uses
``numpy.random.default_rng([seed, estimand_id, strength_id, n, r])``, so results do not depend on the
number of processes or on how repetitions are split between them.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one BLAS thread per worker: the workers are the parallelism

import numpy as np  # noqa: E402
from scipy.special import expit
from scipy.stats import norm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# as a script, this folder is sys.path[0] and this file would shadow the `coverage` package
sys.path[:] = [q for q in sys.path if Path(q or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:  # run from a checkout without an editable install
    sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # last, for _provenance only

from _provenance import code_version  # noqa: E402

from rectify.errors import ConvergenceError, EstimationError  # noqa: E402
from rectify.estimators.ppi import ppi_logistic, ppi_mean, ppi_ols, ppi_shares  # noqa: E402

ESTIMANDS = ("mean", "shares", "ols", "logistic")
STRENGTHS = ("strong", "weak")
METHODS = ("classical", "naive", "ppi", "ppi++")
PILOT_SIZES = (50, 100, 200, 500)
LEVEL = 0.95

# ----------------------------------------------------------------------------- superpopulation models
SHARES_TRUE = np.array([0.15, 0.35, 0.30, 0.20])
SHARES_CUTS = norm.ppf(np.cumsum(SHARES_TRUE)[:-1])
CATEGORIES = [1, 2, 3, 4]

# strength -> parameters.  mean: exact corr; ols: exact corr (see draw_ols); shares/logistic tuned
# by Monte Carlo to rho ~ 0.8 / ~ 0.2 (the realised value is reported in the table).
PARAMS = {
    "mean": {"strong": {"rho": 0.8}, "weak": {"rho": 0.2}},
    "shares": {"strong": {"a": 0.85}, "weak": {"a": 0.215}},
    "ols": {"strong": {"g": 0.8, "h": np.sqrt(0.45)}, "weak": {"g": 0.1, "h": np.sqrt(1.63)}},
    "logistic": {"strong": {"al": -0.3, "b": 0.8, "g": 1.0, "s": 0.7},
                 "weak": {"al": 0.0, "b": 0.25, "g": 0.1, "s": 1.0}},
}


def draw_mean(rng, m, rho):
    """y = 3 + u; the LLM says 3.3 + 0.8 (rho u + sqrt(1 - rho^2) e): corr(y, yhat) = rho exactly."""
    u, e = rng.normal(size=(2, m))
    return 3.0 + u, 3.3 + 0.8 * (rho * u + np.sqrt(1 - rho**2) * e), None


def draw_shares(rng, m, a):
    """Likert answer y = 1..4 cuts a latent N(0, 1); the LLM sees a noisy signal of the latent and
    returns a (biased: shifted by +0.3) answer distribution over the 4 options."""
    u, e = rng.normal(size=(2, m))
    y = np.digitize(u, SHARES_CUTS) + 1
    v = a * u + np.sqrt(1 - a**2) * e
    s = max(np.sqrt(1 - a**2), 0.2)
    C = norm.cdf((SHARES_CUTS[None, :] - (0.3 + a * v)[:, None]) / s)
    P = np.diff(np.column_stack([np.zeros(m), C, np.ones(m)]), axis=1)
    P = np.clip(P, 0.0, None)
    P /= P.sum(axis=1, keepdims=True)
    return y, P, None


def draw_ols(rng, m, g, h):
    """y = 1 + 0.5 x + eps; the LLM says 0.9 + 0.4 x + g eps + h nu (a biased slope).

    corr(y, yhat) = (0.2 + g) / sqrt(1.25 (0.16 + g^2 + h^2)): 0.8 (strong) and 0.2 (weak).
    """
    x, eps, nu = rng.normal(size=(3, m))
    X = np.column_stack([np.ones(m), x])
    return 1.0 + 0.5 * x + eps, 0.9 + 0.4 * x + g * eps + h * nu, X


def draw_logistic(rng, m, al, b, g, s):
    """y = 1{-0.5 + x + eps > 0} with logistic eps (so P(y=1|x) = expit(-0.5 + x): slope 1);
    the LLM returns the probability expit(al + b x + g eps + s nu) (soft labels)."""
    x, nu = rng.normal(size=(2, m))
    eps = rng.logistic(size=m)
    y = (-0.5 + x + eps > 0).astype(float)
    X = np.column_stack([np.ones(m), x])
    return y, expit(al + b * x + g * eps + s * nu), X


DRAW = {"mean": draw_mean, "shares": draw_shares, "ols": draw_ols, "logistic": draw_logistic}
TRUTH = {"mean": np.array([3.0]), "shares": SHARES_TRUE, "ols": np.array([0.5]), "logistic": np.array([1.0])}
TERMS = {"mean": ["mean"], "shares": [f"share[{c}]" for c in CATEGORIES], "ols": ["slope"],
         "logistic": ["slope"]}


@lru_cache(maxsize=None)
def realised_rho(estimand: str, strength: str, m: int = 1_000_000) -> float:
    """Monte-Carlo correlation between the human answer and the LLM's point prediction.

    For shares the point prediction is the expected score of the answer distribution.
    """
    rng = np.random.default_rng(12345)
    y, f, _ = DRAW[estimand](rng, m, **PARAMS[estimand][strength])
    if estimand == "shares":
        f = f @ np.arange(1, 5)
    return float(np.corrcoef(y, f)[0, 1])


# the study's target is the superpopulation parameter with a frame drawn separately from the pilot;
# code that knows estimands (issue 13) is told so (its default is the finite frame)
TARGET = {"estimand": "superpopulation"} if "estimand" in inspect.signature(ppi_mean).parameters else {}


def fit(estimand, method, y, f, X, fp, Xp):
    """One rectify call; returns the Result."""
    if estimand == "mean":
        return ppi_mean(y, f, fp, method, **TARGET)
    if estimand == "shares":
        return ppi_shares(y, f, fp, method, categories=CATEGORIES, **TARGET)
    if estimand == "ols":
        return ppi_ols(X, y, f, Xp, fp, method, **TARGET)
    return ppi_logistic(X, y, f, Xp, fp, method, **TARGET)


# ----------------------------------------------------------------------------- one block of repetitions
@dataclass
class Block:
    estimand: str
    strength: str
    n: int
    N: int
    start: int
    stop: int
    seed: int
    methods: tuple = METHODS


def run_block(b: Block) -> dict:
    """Run repetitions ``b.start .. b.stop - 1`` of one cell; raw per-repetition arrays out."""
    e_id, s_id = ESTIMANDS.index(b.estimand), STRENGTHS.index(b.strength)
    params = PARAMS[b.estimand][b.strength]
    truth = TRUTH[b.estimand]
    sel = slice(1, 2) if b.estimand in ("ols", "logistic") else slice(None)  # report the slope
    R, d = b.stop - b.start, truth.shape[0]
    out = {m: {"est": np.full((R, d), np.nan), "low": np.full((R, d), np.nan),
               "high": np.full((R, d), np.nan), "lam": np.full(R, np.nan), "failed": 0}
           for m in b.methods}
    for i, r in enumerate(range(b.start, b.stop)):
        rng = np.random.default_rng([b.seed, e_id, s_id, b.n, r])
        y, f, X = DRAW[b.estimand](rng, b.n, **params)
        _, fp, Xp = DRAW[b.estimand](rng, b.N, **params)  # an independent frame: y unseen
        for m in b.methods:
            try:
                res = fit(b.estimand, m, y, f, X, fp, Xp)
            except (EstimationError, ConvergenceError):
                out[m]["failed"] += 1
                continue
            lo, hi = res.conf_int(LEVEL)
            o = out[m]
            o["est"][i], o["low"][i], o["high"][i] = res.estimate[sel], lo[sel], hi[sel]
            lam = res.tuning.get("lambda")
            if lam is not None:
                o["lam"][i] = float(np.mean(lam))
    return {"key": (b.estimand, b.strength, b.n), "out": out}


def merge(parts: list[dict]) -> dict:
    res: dict = {}
    for p in parts:
        cell = res.setdefault(p["key"], {})
        for m, o in p["out"].items():
            if m not in cell:
                cell[m] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in o.items()}
            else:
                c = cell[m]
                for k in ("est", "low", "high", "lam"):
                    c[k] = np.concatenate([c[k], o[k]])
                c["failed"] += o["failed"]
    return res


# ----------------------------------------------------------------------------- summaries and checks
def mean_width_bound(rho: float, n: int, N: int) -> float:
    """Width of the variance-optimal PPI++ mean interval relative to classical (large-sample)."""
    return float(np.sqrt(1 - rho**2 * N / (N + n)))


def summarise(cells: dict, N: int, reps: int):
    import pandas as pd

    rows = []
    for (est, strength, n), cell in sorted(cells.items(), key=lambda kv: (ESTIMANDS.index(kv[0][0]),
                                                                          STRENGTHS.index(kv[0][1]),
                                                                          kv[0][2])):
        truth = TRUTH[est]
        rho = realised_rho(est, strength)
        cw = None
        for m in METHODS:
            if m not in cell:
                continue
            o = cell[m]
            ok = ~np.isnan(o["est"][:, 0])
            width = o["high"][ok] - o["low"][ok]
            covered = (o["low"][ok] <= truth) & (truth <= o["high"][ok])
            err = o["est"][ok] - truth
            if m == "classical":
                cw = width.mean(axis=0)
            for j, term in enumerate(TERMS[est]):
                R = int(ok.sum())
                cov = float(covered[:, j].mean())
                row = {
                    "estimand": est, "predictor": strength, "rho": round(rho, 3), "n": n, "N": N,
                    "method": m, "term": term, "reps": R, "failed": o["failed"],
                    "coverage": cov, "coverage_mcse": float(np.sqrt(cov * (1 - cov) / R)),
                    "mean_width": float(width[:, j].mean()),
                    "rel_width": float(width[:, j].mean() / cw[j]) if cw is not None else np.nan,
                    "bias": float(err[:, j].mean()),
                    "rmse": float(np.sqrt((err[:, j] ** 2).mean())),
                    "lambda_mean": float(np.nanmean(o["lam"][ok])) if m in ("ppi", "ppi++") else np.nan,
                    "lambda_sd": float(np.nanstd(o["lam"][ok])) if m == "ppi++" else np.nan,
                    "bound_rel_width": np.nan, "width_over_bound": np.nan,
                }
                if est == "mean" and m == "ppi++":
                    bnd = mean_width_bound(PARAMS["mean"][strength]["rho"], n, N)
                    row["bound_rel_width"] = bnd
                    row["width_over_bound"] = row["rel_width"] / bnd
                row["checks"] = check_row(row)
                rows.append(row)
    return pd.DataFrame(rows)


def check_row(row: dict) -> str:
    """The issue's acceptance checks for one row; '' when none applies."""
    if row["method"] == "naive":
        return "reference"
    fails = []
    if not 0.935 <= row["coverage"] <= 0.965:
        fails.append("coverage")
    if row["method"] == "ppi++" and row["rel_width"] > 1.0:
        fails.append("wider than classical")
    if row["method"] == "ppi++" and row["estimand"] == "mean" and abs(row["width_over_bound"] - 1) > 0.05:
        fails.append("not within 5% of bound")
    return "ok" if not fails else "FAIL: " + ", ".join(fails)


def to_markdown(df, reps: int, seed: int, N: int, elapsed: float, procs: int) -> str:
    lines = [
        f"# Coverage of 95% intervals (rectify, convention='small-sample')",
        "",
        f"{reps} repetitions per cell (requested), seed {seed}, population frame N = {N:,}, pilot and frame "
        f"drawn independently from a fixed superpopulation; estimand = superpopulation parameter. "
        f"Run time {elapsed:.0f} s with {procs} process(es). Code: {code_version()}. "
        f"Generated by `benchmarks/ppi_coverage.py`.",
        "",
        "Columns: coverage (Monte-Carlo s.e. in brackets); width = mean interval width; rel = mean width / "
        "mean classical width; lambda = mean tuned lambda (sd); bound = sqrt(1 - rho^2 N/(N+n)) for the mean; "
        "checks: coverage in [93.5%, 96.5%], PPI++ never wider than classical, mean PPI++ width within 5% "
        "of the bound (naive is a reference and is expected to fail).",
        "",
        "| estimand | predictor (rho) | n | method | term | coverage | width | rel | bias | lambda | bound | checks |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in df.iterrows():
        lam = "" if np.isnan(r["lambda_mean"]) else (
            f"{r['lambda_mean']:.3f}" + ("" if np.isnan(r["lambda_sd"]) else f" ({r['lambda_sd']:.3f})"))
        bnd = "" if np.isnan(r["bound_rel_width"]) else f"{r['bound_rel_width']:.3f}"
        fail = f" [{r['failed']} failed]" if r["failed"] else ""
        lines.append(
            f"| {r['estimand']} | {r['predictor']} ({r['rho']:.2f}) | {r['n']} | {r['method']} | {r['term']} | "
            f"{100 * r['coverage']:.1f}% ({100 * r['coverage_mcse']:.1f}){fail} | {r['mean_width']:.4f} | "
            f"{r['rel_width']:.3f} | {r['bias']:+.4f} | {lam} | {bnd} | {r['checks']} |"
        )
    checked = df[df["method"] != "naive"]
    nfail = int(checked["checks"].str.startswith("FAIL").sum())
    lines += ["", f"Checks: {len(checked) - nfail} of {len(checked)} non-naive rows pass; {nfail} fail."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- driver
def run_study(reps: int = 2000, seed: int = 20261127, N: int = 10_000, pilot_sizes=PILOT_SIZES,
              estimands=ESTIMANDS, strengths=STRENGTHS, procs: int = 2, block_size: int = 250,
              methods=METHODS, progress: bool = True):
    """Run the study and return (table, raw cells)."""
    blocks = [Block(e, s, n, N, a, min(a + block_size, reps), seed, tuple(methods))
              for e in estimands for s in strengths for n in pilot_sizes
              for a in range(0, reps, block_size)]
    parts = []
    t0 = time.perf_counter()
    procs = max(1, min(2, procs))
    if procs == 1:
        it = map(run_block, blocks)
        pool = None
    else:
        pool = Pool(procs)
        it = pool.imap_unordered(run_block, blocks)
    try:
        for k, p in enumerate(it, 1):
            parts.append(p)
            if progress:
                e, s, n = p["key"]
                print(f"[{time.perf_counter() - t0:7.1f} s] block {k}/{len(blocks)} done ({e}, {s}, n={n})",
                      flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    cells = merge(parts)
    return summarise(cells, N, reps), cells


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="repetitions per cell (default 2000)")
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--N", type=int, default=10_000, help="population frame size")
    ap.add_argument("--n", type=int, nargs="+", default=list(PILOT_SIZES), help="pilot sizes")
    ap.add_argument("--estimands", nargs="+", default=list(ESTIMANDS), choices=ESTIMANDS)
    ap.add_argument("--procs", type=int, default=2, help="worker processes (at most 2)")
    ap.add_argument("--block-size", type=int, default=250)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tag", default="", help="suffix of the output files, e.g. _r500")
    ap.add_argument("--shares-file", action="store_true",
                    help="also write coverageshares{tag}.csv/.md: the shares rows of this run")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    df, _ = run_study(args.reps, args.seed, args.N, tuple(args.n), tuple(args.estimands),
                      procs=args.procs, block_size=args.block_size)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"coverage{args.tag}.csv", index=False)
    md = to_markdown(df, args.reps, args.seed, args.N, elapsed, min(2, args.procs))
    (out / f"coverage{args.tag}.md").write_text(md)
    print(md)
    print(f"wrote {out / f'coverage{args.tag}.csv'} and .md in {elapsed:.0f} s")
    if args.shares_file and "shares" in args.estimands and len(args.estimands) > 1:
        sh = df[df["estimand"] == "shares"]
        sh.to_csv(out / f"coverageshares{args.tag}.csv", index=False)
        (out / f"coverageshares{args.tag}.md").write_text(
            to_markdown(sh, args.reps, args.seed, args.N, elapsed, min(2, args.procs)))
        print(f"wrote {out / f'coverageshares{args.tag}.csv'} and .md (the shares rows of the same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
