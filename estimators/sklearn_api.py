"""scikit-learn-style classes over the PPI cores (they hold no math of their own).

``fit(X, y, yhat=..., X_unlabeled=..., yhat_unlabeled=...)`` takes the pilot's covariates, human
answers and LLM predictions, plus the unlabeled population rows; without the LLM arguments the fit is
classical (pilot only), which is what scikit-learn's generic checks exercise.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from functools import partial

from rectify.errors import InputError

from .ppi import ppi_logistic, ppi_ols

__all__ = ["PPILinearRegression", "PPILogisticRegression"]


def _unique_columns(X) -> None:
    """Refuse a DataFrame ``X`` whose column names repeat (its names become the result's terms)."""
    cols = getattr(X, "columns", None)
    if cols is not None and not cols.is_unique:
        from rectify._checks import check_unique

        check_unique(X, [c for c in cols if isinstance(c, str)], "X")


def _design(X, fit_intercept):
    return np.column_stack([np.ones(X.shape[0]), X]) if fit_intercept else X


class _PPIMixin:
    def _fit_core(self, core, X, y, yhat, X_unlabeled, yhat_unlabeled, sample_weight, sample_weight_unlabeled):
        method = self.method
        has_llm = yhat is not None or X_unlabeled is not None or yhat_unlabeled is not None
        if has_llm and (yhat is None or X_unlabeled is None or yhat_unlabeled is None):
            raise InputError("give all of 'yhat', 'X_unlabeled' and 'yhat_unlabeled' (or none for a classical fit)")
        if not has_llm:
            method = "classical"
        from ._validate import normalise_weights
        if sample_weight is not None:
            sample_weight = normalise_weights(sample_weight, X.shape[0], "sample_weight")
        Xd = _design(X, self.fit_intercept)
        Xu = None
        if has_llm:
            Xu = validate_data(self, X_unlabeled, reset=False, dtype=float)
            Xu = _design(Xu, self.fit_intercept)
        p = X.shape[1]
        names = getattr(self, "feature_names_in_", None)  # set by validate_data for a DataFrame X
        features = [str(n) for n in names] if names is not None else [f"x{j}" for j in range(p)]
        terms = (["Intercept"] if self.fit_intercept else []) + features
        res = core(Xd, y, yhat, Xu, yhat_unlabeled, method, weights=sample_weight,
                   weights_pop=sample_weight_unlabeled, lam=self.lam, lambda_mode=self.lambda_mode,
                   level=self.level, convention=self.convention, terms=terms)
        self.result_ = res
        est = res.estimate
        self.intercept_ = float(est[0]) if self.fit_intercept else 0.0
        self.coef_ = est[1:] if self.fit_intercept else est.copy()
        lam = res.tuning.get("lambda")
        self.lambda_ = None if lam is None else np.asarray(lam, float)
        return self

    def conf_int(self, level=None):
        """Confidence intervals of (intercept, coefficients) from the fitted Result."""
        check_is_fitted(self)
        return self.result_.conf_int(level)


class PPILinearRegression(_PPIMixin, RegressorMixin, BaseEstimator):
    """Linear regression corrected by prediction-powered inference (PPI / PPI++).

    Parameters
    ----------
    method : {"ppi++", "ppi", "classical", "naive"}
    lam : float, optional
        Fixed lambda (default: tuned).
    lambda_mode : {"overall", "element"}
    fit_intercept : bool
    level : float
    convention : {"small-sample", "ppi_py"}

    Attributes
    ----------
    coef_, intercept_, lambda_, result_ (a :class:`rectify.Result`)
        ``result_.terms`` are ``Intercept`` and the column names of a DataFrame ``X``
        (``feature_names_in_``), else ``x0, x1, ...``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Xu = rng.normal(size=(2000, 1)); fu = 2 * Xu[:, 0]
    >>> X = rng.normal(size=(100, 1)); y = 2 * X[:, 0] + rng.normal(size=100)
    >>> m = PPILinearRegression().fit(X, y, yhat=2 * X[:, 0] + 0.5 * (y - 2 * X[:, 0]), X_unlabeled=Xu,
    ...                               yhat_unlabeled=fu)
    >>> bool(abs(m.coef_[0] - 2) < 0.3)
    True
    """

    def __init__(self, method="ppi++", lam=None, lambda_mode="overall", fit_intercept=True, level=0.95,
                 convention="small-sample"):
        self.method = method
        self.lam = lam
        self.lambda_mode = lambda_mode
        self.fit_intercept = fit_intercept
        self.level = level
        self.convention = convention

    def fit(self, X, y, yhat=None, X_unlabeled=None, yhat_unlabeled=None, sample_weight=None,
            sample_weight_unlabeled=None):
        """Fit on the pilot (X, y, yhat) and the unlabeled population (X_unlabeled, yhat_unlabeled)."""
        _unique_columns(X)
        X, y = validate_data(self, X, y, dtype=float, y_numeric=True)
        return self._fit_core(ppi_ols, X, y, yhat, X_unlabeled, yhat_unlabeled, sample_weight,
                              sample_weight_unlabeled)

    def predict(self, X):
        """Linear predictions ``intercept_ + X @ coef_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=float)
        return self.intercept_ + X @ self.coef_


class PPILogisticRegression(_PPIMixin, ClassifierMixin, BaseEstimator):
    """Binary logistic regression corrected by prediction-powered inference.

    ``yhat`` / ``yhat_unlabeled`` are the LLM's probabilities of the positive class (``classes_[1]``)
    or 0/1 predictions. Unpenalised by default (``alpha=0``): perfectly separated data raise an error
    rather than returning infinite coefficients; ``alpha > 0`` adds an L2 penalty (intercept excluded).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 1))
    >>> y = (rng.uniform(size=200) < 1 / (1 + np.exp(-X[:, 0]))).astype(int)
    >>> m = PPILogisticRegression().fit(X, y)
    >>> m.classes_.tolist(), m.result_.method
    ([0, 1], 'classical')
    """

    def __init__(self, method="ppi++", lam=None, lambda_mode="overall", fit_intercept=True, level=0.95,
                 convention="small-sample", alpha=0.0):
        self.method = method
        self.lam = lam
        self.lambda_mode = lambda_mode
        self.fit_intercept = fit_intercept
        self.level = level
        self.convention = convention
        self.alpha = alpha

    def fit(self, X, y, yhat=None, X_unlabeled=None, yhat_unlabeled=None, sample_weight=None,
            sample_weight_unlabeled=None):
        """Fit on the pilot and (optionally) the unlabeled population; see the class docstring."""
        from sklearn.utils.multiclass import type_of_target

        _unique_columns(X)
        X, y = validate_data(self, X, y, dtype=None if np.asarray(y).dtype == object else float)
        X = np.asarray(X, dtype=float)
        check_classification_targets(y)
        if type_of_target(y) != "binary":
            raise InputError(
                f"Only binary classification is supported. PPILogisticRegression needs exactly two classes in "
                f"'y' (got {len(np.unique(y))}); use rectify.ordinal for ordered answers"
            )
        from ._validate import normalise_weights

        if sample_weight is not None:
            sample_weight = normalise_weights(sample_weight, len(y), "sample_weight")
        classes = np.unique(y)
        if len(classes) < 2:
            raise InputError("only one class is present in 'y'; logistic regression needs both classes")
        self.classes_ = classes
        if sample_weight is not None:
            sw = sample_weight
            if len(np.unique(y[sw > 0])) < 2:
                raise InputError("only one class has positive 'sample_weight'; logistic regression needs both classes")
        y01 = (y == self.classes_[1]).astype(float)
        return self._fit_core(partial(ppi_logistic, ridge=self.alpha), X, y01, yhat, X_unlabeled, yhat_unlabeled,
                              sample_weight, sample_weight_unlabeled)

    def decision_function(self, X):
        """Linear predictor (log-odds of ``classes_[1]``)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=float)
        return self.intercept_ + X @ self.coef_

    def predict_proba(self, X):
        """Probabilities of ``classes_`` (two columns)."""
        p1 = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p1, p1])

    def predict(self, X):
        """The more probable class."""
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
