"""Command line: ``rectify demo`` and ``rectify compare CONFIG.toml``.

``rectify demo`` prints the PPI table on the bundled synthetic survey, then runs the full
comparison (every available method x pilot sizes x repeated pilots) and writes a self-contained
HTML report (default ``./rectify-report/report.html``); then the same comparison on real humans, the
ANES 1996 extract with the embedded model's stored answers (``./rectify-report/anes96/report.html``;
``--no-anes`` skips it).

``rectify compare CONFIG.toml`` does the same on your own data. The configuration (TOML)::

    frame = "survey.csv"              # CSV or Parquet; a relative path is read from the config's folder
    items = ["q1", "q2", "q3"]        # item columns: human answers as option scores, empty = missing
    scores = [1, 2, 3, 4, 5]          # optional: option scores (default: the answers seen)
    predicted = "{item}_llm"          # the simulator's prediction per item (pattern or table)
    probabilities = "{item}_p{k}"     # optional: the simulator's option probabilities (k = 1..K)
    formula = "q1 ~ age + education"  # optional: structural model (response: an item or a scale)
    groups = ["region"]               # optional: subgroup columns
    covariates = ["age", "region"]    # optional: for the covariates-only classifier
    methods = ["classical", "simulator", "ppi++"]   # optional (default: all fast methods)
    pilot_sizes = [50, 100, 200]
    repeats = 5
    seed = 1
    level = 0.95
    min_group_n = 20
    output = "rectify-report"         # optional: report folder (relative paths: from the config's folder)
    checkpoint = "rectify-checkpoint" # optional: resume a killed run from here
    title = "My survey"

    [scales.trust]                    # optional: scales (mean of plus items minus mean of minus items)
    plus = ["q1", "q2"]
    minus = ["q3"]

With a checkpoint folder, a run killed at any moment (even ``kill -9``) is resumed by running the
same command again: it prints ``Checkpoint DIR: resumed N finished cells, computed M`` and
recomputes only the unfinished cells (and any cell whose files were found damaged).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import ConfigError, RectifyError

_ERROR_WORDS = {
    "InputError": "data error", "UnseenLevelError": "data error", "MissingCovariateError": "data error",
    "ConvergenceError": "did not converge", "EstimationError": "cannot estimate",
    "CacheError": "response cache error", "BackendError": "LLM backend error",
}

CONFIG_KEYS = {
    "frame": str, "items": list, "scores": list, "predicted": (str, dict), "probabilities": (str, dict),
    "formula": str, "groups": list, "covariates": list, "methods": list, "pilot_sizes": list, "repeats": int,
    "seed": int, "level": float, "min_group_n": int, "output": str, "checkpoint": str, "title": str,
    "scales": dict, "backend": (str, dict),
}


_TOML_NAMES = {"str": "string in double quotes", "list": "list in [ ]", "int": "whole number",
               "float": "number", "dict": "table", "str or dict": "string or table"}


def load_config(path: str) -> dict:
    """Read and check a comparison configuration (TOML); return keyword arguments and settings.

    Raises :class:`~rectify.errors.ConfigError` for an unreadable file, an unknown key, a value of
    the wrong type or a missing frame.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "c.toml")
    >>> _ = open(p, "w").write('frame = "x.csv"\\nitems = ["q"]\\ncolour = 1\\n')
    >>> try:
    ...     load_config(p)
    ... except ConfigError as err:
    ...     print(err)
    unknown key(s) ['colour'] in ...c.toml; remove or rename them (allowed: backend, checkpoint, covariates, formula, frame, groups, items, level, methods, min_group_n, output, pilot_sizes, predicted, probabilities, repeats, scales, scores, seed, title)
    """
    import tomllib

    if not os.path.isfile(path):
        raise ConfigError(f"configuration file {path!r} not found; check the path")
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}; fix the syntax there (strings in double quotes, lists "
                          f"in [ ], one key = value per line)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the configuration ({err}); check that it is a UTF-8 text "
                          "file") from None
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}; remove or rename them (allowed: "
                          f"{', '.join(sorted(CONFIG_KEYS))})")
    for key, typ in CONFIG_KEYS.items():
        if key in cfg:
            v = cfg[key]
            ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                ok = True
            if not ok:
                want = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
                raise ConfigError(f"{path}: key {key!r} has the wrong type ({type(v).__name__}); give a TOML "
                                  f"{_TOML_NAMES.get(want, want)}")
    for key in ("frame", "items"):
        if key not in cfg:
            raise ConfigError(f"{path}: key {key!r} is required; add it (the format is in the docs of rectify.cli)")
    if "backend" in cfg:
        raise ConfigError(f"{path}: 'backend' (prompting an LLM inside compare) is not supported yet; simulate "
                          "the answers first (rectify.llm) and name their columns with 'predicted'/'probabilities'")
    base = os.path.dirname(os.path.abspath(path))
    frame_path = cfg["frame"] if os.path.isabs(cfg["frame"]) else os.path.join(base, cfg["frame"])
    if not os.path.isfile(frame_path):
        raise ConfigError(f"{path}: frame file {frame_path!r} not found; check the path (a relative path is read "
                          "from the configuration's folder)")
    for key in ("items", "scores", "groups", "covariates", "methods", "pilot_sizes"):
        if key in cfg and not cfg[key]:
            raise ConfigError(f"{path}: key {key!r} is empty; list at least one value or remove the key")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in cfg.get("pilot_sizes", [])):
        raise ConfigError(f"{path}: 'pilot_sizes' must be a list of integers; write e.g. [50, 100, 200]")
    scales = {}
    for name, sc in cfg.get("scales", {}).items():
        if not isinstance(sc, dict) or set(sc) - {"plus", "minus"} or "plus" not in sc:
            raise ConfigError(f"{path}: scale {name!r} must be a table with 'plus' (and optionally 'minus') lists")
        scales[name] = (list(sc["plus"]), list(sc.get("minus", [])))
    kwargs = {
        "items": list(cfg["items"]),
        "methods": cfg.get("methods"),
        "pilot_sizes": cfg.get("pilot_sizes", [50, 100, 200]),
        "repeats": cfg.get("repeats", 5),
        "groups": cfg.get("groups"),
        "formula": cfg.get("formula"),
        "scales": scales or None,
        "predicted": cfg.get("predicted", "{item}_llm"),
        "probabilities": cfg.get("probabilities"),
        "scores": cfg.get("scores"),
        "covariates": cfg.get("covariates"),
        "random_state": cfg.get("seed", 0),
        "min_group_n": cfg.get("min_group_n", 20),
        "level": float(cfg.get("level", 0.95)),
    }
    ck = cfg.get("checkpoint")
    if ck is not None and not os.path.isabs(ck):
        ck = os.path.join(base, ck)
    out = cfg.get("output")
    if out is not None and not os.path.isabs(out):
        out = os.path.join(base, out)
    return {"frame": frame_path, "kwargs": kwargs, "output": out, "checkpoint": ck,
            "title": cfg.get("title", "rectify comparison")}


def read_frame(path: str):
    """Read a CSV or Parquet frame (by extension)."""
    import pandas as pd

    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path)
        except ImportError as err:
            raise ConfigError(f"reading {path!r} needs pyarrow: {err}") from None
    if low.endswith((".csv", ".csv.gz", ".tsv")):
        try:
            frame = pd.read_csv(path, sep="\t" if low.endswith(".tsv") else ",")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
            raise ConfigError(f"frame {path!r} cannot be read as a table ({' '.join(str(err).split())}); check that "
                              "it is a UTF-8 CSV with a header row") from None
        if len(frame) == 0:
            raise ConfigError(f"frame {path!r} has a header but no rows; give one row per person")
        return frame
    raise ConfigError(f"frame {path!r}: use a .csv, .csv.gz, .tsv or .parquet file")


def _print_headline(cmp) -> None:
    import pandas as pd

    with pd.option_context("display.width", 220, "display.max_columns", 30):
        n = max(cmp.pilot_sizes)
        print(f"Fidelity at n_pilot = {n} (mean ± SD over {cmp.repeats} pilots; whole sample):")
        print(cmp.headline().to_string())
    if cmp.skipped:
        print("Methods not available: " + "; ".join(f"{k} ({v})" for k, v in cmp.skipped.items()))
    if len(cmp.failures):
        print(f"{len(cmp.failures)} cell(s) failed; see the report.")


def _print_checkpoint(cmp) -> None:
    ck = cmp.meta.get("checkpoint") or {}
    if ck.get("folder"):
        damaged = ck.get("damaged") or []
        print(f"Checkpoint {ck['folder']}: resumed {ck['resumed']} finished cells, computed {ck['computed']}"
              + (f" ({len(damaged)} damaged cell(s) found and computed again)" if damaged else ""), flush=True)


def _cmd_demo(args) -> int:
    from .demo import DEMO_INTRO, print_demo, run_comparison

    print(print_demo(args.n_pilot, args.seed, args.level))
    if args.no_compare:
        return 0
    t0 = time.time()
    print(f"Running the comparison: pilot sizes {args.pilot_sizes}, {args.repeats} pilots each ...", flush=True)
    cmp = run_comparison(tuple(args.pilot_sizes), args.repeats, args.methods, args.seed, args.checkpoint,
                         progress=not args.quiet, items=args.items)
    _print_checkpoint(cmp)
    _print_headline(cmp)
    from .report import write_report

    path = write_report(cmp, args.out, title="rectify demo: synthetic misinformation survey", intro=DEMO_INTRO)
    print(f"Report written to {os.path.abspath(path)} ({time.time() - t0:.0f} s)")
    if args.no_anes:
        return 0
    return _demo_anes(args)


def _demo_anes(args) -> int:
    """The second part of ``rectify demo``: the comparison on ANES 1996 (real humans)."""
    from .demo import ANES_INTRO, run_anes_comparison
    from .report import write_report

    t0 = time.time()
    print(f"\nANES 1996 (944 real respondents, stored answers of the embedded model): pilot sizes "
          f"{args.pilot_sizes}, {args.repeats} pilots each ...", flush=True)
    ck = os.path.join(args.checkpoint, "anes96") if args.checkpoint else None
    methods = args.anes_methods or args.methods  # default (None): ANES_METHODS
    cmp = run_anes_comparison(tuple(args.pilot_sizes), args.repeats, methods, args.seed, ck,
                              progress=not args.quiet)
    _print_checkpoint(cmp)
    _print_headline(cmp)
    path = write_report(cmp, os.path.join(args.out, "anes96"), title="rectify demo: ANES 1996 (real humans)",
                        intro=ANES_INTRO)
    print(f"Report written to {os.path.abspath(path)} ({time.time() - t0:.0f} s)")
    return 0


def _cmd_compare(args) -> int:
    from .comparison import compare
    from .report import write_report

    cfg = load_config(args.config)
    frame = read_frame(cfg["frame"])
    ck = args.checkpoint or cfg["checkpoint"]
    cmp = compare(frame, checkpoint=ck, progress=not args.quiet, **cfg["kwargs"])
    _print_checkpoint(cmp)
    _print_headline(cmp)
    out = args.out or cfg["output"] or "rectify-report"
    path = write_report(cmp, out, title=cfg["title"])
    print(f"Report written to {os.path.abspath(path)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rectify`` command.

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    rectify ...
    0
    """
    from . import __version__

    parser = argparse.ArgumentParser(prog="rectify", description="Correct LLM-simulated survey answers "
                                     "with a small human pilot, and measure how faithful each method is.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    p_demo = sub.add_parser("demo", help="PPI table and the full comparison with an HTML report, on the bundled "
                            "synthetic survey")
    p_demo.add_argument("--n-pilot", type=int, default=200, help="pilot size of the PPI table")
    p_demo.add_argument("--seed", type=int, default=1)
    p_demo.add_argument("--level", type=float, default=0.95)
    p_demo.add_argument("--out", default="rectify-report", help="report folder (default ./rectify-report)")
    p_demo.add_argument("--pilot-sizes", type=int, nargs="+", default=[50, 100, 200])
    p_demo.add_argument("--repeats", type=int, default=3)
    p_demo.add_argument("--methods", nargs="+", default=None, help="method names (default: all fast ones)")
    p_demo.add_argument("--checkpoint", default=None, help="folder to save finished cells in (resume)")
    p_demo.add_argument("--items", nargs="+", default=None, help="a subset of the 36 items (default: all)")
    p_demo.add_argument("--no-compare", action="store_true", help="only print the PPI table")
    p_demo.add_argument("--quiet", action="store_true", help="no progress bar")
    p_demo.add_argument("--no-anes", action="store_true", help="skip the second comparison, on ANES 1996 (real "
                        "humans; its report goes to OUT/anes96)")
    p_demo.add_argument("--anes-methods", nargs="+", default=None, help="methods of the ANES comparison (default: "
                        "--methods if given, else classical, simulator, ppi++, greg, raking, covariates)")
    p_cmp = sub.add_parser("compare", help="run the comparison on your data (see the CONFIG.toml format in the "
                           "docs of rectify.cli)")
    p_cmp.add_argument("config", help="TOML configuration file")
    p_cmp.add_argument("--out", default=None, help="report folder (overrides 'output')")
    p_cmp.add_argument("--checkpoint", default=None)
    p_cmp.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.version:
        print(f"rectify {__version__}")
        return 0
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "compare":
            return _cmd_compare(args)
    except ConfigError as err:
        print(f"rectify: configuration error: {err}", file=sys.stderr)
        return 2
    except RectifyError as err:  # bad data, non-convergence, cache or backend trouble: no traceback
        print(f"rectify: {_ERROR_WORDS.get(type(err).__name__, 'error')}: {err}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
