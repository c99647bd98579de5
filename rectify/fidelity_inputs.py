"""Input checks shared by the fidelity axes (:mod:`rectify.fidelity`): numeric arrays, option
probabilities, option scores, sample distributions on a common grid, paired vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import EstimationError, InputError


# ---------------------------------------------------------------------------------------------
# input helpers
# ---------------------------------------------------------------------------------------------
def _numeric(x: Any, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    if isinstance(x, (pd.Series, pd.DataFrame)):
        x = x.to_numpy(dtype=float, na_value=np.nan)
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"argument {name!r} must be numeric; encode option labels as scores first") from None
    if arr.ndim not in ndim:
        raise InputError(f"argument {name!r} must have {' or '.join(map(str, ndim))} dimension(s), got {arr.ndim}")
    if np.isinf(arr).any():
        raise InputError(f"argument {name!r} contains infinite values; remove them first")
    return arr


def _probs(p: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = _numeric(p, name, ndim=(2,))
    if np.isnan(arr).any():
        raise InputError(f"argument {name!r} (option probabilities) contains NaN; give a full distribution per row")
    if (arr < 0).any() or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-6):
        raise InputError(f"argument {name!r} must hold probabilities: non-negative rows that sum to 1")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"argument {name!r} has {arr.shape[0]} rows, expected {n}")
    return arr


def _scores_arg(scores: Any, k: int | None = None) -> np.ndarray | None:
    if scores is None:
        return None if k is None else np.arange(1, k + 1, dtype=float)
    sc = _numeric(scores, "scores")
    if sc.size < 2 or np.isnan(sc).any() or np.any(np.diff(sc) <= 0):
        raise InputError("argument 'scores' must list at least 2 finite option scores in increasing order")
    if k is not None and sc.size != k:
        raise InputError(f"argument 'scores' has {sc.size} values but the probabilities have {k} columns")
    return sc


def _distribution(x: Any, name: str, scores: Any = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(support, weights, n) of a sample (1-D, NaN skipped) or of the mixture of (n, K) probabilities."""
    arr = _numeric(x, name, ndim=(1, 2))
    if arr.ndim == 2:
        arr = _probs(arr, name)
        sc = _scores_arg(scores, arr.shape[1])
        return sc, arr.mean(axis=0), arr.shape[0]
    vals = arr[~np.isnan(arr)]
    if vals.size == 0:
        raise EstimationError(f"argument {name!r} has no non-missing value")
    support, counts = np.unique(vals, return_counts=True)
    return support, counts / vals.size, int(vals.size)


def _close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality up to 1e-9 (relative) -- a fast ``np.isclose`` for option scores."""
    return np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(b))


def _on_grid(support: np.ndarray, weights: np.ndarray, grid: np.ndarray, name: str) -> np.ndarray:
    idx = np.searchsorted(grid, support)
    idx = np.clip(idx, 0, grid.size - 1)
    bad = ~_close(grid[idx], support)
    if bad.any():
        raise InputError(
            f"argument {name!r} has values {support[bad][:3].tolist()} that are not option scores "
            f"{grid.tolist()}; pass option probabilities or round the values explicitly"
        )
    out = np.zeros(grid.size)
    np.add.at(out, idx, weights)
    return out


def _two_pmfs(human: Any, simulated: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    sh, wh, _ = _distribution(human, "human", scores)
    ss, ws, _ = _distribution(simulated, "simulated", scores)
    grid = _scores_arg(scores)
    if grid is None:
        if np.ndim(human) == 2 or np.ndim(simulated) == 2:
            grid = sh if np.ndim(human) == 2 else ss  # 1..K of the probability matrix
        elif np.allclose(ss, np.rint(ss)) and np.allclose(sh, np.rint(sh)):
            grid = np.union1d(sh, ss)  # integer answers on both sides
        else:
            grid = sh  # the human answers define the scale; other simulated values are refused
    return _on_grid(sh, wh, grid, "human"), _on_grid(ss, ws, grid, "simulated")


def _pair(x: Any, y: Any, xname: str, yname: str) -> tuple[np.ndarray, np.ndarray]:
    a = _numeric(x, xname)
    b = _numeric(y, yname)
    if a.shape != b.shape:
        raise InputError(f"arguments {xname!r} and {yname!r} must have the same length, got {a.size} and {b.size}")
    return a, b
