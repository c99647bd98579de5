"""The synthetic misinformation survey's generator: items, planted parameters, covariates, answers.

Part of :mod:`rectify.datasets` (which re-exports the public names): the seeded latent-variable
model behind :func:`make_misinfo_survey`, described in ``rectify/data/README_misinfo.md``. The
data are SYNTHETIC: no claim text and no answer comes from a real person.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import InputError


MISINFO_SEED = 20261127
MISINFO_N = 1500
MISINFO_FILE = "misinfo_survey.csv.gz"
MISINFO_ITEMS_FILE = "misinfo_items.json"
MISINFO_OPTIONS = ("Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate")
MISINFO_MISSING_CODE = 9
MISINFO_MISSING_LABEL = "I have not seen this claim"
#: the structural model the README and tests use (discernment on the covariates)
MISINFO_FORMULA = "discernment ~ age + gender + education + region + ideology"

GENDERS = ("female", "male")
EDUCATION = ("hs_or_less", "some_college", "bachelors", "postgrad")
REGIONS = ("northeast", "midwest", "south", "west")
IDEOLOGY = ("liberal", "moderate", "conservative")
LLM_SUFFIX = "_llm"
_DECIMALS = 6  # LLM expected scores are stored rounded to this many decimals

# ---------------------------------------------------------------------------------------------
# Items: (name, veracity, partisan lean, location b_j, exposure x_j, synthetic wording).
# lean +1: congenial to conservatives, -1: congenial to liberals, 0: neutral.
# location: item's own latent shift (higher -> rated more accurate by everyone).
# exposure: item's shift on the logit of "have not seen it" (higher -> more often unseen).
# ---------------------------------------------------------------------------------------------
_ITEM_TABLE: tuple[tuple[str, bool, int, float, float, str], ...] = (
    ("f01", False, 0, 0.30, -0.30, "Drinking a glass of hot lemon water every hour prevents the flu."),
    ("f02", False, 0, -0.40, 0.20, "Radio waves from mobile phone masts spread viral infections."),
    ("f03", False, 1, 0.20, -0.20, "Officials in several counties printed extra ballots before the last national election."),
    ("f04", False, 1, 0.00, 0.00, "The new city recycling scheme secretly sends all sorted waste to landfill abroad."),
    ("f05", False, 1, 0.40, 0.30, "A federal agency plans to ban gas stoves in every home within two years."),
    ("f06", False, 1, -0.20, 0.40, "Wind turbines cause measurable hearing loss in people living ten miles away."),
    ("f07", False, 1, 0.10, -0.10, "The national census will be used to confiscate privately owned firearms."),
    ("f08", False, 1, -0.30, 0.50, "Most recent immigrants receive a larger monthly pension than retired citizens."),
    ("f09", False, 1, 0.20, 0.10, "A popular vaccine contains a tracking microchip smaller than a grain of sand."),
    ("f10", False, -1, 0.20, 0.00, "A major oil company admitted its pipeline caused a citywide cancer outbreak."),
    ("f11", False, -1, -0.10, 0.30, "Billionaires paid no income tax at all in each of the last ten years."),
    ("f12", False, -1, 0.30, -0.20, "The last minimum-wage increase raised employment among teenagers by half."),
    ("f13", False, -1, -0.30, 0.40, "A large retailer deliberately poisoned the water supply of a factory town."),
    ("f14", False, -1, 0.10, 0.10, "Police departments receive a cash bonus for each arrest they make."),
    ("f15", False, -1, 0.00, 0.20, "A conservative think tank wrote every line of last year's budget bill."),
    ("f16", False, 0, -0.50, 0.60, "Eating a spoonful of honey every morning cures seasonal allergies permanently."),
    ("f17", False, 0, 0.00, -0.40, "Cold weather by itself causes people to catch colds."),
    ("f18", False, 0, 0.30, 0.00, "Reading on a screen in dim light permanently damages adult eyesight."),
    ("t01", True, 0, 0.30, -0.50, "Washing hands with soap reduces the spread of respiratory infections."),
    ("t02", True, 0, -0.20, 0.10, "Regular physical activity lowers the risk of heart disease."),
    ("t03", True, 1, -0.10, 0.20, "Domestic energy production rose substantially over the past decade."),
    ("t04", True, 1, 0.20, 0.00, "Violent crime in many large cities is higher than it was five years ago."),
    ("t05", True, 1, -0.30, 0.30, "Some federal programs have paid benefits to people who were not eligible."),
    ("t06", True, 1, 0.10, 0.10, "Small businesses report that regulatory paperwork takes many hours each month."),
    ("t07", True, 1, 0.00, 0.40, "The national debt has grown faster than the economy in recent years."),
    ("t08", True, 1, -0.20, -0.10, "Many rural hospitals have closed over the past fifteen years."),
    ("t09", True, -1, 0.20, 0.00, "Average global temperatures have risen over the past century."),
    ("t10", True, -1, -0.10, 0.20, "The share of income going to the top one percent has grown since 1980."),
    ("t11", True, -1, 0.00, 0.30, "Many workers earning the minimum wage also rely on public assistance."),
    ("t12", True, -1, -0.30, 0.40, "Several states shortened early-voting periods in recent years."),
    ("t13", True, -1, 0.10, -0.10, "Prescription drug prices are higher at home than in most other rich countries."),
    ("t14", True, -1, 0.30, 0.10, "Air pollution is linked to higher rates of childhood asthma."),
    ("t15", True, 0, 0.00, 0.30, "Seat belts reduce the risk of death in car crashes by about half."),
    ("t16", True, 0, -0.40, 0.50, "Sleeping fewer than six hours a night is linked to weaker immune responses."),
    ("t17", True, 0, 0.20, -0.20, "Smoking is a leading cause of lung cancer."),
    ("t18", True, 0, -0.10, 0.20, "Most household dust consists partly of dead skin cells."),
)

# ---------------------------------------------------------------------------------------------
# Planted parameters of the human model and the simulator (see README_misinfo.md).
# ---------------------------------------------------------------------------------------------
_HUMAN = {
    "thresholds": (-1.0, 0.3, 1.6),  # ordered-logit cut points on the latent belief scale
    "discernment": {  # person discernment d_i = sum of these terms + N(0, sd)
        "intercept": 1.6,
        "education_step": 0.30,  # per education level above the mean level (1.5)
        "age_per_15y": -0.10,  # per 15 years above 50
        "conservative": -0.35,
        "liberal": 0.05,
        "female": 0.05,
        "sd": 0.6,
    },
    "credulity": {  # person credulity c_i (shifts every claim up)
        "intercept": 0.0,
        "education_step": -0.10,
        "age_per_15y": 0.15,
        "conservative": 0.10,
        "liberal": 0.00,
        "female": 0.00,
        "sd": 0.5,
    },
    "partisan_gamma": 0.5,  # extra belief in a congenial claim per ideology step
    "missing": {  # logit P(have not seen it)
        "intercept": -2.4,
        "age_per_15y": 0.25,
        "education_step": -0.20,
        "uncongenial": 0.30,  # claims congenial to the other side are seen less
    },
}

_SIMULATOR = {
    "false_shift": -0.7,  # the simulator under-states belief in false claims ...
    "true_shift": 0.3,  # ... and over-states belief in true ones (skewed marginals)
    "item_bias_sd": 0.2,  # plus a random per-item bias
    # the covariate-driven part of the latent belief is shrunk: its ideology-group means by
    # attenuation_between, the deviations from them (age, education, gender) by the group's factor
    "attenuation_between": 0.50,
    "attenuation": {"liberal": 0.50, "moderate": 0.50, "conservative": 0.25},
    "stereotype": 0.40,  # conservatives: extra belief in conservative-congenial claims (true or false)
    # independent noise: a made-up person discernment (shared by the claims) and per-answer noise
    "person_noise_sd": {"liberal": 0.15, "moderate": 0.18, "conservative": 0.30},
    "noise_sd": {"liberal": 0.55, "moderate": 0.60, "conservative": 0.80},
    "worst_group": ("ideology", "conservative"),
}


def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (bool, float)) or not isinstance(
        random_state, (int, np.integer)
    ):
        raise InputError(
            f"argument 'random_state' must be an int or a numpy Generator, got {random_state!r}"
        )
    return np.random.default_rng(int(random_state))


def misinfo_item_names(kind: str = "all") -> list[str]:
    """Names of the 36 belief items.

    Parameters
    ----------
    kind : {"all", "false", "true"}

    Returns
    -------
    list of str

    Examples
    --------
    >>> misinfo_item_names("true")[:3]
    ['t01', 't02', 't03']
    """
    if kind not in ("all", "false", "true"):
        raise InputError(f"argument 'kind' must be 'all', 'false' or 'true', got {kind!r}")
    return [r[0] for r in _ITEM_TABLE if kind == "all" or (r[1] == (kind == "true"))]


def _item_records() -> list[dict[str, Any]]:
    recs = []
    for name, veracity, lean, loc, expo, text in _ITEM_TABLE:
        recs.append(
            {
                "name": name,
                "wording": text,
                "veracity": "true" if veracity else "false",
                "lean": {1: "conservative", -1: "liberal", 0: "neutral"}[lean],
                "options": list(MISINFO_OPTIONS),
                "scores": [1, 2, 3, 4],
                "missing_code": MISINFO_MISSING_CODE,
                "missing_label": MISINFO_MISSING_LABEL,
                "synthetic": True,
                "generator": {"location": loc, "exposure": expo, "lean": lean},
            }
        )
    return recs


def _items_json_text() -> str:
    doc = {
        "dataset": "rectify synthetic misinformation-belief survey",
        "note": "SYNTHETIC claims written for this dataset; not drawn from any real survey.",
        "question": "To the best of your knowledge, how accurate is this claim?",
        "options": list(MISINFO_OPTIONS),
        "missing_code": MISINFO_MISSING_CODE,
        "missing_label": MISINFO_MISSING_LABEL,
        "items": _item_records(),
    }
    return json.dumps(doc, indent=1) + "\n"


def misinfo_items(as_dicts: bool = False) -> list[Any]:
    """Metadata of the 36 synthetic belief items.

    Parameters
    ----------
    as_dicts : bool, default False
        If False, return :class:`rectify.llm.items.Item` objects (name, wording, options,
        missing label); if True, plain dicts with also ``veracity`` ("true"/"false"), partisan
        ``lean``, the missing code (9) and the generator's item parameters.

    Returns
    -------
    list of Item or list of dict

    Examples
    --------
    >>> items = misinfo_items()
    >>> items[0].name, items[0].n_options
    ('f01', 4)
    >>> misinfo_items(as_dicts=True)[20]["veracity"]
    'true'
    """
    recs = _item_records()
    if as_dicts:
        return recs
    from .llm.items import Item  # rectify.llm is light (no torch at import)

    return [Item(r["name"], r["wording"], tuple(r["options"]), missing=(r["missing_label"],)) for r in recs]


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------
def _ordinal_probs(eta: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """P(Y = k), k = 1..K, under an ordered logit: P(Y > k) = logistic(eta - tau_k)."""
    tau = np.asarray(thresholds, dtype=float)
    exceed = 1.0 / (1.0 + np.exp(-(eta[..., None] - tau)))  # P(Y > k), k = 1..K-1
    upper = np.concatenate([np.ones(eta.shape + (1,)), exceed], axis=-1)
    lower = np.concatenate([exceed, np.zeros(eta.shape + (1,))], axis=-1)
    return upper - lower


def _expected_score(eta: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    tau = np.asarray(thresholds, dtype=float)
    return 1.0 + np.sum(1.0 / (1.0 + np.exp(-(eta[..., None] - tau))), axis=-1)


def _covariates(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, tuple]:
    age = 18 + np.rint(72 * rng.beta(2.0, 2.6, size=n)).astype(int)
    gender = rng.choice(len(GENDERS), size=n, p=[0.52, 0.48])
    educ = rng.choice(len(EDUCATION), size=n, p=[0.35, 0.28, 0.22, 0.15])
    region = rng.choice(len(REGIONS), size=n, p=[0.18, 0.21, 0.38, 0.23])
    # ideology: multinomial logit on age, education, region and gender (liberal is the base)
    age_c = (age - 50) / 15.0
    edu_c = educ - 1.5
    south = (region == 2).astype(float)
    northeast = (region == 0).astype(float)
    female = (gender == 0).astype(float)
    lin = np.column_stack(
        [
            np.zeros(n),
            0.35 + 0.10 * age_c - 0.10 * edu_c + 0.10 * south - 0.10 * northeast - 0.05 * female,
            0.05 + 0.35 * age_c - 0.25 * edu_c + 0.50 * south - 0.40 * northeast - 0.20 * female,
        ]
    )
    p = np.exp(lin - lin.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n)
    ideo = (u[:, None] > np.cumsum(p, axis=1)[:, :-1]).sum(axis=1)
    return pd.DataFrame(
        {
            "age": age,
            "gender": np.asarray(GENDERS, dtype=object)[gender],
            "education": np.asarray(EDUCATION, dtype=object)[educ],
            "region": np.asarray(REGIONS, dtype=object)[region],
            "ideology": np.asarray(IDEOLOGY, dtype=object)[ideo],
        }
    ), (age_c, edu_c, female, ideo)


def _trait(coef: dict, age_c, edu_c, female, ideo) -> np.ndarray:
    return (
        coef["intercept"]
        + coef["education_step"] * edu_c
        + coef["age_per_15y"] * age_c
        + coef["conservative"] * (ideo == 2)
        + coef["liberal"] * (ideo == 0)
        + coef["female"] * female
    )


def _item_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Veracity s_j (+1/-1), lean l_j, location b_j and exposure x_j of the 36 claims."""
    s = np.array([1.0 if r[1] else -1.0 for r in _ITEM_TABLE])
    lean = np.array([float(r[2]) for r in _ITEM_TABLE])
    loc = np.array([r[3] for r in _ITEM_TABLE])
    expo = np.array([r[4] for r in _ITEM_TABLE])
    return s, lean, loc, expo


def _covariate_part(age_c, edu_c, female, ideo) -> np.ndarray:
    """A_ij: the part of the latent belief fixed by the covariates and the claim, (n, 36)."""
    h = _HUMAN
    s, lean, loc, _ = _item_arrays()
    d_fix = _trait(h["discernment"], age_c, edu_c, female, ideo)
    c_fix = _trait(h["credulity"], age_c, edu_c, female, ideo)
    z = ideo - 1.0  # -1 liberal, 0 moderate, +1 conservative
    return c_fix[:, None] + s * d_fix[:, None] / 2 + loc + h["partisan_gamma"] * lean * z[:, None]


def _human_answers(a_part: np.ndarray, traits: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the person-specific traits, the answers (1..4) and which claims were seen (bool)."""
    h = _HUMAN
    age_c, edu_c, _, ideo = traits
    n = a_part.shape[0]
    s, lean, _, expo = _item_arrays()
    d_ind = rng.normal(0.0, h["discernment"]["sd"], size=n)
    c_ind = rng.normal(0.0, h["credulity"]["sd"], size=n)
    eta = a_part + c_ind[:, None] + s * d_ind[:, None] / 2  # A_ij + R_ij
    # ordered logit by inversion: Y = 1 + #{k: eta + e > tau_k}, e ~ standard logistic
    e = rng.logistic(size=eta.shape)
    y = 1.0 + ((eta + e)[..., None] > np.asarray(h["thresholds"])).sum(axis=-1)
    m = h["missing"]
    uncongenial = (lean * (ideo - 1.0)[:, None]) < 0
    miss_lin = m["intercept"] + m["age_per_15y"] * age_c[:, None] + m["education_step"] * edu_c[:, None]
    miss_lin = miss_lin + m["uncongenial"] * uncongenial + expo
    p_miss = 1.0 / (1.0 + np.exp(-miss_lin))
    return y, ~(rng.random(eta.shape) < p_miss)


def _simulator_location(a_part: np.ndarray, traits: tuple, rng: np.random.Generator) -> np.ndarray:
    """The simulator's latent location m_ij: covariates and claim only, plus independent noise."""
    sim = _SIMULATOR
    ideo = traits[3]
    s, lean, _, _ = _item_arrays()
    att = np.array([sim["attenuation"][g] for g in IDEOLOGY])[ideo]
    person_sd = np.array([sim["person_noise_sd"][g] for g in IDEOLOGY])[ideo]
    noise_sd = np.array([sim["noise_sd"][g] for g in IDEOLOGY])[ideo]
    item_bias = np.where(s > 0, sim["true_shift"], sim["false_shift"]) + rng.normal(
        0.0, sim["item_bias_sd"], size=len(s)
    )
    # stereotype: the simulator over-states belief in claims congenial to conservatives
    # among conservatives (a function of the covariates and the claim)
    stereo = sim["stereotype"] * (ideo == 2)[:, None] * (lean > 0)
    a_mean = a_part.mean(axis=0)
    # group means of A (per ideology group and claim) shrunk by the common attenuation; deviations
    # from the group mean (age, education, gender) by the group's own attenuation
    g_mean = np.zeros_like(a_part)
    for g in range(len(IDEOLOGY)):
        if np.any(ideo == g):
            g_mean[ideo == g] = a_part[ideo == g].mean(axis=0)
    person = person_sd * rng.normal(size=len(ideo))  # a made-up discernment, shared by the claims
    return (
        a_mean
        + item_bias
        + sim["attenuation_between"] * (g_mean - a_mean)
        + att[:, None] * (a_part - g_mean)
        + stereo
        + s * person[:, None] / 2
        + noise_sd[:, None] * rng.normal(size=a_part.shape)
    )

def make_misinfo_survey(n: int = MISINFO_N, random_state: Any = MISINFO_SEED) -> pd.DataFrame:
    """Generate the synthetic misinformation-belief survey (humans and an LLM-like simulator).

    Human model (ordered logit). Person ``i`` has covariates, an ideology score
    ``z_i`` (-1 liberal, 0 moderate, +1 conservative), a discernment trait
    ``d_i = D(x_i) + u_i`` and a credulity trait ``c_i = C(x_i) + v_i`` (``D``, ``C`` linear in
    education, age, gender and ideology; ``u ~ N(0, 0.6²)``, ``v ~ N(0, 0.5²)``). Claim ``j`` has
    veracity ``s_j`` (+1 true, -1 false), a partisan lean ``l_j`` in {-1, 0, +1} and a location
    ``b_j``. The latent belief is ``eta_ij = c_i + s_j d_i / 2 + b_j + gamma l_j z_i`` and the
    answer follows ``P(Y_ij > k) = logistic(eta_ij - tau_k)`` with ``tau = (-1.0, 0.3, 1.6)``.
    "Have not seen it" (code 9, stored as NaN) happens with
    ``logit P = -2.4 + 0.25 age15 - 0.2 edu + 0.3 [claim congenial to the other side] + x_j``.

    Simulator. It sees only what a prompt carries: the covariates and the claim (veracity, lean,
    location), never a person's traits ``u_i, v_i``. With ``A_ij`` the covariate-driven part of
    ``eta`` and ``Abar_gj`` its mean in ideology group ``g``, its location is
    ``mean_i(A_ij) + beta_j + 0.5 (Abar_gj - mean_i(A_ij)) + a_g (A_ij - Abar_gj)
    + 0.4 [conservative] [lean_j > 0] + s_j w_i / 2 + sigma_g e_ij``: attenuated effects
    (``a_g`` = 0.5, 0.5, 0.25 for liberal, moderate, conservative), a stereotype (conservatives
    over-believe every conservative-congenial claim), independent noise (a made-up discernment
    ``w_i ~ N(0, 0.15², 0.18², 0.30²)`` and ``e_ij ~ N(0, 1)`` with ``sigma_g`` = 0.55, 0.60,
    0.80) and a bias ``beta_j`` of -0.7 on false and +0.3 on true claims plus ``N(0, 0.2²)`` per
    item (skewed marginals). Its answer is the expected score ``E[Y] = 1 + sum_k logistic(m_ij -
    tau_k)``, stored in ``<item>_llm`` rounded to 6 decimals; an expected score has a smaller
    spread than individual answers (compressed variance). :func:`misinfo_llm_probs` recovers the
    option probabilities from it; :func:`misinfo_covariate_ceiling` gives the best per-person
    correlation any covariate-only method can reach.

    Parameters
    ----------
    n : int, default 1500
        Number of respondents.
    random_state : int or numpy.random.Generator, default 20261127
        Seed; the shipped file is ``make_misinfo_survey()`` with the defaults.

    Returns
    -------
    pandas.DataFrame
        One row per respondent: ``respondent_id``, ``age`` (18-90), ``gender``, ``education``
        (4 levels), ``region`` (4 levels), ``ideology`` (3 levels), the human answers ``f01..f18``,
        ``t01..t18`` (floats 1-4, NaN = have not seen it), and ``f01_llm .. t18_llm``.
        Categorical covariates are pandas Categoricals with their substantive level order.

    Examples
    --------
    >>> df = make_misinfo_survey(n=200, random_state=1)
    >>> df.shape
    (200, 78)
    >>> bool(df["f01"].isna().any()), float(df["f01_llm"].between(1, 4).mean())
    (True, 1.0)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"argument 'n' must be a positive integer, got {n!r}")
    n = int(n)
    rng = _rng(random_state)
    cov, traits = _covariates(n, rng)
    a_part = _covariate_part(*traits)
    y, seen = _human_answers(a_part, traits, rng)
    y = np.where(seen, y, np.nan)
    llm = np.round(_expected_score(_simulator_location(a_part, traits, rng), _HUMAN["thresholds"]), _DECIMALS)
    names = [r[0] for r in _ITEM_TABLE]

    out = cov
    out.insert(0, "respondent_id", np.arange(1, n + 1))
    human = pd.DataFrame(y, columns=names)
    sim_df = pd.DataFrame(llm, columns=[nm + LLM_SUFFIX for nm in names])
    out = pd.concat([out, human, sim_df], axis=1)
    return _typed(out)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col, levels in (
        ("gender", GENDERS),
        ("education", EDUCATION),
        ("region", REGIONS),
        ("ideology", IDEOLOGY),
    ):
        df[col] = pd.Categorical(df[col].astype(object), categories=list(levels))
    df["respondent_id"] = df["respondent_id"].astype("int64")
    df["age"] = df["age"].astype("int64")
    for col in df.columns[6:]:
        df[col] = df[col].astype("float64")
    return df
