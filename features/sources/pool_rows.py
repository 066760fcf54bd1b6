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

__all__ = ["PoolRows", "read_pool_rows"]


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


def _in_pool_order(data: ds.Dataset, pools: list[str]) -> ds.Dataset:
    """The files of ``pools`` in the order of ``pools`` (a dataset reads its files in order),
    when each file holds one pool's rows; else ``data`` as it is."""
    if not isinstance(data, ds.FileSystemDataset):
        return data
    pos = {p: i for i, p in enumerate(pools)}
    keyed = []
    for frag in data.get_fragments(filter=ds.field(POOL_ID).isin(pools)):
        pool = ds.get_partition_keys(frag.partition_expression).get(POOL_ID)
        if pool not in pos:
            return data
        keyed.append((pos[pool], frag.path, frag))
    keyed.sort(key=lambda k: k[:2])
    return ds.FileSystemDataset([k[2] for k in keyed], data.schema, data.format,
                                data.filesystem)


class PoolRows:
    """A stored panel's rows folder (one ``pool_id=...`` folder per pool), listed once and
    read pool set by pool set."""

    def __init__(self, rows: Path) -> None:
        self.rows = Path(rows)
        self.data = _dataset(self.rows)

    def read(self, pools: Sequence[str], columns: Sequence[str] | None = None,
             optional: Sequence[str] = ()) -> pd.DataFrame:
        """Rows of ``pools`` (only their folders are read), as ``read_panel`` orders them.

        Parameters
        ----------
        pools : pool ids, sorted
        columns : panel columns to read besides pool id and timestamp (default: all); each
            must be stored
        optional : further columns read when stored

        Returns
        -------
        DataFrame : pool id (``str``), timestamp and the columns, sorted by pool id then time
        """
        names = _select(self.data.schema, self.rows, columns, optional)
        table = _in_pool_order(self.data, list(pools)).to_table(
            columns=names, filter=ds.field(POOL_ID).isin(list(pools)))
        ids = table.column(POOL_ID)
        codes = pc.index_in(ids, value_set=pa.array(list(pools), type=ids.type)).to_numpy(
            zero_copy_only=False)
        stamps = pc.cast(table.column(TIMESTAMP), pa.int64()).to_numpy()
        # stable sort by pool position then time (the pools are sorted, so as by pool id),
        # unless the rows came in that order (each pool's file time-ordered, as stored)
        ordered = (len(codes) < 2 or bool(np.all((codes[1:] > codes[:-1]) | (
            (codes[1:] == codes[:-1]) & (stamps[1:] >= stamps[:-1])))))
        if not ordered:
            table = table.take(np.lexsort((stamps, codes)))
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        frame[POOL_ID] = frame[POOL_ID].astype(str)
        return frame


def read_pool_rows(rows: Path, pools: Sequence[str], columns: Sequence[str] | None = None,
                   optional: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of ``pools`` from a panel store's ``rows`` folder (see :meth:`PoolRows.read`)."""
    return PoolRows(rows).read(pools, columns, optional)
