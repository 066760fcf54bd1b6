"""Rows of chosen pools from a stored panel's pool-partitioned Parquet folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from features.schema import POOL_ID, TIMESTAMP, DataValidationError

__all__ = ["read_pool_rows"]


def _dataset(rows: Path) -> ds.Dataset:
    """The rows folder as a dataset whose pool-id partition values stay strings."""
    if not rows.exists():
        raise DataValidationError(f"no panel rows in {rows}; run `lpa data synth` or "
                                  "`lpa data import` first", source=str(rows),
                                  rule="panel present")
    part = ds.partitioning(pa.schema([(POOL_ID, pa.string())]), flavor="hive")
    return ds.dataset(rows, format="parquet", partitioning=part)


def _select(schema: pa.Schema, rows: Path, columns: Sequence[str] | None,
            optional: Sequence[str]) -> list[str]:
    """Pool id, timestamp, then the wanted columns the store holds (all when None)."""
    keys = [POOL_ID, TIMESTAMP]
    if columns is None:
        return keys + [c for c in schema.names if c not in keys]
    absent = [c for c in columns if c not in schema.names]
    if absent:
        raise DataValidationError(f"panel rows in {rows} have no column {absent[0]!r}; "
                                  f"expected {list(columns)}, found {schema.names}",
                                  source=str(rows), field=absent[0], rule="panel columns")
    wanted = [*columns, *(c for c in optional if c in schema.names)]
    return keys + [c for c in dict.fromkeys(wanted) if c not in keys]


def read_pool_rows(rows: Path, pools: Sequence[str], columns: Sequence[str] | None = None,
                   optional: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of ``pools`` from a panel store's ``rows`` folder, as ``read_panel`` orders them.

    Parameters
    ----------
    rows : the store's rows folder (one ``pool_id=...`` folder per pool; only the folders of
        ``pools`` are read)
    pools : pool ids, sorted
    columns : panel columns to read besides pool id and timestamp (default: all); each must
        be stored
    optional : further columns read when stored

    Returns
    -------
    DataFrame : pool id (``str``), timestamp and the columns, sorted by pool id then time
    """
    rows = Path(rows)
    data = _dataset(rows)
    names = _select(data.schema, rows, columns, optional)
    table = data.to_table(columns=names, filter=ds.field(POOL_ID).isin(list(pools)))
    ids = table.column(POOL_ID)
    codes = pc.index_in(ids, value_set=pa.array(list(pools), type=ids.type)).to_numpy(
        zero_copy_only=False)
    stamps = pc.cast(table.column(TIMESTAMP), pa.int64()).to_numpy()
    # stable sort by pool position then time (the pools are sorted, so as by pool id), unless
    # the folders came back in that order already
    ordered = (len(codes) < 2 or bool(np.all((codes[1:] > codes[:-1]) | (
        (codes[1:] == codes[:-1]) & (stamps[1:] >= stamps[:-1])))))
    if not ordered:
        table = table.take(np.lexsort((stamps, codes)))
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    frame[POOL_ID] = frame[POOL_ID].astype(str)
    return frame
