"""Individual axis of :mod:`rectify.fidelity`: per-respondent agreement -- Pearson r and mean
absolute error of a per-person score, quadratic-weighted kappa and accuracy per item, log-loss
and Brier score of option probabilities."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import EstimationError, InputError
from .fidelity_inputs import _close, _numeric, _pair, _probs, _scores_arg

__all__ = ["pearson_r", "mean_absolute_error", "weighted_kappa", "accuracy", "log_loss", "brier_score",
           "scale_score"]


# ---------------------------------------------------------------------------------------------
# individual axis
# ---------------------------------------------------------------------------------------------
def _paired(h: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(h, s, "human", "simulated")
    ok = ~np.isnan(a) & ~np.isnan(b)
    return a[ok], b[ok]


def pearson_r(human: Any, simulated: Any) -> float:
    """Pearson correlation over respondents with both values (pairs with a NaN skipped).

    ``r = sum (h_i - hbar)(s_i - sbar) / sqrt(sum (h_i - hbar)^2 sum (s_i - sbar)^2)``.

    Raises
    ------
    EstimationError
        With fewer than 3 pairs or no variation in either vector.

    Examples
    --------
    >>> round(float(pearson_r([1, 2, 3, float("nan")], [2, 4, 7, 1])), 4)
    0.9934
    """
    a, b = _paired(human, simulated)
    if a.size < 3:
        raise EstimationError(f"pearson_r is not estimable from {a.size} complete pairs (need 3); collect more "
                              f"respondents or merge the group with a neighbouring one")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        raise EstimationError("pearson_r is not estimable: one of the vectors does not vary")
    a = a - a.mean()
    b = b - b.mean()
    return float(np.clip(a @ b / math.sqrt((a @ a) * (b @ b)), -1.0, 1.0))


def mean_absolute_error(human: Any, simulated: Any) -> float:
    """``MAE = mean_i |s_i - h_i|`` over respondents with both values.

    Examples
    --------
    >>> float(mean_absolute_error([1, 2, float("nan")], [2, 2, 3]))
    0.5
    """
    a, b = _paired(human, simulated)
    if a.size == 0:
        raise EstimationError("mean_absolute_error is not estimable: no complete pair")
    return float(np.mean(np.abs(b - a)))


def _codes(a: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    idx = np.clip(np.searchsorted(grid, a), 0, grid.size - 1)
    bad = ~_close(grid[idx], a)
    if bad.any():
        raise InputError(
            f"argument {name!r} has values {np.unique(a[bad])[:3].tolist()} that are not option "
            f"scores {grid.tolist()}; round them to options explicitly"
        )
    return idx


def weighted_kappa(human: Any, simulated: Any, scores: Any = None) -> float:
    """Quadratic-weighted Cohen's kappa between human and simulated answers on the option scale.

    ``kappa = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij``, ``O`` the observed joint shares,
    ``E`` the product of the margins, ``w_ij = (s_i - s_j)^2`` (scores ``s``; equal to
    ``(i - j)^2 / (K - 1)^2`` up to a factor that cancels for scores ``1..K``). Pairs with a NaN
    are skipped. With all options observed it equals
    ``sklearn.metrics.cohen_kappa_score(h, s, weights="quadratic")``.

    Parameters
    ----------
    human, simulated : array-like of option scores
    scores : sequence of float, optional
        Default: the values observed in either vector.

    Examples
    --------
    >>> round(float(weighted_kappa([1, 2, 3, 4, 4], [1, 2, 3, 3, 4])), 4)
    0.918
    """
    a, b = _paired(human, simulated)
    if a.size < 2:
        raise EstimationError(f"weighted_kappa is not estimable from {a.size} complete pairs")
    grid = _scores_arg(scores)
    if grid is None:
        grid = np.union1d(a, b)
    ia, ib = _codes(a, grid, "human"), _codes(b, grid, "simulated")
    k = grid.size
    obs = np.zeros((k, k))
    np.add.at(obs, (ia, ib), 1.0)
    obs /= a.size
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    w = (grid[:, None] - grid[None, :]) ** 2
    den = float(np.sum(w * exp))
    if den == 0:
        raise EstimationError("weighted_kappa is not estimable: both raters use a single option")
    return 1.0 - float(np.sum(w * obs)) / den


def accuracy(human: Any, simulated: Any) -> float:
    """Share of respondents whose simulated answer equals the human answer (NaN pairs skipped).

    Examples
    --------
    >>> float(accuracy([1, 2, 3, 4], [1, 2, 2, 2]))
    0.5
    """
    a, b = _paired(human, simulated)
    if a.size == 0:
        raise EstimationError("accuracy is not estimable: no complete pair")
    return float(np.mean(_close(a, b)))


def _prob_pairs(human: Any, probs: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _numeric(human, "human")
    p = _probs(probs, "probs", n=y.size)
    grid = _scores_arg(scores, p.shape[1])
    ok = ~np.isnan(y)
    if not ok.any():
        raise EstimationError("not estimable: every human answer is missing")
    return _codes(y[ok], grid, "human"), p[ok]


def log_loss(human: Any, probs: Any, scores: Any = None) -> float:
    """Mean negative log-likelihood of the human answers under the simulated distributions.

    ``LL = -(1/n) sum_i log p_i(y_i)`` (natural log; respondents with a missing answer skipped).
    No clipping: a zero probability on an observed answer gives ``inf``.

    Parameters
    ----------
    human : array-like of option scores (n,)
    probs : array-like (n, K)
    scores : sequence of float, optional (default ``1..K``)

    Examples
    --------
    >>> round(float(log_loss([1, 2], [[0.5, 0.5], [0.2, 0.8]])), 4)
    0.4581
    """
    idx, p = _prob_pairs(human, probs, scores)
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(p[np.arange(idx.size), idx])))


def brier_score(human: Any, probs: Any, scores: Any = None) -> float:
    """Multi-class Brier score ``(1/n) sum_i sum_k (p_ik - 1[y_i = k])^2`` (0 best, 2 worst).

    Examples
    --------
    >>> float(brier_score([1, 2], [[1.0, 0.0], [0.5, 0.5]]))
    0.25
    """
    idx, p = _prob_pairs(human, probs, scores)
    onehot = np.zeros_like(p)
    onehot[np.arange(idx.size), idx] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def scale_score(data: pd.DataFrame, plus: Sequence[str], minus: Sequence[str] = ()) -> pd.Series:
    """Per-respondent scale score ``mean(plus items) - mean(minus items)``, NaN skipped.

    A respondent with no answered item in ``plus`` (or in a non-empty ``minus``) gets NaN.
    Example: discernment = ``scale_score(df, true_items, false_items)``.

    Examples
    --------
    >>> d = pd.DataFrame({"t": [4.0, 3.0], "f": [1.0, float("nan")]})
    >>> scale_score(d, ["t"], ["f"]).tolist()
    [3.0, nan]
    """
    cols = list(plus) + list(minus)
    absent = [c for c in cols if c not in data.columns]
    if absent or not plus:
        raise InputError(f"scale items {absent or '(none)'} are not columns of the data")
    vals = data[cols].to_numpy(dtype=float)
    k = len(plus)

    def mean(block: np.ndarray) -> np.ndarray:
        cnt = (~np.isnan(block)).sum(axis=1)
        return np.where(cnt > 0, np.nansum(block, axis=1) / np.maximum(cnt, 1), np.nan)

    out = mean(vals[:, :k])
    if len(minus):
        out = out - mean(vals[:, k:])
    return pd.Series(out, index=data.index)
