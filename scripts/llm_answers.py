"""Shared machinery of the scripts that store the embedded model's answers beside a bundled survey.

Used by ``simulate_gss_spending.py`` and ``simulate_misinfo.py``: score zero-shot or few-shot
answer distributions chunk by chunk through a persistent response cache (a rerun with the same
cache costs no model time), and write the stored file (gzip, mtime 0, 4 decimals) after every
chunk so a stopped run keeps whole rows.

Stored columns per item ``<item>`` and strategy tag ``<s>`` (``zs`` zero-shot, ``fs`` few-shot):
``<item>_<s>_p1..pK`` (raw next-token probabilities of the option labels in canonical order),
``<item>_<s>_mass`` (their sum, the mass on the options) and ``<item>_<s>_llm`` (expected option
score under the renormalised probabilities, computed before rounding).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # the scripts run from a checkout: import rectify from it
    sys.path.insert(0, ROOT)

STRATEGY_TAGS = {"zero-shot": "zs", "few-shot": "fs"}


def default_cache(name: str) -> str:
    """``~/.cache/rectify/<name>`` (or under ``$RECTIFY_CACHE_DIR`` / ``$XDG_CACHE_HOME``)."""
    base = os.environ.get("RECTIFY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rectify"
    )
    return os.path.join(base, name)


def make_backend(cache_path: str, dtype: str, batch_size: int, threads: int):
    """The embedded model's LocalBackend with a persistent SQLite response cache."""
    from rectify.llm.cache import ResponseCache
    from rectify.llm.local import LocalBackend

    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
    cache = ResponseCache(cache_path)
    return LocalBackend(dtype=dtype, batch_size=batch_size, cache=cache, num_threads=threads, progress=False)


def score_item(
    backend: Any,
    item: Any,
    X: pd.DataFrame,
    template: Callable[[dict], str],
    strategy: str,
    examples_X: pd.DataFrame | None = None,
    examples_y: Sequence[Any] | None = None,
    k: int = 5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """One item's stored columns for the rows of ``X`` (raw probabilities, mass, expected score).

    Few-shot draws ``k`` examples per row at random from ``examples_X`` / ``examples_y`` with a
    generator seeded by ``seed`` and the position of the row's first index label in the run, so a
    row's prompt does not depend on how the run was cut into chunks.
    """
    from rectify.llm.simulator import PromptSimulator

    tag = STRATEGY_TAGS[strategy]
    if strategy == "zero-shot":
        sims = [PromptSimulator(backend, item, strategy="zero-shot", template=template).fit()]
        parts = [X]
    else:
        # one simulator per row: its seed is (seed, respondent key), independent of the chunking
        sims, parts = [], []
        for key in X.index:
            sims.append(
                PromptSimulator(backend, item, strategy="few-shot", k=k, template=template,
                                random_state=int(seed) * 1_000_003 + int(key)).fit(examples_X, examples_y)
            )
            parts.append(X.loc[[key]])
    prompts = [p for sim, part in zip(sims, parts) for p in sim.prompts(part)]
    raw = backend.score(prompts).raw
    mass = raw.sum(axis=1)
    expected = (raw / mass[:, None]) @ np.asarray(item.score_values, float)
    cols = {f"{item.name}_{tag}_p{j + 1}": np.round(raw[:, j], 4) for j in range(raw.shape[1])}
    cols[f"{item.name}_{tag}_mass"] = np.round(mass, 4)
    cols[f"{item.name}_{tag}_llm"] = np.round(expected, 4)
    return cols


def write_gz(frame: pd.DataFrame, path: str) -> None:
    """Write a CSV with gzip mtime 0 (the same rows give the same bytes)."""
    tmp = path + ".tmp"
    frame.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0}, lineterminator="\n")
    os.replace(tmp, path)


def run_plan(
    plan: Sequence[tuple[str, Any, pd.DataFrame, dict]],
    backend: Any,
    keys: pd.Series,
    out: str | None,
    chunk: int,
) -> pd.DataFrame:
    """Score every (strategy, item, rows, kwargs) step chunk by chunk; rewrite ``out`` after each chunk.

    ``keys`` maps the frame's index to the stored row key (``respondent_id``); the output has one
    row per key in ``keys`` and NaN where a step has not covered the row (yet).
    """
    result = pd.DataFrame({"respondent_id": keys.to_numpy()}, index=keys.index)
    t0 = time.time()
    n_done = 0
    n_total = sum(len(rows) for _, _, rows, _ in plan)
    for strategy, item, rows, kwargs in plan:
        for start in range(0, len(rows), chunk):
            part = rows.iloc[start : start + chunk]
            cols = score_item(backend, item, part, strategy=strategy, **kwargs)
            for c, v in cols.items():
                if c not in result.columns:
                    result[c] = np.nan
                result.loc[part.index, c] = v
            n_done += len(part)
            if out:
                write_gz(result, out)
            wall = time.time() - t0
            print(f"{item.name} {strategy}: {n_done}/{n_total} prompts, {wall:.0f} s "
                  f"({n_done / max(wall, 1e-9):.2f} prompts/s)", flush=True)
    return result


def subset(X: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """The first ``n`` rows of a seeded random order of ``X`` (all rows if ``n`` is None), in ``X``'s order.

    Nested: a smaller ``n`` with the same seed gives a subset of a larger one.
    """
    order = np.random.default_rng(seed).permutation(len(X))
    take = order if n is None else order[: int(n)]
    return X.iloc[np.sort(take)]


def parse_args(argv: Any, doc: str, cache_name: str, out_path: str, n: int, fewshot_n: int,
               items: str, fewshot_items: str) -> Any:
    """The command line both scripts share (defaults differ per survey)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--cache", default=None, help=f"SQLite response cache (default ~/.cache/rectify/{cache_name})")
    ap.add_argument("--out", default=out_path)
    ap.add_argument("--limit", type=int, default=None, help="timing: only the first N respondents; no file unless --write")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--n", type=int, default=n, help="zero-shot respondents: the first N of a seeded random order")
    ap.add_argument("--fewshot-n", type=int, default=fewshot_n, help="few-shot respondents: the first N of the same order")
    ap.add_argument("--items", default=items, help="zero-shot items (comma-separated)")
    ap.add_argument("--fewshot-items", default=fewshot_items, help="few-shot items ('' for none)")
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    args.cache = args.cache or default_cache(cache_name)
    return args


def persona_frame(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The persona covariates indexed by ``respondent_id``; categories as plain strings (missing NaN)."""
    X = frame[list(columns)].copy()
    for c in columns:
        if isinstance(X[c].dtype, pd.CategoricalDtype):
            X[c] = X[c].astype(object)
    X.index = frame["respondent_id"].to_numpy()
    return X


def simulate_survey(args: Any, frame: pd.DataFrame, examples: pd.DataFrame, columns: Sequence[str],
                    template: Callable, items: Sequence[Any], subset_seed: int, fewshot_seed: int,
                    k: int = 5) -> None:
    """Zero-shot for ``args.n`` and few-shot for ``args.fewshot_n`` evaluation respondents (the
    frame less the example respondents), chunk by chunk, writing ``args.out`` after each chunk."""
    ev = frame[~frame["respondent_id"].isin(examples["respondent_id"])]
    X = subset(persona_frame(ev, columns), args.n, subset_seed)
    Xfs = subset(persona_frame(ev, columns), args.fewshot_n, subset_seed)
    if args.limit is not None:
        X, Xfs = X.iloc[: args.limit], Xfs.iloc[: args.limit]
    EX = persona_frame(examples, columns)
    by_name = {it.name: it for it in items}
    plan = [("zero-shot", by_name[nm], X, {"template": template}) for nm in args.items.split(",") if nm]
    plan += [
        ("few-shot", by_name[nm], Xfs, {"template": template, "examples_X": EX,
                                         "examples_y": examples[nm].to_numpy(int).tolist(), "k": k,
                                         "seed": fewshot_seed})
        for nm in args.fewshot_items.split(",") if nm
    ]
    backend = make_backend(args.cache, args.dtype, args.batch_size, args.threads)
    t0 = time.time()
    backend.load()
    print(f"model load {time.time() - t0:.1f} s; cache {args.cache}", flush=True)
    out = args.out if (args.limit is None or args.write) else None
    keys = pd.Series(X.index.to_numpy(), index=X.index)
    run_plan(plan, backend, keys, out, args.chunk)
    if out:
        print(f"wrote {out}")
    backend.cache.close()
