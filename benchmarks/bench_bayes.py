"""Seeded study of the Bayesian correctors against classical and PPI++ (issue 4).

The setting (SYNTHETIC data with planted truth)
-----------------------------------------------
* **Population**: one fixed finite population of N = 20,000 people in 20 demographic cells of unequal
  size. Each person has an LLM answer ``a`` on a 5-point Likert item (its location shifts by cell)
  and a human answer ``y`` drawn from a cumulative-logit model
  ``eta = b_h * (a - 2) + u_h`` with cut points (-2, -0.7, 0.7, 2): the LLM's fidelity ``b_h`` and
  bias ``u_h`` vary by cell. Cell 0 is the **worst cell**: fidelity 0.2 (the LLM answer barely
  matters there) and bias -1 (people answer far lower than the LLM says).
* **Pilots**: n in {50, 100, 300}, drawn at random (simple random sample) or by quota (n/20 per
  cell, so small cells are over-sampled; estimators then use the cell weights N_h / n_h).
* **Estimands**: the finite-population mean score (1..5) overall and in the worst cell.
* **Methods**, each with its own 95% interval:

  - ``classical``: the pilot mean (weighted under quota), Student t;
  - ``ppi++``: ``rectify.estimators.ppi.ppi_mean`` with the LLM answer's score as prediction
    (weighted under quota); in the worst cell, on that cell's pilot and population rows;
  - ``chain``: the conjugate chain rule (:mod:`rectify.estimators.bayes_chain`); overall it is
    unstratified under random pilots and stratified by cell under quota pilots (the quota pilot's
    ``P(y | a)`` is not the population's otherwise); in the worst cell, the chain rule on that cell;
  - ``hier``: the hierarchical calibration model (:mod:`rectify.estimators.bayes_hier`), varying
    intercepts and slopes by cell, post-stratified over the (cell x LLM answer) table. One compiled
    model is reused across repetitions (``pm.Data``).

Metrics per (n, design, method, target): coverage of the 95% interval, mean width, bias and RMSE of
the point estimate over the repetitions, plus the number of failed fits (no interval).

Run the full study as two processes, one per design (about 25 minutes on 2 cores with nutpie)::

    python benchmarks/bench_bayes.py --designs random --tag random --seed-offset 1 --n 300 100 50 &
    python benchmarks/bench_bayes.py --designs quota --tag quota --seed-offset 2 --n 300 100 50
    python benchmarks/bench_bayes.py --markdown

``--hier-reps`` sets how many of the repetitions also fit the hierarchical model (default all 200);
2 chains x (500 + 500) draws per fit. Results go to ``benchmarks/results/bayes_study_TAG.csv``
(summary), ``bayes_study_raw_TAG.csv.gz`` (per repetition and target), ``bayes_timing_TAG.csv``
(compile and sampling seconds, R-hat, ESS, divergences per fit) and ``bayes_study.md``. Every cell
is a target (``cell_h``), summarised as the average over cells and the worst cell per metric.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without an editable install

SEED = 20261127
CUT = np.array([-2.0, -0.7, 0.7, 2.0])
G, K, N = 20, 5, 20_000


def make_population(seed: int = SEED) -> dict:
    """The fixed synthetic population (see the module notes)."""
    from rectify.estimators.bayes_hier import cumulative_logit_probs

    rng = np.random.default_rng(seed)
    size = rng.gamma(4.0, 1.0, G)
    cell = rng.choice(G, N, p=size / size.sum())
    b = np.clip(1.0 + rng.normal(0.0, 0.35, G), 0.3, None)
    u = rng.normal(0.0, 0.5, G)
    b[0], u[0] = 0.2, -1.0  # the worst cell
    loc = rng.normal(0.0, 0.6, G)
    a = np.clip(np.round(2.0 + loc[cell] + rng.normal(0.0, 1.2, N)), 0, K - 1).astype(int)
    eta = b[cell] * (a - 2.0) + u[cell]
    probs = cumulative_logit_probs(eta[None, :], CUT[None, :])[0]
    y = (rng.random(N)[:, None] > probs.cumsum(axis=1)).sum(axis=1).clip(0, K - 1)
    truth_cell = np.array([(y[cell == h] + 1).mean() for h in range(G)])
    return {"cell": cell, "a": a, "y": y, "truth": float((y + 1).mean()), "truth_cell": truth_cell,
            "truth_worst": float(truth_cell[0]), "b": b, "u": u}


def draw_pilot(pop: dict, n: int, design: str, rng: np.random.Generator) -> np.ndarray:
    if design == "random":
        return rng.choice(N, n, replace=False)
    per = np.full(G, n // G)
    per[: n - per.sum()] += 1
    idx = [rng.choice(np.flatnonzero(pop["cell"] == h), per[h], replace=False) for h in range(G)]
    return np.concatenate(idx)


def _interval(r) -> tuple[float, float, float]:
    lo, hi = r.conf_int()  # the first term: the overall mean (strata add per-stratum terms after it)
    return float(r.estimate[0]), float(lo[0]), float(hi[0])


def classical_ppi(pop, idx, design, method, cell=None):
    from rectify.estimators.ppi import ppi_mean

    y, a, c = pop["y"][idx] + 1.0, pop["a"][idx] + 1.0, pop["cell"][idx]
    ap, cp = pop["a"] + 1.0, pop["cell"]
    w = None
    if design == "quota":
        n_h = np.bincount(c, minlength=G)
        N_h = np.bincount(cp, minlength=G)
        w = (N_h / np.maximum(n_h, 1))[c]
    if cell is not None:
        m, mp = c == cell, cp == cell
        if m.sum() < 2:
            return np.nan, np.nan, np.nan
        y, a, ap, w = y[m], a[m], ap[mp], None  # equal weights within a cell
    from rectify.errors import InputError

    try:
        if method == "classical":
            r = ppi_mean(y, method="classical", weights=w)
        else:
            r = ppi_mean(y, a, ap, method="ppi++", weights=w)
    except InputError:  # too few pilot rows (e.g. in the worst cell): counted as a failure
        return np.nan, np.nan, np.nan
    return _interval(r)


def chain(pop, idx, design, cell=None, rng=None):
    from rectify.estimators.bayes_chain import chain_rule

    y, a, c = pop["y"][idx], pop["a"][idx], pop["cell"][idx]
    kw = dict(n_options=K, estimand="mean", n_draws=2000, random_state=rng)
    if cell is not None:
        m = c == cell
        if m.sum() == 0:
            return np.nan, np.nan, np.nan
        return _interval(chain_rule(y[m], a[m], pop["a"][pop["cell"] == cell], **kw))
    if design == "quota":
        return _interval(chain_rule(y, a, pop["a"], strata=c, strata_pop=pop["cell"], **kw))
    return _interval(chain_rule(y, a, pop["a"], **kw))


def hier(pop, idx, model, seed):
    """Population and per-cell (mean, low, high) from one hierarchical fit, plus timings."""
    model.random_state = seed
    model.fit(pop["y"][idx], pop["a"][idx], groups={"cell": pop["cell"][idx]},
              population_groups={"cell": pop["cell"]})
    r = model.poststratify(pop["a"], groups_pop={"cell": pop["cell"]}, estimand="mean")
    lo, hi = r.conf_int()
    names = list(r.groups)
    cells = {}
    for h in range(G):
        j = names.index(f"cell={h}")
        cells[h] = (float(r.estimate[j]), float(lo[j]), float(hi[j]))
    d = model.diagnostics_
    return ((float(r.estimate[0]), float(lo[0]), float(hi[0])), cells,
            {"compile_s": d["compile_s"], "sample_s": d["sample_s"], "r_hat_max": d["r_hat_max"],
             "ess_bulk_min": d["ess_bulk_min"], "divergences": d["divergences"],
             "reused": d["reused_compiled_model"], "sampler": d["sampler"]})


def _agg(g: pd.DataFrame) -> pd.Series:
    ok = g.dropna(subset=["low", "high"])
    err = ok["estimate"] - ok["truth"]
    return pd.Series({
        "reps": len(g),
        "failures": len(g) - len(ok),
        "coverage": float(((ok["low"] <= ok["truth"]) & (ok["truth"] <= ok["high"])).mean()) if len(ok) else np.nan,
        "mean_width": float((ok["high"] - ok["low"]).mean()) if len(ok) else np.nan,
        "bias": float(err.mean()) if len(ok) else np.nan,
        "rmse": float(np.sqrt((err**2).mean())) if len(ok) else np.nan,
    })


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    """Metrics per (n, design, target, method); targets ``population``, ``worst_cell`` (the planted
    low-fidelity cell 0), and over all 20 cells: ``cells_average`` (metrics averaged over cells) and
    ``cells_worst`` (per metric, the worst cell for that method: lowest coverage, largest |bias|,
    RMSE and width, most failures)."""
    keys = ["n", "design", "target", "method"]
    base = raw[raw["target"].isin(["population", "worst_cell"])]
    out = base.groupby(keys, sort=False).apply(_agg, include_groups=False).reset_index()
    cells = raw[raw["target"].str.startswith("cell_")]
    if len(cells):
        per = cells.groupby(keys, sort=False).apply(_agg, include_groups=False).reset_index()
        k2 = ["n", "design", "method"]
        avg = per.groupby(k2, sort=False)[["reps", "failures", "coverage", "mean_width", "bias", "rmse"]].mean()
        avg["bias"] = per.assign(ab=per["bias"].abs()).groupby(k2, sort=False)["ab"].mean()
        worst = per.groupby(k2, sort=False).agg(reps=("reps", "max"), failures=("failures", "max"),
                                                coverage=("coverage", "min"), mean_width=("mean_width", "max"),
                                                bias=("bias", lambda b: b.abs().max()), rmse=("rmse", "max"))
        avg = avg.reset_index().assign(target="cells_average (|bias|)")
        worst = worst.reset_index().assign(target="cells_worst (|bias|)")
        out = pd.concat([out, avg[out.columns], worst[out.columns]], ignore_index=True)
    return out.sort_values(["n", "design", "target", "method"], kind="stable").reset_index(drop=True)


def _write(rows, timing, args) -> pd.DataFrame:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"_{args.tag}" if args.tag else ""
    raw = pd.DataFrame(rows)
    raw.to_csv(out / f"bayes_study_raw{tag}.csv.gz", index=False)
    summ = summarise(raw)
    summ.to_csv(out / f"bayes_study{tag}.csv", index=False)
    if timing:
        pd.DataFrame(timing).to_csv(out / f"bayes_timing{tag}.csv", index=False)
    return summ


def write_markdown(out: Path, tags=("random", "quota")) -> str:
    """Merge the per-design summaries into ``bayes_study.md``: one table per target, rows (n, design),
    columns coverage / mean width / RMSE (failures) of each method."""
    parts = [pd.read_csv(out / f"bayes_study_{t}.csv") for t in tags if (out / f"bayes_study_{t}.csv").exists()]
    summ = pd.concat(parts, ignore_index=True)
    methods = ["classical", "ppi++", "chain", "hier"]
    titles = {"population": "Population mean", "worst_cell": "Planted worst cell (cell 0: fidelity 0.2, bias -1)",
              "cells_average (|bias|)": "Average over the 20 cells",
              "cells_worst (|bias|)": "Worst of the 20 cells, per metric and method"}
    text = []
    for target, title in titles.items():
        sub = summ[summ["target"] == target]
        if sub.empty:
            continue
        text += [f"**{title}**: coverage / mean width / RMSE (failed pilots)", "",
                 "| n | design | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
        for (n, design), g in sub.groupby(["n", "design"], sort=False):
            cells = []
            for m in methods:
                r = g[g["method"] == m]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                fail = f" ({r['failures']:.0f})" if r["failures"] > 0 else ""
                cells.append(f"{r['coverage']:.3f} / {r['mean_width']:.2f} / {r['rmse']:.3f}{fail}")
            text.append(f"| {n} | {design} | " + " | ".join(cells) + " |")
        text.append("")
    md = "\n".join(text)
    (out / "bayes_study.md").write_text(md)
    return md


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--hier-reps", type=int, default=200)
    ap.add_argument("--n", type=int, nargs="+", default=[50, 100, 300])
    ap.add_argument("--designs", nargs="+", default=["random", "quota"])
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--sampler", default="auto", choices=["auto", "nutpie", "pymc"])
    ap.add_argument("--seed-offset", type=int, default=1,
                    help="seed of the pilot draws is SEED + this (run configurations in parallel with --tag)")
    ap.add_argument("--tag", default="", help="suffix of the output files (e.g. to run configs in parallel)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--markdown", action="store_true",
                    help="only merge the existing bayes_study_{random,quota}.csv into bayes_study.md")
    args = ap.parse_args(argv)
    if args.markdown:
        print(write_markdown(Path(args.out)))
        return None
    if "pytensor" not in sys.modules and "base_compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
        os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={tempfile.mkdtemp(prefix='rectify-bench-')}"
    warnings.simplefilter("ignore")  # prior-only and diagnostic warnings are counted, not printed
    from rectify.estimators.bayes_hier import HierarchicalCalibrator

    pop = make_population()
    print(f"population: N={N}, truth mean {pop['truth']:.4f}, worst cell (n={int((pop['cell'] == 0).sum())}) "
          f"{pop['truth_worst']:.4f}", flush=True)
    model = None
    if args.hier_reps > 0:
        model = HierarchicalCalibrator(K, chains=args.chains, draws=args.draws, tune=args.tune,
                                       rhat_threshold=1.05, sampler=args.sampler)
    rows, timing = [], []
    rng = np.random.default_rng(SEED + args.seed_offset)
    t_start = time.perf_counter()
    for n in args.n:
        for design in args.designs:
            for rep in range(args.reps):
                idx = draw_pilot(pop, n, design, rng)
                res = {}
                for m in ("classical", "ppi++"):
                    res[(m, "population")] = classical_ppi(pop, idx, design, m)
                    for h in range(G):
                        res[(m, f"cell_{h}")] = classical_ppi(pop, idx, design, m, cell=h)
                res[("chain", "population")] = chain(pop, idx, design, rng=rng)
                for h in range(G):
                    res[("chain", f"cell_{h}")] = chain(pop, idx, design, cell=h, rng=rng)
                if rep < args.hier_reps:
                    try:
                        p_all, p_cells, tm = hier(pop, idx, model, int(rng.integers(2**31)))
                        res[("hier", "population")] = p_all
                        for h in range(G):
                            res[("hier", f"cell_{h}")] = p_cells[h]
                        timing.append({"n": n, "design": design, "rep": rep, **tm})
                    except Exception as err:  # a failed fit counts as a failure, not a crash
                        print(f"hier fit failed (n={n}, {design}, rep {rep}): {err}", flush=True)
                        res[("hier", "population")] = (np.nan,) * 3
                        for h in range(G):
                            res[("hier", f"cell_{h}")] = (np.nan,) * 3
                for (m, target), (est, lo, hi) in res.items():
                    truth = pop["truth"] if target == "population" else pop["truth_cell"][int(target[5:])]
                    rows.append({"n": n, "design": design, "rep": rep, "method": m, "target": target,
                                 "estimate": est, "low": lo, "high": hi, "truth": truth})
                    if target == "cell_0":
                        rows.append({**rows[-1], "target": "worst_cell"})
                if (rep + 1) % 10 == 0:  # partial results survive an interrupted run
                    _write(rows, timing, args)
            print(f"n={n} {design}: done ({time.perf_counter() - t_start:.0f} s)", flush=True)
            summ = _write(rows, timing, args)  # after every configuration, so partial runs keep results
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(summ.round(4).to_string(index=False))
    return summ


if __name__ == "__main__":
    main()
