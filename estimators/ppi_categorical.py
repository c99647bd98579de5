"""PPI estimators of option shares (categorical items); see :mod:`rectify.estimators.ppi`."""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import special

from rectify.errors import InputError
from rectify.result import Result, check_level

from . import _validate as V
from .ppi_means import ppi_mean

__all__ = ["ppi_shares"]


def _one_hot(labels, categories, name) -> np.ndarray:
    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        raise InputError(f"argument '{name}' must be 1-D answer labels or an (n, K) probability matrix")
    if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
        raise InputError(f"argument '{name}' has missing answers; remove them (or model them as a category) first")
    index = {c: k for k, c in enumerate(categories)}
    codes = np.empty(len(arr), dtype=int)
    for i, v in enumerate(arr):
        k = index.get(v)
        if k is None and isinstance(v, (float, np.floating)) and float(v).is_integer():
            k = index.get(int(v))
        if k is None:
            raise InputError(
                f"argument '{name}' has answer {v!r}, which is not one of the item's options "
                f"{list(categories)}; fix the coding or add the option"
            )
        codes[i] = k
    return np.eye(len(categories))[codes]


def _as_shares_matrix(a, categories, name):
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.ndim == 2:
        P = V.as_float_array(arr, name, 2)
        if P.shape[1] != len(categories):
            raise InputError(f"argument '{name}' has {P.shape[1]} columns for {len(categories)} options")
        if (P < -1e-12).any():
            raise InputError(f"argument '{name}' has negative probabilities; check the LLM's probability columns "
                             "(give one non-negative distribution per row)")
        rs = P.sum(axis=1)
        if np.any(np.abs(rs - 1) > 1e-6):
            raise InputError(
                f"rows of '{name}' must sum to one (found sums from {rs.min():.3g} to {rs.max():.3g}); "
                f"renormalise the LLM's answer distribution explicitly and report the mass it put outside the options"
            )
        return P
    return _one_hot(arr, categories, name)


def ppi_shares(y=None, yhat=None, yhat_pop=None, method: str = "ppi++", *, categories=None, weights=None,
               weights_pop=None, lam=None, lambda_bounds=None, strata=None, strata_pop=None,
               level: float = 0.95, convention: str = "small-sample", estimand: str | None = None,
               overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Population option shares of a categorical (e.g. Likert) item, with their joint covariance.

    Human answers ``y`` are labels; LLM predictions may be labels or an (n, K) matrix of answer
    probabilities over ``categories`` (rows summing to one). One lambda is shared by all options so the
    shares sum to one exactly. Intervals are built on the log-odds scale from the same standard errors
    (as R's ``svyciprop(method="xlogit")``): Wald intervals for small shares under-cover at small pilots.

    Parameters
    ----------
    y, yhat, yhat_pop : array-like
        Pilot answers, pilot predictions, population predictions (see :func:`ppi_mean`).
    categories : sequence
        The item's options in order. Default: sorted labels seen in ``y`` and ``yhat_pop``.
    Other parameters as in :func:`ppi_mean`.

    Returns
    -------
    Result
        One term per option, ``share[option]``; ``cov`` is the K x K joint covariance.

    Examples
    --------
    >>> y = np.array([1, 2, 2, 3, 3, 3, 4, 4, 2, 3])
    >>> r = ppi_shares(y, method="classical", categories=[1, 2, 3, 4])
    >>> r.estimate.tolist()
    [0.1, 0.3, 0.4, 0.2]
    >>> float(r.estimate.sum())
    1.0
    """
    if method not in ("classical", "naive", "ppi", "ppi++"):
        V.check_method(method)
    if categories is None:
        seen = []
        for a in (y, yhat_pop):
            if a is not None and np.asarray(a).ndim == 1:
                seen.extend(np.asarray(a, dtype=object).tolist())
        try:
            categories = sorted(set(seen))
        except TypeError:
            raise InputError("pass 'categories' (the item's options in order): the labels are not sortable") from None
        if not categories:
            raise InputError("pass 'categories': they cannot be inferred from probability matrices")
    categories = list(categories)
    if len(categories) < 2:
        raise InputError("argument 'categories' must list at least two options")
    Y = _as_shares_matrix(y, categories, "y") if method != "naive" else None
    F = _as_shares_matrix(yhat, categories, "yhat") if method in ("ppi", "ppi++") else None
    Fp = _as_shares_matrix(yhat_pop, categories, "yhat_pop") if method != "classical" else None
    if method in ("ppi", "ppi++") and F is None:
        raise InputError("argument 'yhat' is required for PPI")
    r = ppi_mean(Y, F, Fp, method, weights=weights, weights_pop=weights_pop, lam=lam, lambda_mode="overall",
                 lambda_bounds=lambda_bounds, strata=strata, strata_pop=strata_pop, level=level,
                 convention=convention, terms=[f"share[{c}]" for c in categories], estimand=estimand,
                 overlap=overlap, frame_size=frame_size)
    from dataclasses import replace
    fn = partial(_logit_share_interval, estimate=r.estimate, se=r.std_error, df=r.df)
    return replace(r, estimand="shares", bounds=(0.0, 1.0), interval_fn=fn,
                   diagnostics={**r.diagnostics, "categories": categories,
                                "interval": "logit-scale (Wald on the log-odds, back-transformed)"})


def _logit_share_interval(level, *, estimate, se, df):
    """Intervals for shares built on the log-odds scale (as R's ``svyciprop(method="xlogit")``).

    A Wald interval for a share near 0 or 1 under-covers at small pilots; on the logit scale the
    interval is asymmetric and stays inside (0, 1). A share estimated at or beyond 0 or 1 (possible for
    PPI) keeps the Wald interval, clipped to [0, 1].
    """
    level = check_level(level)
    q = 0.5 + level / 2
    crit = special.ndtri(q) if df is None else np.where(
        np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), q), special.ndtri(q))
    p = np.asarray(estimate, float)
    inside = (p > 0) & (p < 1) & (se > 0)
    pc = np.where(inside, p, 0.5)
    eta = np.log(pc / (1 - pc))
    se_eta = se / (pc * (1 - pc))
    lo_l = 1 / (1 + np.exp(-(eta - crit * se_eta)))
    hi_l = 1 / (1 + np.exp(-(eta + crit * se_eta)))
    lo = np.where(inside, lo_l, p - crit * se)
    hi = np.where(inside, hi_l, p + crit * se)
    return np.clip(lo, 0, 1), np.clip(hi, 0, 1)
