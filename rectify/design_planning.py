"""Predict each pilot design's interval width before anyone is surveyed.

Under a working model whose residual ``e_i = y_i - m_i`` has mean zero and variance ``sigma_i^2`` given
what the frame knows, the design variance of the active estimator of a frame mean (see
:mod:`rectify.estimators.active`) is, for Poisson sampling exactly and for the fixed-size designs to
Hájek's approximation (stratified simple random sampling: exactly, ``pi`` being constant in a stratum),

    V = (1 / N^2) sum_frame (1 - pi_i) sigma_i^2 / pi_i.

With ``pi_i ∝ sigma_i`` (uncapped, no floor) this is ``((sum sigma)^2 / n - sum sigma^2) / N^2``, against
``(N / n - 1) sum sigma^2 / N^2`` for simple random sampling: to first order in ``n / N`` the active
design's variance is the SRS variance times ``mean(sigma)^2 / mean(sigma^2) = 1 / (1 + CV(sigma)^2)``.
Active selection pays only where the expected error varies across the frame, and only as much as the
error model (``sigma``) knows of that variation.

``sigma`` comes from a small calibration sample (:func:`calibrated_sigma`: the tuned working model
``c + lam f`` and an error model of its squared residuals) or from a prior (e.g. the LLM's own
uncertainty, :func:`rectify.pilot_design.llm_uncertainty`, times a guessed inflation).

Examples
--------
>>> import numpy as np
>>> sigma = np.r_[np.full(500, 0.5), np.full(500, 2.0)]
>>> t = predict_widths(sigma, 100, designs=("srs", "active"), uniform=0.1)
>>> t["ratio_to_srs"].round(2).tolist()
[1.0, 0.84]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from .errors import InputError
from .pilot_design import DESIGNS, _error_array, fit_error_model, inclusion_probabilities
from .result import check_level

__all__ = ["anticipated_variance", "predict_widths", "calibrated_sigma"]


def anticipated_variance(sigma: Any, pi: Any) -> float:
    """``(1/N^2) sum (1 - pi) sigma^2 / pi``: the design variance of the active frame-mean estimator.

    Parameters
    ----------
    sigma : array-like, shape (N,)
        Anticipated residual standard deviation of every frame row.
    pi : array-like, shape (N,)
        Inclusion probabilities of every frame row.

    Examples
    --------
    >>> round(anticipated_variance(np.ones(1000), np.full(1000, 0.1)), 8)  # (1 - f) / n
    0.009
    """
    s = _error_array(sigma, len(np.asarray(sigma)), "sigma")
    p = np.asarray(pi, dtype=float)
    if p.shape != s.shape or not np.isfinite(p).all() or (p <= 0).any() or (p > 1).any():
        raise InputError(f"argument 'pi' must hold one probability in (0, 1] per frame row ({s.shape[0]})")
    return float(((1 - p) * s**2 / p).sum() / s.shape[0] ** 2)


def predict_widths(sigma: Any, n: int | Sequence[int], designs: Sequence[str] = DESIGNS, *, error: Any = None,
                   uniform: float = 0.2, n_bins: int = 4, strata_codes: Any = None,
                   level: float = 0.95) -> pd.DataFrame:
    """Predicted half-width of the frame-mean interval under each design and pilot size.

    Parameters
    ----------
    sigma : array-like, shape (N,)
        Anticipated residual sd per frame row (:func:`calibrated_sigma` or a prior).
    n : int or sequence of int
        Pilot sizes.
    designs : sequence of {"srs", "neyman", "active"}
    error : array-like, shape (N,), optional
        The expected error the designs are built from, if not ``sigma`` (e.g. the LLM's own
        uncertainty while ``sigma`` is a calibrated model).
    uniform, n_bins, strata_codes
        As in :func:`rectify.pilot_design.inclusion_probabilities`.
    level : float

    Returns
    -------
    DataFrame
        Columns ``design``, ``n``, ``std_error``, ``half_width`` (normal), ``ratio_to_srs`` (of the
        half-widths at the same ``n``).

    Examples
    --------
    >>> t = predict_widths(np.ones(1000), 100, designs=("srs",))
    >>> round(float(t["half_width"].iloc[0]), 4)  # 1.96 * sqrt(0.9 / 100)
    0.1859
    """
    s = _error_array(sigma, len(np.asarray(sigma)), "sigma")
    e = s if error is None else _error_array(error, s.shape[0], "error")
    z = float(norm.ppf(0.5 + check_level(level) / 2))
    sizes = [n] if np.isscalar(n) else list(n)
    if not sizes:
        raise InputError("argument 'n' must give at least one pilot size")
    rows = []
    for size in sizes:
        srs_se = None
        for d in ["srs", *[d for d in designs if d != "srs"]]:
            pi, _ = inclusion_probabilities(e, size, d, uniform=uniform, n_bins=n_bins, strata_codes=strata_codes)
            se = float(np.sqrt(anticipated_variance(s, pi)))
            srs_se = se if d == "srs" else srs_se
            if d in designs:
                rows.append({"design": d, "n": int(size), "std_error": se, "half_width": z * se,
                             "ratio_to_srs": se / srs_se if srs_se > 0 else np.nan})
    return pd.DataFrame(rows)


def calibrated_sigma(y: Any, yhat: Any, features: Any, yhat_frame: Any, features_frame: Any) -> np.ndarray:
    """Anticipated residual sd per frame row from a small calibration sample.

    Fits the working model ``c + lam f`` to the calibration answers by least squares (the tuned
    estimator's model), then :func:`rectify.pilot_design.fit_error_model` on its squared residuals.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=300); s = np.where(f > 0, 2.0, 0.5); y = 1 + f + rng.normal(0, s)
    >>> sig = calibrated_sigma(y, f, (f > 0).astype(float), np.array([-1.0, 1.0]), np.array([0.0, 1.0]))
    >>> bool(0.3 < sig[0] < 0.8 and 1.6 < sig[1] < 2.4)
    True
    """
    yv = np.asarray(y, dtype=float).ravel()
    fv = np.asarray(yhat, dtype=float).ravel()
    if yv.shape != fv.shape or not (np.isfinite(yv).all() and np.isfinite(fv).all()):
        raise InputError("arguments 'y' and 'yhat' must be finite and of the same length (the calibration rows)")
    A = np.column_stack([np.ones_like(fv), fv])
    coef, *_ = np.linalg.lstsq(A, yv, rcond=None)
    return fit_error_model(yv, A @ coef, features, features_frame)
