"""Answer distributions from log-probs/samples and the SQLite response cache."""

import math
import multiprocessing as mp
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectify.errors import CacheError, InputError
from rectify.llm.cache import ResponseCache, RunRecord, request_key
from rectify.llm.distribution import (
    answer_table,
    parse_answer,
    probs_from_logprobs,
    probs_from_samples,
    renormalize,
)

LABELS = ("1", "2", "3", "4")


def test_logprobs_to_probs_by_hand():
    lp = {"1": math.log(0.1), " 2": math.log(0.2), "2": math.log(0.05), "Ġ3": math.log(0.05), "The": math.log(0.5)}
    raw = probs_from_logprobs(lp, LABELS)
    np.testing.assert_allclose(raw, [0.1, 0.25, 0.05, 0.0])
    tab = answer_table(raw[None, :], ["a", "b", "c", "d"], scores=[1, 2, 3, 4], index=["r1"])
    np.testing.assert_allclose(tab.loc["r1", ["a", "b", "c", "d"]].to_numpy(float), [0.25, 0.625, 0.125, 0.0])
    assert tab.loc["r1", "mass_on_options"] == pytest.approx(0.4)
    assert tab.loc["r1", "expected"] == pytest.approx(0.25 + 2 * 0.625 + 3 * 0.125)
    assert tab.loc["r1", "mode"] == "b"


def test_zero_mass_row_is_nan_not_hidden():
    tab = answer_table(np.array([[0.0, 0.0], [0.3, 0.1]]), ["no", "yes"])
    assert tab["mass_on_options"].tolist() == pytest.approx([0.0, 0.4])
    assert np.isnan(tab.loc[0, "no"]) and np.isnan(tab.loc[0, "expected"]) and tab["mode"].isna()[0]
    assert tab.loc[1, "mode"] == "no"


def test_samples_parse():
    assert parse_answer(" 2) Somewhat", LABELS) == 1
    assert parse_answer("Answer: 4", LABELS) == 3
    assert parse_answer("12", LABELS) is None
    assert parse_answer("", LABELS) is None
    np.testing.assert_allclose(probs_from_samples(["1", "1", "3.", "sorry", None], LABELS), [0.4, 0, 0.2, 0])
    with pytest.raises(InputError):
        probs_from_samples([], LABELS)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=6), st.floats(0.01, 1))
def test_renormalize_invariants(w, scale):
    raw = np.asarray(w)[None, :] * scale
    p, m = renormalize(raw)
    if raw.sum() > 0:
        assert p.sum() == pytest.approx(1.0) and m[0] == pytest.approx(raw.sum())
        np.testing.assert_allclose(p * m[0], raw, atol=1e-12)
    else:
        assert np.isnan(p).all()


def test_cache_roundtrip_permissions_and_runs(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"
    c = ResponseCache(path)
    k = request_key("b", "m", [{"role": "user", "content": "x"}], {"temperature": 0})
    assert c.get(k) is None and k not in c
    c.put(k, {"probs": [0.1, 0.2]}, "b", "m", 5, 1)
    c.put(k, {"probs": [9, 9]}, "b", "m")  # first answer wins, never overwritten
    assert c.get(k) == {"probs": [0.1, 0.2]} and len(c) == 1
    r = RunRecord("b", "m")
    r.add_tokens(1_000_000, 500_000, (0.15, 0.60))
    c.record_run(r)
    assert c.runs()[0]["cost"] == pytest.approx(0.15 + 0.30)
    files = os.listdir(path.parent)
    assert "c.sqlite-wal" in files  # WAL mode; the journal files inherit the 0600 mode
    for f in files:
        mode = stat.S_IMODE(os.stat(path.parent / f).st_mode)
        assert mode & 0o077 == 0, (f, oct(mode))
    c.close()
    assert ResponseCache(path).get(k) == {"probs": [0.1, 0.2]}


def test_key_depends_on_everything_and_refuses_secrets():
    base = request_key("b", "m", "p", {"t": 0})
    assert len({base, request_key("b2", "m", "p", {"t": 0}), request_key("b", "m2", "p", {"t": 0}),
                request_key("b", "m", "p2", {"t": 0}), request_key("b", "m", "p", {"t": 1})}) == 5
    with pytest.raises(InputError, match="secret"):
        request_key("b", "m", "p", {"api_key": "sk-1"})


def test_corrupted_cache_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(CacheError, match="corrupted.*delete the file"):
        ResponseCache(bad)
    good = tmp_path / "good.sqlite"
    c = ResponseCache(good)
    c.put_many([(f"k{i}", {"v": i}, "b", "m", 0, 0) for i in range(200)])
    c.close()
    data = bytearray(good.read_bytes())
    data[2000:6000] = b"\xff" * 4000
    good.write_bytes(bytes(data))
    with pytest.raises(CacheError):
        c2 = ResponseCache(good)
        c2.get_many([f"k{i}" for i in range(200)])


def _writer(path, start, n):
    c = ResponseCache(path)
    for i in range(start, start + n):
        c.put(f"k{i}", {"v": i}, "b", "m")
    c.close()


def test_concurrent_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ResponseCache(path).close()
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, j * 30, 50)) for j in range(3)]  # overlapping keys
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = ResponseCache(path)
    got = c.get_many([f"k{i}" for i in range(110)])
    assert len(got) == 110 and all(got[f"k{i}"] == {"v": i} for i in range(110))
