"""What an interval covers: the finite frame or the superpopulation, and where the pilot stands.

Two estimands
-------------
``"frame"`` (the default): the finite frame's own quantity -- its mean, option shares or census
regression coefficients, the usual target of a survey. ``"superpopulation"``: the quantity of the
process that generated the frame (the frame itself counted as a sample). Under
``convention="ppi_py"`` the default is ``"superpopulation"``, ppi_py's target, so that its numbers
are reproduced.

Two places for the pilot
------------------------
``inside``: the pilot is a sample drawn from the frame (its people are frame rows; ``draw_pilot``);
``separate``: an independent sample from the same superpopulation. The formula verbs detect it
(:func:`pilot_in_frame`): a respondent-id column named by ``id=`` present in both frames, or else
the frames' index labels. All pilot ids in the frame: inside; none: separate; some: refused. Two
default ``RangeIndex`` frames identify nobody by their labels: then the rows' contents over the columns
both frames hold decide (every pilot row found among unique frame rows: inside; none found: separate);
anything else is refused unless ``overlap=`` says which.

Derivation (linearised; n pilot rows, N frame rows, f = n / N)
---------------------------------------------------------------
Every estimator here is ``theta = mean_U(b) + mean_S(a)`` to first order, with per-row influence
values ``a = psi(y) - lam psi(yhat)`` (the rectifier, known on the pilot S only) and
``b = lam psi(yhat)`` (known on the frame U), so that ``psi(y) = a + b``. For a mean ``psi`` is the
centred answer; for a regression the inverse Hessian times the score.

* superpopulation, separate (the PPI papers): S and U independent,
  ``Var = Var(a)/n + Var(b)/N``.
* frame, inside: ``theta_U = mean_U(a) + mean_U(b)`` and ``mean_U(b)`` is known, so
  ``theta - theta_U = mean_S(a) - mean_U(a)``: the error of a simple random sample without
  replacement, ``Var = (1 - f) S_a^2 / n``. Equivalently the frame total is the pilot's part
  (observed) plus the rest's part (predictions plus the pilot's mean rectifier); both forms give the
  same estimate when the frame predictions include the pilot's own.
* superpopulation, inside: ``theta - theta* = [mean_S(a) - mean_U(a)] + [mean_U(psi(y)) - 0]``; the two
  brackets are uncorrelated (the first has mean zero given U), so
  ``Var = (1 - f) Var(a)/n + Var(psi(y))/N`` -- the frame's own sampling error uses the *human*
  answers' variance, not the predictions'. (The independent-sample formula ``Var(a)/n + Var(b)/N``
  misses the covariance of the pilot with the frame; the issue measured 89.8% at f = 0.5.)
* frame, separate: ``theta - theta_U = mean_S(a) - mean_U(a)`` with S independent of U,
  ``Var = Var(a) (1/n + 1/N)``.

In every case but the first, ``mean_U(b)`` carries no variance of its own, so the variance-minimising
lambda is ``Cov(psi_y, psi_f) / Var(psi_f)`` (no ``n/N`` term). ``Var(a)`` and ``Var(psi(y))`` are
estimated from the pilot (degrees of freedom from the pilot: n - p, one fewer per tuned lambda);
``Var(b)`` from the frame. With survey weights the same formulas hold for the Hajek form with
weighted influence rows, and the correction ``1 - n/N`` is the equal-probability one (exact for a
simple random pilot, an approximation otherwise). Method ``"naive"`` (the predictions taken as truth)
keeps the variance of the frame's predictions as a sample in every case: its interval ignores the
LLM's bias and is never valid for either estimand.

Examples
--------
>>> a, b, _ = variance_parts(np.eye(1), np.eye(1), None, 100, 1000, Target("frame", True))
>>> float(a[0, 0]), float(b[0, 0])
(0.9, 0.0)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError, RectifyWarning

__all__ = ["ESTIMANDS", "OVERLAPS", "Target", "resolve_estimand", "core_target", "pilot_in_frame", "core_keywords",
           "variance_parts", "tunes_with_frame_variance"]

ESTIMANDS = ("frame", "superpopulation")
OVERLAPS = ("auto", "inside", "separate")


@dataclass(frozen=True)
class Target:
    """The estimand and whether the pilot's people are frame rows.

    Parameters
    ----------
    estimand : {"frame", "superpopulation"}
    inside : bool
        True when the pilot is a sample from the frame.
    """

    estimand: str = "frame"
    inside: bool = False


def resolve_estimand(estimand: str | None, convention: str = "small-sample") -> str:
    """The estimand asked for, ``None`` meaning the default (``"frame"``; ``"superpopulation"`` under ppi_py).

    Examples
    --------
    >>> resolve_estimand(None), resolve_estimand(None, "ppi_py")
    ('frame', 'superpopulation')
    """
    if estimand is None:
        return "superpopulation" if convention == "ppi_py" else "frame"
    if estimand not in ESTIMANDS:
        raise InputError(f"argument 'estimand' must be 'frame' (the finite frame's quantity) or 'superpopulation', "
                         f"got {estimand!r}")
    if convention == "ppi_py" and estimand != "superpopulation":
        raise InputError("convention='ppi_py' reproduces ppi_py, whose target is the superpopulation with a separate "
                         "frame; use estimand='superpopulation' with it, or convention='small-sample' for the frame")
    return estimand


class OverlapIgnoredWarning(RectifyWarning):
    """``convention="ppi_py"`` with a pilot inside the frame: ppi_py's variance assumes a separate sample."""


def core_target(estimand: str | None, overlap: str, convention: str) -> Target:
    """The :class:`Target` of a numeric core (``overlap``: ``"inside"`` or ``"separate"``).

    Examples
    --------
    >>> core_target(None, "inside", "small-sample")
    Target(estimand='frame', inside=True)
    """
    est = resolve_estimand(estimand, convention)
    if overlap not in ("inside", "separate"):
        raise InputError(f"argument 'overlap' must be 'inside' (the pilot is a sample from the frame) or 'separate', "
                         f"got {overlap!r}; the formula verbs also accept 'auto'")
    if convention == "ppi_py" and overlap == "inside":
        warnings.warn("convention='ppi_py' reproduces ppi_py's variance, which treats the frame as a separate sample: "
                      "with the pilot inside the frame its interval is not valid; use convention='small-sample'",
                      OverlapIgnoredWarning, stacklevel=3)
    return Target(est, overlap == "inside")


def tunes_with_frame_variance(target: Target | None) -> bool:
    """Whether PPI++'s lambda has the ``(n/N) Var(psi_f~)`` term (superpopulation, separate sample only).

    Examples
    --------
    >>> tunes_with_frame_variance(Target("frame", True))
    False
    """
    return target is None or (target.estimand == "superpopulation" and not target.inside)


def variance_parts(cov_a, cov_b, cov_y, n: int, N: int, target: Target | None):
    """The two parts of the estimator's covariance and where the second one's variance comes from.

    ``cov_a`` estimates ``Var(a)/n`` (pilot rows), ``cov_b`` ``Var(b)/N`` (frame rows), ``cov_y``
    ``Var(psi(y))/n`` (pilot rows; only used for the superpopulation with the pilot inside; may be a
    callable returning it). Returns ``(pilot_part, second_part, second_from_pilot)``.

    Examples
    --------
    >>> a, b, from_pilot = variance_parts(np.eye(1), np.eye(1), None, 50, 100, Target("frame", True))
    >>> float(a[0, 0]), float(b[0, 0]), from_pilot
    (0.5, 0.0, True)
    """
    if target is None or not N or (target.estimand == "superpopulation" and not target.inside):
        return cov_a, cov_b, False
    f = n / N
    if target.inside:
        if n > N:
            raise InputError(f"the pilot has {n} rows but the frame only {N}: a pilot inside the frame cannot be "
                             f"larger; pass overlap='separate' if it is a separate sample")
        if target.estimand == "frame":
            return (1 - f) * cov_a, np.zeros_like(cov_a), True
        cy = cov_y() if callable(cov_y) else cov_y
        return (1 - f) * cov_a, f * cy, True
    return cov_a, f * cov_a, True  # frame, separate


def _ids(df, id_col: str | None, frame: str):
    if id_col is None:
        return df.index
    if id_col not in df.columns:
        raise InputError(f"argument 'id' names column {id_col!r}, which the {frame} does not have; give both "
                         f"frames the respondent-id column (or drop id= and use their index labels)")
    ids = df[id_col]
    if ids.isna().any():
        raise InputError(f"column {id_col!r} of the {frame} has missing respondent ids; every row needs one")
    return ids


def pilot_in_frame(pilot, population, overlap: str = "auto", id: str | None = None,
                   predicted: Any = None) -> bool | None:
    """Whether the pilot's people are rows of the frame (``None``: no frame given).

    ``overlap="inside"``/``"separate"`` states it; ``"auto"`` detects it from the respondent-id column
    ``id`` (present in both frames) or else from the index labels: every pilot id in the frame means
    inside, none separate, some is refused. Two default ``RangeIndex`` frames identify nobody by their
    labels: the rows' contents over the shared columns decide when the frame's rows are unique there
    (all pilot rows found: inside; none: separate), else the call is refused (pass ``id=`` or
    ``overlap=``). A pilot whose shared columns were recoded after the draw is then seen as separate:
    the frame estimand's variance is conservative for it. When the pilot is detected inside by its
    labels and both frames hold the prediction column(s) ``predicted``, the matched rows must agree,
    else the labels do not identify people and the call is refused.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"f": [1.0, 2.0, 3.0, 4.0]})
    >>> pilot_in_frame(frame.iloc[[1, 3]].assign(y=[1, 0]), frame, predicted="f")
    True
    >>> pilot_in_frame(pd.DataFrame({"f": [1.0]}, index=[9]), frame)
    False
    """
    if overlap not in OVERLAPS:
        raise InputError(f"argument 'overlap' must be one of {list(OVERLAPS)}, got {overlap!r}")
    if population is None or pilot is None:
        return None
    if overlap != "auto":
        return overlap == "inside"
    pid = _ids(pilot, id, "pilot")
    fid = _ids(population, id, "population")
    what = f"column {id!r}" if id is not None else "the index"
    if not fid.is_unique:
        raise InputError(f"{what} of the population has duplicated labels, so it cannot tell whether the pilot's "
                         f"people are in the frame; give each person a unique id (id='respondent_id'), or pass "
                         f"overlap='inside' or overlap='separate'")
    pos = _positions(pid, fid)
    found = pos >= 0
    k = int(found.sum())
    if k == 0:
        return False
    if k < len(pid):
        raise InputError(f"{k} of the pilot's {len(pid)} rows have {what} labels that are in the population and "
                         f"{len(pid) - k} do not: rectify cannot tell whether the pilot is a sample from the frame. "
                         f"Pass a respondent-id column present in both (id=...), make the population the whole frame "
                         f"(pilot included), or state overlap='inside' or overlap='separate'")
    if id is None and _default_range(pilot.index) and _default_range(population.index):
        by_rows = _rows_in_frame(pilot, population)
        if by_rows is not None:
            return by_rows
        raise InputError("the pilot and the population both have the default RangeIndex 0, 1, 2, ..., which does not "
                         "identify people: rectify cannot tell whether the pilot is inside the frame. Keep the frame's "
                         "index on the pilot (draw_pilot and DataFrame.sample do), pass id='<respondent id column>', "
                         "or state overlap='inside' (the pilot is a sample from the frame) or overlap='separate'")
    _check_same_rows(pilot, population, pos, id, predicted)
    return True


def _rows_in_frame(pilot, population) -> bool | None:
    """Default RangeIndex on both frames: are the pilot's rows the frame's rows, by their contents?

    Each row is hashed over the columns both frames hold. When those hashes are unique in the frame
    (the rows tell people apart), every pilot row found means inside and none found means separate;
    anything else (duplicated frame rows, some found) is undecided (None).
    """
    import pandas as pd

    shared = [c for c in pilot.columns if c in population.columns]
    if not shared:
        return None
    try:
        hp = pd.util.hash_pandas_object(pilot[shared], index=False).to_numpy()
        hf = pd.util.hash_pandas_object(population[shared], index=False).to_numpy()
    except TypeError:  # unhashable cells
        return None
    frame_rows = pd.Index(hf)  # one hash table answers both questions (sorting 1e6 hashes took ~1 s)
    if not frame_rows.is_unique:
        return None
    found = frame_rows.get_indexer(hp) >= 0
    if found.all():
        return True
    if not found.any():
        return False
    return None


def _positions(pid, fid) -> np.ndarray:
    """Position of each pilot label among the frame's unique labels (-1: not there).

    A default ``RangeIndex`` frame answers by arithmetic; any other index through pandas' lookup
    (its hash table is built once per index and kept by pandas).
    """
    import pandas as pd

    if _default_range(fid) and isinstance(pid, pd.Index) and pid.dtype.kind == "i":
        p = pid.to_numpy()
        return np.where((p >= 0) & (p < len(fid)), p, -1).astype(np.intp, copy=False)
    index = fid if isinstance(fid, pd.Index) else pd.Index(fid)  # the frame's own index keeps its hash table
    return np.asarray(index.get_indexer(pd.Index(pid)))


def _default_range(index) -> bool:
    import pandas as pd

    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _numeric_rows(pilot, population, cols, pos):
    """The prediction columns of the pilot and of the frame's rows ``pos`` as floats, read column by
    column (only the matched rows of the frame); None unless every column is plain numeric in both."""
    a, b = [], []
    for c in cols:
        sa, sb = pilot[c], population[c]
        if not all(isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiub" for s in (sa, sb)):
            return None
        a.append(sa.to_numpy(dtype=float))
        b.append(np.asarray(sb.to_numpy()[pos], dtype=float))
    return np.column_stack(a), np.column_stack(b)


def _check_same_rows(pilot, population, pos, id_col, predicted) -> None:
    import pandas as pd

    cols = [predicted] if isinstance(predicted, str) else list(predicted or [])
    cols = [c for c in cols if c in pilot.columns and c in population.columns]
    if not cols:
        return
    plain = _numeric_rows(pilot, population, cols, pos) if pilot.columns.is_unique and \
        population.columns.is_unique else None
    if plain is not None:
        same = np.isclose(*plain, rtol=1e-9, atol=1e-12, equal_nan=True)
    else:
        try:
            a = pilot[cols].to_numpy(dtype=float, na_value=np.nan)
            b = population[cols].iloc[pos].to_numpy(dtype=float, na_value=np.nan)
            same = np.isclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)
        except (TypeError, ValueError):  # labels: compare as objects
            a = pilot[cols].to_numpy(dtype=object)
            b = population[cols].iloc[pos].to_numpy(dtype=object)
            same = (a == b) | (pd.isna(a) & pd.isna(b))
    if not same.all():
        bad = int((~same.all(axis=1)).sum())
        what = f"column {id_col!r}" if id_col is not None else "index label"
        raise InputError(f"{bad} pilot rows differ from the population rows with the same {what} in the prediction "
                         f"column(s) {cols}: the labels do not identify people. Pass a respondent-id column "
                         f"(id=...), or state overlap='inside' or overlap='separate'")


def core_keywords(population, pilot, estimand: str | None = None) -> dict:
    """Keywords for a numeric core called with a pilot and a frame that carry their row labels.

    The overlap is detected from the labels (:func:`pilot_in_frame`); ``frame_size`` is the frame's
    rows (for the classical estimate's finite-population correction).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"f": [1.0, 2.0, 3.0]}, index=[10, 11, 12])
    >>> core_keywords(frame, frame.loc[[11]])
    {'estimand': None, 'overlap': 'inside', 'frame_size': 3}
    """
    if population is None or len(population) == 0:
        return {"estimand": estimand}
    inside = pilot_in_frame(pilot, population, "auto")
    return {"estimand": estimand, "overlap": "inside" if inside else "separate", "frame_size": len(population)}
