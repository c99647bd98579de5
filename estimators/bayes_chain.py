"""Chain-rule conjugate Bayesian correction of LLM-simulated answers (numpy/scipy only, no MCMC).

The population share of human answer ``k`` factorises through the LLM answer ``a``::

    p_k = sum_a pi_a * theta_{a,k},   pi_a = P(yhat = a) in the population,
                                      theta_{a,k} = P(y = k | yhat = a), learned on the pilot.

Both factors get conjugate Dirichlet posteriors:

* ``theta_a | pilot ~ Dirichlet(alpha_y + C[a, :])`` where ``C[a, k]`` counts pilot rows with LLM
  answer ``a`` and human answer ``k`` (one independent Dirichlet per LLM answer). The default prior
  ``alpha_y = 1/K`` per cell (Perks' prior: one pseudo-observation per LLM answer in all) keeps the
  posterior close to the pilot's own frequencies when an LLM answer is seen only a few times. The
  uniform prior ``alpha_y = 1`` adds ``K`` pseudo-observations per LLM answer and pulls sparse rows
  towards the middle of the scale: in the benchmark (benchmarks/bench_bayes.py) it covered a small
  cell's mean in 1-3% of pilots, against 85-90% for ``1/K``;
* ``pi | population ~ Dirichlet(alpha_pop + n)`` where ``n[a]`` counts population rows with LLM answer
  ``a``. This treats the frame as a draw from a super-population; with frames of thousands of rows it
  adds almost nothing. ``population_uncertainty=False`` fixes ``pi`` at the observed shares instead
  (the finite-population estimand).

Exact posterior draws of ``p`` (and of the mean score ``p @ scores``) are products of independent
Dirichlet draws. With ``strata`` the chain rule runs inside each stratum and the stratum results are
combined with the population stratum weights ``W_h = N_h / N`` (known from the frame, so fixed).

LLM answers may be given as integer codes or as an ``(n, A)`` probability matrix. A probability
matrix is reduced to hard labels (its arg-max, the first option on ties) for the pilot *and* the
population alike: the model conditions on the same discrete LLM answer on both sides, which keeps the
chain rule exact. (Averaging probability rows in the population while conditioning on hard labels in
the pilot would mix two different random variables.)

An LLM answer that occurs in the population but never in a pilot (stratum) gets its conditional
distribution from the prior alone; this is announced with a :class:`PriorOnlyWarning` that names the
answer and its population share (``on_empty="raise"`` turns it into an error).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from rectify.errors import EstimationError, InputError
from rectify.result import Result, check_level

__all__ = [
    "PriorOnlyWarning",
    "BayesDiagnosticWarning",
    "as_codes",
    "llm_labels",
    "contingency",
    "chain_rule_posterior",
    "chain_rule_moments",
    "chain_rule",
    "draws_result",
]


class PriorOnlyWarning(UserWarning):
    """A posterior quantity rests on the prior alone (no pilot rows informed it)."""


class BayesDiagnosticWarning(UserWarning):
    """An MCMC fit shows divergences, R-hat above the threshold or a low effective sample size."""


# ---------------------------------------------------------------------------------------- inputs
def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise InputError(
        f"argument 'random_state' must be an int, None or a numpy Generator, got {type(random_state).__name__}"
    )


def as_codes(values: Any, name: str, n_levels: int) -> np.ndarray:
    """Validate integer codes ``0 .. n_levels - 1`` and return them as an int array.

    Parameters
    ----------
    values : array-like, shape (n,)
        Codes; floats are accepted when they are whole numbers.
    name : str
        Argument name used in error messages.
    n_levels : int
        Number of levels.

    Returns
    -------
    ndarray of int, shape (n,)

    Examples
    --------
    >>> as_codes([0, 2, 1.0], "y", 3).tolist()
    [0, 2, 1]
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputError(f"argument '{name}' must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"argument '{name}' is empty")
    if arr.dtype.kind not in "iubf":
        raise InputError(
            f"argument '{name}' must hold integer codes 0..{n_levels - 1}, got dtype {arr.dtype}; "
            "map option labels to codes first (rectify.bayes does this for data frames)"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputError(f"argument '{name}' contains {int(np.sum(~np.isfinite(arr)))} NaN/inf values; remove them first")
        if not np.all(arr == np.round(arr)):
            raise InputError(f"argument '{name}' must hold whole-number codes 0..{n_levels - 1}")
    codes = arr.astype(np.int64, copy=False)
    if codes.min() >= 0 and codes.max() < n_levels:  # two reductions, no temporaries: the usual case
        return codes
    bad = (codes < 0) | (codes >= n_levels)
    if bad.any():
        raise InputError(
            f"argument '{name}' has {int(bad.sum())} values outside the codes 0..{n_levels - 1} "
            f"(e.g. {codes[bad][0]}); check the item's options"
        )
    return codes


def label_codes(values: Any, categories, name: str, frame: str | None = None) -> np.ndarray:
    """Codes ``0 .. K - 1`` of labels among ``categories``, vectorised (no Python work per row).

    Integer columns with integer options go through a lookup table (one pass), categorical columns
    through their own codes, anything else through one ``pandas.factorize``. Unknown labels and
    missing values raise an :class:`~rectify.errors.InputError` naming them and the column ``name``
    (of the ``frame`` data, when given).

    Examples
    --------
    >>> label_codes(["b", "a", "b"], ["a", "b"], "llm").tolist()
    [1, 0, 1]
    """
    import pandas as pd

    cats = list(categories)
    label = f"column '{name}' of the {frame} data" if frame else f"'{name}'"
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    codes = _integer_codes(s, cats)
    if codes is not None:
        return codes
    if isinstance(s.dtype, pd.CategoricalDtype):
        local, uniques = s.cat.codes.to_numpy(), s.cat.categories
        used = np.bincount(local[local >= 0], minlength=len(uniques)) > 0
    else:
        local, uniques = pd.factorize(s, use_na_sentinel=True)
        used = np.ones(len(uniques), bool)
    if (local < 0).any():
        raise InputError(f"{label} has {int((local < 0).sum())} missing value(s); remove or impute them first")
    where = pd.Index(cats).get_indexer(pd.Index(uniques, dtype=object)) if len(uniques) else np.zeros(0, int)
    if ((where < 0) & used).any():
        bad = [u for u, k, x in zip(uniques, where, used) if k < 0 and x]
        raise InputError(f"{label} has value(s) {bad[:5]} that are not among the options {cats}; recode them "
                         "(or declare missing codes as missing) before estimating")
    return where.astype(np.int64)[local]


def _integer_codes(s, cats: list) -> np.ndarray | None:
    """Codes of an integer column among integer options by a lookup table; None where that does not
    apply (other dtypes, options that are not integers, a wide range of values, unknown values)."""
    if s.dtype.kind not in "iu" or not cats or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in cats):
        return None
    v = s.to_numpy()
    if not len(v):
        return np.zeros(0, np.int64)
    lo, hi = int(v.min()), int(v.max())
    base = min(lo, 0)  # non-negative values index the table directly (no shifted copy)
    if hi - base > 4 * len(cats) + 1024:
        return None
    lut = np.full(hi - base + 1, -1, np.int64)
    for k, c in enumerate(cats):
        if base <= int(c) <= hi:
            lut[int(c) - base] = k
    if lut[lo - base:].min() < 0 and np.any(lut[np.unique(v) - base] < 0):
        return None  # unknown values: the general path names them
    return np.take(lut, v if base == 0 else v - base)


def llm_labels(yhat: Any, name: str, n_levels: int) -> np.ndarray:
    """LLM answers as hard labels: integer codes, or the arg-max of an ``(n, A)`` probability matrix.

    Examples
    --------
    >>> llm_labels([[0.2, 0.8], [0.5, 0.5]], "yhat", 2).tolist()
    [1, 0]
    """
    arr = np.asarray(yhat)
    if arr.ndim == 2:
        if arr.shape[1] != n_levels:
            raise InputError(
                f"argument '{name}' is a probability matrix with {arr.shape[1]} columns; expected {n_levels}"
            )
        arr = arr.astype(float)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise InputError(f"argument '{name}' must hold finite, non-negative probabilities")
        return np.argmax(arr, axis=1).astype(np.int64)
    return as_codes(arr, name, n_levels)


def contingency(a: np.ndarray, k: np.ndarray, n_a: int, n_k: int) -> np.ndarray:
    """Counts table ``C[a, k]`` of two code vectors.

    Examples
    --------
    >>> contingency(np.array([0, 0, 1]), np.array([1, 1, 0]), 2, 2).tolist()
    [[0, 2], [1, 0]]
    """
    return np.bincount(a * n_k + k, minlength=n_a * n_k).reshape(n_a, n_k)


def _alpha(alpha: Any, shape: tuple, name: str) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(alpha, dtype=float), shape).copy()
    except ValueError:
        raise InputError(f"argument '{name}' must be a scalar or broadcast to shape {shape}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"argument '{name}' must be strictly positive (Dirichlet concentrations)")
    return arr


def _option_counts(n_options: Any, n_llm_options: Any, min_llm: int = 2) -> tuple[int, int]:
    """Checked ``(K, A)``: ``n_options >= 2`` human options, ``n_llm_options`` LLM answers (default K)."""
    if not isinstance(n_options, (int, np.integer)) or n_options < 2:
        raise InputError(f"argument 'n_options' must be an integer >= 2, got {n_options!r}")
    n_a = n_options if n_llm_options is None else n_llm_options
    if not isinstance(n_a, (int, np.integer)) or n_a < min_llm:
        raise InputError(f"argument 'n_llm_options' must be an integer >= {min_llm}, got {n_llm_options!r}")
    return int(n_options), int(n_a)


def _scores(scores: Any, n_options: int) -> np.ndarray:
    if scores is None:
        return np.arange(1, n_options + 1, dtype=float)
    s = np.asarray(scores, dtype=float)
    if s.shape != (n_options,) or not np.all(np.isfinite(s)):
        raise InputError(f"argument 'scores' must be {n_options} finite numbers, one per option")
    return s


# ---------------------------------------------------------------------------------------- core
def _dirichlet_rows(rng: np.random.Generator, conc: np.ndarray, n_draws: int) -> np.ndarray:
    """Independent Dirichlet draws for each row of ``conc`` (R, K): returns (S, R, K).

    The gamma draws of one cell come in one call with a scalar shape (ten times faster than one call
    with a broadcast array of shapes, which dispatches per element).
    """
    conc = np.asarray(conc, dtype=float)
    g = np.empty(conc.shape + (int(n_draws),))
    for idx in np.ndindex(conc.shape):
        rng.standard_gamma(conc[idx], int(n_draws), out=g[idx])
    g = np.moveaxis(g, -1, 0)
    return g / g.sum(axis=-1, keepdims=True)


def chain_rule_posterior(
    counts_pilot: np.ndarray,
    counts_pop: np.ndarray,
    *,
    alpha_y: Any = None,
    alpha_pop: Any = 0.5,
    population_uncertainty: bool = True,
    n_draws: int = 4000,
    random_state: Any = None,
) -> np.ndarray:
    """Exact posterior draws of the population option shares from count tables.

    Parameters
    ----------
    counts_pilot : ndarray, shape (A, K)
        Pilot counts ``C[a, k]`` of LLM answer ``a`` and human answer ``k``.
    counts_pop : ndarray, shape (A,)
        Population counts of each LLM answer.
    alpha_y : float or array broadcastable to (A, K), optional
        Dirichlet prior concentrations of each row ``P(y | yhat = a)``; default ``1/K`` (Perks).
    alpha_pop : float or array broadcastable to (A,), default 0.5
        Dirichlet prior of the population distribution of the LLM answer (0.5 = Jeffreys).
    population_uncertainty : bool, default True
        Draw ``pi`` from its Dirichlet posterior; ``False`` fixes it at ``counts_pop / N``.
    n_draws : int, default 4000
    random_state : int, Generator or None

    Returns
    -------
    ndarray, shape (n_draws, K)
        Draws of ``p = pi @ theta``; every row sums to 1.

    Examples
    --------
    >>> d = chain_rule_posterior(np.array([[8, 2], [1, 9]]), np.array([500, 500]), random_state=0)
    >>> d.shape, bool(np.allclose(d.sum(axis=1), 1.0))
    ((4000, 2), True)
    """
    counts_pilot = np.asarray(counts_pilot, dtype=float)
    counts_pop = np.asarray(counts_pop, dtype=float)
    n_a, n_k = counts_pilot.shape
    if counts_pop.shape != (n_a,):
        raise InputError(f"argument 'counts_pop' must have shape ({n_a},), got {counts_pop.shape}")
    if int(n_draws) < 2:
        raise InputError("argument 'n_draws' must be at least 2")
    rng = _rng(random_state)
    a_y = _alpha(1.0 / n_k if alpha_y is None else alpha_y, (n_a, n_k), "alpha_y")
    theta = _dirichlet_rows(rng, a_y + counts_pilot, int(n_draws))  # (S, A, K)
    if population_uncertainty:
        a_p = _alpha(alpha_pop, (n_a,), "alpha_pop")
        pi = _dirichlet_rows(rng, (a_p + counts_pop)[None, :], int(n_draws))[:, 0, :]  # (S, A)
    else:
        total = counts_pop.sum()
        if total <= 0:
            raise InputError("the population has no LLM answers; pass a non-empty 'yhat_pop'")
        pi = np.broadcast_to(counts_pop / total, (int(n_draws), n_a))
    return np.einsum("sa,sak->sk", pi, theta)


def chain_rule_moments(
    counts_pilot: np.ndarray,
    counts_pop: np.ndarray,
    *,
    alpha_y: Any = None,
    alpha_pop: Any = 0.5,
    population_uncertainty: bool = True,
    scores: Any = None,
) -> dict:
    """Closed-form posterior mean and covariance of the shares (and mean score) of the chain rule.

    Uses the Dirichlet moments ``E[x_i] = a_i / a_0`` and
    ``E[x_i x_j] = a_i (a_j + [i = j]) / (a_0 (a_0 + 1))`` and the independence of ``pi`` and
    the rows ``theta_a``.

    Returns
    -------
    dict
        ``shares_mean`` (K,), ``shares_cov`` (K, K), ``mean`` (float), ``mean_var`` (float).

    Examples
    --------
    >>> m = chain_rule_moments(np.array([[8, 2], [1, 9]]), np.array([500, 500]))
    >>> [round(float(v), 4) for v in m["shares_mean"]]
    [0.4545, 0.5455]
    """
    c = np.asarray(counts_pilot, dtype=float)
    n_a, n_k = c.shape
    b = _alpha(1.0 / n_k if alpha_y is None else alpha_y, (n_a, n_k), "alpha_y") + c
    b0 = b.sum(axis=1)
    e_theta = b / b0[:, None]  # (A, K)
    # E[theta_ak theta_al] for the same row a
    e_tt_same = (b[:, :, None] * (b[:, None, :] + np.eye(n_k)[None])) / (b0 * (b0 + 1))[:, None, None]
    counts_pop = np.asarray(counts_pop, dtype=float)
    if population_uncertainty:
        g = _alpha(alpha_pop, (n_a,), "alpha_pop") + counts_pop
        g0 = g.sum()
        e_pi = g / g0
        e_pipi = g[:, None] * (g[None, :] + np.eye(n_a)) / (g0 * (g0 + 1))
    else:
        e_pi = counts_pop / counts_pop.sum()
        e_pipi = np.outer(e_pi, e_pi)
    mean = e_pi @ e_theta
    # E[p_k p_l] = sum_{a,b} E[pi_a pi_b] E[theta_ak theta_bl]
    e_tt = np.einsum("ak,bl->abkl", e_theta, e_theta)
    idx = np.arange(n_a)
    e_tt[idx, idx] = e_tt_same
    second = np.einsum("ab,abkl->kl", e_pipi, e_tt)
    cov = second - np.outer(mean, mean)
    s = _scores(scores, n_k)
    return {
        "shares_mean": mean,
        "shares_cov": cov,
        "mean": float(mean @ s),
        "mean_var": float(s @ cov @ s),
    }


def _strata_codes(strata: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(strata, dtype=object)
    if arr.shape != (n,):
        raise InputError(f"argument '{name}' must have one label per row ({n}), got shape {arr.shape}")
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
        raise InputError(f"argument '{name}' contains missing labels; give every row a stratum")
    return arr


def chain_rule(
    y: Any,
    yhat: Any,
    yhat_pop: Any,
    *,
    n_options: int,
    n_llm_options: int | None = None,
    scores: Any = None,
    option_labels: Sequence | None = None,
    strata: Any = None,
    strata_pop: Any = None,
    estimand: str = "both",
    alpha_y: Any = None,
    alpha_pop: Any = 0.5,
    population_uncertainty: bool = True,
    on_empty: str = "warn",
    n_draws: int = 4000,
    level: float = 0.95,
    random_state: Any = None,
) -> Result:
    """Bayesian chain-rule correction: posterior of the population option shares and mean score.

    Parameters
    ----------
    y : array-like of int, shape (n,)
        Human answers of the pilot, as codes ``0 .. n_options - 1``.
    yhat : array-like, shape (n,) or (n, A)
        LLM answers for the pilot rows: codes ``0 .. A - 1`` or a probability matrix (reduced to its
        arg-max, see the module notes).
    yhat_pop : array-like, shape (N,) or (N, A)
        LLM answers for every population (frame) row, in the same form.
    n_options : int
        Number of answer options ``K`` of the item.
    n_llm_options : int, optional
        Number of LLM answer categories ``A`` (default ``K``).
    scores : array-like, shape (K,), optional
        Numeric score of each option for the mean (default ``1 .. K``).
    option_labels : sequence, optional
        Labels for the share terms (default ``1 .. K``).
    strata, strata_pop : array-like, shape (n,) and (N,), optional
        Stratum labels of pilot and population rows. The chain rule runs per stratum and the stratum
        posteriors are combined with the population weights ``N_h / N``; per-stratum terms are
        returned too (``groups``). Every population stratum needs pilot rows (an error otherwise).
    estimand : {"both", "shares", "mean"}
        Terms to return: the K shares, the mean score, or both (shares first).
    alpha_y : float or array broadcastable to (A, K), optional
        Dirichlet prior of each ``P(y | yhat = a)``; default ``1/K`` per cell (Perks' prior, one
        pseudo-observation per LLM answer), see the module notes.
    alpha_pop : float or array broadcastable to (A,), default 0.5
        Dirichlet (Jeffreys) prior of the population distribution of the LLM answer.
    population_uncertainty : bool, default True
        Draw the population distribution of the LLM answer from its posterior (super-population
        view) rather than fixing it at the observed shares.
    on_empty : {"warn", "raise"}
        What to do when an LLM answer present in the population has no pilot rows (in a stratum):
        its conditional distribution then comes from the prior alone.
    n_draws : int, default 4000
    level : float, default 0.95
    random_state : int, Generator or None

    Returns
    -------
    Result
        ``estimate`` is the posterior mean, ``draws`` the exact posterior draws (intervals are their
        equal-tailed quantiles), ``cov`` the draws' covariance; ``diagnostics`` hold the pilot
        table and the LLM answers that rest on the prior.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> yhat_pop = rng.integers(0, 3, 2000)
    >>> yhat = yhat_pop[:150]
    >>> y = np.where(rng.random(150) < 0.7, yhat, rng.integers(0, 3, 150))
    >>> r = chain_rule(y, yhat, yhat_pop, n_options=3, random_state=0)
    >>> r.terms
    ('1', '2', '3', 'mean')
    >>> bool(abs(r.estimate[:3].sum() - 1) < 1e-9)
    True
    """
    _, n_a = _option_counts(n_options, n_llm_options, min_llm=1)
    if estimand not in ("both", "shares", "mean"):
        raise InputError(f"argument 'estimand' must be 'both', 'shares' or 'mean', got {estimand!r}")
    if on_empty not in ("warn", "raise"):
        raise InputError(f"argument 'on_empty' must be 'warn' or 'raise', got {on_empty!r}")
    level = check_level(level)
    y_c = as_codes(y, "y", n_options)
    a_c = llm_labels(yhat, "yhat", n_a)
    if a_c.shape[0] != y_c.shape[0]:
        raise InputError(f"arguments 'y' ({y_c.shape[0]} rows) and 'yhat' ({a_c.shape[0]} rows) differ in length; "
                         "give the LLM's answer for each pilot respondent, in the same order")
    a_pop = llm_labels(yhat_pop, "yhat_pop", n_a)
    s = _scores(scores, n_options)
    labels = [str(v) for v in (option_labels if option_labels is not None else range(1, n_options + 1))]
    if len(labels) != n_options:
        raise InputError(f"argument 'option_labels' must have {n_options} entries")
    rng = _rng(random_state)
    if alpha_y is None:
        alpha_y = 1.0 / n_options
    _alpha(alpha_y, (n_a, n_options), "alpha_y")
    _alpha(alpha_pop, (n_a,), "alpha_pop")

    if (strata is None) != (strata_pop is None):
        raise InputError("pass both 'strata' (pilot) and 'strata_pop' (population), or neither")

    def check_empty(c_pilot, c_pop, where):
        empty = np.flatnonzero((c_pilot.sum(axis=1) == 0) & (c_pop > 0))
        if empty.size:
            share = c_pop[empty].sum() / c_pop.sum()
            msg = (
                f"LLM answer code(s) {empty.tolist()} occur in the population{where} "
                f"({100 * share:.1f}% of it) but never in the pilot; their P(y | yhat) comes from the "
                "prior alone (alpha_y). Enlarge the pilot, merge answer categories, or use strata less fine."
            )
            if on_empty == "raise":
                raise EstimationError(msg)
            warnings.warn(msg, PriorOnlyWarning, stacklevel=3)
        return empty.tolist()

    kw = dict(alpha_y=alpha_y, alpha_pop=alpha_pop, population_uncertainty=population_uncertainty,
              n_draws=int(n_draws))
    diagnostics: dict[str, Any] = {}
    if strata is None:
        c_pilot = contingency(a_c, y_c, n_a, n_options)
        c_pop = np.bincount(a_pop, minlength=n_a)
        diagnostics["prior_only_llm_answers"] = check_empty(c_pilot, c_pop, "")
        diagnostics["pilot_table"] = c_pilot
        shares = chain_rule_posterior(c_pilot, c_pop, random_state=rng, **kw)
        blocks = [shares]
        group_names = ["all"]
    else:
        h_pilot = _strata_codes(strata, "strata", y_c.shape[0])
        h_pop = _strata_codes(strata_pop, "strata_pop", a_pop.shape[0])
        levels = list(dict.fromkeys(h_pop.tolist()))
        try:
            levels = sorted(levels)
        except TypeError:  # mixed label types: keep the order of first appearance
            pass
        unknown = set(h_pilot.tolist()) - set(levels)
        if unknown:
            raise InputError(
                f"argument 'strata' has labels absent from 'strata_pop': {sorted(map(str, unknown))[:5]}; "
                "every pilot row must belong to a population stratum"
            )
        weights, per = [], []
        empty_info = {}
        for h in levels:
            mp, mq = h_pilot == h, h_pop == h
            if not mp.any():
                raise EstimationError(
                    f"stratum {h!r} has {int(mq.sum())} population rows but no pilot rows; "
                    "merge it with a neighbouring stratum or drop 'strata'"
                )
            c_pilot = contingency(a_c[mp], y_c[mp], n_a, n_options)
            c_pop = np.bincount(a_pop[mq], minlength=n_a)
            empty_info[str(h)] = check_empty(c_pilot, c_pop, f" of stratum {h!r}")
            weights.append(mq.sum())
            per.append(chain_rule_posterior(c_pilot, c_pop, random_state=rng, **kw))
        w = np.asarray(weights, dtype=float) / a_pop.shape[0]
        overall = np.einsum("h,hsk->sk", w, np.stack(per))
        blocks = [overall] + per
        group_names = ["all"] + [str(h) for h in levels]
        diagnostics["prior_only_llm_answers"] = empty_info
        diagnostics["stratum_weights"] = dict(zip(group_names[1:], w.tolist()))

    diagnostics["n_draws"] = int(n_draws)
    return draws_result(
        blocks, group_names, labels, s, estimand, grouped=strata is not None,
        method="bayes-chain",
        n_pilot=int(y_c.shape[0]),
        n_population=int(a_pop.shape[0]),
        level=level,
        tuning={"alpha_y": float(np.mean(alpha_y)), "alpha_pop": float(np.mean(alpha_pop))},
        diagnostics=diagnostics,
    )


def draws_result(blocks, group_names, labels, scores, estimand, *, grouped, **result_kwargs) -> Result:
    """A :class:`Result` from posterior draws of option shares, one block per group.

    Each block is an (S, K) array of share draws; ``estimand`` picks the shares, the mean score
    ``shares @ scores``, or both. The estimate is the posterior mean, ``cov`` the posterior covariance
    and the intervals are the draws' equal-tailed quantiles.

    Examples
    --------
    >>> d = np.array([[0.2, 0.8], [0.4, 0.6]])
    >>> r = draws_result([d], ["all"], ["no", "yes"], np.array([0.0, 1.0]), "both", grouped=False,
    ...                  method="demo", n_pilot=1, n_population=1)
    >>> r.terms, r.estimate.round(2).tolist()
    (('no', 'yes', 'mean'), [0.3, 0.7, 0.7])
    """
    cols, terms, grp = [], [], []
    for name, sh in zip(group_names, blocks):
        if estimand in ("both", "shares"):
            cols.append(sh)
            terms += list(labels)
            grp += [name] * sh.shape[1]
        if estimand in ("both", "mean"):
            cols.append((sh @ scores)[:, None])
            terms.append("mean")
            grp.append(name)
    draws = np.hstack(cols)
    return Result(estimate=draws.mean(axis=0), cov=np.atleast_2d(np.cov(draws, rowvar=False)), terms=terms,
                  estimand="shares+mean" if estimand == "both" else estimand,
                  groups=grp if grouped else None, draws=draws, **result_kwargs)
