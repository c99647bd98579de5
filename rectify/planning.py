"""Planning a pilot: effective sample size of PPI++ and the humans needed for a target precision.

Setting (a population mean; PPI++ of Angelopoulos, Duchi and Zrnic 2023). ``n`` humans answer
``Y`` and the simulator predicts ``f`` for them; the simulator also predicts for ``N`` other people.
With ``sigma_Y^2 = Var(Y)``, ``sigma_f^2 = Var(f)``, ``rho = corr(Y, f)``, the estimator

    theta_lambda = mean_n(Y) - lambda * (mean_n(f) - mean_N(f))

has variance (the two samples independent)

    V(lambda) = [sigma_Y^2 - 2 lambda rho sigma_Y sigma_f + lambda^2 sigma_f^2] / n
                + lambda^2 sigma_f^2 / N.

Setting ``dV/dlambda = 0`` gives ``lambda* = rho (sigma_Y / sigma_f) N / (N + n)`` and

    V(lambda*) = (sigma_Y^2 / n) * (1 - rho^2 N / (N + n)).

The classical (pilot only) variance is ``sigma_Y^2 / n``, so PPI++ with ``n`` humans is worth

    n_eff = n / (1 - rho^2 N / (N + n))

humans (never fewer than ``n``: the tuned lambda can always fall back to 0). As ``N -> inf``,
``n_eff -> n / (1 - rho^2)``. Plain PPI (``lambda = 1``) can be *worse* than classical when
``rho sigma_f`` is small; :func:`ppi_variance` gives any lambda.

Humans needed for a normal interval of half-width ``h`` at level ``1 - alpha`` (``z = z_{1-alpha/2}``):
classical ``n_c = (z sigma_Y / h)^2``; PPI++ solves ``(1 - rho^2 N / (N + n)) / n = 1 / n_c``, i.e.
``n^2 + (N - n_c) n - n_c N (1 - rho^2) = 0``:

    n = [-(N - n_c) + sqrt((N - n_c)^2 + 4 n_c N (1 - rho^2))] / 2,

which tends to ``n_c (1 - rho^2)`` as ``N -> inf``. Both are rounded up.

The pilot inside the frame (``overlap="inside"``; ``N`` is then the frame size, pilot included;
see :mod:`rectify.estimand`). The frame's predictions are known for everyone, so
``lambda* = rho sigma_Y / sigma_f`` and, with ``f = n / N``,

    frame estimand:           V = (1 - f) sigma_Y^2 (1 - rho^2) / n
    superpopulation estimand: V = (1 - f) sigma_Y^2 (1 - rho^2) / n + sigma_Y^2 / N.

Against the classical estimate of the same target and overlap (``(1 - f) sigma_Y^2 / n``, resp.
``sigma_Y^2 / n``) both give

    n_eff = n / (1 - rho^2 (1 - n / N)),

which is the separate-sample formula with ``N - n`` other people: the separate formula applied to the
whole frame overstates ``n_eff``. Humans needed: frame, ``n = m N / (N + m)`` with ``m = n_c (1 - rho^2)``
(classical: ``m = n_c``); superpopulation, ``n = (1 - rho^2) / (1 / n_c - rho^2 / N)``, impossible
when ``1 / n_c <= rho^2 / N`` or ``n > N`` (the frame itself is then too small a sample). These are large-sample
(normal) figures; ``rho`` estimated from a small pilot is itself uncertain, so
:func:`plan_from_pilot` also reports the plan at the ends of a Fisher-z interval for ``rho``.

Examples
--------
>>> round(effective_sample_size(100, rho=0.6, n_population=10**9), 1)
156.2
>>> humans_needed(0.05, sd=1.0, rho=0.0)
1537
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from .errors import EstimationError, InputError
from .result import check_level

__all__ = [
    "ppi_variance",
    "optimal_lambda",
    "effective_sample_size",
    "humans_needed",
    "plan_from_pilot",
    "planning_table",
]


def _pos_int(x: Any, name: str, allow_inf: bool = False) -> float:
    if allow_inf and x is not None and isinstance(x, float) and math.isinf(x) and x > 0:
        return math.inf
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise InputError(f"argument {name!r} must be a positive integer, got {x!r}")
    return float(x)


def _rho(rho: Any) -> float:
    try:
        r = float(rho)
    except (TypeError, ValueError):
        raise InputError(f"argument 'rho' must be a number in [-1, 1], got {rho!r}") from None
    if not -1.0 <= r <= 1.0 or math.isnan(r):
        raise InputError(f"argument 'rho' must be in [-1, 1], got {rho!r}")
    return r


def _pos(x: Any, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(f"argument {name!r} must be a positive number, got {x!r}") from None
    if not v > 0 or math.isinf(v):
        raise InputError(f"argument {name!r} must be a positive finite number, got {x!r}")
    return v


def _level(level: Any, name: str = "level") -> float:
    try:
        return check_level(level)
    except InputError as err:
        raise InputError(str(err).replace("'level'", repr(name))) from None


def _pilot_values(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError(f"argument {name!r} must be numeric; recode the answers as numbers first") from None
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise InputError(f"argument {name!r} has {n_inf} infinite value(s); remove or fix them (only NaN rows are "
                         "dropped, as missing)")
    return arr


def _N(n_population: Any) -> float:
    if n_population is None:
        return math.inf
    return _pos_int(n_population, "n_population", allow_inf=True)


def _inside(overlap: str, n: float | None = None, N: float = math.inf) -> bool:
    if overlap not in ("separate", "inside"):
        raise InputError(f"argument 'overlap' must be 'separate' (N other people) or 'inside' (the pilot is drawn from "
                         f"a frame of N people), got {overlap!r}")
    if overlap == "inside" and n is not None and n > N:
        raise InputError(f"a pilot of {int(n)} cannot be inside a frame of {int(N)}: 'n_population' is the frame size, "
                         f"pilot included")
    return overlap == "inside"


def _estimand(estimand: Any, inside: bool) -> str:
    if estimand is None:
        return "frame" if inside else "superpopulation"
    if estimand not in ("frame", "superpopulation"):
        raise InputError(f"argument 'estimand' must be 'frame' or 'superpopulation', got {estimand!r}")
    if estimand == "frame" and not inside:
        raise InputError("planning for the frame estimand assumes the pilot is drawn from the frame: pass "
                         "overlap='inside' (or estimand='superpopulation' for a separate sample)")
    return estimand


def optimal_lambda(n: int, rho: float, sd_y: float = 1.0, sd_f: float = 1.0, n_population: Any = None,
                   overlap: str = "separate") -> float:
    """The variance-minimising ``lambda* = rho (sd_y / sd_f) N / (N + n)`` (``rho sd_y / sd_f`` inside the frame).

    Examples
    --------
    >>> optimal_lambda(100, 0.5, 2.0, 1.0, n_population=900)
    0.9
    >>> optimal_lambda(100, 0.5, 2.0, 1.0, n_population=900, overlap="inside")
    1.0
    """
    n_, N = _pos_int(n, "n"), _N(n_population)
    w = 1.0 if (math.isinf(N) or _inside(overlap, n_, N)) else N / (N + n_)
    return _rho(rho) * _pos(sd_y, "sd_y") / _pos(sd_f, "sd_f") * w


def ppi_variance(n: int, rho: float, sd_y: float = 1.0, sd_f: float = 1.0, n_population: Any = None,
                 lam: float | None = None, overlap: str = "separate", estimand: str | None = None) -> float:
    """Variance of the PPI mean estimator with ``n`` humans and ``N`` other simulated people.

    ``V = [sd_y^2 - 2 lam rho sd_y sd_f + lam^2 sd_f^2] / n + lam^2 sd_f^2 / N``; ``lam=None`` uses
    :func:`optimal_lambda` (PPI++), ``lam=0`` is classical, ``lam=1`` plain PPI. With
    ``overlap="inside"`` (``N``: the frame, pilot included) the rectifier's part carries ``1 - n/N`` and
    the superpopulation estimand adds ``sd_y^2 / N`` instead of the predictions' part (module notes).

    Examples
    --------
    >>> ppi_variance(100, 0.0, lam=0.0)
    0.01
    >>> round(ppi_variance(100, 0.8, n_population=None), 6)
    0.0036
    >>> round(ppi_variance(100, 0.8, n_population=200, overlap="inside"), 6)
    0.0018
    """
    n_, N = _pos_int(n, "n"), _N(n_population)
    r, sy, sf = _rho(rho), _pos(sd_y, "sd_y"), _pos(sd_f, "sd_f")
    inside = _inside(overlap, n_, N)
    est = _estimand(estimand, inside)
    lam = optimal_lambda(n, r, sy, sf, n_population, overlap) if lam is None else float(lam)
    var_a = (sy**2 - 2 * lam * r * sy * sf + lam**2 * sf**2) / n_
    if math.isinf(N):
        return var_a
    if not inside:
        return var_a + lam**2 * sf**2 / N
    return (1 - n_ / N) * var_a + (sy**2 / N if est == "superpopulation" else 0.0)


def effective_sample_size(n: int, rho: float, n_population: Any = None, overlap: str = "separate") -> float:
    """Humans a classical estimate would need to match PPI++ with ``n`` humans: ``n / (1 - rho^2 N/(N+n))``.

    With ``overlap="inside"`` (the pilot drawn from a frame of ``N``, pilot included):
    ``n / (1 - rho^2 (1 - n/N))``, for either estimand (see the module notes).

    Parameters
    ----------
    n : int
        Pilot size.
    rho : float
        Correlation between human answers and the simulator's predictions.
    n_population : int, optional
        Number of people with predictions beyond the pilot (``None``: infinite); the frame size,
        pilot included, with ``overlap="inside"``.
    overlap : {"separate", "inside"}

    Returns
    -------
    float (``inf`` when ``|rho| = 1`` and ``N`` is infinite)

    Examples
    --------
    >>> effective_sample_size(200, 0.0)
    200.0
    >>> round(effective_sample_size(200, 0.5, n_population=800), 2)
    250.0
    >>> round(effective_sample_size(200, 0.5, n_population=1000, overlap="inside"), 2)
    250.0
    """
    n_, N = _pos_int(n, "n"), _N(n_population)
    r = _rho(rho)
    if math.isinf(N):
        w = 1.0
    else:
        w = 1 - n_ / N if _inside(overlap, n_, N) else N / (N + n_)
    den = 1.0 - r * r * w
    return math.inf if den <= 0 else n_ / den


def humans_needed(half_width: float, sd: float, rho: float = 0.0, n_population: Any = None,
                  level: float = 0.95, method: str = "ppi++", overlap: str = "separate",
                  estimand: str | None = None) -> int:
    """Smallest pilot giving a normal interval of half-width at most ``half_width``.

    ``method="classical"``: ``ceil((z sd / h)^2)``; ``"ppi++"``: the root of
    ``n^2 + (N - n_c) n - n_c N (1 - rho^2) = 0`` (see the module notes), ``n_c (1 - rho^2)`` for
    infinite ``N``, rounded up.

    Parameters
    ----------
    half_width : float
        Target half-width of the interval (same unit as the answers).
    sd : float
        Standard deviation of the human answers.
    rho : float
        Correlation of human answers and predictions (ignored for classical).
    n_population : int, optional
        People with predictions beyond the pilot (``None``: infinite).
    level : float
    method : {"ppi++", "classical"}
    overlap, estimand
        As in :func:`ppi_variance` (``overlap="inside"``: ``n_population`` is the frame, pilot included).

    Returns
    -------
    int

    Raises
    ------
    EstimationError
        When no pilot inside the frame reaches the half-width (superpopulation estimand).

    Examples
    --------
    >>> humans_needed(0.1, sd=1.0, method="classical")
    385
    >>> humans_needed(0.1, sd=1.0, rho=0.8)
    139
    >>> humans_needed(0.1, sd=1.0, rho=0.8, n_population=500, overlap="inside")
    109
    """
    h, s = _pos(half_width, "half_width"), _pos(sd, "sd")
    level = _level(level)
    if method not in ("ppi++", "classical"):
        raise InputError(f"argument 'method' must be 'ppi++' or 'classical', got {method!r}")
    z = float(norm.ppf(0.5 + float(level) / 2))
    nc = (z * s / h) ** 2
    N = _N(n_population)
    if _inside(overlap) and not math.isinf(N):
        return _needed_inside(nc, 0.0 if method == "classical" else _rho(rho), N, _estimand(estimand, True))
    if method == "classical":
        return max(1, math.ceil(nc - 1e-9))
    r = _rho(rho)
    if math.isinf(N):
        n = nc * (1 - r * r)
    else:
        b = N - nc
        n = (-b + math.sqrt(b * b + 4 * nc * N * (1 - r * r))) / 2
    return max(1, math.ceil(n - 1e-9))


def _needed_inside(nc: float, r: float, N: float, estimand: str) -> int:
    """Humans needed with the pilot inside a frame of N (module notes); ``r = 0`` is classical."""
    if estimand == "frame":
        m = nc * (1 - r * r)
        n = m * N / (N + m)
    else:
        room = 1 / nc - r * r / N
        n = (1 - r * r) / room if room > 0 else math.inf
    if n > N * (1 + 1e-12):
        raise EstimationError(f"no pilot inside a frame of {int(N)} reaches this half-width for the superpopulation "
                              f"(the frame itself is a sample of that size); widen the half-width or target the frame")
    return max(1, min(int(N), math.ceil(n - 1e-9)))


def planning_table(rho: float, sd: float, n_population: Any = None, pilot_sizes=(50, 100, 200, 500),
                   half_widths=None, level: float = 0.95, overlap: str = "separate",
                   estimand: str | None = None) -> pd.DataFrame:
    """Per pilot size: classical and PPI++ half-widths and the effective sample size.

    ``overlap`` and ``estimand`` as in :func:`ppi_variance`.

    Examples
    --------
    >>> t = planning_table(0.6, 1.0, n_population=None, pilot_sizes=[100])
    >>> t[["n_pilot", "n_eff"]].round(1).values.tolist()
    [[100.0, 156.2]]
    """
    z = float(norm.ppf(0.5 + _level(level) / 2))
    rho, sd = _rho(rho), _pos(sd, "sd")
    for n in pilot_sizes:
        _pos_int(n, "pilot_sizes")
    rows = []
    kw = {"overlap": overlap, "estimand": estimand}
    for n in pilot_sizes:
        rows.append({
            "n_pilot": int(n),
            "n_eff": effective_sample_size(int(n), rho, n_population, overlap),
            "half_width_classical": z * math.sqrt(ppi_variance(int(n), 0.0, sd, 1.0, n_population, lam=0.0, **kw)),
            "half_width_ppi++": z * math.sqrt(ppi_variance(int(n), rho, sd, 1.0, n_population, **kw))
            if abs(rho) < 1 else 0.0,
        })
    out = pd.DataFrame(rows)
    if half_widths is not None:
        out.attrs["humans_needed"] = {float(h): {
            "classical": humans_needed(h, sd, level=level, method="classical", n_population=n_population, **kw)
            if overlap == "inside" else humans_needed(h, sd, level=level, method="classical"),
            "ppi++": humans_needed(h, sd, rho, n_population, level, **kw)} for h in half_widths}
    return out


def plan_from_pilot(y: Any, yhat: Any, half_width: float, n_population: Any = None, level: float = 0.95,
                    rho_level: float = 0.8, overlap: str = "separate", estimand: str | None = None) -> dict:
    """Estimate ``rho`` and ``sd`` from a pilot and plan the humans needed, classical vs PPI++.

    ``rho`` is the Pearson correlation of the pilot's human answers and predictions (rows with a
    missing value dropped); its Fisher-z interval at ``rho_level`` (``atanh(r) +- z / sqrt(n - 3)``)
    gives a pessimistic and an optimistic plan, because a small pilot estimates ``rho`` roughly.
    ``overlap`` and ``estimand`` as in :func:`ppi_variance` (``"inside"``: the plan draws the pilot from
    a frame of ``n_population`` people).

    Returns
    -------
    dict with ``n`` (pilot rows used), ``rho``, ``rho_interval``, ``sd``, ``n_eff`` (of this pilot),
    ``humans_needed`` {"classical", "ppi++", "ppi++ (pessimistic)", "ppi++ (optimistic)"}.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(size=400); y = f + rng.normal(size=400)
    >>> plan = plan_from_pilot(y, f, half_width=0.1)
    >>> round(plan["rho"], 2), plan["humans_needed"]["classical"] > plan["humans_needed"]["ppi++"]
    (0.73, True)
    """
    a, b = _pilot_values(y, "y"), _pilot_values(yhat, "yhat")
    level, rho_level = _level(level), _level(rho_level, "rho_level")
    if a.shape != b.shape:
        raise InputError(f"arguments 'y' and 'yhat' must have the same length, got {a.size} and {b.size}")
    ok = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    if n < 4:
        raise EstimationError(f"planning needs at least 4 pilot rows with both values, got {n}")
    if a.std() == 0 or b.std() == 0:
        raise EstimationError("rho is not estimable: the human answers or the predictions do not vary")
    r = float(np.corrcoef(a, b)[0, 1])
    sd = float(a.std(ddof=1))
    kw = {"overlap": overlap, "estimand": estimand}
    zq = float(norm.ppf(0.5 + float(rho_level) / 2))
    lo, hi = (math.tanh(math.atanh(max(min(r, 0.999999), -0.999999)) + s * zq / math.sqrt(n - 3)) for s in (-1, 1))
    worst = min(abs(lo), abs(hi)) if lo * hi > 0 else 0.0
    best = max(abs(lo), abs(hi))
    return {
        "n": n,
        "rho": r,
        "rho_interval": (lo, hi),
        "sd": sd,
        "n_eff": effective_sample_size(n, r, n_population, overlap) if overlap == "separate" or n <= _N(n_population)
        else math.nan,
        "humans_needed": {
            "classical": humans_needed(half_width, sd, 0.0, n_population, level, "classical", **kw)
            if overlap == "inside" else humans_needed(half_width, sd, level=level, method="classical"),
            "ppi++": humans_needed(half_width, sd, r, n_population, level, **kw),
            "ppi++ (pessimistic)": humans_needed(half_width, sd, worst, n_population, level, **kw),
            "ppi++ (optimistic)": humans_needed(half_width, sd, best, n_population, level, **kw),
        },
    }
