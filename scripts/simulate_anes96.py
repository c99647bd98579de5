"""Simulate the ANES 1996 respondents' answers with the embedded local model (zero-shot).

Two items with their real ANES response scales, asked of every one of the 944 respondents of the
extract that statsmodels ships (``statsmodels.datasets.anes96``):

* ``self_lr``: liberal-conservative self-placement, 1 Extremely liberal .. 7 Extremely
  conservative (statsmodels' ``selfLR``);
* ``party_id``: party identification, 0 Strong Democrat .. 6 Strong Republican (``PID``).

The persona is rendered from covariates that are NOT the items (age, education, household income,
size of the place the respondent lives in, days a week watching TV news); the expected vote and
the placements of Clinton and Dole are left out because they carry the answer.

Every request goes through a persistent SQLite response cache, so a rerun with the same cache
rebuilds the output file without running the model again.

Usage (from the repository root)::

    .venv/bin/python scripts/simulate_anes96.py                 # all 944 respondents
    .venv/bin/python scripts/simulate_anes96.py --limit 20      # timing check, no output file
    .venv/bin/python scripts/simulate_anes96.py --cache /tmp/c.sqlite --out /tmp/anes96_llm.csv.gz

Output: ``rectify/data/anes96_llm.csv.gz`` with ``respondent_id`` and per item ``<item>_p1..p7``
(raw next-token probabilities of the option labels, canonical order, 4 decimals),
``<item>_mass`` (their sum, the probability mass on the options, 4 decimals) and
``<item>_llm`` (the expected option score under the renormalised probabilities, 4 decimals).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from rectify.datasets import load_anes96  # noqa: E402
from rectify.llm.items import Item  # noqa: E402

# The ANES 1996 question wordings (summary 7-point scales).
SELF_LR = Item(
    "self_lr",
    "We hear a lot of talk these days about liberals and conservatives. Here is a seven-point scale "
    "on which the political views that people might hold are arranged from extremely liberal to "
    "extremely conservative. Where would you place yourself on this scale?",
    [
        "Extremely liberal",
        "Liberal",
        "Slightly liberal",
        "Moderate, middle of the road",
        "Slightly conservative",
        "Conservative",
        "Extremely conservative",
    ],
    scores=[1, 2, 3, 4, 5, 6, 7],
)
PARTY_ID = Item(
    "party_id",
    "Generally speaking, do you usually think of yourself as a Republican, a Democrat, an "
    "Independent, or what? Which of these describes you best?",
    [
        "Strong Democrat",
        "Weak Democrat",
        "Independent, leaning Democrat",
        "Independent",
        "Independent, leaning Republican",
        "Weak Republican",
        "Strong Republican",
    ],
    scores=[0, 1, 2, 3, 4, 5, 6],
)
ITEMS = (SELF_LR, PARTY_ID)

PERSONA_TEMPLATE = (
    "It is 1996 and you live in the United States. You are $age years old. Your education: "
    "$education. Your household income is $income a year. You live in $place. You watch the "
    "news on TV $tv_news."
)

INCOME = (
    "less than $3,000", "$3,000-$4,999", "$5,000-$6,999", "$7,000-$8,999", "$9,000-$9,999",
    "$10,000-$10,999", "$11,000-$11,999", "$12,000-$12,999", "$13,000-$13,999", "$14,000-$14,999",
    "$15,000-$16,999", "$17,000-$19,999", "$20,000-$21,999", "$22,000-$24,999", "$25,000-$29,999",
    "$30,000-$34,999", "$35,000-$39,999", "$40,000-$44,999", "$45,000-$49,999", "$50,000-$59,999",
    "$60,000-$74,999", "$75,000-$89,999", "$90,000-$104,999", "$105,000 or more",
)
EDUCATION = (
    "grade school (1-8 grades)", "some high school", "high school graduate", "some college",
    "college degree", "master's degree", "PhD",
)


def _place(popul: float) -> str:
    if popul < 1:
        return "a rural area or a small village"
    if popul < 50:
        return f"a town of about {int(round(popul))},000 people"
    if popul < 1000:
        return f"a city of about {int(round(popul, -1))},000 people"
    return f"a big city of about {popul / 1000:.1f} million people"


def _tv(days: int) -> str:
    if days == 0:
        return "never"
    if days == 1:
        return "one day a week"
    if days == 7:
        return "every day"
    return f"{days} days a week"


def persona_frame(anes: pd.DataFrame) -> pd.DataFrame:
    """The persona covariates as words (no answer to the items, no vote, no candidate placement)."""
    return pd.DataFrame(
        {
            "age": anes["age"].astype(int),
            "education": [EDUCATION[e - 1] for e in anes["educ"]],
            "income": [INCOME[i - 1] for i in anes["income"]],
            "place": [_place(float(p)) for p in anes["popul"]],
            "tv_news": [_tv(int(d)) for d in anes["tv_news"]],
        },
        index=anes.index,
    )


def default_cache() -> str:
    base = os.environ.get("RECTIFY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rectify"
    )
    return os.path.join(base, "anes96_llm.sqlite")


def simulate(X: pd.DataFrame, backend, items=ITEMS) -> pd.DataFrame:
    """Zero-shot option probabilities of every item for the rows of ``X`` (raw, not renormalised)."""
    from rectify.llm.simulator import PromptSimulator

    cols: dict[str, np.ndarray] = {}
    for it in items:
        sim = PromptSimulator(backend, it, strategy="zero-shot", template=PERSONA_TEMPLATE).fit()
        raw = sim.score(X).raw
        mass = raw.sum(axis=1)
        expected = (raw / mass[:, None]) @ it.score_values
        for k in range(raw.shape[1]):
            cols[f"{it.name}_p{k + 1}"] = np.round(raw[:, k], 4)
        cols[f"{it.name}_mass"] = np.round(mass, 4)
        cols[f"{it.name}_llm"] = np.round(expected, 4)
    return pd.DataFrame(cols, index=X.index)


def _write(anes: pd.DataFrame, sim: pd.DataFrame, path: str) -> None:
    out = pd.concat([anes.loc[sim.index, ["respondent_id"]], sim], axis=1)
    out.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=None, help="SQLite response cache (default ~/.cache/rectify/anes96_llm.sqlite)")
    ap.add_argument("--out", default=os.path.join(ROOT, "rectify", "data", "anes96_llm.csv.gz"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N respondents (timing); no file written"
                    " unless --write")
    ap.add_argument("--chunk", type=int, default=64, help="respondents per chunk (file rewritten after each)")
    ap.add_argument("--write", action="store_true", help="write the file even with --limit")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", help="torch dtype of the weights (bfloat16 or float32)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args(argv)

    from rectify.llm.cache import ResponseCache
    from rectify.llm.local import LocalBackend

    anes = load_anes96()
    X = persona_frame(anes)
    if args.limit is not None:
        X = X.iloc[: args.limit]
    cache_path = args.cache or default_cache()
    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
    cache = ResponseCache(cache_path)
    backend = LocalBackend(dtype=args.dtype, batch_size=args.batch_size, cache=cache, num_threads=args.threads,
                           progress=False)
    t0 = time.time()
    backend.load()
    t_load = time.time() - t0
    t1 = time.time()
    parts = []
    for start in range(0, len(X), args.chunk):  # both items per chunk: a stopped run leaves whole rows
        parts.append(simulate(X.iloc[start : start + args.chunk], backend))
        done = pd.concat(parts)
        if args.limit is None or args.write:
            _write(anes, done, args.out)
        print(f"{len(done)}/{len(X)} respondents, {time.time() - t1:.0f} s", flush=True)
    sim = pd.concat(parts)
    wall = time.time() - t1
    n_prompts = len(X) * len(ITEMS)
    print(f"model load {t_load:.1f} s; {n_prompts} prompts in {wall:.1f} s "
          f"({n_prompts / wall:.2f} prompts/s, cache {cache_path})")
    y = anes.loc[X.index]
    for it in ITEMS:
        r = np.corrcoef(sim[f"{it.name}_llm"], y[it.name])[0, 1]
        print(f"{it.name}: r(expected, human) = {r:.3f}; mean mass on options = {sim[f'{it.name}_mass'].mean():.3f}; "
              f"mean expected = {sim[f'{it.name}_llm'].mean():.3f} (human {y[it.name].mean():.3f})")
    if args.limit is None or args.write:
        print(f"wrote {args.out} ({len(sim)} rows)")
    cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
