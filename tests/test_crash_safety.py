"""Crash-safety with real processes: the response cache under concurrent writers, damaged cache
files and their recovery, a writer killed mid-transaction, and ``rectify compare`` killed with
SIGKILL and resumed from its checkpoint."""

import hashlib
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pytest

from rectify.cli import load_config, read_frame
from rectify.comparison import compare
from rectify.demo import comparison_frame
from rectify.errors import CacheError
from rectify.llm.cache import ResponseCache, RunRecord, request_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}


def _answer(i: int) -> dict:
    """A deterministic answer; every 40th is large enough to spill onto overflow pages."""
    pad = "é-ü-" * (1500 if i % 40 == 0 else i % 13)
    return {"probs": [round(0.1 + (i % 7) / 100, 6), 0.25, 0.3], "text": f"answer {i} {pad}", "i": i}


def _key(i: int) -> str:
    return request_key("openai", "m", [{"role": "user", "content": f"persona {i}"}], {"temperature": 0})


def _all_rows(path) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT * FROM responses ORDER BY key").fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# 1. several processes writing the same cache at once
# ---------------------------------------------------------------------------------------------
SHARED = range(0, 1000)  # written by every process, identical content


def _own(j: int) -> range:
    return range(10_000 * (j + 1), 10_000 * (j + 1) + 2000)


def _writer(path: str, j: int, barrier, result_path: str) -> None:
    out = {"puts": 0, "error": None}
    try:
        barrier.wait(30)  # all open the (not yet existing) file and write at the same moment
        cache = ResponseCache(path)
        run = RunRecord("openai", f"writer-{j}")
        cache.record_run(run)
        keys = [i for pair in zip(SHARED, _own(j)) for i in pair] + list(_own(j))[len(SHARED):]
        if j % 2:
            keys = keys[::-1]  # overlapping keys arrive in a different order in each process
        for n, i in enumerate(keys):
            if n % 10 == 9:  # every tenth write goes in a batch with its neighbour
                cache.put_many([(_key(i), _answer(i), "openai", "m", i % 50, 1)])
            else:
                cache.put(_key(i), _answer(i), "openai", "m", i % 50, 1)
            out["puts"] += 1
            if n % 500 == 0:
                assert cache.get(_key(i)) == _answer(i)
        run.n_requests, run.finished = out["puts"], time.time()
        cache.record_run(run)
        cache.close()
    except BaseException as err:  # reported to the test, which shows it
        out["error"] = f"{type(err).__name__}: {err}"
    with open(result_path, "w") as fh:
        json.dump(out, fh)


@pytest.fixture
def fast_dir(tmp_path):
    """A folder in memory (tmpfs) where one is available: this test is about locks, not about disk
    flushes, which on a busy shared disk would make its thousands of commits take minutes."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        d = tempfile.mkdtemp(dir="/dev/shm", prefix="rectify-test-")
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield str(tmp_path)


def test_processes_writing_at_once_lose_and_duplicate_nothing(tmp_path, fast_dir):
    path = os.path.join(fast_dir, "shared.sqlite")
    nproc = 3
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(nproc)
    results = [str(tmp_path / f"w{j}.json") for j in range(nproc)]
    procs = [ctx.Process(target=_writer, args=(path, j, barrier, results[j])) for j in range(nproc)]
    t0 = time.time()
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    seconds = time.time() - t0
    outs = [json.load(open(r)) for r in results]
    assert [p.exitcode for p in procs] == [0] * nproc
    assert [o["error"] for o in outs] == [None] * nproc  # no 'database is locked' reached a writer
    assert [o["puts"] for o in outs] == [len(SHARED) + len(_own(j)) for j in range(nproc)]

    expected = {_key(i): _answer(i) for i in list(SHARED) + [i for j in range(nproc) for i in _own(j)]}
    con = sqlite3.connect(path)
    n_rows, n_keys = con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM responses").fetchone()
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    assert n_rows == n_keys == len(expected) == 1000 + 3 * 2000  # every key exactly once
    cache = ResponseCache(path)
    assert cache.get_many(list(expected)) == expected  # content intact
    runs = cache.runs()
    assert sorted(r["model"] for r in runs) == [f"writer-{j}" for j in range(nproc)]
    assert all(r["finished"] is not None and r["n_requests"] == outs[j]["puts"]
               for j, r in enumerate(sorted(runs, key=lambda r: r["model"])))
    cache.close()
    print(f"\n{nproc} processes wrote {[o['puts'] for o in outs]} answers at once in {seconds:.1f} s; "
          f"{n_rows} distinct rows stored")


# ---------------------------------------------------------------------------------------------
# 2. damaged files: clear error, recovery keeps every intact row
# ---------------------------------------------------------------------------------------------
N_ROWS = 1500


def _filled_cache(path) -> list[tuple]:
    cache = ResponseCache(path)
    cache.put_many([(_key(i), _answer(i), "openai", "m", i % 50, 2) for i in range(N_ROWS)])
    for j in range(2):
        r = RunRecord("openai", "m", n_requests=10 + j)
        r.finished = r.started + 1
        cache.record_run(r)
    cache.close()
    assert not os.path.exists(str(path) + "-wal")  # a clean close folds the log into the file
    return _all_rows(path)


def _table_leaf_pages(data: bytes, size: int = 4096) -> list[int]:
    return [n for n in range(1, len(data) // size) if data[n * size] == 0x0D]


def _damage(path, kind: str) -> None:
    data = bytearray(open(path, "rb").read())
    rng = np.random.default_rng(11)
    if kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "page":
        leaves = _table_leaf_pages(bytes(data))
        n = leaves[len(leaves) // 2]  # a page in the middle that holds rows
        data[n * 4096 : (n + 1) * 4096] = rng.bytes(4096)
    elif kind == "header":
        data[:100] = rng.bytes(100)
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("kind", ["truncated", "page", "header"])
def test_damaged_cache_is_refused_then_recovered_row_by_row(tmp_path, kind):
    path = str(tmp_path / "cache.sqlite")
    original = _filled_cache(path)
    _damage(path, kind)
    damaged_sha = hashlib.sha256(open(path, "rb").read()).hexdigest()

    with pytest.raises(CacheError) as info:
        ResponseCache(path)
    msg = str(info.value)
    assert repr(path) in msg and "corrupted" in msg and "ResponseCache.recover" in msg
    assert repr(path + ".corrupt") in msg and "delete the file" in msg

    if kind == "header":  # recovery on open, announced by a warning
        with pytest.warns(RuntimeWarning, match=r"recovered \d+ cached answers"):
            cache = ResponseCache(path, recover=True)
        rec = cache.recovery
        cache.close()
    else:
        rec = ResponseCache.recover(path)
    recovered = _all_rows(path)
    assert rec.n_responses == len(recovered)
    by_key = {r[0]: r for r in original}
    assert all(r == by_key[r[0]] for r in recovered)  # every saved row byte-identical to the original
    lost = len(original) - len(recovered)
    if kind == "truncated":
        assert 0.3 * N_ROWS < len(recovered) < N_ROWS
    elif kind == "page":
        assert 1 <= lost <= 4096 // 64 + 1  # one page of rows (a key alone is 64 bytes), at most
    else:
        assert lost == 0 and rec.n_runs == 2
    # the damaged file is kept, untouched, beside the fresh cache
    assert rec.damaged_path == path + ".corrupt"
    assert hashlib.sha256(open(rec.damaged_path, "rb").read()).hexdigest() == damaged_sha
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    cache = ResponseCache(path)  # opens cleanly and keeps working
    assert len(cache) == len(recovered) and len(cache.runs()) == rec.n_runs
    cache.put(_key(-1), {"new": True}, "openai", "m")
    assert cache.get(_key(-1)) == {"new": True}
    cache.close()
    print(f"\n{kind}: recovered {len(recovered)} of {N_ROWS} rows ({rec.n_runs} of 2 run records, "
          f"{rec.n_unreadable} unreadable cells); {rec}")


WRITER = """
import sys
from rectify.llm.cache import ResponseCache
cache = ResponseCache(sys.argv[1])
log = open(sys.argv[2], "a")
b = 0
while True:
    cache.put_many([(f"b{{b}}-{{i}}", {{"batch": b, "i": i, "pad": "x" * (37 * i % 400)}}, "b", "m", i, 1)
                    for i in range({batch})])
    log.write(f"{{b}}\\n")
    log.flush()
    b += 1
"""


def test_writer_killed_mid_transaction_leaves_a_usable_cache(tmp_path):
    batch = 50
    path, log = str(tmp_path / "c.sqlite"), tmp_path / "committed.log"
    p = subprocess.Popen([sys.executable, "-c", WRITER.format(batch=batch), path, str(log)], env=ENV,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 40):
        assert p.poll() is None, p.stderr.read().decode()
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    logged = len(log.read_text().split())
    assert logged >= 40
    assert os.path.exists(path + "-wal") and os.path.exists(path + "-shm")  # left behind by the killed writer
    snapshot = str(tmp_path / "snap.sqlite")
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(path + suffix, snapshot + suffix)

    cache = ResponseCache(path)  # the stale log is replayed; the integrity check passes
    n = len(cache)
    assert n % batch == 0 and logged * batch <= n <= (logged + 1) * batch  # whole transactions only
    keys = [f"b{b}-{i}" for b in range(logged) for i in range(batch)]
    got = cache.get_many(keys)
    assert all(got[f"b{b}-{i}"] == {"batch": b, "i": i, "pad": "x" * (37 * i % 400)}
               for b in range(logged) for i in range(batch))
    cache.close()
    committed = _all_rows(path)

    # the same state with its main file's header destroyed: the rows still in the log survive
    _damage(snapshot, "header")
    rec = ResponseCache.recover(snapshot)
    assert _all_rows(snapshot) == committed and rec.n_responses == n
    print(f"\nwriter killed after {logged} logged transactions: {n} rows committed and present; "
          f"recovered {rec.n_responses} of {n} from the log after destroying the file's header")


# ---------------------------------------------------------------------------------------------
# 3. `rectify compare` killed with SIGKILL resumes without repeating finished work
# ---------------------------------------------------------------------------------------------
CONFIG = """
frame = "survey.csv"
items = ["f01", "t01"]
scores = [1, 2, 3, 4]
probabilities = "{item}_p{k}"
formula = "disc ~ age + ideology"
methods = ["classical", "simulator", "ppi++", "raking"]
covariates = ["age", "gender", "ideology"]
pilot_sizes = [60, 100]
repeats = 3
seed = 3
output = "out"
checkpoint = "ck"
[scales.disc]
plus = ["t01"]
minus = ["f01"]
"""
N_CELLS = 4 * 2 * 3


def _cell_files(folder) -> dict:
    """slug -> (inode, mtime_ns) of each file of every finished cell."""
    out = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".done.json"):
            slug = f[: -len(".done.json")]
            out[slug] = [(os.stat(os.path.join(folder, g)).st_ino, os.stat(os.path.join(folder, g)).st_mtime_ns)
                         for g in sorted(os.listdir(folder)) if g.startswith(slug + ".") and not g.endswith(".tmp")]
    return out


def _read_table(path_or_frame) -> pd.DataFrame:
    if isinstance(path_or_frame, pd.DataFrame):
        path_or_frame = path_or_frame.to_csv(index=False)
        from io import StringIO

        path_or_frame = StringIO(path_or_frame)
    return pd.read_csv(path_or_frame, keep_default_na=False, na_values=[""])


def test_compare_killed_midrun_resumes_without_repeating(tmp_path):
    df = comparison_frame().head(400)
    cols = ["respondent_id", "age", "gender", "education", "ideology", "f01", "t01", "f01_llm", "t01_llm"]
    cols += [f"{i}_p{k}" for i in ("f01", "t01") for k in range(1, 5)]
    df[cols].to_csv(tmp_path / "survey.csv", index=False)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    ck = tmp_path / "ck"
    cmd = [sys.executable, "-m", "rectify.cli", "compare", str(config), "--quiet"]

    p = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if ck.exists() and sum(f.endswith(".done.json") for f in os.listdir(ck)) >= 6:
            break
        assert p.poll() is None, p.communicate()[1].decode()[-2000:]
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    before = _cell_files(ck)
    assert 6 <= len(before) < N_CELLS and not (tmp_path / "out").exists()

    r = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"resumed (\d+) finished cells, computed (\d+)", r.stdout)
    assert m and (int(m[1]), int(m[2])) == (len(before), N_CELLS - len(before)), r.stdout
    after = _cell_files(ck)
    assert len(after) == N_CELLS
    assert all(after[s] == files for s, files in before.items())  # finished cells were not rewritten

    # the same comparison, never interrupted
    cfg = load_config(str(config))
    reference = compare(read_frame(cfg["frame"]), progress=False, **cfg["kwargs"])
    resumed = _read_table(tmp_path / "out" / "fidelity.csv")
    pd.testing.assert_frame_equal(resumed, _read_table(reference.table), check_exact=False, rtol=1e-12, atol=0)
    pd.testing.assert_frame_equal(_read_table(tmp_path / "out" / "estimates.csv"), _read_table(reference.estimates),
                                  check_exact=False, rtol=1e-12, atol=0)

    # a cell file cut in half and another cell's done file cut short: detected, computed again
    slugs = sorted(after)
    cut = [ck / f"{slugs[3]}.metrics.csv", ck / f"{slugs[17]}.done.json"]
    for f in cut:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match="damaged") as caught:
        again = compare(read_frame(cfg["frame"]), progress=False, checkpoint=cfg["checkpoint"], **cfg["kwargs"])
    assert {slugs[3], slugs[17]} <= {s for w in caught for s in slugs if s in str(w.message)}
    assert again.meta["checkpoint"]["resumed"] == N_CELLS - 2 and again.meta["checkpoint"]["computed"] == 2
    assert sorted(again.meta["checkpoint"]["damaged"]) == sorted([slugs[3], slugs[17]])
    pd.testing.assert_frame_equal(_read_table(again.table), _read_table(reference.table), check_exact=False,
                                  rtol=1e-12, atol=0)
    assert _cell_files(ck)[slugs[5]] == after[slugs[5]]
    print(f"\ncompare killed after {len(before)} of {N_CELLS} cells; the rerun resumed {m[1]} and computed "
          f"{m[2]}; 2 damaged cells recomputed")
