"""sklearn-style prompt simulator: frame rows -> answer distributions over an item's options.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from rectify.llm.items import Item
>>> from rectify.llm.simulator import PromptSimulator
>>> class Uniform:                      # any object with score(prompts) -> Scores is a backend
...     name, model_id = "uniform", "none"
...     def score(self, prompts):
...         from rectify.llm.base import Scores
...         raw = np.full((len(prompts), len(prompts[0].labels)), 0.25)
...         return Scores(raw, ["ok"] * len(prompts), [None] * len(prompts))
>>> it = Item("q", "Trust?", ["No", "Some", "Yes"])
>>> X = pd.DataFrame({"age": [20, 60]}, index=["a", "b"])
>>> sim = PromptSimulator(Uniform(), it).fit()
>>> sim.predict_proba(X).round(3).tolist()
[[0.333, 0.333, 0.333], [0.333, 0.333, 0.333]]
>>> sim.predict_score(X).tolist()
[2.0, 2.0]
>>> sim.predict(X).tolist()   # the modal option (ties: the first)
['No', 'No']
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from rectify._checks import check_number
from rectify.errors import InputError
from rectify.llm.base import Scores
from rectify.llm.items import Item
from rectify.llm.persona import (
    DEFAULT_SYSTEM,
    Prompt,
    build_prompt,
    option_order,
    render_personas,
    select_examples,
)

__all__ = ["PromptSimulator", "simulate_items", "option_order_check", "modal_option"]

_STRATEGIES = ("zero-shot", "few-shot")


class PromptSimulator(BaseEstimator):
    """Simulate answers to one item by prompting an LLM with each respondent's persona.

    Parameters
    ----------
    backend : object, optional
        Anything with ``score(prompts) -> Scores`` (:class:`~rectify.llm.local.LocalBackend`,
        :class:`~rectify.llm.openai_backend.OpenAIBackend`). Default: the embedded model
        (``LocalBackend()``, created at ``fit``; loaded on the first prediction).
    item : Item
    strategy : {"zero-shot", "few-shot"}
        Few-shot shows ``k`` pilot respondents (persona and answer) before the question.
    k : int
        Few-shot examples per prompt.
    selection : {"random", "nearest"}
        How few-shot examples are chosen (never the person being predicted).
    template, value_labels :
        Persona template and value words (see :func:`~rectify.llm.persona.render_persona`).
    option_order : {"canonical", "reversed", "random"}
        Display order of the options (``"random"``: a seeded permutation per prompt, a check of
        order bias); probabilities are always returned in the item's canonical order.
    system : str or None
        System message.
    random_state : int or None
        Seed for example selection and option permutations (the same seed gives the same
        prompts, so reruns hit the cache).

    Attributes
    ----------
    backend_ : object
        The backend used (``backend``, or the embedded model's ``LocalBackend``).
    classes_ : ndarray of object
        The item's options in canonical order (the columns of ``predict_proba``).
    examples_ : DataFrame or None
        Few-shot pool: pilot personas (``persona``) and answers (``answer``, 0-based option).
    pilot_X_ : DataFrame or None
        Pilot covariates (for nearest-neighbour selection).
    n_options_ : int
    last_scores_ : Scores
        Raw output of the last prediction (status per row, run record).

    Notes
    -----
    Predictions follow one convention across the simulator, fine-tuning and Bayesian classes:
    ``predict_proba`` is an ``(n, K)`` array over ``classes_``, ``predict`` the modal option,
    ``predict_score`` the expected option score (the ŷ the estimators take).
    """

    def __init__(
        self,
        backend: Any = None,
        item: Item | None = None,
        strategy: str = "zero-shot",
        k: int = 5,
        selection: str = "random",
        template: Any = None,
        value_labels: Mapping[str, Mapping[Any, str]] | None = None,
        option_order: str = "canonical",
        system: str | None = DEFAULT_SYSTEM,
        random_state: int | None = None,
    ):
        self.backend = backend
        self.item = item
        self.strategy = strategy
        self.k = k
        self.selection = selection
        self.template = template
        self.value_labels = value_labels
        self.option_order = option_order
        self.system = system
        self.random_state = random_state

    def _check_params(self) -> None:
        if not isinstance(self.item, Item):
            raise InputError(f"argument 'item' must be an Item, got {type(self.item).__name__}")
        if self.backend is not None and not hasattr(self.backend, "score"):
            raise InputError("argument 'backend' must have a score(prompts) method (e.g. LocalBackend()), or be "
                             "None for the embedded model")
        if self.strategy not in _STRATEGIES:
            raise InputError(f"argument 'strategy' must be one of {_STRATEGIES}, got {self.strategy!r}")
        if self.selection not in ("random", "nearest"):
            raise InputError(f"argument 'selection' must be 'random' or 'nearest', got {self.selection!r}")
        option_order(2, self.option_order, 0)  # validates the name
        if self.random_state is not None and not isinstance(self.random_state, np.random.Generator):
            check_number(self.random_state, "random_state", low=0, integer=True,
                         hint="; give a seed >= 0 (the same seed gives the same prompts), or None")

    def fit(self, pilot_X: pd.DataFrame | None = None, pilot_y: Sequence[Any] | None = None) -> "PromptSimulator":
        """Store the few-shot pool (pilot personas and answers); zero-shot needs no pilot.

        ``pilot_y`` holds option labels or option scores of ``item``; a missing answer (NaN or a
        missing code) is an error: pass only answered pilot rows as examples.
        """
        self._check_params()
        if self.backend is None:
            from rectify.llm.local import LocalBackend

            self.backend_ = LocalBackend()
        else:
            self.backend_ = self.backend
        self.n_options_ = self.item.n_options
        self.classes_ = np.asarray(self.item.options, dtype=object)
        self.examples_ = None
        self.pilot_X_ = None
        if self.strategy == "zero-shot" and pilot_X is None:
            return self
        if not isinstance(pilot_X, pd.DataFrame):
            raise InputError("few-shot needs pilot_X, a DataFrame of pilot covariates")
        if pilot_y is None:
            raise InputError("few-shot needs pilot_y, the pilot's answers")
        if isinstance(pilot_y, pd.Series) and not pilot_y.index.equals(pilot_X.index):
            raise InputError("pilot_y's index differs from pilot_X's; align them (pilot_y.loc[pilot_X.index])")
        y = list(pilot_y)
        if len(y) != len(pilot_X):
            raise InputError(f"pilot_y has {len(y)} answers for {len(pilot_X)} pilot rows")
        idx = self.item.to_index(y)
        if np.any(idx < 0):
            raise InputError(
                f"pilot_y has {int(np.sum(idx < 0))} missing answers (NaN or missing codes); "
                "pass only answered pilot rows as few-shot examples"
            )
        if not pilot_X.index.is_unique:
            raise InputError("pilot_X has a duplicated index; give each respondent a unique label")
        personas = render_personas(pilot_X, self.template, self.value_labels)
        self.examples_ = pd.DataFrame({"persona": personas, "answer": idx}, index=pilot_X.index)
        self.pilot_X_ = pilot_X.copy()
        return self

    def prompts(self, X: pd.DataFrame) -> list[Prompt]:
        """The prompts sent for each row of ``X`` (deterministic given ``random_state``)."""
        if not hasattr(self, "n_options_"):
            from rectify.errors import NotFittedError

            raise NotFittedError("this PromptSimulator is not fitted; call fit() first (zero-shot: fit() with no data)")
        if self.strategy == "few-shot" and self.examples_ is None:
            raise InputError("few-shot needs a pilot: call fit(pilot_X, pilot_y)")
        personas = render_personas(X, self.template, self.value_labels)
        rng = np.random.default_rng(self.random_state)
        K = self.n_options_
        chosen = None
        if self.strategy == "few-shot":
            chosen = select_examples(X, self.pilot_X_, int(self.k), self.selection, rng)
        out = []
        for i, persona in enumerate(personas):
            order = option_order(K, self.option_order, rng)
            examples = None
            if chosen is not None:
                ex = self.examples_.iloc[chosen[i]]
                examples = list(zip(ex["persona"], ex["answer"]))
            out.append(build_prompt(persona, self.item, examples=examples, order=order, system=self.system))
        return out

    def score(self, X: pd.DataFrame) -> Scores:
        """Raw backend output (:class:`~rectify.llm.base.Scores`) for the rows of ``X``."""
        prompts = self.prompts(X)  # refuses an unfitted simulator first
        scores = self.backend_.score(prompts)
        self.last_scores_ = scores
        return scores

    def predict_distribution(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row: option probabilities (renormalised), ``mass_on_options``, ``expected``,
        ``mode`` and ``status``, aligned to ``X.index``."""
        s = self.score(X)
        return s.table(self.item.options, self.item.score_values, index=X.index)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``(n, K)`` option probabilities, renormalised over the options; NaN rows where the
        request failed or the model answered off the scale (see ``last_scores_.status``)."""
        from rectify.llm.distribution import renormalize

        return renormalize(self.score(X).raw)[0]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The most probable option per row (an element of ``classes_``; None where the request
        failed). For the expected option score use :meth:`predict_score`."""
        return modal_option(self.predict_proba(X), self.classes_)

    def predict_score(self, X: pd.DataFrame) -> np.ndarray:
        """Expected option score per row (the ŷ fed to the estimators); NaN where the request failed."""
        from rectify.llm.distribution import expected_score

        return expected_score(self.predict_proba(X), self.item.score_values)


def modal_option(P: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """The most probable option of each row of ``P`` (first on ties); None for a row with NaN.

    Examples
    --------
    >>> modal_option(np.array([[0.2, 0.8], [np.nan, np.nan]]), ["no", "yes"]).tolist()
    ['yes', None]
    """
    P = np.asarray(P, dtype=float)
    out = np.empty(len(P), dtype=object)
    ok = np.isfinite(P).all(axis=1)
    out[ok] = np.asarray(classes, dtype=object)[np.argmax(P[ok], axis=1)]
    out[~ok] = None
    return out


def simulate_items(
    backend: Any,
    items: Sequence[Item],
    X: pd.DataFrame,
    **kwargs: Any,
) -> dict[str, pd.DataFrame]:
    """Zero-shot answer tables for a battery of items (same personas), keyed by item name.

    Extra keyword arguments go to :class:`PromptSimulator`.
    """
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise InputError(f"item names must be unique, got {names}")
    return {it.name: PromptSimulator(backend, it, **kwargs).fit().predict_distribution(X) for it in items}


def option_order_check(backend: Any, item: Item, X: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Order-bias check: the same prompts with canonical and reversed option order.

    Returns per row the expected score under each order and the total-variation distance between
    the two distributions (0: no order effect; a model with a first-option bias shows large
    values).
    """
    a = PromptSimulator(backend, item, option_order="canonical", **kwargs).fit()
    b = PromptSimulator(backend, item, option_order="reversed", **kwargs).fit()
    pa, pb = a.predict_proba(X), b.predict_proba(X)
    s = item.score_values
    return pd.DataFrame(
        {"expected_canonical": pa @ s, "expected_reversed": pb @ s, "tv_distance": 0.5 * np.abs(pa - pb).sum(axis=1)},
        index=X.index,
    )
