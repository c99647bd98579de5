"""Frames larger than memory: the verbs' population read in chunks from Parquet, Arrow, DuckDB, Polars
or Dask, reduced to the sums the estimators need.

The sources and their chunks live in :mod:`rectify.frames`. The verbs (:func:`rectify.mean`, :func:`~rectify.shares`, :func:`~rectify.ols`, :func:`~rectify.logit`,
:func:`~rectify.ordinal`)
accept as ``population`` a Parquet file or folder (a path), a :mod:`pyarrow.dataset` dataset or an
Arrow table, a DuckDB relation, a Polars LazyFrame or a Dask DataFrame. The pilot stays a pandas
DataFrame. What the frame contributes is a handful of sums:

* mean and shares: ``N``, ``sum f`` and ``sum (f - c)(f - c)'`` (``c``: the pilot's mean prediction,
  a shift that keeps the second moment accurate) -- **one pass**;
* OLS: ``sum x x'`` and ``sum x f`` (pass one), then the meat ``sum r^2 x x'`` at the fit -- **two
  passes**;
* logistic and ordinal (cumulative logit): the gradient and Hessian sums at each Newton iterate --
  **one pass per iteration**, starting from the fit on the pilot's predictions (each pass also sums
  the meat).

The formula's model spec is learned on the pilot and replayed strictly on every chunk: a category
the pilot never saw, a missing covariate or a missing prediction in any chunk raises a rectify
error naming the column (the in-memory rule, chunk by chunk). The pilot side, the choice of lambda,
the finite-population correction and the intervals are those of the in-memory estimators
(:mod:`rectify.estimators.ppi`), so the results agree with them to rounding (tests: 1e-10).

Not streamed (a clear error says so): ``by=``, ``strata=``, survey weights, the ``ppi_py``
convention and quantiles -- group the frame first, or load it into memory.

Examples
--------
>>> import tempfile, os
>>> from rectify.datasets import load_misinfo, draw_pilot
>>> df = load_misinfo()
>>> path = os.path.join(tempfile.mkdtemp(), "frame.parquet")
>>> df.to_parquet(path, row_group_size=300)
>>> pilot = draw_pilot(df, 200, random_state=1).dropna(subset=["f01"])
>>> a = stream_verb("mean", dict(y="f01", pilot=pilot, population=path, predicted="f01_llm", overlap="inside"))
>>> b = __import__("rectify").mean("f01", pilot, df, predicted="f01_llm", overlap="inside")
>>> bool(abs(a.estimate[0] - b.estimate[0]) < 1e-10 and abs(a.std_error[0] - b.std_error[0]) < 1e-10)
True
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .frames import CHUNK_ROWS, _design_chunks, count_rows, is_streamed, iter_chunks  # noqa: F401 (re-exported)

__all__ = ["is_streamed", "iter_chunks", "count_rows", "stream_verb", "population_sums", "frame_totals", "CHUNK_ROWS"]


# ---------------------------------------------------------------------------------------------
# population sums -> Fit
# ---------------------------------------------------------------------------------------------
def population_sums(chunks: Iterator[np.ndarray], shift: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``N``, ``sum (f - shift)`` and ``sum (f - shift)(f - shift)'`` over chunks of an (N, d) matrix.

    Examples
    --------
    >>> n, s1, s2 = population_sums(iter([np.array([[1.0], [2.0]]), np.array([[3.0]])]), np.array([2.0]))
    >>> n, s1.tolist(), s2.tolist()
    (3, [0.0], [[2.0]])
    """
    N, s1, s2 = 0, 0.0, 0.0
    for F in chunks:
        v = F - shift
        N += len(F)
        s1 = s1 + v.sum(axis=0)
        s2 = s2 + v.T @ v
    if N == 0:
        raise InputError("argument 'population' has no rows; the frame needs at least one row")
    return N, np.asarray(s1, float), np.asarray(s2, float)


def _mean_fit_streamed(chunks, shift):
    from .estimators.models import Fit

    N, s1, s2 = population_sums(chunks, shift)
    m = s1 / N
    return Fit(shift + m, None, np.eye(len(shift)), meat=(s2 - N * np.outer(m, m)) / N), N


def _ols_fit_streamed(passes: Callable[[], Iterator], p: int):
    from .estimators.models import Fit, _solve

    N, G, b = 0, np.zeros((p, p)), np.zeros(p)
    for X, F in passes():
        N += len(X)
        G += X.T @ X
        b += X.T @ F[:, 0]
    H = G / N
    theta = _solve(H, b / N, "least-squares")
    S2 = np.zeros((p, p))
    for X, F in passes():
        u = X * (F[:, 0] - X @ theta)[:, None]
        S2 += u.T @ u
    Hinv = np.linalg.inv(H)
    return Fit(theta, None, H, 2, meat=Hinv @ (S2 / N) @ Hinv.T), N


def _logistic_fit_streamed(passes: Callable[[], Iterator], p: int, start: np.ndarray, tol: float = 1e-12,
                           max_iter: int = 100):
    """Newton's method, one pass over the frame per iterate (gradient, Hessian and meat summed together)."""
    from .errors import ConvergenceError
    from .estimators.models import Fit, _solve

    def one_pass(theta):
        N, g, H, S2 = 0, np.zeros(p), np.zeros((p, p)), np.zeros((p, p))
        for X, F in passes():
            z = F[:, 0]
            mu = 1.0 / (1.0 + np.exp(-(X @ theta)))
            N += len(X)
            g += X.T @ (mu - z)
            H += (X * (mu * (1 - mu))[:, None]).T @ X
            u = X * (z - mu)[:, None]
            S2 += u.T @ u
        return N, g, H, S2

    theta = np.array(start, float)
    for it in range(1, max_iter + 1):
        N, g, Hs, S2 = one_pass(theta)
        step = _solve(Hs / N, g / N, "logistic")
        if float(np.max(np.abs(step))) < tol:
            break
        theta = theta - step
    else:
        raise ConvergenceError(f"logistic regression on the streamed frame did not converge in {max_iter} passes")
    H = Hs / N
    Hinv = np.linalg.inv(H)
    return Fit(theta, None, H, it, meat=Hinv @ (S2 / N) @ Hinv.T), N


def _ordinal_fit_streamed(passes: Callable[[], Iterator], p: int, start: np.ndarray, tol: float = 1e-10,
                          max_iter: int = 100):
    """Newton's method for the cumulative-logit model, one pass over the frame per iterate (score,
    Hessian and meat summed together by the estimators' own per-block code)."""
    from .errors import ConvergenceError
    from .estimators.models import Fit, _ordinal_pass, _solve

    def one_pass(theta):
        N, g, Hs, S2 = 0, 0.0, 0.0, 0.0
        for X, F in passes():
            _, gc, Hc, S2c, _ = _ordinal_pass(X, F, None, theta[:p], theta[p:], hessian=True, meat=True,
                                              loglik=False)
            N, g, Hs, S2 = N + len(X), g + gc, Hs + Hc * len(X), S2 + S2c
        return N, np.asarray(g, float), Hs / N, S2

    theta = np.array(start, float)
    for it in range(1, max_iter + 1):
        N, g, H, S2 = one_pass(theta)
        step = _solve(H, -g / N, "ordinal")
        if float(np.max(np.abs(step))) < tol:
            break
        theta = theta - step
    else:
        raise ConvergenceError(f"ordinal model on the streamed frame did not converge in {max_iter} passes")
    Hinv = np.linalg.inv(H)
    return Fit(theta, None, H, it, meat=Hinv @ (S2 / N) @ Hinv.T), N


# ---------------------------------------------------------------------------------------------
# the verbs on a streamed frame
# ---------------------------------------------------------------------------------------------
_REFUSED = {"by": None, "strata": None, "weights": None, "weights_pop": None}


def _refuse(verb: str, args: Mapping[str, Any]) -> None:
    for name, default in _REFUSED.items():
        if args.get(name, default) is not default:
            raise InputError(f"argument '{name}' is not supported with a streamed population ({verb}); filter or "
                             "group the frame first (e.g. one Parquet folder per group), or load it into memory")
    if args.get("convention", "small-sample") != "small-sample":
        raise InputError("argument 'convention': a streamed population supports only 'small-sample'")
    if args.get("overlap", "auto") == "auto" and args.get("method", "ppi++") != "naive":
        raise InputError("argument 'overlap': with a streamed population say whether the pilot's people are frame "
                         "rows: overlap='inside' or overlap='separate' (auto-detection needs the frame in memory)")


def _finish(kind, fit_y, fit_f, fit_pop, method, args, n, N, n_par, terms, diagnostics):
    from dataclasses import replace

    from . import estimand as E
    from .estimators.ppi import _check_common, _difference_estimator, _lambda_tuning, _target_fields
    from .result import Result

    lambda_mode = args.get("lambda_mode", "overall")
    bounds = _check_common(method, "small-sample", args.get("level", 0.95), lambda_mode, args.get("lambda_bounds"))
    target = E.core_target(args.get("estimand"), args.get("overlap", "separate"), "small-sample")
    est, cov, df, lam_vec = _difference_estimator(fit_y, fit_f, fit_pop, method, args.get("lam"), lambda_mode, bounds,
                                                  n, N, n_par, "small-sample", target, N)
    tuning = {} if lam_vec is None else _lambda_tuning(lam_vec, lambda_mode, method)
    r = Result(est, cov, list(terms), method, kind, n, N, level=args.get("level", 0.95), df=df, tuning=tuning,
               diagnostics=diagnostics, **_target_fields(target, N, method))
    return replace(r, diagnostics={**r.diagnostics, "streamed": True})


def stream_verb(verb: str, args: Mapping[str, Any]) -> Any:
    """Run ``verb`` (``"mean"``, ``"shares"``, ``"ols"``, ``"logit"``) with a streamed ``population``.

    ``args`` are the verb's arguments by name (the verbs pass their ``locals()``). See the module
    notes for what is streamed and what is refused.
    """
    from .estimators._validate import check_method

    if not is_streamed(args.get("population")):
        raise InputError(f"argument 'population' must be a pandas DataFrame or a frame on disk (a Parquet path, an "
                         f"Arrow table or dataset, a DuckDB relation, a Polars LazyFrame, a Dask DataFrame); got "
                         f"{type(args.get('population')).__name__}")
    method = args.get("method", "ppi++")
    check_method(method)
    if verb not in ("mean", "shares", "ols", "logit", "ordinal"):
        raise InputError(f"{verb}: a streamed population is supported by mean, shares, ols, logit and ordinal; load "
                         "the frame into memory (or a sample of it) for this verb")
    _refuse(verb, args)
    pilot = args.get("pilot")
    if not isinstance(pilot, pd.DataFrame) or len(pilot) == 0:
        raise InputError("argument 'pilot' must be a non-empty pandas DataFrame (the pilot is held in memory)")
    if method in ("ppi", "ppi++", "naive") and args.get("predicted") is None:
        raise InputError(f"method {method!r} needs 'predicted', the column of LLM predictions; pass predicted=...")
    if verb in ("mean", "shares"):
        return _stream_mean(verb, args, pilot, method)
    if verb == "ordinal":
        return _stream_ordinal(args, pilot, method)
    return _stream_regression(verb, args, pilot, method)


def _stream_mean(verb, args, pilot, method):
    from .estimators.ppi import _as_shares_matrix, _mean_fit

    source, pred = args["population"], args.get("predicted")
    col = args["y"] if verb == "mean" else args["item"]
    if col not in pilot.columns:
        raise InputError(f"column '{col}' is not in the pilot; check the name")
    pred_cols = [pred] if isinstance(pred, str) else list(pred or [])
    if verb == "mean":
        Y = pilot[[col]].to_numpy(dtype=float)
        F = pilot[pred_cols].to_numpy(dtype=float) if method in ("ppi", "ppi++") else None
        labels, terms = None, [f"mean({col})"]
    else:
        labels = args.get("categories")
        if labels is None:
            raise InputError("argument 'categories': a streamed population needs the item's options in order "
                             "(categories=[1, 2, 3, 4]); they cannot be read off a frame that is not in memory")
        labels = list(labels)
        Y = _as_shares_matrix(pilot[col].to_numpy(), labels, "y")
        F = None
        if method in ("ppi", "ppi++"):
            F = _as_shares_matrix(pilot[pred_cols[0]].to_numpy() if len(pred_cols) == 1 else
                                  pilot[pred_cols].to_numpy(dtype=float), labels, "yhat")
        terms = [f"share[{c}]" for c in labels]
    if method != "naive" and np.isnan(Y).any():
        raise InputError(f"column '{col}' of the pilot has missing answers; drop those pilot rows first")
    n = len(pilot) if method != "naive" else 0
    w = np.ones(n)
    fit_y = _mean_fit(Y, w) if method != "naive" else None
    fit_f = _mean_fit(F, w) if F is not None else None
    fit_pop, N = None, 0
    if method != "classical":
        one_hot = labels if verb == "shares" else None
        shift = fit_f.theta if fit_f is not None else np.zeros(Y.shape[1])
        fit_pop, N = _mean_fit_streamed((F_ for _, F_ in _design_chunks(source, None, [], pred_cols, one_hot)), shift)
    else:
        N = count_rows(source)
    r = _finish("mean", fit_y, fit_f, fit_pop, method, args, n, N, 1, terms, {})
    if verb == "mean":
        return r
    from dataclasses import replace

    from .estimators.ppi import _share_result  # the in-memory verb's interval, projection and warnings

    r = _share_result(r, None if method == "naive" else Y, labels, method=method, lam=args.get("lam"), weights=None,
                      estimand=args.get("estimand"), overlap=args.get("overlap", "separate"), convention="small-sample")
    return replace(r, terms=tuple(f"{col}={c}" for c in labels))


def _stream_regression(verb, args, pilot, method):
    from dataclasses import replace

    from .estimators.models import fit_logistic, fit_ols
    from .estimators.ppi import _fit_in
    from .formula import _spec_variables, build_design, outcome_numbers, plain_columns

    formula, source, pred = args["formula"], args["population"], args.get("predicted")
    mf = build_design(formula, pilot, None)
    if not isinstance(pred, (str, type(None))):
        raise InputError("argument 'predicted': a streamed population takes one column of predictions for ols/logit")
    X = mf.X
    Y = np.asarray(outcome_numbers(mf.y, mf.outcome), float)
    n, p = X.shape
    w = np.ones(n)
    fitter = fit_ols if verb == "ols" else fit_logistic
    kind = "ols" if verb == "ols" else "logistic"
    if verb == "logit":
        _check_binary(Y, mf.outcome, "pilot")
    fit_y = _fit_in(fitter, X, Y, w, "the pilot's human answers") if method != "naive" else None
    fit_f = None
    if method in ("ppi", "ppi++"):
        F = pilot[[pred]].to_numpy(dtype=float)[:, 0]
        if verb == "logit":
            _check_binary(F, pred, "pilot")
        fit_f = _fit_in(fitter, X, F, w, "the LLM's predictions for the pilot")
    variables = _spec_variables(mf.spec)
    plain = plain_columns(mf.spec, mf.terms)  # every term a numeric column: no formulaic on the chunks

    def passes():
        for Xc, Fc in _design_chunks(source, mf.spec, variables, [pred], plain=plain):
            if verb == "logit":
                _check_binary(Fc[:, 0], pred, "population")
            yield Xc, Fc

    fit_pop, N = None, 0
    if method != "classical":
        if verb == "ols":
            fit_pop, N = _ols_fit_streamed(passes, p)
        else:
            start = fit_f.theta if fit_f is not None else fit_y.theta if fit_y is not None else np.zeros(p)
            fit_pop, N = _logistic_fit_streamed(passes, p, start)
    else:
        N = count_rows(source)
    diag = {"iterations": {k: f.iterations for k, f in (("pilot", fit_y), ("pilot_pred", fit_f),
                                                         ("population", fit_pop)) if f is not None}}
    r = _finish(kind, fit_y, fit_f, fit_pop, method, args, n, N, p, mf.terms, diag)
    return replace(r, diagnostics={**r.diagnostics, "formula": formula})


def _stream_ordinal(args, pilot, method):
    """The cumulative-logit verb: the design without intercept, answers and predictions as (n, K)
    matrices over ``categories`` (default: the pilot's answers, sorted), thresholds after the slopes."""
    from dataclasses import replace

    from .estimators.models import fit_ordinal
    from .estimators.ppi import _as_shares_matrix, _fit_in
    from .formula import _spec_variables, build_design, plain_columns

    formula, source, pred = args["formula"], args["population"], args.get("predicted")
    mf = build_design(formula, pilot, None, intercept=False)
    cats = args.get("categories")
    if cats is None and method == "naive":
        raise InputError("pass 'categories' (the item's options in order): with method='naive' they cannot be "
                         "read off a frame that is not in memory")
    cats = list(cats) if cats is not None else sorted(set(np.asarray(mf.y).tolist()))
    if len(cats) < 2:
        raise InputError("argument 'categories' must list at least two options")
    pred_cols = [pred] if isinstance(pred, str) else list(pred or [])
    X, (n, p), w = mf.X, mf.X.shape, np.ones(mf.X.shape[0])
    fit_y = _fit_in(fit_ordinal, X, _as_shares_matrix(mf.y, cats, "y"), w, "the pilot's human answers") \
        if method != "naive" else None
    fit_f = None
    if method in ("ppi", "ppi++"):
        F = pilot[pred_cols[0]].to_numpy() if len(pred_cols) == 1 else pilot[pred_cols].to_numpy(dtype=float)
        fit_f = _fit_in(fit_ordinal, X, _as_shares_matrix(F, cats, "yhat"), w, "the LLM's predictions for the pilot")
    plain = plain_columns(mf.spec, mf.terms)
    full = list(build_design(formula, pilot, None).terms)  # the spec's columns, the intercept included
    drop = [j for j, t in enumerate(full) if t not in mf.terms]

    def passes():
        for Xc, Fc in _design_chunks(source, mf.spec, _spec_variables(mf.spec), pred_cols, labels=cats, plain=plain):
            yield (np.delete(Xc, drop, axis=1) if Xc.shape[1] == len(full) and drop else Xc), Fc

    fit_pop, N = None, 0
    if method != "classical":
        start = fit_f.theta if fit_f is not None else fit_y.theta if fit_y is not None else None
        if start is None:  # naive: start from a fit on the first chunk
            X1, F1 = next(iter(passes()))
            start = fit_ordinal(X1, F1, None, keep_psi=False).theta
        fit_pop, N = _ordinal_fit_streamed(passes, p, start)
    else:
        N = count_rows(source)
    thr = [f"threshold[{a}|{b}]" for a, b in zip(cats[:-1], cats[1:])]
    diag = {"iterations": {k: f.iterations for k, f in (("pilot", fit_y), ("pilot_pred", fit_f),
                                                         ("population", fit_pop)) if f is not None}}
    r = _finish("ordinal", fit_y, fit_f, fit_pop, method, args, n, N, p + len(thr), mf.terms + thr, diag)
    return replace(r, diagnostics={**r.diagnostics, "formula": formula})


def _check_binary(z: np.ndarray, col: str, frame: str) -> None:
    if ((z < 0) | (z > 1)).any():
        raise InputError(f"column '{col}' of the {frame} must hold 0/1 answers or probabilities in [0, 1] for logit")


# ---------------------------------------------------------------------------------------------
# calibration totals
# ---------------------------------------------------------------------------------------------
def frame_totals(source: Any, sample: pd.DataFrame, vars: Sequence[str] | None = None,
                 formula: str | None = None) -> dict:
    """Population totals for :func:`rectify.weighting.calibrate`, from a streamed frame in one pass.

    With ``vars``: ``{column: {level: count}}`` for categorical columns and ``{column: total}`` for
    numeric ones -- pass it as ``margins=``. With ``formula`` (no response): the totals of the model
    matrix's columns, the spec learned on ``sample`` and replayed strictly on every chunk -- pass it
    as ``totals=`` with the same ``formula``. A category of the frame that the sample never shows, or
    a missing value, raises a rectify error naming the column.

    Examples
    --------
    >>> import pyarrow as pa
    >>> frame = pa.table({"g": ["a", "b", "b", "a", "b"], "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    >>> sample = pd.DataFrame({"g": ["a", "b"], "x": [1.0, 2.0]})
    >>> frame_totals(frame, sample, vars=["g", "x"])
    {'g': {'a': 2.0, 'b': 3.0}, 'x': 15.0}
    >>> frame_totals(frame, sample, formula="~ x + g")
    {'Intercept': 5.0, 'x': 15.0, 'g[T.b]': 3.0}
    """
    from .errors import ConfigError, MissingCovariateError, UnseenLevelError

    if not isinstance(sample, pd.DataFrame) or len(sample) == 0:
        raise InputError("argument 'sample' must be a non-empty pandas DataFrame (the pilot to be calibrated)")
    if (vars is None) == (formula is None):
        raise ConfigError("give 'vars' (column names) or 'formula' (e.g. '~ age + C(region)'), one of them")
    if formula is not None:
        from .formula import _spec_variables, build_design

        f = formula if "~" in formula else "~ " + formula
        if f.split("~", 1)[0].strip():
            raise ConfigError(f"a calibration formula has no response: write '~ {f.split('~', 1)[1].strip()}'")
        mf = build_design(f, sample, None)
        T = np.zeros(len(mf.terms))
        for X, _ in _design_chunks(source, mf.spec, _spec_variables(mf.spec), []):
            T += X.sum(axis=0)
        return {str(t): float(v) for t, v in zip(mf.terms, T)}
    vars = [vars] if isinstance(vars, str) else list(vars)
    missing = [v for v in vars if v not in sample.columns]
    if missing:
        raise MissingCovariateError(f"columns {missing} are not in the sample; check the names")
    categorical = {v: not (pd.api.types.is_numeric_dtype(sample[v]) and not pd.api.types.is_bool_dtype(sample[v]))
                   for v in vars}
    out: dict[str, Any] = {v: ({} if categorical[v] else 0.0) for v in vars}
    start = 0
    for chunk in iter_chunks(source, vars):
        for v in vars:
            s = chunk[v]
            if s.isna().any():
                raise MissingCovariateError(f"column {v!r} of the population has {int(s.isna().sum())} missing values in "
                                            f"rows {start}..{start + len(s) - 1}; impute or remove those rows first")
            if categorical[v] or not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
                if not categorical[v]:
                    raise InputError(f"column {v!r} is numeric in the sample but not in the population; recode it")
                for level, count in s.value_counts(sort=False).items():
                    if count:
                        out[v][level] = out[v].get(level, 0.0) + float(count)
            else:
                out[v] += float(s.to_numpy(dtype=float).sum())
        start += len(chunk)
    for v in vars:
        if categorical[v]:
            unseen = [lev for lev in out[v] if lev not in set(sample[v].unique())]
            if unseen:
                raise UnseenLevelError(f"margin {v!r}: population categories {unseen} never occur in the sample; "
                                       "collapse them with a neighbouring category before calibrating")
    return out
