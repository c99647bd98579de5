"""Bayesian misclassification model: the LLM as a noisy rater whose confusion matrix is learned on the pilot.

Model (``K`` human options, ``A`` LLM answer categories)::

    M[k, :] ~ Dirichlet(alpha_m)                 P(yhat = . | y = k), one row per human answer
    p       ~ Dirichlet(alpha_p)                 true population shares
    C[k, :] ~ Multinomial(n_k, M[k, :])          pilot: LLM answers given the human answer
    n       ~ Multinomial(N, M^T p)              population: counts of LLM answers

Unlike the chain rule, which transports ``P(y | yhat)`` from the pilot to the population, this model
transports ``P(yhat | y)``: it stays valid when the population's answer prevalence differs from the
pilot's (a quota or convenience pilot, a pilot from another wave), provided that the LLM errs alike
given the true answer. The pilot's own human-answer counts do not inform ``p`` unless
``pilot_informs_prevalence=True`` (use that only when the pilot is a random sample of the population).

Two samplers target this same posterior (the population counts inform ``M`` too):

* ``sampler="importance"`` (numpy only; the default when ``A == K``): exact sampling-importance-
  resampling after the change of variables ``(M, p) -> (M, q = M^T p)``. The proposal draws ``M``
  from its conjugate pilot posterior ``Dirichlet(alpha_m + C)`` row by row and ``q`` from
  ``Dirichlet(1 + n)``; then ``p = M^{-T} q`` and the importance weight is
  ``Dirichlet(p; alpha_p) / |det M|`` (zero when ``p`` leaves the simplex), times
  ``prod_k p_k^{c_k}`` with ``pilot_informs_prevalence``. The Kish effective sample size of the
  weights is reported (``diagnostics["ess_importance"]``) and a
  :class:`~rectify.estimators.bayes_chain.BayesDiagnosticWarning` is raised when it falls below
  ``min_ess``: that happens when the LLM is nearly uninformative (``M`` close to singular), where the
  shares are barely identified anyway.
* ``sampler="nuts"`` (pymc): NUTS on ``(M, p)``. With a large population the posterior is a thin
  ridge around ``M^T p = n / N`` and NUTS needs long trajectories (tens of seconds); it is the only
  choice when ``A != K``.

The population counts are summarised by LLM answer, so the cost does not grow with ``N``. A
probability matrix of LLM answers is reduced to its arg-max (hard labels), as in the chain rule.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import numpy as np

from rectify.errors import EstimationError, InputError
from rectify.result import Result, check_level

from .bayes_chain import (
    BayesDiagnosticWarning,
    PriorOnlyWarning,
    _alpha,
    _dirichlet_rows,
    _option_counts,
    _rng,
    _scores,
    as_codes,
    draws_result,
    contingency,
    llm_labels,
)

__all__ = ["MisclassificationModel", "misclassification", "misclassification_importance"]


def misclassification_importance(
    counts_pilot: np.ndarray,
    counts_pop: np.ndarray,
    *,
    alpha_m: Any = 1.0,
    alpha_p: Any = 1.0,
    pilot_y_counts: np.ndarray | None = None,
    n_draws: int = 4000,
    n_proposals: int | None = None,
    random_state: Any = None,
) -> tuple[np.ndarray, dict]:
    """Exact posterior draws of the true shares ``p`` by sampling-importance-resampling.

    Parameters
    ----------
    counts_pilot : ndarray, shape (K, K)
        Pilot counts ``C[k, a]``: human answer ``k``, LLM answer ``a``.
    counts_pop : ndarray, shape (K,)
        Population counts of the LLM answers.
    alpha_m, alpha_p : float or array
        Dirichlet priors of the confusion rows and of ``p``.
    pilot_y_counts : ndarray, shape (K,), optional
        Human-answer counts of the pilot, when they are a random sample of the population.
    n_draws : int, default 4000
        Number of (resampled) posterior draws returned.
    n_proposals : int, optional
        Number of proposals (default ``25 * n_draws``).
    random_state : int, Generator or None

    Returns
    -------
    draws : ndarray, shape (n_draws, K)
    info : dict
        ``ess_importance`` (Kish ESS of the weights), ``acceptance`` (share of proposals with ``p``
        in the simplex), ``n_proposals``.

    Examples
    --------
    >>> C = np.array([[40, 10], [5, 45]])
    >>> d, info = misclassification_importance(C, np.array([3000, 7000]), random_state=0)
    >>> bool(abs(d[:, 1].mean() - 0.73) < 0.02)
    True
    """
    C = np.asarray(counts_pilot, dtype=float)
    K = C.shape[0]
    if C.shape != (K, K):
        raise InputError("the importance sampler needs as many LLM answer categories as options; "
                         "use sampler='nuts' otherwise")
    n = np.asarray(counts_pop, dtype=float)
    if n.shape != (K,):
        raise InputError(f"argument 'counts_pop' must have shape ({K},), got {n.shape}")
    rng = _rng(random_state)
    n_draws = int(n_draws)
    S = int(n_proposals) if n_proposals is not None else 25 * n_draws
    am = _alpha(alpha_m, (K, K), "alpha_m")
    ap = _alpha(alpha_p, (K,), "alpha_p")
    from scipy.special import gammaln

    log_norm_p = gammaln(ap.sum()) - gammaln(ap).sum()
    draws_p, logw_all = [], []
    block = 20_000
    for lo in range(0, S, block):
        m = min(block, S - lo)
        M = _dirichlet_rows(rng, am + C, m)  # (m, K, K): rows are P(yhat | y = k)
        q = _dirichlet_rows(rng, (1.0 + n)[None, :], m)[:, 0, :]
        sign, logdet = np.linalg.slogdet(M)
        ok = sign != 0
        p = np.full((m, K), np.nan)
        p[ok] = np.linalg.solve(np.swapaxes(M[ok], 1, 2), q[ok][:, :, None])[:, :, 0]
        inside = ok & np.all(p > 0, axis=1)
        logw = np.full(m, -np.inf)
        pi = p[inside]
        lw = log_norm_p + ((ap - 1.0) * np.log(pi)).sum(axis=1) - logdet[inside]
        if pilot_y_counts is not None:
            lw = lw + (np.asarray(pilot_y_counts, dtype=float) * np.log(pi)).sum(axis=1)
        logw[inside] = lw
        draws_p.append(p)
        logw_all.append(logw)
    p = np.concatenate(draws_p)
    logw = np.concatenate(logw_all)
    acc = float(np.mean(np.isfinite(logw)))
    if acc == 0.0:
        raise EstimationError(
            "no proposal of the misclassification model put the true shares inside the simplex: the "
            "pilot's confusion matrix is too uncertain or nearly singular (an uninformative LLM); "
            "enlarge the pilot or use the chain-rule estimator")
    w = np.exp(logw - np.max(logw))
    w /= w.sum()
    ess = float(1.0 / np.sum(w**2))
    idx = rng.choice(p.shape[0], size=n_draws, replace=True, p=w)
    p_out = p[idx] / p[idx].sum(axis=1, keepdims=True)
    return p_out, {"ess_importance": ess, "acceptance": acc, "n_proposals": S}


def _build(K: int, A: int, alpha_m: np.ndarray, alpha_p: np.ndarray, data: dict, scores: np.ndarray,
           pilot_prev: bool):
    from .bayes_hier import import_pymc

    pm = import_pymc()
    import pytensor.tensor as pt

    coords = {"option": [str(k) for k in range(K)], "llm": [str(a) for a in range(A)]}
    with pm.Model(coords=coords) as model:
        C = pm.Data("pilot_counts", data["pilot_counts"])
        n_pop = pm.Data("pop_counts", data["pop_counts"])
        M = pm.Dirichlet("M", a=alpha_m, dims=("option", "llm"))
        p = pm.Dirichlet("p", a=alpha_p, dims="option")
        # multinomial log-likelihoods up to constants (the counts are data): cheaper to compile and
        # evaluate than pm.Multinomial, same posterior
        pm.Potential("pilot", pt.sum(C * pt.log(M)))
        pm.Potential("population", pt.sum(n_pop * pt.log(pt.dot(p, M))))
        if pilot_prev:
            yc = pm.Data("pilot_y_counts", data["pilot_y_counts"])
            pm.Potential("pilot_prevalence", pt.sum(yc * pt.log(p)))
        pm.Deterministic("mean", pt.dot(p, scores))
    return model


class MisclassificationModel:
    """Population shares from LLM answers corrected by a confusion matrix learned on the pilot.

    Parameters
    ----------
    n_options : int
        Number of human answer options ``K``.
    n_llm_options : int, optional
        Number of LLM answer categories ``A`` (default ``K``).
    scores : array-like, shape (K,), optional
        Option scores for the mean (default ``1 .. K``).
    alpha_m : float or array broadcastable to (K, A), default 1.0
        Dirichlet prior of each confusion row (1 = uniform).
    alpha_p : float or array broadcastable to (K,), default 1.0
        Dirichlet prior of the true shares.
    pilot_informs_prevalence : bool, default False
        Also use the pilot's human-answer counts as a sample of the population shares.
    sampler : {"auto", "importance", "nuts"}
        ``"auto"`` is the exact numpy importance sampler when ``A == K`` and pymc's NUTS otherwise.
    draws : int, default 1000
        Draws per chain (NUTS); the importance sampler returns ``chains * draws`` draws.
    n_proposals : int, optional
        Proposals of the importance sampler (default ``25 * chains * draws``).
    min_ess : float, default 1000
        Warn when the importance sampler's effective sample size is lower.
    chains, tune, target_accept, rhat_threshold, random_state
        MCMC settings (``cores=1``), as in :class:`~rectify.estimators.bayes_hier.HierarchicalCalibrator`.
    """

    def __init__(self, n_options: int, n_llm_options: int | None = None, scores=None,
                 alpha_m: Any = 1.0, alpha_p: Any = 1.0, pilot_informs_prevalence: bool = False,
                 chains: int = 4, draws: int = 1000, tune: int = 1000, target_accept: float = 0.9,
                 rhat_threshold: float = 1.01, sampler: str = "auto", n_proposals: int | None = None,
                 min_ess: float = 1000.0, random_state: Any = None):
        self.n_options = n_options
        self.sampler = sampler
        self.n_proposals = n_proposals
        self.min_ess = min_ess
        self.n_llm_options = n_llm_options
        self.scores = scores
        self.alpha_m = alpha_m
        self.alpha_p = alpha_p
        self.pilot_informs_prevalence = pilot_informs_prevalence
        self.chains = chains
        self.draws = draws
        self.tune = tune
        self.target_accept = target_accept
        self.rhat_threshold = rhat_threshold
        self.random_state = random_state

    def fit(self, y, yhat, yhat_pop):
        """Sample the joint posterior of the confusion matrix and the true shares.

        Parameters
        ----------
        y : array-like of int, shape (n,)
            Human answers of the pilot (codes ``0 .. K - 1``).
        yhat : array-like, shape (n,) or (n, A)
            LLM answers of the pilot rows.
        yhat_pop : array-like, shape (N,) or (N, A)
            LLM answers of the population rows.
        """
        from .bayes_hier import mcmc_diagnostics, resolve_sampler, reuse_compiled, run_sampler

        K, A = _option_counts(self.n_options, self.n_llm_options)
        if self.sampler not in ("auto", "importance", "nuts"):
            raise InputError(f"argument 'sampler' must be 'auto', 'importance' or 'nuts', got {self.sampler!r}")
        if self.sampler == "importance" and A != K:
            raise InputError("sampler='importance' needs n_llm_options == n_options; use sampler='nuts'")
        y_c = as_codes(y, "y", K)
        a_c = llm_labels(yhat, "yhat", A)
        if a_c.shape[0] != y_c.shape[0]:
            raise InputError(f"arguments 'y' ({y_c.shape[0]} rows) and 'yhat' ({a_c.shape[0]} rows) differ in length")
        a_pop = llm_labels(yhat_pop, "yhat_pop", A)
        am = _alpha(self.alpha_m, (K, A), "alpha_m")
        ap = _alpha(self.alpha_p, (K,), "alpha_p")
        self.scores_ = _scores(self.scores, K)
        C = contingency(y_c, a_c, K, A)
        missing = np.flatnonzero(C.sum(axis=1) == 0).tolist()
        if missing:
            warnings.warn(
                f"human answer code(s) {missing} never occur in the pilot: how the LLM answers those "
                "people (their confusion rows) comes from the prior alone, so their shares are weakly "
                "identified", PriorOnlyWarning, stacklevel=2)
        data = {"pilot_counts": C, "pop_counts": np.bincount(a_pop, minlength=A),
                "pilot_y_counts": np.bincount(y_c, minlength=K)}
        self.n_pilot_ = int(y_c.shape[0])
        self.n_population_ = int(a_pop.shape[0])
        if self.sampler == "importance" or (self.sampler == "auto" and A == K):
            t0 = time.perf_counter()
            p, info = misclassification_importance(
                C, data["pop_counts"], alpha_m=am, alpha_p=ap,
                pilot_y_counts=data["pilot_y_counts"] if self.pilot_informs_prevalence else None,
                n_draws=int(self.chains) * int(self.draws), n_proposals=self.n_proposals,
                random_state=self.random_state)
            info.update(sampler="importance", sample_s=time.perf_counter() - t0, pilot_table=C,
                        prior_only_options=missing, problems=[])
            if info["ess_importance"] < self.min_ess:
                msg = (f"importance sampler: effective sample size {info['ess_importance']:.0f} < "
                       f"{self.min_ess:g} (acceptance {info['acceptance']:.3f}); raise n_proposals or use "
                       "sampler='nuts'")
                info["problems"].append(msg)
                warnings.warn(msg, BayesDiagnosticWarning, stacklevel=2)
            self.p_draws_ = p
            self.idata_ = None
            self.diagnostics_ = info
            return self
        nuts = resolve_sampler("auto")
        key = repr((K, A, am.tobytes(), ap.tobytes(), bool(self.pilot_informs_prevalence),
                    self.scores_.tobytes(), float(self.target_accept), nuts))
        model, step, reused, compile_s = reuse_compiled(
            self, key, lambda: _build(K, A, am, ap, data, self.scores_, bool(self.pilot_informs_prevalence)),
            data, nuts, float(self.target_accept))
        idata, sample_s = run_sampler(model, step, chains=self.chains, draws=self.draws,
                                      tune=self.tune, random_state=self.random_state,
                                      target_accept=self.target_accept)
        diag = mcmc_diagnostics(idata, ["M", "p"], self.rhat_threshold)
        diag.update(sampler=f"nuts ({nuts})", compile_s=compile_s, sample_s=sample_s, reused_compiled_model=reused,
                    pilot_table=C, prior_only_options=missing)
        self.idata_ = idata
        self.p_draws_ = np.asarray(idata.posterior["p"]).reshape(-1, K)
        self.diagnostics_ = diag
        return self

    def result(self, *, estimand: str = "both", level: float = 0.95,
               option_labels: Sequence | None = None) -> Result:
        """The posterior of the true shares and mean score as a :class:`~rectify.result.Result`."""
        if not hasattr(self, "p_draws_"):
            raise InputError("this MisclassificationModel is not fitted yet; call fit() first")
        if estimand not in ("both", "shares", "mean"):
            raise InputError(f"argument 'estimand' must be 'both', 'shares' or 'mean', got {estimand!r}")
        K = self.n_options
        labels = [str(v) for v in (option_labels if option_labels is not None else range(1, K + 1))]
        if len(labels) != K:
            raise InputError(f"argument 'option_labels' must have {K} entries")
        return draws_result(
            [self.p_draws_], ["all"], labels, self.scores_, estimand, grouped=False,
            method="bayes-misclass",
            n_pilot=self.n_pilot_,
            n_population=self.n_population_,
            level=check_level(level),
            tuning={"alpha_m": float(np.mean(self.alpha_m)), "alpha_p": float(np.mean(self.alpha_p)),
                    "chains": int(self.chains), "draws": int(self.draws), "tune": int(self.tune)},
            diagnostics=dict(self.diagnostics_),
            posterior=self.idata_,
        )


def misclassification(y, yhat, yhat_pop, *, n_options: int, estimand: str = "both",
                      level: float = 0.95, option_labels: Sequence | None = None,
                      **settings) -> Result:
    """Population shares corrected for the LLM's misclassification (see the module notes).

    Parameters
    ----------
    y : array-like of int, shape (n,)
        Human answers of the pilot (codes ``0 .. K - 1``).
    yhat, yhat_pop : array-like
        LLM answers of pilot and population rows (codes or probability matrices).
    n_options : int
        Number of options ``K``.
    estimand, level, option_labels
        Terms to return (``"both"``, ``"shares"``, ``"mean"``), interval level, share labels.
    **settings
        Passed to :class:`MisclassificationModel` (priors, chains, draws, tune, random_state, ...).

    Returns
    -------
    Result
        Posterior means, draws, diagnostics (R-hat, ESS, divergences) and ``posterior``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 80)
    >>> yhat = np.where(rng.random(80) < 0.8, y, 1 - y)
    >>> r = misclassification(y, yhat, rng.integers(0, 2, 3000), n_options=2, chains=1,
    ...                       draws=200, tune=200, random_state=0)
    >>> r.terms, round(float(r.estimate[:2].sum()), 6)
    (('1', '2', 'mean'), 1.0)
    """
    model = MisclassificationModel(n_options=n_options, **settings).fit(y, yhat, yhat_pop)
    return model.result(estimand=estimand, level=level, option_labels=option_labels)
