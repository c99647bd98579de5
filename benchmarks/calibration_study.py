"""Seeded coverage study of calibration weighting with LLM predictions as auxiliaries (issue 3).

The setting (issue 3, "How it is checked: the model-assisted correction")
--------------------------------------------------------------------------
* **Population**: one fixed finite population of N = 20,000 people from the synthetic
  misinformation survey generator, ``rectify.datasets.make_misinfo_survey(n=20000,
  random_state=SEED)`` (SYNTHETIC data, planted truth). The outcome ``y`` is each person's human
  discernment score (mean belief in true claims minus mean belief in false claims); the LLM
  prediction ``yhat`` is the simulator's discernment, known for all N. ``yhat`` is **biased**
  (population mean 1.25 against the true 0.75; correlation with ``y`` about 0.6) and its bias is
  largest for conservatives.
* **Unrepresentative pilot**: a stratified simple random sample by ideology with a fixed
  allocation that **over-samples liberals**: 60% liberal, 30% moderate, 10% conservative
  (population: 28% / 40% / 33%). The analyst does not use the inclusion probabilities: every
  calibration starts from equal design weights N / n and only knows the population margins of
  ideology, education and gender and the population total (or categories) of ``yhat``.
* **Estimand**: the finite-population mean of ``y`` (design-based: the population is fixed, only
  the pilot is redrawn), and the finite-population shares of the five answers to claim ``f09``
  (options 1-4 and "have not seen it").
* **Methods on the same draws** (each with its own default 95% interval):

  - ``pilot mean``: the unweighted pilot mean (biased reference);
  - ``LLM only``: the population mean of ``yhat`` (biased reference; no interval);
  - ``PPI++``: ``ppi_mean(method="ppi++")`` ignoring the over-sampling (biased reference);
  - ``PPI++ stratified``: ``ppi_mean(method="ppi++", strata=ideology)``, PPI++ told the same
    ideology margin as the calibration (the fair competitor);
  - ``cal raking demog``: raking on ideology + education + gender (no LLM);
  - ``cal GREG demog+yhat``: linear calibration on the three margins and the total of ``yhat``;
  - ``cal raking demog+yhat5``: raking on the three margins and the population quintiles of
    ``yhat``;
  - ``cal logit demog+yhat``: logit calibration, g-weights bounded in (0.2, 5), same auxiliaries
    as GREG.

  Calibration estimates and standard errors come from ``rectify.calibrate(...).mean("y")`` and
  ``.shares("f09")``: each calibration twice, with R's design-based linearization and normal
  intervals (``svymean``; the default) and with ``small_sample="hc3"`` (method name suffixed
  ``[hc3]``: residuals divided by one minus their leverage in the calibration regression, the
  linearized jackknife, and t intervals with n - p degrees of freedom).

Checks written into the table: for the calibration estimators that use ``yhat``, the bias is
within three Monte-Carlo standard errors of zero and the coverage lies in [93.5%, 96.5%].

Output: ``benchmarks/results/calibration_study{tag}.csv`` and ``.md``. Run from the repository
root::

    .venv/bin/python benchmarks/calibration_study.py --reps 2000 --procs 2
    .venv/bin/python benchmarks/calibration_study.py --reps 100 --tag _quick

Randomness: repetition ``r`` at pilot size ``n`` uses ``numpy.random.default_rng([seed, n, r])``,
so the numbers do not depend on the number of processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # the worker processes are the parallelism

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(Path(__file__).resolve().parent))  # last, for _provenance only

from _provenance import code_version, machine_line  # noqa: E402

from rectify.datasets import make_misinfo_survey, misinfo_discernment, misinfo_llm_probs  # noqa: E402
from rectify.estimators.ppi import ppi_mean  # noqa: E402
from rectify.weighting import calibrate  # noqa: E402

SEED = 20261127
N_POP = 20_000
ALLOCATION = {"liberal": 0.60, "moderate": 0.30, "conservative": 0.10}
DEMOG = ("ideology", "education", "gender")
ITEM = "f09"
ITEM_LEVELS = ["1", "2", "3", "4", "not seen"]
LOGIT_BOUNDS = (0.2, 5.0)
CAL_WITH_YHAT = ("cal GREG demog+yhat", "cal raking demog+yhat5", "cal logit demog+yhat")
CAL_WITH_YHAT = CAL_WITH_YHAT + tuple(f"{m} [hc3]" for m in CAL_WITH_YHAT)

_POP: dict = {}


# --------------------------------------------------------------------------- the population
def build_population(seed: int = SEED, n_pop: int = N_POP) -> dict:
    """The fixed finite population, its margins and the truth."""
    df = make_misinfo_survey(n=n_pop, random_state=seed)
    pop = pd.DataFrame({v: df[v].astype(str).to_numpy() for v in DEMOG})
    pop["y"] = misinfo_discernment(df, "human").to_numpy()
    pop["yhat"] = misinfo_discernment(df, "llm").to_numpy()
    if pop[["y", "yhat"]].isna().any().any():
        raise RuntimeError("a discernment score is missing; choose another seed")
    pop["yhat5"] = pd.qcut(pop["yhat"], 5, labels=[f"q{k}" for k in range(1, 6)]).astype(str)
    item = df[ITEM].to_numpy(float)
    pop[ITEM] = np.where(np.isnan(item), "not seen", np.nan_to_num(item).astype(int).astype(str))
    probs = misinfo_llm_probs(df, ITEM)
    F_item = np.column_stack([probs, np.zeros(len(df))])  # the simulator never says "not seen"
    margins = {v: pop[v].value_counts().astype(float).to_dict() for v in DEMOG}
    truth_shares = pop[ITEM].value_counts(normalize=True).reindex(ITEM_LEVELS).to_numpy(float)
    return {
        "pop": pop,
        "F_item": F_item,
        "margins": margins,
        "margins_yhat5": {**margins, "yhat5": pop["yhat5"].value_counts().astype(float).to_dict()},
        "yhat_total": float(pop["yhat"].sum()),
        "truth_mean": float(pop["y"].mean()),
        "truth_shares": truth_shares,
        "llm_mean": float(pop["yhat"].mean()),
        "strata_pop": pop["ideology"].to_numpy(),
        "rows_by_ideology": {g: np.flatnonzero(pop["ideology"].to_numpy() == g) for g in ALLOCATION},
        "rho": float(np.corrcoef(pop["y"], pop["yhat"])[0, 1]),
        "ideology_shares": pop["ideology"].value_counts(normalize=True).to_dict(),
    }


def allocation(n: int) -> dict:
    """Pilot rows per ideology (largest remainders)."""
    raw = {g: n * s for g, s in ALLOCATION.items()}
    out = {g: int(np.floor(v)) for g, v in raw.items()}
    for g in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[g] += 1
    return out


def draw_pilot(P: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified SRS by ideology with the over-sampling allocation."""
    alloc = allocation(n)
    return np.concatenate([rng.choice(P["rows_by_ideology"][g], alloc[g], replace=False) for g in ALLOCATION])


# --------------------------------------------------------------------------- one repetition
def _record(rows, r, method, terms, res, level=0.95):
    lo, hi = res.conf_int(level) if res is not None else (None, None)
    for j, t in enumerate(terms):
        rows.append((r, method, t, float(res.estimate[j]), float(res.std_error[j]), float(lo[j]), float(hi[j])))


def one_rep(P: dict, n: int, r: int, seed: int = SEED) -> list:
    """Every method on one pilot; rows (rep, method, term, estimate, se, low, high)."""
    rng = np.random.default_rng([seed, n, r])
    take = draw_pilot(P, n, rng)
    pop = P["pop"]
    pilot = pop.iloc[take].reset_index(drop=True)
    y, f = pilot["y"].to_numpy(), pilot["yhat"].to_numpy()
    rows: list = []
    rows.append((r, "LLM only", "mean", P["llm_mean"], np.nan, np.nan, np.nan))
    _record(rows, r, "pilot mean", ["mean"], ppi_mean(y, method="classical"))
    _record(rows, r, "PPI++", ["mean"], ppi_mean(y, f, pop["yhat"].to_numpy(), method="ppi++"))
    strata = pilot["ideology"].to_numpy()
    _record(rows, r, "PPI++ stratified", ["mean"],
            ppi_mean(y, f, pop["yhat"].to_numpy(), method="ppi++", strata=strata, strata_pop=P["strata_pop"]))
    Y_item = (pilot[ITEM].to_numpy()[:, None] == np.array(ITEM_LEVELS)[None, :]).astype(float)
    share_terms = [f"share[{lv}]" for lv in ITEM_LEVELS]
    _record(rows, r, "PPI++ stratified", share_terms,
            ppi_mean(Y_item, P["F_item"][take], P["F_item"], method="ppi++", strata=strata,
                     strata_pop=P["strata_pop"]))
    specs = {
        "cal raking demog": dict(margins=P["margins"], method="raking"),
        "cal GREG demog+yhat": dict(margins={**P["margins"], "yhat": P["yhat_total"]}, method="linear"),
        "cal raking demog+yhat5": dict(margins=P["margins_yhat5"], method="raking"),
        "cal logit demog+yhat": dict(margins={**P["margins"], "yhat": P["yhat_total"]}, method="logit",
                                     bounds=LOGIT_BOUNDS),
    }
    for base, kw in specs.items():
        for small in (None, "hc3"):
            name = base if small is None else f"{base} [hc3]"
            try:
                cw = calibrate(pilot, small_sample=small, **kw)
                res = cw.mean("y")
            except (ValueError, RuntimeError) as exc:  # InputError / ConvergenceError: count it
                rows.append((r, name, "mean", np.nan, np.nan, np.nan, np.nan, type(exc).__name__))
                continue
            _record(rows, r, name, ["mean"], res)
            if base == "cal GREG demog+yhat":
                _record(rows, r, name, share_terms, cw.shares(ITEM, levels=ITEM_LEVELS))
    return rows


def _init(seed):
    _POP.update(build_population(seed))


def _work(args):
    n, r0, r1, seed = args
    out = []
    for r in range(r0, r1):
        out.extend((n,) + row for row in one_rep(_POP, n, r, seed))
    return out


# --------------------------------------------------------------------------- summary
def _xlogit_coverage(g: pd.DataFrame) -> float:
    """Coverage of the same estimate and s.e. mapped through the logit scale (delta method, R's
    ``svyciprop(method="xlogit")``), with the critical value of the reported interval."""
    p, se = g["estimate"].to_numpy(), g["se"].to_numpy()
    crit = (g["high"].to_numpy() - p) / se
    with np.errstate(divide="ignore", invalid="ignore"):
        eta, half = np.log(p / (1 - p)), crit * se / (p * (1 - p))
        lo, hi = 1 / (1 + np.exp(-(eta - half))), 1 / (1 + np.exp(-(eta + half)))
    t = g["truth"].to_numpy()
    return float(np.mean((lo <= t) & (t <= hi)))


def summarise(raw: pd.DataFrame, P: dict) -> pd.DataFrame:
    truth = {"mean": P["truth_mean"], **{f"share[{lv}]": float(s) for lv, s in zip(ITEM_LEVELS, P["truth_shares"])}}
    raw = raw.assign(truth=raw["term"].map(truth))
    ok = raw["estimate"].notna()
    raw = raw.assign(cover=(raw["low"] <= raw["truth"]) & (raw["truth"] <= raw["high"]),
                     width=raw["high"] - raw["low"], err=raw["estimate"] - raw["truth"])
    out = []
    for (n, method, term), g in raw.groupby(["n", "method", "term"], sort=False):
        g_ok = g[ok.loc[g.index]]
        k = len(g_ok)
        err = g_ok["err"].to_numpy()
        has_ci = g_ok["width"].notna().all() and k > 0
        cov = float(g_ok["cover"].mean()) if has_ci else np.nan
        mcse_bias = float(err.std(ddof=1) / np.sqrt(k)) if k > 1 and err.std() > 1e-12 else np.nan
        bias = float(err.mean())
        row = {
            "n": int(n), "method": method, "term": term, "reps": int(len(g)), "failed": int(len(g) - k),
            "truth": truth[term], "bias": bias, "mcse_bias": mcse_bias,
            "bias_z": bias / mcse_bias if mcse_bias and np.isfinite(mcse_bias) and mcse_bias > 0 else np.nan,
            "rmse": float(np.sqrt(np.mean(err**2))), "emp_sd": float(err.std(ddof=1)) if k > 1 else np.nan,
            "mean_se": float(g_ok["se"].mean()) if has_ci else np.nan,
            "coverage": cov, "mcse_coverage": float(np.sqrt(cov * (1 - cov) / k)) if has_ci else np.nan,
            "mean_width": float(g_ok["width"].mean()) if has_ci else np.nan,
            "coverage_xlogit": _xlogit_coverage(g_ok) if has_ci and term.startswith("share[") else np.nan,
        }
        out.append(row)
    tab = pd.DataFrame(out)
    ref = tab[tab["method"] == "PPI++ stratified"].set_index(["n", "term"])["mean_width"]
    tab["width_vs_ppi_strat"] = [w / ref.get((n, t), np.nan) for n, t, w in zip(tab["n"], tab["term"], tab["mean_width"])]
    checks = []
    for _, row in tab.iterrows():
        if row["method"] not in CAL_WITH_YHAT:
            checks.append("reference")
            continue
        bad = []
        if not abs(row["bias_z"]) <= 3:
            bad.append("bias")
        if not 0.935 <= row["coverage"] <= 0.965:
            bad.append("coverage")
        if row["failed"]:
            bad.append(f"{row['failed']} failed")
        checks.append("ok" if not bad else "FAIL: " + ", ".join(bad))
    tab["checks"] = checks
    return tab


def _fmt(v, spec):
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _findings(tab: pd.DataFrame) -> list:
    """A few generated sentences: the population mean with y-hat calibrations, default vs hc3."""
    out = ["Summary (population mean, calibration on demographics + yhat):", ""]
    m = tab[(tab["term"] == "mean")]
    for n, g in m.groupby("n"):
        def rng_(names, col):
            v = g[g["method"].isin(names)][col]
            return f"{100 * v.min():.1f}-{100 * v.max():.1f}%" if col == "coverage" else f"{v.min():.2f}-{v.max():.2f}"
        base = [c for c in CAL_WITH_YHAT if not c.endswith("[hc3]")]
        hc3 = [c for c in CAL_WITH_YHAT if c.endswith("[hc3]")]
        bz = g[g["method"].isin(CAL_WITH_YHAT)]["bias_z"].abs().max()
        out.append(
            f"* n = {n}: coverage {rng_(base, 'coverage')} with R's linearization, {rng_(hc3, 'coverage')} "
            f"with small_sample='hc3'; width / PPI++ stratified {rng_(base, 'width_vs_ppi_strat')} (R) and "
            f"{rng_(hc3, 'width_vs_ppi_strat')} (hc3); max |bias z| {bz:.1f}; PPI++ stratified covers "
            f"{100 * g[g['method'] == 'PPI++ stratified']['coverage'].iloc[0]:.1f}%, unweighted PPI++ "
            f"{100 * g[g['method'] == 'PPI++']['coverage'].iloc[0]:.1f}% (bias "
            f"{g[g['method'] == 'PPI++']['bias'].iloc[0]:+.4f}).")
    return out


def write_markdown(tab: pd.DataFrame, P: dict, args, elapsed: float, path: Path) -> None:
    alloc = ", ".join(f"{g} {s:.0%}" for g, s in ALLOCATION.items())
    popsh = ", ".join(f"{g} {P['ideology_shares'][g]:.1%}" for g in ALLOCATION)
    lines = [
        "# Calibration with LLM predictions as auxiliaries: seeded coverage study (issue 3)",
        "",
        f"{args.reps} repetitions per pilot size, seed {args.seed}, {args.procs} process(es), "
        f"{elapsed:.0f} s; code {code_version()}; {args.machine_start} at the start, "
        f"{machine_line().rsplit('load average ', 1)[1]} at the end. "
        "Generated by `benchmarks/calibration_study.py`. SYNTHETIC data.",
        "",
        f"Fixed finite population: N = {N_POP:,} from `make_misinfo_survey(n={N_POP}, random_state={args.seed})`; "
        f"y = human discernment (population mean {P['truth_mean']:.4f}), yhat = LLM discernment "
        f"(mean {P['llm_mean']:.4f}, corr(y, yhat) = {P['rho']:.2f}). Pilot: stratified SRS by "
        f"ideology over-sampling liberals ({alloc}; population {popsh}); calibrations start from "
        "equal design weights N/n and know only the population margins of ideology, education, "
        "gender and the total (or quintiles) of yhat. Shares: claim f09, five answers "
        "(1-4, not seen), calibrated by GREG on demographics + yhat; PPI++ uses the simulator's "
        "option probabilities (0 for 'not seen').",
        "",
        "Columns: bias (z = bias / Monte-Carlo s.e.); coverage of the nominal 95% interval (MC s.e.); "
        "width = mean interval width; vs PPI++s = width / width of PPI++ stratified by ideology on "
        "the same draws; emp sd = Monte-Carlo sd of the estimate; mean se = mean reported s.e. "
        "Checks (calibration estimators with yhat only): |z| <= 3 and coverage in [93.5%, 96.5%].",
        "",
        "Shares also show the coverage of the logit-scale interval (column xlogit; rectify's "
        "`shares(..., interval=\"xlogit\")`, R's `svyciprop(method=\"xlogit\")`), computed from the "
        "same estimate and s.e. with the critical value of the reported interval (z for the R-default "
        "rows, where rectify's option uses t with n - 1 df). For the rarer answers it is the symmetric "
        "Wald interval that fails, not the standard error.",
        "",
    ]
    lines += _findings(tab)
    lines += [
        "",
        "| n | method | term | bias (z) | coverage | xlogit | width | vs PPI++s | emp sd | mean se | rmse | checks |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in tab.iterrows():
        cov = "" if not np.isfinite(r["coverage"]) else f"{100 * r['coverage']:.1f}% ({100 * r['mcse_coverage']:.1f})"
        bias = f"{r['bias']:+.4f}" + ("" if not np.isfinite(r["bias_z"]) else f" ({r['bias_z']:+.1f})")
        lines.append(
            f"| {r['n']} | {r['method']} | {r['term']} | {bias} | {cov} | "
            f"{'' if not np.isfinite(r['coverage_xlogit']) else format(100 * r['coverage_xlogit'], '.1f') + '%'} | "
            f"{_fmt(r['mean_width'], '.4f')} | "
            f"{_fmt(r['width_vs_ppi_strat'], '.3f')} | {_fmt(r['emp_sd'], '.4f')} | {_fmt(r['mean_se'], '.4f')} | "
            f"{_fmt(r['rmse'], '.4f')} | {r['checks']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    args.machine_start = machine_line()
    t0 = time.perf_counter()
    P = build_population(args.seed)
    _POP.update(P)
    tasks = [(n, r0, min(r0 + args.chunk, args.reps), args.seed) for n in args.sizes
             for r0 in range(0, args.reps, args.chunk)]
    if args.procs > 1:
        with get_context("fork").Pool(args.procs) as pool:
            parts = pool.map(_work, tasks)
    else:
        parts = [_work(t) for t in tasks]
    rows = [row for part in parts for row in part]
    cols = ["n", "rep", "method", "term", "estimate", "se", "low", "high"]
    raw = pd.DataFrame([row[:8] for row in rows], columns=cols)
    elapsed = time.perf_counter() - t0
    tab = summarise(raw, P)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    tab.to_csv(out / f"calibration_study{args.tag}.csv", index=False, float_format="%.6g")
    write_markdown(tab, P, args, elapsed, out / f"calibration_study{args.tag}.md")
    print((out / f"calibration_study{args.tag}.md").read_text())
    return tab


if __name__ == "__main__":
    main()
