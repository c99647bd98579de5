"""The budget split: the cheapest (humans, LLM calls) that reaches a target interval half-width.

PPI++ for a mean with ``n`` humans (each also simulated) and ``N`` more simulated people has variance
(:mod:`rectify.planning`) ``V(n, N) = (sigma^2 / n) (1 - rho^2 N / (N + n))``. A normal interval of
half-width ``h`` needs ``V <= (h / z)^2``; with ``n_c = (z sigma / h)^2`` (the classical pilot size) and
``a = n_c (1 - rho^2)``:

* ``n >= n_c``: no simulation needed (``N = 0``);
* ``a < n < n_c``: ``N >= N_min(n) = n (n_c - n) / (n - a)``;
* ``n <= a``: unreachable, however many LLM calls.

``n = n_c`` humans with no simulation always reach the target, so a split always exists.

The cost ``C = c_h n + c_l (n + N)`` (the pilot's own LLM calls included) is, with ``t = n - a`` and
``b = n_c rho^2``, ``(c_h + c_l)(a + t) + c_l (a b / t + b - a - t)``, convex in ``t``, minimised at

    t* = sqrt(c_l a b / c_h),   n* = a + t*   (then clipped to (a, n_c] and to a frame cap on N).

:func:`cheapest_split` returns the exact integer optimum (every integer ``n`` in ``(a, n_c]`` scanned,
``N = ceil(N_min(n))``) beside the continuous ``n*``.

Examples
--------
>>> s = cheapest_split(cost_human=5.0, cost_llm=0.01, half_width=0.05, sd=1.0, rho=0.6)
>>> s["n_humans"], s["n_simulated"]
(1016, 16232)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm

from .errors import InputError
from .result import check_level

__all__ = ["cheapest_split", "split_cost"]


def _positive(x: Any, name: str, allow_zero: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(f"argument {name!r} must be a number, got {x!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"argument {name!r} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {x!r}")
    return v


def _rho(rho: Any) -> float:
    try:
        r = float(rho)
    except (TypeError, ValueError):
        raise InputError(f"argument 'rho' must be a number in [-1, 1], got {rho!r}") from None
    if not -1 <= r <= 1:
        raise InputError(f"argument 'rho' must lie in [-1, 1], got {rho!r}")
    return abs(r)


def split_cost(n_humans: Any, n_simulated: Any, cost_human: float, cost_llm: float) -> Any:
    """Cost of ``n_humans`` answers plus LLM calls for them and ``n_simulated`` more people.

    Examples
    --------
    >>> float(split_cost(100, 900, 5.0, 0.01))
    510.0
    """
    return cost_human * np.asarray(n_humans) + cost_llm * (np.asarray(n_humans) + np.asarray(n_simulated)) + 0.0


def cheapest_split(cost_human: float, cost_llm: float, half_width: float, sd: float, rho: float, *,
                   level: float = 0.95, max_simulated: int | None = None) -> dict:
    """The cheapest (humans, simulated people) whose PPI++ interval for a mean has the target half-width.

    Parameters
    ----------
    cost_human : float
        Cost of one human answer (> 0).
    cost_llm : float
        Cost of one LLM answer (>= 0); every human is also simulated.
    half_width : float
        Target half-width of the normal interval.
    sd : float
        Standard deviation of the human answers.
    rho : float
        Correlation of the LLM's prediction with the human answer (its sign does not matter).
    level : float
    max_simulated : int, optional
        At most this many people to simulate beyond the humans (e.g. the frame size minus ``n``).

    Returns
    -------
    dict
        ``n_humans``, ``n_simulated``, ``cost``, ``std_error`` reached, ``n_classical`` (humans alone),
        ``cost_classical`` (their cost, no LLM calls), ``n_continuous`` (the closed-form ``n*`` before rounding and capping).

    Examples
    --------
    >>> s = cheapest_split(1.0, 0.001, 0.1, 1.0, 0.9, max_simulated=1000)
    >>> s["n_humans"], s["n_simulated"], s["cost"] < s["cost_classical"]
    (102, 992, True)
    """
    ch = _positive(cost_human, "cost_human")
    cl = _positive(cost_llm, "cost_llm", allow_zero=True)
    h = _positive(half_width, "half_width")
    sig = _positive(sd, "sd")
    r = _rho(rho)
    z = float(norm.ppf(0.5 + check_level(level) / 2))
    if max_simulated is not None and (isinstance(max_simulated, bool) or not isinstance(max_simulated, (int, np.integer))
                                      or max_simulated < 0):
        raise InputError(f"argument 'max_simulated' must be a non-negative integer, got {max_simulated!r}")
    v = (h / z) ** 2
    nc = sig**2 / v
    a, b = nc * (1 - r**2), nc * r**2
    n_cls = math.ceil(nc - 1e-9)
    ns = np.arange(max(1, math.floor(a) + 1), n_cls + 1, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(ns >= nc, 0.0, ns * (nc - ns) / (ns - a))
    N = np.ceil(need - 1e-9 * np.maximum(need, 1))
    ok = np.isfinite(N) & (N >= 0)
    if max_simulated is not None:
        ok &= N <= max_simulated
    cost = np.where(ok, split_cost(ns, N, ch, cl), np.inf)
    i = int(np.argmin(cost))
    n_best, N_best = int(ns[i]), int(N[i])
    se = sig * math.sqrt((1 - r**2 * N_best / (N_best + n_best)) / n_best)
    t_star = math.sqrt(cl * a * b / ch) if ch > 0 else math.inf
    return {"n_humans": n_best, "n_simulated": N_best, "cost": float(cost[i]), "std_error": se,
            "n_classical": n_cls, "cost_classical": float(ch * n_cls),
            "n_continuous": float(min(a + t_star, nc))}
