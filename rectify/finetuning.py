"""Fine-tuning methods of :func:`rectify.compare`: a classifier trained on the pilot, alone and rectified.

:func:`finetune_methods` builds three methods around any classifier factory (by default the LoRA
classifier :class:`rectify.llm.finetune.LoRAClassifier`):

* ``<prefix>`` -- the classifier fine-tuned on the pilot, its average predicted distribution taken
  at face value (family ``"fine-tuning"``);
* ``<prefix>+xfit-ppi++`` -- cross-fitted: the pilot is split into K folds, each fold's model
  predicts its held-out pilot rows, the population gets the average of the K fold models, and
  cross-prediction PPI++ (:func:`rectify.estimators.crossfit.crossppi_shares`, tuned lambda)
  corrects the shares and the mean (family ``"rectification"``);
* ``<prefix>+ppi++ (in-sample)`` -- the paper's degeneracy case: PPI++ fed with the in-sample
  predictions of the model trained on the same pilot. Its residuals on the pilot are too small,
  so its intervals are too narrow; it is there to show that, never to be used. It always emits
  :class:`~rectify.errors.InSamplePredictionWarning`, which compare records in the cell's note.

``lora``, ``lora+xfit-ppi++`` and ``lora+ppi++ (in-sample)`` are registered with the classifier's
default settings (slow on CPU; not in the default set). A configuration's ``[finetune]`` table
re-registers them with its settings (:data:`FINETUNE_KEYS`).

Examples
--------
>>> from rectify.registry import get
>>> get("lora+xfit-ppi++").family, get("lora+ppi++ (in-sample)").family
('rectification', 'rectification')
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError, InSamplePredictionWarning
from .registry import (
    Method,
    MethodOutput,
    Spec,
    _ppi,
    crossppi_rows,
    estimates_by_group,
    estimates_from_probabilities,
    prediction_rows,
    register,
    with_predictions,
)

__all__ = ["FINETUNE_KEYS", "finetune_methods", "lora_estimator", "covariate_estimator", "PerItemClassifier",
           "check_finetune_settings", "IN_SAMPLE_MESSAGE"]

#: ``[finetune]`` keys -> (LoRAClassifier parameter or None for a method setting, accepted types)
FINETUNE_KEYS: dict[str, tuple[str | None, tuple]] = {
    "rank": ("r", (int,)), "alpha": ("alpha", (int, float)), "layers": ("lora_layers", (int,)),
    "epochs": ("epochs", (int,)), "dtype": ("dtype", (str,)), "batch_size": ("batch_size", (int,)),
    "lr": ("lr", (int, float)), "max_length": ("max_length", (int,)), "progress": ("progress", (bool,)),
    "backbone": ("backbone", (str,)), "val_fraction": ("val_fraction", (int, float)),
    "threads": ("num_threads", (int,)),
    "max_pilot_rows": (None, (int,)), "folds": (None, (int,)),
}

IN_SAMPLE_MESSAGE = ("{name}: PPI++ is fed the in-sample predictions of a model trained on the same pilot; its "
                     "pilot residuals are too small, so the interval is too narrow and not valid. Use the "
                     "cross-fitted method {alt!r} (rectify.estimators.crossfit) instead")


def check_finetune_settings(settings: Mapping[str, Any] | None, where: str = "[finetune]") -> dict:
    """Validate fine-tuning settings (:data:`FINETUNE_KEYS`); return them as a dict.

    Examples
    --------
    >>> check_finetune_settings({"rank": 4, "epochs": 1})
    {'rank': 4, 'epochs': 1}
    >>> try:
    ...     check_finetune_settings({"rank": "eight"})
    ... except ConfigError as err:
    ...     print(err)
    [finetune]: 'rank' must be int, got str 'eight'
    """
    out = dict(settings or {})
    unknown = sorted(set(out) - set(FINETUNE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(FINETUNE_KEYS))}")
    for key, v in out.items():
        types = FINETUNE_KEYS[key][1]
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise ConfigError(f"{where}: {key!r} must be {' or '.join(t.__name__ for t in types)}, "
                              f"got {type(v).__name__} {v!r}")
        if types == (int,) and v < 1:
            raise ConfigError(f"{where}: {key!r} must be a positive integer, got {v}")
    if out.get("folds", 2) < 2:
        raise ConfigError(f"{where}: 'folds' must be at least 2 for cross-fitting")
    from .llm.finetune import LoRAClassifier, _check_params

    try:  # ranges (lr > 0, val_fraction < 0.5, ...) as the classifier checks them
        _check_params(LoRAClassifier(**{FINETUNE_KEYS[k][0]: v for k, v in out.items()
                                        if FINETUNE_KEYS[k][0] not in (None, "backbone")}))
    except InputError as err:
        raise ConfigError(f"{where}: {err}") from None
    return out


def lora_estimator(spec: Spec, seed: int, **params: Any) -> Any:
    """An unfitted :class:`~rectify.llm.finetune.LoRAClassifier` for the spec's items (one head per item).

    A parameter this version of the classifier does not have raises
    :class:`~rectify.errors.ConfigError` naming it.

    Examples
    --------
    >>> clf = lora_estimator(Spec(("q1", "q2"), (1.0, 2.0, 3.0)), 7, r=4, epochs=1)
    >>> clf.get_params()["r"], clf.get_params()["options"]
    (4, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    """
    from .llm.finetune import LoRAClassifier

    known = set(inspect.signature(LoRAClassifier.__init__).parameters)
    absent = sorted(set(params) - known)
    if absent:
        raise ConfigError(f"[finetune]: LoRAClassifier has no parameter(s) {absent} in this version; remove them")
    opts = list(spec.scores) if len(spec.items) == 1 else [list(spec.scores)] * len(spec.items)
    return LoRAClassifier(options=opts, random_state=seed, **params)


class PerItemClassifier:
    """One single-item classifier per column of ``Y``: ``fit(X, Y)``, ``predict_proba(X)`` -> list.

    Parameters
    ----------
    make : callable
        ``make() -> classifier`` with ``fit(X, y)`` and ``predict_proba(X)`` for one item.
    n_items : int

    Examples
    --------
    >>> from rectify.llm.baseline import CovariateClassifier
    >>> X = pd.DataFrame({"x": np.arange(40.0)}); Y = np.c_[np.arange(40) % 2 + 1, np.arange(40) % 2 + 1]
    >>> clf = PerItemClassifier(lambda: CovariateClassifier(options=[1, 2], covariates=["x"]), 2).fit(X, Y)
    >>> [p.shape for p in clf.predict_proba(X.head(3))]
    [(3, 2), (3, 2)]
    """

    def __init__(self, make: Callable[[], Any], n_items: int):
        self.make, self.n_items = make, n_items

    def fit(self, X: Any, Y: Any) -> "PerItemClassifier":
        Y = np.asarray(Y, float).reshape(len(X), -1)
        self.models_ = [self.make().fit(X, Y[:, j]) for j in range(self.n_items)]
        return self

    def predict_proba(self, X: Any) -> list:
        return [np.asarray(m.predict_proba(X), float) for m in self.models_]


def covariate_estimator(spec: Spec, seed: int) -> Any:
    """The ordinal covariates classifier (:class:`rectify.llm.baseline.CovariateClassifier`), one per item.

    Examples
    --------
    >>> type(covariate_estimator(Spec(("q1", "q2"), (1.0, 2.0), covariates=("x",)), 0)).__name__
    'PerItemClassifier'
    """
    from .llm.baseline import CovariateClassifier

    def make():
        return CovariateClassifier(kind="ordinal", options=list(spec.scores), covariates=list(spec.covariates),
                                   missing_y="skip", random_state=seed)

    return PerItemClassifier(make, len(spec.items)) if len(spec.items) > 1 else make()


def _targets(pilot: pd.DataFrame, spec: Spec) -> np.ndarray:
    y = pilot[list(spec.items)].to_numpy(float)
    return y[:, 0] if len(spec.items) == 1 else y


def _as_dict(pred: Any, spec: Spec) -> dict:
    pred = pred if isinstance(pred, (list, tuple)) else [pred]
    return {it: np.asarray(p, float) for it, p in zip(spec.items, pred)}


def _train_rows(pilot: pd.DataFrame, max_rows: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if max_rows is None or len(pilot) <= max_rows:
        return pilot
    return pilot.iloc[np.sort(rng.choice(len(pilot), size=max_rows, replace=False))]


def finetune_methods(settings: Mapping[str, Any] | None = None, make_estimator: Callable | None = None,
                     prefix: str = "lora", family: str = "fine-tuning", label: str = "LoRA-adapted SmolLM2 "
                     "with a classification head", register_them: bool = True) -> list[Method]:
    """The fine-tuned classifier, its cross-fitted PPI++ version and the in-sample degeneracy case.

    Parameters
    ----------
    settings : dict, optional
        :data:`FINETUNE_KEYS`: classifier parameters (``rank``, ``layers``, ``epochs``, ``dtype``,
        ...), ``max_pilot_rows`` (cap on the rows the plain and in-sample models train on, a
        seeded subsample; cross-fitting uses every pilot row) and ``folds`` (default 5).
    make_estimator : callable, optional
        ``make_estimator(spec, seed) -> estimator`` with ``fit(X, Y)`` and ``predict_proba(X)``
        (a list of (n, K) arrays for several items); default :func:`lora_estimator` with the
        classifier parameters of ``settings``.
    prefix, family, label : names and words of the three methods.
    register_them : bool

    Returns
    -------
    list of Method: ``prefix``, ``prefix+xfit-ppi++``, ``prefix+ppi++ (in-sample)``.

    Examples
    --------
    >>> [m.name for m in finetune_methods({"epochs": 1}, register_them=False)]
    ['lora', 'lora+xfit-ppi++', 'lora+ppi++ (in-sample)']
    """
    settings = check_finetune_settings(settings)
    params = {FINETUNE_KEYS[k][0]: v for k, v in settings.items() if FINETUNE_KEYS[k][0] is not None}
    max_rows, n_folds = settings.get("max_pilot_rows"), int(settings.get("folds", 5))
    if make_estimator is None:
        def make_estimator(spec, seed):
            return lora_estimator(spec, seed, **params)
    xfit_name, insample_name = f"{prefix}+xfit-ppi++", f"{prefix}+ppi++ (in-sample)"

    def fit(pilot, spec, rng):
        seed = int(rng.integers(0, 2**31 - 1))
        tr = _train_rows(pilot, max_rows, rng)
        return make_estimator(spec, seed).fit(tr[list(spec.covariates)], _targets(tr, spec))

    def plain(frame, pilot, spec, random_state):
        sc = np.asarray(spec.scores, float)
        probs = _as_dict(fit(pilot, spec, random_state).predict_proba(frame[list(spec.covariates)]), spec)
        preds = pd.DataFrame({it: probs[it] @ sc for it in spec.items}, index=frame.index)
        est = estimates_from_probabilities(probs, frame, spec, note=f"{prefix}: average predicted distribution")
        return MethodOutput(est, predictions=preds, probabilities=probs)

    def in_sample(frame, pilot, spec, random_state):
        model = fit(pilot, spec, random_state)
        rows = prediction_rows(frame, pilot, spec.covariates)
        probs = _as_dict(model.predict_proba(rows), spec)
        warnings.warn(IN_SAMPLE_MESSAGE.format(name=insample_name, alt=xfit_name), InSamplePredictionWarning,
                      stacklevel=2)
        fr, pi, spec2 = with_predictions(frame, pilot, spec, probs, rows.index)
        out = _ppi(fr, pi, spec2, random_state)
        out.info["note"] = "degenerate on purpose: in-sample predictions, intervals too narrow"
        return out

    def xfit(frame, pilot, spec, random_state):
        from .estimators.crossfit import cross_fit

        seed = int(random_state.integers(0, 2**31 - 1))
        cov = list(spec.covariates)
        cf = cross_fit(make_estimator(spec, seed), pilot[cov], _targets(pilot, spec), X_population=frame[cov],
                       n_folds=n_folds, random_state=seed, stratify=False, keep_estimators=False)
        oof = cf.oof if isinstance(cf.oof, list) else [cf.oof]
        pop = cf.population_folds if isinstance(cf.population_folds, list) else [cf.population_folds]
        ppos = pd.Series(np.arange(len(pilot)), index=pilot.index)
        fpos = pd.Series(np.arange(len(frame)), index=frame.index)

        def one(item, fr, pi):
            j = spec.items.index(item)
            return crossppi_rows(item, pi[item].to_numpy(float), oof[j][ppos.loc[pi.index].to_numpy()],
                                 pop[j][:, fpos.loc[fr.index].to_numpy()], spec,
                                 f"{prefix} cross-fitted on {n_folds} folds + PPI++", lam="tune")

        return MethodOutput(estimates_by_group(one, frame, pilot, spec))

    what = f"{label}, fine-tuned on the pilot"
    out = [
        Method(prefix, family, plain, what, needs=("covariates",), default=False),
        Method(xfit_name, "rectification", xfit, f"{label}, cross-fitted on {n_folds} folds of the pilot (each fold "
               "model predicts its held-out pilot rows, the population gets their average) + PPI++",
               needs=("covariates",), default=False),
        Method(insample_name, "rectification", in_sample, f"DEGENERACY CASE: PPI++ on the in-sample predictions of "
               f"the {label} trained on the same pilot (intervals too narrow; use {xfit_name})",
               needs=("covariates",), default=False),
    ]
    if register_them:
        for m in out:
            register(m, replace=True)
    return out


finetune_methods()
