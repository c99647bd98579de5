"""Command line: ``rectify demo``, ``rectify compare CONFIG.toml`` and ``rectify methods``.

``rectify demo`` prints the PPI table on the bundled synthetic survey, then applies the paper's
protocol (the ``seed`` design: a 5% pilot, judged on the people outside it, every family, every
axis, per ideology group) to three bundled surveys -- the synthetic misinformation survey, ANES
1996 and the GSS 2018 spending battery -- printing the families x axes table and what to conclude
for each and writing an HTML report each (``./rectify-report/<survey>/report.html``). Prompting
uses the embedded model's stored answers; LoRA is fine-tuned live on each pilot.

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

Simulators (the embedded local model, any OpenAI-compatible server, stored answer columns),
prompting strategies, fine-tuning settings and combined pipelines are described in
:mod:`rectify.config`. ``rectify compare --design seed CONFIG.toml`` (or ``--design seed misinfo``,
a bundled data set) applies the paper's protocol -- a 5% pilot, evaluation on the people outside
it, the ideology subgroup (``--group COL`` for another), every family, every axis -- and prints the
families x axes table, overall and per subgroup. ``rectify methods [CONFIG.toml]`` lists every
registered method (family, default, what it needs, description).

With a checkpoint folder, a run killed at any moment (even ``kill -9``) is resumed by running the
same command again: it prints ``Checkpoint DIR: resumed N finished cells, computed M`` and
recomputes only the unfinished cells, any cell whose files were found damaged, every failed cell
(except a deterministic input error) and every cell whose answers were partly missing.

A bad configuration, bad data or an unreachable server gives one line on stderr and exit code 2; so
does an error no check foresaw (``RECTIFY_DEBUG=1`` shows its traceback).
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

def load_config(path: str, design: str | None = None) -> dict:
    """Read and check a comparison configuration (see :func:`rectify.config.load_config`).

    Examples
    --------
    >>> try:
    ...     load_config("no-such-file.toml")
    ... except ConfigError as err:
    ...     print(err)
    configuration file 'no-such-file.toml' not found; check the path
    """
    from .config import load_config as _load

    return _load(path, design)


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
        retried = ck.get("retried") or []
        print(f"Checkpoint {ck['folder']}: resumed {ck['resumed']} finished cells, computed {ck['computed']}"
              + (f" ({len(damaged)} damaged cell(s) found and computed again)" if damaged else "")
              + (f" ({len(retried)} failed or partial cell(s) retried)" if retried else ""), flush=True)


def _cmd_demo(args) -> int:
    """``rectify demo``: the PPI table, then the paper's protocol on the three bundled surveys."""
    from .demo import SEED_SURVEYS, print_demo

    print(print_demo(args.n_pilot, args.seed, args.level))
    if args.no_compare:
        return 0
    surveys = [s for s in args.surveys if not (args.no_anes and s == "anes96")]
    for name in surveys:
        _demo_seed(args, name, SEED_SURVEYS[name])
    return 0


def _demo_seed(args, name: str, entry: tuple) -> None:
    """One survey of the demo: the seed design, its families x axes table, what to conclude, the report."""
    from . import demo
    from .conclusions import conclusions_text
    from .report import write_report

    t0 = time.time()
    intro, title = getattr(demo, entry[2]), entry[3]
    print(f"\n=== {title}: the seed design (5% pilot, judged on the rest, every family; {args.repeats} pilots) ===",
          flush=True)
    print(intro, flush=True)
    ck = os.path.join(args.checkpoint, name) if args.checkpoint else None
    finetune = dict(demo.DEMO_FINETUNE, **({"epochs": args.lora_epochs} if args.lora_epochs else {}))
    cmp = demo.run_seed_design(name, repeats=args.repeats, seed=args.seed, methods=args.methods, finetune=finetune,
                               checkpoint=ck, progress=not args.quiet)
    _print_checkpoint(cmp)
    _print_axes(cmp, "seed")
    _print_problems(cmp, {"left_out": cmp.meta.get("left_out") or {}})
    if len(cmp.failures):
        print(f"{len(cmp.failures)} cell(s) failed: " + "; ".join(
            f"{r.method} r={r.repeat}: {r.error}" for r in cmp.failures.itertuples()))
    print("\nWhat to conclude:\n" + conclusions_text(cmp))
    path = write_report(cmp, os.path.join(args.out, name), title=f"rectify demo: {title}", intro=intro)
    print(f"Report written to {os.path.abspath(path)} ({time.time() - t0:.0f} s)", flush=True)


def _print_axes(cmp, design: str | None) -> None:
    """The families x axes table, overall and per subgroup (means over the repeats)."""
    import pandas as pd

    from .comparison import axes_table

    n = max(cmp.pilot_sizes)
    where = ("the people outside the pilot" if cmp.meta.get("evaluate") == "rest" else "the whole frame")
    title = f"Design {design!r}: " if design else ""
    print(f"{title}families x axes at n_pilot = {n} of {cmp.meta['n_frame']} (mean over {cmp.repeats} pilots; "
          f"judged on {where})")
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print("\n[all]")
        print(axes_table(cmp.table, n, list(cmp.methods)).to_string())
        for g in cmp.spec.groups:
            levels = [x for x in pd.unique(cmp.table.loc[cmp.table["grouping"] == g, "group"])]
            for lev in levels:
                t = axes_table(cmp.table, n, list(cmp.methods), grouping=g, group=lev)
                if not t.empty:
                    print(f"\n[{g} = {lev}]")
                    print(t.to_string())


def _print_problems(cmp, record: dict | None = None) -> None:
    if record and record.get("left_out"):
        print("Methods left out: " + "; ".join(f"{k} ({v})" for k, v in record["left_out"].items()))
    for p in cmp.meta.get("partial") or []:
        print(f"Partial answers: {p['method']} n={p['n_pilot']} r={p['repeat']}: unanswered rows per item "
              f"{p['unanswered']} (metrics on the answered rows; see the note column; rerun to retry)")


def _compare_config(args) -> dict:
    from .config import BUNDLED, bundled_config

    target = args.config
    if target is None:
        if not args.design:
            raise ConfigError("give a configuration file (rectify compare CONFIG.toml) or a design and a bundled data "
                              f"set (rectify compare --design seed {sorted(BUNDLED)[0]})")
        target = "misinfo"
    if os.path.isfile(target) or target.lower().endswith(".toml"):
        cfg = load_config(target, args.design)
    else:
        cfg = bundled_config(target, args.design)
    kw = cfg["kwargs"]
    if args.group:
        kw["groups"] = [args.group]
    if args.methods:
        kw["methods"] = list(args.methods)
    if args.repeats is not None:
        if args.repeats < 1:
            raise ConfigError(f"--repeats must be a positive integer, got {args.repeats}")
        kw["repeats"] = args.repeats
    return cfg


def _print_widths(cmp) -> None:
    """The width each pilot design saves against simple random pilots (only with designs)."""
    w = cmp.widths()
    if w.empty:
        return
    print("\nInterval width of the mean by pilot design (ratio to SRS < 1: narrower; coverage over repeats):")
    print(w.round(3).to_string(index=False))
    nr = cmp.meta.get("not_run")
    if nr is not None and len(nr):
        print("Not run under a design: " + "; ".join(f"{r.method} ({r.reason})" for r in nr.itertuples()))


def _cmd_compare(args) -> int:
    from .comparison import compare
    from .config import bundled_frame, check_servers, prepare
    from .report import write_report

    cfg = _compare_config(args)
    frame = read_frame(cfg["frame"]) if cfg["frame"] else bundled_frame(cfg["dataset"])
    kwargs, record = prepare(cfg, frame, progress=not args.quiet)
    check_servers(cfg, kwargs["methods"], record["sources"])
    ck = args.checkpoint or cfg["checkpoint"]
    cmp = compare(frame, checkpoint=ck, progress=not args.quiet, **kwargs)
    _print_checkpoint(cmp)
    if args.design:
        _print_axes(cmp, args.design)
        if cmp.skipped:
            print("Methods not available: " + "; ".join(f"{k} ({v})" for k, v in cmp.skipped.items()))
        if len(cmp.failures):
            print(f"{len(cmp.failures)} cell(s) failed; see the report.")
    else:
        _print_headline(cmp)
    _print_widths(cmp)
    _print_problems(cmp, record)
    out = args.out or cfg["output"] or "rectify-report"
    path = write_report(cmp, out, title=cfg["title"])
    print(f"Report written to {os.path.abspath(path)}")
    return 0


def _cmd_methods(args) -> int:
    """List every registered method: name, family, default, what it needs, description."""
    import pandas as pd

    from . import registry

    if args.config:
        from .config import bundled_frame, prepare

        cfg = load_config(args.config)
        frame = read_frame(cfg["frame"]) if cfg["frame"] else bundled_frame(cfg["dataset"])
        prepare(cfg, frame, progress=False)
    rows = []
    for name, fam in registry.available().items():
        m = registry.get(name)
        rows.append({"method": name, "family": fam, "default": "yes" if m.default else "no",
                     "needs": ", ".join(m.needs) or "-", "description": m.description})
    order = {f: i for i, f in enumerate(registry.FAMILIES)}
    t = pd.DataFrame(rows).sort_values("family", key=lambda c: c.map(order), kind="stable")
    with pd.option_context("display.width", 250, "display.max_colwidth", 200):
        print(t.to_string(index=False))
    for name, why in registry.unavailable().items():
        print(f"not available: {name} ({why})")
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
    p_demo = sub.add_parser("demo", help="PPI table, then the paper's protocol (5%% pilot, every family, every "
                            "axis) on the three bundled surveys, with an HTML report each")
    p_demo.add_argument("--n-pilot", type=int, default=200, help="pilot size of the PPI table")
    p_demo.add_argument("--seed", type=int, default=1)
    p_demo.add_argument("--level", type=float, default=0.95)
    p_demo.add_argument("--out", default="rectify-report", help="report folder (default ./rectify-report)")
    p_demo.add_argument("--repeats", type=int, default=3, help="random 5%% pilots per survey (default 3)")
    p_demo.add_argument("--methods", nargs="+", default=None, help="method names (default: every family, "
                        "'rectify methods' lists them)")
    p_demo.add_argument("--surveys", nargs="+", default=["misinfo", "anes96", "gss"],
                        choices=["misinfo", "anes96", "gss"], help="bundled surveys (default: all three)")
    p_demo.add_argument("--lora-epochs", type=int, default=None, help="LoRA epochs (default 4)")
    p_demo.add_argument("--checkpoint", default=None, help="folder to save finished cells in (resume)")
    p_demo.add_argument("--no-compare", action="store_true", help="only print the PPI table")
    p_demo.add_argument("--quiet", action="store_true", help="no progress bar")
    p_demo.add_argument("--no-anes", action="store_true", help="skip ANES 1996")
    p_cmp = sub.add_parser("compare", help="run the comparison on your data (see the CONFIG.toml format in the "
                           "docs of rectify.config)")
    p_cmp.add_argument("config", nargs="?", default=None, help="TOML configuration file, or with --design the name "
                       "of a bundled data set (misinfo, anes96)")
    p_cmp.add_argument("--design", default=None, help="a named design merged under the configuration: 'seed' (5%% "
                       "pilot, evaluation on the rest, the subgroup, every family, every axis)")
    p_cmp.add_argument("--group", default=None, help="subgroup column (overrides 'groups')")
    p_cmp.add_argument("--methods", nargs="+", default=None, help="method names (overrides 'methods')")
    p_cmp.add_argument("--repeats", type=int, default=None, help="pilots per size (overrides 'repeats')")
    p_cmp.add_argument("--out", default=None, help="report folder (overrides 'output')")
    p_cmp.add_argument("--checkpoint", default=None)
    p_cmp.add_argument("--quiet", action="store_true")
    p_met = sub.add_parser("methods", help="list the registered methods (family, what they need, description)")
    p_met.add_argument("config", nargs="?", default=None, help="a configuration: also list the methods it builds")
    p_sim = sub.add_parser("simulate", help="answer distributions for a frame through a vLLM (OpenAI-compatible) "
                           "server or the OpenAI Batch API, to Parquet in chunks (see rectify.simulate)")
    p_sim.add_argument("config", help="TOML configuration file")
    p_sim.add_argument("--max-chunks", type=int, default=None, help="stop after this many chunks (rerun to go on)")
    p_sim.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.version:
        print(f"rectify {__version__}")
        return 0
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "methods":
            return _cmd_methods(args)
        if args.command == "simulate":
            from .simulate import run_cli
            return run_cli(args)
    except ConfigError as err:  # one line on stderr, exit code 2, no traceback
        print(f"rectify: configuration error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except RectifyError as err:  # bad data, non-convergence, cache or backend trouble: no traceback
        print(f"rectify: {_ERROR_WORDS.get(type(err).__name__, 'error')}: {' '.join(str(err).split())}",
              file=sys.stderr)
        return 2
    except Exception as err:  # a case no check foresaw: still one line; RECTIFY_DEBUG=1 shows the traceback
        if os.environ.get("RECTIFY_DEBUG"):
            raise
        print(f"rectify: unexpected error: {type(err).__name__}: {' '.join(str(err).split())[:300]} (rerun with "
              "RECTIFY_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
