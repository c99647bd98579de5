"""Bad input to calibration gets a clear error that names the margin and the category (issue 3).

One table: each case is a call to :func:`rectify.weighting.calibrate` (or to a numeric core), the
calibration methods it is tried with, the error class and a pattern the message must match.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rectify.errors import ConvergenceError, InputError, MissingCovariateError, UnseenLevelError
from rectify.estimators.calibration import calibrate_weights, check_margin_targets, rake
from rectify.weighting import calibrate

SAMPLE = pd.DataFrame({"a": ["x", "x", "y", "y", "z", "z"], "b": ["u", "v", "u", "v", "v", "u"],
                       "num": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
# every cell but (z, u) once: raking to these margins needs many sweeps
UNEVEN = pd.DataFrame({"a": ["x", "x", "y", "y", "z"], "b": ["u", "v", "u", "v", "v"]})
# a and b coincide row by row: each target is reachable alone, not together
ALIGNED = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["u", "u", "v", "v"]})
POP_EXTRA = pd.DataFrame({"a": ["x", "y", "z", "w"], "b": list("uvuv"), "num": [1.0, 2.0, 3.0, 4.0]})
POP_SHORT = pd.DataFrame({"a": ["x", "y", "x"], "b": list("uvu"), "num": [1.0, 2.0, 3.0]})
POP_NA = pd.DataFrame({"a": ["x", None, "z"], "b": list("uvu"), "num": [1.0, 2.0, 3.0]})
ABC = {"x": 5, "y": 5, "z": 5}
ALL = ("raking", "linear", "logit")
BOUNDED = {"logit": (0.1, 10.0)}  # logit needs bounds; generous ones unless the case sets its own

CASES = [
    # (id, sample, kwargs, methods, error, pattern)
    ("positive target, no pilot rows", SAMPLE, dict(margins={"a": {**ABC, "w": 3}}), ALL, InputError,
     r"margin 'a', category 'w': population count 3 but no sample rows"),
    ("zero target, rows present", SAMPLE, dict(margins={"a": {**ABC, "z": 0}}), ALL, InputError,
     r"margin 'a', category 'z': population count 0 but 2 sample rows"),
    ("negative target", SAMPLE, dict(margins={"a": {**ABC, "y": -5}}), ALL, InputError,
     r"margin 'a', category 'y': population count -5.0 must be finite and non-negative"),
    ("missing target", SAMPLE, dict(margins={"a": {**ABC, "y": np.nan}}), ALL, InputError,
     r"margin 'a', category 'y': population count nan must be finite"),
    ("margin totals disagree", SAMPLE, dict(margins={"a": ABC, "b": {"u": 5, "v": 6}}), ALL, InputError,
     r"margins disagree on the population total: margin 'a' sums to 15 but margin 'b' sums to 11"),
    ("negative design weight", SAMPLE, dict(margins={"a": ABC}, design_weights=[1, 1, -1, 1, 1, 1]), ALL,
     InputError, r"argument 'design_weights' must be strictly positive; row 2 has -1\.0"),
    ("zero design weight", SAMPLE, dict(margins={"a": ABC}, design_weights=[1, 0, 1, 1, 1, 1]), ALL,
     InputError, r"argument 'design_weights' must be strictly positive; row 1"),
    ("missing design weight", SAMPLE, dict(margins={"a": ABC}, design_weights=[1, 1, np.nan, 1, 1, 1]), ALL,
     InputError, r"argument 'design_weights' has 1 missing values"),
    ("design weight column with a gap", SAMPLE.assign(dw=[1, 1, np.nan, 1, 1, 1]),
     dict(margins={"a": ABC}, design_weights="dw"), ("raking",), InputError,
     r"argument 'design_weights \('dw'\)' has 1 missing values"),
    ("bounds infeasible for one category", SAMPLE,
     dict(margins={"a": {"x": 10, "y": 2, "z": 2}}, bounds=(0.5, 1.5)), ALL, InputError,
     r"bounds \(0\.5, 1\.5\) on the g-weights make the calibration infeasible for margin 'a', category 'x': "
     r"its target 10 lies outside \[2\.33333, 7\]"),
    ("bounds infeasible only jointly", ALIGNED,
     dict(margins={"a": {"x": 3, "y": 1}, "b": {"u": 1, "v": 3}}, bounds=(0.5, 1.5), design_weights=np.ones(4),
          max_iter=50), ALL, InputError,
     r"infeasible: no weights within them reproduce all the totals together \(worst at the last "
     r"iteration: margin '[ab]', category '[xyuv]'\)"),
    ("no convergence within max_iter (raking)", UNEVEN,
     dict(margins={"a": {"x": 10, "y": 4, "z": 3}, "b": {"u": 2, "v": 15}}, max_iter=2), ("raking",),
     ConvergenceError, r"raking did not converge in 2 sweeps: worst relative margin error .* on margin "
     r"'[ab]', category '[xyzuv]'"),
    ("no convergence within max_iter (logit)", UNEVEN,
     dict(margins={"a": {"x": 10, "y": 4, "z": 3}, "b": {"u": 2, "v": 15}}, max_iter=2), ("logit",),
     ConvergenceError, r"calibration \(logit\) did not converge in 2 iterations: worst relative margin "
     r"error .* on margin '[ab]', category '[xyzuv]'"),
    ("unknown category in the population (vars)", SAMPLE, dict(population=POP_EXTRA, vars=["a"]), ALL,
     UnseenLevelError, r"margin 'a': population categories \['w'\] never occur in the sample"),
    ("unknown category in the population (formula)", SAMPLE, dict(population=POP_EXTRA, formula="~ a + num"),
     ALL, UnseenLevelError, r"margin 'a': population categories \['w'\] never occur in the sample"),
    ("sample category missing from the population (vars)", SAMPLE, dict(population=POP_SHORT, vars=["a"]),
     ALL, InputError, r"margin 'a': sample categories \['z'\] have no population count"),
    ("sample category missing from the population (formula)", SAMPLE,
     dict(population=POP_SHORT, formula="~ a"), ALL, InputError,
     r"margin 'a': sample categories \['z'\] have no population rows"),
    ("sample category missing from the margins", SAMPLE, dict(margins={"a": {"x": 5, "y": 5}}), ALL,
     InputError, r"margin 'a': sample categories \['z'\] have no population count"),
    ("missing category in the population", SAMPLE, dict(population=POP_NA, vars=["a"]), ALL,
     MissingCovariateError, r"column 'a' of the population has 1 missing values"),
    ("unseen post-stratum", SAMPLE, dict(population=POP_EXTRA, vars=["a"]), ("poststratify",),
     UnseenLevelError, r"post-strata \['w'\] of \['a'\] have population counts but no sample rows"),
]


def _params():
    for cid, sample, kw, methods, err, pattern in CASES:
        for m in methods:
            yield pytest.param(sample, kw, m, err, pattern, id=f"{cid} [{m}]")


@pytest.mark.parametrize("sample, kwargs, method, error, pattern", list(_params()))
def test_bad_input_is_refused_with_a_clear_error(sample, kwargs, method, error, pattern):
    kw = dict(kwargs)
    if method in BOUNDED and "bounds" not in kw:
        kw["bounds"] = BOUNDED[method]
    with pytest.raises(error, match=pattern):
        calibrate(sample, method=method, **kw)


def test_error_classes_are_value_and_runtime_errors():
    # InputError is a ValueError, ConvergenceError a RuntimeError: callers can catch either family
    assert issubclass(InputError, ValueError) and issubclass(UnseenLevelError, ValueError)
    assert issubclass(ConvergenceError, RuntimeError)


def test_cores_name_margin_and_category():
    codes = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])]
    with pytest.raises(InputError, match=r"margin 'sex', category 'f': population count 3 but no sample"):
        rake([np.array([1, 1])], [np.array([3.0, 2.0])], np.ones(2), names=["sex"], levels=[["f", "m"]])
    with pytest.raises(InputError, match=r"margin 'region', category 'west': population count 0 but 2"):
        check_margin_targets(codes, [np.array([2.0, 2.0]), np.array([4.0, 0.0])], np.ones(4),
                             ["sex", "region"], [["f", "m"], ["east", "west"]])
    # rows with design weight 0 (a replicate that drops them) do not count as sample rows
    with pytest.raises(InputError, match=r"category 'm': population count 2 but no sample rows"):
        check_margin_targets([np.array([0, 0, 1])], [np.array([1.0, 2.0])], np.array([1.0, 1.0, 0.0]),
                             ["sex"], [["f", "m"]])
    # the Newton core labels indicator columns "margin[category]" as margin and category
    X = np.column_stack([np.ones(4), [1.0, 1.0, 0.0, 0.0]])
    with pytest.raises(InputError, match=r"margin 'grp', category 'b'.*outside \[1, 3\]"):
        calibrate_weights(X, np.ones(4), [4.0, 0.5], method="logit", bounds=(0.5, 1.5),
                          term_names=["(Intercept)", "grp[b]"])
    # a numeric auxiliary is named as such
    with pytest.raises(InputError, match=r"auxiliary 'age'.*outside"):
        calibrate_weights(np.column_stack([np.ones(2), [20.0, 40.0]]), np.ones(2), [2.0, 200.0],
                          method="truncated", bounds=(0.5, 1.5), term_names=["(Intercept)", "age"])


def test_non_convergence_is_never_returned_silently():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(50), rng.gamma(2.0, 1.0, 50)])
    T = np.array([60.0, 150.0])
    for method in ("raking", "logit"):
        kw = {"bounds": (0.05, 20.0)} if method == "logit" else {}
        with pytest.raises(ConvergenceError, match=r"did not converge in 1 iterations.*auxiliary"):
            calibrate_weights(X, np.ones(50), T, method=method, max_iter=1,
                              term_names=["(Intercept)", "x"], **kw)
        fit = calibrate_weights(X, np.ones(50), T, method=method, **kw)
        np.testing.assert_allclose(X.T @ fit.weights, T, rtol=1e-10)
