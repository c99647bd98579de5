"""Saving and loading a fitted :class:`rectify.llm.finetune.LoRAClassifier`: a JSON configuration
plus the adapters and head as safetensors (nothing is unpickled; callables are named by import path)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np
from sklearn.utils.validation import check_is_fitted

from rectify.errors import ConfigError
from rectify.llm.finetune_settings import _callable_path, _resolve_callable

_CONFIG_FILE = "rectify_lora_config.json"
_ADAPTER_FILE = "adapter.safetensors"
_HEAD_FILE = "head.safetensors"


def save_lora(clf: Any, directory: str) -> None:
    """Body of :meth:`LoRAClassifier.save_pretrained`."""
    from safetensors.torch import save_file

    check_is_fitted(clf, "head_state_")
    os.makedirs(directory, exist_ok=True)
    params = clf.get_params(deep=False)
    for key in ("backbone", "render"):
        v = params[key]
        if callable(v):
            path = _callable_path(v)
            if path is None:
                raise ConfigError(f"cannot save {key}={v!r}: use a module-level function, or "
                                  f"pass {key}= again to load()")
            params[key] = {"callable": path}
    if params["item"] is not None:
        items = params["item"] if isinstance(params["item"], (list, tuple)) else [params["item"]]
        params["item"] = {"items": [{"name": it.name, "wording": it.wording,
                                     "options": list(it.options), "missing": list(it.missing),
                                     "scores": None if it.scores is None else list(it.scores)}
                                    for it in items],
                          "list": isinstance(clf.item, (list, tuple))}
    if callable(params["template"]):
        path = _callable_path(params["template"])
        if path is None:
            raise ConfigError("cannot save a lambda template; use a template string")
        params["template"] = {"callable": path}
    fitted = {
        "classes": [np.asarray(c).tolist() for c in clf._classes_list()],
        "battery": bool(clf._battery),
        "item_names": list(clf.item_names_),
        "n_missing": np.asarray(clf.n_missing_).tolist(),
        "history": [{k: (None if isinstance(v, float) and np.isnan(v) else v)
                     for k, v in h.items()} for h in clf.history_],
        "best_epoch": int(clf.best_epoch_),
        "target_modules": list(clf.target_modules_),
        "n_features_in": int(clf.n_features_in_),
        "n_val": int(clf.n_val_),
        "dtype": clf.dtype_,
        "n_cached_layers": int(clf.n_cached_layers_),
        "rows_used": np.asarray(clf.rows_used_).tolist(),
    }
    try:
        text = json.dumps({"params": params, "fitted": fitted, "format": 1}, indent=2,
                          default=_json_default)
    except TypeError as err:
        raise ConfigError(f"cannot save the configuration as JSON: {err}") from None
    with open(os.path.join(directory, _CONFIG_FILE), "w") as fh:
        fh.write(text)
    save_file({k: v.contiguous() for k, v in clf.adapter_state_.items()},
              os.path.join(directory, _ADAPTER_FILE))
    save_file({k: v.contiguous() for k, v in clf.head_state_.items()},
              os.path.join(directory, _HEAD_FILE))


def load_lora(cls: type, directory: str, *, backbone: Any = None, render: Callable | None = None,
              device: str | None = None, allow_callables: bool = False) -> Any:
    """Body of :meth:`LoRAClassifier.load`."""
    from safetensors.torch import load_file

    path = os.path.join(directory, _CONFIG_FILE)
    if not os.path.exists(path):
        raise ConfigError(f"{directory!r} holds no saved LoRAClassifier ({_CONFIG_FILE} missing)")
    with open(path) as fh:
        cfg = json.load(fh)
    params = dict(cfg["params"])
    given = {"backbone": backbone, "render": render, "template": None}
    for key in ("backbone", "render", "template"):
        v = params.get(key)
        if isinstance(v, dict) and "callable" in v:
            if given[key] is not None:
                continue  # replaced below by the caller's object: nothing is imported
            target = str(v["callable"])
            if not (target.startswith("rectify.") or allow_callables):
                raise ConfigError(
                    f"{directory!r} names the callable {target!r} as its {key}; loading it would import and "
                    f"run code that a file names: pass the object yourself ({key}=...) or, for a folder you "
                    "saved yourself, allow_callables=True")
            params[key] = _resolve_callable(target)
    if isinstance(params.get("item"), dict):
        from rectify.llm.items import Item

        items = [Item(d["name"], d["wording"], d["options"], missing=d["missing"],
                      scores=d["scores"]) for d in params["item"]["items"]]
        params["item"] = items if params["item"]["list"] else items[0]
    if backbone is not None:
        params["backbone"] = backbone
    if render is not None:
        params["render"] = render
    if device is not None:
        params["device"] = device
    for key in ("target_modules",):
        if isinstance(params.get(key), list):
            params[key] = list(params[key])
    obj = cls(**params)
    f = cfg["fitted"]
    classes = [np.asarray(c) for c in f["classes"]]
    obj.classes_ = classes if f["battery"] else classes[0]
    obj._battery = f["battery"]
    obj.item_names_ = f["item_names"]
    obj.n_missing_ = np.asarray(f["n_missing"], dtype=int)
    obj.history_ = [{k: (np.nan if v is None else v) for k, v in h.items()} for h in f["history"]]
    obj.best_epoch_ = f["best_epoch"]
    obj.target_modules_ = f["target_modules"]
    obj.n_features_in_ = f["n_features_in"]
    obj.n_val_ = f["n_val"]
    if "dtype" in f:  # saved by rectify >= December 2026
        obj.dtype_ = f["dtype"]
        obj.n_cached_layers_ = f["n_cached_layers"]
        obj.rows_used_ = np.asarray(f["rows_used"], dtype=int)
    obj.adapter_state_ = load_file(os.path.join(directory, _ADAPTER_FILE))
    obj.head_state_ = load_file(os.path.join(directory, _HEAD_FILE))
    obj._net = None
    return obj


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")
