"""The shipped synthetic misinformation survey: loading, discernment, LLM probabilities, planted truth.

Part of :mod:`rectify.datasets` (which re-exports the public names): :func:`load_misinfo` reads
the shipped CSV made by :mod:`rectify.misinfo_model`; :func:`misinfo_truth` and
:func:`misinfo_covariate_ceiling` give the planted parameters and the best any covariates-only
predictor can do.
"""

from __future__ import annotations

import functools
import gzip
import io
import warnings
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError
from .misinfo_model import EDUCATION, IDEOLOGY, LLM_SUFFIX, MISINFO_FILE, MISINFO_FORMULA, MISINFO_ITEMS_FILE, MISINFO_MISSING_CODE, MISINFO_SEED, _DECIMALS, _HUMAN, _SIMULATOR, _covariate_part, _covariates, _expected_score, _human_answers, _item_arrays, _items_json_text, _ordinal_probs, _typed, make_misinfo_survey, misinfo_item_names


def _to_csv_text(df: pd.DataFrame) -> str:
    """Serialise the survey to CSV text exactly as shipped (human answers as integers)."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object)
    for nm in misinfo_item_names():
        out[nm] = out[nm].astype("Int64")
    buf = io.StringIO()
    out.to_csv(buf, index=False, float_format=f"%.{_DECIMALS}f", lineterminator="\n")
    return buf.getvalue()


def _write_shipped(directory: Any = None) -> None:  # pragma: no cover - maintenance helper
    """Regenerate the shipped files (CSV.gz with mtime 0, items JSON) in ``rectify/data``."""
    import os

    directory = directory or os.path.join(os.path.dirname(__file__), "data")
    text = _to_csv_text(make_misinfo_survey())
    with open(os.path.join(directory, MISINFO_FILE), "wb") as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
            gz.write(text.encode("utf-8"))
    with open(os.path.join(directory, MISINFO_ITEMS_FILE), "w", encoding="utf-8") as fh:
        fh.write(_items_json_text())


def _shipped_csv_text() -> str:
    ref = resources.files("rectify.data").joinpath(MISINFO_FILE)
    with ref.open("rb") as fh:
        return gzip.decompress(fh.read()).decode("utf-8")


def load_misinfo(missing: str = "nan") -> pd.DataFrame:
    """Load the shipped synthetic misinformation survey (no regeneration).

    Parameters
    ----------
    missing : {"nan", "code"}, default "nan"
        ``"nan"``: "have not seen it" is NaN. ``"code"``: it is the raw code 9 (remember to
        treat 9 as missing before averaging).

    Returns
    -------
    pandas.DataFrame
        The same frame as ``make_misinfo_survey()`` (1,500 rows, 78 columns).

    Examples
    --------
    >>> df = load_misinfo()
    >>> round(float(df["f01"].isna().mean()), 3)
    0.072
    >>> int(load_misinfo(missing="code")["f01"].eq(9).sum()) == int(df["f01"].isna().sum())
    True
    """
    if missing not in ("nan", "code"):
        raise InputError(f"argument 'missing' must be 'nan' or 'code', got {missing!r}")
    df = pd.read_csv(io.StringIO(_shipped_csv_text()))
    df = _typed(df)
    if missing == "code":
        for nm in misinfo_item_names():
            df[nm] = df[nm].fillna(float(MISINFO_MISSING_CODE))
    return df


def misinfo_discernment(df: pd.DataFrame, source: str = "human") -> pd.Series:
    """Per-respondent discernment: mean belief in true claims minus mean belief in false claims.

    Missing answers are skipped; a respondent with no answered true (or false) claim gets NaN.

    Parameters
    ----------
    df : DataFrame
        A frame with the item columns (as from :func:`load_misinfo`).
    source : {"human", "llm"}
        Use the human answers (``f01..``) or the simulator's expected scores (``f01_llm..``).

    Returns
    -------
    pandas.Series

    Examples
    --------
    >>> df = load_misinfo()
    >>> round(float(misinfo_discernment(df).mean()), 2) > 0
    True
    """
    if source not in ("human", "llm"):
        raise InputError(f"argument 'source' must be 'human' or 'llm', got {source!r}")
    suffix = "" if source == "human" else LLM_SUFFIX
    cols_t = [c + suffix for c in misinfo_item_names("true")]
    cols_f = [c + suffix for c in misinfo_item_names("false")]
    absent = [c for c in cols_t + cols_f if c not in df.columns]
    if absent:
        raise InputError(f"argument 'df' lacks item columns {absent[:5]}; load it with load_misinfo()")
    vals = df[cols_t + cols_f].to_numpy(dtype=float)
    if np.any(vals[~np.isnan(vals)] == MISINFO_MISSING_CODE):
        raise InputError("argument 'df' holds the missing code 9; load it with missing='nan'")
    with np.errstate(invalid="ignore"):
        tmean = np.nanmean(vals[:, : len(cols_t)], axis=1) if vals.size else np.array([])
        fmean = np.nanmean(vals[:, len(cols_t):], axis=1) if vals.size else np.array([])
    return pd.Series(tmean - fmean, index=df.index, name="discernment")


def misinfo_llm_probs(df: pd.DataFrame, item: str) -> np.ndarray:
    """Recover the simulator's option probabilities for one item from its expected scores.

    The simulator answers with an ordered logit ``P(Y > k) = logistic(m - tau_k)`` whose
    expected score ``1 + sum_k logistic(m - tau_k)`` is strictly increasing in ``m``; the
    location ``m`` is found by bisection from the stored ``<item>_llm`` (6 decimals, so the
    probabilities are exact to about 1e-6).

    Parameters
    ----------
    df : DataFrame
        With the column ``<item>_llm``.
    item : str
        An item name such as ``"f01"``.

    Returns
    -------
    numpy.ndarray of shape (n, 4)
        Rows sum to 1; column k is the probability of option k+1.

    Examples
    --------
    >>> df = load_misinfo().head(3)
    >>> p = misinfo_llm_probs(df, "f01")
    >>> bool(abs(p @ [1, 2, 3, 4] - df["f01_llm"].to_numpy()).max() < 1e-5)
    True
    """
    col = f"{item}{LLM_SUFFIX}"
    if col not in df.columns:
        raise InputError(f"argument 'df' has no column {col!r}; item must be one of f01..f18, t01..t18")
    target = df[col].to_numpy(dtype=float)
    if np.any(~np.isfinite(target)) or np.any((target <= 1) | (target >= 4)):
        raise InputError(f"column {col!r} must hold finite expected scores strictly between 1 and 4")
    tau = _HUMAN["thresholds"]
    lo = np.full(target.shape, -40.0)
    hi = np.full(target.shape, 40.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        above = _expected_score(mid, tau) > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return _ordinal_probs((lo + hi) / 2, tau)


def misinfo_truth() -> dict[str, Any]:
    """The planted truth of the synthetic survey.

    Returns
    -------
    dict
        ``"human"``: the latent-model parameters (thresholds, discernment and credulity
        coefficients, partisan gamma, missingness model); ``"simulator"``: its error parameters
        (shifts, attenuation, individual share and noise per ideology group, ``worst_group``);
        ``"population"``: values computed on the 1,500 shipped humans (the population):
        ``item_mean`` and ``llm_item_mean`` per item (missing skipped), ``missing_rate`` per item,
        ``item_shares`` (item -> 4 option shares among those who answered), ``discernment_mean``
        overall and ``discernment_mean_by_ideology``, ``formula`` (:data:`MISINFO_FORMULA`) and
        the OLS coefficients of that formula on the human (``ols_human``) and simulated
        (``ols_llm``) discernment; ``"covariate_ceiling"``: the best per-person correlation a
        covariate-only method can reach, per item and for discernment, overall and per ideology
        group (:func:`misinfo_covariate_ceiling` with its defaults).

    Examples
    --------
    >>> t = misinfo_truth()
    >>> t["simulator"]["worst_group"]
    ('ideology', 'conservative')
    >>> t["population"]["ols_llm"]["ideology[T.conservative]"] > t["population"]["ols_human"]["ideology[T.conservative]"]
    True
    """
    import copy

    import statsmodels.formula.api as smf

    df = load_misinfo()
    names = misinfo_item_names()
    pop: dict[str, Any] = {
        "n": int(len(df)),
        "item_mean": {nm: float(df[nm].mean()) for nm in names},
        "llm_item_mean": {nm: float(df[nm + LLM_SUFFIX].mean()) for nm in names},
        "missing_rate": {nm: float(df[nm].isna().mean()) for nm in names},
        "item_shares": {
            nm: [float(v) for v in df[nm].value_counts(normalize=True).reindex([1.0, 2.0, 3.0, 4.0], fill_value=0.0)]
            for nm in names
        },
        "formula": MISINFO_FORMULA,
    }
    data = df[["age", "gender", "education", "region", "ideology"]].copy()
    data["discernment"] = misinfo_discernment(df, "human")
    pop["discernment_mean"] = float(data["discernment"].mean())
    pop["discernment_mean_by_ideology"] = {
        g: float(v) for g, v in data.groupby("ideology", observed=True)["discernment"].mean().items()
    }
    pop["ols_human"] = {k: float(v) for k, v in smf.ols(MISINFO_FORMULA, data).fit().params.items()}
    data["discernment"] = misinfo_discernment(df, "llm")
    pop["ols_llm"] = {k: float(v) for k, v in smf.ols(MISINFO_FORMULA, data).fit().params.items()}
    return {
        "seed": MISINFO_SEED,
        "human": copy.deepcopy(_HUMAN),
        "simulator": copy.deepcopy(_SIMULATOR),
        "population": pop,
        "covariate_ceiling": misinfo_covariate_ceiling(),
    }


#: seed and size of the Monte Carlo that computes the covariate ceiling (misinfo_covariate_ceiling)
CEILING_SEED = 20261208
CEILING_N = 100_000
CEILING_REPS = 100


def _discernment_of(y: np.ndarray) -> np.ndarray:
    """Mean of the true claims minus mean of the false claims per row (NaN skipped), from an (n, 36) array."""
    s = _item_arrays()[0]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with no answered claim of a kind -> NaN
        return np.nanmean(y[:, s > 0], axis=1) - np.nanmean(y[:, s < 0], axis=1)


def _ceiling_corr(a: np.ndarray, b: np.ndarray, var_a: float) -> float:
    """sqrt(Cov(a, b) / var_a): the correlation of an answer with its conditional mean, from replicates."""
    c = float(np.mean((a - a.mean()) * (b - b.mean())))
    return float(np.sqrt(max(c, 0.0) / var_a)) if var_a > 0 else float("nan")


def _answer_moments(a_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[Y | A] and Var(Y | A) of one human answer given its covariate part ``A`` (exact in the
    person-specific residual ``R ~ N(0, sd_c² + sd_d²/4)``: 60-node Gauss-Hermite quadrature on a
    grid of 4,001 values of A, interpolated linearly; error below 1e-6)."""
    h = _HUMAN
    sd_r = float(np.hypot(h["credulity"]["sd"], h["discernment"]["sd"] / 2))
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    grid = np.linspace(-12.0, 12.0, 4001)
    pmf = np.einsum("gqk,q->gk", _ordinal_probs(grid[:, None] + sd_r * x, h["thresholds"]), w)
    k = np.arange(1.0, pmf.shape[1] + 1.0)
    mean = pmf @ k
    var = pmf @ k**2 - mean**2
    return np.interp(a_values, grid, mean), np.interp(a_values, grid, var)


def _seen_probability(a_shape: tuple, traits: tuple) -> np.ndarray:
    """P(claim seen | covariates), (n, 36)."""
    m = _HUMAN["missing"]
    age_c, edu_c, _, ideo = traits
    _, lean, _, expo = _item_arrays()
    lin = m["intercept"] + m["age_per_15y"] * age_c[:, None] + m["education_step"] * edu_c[:, None]
    lin = lin + m["uncongenial"] * ((lean * (ideo - 1.0)[:, None]) < 0) + expo
    return np.broadcast_to(1.0 - 1.0 / (1.0 + np.exp(-lin)), a_shape)


@functools.lru_cache(maxsize=4)
def _ceiling_cached(n_mc: int, seed: int, reps: int) -> dict:
    names = misinfo_item_names()
    groups = ("all",) + IDEOLOGY
    rng = np.random.default_rng(seed)
    _, traits = _covariates(n_mc, rng)
    ideo = traits[3]
    a_part = _covariate_part(*traits)
    # items: exact conditional moments given the covariates, weighted by P(seen | covariates)
    mean, var = _answer_moments(a_part)
    seen_p = _seen_probability(a_part.shape, traits)
    item: dict[str, dict[str, float]] = {nm: {} for nm in names}
    for g in groups:
        rows = np.ones(n_mc, bool) if g == "all" else ideo == IDEOLOGY.index(g)
        w = seen_p[rows] / seen_p[rows].sum(axis=0)
        mu = (w * mean[rows]).sum(axis=0)
        between = (w * (mean[rows] - mu) ** 2).sum(axis=0)
        within = (w * var[rows]).sum(axis=0)
        for j, nm in enumerate(names):
            item[nm][g] = float(np.sqrt(between[j] / (between[j] + within[j])))
    # discernment: two conditionally independent draws per person; Cov(D1, D2) = Var(E[D | X])
    disc = {}
    d = []
    for _ in range(2):
        y, seen = _human_answers(a_part, traits, rng)
        d.append(_discernment_of(np.where(seen, y, np.nan)))
    for g in groups:
        rows = np.isfinite(d[0]) & np.isfinite(d[1]) & (True if g == "all" else ideo == IDEOLOGY.index(g))
        var_d = (float(np.var(d[0][rows])) + float(np.var(d[1][rows]))) / 2
        disc[g] = _ceiling_corr(d[0][rows], d[1][rows], var_d)

    # realised on the shipped population: correlate the answers with E[. | X]: exact for the items,
    # for discernment estimated per person from `reps` fresh draws of everything not a covariate
    df = load_misinfo()
    traits = _traits_of(df)
    a_part = _covariate_part(*traits)
    ey = _answer_moments(a_part)[0]
    rng = np.random.default_rng(seed + 1)
    ed = np.zeros(len(df))
    for _ in range(reps):
        y, seen = _human_answers(a_part, traits, rng)
        ed += np.nan_to_num(_discernment_of(np.where(seen, y, np.nan))) / reps
    hum = df[names].to_numpy(float)
    dh = misinfo_discernment(df).to_numpy()
    ideo_pop = traits[3]
    realised_item = {nm: {} for nm in names}
    realised_disc = {}
    for g in groups:
        grp = np.ones(len(df), bool) if g == "all" else ideo_pop == IDEOLOGY.index(g)
        for j, nm in enumerate(names):
            ok = grp & ~np.isnan(hum[:, j])
            realised_item[nm][g] = float(np.corrcoef(hum[ok, j], ey[ok, j])[0, 1])
        ok = grp & np.isfinite(dh)
        realised_disc[g] = float(np.corrcoef(dh[ok], ed[ok])[0, 1])
    return {
        "method": (
            f"covariates of {n_mc:,} people drawn from the generator (seed {seed}); items: E[Y|X] and "
            "Var(Y|X) exact by quadrature over the person-specific residual, ceiling = sqrt(Var(E[Y|X]) / "
            "Var(Y)) among those who saw the claim (weights P(seen|X)); discernment: two conditionally "
            "independent draws per person, ceiling = sqrt(Cov(D1, D2) / Var(D)) (Cov = Var(E[D|X]))"
        ),
        "n_mc": n_mc,
        "seed": seed,
        "item": item,
        "item_mean": {g: float(np.mean([item[nm][g] for nm in names])) for g in groups},
        "discernment": disc,
        "realised": {
            "method": (
                "on the shipped 1,500: correlation of the answers with E[. | covariates], exact for the items, "
                f"for discernment estimated per person from {reps} fresh draws (seed {seed + 1})"
            ),
            "item": realised_item,
            "item_mean": {g: float(np.mean([realised_item[nm][g] for nm in names])) for g in groups},
            "discernment": realised_disc,
        },
    }


def _traits_of(df: pd.DataFrame) -> tuple:
    """(age15, edu, female, ideology code) of a frame with the survey's covariate columns."""
    age_c = (df["age"].to_numpy(float) - 50) / 15.0
    edu_c = pd.Categorical(df["education"], categories=list(EDUCATION)).codes - 1.5
    female = (df["gender"].astype(object) == "female").to_numpy(float)
    ideo = pd.Categorical(df["ideology"], categories=list(IDEOLOGY)).codes.astype(int)
    return age_c, edu_c, female, ideo


def misinfo_covariate_ceiling(n_mc: int = CEILING_N, random_state: int = CEILING_SEED, reps: int = CEILING_REPS) -> dict:
    """The best per-person correlation any covariate-only method can reach in the synthetic survey.

    A method that sees only the covariates (age, gender, education, region, ideology) and the claim
    can at best predict ``E[Y | covariates]``; its correlation with the human answer ``Y`` is at most
    ``corr(Y, E[Y | X]) = sqrt(Var(E[Y | X]) / Var(Y))`` (any function of the covariates plus noise
    independent of the person does no better). Computed by a seeded Monte Carlo from the generator:
    ``n_mc`` people, two conditionally independent draws of their person-specific traits, answers and
    "have not seen it" each; ``Cov(draw 1, draw 2) = Var(E[. | X])``. Per item (among those who saw
    the claim) and for the discernment scale, overall and per ideology group (within the group).

    Parameters
    ----------
    n_mc : int, default 100000
    random_state : int, default :data:`CEILING_SEED`
    reps : int, default 100
        Draws per shipped person for the ``"realised"`` part (the correlation the conditional mean
        reaches on the 1,500 shipped people).

    Returns
    -------
    dict
        ``item`` (item -> group -> ceiling), ``item_mean`` (group -> mean over the 36 items),
        ``discernment`` (group -> ceiling), ``realised`` (the same on the shipped 1,500), ``method``.
        Groups: ``"all"``, ``"liberal"``, ``"moderate"``, ``"conservative"``.

    Examples
    --------
    >>> c = misinfo_covariate_ceiling(n_mc=20_000, reps=5)
    >>> 0.3 < c["discernment"]["all"] < 0.9, c["item_mean"]["all"] < c["discernment"]["all"]
    (True, True)
    """
    for name, v in (("n_mc", n_mc), ("random_state", random_state), ("reps", reps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"argument {name!r} must be a positive integer, got {v!r}")
    import copy

    return copy.deepcopy(_ceiling_cached(int(n_mc), int(random_state), int(reps)))
