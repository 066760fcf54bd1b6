"""Long tables to Parquet files, as ``DataFrame.to_parquet`` writes them, with less work.

``to_parquet`` turns every NaN of a float column into a null through pyarrow's element-wise
converter, which costs about a third of writing the file. Here the validity bitmap of a float
column is packed from ``isnan`` in one vectorised pass and its values are shared, not copied;
the schema and its pandas metadata come from pyarrow as ``to_parquet`` makes them, so the
file holds the same bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["arrow_schema", "arrow_table", "write_parquet"]

# pandas 3 deprecates Series.values of tz-aware stamps, which pyarrow still reads
_TZ_VALUES_WARNING = r"(Series|DatetimeIndex)\.values returning an ndarray that drops timezone"


def arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The schema, pandas metadata included, of ``pa.Table.from_pandas(frame,
    preserve_index=False)`` (of the frame's first row).

    It silences, as ``to_parquet`` does, pyarrow's use of a deprecated pandas attribute:
    the warning filters are process-wide, so call it where no other thread changes them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _TZ_VALUES_WARNING)
        return pa.Schema.from_pandas(frame.iloc[:1], preserve_index=False)


def _float_array(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """An Arrow float array over ``values`` (shared), null where NaN."""
    nan = np.isnan(values)
    nulls = int(np.count_nonzero(nan))
    valid = (pa.py_buffer(np.packbits(~nan, bitorder="little")) if nulls else None)
    return pa.Array.from_buffers(kind, len(values), [valid, pa.py_buffer(values)],
                                 null_count=nulls)


def _array(col: pd.Series, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """One column as ``from_pandas`` converts it (NaN and NaT as null)."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind == "f":
        return _float_array(np.ascontiguousarray(col.to_numpy()), kind)
    if isinstance(col.dtype, pd.DatetimeTZDtype):  # from its integers: pyarrow would warn
        missing = col.isna().to_numpy()
        return pa.array(col.array.asi8, pa.int64(),
                        mask=missing if missing.any() else None).view(kind)
    return pa.array(col, type=kind, from_pandas=True)


def arrow_table(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """The Arrow table ``pa.Table.from_pandas(frame, preserve_index=False)`` makes.

    ``schema``: the frame's :func:`arrow_schema`, if known (parts of one table share it).
    """
    if len(frame) == 0 or frame.attrs or not frame.columns.is_unique:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _TZ_VALUES_WARNING)
            return pa.Table.from_pandas(frame, preserve_index=False)
    schema = arrow_schema(frame) if schema is None else schema
    if schema.names != [str(c) for c in frame.columns]:
        raise ValueError(f"arrow_table: the schema names columns {schema.names[:4]}..., the "
                         f"frame {list(frame.columns)[:4]}...; expected the same columns")
    arrays = [_array(frame[c], f.type) for c, f in zip(frame.columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(frame: pd.DataFrame, path: str | Path, options: dict[str, Any],
                  schema: pa.Schema | None = None) -> None:
    """Write ``frame`` to one Parquet file as ``frame.to_parquet(path, **options)`` does.

    ``options`` may hold ``index=False`` and any ``pyarrow.parquet.write_table`` keyword;
    ``schema`` as :func:`arrow_table`.
    """
    opts = dict(options)
    if opts.pop("index", False) is not False:
        raise ValueError(f"write_parquet stores no index: expected index=False in {options}")
    opts.setdefault("compression", "snappy")  # to_parquet's default
    pq.write_table(arrow_table(frame, schema), str(path), **opts)
