"""Fine-tuning family benchmarks: speed and fidelity of LoRA + head on the embedded SmolLM2,
against the covariates-only baseline and prompting; and the cross-fitting coverage study.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_finetune.py fidelity     # SmolLM2 LoRA vs baseline vs prompting
    .venv/bin/python benchmarks/bench_finetune.py coverage     # in-sample PPI vs cross-fitted PPI
    .venv/bin/python benchmarks/bench_finetune.py timing       # LoRA fit time only
    .venv/bin/python benchmarks/bench_finetune.py speed        # 75 rows x 4 items, old vs new
    .venv/bin/python benchmarks/bench_finetune.py all

Writes ``benchmarks/results/finetune_fidelity.csv``, ``finetune_timing.csv``,
``finetune_timing_idle.csv``, ``finetune_crossfit_coverage.csv`` and ``finetune_speed.{md,csv,json}``. Numbers depend on the machine: the script records it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
COVARIATES = ["age", "gender", "education", "region", "ideology"]


def _machine() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.node()} {os.cpu_count()} cpu, torch threads {torch.get_num_threads()}, {dev}"


def _metrics(name, proba, y_codes, seconds=None, extra=None):
    """Accuracy, log-loss and expected-score error on the answered rows."""
    p = np.clip(np.asarray(proba, float), 1e-12, 1.0)
    p = p / p.sum(1, keepdims=True)
    n = len(y_codes)
    s = np.arange(1, p.shape[1] + 1)
    exp = p @ s
    row = {
        "model": name,
        "n_eval": n,
        "accuracy": float(np.mean(np.argmax(p, 1) == y_codes)),
        "log_loss": float(-np.mean(np.log(p[np.arange(n), y_codes]))),
        "mean_expected": float(exp.mean()),
        "mean_human": float((y_codes + 1).mean()),
        "corr_expected_human": float(np.corrcoef(exp, y_codes + 1)[0, 1]) if exp.std() > 0 else np.nan,
        "seconds": seconds,
    }
    row.update(extra or {})
    return row


def fidelity(item_name: str = "f03", n_pilot: int = 200, n_eval: int = 400, seed: int = 1,
             prompting: bool = True) -> pd.DataFrame:
    from rectify.datasets import draw_pilot, load_misinfo, misinfo_items, misinfo_llm_probs
    from rectify.llm.baseline import CovariateClassifier
    from rectify.llm.finetune import LoRAClassifier

    df = load_misinfo()
    item = {it.name: it for it in misinfo_items()}[item_name]
    pilot = draw_pilot(df, n_pilot, random_state=seed)
    rest = df.drop(pilot.index)
    held = rest[rest[item_name].notna()].sample(n_eval, random_state=seed + 1)
    y_eval = held[item_name].to_numpy().astype(int) - 1
    Xp, yp = pilot[COVARIATES], pilot[item_name].to_numpy()
    rows, timing = [], []

    marg = np.bincount(yp[~np.isnan(yp)].astype(int) - 1, minlength=4) / np.sum(~np.isnan(yp))
    rows.append(_metrics("pilot marginal shares", np.tile(marg, (n_eval, 1)), y_eval))
    for kind in ("ordinal", "multinomial", "gbm"):
        t0 = time.perf_counter()
        clf = CovariateClassifier(kind=kind, options=[1, 2, 3, 4], missing_y="skip",
                                  random_state=0).fit(Xp, yp)
        rows.append(_metrics(f"covariates: {kind}", clf.predict_proba(held[COVARIATES]), y_eval,
                             time.perf_counter() - t0))
    rows.append(_metrics("bundled LLM-like simulator (dataset *_llm)",
                         misinfo_llm_probs(held, item_name), y_eval))

    import torch

    t0 = time.perf_counter()
    lora = LoRAClassifier(backbone="smollm2", item=item, random_state=0)
    lora.fit(Xp, yp)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p_lora = lora.predict_proba(held[COVARIATES])
    pred_s = time.perf_counter() - t0
    _partial(rows, timing)
    rows.append(_metrics("LoRA+head SmolLM2-135M (defaults)", p_lora, y_eval, fit_s,
                         {"best_epoch": lora.best_epoch_, "epochs_run": len(lora.history_)}))
    timing.append({"task": f"LoRA fit, {n_pilot} pilot rows x 1 item, defaults (r=8, 3 epochs, "
                           f"bf16, batch 16, val 15%)", "seconds": fit_s,
                   "device": lora._device(), "n_missing_masked": int(lora.n_missing_[0]),
                   "history": str([{k: round(v, 4) for k, v in h.items()} for h in lora.history_])})
    timing.append({"task": f"LoRA predict_proba, {n_eval} rows", "seconds": pred_s,
                   "device": lora._device()})

    _partial(rows, timing)
    if prompting:
        from rectify.llm.local import LocalBackend
        from rectify.llm.simulator import PromptSimulator

        t0 = time.perf_counter()
        sim = PromptSimulator(backend=LocalBackend(batch_size=32), item=item).fit()
        p_prompt = sim.predict_proba(held[COVARIATES])
        sec = time.perf_counter() - t0
        ok = np.all(np.isfinite(p_prompt), axis=1)
        rows.append(_metrics("prompting SmolLM2-135M zero-shot", p_prompt[ok], y_eval[ok], sec))
        timing.append({"task": f"prompting zero-shot, {n_eval} rows (incl. model load)",
                       "seconds": sec, "device": "cpu"})
    out = pd.DataFrame(rows)
    out.insert(0, "item", item_name)
    out["n_pilot"] = n_pilot
    out["machine"] = _machine()
    tm = pd.DataFrame(timing)
    tm["machine"] = _machine()
    return out, tm


def _partial(rows, timing):
    """Write what is done so far (a long run on a loaded machine may be cut short)."""
    os.makedirs(RESULTS, exist_ok=True)
    pd.DataFrame(rows).assign(machine=_machine()).to_csv(
        os.path.join(RESULTS, "finetune_fidelity.csv"), index=False)
    if timing:
        pd.DataFrame(timing).assign(machine=_machine()).to_csv(
            os.path.join(RESULTS, "finetune_timing.csv"), index=False)


# ----------------------------------------------------------------------------- coverage study
CUTS = np.array([-1.0, 0.3, 1.5])


def _draw(n, rng):
    x = rng.normal(size=(n, 2))
    latent = x[:, 0] + 0.5 * x[:, 1] + rng.logistic(size=n)
    return x, np.digitize(latent, CUTS) + 1


def _true_mean():
    from scipy import special

    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    z = nodes * np.sqrt(1.25)
    w = weights / weights.sum()
    return 1.0 + sum(np.sum(w * special.expit(z - c)) for c in CUTS)


def _models():
    from sklearn.tree import DecisionTreeClassifier

    from rectify.llm.baseline import CovariateClassifier

    return {
        "unpruned tree (memorises the pilot)": lambda: DecisionTreeClassifier(random_state=0),
        "CovariateClassifier gbm": lambda: CovariateClassifier(kind="gbm", options=[1, 2, 3, 4],
                                                               max_iter=20, random_state=0),
        "CovariateClassifier ordinal": lambda: CovariateClassifier(kind="ordinal",
                                                                   options=[1, 2, 3, 4]),
    }


def coverage(reps: int = 2000, sizes=(100, 200), N: int = 2000, n_folds: int = 5,
             seed: int = 20261127, models=None, reps_by_model=None) -> pd.DataFrame:
    from threadpoolctl import threadpool_limits

    from rectify.estimators.crossfit import cross_fit, crossppi_mean

    truth = _true_mean()
    s = np.arange(1.0, 5.0)
    rows = []
    allm = _models()
    for name in (models or list(allm)):
        make = allm[name]
        R = (reps_by_model or {}).get(name, reps)
        for n in sizes:
            rng = np.random.default_rng([seed, n, len(name)])
            hits = {"classical": [], "PPI, in-sample predictions": [], "cross-fitted PPI": [],
                    "cross-fitted PPI++ (tuned lambda)": []}
            widths = {k: [] for k in hits}
            t0 = time.perf_counter()
            with threadpool_limits(1):
                for _ in range(R):
                    x, y = _draw(n, rng)
                    xp, _ = _draw(N, rng)
                    cf = cross_fit(make(), x, y, X_population=xp, n_folds=n_folds,
                                   random_state=rng, keep_estimators=False)
                    fitted = make().fit(x, y)
                    res = {
                        "classical": crossppi_mean(y, np.zeros(n), np.zeros(N), lam=0.0),
                        "PPI, in-sample predictions": crossppi_mean(
                            y, fitted.predict_proba(x) @ s, fitted.predict_proba(xp) @ s),
                        "cross-fitted PPI": crossppi_mean(y, cf.oof @ s, cf.population_folds @ s),
                        "cross-fitted PPI++ (tuned lambda)": crossppi_mean(
                            y, cf.oof @ s, cf.population_folds @ s, lam="tune"),
                    }
                    for k, r in res.items():
                        lo, hi = r.conf_int()
                        hits[k].append(lo[0] <= truth <= hi[0])
                        widths[k].append(hi[0] - lo[0])
            sec = time.perf_counter() - t0
            for k in hits:
                cov = float(np.mean(hits[k]))
                rows.append({"model": name, "n_pilot": n, "N": N, "n_folds": n_folds, "reps": R,
                             "method": k, "coverage": cov,
                             "mc_se": float(np.sqrt(0.95 * 0.05 / R)),
                             "mean_width": float(np.mean(widths[k])), "seconds": sec})
            print(pd.DataFrame(rows[-4:]).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def timing(n_pilot: int = 200, item_name: str = "f03", seed: int = 1) -> pd.DataFrame:
    """Fit time only (no evaluation): defaults, and adapters on the top 6 layers only."""
    from rectify.datasets import draw_pilot, load_misinfo, misinfo_items
    from rectify.llm.finetune import LoRAClassifier

    df = load_misinfo()
    item = {it.name: it for it in misinfo_items()}[item_name]
    pilot = draw_pilot(df, n_pilot, random_state=seed)
    X, y = pilot[COVARIATES], pilot[item_name].to_numpy()
    LoRAClassifier(backbone="smollm2", item=item, epochs=1, val_fraction=0.0).fit(X[:16], y[:16])
    rows = []
    for kw in ({}, {"lora_layers": 6}):
        t0, c0 = time.perf_counter(), time.process_time()
        clf = LoRAClassifier(backbone="smollm2", item=item, random_state=0, **kw).fit(X, y)
        rows.append({"task": f"LoRA fit, {n_pilot} pilot rows x 1 item, {kw or 'defaults'}",
                     "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                     "epochs_run": len(clf.history_), "best_epoch": clf.best_epoch_,
                     "device": clf._device(), "load_average": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows).assign(machine=_machine())


# ----------------------------------------------------------------------------- speed (issue 12)
SPEED_ITEMS = ("f01", "f02", "f03", "f04")
OLD_PREAMBLE = "You are a person with these characteristics: "


def _anchor_seconds() -> float:
    """A fixed workload (20 bf16 + 4 fp32 products of a 1856x576 by 576x1536 matrix, one thread),
    timed beside every configuration so that a change of machine load shows."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1856, 576, generator=g), torch.randn(1536, 576, generator=g)
    t0 = time.perf_counter()
    for dt, k in ((torch.bfloat16, 20), (torch.float32, 4)):
        a, b = x.to(dt), w.to(dt)
        for _ in range(k):
            torch.nn.functional.linear(a, b)
    torch.set_num_threads(before)
    return time.perf_counter() - t0


def _log_loss(p, y) -> float:
    ok = ~np.isnan(y)
    yy = y[ok].astype(int) - 1
    q = np.clip(np.asarray(p, float)[ok], 1e-12, 1.0)
    return float(-np.mean(np.log(q[np.arange(yy.size), yy])))


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def speed(n_pilot: int = 75, seed: int = 1, old_predict_rows: int = 300, reps: int = 1,
          configs=("old", "new", "new_fp32"), threads: int | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """LoRA fit on ``n_pilot`` rows x 4 items and prediction for all 1,500 people, for the old
    settings (all layers adapted, the whole bf16 backbone at every step, the prompting preamble in
    every persona) and the new defaults; held-out log-loss of each against the covariates-only
    classifier. The old prediction runs on ``old_predict_rows`` rows and is scaled to 1,500
    (it is the same full forward pass per row as the new one, with longer texts)."""
    import torch

    from rectify.datasets import draw_pilot, load_misinfo, misinfo_items
    from rectify.llm.baseline import CovariateClassifier
    from rectify.llm.finetune import LoRAClassifier
    from rectify.llm.persona import render_personas

    df = load_misinfo()
    meta = {it.name: it for it in misinfo_items()}
    items = [meta[n] for n in SPEED_ITEMS]
    pilot = draw_pilot(df, n_pilot, random_state=seed)
    held = ~df.index.isin(pilot.index)
    Y = df[list(SPEED_ITEMS)]
    settings = {
        "old": ("old settings: all 30 layers adapted, whole bf16 backbone every step, preamble",
                dict(lora_layers=None, cache_activations=False, dtype="bfloat16", lr=5e-4, epochs=3,
                     val_fraction=0.15, patience=1, class_weight="balanced"), True),
        "new": ("new defaults (lora_layers=2, frozen layers cached, dtype auto)", {}, False),
        "new_fp32": ("new defaults with dtype=float32 (what auto picks without bf16 flags)",
                     dict(dtype="float32"), False),
    }
    rows, quality = [], []
    for rep in range(reps):
        for key in configs:
            label, kw, preamble = settings[key]

            def x_of(frame):
                texts = list(render_personas(frame[COVARIATES]))
                return texts if preamble else [t[len(OLD_PREAMBLE):] for t in texts]

            load0, anchor = os.getloadavg()[0], _anchor_seconds()
            clf = LoRAClassifier(item=items, random_state=seed, num_threads=threads, **kw)
            _, fit_s, fit_cpu = _timed(lambda: clf.fit(x_of(pilot), pilot[list(SPEED_ITEMS)]))
            n_pred = old_predict_rows if key == "old" else len(df)
            part = df.iloc[:n_pred]
            proba, pred_s, pred_cpu = _timed(lambda: clf.predict_proba(x_of(part)))
            scale = len(df) / n_pred
            ntok = float(np.mean([len(t) for t in clf._tokenize(x_of(df.iloc[:200]))[0]]))
            mask = held[:n_pred]
            lls = [_log_loss(p[mask], Y.iloc[:n_pred][n].to_numpy()[mask])
                   for p, n in zip(proba, SPEED_ITEMS)]
            rows.append({"rep": rep + 1, "config": key, "settings": label, "dtype": clf.dtype_,
                         "cached_layers": clf.n_cached_layers_, "tokens_per_persona": round(ntok, 1),
                         "fit_s": fit_s, "fit_cpu_s": fit_cpu, "epochs_run": len(clf.history_),
                         "best_epoch": clf.best_epoch_, "predict_rows_timed": n_pred,
                         "predict_s_1500": pred_s * scale, "predict_cpu_s_1500": pred_cpu * scale,
                         "predict_extrapolated": n_pred != len(df),
                         "heldout_rows": int(mask.sum()), "log_loss_mean": float(np.mean(lls)),
                         **{f"log_loss_{n}": v for n, v in zip(SPEED_ITEMS, lls)},
                         "anchor_s": anchor, "load_before": load0, "load_after": os.getloadavg()[0],
                         "torch_threads": threads or torch.get_num_threads()})
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()},
                  flush=True)
            del clf
    for n in SPEED_ITEMS:
        y = pilot[n].to_numpy()
        cov = CovariateClassifier(kind="ordinal", options=[1, 2, 3, 4], missing_y="skip",
                                  random_state=0).fit(pilot[COVARIATES], y)
        counts = np.bincount(y[~np.isnan(y)].astype(int) - 1, minlength=4) + 0.5
        marg = np.tile(counts / counts.sum(), (int(held.sum()), 1))
        yh = df.loc[held, n].to_numpy()
        quality.append({"item": n, "covariates_ordinal": _log_loss(
            cov.predict_proba(df.loc[held, COVARIATES]), yh),
            "pilot_marginal": _log_loss(marg, yh), "uniform": float(np.log(4))})
    from rectify.llm.cpu import cpu_flags, cpu_model

    flags = cpu_flags()
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
               "flags": " ".join(sorted(f for f in flags if f.startswith(("amx", "avx512_bf16",
                                                                          "avx512f", "avx2")))),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "n_pilot": n_pilot, "items": list(SPEED_ITEMS), "seed": seed, "reps": reps,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        from _provenance import code_version

        machine["code"] = code_version()
    except ImportError:
        pass
    return pd.DataFrame(rows), pd.DataFrame(quality), machine


def write_speed(tab: pd.DataFrame, qual: pd.DataFrame, machine: dict) -> str:
    """benchmarks/results/finetune_speed.{csv,json,md}."""
    import json

    os.makedirs(RESULTS, exist_ok=True)
    tab.to_csv(os.path.join(RESULTS, "finetune_speed.csv"), index=False)
    with open(os.path.join(RESULTS, "finetune_speed.json"), "w") as fh:
        json.dump({"machine": machine, "runs": tab.to_dict("records"),
                   "baselines": qual.to_dict("records")}, fh, indent=2, default=float)
    med = tab.groupby("config", sort=False).median(numeric_only=True)
    lines = [f"# LoRA fine-tuning speed: {machine['n_pilot']} pilot rows x {len(machine['items'])} "
             "items, prediction for 1,500 people", "",
             f"Written by `benchmarks/bench_finetune.py speed` on {machine['date']} "
             f"(code {machine.get('code', '?')}).", "",
             f"- CPU: {machine['cpu']}, {machine['cores']} cores; flags: {machine['flags']}",
             f"- torch {machine['torch']}, {machine['torch_threads']} threads; repetitions: "
             f"{machine['reps']} (medians below)",
             f"- machine load (1-min average) during the runs: {tab.load_before.min():.1f} to "
             f"{tab.load_after.max():.1f} on {machine['cores']} cores (other jobs were running: "
             "wall times are inflated; CPU seconds and the ratios within this run are the "
             "figures to compare)",
             f"- anchor (a fixed bf16/fp32 matrix workload, one thread) beside each configuration: "
             f"{tab.anchor_s.min():.2f} to {tab.anchor_s.max():.2f} s", "",
             "| configuration | dtype | cached layers | tokens/persona | fit s (CPU s) | "
             "predict 1,500 s (CPU s) | held-out log-loss |", "|---|---|---|---|---|---|---|"]
    for key, r in med.iterrows():
        row = tab[tab.config == key].iloc[0]
        ext = " (scaled from %d rows)" % row.predict_rows_timed if row.predict_extrapolated else ""
        lines.append(f"| {row.settings} | {row['dtype']} | {int(r.cached_layers)} | "
                     f"{r.tokens_per_persona:.0f} | {r.fit_s:.1f} ({r.fit_cpu_s:.1f}) | "
                     f"{r.predict_s_1500:.1f} ({r.predict_cpu_s_1500:.1f}){ext} | "
                     f"{r.log_loss_mean:.4f} |")
    if "old" in med.index and "new" in med.index:
        o, n = med.loc["old"], med.loc["new"]
        lines += ["", f"Ratios old / new (medians over the runs): fit {o.fit_s / n.fit_s:.1f}x wall "
                      f"({o.fit_cpu_s / n.fit_cpu_s:.1f}x CPU), prediction "
                      f"{o.predict_s_1500 / n.predict_s_1500:.1f}x wall "
                      f"({o.predict_cpu_s_1500 / n.predict_cpu_s_1500:.1f}x CPU)."]
    lines += ["", "Held-out log-loss (rows outside the pilot, answered ones; mean over the items) "
              "against models that see only the covariates:", "",
              "| item | " + " | ".join(f"LoRA {k}" for k in med.index) +
              " | covariates (ordinal logit) | pilot marginal shares | uniform |",
              "|---|" + "---|" * (len(med.index) + 3)]
    for _, q in qual.iterrows():
        lora = " | ".join(f"{med.loc[k, 'log_loss_' + q['item']]:.4f}" for k in med.index)
        lines.append(f"| {q['item']} | {lora} | {q.covariates_ordinal:.4f} | "
                     f"{q.pilot_marginal:.4f} | {q.uniform:.4f} |")
    lines += ["", "Fit time includes loading the backbone (the fp32 copy of the embedded model, "
              "converted beforehand) and, for the new defaults, the one pass of the frozen "
              "layers; it excludes importing torch/transformers/peft. The old configuration's "
              "log-loss is computed on the held-out rows among the rows it predicted."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS, "finetune_speed.md"), "w") as fh:
        fh.write(text)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["fidelity", "coverage", "timing", "speed", "all"])
    ap.add_argument("--speed-reps", type=int, default=1)
    ap.add_argument("--old-predict-rows", type=int, default=300)
    ap.add_argument("--configs", default="old,new,new_fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--sizes", default="100,200")
    ap.add_argument("--gbm-reps", type=int, default=300)
    ap.add_argument("--no-prompting", action="store_true")
    ap.add_argument("--item", default="f03")
    ap.add_argument("--n-eval", type=int, default=400)
    ap.add_argument("--tree-reps", type=int, default=None)
    ap.add_argument("--ordinal-reps", type=int, default=None)
    args = ap.parse_args(argv)
    os.makedirs(RESULTS, exist_ok=True)
    if args.part in ("fidelity", "all"):
        fid, tm = fidelity(item_name=args.item, prompting=not args.no_prompting,
                           n_eval=args.n_eval)
        fid.to_csv(os.path.join(RESULTS, "finetune_fidelity.csv"), index=False)
        tm.to_csv(os.path.join(RESULTS, "finetune_timing.csv"), index=False)
        print(fid.drop(columns=["machine"]).to_string(index=False))
        print(tm.drop(columns=["machine"]).to_string(index=False))
    if args.part == "speed":
        tab, qual, machine = speed(reps=args.speed_reps, old_predict_rows=args.old_predict_rows,
                                   configs=tuple(args.configs.split(",")), threads=args.threads)
        print(write_speed(tab, qual, machine))
    if args.part == "timing":
        tm = timing(item_name=args.item)
        tm.to_csv(os.path.join(RESULTS, "finetune_timing_idle.csv"), index=False)
        print(tm.to_string(index=False))
    if args.part in ("coverage", "all"):
        by = {"CovariateClassifier gbm": args.gbm_reps}
        if args.tree_reps:
            by["unpruned tree (memorises the pilot)"] = args.tree_reps
        if args.ordinal_reps:
            by["CovariateClassifier ordinal"] = args.ordinal_reps
        cov = coverage(reps=args.reps, reps_by_model=by,
                       sizes=tuple(int(v) for v in args.sizes.split(",")))
        cov["machine"] = platform.node()
        cov.to_csv(os.path.join(RESULTS, "finetune_crossfit_coverage.csv"), index=False)
        print(cov.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
