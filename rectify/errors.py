"""The error hierarchy of rectify.

Every error raised on purpose by rectify is a subclass of :class:`RectifyError` and of the
builtin class a user would catch anyway (``ValueError`` for bad input, ``RuntimeError`` for a
fit that failed), so ``except ValueError`` keeps working. Messages name the argument or column
at fault and say what to do.

Examples
--------
>>> from rectify.errors import InputError
>>> try:
...     raise InputError("argument 'y' contains 2 NaN values; remove or impute them first")
... except ValueError as err:
...     print(type(err).__name__)
InputError
"""

from __future__ import annotations

__all__ = [
    "RectifyError",
    "InputError",
    "UnseenLevelError",
    "MissingCovariateError",
    "ConvergenceError",
    "EstimationError",
    "ConfigError",
    "CacheError",
    "BackendError",
    "RectifyWarning",
    "InSamplePredictionWarning",
    "SparseAnswersWarning",
    "NotFittedError",
]


class RectifyError(Exception):
    """Base class of every error raised on purpose by rectify."""


class InputError(RectifyError, ValueError):
    """Bad input at the boundary: NaN/inf, wrong lengths, wrong types, invalid options."""


class UnseenLevelError(InputError):
    """A categorical level in the population (or new data) that the pilot never showed."""


class MissingCovariateError(InputError):
    """A covariate the model needs is missing (absent column or missing values)."""


class ConfigError(InputError):
    """A malformed configuration (unknown method, bad TOML, impossible setting)."""


class ConvergenceError(RectifyError, RuntimeError):
    """An iterative fit (Newton, raking, MCMC) did not converge."""


class EstimationError(RectifyError, RuntimeError):
    """The estimate cannot be computed from these data (e.g. a singular design)."""


class CacheError(RectifyError, RuntimeError):
    """The response cache is unreadable, corrupted or locked."""


class BackendError(RectifyError, RuntimeError):
    """An LLM backend failed in a way that retries could not fix."""


class RectifyWarning(UserWarning):
    """Base class of the warnings rectify issues on purpose."""


class InSamplePredictionWarning(RectifyWarning):
    """PPI fed with in-sample predictions of a model trained on the same pilot (intervals too narrow)."""


class SparseAnswersWarning(RectifyWarning):
    """Option shares from too few answers: an option no pilot respondent chose, a pilot with one answer,
    or an interval of zero width."""


class SmallEffectiveSampleWarning(RectifyWarning):
    """A survey-weighted pilot whose Kish effective sample size is too small for its linearized
    variance to be trusted (benchmarks/results/coverage_study.md: 81-93% coverage for weighted means
    and shares, over-coverage for regressions, at effective n below 100)."""


def _not_fitted_error() -> type:
    from sklearn.exceptions import NotFittedError as SklearnNotFitted

    class NotFittedError(InputError, SklearnNotFitted):
        """A rectify estimator used before ``fit`` (also scikit-learn's ``NotFittedError``)."""

    NotFittedError.__module__ = __name__
    return NotFittedError


def __getattr__(name: str):
    """``NotFittedError`` is built on first use: it subclasses scikit-learn's, which ``import
    rectify`` does not load."""
    if name == "NotFittedError":
        cls = globals()["NotFittedError"] = _not_fitted_error()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
