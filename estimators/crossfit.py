"""Cross-fitting and cross-prediction-powered inference (Zrnic & Candès, 2024).

Why one module of ~610 lines: fold assignment, cross-fitting of any estimator and the cross-
prediction PPI cores must agree on one fold layout of the pilot and the frame; kept together so that
layout has one definition.

A simulator trained on the pilot (a fine-tuned LLM, a covariate classifier) predicts its own
training rows too well: the pilot residuals ``Y - f(X)`` look small, and prediction-powered
inference (PPI) built on them under-covers. Cross-fitting repairs this:

1. split the pilot into ``K`` seeded folds; for each fold ``k`` train ``f_k`` on the other folds and
   predict the rows of fold ``k`` (out-of-fold predictions, honest for every pilot row);
2. predict the population with each ``f_k`` and average: ``fbar = mean_k f_k``;
3. cross-prediction-powered estimate of a mean (Zrnic & Candès 2024, PNAS 121(15)):

   ``theta = lam * mean_j fbar(X~_j) + mean_i (Y_i - lam * f_{k(i)}(X_i))``

   with variance ``lam^2 Var(fbar(X~)) / N + Var(Y - lam * f_{k(i)}(X)) / n`` -- the imputed
   term uses the variance of the *averaged* fold models over the population, the rectifier the
   variance of the out-of-fold residuals (the formula of the paper and of ``ppi_py``'s
   ``crossppi_mean_ci``; its central limit theorem assumes the fold models are stable, i.e. that
   they differ little from one another, which holds for any model trained on ``(K-1)/K`` of a
   pilot that is not tiny).

Option shares are the means of the option indicators, with the probability vectors as predictions
and the joint covariance of the vector.

``lam=1`` is plain cross-PPI; ``lam="tune"`` picks the variance-minimising
``lam = Cov(Y, f) / (Var(f) + (n/N) Var(fbar))`` (per option for shares), not clipped.

Intervals: ``interval="t"`` (default) uses variances with ``ddof=1`` and Student-t with ``n-1``
degrees of freedom (a small-pilot correction); ``interval="z"`` uses ``ddof=0`` and the normal
distribution, which reproduces ``ppi_py.crossppi_mean_ci`` exactly.

Estimand (:mod:`rectify.estimand`): ``estimand="frame"`` (default with ``interval="t"``) or
``"superpopulation"`` (default with ``interval="z"``, ppi_py's target); ``overlap="inside"`` when the
population is the frame the pilot was drawn from. Then give ``pilot_rows`` (the pilot's positions in
the frame): those rows' fold-averaged predictions come from models trained on them, so they are
replaced by the pilot's out-of-fold predictions -- the frame total is then the pilot's part plus the
rest's, and the variance carries ``1 - n/N`` (the formula above is the superpopulation, separate case).
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from rectify.errors import InputError
from rectify.estimand import core_target, tunes_with_frame_variance, variance_parts
from rectify.result import Result, check_level

__all__ = [
    "CrossFit",
    "make_folds",
    "cross_fit",
    "crossppi_mean",
    "crossppi_shares",
    "crossfit_ppi",
]


# ----------------------------------------------------------------------------- folds
def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def _strata(y: Any) -> np.ndarray | None:
    if y is None:
        return None
    arr = np.asarray(y, dtype=object)
    if arr.ndim != 1:
        return None
    keys = ["<missing>" if (v is None or (isinstance(v, float) and np.isnan(v))) else repr(v)
            for v in arr]
    _, codes = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    return codes


def make_folds(n: int, n_folds: int = 5, *, y: Any = None, random_state: Any = None) -> np.ndarray:
    """Seeded fold labels for ``n`` pilot rows, balanced over the answer classes of ``y``.

    Rows are shuffled, ordered by answer class (missing answers form their own class) and dealt to
    the folds in turn, so every fold gets about the same share of each answer, even for classes
    rarer than ``n_folds`` (which ``StratifiedKFold`` refuses).

    Parameters
    ----------
    n : int
        Number of pilot rows.
    n_folds : int, default 5
    y : array-like, shape (n,), optional
        Answers to balance over (1-D); ``None`` or a 2-D battery gives plain random folds.
    random_state : int, Generator or None

    Returns
    -------
    ndarray of int, shape (n,)
        Fold index ``0..n_folds-1`` of each row.

    Examples
    --------
    >>> f = make_folds(10, 5, y=[1, 1, 1, 1, 1, 2, 2, 2, 2, 2], random_state=0)
    >>> np.bincount(f).tolist()
    [2, 2, 2, 2, 2]
    """
    if not isinstance(n_folds, numbers.Integral) or n_folds < 2:
        raise InputError(f"argument 'n_folds' must be an integer >= 2, got {n_folds!r}")
    if n < n_folds:
        raise InputError(
            f"the pilot has {n} rows, fewer than n_folds={n_folds}; lower 'n_folds' or use a "
            "larger pilot")
    rng = _rng(random_state)
    perm = rng.permutation(n)
    strata = _strata(y)
    if strata is not None:
        if len(strata) != n:
            raise InputError(f"argument 'y' has {len(strata)} rows, expected {n}")
        perm = perm[np.argsort(strata[perm], kind="stable")]
    folds = np.empty(n, dtype=int)
    folds[perm] = np.arange(n) % n_folds
    return folds


# ----------------------------------------------------------------------------- fitting
def _take(X: Any, idx: np.ndarray) -> Any:
    if isinstance(X, (pd.DataFrame, pd.Series)):
        return X.iloc[idx]
    if isinstance(X, np.ndarray):
        return X[idx]
    if isinstance(X, (list, tuple)):
        return [X[i] for i in idx]
    return np.asarray(X)[idx]


def _n_rows(X: Any) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _as_list(pred: Any) -> tuple[list[np.ndarray], bool]:
    if isinstance(pred, (list, tuple)):
        return [np.asarray(p, dtype=float) for p in pred], True
    return [np.asarray(pred, dtype=float)], False


def _align(pred: np.ndarray, est_classes: Any, classes: Any) -> tuple[np.ndarray, int]:
    """Place a fold model's columns into the master option order (absent options get 0)."""
    if est_classes is None or classes is None or pred.ndim != 2:
        return pred, 0
    est_list, master = list(np.asarray(est_classes).tolist()), list(np.asarray(classes).tolist())
    if est_list == master:
        return pred, 0
    pos = []
    for c in est_list:
        if c not in master:
            raise InputError(f"a fold model predicts option {c!r}, not among the options {master}")
        pos.append(master.index(c))
    out = np.zeros((pred.shape[0], len(master)))
    out[:, pos] = pred
    return out, len(master) - len(est_list)


@dataclass(frozen=True, eq=False)
class CrossFit:
    """Out-of-fold predictions for the pilot and fold-averaged predictions for the population.

    Attributes
    ----------
    oof : ndarray or list of ndarray
        Out-of-fold predictions of the pilot rows, shape (n, K) for ``predict_proba`` (a list, one
        per item, when the estimator returns a list for a battery).
    population : ndarray or list, or None
        Average of the fold models' predictions on the population, shape (N, K).
    population_folds : ndarray or list, or None
        Each fold model's population predictions, shape (n_folds, N, K).
    folds : ndarray of int, shape (n,)
    estimators : list
        The fitted fold models (empty when ``keep_estimators=False``).
    classes : ndarray or None
        Column labels of the predictions (the estimator's ``classes_`` or ``options``).
    diagnostics : dict
    """

    oof: Any
    population: Any
    population_folds: Any
    folds: np.ndarray
    estimators: list
    classes: Any = None
    diagnostics: dict = field(default_factory=dict)


def _item_of(estimator: Any) -> Any:
    item = getattr(estimator, "item", None)
    return item if hasattr(item, "to_index") and hasattr(item, "options") else None


def _master_classes(estimator: Any, y: Any) -> Any:
    item = _item_of(estimator)
    if item is not None:
        return np.asarray(list(item.options))
    opts = getattr(estimator, "options", None)
    if opts is not None and not (isinstance(opts, (list, tuple)) and opts
                                 and isinstance(opts[0], (list, tuple))):
        return np.asarray(list(opts))
    arr = np.asarray(y)
    if arr.ndim == 1:
        ok = ~pd.isna(arr) if arr.dtype.kind in "fO" else np.ones(len(arr), bool)
        try:
            return np.unique(arr[ok])
        except TypeError:
            return None
    return None


def cross_fit(estimator: Any, X: Any, y: Any, *, X_population: Any = None, n_folds: int = 5,
              method: str = "predict_proba", random_state: Any = None, stratify: bool = True,
              keep_estimators: bool = True) -> CrossFit:
    """K-fold cross-fitting of any estimator with ``fit`` and ``predict_proba`` (or ``predict``).

    Parameters
    ----------
    estimator : object
        An unfitted estimator; cloned for each fold (``sklearn.base.clone``, or
        ``copy.deepcopy`` for objects that are not scikit-learn estimators).
    X : DataFrame, array or list
        Pilot inputs (frame rows, features or persona texts).
    y : array-like, shape (n,) or (n, n_items)
        Pilot answers.
    X_population : same type as X, optional
        Rows to predict with every fold model (the population / unlabelled frame).
    n_folds : int, default 5
    method : {"predict_proba", "predict"}
        Which prediction to collect.
    random_state : int, Generator or None
        Seeds the folds (and, when the estimator has a ``random_state`` parameter set to None,
        nothing else: seed the estimator yourself for a fully repeatable run).
    stratify : bool, default True
        Balance the folds over the answer classes (1-D ``y`` only).
    keep_estimators : bool, default True

    Returns
    -------
    CrossFit

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 2)); y = (X[:, 0] + rng.normal(size=60) > 0).astype(int)
    >>> cf = cross_fit(LogisticRegression(), X, y, X_population=rng.normal(size=(100, 2)),
    ...                n_folds=3, random_state=1)
    >>> cf.oof.shape, cf.population.shape, cf.population_folds.shape
    ((60, 2), (100, 2), (3, 100, 2))
    """
    if method not in ("predict_proba", "predict"):
        raise InputError(f"argument 'method' must be 'predict_proba' or 'predict', got {method!r}")
    if not hasattr(estimator, "fit") or not hasattr(estimator, method):
        raise InputError(f"argument 'estimator' needs 'fit' and '{method}' methods")
    n = _n_rows(X)
    if n != _n_rows(y):
        raise InputError(f"arguments 'X' and 'y' have different lengths ({n} and {_n_rows(y)})")
    if n == 0:
        raise InputError("argument 'X' (the pilot) is empty")
    y_arr = np.asarray(y, dtype=object) if not isinstance(y, (pd.DataFrame,)) else y.to_numpy()
    if y_arr.ndim == 1:
        vals = [v for v in y_arr if not (v is None or (isinstance(v, float) and np.isnan(v)))]
        if len({repr(v) for v in vals}) < 2 and method == "predict_proba":
            raise InputError("argument 'y' has a single answer class; cross-fitting a classifier "
                             "needs at least 2 distinct answers in the pilot")
    folds = make_folds(n, n_folds, y=y_arr if (stratify and y_arr.ndim == 1) else None,
                       random_state=random_state)
    classes = _master_classes(estimator, y) if method == "predict_proba" else None

    from sklearn.base import clone

    def _clone(est):
        try:
            return clone(est)
        except TypeError:
            import copy
            return copy.deepcopy(est)

    oof: list[np.ndarray] | None = None
    pops: list[list[np.ndarray]] = []
    fitted = []
    n_absent = 0
    is_list = False
    for k in range(n_folds):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k)
        model = _clone(estimator)
        model.fit(_take(X, train), _take(y, train))
        est_classes = getattr(model, "classes_", None)
        pred, is_list = _as_list(getattr(model, method)(_take(X, test)))
        if not is_list:
            pred[0], miss = _align(pred[0], est_classes, classes)
            n_absent += miss
        if oof is None:
            oof = [np.zeros((n,) + p.shape[1:]) for p in pred]
        for o, p in zip(oof, pred):
            o[test] = p
        if X_population is not None:
            pp, _ = _as_list(getattr(model, method)(X_population))
            if not is_list:
                pp[0], _ = _align(pp[0], est_classes, classes)
            pops.append(pp)
        if keep_estimators:
            fitted.append(model)
    if n_absent:
        warnings.warn(f"{n_absent} option(s) were absent from some fold's training answers; those "
                      "fold models give them probability 0", RuntimeWarning, stacklevel=2)
    pop_folds = None
    pop_mean = None
    if pops:
        pop_folds = [np.stack([p[j] for p in pops]) for j in range(len(pops[0]))]
        pop_mean = [pf.mean(axis=0) for pf in pop_folds]

    def _unwrap(v):
        if v is None:
            return None
        return v if is_list else v[0]

    return CrossFit(oof=_unwrap(oof), population=_unwrap(pop_mean),
                    population_folds=_unwrap(pop_folds), folds=folds, estimators=fitted,
                    classes=classes,
                    diagnostics={"n_folds": int(n_folds), "stratified": bool(stratify),
                                 "absent_options": int(n_absent)})


# ----------------------------------------------------------------------------- inference
def _check_finite(a: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(a)):
        raise InputError(f"argument '{name}' contains NaN or infinite values; remove them first")


def _pop_folds(yhat_population: Any, name: str, ndim_unit: int) -> np.ndarray:
    a = np.asarray(yhat_population, dtype=float)
    if a.ndim == ndim_unit:  # one model
        a = a[None]
    if a.ndim != ndim_unit + 1:
        raise InputError(f"argument '{name}' must have shape (n_folds, N{', K' if ndim_unit == 2 else ''}) "
                         f"or (N{', K' if ndim_unit == 2 else ''}), got {a.shape}")
    if a.shape[1] == 0:
        raise InputError(f"argument '{name}' has no population rows")
    _check_finite(a, name)
    return a


def _crossppi_core(Y: np.ndarray, F: np.ndarray, Fpop: np.ndarray, lam: Any, ddof: int,
                   one_lambda: bool = False, target=None):
    """Y, F: (n, d) labels/out-of-fold predictions; Fpop: (N, d) fold-averaged predictions.

    ``lam="tune"`` picks one lambda per column, or with ``one_lambda`` the single lambda that minimises
    the trace of the covariance (shares: one lambda keeps them summing to one).
    """
    n, N = Y.shape[0], Fpop.shape[0]
    d = Y.shape[1]
    if isinstance(lam, str):
        if lam != "tune":
            raise InputError(f"argument 'lam' must be a number or 'tune', got {lam!r}")
        vf = F.var(axis=0, ddof=ddof)
        vpop = Fpop.var(axis=0, ddof=ddof)
        cyf = ((Y - Y.mean(0)) * (F - F.mean(0))).sum(0) / (n - ddof)
        denom = vf + (n / N) * vpop if tunes_with_frame_variance(target) else vf
        if one_lambda:
            tot = float(denom.sum())
            lam_v = np.full(d, float(cyf.sum()) / tot if tot > 0 else 0.0)
        else:
            lam_v = np.where(denom > 0, cyf / np.where(denom > 0, denom, 1.0), 0.0)
    else:
        lam_v = np.broadcast_to(np.asarray(lam, dtype=float), (d,)).copy()
        if not np.all(np.isfinite(lam_v)):
            raise InputError(f"argument 'lam' must be finite, got {lam!r}")
    est = lam_v * Fpop.mean(0) + (Y - lam_v * F).mean(0)
    R = Y - lam_v * F
    cov_imp = np.atleast_2d(np.cov(Fpop, rowvar=False, ddof=ddof)) if N > ddof else np.zeros((d, d))
    cov_rect = np.atleast_2d(np.cov(R, rowvar=False, ddof=ddof))
    a, b, _ = variance_parts(cov_rect / n, np.outer(lam_v, lam_v) * cov_imp / N,
                             lambda: np.atleast_2d(np.cov(Y, rowvar=False, ddof=ddof)) / n, n, N, target)
    return est, a + b, lam_v


def _placed(estimand, overlap, interval, pilot_rows, oof, P):
    """The target, and the frame predictions with the pilot's rows replaced by their out-of-fold ones."""
    target = core_target(estimand, overlap if pilot_rows is None else "inside",
                         "ppi_py" if interval == "z" else "small-sample")
    if pilot_rows is None:
        return target, P
    rows = np.asarray(pilot_rows)
    if rows.ndim != 1 or rows.shape[0] != oof.shape[0] or rows.dtype.kind not in "iu":
        raise InputError(f"argument 'pilot_rows' must hold the {oof.shape[0]} pilot rows' integer positions in the "
                         f"population predictions")
    if rows.min(initial=0) < 0 or rows.max(initial=0) >= P.shape[1] or len(np.unique(rows)) != rows.shape[0]:
        raise InputError("argument 'pilot_rows' has positions outside the population or repeated ones")
    P = P.copy()
    P[:, rows] = oof
    return target, P


def _interval_args(interval: str, n: int) -> tuple[int, Any]:
    if interval == "t":
        return 1, n - 1
    if interval == "z":
        return 0, None
    raise InputError(f"argument 'interval' must be 't' or 'z', got {interval!r}")


def crossppi_mean(y: Any, yhat: Any, yhat_population: Any, *, lam: Any = 1.0, level: float = 0.95,
                  interval: str = "t", estimand: str | None = None, overlap: str = "separate",
                  pilot_rows: Any = None) -> Result:
    """Cross-prediction-powered estimate of a mean.

    Parameters
    ----------
    y : array-like, shape (n,)
        Pilot answers (scores).
    yhat : array-like, shape (n,)
        Out-of-fold predictions of the pilot rows (:func:`cross_fit`).
    yhat_population : array-like, shape (n_folds, N) or (N,)
        Each fold model's predictions on the population (they are averaged); a 1-D array is one
        model -- with in-sample ``yhat`` this is plain PPI, which under-covers when the model was
        trained on the pilot.
    lam : float or "tune", default 1.0
    level : float, default 0.95
    interval : {"t", "z"}
        ``"t"``: ddof=1 variances, Student-t with n-1 df; ``"z"``: ddof=0, normal (ppi_py).
    estimand, overlap, pilot_rows
        See the module notes (``pilot_rows`` implies ``overlap="inside"``).

    Returns
    -------
    Result
        ``method="crossppi"`` (``"crossppi++"`` with ``lam="tune"``), ``estimand="mean"``.

    Examples
    --------
    >>> y = np.array([1.0, 2.0, 3.0, 4.0]); yhat = np.array([1.5, 2.0, 2.5, 3.5])
    >>> pop = np.array([[2.0, 3.0, 2.5], [2.2, 2.8, 2.4]])
    >>> r = crossppi_mean(y, yhat, pop)
    >>> round(float(r.estimate[0]), 4)
    2.6083
    """
    level = check_level(level)
    Y = np.asarray(y, dtype=float)
    F = np.asarray(yhat, dtype=float)
    if Y.ndim != 1 or F.shape != Y.shape:
        raise InputError(f"arguments 'y' and 'yhat' must be 1-D of equal length, got {Y.shape} "
                         f"and {F.shape}")
    if Y.size < 2:
        raise InputError("argument 'y' needs at least 2 pilot rows")
    _check_finite(Y, "y")
    _check_finite(F, "yhat")
    P = _pop_folds(yhat_population, "yhat_population", 1)
    ddof, df = _interval_args(interval, Y.size)
    target, P = _placed(estimand, overlap, interval, pilot_rows, F, P)
    est, cov, lam_v = _crossppi_core(Y[:, None], F[:, None], P.mean(0)[:, None], lam, ddof, target=target)
    tuned = isinstance(lam, str)
    return Result(estimate=est, cov=cov, terms=["mean"], target=target.estimand, pilot_in_frame=target.inside,
                  method="crossppi++" if tuned else "crossppi", estimand="mean",
                  n_pilot=int(Y.size), n_population=int(P.shape[1]), level=level,
                  df=None if df is None else [df],
                  tuning={"lambda": float(lam_v[0]), "n_folds": int(P.shape[0])},
                  diagnostics={"interval": interval,
                               "fold_spread_sd": float(P.mean(1).std()) if P.shape[0] > 1 else 0.0})


def crossppi_shares(y: Any, proba: Any, proba_population: Any, *, options: Sequence | None = None,
                    lam: Any = 1.0, level: float = 0.95, interval: str = "t", estimand: str | None = None,
                    overlap: str = "separate", pilot_rows: Any = None) -> Result:
    """Cross-prediction-powered option shares, with their joint covariance.

    Parameters
    ----------
    y : array-like, shape (n,)
        Pilot answers (option labels).
    proba : array-like, shape (n, K)
        Out-of-fold option probabilities of the pilot rows, columns in ``options`` order.
    proba_population : array-like, shape (n_folds, N, K) or (N, K)
    options : sequence, optional
        The options in column order (default: sorted distinct answers, which must then number K).
    lam, level, interval : as in :func:`crossppi_mean` (``lam="tune"``: one lambda for all options,
        the one that minimises the summed variance, so that the shares still sum to one).
    estimand, overlap, pilot_rows : as in :func:`crossppi_mean`.

    Returns
    -------
    Result
        ``estimand="shares"``, one term per option, bounded to [0, 1].

    Examples
    --------
    >>> y = [1, 2, 2, 1]
    >>> p = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]])
    >>> pop = np.array([[0.5, 0.5], [0.3, 0.7], [0.6, 0.4]])
    >>> r = crossppi_shares(y, p, pop, options=[1, 2])
    >>> [round(float(v), 4) for v in r.estimate]
    [0.4917, 0.5083]
    """
    from rectify.llm.baseline import check_labels

    level = check_level(level)
    F = np.asarray(proba, dtype=float)
    if F.ndim != 2:
        raise InputError(f"argument 'proba' must have shape (n, K), got {F.shape}")
    _check_finite(F, "proba")
    codes, classes, _ = check_labels(np.asarray(y), options, name="y")
    K = len(classes)
    if F.shape != (codes.size, K):
        raise InputError(f"argument 'proba' must have shape ({codes.size}, {K}) for {K} options, "
                         f"got {F.shape}")
    if codes.size < 2:
        raise InputError("argument 'y' needs at least 2 pilot rows")
    P = _pop_folds(proba_population, "proba_population", 2)
    if P.shape[2] != K:
        raise InputError(f"argument 'proba_population' has {P.shape[2]} columns, expected {K}")
    Y = np.eye(K)[codes]
    ddof, df = _interval_args(interval, codes.size)
    target, P = _placed(estimand, overlap, interval, pilot_rows, F, P)
    est, cov, lam_v = _crossppi_core(Y, F, P.mean(0), lam, ddof, one_lambda=True, target=target)
    tuned = isinstance(lam, str)
    return Result(estimate=est, cov=cov, terms=[str(c) for c in classes.tolist()], target=target.estimand,
                  pilot_in_frame=target.inside,
                  method="crossppi++" if tuned else "crossppi", estimand="shares",
                  n_pilot=int(codes.size), n_population=int(P.shape[1]), level=level,
                  df=None if df is None else [df] * K,
                  tuning={"lambda": float(lam_v[0]), "n_folds": int(P.shape[0])},
                  diagnostics={"interval": interval}, bounds=(0.0, 1.0))


def crossfit_ppi(estimator: Any, X: Any, y: Any, X_population: Any, *, estimand: str = "mean",
                 scores: Sequence[float] | None = None, n_folds: int = 5, lam: Any = 1.0,
                 level: float = 0.95, interval: str = "t", random_state: Any = None, target: str | None = None,
                 pilot_rows: Any = None) -> Result:
    """Cross-fit a simulator on the pilot and return cross-PPI for the mean or option shares.

    Parameters
    ----------
    estimator : object with fit / predict_proba
        E.g. :class:`rectify.llm.CovariateClassifier` or :class:`rectify.llm.LoRAClassifier`.
    X, y : pilot inputs and answers (one item)
    X_population : population inputs
    estimand : {"mean", "shares"}
    scores : sequence of float, optional
        Numeric score of each option for the mean (default: the options if numeric).
    n_folds, lam, level, interval, random_state : see :func:`cross_fit` and
        :func:`crossppi_mean`.
    target : {None, "frame", "superpopulation"}
        The estimand in the sense of :mod:`rectify.estimand` (named ``target`` here because
        ``estimand`` picks the mean or the shares); passed as ``estimand=`` to the cross-PPI core.
    pilot_rows : array of int, optional
        The pilot's positions in ``X_population`` when the pilot is inside that frame.

    Returns
    -------
    Result
        With ``diagnostics["crossfit"]`` holding the :class:`CrossFit`.

    Examples
    --------
    >>> import pandas as pd
    >>> from rectify.llm.baseline import CovariateClassifier
    >>> rng = np.random.default_rng(0)
    >>> frame = pd.DataFrame({"x": rng.normal(size=300)})
    >>> y = np.digitize(frame.x + rng.logistic(size=300), [-1, 0, 1]) + 1
    >>> r = crossfit_ppi(CovariateClassifier(kind="ordinal"), frame.iloc[:100], y[:100],
    ...                  frame.iloc[100:], n_folds=5, random_state=0)
    >>> r.method, r.n_pilot, r.n_population
    ('crossppi', 100, 200)
    """
    if estimand not in ("mean", "shares"):
        raise InputError(f"argument 'estimand' must be 'mean' or 'shares', got {estimand!r}")
    cf = cross_fit(estimator, X, y, X_population=X_population, n_folds=n_folds,
                   random_state=random_state)
    if isinstance(cf.oof, list):
        raise InputError("crossfit_ppi handles one item; the estimator returned a battery -- "
                         "call cross_fit and crossppi_* per item")
    classes = cf.classes
    if classes is None:
        raise InputError("cannot tell the option order of the predictions; give the estimator "
                         "'options'")
    item = _item_of(estimator)
    if item is not None:
        codes = item.to_index(list(np.asarray(y, dtype=object)))
        if np.any(codes < 0):
            raise InputError(f"argument 'y' has {int(np.sum(codes < 0))} missing answers; cross-PPI "
                             "needs answered pilot rows: pass only those (the fold models may "
                             "still be trained with missing answers via cross_fit)")
        if scores is None:
            scores = item.score_values
    else:
        from rectify.llm.baseline import check_labels

        codes, _, _ = check_labels(np.asarray(y), list(classes), name="y")
    if estimand == "shares":
        res = crossppi_shares(codes, cf.oof, cf.population_folds, options=list(range(len(classes))),
                              lam=lam, level=level, interval=interval, estimand=target, pilot_rows=pilot_rows)
        res = replace(res, terms=[str(c) for c in np.asarray(classes).tolist()])
    else:
        if scores is None:
            try:
                scores = np.asarray(classes, dtype=float)
            except (TypeError, ValueError):
                raise InputError("the options are not numeric; pass 'scores' for the mean") from None
        s = np.asarray(scores, dtype=float)
        if s.shape != (len(classes),):
            raise InputError(f"argument 'scores' needs {len(classes)} values, got {s.shape}")
        res = crossppi_mean(s[codes], cf.oof @ s, cf.population_folds @ s, lam=lam, level=level,
                            interval=interval, estimand=target, pilot_rows=pilot_rows)
    diag = dict(res.diagnostics)
    diag["crossfit"] = cf
    return replace(res, diagnostics=diag)
