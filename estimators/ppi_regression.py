"""PPI estimators of regression coefficients: OLS, logistic and ordinal (cumulative-logit) regression;
see :mod:`rectify.estimators.ppi` for the estimators, their variance and conventions."""

from __future__ import annotations

from functools import partial

import numpy as np

from rectify import estimand as E
from rectify.errors import InputError
from rectify.result import Result

from . import _validate as V
from .models import (ColumnDesign, NonFiniteData, _logistic_pass, _solve, block_gram, block_matvec, block_outer,
                     block_tvec, fit_logistic, fit_ols, fit_ordinal, one_blas_thread, row_blocks)
from .ppi_base import (warn_small_effective_n, _check_common, _difference_estimator, _float_array, _frame_size, _lambda_tuning, _target_fields,
                       _weights_df)
from .ppi_categorical import _as_shares_matrix

__all__ = ["ppi_ols", "ppi_logistic", "ppi_ordinal"]


# ----------------------------------------------------------------------------- regressions
def _prepare_regression(X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, terms, label_dim=1):
    need_pilot = method != "naive"
    need_pop = method != "classical"
    Xa = V.as_float_array(X, "X", 2) if need_pilot else None
    # a ColumnDesign (from the formula verbs' fast path) is checked for NaN/inf by the population pass
    Xp = (X_pop if isinstance(X_pop, ColumnDesign) else _float_array(X_pop, "X_pop", 2)) if need_pop else None
    p = (Xa if Xa is not None else Xp).shape[1]
    if Xa is not None and Xp is not None and Xp.shape[1] != p:
        raise InputError(f"'X' has {p} columns but 'X_pop' has {Xp.shape[1]}; build both from the same formula")
    terms = list(terms) if terms is not None else [f"x{j}" for j in range(p)]
    if len(terms) != p:
        raise InputError(f"{len(terms)} term names for {p} columns")
    Y = F = Fp = None
    if need_pilot:
        V.check_nonempty(Xa, "X", "pilot")
        Y = V.as_float_array(y, "y", label_dim)
        V.check_same_length(Xa.shape[0], Y, "y", "X")
        V.check_design(Xa, "X", terms)
        if method in ("ppi", "ppi++"):
            F = V.as_float_array(yhat, "yhat", label_dim)
            V.check_same_length(Xa.shape[0], F, "yhat", "X")
    if need_pop:
        V.check_nonempty(Xp, "X_pop", "population")
        # (ordinal labels, label_dim 2, come from _as_shares_matrix, which checked them: no second pass)
        Fp = yhat_pop if (label_dim == 2 and yhat_pop is not None) else _float_array(yhat_pop, "yhat_pop", label_dim)
        V.check_same_length(Xp.shape[0], Fp, "yhat_pop", "X_pop")
        if method == "naive":
            V.check_design(np.asarray(Xp), "X_pop", terms)
    n = 0 if Xa is None else Xa.shape[0]
    N = 0 if Xp is None else Xp.shape[0]
    w = V.normalise_weights(weights, n, "weights") if need_pilot else None
    warn_small_effective_n(w)
    # unweighted population: None, so that the population passes skip the multiplies by ones
    wp = V.normalise_weights(weights_pop, N, "weights_pop") if (need_pop and weights_pop is not None) else None
    return Xa, Y, F, Xp, Fp, w, wp, n, N, p, terms


def _fit_in(fitter, X, z, w, where):
    from rectify.errors import ConvergenceError, EstimationError
    try:
        return fitter(X, z, w)
    except (EstimationError, ConvergenceError) as err:
        hint = ""
        if "prediction" in where:
            hint = " (hard predicted answers often miss categories: pass the LLM's answer probabilities instead)"
        raise type(err)(f"fitting {where}: {err}{hint}") from None


def _pop_fit(fitter, Xp, Fp, wp):
    try:
        return _fit_in(fitter, Xp, Fp, wp, "the LLM's predictions for the population")
    except NonFiniteData:
        if isinstance(Xp, ColumnDesign):
            raise  # the formula verbs re-run their checked path, which names the column
        V.as_float_array(Xp, "X_pop", 2)
        raise InputError("the population design or predictions overflow to infinity in the sums; rescale the "
                         "covariates (e.g. thousands instead of units)") from None


def _regression(fitter, X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, lam, lambda_mode,
                lambda_bounds, level, convention, terms, kind, label_dim=1, check_labels=None,
                ppi_py_fn=None, extra_terms=None, estimand=None, overlap="separate", frame_size=None):
    lambda_bounds = _check_common(method, convention, level, lambda_mode, lambda_bounds)
    target = E.core_target(estimand, overlap, convention)
    Xa, Y, F, Xp, Fp, w, wp, n, N, p, terms = _prepare_regression(
        X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, terms, label_dim)
    frame_size = _frame_size(frame_size, N, method, target)
    if check_labels is not None:
        Y, F, Fp = check_labels(Y, F, Fp)
    n_par = p + (0 if extra_terms is None else len(extra_terms(Y if Y is not None else Fp)))
    if convention == "ppi_py" and ppi_py_fn is not None and method in ("ppi", "ppi++"):
        est, cov, lam_vec = ppi_py_fn(Xa, Y, F, Xp, Fp, w, wp, method, lam)
        df = None
        diag = {}
    else:
        fit_y = _fit_in(fitter, Xa, Y, w, "the pilot's human answers") if method != "naive" else None
        fit_f = _fit_in(fitter, Xa, F, w, "the LLM's predictions for the pilot") if method in ("ppi", "ppi++") else None
        pop_fitter = partial(fitter, keep_psi=False)
        if fit_f is not None and getattr(fitter, "func", fitter) in (fit_logistic, fit_ordinal):
            # Newton from the pilot-prediction fit: fewer passes over the frame, the same optimum
            pop_fitter = partial(pop_fitter, start=fit_f.theta)
        fit_pop = _pop_fit(pop_fitter, Xp, Fp, wp) if method != "classical" else None
        est, cov, df, lam_vec = _difference_estimator(fit_y, fit_f, fit_pop, method, lam, lambda_mode,
                                                      lambda_bounds, n, N, n_par, convention, target, frame_size,
                                                      _weights_df(w))
        diag = {"iterations": {k: f.iterations for k, f in (("pilot", fit_y), ("pilot_pred", fit_f),
                                                             ("population", fit_pop)) if f is not None}}
    names = terms + ([] if extra_terms is None else extra_terms(Y if Y is not None else Fp))
    tuning = {} if lam_vec is None else _lambda_tuning(lam_vec, lambda_mode, method)
    return Result(est, cov, names, method, kind, n, frame_size, level=level, df=df, tuning=tuning, diagnostics=diag,
                  **_target_fields(target, frame_size, method))


class _PopScores:
    """Population sums of ppi_py's gradient rows ``x w (m(x'theta) - f)``: their sum, raw second moment
    and count, plus the population part of the Hessian. Replaces the (N, p) arrays ppi_py builds."""

    def __init__(self, su, Suu, N, Hp):
        self.su, self.Suu, self.N, self.Hp = su, Suu, N, Hp

    def cov(self, scale: float = 1.0) -> np.ndarray:
        """``np.cov`` of the rows (ddof = 1), times ``scale**2``."""
        m = self.su / self.N
        return scale**2 * (self.Suu - self.N * np.outer(m, m)) / (self.N - 1)


def _pop_scores(theta, Xp, Fp, wp, kind, G=None) -> _PopScores:
    """One blocked pass over the population at ``theta`` (``G``: the OLS population Hessian sum)."""
    N, p = Xp.shape
    with one_blas_thread():
        if kind == "logistic":
            su, Hp, Suu, _ = _logistic_pass(Xp, Fp, wp, theta, meat=True)
            return _PopScores(su, Suu, N, Hp)
        su, Suu = np.zeros(p), np.zeros((p, p))
        for i, j, Xb in row_blocks(Xp):
            r = block_matvec(Xb, theta) - Fp[i:j]
            if wp is not None:
                r *= wp[i:j]
            su += block_tvec(Xb, r)
            Suu += block_outer(Xb, r)
    return _PopScores(su, Suu, N, G)


def _ppi_py_glm_stats(theta, X, Y, F, Xp, Fp, w, wp, kind, use_unlabeled=True, G=None, pop=None):
    """Gradients and pooled inverse Hessian as ppi_py 0.2.3 computes them (the population as sums;
    ``pop``: its sums at ``theta`` when a solve already has them)."""
    n, N = X.shape[0], Xp.shape[0]
    if kind == "ols":
        m = X @ theta
        h = np.ones(n)
    else:
        m = 1 / (1 + np.exp(-(X @ theta)))
        h = m * (1 - m)
    pop = _pop_scores(theta, Xp, Fp, wp, kind, G) if pop is None else pop
    Hl = (X * (w * h)[:, None]).T @ X
    # ppi_py drops the population from the Hessian when lambda == 0
    H = (pop.Hp + Hl) / (N + n) if use_unlabeled else Hl / n
    g = X * (w * (m - Y))[:, None]
    gh = X * (w * (m - F))[:, None]
    return g, gh, pop, np.linalg.inv(H)


def _ppi_py_lambda(g, gh, pop: _PopScores, Hinv):
    n, N = g.shape[0], pop.N
    gc, hc = g - g.mean(0), gh - gh.mean(0)
    cov = (gc.T @ hc + hc.T @ gc) / n
    # np.cov of the stacked pilot and population rows, from the population's sums
    mean = (gh.sum(0) + pop.su) / (n + N)
    var = (gh.T @ gh + pop.Suu - (n + N) * np.outer(mean, mean)) / (n + N - 1)
    num = np.trace(Hinv @ cov @ Hinv)
    den = 2 * (1 + n / N) * np.trace(Hinv @ var @ Hinv)
    return float(np.clip(num / den, 0, 1))


def _ppi_py_cov(g, gh, pop: _PopScores, Hinv, lam):
    n, N = g.shape[0], pop.N
    var_u = pop.cov(lam)
    var = np.atleast_2d(np.cov((g - lam * gh).T))
    return Hinv @ (n / N * var_u + var) @ Hinv / n


def _ppi_py_ols(X, Y, F, Xp, Fp, w, wp, method, lam):
    N = Xp.shape[0]
    with one_blas_thread():  # the population fit is linear in lambda: one gram, then any lambda
        G, b = np.zeros((X.shape[1],) * 2), np.zeros(X.shape[1])
        for i, j, Xb in row_blocks(Xp):
            G += block_gram(Xb, None if wp is None else wp[i:j])
            b += block_tvec(Xb, Fp[i:j] if wp is None else wp[i:j] * Fp[i:j])
    theta_pop = _solve(G / N, b / N, "least-squares")

    def point(lv):
        return lv * theta_pop + fit_ols(X, Y - lv * F, w).theta
    lv = 1.0 if method == "ppi" else lam
    if lv is None:
        # ppi_py's ppi_ols_ci tunes twice: lambda at the lambda = 1 fit, then again at that tuned fit
        for _ in range(2):
            g, gh, pop, Hinv = _ppi_py_glm_stats(point(1.0 if lv is None else lv), X, Y, F, Xp, Fp, w, wp, "ols",
                                                 G=G)
            lv = _ppi_py_lambda(g, gh, pop, Hinv)
    est = point(lv)
    g, gh, pop, Hinv = _ppi_py_glm_stats(est, X, Y, F, Xp, Fp, w, wp, "ols", use_unlabeled=lv != 0, G=G)
    return est, _ppi_py_cov(g, gh, pop, Hinv, lv), np.full(X.shape[1], lv)


# the joint solve over the frame ends at the pass whose own Newton step is below this (the pass then also
# sums the population's scores): the step is applied and the population sums are moved with it to first
# order (see models._FINISH)
_JOINT_FINISH = 1e-9


def _joint_logistic(X, Y, F, Xp, Fp, w, wp, lv, start, sub=None, tol=1e-13):
    """Minimiser of ppi_py's joint PPI loss for logistic regression (Newton's method), and the population's
    sums (:class:`_PopScores`) at the minimiser (or None: the caller sums them).

    Each iteration makes one blocked pass over the population (``lv != 0``). With ``sub`` (a subsample of
    the population's rows ``(X, f, w)``) the solve starts from the same loss on the subsample, within its
    sampling error of the minimiser; close to the minimiser a pass keeps the last population Hessian (a
    chord step) and the pass expected to be the last also sums the scores' second moment."""
    from scipy.special import expit

    from .models import _LogisticSub

    n, N = X.shape[0], Xp.shape[0]
    theta = start.copy()
    derivs = None
    if lv != 0 and sub is not None:
        theta = _joint_logistic(X, Y, F, sub[0], sub[1], w, sub[2], lv, theta, tol=1e-6)[0]
        derivs = _LogisticSub(*sub)
    # without the subsample's derivatives the sums are not moved: the last pass must then be at the minimiser
    finish = _JOINT_FINISH if derivs is not None else tol
    Hp = pop = None
    prev = None
    for _ in range(100):
        mu = expit(X @ theta)
        grad = X.T @ (w * (mu - Y)) / n - lv / n * X.T @ (w * (mu - F))
        H = (1 - lv) / n * (X * (w * mu * (1 - mu))[:, None]).T @ X
        near = False
        if lv != 0:  # one blocked pass over the population for its gradient and Hessian
            # Newton: the next step is about prev^3 / prevprev^2
            nxt = prev[0] ** 3 / prev[1] ** 2 if (prev is not None and np.isfinite(prev[1])) else np.inf
            near = nxt < finish
            chord = Hp is not None and prev is not None and prev[0] < 1e-4 and not near
            with one_blas_thread():
                gp, Hp_new, Suu, _ = _logistic_pass(Xp, Fp, wp, theta, meat=near, hessian=not chord)
            Hp = Hp if chord else Hp_new
            grad = lv / N * gp + grad
            H = lv / N * Hp + H
        step = np.linalg.solve(H, grad)
        size = float(np.max(np.abs(step)))
        if near and size < finish:
            # the population's sums at theta - step: the score sum by its Hessian, the others from the
            # subsample's derivatives (a move of order 1e-9, needed to a few digits)
            dH, dS = derivs.moved(theta, -step, N) if derivs is not None else (0.0, 0.0)
            pop = _PopScores(gp - Hp @ step, Suu + dS, N, Hp + dH)
            return theta - step, pop
        theta = theta - step
        prev = (size, prev[0] if prev is not None else np.inf)
        if size < tol:
            break
    return theta, None


def _ppi_py_logistic(X, Y, F, Xp, Fp, w, wp, method, lam):
    from .models import _spread_rows, _take_rows

    start = fit_logistic(X, Y, w).theta
    sub = None
    if Xp.shape[0] >= 4 * 65536:  # solves start from the same loss on a subsample of the population
        idx = _spread_rows(Xp.shape[0], 65536)
        sub = (_take_rows(Xp, idx), np.ascontiguousarray(Fp[idx]), None if wp is None else wp[idx])
    lv = 1.0 if method == "ppi" else lam
    if lv is None:
        # as ppi_py's ppi_logistic_ci: tune at the lambda = 1 fit, refit, tune again at the refit
        for _ in range(2):
            # each refit starts where the last one ended: the same minimiser in fewer population passes
            start, pop = _joint_logistic(X, Y, F, Xp, Fp, w, wp, 1.0 if lv is None else lv, start, sub)
            g, gh, pop, Hinv = _ppi_py_glm_stats(start, X, Y, F, Xp, Fp, w, wp, "logistic", pop=pop)
            lv = _ppi_py_lambda(g, gh, pop, Hinv)
    est, pop = _joint_logistic(X, Y, F, Xp, Fp, w, wp, lv, start, sub)
    g, gh, pop, Hinv = _ppi_py_glm_stats(est, X, Y, F, Xp, Fp, w, wp, "logistic", use_unlabeled=lv != 0, pop=pop)
    return est, _ppi_py_cov(g, gh, pop, Hinv, lv), np.full(X.shape[1], lv)


def ppi_ols(X=None, y=None, yhat=None, X_pop=None, yhat_pop=None, method: str = "ppi++", *, weights=None,
            weights_pop=None, lam=None, lambda_mode: str = "overall", lambda_bounds=None, level: float = 0.95,
            convention: str = "small-sample", terms=None, estimand: str | None = None, overlap: str = "separate",
            frame_size: int | None = None) -> Result:
    """Linear-regression coefficients of the human answer on covariates, corrected with LLM predictions.

    ``theta = b_y - lam (b_f - b_f~)`` where ``b`` are (weighted) least-squares fits of the human answers
    and of the predictions on the pilot and of the predictions on the population. The covariance is
    the sandwich of that estimator with the pilot's influence rows divided by ``1 - h_ii`` (HC3: the
    classical interval is statsmodels' ``cov_type="HC3"`` interval), falling back to HC1
    (``n / (n - p)``) when a pilot row has leverage >= 0.99; ``convention="ppi_py"`` uses ppi_py's
    ddof-0 variances. Intervals use Student's t (see :mod:`rectify.estimators.ppi`). ``estimand``,
    ``overlap`` and ``frame_size`` as in :func:`rectify.estimators.ppi.ppi_mean` (``"frame"``: the
    frame's census coefficients).

    Parameters
    ----------
    X : array-like, shape (n, p)
        Pilot design matrix (include the intercept column yourself, or use :func:`rectify.ols`).
    y, yhat : array-like, shape (n,)
    X_pop : array-like, shape (N, p)
    yhat_pop : array-like, shape (N,)
    method, weights, weights_pop, lam, lambda_mode, lambda_bounds, level, convention
        As in :func:`ppi_mean`.
    terms : list of str, optional
        Coefficient names.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Xp = np.column_stack([np.ones(2000), rng.normal(size=2000)])
    >>> X = Xp[:100]; y = X @ [1.0, 2.0] + rng.normal(size=100)
    >>> f = X @ [0.8, 1.5] + 0.1 * rng.normal(size=100); fp = Xp @ [0.8, 1.5]
    >>> r = ppi_ols(X, y, f, Xp, fp, terms=["Intercept", "x"])
    >>> bool(abs(r.estimate[1] - 2.0) < 0.2)
    True
    """
    return _regression(fit_ols, X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, lam, lambda_mode,
                       lambda_bounds, level, convention, terms, "ols", ppi_py_fn=_ppi_py_ols, estimand=estimand,
                       overlap=overlap, frame_size=frame_size)


def _check_binary(Y, F, Fp):
    if Y is not None and not np.all((Y == 0) | (Y == 1)):
        bad = np.unique(Y[(Y != 0) & (Y != 1)])[:5]
        raise InputError(
            f"logistic regression needs a binary outcome coded 0/1; 'y' contains {bad.tolist()}. "
            f"Recode it (e.g. agree = 1) or use ordinal()"
        )
    for a, nm in ((F, "yhat"), (Fp, "yhat_pop")):
        if a is not None and a.size and (a.min() < 0 or a.max() > 1):  # (two reductions, no temporaries)
            raise InputError(f"'{nm}' must be probabilities or 0/1 predictions in [0, 1]")
    return Y, F, Fp


def ppi_logistic(X=None, y=None, yhat=None, X_pop=None, yhat_pop=None, method: str = "ppi++", *, weights=None,
                 weights_pop=None, lam=None, lambda_mode: str = "overall", lambda_bounds=None,
                 level: float = 0.95, convention: str = "small-sample", terms=None, ridge: float = 0.0,
                 estimand: str | None = None, overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Logistic-regression coefficients of a binary human answer, corrected with LLM predictions.

    Predictions may be probabilities (soft labels). Default estimator: the one-step PPI++ form
    ``b_y - lam (b_f - b_f~)`` of three Newton fits (see module notes); ``convention="ppi_py"``
    computes ppi_py's joint-loss estimate instead. ``ridge`` (default 0: maximum likelihood) adds an
    L2 penalty ``ridge / 2 * ||beta||^2`` (intercept excluded) to each fit; the estimand is then the
    penalised one. Default variance: HC3, as :func:`ppi_ols` (the pilot's influence rows divided by
    ``1 - h_ii`` with the weighted-logistic hat matrix; HC1 when a leverage reaches 0.99).
    ``estimand``, ``overlap`` and ``frame_size`` as in :func:`rectify.estimators.ppi.ppi_mean`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Xp = np.column_stack([np.ones(3000), rng.normal(size=3000)])
    >>> pp = 1 / (1 + np.exp(-(Xp @ [-0.5, 1.0])))
    >>> yp = (rng.uniform(size=3000) < pp).astype(float)
    >>> r = ppi_logistic(Xp[:200], yp[:200], pp[:200], Xp, pp, terms=["Intercept", "x"])
    >>> r.terms
    ('Intercept', 'x')
    """
    if ridge < 0 or not np.isfinite(ridge):
        raise InputError(f"argument 'ridge' must be a finite number >= 0, got {ridge!r}")
    if ridge and convention == "ppi_py":
        raise InputError("argument 'ridge' is not available under convention='ppi_py'")
    fitter = fit_logistic if not ridge else partial(fit_logistic, ridge=ridge)
    return _regression(fitter, X, y, yhat, X_pop, yhat_pop, method, weights, weights_pop, lam,
                       lambda_mode, lambda_bounds, level, convention, terms, "logistic",
                       check_labels=_check_binary, ppi_py_fn=_ppi_py_logistic, estimand=estimand, overlap=overlap,
                       frame_size=frame_size)


def ppi_ordinal(X=None, y=None, yhat=None, X_pop=None, yhat_pop=None, method: str = "ppi++", *,
                categories=None, weights=None, weights_pop=None, lam=None, lambda_mode: str = "overall",
                lambda_bounds=None, level: float = 0.95, convention: str = "small-sample", terms=None,
                estimand: str | None = None, overlap: str = "separate", frame_size: int | None = None) -> Result:
    """Cumulative-logit (proportional-odds) coefficients and thresholds, corrected with LLM predictions.

    ``P(y <= k | x) = logistic(tau_k - x'beta)``. ``X`` has no intercept. Human answers ``y`` are
    labels among ``categories``; predictions are labels or (n, K) answer distributions, which enter as
    soft labels (expected log-likelihood). Classical point estimates equal statsmodels' ``OrderedModel``
    (``distr="logit"``). Standard errors are the sandwich with HC1 scaling, not OrderedModel's default
    inverse-Hessian (``cov_type="nonrobust"``): for the coefficients, rectify's classical SE equals
    ``OrderedModel(...).fit(cov_type="HC0").bse * sqrt(n / (n - p))`` (checked to 1e-7; p counts
    coefficients and thresholds). OrderedModel reports thresholds as the first cut-off and log
    increments, so its threshold SEs are on another scale (rectify reports the cut-offs themselves).
    PPI and PPI++ use the same sandwich for the rectifier (see :mod:`rectify.estimators.ppi`).
    ``estimand``, ``overlap`` and ``frame_size`` as in :func:`rectify.estimators.ppi.ppi_mean`.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> Xp = rng.normal(size=(2000, 1))
    >>> yp = np.digitize(Xp[:, 0] + rng.logistic(size=2000), [-1, 0, 1]) + 1
    >>> r = ppi_ordinal(Xp[:300], yp[:300], method="classical", categories=[1, 2, 3, 4], terms=["x"])
    >>> r.terms
    ('x', 'threshold[1|2]', 'threshold[2|3]', 'threshold[3|4]')
    """
    ref = y if y is not None else yhat_pop
    if categories is None:
        if ref is None or np.asarray(ref).ndim != 1:
            raise InputError("pass 'categories' (the item's options in order)")
        categories = sorted(set(np.asarray(ref).tolist()))
    categories = list(categories)
    if len(categories) < 2:
        raise InputError("argument 'categories' must list at least two options")
    Y = _as_shares_matrix(y, categories, "y") if (y is not None and method != "naive") else None
    F = _as_shares_matrix(yhat, categories, "yhat") if (yhat is not None and method in ("ppi", "ppi++")) else None
    Fp = (_as_shares_matrix(yhat_pop, categories, "yhat_pop", keep=True)
          if (yhat_pop is not None and method != "classical") else None)
    thr = [f"threshold[{a}|{b}]" for a, b in zip(categories[:-1], categories[1:])]
    return _regression(fit_ordinal, X, Y, F, X_pop, Fp, method, weights, weights_pop, lam, lambda_mode,
                       lambda_bounds, level, convention, terms, "ordinal", label_dim=2,
                       extra_terms=lambda _: thr, estimand=estimand, overlap=overlap, frame_size=frame_size)
