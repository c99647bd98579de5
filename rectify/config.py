"""Comparison configurations: the TOML read by ``rectify compare``, named designs, and the methods they build.

A configuration names the data, the simulators, how they are prompted, how the fine-tuned model is
trained and which methods (and combined pipelines) to compare. :func:`load_config` reads and checks
the file (one :class:`~rectify.errors.ConfigError` per problem, naming the key and what to write);
:func:`prepare` reads the frame and builds everything :func:`rectify.compare` needs. A **design**
(:data:`DESIGNS`, e.g. ``"seed"``, the paper's protocol) is a dict of settings merged *under* the
user's: what the file says wins.

The format (every key optional except ``frame`` and ``items``)::

    frame = "survey.csv"                 # CSV or Parquet; relative paths are read from the config's folder
    items = ["q1", "q2"]                 # item columns (human answers as option scores, empty = missing)
    scores = [1, 2, 3, 4]                # option scores (default: the answers seen)
    covariates = ["age", "ideology"]     # personas of prompted simulators, fine-tuning inputs
    groups = ["ideology"]
    formula = "q1 ~ age + ideology"
    methods = ["classical", "ppi++", "smol-zero-shot", "smol-few-shot+ppi++", "lora+xfit-ppi++"]
    pilot_sizes = [50, 100]              # or pilot_fraction = 0.05
    evaluate = "rest"                    # "frame" (default) or "rest": estimate and judge the non-pilot rows
    designs = ["srs", "active"]          # pilot designs compared (default ["srs"]; needs evaluate = "frame"):
                                         # "srs", "neyman", "active", "active:poisson" or inline tables of
                                         # rectify.design_pilot's options, e.g. {design = "active", uniform = 0.3}
    repeats = 3
    seed = 1
    strategies = ["zero-shot", "few-shot"]   # prompting strategies of the local/openai simulators
    k = 5                                # few-shot examples per prompt
    selection = "nearest"                # "random" or "nearest"

    [items.q1]                           # instead of the list: the wording of each prompted item
    wording = "How much do you trust scientists?"
    options = ["Not at all", "A little", "Somewhat", "A lot"]
    # ... or items_file = "items.json" (a list of {"name", "wording", "options"} or {"items": [...]})

    [simulators.smol]                    # the embedded model (or model = "path/to/hf-model")
    kind = "local"
    dtype = "auto"
    batch_size = 32
    threads = 2
    [simulators.server]                  # any OpenAI-compatible server
    kind = "openai"
    base_url = "http://127.0.0.1:8080/v1"
    model = "smollm2"
    api_key_env = "MY_KEY"               # the key is read from this variable; never written in the file
    [simulators.stored]                  # answers already in the frame
    kind = "columns"
    predicted = "{item}_llm"
    probabilities = "{item}_p{k}"

    [finetune]                           # the lora methods
    rank = 8
    layers = 2
    epochs = 2
    dtype = "float32"
    max_pilot_rows = 200

    [pipelines.smol-fewshot-greg]        # a simulator + a correction
    simulator = "smol"
    strategy = "few-shot"
    correction = "greg"

Every local/openai simulator ``S`` gives methods ``S-<strategy>`` and ``S-<strategy>+ppi++``;
every columns simulator ``S`` gives ``S`` and ``S+ppi++`` (the first one, without top-level
``predicted``, is also the dataset's simulator of ``simulator``, ``ppi++``, ``greg``, ...). Each
simulator has a response cache (``cache = "file.sqlite"``; default
``<checkpoint or output>/cache/<name>.sqlite``). A pipeline's ``correction`` is a method on the
simulator's predictions (``ppi++``, ``greg``, ``raking``, ``bayes-chain``) or, for a model trained on
the pilot (``lora``, ``covariates``), ``xfit-ppi++`` (cross-fitted) or ``ppi++`` (in-sample: the
degeneracy case, which warns).

Why one module of ~700 lines: it is the one place that checks a configuration file -- every key,
its type and range, the simulators, pipelines and designs -- so that the command line refuses a bad
file before anything runs, with a message naming the key.

Examples
--------
>>> sorted(DESIGNS["seed"])
['evaluate', 'groups', 'methods', 'pilot_fraction', 'repeats']
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from typing import Any, Mapping
from urllib.parse import urlsplit

from ._checks import check_number, check_url_secrets
from .errors import BackendError, ConfigError, InputError

__all__ = ["CONFIG_KEYS", "DESIGNS", "SEED_METHODS", "BUNDLED", "load_config", "apply_design", "prepare",
           "check_servers", "bundled_config", "bundled_frame"]

CONFIG_KEYS: dict[str, Any] = {
    "frame": str, "dataset": str, "items": (list, dict), "items_file": str, "scores": list,
    "predicted": (str, dict), "probabilities": (str, dict), "formula": str, "groups": list, "covariates": list,
    "methods": list, "pilot_sizes": list, "pilot_fraction": float, "evaluate": str, "repeats": int, "seed": int,
    "level": float, "min_group_n": int, "output": str, "checkpoint": str, "title": str, "scales": dict,
    "simulators": dict, "strategies": list, "k": int, "selection": str, "finetune": dict, "pipelines": dict,
    "design": str, "backend": (str, dict), "designs": list,
}

#: the most random pilots per size a configuration may ask for (each is a full set of fits)
MAX_REPEATS = 10_000

#: every family, for ``methods = "all"`` (the configuration's simulators and pipelines are added)
SEED_METHODS = ("classical", "simulator", "ppi++", "greg", "raking", "bayes-chain", "covariates", "covariates+ppi",
                "lora", "lora+xfit-ppi++", "lora+ppi++ (in-sample)")

#: named designs: settings merged under the user's configuration
DESIGNS: dict[str, dict] = {
    "seed": {  # the paper's protocol
        "pilot_fraction": 0.05,    # a 5% pilot
        "evaluate": "rest",        # estimates and fidelity judged on the people outside the pilot
        "groups": ["ideology"],    # the subgroup (``--group COL`` or the file's ``groups`` override it)
        "methods": "all",          # every family: SEED_METHODS + the configured simulators and pipelines
        "repeats": 3,
    },
}

#: bundled data sets usable instead of a frame: name -> (frame function, settings function) of rectify.demo
BUNDLED = {
    "misinfo": ("comparison_frame", "comparison_settings"),
    "anes96": ("anes_comparison_frame", "anes_comparison_settings"),
    "gss": ("gss_comparison_frame", "gss_comparison_settings"),
}

_TOML_NAMES = {"str": "string in double quotes", "list": "list in [ ]", "int": "whole number",
               "float": "number", "dict": "table", "str or dict": "string or table", "list or dict": "list or table",
               "bool": "true or false"}
_SIM_KEYS = {
    "local": {"kind": str, "model": str, "dtype": str, "batch_size": int, "threads": int, "device": str,
              "cache": str, "progress": bool},
    "openai": {"kind": str, "model": str, "base_url": str, "api_key_env": str, "mode": str, "max_concurrency": int,
               "max_retries": int, "timeout": float, "top_logprobs": int, "cache": str, "progress": bool},
    "columns": {"kind": str, "predicted": (str, dict), "probabilities": (str, dict)},
}
_SECRET_KEYS = ("api_key", "key", "token", "password", "secret", "authorization")
_CORRECTIONS = ("ppi++", "greg", "raking", "bayes-chain", "simulator")
_TRAINED = ("lora", "covariates")


def _type_ok(v: Any, typ: Any) -> bool:
    types = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(v, bool):
        return bool in types
    if float in types and isinstance(v, int):
        return True
    return isinstance(v, types)


def _check_types(table: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> None:
    for key, typ in schema.items():
        if key in table and not _type_ok(table[key], typ):
            want = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
            raise ConfigError(f"{where}: key {key!r} has the wrong type ({type(table[key]).__name__}); give a TOML "
                              f"{_TOML_NAMES.get(want, want)}")


def _read_toml(path: str) -> dict:
    import tomllib

    if not os.path.isfile(path):
        raise ConfigError(f"configuration file {path!r} not found; check the path")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}; fix the syntax there (strings in double quotes, lists "
                          f"in [ ], one key = value per line)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the configuration ({err}); check that it is a UTF-8 text "
                          "file") from None


def apply_design(cfg: Mapping[str, Any], design: str | None) -> dict:
    """Merge the named design's settings under ``cfg`` (the configuration's own keys win).

    Examples
    --------
    >>> apply_design({"repeats": 5}, "seed")["repeats"], apply_design({}, "seed")["evaluate"]
    (5, 'rest')
    """
    out = dict(cfg)
    if design is None:
        return out
    if design not in DESIGNS:
        raise ConfigError(f"unknown design {design!r}; choose from {sorted(DESIGNS)}")
    for key, value in DESIGNS[design].items():
        if key == "pilot_fraction" and "pilot_sizes" in out:
            continue
        out.setdefault(key, value)
    return out


def _check_simulators(sims: Mapping[str, Any], path: str) -> dict:
    out = {}
    for name, sim in sims.items():
        where = f"{path}: [simulators.{name}]"
        if not isinstance(sim, dict):
            raise ConfigError(f"{where} must be a table with kind = \"local\", \"openai\" or \"columns\"")
        secret = [k for k in sim if k.lower() in _SECRET_KEYS]
        if secret:
            raise ConfigError(f"{where}: an API key must never be written in the configuration ({secret[0]!r} "
                              "found); remove it, export the key in an environment variable and name it with "
                              "api_key_env = \"VAR\"")
        kind = sim.get("kind")
        if kind not in _SIM_KEYS:
            raise ConfigError(f"{where}: kind {kind!r} is unknown; use \"local\" (the embedded or a local model), "
                              "\"openai\" (an OpenAI-compatible server) or \"columns\" (stored answers)")
        unknown = sorted(set(sim) - set(_SIM_KEYS[kind]))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} for kind {kind!r}; allowed: "
                              f"{', '.join(sorted(_SIM_KEYS[kind]))}")
        _check_types(sim, _SIM_KEYS[kind], where)
        for key in ("batch_size", "threads", "max_concurrency"):
            if key in sim and sim[key] < 1:
                raise ConfigError(f"{where}: {key!r} must be a positive integer, got {sim[key]}")
        if kind == "openai" and "model" not in sim:
            raise ConfigError(f"{where}: 'model' (the model's name on the server) is required")
        if kind == "columns" and "predicted" not in sim:
            raise ConfigError(f"{where}: 'predicted' (e.g. \"{{item}}_llm\") is required")
        if "base_url" in sim:
            check_url_secrets(sim["base_url"], f"{where}: base_url")  # never echoes the URL
            if urlsplit(sim["base_url"]).scheme not in ("http", "https"):
                raise ConfigError(f"{where}: base_url {sim['base_url']!r} must start with http:// or https://")
        for key, low, high in (("timeout", 0.0, 86400.0), ("max_retries", 0, 100), ("top_logprobs", 1, 20)):
            if key in sim:
                check_number(sim[key], key, low=low, high=high, low_open=key == "timeout", error=ConfigError,
                             hint=f" in {where}")
        out[str(name)] = dict(sim)
    return out


def load_config(path: str, design: str | None = None) -> dict:
    """Read and check a comparison configuration (TOML); return its settings.

    Raises :class:`~rectify.errors.ConfigError` for an unreadable file, an unknown key, a value of
    the wrong type, a missing frame, an API key written in the file, an unknown simulator kind or a
    pipeline naming a simulator that is not defined.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "c.toml")
    >>> _ = open(p, "w").write('frame = "x.csv"\\nitems = ["q"]\\nseed = -1\\n')
    >>> try:
    ...     load_config(p)
    ... except ConfigError as err:
    ...     print(str(err).split(": ", 1)[1])
    'seed' must be a non-negative whole number, got -1
    """
    raw = _read_toml(path) if path is not None else {}
    return check_config(raw, os.path.dirname(os.path.abspath(path)), path, design)


def bundled_config(name: str, design: str | None = None) -> dict:
    """Settings of a bundled data set (:data:`BUNDLED`) for ``rectify compare --design seed NAME``.

    Examples
    --------
    >>> cfg = bundled_config("misinfo", "seed")
    >>> cfg["kwargs"]["evaluate"], cfg["kwargs"]["groups"], cfg["pilot_fraction"]
    ('rest', ['ideology'], 0.05)
    """
    if name not in BUNDLED:
        raise ConfigError(f"{name!r} is neither a configuration file nor a bundled data set ({sorted(BUNDLED)})")
    from . import demo

    settings_fn = getattr(demo, BUNDLED[name][1], None)
    if settings_fn is None:
        raise ConfigError(f"the bundled data set {name!r} is not available in this version; use "
                          f"{sorted(k for k in BUNDLED if hasattr(demo, BUNDLED[k][1]))}")
    raw = {key: value for key, value in settings_fn().items() if key != "scales"}
    raw["dataset"] = name
    raw["title"] = f"rectify: {name}"
    cfg = check_config(raw, os.getcwd(), f"dataset {name}", design)
    cfg["kwargs"]["scales"] = settings_fn().get("scales")
    return cfg


def bundled_frame(name: str) -> Any:
    """The frame of a bundled data set (:data:`BUNDLED`).

    Examples
    --------
    >>> len(bundled_frame("misinfo"))
    1500
    """
    from . import demo

    fn = getattr(demo, BUNDLED.get(name, ("", ""))[0], None)
    if fn is None:
        raise ConfigError(f"the bundled data set {name!r} is not available in this version")
    return fn()


def check_config(raw: Mapping[str, Any], base: str, path: str, design: str | None = None) -> dict:
    """Check a configuration already parsed (a dict) whose relative paths start at ``base``.

    Examples
    --------
    >>> cfg = check_config({"dataset": "misinfo", "items": ["f01"], "strategies": ["zero-shot"]}, ".", "inline")
    >>> cfg["prompting"], cfg["kwargs"]["predicted"]
    ({'strategies': ['zero-shot'], 'k': 5, 'selection': 'random'}, '{item}_llm')
    """
    cfg = apply_design(raw, design or raw.get("design"))
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}; remove or rename them (allowed: "
                          f"{', '.join(sorted(CONFIG_KEYS))})")
    if cfg.get("methods") == "all":
        cfg = {**cfg, "methods": ["all"]}
    _check_types(cfg, CONFIG_KEYS, path)
    if "frame" not in cfg and "dataset" not in cfg:
        raise ConfigError(f"{path}: key 'frame' is required; add it (the format is in the docs of rectify.config)")
    if "items" not in cfg and "items_file" not in cfg:
        raise ConfigError(f"{path}: key 'items' is required; add it (the format is in the docs of rectify.config)")
    if "backend" in cfg:
        raise ConfigError(f"{path}: 'backend' is not a key; describe each LLM in a [simulators.NAME] table (kind = "
                          "\"local\", \"openai\" or \"columns\"); see the docs of rectify.config")
    for key in ("scores", "groups", "covariates", "methods", "pilot_sizes", "strategies"):
        if key in cfg and not cfg[key]:
            raise ConfigError(f"{path}: key {key!r} is empty; list at least one value or remove the key")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in cfg.get("pilot_sizes", [])):
        raise ConfigError(f"{path}: 'pilot_sizes' must be a list of integers; write e.g. [50, 100, 200]")
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in cfg.get("scores", [])):
        raise ConfigError(f"{path}: 'scores' must be a list of numbers (the option scores), e.g. [1, 2, 3, 4]; got "
                          f"{cfg['scores']}")
    for key in ("groups", "covariates", "methods", "strategies"):
        if any(not isinstance(v, str) for v in cfg.get(key, [])):
            raise ConfigError(f"{path}: {key!r} must be a list of strings in double quotes")
    if cfg.get("seed", 0) < 0:
        raise ConfigError(f"{path}: 'seed' must be a non-negative whole number, got {cfg['seed']}")
    for key in ("repeats", "k", "min_group_n"):
        if key in cfg and cfg[key] < 1:
            raise ConfigError(f"{path}: {key!r} must be a positive whole number, got {cfg[key]}")
    if cfg.get("repeats", 1) > MAX_REPEATS:
        raise ConfigError(f"{path}: 'repeats' = {cfg['repeats']} is more random pilots per size than a comparison "
                          f"can run (at most {MAX_REPEATS}); give e.g. 5 to 200")
    if "pilot_fraction" in cfg and not 0 < cfg["pilot_fraction"] < 1:
        raise ConfigError(f"{path}: 'pilot_fraction' must be between 0 and 1 (e.g. 0.05), got {cfg['pilot_fraction']}")
    if cfg.get("evaluate", "frame") not in ("frame", "rest"):
        raise ConfigError(f"{path}: 'evaluate' must be \"frame\" or \"rest\", got {cfg['evaluate']!r}")
    if "designs" in cfg:
        from .compare_designs import parse_designs

        try:
            parse_designs(cfg["designs"])
        except ConfigError as err:
            raise ConfigError(f"{path}: 'designs': {err}") from None
        if cfg.get("evaluate", "frame") == "rest" and any(d != "srs" for d in cfg["designs"]):
            raise ConfigError(f"{path}: 'designs' other than \"srs\" need evaluate = \"frame\" (the design-based "
                              "estimators target the frame the inclusion probabilities were computed on); set "
                              "evaluate = \"frame\" or remove them")
    if cfg.get("selection", "random") not in ("random", "nearest"):
        raise ConfigError(f"{path}: 'selection' must be \"random\" or \"nearest\", got {cfg['selection']!r}")
    bad = [s for s in cfg.get("strategies", []) if s not in ("zero-shot", "few-shot")]
    if bad:
        raise ConfigError(f"{path}: unknown strategies {bad}; use \"zero-shot\" and/or \"few-shot\"")
    sims = _check_simulators(cfg.get("simulators", {}), path)
    from .finetuning import check_finetune_settings

    finetune = check_finetune_settings(cfg["finetune"], f"{path}: [finetune]") if "finetune" in cfg else None
    pipes = _check_pipelines(cfg.get("pipelines", {}), sims, path)
    scales = {}
    for name, sc in cfg.get("scales", {}).items():
        if not isinstance(sc, dict) or set(sc) - {"plus", "minus"} or "plus" not in sc:
            raise ConfigError(f"{path}: scale {name!r} must be a table with 'plus' (and optionally 'minus') lists")
        for side in ("plus", "minus"):
            if side in sc and not (isinstance(sc[side], list) and all(isinstance(v, str) for v in sc[side])):
                raise ConfigError(f"{path}: scale {name!r}: {side!r} must be a list of item names in double quotes, "
                                  f"e.g. {side} = [\"q1\", \"q2\"]; got {sc[side]!r}")
        scales[name] = (list(sc["plus"]), list(sc.get("minus", [])))

    def local(p):
        return p if p is None or os.path.isabs(p) else os.path.join(base, p)

    frame_path = None
    if "frame" in cfg:
        frame_path = local(cfg["frame"])
        if not os.path.isfile(frame_path):
            raise ConfigError(f"{path}: frame file {frame_path!r} not found; check the path (a relative path is read "
                              "from the configuration's folder)")
    wording = _item_wording(cfg, local(cfg.get("items_file")), path)
    items = list(cfg["items"]) if isinstance(cfg.get("items"), list) else list(wording)
    columns_sims = [n for n, s in sims.items() if s["kind"] == "columns"]
    predicted = cfg.get("predicted")
    probabilities = cfg.get("probabilities")
    if predicted is None and columns_sims:
        predicted = sims[columns_sims[0]]["predicted"]
        probabilities = sims[columns_sims[0]].get("probabilities", probabilities)
    elif predicted is None and not any(s["kind"] != "columns" for s in sims.values()):
        predicted = "{item}_llm"  # the format before simulators existed
    kwargs = {
        "items": items,
        "methods": cfg.get("methods"),
        "pilot_sizes": cfg.get("pilot_sizes", [50, 100, 200]),
        "repeats": cfg.get("repeats", 5),
        "groups": cfg.get("groups"),
        "formula": cfg.get("formula"),
        "scales": scales or None,
        "predicted": predicted,
        "probabilities": probabilities,
        "scores": cfg.get("scores"),
        "covariates": cfg.get("covariates"),
        "random_state": cfg.get("seed", 0),
        "min_group_n": cfg.get("min_group_n", 20),
        "level": float(cfg.get("level", 0.95)),
        "evaluate": cfg.get("evaluate", "frame"),
        **({"designs": list(cfg["designs"])} if "designs" in cfg else {}),
    }
    return {"frame": frame_path, "dataset": cfg.get("dataset"), "kwargs": kwargs, "output": local(cfg.get("output")),
            "checkpoint": local(cfg.get("checkpoint")), "title": cfg.get("title", "rectify comparison"),
            "simulators": sims, "main_columns": columns_sims[0] if columns_sims and "predicted" not in cfg else None,
            "prompting": {"strategies": list(cfg.get("strategies", ["zero-shot", "few-shot"])), "k": cfg.get("k", 5),
                          "selection": cfg.get("selection", "random")},
            "wording": wording, "finetune": finetune, "pipelines": pipes,
            "pilot_fraction": cfg.get("pilot_fraction") if "pilot_sizes" not in cfg else None, "path": path,
            "cache_base": local(cfg.get("checkpoint")) or local(cfg.get("output")) or os.path.join(base, "rectify-cache")}


def _check_pipelines(pipes: Mapping[str, Any], sims: Mapping[str, dict], path: str) -> dict:
    out = {}
    for name, p in pipes.items():
        where = f"{path}: [pipelines.{name}]"
        if not isinstance(p, dict):
            raise ConfigError(f"{where} must be a table with 'simulator' and 'correction'")
        unknown = sorted(set(p) - {"simulator", "strategy", "correction"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: correction, simulator, strategy")
        _check_types(p, {"simulator": str, "strategy": str, "correction": str}, where)
        sim, corr = p.get("simulator"), p.get("correction")
        if sim is None or corr is None:
            raise ConfigError(f"{where}: give both 'simulator' and 'correction'")
        if sim not in sims and sim not in _TRAINED:
            raise ConfigError(f"{where}: simulator {sim!r} is not defined; add a [simulators.{sim}] table or use one "
                              f"of {sorted(sims) + list(_TRAINED)}")
        kind = sims[sim]["kind"] if sim in sims else "trained"
        allowed = ("xfit-ppi++", "ppi++") if kind == "trained" else _CORRECTIONS
        if corr not in allowed:
            raise ConfigError(f"{where}: correction {corr!r} does not apply to simulator {sim!r}; use one of "
                              f"{list(allowed)}")
        if kind in ("local", "openai"):
            if p.get("strategy") not in ("zero-shot", "few-shot"):
                raise ConfigError(f"{where}: a prompted simulator needs strategy = \"zero-shot\" or \"few-shot\"")
        elif "strategy" in p:
            raise ConfigError(f"{where}: 'strategy' applies only to a prompted (local or openai) simulator")
        out[str(name)] = dict(p)
    return out


def _item_wording(cfg: Mapping[str, Any], items_file: str | None, path: str) -> dict:
    """item name -> dict(wording, options, missing) from ``[items.NAME]`` tables or ``items_file``."""
    out: dict[str, dict] = {}
    if items_file is not None:
        try:
            with open(items_file, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: items_file {items_file!r} cannot be read as JSON ({err}); check the path "
                              "and the syntax") from None
        default_opts = data.get("options") if isinstance(data, dict) else None
        recs = data.get("items") if isinstance(data, dict) else data
        if not isinstance(recs, list) or not all(isinstance(r, dict) and "name" in r for r in recs):
            raise ConfigError(f"{path}: items_file {items_file!r} must hold a list of {{\"name\", \"wording\", "
                              "\"options\"}} objects (or {\"items\": [...]})")
        for r in recs:
            out[str(r["name"])] = {"wording": r.get("wording"), "options": r.get("options", default_opts),
                                   "missing": r.get("missing", [])}
    if isinstance(cfg.get("items"), dict):
        for name, t in cfg["items"].items():
            if not isinstance(t, dict) or "wording" not in t or "options" not in t:
                raise ConfigError(f"{path}: [items.{name}] must be a table with 'wording' and 'options'")
            extra = sorted(set(t) - {"wording", "options", "missing"})
            if extra:
                raise ConfigError(f"{path}: [items.{name}]: unknown key(s) {extra}; allowed: missing, options, wording")
            out[str(name)] = dict(t)
    for name, t in out.items():
        if not isinstance(t.get("wording"), str) or not isinstance(t.get("options"), list):
            raise ConfigError(f"{path}: item {name!r} needs 'wording' (a string) and 'options' (a list of labels)")
    return out


# ---------------------------------------------------------------------------------------------
# building the methods
# ---------------------------------------------------------------------------------------------
def _backend(name: str, sim: dict, cache_base: str, progress: bool) -> Any:
    cache = sim.get("cache")
    if cache is None:
        cache = os.path.join(cache_base, "cache", f"{name}.sqlite")
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    if sim["kind"] == "local":
        from .llm.local import LocalBackend

        kw = {"batch_size": sim.get("batch_size", 32), "cache": cache, "progress": sim.get("progress", progress)}
        for key, arg in (("dtype", "dtype"), ("threads", "num_threads"), ("device", "device")):
            if key in sim:
                kw[arg] = sim[key]
        return LocalBackend(sim.get("model"), **kw)
    from .llm.openai_backend import OpenAIBackend

    kw = {k: sim[k] for k in ("base_url", "api_key_env", "mode", "max_concurrency", "max_retries", "timeout",
                             "top_logprobs") if k in sim}
    try:
        return OpenAIBackend(sim["model"], cache=cache, progress=sim.get("progress", progress), **kw)
    except InputError as err:
        raise ConfigError(f"[simulators.{name}]: {err}") from None


def _items(wording: Mapping[str, dict], scores: list[float]) -> list:
    from .llm.items import Item

    out = []
    for name, t in wording.items():
        if len(t["options"]) != len(scores):
            raise ConfigError(f"item {name!r}: {len(t['options'])} option labels for {len(scores)} option scores "
                              f"{scores}; give one label per score, in order")
        try:
            out.append(Item(name, t["wording"], list(t["options"]), list(t.get("missing") or []), tuple(scores)))
        except InputError as err:
            raise ConfigError(str(err)) from None
    return out


def _columns_methods(name: str, sim: dict, frame: Any, spec: Any) -> list:
    from . import registry

    own = _columns_spec(sim, frame, spec)  # checks that the columns exist
    pcols = {it: list(own.probabilities[it]) for it in spec.items if it in own.probabilities}
    if len(pcols) == len(spec.items) and any(frame[c].isna().any() for cs in pcols.values() for c in cs):
        # stored answers that cover only some people: those rows are unanswered, noted, never imputed
        src = registry.stored_source(pcols, what=f"simulator {name!r}")
        what = f"stored answers {sim['probabilities']!r} (a subset of the people)"
        used = [c for cs in pcols.values() for c in cs]
        return [registry.predictive_method(name, src, what, note="stored answers; no interval", columns=used),
                registry.predictive_method(name + "+ppi++", src, what, rectified="ppi++", columns=used)]
    out = []
    for corr, label in (("simulator", ""), ("ppi++", "+ppi++")):
        base = registry.get(corr)

        def fn(fr, pi, sp, rng, _base=base):
            return _base.fn(fr, pi, replace(sp, predicted=own.predicted, probabilities=own.probabilities), rng)

        out.append(registry.Method(name + label, base.family, fn, f"stored answers {sim['predicted']!r}: "
                                   + base.description, default=False, design_support=base.design_support,
                                   design_note=base.design_note))
    return out


def prepare(cfg: dict, frame: Any, progress: bool = True) -> tuple[dict, dict]:
    """Build and register the configuration's methods; return compare's keyword arguments and a
    record ``{"sources": method -> simulator, "left_out": method -> reason}``.

    ``methods = ["all"]`` (the ``seed`` design) means :data:`SEED_METHODS` plus every method of
    the configured simulators and pipelines; those the data cannot run (no simulator columns, no
    covariates) are left out and listed in the record.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo
    >>> cfg = check_config({"dataset": "misinfo", "items": ["f01"], "methods": ["all"]}, ".", "inline")
    >>> kw, rec = prepare(cfg, load_misinfo().head(200), progress=False)
    >>> kw["methods"][:3], sorted(rec["left_out"])[:2]
    (['classical', 'simulator', 'ppi++'], ['covariates', 'covariates+ppi'])
    """
    from . import registry
    from .comparison import make_spec

    kw = dict(cfg["kwargs"])
    spec = make_spec(frame, kw["items"], predicted=kw["predicted"], probabilities=kw["probabilities"],
                     scores=kw["scores"], formula=kw["formula"], scales=kw["scales"], covariates=kw["covariates"],
                     groups=kw["groups"], level=kw["level"])
    if cfg.get("pilot_fraction"):
        kw["pilot_sizes"] = [max(2, int(round(cfg["pilot_fraction"] * len(frame))))]
    scores = [float(s) for s in spec.scores]
    made, sources, built, twins = [], {}, {"scores": scores}, set()
    for name, sim in cfg["simulators"].items():
        if sim["kind"] == "columns":
            ms = _columns_methods(name, sim, frame, spec)
            if name == cfg.get("main_columns"):  # the same columns as 'simulator' and 'ppi++': not run twice
                twins = {m.name for m in ms}
        else:
            missing = [i for i in spec.items if i not in cfg["wording"]]
            if missing:
                raise ConfigError(f"[simulators.{name}] prompts the items, but items {missing} have no wording; "
                                  "give [items.NAME] tables (wording, options) or items_file")
            backend = _backend(name, sim, cfg["cache_base"], progress)
            built[f"backend:{name}"] = backend
            pr = cfg["prompting"]
            ms = registry.prompting_methods(backend, _items(cfg["wording"], scores), prefix=name, k=pr["k"],
                                            register_them=False, strategies=pr["strategies"],
                                            selection=pr["selection"])
        for m in ms:
            sources[m.name] = name
        made += ms
    for m in made:
        registry.register(m, replace=True)
    if cfg.get("finetune") is not None:
        from .finetuning import finetune_methods

        finetune_methods(cfg["finetune"])
    for name, p in cfg["pipelines"].items():
        m = _pipeline_method(name, p, cfg, built, frame, spec)
        registry.register(m, replace=True)
        sources[name] = p["simulator"]
        made.append(m)
    left_out: dict[str, str] = {}
    names = kw["methods"]
    extra = [m.name for m in made if m.name not in twins]
    if names is None:
        names = _runnable(registry.default_methods() + extra, spec, left_out)
    elif "all" in names:
        names = _runnable([n for n in names if n != "all"] + list(SEED_METHODS) + extra, spec, left_out)
    for n in names:
        if n not in registry.available() and n not in registry.unavailable():
            sim = n.split("-zero-shot")[0].split("-few-shot")[0]
            if sim != n and sim not in cfg["simulators"]:
                raise ConfigError(f"method {n!r} prompts simulator {sim!r}, which is not defined; add a "
                                  f"[simulators.{sim}] table (kind = \"local\" or \"openai\")")
    kw["methods"] = list(dict.fromkeys(names))
    return kw, {"sources": sources, "left_out": left_out, "backends": built}


def _runnable(wanted: list[str], spec: Any, left_out: dict) -> list[str]:
    """The methods of ``wanted`` that are available and whose needs the data meet; the others go to
    ``left_out`` with the reason (printed by the command line, never dropped silently)."""
    from . import registry

    names = []
    for n in dict.fromkeys(wanted):
        if n in registry.unavailable():
            left_out[n] = registry.unavailable()[n]
            continue
        try:
            registry.get(n).check(spec)
        except ConfigError as err:
            left_out[n] = str(err)
            continue
        names.append(n)
    return names


def _pipeline_method(name: str, p: dict, cfg: dict, built: Mapping[str, Any], frame: Any, spec: Any) -> Any:
    from . import registry

    sim, corr = p["simulator"], p["correction"]
    kind = cfg["simulators"][sim]["kind"] if sim in cfg["simulators"] else "trained"
    if kind == "trained":
        from .finetuning import covariate_estimator, finetune_methods

        if sim == "lora":
            trio = finetune_methods(cfg["finetune"], register_them=False)
        else:
            trio = finetune_methods({}, make_estimator=covariate_estimator, prefix="covariates", family="covariates",
                                    label="ordinal covariates classifier", register_them=False)
        base = trio[1] if corr == "xfit-ppi++" else trio[2]
    elif kind == "columns":
        own = _columns_spec(cfg["simulators"][sim], frame, spec)
        inner = registry.get(corr)

        def fn(fr, pi, sp, rng):
            return inner.fn(fr, pi, replace(sp, predicted=own.predicted, probabilities=own.probabilities), rng)

        base = registry.Method(name, inner.family, fn, inner.description, needs=inner.needs,
                               design_support=inner.design_support, design_note=inner.design_note)
    else:
        pr = cfg["prompting"]
        base = registry.prompting_methods(built[f"backend:{sim}"], _items(cfg["wording"], built["scores"]),
                                          prefix=sim, k=pr["k"], register_them=False, strategies=[p["strategy"]],
                                          selection=pr["selection"], corrections=[corr])[1]
    words = f"pipeline {sim}" + (f" ({p['strategy']})" if "strategy" in p else "") + f" -> {corr}"
    return replace(base, name=name, description=f"{words}: {base.description}", default=False)


def _columns_spec(sim: dict, frame: Any, spec: Any) -> Any:
    """A spec for a columns simulator's own columns (checked against the frame)."""
    from .comparison import make_spec

    return make_spec(frame, list(spec.items), predicted=sim["predicted"], probabilities=sim.get("probabilities"),
                     scores=spec.scores, level=spec.level)


def check_servers(cfg: dict, methods: list[str], sources: Mapping[str, str], timeout: float = 3.0) -> None:
    """Refuse to start when a server that a chosen method needs cannot be reached (TCP connect).

    Raises :class:`~rectify.errors.BackendError` naming the simulator and the address.

    Examples
    --------
    >>> cfg = {"simulators": {"s": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}}}
    >>> try:
    ...     check_servers(cfg, ["s-zero-shot"], {"s-zero-shot": "s"}, timeout=1)
    ... except BackendError as err:
    ...     print(str(err).split(" (")[0])
    simulator 's': cannot reach the server at http://127.0.0.1:9/v1
    """
    used = {sources[m] for m in methods if m in sources}
    for name in sorted(used):
        sim = cfg["simulators"].get(name, {})
        url = sim.get("base_url")
        if sim.get("kind") != "openai" or not url:
            continue
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                pass
        except OSError as err:
            raise BackendError(f"simulator {name!r}: cannot reach the server at {url} ({err}); start the server or "
                               "fix base_url") from None
