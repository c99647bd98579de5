"""Coverage where survey users stand (issue 13): pilot inside the frame, rare options, weighted
pilots and real humans.

Cells
-----
Every cell runs ``--reps`` (default 2,000) seeded repetitions of four targets -- the mean, the option
shares, an OLS slope and a logistic slope -- at pilot sizes n in {50, 100, 200, 500}, with the
methods ``classical`` (the pilot alone) and ``ppi++`` (rectify's default), each at its default
settings (``convention="small-sample"``). The numpy cores of ``rectify.estimators.ppi`` are
called directly (no DataFrame verbs), so the study is fast.

* ``overlap``: each repetition draws a finite frame of N = n / f rows (f = n/N in {0.05, 0.2,
  0.5}) from the superpopulation of ``benchmarks/ppi_coverage.py`` (strong predictor), and the
  pilot is a simple random sample of n of those rows: the pilot's rows are also frame rows, as in
  every documented workflow. Scored against the **frame** parameter (the frame's own mean, shares
  and census regression coefficients, computed from every frame row's human answer) and the
  **superpopulation** parameter (closed form).
* ``rare``: option shares of a 4-option item whose first option has truth 1%, 3% or 5%; a
  separate frame of 10,000 rows (superpopulation target). Only the shares target.
* ``weighted``: an unequal-probability pilot -- drawn from the superpopulation tilted by
  ``exp(gamma s)`` on a selection variable ``s`` that drives the answer (mean, shares) or the
  covariate (OLS, logistic) -- with inverse-probability weights ``exp(-gamma s)``, so that Kish's
  design effect ``1 + cv(w)^2`` is ``exp(gamma^2)`` in {1.5, 3}; a separate equal-probability frame
  of 10,000 rows (superpopulation target).
* ``anes`` / ``gss``: **real humans**. The frame is the full sample -- ANES 1996 (944
  respondents, ``rectify.datasets.load_anes96_llm``, item ``self_lr``) or the GSS 2018 spending
  battery (``load_gss_spending_llm``, item ``natarms``, the rows with an answer and the covariates)
  -- with the embedded model's stored zero-shot answers; each repetition draws a simple random
  pilot of n respondents from it and the target is the frame's own statistic.

Old and new code
----------------
The script detects what the cores accept. Code without an ``estimand`` argument gets the whole
frame as ``yhat_pop`` (what the README examples do) and one interval per repetition, scored against
both targets (``mode = before``). Code with it is called once per target with
``estimand="frame"`` / ``"superpopulation"``, ``overlap="inside"`` when the pilot's rows are
frame rows (else ``"separate"``) and, for ``classical``, ``frame_size=N`` (``mode = estimand``).

Output: ``benchmarks/results/coverage_study{tag}.csv`` (one row per cell, method, target and
term) and ``.md`` (one line per cell, method and target: the reported term, or for shares the option
furthest from 95%), with CPU, flags, load, repetitions and Monte Carlo standard errors, and a
section "Cells that miss and why" generated from the numbers. Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/coverage_study.py --reps 2000 --tag _before
    nice -n 10 .venv/bin/python benchmarks/coverage_study.py --reps 2000

Randomness: repetition ``r`` of a cell uses ``numpy.random.default_rng([seed, family, target,
setting, n, r])``: the numbers do not depend on the number of worker processes.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402
from scipy.stats import norm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.append(str(HERE))  # last: _provenance only

from _provenance import code_version, cpu_info, load_average  # noqa: E402

from rectify.errors import EstimationError  # noqa: E402
from rectify.estimators import ppi as P  # noqa: E402

TARGETS = ("mean", "shares", "ols", "logistic")
FAMILIES = ("overlap", "rare", "weighted", "anes", "gss")
METHODS = ("classical", "ppi++")
PILOT_SIZES = (50, 100, 200, 500)
FRACTIONS = (0.05, 0.2, 0.5)
RARE = (0.01, 0.03, 0.05)
DEFFS = (1.5, 3.0)
LEVEL = 0.95
GOAL = (0.935, 0.965)
N_SEPARATE = 10_000
SHARES_BASE = np.array([0.15, 0.35, 0.30, 0.20])
LOAD_SAMPLES: list = []

# ----------------------------------------------------------------------------- simulated answers


def _latent(rng, m, tilt, a=0.7):
    """A standard normal driven by a selection variable s ~ N(tilt, 1); returns (latent, s)."""
    s = rng.normal(tilt, 1.0, m)
    return a * s + np.sqrt(1 - a**2) * rng.normal(size=m), s


def _cuts(shares):
    return norm.ppf(np.cumsum(shares)[:-1])


def draw(rng, target, m, tilt=0.0, shares=SHARES_BASE):
    """Pilot or frame rows of one target: (y, yhat, X, s). Strong predictor (rho ~ 0.8).

    mean: y = 3 + u, yhat = 3.3 + 0.8 (0.8 u + 0.6 e) (biased LLM); shares: a latent u cut into
    options, the LLM's answer distribution from a noisy signal shifted by +0.3; OLS: y = 1 + 0.5 x +
    eps, yhat = 0.9 + 0.4 x + 0.8 eps + 0.67 nu; logistic: y = 1{-0.5 + x + eps > 0} (logistic eps),
    yhat = expit(-0.3 + 0.8 x + eps + 0.7 nu). The latent u (mean, shares) or x (regressions) is
    driven by the selection variable s, which is N(0, 1) in the population and N(tilt, 1) in a
    tilted (weighted) pilot.
    """
    u, s = _latent(rng, m, tilt)
    if target == "mean":
        e = rng.normal(size=m)
        return 3.0 + u, 3.3 + 0.8 * (0.8 * u + 0.6 * e), None, s
    if target == "shares":
        cuts = _cuts(shares)
        a = 0.85
        y = np.digitize(u, cuts) + 1
        v = a * u + np.sqrt(1 - a**2) * rng.normal(size=m)
        sd = np.sqrt(1 - a**2)
        C = norm.cdf((cuts[None, :] - (0.3 + a * v)[:, None]) / sd)
        Pm = np.diff(np.column_stack([np.zeros(m), C, np.ones(m)]), axis=1)
        Pm = np.clip(Pm, 0.0, None)
        return y, Pm / Pm.sum(axis=1, keepdims=True), None, s
    X = np.column_stack([np.ones(m), u])
    if target == "ols":
        eps, nu = rng.normal(size=(2, m))
        return 1.0 + 0.5 * u + eps, 0.9 + 0.4 * u + 0.8 * eps + np.sqrt(0.45) * nu, X, s
    eps, nu = rng.logistic(size=m), rng.normal(size=m)
    y = (-0.5 + u + eps > 0).astype(float)
    return y, expit(-0.3 + 0.8 * u + 1.0 * eps + 0.7 * nu), X, s


SUPER = {"mean": np.array([3.0]), "ols": np.array([1.0, 0.5]), "logistic": np.array([-0.5, 1.0])}

# ----------------------------------------------------------------------------- census statistics


def census_ols(X, y):
    return np.linalg.lstsq(X, y, rcond=None)[0]


def census_logistic(X, y, iters: int = 50):
    """Maximum likelihood by plain Newton steps (an independent check of the frame's coefficients)."""
    b = np.zeros(X.shape[1])
    for _ in range(iters):
        p = expit(X @ b)
        step = np.linalg.solve((X * (p * (1 - p))[:, None]).T @ X, X.T @ (y - p))
        b += step
        if np.max(np.abs(step)) < 1e-12:
            break
    return b


def census(target, y, X, K):
    if target == "mean":
        return np.array([y.mean()])
    if target == "shares":
        return np.bincount(y.astype(int) - 1, minlength=K)[:K] / len(y)
    return census_ols(X, y) if target == "ols" else census_logistic(X, y)


# ----------------------------------------------------------------------------- real surveys


def _std(v):
    return (v - v.mean()) / v.std()


def real_frame(family: str, target: str) -> dict:
    """The full sample of a real survey as a frame: human y, stored LLM yhat, design X."""
    from rectify import datasets as D

    if family == "anes":
        d = D.load_anes96_llm()
        y7 = d["self_lr"].to_numpy(float)
        P7 = d[[f"self_lr_p{k}" for k in range(1, 8)]].to_numpy(float)
        X = np.column_stack([np.ones(len(d)), _std(d["educ"].to_numpy(float)), _std(d["age"].to_numpy(float))])
        f_score, K, top = d["self_lr_llm"].to_numpy(float), 7, 5
    else:
        d = D.load_gss_spending_llm()
        d = d.dropna(subset=["natarms", "polviews", "age", "natarms_zs_llm"]).reset_index(drop=True)
        y7 = d["natarms"].to_numpy(float)
        P7 = d[[f"natarms_zs_p{k}" for k in range(1, 4)]].to_numpy(float)
        X = np.column_stack([np.ones(len(d)), _std(d["polviews"].to_numpy(float)), _std(d["age"].to_numpy(float))])
        f_score, K, top = d["natarms_zs_llm"].to_numpy(float), 3, 3
    if target == "mean":
        y, f, Xf = y7, f_score, None
    elif target == "shares":
        y, f, Xf = y7, P7, None
    elif target == "ols":
        y, f, Xf = y7, f_score, X
    else:  # "conservative" (self_lr >= 5) / "too much" on the military (natarms = 3)
        y, f, Xf = (y7 >= top).astype(float), P7[:, top - 1:].sum(axis=1), X
    return {"y": y, "f": f, "X": Xf, "K": K, "N": len(y), "truth": census(target, y, Xf, K)}


_REAL_CACHE: dict = {}


def _real(family, target):
    key = (family, target)
    if key not in _REAL_CACHE:
        _REAL_CACHE[key] = real_frame(family, target)
    return _REAL_CACHE[key]


# ----------------------------------------------------------------------------- one repetition's data
@dataclass(frozen=True)
class Cell:
    family: str
    target: str
    setting: float  # n/N (overlap), truth of the rare option (rare), deff (weighted), 0 (real)
    n: int

    @property
    def label(self) -> str:
        if self.family == "overlap":
            return f"n/N={self.setting:g}"
        if self.family == "rare":
            return f"truth={100 * self.setting:g}%"
        if self.family == "weighted":
            return f"deff={self.setting:g}"
        return "full sample"

    @property
    def frame_size(self) -> int:
        if self.family == "overlap":
            return int(round(self.n / self.setting))
        if self.family in ("anes", "gss"):
            return _real(self.family, self.target)["N"]
        return N_SEPARATE

    @property
    def estimands(self) -> tuple:
        if self.family == "overlap":
            return ("frame", "superpopulation")
        return ("frame",) if self.family in ("anes", "gss") else ("superpopulation",)

    @property
    def reported(self) -> int | None:
        """Index of the reported term (regressions: the slope); None for shares (all options)."""
        return None if self.target == "shares" else (0 if self.target == "mean" else 1)


def rare_shares(p):
    return np.concatenate([[p], (1 - p) * np.array([0.40, 0.35, 0.25])])


def make_data(cell: Cell, rng) -> dict:
    """Pilot, frame, the pilot's frame rows (or None) and the truths of one repetition."""
    t, n = cell.target, cell.n
    if cell.family in ("anes", "gss"):
        R = _real(cell.family, t)
        idx = np.sort(rng.choice(R["N"], n, replace=False))
        X = None if R["X"] is None else R["X"][idx]
        return {"y": R["y"][idx], "f": R["f"][idx], "X": X, "w": None, "fp": R["f"], "Xp": R["X"],
                "idx": idx, "K": R["K"], "truth": {"frame": R["truth"]}}
    if cell.family == "overlap":
        N = cell.frame_size
        y, f, X, _ = draw(rng, t, N)
        idx = np.sort(rng.choice(N, n, replace=False))
        truth = {"frame": census(t, y, X, 4),
                 "superpopulation": SHARES_BASE if t == "shares" else SUPER[t]}
        return {"y": y[idx], "f": f[idx], "X": None if X is None else X[idx], "w": None, "fp": f, "Xp": X,
                "idx": idx, "K": 4, "truth": truth}
    shares = rare_shares(cell.setting) if cell.family == "rare" else SHARES_BASE
    tilt = np.sqrt(np.log(cell.setting)) if cell.family == "weighted" else 0.0
    y, f, X, s = draw(rng, t, n, tilt=tilt, shares=shares)
    w = None
    if cell.family == "weighted":
        w = np.exp(-tilt * s)
        w = w / w.mean()
    _, fp, Xp, _ = draw(rng, t, N_SEPARATE, shares=shares)
    truth = shares if t == "shares" else SUPER[t]
    return {"y": y, "f": f, "X": X, "w": w, "fp": fp, "Xp": Xp, "idx": None, "K": 4,
            "truth": {"superpopulation": truth}}


# ----------------------------------------------------------------------------- calling the cores
def _accepts(fn, name) -> bool:
    return name in inspect.signature(fn).parameters


HAS_ESTIMAND = _accepts(P.ppi_mean, "estimand")
MODE = "estimand" if HAS_ESTIMAND else "before"


def _overlap_kwargs(d: dict, estimand: str | None, fn, method: str) -> dict:
    """Arguments that tell new code the target, whether the pilot's rows are frame rows, and the
    frame size (classical has no frame predictions to count)."""
    if estimand is None:
        return {}
    kw = {"estimand": estimand}
    if _accepts(fn, "overlap"):
        kw["overlap"] = "inside" if d["idx"] is not None else "separate"
    if method == "classical" and _accepts(fn, "frame_size"):
        kw["frame_size"] = len(d["fp"])
    return kw


def fit(target: str, method: str, d: dict, estimand: str | None):
    """One call of a rectify core; the Result."""
    w = d["w"]
    if target in ("mean", "shares"):
        fn = P.ppi_mean if target == "mean" else P.ppi_shares
        kw = _overlap_kwargs(d, estimand, fn, method)
        fp = None if method == "classical" else d["fp"]
        f = None if method == "classical" else d["f"]
        if target == "mean":
            return fn(d["y"], f, fp, method, weights=w, **kw)
        return fn(d["y"], f, fp, method, categories=list(range(1, d["K"] + 1)), weights=w, **kw)
    fn = P.ppi_ols if target == "ols" else P.ppi_logistic
    kw = _overlap_kwargs(d, estimand, fn, method)
    if method == "classical":
        return fn(d["X"], d["y"], None, None, None, method, weights=w, **kw)
    return fn(d["X"], d["y"], d["f"], d["Xp"], d["fp"], method, weights=w, **kw)


def run_cell(cell: Cell, reps: int, seed: int) -> list[dict]:
    """All repetitions of one cell; per (method, estimand, term): coverage and its ingredients."""
    keys = (FAMILIES.index(cell.family), TARGETS.index(cell.target), int(round(1000 * cell.setting)), cell.n)
    calls = [(m, e) for m in METHODS for e in (cell.estimands if HAS_ESTIMAND else (None,))]
    acc: dict = {}
    t0 = time.perf_counter()
    for r in range(reps):
        rng = np.random.default_rng([seed, *keys, r])
        d = make_data(cell, rng)
        for m, e in calls:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fit(cell.target, m, d, e)
                lo, hi = res.conf_int(LEVEL)
                est, se = np.asarray(res.estimate, float), np.asarray(res.std_error, float)
            except EstimationError:
                est = se = lo = hi = None
            for tgt in (cell.estimands if e is None else (e,)):
                a = acc.setdefault((m, tgt), {"est": [], "se": [], "lo": [], "hi": [], "truth": [], "failed": 0})
                if est is None:
                    a["failed"] += 1
                    continue
                for k, v in (("est", est), ("se", se), ("lo", lo), ("hi", hi), ("truth", d["truth"][tgt])):
                    a[k].append(np.asarray(v, float))
    secs = time.perf_counter() - t0
    rows = []
    for (m, tgt), a in acc.items():
        if not a["est"]:
            continue
        est, se, lo, hi, tr = (np.vstack(a[k]) for k in ("est", "se", "lo", "hi", "truth"))
        R = est.shape[0]
        terms = range(est.shape[1]) if cell.reported is None else [cell.reported]
        for j in terms:
            cov = float(np.mean((lo[:, j] <= tr[:, j]) & (tr[:, j] <= hi[:, j])))
            err = est[:, j] - tr[:, j]
            sd = float(np.std(err, ddof=1))
            rows.append({
                "family": cell.family, "target": cell.target, "setting": cell.label, "n": cell.n,
                "N": cell.frame_size, "method": m, "estimand": tgt, "mode": MODE,
                "term": (f"share[{j + 1}]" if cell.target == "shares" else
                         ("mean" if cell.target == "mean" else "slope")),
                "truth_mean": float(tr[:, j].mean()), "reps": R, "failed": a["failed"], "coverage": cov,
                "coverage_mcse": float(np.sqrt(max(cov * (1 - cov), 0.25 / R) / R)),
                "mean_se": float(np.mean(se[:, j])), "actual_sd": sd,
                "se_ratio": float(np.mean(se[:, j]) / sd) if sd > 0 else np.nan,
                "bias_sd": float(err.mean() / sd) if sd > 0 else np.nan,
                "zero_width": float(np.mean(hi[:, j] - lo[:, j] <= 1e-12)),
                "outside_01": float(np.mean((est[:, j] < 0) | (est[:, j] > 1))) if cell.target == "shares" else np.nan,
                "mean_width": float(np.mean(hi[:, j] - lo[:, j])), "seconds": secs,
            })
    return rows


# ----------------------------------------------------------------------------- the grid
def cells(families=FAMILIES, targets=TARGETS, sizes=PILOT_SIZES) -> tuple[list[Cell], list[str]]:
    """The study's cells and the notes on cells skipped (n >= N)."""
    out, skipped = [], []
    for fam in families:
        settings = {"overlap": FRACTIONS, "rare": RARE, "weighted": DEFFS}.get(fam, (0.0,))
        tg = ("shares",) if fam == "rare" else targets
        for t in tg:
            if fam == "rare" and t not in targets:
                continue
            for s in settings:
                for n in sizes:
                    c = Cell(fam, t, s, n)
                    if n >= c.frame_size:
                        skipped.append(f"{fam} {t} {c.label} n={n}: n >= N = {c.frame_size}")
                        continue
                    out.append(c)
    return out, skipped


# ----------------------------------------------------------------------------- reporting
def machine() -> dict:
    cpu, flags = cpu_info()
    return {"cpu": cpu, "flags": flags, "cores": os.cpu_count()}


def load() -> str:
    return load_average()


def classify(r) -> str:
    """Why a row misses the goal, from its numbers."""
    why = []
    if r["zero_width"] > 0.005:
        why.append(f"{100 * r['zero_width']:.1f}% of intervals have zero width")
    if r.get("outside_01", 0) and r["outside_01"] > 0.005:
        why.append(f"{100 * r['outside_01']:.1f}% of estimates outside [0, 1]")
    if abs(r["bias_sd"]) > 0.2:
        why.append(f"bias {r['bias_sd']:+.2f} sd")
    if r["se_ratio"] > 1.05:
        why.append(f"SE overstates the spread (mean SE / actual sd = {r['se_ratio']:.2f})")
    elif r["se_ratio"] < 0.95:
        why.append(f"SE understates the spread (mean SE / actual sd = {r['se_ratio']:.2f})")
    # the interval against +/- 1.96 reported SE: t with few df or a score inversion makes it differ
    wr = r["mean_width"] / (2 * 1.959964 * r["mean_se"]) if r["mean_se"] > 0 else np.nan
    if wr < 0.95:
        why.append(f"interval narrower than +/- 1.96 SE (width / 3.92 SE = {wr:.2f})")
    elif wr > 1.10:
        why.append(f"interval wider than +/- 1.96 SE (width / 3.92 SE = {wr:.2f}: few df or score inversion)")
    if not why:
        why.append(f"SE about right ({r['se_ratio']:.2f}): skewed or discrete sampling distribution")
    return "; ".join(why)


def worst(g: pd.DataFrame) -> pd.Series:
    return g.loc[(g["coverage"] - 0.95).abs().idxmax()]


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    keys = ["family", "target", "setting", "n", "method", "estimand"]
    rows = [worst(g) for _, g in df.groupby(keys, sort=False)]
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["ok"] = out["coverage"].between(*GOAL)
    return out


def to_markdown(df: pd.DataFrame, meta: dict) -> str:
    tab = summary_table(df)
    lines = [
        f"# Coverage where survey users stand (issue 13){meta['title']}",
        "",
        f"{meta['reps']} repetitions per cell, seed {meta['seed']}, 95% intervals, code {meta['code']} "
        f"(mode `{MODE}`: {'the whole frame passed as yhat_pop, no estimand argument; each interval scored against both targets' if MODE == 'before' else 'one call per target with estimand= and the pilot rows'}). "
        f"CPU {meta['cpu']} ({meta['cores']} cores; flags {meta['flags']}), {meta['procs']} worker process(es), "
        f"nice 10, load average {meta['load_start']} at the start and {meta['load_end']} at the end; "
        f"run time {meta['elapsed']:.0f} s of wall clock. Generated by `benchmarks/coverage_study.py`.",
        "",
        "Goal: coverage in [93.5%, 96.5%]; a coverage outside it is in bold. Coverage in % (Monte Carlo "
        "standard error in brackets, sqrt(p(1-p)/reps)); for shares the option furthest from 95% is shown "
        "(every option, the mean SE against the actual sd of the estimate, the bias and the share of "
        "zero-width intervals are in the CSV). Regressions: the slope. Methods: classical = the pilot "
        "alone, ppi++ = rectify's default; both with their default intervals.",
        "",
    ]
    if meta["skipped"]:
        lines += ["Skipped (n >= N): " + "; ".join(meta["skipped"]) + ".", ""]
    else:
        lines += ["No cell skipped: every pilot size is below its frame size.", ""]
    sizes = sorted(tab["n"].unique())
    for fam, g in tab.groupby("family", sort=False):
        lines += [f"## {fam}", "",
                  "| target | setting | N | method | estimand | " + " | ".join(f"n = {n}" for n in sizes) + " |",
                  "|---|---|---:|---|---|" + "---:|" * len(sizes)]
        for (t, s, m, e), h in g.groupby(["target", "setting", "method", "estimand"], sort=False):
            by_n = {r["n"]: r for _, r in h.iterrows()}
            Ns = sorted({int(r["N"]) for r in by_n.values()})
            N = f"{Ns[0]:,}" if len(Ns) == 1 else f"{Ns[0]:,}-{Ns[-1]:,}"
            cellv = []
            for n in sizes:
                r = by_n.get(n)
                if r is None:
                    cellv.append("skipped")
                    continue
                mark = "" if r["ok"] else "**"
                cellv.append(f"{mark}{100 * r['coverage']:.1f}{mark} ({100 * r['coverage_mcse']:.1f})")
            lines.append(f"| {t} | {s} | {N} | {m} | {e} | " + " | ".join(cellv) + " |")
        lines.append("")
    lines += ["## Cells that miss and why", ""]
    miss = tab[~tab["ok"]]
    lines.append(f"{len(tab) - len(miss)} of {len(tab)} (cell, method, estimand) rows reach the goal; "
                 f"{len(miss)} miss ({int((miss['method'] == 'ppi++').sum())} of them ppi++).")
    lines.append("")
    for (fam, meth, est), g in miss.groupby(["family", "method", "estimand"], sort=False):
        lo, hi = g["coverage"].min(), g["coverage"].max()
        lines.append(f"* **{fam}, {meth}, {est} target** ({len(g)} cells, coverage {100 * lo:.1f}-{100 * hi:.1f}%):")
        for _, r in g.iterrows():
            lines.append(f"  - {r['target']} {r['setting']} n={r['n']} ({r['term']}): "
                         f"{100 * r['coverage']:.1f}% -- {classify(r)}")
    return "\n".join(lines) + "\n"


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    order_cols = {"family": FAMILIES, "target": TARGETS, "method": METHODS}
    return df.sort_values(["family", "target", "setting", "n", "method", "estimand", "term"],
                          key=lambda s: s.map({v: i for i, v in enumerate(order_cols[s.name])})
                          if s.name in order_cols else s, kind="stable").reset_index(drop=True)


def write(df: pd.DataFrame, meta: dict, out: Path, tag: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"coverage_study{tag}.csv", index=False)
    (out / f"coverage_study{tag}.md").write_text(to_markdown(df, meta))
    print(f"wrote {out / f'coverage_study{tag}.csv'} and .md")


def merge(tags, out: Path, title: str) -> tuple[pd.DataFrame, dict]:
    """Join the CSVs of several runs (a later tag replaces an earlier one's rows of the same cell)."""
    parts = [pd.read_csv(out / f"coverage_study{t}.csv", keep_default_na=False, na_values=[""]) for t in tags]
    key = ["family", "target", "setting", "n", "method", "estimand", "term"]
    df = _sorted(pd.concat(parts, ignore_index=True).drop_duplicates(key, keep="last"))
    uniq = lambda c: " / ".join(dict.fromkeys(df[c].astype(str)))  # noqa: E731
    fams = [f for f in FAMILIES if f in set(df["family"])]
    meta = {"reps": int(df["reps"].max()), "seed": int(df["seed"].iloc[0]), "code": uniq("code"),
            "cpu": uniq("cpu"), "flags": uniq("flags"), "cores": os.cpu_count(), "procs": uniq("procs"),
            "load_start": uniq("load_start"), "load_end": uniq("load_end"),
            "elapsed": float(df.drop_duplicates("run_seconds")["run_seconds"].sum()),
            "skipped": cells(tuple(fams))[1], "title": title}
    return df, meta


def _family_lines(tab: pd.DataFrame) -> dict:
    """(family, method, estimand) -> (cells in the goal, cells, lowest, highest coverage)."""
    out = {}
    for key, g in tab.groupby(["family", "method", "estimand"], sort=False):
        out[key] = (int(g["ok"].sum()), len(g), float(g["coverage"].min()), float(g["coverage"].max()))
    return out


def summary_markdown(before: pd.DataFrame, after: pd.DataFrame, names: tuple) -> str:
    """Before/after in one line per family, method and target: cells in the goal and coverage range."""
    b, a = _family_lines(summary_table(before)), _family_lines(summary_table(after))
    codes = [" / ".join(dict.fromkeys(d["code"].astype(str))) if "code" in d else "?" for d in (before, after)]
    lines = [
        "# Coverage where survey users stand: before and after issue 13",
        "",
        f"Generated by `benchmarks/coverage_study.py --compare` from `{names[0]}` (code {codes[0]}) and "
        f"`{names[1]}` (code {codes[1]}); {int(after['reps'].max())} repetitions per cell. A cell is one "
        "(setting, pilot size n in {50, 100, 200, 500}); for shares its worst option counts. Goal: coverage in "
        "[93.5%, 96.5%] (Monte Carlo s.e. about 0.5 points). Families: overlap = pilot drawn from a "
        "simulated frame, n/N in {0.05, 0.2, 0.5}; rare = one option with truth 1%, 3% or 5%; weighted = "
        "unequal-probability pilot, Kish deff 1.5 or 3; anes / gss = pilots resampled from the real "
        "respondents (ANES 1996 self-placement, GSS 2018 military spending) with the embedded model's "
        "stored answers, the full sample as the frame.",
        "",
        "| family | method | target | cells in goal, before | coverage before | cells in goal, after | coverage after |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for key in a:
        fam, meth, est = key
        ob = b.get(key)
        ok_a, n_a, lo_a, hi_a = a[key]
        before_txt = ("-", "-") if ob is None else (f"{ob[0]} / {ob[1]}", f"{100 * ob[2]:.1f}-{100 * ob[3]:.1f}%")
        lines.append(f"| {fam} | {meth} | {est} | {before_txt[0]} | {before_txt[1]} | {ok_a} / {n_a} | "
                     f"{100 * lo_a:.1f}-{100 * hi_a:.1f}% |")
    tab = summary_table(after)
    miss = tab[~tab["ok"]]
    lines += ["", f"After: {int(tab['ok'].sum())} of {len(tab)} (cell, method, target) rows in the goal. "
              "The rows that miss, with the reason read from the numbers, are listed in the full table's "
              "section \"Cells that miss and why\"."]
    if len(miss):
        worst = miss.loc[(miss["coverage"] - 0.95).abs().idxmax()]
        lines.append(f"Furthest from 95%: {worst['family']} {worst['target']} {worst['setting']} n = {worst['n']} "
                     f"({worst['method']}, {worst['term']}): {100 * worst['coverage']:.1f}% -- {classify(worst)}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--n", type=int, nargs="+", default=list(PILOT_SIZES))
    ap.add_argument("--procs", type=int, default=0, help="worker processes, at most 2 (0: 2 if load < 2)")
    ap.add_argument("--tag", default="", help="suffix of the output files, e.g. _before")
    ap.add_argument("--title", default="")
    ap.add_argument("--merge", nargs="+", metavar="TAG",
                    help="no simulation: join the CSVs of these runs (later tags win) into coverage_study{--tag}")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="no simulation: write coverage_study_summary.md from two runs' CSVs (tags)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.compare:
        files = [f"coverage_study{t}.csv" for t in args.compare]
        dfs = [pd.read_csv(out / f, keep_default_na=False, na_values=[""]) for f in files]
        (out / "coverage_study_summary.md").write_text(summary_markdown(*dfs, names=tuple(files)))
        print(f"wrote {out / 'coverage_study_summary.md'}")
        return 0
    if args.merge:
        df, meta = merge(args.merge, out, args.title)
        write(df, meta, out, args.tag)
        return 0
    grid, skipped = cells(tuple(args.families), tuple(args.targets), tuple(args.n))
    load_start = load()
    procs = args.procs or (2 if float(load_start.split()[0]) < 2.0 else 1)
    procs = max(1, min(2, procs))
    t0 = time.perf_counter()
    if procs == 1:
        parts = [run_cell(c, args.reps, args.seed) for c in grid]
    else:
        from joblib import Parallel, delayed

        # longest cells first: logistic and big frames
        order = sorted(grid, key=lambda c: (c.target != "logistic", -c.frame_size))
        parts = Parallel(n_jobs=procs, verbose=5)(delayed(run_cell)(c, args.reps, args.seed) for c in order)
    elapsed = time.perf_counter() - t0
    df = _sorted(pd.DataFrame([r for p in parts for r in p]))
    meta = {"reps": args.reps, "seed": args.seed, "code": code_version(),
            **machine(), "procs": procs, "load_start": load_start, "load_end": load(), "elapsed": elapsed,
            "skipped": skipped, "title": args.title}
    for k in ("cpu", "flags", "procs", "load_start", "load_end", "code", "seed"):
        df[k] = meta[k]
    df["run_seconds"] = round(elapsed, 1)
    write(df, meta, out, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
