"""Formula verbs: ``mean``, ``shares``, ``quantile``, ``ols``, ``logit``, ``ordinal``.

Each verb takes column names (or a formula), a ``pilot`` DataFrame with human answers and a
``population`` DataFrame (the frame) with the LLM's predictions, builds the arrays -- the model spec is
learned once on the pilot and replayed strictly on the population -- and calls the numeric core in
:mod:`rectify.estimators.ppi`. ``by=`` gives one estimate per subgroup; ``strata=`` (mean and shares)
gives stratified PPI++ with one lambda per stratum.

Why one module of ~630 lines: the six verbs share one way of reading the frame's columns (the fast
paths that read plain columns without a copy, and the checked reads that name a bad column when the
core refuses), and the fall-back from one to the other has to stay next to the verbs that rely on it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, RectifyError
from ._checks import as_label, check_not_datetime, check_number, check_numeric_text
from .formula import ModelFrame, build_design, check_columns, outcome_numbers, plain_columns, plain_design
from .result import Result

__all__ = ["mean", "shares", "quantile", "ols", "logit", "ordinal"]


def _frame(df, name, required=True):
    if df is None:
        if required:
            raise InputError(f"argument '{name}' is required for this method; pass a DataFrame")
        return None
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"argument '{name}' must be a pandas DataFrame, got {type(df).__name__}; wrap it with "
                         f"pd.DataFrame(...) and name its columns")
    if len(df) == 0:
        raise InputError(f"argument '{name}' is empty; pass the {name} rows (check any filtering done before)")
    return df


def _weights(w, df, name, frame):
    if w is None or df is None:
        return None
    if isinstance(w, str):
        check_columns(df, [w], frame)
        return df[w].to_numpy(dtype=float)
    arr = np.asarray(w, dtype=float)
    if arr.shape != (len(df),):
        raise InputError(f"argument '{name}' must be a column name or one weight per {frame} row ({len(df)})")
    return arr


def _needs(method):
    from rectify.estimators._validate import check_method
    check_method(method)
    return method != "naive", method != "classical"


def _placement(pilot, population, estimand, overlap, id, predicted, method) -> dict:
    """The estimand and the pilot's place for the core (see :mod:`rectify.estimand`): ``overlap`` resolved
    to ``"inside"`` or ``"separate"`` once, before any subgroup split."""
    from .estimand import pilot_in_frame, resolve_estimand

    resolve_estimand(estimand)  # refuse a bad value before any work
    if predicted is not None and not isinstance(predicted, (str, list, tuple)):
        predicted = as_label(predicted, "predicted")  # a Series or an array: refused by name
    if method == "naive" or pilot is None or population is None:
        return {"estimand": estimand, "overlap": "separate" if overlap == "auto" else overlap, "id": None}
    inside = pilot_in_frame(_frame(pilot, "pilot"), _frame(population, "population"), overlap, id, predicted)
    return {"estimand": estimand, "overlap": "inside" if inside else "separate", "id": None}


def _target_args(place: dict, population) -> dict:
    """Core keywords: estimand, overlap and the frame size for the finite-population correction."""
    return {"estimand": place["estimand"], "overlap": place["overlap"],
            "frame_size": None if population is None else len(population)}


def _column(df, col, frame):
    col = as_label(col, "column") if not isinstance(col, str) else col
    check_columns(df, [col], frame)
    return df[col].to_numpy()


def _numeric_column(df, col, frame):
    col = as_label(col, "column") if not isinstance(col, str) else col
    check_columns(df, [col], frame)
    s = df[col]
    check_not_datetime(s, col, frame)
    check_numeric_text(s, col, frame)
    if not pd.api.types.is_numeric_dtype(s):
        raise InputError(f"column '{col}' of the {frame} must be numeric (got {s.dtype}); recode the answers as numbers")
    arr = s.to_numpy(dtype=float)
    _refuse_infinite(arr, col, frame)
    return arr


def _refuse_infinite(arr, col, frame):
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise InputError(f"column '{col}' of the {frame} has {n_inf} infinite value(s); rectify does not drop or clip "
                         f"them: fix or remove those rows before estimating")


def _call_core(core, columns: dict, *args, **kwargs):
    """Call a numeric core; an InputError that names a core argument also names the user's column."""
    try:
        return core(*args, **kwargs)
    except InputError as err:
        msg = str(err)
        notes = [f"'{arg}' is {where}" for arg, where in columns.items() if where and f"'{arg}'" in msg]
        if not notes:
            raise
        raise type(err)(f"{msg} (here {'; '.join(notes)})") from None


def _describe(col, frame):
    """How a user's column(s) appear in a message, e.g. "column 'trust' of the pilot"."""
    if col is None:
        return None
    if isinstance(col, str):
        return f"column '{col}' of the {frame}"
    return f"columns {list(col)} of the {frame}"


def _core_columns(y, predicted, weights, weights_pop, strata=None, x_terms=None):
    cols = {"y": _describe(y, "pilot"), "yhat": _describe(predicted, "pilot"),
            "yhat_pop": _describe(predicted, "population"),
            "weights": _describe(weights, "pilot") if isinstance(weights, str) else None,
            "weights_pop": _describe(weights_pop, "population") if isinstance(weights_pop, str) else None,
            "strata": _describe(strata, "pilot"), "strata_pop": _describe(strata, "population")}
    if x_terms is not None:
        cols["X"] = f"the pilot's design of {x_terms!r}"
        cols["X_pop"] = f"the population's design of {x_terms!r}"
    return cols


def _by(fn: Callable[..., Result], by: str, pilot, population, kwargs) -> Result:
    """Run ``fn`` per subgroup and stack the results (groups are independent: block-diagonal cov)."""
    by = as_label(by, "by")
    ref = population if population is not None else pilot
    check_columns(ref, [by], "population" if population is not None else "pilot")
    if pilot is not None:
        check_columns(pilot, [by], "pilot")
    levels = list(pd.unique(ref[by]))
    try:
        levels = sorted(levels)
    except TypeError:
        pass
    if pilot is not None:
        extra = set(pd.unique(pilot[by])) - set(levels)
        if extra:
            raise InputError(f"pilot groups {sorted(map(str, extra))} of '{by}' are absent from the population")
    results, groups = [], []
    for g in levels:
        sub_p = None if pilot is None else pilot[pilot[by] == g]
        sub_q = None if population is None else population[population[by] == g]
        if sub_p is not None and len(sub_p) == 0:
            raise InputError(
                f"group {g!r} of '{by}' has population rows but no pilot rows; a subgroup estimate needs human "
                f"answers from that group (sample it, or merge it with a neighbouring group)"
            )
        try:
            r = fn(pilot=sub_p, population=sub_q, **kwargs)
        except InputError as err:
            raise type(err)(f"in group {g!r} of '{by}': {err}") from None
        results.append(r)
        groups.extend([str(g)] * len(r.terms))
    from scipy.linalg import block_diag

    first = results[0]
    df = None if first.df is None else np.concatenate([r.df for r in results])
    lam = {str(g): r.tuning.get("lambda") for g, r in zip(levels, results) if "lambda" in r.tuning}
    tuning = {"lambda_by_group": lam} if lam else {}
    return Result(
        np.concatenate([r.estimate for r in results]),
        block_diag(*[r.cov for r in results]),
        [t for r in results for t in r.terms],
        first.method,
        first.estimand,
        sum(r.n_pilot for r in results),
        sum(r.n_population for r in results),
        level=first.level,
        df=df,
        tuning=tuning,
        diagnostics={"by": by, "groups": [str(g) for g in levels]},
        groups=groups,
        bounds=first.bounds,
        target=first.target,
        pilot_in_frame=first.pilot_in_frame,
        # shares (logit-scale) and quantiles (test-inverted) have their own intervals: keep each group's
        interval_fn=None if all(r.interval_fn is None for r in results) else partial(_stacked_intervals,
                                                                                      parts=tuple(results)),
    )


def _stacked_intervals(level: float, *, parts: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The intervals of subgroup results, stacked in their order."""
    ints = [r.conf_int(level) for r in parts]
    return np.concatenate([lo for lo, _ in ints]), np.concatenate([hi for _, hi in ints])


def _inputs(y, pilot, population, predicted, method, strata, read_y, read_pred, what, read_pop=None):
    """Frames, answers, predictions and strata of a one-variable verb, validated by name (``read_pop``:
    how the frame's predictions are read, by default as the pilot's)."""
    need_pilot, need_pop = _needs(method)
    y = as_label(y, "y" if read_y is _numeric_column else "item")
    predicted = predicted if predicted is None or read_pred is _prob_columns else as_label(predicted, "predicted")
    strata = None if strata is None else as_label(strata, "strata")
    pilot = _frame(pilot, "pilot", need_pilot)
    population = _frame(population, "population", need_pop)
    if method in ("ppi", "ppi++", "naive") and predicted is None:
        raise InputError(f"method {method!r} needs 'predicted', {what}; pass predicted=... (or use "
                         f"method='classical' for the pilot alone)")
    yv = read_y(pilot, y, "pilot") if need_pilot else None
    f = read_pred(pilot, predicted, "pilot") if method in ("ppi", "ppi++") else None
    fp = (read_pop or read_pred)(population, predicted, "population") if need_pop else None
    s = sp = None
    if strata is not None:
        s = _column(pilot, strata, "pilot") if need_pilot else None
        sp = _column(population, strata, "population")
    return pilot, population, yv, f, fp, s, sp


def mean(y: str, pilot: pd.DataFrame | None = None, population: pd.DataFrame | None = None,
         predicted: str | None = None, method: str = "ppi++", *, weights=None, weights_pop=None,
         by: str | None = None, strata: str | None = None, lam=None, lambda_bounds=None,
         level: float = 0.95, convention: str = "small-sample", estimand: str | None = None, overlap: str = "auto",
         id: str | None = None) -> Result:
    """Population mean of a numeric answer (e.g. a 1-5 score), corrected with the LLM's predictions.

    Parameters
    ----------
    y : str
        Column of human answers in ``pilot``.
    pilot : DataFrame
        Respondents with human answers (and the LLM's prediction for them).
    population : DataFrame
        The frame: everyone, with the LLM's predictions.
    predicted : str
        Column of LLM predictions (in both frames).
    method : {"classical", "naive", "ppi", "ppi++"}
    weights, weights_pop : str or array, optional
        Survey weights (column names or arrays) of pilot and population rows.
    by : str, optional
        Estimate separately in each subgroup of this column.
    strata : str, optional
        Stratified PPI++: one lambda per stratum, combined with population stratum shares.
    lam, lambda_bounds, level, convention
        See :func:`rectify.estimators.ppi.ppi_mean`.
    estimand : {"frame", "superpopulation"}, optional
        The finite frame's quantity (default) or the superpopulation's; see :mod:`rectify.estimand`.
    overlap : {"auto", "inside", "separate"}
        Whether the pilot's people are frame rows. ``"auto"`` detects it from ``id`` or the index labels
        (``draw_pilot`` keeps the frame's index) and refuses input it cannot tell apart.
    id : str, optional
        Respondent-id column present in both frames, used by ``overlap="auto"``.

    Returns
    -------
    Result

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo, draw_pilot
    >>> df = load_misinfo()
    >>> pilot = draw_pilot(df, 200, random_state=1).dropna(subset=["f01"])
    >>> r = rectify.mean("f01", pilot, df, predicted="f01_llm")
    >>> r.method
    'ppi++'
    """
    if population is not None and not isinstance(population, pd.DataFrame):  # a frame on disk: rectify.streaming
        from .streaming import stream_verb
        return stream_verb("mean", locals())
    kwargs = dict(y=y, predicted=predicted, method=method, weights=weights, weights_pop=weights_pop,
                  strata=strata, lam=lam, lambda_bounds=lambda_bounds, level=level, convention=convention)
    kwargs.update(place := _placement(pilot, population, estimand, overlap, id, predicted, method))
    if by is not None:
        return _by(mean, by, pilot, population, kwargs)
    run = partial(_mean_run, y, pilot, population, predicted, method, weights, weights_pop, strata, lam,
                  lambda_bounds, level, convention, place)
    try:
        return run(_frame_numbers)
    except RectifyError:
        label = predicted[0] if isinstance(predicted, (list, tuple)) and len(predicted) == 1 else predicted
        col = _plain_numeric(population, label) if isinstance(population, pd.DataFrame) and \
            isinstance(label, str) else None
        if col is not None and np.isfinite(col.sum()):
            raise  # the checked read of the frame's column passes: it would end in the same error
    return run(_numeric_column)  # e.g. a NaN or infinite prediction in the frame: refused by name, as always


def _frame_numbers(df, col, frame):
    """The frame's plain numeric prediction column without its own NaN/inf pass: the core's sums over it
    are finite only when every value is (:func:`mean` then reads it again, checked, to name the fault)."""
    arr = _plain_numeric(df, col) if isinstance(col, str) else None
    return _numeric_column(df, col, frame) if arr is None else arr


def _mean_run(y, pilot, population, predicted, method, weights, weights_pop, strata, lam, lambda_bounds, level,
              convention, place, read_pop):
    from rectify.estimators.ppi import ppi_mean

    pilot, population, yv, f, fp, s, sp = _inputs(y, pilot, population, predicted, method, strata,
                                                  _numeric_column, _numeric_column,
                                                  "the column of LLM predictions", read_pop)
    cols = _core_columns(y, predicted, weights, weights_pop, strata)
    return _call_core(ppi_mean, cols, yv, f, fp, method, weights=_weights(weights, pilot, "weights", "pilot"),
                      weights_pop=_weights(weights_pop, population, "weights_pop", "population"), lam=lam,
                      lambda_bounds=lambda_bounds, strata=s, strata_pop=sp, level=level, convention=convention,
                      **_target_args(place, population), terms=[f"mean({as_label(y, 'y')})"])


def _prob_columns(df, predicted, frame):
    if isinstance(predicted, str):
        return _column(df, predicted, frame)
    P = _plain_probs(df, predicted)
    if P is not None and P.max() < np.inf:
        return P  # plain, non-negative and finite: none of the checks below can fail
    cols = list(predicted)
    check_columns(df, cols, frame)
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise InputError(f"probability columns {bad} of the {frame} must be numeric; give one probability per option")
    P = df[cols].to_numpy(dtype=float)
    _refuse_infinite(P, cols, frame)
    if (P < 0).any():
        raise InputError(f"probability columns {cols} of the {frame} have negative values; give one non-negative "
                         f"distribution over the options per row (check how they were computed)")
    return P


def shares(item: str, pilot: pd.DataFrame | None = None, population: pd.DataFrame | None = None,
           predicted: str | Sequence[str] | None = None, method: str = "ppi++", *, categories=None,
           weights=None, weights_pop=None, by: str | None = None, strata: str | None = None, lam=None,
           lambda_bounds=None, level: float = 0.95, convention: str = "small-sample", estimand: str | None = None,
           overlap: str = "auto", id: str | None = None) -> Result:
    """Population option shares of an item (a probability vector with its joint covariance).

    ``predicted`` is a column of predicted answers (labels) or a list of columns holding the LLM's
    probability for each option, in the order of ``categories``. ``estimand``, ``overlap`` and ``id``
    as in :func:`mean`.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo, draw_pilot
    >>> df = load_misinfo()
    >>> df["f01_llm_mode"] = df["f01_llm"].round()
    >>> pilot = draw_pilot(df, 200, random_state=1).dropna(subset=["f01"])
    >>> r = rectify.shares("f01", pilot, df, predicted="f01_llm_mode", categories=[1, 2, 3, 4])
    >>> round(float(r.estimate.sum()), 10)
    1.0
    """
    if population is not None and not isinstance(population, pd.DataFrame):  # a frame on disk: rectify.streaming
        from .streaming import stream_verb
        return stream_verb("shares", locals())
    kwargs = dict(item=item, predicted=predicted, method=method, categories=categories, weights=weights,
                  weights_pop=weights_pop, strata=strata, lam=lam, lambda_bounds=lambda_bounds, level=level,
                  convention=convention)
    kwargs.update(place := _placement(pilot, population, estimand, overlap, id, predicted, method))
    if by is not None:
        return _by(shares, by, pilot, population, kwargs)
    from rectify.estimators.ppi import ppi_shares

    pilot, population, yv, f, fp, s, sp = _inputs(item, pilot, population, predicted, method, strata, _column,
                                                  _prob_columns,
                                                  "a column of predicted answers or option-probability columns")
    cols = _core_columns(item, predicted, weights, weights_pop, strata)
    r = _call_core(ppi_shares, cols, yv, f, fp, method, categories=categories,
                   weights=_weights(weights, pilot, "weights", "pilot"),
                   weights_pop=_weights(weights_pop, population, "weights_pop", "population"), lam=lam,
                   lambda_bounds=lambda_bounds, strata=s, strata_pop=sp, level=level, convention=convention,
                   **_target_args(place, population))
    return replace(r, terms=tuple(f"{as_label(item, 'item')}={c}" for c in r.diagnostics["categories"]))


def quantile(y: str, q: float = 0.5, pilot: pd.DataFrame | None = None, population: pd.DataFrame | None = None,
             predicted: str | None = None, method: str = "ppi++", *, weights=None, weights_pop=None,
             by: str | None = None, lam=None, level: float = 0.95, convention: str = "small-sample",
             estimand: str | None = None, overlap: str = "auto", id: str | None = None) -> Result:
    """Population quantile of a numeric answer (see :func:`rectify.estimators.ppi.ppi_quantile`).

    ``estimand``, ``overlap`` and ``id`` as in :func:`mean`.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo, draw_pilot
    >>> df = load_misinfo()
    >>> r = rectify.quantile("age", 0.5, draw_pilot(df, 200, random_state=1), method="classical")
    >>> r.terms
    ('quantile[0.5](age)',)
    """
    if population is not None and not isinstance(population, pd.DataFrame):  # a frame on disk: rectify.streaming
        from .streaming import stream_verb
        return stream_verb("quantile", locals())
    check_number(q, "q", low=0, high=1, low_open=True, high_open=True,
                 hint="; give one probability strictly between 0 and 1, e.g. 0.5 (call quantile once per q)")
    kwargs = dict(y=y, q=q, predicted=predicted, method=method, weights=weights, weights_pop=weights_pop,
                  lam=lam, level=level, convention=convention)
    kwargs.update(place := _placement(pilot, population, estimand, overlap, id, predicted, method))
    if by is not None:
        return _by(quantile, by, pilot, population, kwargs)
    from rectify.estimators.ppi import ppi_quantile

    pilot, population, yv, f, fp, _, _ = _inputs(y, pilot, population, predicted, method, None,
                                                 _numeric_column, _numeric_column,
                                                 "the column of LLM predictions")
    cols = _core_columns(y, predicted, weights, weights_pop)
    r = _call_core(ppi_quantile, cols, yv, f, fp, q=q, method=method,
                   weights=_weights(weights, pilot, "weights", "pilot"),
                   weights_pop=_weights(weights_pop, population, "weights_pop", "population"), lam=lam,
                   level=level, convention=convention, **_target_args(place, population))
    return replace(r, terms=(f"quantile[{q:g}]({as_label(y, 'y')})",))


def _regression_verb(core_name, formula, pilot, population, predicted, method, weights, weights_pop, by, lam,
                     lambda_mode, lambda_bounds, level, convention, verb, intercept=True, categories=None,
                     estimand=None, overlap="auto", id=None):
    kwargs = dict(predicted=predicted, method=method, weights=weights, weights_pop=weights_pop, lam=lam,
                  lambda_mode=lambda_mode, lambda_bounds=lambda_bounds, level=level, convention=convention)
    kwargs.update(place := _placement(pilot, population, estimand, overlap, id, predicted, method))
    if categories is not None:
        kwargs["categories"] = categories
    if by is not None:
        return _by(lambda pilot, population, **kw: verb(formula, pilot, population, **kw), by, pilot, population,
                   kwargs)
    need_pop = _needs(method)[1]
    population = _frame(population, "population", need_pop)
    pilot = _frame(pilot, "pilot", True)  # the pilot defines the model spec even for 'naive'
    if method in ("ppi", "ppi++", "naive") and predicted is None:
        raise InputError(f"method {method!r} needs 'predicted', the column of LLM predictions of the outcome; pass "
                         f"predicted=... (or use method='classical' for the pilot alone)")
    args = (core_name, formula, pilot, population, predicted, method, weights, weights_pop, lam, lambda_mode,
            lambda_bounds, level, convention, intercept, categories, place)
    if need_pop:
        r = _fast_regression(*args)
        if r is not None:
            return r
    return _checked_regression(*args)


def _plain_numeric(df, name):
    """A numeric column of ``df`` as floats without a copy where possible; None if it is not plain."""
    s = df[name] if name in df.columns else None
    if not isinstance(s, pd.Series) or not isinstance(s.dtype, np.dtype) or s.dtype.kind not in "fiub":
        return None
    return s.to_numpy(dtype=float)


def _plain_probs(df, predicted, check=True):
    """Plain numeric probability columns of ``df`` as one (N, K) float matrix, copied column by column
    (column-major, as pandas gives it, without its interleaving); None if any is not plain, or (with
    ``check``) negative or NaN anywhere (the checked :func:`_prob_columns` then names it). The frame's
    fast path passes ``check=False``: the core's one-pass check of the matrix refuses those, and the
    call then goes through the checked path."""
    cols = list(predicted) if isinstance(predicted, (list, tuple)) else None
    if not cols or not all(isinstance(c, str) for c in cols) or not df.columns.is_unique:
        return None
    arrays = [_plain_numeric(df, c) for c in cols]
    if any(a is None for a in arrays):
        return None
    from rectify.estimators.models import gather_prob_columns

    P = gather_prob_columns(arrays)
    return P if not check or P.min() >= 0 else None


def _fast_regression(core_name, formula, pilot, population, predicted, method, weights, weights_pop, lam,
                     lambda_mode, lambda_bounds, level, convention, intercept, categories, place=None):
    """The regression verbs when every term is a plain numeric column: no formulaic on the frame.

    The pilot's spec is learned by formulaic as always; replaying it on the frame is reading those
    columns, which the population passes read block by block (no N x p copy). Nothing is checked
    twice: a NaN or infinite value anywhere, or any error, sends the call to the checked path, which
    refuses it exactly as before (naming the column). Returns None where the fast path does not apply.
    """
    from rectify.estimators.models import ColumnDesign, NonFiniteData

    if not isinstance(predicted, str) and core_name != "ppi_ordinal":
        return None
    plain = plain_design(formula, pilot, intercept)
    if plain is not None:
        X, y, terms, outcome, names = plain
        mf = ModelFrame(X=X, y=y, X_pop=None, terms=terms, outcome=outcome, spec=None)
    else:
        try:
            mf = build_design(formula, pilot, None, intercept=intercept)
        except RectifyError:
            return None
        names = plain_columns(mf.spec, mf.terms)
    if names is None:
        return None
    cols = [None if c is None else _plain_numeric(population, c) for c in names]
    fp = _plain_numeric(population, predicted) if isinstance(predicted, str) else _plain_probs(population, predicted,
                                                                                                   check=False)
    if fp is None or any(c is None for c, nm in zip(cols, names) if nm is not None):
        return None
    # no NaN/inf pass here: the core refuses a non-finite yhat_pop or X_pop (its sums), and this path
    # then returns None for the checked one
    X_pop = ColumnDesign(cols)
    try:
        return _run_core(core_name, mf, formula, pilot, population, predicted, method, weights, weights_pop, lam,
                         lambda_mode, lambda_bounds, level, convention, categories, X_pop, fp, place)
    except (RectifyError, NonFiniteData):
        return None


def _checked_regression(core_name, formula, pilot, population, predicted, method, weights, weights_pop, lam,
                        lambda_mode, lambda_bounds, level, convention, intercept, categories, place=None):
    """The regression verbs through formulaic's strict replay of the pilot's spec on the frame."""
    need_pop = _needs(method)[1]
    mf = build_design(formula, pilot, population if need_pop else None, intercept=intercept)
    fp = _prob_columns(population, predicted, "population") if need_pop else None
    return _run_core(core_name, mf, formula, pilot, population, predicted, method, weights, weights_pop, lam,
                     lambda_mode, lambda_bounds, level, convention, categories, mf.X_pop, fp, place)


def _run_core(core_name, mf, formula, pilot, population, predicted, method, weights, weights_pop, lam,
              lambda_mode, lambda_bounds, level, convention, categories, X_pop, fp, place=None):
    import rectify.estimators.ppi as core

    need_pilot, need_pop = _needs(method)
    y = mf.y
    f = None
    if method in ("ppi", "ppi++"):
        f = _prob_columns(pilot, predicted, "pilot")
    extra = {} if categories is None else {"categories": categories}
    if core_name != "ppi_ordinal":
        y = outcome_numbers(y, mf.outcome) if y is not None else None
    r = _call_core(
        getattr(core, core_name), _core_columns(mf.outcome, predicted, weights, weights_pop, x_terms=formula),
        mf.X if need_pilot else None, y if need_pilot else None, f, X_pop, fp, method,
        weights=_weights(weights, pilot, "weights", "pilot"),
        weights_pop=_weights(weights_pop, population, "weights_pop", "population"), lam=lam,
        lambda_mode=lambda_mode, lambda_bounds=lambda_bounds, level=level, convention=convention,
        terms=mf.terms, **extra, **_target_args(place or {"estimand": None, "overlap": "separate"}, population))
    return replace(r, diagnostics={**r.diagnostics, "formula": formula})


def ols(formula: str, pilot: pd.DataFrame | None = None, population: pd.DataFrame | None = None,
        predicted: str | None = None, method: str = "ppi++", *, weights=None, weights_pop=None,
        by: str | None = None, lam=None, lambda_mode: str = "overall", lambda_bounds=None, level: float = 0.95,
        convention: str = "small-sample", estimand: str | None = None, overlap: str = "auto",
        id: str | None = None) -> Result:
    """Linear regression of a human answer on covariates, corrected with the LLM's predictions.

    ``estimand="frame"`` (default) targets the frame's census coefficients; ``overlap`` and ``id`` as
    in :func:`mean`. The default variance is HC3 (see :func:`rectify.estimators.ppi.ppi_ols`).

    The formula's spec is learned on the pilot and replayed on the population; a population category
    the pilot never showed, or a missing covariate, raises an error.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo, draw_pilot
    >>> df = load_misinfo()
    >>> from rectify.datasets import misinfo_discernment
    >>> df["disc"], df["disc_llm"] = misinfo_discernment(df), misinfo_discernment(df, "llm")
    >>> pilot = draw_pilot(df, 200, random_state=1).dropna(subset=["disc"])
    >>> r = rectify.ols("disc ~ age + C(ideology)", pilot, df, predicted="disc_llm")
    >>> r.terms[:2]
    ('Intercept', 'age')
    """
    if population is not None and not isinstance(population, pd.DataFrame):  # a frame on disk: rectify.streaming
        from .streaming import stream_verb
        return stream_verb("ols", locals())
    return _regression_verb("ppi_ols", formula, pilot, population, predicted, method, weights, weights_pop, by,
                            lam, lambda_mode, lambda_bounds, level, convention, ols, estimand=estimand,
                            overlap=overlap, id=id)


def logit(formula: str, pilot: pd.DataFrame | None = None, population: pd.DataFrame | None = None,
          predicted: str | None = None, method: str = "ppi++", *, weights=None, weights_pop=None,
          by: str | None = None, lam=None, lambda_mode: str = "overall", lambda_bounds=None,
          level: float = 0.95, convention: str = "small-sample", estimand: str | None = None,
          overlap: str = "auto", id: str | None = None) -> Result:
    """Logistic regression of a binary (0/1) human answer; ``predicted`` holds probabilities or 0/1.

    ``estimand``, ``overlap`` and ``id`` as in :func:`mean` and :func:`ols`.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo, draw_pilot
    >>> df = load_misinfo()
    >>> df["believes_f01"] = (df["f01"] >= 3).astype(float)
    >>> df["believes_f01_llm"] = (df["f01_llm"] >= 2.5).astype(float)
    >>> pilot = draw_pilot(df, 300, random_state=1).dropna(subset=["f01"])
    >>> r = rectify.logit("believes_f01 ~ age", pilot, df, predicted="believes_f01_llm")
    >>> r.estimand
    'logistic'
    """
    if population is not None and not isinstance(population, pd.DataFrame):  # a frame on disk: rectify.streaming
        from .streaming import stream_verb
        return stream_verb("logit", locals())
    return _regression_verb("ppi_logistic", formula, pilot, population, predicted, method, weights, weights_pop,
                            by, lam, lambda_mode, lambda_bounds, level, convention, logit, estimand=estimand,
                            overlap=overlap, id=id)


def ordinal(formula: str, pilot: pd.DataFrame | None = None, population: pd.DataFrame | None = None,
            predicted: str | Sequence[str] | None = None, method: str = "ppi++", *, categories=None,
            weights=None, weights_pop=None, by: str | None = None, lam=None, lambda_mode: str = "overall",
            lambda_bounds=None, level: float = 0.95, convention: str = "small-sample", estimand: str | None = None,
            overlap: str = "auto", id: str | None = None) -> Result:
    """Cumulative-logit (proportional-odds) regression of a Likert answer.

    ``predicted`` is a column of predicted answers or the list of option-probability columns.
    ``estimand``, ``overlap`` and ``id`` as in :func:`mean` and :func:`ols`.

    Examples
    --------
    >>> import rectify
    >>> from rectify.datasets import load_misinfo, draw_pilot
    >>> df = load_misinfo()
    >>> from rectify.datasets import misinfo_llm_probs
    >>> probs = [f"p{k}" for k in range(1, 5)]
    >>> df[probs] = misinfo_llm_probs(df, "f01")
    >>> pilot = draw_pilot(df, 300, random_state=1).dropna(subset=["f01"])
    >>> r = rectify.ordinal("f01 ~ age + C(ideology)", pilot, df, predicted=probs,
    ...                     categories=[1, 2, 3, 4])
    >>> r.terms[-1]
    'threshold[3|4]'
    """
    if population is not None and not isinstance(population, pd.DataFrame):  # a frame on disk: rectify.streaming
        from .streaming import stream_verb
        return stream_verb("ordinal", locals())
    return _regression_verb("ppi_ordinal", formula, pilot, population, predicted, method, weights, weights_pop,
                            by, lam, lambda_mode, lambda_bounds, level, convention, ordinal, intercept=False,
                            categories=categories, estimand=estimand, overlap=overlap, id=id)
