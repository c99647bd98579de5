"""PromptSimulator with model-free fake backends whose answers are known exactly."""

import re

import numpy as np
import pandas as pd
import pytest

from rectify.errors import InputError, MissingCovariateError
from rectify.llm.base import Scores
from rectify.llm.items import Item
from rectify.llm.simulator import PromptSimulator, option_order_check, simulate_items

ITEM = Item("trust", "Trust scientists?", ["None", "Little", "Some", "Lots"], missing=["DK"])
TRUE_P = {"None": 0.1, "Little": 0.2, "Some": 0.3, "Lots": 0.4}


class TextModel:
    """Reads the options from the prompt and answers by option *text* (order-invariant), putting
    half its mass off the options; counts prompts."""

    name, model_id = "text", "fake"

    def __init__(self):
        self.seen = []

    def score(self, prompts):
        raw = []
        for p in prompts:
            self.seen.append(p)
            text = p.messages[-1]["content"]
            shown = dict(re.findall(r"^(\d)\. (.+)$", text, flags=re.M))
            disp = np.array([0.5 * TRUE_P[shown[lab]] for lab in p.labels])
            raw.append(p.to_canonical(disp))
        return Scores(np.vstack(raw), ["ok"] * len(prompts), [None] * len(prompts))


class FirstOptionModel(TextModel):
    """Always answers the first displayed option (an order-biased model)."""

    def score(self, prompts):
        raw = [p.to_canonical(np.eye(len(p.labels))[0]) for p in prompts]
        return Scores(np.vstack(raw), ["ok"] * len(prompts), [None] * len(prompts))


X = pd.DataFrame({"age": np.arange(20, 80, 6), "region": list("NSEWNSEWNS")}, index=[f"r{i}" for i in range(10)])


@pytest.mark.parametrize("order", ["canonical", "reversed", "random"])
def test_order_invariant_model_recovered_in_canonical_order(order):
    sim = PromptSimulator(TextModel(), ITEM, option_order=order, random_state=3).fit()
    P = sim.predict_proba(X)
    np.testing.assert_allclose(P, np.tile([0.1, 0.2, 0.3, 0.4], (10, 1)), atol=1e-12)
    np.testing.assert_allclose(sim.predict_score(X), 0.1 + 0.4 + 0.9 + 1.6)
    assert (sim.predict(X) == "Lots").all()  # the modal option, as LoRAClassifier.predict
    dist = sim.predict_distribution(X)
    assert dist.index.equals(X.index)
    np.testing.assert_allclose(dist["mass_on_options"], 0.5)
    assert (dist["mode"] == "Lots").all()


def test_order_check_detects_first_option_bias():
    chk = option_order_check(FirstOptionModel(), ITEM, X)
    np.testing.assert_allclose(chk["tv_distance"], 1.0)
    np.testing.assert_allclose(chk["expected_canonical"], 1.0)
    np.testing.assert_allclose(chk["expected_reversed"], 4.0)
    chk2 = option_order_check(TextModel(), ITEM, X)
    np.testing.assert_allclose(chk2["tv_distance"], 0.0, atol=1e-12)


def test_random_order_is_seeded_and_varies():
    a = PromptSimulator(TextModel(), ITEM, option_order="random", random_state=1).fit().prompts(X)
    b = PromptSimulator(TextModel(), ITEM, option_order="random", random_state=1).fit().prompts(X)
    assert [p.order for p in a] == [p.order for p in b]
    assert len({p.order for p in a}) > 1


def test_few_shot_examples_never_self_and_answers_shown():
    pilot_X = X.iloc[:6]
    pilot_y = pd.Series(["None", "Lots", 3, "Little", "Some", 4], index=pilot_X.index)
    for selection in ("random", "nearest"):
        sim = PromptSimulator(TextModel(), ITEM, strategy="few-shot", k=3, selection=selection,
                              template="You are $age, from region $region.", random_state=0)
        sim.fit(pilot_X, pilot_y)
        prompts = sim.prompts(X)
        assert [p.messages for p in prompts] == [p.messages for p in sim.prompts(X)]  # seeded
        for i, p in enumerate(prompts):
            text = p.messages[-1]["content"]
            shots = re.findall(r"Respondent: You are (\d+), from region (\w)\.\nAnswer: (\d)", text)
            assert len(shots) == 3
            me = (str(X["age"].iloc[i]), X["region"].iloc[i])
            assert me not in [(s[0], s[1]) for s in shots]  # never the person being predicted
            for age, _, ans in shots:  # each example shows that pilot respondent's own answer
                row = pilot_X.index[pilot_X["age"] == int(age)][0]
                assert int(ans) - 1 == ITEM.to_index([pilot_y[row]])[0]
        P = sim.predict_proba(X)
        np.testing.assert_allclose(P.sum(axis=1), 1)


def test_fit_and_predict_errors():
    with pytest.raises(InputError, match="missing answers"):
        PromptSimulator(TextModel(), ITEM, strategy="few-shot").fit(X.iloc[:3], ["None", "DK", "Lots"])
    with pytest.raises(InputError, match="3 pilot rows"):
        PromptSimulator(TextModel(), ITEM, strategy="few-shot").fit(X.iloc[:3], ["None"])
    with pytest.raises(InputError, match="not fitted"):
        PromptSimulator(TextModel(), ITEM).predict(X)
    with pytest.raises(InputError, match="strategy"):
        PromptSimulator(TextModel(), ITEM, strategy="cot").fit()
    with pytest.raises(InputError, match="Item"):
        PromptSimulator(TextModel(), "trust").fit()
    with pytest.raises(InputError, match="empty"):
        PromptSimulator(TextModel(), ITEM).fit().predict(X.iloc[:0])
    with pytest.raises(MissingCovariateError, match="'income'"):
        PromptSimulator(TextModel(), ITEM, template="Income $income").fit().predict(X)


def test_battery_same_personas():
    items = [ITEM, Item("vax", "Vaccinated?", ["No", "Yes"])]

    class Const(TextModel):
        def score(self, prompts):
            K = len(prompts[0].labels)
            return Scores(np.full((len(prompts), K), 1.0 / (2 * K)), ["ok"] * len(prompts), [None] * len(prompts))

    out = simulate_items(Const(), items, X)
    assert set(out) == {"trust", "vax"}
    np.testing.assert_allclose(out["vax"][["No", "Yes"]], 0.5)
    np.testing.assert_allclose(out["trust"]["expected"], 2.5)


def test_sklearn_params_and_clone():
    from sklearn.base import clone

    sim = PromptSimulator(TextModel(), ITEM, strategy="few-shot", k=2, random_state=5)
    assert sim.get_params()["k"] == 2
    c = clone(sim).set_params(k=3)
    assert c.k == 3 and c.item == ITEM and not hasattr(c, "examples_")


def test_clone_shares_backends_and_cache(tmp_path):
    from sklearn.base import clone

    from rectify.llm.cache import ResponseCache
    from rectify.llm.local import LocalBackend
    from rectify.llm.openai_backend import OpenAIBackend

    cache = ResponseCache(tmp_path / "c.sqlite")
    for be in (LocalBackend(cache=cache), OpenAIBackend("m", base_url="http://x/v1", cache=cache)):
        c = clone(PromptSimulator(be, ITEM))
        assert c.backend is be and c.backend.cache is cache
