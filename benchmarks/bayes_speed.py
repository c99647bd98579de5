"""Speed of one hierarchical calibration fit (issue 4): 20 cells, n = 300, N = 20,000, 5-point item.

The population and pilot design are those of ``bench_bayes.py``. For each sampler (nutpie, the
default when installed, and pymc's own NUTS) the script times, in a fresh compile folder: the first
fit (building the model + compiling + sampling), then ``--refits`` further fits on new pilots that
reuse the compiled model (sampling only), and the post-stratification over the population. Default
MCMC settings of :class:`~rectify.estimators.bayes_hier.HierarchicalCalibrator`: 4 chains x 1000 draws
after 1000 tuning steps, one core. Writes ``results/bayes_speed.csv`` and ``results/bayes_speed.md``.

Run: ``.venv/bin/python benchmarks/bayes_speed.py [--refits 5] [--samplers nutpie pymc]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without an editable install (and bench_bayes beside)
os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={tempfile.mkdtemp(prefix='rectify-speed-')}"


def _markdown(df) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * df.shape[1]]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refits", type=int, default=5)
    ap.add_argument("--samplers", nargs="+", default=["nutpie", "pymc"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import numpy as np
    import pandas as pd

    import bench_bayes as bb
    from rectify.estimators.bayes_hier import HierarchicalCalibrator

    pop = bb.make_population()
    rows = []
    for sampler in args.samplers:
        rng = np.random.default_rng(7)
        model = HierarchicalCalibrator(bb.K, sampler=sampler, random_state=1)
        for rep in range(args.refits + 1):
            idx = bb.draw_pilot(pop, 300, "random", rng)
            t0 = time.perf_counter()
            model.fit(pop["y"][idx], pop["a"][idx], groups={"cell": pop["cell"][idx]},
                      population_groups={"cell": pop["cell"]})
            fit_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            model.poststratify(pop["a"], groups_pop={"cell": pop["cell"]}, estimand="mean")
            ps_s = time.perf_counter() - t1
            d = model.diagnostics_
            rows.append({"sampler": sampler, "fit": "first (compile)" if rep == 0 else "refit",
                         "compile_s": d["compile_s"], "sample_s": d["sample_s"], "fit_wall_s": fit_s,
                         "poststratify_s": ps_s, "r_hat_max": d["r_hat_max"],
                         "ess_bulk_min": d["ess_bulk_min"], "divergences": d["divergences"],
                         "load_avg_1min": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    raw = pd.DataFrame(rows)
    out = Path(args.out)
    raw.to_csv(out / "bayes_speed.csv", index=False)
    summ = raw.groupby(["sampler", "fit"], sort=False).agg(
        fits=("fit_wall_s", "size"), compile_s=("compile_s", "median"), sample_s=("sample_s", "median"),
        fit_wall_s=("fit_wall_s", "median"), poststratify_s=("poststratify_s", "median"),
        r_hat_max=("r_hat_max", "max"), ess_bulk_min=("ess_bulk_min", "min"),
        divergences=("divergences", "sum"), load=("load_avg_1min", "mean")).reset_index()
    with open(out / "bayes_speed.md", "w") as fh:
        fh.write("One hierarchical fit, 20 cells, n = 300, N = 20,000, 4 chains x (1000 + 1000), one core "
                 "(medians; refits reuse the compiled model)\n\n")
        fh.write(_markdown(summ.round(2)))
    print(summ.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
