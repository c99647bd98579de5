"""Marginal axis of :mod:`rectify.fidelity`: how far a simulated answer distribution is from the human
one -- Wasserstein-1 on the ordinal scale (raw and normalised), total variation, Jensen-Shannon
divergence, mean difference and SD ratio."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import EstimationError, InputError
from .fidelity_inputs import _distribution, _on_grid, _scores_arg, _two_pmfs

__all__ = ["wasserstein1", "total_variation", "jensen_shannon", "mean_difference", "sd_ratio",
           "marginal_fidelity"]


# ---------------------------------------------------------------------------------------------
# marginal axis
# ---------------------------------------------------------------------------------------------
def wasserstein1(human: Any, simulated: Any, scores: Any = None, normalise: bool = False) -> float:
    """Wasserstein-1 (earth mover's) distance between two answer distributions on the score scale.

    ``W1 = integral |F_h(t) - F_s(t)| dt = sum_j |F_h(x_j) - F_s(x_j)| (x_{j+1} - x_j)`` over the
    merged sorted support ``x``, where ``F`` are the cumulative distribution functions. With
    ``normalise=True`` it is divided by the scale range ``max(scores) - min(scores)`` (``K - 1``
    for scores ``1..K``), so it lies in [0, 1].

    Parameters
    ----------
    human, simulated : array-like
        1-D answers or scores (NaN skipped; continuous values such as expected scores are
        allowed) or an ``(n, K)`` matrix of option probabilities (their mixture is used).
    scores : sequence of float, optional
        Option scores (default ``1..K`` for probabilities). Needed with ``normalise=True`` when
        neither input is a probability matrix.
    normalise : bool, default False

    Returns
    -------
    float

    Examples
    --------
    >>> float(wasserstein1([1, 1, 4], [1, 2, 4], scores=[1, 2, 3, 4], normalise=True))
    0.1111111111111111
    """
    sh, wh, _ = _distribution(human, "human", scores)
    ss, ws, _ = _distribution(simulated, "simulated", scores)
    x = np.union1d(sh, ss)
    fh = np.cumsum(_on_grid(sh, wh, x, "human"))
    fs = np.cumsum(_on_grid(ss, ws, x, "simulated"))
    w1 = float(np.sum(np.abs(fh - fs)[:-1] * np.diff(x)))
    if not normalise:
        return w1
    sc = _scores_arg(scores)
    if sc is None:
        k = next((np.shape(a)[1] for a in (human, simulated) if np.ndim(a) == 2), None)
        if k is None:
            raise InputError("normalise=True needs 'scores' (the option scores) when no probabilities are given")
        sc = np.arange(1.0, k + 1)
    return w1 / float(sc[-1] - sc[0])


def total_variation(human: Any, simulated: Any, scores: Any = None) -> float:
    """Total variation distance between two distributions over the options.

    ``TV = 1/2 sum_k |p_k - q_k|`` in [0, 1], ``p`` the human and ``q`` the simulated option shares.

    Parameters
    ----------
    human, simulated : array-like
        1-D answers on the option scale (NaN skipped) or ``(n, K)`` option probabilities.
    scores : sequence of float, optional
        The option scores. Default: ``1..K`` for probabilities; for two samples, the values
        observed (simulated values off the human scale raise :class:`~rectify.errors.InputError`:
        pass probabilities or round them explicitly).

    Returns
    -------
    float

    Examples
    --------
    >>> float(total_variation([1, 2, 2, 3], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    0.25
    """
    p, q = _two_pmfs(human, simulated, scores)
    return float(0.5 * np.abs(p - q).sum())


def jensen_shannon(human: Any, simulated: Any, scores: Any = None) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two distributions over the options.

    ``JS = 1/2 KL(p || m) + 1/2 KL(q || m)``, ``m = (p + q) / 2``, ``KL(a || b) = sum_k a_k
    log2(a_k / b_k)`` with ``0 log 0 = 0``. It equals the square of
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` (the JS *distance*).

    Parameters
    ----------
    human, simulated : array-like
        As in :func:`total_variation`.
    scores : sequence of float, optional

    Returns
    -------
    float
        In [0, 1] (base-2 logarithms).

    Examples
    --------
    >>> float(jensen_shannon([1, 1], [2, 2]))
    1.0
    """
    p, q = _two_pmfs(human, simulated, scores)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        ok = a > 0
        return float(np.sum(a[ok] * np.log2(a[ok] / m[ok])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def _moments(x: Any, name: str, scores: Any) -> tuple[float, float]:
    support, w, _ = _distribution(x, name, scores)
    mu = float(np.sum(w * support))
    return mu, float(np.sqrt(max(0.0, np.sum(w * (support - mu) ** 2))))


def mean_difference(human: Any, simulated: Any, scores: Any = None) -> float:
    """Mean simulated score minus mean human score: ``mu_s - mu_h``.

    For probabilities the mean of the mixture ``sum_k s_k qbar_k`` is used.

    Parameters
    ----------
    human, simulated : array-like
        1-D values (NaN skipped) or ``(n, K)`` option probabilities.
    scores : sequence of float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> float(mean_difference([1, 2, 3], [2.5, 2.5]))
    0.5
    """
    return _moments(simulated, "simulated", scores)[0] - _moments(human, "human", scores)[0]


def sd_ratio(human: Any, simulated: Any, scores: Any = None) -> float:
    """Ratio of standard deviations ``sigma_s / sigma_h`` (< 1: compressed variance).

    Both are SDs of the answer distribution (divisor ``n``): ``sigma^2 = sum_j w_j (x_j - mu)^2``.
    For probabilities it is the SD of the mixture distribution (what sampled answers would show);
    for expected scores it is the spread of the scores themselves.

    Parameters
    ----------
    human, simulated : array-like
    scores : sequence of float, optional

    Returns
    -------
    float

    Raises
    ------
    EstimationError
        If the human answers do not vary.

    Examples
    --------
    >>> float(sd_ratio([1, 3], [1.5, 2.5]))
    0.5
    """
    sh = _moments(human, "human", scores)[1]
    if sh == 0:
        raise EstimationError("sd_ratio is not estimable: the human answers do not vary")
    return _moments(simulated, "simulated", scores)[1] / sh


def marginal_fidelity(human: Any, simulated: Any, scores: Any = None) -> dict[str, float]:
    """All marginal metrics for one item, as a dict (see the single functions for formulas).

    Total variation and Jensen-Shannon need simulated answers on the option scale or
    probabilities; for continuous simulated values they are NaN.

    Examples
    --------
    >>> m = marginal_fidelity([1, 2, 3, 4], [2, 2, 3, 3], scores=[1, 2, 3, 4])
    >>> round(m["sd_ratio"], 3), m["wasserstein1_norm"]
    (0.447, 0.16666666666666666)
    """
    out = {
        "wasserstein1": wasserstein1(human, simulated, scores),
        "mean_difference": mean_difference(human, simulated, scores),
        "sd_ratio": sd_ratio(human, simulated, scores),
    }
    try:
        out["wasserstein1_norm"] = wasserstein1(human, simulated, scores, normalise=True)
    except InputError:
        out["wasserstein1_norm"] = math.nan
    try:
        out["total_variation"] = total_variation(human, simulated, scores)
        out["jensen_shannon"] = jensen_shannon(human, simulated, scores)
    except InputError:
        out["total_variation"] = out["jensen_shannon"] = math.nan
    return out
