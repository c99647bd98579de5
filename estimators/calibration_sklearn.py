"""A scikit-learn-style wrapper over calibration weighting: :class:`CalibrationWeighter`.

The class holds no math of its own: :meth:`CalibrationWeighter.fit` calls
:func:`rectify.weighting.calibrate` (which calls the numeric cores in
:mod:`rectify.estimators.calibration` and :mod:`rectify.estimators.survey_estimation`) and keeps
what it learned in attributes ending in ``_``.

Which scikit-learn conventions apply
------------------------------------
* ``__init__`` only stores the options (method, bounds, trim, auxiliaries, variance); ``get_params``,
  ``set_params`` and ``sklearn.base.clone`` work; ``fit`` returns ``self``; learned attributes end in
  ``_`` (``weights_``, ``g_``, ``diagnostics_``, ``margin_table_``, ``calibrated_``,
  ``n_features_in_``, ``feature_names_in_``); an unfitted weighter raises
  ``sklearn.exceptions.NotFittedError``.
* The data-dependent inputs go to ``fit``: the sample ``X`` (a pandas DataFrame: categorical
  auxiliaries keep their labels), and the population totals as ``population=`` (a frame, e.g. the
  LLM-simulated one), ``margins=`` or ``totals=``, plus ``design_weights=``.
* It is a transformer (``TransformerMixin``; tags: categorical and string input, no target, a
  DataFrame in and out). What does not apply: weights belong to the rows they were calibrated on,
  so ``transform`` only accepts the fitted sample (same length and index) and there is no
  ``predict`` or ``score``. ``sklearn.utils.estimator_checks.check_estimator`` feeds numeric
  arrays without population totals, which a weighter cannot calibrate to (it refuses, rather than
  returning the design weights as if calibrated): the checks that fit are expected failures with
  that reason in ``tests/test_calibration_sklearn.py``, and the tests check the conventions above
  directly.

Examples
--------
>>> import pandas as pd
>>> s = pd.DataFrame({"sex": ["f", "f", "m", "m", "m"], "y": [1.0, 2.0, 2.0, 3.0, 4.0]})
>>> cw = CalibrationWeighter().fit(s, margins={"sex": {"f": 50, "m": 50}})
>>> cw.weights_.round(3).tolist()
[25.0, 25.0, 16.667, 16.667, 16.667]
>>> float(round(cw.estimate("y").estimate[0], 4))
2.25
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from rectify.errors import ConfigError, InputError

__all__ = ["CalibrationWeighter"]

_ESTIMANDS = ("mean", "total", "shares", "quantile", "ols", "logit")


class CalibrationWeighter(TransformerMixin, BaseEstimator):
    """Calibrate a sample's design weights to population totals, scikit-learn style.

    Parameters
    ----------
    method : {"raking", "linear", "logit", "truncated", "poststratify"}, default "raking"
        Calibration function (see :func:`rectify.weighting.calibrate`).
    bounds : (lower, upper), optional
        Bounds on the g-weights (final / design weight), as R's ``calibrate(bounds=)``.
    trim : (lower, upper), optional
        Trim the g-weights after calibration, redistributing the excess.
    vars : list of str, optional
        Auxiliary columns (with ``population=`` in :meth:`fit`): categorical columns become
        margins, numeric columns totals.
    formula : str, optional
        A right-hand side such as ``"~ ideology + y_hat"`` whose model matrix is calibrated.
    variance : {"linearization", "jackknife", "bootstrap"}, default "linearization"
    small_sample : {None, "hc3", "hc2"}, optional
        Leverage-adjusted linearization with t intervals (``None``: R's ``survey``).
    n_replicates : int, default 200
        Bootstrap replicates.
    random_state : int or numpy Generator, optional
        Seed for the bootstrap.
    max_iter : int, default 1000
    tol : float, default 1e-12
        Convergence limit and tolerance; no convergence raises
        :class:`~rectify.errors.ConvergenceError`.

    Attributes
    ----------
    weights_ : ndarray of shape (n,)
        Final weights of the fitted sample.
    g_ : ndarray of shape (n,)
        g-weights (final / design weight).
    design_weights_ : ndarray of shape (n,)
    diagnostics_ : dict
        Kish design effect, effective sample size, weight and g ranges, iterations, worst margin
        error (see :class:`rectify.weighting.CalibratedWeights`).
    margin_table_ : DataFrame
        Target, achieved total and relative error of every auxiliary.
    calibrated_ : rectify.weighting.CalibratedWeights
        The underlying object (estimators with calibration-aware standard errors).
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"g": ["a", "a", "b"], "x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 1.0]})
    >>> w = CalibrationWeighter(method="linear").fit(s, margins={"g": {"a": 60, "b": 40}, "x": 190.0})
    >>> w.weights_.round(2).tolist()
    [50.0, 10.0, 40.0]
    >>> w.transform(s)["weight"].round(2).tolist()
    [50.0, 10.0, 40.0]
    """

    def __init__(self, method: str = "raking", bounds=None, trim=None, vars: Sequence[str] | None = None,
                 formula: str | None = None, variance: str = "linearization", small_sample: str | None = None,
                 n_replicates: int = 200, random_state=None, max_iter: int = 1000, tol: float = 1e-12):
        self.method = method
        self.bounds = bounds
        self.trim = trim
        self.vars = vars
        self.formula = formula
        self.variance = variance
        self.small_sample = small_sample
        self.n_replicates = n_replicates
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: pd.DataFrame, y=None, *, population: pd.DataFrame | None = None,
            margins: Mapping[str, Any] | None = None, totals: Mapping[str, float] | None = None,
            design_weights=None, strata: str | None = None, fpc: str | None = None,
            clusters: str | None = None) -> "CalibrationWeighter":
        """Calibrate the sample ``X`` to the population totals.

        Parameters
        ----------
        X : DataFrame
            The sample (pilot): auxiliaries and, for the estimators, outcomes.
        y : ignored
            Present for scikit-learn's API; outcomes are columns of ``X``.
        population, margins, totals, design_weights, strata, fpc, clusters
            As in :func:`rectify.weighting.calibrate`.

        Returns
        -------
        self
        """
        from rectify.weighting import calibrate

        if not isinstance(X, pd.DataFrame):
            raise InputError(f"argument 'X' must be a pandas DataFrame (the sample), got {type(X).__name__}; "
                             "calibration needs column names to match the population totals")
        if y is not None:
            raise ConfigError("argument 'y' is not used: outcomes are columns of 'X'; estimate them "
                              "with .estimate(column)")
        if population is not None and self.vars is None and self.formula is None:
            raise ConfigError("with 'population', set 'vars' (auxiliary columns) or 'formula' on the weighter")
        if population is None and self.vars is not None:
            raise ConfigError("the weighter's 'vars' name columns of a 'population' frame; with "
                              "'margins' the margins name the auxiliaries (set vars=None)")
        cw = calibrate(X, population, margins=margins, formula=self.formula, vars=self.vars,
                       totals=totals, method=self.method, bounds=self.bounds, trim=self.trim,
                       design_weights=design_weights, strata=strata, fpc=fpc, clusters=clusters,
                       variance=self.variance, n_replicates=self.n_replicates,
                       small_sample=self.small_sample, random_state=self.random_state,
                       max_iter=self.max_iter, tol=self.tol)
        self.calibrated_ = cw
        self.weights_ = cw.weights.to_numpy(copy=True)
        self.g_ = np.asarray(cw.g, float).copy()
        self.design_weights_ = np.asarray(cw.design_weights_, float).copy()
        self.diagnostics_ = dict(cw.diagnostics)
        self.margin_table_ = cw.margin_table()
        self.n_features_in_ = int(X.shape[1])
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self._index = X.index
        return self

    def _check_same_sample(self, X) -> None:
        check_is_fitted(self, "weights_")
        if not isinstance(X, pd.DataFrame):
            raise InputError(f"argument 'X' must be the fitted sample (a DataFrame), got {type(X).__name__}")
        if len(X) != len(self.weights_) or not X.index.equals(self._index):
            raise InputError(
                f"argument 'X' has {len(X)} rows (or a different index) but the weights were calibrated "
                f"on {len(self.weights_)} rows: calibration weights belong to the fitted sample; fit "
                "the weighter on this frame instead")

    def transform(self, X: pd.DataFrame, weight_col: str = "weight") -> pd.DataFrame:
        """The fitted sample with its calibrated weights in column ``weight_col``.

        Parameters
        ----------
        X : DataFrame
            The sample the weighter was fitted on (same rows and index).
        weight_col : str, default "weight"

        Returns
        -------
        DataFrame
            A copy of ``X`` with the weight column.
        """
        self._check_same_sample(X)
        if weight_col in X.columns:
            raise InputError(f"argument 'X' already has a column {weight_col!r}; pass another 'weight_col'")
        return X.assign(**{weight_col: self.weights_})

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """:meth:`fit` then :meth:`transform` on the same sample."""
        return self.fit(X, y, **fit_params).transform(X)

    def estimate(self, column: str, estimand: str = "mean", **kwargs):
        """A design-based estimate on the calibrated weights, as a :class:`rectify.result.Result`.

        Parameters
        ----------
        column : str
            Outcome column of the fitted sample (a formula ``"y ~ x"`` for ``ols``/``logit``).
        estimand : {"mean", "total", "shares", "quantile", "ols", "logit"}, default "mean"
        **kwargs
            Passed on: ``levels`` for shares, ``q`` for quantiles.

        Returns
        -------
        Result
        """
        check_is_fitted(self, "calibrated_")
        if estimand not in _ESTIMANDS:
            raise ConfigError(f"argument 'estimand' must be one of {_ESTIMANDS}, got {estimand!r}")
        return getattr(self.calibrated_, estimand)(column, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.requires_fit = True
        return tags

    def mean(self, column):
        """Calibrated mean(s) of numeric column(s) with design-based standard errors."""
        return self.estimate(column, "mean")

    def shares(self, column: str, levels=None, interval: str = "wald"):
        """Calibrated shares of the categories of ``column`` (``interval="xlogit"``: logit-scale
        intervals, as R's ``svyciprop(method="xlogit")``)."""
        return self.estimate(column, "shares", levels=levels, interval=interval)
