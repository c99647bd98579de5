"""PPI estimators of option shares (categorical items); see :mod:`rectify.estimators.ppi`.

Rare options
------------
A share near 0 (a Likert option chosen by 1-5%) breaks Wald-type intervals at pilots of 50-100: the
estimated variance ``p(1 - p)`` collapses with the estimate (an option nobody in the pilot chose gets
the interval [0, 0]). The default interval (``interval="score"``) inverts the PPI estimating equation
as Wilson's score interval does: the answers' variance is taken at the hypothesised share ``p``
rather than at the estimate,

    {p : (m - p)^2 <= t^2 V(p)},   V(p) = V^ + kappa (m2 p (1 - p) - s2^),

where ``m`` is the (PPI) share estimate, ``V^`` its estimated variance, ``s2^ = mean(w^2 (y - ybar)^2)``
the answers' part of it, ``m2 = mean(w^2)`` and ``kappa`` the factor with which the answers' variance
enters ``V^`` (``1/(n - 1 - tuned)``, times the finite-population or frame factor of
:mod:`rectify.estimand`). The set is an interval (a quadratic in ``p``); with ``lambda = 0`` it is
Wilson's interval. Its critical value is the normal one: the variance under the hypothesised share
already is the small-sample correction (Student t on top made the common options over-cover).
Coverage measured (tests/test_rare_shares.py, a 3% option, n = 50 and 100): 94.6-96.4%, where the
logit-scale interval gave 71% (classical) and 79% (PPI++) at n = 50; at a 1% share and n = 50 PPI++
reached 92.8%, which :class:`~rectify.errors.SparseAnswersWarning` says at run time. The point estimates are projected onto the simplex (non-negative,
summing to one); the covariance is the unprojected estimator's. Stratified estimates and
``convention="ppi_py"`` keep the logit-scale interval. :class:`rectify.errors.SparseAnswersWarning` is
issued when an option has no pilot answer, when every pilot answer is the same option, or when an
interval has zero width.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import special

from rectify import estimand as E
from rectify.errors import InputError, SparseAnswersWarning
from rectify.result import Result, check_level

from . import _validate as V
from .models import prob_row_checks
from .ppi_base import _float_array
from .ppi_means import ppi_mean

__all__ = ["ppi_shares"]


def _unknown_answer(name, v, categories) -> InputError:
    return InputError(f"argument '{name}' has answer {v!r}, which is not one of the item's options "
                      f"{list(categories)}; fix the coding or add the option")


def _missing_answers(name) -> InputError:
    return InputError(f"argument '{name}' has missing answers; remove them (or model them as a category) first")


def _code_of(v, index):
    """The option index of one label (a float label also matches its integer), or None."""
    k = index.get(v)
    if k is None and isinstance(v, (float, np.floating)) and float(v).is_integer():
        k = index.get(int(v))
    return k


def _numeric_codes(vals: np.ndarray, categories):
    """Option indices of numeric labels against numeric options by a binary search on the sorted
    options; None (the general path) when an option is not a plain finite number, options repeat, or
    an integer label is too large to compare as a float."""
    if not all(isinstance(c, (int, float, np.integer, np.floating)) and not isinstance(c, (bool, np.bool_))
               for c in categories):
        return None
    cats = np.array([float(c) for c in categories])
    if not np.isfinite(cats).all() or np.abs(cats).max() >= 2.0**53 or np.unique(cats).size != cats.size:
        return None
    if vals.dtype.kind in "iu" and vals.size and max(abs(int(vals.min())), abs(int(vals.max()))) >= 2**53:
        return None
    codes = _integer_codes(vals, cats)
    if codes is not None:
        return codes
    order = np.argsort(cats)
    ordered = cats[order]
    pos = np.minimum(np.searchsorted(ordered, vals), ordered.size - 1)
    found = ordered[pos] == vals
    if not found.all():
        return int(np.argmin(found))  # the first unknown row (the caller names its answer)
    return order[pos]


def _integer_codes(vals: np.ndarray, cats: np.ndarray):
    """:func:`_numeric_codes` for whole-number labels over a short range: one lookup table (a binary
    search per row costs 14 ms at 1e6 rows, the table 3 ms); None when the labels are not whole numbers
    or span too wide a range."""
    if vals.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            iv = vals.astype(np.int64)
        if not (iv == vals).all():
            return None
    else:
        iv = vals
    if not iv.size:
        return np.zeros(0, dtype=np.intp)
    lo, hi = int(iv.min()), int(iv.max())
    if hi - lo > 4 * iv.size + 1024:
        return None
    table = np.full(hi - lo + 1, -1, dtype=np.intp)
    for k, c in enumerate(cats):
        if c.is_integer() and lo <= c <= hi:
            table[int(c) - lo] = k
    codes = table[iv - lo]
    bad = codes < 0
    return int(np.argmax(bad)) if bad.any() else codes


def _one_hot(labels, categories, name) -> np.ndarray:
    """An (n, K) 0/1 matrix of answer labels over ``categories`` (labels matched as dictionary keys:
    ``2.0`` is option ``2``); a missing or unknown label is refused, naming the first."""
    raw = np.asarray(labels)
    if raw.ndim != 1:
        raise InputError(f"argument '{name}' must be 1-D answer labels or an (n, K) probability matrix")
    codes = None
    if raw.dtype.kind in "iuf":  # numbers: no Python object per row
        if raw.dtype.kind == "f" and np.isnan(raw).any():
            raise _missing_answers(name)
        codes = _numeric_codes(raw, categories)
        if isinstance(codes, int):
            raise _unknown_answer(name, raw[codes].item(), categories)
    if codes is None:  # any labels: the distinct ones looked up once each (in order of first appearance)
        import pandas as pd

        arr = np.asarray(labels, dtype=object)
        if arr.ndim != 1:
            raise InputError(f"argument '{name}' must be 1-D answer labels or an (n, K) probability matrix")
        inverse, distinct = pd.factorize(arr)  # (None and NaN: code -1)
        if (inverse < 0).any():
            raise _missing_answers(name)
        index = {c: k for k, c in enumerate(categories)}
        found = [_code_of(v, index) for v in distinct]
        for v, k in zip(distinct, found):
            if k is None:
                raise _unknown_answer(name, v, categories)
        codes = np.array(found, dtype=np.intp)[inverse]
    K = len(categories)
    out = np.zeros((codes.shape[0], K))
    out.reshape(-1)[np.arange(0, codes.shape[0] * K, K) + codes] = 1.0  # row i, column codes[i]
    return out


def _as_shares_matrix(a, categories, name, keep=False):
    """``a`` (an (n, K) probability matrix or labels) as a checked (n, K) float matrix. A
    :class:`~rectify.estimators.models.ProbMatrix` comes back as one only with ``keep`` (for
    :func:`~rectify.estimators.models.fit_ordinal`, which reads its column sums); otherwise as a plain
    array, so that nothing computed from it is a ProbMatrix."""
    if a is None:
        return None
    # (a ProbMatrix from gather_prob_columns stays one: its checks were taken when it was gathered)
    arr = a if getattr(a, "stats", None) is not None else np.asarray(a)
    if arr.ndim == 2:
        try:
            P = arr if arr.dtype == float else np.asarray(arr, dtype=float)
        except (TypeError, ValueError):
            P = _float_array(arr, name, 2)  # (raises, naming the argument)
        pmin, lo, hi, finite = prob_row_checks(P)
        if not finite:  # a row sum is finite only when the row is: one pass checks both
            P = _float_array(arr, name, 2)  # (raises, naming the argument, for NaN or infinite values)
            hi = np.inf  # finite entries whose sum overflowed
        if P.shape[1] != len(categories):
            raise InputError(f"argument '{name}' has {P.shape[1]} columns for {len(categories)} options")
        if pmin < -1e-12:
            raise InputError(f"argument '{name}' has negative probabilities; check the LLM's probability columns "
                             "(give one non-negative distribution per row)")
        if lo < 1 - 1e-6 or hi > 1 + 1e-6:
            raise InputError(
                f"rows of '{name}' must sum to one (found sums from {lo:.3g} to {hi:.3g}); "
                f"renormalise the LLM's answer distribution explicitly and report the mass it put outside the options"
            )
        return P if keep or type(P) is np.ndarray else P.view(np.ndarray)
    return _one_hot(arr, categories, name)


def ppi_shares(y=None, yhat=None, yhat_pop=None, method: str = "ppi++", *, categories=None, weights=None,
               weights_pop=None, lam=None, lambda_bounds=None, strata=None, strata_pop=None,
               level: float = 0.95, convention: str = "small-sample", estimand: str | None = None,
               overlap: str = "separate", frame_size: int | None = None, interval: str = "score") -> Result:
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
    interval : {"score", "logit"}
        ``"score"`` (default): the Wilson-type inversion of the estimating equation (module notes),
        which holds for rare options; ``"logit"``: Wald on the log-odds scale.
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
    if interval not in ("score", "logit"):
        raise InputError(f"argument 'interval' must be 'score' or 'logit', got {interval!r}")
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
    return _share_result(r, None if method == "naive" else Y, categories, method=method, lam=lam, weights=weights,
                         estimand=estimand, overlap=overlap, convention=convention, interval=interval,
                         stratified=strata is not None)


def _share_result(r: Result, Y, categories, *, method, lam, weights, estimand, overlap, convention,
                  interval="score", stratified=False) -> Result:
    """A mean-of-indicators Result as shares: simplex projection, the interval, the sparse-answer warnings
    (shared by :func:`ppi_shares` and the streamed verbs)."""
    from dataclasses import replace
    fn = partial(_logit_share_interval, estimate=r.estimate, se=r.std_error, df=r.df)
    how = "logit-scale (Wald on the log-odds, back-transformed)"
    shown = _project_simplex(r.estimate)
    if interval == "score" and convention != "ppi_py" and Y is not None and not stratified:
        n = Y.shape[0]
        w = V.normalise_weights(weights, n, "weights")
        target = E.core_target(estimand, overlap, convention)
        lam_used = float(np.atleast_1d(r.tuning.get("lambda", 0.0))[0]) if method in ("ppi", "ppi++") else 0.0
        kappa = _answers_factor(n, r.n_population, target, int(method == "ppi++" and lam is None and lam_used != 0))
        theta = (w[:, None] * Y).mean(0)
        s2 = np.mean((w[:, None] * (Y - theta)) ** 2, axis=0)
        fn = partial(_score_share_interval, estimate=r.estimate, var=np.diag(r.cov), kappa=kappa,
                     m2=_option_design_effects(theta, s2, float(np.mean(w**2))), s2=s2, df=None,
                     fallback=fn, shown=shown)
        how = "score (Wilson-type inversion of the PPI estimating equation)"
    r = replace(r, estimate=shown, estimand="shares", bounds=(0.0, 1.0), interval_fn=fn,
                diagnostics={**r.diagnostics, "categories": categories, "interval": how})
    _warn_sparse(Y, categories, r)
    return r


def _option_design_effects(theta: np.ndarray, s2: np.ndarray, kish: float) -> np.ndarray:
    """Each option's own design effect ``s2_k / (theta_k (1 - theta_k))`` for the score interval.

    The score interval replaces the answers' observed second moment ``s2_k`` by its value under a
    hypothesised share p, ``deff_k p (1 - p)``. With weights that depend on the answer (an
    unequal-probability pilot), every option has its own design effect: one Kish factor ``mean(w^2)``
    for all options would make the interval of an up-weighted option too narrow for the standard error
    it reports (74% coverage at Kish deff 1.5, benchmarks/results/coverage_study.md). With equal weights
    ``deff_k = 1``; an option nobody chose (``theta_k = 0``) keeps the Kish factor.
    """
    q = theta * (1 - theta)
    return np.where(q > 1e-12, s2 / np.where(q > 1e-12, q, 1.0), kish)


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {p >= 0, sum p = 1} (sort-based); shares already there are unchanged."""
    v = np.asarray(v, float)
    if np.all(v >= 0) and abs(v.sum() - 1) < 1e-12:
        return v
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1
    k = np.nonzero(u - css / np.arange(1, v.size + 1) > 0)[0][-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)


def _answers_factor(n: int, N: int, target, tuned: int) -> float:
    """The factor ``kappa`` with which the answers' variance enters the estimated variance (module notes)."""
    a, b, _ = E.variance_parts(np.eye(1) / (n - 1 - tuned), np.zeros((1, 1)), np.eye(1) / (n - 1), n, N, target)
    return float(a[0, 0] + b[0, 0])


def _critical(level, df, d):
    q = 0.5 + level / 2
    if df is None:
        return np.full(d, special.ndtri(q))
    df = np.asarray(df, float)
    return np.where(np.isfinite(df), special.stdtrit(np.where(np.isfinite(df), df, 1.0), q), special.ndtri(q))


def _score_share_interval(level, *, estimate, var, kappa, m2, s2, df, fallback, shown):
    """``{p : (m - p)^2 <= t^2 (V^ + kappa (m2 p (1 - p) - s2^))}`` per option (module notes)."""
    level = check_level(level)
    t2 = _critical(level, df, len(estimate)) ** 2
    m = np.asarray(estimate, float)
    c0 = var - kappa * s2
    a2 = 1 + t2 * kappa * m2
    a1 = -(2 * m + t2 * kappa * m2)
    a0 = m**2 - t2 * c0
    disc = a1**2 - 4 * a2 * a0
    root = np.sqrt(np.maximum(disc, 0.0))
    flo, fhi = fallback(level)
    lo = np.where(disc >= 0, (-a1 - root) / (2 * a2), flo)
    hi = np.where(disc >= 0, (-a1 + root) / (2 * a2), fhi)
    lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
    return np.minimum(lo, shown), np.maximum(hi, shown)


def _warn_sparse(Y, categories, r) -> None:
    """:class:`SparseAnswersWarning` for options no pilot respondent chose, a pilot with one answer, options
    with under one expected pilot answer, and intervals of zero width."""
    import warnings

    def warn(msg):
        warnings.warn(msg, SparseAnswersWarning, stacklevel=5)

    rests = "the LLM's predictions and " if r.method in ("ppi", "ppi++") else ""
    if Y is not None:
        n = Y.shape[0]
        counts = Y.sum(axis=0)
        none = [c for c, k in zip(categories, counts) if k == 0]
        if len(none) == len(categories) - 1:
            warn(f"every pilot answer is option {categories[int(np.argmax(counts))]!r}: the other options' shares "
                 f"rest on {rests}the score interval alone; collect more varied answers")
        elif none:
            warn(f"options {none} have no pilot answer: their shares rest on {rests}the score interval (no human "
                 f"chose them); a larger pilot, or oversampling the groups likely to choose them, would check them")
        few = [c for c, p in zip(categories, r.estimate) if n * p < 1 and c not in none]
        if few and r.diagnostics.get("interval", "").startswith("score"):
            warn(f"options {few} have fewer than one expected pilot answer (n x share < 1): no interval method "
                 f"reached 93.5% coverage there in simulation (PPI++ score interval: 92.8% at a 1% share, n = 50; "
                 f"tests/test_rare_shares.py); read their intervals as indicative")
    lo, hi = r.conf_int()
    flat = [c for c, a, b in zip(categories, lo, hi) if b - a <= 1e-12]
    if flat:
        warn(f"the intervals of options {flat} have zero width: no sampling variance is estimable for them "
             f"(interval {r.diagnostics.get('interval')}); do not read them as certain")


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
