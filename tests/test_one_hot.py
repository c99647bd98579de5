"""``ppi_categorical._one_hot`` (vectorised, issue 17) against a plain per-row dictionary lookup."""

import numpy as np
import pytest

from rectify.errors import InputError
from rectify.estimators.ppi_categorical import _one_hot


def _reference(labels, categories):
    """One row at a time: the label as a dictionary key (a whole float also as its integer)."""
    index = {c: k for k, c in enumerate(categories)}
    out = np.zeros((len(labels), len(categories)))
    for i, v in enumerate(labels):
        k = index.get(v)
        if k is None and isinstance(v, (float, np.floating)) and float(v).is_integer():
            k = index.get(int(v))
        out[i, k] = 1.0
    return out


CASES = [
    ("int labels", lambda r: r.integers(1, 6, 3000), [1, 2, 3, 4, 5]),
    ("options out of order", lambda r: r.integers(0, 4, 3000), [3, 0, 2, 1]),
    ("whole floats", lambda r: r.integers(1, 6, 3000).astype(float), [1, 2, 3, 4, 5]),
    ("float options", lambda r: r.choice([0.5, 1.5, 2.25], 3000), [2.25, 0.5, 1.5]),
    ("wide int range", lambda r: r.choice([-(10**9), 0, 10**9], 3000), [10**9, 0, -(10**9)]),
    ("strings", lambda r: r.choice(np.array(["agree", "neutral", "disagree"], dtype=object), 3000),
     ["disagree", "neutral", "agree"]),
    ("mixed objects", lambda r: [[1, "x", 2.0][j] for j in r.integers(0, 3, 3000)], ["x", 2, 1]),
]


@pytest.mark.parametrize("what,draw,categories", CASES, ids=[c[0] for c in CASES])
def test_one_hot_equals_the_row_by_row_lookup(what, draw, categories):
    labels = draw(np.random.default_rng(len(what)))
    ref = _reference(list(np.asarray(labels, dtype=object)), categories)
    np.testing.assert_array_equal(_one_hot(labels, categories, "yhat"), ref)
    assert ref.sum(axis=0).min() > 0  # every option drawn


@pytest.mark.parametrize("labels,bad", [(np.array([1, 2, 7, 9]), "7"), (np.array([1.0, 2.5, 3.0]), "2.5"),
                                        (np.array([1.0, np.inf]), "inf"), (np.array(["a", "z", "q"]), "'z'"),
                                        ([1, "b", 2], "'b'"), (np.array([1, 2, 10**12]), str(10**12))])
def test_one_hot_refuses_the_first_unknown_answer(labels, bad):
    categories = [1, 2, 3] if not isinstance(labels[0], str) else ["a", "b"]
    with pytest.raises(InputError, match=f"answer {bad}, which is not one of the item's options"):
        _one_hot(labels, categories, "yhat")


@pytest.mark.parametrize("labels", [np.array([1.0, np.nan]), [1, None, 2], np.array(["a", None], dtype=object)])
def test_one_hot_refuses_missing_answers(labels):
    with pytest.raises(InputError, match="'yhat' has missing answers"):
        _one_hot(labels, [1, 2, "a"], "yhat")


def test_one_hot_refuses_a_matrix_of_labels():
    with pytest.raises(InputError, match="must be 1-D answer labels"):
        _one_hot(np.ones((2, 2, 2)), [1, 2], "yhat")
