"""Settings and labels of :class:`rectify.llm.finetune.LoRAClassifier`: callables by import path,
item specifications and answer codes, and the checks of every setting (naming the argument)."""

from __future__ import annotations

import importlib
import numbers
from typing import Any, Callable

import numpy as np

from rectify.errors import InputError


# ----------------------------------------------------------------------------- backbone
def _callable_path(fn: Any) -> str | None:
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not mod or not qual or "<" in qual:
        return None
    return f"{mod}:{qual}"


def _resolve_callable(path: str) -> Callable:
    mod, _, qual = path.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- labels
def _item_specs(item: Any, options: Any, n_classes: Any, y: np.ndarray | None,
                n_items: int) -> list[dict]:
    """One spec per item: name, options (canonical order) and a coder answers -> codes."""
    from rectify.llm.baseline import check_labels

    specs = []
    if item is not None:
        items = list(item) if isinstance(item, (list, tuple)) else [item]
        for it in items:
            if not hasattr(it, "to_index") or not hasattr(it, "options"):
                raise InputError("argument 'item' must be an Item or a list of Items")
        if len(items) != n_items:
            raise InputError(f"{len(items)} items given for {n_items} answer columns in 'y'")
        for it in items:
            specs.append({"name": it.name, "options": list(it.options), "item": it})
        return specs
    if options is not None:
        opts = list(options)
        nested = opts and isinstance(opts[0], (list, tuple))
        lists = [list(o) for o in opts] if nested else [opts] * n_items
        if len(lists) != n_items:
            raise InputError(f"{len(lists)} option lists given for {n_items} items in 'y'")
        return [{"name": f"item{j}", "options": lists[j], "item": None} for j in range(n_items)]
    if n_classes is not None:
        if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise InputError(f"argument 'n_classes' must be an integer >= 2, got {n_classes!r}")
        return [{"name": f"item{j}", "options": list(range(int(n_classes))), "item": None}
                for j in range(n_items)]
    if y is None:
        raise InputError("give 'item', 'options' or 'n_classes'")
    from sklearn.utils.multiclass import type_of_target

    for j in range(n_items):
        col = y[:, j]
        obs = np.array([not (v is None or (isinstance(v, float) and np.isnan(v))) for v in col])
        try:
            kind = type_of_target(np.asarray(col[obs].tolist()))
        except ValueError:
            kind = "unknown"
        if kind.startswith("continuous"):
            raise InputError("Unknown label type: continuous answers in 'y'; a classifier needs "
                             "option labels -- pass 'item' or 'options' for a numeric scale")
        _, classes, _ = check_labels(y[:, j], None, name="y", allow_missing=True)
        if len(classes) < 2:
            raise InputError(f"item {j}: the pilot has a single answer class. Classifier can't "
                             "train when only one class is present.")
        specs.append({"name": f"item{j}", "options": classes.tolist(), "item": None})
    return specs


def _encode(y_col: np.ndarray, spec: dict) -> np.ndarray:
    from rectify.llm.baseline import check_labels

    if spec["item"] is not None:
        return spec["item"].to_index(list(y_col))
    codes, _, _ = check_labels(y_col, spec["options"], name="y", allow_missing=True)
    return codes


# ----------------------------------------------------------------------------- settings
def _int_setting(value: Any, name: str, low: int = 1, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        none = " or None" if optional else ""
        raise InputError(f"argument {name!r} must be an integer >= {low}{none}, got {value!r}; "
                         "set it to a whole number such as 2")


def _real_setting(value: Any, name: str, low: float, high: float, low_open: bool,
                  high_open: bool = True) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
          and np.isfinite(float(value)))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise InputError(f"argument {name!r} must be a number in {lo}{low}, {high}{hi}, got {value!r}")


def _check_params(est: "LoRAClassifier") -> None:
    """Refuse settings a configuration file may carry wrongly, naming the argument."""
    from rectify.llm.lora_backbone import DTYPES

    for name in ("r", "epochs", "batch_size", "max_length", "head_hidden", "patience"):
        _int_setting(getattr(est, name), name)
    _int_setting(est.lora_layers, "lora_layers", optional=True)
    _int_setting(est.max_rows, "max_rows", low=2, optional=True)
    _int_setting(est.num_threads, "num_threads", optional=True)
    _real_setting(est.lr, "lr", 0.0, 1.0, low_open=True, high_open=False)
    _real_setting(est.alpha, "alpha", 0.0, np.inf, low_open=True)
    _real_setting(est.val_fraction, "val_fraction", 0.0, 0.5, low_open=False)
    _real_setting(est.dropout, "dropout", 0.0, 1.0, low_open=False)
    _real_setting(est.head_dropout, "head_dropout", 0.0, 1.0, low_open=False)
    dtype = est.dtype if est.dtype is None else str(est.dtype).replace("torch.", "")
    if dtype not in (None, "auto") + DTYPES:
        raise InputError(f"argument 'dtype' must be 'auto' or one of {list(DTYPES)}, got "
                         f"{est.dtype!r}; 'auto' picks bf16 only where the CPU computes it natively")
    for name in ("cache_activations", "progress"):
        if not isinstance(getattr(est, name), (bool, np.bool_)):
            raise InputError(f"argument {name!r} must be True or False, got {getattr(est, name)!r}")
    if not (est.class_weight in ("balanced", None) or isinstance(est.class_weight, dict)):
        raise InputError("argument 'class_weight' must be 'balanced', None or a dict "
                         f"{{option: weight}}, got {est.class_weight!r}")
    if est.pooling not in ("mean", "last"):
        raise InputError(f"argument 'pooling' must be 'mean' or 'last', got {est.pooling!r}")
    if isinstance(est.random_state, bool) or not isinstance(est.random_state, numbers.Integral) \
            or est.random_state < 0:
        raise InputError(f"argument 'random_state' must be an integer >= 0, got "
                         f"{est.random_state!r} (a run is repeatable only with a fixed seed)")
