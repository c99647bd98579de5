"""Store the embedded model's answers to two claims (f03 false, t09 true) of the synthetic misinformation survey.

Human data: ``rectify.datasets.load_misinfo()`` (synthetic, see ``rectify/data/README_misinfo.md``);
only the simulated answers and ``respondent_id`` are stored. Items: ``MISINFO_LLM_ITEMS`` (2 false,
2 true claims). The persona holds only what a prompt can carry: age, gender, education, region,
ideology. Zero-shot for the first ``--n`` respondents of a seeded random order of the evaluation
respondents (everyone outside ``misinfo_examples()``); few-shot (k=5, examples drawn per respondent
from the 50 example respondents with seed ``FEWSHOT_SEED`` and the respondent id) for the first
``--fewshot-n`` of the same order. The model is offered the 4 accuracy options only ("have not seen
it" is not an option).

Usage (from the repository root)::

    .venv/bin/python scripts/simulate_misinfo.py --limit 32       # timing, no file written
    nice -n 10 .venv/bin/python scripts/simulate_misinfo.py       # the stored file

Output: ``rectify/data/misinfo_llm.csv.gz`` (see ``scripts/llm_answers.py`` for the columns).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_answers import ROOT, parse_args, simulate_survey  # noqa: E402  (puts the repository root on sys.path)

from rectify.datasets import (  # noqa: E402
    MISINFO_LLM_ITEMS,
    MISINFO_OPTIONS,
    MISINFO_QUESTION,
    load_misinfo,
    misinfo_examples,
    misinfo_items,
)
from rectify.llm.items import Item  # noqa: E402

FEWSHOT_SEED = 36
FEWSHOT_K = 5
SUBSET_SEED = 1500
_CLAIMS = {r["name"]: r["wording"] for r in misinfo_items(as_dicts=True)}
ITEMS = tuple(
    Item(name, MISINFO_QUESTION.format(claim=_CLAIMS[name]), list(MISINFO_OPTIONS), scores=[1, 2, 3, 4])
    for name in MISINFO_LLM_ITEMS
)
PERSONA_COLUMNS = ["age", "gender", "education", "region", "ideology"]
_EDUCATION = {"hs_or_less": "high school or less", "some_college": "some college",
              "bachelors": "a bachelor's degree", "postgrad": "a postgraduate degree"}


def persona(row: dict) -> str:
    """Second-person persona from the five covariates (the only person data a prompt carries)."""
    edu = _EDUCATION.get(str(row["education"]).replace(" ", "_"), row["education"])
    return (f"You are {row['age']} years old, {row['gender']}, and live in the {row['region']} of the "
            f"United States. Your education: {edu}. Politically you are {row['ideology']}.")


def main(argv=None) -> int:
    args = parse_args(argv, __doc__, "misinfo_llm.sqlite", os.path.join(ROOT, "rectify", "data", "misinfo_llm.csv.gz"),
                      n=None, fewshot_n=None, items="f03,t09", fewshot_items="f03,t09")
    simulate_survey(args, load_misinfo(), misinfo_examples(), PERSONA_COLUMNS, persona, ITEMS, SUBSET_SEED, FEWSHOT_SEED,
                    k=FEWSHOT_K)
    return 0


if __name__ == "__main__":
    sys.exit(main())
