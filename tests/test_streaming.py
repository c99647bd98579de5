"""Streamed frames (rectify.streaming): every verb (mean, shares, OLS, logistic, ordinal) on a Parquet folder of many row groups equals the
in-memory verb to 1e-10, from every kind of source; the pilot's spec is replayed strictly on every
chunk (an unseen level or a missing value in the last chunk still raises)."""

import numpy as np
import pytest

import rectify
from rectify.datasets import draw_pilot
from rectify.demo import comparison_frame
from rectify.errors import InputError, UnseenLevelError
from rectify.streaming import count_rows, is_streamed, iter_chunks, stream_verb

PROBS = ["f01_p1", "f01_p2", "f01_p3", "f01_p4"]
CATS = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def frame():
    df = comparison_frame()
    df["b"] = (df["f01"].fillna(1) >= 3).astype(float)
    df["b_llm"] = (df["f01_llm"] - 1) / 3
    df["f01_ans"] = df["f01_llm"].round().clip(1, 4)
    return df


@pytest.fixture(scope="module")
def folder(frame, tmp_path_factory):
    """The frame as a Parquet folder: 4 files of many small row groups (chunks do not align with them)."""
    d = tmp_path_factory.mktemp("frame")
    for k in range(4):
        frame.iloc[k * 375:(k + 1) * 375].to_parquet(d / f"part{k}.parquet", row_group_size=53)
    return str(d)


@pytest.fixture(scope="module")
def pilot(frame):
    return draw_pilot(frame, 300, random_state=4).dropna(subset=["f01"])


CASES = [
    ("mean", rectify.mean, ("f01",), dict(predicted="f01_llm")),
    ("shares", rectify.shares, ("f01",), dict(predicted=PROBS, categories=CATS)),
    ("shares", rectify.shares, ("f01",), dict(predicted="f01_ans", categories=CATS)),
    ("ols", rectify.ols, ("f01 ~ age + C(ideology) + np.log(age)",), dict(predicted="f01_llm")),
    ("logit", rectify.logit, ("b ~ age + C(gender)",), dict(predicted="b_llm")),
    ("ols", rectify.ols, ("f01 ~ age + f02_llm",), dict(predicted="f01_llm")),  # plain columns: no formulaic
    ("logit", rectify.logit, ("b ~ age",), dict(predicted="b_llm")),
    ("ordinal", rectify.ordinal, ("f01 ~ age + C(ideology)",), dict(predicted=PROBS, categories=CATS)),
]


def _same(a, b):
    assert a.terms == b.terms and a.n_population == b.n_population == 1500
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.cov, b.cov, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.array(a.conf_int()), np.array(b.conf_int()), rtol=0, atol=1e-10)
    assert a.tuning.keys() == b.tuning.keys()
    assert a.target == b.target and a.pilot_in_frame == b.pilot_in_frame


@pytest.mark.parametrize("method", ["ppi++", "ppi", "classical", "naive"])
@pytest.mark.parametrize("overlap", ["inside", "separate"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_streamed_equals_in_memory(frame, folder, pilot, case, method, overlap):
    verb, fn, pos, kw = CASES[case]
    ref = fn(*pos, pilot, frame, method=method, overlap=overlap, **kw)
    got = fn(*pos, pilot, folder, method=method, overlap=overlap, **kw)  # through the verb's dispatch
    _same(got, ref)
    assert got.diagnostics["streamed"]


def test_superpopulation_estimand_passes_through(frame, folder, pilot):
    ref = rectify.ols("f01 ~ age", pilot, frame, predicted="f01_llm", estimand="superpopulation", overlap="inside")
    got = rectify.ols("f01 ~ age", pilot, folder, predicted="f01_llm", estimand="superpopulation", overlap="inside")
    _same(got, ref)
    assert got.target == "superpopulation"


def test_every_source_kind(frame, folder, pilot):
    import dask.dataframe as dd
    import duckdb
    import polars as pl
    import pyarrow as pa
    import pyarrow.dataset as ds

    cols = ["f01_llm", "age", "ideology"]
    ref = rectify.ols("f01 ~ age + C(ideology)", pilot, frame, predicted="f01_llm", overlap="inside")
    sources = {
        "arrow table": pa.Table.from_pandas(frame[cols], preserve_index=False),
        "arrow dataset": ds.dataset(folder, format="parquet"),
        "duckdb": duckdb.connect().from_parquet(f"{folder}/*.parquet"),
        "polars": pl.scan_parquet(f"{folder}/*.parquet"),
        "dask": dd.from_pandas(frame[cols], npartitions=7),
    }
    for name, src in sources.items():
        assert is_streamed(src), name
        assert count_rows(src) == 1500, name
        got = rectify.ols("f01 ~ age + C(ideology)", pilot, src, predicted="f01_llm", overlap="inside")
        _same(got, ref)


def test_unseen_level_in_the_last_chunk_raises(frame, pilot, tmp_path):
    late = frame.copy()
    late["ideology"] = late["ideology"].astype(str)
    late.loc[late.index[-1], "ideology"] = "anarchist"  # the very last row of the last chunk
    late.to_parquet(tmp_path / "late.parquet", row_group_size=100)
    p = pilot.assign(ideology=pilot["ideology"].astype(str))
    with pytest.raises(UnseenLevelError, match="anarchist"):
        rectify.ols("f01 ~ age + C(ideology)", p, str(tmp_path / "late.parquet"), predicted="f01_llm",
                    overlap="separate")


def test_missing_values_in_a_late_chunk_raise(frame, pilot, tmp_path):
    holes = frame.copy()
    holes.loc[holes.index[1400], "f01_llm"] = np.nan
    holes.to_parquet(tmp_path / "h.parquet", row_group_size=100)
    with pytest.raises(InputError, match="'f01_llm' of the population has a missing value at row 1400"):
        rectify.mean("f01", pilot, str(tmp_path / "h.parquet"), predicted="f01_llm", overlap="inside")
    holes = frame.copy()
    holes.loc[holes.index[1499], "age"] = np.nan
    holes.to_parquet(tmp_path / "a.parquet", row_group_size=100)
    with pytest.raises(InputError):
        rectify.ols("f01 ~ age", pilot, str(tmp_path / "a.parquet"), predicted="f01_llm", overlap="inside")


def test_refusals_name_the_argument(frame, folder, pilot):
    with pytest.raises(InputError, match="overlap='inside' or overlap='separate'"):
        rectify.mean("f01", pilot, folder, predicted="f01_llm")
    with pytest.raises(InputError, match="argument 'by'"):
        rectify.mean("f01", pilot, folder, predicted="f01_llm", by="gender", overlap="inside")
    with pytest.raises(InputError, match="argument 'categories'"):
        rectify.shares("f01", pilot, folder, predicted=PROBS, overlap="inside")
    with pytest.raises(InputError, match="no Parquet file or folder"):
        rectify.mean("f01", pilot, folder + "-nope", predicted="f01_llm", overlap="inside")
    with pytest.raises(InputError, match="not in the population"):
        list(iter_chunks(folder, ["nope"]))
    with pytest.raises(InputError, match="streamed population is supported by"):
        stream_verb("quantile", {"pilot": pilot, "population": folder, "overlap": "inside"})


def test_calibration_totals_from_a_streamed_frame(frame, folder, pilot):
    from rectify.streaming import frame_totals
    from rectify.weighting import calibrate

    p = pilot.dropna(subset=["f01"])
    margins = frame_totals(folder, p, vars=["gender", "f01_llm"])
    ref = calibrate(p, frame, vars=["gender", "f01_llm"], method="raking")
    got = calibrate(p, margins=margins, method="raking")
    np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-10)
    assert margins["f01_llm"] == pytest.approx(frame["f01_llm"].sum(), rel=1e-12)
    f = "~ age + C(ideology) + f01_llm"
    totals = frame_totals(folder, p, formula=f)
    ref = calibrate(p, frame, formula=f, method="linear")
    got = calibrate(p, formula=f, totals=totals, method="linear")
    np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-10)
    np.testing.assert_allclose(got.mean("f01").estimate, ref.mean("f01").estimate, rtol=0, atol=1e-10)
    with pytest.raises(rectify.errors.UnseenLevelError):
        frame_totals(folder, p[p["gender"] != p["gender"].iloc[0]], vars=["gender"])
