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

which tends to ``n_c (1 - rho^2)`` as ``N -> inf``. Both are rounded up. These are large-sample
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


def optimal_lambda(n: int, rho: float, sd_y: float = 1.0, sd_f: float = 1.0, n_population: Any = None) -> float:
    """The variance-minimising ``lambda* = rho (sd_y / sd_f) N / (N + n)``.

    Examples
    --------
    >>> optimal_lambda(100, 0.5, 2.0, 1.0, n_population=900)
    0.9
    """
    n_, N = _pos_int(n, "n"), _N(n_population)
    w = 1.0 if math.isinf(N) else N / (N + n_)
    return _rho(rho) * _pos(sd_y, "sd_y") / _pos(sd_f, "sd_f") * w


def ppi_variance(n: int, rho: float, sd_y: float = 1.0, sd_f: float = 1.0, n_population: Any = None,
                 lam: float | None = None) -> float:
    """Variance of the PPI mean estimator with ``n`` humans and ``N`` other simulated people.

    ``V = [sd_y^2 - 2 lam rho sd_y sd_f + lam^2 sd_f^2] / n + lam^2 sd_f^2 / N``; ``lam=None`` uses
    :func:`optimal_lambda` (PPI++), ``lam=0`` is classical, ``lam=1`` plain PPI.

    Examples
    --------
    >>> ppi_variance(100, 0.0, lam=0.0)
    0.01
    >>> round(ppi_variance(100, 0.8, n_population=None), 6)
    0.0036
    """
    n_, N = _pos_int(n, "n"), _N(n_population)
    r, sy, sf = _rho(rho), _pos(sd_y, "sd_y"), _pos(sd_f, "sd_f")
    lam = optimal_lambda(n, r, sy, sf, n_population) if lam is None else float(lam)
    extra = 0.0 if math.isinf(N) else lam**2 * sf**2 / N
    return (sy**2 - 2 * lam * r * sy * sf + lam**2 * sf**2) / n_ + extra


def effective_sample_size(n: int, rho: float, n_population: Any = None) -> float:
    """Humans a classical estimate would need to match PPI++ with ``n`` humans: ``n / (1 - rho^2 N/(N+n))``.

    Parameters
    ----------
    n : int
        Pilot size.
    rho : float
        Correlation between human answers and the simulator's predictions.
    n_population : int, optional
        Number of people with predictions beyond the pilot (``None``: infinite).

    Returns
    -------
    float (``inf`` when ``|rho| = 1`` and ``N`` is infinite)

    Examples
    --------
    >>> effective_sample_size(200, 0.0)
    200.0
    >>> round(effective_sample_size(200, 0.5, n_population=800), 2)
    250.0
    """
    n_, N = _pos_int(n, "n"), _N(n_population)
    r = _rho(rho)
    w = 1.0 if math.isinf(N) else N / (N + n_)
    den = 1.0 - r * r * w
    return math.inf if den <= 0 else n_ / den


def humans_needed(half_width: float, sd: float, rho: float = 0.0, n_population: Any = None,
                  level: float = 0.95, method: str = "ppi++") -> int:
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

    Returns
    -------
    int

    Examples
    --------
    >>> humans_needed(0.1, sd=1.0, method="classical")
    385
    >>> humans_needed(0.1, sd=1.0, rho=0.8)
    139
    """
    h, s = _pos(half_width, "half_width"), _pos(sd, "sd")
    level = _level(level)
    if method not in ("ppi++", "classical"):
        raise InputError(f"argument 'method' must be 'ppi++' or 'classical', got {method!r}")
    z = float(norm.ppf(0.5 + float(level) / 2))
    nc = (z * s / h) ** 2
    if method == "classical":
        return max(1, math.ceil(nc - 1e-9))
    r, N = _rho(rho), _N(n_population)
    if math.isinf(N):
        n = nc * (1 - r * r)
    else:
        b = N - nc
        n = (-b + math.sqrt(b * b + 4 * nc * N * (1 - r * r))) / 2
    return max(1, math.ceil(n - 1e-9))


def planning_table(rho: float, sd: float, n_population: Any = None, pilot_sizes=(50, 100, 200, 500),
                   half_widths=None, level: float = 0.95) -> pd.DataFrame:
    """Per pilot size: classical and PPI++ half-widths and the effective sample size.

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
    for n in pilot_sizes:
        rows.append({
            "n_pilot": int(n),
            "n_eff": effective_sample_size(int(n), rho, n_population),
            "half_width_classical": z * math.sqrt(ppi_variance(int(n), 0.0, sd, 1.0, n_population, lam=0.0)),
            "half_width_ppi++": z * math.sqrt(ppi_variance(int(n), rho, sd, 1.0, n_population)) if abs(rho) < 1
            else 0.0,
        })
    out = pd.DataFrame(rows)
    if half_widths is not None:
        out.attrs["humans_needed"] = {float(h): {"classical": humans_needed(h, sd, level=level, method="classical"),
                                                 "ppi++": humans_needed(h, sd, rho, n_population, level)}
                                      for h in half_widths}
    return out


def plan_from_pilot(y: Any, yhat: Any, half_width: float, n_population: Any = None, level: float = 0.95,
                    rho_level: float = 0.8) -> dict:
    """Estimate ``rho`` and ``sd`` from a pilot and plan the humans needed, classical vs PPI++.

    ``rho`` is the Pearson correlation of the pilot's human answers and predictions (rows with a
    missing value dropped); its Fisher-z interval at ``rho_level`` (``atanh(r) +- z / sqrt(n - 3)``)
    gives a pessimistic and an optimistic plan, because a small pilot estimates ``rho`` roughly.

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
    zq = float(norm.ppf(0.5 + float(rho_level) / 2))
    lo, hi = (math.tanh(math.atanh(max(min(r, 0.999999), -0.999999)) + s * zq / math.sqrt(n - 3)) for s in (-1, 1))
    worst = min(abs(lo), abs(hi)) if lo * hi > 0 else 0.0
    best = max(abs(lo), abs(hi))
    return {
        "n": n,
        "rho": r,
        "rho_interval": (lo, hi),
        "sd": sd,
        "n_eff": effective_sample_size(n, r, n_population),
        "humans_needed": {
            "classical": humans_needed(half_width, sd, level=level, method="classical"),
            "ppi++": humans_needed(half_width, sd, r, n_population, level),
            "ppi++ (pessimistic)": humans_needed(half_width, sd, worst, n_population, level),
            "ppi++ (optimistic)": humans_needed(half_width, sd, best, n_population, level),
        },
    }
