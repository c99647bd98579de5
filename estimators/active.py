"""Active-inference estimators: LLM predictions for the whole frame plus a pilot with known ``pi``.

The target is the finite frame (the pilot's rows are frame rows). For a mean,

    theta_hat = (1/N) [ sum_frame m_i + sum_pilot (y_i - m_i) / pi_i ],

the frame sum of a working prediction ``m_i`` plus the inverse-probability-weighted correction over the
pilot (Zrnic & Candès, "Active Statistical Inference", ICML 2024, with a finite frame). It is
design-unbiased for any fixed ``m``: ``m_i = f_i`` (the LLM's prediction, ``lam=1``) is plain active
inference, ``m_i = 0`` (``lam=0``) Horvitz–Thompson. Power tuning (``lam="tuned"``, the default) takes
``m_i = c + lam f_i`` with ``(c, lam)`` fitted by least squares weighted by ``(1 - pi_i) / pi_i^2``,
which minimises the estimated Poisson design variance (PPI++'s lambda plus an intercept; as in the
GREG estimator, estimating them changes the variance only at order ``1/n``). The intercept matters
under Poisson sampling, whose random size otherwise makes the variance pay for the LLM's bias.

Census regression coefficients use the frame's known ``H = X'X / N``:
``theta_hat = H^{-1} (1/N) [sum_frame x_i m_i + sum_pilot x_i (y_i - m_i) / pi_i]`` with
``m_i = lam f_i + x_i' beta`` (``beta`` fitted with ``lam`` by the same weighted least squares);
shares are the mean of the one-hot answers with one ``lam`` for all options (they sum to 1).

Design variance of ``t = sum_pilot u_i / pi_i`` (``u_i`` the pilot rows' residual influence):

* ``"poisson"``: ``V = sum_frame (1 - pi) u^2 / pi``, estimated without bias by
  ``sum_pilot (1 - pi) u^2 / pi^2``;
* ``"fixed"`` (fixed-size unequal-probability designs such as randomised systematic PPS): Hájek's
  approximation, estimated by ``n/(n-1) sum_pilot (1 - pi_i)(u_i/pi_i - A)^2`` with
  ``A = sum (1 - pi) u / pi / sum (1 - pi)`` over the ``n`` rows with ``pi < 1`` (exact for simple
  random sampling; an approximation for systematic PPS, which has pairs with zero joint probability);
* ``"stratified"``: stratified simple random sampling, ``sum_h N_h^2 (1 - f_h) s_h^2 / n_h``.

Intervals are Student-t with ``n - 1 - k`` degrees of freedom (``k`` fitted working coefficients).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> f_pop = rng.normal(size=2000); y_pop = f_pop + rng.normal(size=2000)
>>> pi = np.full(2000, 0.1); s = rng.random(2000) < pi
>>> r = active_mean(y_pop[s], f_pop[s], f_pop, pi[s], sampling="poisson")
>>> bool(abs(r.estimate[0] - y_pop.mean()) < 3 * r.std_error[0])
True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from rectify.errors import ConvergenceError, EstimationError, InputError
from rectify.result import Result, check_level

from ._validate import as_float_array

__all__ = ["active_mean", "active_shares", "active_ols", "active_logistic", "design_variance", "SAMPLINGS"]

SAMPLINGS = ("poisson", "fixed", "stratified")
# the frame target and pilot placement, where Result records them (rectify.estimand)
_PLACE = {k: v for k, v in (("target", "frame"), ("pilot_in_frame", True))
          if k in {f.name for f in dataclasses.fields(Result)}}


def _pi(pi: Any, n: int) -> np.ndarray:
    p = as_float_array(pi, "pi")
    if p.shape != (n,):
        raise InputError(f"argument 'pi' must hold one inclusion probability per pilot row ({n}), got shape {p.shape}")
    if (p <= 0).any() or (p > 1).any():
        raise InputError(f"argument 'pi' must lie in (0, 1]; {int(((p <= 0) | (p > 1)).sum())} value(s) do not "
                         f"(pass the probabilities the pilot was drawn with, e.g. design_pilot's 'pi' column)")
    return p


def _sampling(sampling: Any, strata: Any, n: int) -> np.ndarray | None:
    if sampling not in SAMPLINGS:
        raise InputError(f"argument 'sampling' must be one of {', '.join(map(repr, SAMPLINGS))}, got {sampling!r}")
    if sampling != "stratified":
        if strata is not None:
            raise InputError("argument 'strata' is only used with sampling='stratified'")
        return None
    if strata is None:
        raise InputError("sampling='stratified' needs 'strata': the stratum of each pilot row")
    s = np.asarray(strata)
    if s.shape != (n,):
        raise InputError(f"argument 'strata' must give one stratum per pilot row ({n}), got shape {s.shape}")
    return np.unique(s, return_inverse=True)[1]


def design_variance(u: Any, pi: Any, sampling: str = "poisson", strata: Any = None) -> np.ndarray:
    """Estimated design covariance of ``sum_pilot u_i / pi_i`` (see the module notes).

    Parameters
    ----------
    u : array-like, shape (n,) or (n, q)
        Per-row values (residuals or influence vectors) of the pilot rows.
    pi : array-like, shape (n,)
        Their inclusion probabilities.
    sampling : {"poisson", "fixed", "stratified"}
    strata : array-like, shape (n,), optional
        Stratum of each row (``"stratified"``).

    Returns
    -------
    numpy.ndarray, shape (q, q)

    Examples
    --------
    >>> u = np.array([1.0, -1.0, 2.0, 0.0]); pi = np.full(4, 0.4)  # SRS of 4 from 10
    >>> bool(np.isclose(design_variance(u, pi, "fixed")[0, 0], 10**2 * (1 - 0.4) / 4 * np.var(u, ddof=1)))
    True
    """
    U = np.asarray(u, dtype=float)
    U = U[:, None] if U.ndim == 1 else U
    p = _pi(pi, U.shape[0])
    codes = _sampling(sampling, strata, U.shape[0])
    Z = U / p[:, None]
    if sampling == "poisson":
        return (Z * (1 - p)[:, None]).T @ Z
    if sampling == "fixed":
        c = 1 - p
        m = int((p < 1).sum())
        if m == 0:
            return np.zeros((U.shape[1], U.shape[1]))
        if m < 2:
            raise EstimationError("only one pilot row has pi < 1: the fixed-size variance needs at least 2")
        A = (c[:, None] * Z).sum(axis=0) / c.sum()
        D = Z - A
        return m / (m - 1) * (D * c[:, None]).T @ D
    V = np.zeros((U.shape[1], U.shape[1]))
    for h in range(codes.max() + 1):
        rows = codes == h
        nh = int(rows.sum())
        ph = p[rows]
        if np.ptp(ph) > 1e-9 * ph.max():
            raise InputError(f"argument 'pi' varies within stratum {h}; stratified simple random sampling has one "
                             f"pi per stratum (pass sampling='fixed' or 'poisson' for unequal-probability designs)")
        if ph[0] >= 1:
            continue
        if nh < 2:
            raise EstimationError(f"stratum {h} has a single pilot row: its variance is not estimable (allocate >= 2)")
        Nh = nh / ph[0]
        V += Nh**2 * (1 - ph[0]) / nh * np.atleast_2d(np.cov(U[rows], rowvar=False, ddof=1))
    return V


def _lam(lam: Any) -> float | None:
    if isinstance(lam, str):
        if lam != "tuned":
            raise InputError(f"argument 'lam' must be 'tuned' or a number (1: plain active inference, 0: "
                             f"Horvitz-Thompson), got {lam!r}")
        return None
    try:
        v = float(lam)
    except (TypeError, ValueError):
        raise InputError(f"argument 'lam' must be 'tuned' or a number, got {lam!r}") from None
    if not np.isfinite(v):
        raise InputError(f"argument 'lam' must be finite, got {lam!r}")
    return v


def _fit_working(X: np.ndarray, Y: np.ndarray, F: np.ndarray, a: np.ndarray) -> tuple[float, np.ndarray]:
    """Weighted least squares of Y (n, d) on F (one common slope lam) and X (per-column coefficients B)."""
    sw = np.sqrt(a)[:, None]
    Xw = X * sw
    Q, R = np.linalg.qr(Xw)
    if np.linalg.matrix_rank(R) < X.shape[1]:
        raise EstimationError("the pilot's covariate design is rank deficient under the design weights; "
                              "simplify the formula or draw a larger pilot")

    def resid(M):
        Mw = M * sw
        return Mw - Q @ (Q.T @ Mw)

    Yr, Fr = resid(Y), resid(F)
    den = float((Fr**2).sum())
    scale = float(((F * sw) ** 2).sum())
    lam = float((Fr * Yr).sum()) / den if den > 1e-12 * max(scale, 1e-300) else 0.0  # constant f: no slope
    B = np.linalg.solve(R, Q.T @ ((Y - lam * F) * sw))
    return lam, B


def _logistic_root(X_pop: np.ndarray, T: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``(1/N) X' expit(X theta) = T`` over the frame by Newton; returns theta and the Hessian."""
    from scipy.special import expit

    N, p = X_pop.shape
    theta = np.zeros(p)
    for _ in range(max_iter):
        mu = expit(X_pop @ theta)
        g = X_pop.T @ mu / N - T
        J = (X_pop * (mu * (1 - mu))[:, None]).T @ X_pop / N
        try:
            step = np.linalg.solve(J, g)
        except np.linalg.LinAlgError:
            raise EstimationError("the frame's logistic Hessian is singular; drop collinear terms") from None
        theta = theta - step
        if not np.isfinite(theta).all():
            break
        if np.abs(step).max() < 1e-10 * (1 + np.abs(theta).max()):
            mu = expit(X_pop @ theta)
            return theta, (X_pop * (mu * (1 - mu))[:, None]).T @ X_pop / N
    raise ConvergenceError("the census logistic equations have no finite solution for this pilot (an estimated "
                           "share of 1s outside (0, 1) in some covariate direction); draw a larger pilot or use "
                           "fewer terms")


def _active_linear(X, Y, F, X_pop, F_pop, pi, sampling, strata, lam, level, terms, estimand, bounds=None,
                   link="identity"):
    """The common core: census coefficients of Y (n, d) on X with the working model lam F + X B.

    ``link="logit"`` (d = 1): the census logistic coefficients, solving ``sum_frame x expit(x'theta) =``
    the estimated ``sum_frame x y``; the same influence rows with the logistic Hessian.
    """
    n, p = X.shape
    N = X_pop.shape[0]
    lam_fixed = _lam(lam)
    a = (1 - pi) / pi**2
    if not (a > 0).any():
        a = 1 / pi  # a census: every working model gives the exact answer
    if lam_fixed is None:
        lam_v, B = _fit_working(X, Y, F, a)
        k = p + 1
    else:
        lam_v, B = lam_fixed, np.zeros((p, Y.shape[1]))
        k = 0
    E = Y - lam_v * F - X @ B  # residuals (n, d)
    H = X_pop.T @ X_pop / N
    try:
        Hinv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        raise EstimationError("the frame's design X'X is singular; drop collinear terms") from None
    frame_part = lam_v * (X_pop.T @ F_pop) / N + H @ B  # (p, d): (1/N) sum_frame x m
    pilot_part = (X / pi[:, None]).T @ E / N
    theta = Hinv @ (frame_part + pilot_part)  # (p, d)
    if link == "logit":
        th, H = _logistic_root(X_pop, (frame_part + pilot_part)[:, 0])
        theta, Hinv = th[:, None], np.linalg.inv(H)
    # influence rows u_i = vec(H^{-1} x_i e_i'), column-major over d so the terms read option by option
    Ux = X @ Hinv.T  # (n, p)
    Uinf = (Ux[:, None, :] * E[:, :, None]).reshape(n, -1)  # (n, d*p): index j*p + l
    V = design_variance(Uinf, pi, sampling, strata) / N**2
    est = theta.T.reshape(-1)
    df_ = max(n - 1 - k, 1) if strata is None else max(n - int(np.unique(strata).size) - k, 1)
    d_eff = _design_effect(E, pi, N, V, Hinv, X)
    return Result(est, V, list(terms), "active", estimand, n, N, level=check_level(level), df=np.full(est.size, df_),
                  tuning={"lambda": lam_v, "lambda_mode": "tuned" if lam_fixed is None else "fixed"},
                  diagnostics={"sampling": sampling, "target": "frame", "n_certain": int((pi >= 1).sum()),
                               "sum_inverse_pi": float((1 / pi).sum()), "design_effect": d_eff},
                  bounds=bounds, **_PLACE)


def _design_effect(E, pi, N, V, Hinv, X) -> float | None:
    """Estimated variance over the variance simple random sampling of the same size would give (1st term)."""
    if E.shape[1] != 1 or X.shape[1] != 1:
        return None
    w = 1 / pi
    n = E.shape[0]
    Nhat = w.sum()
    mu = (w * E[:, 0]).sum() / Nhat
    s2 = (w * (E[:, 0] - mu) ** 2).sum() / Nhat * n / max(n - 1, 1)
    v_srs = (1 - n / N) * s2 / n * float(Hinv[0, 0]) ** 2
    return float(V[0, 0] / v_srs) if v_srs > 0 else None


def _inputs(y, yhat, yhat_pop, pi, ndim):
    Y = as_float_array(y, "y", ndim)
    F = as_float_array(yhat, "yhat", ndim)
    Fp = as_float_array(yhat_pop, "yhat_pop", ndim)
    n = Y.shape[0]
    if n < 3:
        raise InputError(f"argument 'y' has {n} pilot rows; the active estimators need at least 3")
    if F.shape != Y.shape:
        raise InputError(f"argument 'yhat' must have the shape of 'y' {Y.shape} (the LLM's prediction for each pilot "
                         f"row), got {F.shape}")
    if Fp.shape[1:] != Y.shape[1:] or Fp.shape[0] < n:
        raise InputError(f"argument 'yhat_pop' must hold the LLM's prediction for every frame row (at least the {n} "
                         f"pilot rows, the pilot being part of the frame), got shape {Fp.shape}")
    return Y, F, Fp, _pi(pi, n)


def active_mean(y: Any, yhat: Any, yhat_pop: Any, pi: Any, *, sampling: str = "poisson", strata: Any = None,
                lam: Any = "tuned", level: float = 0.95, terms: Sequence[str] = ("mean",)) -> Result:
    """Frame mean from LLM predictions for the whole frame and a pilot drawn with known ``pi``.

    Parameters
    ----------
    y : array-like, shape (n,)
        Human answers of the pilot rows.
    yhat : array-like, shape (n,)
        The LLM's predictions for the pilot rows.
    yhat_pop : array-like, shape (N,)
        The LLM's predictions for every frame row (pilot rows included).
    pi : array-like, shape (n,)
        Inclusion probabilities of the pilot rows.
    sampling : {"poisson", "fixed", "stratified"}
        How the pilot was drawn (see the module notes for each variance).
    strata : array-like, shape (n,), optional
        Stratum of each pilot row, for ``"stratified"``.
    lam : "tuned" or float
        ``"tuned"``: power-tuned working model ``c + lam f``; a number: ``m = lam f`` as given.
    level : float
    terms : sequence of str

    Returns
    -------
    Result
        ``method="active"``; ``tuning["lambda"]``; diagnostics ``sampling``, ``target="frame"``,
        ``design_effect`` (against SRS of the same size).

    Examples
    --------
    >>> y = np.array([1.0, 2.0, 4.0, 3.0]); f = np.array([1.5, 2.0, 3.0, 3.0])
    >>> r = active_mean(y, f, np.r_[f, 2.0, 2.0, 2.0, 2.0], np.full(4, 0.5), sampling="fixed", lam=1.0)
    >>> float(r.estimate[0])  # (17.5 + (-0.5 + 0 + 1 + 0) / 0.5) / 8
    2.3125
    """
    Y, F, Fp, p = _inputs(y, yhat, yhat_pop, pi, 1)
    st = _sampling(sampling, strata, Y.shape[0])
    return _active_linear(np.ones((Y.shape[0], 1)), Y[:, None], F[:, None], np.ones((Fp.shape[0], 1)), Fp[:, None],
                          p, sampling, st, lam, level, terms, "mean")


def active_shares(y: Any, yhat: Any, yhat_pop: Any, pi: Any, *, categories: Sequence | None = None,
                  sampling: str = "poisson", strata: Any = None, lam: Any = "tuned", level: float = 0.95) -> Result:
    """Frame option shares (sum to 1) with one ``lam`` for all options; see :func:`active_mean`.

    Parameters
    ----------
    y : array-like, shape (n,)
        Human answers (option labels) of the pilot rows.
    yhat, yhat_pop : array-like, shape (n, K) and (N, K)
        The LLM's option probabilities for the pilot rows and every frame row, columns in the order of
        ``categories``.
    pi, sampling, strata, lam, level
        As in :func:`active_mean`.
    categories : sequence, optional
        The options in order (default: the sorted labels of ``y``; then K must match).

    Examples
    --------
    >>> y = np.array([1, 2, 2, 1]); P = np.array([[.6, .4], [.3, .7], [.5, .5], [.9, .1]])
    >>> r = active_shares(y, P, np.r_[P, P], np.full(4, 0.5), sampling="fixed")
    >>> round(float(r.estimate.sum()), 12)
    1.0
    """
    labels = np.asarray(y)
    cats = list(np.unique(labels)) if categories is None else list(categories)
    unknown = sorted(set(labels.tolist()) - set(cats), key=str)
    if unknown:
        raise InputError(f"argument 'y' has answers {unknown[:5]} that are not in 'categories' {cats}")
    Y = (labels[:, None] == np.asarray(cats, dtype=labels.dtype)[None, :]).astype(float)
    F = as_float_array(yhat, "yhat", 2)
    if F.shape[1] != len(cats):
        raise InputError(f"argument 'yhat' has {F.shape[1]} probability columns for {len(cats)} categories {cats}")
    Y, F, Fp, p = _inputs(Y, F, yhat_pop, pi, 2)
    st = _sampling(sampling, strata, Y.shape[0])
    X = np.ones((Y.shape[0], 1))
    return _active_linear(X, Y, F, np.ones((Fp.shape[0], 1)), Fp, p, sampling, st, lam, level,
                          [f"share[{c}]" for c in cats], "shares", bounds=(0.0, 1.0))


def active_ols(X: Any, y: Any, yhat: Any, X_pop: Any, yhat_pop: Any, pi: Any, *, sampling: str = "poisson",
               strata: Any = None, lam: Any = "tuned", level: float = 0.95,
               terms: Sequence[str] | None = None) -> Result:
    """Census OLS coefficients of ``y`` on ``X`` over the frame; see :func:`active_mean`.

    ``X_pop`` is the frame's design (every row, pilot rows included); the frame's ``X'X`` is known,
    so only ``sum x y`` is estimated.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> Xp = np.column_stack([np.ones(3000), rng.normal(size=3000)])
    >>> yp = Xp @ [1.0, 2.0] + rng.normal(size=3000); fp = yp + rng.normal(size=3000)
    >>> s = np.flatnonzero(rng.random(3000) < 0.1)
    >>> r = active_ols(Xp[s], yp[s], fp[s], Xp, fp, np.full(s.size, 0.1))
    >>> truth = np.linalg.lstsq(Xp, yp, rcond=None)[0]
    >>> bool((abs(r.estimate - truth) < 3 * r.std_error).all())
    True
    """
    return _regression(X, y, yhat, X_pop, yhat_pop, pi, sampling, strata, lam, level, terms, "ols")


def active_logistic(X: Any, y: Any, yhat: Any, X_pop: Any, yhat_pop: Any, pi: Any, *, sampling: str = "poisson",
                    strata: Any = None, lam: Any = "tuned", level: float = 0.95,
                    terms: Sequence[str] | None = None) -> Result:
    """Census logistic-regression coefficients of a 0/1 answer over the frame; see :func:`active_ols`.

    The census coefficients solve ``sum_frame x_i (y_i - expit(x_i' theta)) = 0``; only
    ``sum_frame x y`` is unknown, and it is estimated as in :func:`active_ols` (working model
    ``lam f + x' beta``). The frame equation is then solved by Newton; the variance is the design
    variance of the estimated sum through the frame's logistic Hessian (delta method).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> Xp = np.column_stack([np.ones(4000), rng.normal(size=4000)])
    >>> yp = (rng.random(4000) < 1 / (1 + np.exp(-(Xp @ [-0.5, 1.0])))).astype(float)
    >>> fp = np.clip(yp * 0.6 + rng.random(4000) * 0.4, 0, 1)
    >>> s = np.flatnonzero(rng.random(4000) < 0.1)
    >>> r = active_logistic(Xp[s], yp[s], fp[s], Xp, fp, np.full(s.size, 0.1))
    >>> from scipy.optimize import root
    >>> truth = root(lambda t: Xp.T @ (yp - 1 / (1 + np.exp(-(Xp @ t)))), np.zeros(2)).x
    >>> bool((abs(r.estimate - truth) < 3 * r.std_error).all())
    True
    """
    return _regression(X, y, yhat, X_pop, yhat_pop, pi, sampling, strata, lam, level, terms, "logistic")


def _regression(X, y, yhat, X_pop, yhat_pop, pi, sampling, strata, lam, level, terms, estimand) -> Result:
    Xs = as_float_array(X, "X", 2)
    Xp = as_float_array(X_pop, "X_pop", 2)
    if Xp.shape[1] != Xs.shape[1]:
        raise InputError(f"argument 'X_pop' has {Xp.shape[1]} columns but 'X' has {Xs.shape[1]}")
    Y, F, Fp, p = _inputs(y, yhat, yhat_pop, pi, 1)
    if estimand == "logistic" and not np.isin(Y, (0.0, 1.0)).all():
        raise InputError("argument 'y' must be coded 0/1 for a logistic regression; recode the answers")
    if Xs.shape[0] != Y.shape[0] or Xp.shape[0] != Fp.shape[0]:
        raise InputError("arguments 'X'/'y' and 'X_pop'/'yhat_pop' must have matching rows")
    st = _sampling(sampling, strata, Y.shape[0])
    names = [f"x{j}" for j in range(Xs.shape[1])] if terms is None else list(terms)
    return _active_linear(Xs, Y[:, None], F[:, None], Xp, Fp[:, None], p, sampling, st, lam, level, names, estimand,
                          link="logit" if estimand == "logistic" else "identity")
