"""Items, scales, personas and prompt builders."""

import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectify.errors import InputError, MissingCovariateError
from rectify.llm.items import Item, Scale
from rectify.llm.persona import (
    build_prompt,
    option_order,
    render_persona,
    render_personas,
    select_examples,
)

ACC = ["Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate"]


def test_item_validation():
    with pytest.raises(InputError, match="at least 2 options"):
        Item("q", "Q?", ["only"])
    with pytest.raises(InputError, match="unique"):
        Item("q", "Q?", ["a", "b", "a"])
    with pytest.raises(InputError, match="also options"):
        Item("q", "Q?", ["a", "b"], missing=["a"])
    with pytest.raises(InputError, match="scores"):
        Item("q", "Q?", ["a", "b"], scores=[1])
    with pytest.raises(InputError, match="list of strings"):
        Item("q", "Q?", "ab")


def test_item_encode_labels_scores_missing():
    it = Item("t", "Claim?", ACC, missing=["Have not seen it"], scores=[0, 1, 2, 3])
    got = it.encode(["Very accurate", "Have not seen it", 1, np.nan, "Not at all accurate"])
    np.testing.assert_array_equal(got, [3, np.nan, 1, np.nan, 0])
    with pytest.raises(InputError, match="neither options"):
        it.encode(["Very"])
    with pytest.raises(InputError, match="neither options"):
        it.encode([7])


def test_scale_discernment_by_hand():
    t1, t2 = Item("t1", "A", ACC), Item("t2", "B", ACC)
    f1 = Item("f1", "C", ACC, missing=["Have not seen it"])
    sc = Scale("disc", [t1, t2, f1], signs=[1, 1, -1])
    df = pd.DataFrame(
        {"t1": [4, 1, 2], "t2": [2, np.nan, 3], "f1": [1, 4, "Have not seen it"]}, index=["x", "y", "z"]
    )
    out = sc.score(df)
    # x: mean(4,2)-1 = 2; y: mean(1)-4 = -3; z: false group all missing -> NaN
    assert out.index.tolist() == ["x", "y", "z"]
    np.testing.assert_allclose(out.to_numpy(), [2.0, -3.0, np.nan])
    with pytest.raises(InputError, match="signs"):
        Scale("s", [t1], signs=[2])
    with pytest.raises(InputError, match="missing for items"):
        sc.score({"t1": [1]})


def test_render_persona_template_and_missing():
    row = pd.Series({"age": 34.0, "gender": "woman", "educ": 3})
    labels = {"educ": {3: "a college degree"}}
    assert render_persona(row, "You are $age, a $gender with ${educ}.", labels) == (
        "You are 34, a woman with a college degree."
    )
    assert render_persona(row) == "You are a person with these characteristics: age 34; gender woman; educ 3."
    with pytest.raises(MissingCovariateError, match="'region'"):
        render_persona(row, "From $region")
    with pytest.raises(MissingCovariateError, match="'age'"):
        render_persona({"age": np.nan}, "Age $age")
    with pytest.raises(InputError, match="invalid placeholder"):
        render_persona(row, "Cost $5")
    assert render_persona(row, lambda r: f"{r['gender']} aged {r['age']}") == "woman aged 34"
    with pytest.raises(MissingCovariateError, match="'income'"):
        render_persona(row, lambda r: f"earns {r['income']}")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=string.printable, min_size=1, max_size=30))
def test_values_are_data_not_template_syntax(value):
    # whatever a covariate holds ({...}, $x, ${age}), it appears verbatim and nothing else changes
    # (a snake_case code reads as words; text holding a chat-control marker is refused instead)
    import re

    from rectify.llm.persona import _CONTROL

    if _CONTROL.search(value):
        with pytest.raises(InputError, match="control marker"):
            render_persona({"name": value, "age": 40}, "A: $name | B: $age")
        return
    out = render_persona({"name": value, "age": 40}, "A: $name | B: $age")
    shown = value.replace("_", " ") if re.fullmatch(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", value) else value
    assert out == f"A: {shown} | B: 40"


def test_render_personas_aligned_and_empty():
    X = pd.DataFrame({"age": [20, 30]}, index=[10, 11])
    s = render_personas(X, "age $age")
    assert s.index.tolist() == [10, 11] and s.tolist() == ["age 20", "age 30"]
    with pytest.raises(InputError, match="empty"):
        render_personas(X.iloc[:0])


def test_build_prompt_order_and_examples():
    it = Item("q", "Trust?", ["No", "Some", "Yes"])
    p = build_prompt("You are 30.", it, examples=[("You are 60.", 2), ("You are 20.", 0)], order=[2, 0, 1])
    text = p.messages[-1]["content"]
    # displayed: 1=Yes, 2=No, 3=Some; example answers map through the same order
    assert "1. Yes\n2. No\n3. Some" in text
    assert "Respondent: You are 60.\nAnswer: 1" in text
    assert "Respondent: You are 20.\nAnswer: 2" in text
    np.testing.assert_allclose(p.to_canonical(np.array([0.6, 0.3, 0.1])), [0.3, 0.1, 0.6])
    with pytest.raises(InputError, match="permutation"):
        build_prompt("x", it, order=[0, 0, 1])


def test_option_order_seeded():
    a = option_order(5, "random", 3)
    assert a == option_order(5, "random", 3) and sorted(a) == list(range(5))
    with pytest.raises(InputError):
        option_order(3, "sideways")


def test_select_examples_never_target_and_seeded():
    P = pd.DataFrame({"age": np.arange(20), "g": ["a", "b"] * 10}, index=np.arange(20))
    T = P.iloc[:8]
    for method in ("random", "nearest"):
        sel = select_examples(T, P, 5, method, random_state=1)
        again = select_examples(T, P, 5, method, random_state=1)
        for i, (s, s2) in enumerate(zip(sel, again)):
            assert i not in s.tolist() and len(set(s.tolist())) == 5
            np.testing.assert_array_equal(s, s2)
    near = select_examples(P.iloc[[4]], P, 2, "nearest", 0)[0]
    # same gender 'a' at ages 2 and 6 are the closest after excluding row 4 itself
    assert sorted(near.tolist()) == [2, 6]
    with pytest.raises(InputError, match="exceeds"):
        select_examples(T, P.iloc[:3], 3, "random", 0)
