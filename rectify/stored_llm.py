"""Stored answers of the embedded model to the bundled surveys (scripts/simulate_*.py made them).

Part of :mod:`rectify.datasets` (which re-exports the public names): the fixed few-shot example
respondents and the zero-/few-shot answer tables joined to the human data.
"""

from __future__ import annotations

import gzip
import io
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError
from .misinfo_data import load_misinfo
from .survey_data import gss_spending_examples, load_gss_spending


# ---------------------------------------------------------------------------------------------
# Stored answers of the embedded model (scripts/simulate_gss_spending.py, scripts/simulate_misinfo.py)
# ---------------------------------------------------------------------------------------------
#: the misinfo items the embedded model answered (2 false, 2 true; both partisan leans)
MISINFO_LLM_ITEMS = ("f03", "f11", "t04", "t09")
MISINFO_EXAMPLE_N = 50
MISINFO_EXAMPLE_SEED = 20261207
MISINFO_QUESTION = 'To the best of your knowledge, how accurate is this claim? "{claim}"'


def misinfo_examples() -> pd.DataFrame:
    """The fixed few-shot example respondents of the synthetic survey's stored LLM answers.

    :data:`MISINFO_EXAMPLE_N` (50) respondents drawn without replacement with NumPy's
    ``default_rng(MISINFO_EXAMPLE_SEED)`` from those who answered every item of
    :data:`MISINFO_LLM_ITEMS` (rows in :func:`load_misinfo` order). Their answers are the only
    human answers in any few-shot prompt; :func:`load_misinfo_llm` leaves them out.

    Returns
    -------
    pandas.DataFrame
        Their rows of :func:`load_misinfo` (index kept).

    Examples
    --------
    >>> ex = misinfo_examples()
    >>> len(ex), bool(ex[list(MISINFO_LLM_ITEMS)].notna().all().all())
    (50, True)
    """
    df = load_misinfo()
    pos = np.flatnonzero(df[list(MISINFO_LLM_ITEMS)].notna().all(axis=1).to_numpy())
    chosen = np.sort(np.random.default_rng(MISINFO_EXAMPLE_SEED).choice(pos, size=MISINFO_EXAMPLE_N, replace=False))
    return df.iloc[chosen]


GSS_LLM_FILE = "gss_spending_llm.csv.gz"
MISINFO_LLM_FILE = "misinfo_llm.csv.gz"
#: strategy tags of the stored answers: zero-shot and few-shot (k=5)
LLM_STRATEGIES = ("zs", "fs")


def _join_stored_llm(base: pd.DataFrame, file: str, examples: pd.DataFrame, n_options: int) -> pd.DataFrame:
    """Rows of ``base`` that ``file`` holds answers for, joined with them (probabilities renormalised)."""
    raw = resources.files("rectify.data").joinpath(file).read_bytes()
    sim = pd.read_csv(io.BytesIO(gzip.decompress(raw)))
    script = "scripts/simulate_gss_spending.py" if file == GSS_LLM_FILE else "scripts/simulate_misinfo.py"
    if sim["respondent_id"].duplicated().any():
        raise InputError(f"{file}: duplicated respondent_id; regenerate it with {script}")
    leaked = sorted(set(sim["respondent_id"]) & set(examples["respondent_id"]))
    if leaked:
        raise InputError(f"{file}: few-shot example respondents {leaked[:5]} are in the evaluation rows; regenerate it with {script}")
    unknown = sorted(set(sim["respondent_id"]) - set(base["respondent_id"]))
    if unknown:
        raise InputError(f"{file}: respondent_id {unknown[:5]} not in the human data; regenerate it with {script}")
    cols: dict[str, Any] = {"respondent_id": sim["respondent_id"].to_numpy("int64")}
    stems = [c[: -len("_mass")] for c in sim.columns if c.endswith("_mass")]
    for stem in stems:  # <item>_<strategy>
        pcols = [f"{stem}_p{k}" for k in range(1, n_options + 1)]
        p = sim[pcols].to_numpy(float)
        p = p / p.sum(axis=1, keepdims=True)
        for k, c in enumerate(pcols):
            cols[c] = p[:, k]
        cols[f"{stem}_mass"] = sim[f"{stem}_mass"].to_numpy(float)
        cols[f"{stem}_llm"] = sim[f"{stem}_llm"].to_numpy(float)  # from the unrounded probabilities
    added = pd.DataFrame(cols)
    out = base.merge(added, on="respondent_id", how="inner", validate="one_to_one")
    out.index = pd.RangeIndex(len(out))
    return out


def load_gss_spending_llm() -> pd.DataFrame:
    """The GSS respondents the embedded model answered for, joined with its stored answers.

    The evaluation frame of the GSS comparison: :func:`load_gss_spending` restricted to the
    respondents in ``gss_spending_llm.csv.gz`` (made by ``scripts/simulate_gss_spending.py``; see
    ``rectify/data/README_gss_spending.md``). None of them is a few-shot example respondent
    (:func:`gss_spending_examples`): no evaluated person's answer sits in any prompt.

    Added columns, per simulated item ``<item>`` and strategy ``<s>`` (``zs`` zero-shot, ``fs``
    few-shot with k=5 examples):

    * ``<item>_<s>_p1 .. _p3``: option probabilities (1 too little, 2 about right, 3 too much),
      renormalised over the options (rows sum to 1);
    * ``<item>_<s>_mass``: the next-token mass the model put on the option labels;
    * ``<item>_<s>_llm``: expected score on 1..3 (from the unrounded probabilities).

    Few-shot columns are NaN for respondents outside the few-shot subset.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> g = load_gss_spending_llm()
    >>> bool(g["natarms_zs_llm"].between(1, 3).all())
    True
    >>> bool(g["respondent_id"].isin(gss_spending_examples()["respondent_id"]).any())
    False
    """
    return _join_stored_llm(load_gss_spending(), GSS_LLM_FILE, gss_spending_examples(), 3)


def load_misinfo_llm() -> pd.DataFrame:
    """The synthetic-survey respondents the embedded model answered for, joined with its answers.

    :func:`load_misinfo` restricted to the respondents in ``misinfo_llm.csv.gz`` (made by
    ``scripts/simulate_misinfo.py``; see ``rectify/data/README_misinfo_llm.md``), none of them a
    few-shot example respondent (:func:`misinfo_examples`). Added columns per item of
    :data:`MISINFO_LLM_ITEMS` and strategy ``<s>`` (``zs``, ``fs``): ``<item>_<s>_p1 .. _p4``
    (renormalised over the 4 accuracy options), ``<item>_<s>_mass``, ``<item>_<s>_llm`` (expected
    score on 1..4). They sit beside the synthetic simulator's ``<item>_llm``; few-shot columns are
    NaN outside the few-shot subset.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> m = load_misinfo_llm()
    >>> bool(m["t09_zs_llm"].between(1, 4).all())
    True
    """
    return _join_stored_llm(load_misinfo(), MISINFO_LLM_FILE, misinfo_examples(), 4)
