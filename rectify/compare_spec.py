"""What a comparison compares: the table's columns and :func:`make_spec`, which checks the inputs
against the frame and builds the :class:`~rectify.registry.Spec` (re-exported by :mod:`rectify.comparison`).

Examples
--------
>>> TABLE_COLUMNS[:4]
['method', 'family', 'n_pilot', 'repeat']
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError, MissingCovariateError
from .registry import Spec
from .result import check_level


TABLE_COLUMNS = ["method", "family", "n_pilot", "repeat", "source", "axis", "metric", "item", "grouping",
                 "group", "value", "n", "note"]
CELL_KEYS = ["method", "family", "n_pilot", "repeat"]
ITEM_MEAN = "(mean over items)"


# ---------------------------------------------------------------------------------------------
# the specification
# ---------------------------------------------------------------------------------------------
def _fill(pattern: str, name: str, **values: Any) -> str:
    """Put ``values`` into ``{item}``/``{k}`` literally: a configured pattern is data, never a
    ``str.format`` string (which would read attributes such as ``{item.__class__}``)."""
    rest, out = pattern, pattern
    for key, v in values.items():
        rest, out = rest.replace("{" + key + "}", ""), out.replace("{" + key + "}", str(v))
    if "{" in rest or "}" in rest:
        raise ConfigError(f"argument {name!r} may only use the placeholders {{item}} and {{k}}, got {pattern!r}; "
                          "for column names with other braces pass a dict item -> column(s)")
    return out


def _pattern(value: Any, items: Sequence[str], name: str, with_k: int | None = None) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        if "{item}" not in value:
            raise ConfigError(f"argument {name!r} must contain '{{item}}' (e.g. '{{item}}_llm'), got {value!r}")
        if with_k is None:
            return {it: _fill(value, name, item=it) for it in items}
        if "{k}" not in value:
            raise ConfigError(f"argument {name!r} must contain '{{item}}' and '{{k}}' (e.g. '{{item}}_p{{k}}')")
        return {it: tuple(_fill(value, name, item=it, k=k) for k in range(1, with_k + 1)) for it in items}
    if isinstance(value, Mapping):
        out = dict(value)
        extra = sorted(set(out) - set(items))
        if extra:
            raise ConfigError(f"argument {name!r} names items {extra} that are not in 'items'")
        return {k: (tuple(v) if with_k is not None else v) for k, v in out.items()}
    raise ConfigError(f"argument {name!r} must be a pattern string or a dict item -> column(s)")


def _formula_variables(formula: str) -> list[str]:
    from formulaic import Formula

    from .formula import check_formula

    check_formula(formula, "formula", ConfigError)  # formulas are data: refuse code before formulaic sees it
    rhs = formula.split("~", 1)[1]
    return sorted(v for v in Formula(rhs).required_variables if v not in ("np", "numpy", "C"))


def make_spec(frame: pd.DataFrame, items: Sequence[str], *, predicted: Any = "{item}_llm",
              probabilities: Any = None, scores: Sequence[float] | None = None, formula: str | None = None,
              scales: Mapping[str, Any] | None = None, covariates: Sequence[str] | None = None,
              groups: Sequence[str] | str | None = None, level: float = 0.95) -> Spec:
    """Validate the comparison's inputs against ``frame`` and build a :class:`~rectify.registry.Spec`.

    Every named column must exist (:class:`~rectify.errors.ConfigError` names the missing ones), an
    item must have at least one human answer, grouping columns must have no missing value.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo
    >>> s = make_spec(load_misinfo(), ["f01"], formula="f01 ~ age + ideology")
    >>> s.predicted, s.scores, s.covariates
    ({'f01': 'f01_llm'}, (1.0, 2.0, 3.0, 4.0), ('age', 'ideology'))
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"argument 'frame' must be a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(items, str) or not len(items):
        raise ConfigError("argument 'items' must be a non-empty list of item column names")
    if not frame.index.is_unique:
        dup = frame.index[frame.index.duplicated()].unique().tolist()
        raise ConfigError(f"argument 'frame' has a duplicated index (e.g. {dup[:3]}); pilots and held-out people are "
                          "found by row label, so give each person a unique one (frame.reset_index(drop=True)) "
                          "after removing any duplicated respondents")
    try:
        check_level(level)
    except InputError as err:
        raise ConfigError(str(err)) from None
    items = [str(i) for i in items]
    _need_columns(frame, items, "items")
    empty = [i for i in items if frame[i].isna().all()]
    if empty:
        raise ConfigError(f"items {empty}: every human answer is missing; drop them from 'items'")
    for i in items:
        if not pd.api.types.is_numeric_dtype(frame[i]):
            raise ConfigError(f"item column {i!r} must hold numeric option scores (got {frame[i].dtype})")
    if scores is None:
        vals = frame[items].to_numpy(dtype=float)
        scores = np.unique(vals[~np.isnan(vals)])
    sc = tuple(float(s) for s in scores)
    if len(sc) < 2 or any(b <= a for a, b in zip(sc, sc[1:])):
        raise ConfigError(f"argument 'scores' must list at least 2 increasing option scores, got {list(sc)}")
    vals = frame[items].to_numpy(dtype=float)
    off = ~np.isnan(vals) & ~np.isin(vals, sc)
    if off.any():
        raise ConfigError(f"item answers {sorted(set(vals[off].tolist()))[:5]} are not among the scores {list(sc)}; "
                          "code missing answers as NaN")
    pred = _pattern(predicted, items, "predicted")
    _need_columns(frame, list(pred.values()), "predicted")
    probs = _pattern(probabilities, items, "probabilities", with_k=len(sc))
    for it, cols in probs.items():
        if len(cols) != len(sc):
            raise ConfigError(f"probabilities of item {it!r}: {len(cols)} columns for {len(sc)} options")
        _need_columns(frame, list(cols), "probabilities")
    sc_defs: dict[str, tuple] = {}
    for name, spec in (scales or {}).items():
        if isinstance(spec, Mapping):
            plus, minus = list(spec.get("plus", [])), list(spec.get("minus", []))
        else:
            plus, minus = spec
        unknown = [c for c in sorted(set(plus) | set(minus)) if c not in items]
        if unknown:
            raise ConfigError(f"scale {name!r} uses {unknown}, which are not in 'items'")
        sc_defs[str(name)] = (tuple(plus), tuple(minus))
    grp = [groups] if isinstance(groups, str) else list(groups or [])
    _need_columns(frame, grp, "groups")
    for g in grp:
        if frame[g].isna().any():
            raise MissingCovariateError(f"grouping column {g!r} has missing values; fill or drop those rows first")
    cov = list(covariates) if covariates is not None else []
    if formula is not None:
        if not isinstance(formula, str) or formula.count("~") != 1:
            raise ConfigError(f"argument 'formula' must look like 'y ~ x1 + x2', got {formula!r}")
        lhs = formula.split("~")[0].strip()
        if lhs not in items and lhs not in sc_defs:
            raise ConfigError(f"the formula's response {lhs!r} must be an item or a scale name "
                              f"(items: {items[:5]}..., scales: {sorted(sc_defs)})")
        rhs_vars = _formula_variables(formula)
        _need_columns(frame, rhs_vars, "formula")
        holes = [v for v in rhs_vars if frame[v].isna().any()]
        if holes:
            raise MissingCovariateError(f"formula covariates {holes} have missing values; fill or drop those rows")
        if covariates is None:
            cov = rhs_vars
    _need_columns(frame, cov, "covariates")
    return Spec(items=tuple(items), scores=sc, predicted=pred, probabilities=probs, formula=formula,
                scales=sc_defs, covariates=tuple(cov), groups=tuple(grp), level=float(level))


def _need_columns(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    absent = [c for c in cols if c not in frame.columns]
    if absent:
        raise ConfigError(f"{what}: columns {absent} are not in the frame (it has {list(frame.columns)[:8]}...); "
                          "check the names or add the columns")
    from ._checks import check_unique

    try:
        check_unique(frame, cols, "frame")
    except InputError as err:
        raise ConfigError(f"{what}: {err}") from None
