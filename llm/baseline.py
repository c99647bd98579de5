"""Covariates-only baseline classifiers with the simulator interface.

A fine-tuned LLM trained on a small pilot may be no better than a plain classifier on the same
covariates. :class:`CovariateClassifier` is that plain classifier, with the same interface as the
LLM simulators: ``fit(X_frame, y)`` and ``predict_proba(X) -> (n, K)`` over the item's options in
their canonical order, so every comparison can show whether the LLM adds anything beyond the
covariates.

Three kinds:

``"ordinal"``
    Cumulative-logit (proportional-odds) model, ``P(Y <= k | x) = expit(theta_k - x @ beta)``,
    fitted by penalised maximum likelihood (ridge penalty ``||beta||^2 / (2 C)``; ``C=inf`` gives
    the plain MLE that equals statsmodels' ``OrderedModel``). The natural model for Likert answers.
``"multinomial"``
    scikit-learn's multinomial ``LogisticRegression`` (ridge penalty with the same ``C``).
``"gbm"``
    scikit-learn's ``HistGradientBoostingClassifier`` (at most 100 trees of 8 leaves, at least
    ``min(20, n/20)`` rows per leaf, L2 penalty 1; flexible, and it can over-fit a small pilot:
    use cross-fitting, :mod:`rectify.estimators.crossfit`, before feeding it to PPI).

Inputs: a pandas DataFrame (categorical columns -- object, string, category or bool dtype -- are
one-hot encoded inside; numeric columns are standardised) or a numeric array (every column numeric;
this is the mode scikit-learn's estimator checks exercise). A category never seen in ``fit`` raises
:class:`~rectify.errors.UnseenLevelError`; a missing covariate raises
:class:`~rectify.errors.MissingCovariateError`. Nothing is re-coded or dropped silently.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import special
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from rectify.errors import (
    ConvergenceError,
    InputError,
    MissingCovariateError,
    UnseenLevelError,
)

__all__ = ["CovariateClassifier", "fit_cumulative_logit", "cumulative_logit_proba",
           "check_labels"]

_KINDS = ("ordinal", "multinomial", "gbm")


# ----------------------------------------------------------------------------- labels
def _is_missing_label(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def check_labels(y: Any, options: Sequence | None, *, name: str = "y",
                 allow_missing: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate answers against an item's options and code them as option indices.

    Parameters
    ----------
    y : array-like, shape (n,)
        Answers (option labels). Missing answers are ``None``/``NaN``.
    options : sequence or None
        The item's options in canonical order. ``None`` takes the sorted distinct answers.
    name : str
        Argument name used in error messages.
    allow_missing : bool
        If False, a missing answer raises :class:`~rectify.errors.InputError`; if True it is coded
        ``-1``.

    Returns
    -------
    codes : ndarray of int, shape (n,)
        Index of each answer in ``classes`` (``-1`` for missing).
    classes : ndarray
        The options in canonical order.
    missing : ndarray of bool, shape (n,)

    Examples
    --------
    >>> codes, classes, missing = check_labels([2, 1, 2], options=[1, 2, 3])
    >>> codes.tolist(), classes.tolist()
    ([1, 0, 1], [1, 2, 3])
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputError(f"argument '{name}' must be one-dimensional, got shape {arr.shape}")
    missing = np.array([_is_missing_label(v) for v in arr], dtype=bool)
    if missing.any() and not allow_missing:
        raise InputError(
            f"argument '{name}' contains {int(missing.sum())} missing answers (NaN/None); "
            "remove those rows or use a model that masks missing answers"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr[~missing].astype(float))):
        raise InputError(f"argument '{name}' contains infinite values")
    observed = arr[~missing]
    if options is None:
        if observed.size == 0:
            raise InputError(f"argument '{name}' has no non-missing answers")
        try:
            classes = np.unique(observed)
        except TypeError:
            raise InputError(
                f"argument '{name}' mixes label types that cannot be ordered; pass 'options'"
            ) from None
    else:
        classes = np.asarray(list(options), dtype=object)
        if len(classes) < 2:
            raise InputError("argument 'options' must list at least 2 options")
        if len(set(map(repr, classes))) != len(classes):
            raise InputError(f"argument 'options' has duplicates: {list(classes)}")
        try:
            classes = np.asarray(list(options))
        except (TypeError, ValueError):
            pass
    lookup = {}
    for i, c in enumerate(classes.tolist()):
        lookup[c] = i
    codes = np.full(arr.shape[0], -1, dtype=int)
    bad = []
    for i, v in enumerate(arr.tolist()):
        if missing[i]:
            continue
        key = v
        if key not in lookup and isinstance(v, numbers.Number) and float(v).is_integer():
            key = int(v) if int(v) in lookup else v
        if key not in lookup:
            bad.append(v)
            continue
        codes[i] = lookup[key]
    if bad:
        shown = sorted({repr(b) for b in bad})[:5]
        raise InputError(
            f"argument '{name}' has {len(bad)} answers outside the item's options "
            f"{classes.tolist()}: {', '.join(shown)}; map them to an option or to missing first"
        )
    return codes, classes, missing


# ----------------------------------------------------------------------------- ordinal core
def cumulative_logit_proba(X: np.ndarray, beta: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Option probabilities of a cumulative-logit model.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    beta : ndarray, shape (p,)
    thresholds : ndarray, shape (K - 1,), increasing

    Returns
    -------
    ndarray, shape (n, K)

    Examples
    --------
    >>> p = cumulative_logit_proba(np.zeros((1, 1)), np.zeros(1), np.array([0.0]))
    >>> p.round(3).tolist()
    [[0.5, 0.5]]
    """
    eta = X @ beta
    cdf = special.expit(thresholds[None, :] - eta[:, None])
    cdf = np.hstack([np.zeros((len(eta), 1)), cdf, np.ones((len(eta), 1))])
    return np.clip(np.diff(cdf, axis=1), 0.0, 1.0)


def fit_cumulative_logit(X: np.ndarray, codes: np.ndarray, n_classes: int, *, C: float = np.inf,
                         sample_weight: np.ndarray | None = None, max_iter: int = 1000,
                         tol: float = 1e-10, return_n_iter: bool = False) -> tuple:
    """Penalised maximum likelihood for the cumulative-logit (proportional-odds) model.

    ``P(Y <= k | x) = expit(theta_k - x @ beta)``; no intercept in ``X`` (the thresholds play that
    role). The penalty is ``||beta||^2 / (2 C)``; ``C=inf`` is the plain MLE (statsmodels'
    ``OrderedModel(distr="logit")`` gives the same numbers). Solved by Newton's method in
    :func:`rectify.estimators.models.fit_ordinal`, the solver of the PPI ordinal core too.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    codes : ndarray of int, shape (n,)
        Answer codes ``0..n_classes-1``; every code must occur (drop empty classes first).
    n_classes : int
    C : float
        Inverse penalty strength.
    sample_weight : ndarray, optional
    max_iter, tol : Newton steps at most, and the step size at which Newton stops.
    return_n_iter : bool
        Also return the number of optimiser iterations.

    Returns
    -------
    beta : ndarray, shape (p,)
    thresholds : ndarray, shape (n_classes - 1,)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 1))
    >>> y = np.digitize(x[:, 0] + rng.logistic(size=500), [-1.0, 1.0])
    >>> beta, th = fit_cumulative_logit(x, y, 3)
    >>> bool(0.8 < beta[0] < 1.3), bool(-1.5 < th[0] < -0.5)
    (True, True)
    """
    from rectify.errors import EstimationError
    from rectify.estimators.models import fit_ordinal

    X = np.asarray(X, dtype=float)
    codes = np.asarray(codes, dtype=int)
    K = int(n_classes)
    counts = np.bincount(codes, minlength=K)
    if len(counts) > K or np.any(counts == 0):
        raise InputError("fit_cumulative_logit: every class must occur at least once (codes 0..n_classes-1)")
    w = None if sample_weight is None else np.asarray(sample_weight, float)
    ridge = 0.0 if not np.isfinite(C) else 1.0 / float(C)
    try:
        fit = fit_ordinal(X, np.eye(K)[codes], w, tol=tol, max_iter=int(max_iter), keep_psi=False, ridge=ridge)
    except EstimationError as err:
        raise ConvergenceError(f"ordinal (cumulative-logit) fit failed: {err}; lower 'C'") from None
    p = X.shape[1]
    beta, thresholds = fit.theta[:p].copy(), fit.theta[p:].copy()
    if return_n_iter:
        return beta, thresholds, max(int(fit.iterations), 1)
    return beta, thresholds


# ----------------------------------------------------------------------------- design matrix
def _is_categorical(s: pd.Series) -> bool:
    return (isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool
            or pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype))


class _Design:
    """Learned encoding of a covariate frame: one-hot for categories, z-scores for numbers."""

    def __init__(self, X: Any, covariates: Sequence[str] | None):
        self.frame_mode = isinstance(X, pd.DataFrame)
        if self.frame_mode:
            cols = list(X.columns) if covariates is None else list(covariates)
            missing_cols = [c for c in cols if c not in X.columns]
            if missing_cols:
                raise MissingCovariateError(
                    f"argument 'X' lacks the covariate column(s) {missing_cols}; add them or "
                    "change 'covariates'")
            if not cols:
                raise InputError("argument 'X' has no covariate columns")
            self.columns = cols
            self.levels: dict[str, list] = {}
            self.numeric: list[str] = []
            self._check_missing(X)
            for c in cols:
                if _is_categorical(X[c]):
                    s = X[c]
                    if isinstance(s.dtype, pd.CategoricalDtype):
                        lev = [v for v in s.cat.categories if (s == v).any()]
                    else:
                        lev = sorted(pd.unique(s).tolist(), key=lambda v: (str(type(v)), v))
                    self.levels[c] = lev
                else:
                    self.numeric.append(c)
            num = X[self.numeric].to_numpy(dtype=float) if self.numeric else np.zeros((len(X), 0))
        else:
            num = np.asarray(X, dtype=float)
            self.columns = None
            self.numeric = list(range(num.shape[1]))
            self.levels = {}
        self.mean_ = num.mean(axis=0) if len(num) else np.zeros(num.shape[1])
        sd = num.std(axis=0) if len(num) else np.ones(num.shape[1])
        self.scale_ = np.where(sd > 0, sd, 1.0)

    def _check_missing(self, X: pd.DataFrame) -> None:
        na = X[self.columns].isna()
        if na.to_numpy().any():
            bad = na.sum()
            bad = bad[bad > 0]
            raise MissingCovariateError(
                "argument 'X' has missing covariate values in column(s) "
                + ", ".join(f"{c!r} ({n} rows)" for c, n in bad.items())
                + "; impute or remove them first (nothing is dropped silently)")

    def transform(self, X: Any) -> np.ndarray:
        if not self.frame_mode:
            arr = np.asarray(X, dtype=float)
            return (arr - self.mean_) / self.scale_
        if not isinstance(X, pd.DataFrame):
            raise InputError("this classifier was fitted on a DataFrame; pass a DataFrame to "
                             "predict as well")
        missing_cols = [c for c in self.columns if c not in X.columns]
        if missing_cols:
            raise MissingCovariateError(f"argument 'X' lacks the covariate column(s) {missing_cols}")
        self._check_missing(X)
        parts = []
        if self.numeric:
            num = X[self.numeric].to_numpy(dtype=float)
            parts.append((num - self.mean_) / self.scale_)
        for c, lev in self.levels.items():
            vals = X[c].to_numpy(dtype=object)
            index = {v: i for i, v in enumerate(lev)}
            unseen = sorted({repr(v) for v in vals if v not in index})
            if unseen:
                raise UnseenLevelError(
                    f"column {c!r} has level(s) {', '.join(unseen[:5])} never seen in fit; "
                    f"fit with those levels present or map them to a known level ({lev})")
            onehot = np.zeros((len(vals), max(len(lev) - 1, 0)))
            for r, v in enumerate(vals):
                j = index[v]
                if j > 0:  # first level is the reference
                    onehot[r, j - 1] = 1.0
            parts.append(onehot)
        return np.hstack(parts) if parts else np.zeros((len(X), 0))

    def feature_names(self) -> list[str]:
        if not self.frame_mode:
            return [f"x{i}" for i in self.numeric]
        names = list(map(str, self.numeric))
        for c, lev in self.levels.items():
            names += [f"{c}[{v}]" for v in lev[1:]]
        return names


# ----------------------------------------------------------------------------- the classifier
class CovariateClassifier(ClassifierMixin, BaseEstimator):
    """A plain classifier on the covariates, with the LLM simulators' interface.

    Parameters
    ----------
    kind : {"ordinal", "multinomial", "gbm"}
        Cumulative-logit model (own penalised MLE), multinomial logistic regression or histogram
        gradient boosting (scikit-learn).
    options : sequence, optional
        The item's options in canonical order. ``predict_proba`` returns one column per option in
        this order (options absent from the training answers get probability 0, and are listed in
        ``unseen_options_``). ``None``: the sorted distinct answers seen in ``fit``.
    covariates : sequence of str, optional
        Columns of the frame to use (DataFrame input); ``None`` uses every column.
    C : float, default 1.0
        Inverse ridge-penalty strength for "ordinal" and "multinomial" (``np.inf``: no penalty).
    max_iter : int, default 1000
        Iterations for "ordinal"/"multinomial"; boosting iterations for "gbm" (capped at 100).
    learning_rate : float, default 0.05
        "gbm" only.
    missing_y : {"raise", "skip"}, default "raise"
        What to do with missing answers in ``y``: raise, or leave those rows out of the fit and
        count them in ``n_missing_y_``.
    random_state : int, Generator or None
        Seed for "gbm".

    Attributes
    ----------
    classes_ : ndarray
        The options, in the column order of ``predict_proba``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str (DataFrame input only)
    unseen_options_ : list
        Options with no training answer (probability 0).
    n_missing_y_ : int
        Rows left out of the fit because their answer was missing.
    coef_, thresholds_ : ndarray
        "ordinal" only: slopes (on the standardised / one-hot design) and cut-points.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": [20, 30, 40, 50, 60, 70],
    ...                   "region": ["n", "s", "n", "s", "n", "s"]})
    >>> y = [1, 1, 2, 2, 3, 3]
    >>> clf = CovariateClassifier(kind="ordinal", options=[1, 2, 3, 4]).fit(X, y)
    >>> clf.predict_proba(X).shape
    (6, 4)
    >>> clf.unseen_options_
    [4]
    """

    def __init__(self, kind: str = "ordinal", options: Sequence | None = None,
                 covariates: Sequence[str] | None = None, C: float = 1.0, max_iter: int = 1000,
                 learning_rate: float = 0.05, missing_y: str = "raise", random_state=None):
        self.kind = kind
        self.options = options
        self.covariates = covariates
        self.C = C
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.missing_y = missing_y
        self.random_state = random_state

    # -- helpers
    def _check_params(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"argument 'kind' must be one of {_KINDS}, got {self.kind!r}")
        if self.missing_y not in ("raise", "skip"):
            raise InputError(f"argument 'missing_y' must be 'raise' or 'skip', got {self.missing_y!r}")
        if not (isinstance(self.C, numbers.Real) and self.C > 0):
            raise InputError(f"argument 'C' must be a positive number, got {self.C!r}")

    def _validate_X(self, X: Any, reset: bool) -> Any:
        if isinstance(X, pd.DataFrame) and (reset or getattr(self, "_frame_mode", False)):
            if len(X) == 0:
                raise InputError("argument 'X' is empty")
            if reset:
                self._frame_mode = True
                cols = list(X.columns) if self.covariates is None else list(self.covariates)
                self.feature_names_in_ = np.asarray([str(c) for c in cols], dtype=object)
                self.n_features_in_ = len(cols)
            return X
        if reset:
            self._frame_mode = False
        return validate_data(self, X, reset=reset, ensure_min_samples=1)

    def _seed(self) -> int | None:
        rs = self.random_state
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(0, 2**31 - 1))
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        return rs

    # -- API
    def fit(self, X: Any, y: Any) -> "CovariateClassifier":
        """Fit on a covariate frame (or numeric array) and the answers ``y``.

        Returns
        -------
        self
        """
        self._check_params()
        Xv = self._validate_X(X, reset=True)
        if y is None:
            raise InputError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        y_arr = np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; use a 1-D "
                          "y (one item)", _data_conversion_warning(), stacklevel=2)
            y_arr = y_arr.ravel()
        if y_arr.ndim != 1:
            raise InputError(f"argument 'y' must be one-dimensional (one item), got shape {y_arr.shape}")
        if len(y_arr) != (len(Xv) if not hasattr(Xv, "shape") else Xv.shape[0]):
            raise InputError(f"arguments 'X' and 'y' have different lengths "
                             f"({Xv.shape[0]} and {len(y_arr)})")
        if self.options is None and y_arr.dtype.kind not in "O":
            if y_arr.dtype.kind == "f" and not np.all(np.isfinite(y_arr[~np.isnan(y_arr)])):
                raise InputError("argument 'y' contains infinite values")
            if self.missing_y == "raise" and y_arr.dtype.kind == "f" and np.isnan(y_arr).any():
                raise InputError(f"argument 'y': Input y contains NaN "
                                 f"({int(np.isnan(y_arr).sum())} missing answers); remove them or "
                                 "pass missing_y='skip'")
            check_classification_targets(y_arr[~pd.isna(y_arr)] if y_arr.dtype.kind == "f" else y_arr)
        codes, classes, missing = check_labels(y_arr, self.options, name="y",
                                               allow_missing=self.missing_y == "skip")
        self.classes_ = classes
        self.n_missing_y_ = int(missing.sum())
        keep = ~missing
        if isinstance(Xv, pd.DataFrame):
            X_fit = Xv.loc[keep] if not keep.all() else Xv
            X_fit = X_fit.reset_index(drop=True) if not keep.all() else X_fit
        else:
            X_fit = Xv[keep]
        codes = codes[keep]
        seen = np.unique(codes)
        if len(seen) < 2:
            raise InputError(
                "argument 'y' has a single answer class; the classifier can't train when only one "
                "class is present: a pilot needs at least 2 distinct answers")
        self.unseen_options_ = [classes[k].item() if hasattr(classes[k], "item") else classes[k]
                                for k in range(len(classes)) if k not in set(seen.tolist())]
        self._seen = seen
        self._design = _Design(X_fit, self.covariates if self._frame_mode else None)
        Z = self._design.transform(X_fit)
        local = np.searchsorted(seen, codes)
        if self.kind == "ordinal":
            self.coef_, self.thresholds_, nit = fit_cumulative_logit(
                Z, local, len(seen), C=self.C, max_iter=self.max_iter, return_n_iter=True)
            self._model = None
            self.n_iter_ = np.array([nit])
        elif self.kind == "multinomial":
            from sklearn.linear_model import LogisticRegression
            self._model = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(Z, local)
            self.n_iter_ = np.atleast_1d(self._model.n_iter_)
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier
            self._model = HistGradientBoostingClassifier(
                max_iter=min(int(self.max_iter), 100), learning_rate=self.learning_rate,
                max_leaf_nodes=8, min_samples_leaf=max(1, min(20, len(local) // 20)),
                l2_regularization=1.0, early_stopping=False,
                random_state=self._seed()).fit(Z, local)
            self.n_iter_ = np.array([self._model.n_iter_])
        self.feature_names_out_ = self._design.feature_names()
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each option (columns in ``classes_`` order).

        Returns
        -------
        ndarray, shape (n, K)
        """
        check_is_fitted(self, "classes_")
        Xv = self._validate_X(X, reset=False)
        Z = self._design.transform(Xv)
        if self.kind == "ordinal":
            p_seen = cumulative_logit_proba(Z, self.coef_, self.thresholds_)
        else:
            p_seen = self._model.predict_proba(Z)
        out = np.zeros((Z.shape[0], len(self.classes_)))
        out[:, self._seen] = p_seen
        out /= out.sum(axis=1, keepdims=True)
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Most likely option per row."""
        check_is_fitted(self, "classes_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def expected_score(self, X: Any, scores: Sequence[float] | None = None) -> np.ndarray:
        """Expected answer score ``sum_k p_k * score_k`` (default scores: the options if numeric,
        else 1..K)."""
        proba = self.predict_proba(X)
        if scores is None:
            try:
                scores = np.asarray(self.classes_, dtype=float)
            except (TypeError, ValueError):
                scores = np.arange(1, len(self.classes_) + 1, dtype=float)
        return proba @ np.asarray(scores, float)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        # The proportional-odds model orders the classes along one linear index; scikit-learn's
        # accuracy check uses unordered blobs, which it cannot separate by construction.
        tags.classifier_tags.poor_score = self.kind == "ordinal"
        return tags


def _data_conversion_warning():
    from sklearn.exceptions import DataConversionWarning
    return DataConversionWarning
