"""The one module that talks to formulaic: learn a model spec on the pilot, replay it strictly.

formulaic, replaying a spec on new data, encodes an unseen category as the reference level with only
a warning, and drops rows with missing covariates under its default ``na_action``. Here a spec is
always materialised with ``na_action="raise"``, and a population row with a category the pilot never
showed, or with a missing covariate, is refused with an error that names the column.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError, MissingCovariateError, UnseenLevelError

__all__ = ["ModelFrame", "build_design", "replay_design", "check_columns"]


@dataclass(frozen=True)
class ModelFrame:
    """Design matrices of the pilot and (optionally) the population, from one learned spec."""

    X: np.ndarray
    y: np.ndarray | None
    X_pop: np.ndarray | None
    terms: list
    outcome: str | None
    spec: Any


def check_columns(df: pd.DataFrame, columns, frame: str) -> None:
    """Refuse absent columns and missing values in ``columns`` of ``df``, naming them.

    Examples
    --------
    >>> check_columns(pd.DataFrame({"a": [1.0, 2.0]}), ["a"], "pilot")
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"argument '{frame}' must be a pandas DataFrame, got {type(df).__name__}")
    for c in columns:
        if c not in df.columns:
            raise MissingCovariateError(
                f"column '{c}' is not in the {frame} data; available columns: {', '.join(map(str, df.columns[:12]))}"
            )
        miss = int(df[c].isna().sum())
        if miss:
            raise MissingCovariateError(
                f"column '{c}' has {miss} missing value(s) in the {frame} data; rectify does not drop rows "
                f"silently: impute them, or subset the {frame} explicitly before estimating"
            )


def _spec_variables(spec) -> list[str]:
    out = []
    for v in sorted(getattr(spec, "required_variables", set())):
        if v in {"C", "np", "center", "scale", "bs", "poly", "log", "exp", "I", "Q", "T", "S"}:
            continue
        out.append(v)
    return out


def _materialise(spec, df: pd.DataFrame, frame: str):
    # names the formula evaluates that are neither data columns nor numpy functions must be columns
    check_columns(df, [v for v in _spec_variables(spec) if v in df.columns or not hasattr(np, v)], frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mm = spec.get_model_matrix(df, na_action="raise")
        except Exception as err:  # formulaic wraps evaluation errors in its own types
            raise InputError(f"could not build the design for the {frame} data: {err}") from None
    for w in caught:
        if type(w.message).__name__ == "DataMismatchWarning" or "outside of the nominated levels" in str(w.message):
            raise UnseenLevelError(
                f"the {frame} data contain categories the pilot never showed ({w.message}). A coefficient for "
                f"them cannot be estimated: merge them into a seen category or restrict the {frame}"
            )
    return mm


def build_design(formula: str, pilot: pd.DataFrame, population: pd.DataFrame | None = None,
                 intercept: bool = True) -> ModelFrame:
    """Learn the model spec of ``formula`` on the pilot and replay it on the population.

    Parameters
    ----------
    formula : str
        A Wilkinson formula, e.g. ``"trust ~ age + C(ideology)"``.
    pilot : DataFrame
        The pilot (human answers and covariates).
    population : DataFrame, optional
        The frame; only the right-hand side is replayed on it.
    intercept : bool
        Keep the intercept column (``False`` drops it after encoding, for ordinal models, so that the
        categorical contrasts stay reduced-rank).

    Returns
    -------
    ModelFrame

    Examples
    --------
    >>> pilot = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 2, 3], "g": ["a", "b", "a", "b"]})
    >>> mf = build_design("y ~ x + C(g)", pilot, pilot[["x", "g"]])
    >>> mf.terms
    ['Intercept', 'x', 'C(g)[T.b]']
    """
    from formulaic import Formula

    if not isinstance(formula, str) or "~" not in formula:
        raise InputError(f"argument 'formula' must be a string like 'y ~ x1 + x2', got {formula!r}")
    if not isinstance(pilot, pd.DataFrame):
        raise InputError(f"argument 'pilot' must be a pandas DataFrame, got {type(pilot).__name__}")
    if len(pilot) == 0:
        raise InputError("argument 'pilot' is empty: estimation needs pilot rows with human answers")
    try:
        Formula(formula)  # parse once up front for a clear syntax error
    except Exception as err:
        raise InputError(f"could not parse formula {formula!r}: {err}") from None
    lhs_name = formula.split("~")[0].strip()
    if lhs_name and lhs_name not in pilot.columns:
        raise MissingCovariateError(f"outcome column '{lhs_name}' named in the formula is not in the pilot data")
    if lhs_name:
        check_columns(pilot, [lhs_name], "pilot")
    rhs = Formula(formula.split("~", 1)[1])
    try:
        mm_rhs = rhs.get_model_matrix(pilot, na_action="raise")
    except Exception as err:
        for v in sorted(rhs.required_variables if hasattr(rhs, "required_variables") else []):
            if v not in pilot.columns and not hasattr(np, v) and v not in {"C", "I", "Q"}:
                raise MissingCovariateError(f"column '{v}' named in the formula is not in the pilot data") from None
        missing = [c for c in pilot.columns if c in formula and pilot[c].isna().any()]
        if missing:
            raise MissingCovariateError(
                f"column '{missing[0]}' has {int(pilot[missing[0]].isna().sum())} missing value(s) in the pilot; "
                f"rectify does not drop rows silently: impute or subset first"
            ) from None
        raise InputError(f"could not build the design for the pilot data: {err}") from None
    spec = mm_rhs.model_spec
    terms = list(mm_rhs.columns)
    X = np.asarray(mm_rhs, dtype=float)
    y = pilot[lhs_name].to_numpy() if lhs_name else None
    X_pop = None
    if population is not None:
        if not isinstance(population, pd.DataFrame):
            raise InputError(f"argument 'population' must be a pandas DataFrame, got {type(population).__name__}")
        if len(population) == 0:
            raise InputError("argument 'population' is empty: the frame needs at least one row")
        X_pop = np.asarray(_materialise(spec, population, "population"), dtype=float)
    if not intercept and "Intercept" in terms:
        j = terms.index("Intercept")
        X = np.delete(X, j, axis=1)
        X_pop = None if X_pop is None else np.delete(X_pop, j, axis=1)
        terms = terms[:j] + terms[j + 1:]
    return ModelFrame(X=X, y=y, X_pop=X_pop, terms=terms, outcome=lhs_name or None, spec=spec)


def replay_design(spec, data: pd.DataFrame, frame: str = "new") -> np.ndarray:
    """Materialise a learned spec on new data, strictly (see module notes).

    Examples
    --------
    >>> pilot = pd.DataFrame({"y": [1.0, 2, 3], "g": ["a", "b", "a"]})
    >>> mf = build_design("y ~ C(g)", pilot)
    >>> replay_design(mf.spec, pd.DataFrame({"g": ["b"]})).tolist()
    [[1.0, 1.0]]
    """
    return np.asarray(_materialise(spec, data, frame), dtype=float)
