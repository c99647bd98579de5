"""``rectify simulate CONFIG.toml``: answer distributions for every person of a frame, written to
Parquet in chunks, through a serving engine -- a vLLM (or any OpenAI-compatible) server live, or
the OpenAI Batch API.

The configuration::

    [frame]
    path = "frame.parquet"            # a Parquet file or folder, or a CSV file
    id = "respondent_id"              # optional: kept beside the answers (default: the row number)
    persona = ["age", "gender"]       # the columns the persona is written from (default: all but id)

    [items.f01]                       # one table per item
    wording = "How accurate is this claim? ..."
    options = ["Not at all", "Not very", "Somewhat", "Very"]
    scores = [1, 2, 3, 4]             # optional (default 1..K)

    [backend]
    model = "Qwen/Qwen2.5-7B-Instruct"
    base_url = "http://gpu-host:8000/v1"   # vLLM's OpenAI-compatible server (omit for OpenAI)
    api_key_env = "OPENAI_API_KEY"    # read from the environment, never from the file
    mode = "live"                     # or "batch": the OpenAI Batch API (half price, 24 h window)
    max_concurrency = 64
    prices = [0.15, 0.60]             # USD per million prompt / completion tokens (for the cost)
    poll_interval = 30                # batch mode: seconds between polls
    max_wait = 3600                   # batch mode: stop polling after this long (rerun to resume)

    [output]
    folder = "answers"                # part-000000.parquet, ... and simulate.json
    chunk_rows = 1000                 # rows per chunk (batch mode: chunk_rows x items <= 50,000)
    cache = "answers/cache.sqlite"    # response cache (default: in the folder)

Each chunk's file holds, per item, ``<item>_p1..p<K>`` (the option probabilities, renormalised
over the options), ``<item>_expected`` and ``<item>_status`` (``ok``, ``off_scale``, ``failed``).
A chunk is written atomically and its record (rows, requests, tokens, cost) last, so a rerun
skips finished chunks and redoes only the rest; the response cache means no answered prompt is
paid for twice. In batch mode every pending chunk's batch is submitted first (its id saved before
anything else happens), then collected; a rerun collects the batches already submitted.

Examples
--------
>>> cfg = check_config({"frame": {"path": "f.parquet"}, "items": {"q": {"wording": "Trust?",
...       "options": ["No", "Yes"]}}, "backend": {"model": "m"}, "output": {"folder": "out"}}, ".")
>>> cfg["output"]["chunk_rows"], cfg["backend"]["mode"]
(1000, 'live')
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError

__all__ = ["check_config", "load_config", "simulate", "read_answers"]

_SECTIONS = {"frame": {"path", "id", "persona"}, "items": None,
             "backend": {"model", "base_url", "api_key_env", "mode", "max_concurrency", "prices", "poll_interval",
                         "max_wait", "top_logprobs", "timeout", "max_retries"},
             "output": {"folder", "chunk_rows", "cache"}}


def _need(d: Mapping, key: str, kind: Any, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: the key {key!r} is required")
    if not isinstance(d[key], kind) or isinstance(d[key], bool) and kind is not bool:
        raise ConfigError(f"{where}.{key} must be {getattr(kind, '__name__', kind)}, got {d[key]!r}")
    return d[key]


def check_config(raw: Mapping[str, Any], base: str) -> dict:
    """Validate a simulate configuration (a parsed TOML table); paths are made relative to ``base``.

    Every problem raises :class:`~rectify.errors.ConfigError` naming the section and key.
    """
    from .llm.items import Item

    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown sections {unknown}; a simulate configuration has {sorted(_SECTIONS)}")
    for sec, keys in _SECTIONS.items():
        if not isinstance(raw.get(sec), Mapping):
            raise ConfigError(f"section [{sec}] is required")
        extra = sorted(set(raw[sec]) - keys) if keys else []
        if extra:
            raise ConfigError(f"[{sec}]: unknown keys {extra}; allowed: {sorted(keys)}")

    def local(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    fr = raw["frame"]
    frame = {"path": local(_need(fr, "path", str, "[frame]")), "id": fr.get("id"), "persona": fr.get("persona")}
    if frame["persona"] is not None and (not isinstance(frame["persona"], list) or not frame["persona"]):
        raise ConfigError("[frame].persona must be a non-empty list of column names")
    items = []
    for name, spec in raw["items"].items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"[items.{name}] must be a table with 'wording' and 'options'")
        opts = _need(spec, "options", list, f"[items.{name}]")
        try:
            items.append(Item(str(name), _need(spec, "wording", str, f"[items.{name}]"), [str(o) for o in opts],
                              scores=tuple(float(s) for s in spec["scores"]) if "scores" in spec else None))
        except (InputError, TypeError, ValueError) as err:
            raise ConfigError(f"[items.{name}]: {err}") from None
    if not items:
        raise ConfigError("[items]: define at least one item ([items.NAME] with wording and options)")
    be = dict(raw["backend"])
    _need(be, "model", str, "[backend]")
    be.setdefault("mode", "live")
    if be["mode"] not in ("live", "batch"):
        raise ConfigError(f"[backend].mode must be 'live' (a vLLM / OpenAI-compatible server) or 'batch' (the OpenAI "
                          f"Batch API), got {be['mode']!r}")
    if "prices" in be and (not isinstance(be["prices"], list) or len(be["prices"]) != 2):
        raise ConfigError("[backend].prices must be [USD per million prompt tokens, USD per million completion tokens]")
    out = dict(raw["output"])
    out["folder"] = local(_need(out, "folder", str, "[output]"))
    out.setdefault("chunk_rows", 1000)
    if isinstance(out["chunk_rows"], bool) or not isinstance(out["chunk_rows"], int) or out["chunk_rows"] < 1:
        raise ConfigError(f"[output].chunk_rows must be a positive integer, got {out['chunk_rows']!r}")
    if be["mode"] == "batch":
        from .llm.batch_api import MAX_REQUESTS

        if out["chunk_rows"] * len(items) > MAX_REQUESTS:
            raise ConfigError(f"[output].chunk_rows: {out['chunk_rows']} rows x {len(items)} items exceed the Batch "
                              f"API's {MAX_REQUESTS:,} requests per batch; use at most {MAX_REQUESTS // len(items)}")
    out["cache"] = local(out["cache"]) if "cache" in out else os.path.join(out["folder"], "cache.sqlite")
    return {"frame": frame, "items": items, "backend": be, "output": out}


def load_config(path: str) -> dict:
    """Read and check a simulate configuration file (TOML)."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as err:
        raise ConfigError(f"cannot read the configuration {path!r}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    return check_config(raw, os.path.dirname(os.path.abspath(path)))


# ---------------------------------------------------------------------------------------------
# the frame in chunks
# ---------------------------------------------------------------------------------------------
def _chunks(frame_cfg: Mapping, rows: int) -> Iterator[pd.DataFrame]:
    path = frame_cfg["path"]
    if not os.path.exists(path):
        raise ConfigError(f"[frame].path: no file or folder at {path!r}")
    if path.endswith(".csv"):
        yield from pd.read_csv(path, chunksize=rows)
        return
    import pyarrow.dataset as ds

    for batch in ds.dataset(path, format="parquet").to_batches(batch_size=rows):
        if batch.num_rows:
            yield batch.to_pandas()


def _count(frame_cfg: Mapping) -> int:
    """Rows of the frame (Parquet: from the metadata; CSV: 0, unknown)."""
    if frame_cfg["path"].endswith(".csv") or not os.path.exists(frame_cfg["path"]):
        return 0
    import pyarrow.dataset as ds

    return int(ds.dataset(frame_cfg["path"], format="parquet").count_rows())


def _rechunk(chunks: Iterator[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Exactly ``rows`` rows per chunk (the last may be shorter), whatever the reader yields: a chunk's
    number then names the same people on every run."""
    buf: list[pd.DataFrame] = []
    n = 0
    for c in chunks:
        buf.append(c)
        n += len(c)
        while n >= rows:
            whole = pd.concat(buf, ignore_index=True)
            yield whole.iloc[:rows]
            rest = whole.iloc[rows:]
            buf, n = ([rest] if len(rest) else []), len(rest)
    if n:
        yield pd.concat(buf, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# one chunk
# ---------------------------------------------------------------------------------------------
def _backend(be: Mapping, cache: str):
    from .llm.openai_backend import OpenAIBackend

    kw = {k: be[k] for k in ("base_url", "api_key_env", "max_concurrency", "top_logprobs", "timeout", "max_retries")
          if k in be}
    return OpenAIBackend(be["model"], cache=cache, prices=tuple(be["prices"]) if "prices" in be else None,
                         mode="logprobs", **kw)


def _persona_frame(chunk: pd.DataFrame, frame_cfg: Mapping) -> pd.DataFrame:
    cols = frame_cfg["persona"] or [c for c in chunk.columns if c != frame_cfg["id"]]
    absent = [c for c in cols if c not in chunk.columns]
    if absent:
        raise ConfigError(f"[frame].persona: columns {absent} are not in the frame")
    return chunk[cols]


def _prompts(sims: Mapping, X: pd.DataFrame) -> dict:
    return {name: sim.prompts(X) for name, sim in sims.items()}


def _answers(backend, sims: Mapping, prompts: Mapping, ids: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """The chunk's answer table and its record: prompts, answers read from the cache, failed prompts
    and the tokens of the requests this run sent (what the server billed)."""
    from .llm.distribution import expected_score, renormalize

    out = {"id": ids}
    rec = {"prompts": 0, "cached": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for name, sim in sims.items():
        scores = backend.score(prompts[name])
        run = backend.last_run
        P = renormalize(scores.raw)[0]
        for k in range(P.shape[1]):
            out[f"{name}_p{k + 1}"] = P[:, k]
        out[f"{name}_expected"] = expected_score(P, sim.item.score_values)
        out[f"{name}_status"] = list(scores.status)
        rec["prompts"] += len(prompts[name])
        rec["cached"] += int(run.n_cached)
        rec["failed"] += int(sum(s == "failed" for s in scores.status))
        rec["prompt_tokens"] += int(run.prompt_tokens)
        rec["completion_tokens"] += int(run.completion_tokens)
    return pd.DataFrame(out), rec


def _cost(rec: Mapping, be: Mapping) -> float:
    if "prices" not in be:
        return 0.0
    return (rec["prompt_tokens"] * float(be["prices"][0]) + rec["completion_tokens"] * float(be["prices"][1])) / 1e6


def _write_part(folder: str, k: int, table: pd.DataFrame, rec: dict) -> None:
    from .compare_checkpoint import _write_atomic

    path = os.path.join(folder, f"part-{k:06d}.parquet")
    tmp = f"{path}.{os.getpid()}.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    _write_atomic(os.path.join(folder, f"part-{k:06d}.json"), json.dumps(rec).encode())  # last: the chunk is done


def _done(folder: str, k: int) -> dict | None:
    try:
        with open(os.path.join(folder, f"part-{k:06d}.json"), encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    return rec if os.path.exists(os.path.join(folder, f"part-{k:06d}.parquet")) else None


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def simulate(config: str | Mapping[str, Any], *, progress: bool = True, max_chunks: int | None = None,
             backend: Any = None) -> dict:
    """Run a simulate configuration (a path or a checked dict); returns the run's summary (also written
    to ``simulate.json`` in the output folder): chunks written and skipped, rows, prompts, answers
    read from the cache, failed prompts, the prompt and completion tokens of the requests this run
    sent (live, or answered by its batches), their cost and the seconds.

    ``max_chunks`` stops after that many chunks (a budget; rerun to go on). ``backend``: a ready
    :class:`~rectify.llm.openai_backend.OpenAIBackend` (tests, a custom client) instead of the one
    the ``[backend]`` section builds.
    """
    from .llm import batch_api
    from .llm.base import progress as bar
    from .llm.simulator import PromptSimulator

    cfg = load_config(config) if isinstance(config, (str, os.PathLike)) else config
    be, out, fr = cfg["backend"], cfg["output"], cfg["frame"]
    os.makedirs(out["folder"], exist_ok=True)
    backend = backend if backend is not None else _backend(be, out["cache"])
    sims = {it.name: PromptSimulator(backend, it).fit() for it in cfg["items"]}
    t0 = time.time()
    total = {"chunks_written": 0, "chunks_skipped": 0, "rows": 0, "prompts": 0, "cached": 0, "failed": 0,
             "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}

    def chunks() -> Iterator[tuple[int, pd.DataFrame]]:
        for k, chunk in enumerate(_rechunk(_chunks(fr, out["chunk_rows"]), out["chunk_rows"])):
            yield k, chunk

    def ids(chunk: pd.DataFrame, k: int) -> np.ndarray:
        if fr["id"] is not None:
            if fr["id"] not in chunk.columns:
                raise ConfigError(f"[frame].id: column {fr['id']!r} is not in the frame")
            return chunk[fr["id"]].to_numpy()
        return np.arange(k * out["chunk_rows"], k * out["chunk_rows"] + len(chunk))

    if be["mode"] == "batch":  # submit every pending chunk's batch first; its id is saved at once
        for k, chunk in chunks():
            if max_chunks is not None and k >= max_chunks:
                break
            if _done(out["folder"], k) is None:
                pr = _prompts(sims, _persona_frame(chunk, fr))
                batch_api.submit(backend, [p for ps in pr.values() for p in ps],
                                 os.path.join(out["folder"], "batches", f"part-{k:06d}.json"),
                                 metadata={"rectify_chunk": str(k)})
    n_rows = _count(fr)
    it = bar(chunks(), total=-(-n_rows // out["chunk_rows"]) if n_rows else 0, enabled=progress, desc="simulate")
    for k, chunk in it:
        if max_chunks is not None and k >= max_chunks:
            break
        rec = _done(out["folder"], k)
        if rec is not None:
            total["chunks_skipped"] += 1
            continue
        pr = _prompts(sims, _persona_frame(chunk, fr))
        batch_tokens = (0, 0)
        if be["mode"] == "batch":
            got = batch_api.collect(backend, [p for ps in pr.values() for p in ps],
                                    os.path.join(out["folder"], "batches", f"part-{k:06d}.json"),
                                    poll_interval=float(be.get("poll_interval", 30)), max_wait=be.get("max_wait"))
            if got["status"] not in ("completed", "failed", "expired", "cancelled", "none"):
                continue  # still running: a rerun collects it
            batch_tokens = (got["prompt_tokens"], got["completion_tokens"])  # the answers its batch brought
        table, rec = _answers(backend, sims, pr, ids(chunk, k))
        rec["batch_prompt_tokens"], rec["batch_completion_tokens"] = batch_tokens
        rec["prompt_tokens"] += batch_tokens[0]
        rec["completion_tokens"] += batch_tokens[1]
        rec = {**rec, "rows": len(chunk), "cost_usd": _cost(rec, be), "mode": be["mode"]}
        _write_part(out["folder"], k, table, rec)
        total["chunks_written"] += 1
        for key in ("rows", "prompts", "cached", "failed", "prompt_tokens", "completion_tokens", "cost_usd"):
            total[key] += rec[key]
        if hasattr(it, "set_postfix"):
            it.set_postfix(rows=total["rows"], tokens=total["prompt_tokens"] + total["completion_tokens"],
                           cost=f"${total['cost_usd']:.2f}")
    if hasattr(it, "close"):
        it.close()
    total["seconds"] = round(time.time() - t0, 3)
    total["model"], total["mode"] = be["model"], be["mode"]
    with open(os.path.join(out["folder"], "simulate.json"), "w", encoding="utf-8") as fh:
        json.dump(total, fh, indent=1)
    return total


def read_answers(folder: str) -> pd.DataFrame:
    """Every finished chunk of a simulate output folder as one DataFrame (in chunk order).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _write_part(d, 0, pd.DataFrame({"id": [1, 2], "q_p1": [0.2, 0.5]}), {"rows": 2})
    >>> read_answers(d)["q_p1"].tolist()
    [0.2, 0.5]
    """
    parts = sorted(f for f in os.listdir(folder) if f.startswith("part-") and f.endswith(".parquet"))
    done = [f for f in parts if _done(folder, int(f[5:11])) is not None]
    if not done:
        raise InputError(f"no finished chunk in {folder!r}; run `rectify simulate CONFIG.toml` first")
    return pd.concat([pd.read_parquet(os.path.join(folder, f)) for f in done], ignore_index=True)


def run_cli(args: Any) -> int:
    """``rectify simulate CONFIG.toml [--max-chunks N] [--quiet]``: run it and print the summary."""
    total = simulate(args.config, progress=not args.quiet, max_chunks=args.max_chunks)
    print(f"rectify simulate: {total['rows']:,} rows in {total['chunks_written']} chunks written "
          f"({total['chunks_skipped']} already done), {total['prompts']:,} prompts, {total['cached']:,} from the cache, "
          f"{total['failed']:,} failed; {total['prompt_tokens']:,} prompt + {total['completion_tokens']:,} completion "
          f"tokens, ${total['cost_usd']:.4f}, {total['seconds']:.1f} s")
    return 0 if total["failed"] == 0 else 1
