"""Compare every method over pilot sizes and repeated random pilots, against the held-out humans.

:func:`compare` draws, for each pilot size ``n`` and repeat ``r``, one seeded simple random pilot
(the same pilot for every method, so methods are compared on paired draws), runs each registered
method (:mod:`rectify.registry`) on it and measures fidelity:

* ``source="estimate"`` -- what the method claims about the population. Per item and per subgroup
  the estimated option shares ``q`` and mean score are set beside the human answers of the whole
  frame (the finite population the estimate targets): ``wasserstein1_norm``
  ``= sum_k |H_k - Q_k| (s_{k+1} - s_k) / (s_K - s_1)`` (``H, Q`` cumulative shares),
  ``total_variation = 1/2 sum_k |h_k - q_k|``, ``jensen_shannon``, ``mean_difference = m_q - m_h``,
  ``sd_ratio = sd_q / sd_h`` and, where the method gives intervals, ``mean_coverage`` (1 if the
  human mean lies in the interval of the mean, else 0; its average over repeats is the coverage
  rate), ``share_coverage`` (share of options whose human share lies in its interval) and
  ``mean_ci_width``. Estimated shares outside [0, 1] (PPI can give them) are projected onto the
  simplex (clipped at 0, renormalised) for the distribution metrics, with a note. For the formula,
  the method's coefficients (if it gives them) are compared with the human OLS coefficients on the
  whole frame: ``lins_ccc``, ``sign_agreement``, ``attenuation_slope`` and ``coverage``.
* ``source="respondents"`` -- for methods that predict every person (simulators, classifiers):
  :func:`rectify.fidelity.fidelity_report` of their predictions for the **held-out** humans (the
  frame minus the pilot) on all three axes, overall and per subgroup.

One tidy table comes out (``Comparison.table``: method, family, n_pilot, repeat, source, axis,
metric, item, grouping, group, value, n, note) with summaries over repeats
(:meth:`Comparison.summary`): the spread across pilot draws is a result, not noise.

Finished (method, n_pilot, repeat) cells are written to ``checkpoint`` (a folder of CSV and
JSON files, no pickle) so that a killed run resumes without repeating work. Each file is written
atomically (temporary file, fsync, rename) and checksummed in the cell's done file, so a cell whose
files were cut short or damaged is computed again, never read as data;
``Comparison.meta["checkpoint"]`` counts the cells resumed, computed and found damaged.

Examples
--------
>>> from rectify.comparison import compare
>>> from rectify.datasets import load_misinfo
>>> df = load_misinfo()
>>> cmp = compare(df, ["f01", "t01"], methods=["classical", "simulator"], pilot_sizes=[100],
...               repeats=1, random_state=0, progress=False)
>>> sorted(cmp.table["method"].unique())
['classical', 'simulator']
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import registry
from .compare_cells import (_add_item_means, _call_method, _cell_seed, _coefficient_metrics, _estimate_metrics,  # noqa: F401
                            _human_shares, _run_cell, _Truth, _truth, _unanswered_note, _with_note, cell_name,
                            compute_cell, draw_cell_pilot)
from .compare_checkpoint import _Checkpoint, _fingerprint, _Progress, _read_json, _slug, _write_atomic  # noqa: F401
from .compare_spec import (CELL_KEYS, ITEM_MEAN, TABLE_COLUMNS, _fill, _formula_variables, _need_columns,  # noqa: F401
                           _pattern, make_spec)
from .compare_designs import design_error, not_run, parse_designs
from .compare_tables import AXES, HEADLINE, Comparison, axes_table, headline, summarize  # noqa: F401
from .errors import ConfigError, InputError
from .parallel import check_backend, map_tasks
from .registry import ALL, Spec  # noqa: F401

__all__ = ["compare", "Comparison", "make_spec", "summarize", "headline", "axes_table", "AXES", "TABLE_COLUMNS"]


# ---------------------------------------------------------------------------------------------
# planning from a pilot
# ---------------------------------------------------------------------------------------------
def _planning(frame: pd.DataFrame, spec: Spec, n: int, seed: int, half_width: float = 0.1) -> pd.DataFrame:
    """Per item, from the first pilot of size ``n``: rho of human answers and the simulator's
    predictions, PPI++'s effective sample size and the humans needed for a +-``half_width`` interval
    of the item mean, classical vs PPI++ (:func:`rectify.planning.plan_from_pilot`)."""
    from .errors import EstimationError
    from .planning import plan_from_pilot

    if not spec.predicted:
        return pd.DataFrame()
    pilot = draw_cell_pilot(frame, n, 0, seed)
    rows = []
    for it in spec.items:
        if it not in spec.predicted:
            continue
        try:
            plan = plan_from_pilot(pilot[it], pilot[spec.predicted[it]], half_width,
                                   n_population=len(frame) - n, level=spec.level)
        except EstimationError as err:
            rows.append({"item": it, "note": f"not estimable: {err}"})
            continue
        need = plan["humans_needed"]
        rows.append({"item": it, "n_pilot": plan["n"], "rho": plan["rho"], "rho_low": plan["rho_interval"][0],
                     "rho_high": plan["rho_interval"][1], "n_eff": plan["n_eff"],
                     "needed_classical": need["classical"], "needed_ppi++": need["ppi++"],
                     "needed_ppi++_pessimistic": need["ppi++ (pessimistic)"], "note": ""})
    out = pd.DataFrame(rows)
    out.attrs["half_width"] = half_width
    return out


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------
def _warning_class(module: str, name: str) -> type:
    """The warning class a worker named; ``UserWarning`` if this process cannot import it."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return UserWarning
    return cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning


def _seed_int(random_state: Any) -> int:
    if isinstance(random_state, (bool, float)) or not isinstance(random_state, (int, np.integer)):
        if isinstance(random_state, np.random.Generator):
            return int(random_state.integers(0, 2**31 - 1))
        raise InputError(f"argument 'random_state' must be an int or a numpy Generator, got {random_state!r}")
    return int(random_state)


def _cell_label(name: str, n: int, r: int, design: Any = None) -> str:
    return f"{name} n={n} r={r}" + (f" {design.label}" if design is not None else "")


def _check_design_settings(evaluate: str, spec: Spec) -> None:
    """Refuse settings a designed pilot cannot serve (see ``designs`` in :func:`compare`)."""
    if evaluate == "rest":
        raise ConfigError("designs other than 'srs' need evaluate='frame': the design-based estimators target the frame "
                          "the inclusion probabilities were computed on, and the people outside a designed pilot are "
                          "not a random remainder (an active pilot takes those the LLM is unsure of); use "
                          "evaluate='frame' or designs=['srs']")
    if spec.estimand == "superpopulation":
        raise ConfigError("designs other than 'srs' estimate the finite frame (design-based inference); use "
                          "estimand=None or 'frame', or designs=['srs']")


def compare(frame: pd.DataFrame, items: Sequence[str], methods: Sequence[str] | None = None,
            pilot_sizes: Sequence[int] = (50, 100, 200), repeats: int = 5, groups: Sequence[str] | str | None = None,
            formula: str | None = None, *, scales: Mapping[str, Any] | None = None, predicted: Any = "{item}_llm",
            probabilities: Any = None, scores: Sequence[float] | None = None, covariates: Sequence[str] | None = None,
            random_state: Any = 0, checkpoint: str | None = None, progress: bool = True, min_group_n: int = 20,
            level: float = 0.95, evaluate: str = "frame", backend: Any = "sequential",
            n_jobs: int | None = None, estimand: str | None = None, designs: Sequence[Any] = ("srs",)) -> Comparison:
    """Run every method over pilot sizes and seeded random pilots; measure fidelity against humans.

    Parameters
    ----------
    frame : DataFrame
        One row per person: covariates, the human answers of ``items`` (option scores, NaN =
        missing) and the simulator's columns. Pilots are drawn from it; the rest are held out.
    items : list of str
        Item columns.
    methods : list of str, optional
        Registered method names (:func:`rectify.registry.available`); default
        :func:`rectify.registry.default_methods`.
    pilot_sizes : list of int
        Each at least 2 and at most ``len(frame) - 1``.
    repeats : int
        Seeded random pilots per size.
    groups : str or list of str, optional
        Grouping columns for subgroup metrics.
    formula : str, optional
        Structural model, response = an item or a scale name.
    scales : dict name -> (plus_items, minus_items) or {"plus": [...], "minus": [...]}, optional
    predicted : str or dict
        The simulator's per-person prediction: a pattern with ``{item}`` or a dict.
    probabilities : str or dict, optional
        The simulator's option probabilities: a pattern with ``{item}`` and ``{k}`` (1-based) or a
        dict item -> columns.
    scores : list of float, optional
        Option scores (default: the distinct human answers).
    covariates : list of str, optional
        For model-based methods (default: the formula's variables).
    random_state : int or Generator
        Seeds every pilot draw and every method.
    checkpoint : str, optional
        Folder where finished cells are saved and found again on a rerun.
    progress : bool
        Progress bar on stderr.
    min_group_n : int
        Smallest group size for a metric (smaller groups: not estimable). Rows without a human answer
        are left out of an item's estimates and metrics, which assumes answers missing at random given
        each method's adjustments (check with :func:`rectify.missingness_diagnostic`).
    level : float
        Interval level.
    evaluate : {"frame", "rest"}
        ``"frame"`` (default): every method estimates the whole frame and its estimates are set
        beside the humans of the whole frame (pilot included: the finite frame). ``"rest"``: the
        paper's protocol -- the population of each cell is the frame minus its pilot, the methods
        see only those rows as the population, and the truth is the humans outside the pilot.
    estimand : {None, "frame", "superpopulation"}
        What the estimators' intervals cover (:mod:`rectify.estimand`); ``None``: their default, the
        finite frame. The pilot's place (inside the frame, or separate with ``evaluate="rest"``) is
        detected from the row labels.
    backend : {"sequential", "joblib", "dask"}, scheduler address or distributed.Client
        Where the cells run (:mod:`rectify.parallel`): one after another here (default), on
        ``n_jobs`` local processes (joblib), or on a Dask cluster (the active client, else a local
        cluster of ``n_jobs`` processes; ``"tcp://host:8786"`` or a ``Client`` for a cluster). The
        frame and the methods (with any loaded model) are shipped once per worker. Every cell's
        random numbers come from its own key, so every backend gives the same table, byte for byte.
        With a checkpoint, each worker writes its finished cells into the folder itself (one set
        of files per cell, written atomically): a crash loses only the cells then running.
    n_jobs : int, optional
        Worker processes for ``"joblib"`` and a local Dask cluster (default: all cores).
    designs : list of str or dict, default ("srs",)
        Pilot designs, another axis of the comparison (:mod:`rectify.compare_designs`): ``"srs"`` (the
        simple random pilot, drawn exactly as without designs), ``"neyman"``, ``"active"``,
        ``"active:poisson"`` or a dict of :func:`rectify.design_pilot`'s options (``design``,
        ``sampling``, ``uniform``, ``error``: a frame column of expected errors, default the LLM's own
        uncertainty from ``probabilities``; ``n_bins``, ``strata``, ``name``). Under a non-SRS design the
        methods estimate with the pilot's inclusion probabilities (``classical``: weighted by ``1/pi``;
        ``ppi++`` and the corrections of prompted simulators: active inference; ``greg``/``raking``:
        calibration of the design weights); a method that cannot use them is not run there and
        ``meta["not_run"]`` says why. With any non-SRS design every table gets a ``design`` column and
        :func:`rectify.compare_designs.width_table` gives the width saved against SRS. Not with
        ``evaluate="rest"`` (refused: the design-based estimators target the frame the probabilities
        were computed on, while the people outside a designed pilot are not a probability sample's
        complement of the frame -- an active pilot takes the people the LLM is unsure of and leaves
        the rest) nor ``estimand="superpopulation"``.

    Returns
    -------
    Comparison

    Notes
    -----
    Failures: a method that raises fails only its cell (recorded in ``failures``, with a
    warning). With a checkpoint, a rerun computes again every failed cell except those that
    failed on a deterministic input error (:class:`~rectify.errors.InputError`), and every cell
    whose answers were partly missing. A cell whose prompts partly failed keeps its metrics,
    computed on the answered rows, with a ``note`` on every row saying which items and how many
    rows (``meta["partial"]`` lists those cells). Rectify warnings a method emits (e.g.
    :class:`~rectify.errors.InSamplePredictionWarning`) are passed on and written in the note.

    Examples
    --------
    >>> from rectify.datasets import load_misinfo
    >>> cmp = compare(load_misinfo(), ["f01"], methods=["classical", "ppi++"], pilot_sizes=[100],
    ...               repeats=2, random_state=1, progress=False)
    >>> cmp.summary().query("metric == 'mean_coverage' and item == 'f01'")["n_repeats"].tolist()
    [2, 2]
    """
    t0 = time.time()
    check_backend(backend, n_jobs)
    seed = _seed_int(random_state)
    spec = make_spec(frame, items, predicted=predicted, probabilities=probabilities, scores=scores,
                     formula=formula, scales=scales, covariates=covariates, groups=groups, level=level)
    if estimand is not None:  # the estimators' estimand (rectify.estimand); None: their default, the frame
        from dataclasses import replace as _replace
        from .estimand import resolve_estimand
        spec = _replace(spec, estimand=resolve_estimand(estimand))
    names = registry.default_methods() if methods is None else list(methods)
    if isinstance(methods, str):
        raise ConfigError("argument 'methods' must be a list of method names")
    if not names:
        raise ConfigError("argument 'methods' is empty")
    names = list(dict.fromkeys(names))
    chosen = [registry.get(m) for m in names]  # ConfigError for an unknown method
    for m in chosen:
        m.check(spec)
    sizes = [int(s) for s in pilot_sizes]
    if not sizes:
        raise ConfigError("argument 'pilot_sizes' is empty")
    bad = [s for s in sizes if not 2 <= s < len(frame)]
    if bad:
        raise ConfigError(f"pilot sizes {bad} must be between 2 and len(frame) - 1 = {len(frame) - 1} "
                          "(the frame needs people left over to hold out)")
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ConfigError(f"argument 'repeats' must be a positive integer, got {repeats!r}")
    if isinstance(min_group_n, bool) or not isinstance(min_group_n, (int, np.integer)) or min_group_n < 1:
        raise ConfigError(f"argument 'min_group_n' must be a positive integer, got {min_group_n!r}")
    if min_group_n > len(frame):
        raise ConfigError(f"argument 'min_group_n' is {min_group_n} but the frame has {len(frame)} rows: every "
                          "subgroup would be suppressed; use a number such as 20")
    if evaluate not in ("frame", "rest"):
        raise ConfigError(f"argument 'evaluate' must be 'frame' or 'rest', got {evaluate!r}")
    dsg = parse_designs(designs)
    with_designs = any(not d.is_srs for d in dsg)
    if with_designs:
        _check_design_settings(evaluate, spec)
    frame = frame.copy()
    truth = _truth(frame, spec)
    ck = _Checkpoint(checkpoint, _fingerprint(frame, spec, seed, min_group_n, evaluate))
    errors = {d.token: design_error(frame, spec, d) for d in dsg if not d.is_srs}
    cells, skipped_cells = [], []
    for n in sizes:
        for r in range(int(repeats)):
            for d in dsg:
                for m in chosen:
                    why = not_run(m, d)
                    if why is None:
                        cells.append((m, n, r, None if d.is_srs else d))
                    elif r == 0 and n == sizes[0]:
                        skipped_cells.append({"method": m.name, "design": d.label, "reason": why})
    prog = _Progress(len(cells), progress)
    got: dict[int, tuple] = {}  # cell position -> (status, metrics, estimates, coefficients)
    todo = []
    for i, (m, n, r, d) in enumerate(cells):
        loaded = ck.load(_slug(cell_name(m.name, d), n, r))
        if loaded is None:
            todo.append(i)
        else:
            got[i] = loaded
            prog.step(_cell_label(m.name, n, r, d))
    shared = {"frame": frame, "spec": spec, "truth": truth, "seed": seed, "min_group_n": min_group_n,
              "evaluate": evaluate, "methods": {m.name: m for m in chosen}, "folder": checkpoint,
              "fingerprint": ck.fingerprint, "designs": {d.token: d for d in dsg if not d.is_srs},
              "design_errors": errors}

    def label(j: int) -> str:
        return _cell_label(cells[todo[j]][0].name, *cells[todo[j]][1:])

    def finished(j: int, res: tuple) -> None:
        status, tab, est, coef, caught = res
        ck.computed += 1
        for module, name, message in caught:  # warnings a worker recorded, passed on here
            warnings.warn(message, _warning_class(module, name), stacklevel=4)
        if status.get("error"):
            m, n, r, d = cells[todo[j]]
            final = status.get("final")
            where = f", design={d.label!r}" if d is not None else ""
            warnings.warn(f"method {m.name!r} failed at n_pilot={n}, repeat={r}{where}: {status['error']}"
                          + (" (an input error: fix the input)" if final else
                             " (with a checkpoint, rerunning retries this cell)"), RuntimeWarning, stacklevel=4)
        got[todo[j]] = (status, tab, est, coef)
        prog.step(label(j))

    try:
        map_tasks(compute_cell, shared, [(cells[i][0].name, cells[i][1], cells[i][2])
                                         + ((cells[i][3].token,) if cells[i][3] is not None else ()) for i in todo],
                  backend=backend, n_jobs=n_jobs, on_result=finished, on_start=lambda j: prog.start(label(j)))
    finally:
        prog.close()
    tabs, ests, coefs, fails, partial = [], [], [], [], []
    for i, (m, n, r, d) in enumerate(cells):  # in the cells' order, whatever order they finished in
        status, tab, est, coef = got[i]
        dcol = {"design": d.label if d is not None else "srs"} if with_designs else {}
        if status.get("partial"):
            partial.append({"method": m.name, **dcol, "n_pilot": n, "repeat": r, "unanswered": status["partial"]})
        if status.get("error"):
            fails.append({"method": m.name, **dcol, "n_pilot": n, "repeat": r, "error": status["error"]})
        else:
            lead = {"method": m.name, "family": m.family, **dcol, "n_pilot": n, "repeat": r}
            tabs.append(tab.assign(**lead))
            ests.append(est.assign(**lead))
            coefs.append(coef.assign(**lead))

    def cat(parts, cols):
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return pd.DataFrame(columns=cols)
        d = pd.concat(parts, ignore_index=True)
        return d[[c for c in cols if c in d.columns]]

    keys = CELL_KEYS[:2] + ["design"] + CELL_KEYS[2:] if with_designs else CELL_KEYS
    table = cat(tabs, keys + TABLE_COLUMNS[len(CELL_KEYS):])
    planning = _planning(frame, spec, max(sizes), seed)
    est_cols = keys + ["item", "grouping", "group", "term", "estimate", "conf_low", "conf_high", "truth", "note"]
    coef_cols = keys + ["term", "estimate", "conf_low", "conf_high", "human"]
    meta_designs = {"designs": [d.label for d in dsg],
                    "not_run": pd.DataFrame(skipped_cells, columns=["method", "design", "reason"])} if with_designs else {}
    return Comparison(
        table=table, estimates=cat(ests, est_cols), coefficients=cat(coefs, coef_cols),
        failures=pd.DataFrame(fails, columns=["method"] + (["design"] if with_designs else []) + ["n_pilot", "repeat",
                                                                                                  "error"]),
        skipped=registry.unavailable(), spec=spec,
        methods={m.name: (m.family, m.description) for m in chosen},
        pilot_sizes=tuple(sizes), repeats=int(repeats), random_state=seed, seconds=time.time() - t0,
        meta={"n_frame": int(len(frame)), "planning": planning, "checkpoint": ck.summary(), "evaluate": evaluate,
              "partial": partial, "backend": backend if isinstance(backend, str) else "dask", **meta_designs},
    )
