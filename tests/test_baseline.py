"""Tests of the covariates-only baseline (rectify.llm.baseline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn_contract import sklearn_contract
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from rectify.errors import InputError, MissingCovariateError, UnseenLevelError
from rectify.llm.baseline import (
    CovariateClassifier,
    check_labels,
    cumulative_logit_proba,
    fit_cumulative_logit,
)


# Numeric-array mode: every scikit-learn check applies and passes. The ordinal kind declares
# ``poor_score``: a proportional-odds model orders the classes along one linear index and the
# accuracy check's unordered blobs cannot be separated that way (by construction, not a bug).
@sklearn_contract([
    CovariateClassifier(kind="ordinal"),
    CovariateClassifier(kind="multinomial"),
    CovariateClassifier(kind="gbm", max_iter=10, random_state=0),
])
def test_sklearn_contract(estimator, check):
    with threadpool_limits(1):  # the machine is shared: avoid OpenMP over-subscription
        check(estimator)


def _survey(n, rng):
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, size=n).astype(float),
        "region": rng.choice(["north", "south", "east"], size=n),
        "ideology": pd.Categorical(rng.choice(["left", "centre", "right"], size=n),
                                   categories=["left", "centre", "right"]),
    })
    eta = 0.05 * (frame.age - 50) + np.where(frame.region == "south", 1.5, 0.0) \
        + np.select([frame.ideology == "left", frame.ideology == "right"], [-2.0, 2.0], 0.0)
    latent = eta + rng.logistic(size=n)
    y = np.digitize(latent, [-1.5, -0.3, 0.7, 1.8]) + 1
    return frame, y


def test_ordinal_matches_statsmodels():
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    rng = np.random.default_rng(1)
    frame, y = _survey(400, rng)
    clf = CovariateClassifier(kind="ordinal", C=np.inf, options=[1, 2, 3, 4, 5]).fit(frame, y)
    Z = clf._design.transform(frame)
    sm = OrderedModel(y, Z, distr="logit").fit(method="newton", disp=False, maxiter=200)
    np.testing.assert_allclose(clf.predict_proba(frame), sm.predict(Z), atol=2e-5)
    np.testing.assert_allclose(clf.coef_, sm.params[: Z.shape[1]], atol=2e-3)
    # the planted age slope, on the raw scale: 0.05 per year
    age_slope = clf.coef_[0] / clf._design.scale_[0]
    assert abs(age_slope - 0.05) < 0.01


def test_multinomial_matches_sklearn_on_onehot():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    frame, y = _survey(300, rng)
    clf = CovariateClassifier(kind="multinomial").fit(frame, y)
    onehot = pd.get_dummies(frame[["region", "ideology"]], drop_first=True).astype(float)
    age = (frame.age - frame.age.mean()) / frame.age.std(ddof=0)
    Z = np.column_stack([age, onehot.to_numpy()])
    ref = LogisticRegression(max_iter=1000).fit(Z, y)
    np.testing.assert_allclose(clf.predict_proba(frame), ref.predict_proba(Z), atol=1e-4)
    assert clf.feature_names_out_ == ["age", "region[north]", "region[south]",
                                      "ideology[centre]", "ideology[right]"]


def test_recovers_planted_rule_better_than_marginal():
    rng = np.random.default_rng(3)
    frame, y = _survey(900, rng)
    train, test = slice(0, 600), slice(600, None)
    lls = {}
    for kind in ("ordinal", "multinomial", "gbm"):
        clf = CovariateClassifier(kind=kind, options=[1, 2, 3, 4, 5], random_state=0)
        with threadpool_limits(1):
            clf.fit(frame.iloc[train], y[train])
        p = clf.predict_proba(frame.iloc[test])
        ll = -np.mean(np.log(p[np.arange(len(p)), y[test] - 1]))
        marg = np.bincount(y[train] - 1, minlength=5) / 600
        ll0 = -np.mean(np.log(marg[y[test] - 1]))
        assert ll < ll0 - 0.2, (kind, ll, ll0)
        lls[kind] = ll
    # the planted model is a proportional-odds model: the ordinal kind is the best of the three
    assert lls["ordinal"] <= min(lls.values()) + 1e-9, lls


def test_options_order_and_unseen_options():
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    y = ["agree", "agree", "neutral", "neutral", "disagree", "disagree"]
    opts = ["disagree", "neutral", "agree", "strongly agree"]
    clf = CovariateClassifier(kind="multinomial", options=opts).fit(X, y)
    p = clf.predict_proba(X)
    assert list(clf.classes_) == opts
    assert clf.unseen_options_ == ["strongly agree"]
    np.testing.assert_array_equal(p[:, 3], 0.0)
    np.testing.assert_allclose(p.sum(1), 1.0)
    # answers ordered along x: "agree" at low x gets the highest probability there
    assert p[0, 2] > p[0, 0] and p[5, 0] > p[5, 2]


def test_bad_inputs_have_clear_errors():
    X = pd.DataFrame({"region": ["n", "s", "n", "s"], "age": [20.0, 30, 40, 50]})
    with pytest.raises(InputError, match="single answer class"):
        CovariateClassifier().fit(X, [1, 1, 1, 1])
    with pytest.raises(InputError, match="outside the item's options"):
        CovariateClassifier(options=[1, 2, 3]).fit(X, [1, 2, 7, 1])
    with pytest.raises(InputError, match="missing answers"):
        CovariateClassifier(options=[1, 2]).fit(X, [1, 2, None, 1])
    with pytest.raises(InputError, match="kind"):
        CovariateClassifier(kind="svm").fit(X, [1, 2, 1, 2])
    clf = CovariateClassifier().fit(X, [1, 2, 1, 2])
    with pytest.raises(UnseenLevelError, match="'region'.*'w'"):
        clf.predict_proba(pd.DataFrame({"region": ["w"], "age": [30.0]}))
    with pytest.raises(MissingCovariateError, match="'age'"):
        clf.predict_proba(pd.DataFrame({"region": ["n"], "age": [np.nan]}))
    with pytest.raises(MissingCovariateError, match="age"):
        clf.predict_proba(pd.DataFrame({"region": ["n"]}))
    with pytest.raises(MissingCovariateError, match="'age'"):
        CovariateClassifier().fit(pd.DataFrame({"region": ["n", "s"], "age": [1.0, None]}), [1, 2])


def test_missing_answers_skipped_and_reported():
    rng = np.random.default_rng(4)
    frame, y = _survey(200, rng)
    y_obj = y.astype(object)
    y_obj[:7] = None
    clf = CovariateClassifier(missing_y="skip", options=[1, 2, 3, 4, 5]).fit(frame, y_obj)
    assert clf.n_missing_y_ == 7
    ref = CovariateClassifier(options=[1, 2, 3, 4, 5]).fit(frame.iloc[7:], y[7:])
    np.testing.assert_allclose(clf.predict_proba(frame), ref.predict_proba(frame), atol=1e-8)


def test_check_labels_float_codes_for_integer_options():
    codes, classes, missing = check_labels(np.array([1.0, np.nan, 3.0]), [1, 2, 3],
                                           allow_missing=True)
    assert codes.tolist() == [0, -1, 2] and missing.tolist() == [False, True, False]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=2, max_size=6),
       st.lists(st.floats(-2, 2), min_size=1, max_size=3))
def test_cumulative_logit_proba_is_a_distribution(raw_thresholds, beta):
    th = np.sort(np.asarray(raw_thresholds))
    X = np.linspace(-2, 2, 7)[:, None] * np.ones((1, len(beta)))
    p = cumulative_logit_proba(X, np.asarray(beta), th)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16))
def test_ordinal_invariant_to_row_order(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 2))
    y = np.digitize(x[:, 0] + rng.logistic(size=80), [-0.5, 0.5])
    if len(np.unique(y)) < 3:
        return
    perm = rng.permutation(80)
    b1, t1 = fit_cumulative_logit(x, y, 3, C=1.0)
    b2, t2 = fit_cumulative_logit(x[perm], y[perm], 3, C=1.0)
    np.testing.assert_allclose(np.r_[b1, t1], np.r_[b2, t2], atol=1e-5)
