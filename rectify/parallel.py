"""Run independent tasks (the cells of a comparison) on a backend: in this process, on local
processes (joblib) or on a Dask cluster.

A task is ``fn(shared, cell)``: ``shared`` holds the read-only inputs every task needs (the frame,
a loaded model, ...) and is shipped **once per worker**, never once per task:

* ``"sequential"`` -- one task after another in this process (the default);
* ``"joblib"`` -- ``n_jobs`` local worker processes (joblib's loky executor). ``shared`` is dumped
  once to a temporary file with :func:`joblib.dump`; each worker loads it once, with its numpy
  arrays (the frame's columns) memory-mapped read-only, so the workers share one copy of the frame
  in the page cache. Values plain pickle cannot carry (closures over a loaded model) go through
  cloudpickle;
* ``"dask"`` -- a Dask distributed cluster: the client already active in this process if there is
  one, else a :class:`distributed.LocalCluster` of ``n_jobs`` single-threaded worker processes,
  started for the call and closed after it. ``shared`` is scattered to every worker with
  ``broadcast=True``;
* a scheduler address (``"tcp://host:8786"``) or a :class:`distributed.Client` -- that cluster.

Results come back in the order of ``cells`` whatever the order in which they finish, so a
deterministic ``fn`` gives the same output on every backend.

Examples
--------
>>> def add(shared, cell):
...     return shared["base"] + cell
>>> map_tasks(add, {"base": 10}, [1, 2, 3])
[11, 12, 13]
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import ConfigError

__all__ = ["BACKENDS", "map_tasks", "open_backend", "check_backend"]

#: the backends named by a string; a scheduler address or a dask Client is accepted as well
BACKENDS = ("sequential", "joblib", "dask")
_ADDRESS_PREFIXES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")


def _is_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and hasattr(obj, "scatter") and hasattr(obj, "submit")


def check_backend(backend: Any, n_jobs: Any = None) -> None:
    """Refuse an unknown backend or a bad ``n_jobs`` with a :class:`~rectify.errors.ConfigError`.

    Examples
    --------
    >>> check_backend("joblib", 2)
    >>> check_backend("spark")
    Traceback (most recent call last):
    ...
    rectify.errors.ConfigError: argument 'backend' must be one of ('sequential', 'joblib', 'dask'), a Dask scheduler address ('tcp://host:8786') or a distributed.Client, got 'spark'
    """
    ok = (isinstance(backend, str) and (backend in BACKENDS or backend.startswith(_ADDRESS_PREFIXES))
          or _is_client(backend))
    if not ok:
        raise ConfigError(f"argument 'backend' must be one of {BACKENDS}, a Dask scheduler address ('tcp://host:8786') "
                          f"or a distributed.Client, got {backend!r}")
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
        raise ConfigError(f"argument 'n_jobs' must be a positive integer or None (all cores), got {n_jobs!r}")


@contextlib.contextmanager
def open_backend(backend: Any = "sequential", n_jobs: int | None = None) -> Iterator[tuple[str, Any]]:
    """Context manager yielding ``(kind, handle)``: ``("sequential", None)``, ``("joblib", n_jobs)`` or
    ``("dask", client)``. A cluster or client opened here is closed on exit; one passed in is not.

    Examples
    --------
    >>> with open_backend("joblib", 2) as (kind, handle):
    ...     kind, handle
    ('joblib', 2)
    """
    check_backend(backend, n_jobs)
    if backend == "sequential":
        yield "sequential", None
        return
    if backend == "joblib":
        _need("joblib", "joblib")
        yield "joblib", int(n_jobs or os.cpu_count() or 1)
        return
    _need("distributed", "dask[distributed]")
    from distributed import Client

    if _is_client(backend):
        yield "dask", backend
        return
    if backend == "dask":
        try:
            from distributed import default_client

            client = default_client()
        except ValueError:  # no client active in this process: a local cluster for this call
            client = None
        if client is not None:
            yield "dask", client
            return
        from distributed import LocalCluster

        with LocalCluster(n_workers=int(n_jobs or os.cpu_count() or 1), threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield "dask", client
        return
    try:
        client = Client(backend)  # waits distributed.comm.timeouts.connect
    except OSError as err:
        raise ConfigError(f"argument 'backend': cannot reach the Dask scheduler at {backend!r} ({err}); start the "
                          "scheduler or check the address") from None
    with client:
        yield "dask", client


def _need(module: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"this backend needs the package {package!r}: pip install 'rectify-survey[scale]'")


def map_tasks(fn: Callable[[Mapping, Any], Any], shared: Mapping[str, Any], cells: Sequence[Any],
              backend: Any = "sequential", n_jobs: int | None = None,
              on_result: Callable[[int, Any], None] | None = None,
              on_start: Callable[[int], None] | None = None, per_task: int | None = None) -> list:
    """``[fn(shared, c) for c in cells]`` on ``backend``, ``shared`` shipped once per worker.

    ``on_result(i, result)`` is called in this process as each cell finishes (in the order they
    finish; use it for a progress bar or to save), ``on_start(i)`` before each cell of the
    sequential backend. On a worker the key ``"capture"`` of ``shared`` is True. Cells go to the
    workers in groups of ``per_task`` (default: about eight groups per worker, at most 64 cells a
    group), so that cheap cells do not each pay a task's overhead.

    Examples
    --------
    >>> def square(shared, cell):
    ...     return cell ** shared["power"]
    >>> map_tasks(square, {"power": 2}, [3, 4], backend="joblib", n_jobs=2)  # doctest: +SKIP
    [9, 16]
    """
    cells = list(cells)
    out: list = [None] * len(cells)

    def done(i: int, res: Any) -> None:
        out[i] = res
        if on_result is not None:
            on_result(i, res)

    if not cells:
        return out
    with open_backend(backend, n_jobs) as (kind, handle):
        if kind == "sequential":
            for i, c in enumerate(cells):
                if on_start is not None:
                    on_start(i)
                done(i, fn(shared, c))
        else:
            workers = handle if kind == "joblib" else max(1, sum(handle.nthreads().values()))
            size = per_task or max(1, min(64, len(cells) // (8 * workers)))
            groups = [list(range(i, min(i + size, len(cells)))) for i in range(0, len(cells), size)]
            run = _joblib_map if kind == "joblib" else _dask_map
            run(fn, {**shared, "capture": True}, cells, groups, handle, done)
    return out


def _run_group(fn: Callable, shared: Mapping, cells: Sequence) -> list:
    """One task: several cells, one after another, on a worker."""
    return [fn(shared, c) for c in cells]


# ---------------------------------------------------------------------------------------------
# joblib: the shared inputs dumped once, loaded once per worker process (arrays memory-mapped)
# ---------------------------------------------------------------------------------------------
class _Cloud:
    """A value plain pickle cannot carry (a closure, a lambda), held as cloudpickle bytes."""

    def __init__(self, value: Any):
        try:
            import cloudpickle
        except ImportError:  # joblib carries its own copy
            from joblib.externals import cloudpickle

        self.data = cloudpickle.dumps(value)

    def load(self) -> Any:
        import pickle

        return pickle.loads(self.data)


def _plain(value: Any) -> bool:
    import numpy as np
    import pandas as pd

    return value is None or isinstance(value, (pd.DataFrame, pd.Series, np.ndarray, int, float, str, bool))


_WORKER_SHARED: dict[str, Mapping] = {}


def _worker_shared(path: str) -> Mapping:
    """The shared inputs in this worker process: loaded from ``path`` on the first task only."""
    if path not in _WORKER_SHARED:
        import joblib

        _WORKER_SHARED.clear()  # a reused worker keeps only the latest run's inputs
        raw = joblib.load(path, mmap_mode="r")
        _WORKER_SHARED[path] = {k: (v.load() if isinstance(v, _Cloud) else v) for k, v in raw.items()}
    return _WORKER_SHARED[path]


def _joblib_task(fn: Callable, path: str, idx: list, cells: list) -> tuple[list, list]:
    return idx, _run_group(fn, _worker_shared(path), cells)


def _joblib_map(fn: Callable, shared: Mapping, cells: Sequence, groups: list, n_jobs: int, done: Callable) -> None:
    import joblib

    with tempfile.TemporaryDirectory(prefix="rectify-shared-") as tmp:
        path = os.path.join(tmp, "shared.joblib")
        joblib.dump({k: (v if _plain(v) else _Cloud(v)) for k, v in shared.items()}, path)
        par = joblib.Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered", batch_size=1)
        for idx, res in par(joblib.delayed(_joblib_task)(fn, path, g, [cells[i] for i in g]) for g in groups):
            for i, r in zip(idx, res):
                done(i, r)


# ---------------------------------------------------------------------------------------------
# dask: the shared inputs scattered to every worker once, tasks refer to them by future
# ---------------------------------------------------------------------------------------------
def _dask_map(fn: Callable, shared: Mapping, cells: Sequence, groups: list, client: Any, done: Callable) -> None:
    from distributed import as_completed

    [ref] = client.scatter([dict(shared)], broadcast=True, hash=False)
    futures = [client.submit(_run_group, fn, ref, [cells[i] for i in g], pure=False) for g in groups]
    where = {f.key: g for f, g in zip(futures, groups)}
    try:
        for f in as_completed(futures):
            for i, r in zip(where[f.key], f.result()):
                done(i, r)
    finally:
        client.cancel(futures + [ref])
