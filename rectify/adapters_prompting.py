"""Predictive methods: a source of per-person option probabilities (a prompted LLM, stored
answers), used as is or through a registered correction. :func:`predictive_method`,
:func:`stored_source` and :func:`prompting_methods` are re-exported by :mod:`rectify.registry`.

Examples
--------
>>> from rectify import registry
>>> registry.prompting_methods is prompting_methods
True
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError
from .registry import (_REGISTRY, Method, MethodOutput, Spec, estimates_from_probabilities, get, prediction_rows,  # noqa: F401
                       register, with_predictions)  # (Spec: for the examples)



# ---------------------------------------------------------------------------------------------
# predictive methods: a source of per-person option probabilities (a prompted LLM, stored answers),
# used as is (the simulator's own estimates) or through a correction (PPI++, GREG, ...)
# ---------------------------------------------------------------------------------------------
def predictive_method(name: str, source: Callable, description: str, rectified: str | None = None,
                      note: str = "mean of predicted probabilities; no interval", family: str = "prompting",
                      columns: Sequence[str] = ()) -> Method:
    """A method from ``source(rows, pilot, spec, item, seed) -> ((M, K) probabilities, record)``.

    NaN rows of the probabilities are unanswered (a failed prompt, a person the stored answers do not
    cover): they are left out of the estimates and of the correction, and ``record`` (``rows``,
    counts, ``of``) goes to ``MethodOutput.info["unanswered"]``, which :func:`rectify.compare` turns
    into a note on every metric of the cell. With ``rectified`` (a registered correction on the
    simulator's predictions, e.g. ``"ppi++"``) the correction runs on these probabilities.
    ``columns``: frame columns the source reads besides the covariates (e.g. stored answers).

    Examples
    --------
    >>> def src(rows, pilot, spec, item, seed):
    ...     return np.tile([0.25, 0.75], (len(rows), 1)), {"rows": [], "of": len(rows)}
    >>> m = predictive_method("flat", src, "always 25/75")
    >>> out = m.fn(pd.DataFrame(index=range(4)), pd.DataFrame(), Spec(items=("y",), scores=(1.0, 2.0)),
    ...            np.random.default_rng(0))
    >>> out.estimates["estimate"].round(3).tolist()
    [0.25, 0.75, 1.75]
    """
    def fn(frame, pilot, spec, random_state):
        seed = int(random_state.integers(0, 2**31 - 1))
        sc = np.asarray(spec.scores, float)
        need = list(dict.fromkeys([*spec.covariates, *columns]))
        rows = prediction_rows(frame, pilot, need) if rectified else frame
        probs, unanswered = {}, {}
        for it in spec.items:
            probs[it], rec = source(rows, pilot, spec, it, seed)
            if rec["rows"]:
                unanswered[it] = rec
        info = {"unanswered": unanswered} if unanswered else {}
        if not rectified:
            preds = pd.DataFrame({it: probs[it] @ sc for it in spec.items}, index=frame.index)
            est = estimates_from_probabilities(probs, frame, spec, note=note)
            return MethodOutput(est, predictions=preds, probabilities=probs, info=info)
        fr, pi, spec2 = with_predictions(frame, pilot, spec, probs, rows.index)
        out = get(rectified).fn(fr, pi, spec2, random_state)
        out.info.update(info)
        return out

    fam = (get(rectified).family if rectified != "ppi++" else "rectification") if rectified else family
    if rectified:  # the correction decides how a designed pilot is used (the pilot keeps its pi column)
        support, why = get(rectified).design_support, get(rectified).design_note
    else:
        support, why = "ignores", ("its estimate averages the predictions over the frame; the pilot at most supplies "
                                   "few-shot examples and no interval is claimed")
    return Method(name, fam, fn, description + (f" + {rectified}" if rectified else ""), needs=("covariates",),
                  default=False, design_support=support, design_note=why)


def stored_source(probabilities: Mapping[str, Sequence[str]], what: str = "stored answers") -> Callable:
    """A :func:`predictive_method` source reading stored option probabilities (columns per item).

    Rows whose stored probabilities are missing (the simulation covered only some people) are
    unanswered: left out and counted in the cell's note, never imputed. An item with no stored
    answer in the rows raises :class:`~rectify.errors.InputError`.

    Examples
    --------
    >>> src = stored_source({"y": ["p1", "p2"]})
    >>> rows = pd.DataFrame({"p1": [0.2, np.nan], "p2": [0.8, np.nan]})
    >>> p, rec = src(rows, None, None, "y", 0)
    >>> p[0].tolist(), rec["rows"], rec["of"]
    ([0.2, 0.8], [1], 2)
    """
    def source(rows, pilot, spec, item, seed):
        cols = list(probabilities[item])
        missing = [c for c in cols if c not in rows.columns]
        if missing:
            raise InputError(f"{what}: columns {missing} of item {item!r} are not in the frame; check the "
                             "simulator's probabilities pattern")
        p = rows[cols].to_numpy(dtype=float, copy=True)
        bad = np.isnan(p).any(axis=1)
        if bad.all():
            raise InputError(f"{what}: item {item!r} has no stored answer in these {len(p)} rows; simulate them "
                             "first or leave this simulator out")
        if (p[~bad] < 0).any():
            raise InputError(f"{what}: item {item!r} has negative stored probabilities; check the columns {cols}")
        p[~bad] = p[~bad] / p[~bad].sum(axis=1, keepdims=True)
        return p, {"rows": rows.index[bad].tolist(), "not_simulated": int(bad.sum()), "of": int(len(p))}

    return source


# ---------------------------------------------------------------------------------------------
# prompting a live LLM (rectify.llm.simulator.PromptSimulator): a factory, since it needs a backend
# ---------------------------------------------------------------------------------------------
def _prompt_probabilities(rows, pilot, spec, item_obj, backend, strategy, k, selection, seed):
    """(M, K) probabilities for ``rows`` (NaN rows: unanswered) and a record of the unanswered rows.

    Every prompt unanswered raises :class:`~rectify.errors.BackendError` (the cell fails and a
    resumed comparison retries it); some unanswered is a partial answer, recorded, never hidden."""
    from .errors import BackendError
    from .llm.simulator import PromptSimulator

    if item_obj.n_options != len(spec.scores):
        raise ConfigError(f"item {item_obj.name!r}: {item_obj.n_options} option labels for {len(spec.scores)} "
                          f"option scores {list(spec.scores)}; give one label per score")
    cov = list(spec.covariates)
    sim = PromptSimulator(backend, item_obj, strategy=strategy, k=k, selection=selection, random_state=seed)
    if strategy == "few-shot":
        pi = pilot[pilot[item_obj.name].notna()]
        sim.fit(pi[cov], pi[item_obj.name])
    else:
        sim.fit()
    p = np.asarray(sim.predict_proba(rows[cov]), float)
    bad = np.isnan(p).any(axis=1)
    scores = getattr(sim, "last_scores_", None)
    status = np.asarray(scores.status if scores is not None else ["failed"] * len(p), dtype=object)
    if bad.all():
        errs = [e for e in (scores.errors if scores is not None else []) if e]
        raise BackendError(f"item {item_obj.name!r}: all {len(p)} prompts failed or were answered off the scale"
                           + (f" (first error: {errs[0]})" if errs else "") + "; check the backend and rerun "
                           "(a resumed comparison retries this cell; answered prompts come from the cache)")
    record = {"rows": rows.index[bad].tolist(), "failed": int(np.sum(bad & (status == "failed"))),
              "off_scale": int(np.sum(bad & (status != "failed"))), "of": int(len(p))}
    return p, record


def prompting_methods(backend: Any, items: Sequence[Any], prefix: str = "prompt", k: int = 5,
                      register_them: bool = True, strategies: Sequence[str] = ("zero-shot", "few-shot"),
                      selection: str = "random", description: str = "",
                      corrections: Sequence[str] = ("ppi++",)) -> list[Method]:
    """Methods that prompt an LLM through ``backend``: zero-shot, few-shot, and each + PPI++.

    ``items`` are :class:`rectify.llm.items.Item` objects (name = the item column; options in the
    order of the spec's scores). The personas come from the spec's covariates. Few-shot examples
    (``k`` per prompt, chosen by ``selection``: ``"random"`` or ``"nearest"``) come from the pilot
    and never include the person predicted, so the PPI++ versions may use the pilot's own
    predictions. Not in the default set (a real LLM is slow); every request goes through the
    backend's cache. ``corrections`` names the registered methods run on the prompted predictions
    (default PPI++; e.g. ``"greg"``, ``"raking"``, ``"bayes-chain"``).

    A prompt that still fails after the backend's retries (or is answered off the scale) does not
    fail the method: its row is left out of the estimates and listed in
    ``MethodOutput.info["unanswered"]`` (item -> rows, counts), which :func:`rectify.compare`
    turns into a note on every metric of the cell. Only an item with no answered prompt at all
    raises :class:`~rectify.errors.BackendError`.

    Returns
    -------
    list of Method (``<prefix>-<strategy>`` and ``<prefix>-<strategy>+<correction>`` per strategy),
    registered unless ``register_them=False``.

    Examples
    --------
    >>> from rectify.llm.items import Item
    >>> ms = prompting_methods(object(), [Item("q", "Trust?", ["No", "Yes"])], prefix="demo-llm",
    ...                        register_them=False)
    >>> [(m.name, m.family) for m in ms]  # doctest: +NORMALIZE_WHITESPACE
    [('demo-llm-zero-shot', 'prompting'), ('demo-llm-zero-shot+ppi++', 'rectification'),
     ('demo-llm-few-shot', 'prompting'), ('demo-llm-few-shot+ppi++', 'rectification')]
    """
    by_name = {it.name: it for it in items}
    bad = [s for s in strategies if s not in ("zero-shot", "few-shot")]
    if bad or not strategies:
        raise ConfigError(f"prompting strategies {list(strategies)}: choose among 'zero-shot' and 'few-shot'")
    if selection not in ("random", "nearest"):
        raise ConfigError(f"few-shot selection {selection!r}: choose 'random' or 'nearest'")

    def make(strategy: str, rectified: str | None) -> Method:
        def source(rows, pilot, spec, item, seed):
            missing = [i for i in spec.items if i not in by_name]
            if missing:
                raise ConfigError(f"no wording (Item) given for items {missing}; define them for the prompted "
                                  "simulator (configuration: [items.NAME] tables or items_file)")
            return _prompt_probabilities(rows, pilot, spec, by_name[item], backend, strategy, k, selection, seed)

        name = f"{prefix}-{strategy}" + (f"+{rectified}" if rectified else "")
        what = f"{strategy} prompting" + (f" (k={k}, {selection} examples)" if strategy == "few-shot" else "")
        return predictive_method(name, source, (description + ": " if description else "") + what, rectified,
                                 note=f"{strategy} prompting; no interval")

    for c in corrections:
        if c not in _REGISTRY or "predicted" not in _REGISTRY[c].needs:
            raise ConfigError(f"correction {c!r} is not a registered method on the simulator's predictions; use one "
                              f"of {sorted(k for k, m in _REGISTRY.items() if 'predicted' in m.needs)}")
    out = [make(s, r) for s in strategies for r in (None, *corrections)]
    if register_them:
        for m in out:
            register(m, replace=True)
    return out
