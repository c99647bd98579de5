"""Reference outputs of the PPI verbs and cores, saved before the issue-17 fast paths were written.

Run from the repository root (or with the old code's root as the first argument)::

    .venv/bin/python tests/reference/fastpath/make_reference.py [ROOT]

It writes ``fastpath_reference.json`` beside this script; ``tests/test_fastpath.py`` recomputes every
case with the current code and requires agreement to 1e-10.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def make_frame(N: int = 20_000, n: int = 150, seed: int = 17):
    """A frame with numeric covariates, a category, weights and predictions; the pilot is its head."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    df = pd.DataFrame(X, columns=["x1", "x2", "x3"])
    df["g"] = rng.choice(["a", "b", "c"], size=N)
    df["y"] = X @ [0.3, -0.2, 0.1] + (df["g"] == "b") * 0.4 + rng.normal(size=N)
    df["f"] = 0.9 * df["y"] + 0.2 + 0.6 * rng.normal(size=N)
    eta = X @ [0.5, -0.4, 0.2] + rng.logistic(size=N)
    df["b"] = (eta > 0).astype(float)
    df["pb"] = 1 / (1 + np.exp(-(0.8 * eta + 0.2 + rng.normal(size=N))))
    df["o"] = np.digitize(eta, [-1.0, 0.0, 1.0]) + 1
    soft = np.exp(-0.5 * (np.arange(1, 5)[None, :] - (df["o"].to_numpy()[:, None] + 0.3 * rng.normal(size=(N, 1))))
                  ** 2)
    soft /= soft.sum(axis=1, keepdims=True)
    for k in range(4):
        df[f"p{k + 1}"] = soft[:, k]
    df["w"] = rng.uniform(0.5, 2.0, size=N)
    df["k"] = rng.integers(0, 5, size=N).astype(float)
    return df, df.iloc[:n].copy()


def cases():
    """(name, callable(rectify, df, pilot) -> Result) for every path the fast paths touch."""
    out = []
    forms = {"ols": ("y ~ x1 + x2 + x3", "f"), "logit": ("b ~ x1 + x2 + x3", "pb")}
    for verb, (formula, pred) in forms.items():
        for method in ("classical", "naive", "ppi", "ppi++"):
            for conv in ("small-sample", "ppi_py"):
                out.append((f"{verb}-{method}-{conv}",
                            lambda r, d, p, v=verb, fo=formula, pr=pred, m=method, c=conv:
                            getattr(r, v)(fo, p, d, predicted=pr, method=m, convention=c)))
        out.append((f"{verb}-weighted", lambda r, d, p, v=verb, fo=formula, pr=pred:
                    getattr(r, v)(fo, p, d, predicted=pr, weights="w", weights_pop="w")))
        out.append((f"{verb}-nointercept", lambda r, d, p, v=verb, fo=formula, pr=pred:
                    getattr(r, v)(fo + " - 1", p, d, predicted=pr)))
        out.append((f"{verb}-category", lambda r, d, p, v=verb, fo=formula, pr=pred:
                    getattr(r, v)(fo + " + C(g)", p, d, predicted=pr)))
        out.append((f"{verb}-element", lambda r, d, p, v=verb, fo=formula, pr=pred:
                    getattr(r, v)(fo, p, d, predicted=pr, lambda_mode="element")))
        out.append((f"{verb}-one-covariate", lambda r, d, p, v=verb, pr=pred, fo=formula:
                    getattr(r, v)(fo.split("~")[0] + "~ x2", p, d, predicted=pr)))
        out.append((f"{verb}-lam", lambda r, d, p, v=verb, fo=formula, pr=pred:
                    getattr(r, v)(fo, p, d, predicted=pr, lam=0.7)))
        out.append((f"{verb}-int-column", lambda r, d, p, v=verb, fo=formula, pr=pred:
                    getattr(r, v)(fo + " + k", p, d, predicted=pr)))
    out.append(("logit-ridge", lambda r, d, p: __import__("rectify.estimators.ppi", fromlist=["x"]).ppi_logistic(
        np.column_stack([np.ones(len(p)), p[["x1", "x2"]]]), p["b"], p["pb"],
        np.column_stack([np.ones(len(d)), d[["x1", "x2"]]]), d["pb"], ridge=0.5)))
    for method in ("classical", "naive", "ppi", "ppi++"):
        for conv in ("small-sample", "ppi_py"):
            out.append((f"mean-{method}-{conv}", lambda r, d, p, m=method, c=conv:
                        r.mean("y", p, d, predicted="f", method=m, convention=c)))
    out.append(("mean-weighted", lambda r, d, p: r.mean("y", p, d, predicted="f", weights="w", weights_pop="w")))
    out.append(("mean-weighted-ppi_py", lambda r, d, p: r.mean("y", p, d, predicted="f", weights="w",
                                                              weights_pop="w", convention="ppi_py")))
    out.append(("mean-strata", lambda r, d, p: r.mean("y", p, d, predicted="f", strata="g")))
    out.append(("mean-lam", lambda r, d, p: r.mean("y", p, d, predicted="f", lam=0.5)))
    probs = [f"p{k}" for k in range(1, 5)]
    for method in ("classical", "naive", "ppi++"):
        out.append((f"ordinal-{method}", lambda r, d, p, m=method:
                    r.ordinal("o ~ x1 + x2", p, d, predicted=probs, categories=[1, 2, 3, 4], method=m)))
    out.append(("ordinal-weighted", lambda r, d, p: r.ordinal("o ~ x1 + x2", p, d, predicted=probs,
                                                              categories=[1, 2, 3, 4], weights="w",
                                                              weights_pop="w")))
    out.append(("shares-ppi++", lambda r, d, p: r.shares("o", p, d, predicted=probs, categories=[1, 2, 3, 4])))
    return out


def summarise(res) -> dict:
    lo, hi = res.conf_int(0.95)
    lam = res.tuning.get("lambda") if res.tuning else None
    return {"estimate": np.asarray(res.estimate, float).tolist(), "cov": np.asarray(res.cov, float).tolist(),
            "conf_low": np.asarray(lo, float).tolist(), "conf_high": np.asarray(hi, float).tolist(),
            "terms": list(res.terms),
            "lambda": None if lam is None else np.atleast_1d(np.asarray(lam, float)).tolist()}


def main(root: str | None = None) -> None:
    if root:
        sys.path.insert(0, root)
    import rectify

    df, pilot = make_frame()
    ref = {name: summarise(fn(rectify, df, pilot)) for name, fn in cases()}
    (HERE / "fastpath_reference.json").write_text(json.dumps(ref, indent=0))
    print(f"{len(ref)} cases from {rectify.__file__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
