"""The OpenAI Batch API for large simulations: submit once, survive restarts, collect into the cache.

A batch is submitted through :meth:`rectify.llm.openai_backend.OpenAIBackend.submit_batch` (the
uncached prompts as a JSONL file, ``custom_id`` = the response-cache key) and collected with
:meth:`~rectify.llm.openai_backend.OpenAIBackend.collect_batch` (answers stored in the cache, so
scoring the same prompts afterwards reads them, and sends live requests only for those the batch
did not answer). What this module adds is the bookkeeping a long job needs:

* :func:`submit` writes the batch id to a small JSON state file (atomically) before returning, and
  finds it there on a rerun: a restarted job never submits (and pays for) the same batch twice;
* :func:`collect` polls it (up to ``max_wait`` seconds; a job may stop and resume later) and
  records the outcome in the state file;
* :func:`check_batch` refuses a batch over the API's limits (50,000 requests, 200 MB) with the
  way out (smaller chunks).

``vllm run-batch`` reads the same JSONL lines, so the requests can also go to a self-hosted
vLLM (:func:`request_lines` writes them).

Examples
--------
>>> check_batch(36_000, 40e6)
>>> check_batch(60_000, 1e6)
Traceback (most recent call last):
...
rectify.errors.InputError: a batch of 60,000 requests exceeds the Batch API's 50,000; lower chunk_rows (rows per chunk x items per row must stay <= 50,000)
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

from rectify.errors import InputError

__all__ = ["MAX_REQUESTS", "MAX_BYTES", "check_batch", "request_lines", "submit", "collect", "read_state"]

#: the Batch API's limits per batch (requests, bytes of the input file)
MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000


def check_batch(n_requests: int, n_bytes: float) -> None:
    """Refuse a batch over the API's limits (:data:`MAX_REQUESTS`, :data:`MAX_BYTES`)."""
    if n_requests > MAX_REQUESTS:
        raise InputError(f"a batch of {n_requests:,} requests exceeds the Batch API's {MAX_REQUESTS:,}; lower chunk_rows "
                         f"(rows per chunk x items per row must stay <= {MAX_REQUESTS:,})")
    if n_bytes > MAX_BYTES:
        raise InputError(f"a batch file of {n_bytes / 1e6:.0f} MB exceeds the Batch API's {MAX_BYTES / 1e6:.0f} MB; "
                         "lower chunk_rows")


def request_lines(backend: Any, prompts: Sequence[Any]) -> bytes:
    """The JSONL input of a batch (also what ``vllm run-batch -i FILE`` reads) for the uncached prompts.

    Examples
    --------
    >>> class Stub:
    ...     def batch_requests(self, prompts):
    ...         return [{"custom_id": "k1", "method": "POST", "url": "/v1/chat/completions", "body": {}}]
    >>> request_lines(Stub(), [])
    b'{"custom_id": "k1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\\n'
    """
    lines = backend.batch_requests(prompts)
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode("utf-8")


def read_state(path: str) -> dict:
    """The state file of one batch (``{}`` when absent or unreadable: then nothing was submitted).

    Examples
    --------
    >>> read_state("/nonexistent/state.json")
    {}
    """
    try:
        with open(path, encoding="utf-8") as fh:
            out = json.load(fh)
        return out if isinstance(out, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(path: str, state: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def submit(backend: Any, prompts: Sequence[Any], state_path: str, metadata: dict | None = None) -> str | None:
    """Submit the uncached prompts as one batch, unless ``state_path`` already names one.

    Returns the batch id (None when every prompt is already in the cache). The id is in the state
    file before this returns, so an interrupted job finds it on a rerun.
    """
    state = read_state(state_path)
    if state.get("batch_id"):
        return state["batch_id"]
    lines = backend.batch_requests(prompts)
    if not lines:
        return None
    n_bytes = sum(len(json.dumps(x, ensure_ascii=False)) + 1 for x in lines)
    check_batch(len(lines), n_bytes)
    batch_id = backend.submit_batch(prompts, metadata=metadata)
    _write_state(state_path, {"batch_id": batch_id, "n_requests": len(lines), "bytes": n_bytes,
                              "submitted": time.time(), "status": "submitted",
                              "keys": [x["custom_id"] for x in lines]})  # for the token count on collection
    return batch_id


def collect(backend: Any, prompts: Sequence[Any], state_path: str, poll_interval: float = 30.0,
            max_wait: float | None = None) -> dict:
    """Poll the batch named in ``state_path`` until it ends (or ``max_wait`` seconds), store its
    answers in the backend's cache and record the outcome; returns ``{"status", "stored", "failed",
    "prompt_tokens", "completion_tokens"}`` (the tokens of the answers the batch brought).

    A batch already collected is not fetched again. Statuses other than ``"completed"`` (failed,
    expired, cancelled) are recorded too: the prompts it did not answer stay uncached, and scoring
    them afterwards sends them as live requests.
    """
    state = read_state(state_path)
    if not state.get("batch_id"):
        return {"status": "none", "stored": 0, "failed": 0}
    fields = ("status", "stored", "failed", "prompt_tokens", "completion_tokens")
    if state.get("collected"):
        return {k: state.get(k, 0) for k in fields}
    got = backend.collect_batch(state["batch_id"], prompts, poll_interval=poll_interval, max_wait=max_wait)
    got.update(prompt_tokens=0, completion_tokens=0)
    if got["status"] in ("completed", "failed", "expired", "cancelled"):
        found = backend.cache.get_many(state.get("keys", []))  # the answers this batch brought, as billed
        got.update(prompt_tokens=sum(int(v.get("pt", 0)) for v in found.values()),
                   completion_tokens=sum(int(v.get("ct", 0)) for v in found.values()))
        _write_state(state_path, {**state, **got, "collected": time.time()})
    return got
