"""Frames on disk or in an engine, read in chunks: a Parquet file or folder, an Arrow table or dataset,
a DuckDB relation, a Polars LazyFrame or a Dask DataFrame (the sources of :mod:`rectify.streaming`),
and the strict conversion of each chunk to the arrays the estimators need.

Examples
--------
>>> import pyarrow as pa
>>> [len(c) for c in iter_chunks(pa.table({"x": [1.0, 2.0, 3.0]}), ["x"], rows=2)]
[2, 1]
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["CHUNK_ROWS", "is_streamed", "iter_chunks", "count_rows"]

#: rows per chunk read from a streamed frame (a chunk of 10 columns of float64 is ~80 MB)
CHUNK_ROWS = 1_000_000


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
def _kind(obj: Any) -> str | None:
    if isinstance(obj, (str, os.PathLike)):
        return "parquet"
    mod, name = type(obj).__module__, type(obj).__name__
    if mod.startswith("pyarrow") and name in ("Table", "RecordBatch") or mod.startswith("pyarrow._dataset"):
        return "arrow"
    if name == "DuckDBPyRelation":
        return "duckdb"
    if mod.startswith("polars") and name in ("LazyFrame", "DataFrame"):
        return "polars"
    if mod.startswith("dask") and hasattr(obj, "npartitions") and hasattr(obj, "partitions"):
        return "dask"
    return None


def is_streamed(population: Any) -> bool:
    """True for a population the verbs read in chunks (a path, Arrow, DuckDB, Polars, Dask).

    Examples
    --------
    >>> is_streamed("frame.parquet"), is_streamed(pd.DataFrame({"a": [1]})), is_streamed(None)
    (True, False, False)
    """
    return _kind(population) is not None


def _dataset(source: Any):
    import pyarrow.dataset as ds

    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise InputError(f"argument 'population': no Parquet file or folder at {os.fspath(source)!r}; check the "
                             "path")
        return ds.dataset(os.fspath(source), format="parquet")
    if type(source).__name__ in ("Table", "RecordBatch"):
        return ds.dataset(source)
    return source


def _columns_of(source: Any) -> list[str]:
    kind = _kind(source)
    if kind in ("parquet", "arrow"):
        return list(_dataset(source).schema.names)
    if kind == "duckdb":
        return list(source.columns)
    if kind == "polars":
        return list(source.collect_schema().names()) if hasattr(source, "collect_schema") else list(source.columns)
    return list(source.columns)


def iter_chunks(source: Any, columns: Sequence[str], rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The ``columns`` of a streamed frame as pandas DataFrames of at most about ``rows`` rows each.

    A missing column raises :class:`~rectify.errors.InputError` naming it.

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"x": [1.0, 2.0, 3.0], "g": ["a", "b", "a"]})
    >>> [len(c) for c in iter_chunks(t, ["x"], rows=2)]
    [2, 1]
    """
    kind = _kind(source)
    if kind is None:
        raise InputError(f"argument 'population' must be a DataFrame, a Parquet path, an Arrow table or dataset, a "
                         f"DuckDB relation, a Polars LazyFrame or a Dask DataFrame; got {type(source).__name__}")
    columns = list(dict.fromkeys(columns))
    have = _columns_of(source)
    absent = [c for c in columns if c not in have]
    if absent:
        raise InputError(f"columns {absent} are not in the population (it has {have[:12]}); check the names")
    if kind in ("parquet", "arrow"):
        for batch in _dataset(source).to_batches(columns=columns, batch_size=rows):
            if batch.num_rows:
                yield batch.to_pandas()
    elif kind == "duckdb":
        rel = source.select(*[f'"{c}"' for c in columns])
        reader = rel.to_arrow_reader(rows) if hasattr(rel, "to_arrow_reader") else rel.fetch_record_batch(rows)
        for batch in reader:
            if batch.num_rows:
                yield batch.to_pandas()
    elif kind == "polars":
        lazy = source.lazy() if hasattr(source, "lazy") else source
        frame = lazy.select(columns).collect()  # Polars reads what the plan needs; sliced below
        for start in range(0, frame.height, rows):
            yield frame.slice(start, rows).to_pandas()
    else:  # dask: one partition at a time
        for i in range(source.npartitions):
            part = source.partitions[i][columns].compute()
            if len(part):
                yield part


def count_rows(source: Any) -> int:
    """Rows of a streamed frame (Parquet and Arrow: from the metadata, without reading the data).

    Examples
    --------
    >>> import pyarrow as pa
    >>> count_rows(pa.table({"x": [1, 2, 3]}))
    3
    """
    if _kind(source) in ("parquet", "arrow"):
        return int(_dataset(source).count_rows())
    return sum(len(c) for c in iter_chunks(source, _columns_of(source)[:1]))


# ---------------------------------------------------------------------------------------------
# chunks -> arrays, strictly
# ---------------------------------------------------------------------------------------------
def _numbers(chunk: pd.DataFrame, cols: Sequence[str], start: int) -> np.ndarray:
    """``chunk[cols]`` as floats; a missing or infinite value or a non-numeric column raises."""
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(chunk[c])]
    if bad:
        raise InputError(f"columns {bad} of the population must be numeric (got {chunk[bad[0]].dtype}); recode them")
    arr = chunk[list(cols)].to_numpy(dtype=float)
    holes = ~np.isfinite(arr)
    if holes.any():
        r, c = np.argwhere(holes)[0]
        what = "missing" if np.isnan(arr[r, c]) else "infinite"
        raise InputError(f"column '{cols[c]}' of the population has a {what} value at row {start + int(r)} (and "
                         f"{int(holes.sum()) - 1} more in rows {start}..{start + len(arr) - 1}); rectify does not "
                         "drop rows silently: fill or remove them first")
    return arr


def _design_chunks(source, spec, variables, pred_cols, labels=None, plain=None):
    """(X, F) per chunk: the pilot's model spec replayed on the chunk (strict), the predictions as floats
    (``labels``: one-hot over these categories, a label outside them raises). ``plain``: the data
    column behind each design column (None: the intercept) when every term is a plain numeric
    column (:func:`rectify.formula.plain_columns`) -- the chunk's columns are then the design."""
    from .formula import replay_design

    have = set(_columns_of(source))
    variables = [v for v in variables if v in have or not hasattr(np, v)]  # np.log etc. are not columns
    start = 0
    for chunk in iter_chunks(source, [*variables, *pred_cols]):
        if plain is not None:
            data = [c for c in plain if c is not None]
            X = np.ones((len(chunk), len(plain)))
            X[:, [j for j, c in enumerate(plain) if c is not None]] = _numbers(chunk, data, start)
        else:
            X = None if spec is None else replay_design(spec, chunk, "population")
        if labels is not None and len(pred_cols) == 1:  # predicted answers: one-hot over the options
            F = _one_hot(chunk[pred_cols[0]].to_numpy(), labels, pred_cols[0], start)
        else:
            F = _numbers(chunk, pred_cols, start)
            if labels is not None:  # option probabilities: checked as the in-memory path checks them
                from .estimators.ppi import _as_shares_matrix

                F = _as_shares_matrix(F, labels, "yhat_pop")
        yield X, F
        start += len(chunk)


def _one_hot(values: np.ndarray, labels: Sequence, col: str, start: int) -> np.ndarray:
    index = {lab: k for k, lab in enumerate(labels)}
    codes = np.array([index.get(v, -1) for v in values.tolist()])
    if (codes < 0).any():
        r = int(np.argmax(codes < 0))
        raise InputError(f"column '{col}' of the population has the label {values[r]!r} at row {start + r}, which is "
                         f"not among the categories {list(labels)}; pass categories=[...] with every option")
    out = np.zeros((len(values), len(labels)))
    out[np.arange(len(values)), codes] = 1.0
    return out
