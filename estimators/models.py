"""M-estimation building blocks: fits with per-row influence functions.

Each ``fit_*`` function solves a (weighted) estimating equation and returns the estimate, the
per-row influence rows ``psi`` (so that ``theta_hat - theta ~= mean(psi)``) and the averaged
Hessian. Labels may be soft: a logistic label in [0, 1] or an ordinal label given as a probability
vector over the K categories -- this is how an LLM's answer distribution enters the PPI cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

from rectify.errors import ConvergenceError, EstimationError

__all__ = ["Fit", "fit_ols", "fit_logistic", "fit_ordinal", "ordinal_probabilities"]


@dataclass
class Fit:
    """A fitted M-estimator: estimate, influence rows (or only their second moment) and mean Hessian.

    ``meat`` is ``psi' psi / n`` (the influence rows have mean zero at the fit), kept instead of ``psi``
    for population-sized fits; ``leverage`` holds the diagonal of the (weighted) hat matrix where the
    model has one, for HC3-type small-sample variances.
    """

    theta: np.ndarray
    psi: np.ndarray | None
    hessian: np.ndarray
    iterations: int = 0
    meat: np.ndarray | None = None
    leverage: np.ndarray | None = None

    def second_moment(self) -> np.ndarray:
        """``psi' psi / n`` (from ``meat`` when the rows were not kept)."""
        if self.meat is not None:
            return self.meat
        return self.psi.T @ self.psi / self.psi.shape[0]


def _influence(X, score_weight, Hinv, keep_psi):
    """Influence rows ``(X * score_weight) @ Hinv'`` or only their second moment."""
    n = X.shape[0]
    if keep_psi:
        return (X * score_weight[:, None]) @ Hinv.T, None
    S2 = (X * (score_weight**2)[:, None]).T @ X / n
    return None, Hinv @ S2 @ Hinv.T


def _leverage(X, curvature, Hinv):
    n = X.shape[0]
    return curvature * np.einsum("ij,jk,ik->i", X, Hinv, X) / n


def _solve(H: np.ndarray, g: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.solve(H, g)
    except np.linalg.LinAlgError:
        raise EstimationError(
            f"the {what} Hessian is singular: the design has collinear columns or an empty category"
        ) from None


def fit_ols(X: np.ndarray, z: np.ndarray, w: np.ndarray, keep_psi: bool = True) -> Fit:
    """Weighted least squares of ``z`` on ``X`` with its influence rows.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    z : ndarray, shape (n,)
    w : ndarray, shape (n,)
        Weights scaled to mean one.

    Returns
    -------
    Fit

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]])
    >>> fit = fit_ols(X, np.array([1.0, 3.0, 5.0, 7.0]), np.ones(4))
    >>> np.round(fit.theta, 6).tolist()
    [1.0, 2.0]
    """
    n = X.shape[0]
    Xw = X * w[:, None]
    H = Xw.T @ X / n
    theta = _solve(H, Xw.T @ z / n, "least-squares")
    resid = z - X @ theta
    Hinv = np.linalg.inv(H)
    psi, meat = _influence(X, w * resid, Hinv, keep_psi)
    lev = _leverage(X, w, Hinv) if keep_psi else None
    return Fit(theta, psi, H, meat=meat, leverage=lev)


def fit_logistic(X: np.ndarray, z: np.ndarray, w: np.ndarray, tol: float = 1e-12,
                 max_iter: int = 100, start: np.ndarray | None = None, ridge: float = 0.0,
                 keep_psi: bool = True) -> Fit:
    """Weighted logistic regression (labels in [0, 1], soft labels allowed) by Newton's method.

    ``ridge`` adds ``ridge / (2 n) * ||beta||^2`` to the mean loss (an intercept column of ones is
    not penalised); the default 0 is the maximum-likelihood fit.

    Examples
    --------
    >>> X = np.column_stack([np.ones(6), [-2.0, -1.0, 0.0, 0.0, 1.0, 2.0]])
    >>> fit = fit_logistic(X, np.array([0, 1, 0, 1, 0, 1.0]), np.ones(6))
    >>> np.round(fit.theta, 4).tolist()
    [0.0, 0.4196]
    """
    n, p = X.shape
    theta = np.zeros(p) if start is None else np.array(start, float)
    pen = np.full(p, ridge / n)
    if ridge:
        pen[np.all(X == 1.0, axis=0)] = 0.0

    def loss(t: np.ndarray) -> float:
        eta = X @ t
        return float(-(w * (z * log_expit(eta) + (1 - z) * log_expit(-eta))).sum() / n + 0.5 * (pen * t * t).sum())

    mu = expit(X @ theta)
    grad = X.T @ (w * (mu - z)) / n + pen * theta
    for it in range(1, max_iter + 1):
        H = (X * (w * mu * (1 - mu))[:, None]).T @ X / n + np.diag(pen)
        step = _solve(H, grad, "logistic")
        # a full Newton step is accepted when it shrinks the gradient (the usual case); otherwise
        # backtrack on the loss itself
        cand = theta - step
        mu_c = expit(X @ cand)
        grad_c = X.T @ (w * (mu_c - z)) / n + pen * cand
        t = 1.0
        if np.linalg.norm(grad_c) >= np.linalg.norm(grad) and np.max(np.abs(step)) > tol:
            cur = loss(theta)
            while True:
                t /= 2
                cand = theta - t * step
                if loss(cand) <= cur + 1e-14 or t < 1e-10:
                    break
            mu_c = expit(X @ cand)
            grad_c = X.T @ (w * (mu_c - z)) / n + pen * cand
        theta, mu, grad = cand, mu_c, grad_c
        if np.max(np.abs(t * step)) < tol:
            break
        if np.max(np.abs(theta)) > 50:
            raise EstimationError(
                "logistic regression diverges (coefficients beyond +/-50): the outcome is perfectly "
                "separated by the predictors in this sample; merge categories or use fewer predictors"
            )
    else:
        raise ConvergenceError(f"logistic regression did not converge in {max_iter} Newton steps")
    H = (X * (w * mu * (1 - mu))[:, None]).T @ X / n + np.diag(pen)
    Hinv = np.linalg.inv(H)
    if ridge:
        psi = (X * (w * (z - mu))[:, None] - pen * theta) @ Hinv.T
        meat = None
        if not keep_psi:
            psi, meat = None, Hinv @ ((X * (w * (z - mu))[:, None] - pen * theta).T
                                      @ (X * (w * (z - mu))[:, None] - pen * theta) / n) @ Hinv.T
    else:
        psi, meat = _influence(X, w * (z - mu), Hinv, keep_psi)
    lev = _leverage(X, w * mu * (1 - mu), Hinv) if keep_psi else None
    return Fit(theta, psi, H, it, meat=meat, leverage=lev)


def ordinal_probabilities(X: np.ndarray, beta: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Category probabilities of the cumulative-logit model P(y <= k | x) = F(tau_k - x'beta).

    Examples
    --------
    >>> P = ordinal_probabilities(np.zeros((1, 1)), np.array([0.0]), np.array([0.0]))
    >>> P.round(3).tolist()
    [[0.5, 0.5]]
    """
    eta = X @ beta
    cum = expit(tau[None, :] - eta[:, None])
    cum = np.column_stack([np.zeros(len(eta)), cum, np.ones(len(eta))])
    return np.diff(cum, axis=1)


def _ordinal_parts(X, P, w, beta, tau, need_hessian=True):
    """Log-likelihood, per-row scores and mean Hessian of the cumulative-logit model with soft labels."""
    n, p = X.shape
    K = P.shape[1]
    d = p + K - 1
    eta = X @ beta
    # cumulative values at cut k (k = -1 .. K-1); boundaries contribute nothing
    A = tau[None, :] - eta[:, None]  # (n, K-1)
    F = expit(A)
    f = F * (1 - F)
    fp = f * (1 - 2 * F)
    Fz = np.column_stack([np.zeros(n), F, np.ones(n)])
    fz = np.column_stack([np.zeros(n), f, np.zeros(n)])
    fpz = np.column_stack([np.zeros(n), fp, np.zeros(n)])
    pi = np.diff(Fz, axis=1)  # (n, K)
    if np.any(pi[P > 0] <= 0):
        raise EstimationError("ordinal model: a category probability underflowed; thresholds collapsed")
    with np.errstate(divide="ignore"):
        logpi = np.where(P > 0, np.log(np.where(pi > 0, pi, 1.0)), 0.0)
    ll = float((w * (P * logpi).sum(axis=1)).sum() / n)
    scores = np.zeros((n, d))
    H = np.zeros((d, d)) if need_hessian else None
    for k in range(K):
        fa, fb = fz[:, k + 1], fz[:, k]
        pk = pi[:, k]
        La = fa / pk
        Lb = -fb / pk
        c = w * P[:, k]
        # derivative of log pi_k wrt eta: -(La + Lb)
        g_eta = -(La + Lb)
        scores[:, :p] += (c * g_eta)[:, None] * X
        if k < K - 1:
            scores[:, p + k] += c * La
        if k > 0:
            scores[:, p + k - 1] += c * Lb
        if need_hessian:
            Laa = fpz[:, k + 1] / pk - La**2
            Lbb = -fpz[:, k] / pk - Lb**2
            Lab = -La * Lb  # = fa*fb/pk^2
            # a = tau_k - eta, b = tau_{k-1} - eta; d eta/d beta = x
            Da = np.zeros((n, d))
            Db = np.zeros((n, d))
            Da[:, :p] = -X
            Db[:, :p] = -X
            if k < K - 1:
                Da[:, p + k] = 1.0
            if k > 0:
                Db[:, p + k - 1] = 1.0
            H += (Da * (c * Laa)[:, None]).T @ Da + (Db * (c * Lbb)[:, None]).T @ Db
            cross = (Da * (c * Lab)[:, None]).T @ Db
            H += cross + cross.T
    if need_hessian:
        H = -H / n  # Hessian of the mean negative log-likelihood
    return ll, scores, H


def fit_ordinal(X: np.ndarray, P: np.ndarray, w: np.ndarray, tol: float = 1e-10,
                max_iter: int = 200, keep_psi: bool = True) -> Fit:
    """Weighted cumulative-logit (proportional odds) regression with soft labels.

    ``X`` has no intercept column; ``P`` is (n, K): one-hot human answers or an LLM's answer
    distribution. Parameters are ``(beta_1..beta_p, tau_1..tau_{K-1})`` with
    ``P(y <= k | x) = logistic(tau_k - x'beta)`` (the parameterisation of statsmodels' OrderedModel,
    but with the thresholds themselves rather than log increments).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 1))
    >>> y = (X[:, 0] + rng.logistic(size=400) > 0).astype(int) + (X[:, 0] + rng.logistic(size=400) > 1)
    >>> fit = fit_ordinal(X, np.eye(3)[y], np.ones(400))
    >>> fit.theta.shape
    (3,)
    """
    n, p = X.shape
    K = P.shape[1]
    if K < 2:
        raise EstimationError("ordinal model needs at least two categories")
    marg = (w[:, None] * P).sum(axis=0) / w.sum()
    if np.any(marg <= 0):
        empty = [str(k) for k in np.where(marg <= 0)[0]]
        raise EstimationError(
            f"ordinal model: answer categor{'y' if len(empty) == 1 else 'ies'} {', '.join(empty)} "
            f"never occur in this sample; its threshold is not estimable -- merge it with a neighbour"
        )
    cum = np.clip(np.cumsum(marg)[:-1], 1e-6, 1 - 1e-6)
    tau = np.log(cum / (1 - cum))
    beta = np.zeros(p)
    ll, scores, H = _ordinal_parts(X, P, w, beta, tau)
    for it in range(1, max_iter + 1):
        grad = -scores.sum(axis=0) / n
        step = _solve(H, grad, "ordinal")
        t = 1.0
        while True:
            cb, ct = beta - t * step[:p], tau - t * step[p:]
            if np.all(np.diff(ct) > 0):
                try:
                    new_ll, new_scores, new_H = _ordinal_parts(X, P, w, cb, ct)
                except EstimationError:
                    new_ll = -np.inf
                if new_ll >= ll - 1e-14:
                    break
            t /= 2
            if t < 1e-12:
                raise ConvergenceError("ordinal model: line search failed; the likelihood is flat or separated")
        beta, tau, ll, scores, H = cb, ct, new_ll, new_scores, new_H
        if np.max(np.abs(t * step)) < tol:
            break
        if np.max(np.abs(beta)) > 50:
            raise EstimationError(
                "ordinal model diverges (coefficients beyond +/-50): the answers are perfectly separated by "
                "the predictors in this sample"
            )
    else:
        raise ConvergenceError(f"ordinal model did not converge in {max_iter} Newton steps")
    Hinv = np.linalg.inv(H)
    if keep_psi:
        return Fit(np.concatenate([beta, tau]), scores @ Hinv.T, H, it)
    return Fit(np.concatenate([beta, tau]), None, H, it, meat=Hinv @ (scores.T @ scores / n) @ Hinv.T)
