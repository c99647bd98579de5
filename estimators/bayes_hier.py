"""Hierarchical Bayesian calibration of LLM answers with post-stratification (pymc, extra ``bayes``).

Why one module of ~820 lines: the pymc model, its compile cache (compiled once per structure,
refilled with ``pm.Data``), the sampler settings, the diagnostics and the post-stratification all
read one model specification; pymc is imported lazily, here only.

The model learns ``P(human answer | LLM answer, covariates, groups)`` on the pilot:

* ordinal items (``K >= 3`` options): cumulative logit, ``P(y <= k) = logistic(c_k - eta)``;
  binary items (``K = 2``): logistic, ``P(y = 1) = logistic(eta - c)``;
* linear predictor ``eta = f(LLM answer) + X beta + sum_g (u_g[j] + v_g[j] * s)``, where ``s`` is the
  centred score of the LLM answer; ``f`` is ``beta_llm * s`` (``llm_effect="score"``) or one
  coefficient per LLM answer category, the first being the reference (``llm_effect="category"``);
  ``X`` is a fixed-effect design matrix *without intercept* (the cut points play that role), built by
  the formula layer (formulaic) and standardised here with the pilot's column means and sds;
* group-varying intercepts ``u_g`` and slopes on the LLM score ``v_g`` for each named grouping factor,
  non-centred (``u_g = sigma_g * z_g``, ``z_g ~ N(0, 1)``), independent intercepts and slopes.

Priors (weakly informative, on the logit scale, chosen so that a pilot of 50 rows still gives a proper,
stable posterior): ``beta, beta_llm ~ Normal(0, 2.5)`` on standardised predictors (the rstanarm
default), cut points ``Normal(0, 2.5)`` under the ordered transform, group sds
``HalfNormal(1)``, which pulls small groups towards the common calibration unless the pilot shows
otherwise. All are arguments.

Post-stratification: population rows are collapsed into cells, the distinct rows of (standardised
covariates, group levels, LLM answer), with their counts; posterior answer distributions are computed
per cell and weighted by the counts, so the cost grows with the number of cells and not with ``N``
(bin continuous covariates to keep it small). Population and per-group-level shares and mean scores
come back as posterior draws in a :class:`~rectify.result.Result` with the ArviZ ``InferenceData`` in
``Result.posterior``.

A group level that is in the population but not in the pilot gets its effects from the fitted
population of group effects (the standard multilevel fallback); this is announced with a
:class:`~rectify.estimators.bayes_chain.PriorOnlyWarning`. The LLM answer enters as a hard label:
a probability matrix is reduced to its arg-max, as in the chain rule.

The sampler is nutpie's NUTS (Rust, the model compiled with numba; installed by the ``bayes``
extra), or pymc's own NUTS with ``sampler="pymc"`` or when nutpie is missing. Compiled models are
cached inside :class:`HierarchicalCalibrator` and, per thread, in the process (the last few
structures), and refits with the same structure only swap the ``pm.Data`` containers (and nutpie's
copy of them through ``with_data``): a study of hundreds of pilots, or a new calibrator object with
the same structure, compiles once. Across processes the compiled code is kept in a per-user folder,
``$XDG_CACHE_HOME/rectify/pytensor-<uid>`` (``~/.cache`` by default), unless ``PYTENSOR_FLAGS`` or a
``.pytensorrc`` already names one (see :func:`import_pymc`). R-hat, ESS and divergences land in ``Result.diagnostics``; a
:class:`~rectify.estimators.bayes_chain.BayesDiagnosticWarning` is raised for divergences or R-hat
above ``rhat_threshold`` (default 1.01).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from rectify.errors import InputError, UnseenLevelError
from rectify.result import Result, check_level

from .bayes_chain import (
    BayesDiagnosticWarning,
    PriorOnlyWarning,
    _option_counts,
    _rng,
    _scores,
    as_codes,
    draws_result,
    llm_labels,
)

__all__ = [
    "import_pymc",
    "mcmc_diagnostics",
    "run_sampler",
    "resolve_sampler",
    "compile_sampler",
    "reuse_compiled",
    "compile_cache_dir",
    "HierarchicalCalibrator",
    "hierarchical_calibration",
    "cumulative_logit_probs",
]


# ------------------------------------------------------------------------------------ MCMC helpers
def compile_cache_dir(set_flags: bool = True) -> Path | None:
    """The per-user folder where pytensor keeps compiled code across processes, set before pytensor's
    first import; None when the user (``PYTENSOR_FLAGS``, ``PYTENSORRC`` or ``~/.pytensorrc``)
    already chose one, pytensor is already imported, or the folder cannot be made.

    The folder is private to the user (mode 0700) and keyed by the user id, so users never share
    compiled code; processes of one user share it safely, since pytensor locks its compile folder
    while it writes and numba writes its cache files atomically. ``set_flags=False`` only returns
    the folder (nothing is made or set).

    Examples
    --------
    >>> d = compile_cache_dir(set_flags=False)
    >>> d is None or (d.parent.name == "rectify" and d.name.startswith("pytensor-"))
    True
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if ("pytensor" in sys.modules or "compiledir" in flags or os.environ.get("PYTENSORRC")
            or (Path.home() / ".pytensorrc").exists()):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rectify" / f"pytensor-{uid}"
    if not set_flags:
        return base
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={base}") if f)
    return base


def import_pymc():
    """Import pymc lazily with a clear message when the ``bayes`` extra is missing.

    Before pytensor's first import, its compile folder defaults to :func:`compile_cache_dir`, so a
    second process reuses the compiled code of the first instead of compiling again.
    """
    if "pymc" not in sys.modules:
        compile_cache_dir()
    try:
        import pymc as pm
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the hierarchical and misclassification models need pymc; install the extra: "
            "pip install 'rectify-survey[bayes]' (or use the chain-rule estimator, which needs no MCMC)"
        ) from err
    return pm


def _has_nutpie() -> bool:
    import importlib.util

    return importlib.util.find_spec("nutpie") is not None


def resolve_sampler(sampler: str) -> str:
    """``"auto"`` -> ``"nutpie"`` when nutpie is installed, else ``"pymc"``; checks the name.

    Examples
    --------
    >>> resolve_sampler("pymc")
    'pymc'
    """
    if sampler not in ("auto", "pymc", "nutpie"):
        raise InputError(f"argument 'sampler' must be 'auto', 'pymc' or 'nutpie', got {sampler!r}")
    if sampler == "auto":
        return "nutpie" if _has_nutpie() else "pymc"
    if sampler == "nutpie" and not _has_nutpie():
        raise ImportError("sampler='nutpie' needs the nutpie package: pip install 'rectify-survey[bayes]' "
                          "(or pass sampler='pymc')")
    return sampler


def compile_sampler(model, sampler: str, target_accept: float):
    """Compile once what :func:`run_sampler` reuses: a pymc NUTS step or a nutpie compiled model."""
    if sampler == "nutpie":
        import nutpie

        return nutpie.compile_pymc_model(model, backend="numba")
    pm = import_pymc()
    return pm.NUTS(model=model, target_accept=target_accept)


# compiled models of this process, per thread (a model's data are swapped in place, so two threads
# never share one), the most recently used last
_COMPILED: "OrderedDict[tuple, tuple]" = OrderedDict()
_COMPILED_MAX = 8
_COMPILED_LOCK = threading.Lock()


def _process_compiled(full_key: tuple, entry: tuple | None = None):
    """Look up (``entry=None``) or store a compiled model in the process cache."""
    with _COMPILED_LOCK:
        if entry is None:
            hit = _COMPILED.get(full_key)
            if hit is not None:
                _COMPILED.move_to_end(full_key)
            return hit
        _COMPILED[full_key] = entry
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
        return entry


class _compile_lock:
    """One rectify process at a time compiles into a shared pytensor compile folder (a lock file
    there; waits at most ``timeout`` seconds, then goes on, as pytensor's own lock does). The
    others then find the compiled code in the folder."""

    def __init__(self, timeout: float = 900.0):
        self.timeout, self.fh = timeout, None

    def __enter__(self):
        try:
            import fcntl

            import pytensor

            path = Path(pytensor.config.base_compiledir) / "rectify-compile.lock"
            self.fh = open(path, "a")
        except (ImportError, OSError, AttributeError):
            return self
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.monotonic() - t0 > self.timeout:
                    self.fh.close()
                    self.fh = None
                    return self
                time.sleep(0.5)

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()  # closing releases the lock
        return False


def reuse_compiled(owner, key: str, build, data: dict, sampler: str, target_accept: float):
    """The compiled model and sampler for ``key``, built once and refilled with ``data``.

    The first call builds the pymc model (``build()``) and compiles the sampler; later calls with the
    same ``key`` -- on ``owner`` or on any other object of its class in the same thread (the process
    keeps the last few) -- swap the ``pm.Data`` containers (and nutpie's copy of them) and reuse the
    compile. Returns ``(model, step, reused, seconds)``.
    """
    pm = import_pymc()
    full_key = (type(owner).__qualname__, key, sampler, float(target_accept), threading.get_ident())
    cache = getattr(owner, "_compiled", None)
    t0 = time.perf_counter()
    if cache is None or cache[0] != key:
        cache = _process_compiled(full_key)
    reused = cache is not None and cache[0] == key
    if reused:
        model, step = cache[1], cache[2]
        new_data = {k: v for k, v in data.items() if k in model.named_vars}
        pm.set_data(new_data, model=model)
        if sampler == "nutpie":
            step = step.with_data(**new_data)
    else:
        with _compile_lock():
            model = build()
            step = compile_sampler(model, sampler, target_accept)
    owner._compiled = (key, model, step)
    _process_compiled(full_key, owner._compiled)
    return model, step, reused, time.perf_counter() - t0


def run_sampler(model, step, *, chains: int, draws: int, tune: int, random_state: Any,
                progressbar: bool = False, target_accept: float = 0.9):
    """Sample ``model`` with NUTS, reusing a compiled step; returns (idata, seconds).

    ``step`` is what :func:`compile_sampler` returned: a pymc NUTS step (pymc's sampler) or a nutpie
    compiled model whose data were already swapped (nutpie's Rust sampler, far faster per draw).
    """
    rng = _rng(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    t0 = time.perf_counter()
    if type(step).__module__.startswith("nutpie"):
        import nutpie

        idata = nutpie.sample(step, draws=int(draws), tune=int(tune), chains=int(chains), cores=1,
                              seed=seed, progress_bar=progressbar, save_warmup=False,
                              target_accept=float(target_accept))
    else:
        pm = import_pymc()
        idata = pm.sample(step=step, draws=int(draws), tune=int(tune), chains=int(chains), cores=1,
                          random_seed=seed, progressbar=progressbar, compute_convergence_checks=False,
                          model=model, quiet=not progressbar)
    return idata, time.perf_counter() - t0


def mcmc_diagnostics(idata, var_names: Sequence[str], rhat_threshold: float = 1.01,
                     warn: bool = True) -> dict:
    """R-hat, bulk/tail ESS and divergences of a fit; warns on divergences or R-hat too high.

    Returns
    -------
    dict
        ``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min``, ``divergences``, ``chains``, ``draws``,
        ``rhat_threshold`` and ``problems`` (list of messages, empty when the fit looks fine).
    """
    import arviz as az

    summ = az.summary(idata, var_names=list(var_names), kind="diagnostics")
    div = int(np.asarray(idata.sample_stats["diverging"]).sum())
    out = {
        "r_hat_max": float(np.nanmax(summ["r_hat"].to_numpy())),
        "ess_bulk_min": float(np.nanmin(summ["ess_bulk"].to_numpy())),
        "ess_tail_min": float(np.nanmin(summ["ess_tail"].to_numpy())),
        "divergences": div,
        "chains": int(idata.posterior.sizes["chain"]),
        "draws": int(idata.posterior.sizes["draw"]),
        "rhat_threshold": float(rhat_threshold),
    }
    problems = []
    if div > 0:
        problems.append(f"{div} divergent transitions: the posterior may be biased; raise "
                        "target_accept or simplify the model (fewer varying slopes)")
    if out["r_hat_max"] > rhat_threshold:
        worst = summ["r_hat"].idxmax()
        problems.append(f"R-hat {out['r_hat_max']:.3f} > {rhat_threshold} (worst: {worst}): chains "
                        "disagree; draw more (tune/draws) before trusting the intervals")
    out["problems"] = problems
    if warn:
        for msg in problems:
            warnings.warn(msg, BayesDiagnosticWarning, stacklevel=3)
    return out


def cumulative_logit_probs(eta: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Answer probabilities of a cumulative-logit model (logistic model when there is one cut point).

    Parameters
    ----------
    eta : ndarray, shape (S, m)
        Linear predictors (per draw and row).
    cut : ndarray, shape (S, K - 1)
        Increasing cut points per draw.

    Returns
    -------
    ndarray, shape (S, m, K)

    Examples
    --------
    >>> p = cumulative_logit_probs(np.zeros((1, 1)), np.array([[0.0]]))
    >>> p.round(3).tolist()
    [[[0.5, 0.5]]]
    """
    from scipy.special import expit

    cdf = expit(cut[:, None, :] - eta[:, :, None])  # (S, m, K-1)
    s, m = eta.shape
    full = np.concatenate([np.zeros((s, m, 1)), cdf, np.ones((s, m, 1))], axis=2)
    return np.clip(np.diff(full, axis=2), 0.0, 1.0)


# ------------------------------------------------------------------------------------ data prep
def _design(X: Any, name: str, n: int) -> np.ndarray:
    if X is None:
        return np.zeros((n, 0))
    arr = np.asarray(X, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise InputError(f"argument '{name}' must be a ({n}, p) design matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"argument '{name}' contains NaN/inf; covariates must be complete")
    return arr


def _group_frame(groups: Mapping[str, Any] | None, name: str, n: int) -> dict:
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise InputError(f"argument '{name}' must map a grouping-factor name to one label per row")
    out = {}
    for g, labels in groups.items():
        arr = np.asarray(labels, dtype=object)
        if arr.shape != (n,):
            raise InputError(f"argument '{name}[{g!r}]' must have one label per row ({n}), got shape {arr.shape}")
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
            raise InputError(f"argument '{name}[{g!r}]' has missing labels; give every row a level")
        out[str(g)] = arr
    return out


def _levels(*arrays) -> list:
    vals = list(dict.fromkeys(v for a in arrays for v in a.tolist()))
    try:
        return sorted(vals)
    except TypeError:
        return vals


def _index(labels: np.ndarray, levels: list, name: str) -> np.ndarray:
    pos = {v: i for i, v in enumerate(levels)}
    try:
        return np.array([pos[v] for v in labels.tolist()], dtype=np.int64)
    except KeyError as err:
        raise UnseenLevelError(
            f"argument '{name}' has level {err.args[0]!r} that the fitted model never saw; "
            "refit with it included, or pass allow_new_groups=True to draw its effect from the prior"
        ) from None


# ------------------------------------------------------------------------------------ the model
def _build_model(spec: dict, data: dict):
    """A pymc model with every data-dependent array in ``pm.Data`` (so refits reuse its compile)."""
    pm = import_pymc()
    import pytensor.tensor as pt

    K, A, p = spec["K"], spec["A"], spec["p"]
    coords = {f"level_{g}": [str(v) for v in lv] for g, lv in spec["levels"].items()}
    coords["option"] = [str(v) for v in range(K)]
    pr = spec["priors"]
    with pm.Model(coords=coords) as model:
        y = pm.Data("y", data["y"])
        s = pm.Data("s", data["s"])
        eta = 0.0
        if spec["llm_effect"] == "score":
            b_llm = pm.Normal("beta_llm", 0.0, pr["beta"])
            eta = eta + b_llm * s
        else:
            a = pm.Data("a", data["a"])
            b_cat = pm.Normal("beta_llm", 0.0, pr["beta"], shape=A - 1)
            eta = eta + pt.concatenate([pt.zeros(1), b_cat])[a]
        if p > 0:
            X = pm.Data("X", data["X"])
            beta = pm.Normal("beta", 0.0, pr["beta"], shape=p)
            eta = eta + pt.dot(X, beta)
        for g in spec["levels"]:
            gi = pm.Data(f"g_{g}", data[f"g_{g}"])
            sd_u = pm.HalfNormal(f"sigma_int_{g}", pr["sigma"])
            z_u = pm.Normal(f"z_int_{g}", 0.0, 1.0, dims=f"level_{g}")
            eta = eta + (sd_u * z_u)[gi]
            if spec["varying_slopes"]:
                sd_v = pm.HalfNormal(f"sigma_slope_{g}", pr["sigma"])
                z_v = pm.Normal(f"z_slope_{g}", 0.0, 1.0, dims=f"level_{g}")
                eta = eta + (sd_v * z_v)[gi] * s
        if K == 2:
            cut = pm.Normal("cutpoints", 0.0, pr["cut"], shape=1)
            pm.Bernoulli("obs", logit_p=eta - cut[0], observed=y)
        else:
            cut = pm.Normal("cutpoints", 0.0, pr["cut"], shape=K - 1,
                            transform=pm.distributions.transforms.ordered,
                            initval=np.linspace(-1.5, 1.5, K - 1))
            pm.OrderedLogistic("obs", eta=eta, cutpoints=cut, observed=y, compute_p=False)
    return model


def _posterior_arrays(idata, spec: dict) -> dict:
    post = idata.posterior
    flat = lambda v: np.asarray(post[v]).reshape((-1,) + np.asarray(post[v]).shape[2:])  # noqa: E731
    out = {"cut": flat("cutpoints")}
    out["beta_llm"] = flat("beta_llm")
    out["beta"] = flat("beta") if spec["p"] > 0 else np.zeros((out["cut"].shape[0], 0))
    for g in spec["levels"]:
        out[f"u_{g}"] = flat(f"sigma_int_{g}")[:, None] * flat(f"z_int_{g}")
        if spec["varying_slopes"]:
            out[f"v_{g}"] = flat(f"sigma_slope_{g}")[:, None] * flat(f"z_slope_{g}")
    return out


def _eta(draws: dict, spec: dict, s: np.ndarray, a: np.ndarray, X: np.ndarray,
         gidx: Mapping[str, np.ndarray], new_effects: Mapping[str, tuple] | None = None) -> np.ndarray:
    """Linear predictors (S, m) for rows described by LLM score/code, design and group indices."""
    if spec["llm_effect"] == "score":
        eta = draws["beta_llm"][:, None] * s[None, :]
    else:
        b = np.concatenate([np.zeros((draws["beta_llm"].shape[0], 1)), draws["beta_llm"]], axis=1)
        eta = b[:, a]
    if spec["p"] > 0:
        eta = eta + draws["beta"] @ X.T
    for g, idx in gidx.items():
        u = draws[f"u_{g}"]
        if new_effects and g in new_effects:
            u = np.concatenate([u, new_effects[g][0]], axis=1)
        eta = eta + u[:, idx]
        if spec["varying_slopes"]:
            v = draws[f"v_{g}"]
            if new_effects and g in new_effects:
                v = np.concatenate([v, new_effects[g][1]], axis=1)
            eta = eta + v[:, idx] * s[None, :]
    return eta


class HierarchicalCalibrator:
    """Hierarchical (multilevel) calibration of LLM answers against a pilot, post-stratified.

    sklearn-style: ``__init__`` stores settings; :meth:`fit` learns the calibration model on the
    pilot; :meth:`poststratify` returns population and subgroup posteriors for a population;
    :meth:`predict_proba` gives per-row calibrated answer distributions. The compiled pymc model is
    kept and reused by later ``fit`` calls with the same structure (options, LLM categories, number of
    covariates, group levels), which then only swap the data.

    Parameters
    ----------
    n_options : int
        Number of answer options ``K`` (2 gives a logistic model, more a cumulative logit).
    n_llm_options : int, optional
        Number of LLM answer categories ``A`` (default ``K``).
    scores : array-like, shape (K,), optional
        Scores of the human options for the mean (default ``1 .. K``).
    llm_scores : array-like, shape (A,), optional
        Scores of the LLM answers used as predictor (default: ``scores`` when ``A == K``, else
        ``1 .. A``).
    llm_effect : {"score", "category"}
        LLM answer as one linear term in its (centred) score, or one coefficient per category.
    varying_slopes : bool, default True
        Group-varying slopes on the LLM score in addition to group-varying intercepts.
    prior_beta, prior_cut, prior_sigma : float
        Sds of the Normal priors of the coefficients (standardised predictors) and cut points, and of
        the HalfNormal priors of the group sds.
    chains, draws, tune : int
        MCMC settings (``cores=1``).
    target_accept : float, default 0.9
    rhat_threshold : float, default 1.01
        Warn (:class:`BayesDiagnosticWarning`) when the largest R-hat exceeds it.
    sampler : {"auto", "nutpie", "pymc"}, default "auto"
        NUTS implementation: nutpie (compiled with numba, reused across refits through
        ``with_data``; tens of times faster per fit) when installed, else pymc's.
    random_state : int, Generator or None

    Attributes
    ----------
    idata_ : arviz.InferenceData
    diagnostics_ : dict
        R-hat, ESS, divergences, compile and sampling seconds.
    """

    def __init__(self, n_options: int, n_llm_options: int | None = None, scores=None,
                 llm_scores=None, llm_effect: str = "score", varying_slopes: bool = True,
                 prior_beta: float = 2.5, prior_cut: float = 2.5, prior_sigma: float = 1.0,
                 chains: int = 4, draws: int = 1000, tune: int = 1000, target_accept: float = 0.9,
                 rhat_threshold: float = 1.01, sampler: str = "auto", random_state: Any = None):
        self.n_options = n_options
        self.n_llm_options = n_llm_options
        self.scores = scores
        self.llm_scores = llm_scores
        self.llm_effect = llm_effect
        self.varying_slopes = varying_slopes
        self.prior_beta = prior_beta
        self.prior_cut = prior_cut
        self.prior_sigma = prior_sigma
        self.chains = chains
        self.draws = draws
        self.tune = tune
        self.target_accept = target_accept
        self.rhat_threshold = rhat_threshold
        self.sampler = sampler
        self.random_state = random_state

    # -------------------------------------------------------------------------------- helpers
    def _check_settings(self):
        K, A = _option_counts(self.n_options, self.n_llm_options)
        if self.llm_effect not in ("score", "category"):
            raise InputError(f"argument 'llm_effect' must be 'score' or 'category', got {self.llm_effect!r}")
        for nm in ("chains", "draws", "tune"):
            v = getattr(self, nm)
            if not isinstance(v, (int, np.integer)) or v < (1 if nm != "tune" else 0):
                raise InputError(f"argument '{nm}' must be a positive integer, got {v!r}")
        for nm in ("prior_beta", "prior_cut", "prior_sigma"):
            v = getattr(self, nm)
            if not (np.isscalar(v) and np.isfinite(v) and v > 0):
                raise InputError(f"argument '{nm}' must be a positive number, got {v!r}")
        self.scores_ = _scores(self.scores, K)
        if self.llm_scores is None:
            llm_s = self.scores_ if A == K else np.arange(1, A + 1, dtype=float)
        else:
            llm_s = np.asarray(self.llm_scores, dtype=float)
            if llm_s.shape != (A,) or not np.all(np.isfinite(llm_s)):
                raise InputError(f"argument 'llm_scores' must be {A} finite numbers")
        self.llm_scores_ = llm_s
        return K, A

    def _rows(self, llm, X, groups, prefix, allow_new=False):
        """Validate and encode rows: LLM codes, centred score, standardised X, group indices."""
        a = llm_labels(llm, f"{prefix}llm", self.A_)
        n = a.shape[0]
        Xa = _design(X, f"{prefix}X", n)
        if Xa.shape[1] != self.p_:
            raise InputError(f"argument '{prefix}X' has {Xa.shape[1]} columns; the model was fitted with {self.p_}")
        Xs = (Xa - self.x_mean_) / self.x_scale_
        gr = _group_frame(groups, f"{prefix}groups", n)
        if set(gr) != set(self.group_names_):
            raise InputError(f"argument '{prefix}groups' must name the grouping factors {self.group_names_}, got {sorted(gr)}")
        gidx, new = {}, {}
        for g in self.group_names_:
            lv = self.levels_[g]
            unseen = [v for v in dict.fromkeys(gr[g].tolist()) if v not in set(lv)]
            if unseen and not allow_new:
                _index(gr[g], lv, f"{prefix}groups[{g!r}]")  # raises UnseenLevelError
            if unseen:
                new[g] = unseen
                lv = list(lv) + unseen
            gidx[g] = _index(gr[g], lv, f"{prefix}groups[{g!r}]")
        s = self.llm_scores_[a] - self.s_center_
        return a, s, Xs, gidx, new

    # -------------------------------------------------------------------------------- fit
    def fit(self, y, llm, X=None, groups: Mapping[str, Any] | None = None,
            population_groups: Mapping[str, Any] | None = None):
        """Fit the calibration model on the pilot.

        Parameters
        ----------
        y : array-like of int, shape (n,)
            Human answers as codes ``0 .. K - 1``.
        llm : array-like, shape (n,) or (n, A)
            LLM answers (codes, or probabilities reduced to their arg-max).
        X : array-like, shape (n, p), optional
            Fixed-effect design without intercept (e.g. from formulaic, intercept column dropped).
        groups : mapping name -> labels (n,), optional
            Grouping factors with group-varying intercepts (and slopes).
        population_groups : mapping name -> labels (N,), optional
            The population's labels of the same factors: their levels get a coordinate in the model
            even when the pilot lacks them (their effects then come from the group distribution).
        """
        K, A = self._check_settings()
        self.A_ = A
        y_c = as_codes(y, "y", K)
        n = y_c.shape[0]
        a = llm_labels(llm, "llm", A)
        if a.shape[0] != n:
            raise InputError(f"arguments 'y' ({n} rows) and 'llm' ({a.shape[0]} rows) differ in length")
        Xa = _design(X, "X", n)
        gr = _group_frame(groups, "groups", n)
        pg = _group_frame(population_groups, "population_groups",
                          len(next(iter(population_groups.values()))) if population_groups else 0)
        if pg and set(pg) != set(gr):
            raise InputError(f"argument 'population_groups' must name the same factors as 'groups' ({sorted(gr)})")
        self.p_ = Xa.shape[1]
        self.x_mean_ = Xa.mean(axis=0) if self.p_ else np.zeros(0)
        sd = Xa.std(axis=0) if self.p_ else np.zeros(0)
        if self.p_ and np.any(sd == 0):
            bad = np.flatnonzero(sd == 0).tolist()
            raise InputError(f"argument 'X' has constant column(s) {bad} in the pilot (an intercept or a "
                             "level no pilot row has); drop them: the cut points act as the intercept")
        self.x_scale_ = sd
        self.group_names_ = list(gr)
        self.levels_ = {g: _levels(gr[g], pg.get(g, np.array([], dtype=object))) for g in gr}
        self.s_center_ = float(np.mean(self.llm_scores_[a]))
        a, s, Xs, gidx, _ = self._rows(a, Xa, gr, "")
        if self.llm_effect == "category":
            missing = sorted(set(range(A)) - set(a.tolist()))
            if missing:
                warnings.warn(f"LLM answer code(s) {missing} never occur in the pilot; with "
                              "llm_effect='category' their coefficients come from the prior alone",
                              PriorOnlyWarning, stacklevel=2)
        no_pilot = {g: [v for v in self.levels_[g] if v not in set(gr[g].tolist())] for g in gr}
        no_pilot = {g: v for g, v in no_pilot.items() if v}
        if no_pilot:
            warnings.warn(f"group level(s) without pilot rows: {no_pilot}; their effects are drawn from "
                          "the fitted distribution of group effects (partial pooling)",
                          PriorOnlyWarning, stacklevel=2)
        self.no_pilot_levels_ = no_pilot
        data = {"y": y_c, "s": s, "a": a, "X": Xs}
        data.update({f"g_{g}": gidx[g] for g in gr})
        spec = {"K": K, "A": A, "p": self.p_, "levels": self.levels_, "llm_effect": self.llm_effect,
                "varying_slopes": bool(self.varying_slopes),
                "priors": {"beta": float(self.prior_beta), "cut": float(self.prior_cut),
                           "sigma": float(self.prior_sigma)}}
        self.spec_ = spec
        sampler = resolve_sampler(self.sampler)
        model, step, reused, compile_s = reuse_compiled(
            self, repr(spec) + repr(float(self.target_accept)) + sampler, lambda: _build_model(spec, data),
            data, sampler, float(self.target_accept))
        idata, sample_s = run_sampler(model, step, chains=self.chains, draws=self.draws, tune=self.tune,
                                      random_state=self.random_state, target_accept=self.target_accept)
        var_names = ["cutpoints", "beta_llm"] + (["beta"] if self.p_ else [])
        for g in self.group_names_:
            var_names += [f"sigma_int_{g}", f"z_int_{g}"]
            if self.varying_slopes:
                var_names += [f"sigma_slope_{g}", f"z_slope_{g}"]
        diag = mcmc_diagnostics(idata, var_names, self.rhat_threshold)
        diag.update(compile_s=compile_s, sample_s=sample_s, n_pilot=n, sampler=sampler,
                    reused_compiled_model=reused)
        self.idata_ = idata
        self.diagnostics_ = diag
        self.draws_ = _posterior_arrays(idata, spec)
        self.n_pilot_ = n
        return self

    def _check_fitted(self):
        if not hasattr(self, "draws_"):
            raise InputError("this HierarchicalCalibrator is not fitted yet; call fit() first")

    def _new_effects(self, new: dict, rng) -> dict:
        out = {}
        for g, lv in new.items():
            S = self.draws_["cut"].shape[0]
            sd_u = np.asarray(self.idata_.posterior[f"sigma_int_{g}"]).reshape(-1)
            u = rng.standard_normal((S, len(lv))) * sd_u[:, None]
            v = None
            if self.varying_slopes:
                sd_v = np.asarray(self.idata_.posterior[f"sigma_slope_{g}"]).reshape(-1)
                v = rng.standard_normal((S, len(lv))) * sd_v[:, None]
            out[g] = (u, v)
        return out

    def predict_proba(self, llm, X=None, groups=None, *, allow_new_groups: bool = False,
                      random_state: Any = None) -> np.ndarray:
        """Posterior-mean calibrated answer distribution of each row, shape (m, K).

        Rows of a group level the model never saw raise :class:`~rectify.errors.UnseenLevelError`
        unless ``allow_new_groups=True``, which draws that level's effects from the fitted group
        distribution.
        """
        self._check_fitted()
        a, s, Xs, gidx, new = self._rows(llm, X, groups, "", allow_new=allow_new_groups)
        eff = self._new_effects(new, _rng(random_state)) if new else None
        out = np.zeros((a.shape[0], self.n_options))
        for lo in range(0, a.shape[0], 2000):
            sl = slice(lo, lo + 2000)
            eta = _eta(self.draws_, self.spec_, s[sl], a[sl], Xs[sl], {g: i[sl] for g, i in gidx.items()}, eff)
            out[sl] = cumulative_logit_probs(eta, self.draws_["cut"]).mean(axis=0)
        return out

    def poststratify(self, llm_pop, X_pop=None, groups_pop=None, *, level: float = 0.95,
                     estimand: str = "both", option_labels: Sequence | None = None,
                     random_state: Any = None) -> Result:
        """Posterior of the population (and per-group-level) shares and mean score.

        Population rows are collapsed into distinct (covariates, group levels, LLM answer) cells with
        counts; the answer distribution of each cell is computed per posterior draw and weighted by
        the cell counts. Group levels unseen at fit time get effects drawn from the fitted group
        distribution (announced with a :class:`PriorOnlyWarning`).
        """
        self._check_fitted()
        level = check_level(level)
        if estimand not in ("both", "shares", "mean"):
            raise InputError(f"argument 'estimand' must be 'both', 'shares' or 'mean', got {estimand!r}")
        K = self.n_options
        labels = [str(v) for v in (option_labels if option_labels is not None else range(1, K + 1))]
        if len(labels) != K:
            raise InputError(f"argument 'option_labels' must have {K} entries")
        a, s, Xs, gidx, new = self._rows(llm_pop, X_pop, groups_pop, "pop_", allow_new=True)
        N = a.shape[0]
        if new:
            warnings.warn(f"population group level(s) unseen when fitting: {new}; their effects are drawn "
                          "from the fitted group distribution (pass population_groups to fit() to "
                          "declare them)", PriorOnlyWarning, stacklevel=2)
        eff = self._new_effects(new, _rng(random_state)) if new else None
        gnames = self.group_names_
        key = np.column_stack([a.astype(float), Xs] + [gidx[g].astype(float) for g in gnames])
        cells, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        ca = cells[:, 0].astype(np.int64)
        cX = cells[:, 1:1 + self.p_]
        cg = {g: cells[:, 1 + self.p_ + j].astype(np.int64) for j, g in enumerate(gnames)}
        cs = self.llm_scores_[ca] - self.s_center_
        # subgroup memberships of cells: one block per grouping factor level present in the population
        blocks = [("all", np.ones(cells.shape[0], dtype=bool))]
        for g in gnames:
            lv = list(self.levels_[g]) + list(new.get(g, []))
            for j in np.unique(cg[g]):
                blocks.append((f"{g}={lv[j]}", cg[g] == j))
        S = self.draws_["cut"].shape[0]
        acc = np.zeros((len(blocks), S, K))
        chunk = max(1, int(2_000_000 // max(S * K, 1)))
        for lo in range(0, cells.shape[0], chunk):
            sl = slice(lo, lo + chunk)
            eta = _eta(self.draws_, self.spec_, cs[sl], ca[sl], cX[sl], {g: cg[g][sl] for g in gnames}, eff)
            pr = cumulative_logit_probs(eta, self.draws_["cut"]) * counts[sl][None, :, None]
            for b, (_, member) in enumerate(blocks):
                m = member[sl]
                if m.any():
                    acc[b] += pr[:, m, :].sum(axis=1)
        sizes = np.array([counts[m].sum() for _, m in blocks], dtype=float)
        shares = acc / sizes[:, None, None]
        diag = dict(self.diagnostics_)
        diag.update(n_cells=int(cells.shape[0]), group_sizes=dict(zip([b[0] for b in blocks], sizes.tolist())),
                    no_pilot_levels=self.no_pilot_levels_, new_population_levels=new)
        return draws_result(
            list(shares), [name for name, _ in blocks], labels, self.scores_, estimand, grouped=bool(gnames),
            method="bayes-hier",
            n_pilot=self.n_pilot_,
            n_population=N,
            level=level,
            tuning={"prior_beta": float(self.prior_beta), "prior_cut": float(self.prior_cut),
                    "prior_sigma": float(self.prior_sigma), "chains": int(self.chains),
                    "draws": int(self.draws), "tune": int(self.tune)},
            diagnostics=diag,
            posterior=self.idata_,
        )


def hierarchical_calibration(y, llm, llm_pop, *, n_options: int, X=None, X_pop=None,
                             groups: Mapping[str, Any] | None = None,
                             groups_pop: Mapping[str, Any] | None = None,
                             estimand: str = "both", level: float = 0.95,
                             option_labels: Sequence | None = None, **settings) -> Result:
    """Fit the hierarchical calibration model on the pilot and post-stratify over the population.

    Parameters
    ----------
    y : array-like of int, shape (n,)
        Human answers of the pilot as codes ``0 .. K - 1``.
    llm, llm_pop : array-like, shape (n,) / (N,) or probability matrices
        LLM answers of the pilot and of the population.
    n_options : int
        Number of options ``K``.
    X, X_pop : array-like, shape (n, p) / (N, p), optional
        Fixed-effect designs built from the same model spec, without intercept.
    groups, groups_pop : mapping name -> labels, optional
        Grouping factors with varying intercepts (and slopes) in pilot and population.
    estimand, level, option_labels
        As in :meth:`HierarchicalCalibrator.poststratify`.
    **settings
        Passed to :class:`HierarchicalCalibrator` (chains, draws, tune, priors, random_state, ...).

    Returns
    -------
    Result
        Posterior means, draws (intervals are their quantiles), per-group-level terms (``groups``)
        and ``posterior`` (ArviZ InferenceData).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> llm_pop = rng.integers(0, 3, 500)
    >>> y = np.clip(llm_pop[:60] + rng.integers(-1, 2, 60), 0, 2)
    >>> r = hierarchical_calibration(y, llm_pop[:60], llm_pop, n_options=3, chains=2,
    ...                              draws=100, tune=100, random_state=1)
    >>> r.terms
    ('1', '2', '3', 'mean')
    """
    model = HierarchicalCalibrator(n_options=n_options, **settings)
    pop_groups = None if groups_pop is None else groups_pop
    model.fit(y, llm, X=X, groups=groups, population_groups=pop_groups)
    return model.poststratify(llm_pop, X_pop, groups_pop, level=level, estimand=estimand,
                              option_labels=option_labels, random_state=settings.get("random_state"))
