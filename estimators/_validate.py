"""Boundary checks shared by the numeric cores: every message names the argument at fault."""

from __future__ import annotations

from typing import Any

import numpy as np

from rectify.errors import InputError

METHODS = ("classical", "naive", "ppi", "ppi++")
CONVENTIONS = ("small-sample", "ppi_py")


def as_float_array(x: Any, name: str, ndim: int | tuple = 1, allow_nan: bool = False) -> np.ndarray:
    """Convert to a float array, refusing wrong shapes, non-numbers and (by default) NaN/inf."""
    if x is None:
        raise InputError(f"argument '{name}' is required")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputError(
            f"argument '{name}' must be numeric; convert text or categorical values to numbers "
            f"(or use the formula verbs, which encode them)"
        ) from None
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        raise InputError(f"argument '{name}' must be {' or '.join(f'{d}-D' for d in dims)}, got shape {arr.shape}")
    if not allow_nan:
        bad = ~np.isfinite(arr)
        if bad.any():
            n_nan = int(np.isnan(arr).sum())
            n_inf = int(bad.sum()) - n_nan
            raise InputError(
                f"argument '{name}' contains {n_nan} NaN and {n_inf} infinite values; rectify never "
                f"drops rows silently: remove or impute them before estimating"
            )
    return arr


def check_same_length(n: int, other: np.ndarray, name: str, ref: str) -> None:
    if other.shape[0] != n:
        raise InputError(
            f"argument '{name}' has {other.shape[0]} rows but '{ref}' has {n}; they must describe the same respondents"
        )


def check_nonempty(arr: np.ndarray, name: str, what: str) -> None:
    if arr.shape[0] == 0:
        raise InputError(f"argument '{name}' is empty: the {what} needs at least one row")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise InputError(
            f"unknown convention {convention!r}; choose 'small-sample' (t intervals, the default) "
            f"or 'ppi_py' (normal intervals with ppi_py's variance conventions)"
        )
    return convention


def normalise_weights(w: Any, n: int, name: str) -> np.ndarray:
    """Survey weights scaled to mean one; refuses negative, non-finite and all-zero weights."""
    if w is None:
        return np.ones(n)
    arr = as_float_array(w, name)
    if arr.shape[0] != n:
        raise InputError(f"argument '{name}' has {arr.shape[0]} weights for {n} rows")
    if (arr < 0).any():
        raise InputError(f"argument '{name}' has {(arr < 0).sum()} negative weights; survey weights must be >= 0: "
                         "fix or remove those rows (rectify never clips weights)")
    total = arr.sum()
    if total <= 0:
        raise InputError(f"argument '{name}' sums to zero; at least one weight must be positive")
    return arr * (n / total)


def check_lambda_mode(mode: str) -> str:
    if mode not in ("overall", "element"):
        raise InputError(f"argument 'lambda_mode' must be 'overall' or 'element', got {mode!r}")
    return mode


def check_design(X: np.ndarray, name: str, terms: list[str]) -> None:
    """Refuse a design with fewer rows than columns, a constant non-intercept column or collinearity."""
    n, p = X.shape
    if n <= p:
        raise InputError(
            f"argument '{name}' has {n} rows (n_samples = {n}) for {p} coefficients; the pilot must be larger than the "
            f"number of coefficients (collect more pilot answers or simplify the formula)"
        )
    sd = X.std(axis=0)
    const = np.where(sd == 0)[0]
    if len(const) > 1 or (len(const) == 1 and not np.allclose(X[:, const[0]], 1.0)):
        bad = [terms[j] for j in const if not np.allclose(X[:, j], 1.0)] or [terms[j] for j in const[1:]]
        raise InputError(
            f"column(s) {', '.join(bad)} of '{name}' are constant in this sample; drop them from the "
            f"formula (a constant predictor has no estimable coefficient)"
        )
    rank = np.linalg.matrix_rank(X)
    if rank < p:
        raise InputError(
            f"argument '{name}' is rank deficient ({rank} < {p} columns): some of {', '.join(terms)} are "
            f"collinear in this sample; drop or merge them"
        )
