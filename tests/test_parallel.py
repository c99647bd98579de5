"""compare(backend=...): the same table, byte for byte, on every backend; checkpoints written by many
workers at once and resumed; the shared inputs shipped once per worker, not once per cell."""

import hashlib
import os
import threading
import warnings

import numpy as np
import pandas as pd
import pytest

from rectify import registry
from rectify.compare_checkpoint import _Checkpoint, write_cell
from rectify.comparison import _slug, compare
from rectify.datasets import load_misinfo
from rectify.errors import BackendError, ConfigError, RectifyWarning
from rectify.parallel import check_backend, map_tasks


@pytest.fixture(scope="module")
def frame():
    return load_misinfo().head(600)


@pytest.fixture(scope="module")
def client():
    """One local cluster for the module (2 single-threaded worker processes), always closed."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


class NotedWarning(RectifyWarning):
    """A warning a method emits inside a worker: it must reach the caller and the cell's note."""


def _picky(fr, pilot, spec, rng):
    """classical, but fails (a transient backend error) or warns, by the cell's own random draw."""
    out = registry.get("classical").fn(fr, pilot, spec, rng)
    key = float(rng.random())  # the cell's own random number: the same on every backend
    if key < 0.35:
        raise BackendError(f"flaky endpoint (cell draw {key:.6f})")
    warnings.warn(f"cell draw {key:.6f}", NotedWarning, stacklevel=2)
    return out



def _digest(c):
    return hashlib.sha256(b"".join(d.to_csv().encode() for d in (c.table, c.estimates, c.coefficients,
                                                                    c.failures))).hexdigest()


KW = dict(methods=["classical", "ppi++", "picky-test"], pilot_sizes=[60, 120], repeats=2, random_state=11,
          progress=False, groups="gender", formula="f01 ~ age + ideology")


def _run(frame, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = compare(frame, ["f01"], **{**KW, **kw})
    return c, sorted({str(w.message) for w in caught if issubclass(w.category, NotedWarning)})


def test_every_backend_gives_the_same_bytes(frame, client, tmp_path):
    registry.register(registry.Method("picky-test", "pilot only", _picky, default=False), replace=True)
    seq, seq_w = _run(frame)
    assert 0 < len(seq.failures) < 4  # some cells failed, the rest ran
    assert seq_w  # the method's warnings reached the caller
    for backend in ("joblib", client):
        got, got_w = _run(frame, backend=backend, n_jobs=2)
        assert _digest(got) == _digest(seq), backend
        assert got_w == seq_w  # warnings recorded in a worker are passed on to the caller
    # a local cluster started (and closed) by compare itself
    small = dict(methods=["classical"], pilot_sizes=[60], repeats=2, groups=None, formula=None)
    got, _ = _run(frame.head(300), backend="dask", n_jobs=2, **small)
    ref, _ = _run(frame.head(300), **small)
    assert _digest(got) == _digest(ref)
    assert got.meta["backend"] == "dask"


def test_checkpoint_written_by_workers_then_resumed(frame, client, tmp_path):
    registry.register(registry.Method("picky-test", "pilot only", _picky, default=False), replace=True)
    ck = str(tmp_path / "ck")
    first, _ = _run(frame, backend=client, checkpoint=ck)
    n_cells = 3 * 2 * 2
    assert first.meta["checkpoint"]["computed"] == n_cells
    done = [f for f in os.listdir(ck) if f.endswith(".done.json")]
    assert len(done) == n_cells  # every worker wrote its own cells, failed ones included
    assert not [f for f in os.listdir(ck) if f.endswith(".tmp")]
    # resume sequentially: finished cells are read, the failed (transient) ones computed again
    again, _ = _run(frame, checkpoint=ck)
    n_failed = len(first.failures)
    assert again.meta["checkpoint"]["resumed"] == n_cells - n_failed
    assert again.meta["checkpoint"]["computed"] == n_failed
    pd.testing.assert_frame_equal(again.table, first.table, check_dtype=False)
    # and resume on joblib: the same
    third, _ = _run(frame, backend="joblib", n_jobs=2, checkpoint=ck)
    assert third.meta["checkpoint"]["resumed"] == n_cells - n_failed
    pd.testing.assert_frame_equal(third.table, first.table, check_dtype=False)


def test_many_writers_at_once_leave_whole_cells(tmp_path):
    folder = str(tmp_path)
    ck = _Checkpoint(folder, "fp")
    rng = np.random.default_rng(0)
    tabs = {f"cell{i}": pd.DataFrame({"value": rng.random(200), "note": ""}) for i in range(16)}

    def writer(names):
        for name in names:
            for _ in range(3):  # rewriting a cell (a retried one) is fine too
                write_cell(folder, "fp", name, {"method": name}, tabs[name], tabs[name], tabs[name])

    names = list(tabs)
    threads = [threading.Thread(target=writer, args=(names[k::4] + names[:2],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, tab in tabs.items():
        status, got, *_ = ck.load(name)
        np.testing.assert_array_equal(got["value"].to_numpy(), tab["value"].to_numpy())
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]


class _Counted:
    """Unpickling it appends a line to a file: counts how often the shared inputs were shipped."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_counted_load, (self.path,))


def _counted_load(path):
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return _Counted(path)


def _task(shared, cell):
    return cell * 2 + int(shared["frame"]["x"].sum()), os.getpid()


@pytest.mark.parametrize("kind", ["joblib", "dask"])
def test_shared_inputs_shipped_once_per_worker(kind, client, tmp_path):
    log = tmp_path / "loads"
    shared = {"frame": pd.DataFrame({"x": np.arange(10)}), "model": _Counted(str(log))}
    out = map_tasks(_task, shared, list(range(24)), backend="joblib" if kind == "joblib" else client, n_jobs=2,
                    per_task=5)  # groups of 5 cells, the last one short
    assert [v for v, _ in out] == [c * 2 + 45 for c in range(24)]  # in the cells' order
    loads = log.read_text().split()
    workers = {pid for _, pid in out}
    assert len(loads) == len(set(loads)) <= 2  # once per worker process, not once per cell
    assert workers <= set(map(int, loads)) | {os.getpid()}


def test_bad_backend_is_refused(frame):
    with pytest.raises(ConfigError, match="argument 'backend'"):
        compare(frame, ["f01"], methods=["classical"], pilot_sizes=[50], repeats=1, backend="spark", progress=False)
    with pytest.raises(ConfigError, match="n_jobs"):
        check_backend("joblib", 0)
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        map_tasks(_task, {}, [1], backend="tcp://127.0.0.1:9")
