"""Active pilot selection against simple random pilots on real and synthetic surveys (issue 15).

The setting
-----------
* **Frames** (resampling the real humans): for each item, the respondents with a human answer form a
  fixed finite frame; the LLM's stored answers are known for all of them. The estimand is the frame
  mean of the item's score; only the pilot is redrawn (2,000 repetitions per cell, seeded).

  - synthetic misinformation survey (``load_misinfo``, SYNTHETIC data): items f01, f03, t04, t09 and the
    synthetic simulator's answers (``misinfo_llm_probs``);
  - ANES 1996 (``load_anes96_llm``): self_lr and party_id, the embedded SmolLM2's stored zero-shot answers;
  - GSS 2018 spending battery (``load_gss_spending_llm``): natarms and natfare, the embedded model's
    stored zero-shot answers;
  - a labelled control: the misinfo survey's f01 answers with a PLANTED simulator ``f = y + e``, ``e``
    normal with a row-specific sd (lognormal, CV about 0.9) that the simulator reports as its
    uncertainty: what active selection gives when the error varies and is known.

* **Designs at equal pilot size n** (all estimated by ``rectify.estimators.active.active_mean`` with the
  power-tuned working model ``c + lam f``; on SRS this is the PPI++/regression estimator with the
  finite-population correction):

  - ``srs``: simple random sampling (the baseline of every ratio);
  - ``neyman/prior``: 3 quantile bins of the LLM's own uncertainty (the sd of its answer distribution)
    crossed with a covariate (ideology; ANES: education in 3 groups; GSS: degree in 3 groups),
    Neyman allocation;
  - ``active/prior``: ``pi ∝`` the LLM's uncertainty, 20% uniform floor, Poisson and fixed-size
    (randomised systematic PPS);
  - ``active/cal50 two-phase``: 50 humans by SRS fit the error model (squared residuals of ``c + lam f``
    on the LLM's sd, its prediction and the covariate's dummies); the other n - 50 are drawn actively
    (fixed size) from the rest of the frame; estimate = (phase-1 answers + the rest's active estimate) / N,
    valid conditionally on phase 1;
  - ``*/oracle``: the same error model fitted on every frame respondent (NOT a usable design: the upper
    bound of what an error model on these features can give).

  ``ppi++ (superpop)``: ``rectify.estimators.ppi_mean`` on the SRS draws (no finite-population
  correction), a reference anchor for the widths.

* **Planning**: the half-width ``design_planning.predict_widths`` predicts for each design before
  anyone is surveyed, from one seeded 50-person calibration sample (``calibrated_sigma``).

Run: ``nice -n 10 python benchmarks/active_study.py [--reps 2000]``; writes
``benchmarks/results/active_study.{csv,md}``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _provenance import code_version  # noqa: E402

from rectify import datasets as ds  # noqa: E402
from rectify.design_planning import calibrated_sigma, predict_widths  # noqa: E402
from rectify.estimators.active import active_mean  # noqa: E402
from rectify.estimators.ppi import ppi_mean  # noqa: E402
from rectify.pilot_design import draw_positions, inclusion_probabilities, llm_uncertainty  # noqa: E402

SEED = 20261215
RESULTS = Path(__file__).resolve().parent / "results"
N_CAL = 50
UNIFORM = 0.2
#: a design "pays" only if it saves at least this share of the SRS width (and more than 2 Monte-Carlo s.e.)
PRACTICAL = 0.02


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _codes(values) -> np.ndarray:
    s = pd.Series(values).astype(str).to_numpy()
    return np.unique(s, return_inverse=True)[1]


def _items():
    """(dataset, item, y, f, the LLM's uncertainty, covariate codes) per item."""
    out = []
    m = ds.load_misinfo()
    for it in ("f01", "f03", "t04", "t09"):
        ok = m[it].notna().to_numpy()
        sub = m[ok]
        out.append(("misinfo (synthetic)", it, sub[it].to_numpy(float), sub[f"{it}_llm"].to_numpy(float),
                    llm_uncertainty(ds.misinfo_llm_probs(sub, it), np.arange(1, 5.0)), _codes(sub["ideology"])))
    # control: the same humans (f01), a planted simulator whose error sd varies and which knows it
    sub = m[m["f01"].notna()]
    rng = np.random.default_rng(SEED)
    s = np.exp(rng.normal(-0.7, 0.8, len(sub)))
    y = sub["f01"].to_numpy(float)
    out.append(("control: planted errors", "f01", y, y + rng.normal(0, s), s, _codes(sub["ideology"])))
    a = ds.load_anes96_llm()
    educ3 = np.where(a["educ"] <= 3, 0, np.where(a["educ"] <= 4, 1, 2))
    for it, scores in (("self_lr", np.arange(1, 8.0)), ("party_id", np.arange(0, 7.0))):
        ok = (a[it].notna() & a[f"{it}_llm"].notna()).to_numpy()
        P = a.loc[ok, [f"{it}_p{k}" for k in range(1, 8)]].to_numpy(float)
        out.append(("ANES 1996", it, a.loc[ok, it].to_numpy(float), a.loc[ok, f"{it}_llm"].to_numpy(float),
                    llm_uncertainty(P, scores), educ3[ok]))
    g = ds.load_gss_spending_llm()
    deg3 = np.where(g["degree"] <= 1, 0, np.where(g["degree"] <= 2, 1, 2))
    for it in ("natarms", "natfare"):
        ok = (g[it].notna() & g[f"{it}_zs_llm"].notna()).to_numpy()
        P = g.loc[ok, [f"{it}_zs_p{k}" for k in range(1, 4)]].to_numpy(float)
        out.append(("GSS 2018", it, g.loc[ok, it].to_numpy(float), g.loc[ok, f"{it}_zs_llm"].to_numpy(float),
                    llm_uncertainty(P, np.arange(1, 4.0)), deg3[ok]))
    return out


def _features(f, sd, cov):
    dummies = (cov[:, None] == np.arange(1, cov.max() + 1)[None, :]).astype(float)
    return np.column_stack([sd, f, dummies])


def _run_fixed_pi(y, f, pi, sampling, strata, reps, rng):
    """Estimates, standard errors and interval ends over ``reps`` draws of one fixed design."""
    out = np.empty((reps, 4))
    for r in range(reps):
        pos = draw_positions(pi, "poisson" if sampling == "poisson" else "fixed", rng, strata)
        kind = "stratified" if strata is not None else sampling
        res = active_mean(y[pos], f[pos], f, pi[pos], sampling=kind, strata=None if strata is None else strata[pos])
        lo, hi = res.conf_int()
        out[r] = res.estimate[0], res.std_error[0], lo[0], hi[0]
    return out


def _run_ppi(y, f, n, reps, rng):
    N = y.shape[0]
    out = np.empty((reps, 4))
    for r in range(reps):
        pos = rng.choice(N, size=n, replace=False)
        res = ppi_mean(y[pos], f[pos], f, "ppi++")
        lo, hi = res.conf_int()
        out[r] = res.estimate[0], res.std_error[0], lo[0], hi[0]
    return out


def _run_two_phase(y, f, feat, n, reps, rng):
    """Phase 1: N_CAL by SRS (fits the error model); phase 2: n - N_CAL drawn actively from the whole frame.

    Each phase's estimator is unbiased for the frame mean (phase 2 conditionally on phase 1), so the
    combination with the fixed weight N_CAL / n is unbiased and its variance is the weighted sum of the
    two (their covariance is zero: E[phase 2 | phase 1] is the truth).
    """
    N = y.shape[0]
    w = N_CAL / n
    out = np.empty((reps, 4))
    pi1 = np.full(N_CAL, N_CAL / N)
    from scipy.stats import t as student

    for r in range(reps):
        s1 = rng.choice(N, size=N_CAL, replace=False)
        r1 = active_mean(y[s1], f[s1], f, pi1, sampling="fixed")
        sig = calibrated_sigma(y[s1], f[s1], feat[s1], f, feat)
        pi, _ = inclusion_probabilities(sig, n - N_CAL, "active", uniform=UNIFORM)
        pos = draw_positions(pi, "fixed", rng)
        r2 = active_mean(y[pos], f[pos], f, pi[pos], sampling="fixed")
        est = w * r1.estimate[0] + (1 - w) * r2.estimate[0]
        se = float(np.hypot(w * r1.std_error[0], (1 - w) * r2.std_error[0]))
        q = student.ppf(0.975, n - 4)
        out[r] = est, se, est - q * se, est + q * se
    return out


def _summarise(draws, truth):
    est, se, lo, hi = draws.T
    reps = est.size
    cover = float(((lo <= truth) & (truth <= hi)).mean())
    width = hi - lo
    return {"reps": reps, "half_width": float(width.mean() / 2), "half_width_mcse": float(width.std() / 2 / np.sqrt(reps)),
            "coverage": cover, "coverage_mcse": float(np.sqrt(cover * (1 - cover) / reps)),
            "bias": float(est.mean() - truth), "bias_z": float((est.mean() - truth) / (est.std() / np.sqrt(reps))),
            "emp_sd": float(est.std()), "mean_se": float(se.mean())}


def _cells(y, f, sd, cov, n, reps, seed):
    N = y.shape[0]
    feat = _features(f, sd, cov)
    oracle = calibrated_sigma(y, f, feat, f, feat)
    rng0 = np.random.default_rng(seed)
    cal = rng0.choice(N, size=N_CAL, replace=False)
    sigma_cal = calibrated_sigma(y[cal], f[cal], feat[cal], f, feat)
    specs = [("srs", "-", "fixed", "srs", None), ("neyman", "prior", "fixed", "neyman", sd),
             ("active", "prior", "poisson", "active", sd), ("active", "prior", "fixed", "active", sd),
             ("neyman", "oracle", "fixed", "neyman", oracle), ("active", "oracle", "fixed", "active", oracle)]
    rows = []
    for k, (design, model, sampling, kind, err) in enumerate(specs):
        rng = np.random.default_rng([seed, k])
        pi, st = inclusion_probabilities(np.ones(N) if err is None else err, n, kind, uniform=UNIFORM, n_bins=3,
                                         strata_codes=cov)
        t0 = time.perf_counter()
        draws = _run_fixed_pi(y, f, pi, sampling, st, reps, rng)
        pred, pred_o = (predict_widths(sig, n, designs=(kind,), error=err, uniform=UNIFORM, n_bins=3,
                                       strata_codes=cov) for sig in (sigma_cal, oracle))
        rows.append({"design": design, "error_model": model, "sampling": sampling,
                     "min_pi_x_N_over_n": float(pi.min() * N / n), "max_pi": float(pi.max()),
                     "predicted_half_width": float(pred["half_width"].iloc[0]),
                     "predicted_half_width_oracle": float(pred_o["half_width"].iloc[0]),
                     **_summarise(draws, y.mean()), "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    draws = _run_two_phase(y, f, feat, n, reps, np.random.default_rng([seed, 10]))
    rows.append({"design": "active", "error_model": f"cal{N_CAL} two-phase", "sampling": "fixed",
                 "min_pi_x_N_over_n": np.nan, "max_pi": np.nan, "predicted_half_width": np.nan,
                 "predicted_half_width_oracle": np.nan,
                 **_summarise(draws, y.mean()), "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    draws = _run_ppi(y, f, n, reps, np.random.default_rng([seed, 11]))
    rows.append({"design": "srs", "error_model": "ppi++ (superpop)", "sampling": "fixed", "min_pi_x_N_over_n": 1.0,
                 "max_pi": n / N, "predicted_half_width": np.nan,
                 "predicted_half_width_oracle": np.nan, **_summarise(draws, y.mean()),
                 "seconds": time.perf_counter() - t0})
    return rows


def _verdict(row) -> str:
    low_cover = row["coverage"] < 0.95 - 3 * max(row["coverage_mcse"], np.sqrt(0.95 * 0.05 / row["reps"]))
    if row["design"] == "srs" and row["error_model"] == "-":
        return "baseline" + (" (undercovers)" if low_cover else "")
    if row["error_model"] == "ppi++ (superpop)":
        return "reference" + (" (undercovers)" if low_cover else "")
    tol = max(PRACTICAL, 2 * (row["half_width_mcse"] / row["half_width"] + row["srs_mcse_rel"]))
    if low_cover:
        word = "undercovers"
    elif row["ratio_to_srs"] < 1 - tol:
        word = "narrower than SRS"
    elif row["ratio_to_srs"] > 1 + tol:
        word = "WIDER than SRS: does not pay"
    else:
        word = f"no better than SRS (within {tol:.0%})"
    return word + (" (oracle: not a usable design)" if row["error_model"] == "oracle" else "")


def _df_draws(y, f, pi, sampling, strata, reps, rng):
    """Per draw: estimate, s.e., today's df, the Kish df, the stratified Satterthwaite df and an HC2-type s.e."""
    from rectify.estimators.active import design_variance

    N = y.shape[0]
    out = np.empty((reps, 6))
    for r in range(reps):
        pos = draw_positions(pi, "poisson" if sampling == "poisson" else "fixed", rng, strata)
        kind = "stratified" if strata is not None else sampling
        st = None if strata is None else strata[pos]
        res = active_mean(y[pos], f[pos], f, pi[pos], sampling=kind, strata=st)
        p = pi[pos]
        w = 1 / p
        a = (1 - p) / p**2
        a = a if (a > 0).any() else w
        lam = res.tuning["lambda"]
        c = float(np.sum(a * (y[pos] - lam * f[pos])) / a.sum())
        e = y[pos] - c - lam * f[pos]
        X = np.column_stack([np.ones(pos.size), f[pos]])
        XtA = (X * a[:, None]).T
        h = np.clip(np.einsum("ij,ji->i", X, np.linalg.solve(XtA @ X, XtA)), 0, 0.99)
        se2 = float(np.sqrt(design_variance(e / np.sqrt(1 - h), p, kind, st)[0, 0])) / N
        kish = w.sum() ** 2 / (w**2).sum() - 3
        satt = np.nan
        if st is not None:
            g, d = [], []
            for hh in np.unique(st):
                rows = st == hh
                nh = int(rows.sum())
                g.append((nh / p[rows][0]) ** 2 * (1 - p[rows][0]) * np.var(e[rows], ddof=1) / nh)
                d.append(nh - 1)
            g = np.asarray(g)
            satt = g.sum() ** 2 / np.sum(g**2 / np.asarray(d)) - 2
        out[r] = res.estimate[0], res.std_error[0], res.df[0], min(kish, res.df[0]), satt, se2
    return out


def df_check(reps: int, sizes, out: Path) -> None:
    """Issue 15, part 3: would a design-based df (Kish, or Satterthwaite for strata) fix the coverage?

    The same draws are judged with each reference, so the differences between columns are exact for
    these draws (paired); the coverage itself carries a Monte-Carlo s.e. of about 1 point at 500 reps."""
    from scipy.stats import t as student

    load0, t0 = os.getloadavg(), time.time()
    rows = []
    for j, (dataset, item, y, f, sd, cov) in enumerate(_items()):
        for n in sizes:
            for k, (design, sampling, kind, err) in enumerate([("srs", "fixed", "srs", None),
                                                                ("neyman", "fixed", "neyman", sd),
                                                                ("active", "poisson", "active", sd),
                                                                ("active", "fixed", "active", sd)]):
                N = y.shape[0]
                pi, st = inclusion_probabilities(np.ones(N) if err is None else err, n, kind, uniform=UNIFORM,
                                                 n_bins=3, strata_codes=cov)
                d = _df_draws(y, f, pi, sampling, st, reps, np.random.default_rng([SEED, j, n, k]))
                est, se, df_now, df_kish, df_satt, se2 = d.T
                miss = np.abs(est - y.mean())

                def cover(s, dfv):
                    return float((miss <= student.ppf(0.975, np.maximum(dfv, 1)) * s).mean())

                rows.append({"dataset": dataset, "item": item, "n": n, "design": design, "sampling": sampling,
                             "df_now": df_now.mean(), "df_kish": df_kish.mean(),
                             "df_satt": np.nanmean(df_satt) if st is not None else np.nan,
                             "cover_now": cover(se, df_now), "cover_kish": cover(se, df_kish),
                             "cover_satt": cover(se, df_satt) if st is not None else np.nan,
                             "cover_hc2": cover(se2, df_now), "emp_sd_over_se": est.std() / se.mean()})
            print(f"{dataset} {item} done ({time.time() - t0:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    load1 = os.getloadavg()
    lines = ["# Active estimators: a design-based df for the t reference? (issue 15, part 3)", "",
             f"{reps} repetitions per cell (paired: every reference judges the same draws), seed {SEED}, pilot sizes "
             f"{list(sizes)}; {time.time() - t0:.0f} s on {_cpu()} ({os.cpu_count()} CPUs), load average "
             f"{load0[0]:.1f} at start and {load1[0]:.1f} at the end, `nice -n 5`; code {code_version()}. Generated by "
             "`benchmarks/active_study.py --df-check` (frames and designs of the active study: prior error model).",
             "", "`now`: Student t with n - 3 df (today's rule: n - 1 - the two fitted working coefficients); `kish`: "
             "the Kish effective n of the weights 1/pi minus 3 (never more than today's); `satt`: Satterthwaite's df "
             "of the stratified variance (neyman only); `hc2`: not a df but the residuals divided by "
             "sqrt(1 - leverage) of the weighted working fit (today's df). `emp sd / se`: the estimate's sd over "
             "the draws / the mean standard error.", "",
             "Summary (computed from the table):", ""]
    ctl = df[df["dataset"].str.startswith("control")]
    for _, r in ctl.iterrows():
        sat = f", Satterthwaite {r['cover_satt']:.2%}" if np.isfinite(r["cover_satt"]) else ""
        lines.append(f"* control (planted errors), n = {r['n']}, {r['design']} / {r['sampling']}: today {r['cover_now']:.2%}, "
                     f"Kish df {r['cover_kish']:.2%}{sat}, HC2-type {r['cover_hc2']:.2%}; emp sd / se "
                     f"{r['emp_sd_over_se']:.3f}.")
    real = df[~df["dataset"].str.startswith("control")]
    lines += [f"* real and synthetic surveys ({len(real)} cells): the Kish df changes the coverage by "
              f"{(real['cover_kish'] - real['cover_now']).min():+.2%} to {(real['cover_kish'] - real['cover_now']).max():+.2%}, "
              f"Satterthwaite (neyman) by {(real['cover_satt'] - real['cover_now']).min():+.2%} to "
              f"{(real['cover_satt'] - real['cover_now']).max():+.2%}, HC2-type by "
              f"{(real['cover_hc2'] - real['cover_now']).min():+.2%} to {(real['cover_hc2'] - real['cover_now']).max():+.2%}.",
              "",
             "| dataset | item | n | design | sampling | df now | df kish | df satt | cover now | cover kish | "
             "cover satt | cover hc2 | emp sd / se |", "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in df.iterrows():
        sat = "" if not np.isfinite(r["df_satt"]) else f"{r['df_satt']:.0f}"
        csat = "" if not np.isfinite(r["cover_satt"]) else f"{r['cover_satt']:.1%}"
        lines.append(f"| {r['dataset']} | {r['item']} | {r['n']} | {r['design']} | {r['sampling']} | {r['df_now']:.0f} | "
                     f"{r['df_kish']:.0f} | {sat} | {r['cover_now']:.1%} | {r['cover_kish']:.1%} | {csat} | "
                     f"{r['cover_hc2']:.1%} | {r['emp_sd_over_se']:.3f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False, float_format="%.6g")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--df-check", action="store_true",
                    help="issue 15 part 3: coverage of the t interval under design-based df rules "
                         "(writes results/active_df_check.{csv,md})")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--out", default=str(RESULTS / "active_study"))
    ap.add_argument("--from-csv", action="store_true",
                    help="rewrite the verdicts and the .md from an existing .csv (no simulation)")
    args = ap.parse_args(argv)
    if args.df_check:
        df_check(args.reps, args.sizes, RESULTS / "active_df_check")
        return
    if args.from_csv:
        df = pd.read_csv(args.out + ".csv")
        meta = df.iloc[0]
        args.reps, args.sizes = int(meta["reps"]), sorted(df["n"].unique().tolist())
        _finish(df)
        _write_md(df, args, (meta["load_start"],), (meta["load_end"],), meta["elapsed_s"], args.out + ".md",
                  meta["code"])
        return
    load0 = os.getloadavg()
    t_start = time.time()
    rows = []
    for j, (dataset, item, y, f, sd, cov) in enumerate(_items()):
        for n in args.sizes:
            for row in _cells(y, f, sd, cov, n, args.reps, SEED + 1000 * j + n):
                rows.append({"dataset": dataset, "item": item, "N": y.shape[0], "n": n, **row})
            print(f"{dataset} {item} n={n} done ({time.time() - t_start:.0f} s)", flush=True)
    df = pd.DataFrame(rows)
    _finish(df)
    load1 = os.getloadavg()
    elapsed = time.time() - t_start
    code = code_version()
    df["load_start"], df["load_end"], df["elapsed_s"], df["code"] = load0[0], load1[0], round(elapsed), code
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["srs_mcse_rel"]).to_csv(args.out + ".csv", index=False, float_format="%.6g")
    _write_md(df, args, load0, load1, elapsed, args.out + ".md", code)


def _finish(df: pd.DataFrame) -> None:
    """Ratios to the SRS baseline of the same item and n, and the verdicts (in place)."""
    base = df[(df["design"] == "srs") & (df["error_model"] == "-")].set_index(["dataset", "item", "n"])
    key = list(zip(df["dataset"], df["item"], df["n"]))
    df["ratio_to_srs"] = df["half_width"].to_numpy() / base.loc[key, "half_width"].to_numpy()
    df["srs_mcse_rel"] = (base.loc[key, "half_width_mcse"] / base.loc[key, "half_width"]).to_numpy()
    df["predicted_ratio_to_srs"] = df["predicted_half_width"].to_numpy() / base.loc[key, "predicted_half_width"].to_numpy()
    df["verdict"] = [_verdict(r) for _, r in df.iterrows()]


def _write_md(df, args, load0, load1, elapsed, path, code) -> None:
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = " ".join(fl for fl in ("avx2", "avx512f", "amx_bf16", "avx512_bf16") if f" {fl}" in text)
    except OSError:
        pass
    lines = ["# Active pilot selection vs simple random pilots (issue 15)", "",
             f"{args.reps} repetitions per cell, seed {SEED}, pilot sizes {args.sizes}; {elapsed:.0f} s on {_cpu()} "
             f"({os.cpu_count()} CPUs; flags: {flags or 'n/a'}), load average {load0[0]:.1f} at start and "
             f"{load1[0]:.1f} at the end, run with `nice -n 10`; code {code}. Generated by "
             f"`benchmarks/active_study.py`.", "",
             "Each item's respondents with a human answer form a fixed frame (real humans resampled; the misinfo "
             "survey is SYNTHETIC); estimand: the frame mean of the item score; every design at the same pilot "
             "size n, estimated by `active_mean` (power-tuned `c + lam f`). `ratio` = mean half-width / SRS's on "
             "the same item and n; `pred` = half-width predicted by `predict_widths` from one 50-person "
             "calibration sample before any pilot is drawn (ratio to SRS's prediction in brackets); `pred oracle` "
             "= the same prediction from the error model fitted on the whole frame (checks the formula); coverage of "
             "the nominal 95% t interval with its Monte-Carlo s.e.; `bias z` = bias / Monte-Carlo s.e. "
             "`prior` = the LLM's own uncertainty (sd of its answer distribution) as the expected error; "
             "`oracle` = error model fitted on every frame respondent (an upper bound, not a usable design); "
             f"`cal{N_CAL} two-phase` = {N_CAL} SRS humans fit the error model, the other n - {N_CAL} are "
             "drawn actively. Verdicts are computed from the numbers: a design is narrower than SRS only if it "
             f"saves more than {PRACTICAL:.0%} of the width and more than 2 Monte-Carlo s.e. of the width ratio; "
             "undercoverage: below 95% by more than 3 Monte-Carlo s.e.", ""]
    usable = df[~df["error_model"].isin(["-", "oracle", "ppi++ (superpop)"]) & ~df["dataset"].str.startswith("control")]
    lines.append("Summary (usable designs, real and synthetic surveys; the planted control is listed apart):")
    lines.append("")
    for (design, model, sampling), g in usable.groupby(["design", "error_model", "sampling"], sort=False):
        better = int((g["verdict"] == "narrower than SRS").sum())
        wider = int(g["verdict"].str.startswith("WIDER").sum())
        lines.append(f"* {design} / {model} / {sampling}: width ratio to SRS {g['ratio_to_srs'].min():.3f}-"
                     f"{g['ratio_to_srs'].max():.3f} (median {g['ratio_to_srs'].median():.3f}); coverage "
                     f"{g['coverage'].min():.1%}-{g['coverage'].max():.1%}; narrower than SRS in {better} of "
                     f"{len(g)} cells, wider in {wider}.")
    orc = df[(df["error_model"] == "oracle") & ~df["dataset"].str.startswith("control")]
    lines.append(f"* oracle error models (not usable): width ratio {orc['ratio_to_srs'].min():.3f}-"
                 f"{orc['ratio_to_srs'].max():.3f}.")
    ctl = df[df["dataset"].str.startswith("control") & ~df["error_model"].isin(["-", "ppi++ (superpop)"])]
    for _, r in ctl.iterrows():
        lines.append(f"* control (planted errors), n = {r['n']}, {r['design']} / {r['error_model']} / {r['sampling']}: "
                     f"ratio {r['ratio_to_srs']:.3f}, coverage {r['coverage']:.1%}.")
    summary = [f"# Active pilot selection: summary ({args.reps} repetitions per cell, code {code})", "",
               f"Generated by `benchmarks/active_study.py` with `{Path(path).name}` (every cell there).", ""]
    summary += lines[lines.index("Summary (usable designs, real and synthetic surveys; the planted control is "
                                 "listed apart):"):]
    Path(path).with_name(Path(path).stem + "_summary.md").write_text("\n".join(summary) + "\n")
    lines += ["", "| dataset | item | N | n | design | error model | sampling | half-width | ratio | pred (ratio) | "
              "pred oracle | coverage | bias z | emp sd | mean se | verdict |", "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|"
              "---:|---:|---:|---:|---|"]
    for _, r in df.iterrows():
        pred = "" if not np.isfinite(r["predicted_half_width"]) else \
            f"{r['predicted_half_width']:.4f} ({r['predicted_ratio_to_srs']:.3f})"
        pred_o = "" if not np.isfinite(r["predicted_half_width_oracle"]) else f"{r['predicted_half_width_oracle']:.4f}"
        lines.append(f"| {r['dataset']} | {r['item']} | {r['N']} | {r['n']} | {r['design']} | {r['error_model']} | "
                     f"{r['sampling']} | {r['half_width']:.4f} | {r['ratio_to_srs']:.3f} | {pred} | {pred_o} | "
                     f"{r['coverage']:.1%} ({r['coverage_mcse']:.1%}) | {r['bias_z']:+.1f} | {r['emp_sd']:.4f} | "
                     f"{r['mean_se']:.4f} | {r['verdict']} |")
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
