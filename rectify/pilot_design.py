"""Choose whom to survey: pilot designs with known inclusion probabilities.

Before the pilot is fielded the LLM has answered for everyone in the frame, so the frame already says
where a human answer is worth most: where the LLM's prediction is most likely to be wrong. Three
designs, each returning the pilot rows with their inclusion probability ``pi``:

* ``"srs"``: simple random sampling, ``pi = n / N`` (the baseline);
* ``"neyman"``: stratified simple random sampling over strata of the expected error (quantile bins)
  crossed with key covariates, Neyman allocation ``n_h ∝ N_h S_h`` (``S_h`` the root mean squared
  expected error of stratum ``h``), at least 2 per stratum so each stratum's variance is estimable;
* ``"active"``: active sampling in the sense of Zrnic & Candès, "Active Statistical Inference"
  (ICML 2024): ``pi_i ∝ (1 - uniform) e_i / sum(e) + uniform / N`` scaled to expected size ``n`` and
  capped at 1 (the scale is re-solved until the capped probabilities sum to ``n``), where ``e_i`` is the
  expected error of the LLM's prediction for row ``i``. The uniform share keeps every probability at
  least ``uniform * n / N``: no weight ``1 / pi`` can explode.

The expected error ``e_i`` is either the LLM's own uncertainty (:func:`llm_uncertainty`: the standard
deviation of its answer distribution, a prior that needs no human) or a calibrated error model fitted on
a small calibration sample (:func:`fit_error_model`).

Sampling, seeded by ``random_state``: ``"poisson"`` (each row independently, random size, variance
in closed form) or ``"fixed"`` (exactly ``n`` rows: simple random / stratified without replacement, and
for ``"active"`` randomised systematic PPS: rows in random order, one uniform start, ``n`` points one
unit apart on the cumulated ``pi``; rows with ``pi = 1`` are taken with certainty). Its variance is
estimated with Hájek's approximation (see :mod:`rectify.estimators.active`).

Examples
--------
>>> import numpy as np, pandas as pd
>>> frame = pd.DataFrame({"err": np.linspace(0.2, 2.0, 1000)})
>>> pilot = design_pilot(frame, 100, "active", error="err", random_state=1)
>>> len(pilot), pilot.attrs["rectify_design"]["sampling"]
(100, 'fixed')
>>> bool(pilot["pi"].between(0.2 * 100 / 1000, 1).all())
True
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, MissingCovariateError

__all__ = ["design_pilot", "inclusion_probabilities", "llm_uncertainty", "fit_error_model", "DESIGNS"]

DESIGNS = ("srs", "neyman", "active")
SAMPLINGS = ("poisson", "fixed")


def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, (bool, float)) or not isinstance(random_state, (int, np.integer)):
        raise InputError(f"argument 'random_state' must be an int or a numpy Generator (seed every draw), "
                         f"got {random_state!r}")
    return np.random.default_rng(int(random_state))


def _choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InputError(f"argument '{name}' must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _size(n: Any, N: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InputError(f"argument '{name}' must be an integer pilot size, got {n!r}")
    if not 2 <= n <= N:
        raise InputError(f"argument '{name}' must be between 2 and the frame size {N}, got {n}")
    return int(n)


def _uniform(uniform: Any) -> float:
    try:
        u = float(uniform)
    except (TypeError, ValueError):
        raise InputError(f"argument 'uniform' must be a number in (0, 1], got {uniform!r}") from None
    if not 0.0 < u <= 1.0:
        raise InputError(f"argument 'uniform' must lie in (0, 1] (the share of the uniform floor; 0 would let "
                         f"some inclusion probabilities fall to zero), got {uniform!r}")
    return u


def _error_array(error: Any, N: int, name: str = "error") -> np.ndarray:
    try:
        e = np.asarray(error, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"argument '{name}' must be numeric: one expected error per frame row") from None
    if e.shape != (N,):
        raise InputError(f"argument '{name}' must hold one expected error per frame row ({N}), got shape {e.shape}")
    if not np.isfinite(e).all():
        raise InputError(f"argument '{name}' has {int((~np.isfinite(e)).sum())} NaN/infinite values; give every "
                         f"frame row an expected error (impute it, e.g. with the mean error)")
    if (e < 0).any():
        raise InputError(f"argument '{name}' has negative values; an expected error is a size (>= 0)")
    if not e.sum() > 0:
        raise InputError(f"argument '{name}' is zero everywhere; use design='srs' (no row is more uncertain)")
    return e


def llm_uncertainty(probs: Any, scores: Any = None, kind: str = "sd") -> np.ndarray:
    """The LLM's uncertainty about each row's answer, from its answer distribution.

    Parameters
    ----------
    probs : array-like, shape (N, K)
        The LLM's probability of each of the K options (rows are renormalised to sum to 1).
    scores : array-like, shape (K,), optional
        Numeric score of each option (default 1..K).
    kind : {"sd", "entropy"}
        ``"sd"``: standard deviation of the score under the distribution, the root mean squared error
        of the expected score if the LLM were calibrated; ``"entropy"``: Shannon entropy (nats).

    Returns
    -------
    numpy.ndarray, shape (N,)

    Examples
    --------
    >>> llm_uncertainty([[0.5, 0, 0.5], [0, 1, 0]]).tolist()
    [1.0, 0.0]
    """
    _choice(kind, "kind", ("sd", "entropy"))
    try:
        P = np.asarray(probs, dtype=float)
    except (TypeError, ValueError):
        raise InputError("argument 'probs' must be a numeric (N, K) matrix of option probabilities") from None
    if P.ndim != 2 or P.shape[1] < 2:
        raise InputError(f"argument 'probs' must be an (N, K) matrix with K >= 2 options, got shape {P.shape}")
    if not np.isfinite(P).all() or (P < 0).any():
        raise InputError("argument 'probs' must be finite and non-negative (one distribution per row)")
    tot = P.sum(axis=1, keepdims=True)
    if (tot <= 0).any():
        raise InputError(f"argument 'probs' has {int((tot <= 0).sum())} rows summing to zero; every row needs a "
                         f"distribution")
    P = P / tot
    if kind == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
    s = np.arange(1, P.shape[1] + 1, dtype=float) if scores is None else np.asarray(scores, dtype=float)
    if s.shape != (P.shape[1],) or not np.isfinite(s).all():
        raise InputError(f"argument 'scores' must hold {P.shape[1]} finite option scores, got {scores!r}")
    mu = P @ s
    return np.sqrt(np.maximum(P @ s**2 - mu**2, 0.0))


def fit_error_model(y: Any, yhat: Any, features: Any, features_frame: Any) -> np.ndarray:
    """A calibrated error model: the expected error of the LLM's prediction for every frame row.

    Fits the squared error ``(y - yhat)^2`` of a small calibration sample by least squares on
    ``[1, features]`` and predicts it for the frame; predictions are floored at 5% of the calibration
    sample's mean squared error (a negative prediction is no information, not zero error) and returned
    as their square roots (a root mean squared error per row).

    Parameters
    ----------
    y, yhat : array-like, shape (m,)
        Human answers and LLM predictions of the calibration sample.
    features, features_frame : array-like, shape (m,) or (m, k); (N,) or (N, k)
        Error predictors (e.g. :func:`llm_uncertainty`, the prediction itself) in the calibration
        sample and in the frame.

    Returns
    -------
    numpy.ndarray, shape (N,)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> s = rng.uniform(0.5, 2, 400); y = rng.normal(0, s)
    >>> e = fit_error_model(y, np.zeros(400), s**2, np.array([0.25, 4.0]))
    >>> bool(0.3 < e[0] < 0.8 and 1.7 < e[1] < 2.3)
    True
    """
    yv = np.asarray(y, dtype=float).ravel()
    fv = np.asarray(yhat, dtype=float).ravel()
    X = np.asarray(features, dtype=float)
    Xf = np.asarray(features_frame, dtype=float)
    X = X.reshape(len(X), -1) if X.ndim <= 2 else X
    Xf = Xf.reshape(len(Xf), -1) if Xf.ndim <= 2 else Xf
    if yv.shape != fv.shape or X.shape[0] != yv.shape[0] or X.ndim != 2:
        raise InputError(f"arguments 'y', 'yhat' and 'features' must describe the same calibration rows: got "
                         f"{yv.shape[0]}, {fv.shape[0]} and {X.shape[0]} rows")
    if Xf.ndim != 2 or Xf.shape[1] != X.shape[1]:
        raise InputError(f"argument 'features_frame' must have the {X.shape[1]} feature column(s) of 'features'")
    for name, arr in (("y", yv), ("yhat", fv), ("features", X), ("features_frame", Xf)):
        if not np.isfinite(arr).all():
            raise InputError(f"argument '{name}' has NaN or infinite values; remove those rows first")
    if yv.shape[0] < X.shape[1] + 2:
        raise InputError(f"argument 'y' has {yv.shape[0]} calibration rows for {X.shape[1]} feature(s); give at "
                         f"least {X.shape[1] + 2}")
    r2 = (yv - fv) ** 2
    A = np.column_stack([np.ones(len(yv)), X])
    coef, *_ = np.linalg.lstsq(A, r2, rcond=None)
    pred = np.column_stack([np.ones(len(Xf)), Xf]) @ coef
    return np.sqrt(np.maximum(pred, 0.05 * r2.mean()))


def _scale_to(a: np.ndarray, total: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``clip(t a, lower, upper)`` with the scale ``t`` solved so the values sum to ``total``."""
    if total >= upper.sum():
        return upper.astype(float)
    lo, hi = 0.0, 1.0
    while np.clip(hi * a, lower, upper).sum() < total:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.clip(mid * a, lower, upper).sum() < total:
            lo = mid
        else:
            hi = mid
    x = np.clip(hi * a, lower, upper)
    free = (x > lower) & (x < upper)
    if free.any():  # remove the bisection's rounding so the sum is exact
        x[free] += (total - x.sum()) * x[free] / x[free].sum()
    return x


def _active_pi(e: np.ndarray, n: int, uniform: float) -> np.ndarray:
    N = e.shape[0]
    score = (1.0 - uniform) * e / e.sum() + uniform / N
    return _scale_to(score, float(n), np.zeros(N), np.ones(N))


def _strata_codes(frame: pd.DataFrame | None, strata: Any, N: int) -> np.ndarray:
    if strata is None:
        return np.zeros(N, dtype=int)
    cols = [strata] if isinstance(strata, str) else list(strata)
    if frame is None:
        raise InputError("argument 'strata' names frame columns; pass the frame as a DataFrame")
    absent = [c for c in cols if c not in frame.columns]
    if absent:
        raise InputError(f"argument 'strata' names columns not in the frame: {absent}")
    if frame[cols].isna().any().any():
        raise MissingCovariateError(f"columns {cols} given in 'strata' have missing values; fill or drop those "
                                    f"frame rows first (rectify does not guess a stratum)")
    keys = frame[cols].astype(str).agg("|".join, axis=1).to_numpy()
    return np.unique(keys, return_inverse=True)[1]


def _neyman(e: np.ndarray, n: int, cov_codes: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The Neyman allocation's ``pi`` and the stratum codes (error bins x covariate cells)."""
    N = e.shape[0]
    ranks = np.argsort(np.argsort(e, kind="stable"), kind="stable")
    bins = np.minimum(ranks * n_bins // N, n_bins - 1)
    codes = np.unique(cov_codes * n_bins + bins, return_inverse=True)[1]
    H = codes.max() + 1
    Nh = np.bincount(codes, minlength=H)
    Sh = np.sqrt(np.bincount(codes, weights=e**2, minlength=H) / Nh)
    lower = np.minimum(2, Nh).astype(float)
    if lower.sum() > n:
        raise InputError(f"argument 'n' ({n}) is too small for {H} strata with at least 2 pilot rows each; lower "
                         f"'n_bins', use fewer 'strata' columns, or raise 'n' to {int(lower.sum())}")
    x = _scale_to(Nh * np.maximum(Sh, 1e-12 * Sh.max() + 1e-300), float(n), lower, Nh.astype(float))
    nh = np.floor(x + 1e-9).astype(int)
    short = n - int(nh.sum())
    if short > 0:
        room = np.flatnonzero(nh < Nh)
        order = room[np.argsort(-(x[room] - nh[room]), kind="stable")]
        nh[order[:short]] += 1
    return (nh / Nh)[codes], codes


def inclusion_probabilities(error: Any, n: int, design: str = "active", *, uniform: float = 0.2,
                            n_bins: int = 4, strata_codes: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inclusion probabilities of every frame row under a design (nothing is drawn).

    Parameters
    ----------
    error : array-like, shape (N,)
        Expected error of the LLM's prediction per frame row (ignored by ``"srs"`` except for its length).
    n : int
        Pilot size (expected size for Poisson sampling).
    design : {"srs", "neyman", "active"}
    uniform : float
        Share of the uniform floor in ``"active"`` (every ``pi >= uniform n / N``).
    n_bins : int
        Quantile bins of the error for ``"neyman"``.
    strata_codes : array-like of int, shape (N,), optional
        Covariate cells crossed with the error bins in ``"neyman"``.

    Returns
    -------
    pi : numpy.ndarray, shape (N,)
        Sums to ``n``.
    strata : numpy.ndarray of int or None
        The stratum of each row (``"neyman"`` only).

    Examples
    --------
    >>> pi, _ = inclusion_probabilities([1.0, 1.0, 1.0, 9.0], 2, "active", uniform=0.5)
    >>> pi.round(3).tolist()
    [0.333, 0.333, 0.333, 1.0]
    """
    _choice(design, "design", DESIGNS)
    try:
        N = len(error)
    except TypeError:
        raise InputError("argument 'error' must be an array with one expected error per frame row") from None
    n = _size(n, N)
    if design == "srs":
        return np.full(N, n / N), None
    e = _error_array(error, N)
    if design == "active":
        return _active_pi(e, n, _uniform(uniform)), None
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise InputError(f"argument 'n_bins' must be a positive integer, got {n_bins!r}")
    cov = np.zeros(N, dtype=int) if strata_codes is None else np.asarray(strata_codes, dtype=int)
    if cov.shape != (N,):
        raise InputError(f"argument 'strata_codes' must give one code per frame row ({N})")
    return _neyman(e, n, cov, int(n_bins))


def _systematic(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised systematic PPS: positions of a fixed-size sample with inclusion probabilities ``pi``."""
    sure = pi >= 1.0 - 1e-12
    rest = np.flatnonzero(~sure)
    chosen = [np.flatnonzero(sure)]
    if rest.size:
        order = rest[rng.permutation(rest.size)]
        c = np.concatenate([[0.0], np.cumsum(pi[order])])
        u = rng.random()
        hits = np.floor(c[1:] - u + 1e-9) - np.floor(c[:-1] - u + 1e-9)
        chosen.append(order[hits > 0])
    return np.sort(np.concatenate(chosen))


def _stratified_srs(codes: np.ndarray, pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = []
    for h in range(codes.max() + 1):
        pos = np.flatnonzero(codes == h)
        k = int(round(pi[pos[0]] * pos.size))
        out.append(rng.choice(pos, size=k, replace=False))
    return np.sort(np.concatenate(out))


def draw_positions(pi: np.ndarray, sampling: str, rng: np.random.Generator, strata: np.ndarray | None = None
                   ) -> np.ndarray:
    """Positions of one sample with inclusion probabilities ``pi`` (see :func:`design_pilot`).

    Examples
    --------
    >>> draw_positions(np.full(10, 0.3), "fixed", np.random.default_rng(0)).size
    3
    """
    _choice(sampling, "sampling", SAMPLINGS)
    if sampling == "poisson":
        return np.flatnonzero(rng.random(pi.shape[0]) < pi)
    if strata is not None:
        return _stratified_srs(strata, pi, rng)
    if np.ptp(pi) == 0:
        return np.sort(rng.choice(pi.shape[0], size=int(round(pi.sum())), replace=False))
    return _systematic(pi, rng)


def design_pilot(frame: pd.DataFrame, n: int, design: str = "active", *, error: Any = None,
                 probs: Sequence[str] | None = None, scores: Any = None, uncertainty: str = "sd",
                 strata: str | Sequence[str] | None = None,
                 n_bins: int = 4, uniform: float = 0.2, sampling: str = "fixed", random_state: Any = None,
                 column: str = "pi", stratum_column: str = "stratum") -> pd.DataFrame:
    """Draw a pilot from the frame under a design and return it with its inclusion probabilities.

    Parameters
    ----------
    frame : DataFrame
        Everyone, with the LLM's answers (its option probabilities or an expected-error column).
    n : int
        Pilot size (the expected size under Poisson sampling).
    design : {"srs", "neyman", "active"}
        See the module notes.
    error : str or array-like, optional
        Expected error of the LLM's prediction per frame row (a column name or an array), e.g. from
        :func:`fit_error_model`. Default: the LLM's own uncertainty, :func:`llm_uncertainty` of ``probs``.
    probs : list of str, optional
        The LLM's option-probability columns (needed for ``"neyman"``/``"active"`` without ``error``).
    scores : array-like, optional
        Option scores for ``probs`` (default 1..K).
    uncertainty : {"sd", "entropy"}, default "sd"
        Which uncertainty of the answer distribution stands for the expected error when it comes from
        ``probs`` (:func:`llm_uncertainty`); the sd is on the scale of the error itself, the entropy only
        ranks rows (fine for ``"neyman"`` bins, a cruder size for ``"active"``).
    strata : str or list of str, optional
        Covariate columns crossed with the error bins in ``"neyman"``.
    n_bins : int, default 4
        Quantile bins of the expected error in ``"neyman"``.
    uniform : float, default 0.2
        Share of the uniform floor in ``"active"``: every ``pi >= uniform * n / N``.
    sampling : {"fixed", "poisson"}
        Exactly ``n`` rows (SRS without replacement, stratified SRS, or randomised systematic PPS for
        ``"active"``) or independent Poisson draws. ``"neyman"`` is always fixed-size.
    random_state : int or numpy.random.Generator
        Seed (required: every draw is reproducible).
    column : str, default "pi"
        Name of the added inclusion-probability column.
    stratum_column : str, default "stratum"
        Name of the added stratum column (``"neyman"`` only).

    Returns
    -------
    DataFrame
        The pilot rows in frame order, index kept, with ``column`` (and ``"stratum"`` for ``"neyman"``);
        ``.attrs["rectify_design"]`` records the design, sampling, ``n``, ``N``, ``uniform`` and the
        probability column (the active estimators read it).

    Examples
    --------
    >>> from rectify.datasets import load_anes96_llm
    >>> a = load_anes96_llm()
    >>> probs = [f"self_lr_p{k}" for k in range(1, 8)]
    >>> p = design_pilot(a, 100, "neyman", probs=probs, strata="educ_label", n_bins=2, random_state=3)
    >>> len(p), round(float((1 / p["pi"]).sum()))
    (100, 944)
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"argument 'frame' must be a pandas DataFrame, got {type(frame).__name__}")
    N = len(frame)
    if N < 2:
        raise InputError("argument 'frame' must have at least 2 rows")
    n = _size(n, N)
    _choice(design, "design", DESIGNS)
    _choice(sampling, "sampling", SAMPLINGS)
    for arg, col in (("column", column), ("stratum_column", stratum_column)):
        if not isinstance(col, str) or not col:
            raise InputError(f"argument {arg!r} must be a non-empty column name, got {col!r}")
        if col in frame.columns and (arg == "column" or design == "neyman"):
            raise InputError(f"argument {arg!r}: the frame already has a column {col!r}; pass another name")
    if column == stratum_column:
        raise InputError("arguments 'column' and 'stratum_column' must differ")
    rng = _rng(random_state)
    e = np.ones(N)
    if design != "srs":
        if error is not None:
            if isinstance(error, str):
                if error not in frame.columns:
                    raise InputError(f"argument 'error' names column {error!r}, which the frame lacks")
                error = frame[error].to_numpy(dtype=float)
            e = _error_array(error, N)
        elif probs is not None:
            cols = [probs] if isinstance(probs, str) else list(probs)
            absent = [c for c in cols if c not in frame.columns]
            if absent:
                raise InputError(f"argument 'probs' names columns not in the frame: {absent}")
            e = llm_uncertainty(frame[cols].to_numpy(dtype=float), scores, kind=uncertainty)
        else:
            raise InputError(f"design {design!r} needs the expected error of the LLM's prediction: pass "
                             f"error=<column or array> or probs=<the LLM's option-probability columns>")
    codes = _strata_codes(frame, strata if design == "neyman" else None, N)
    pi, st = inclusion_probabilities(e, n, design, uniform=uniform, n_bins=n_bins, strata_codes=codes)
    used = "fixed" if design == "neyman" else sampling
    pos = draw_positions(pi, used, rng, st)
    out = frame.iloc[pos].copy()
    out[column] = pi[pos]
    if st is not None:
        out[stratum_column] = st[pos]
    out.attrs["rectify_design"] = {"design": design, "sampling": used, "n": n, "N": N,
                                   "uniform": float(uniform) if design == "active" else None,
                                   "pi": column, "strata": stratum_column if st is not None else None}
    return out
