"""Generic CSV/Parquet/JSON tables mapped onto the contract by a {field: source column} map."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import (
    CLOSE,
    FEES_USD,
    HIGH,
    LIQUIDITY,
    LOW,
    OPEN,
    POOL_ID,
    SQRT_PRICE,
    TICK,
    TIMESTAMP,
    TOKEN0_PRICE_USD,
    TOKEN1_PRICE_USD,
    TVL_USD,
    TX_COUNT,
    VOLUME_USD,
    DataValidationError,
)
from features.sources.rows import load_rows, parse_times, tag_rows, to_float
from features.sources.subgraph import RawPart

__all__ = ["TableOptions", "read_table_file", "TABLE_FIELDS", "TABLE_REQUIRED"]

TABLE_FIELDS = (TIMESTAMP, POOL_ID, OPEN, HIGH, LOW, CLOSE, VOLUME_USD, FEES_USD, TVL_USD,
                TOKEN0_PRICE_USD, TOKEN1_PRICE_USD, LIQUIDITY, TICK, SQRT_PRICE, TX_COUNT)
# open/high/low, fees, USD prices and the pool id can be derived; these cannot
TABLE_REQUIRED = (TIMESTAMP, CLOSE, VOLUME_USD, TVL_USD)
# normalised source names (lower case, letters and digits) that could fill a field: for hints
_LIKE = {
    TIMESTAMP: ("timestamp", "time", "date", "datetime", "day", "hour", "periodstartunix",
                "hourstartunix", "when"),
    POOL_ID: ("poolid", "pool", "pair", "pairaddress", "address", "id"),
    CLOSE: ("close", "price", "token0price", "token1price", "last", "rate"),
    OPEN: ("open",), HIGH: ("high",), LOW: ("low",),
    VOLUME_USD: ("volume", "volumeusd", "dailyvolumeusd", "hourlyvolumeusd", "vol"),
    FEES_USD: ("fees", "feesusd", "fee"),
    TVL_USD: ("tvl", "tvlusd", "totalvaluelockedusd", "reserveusd", "liquidityusd"),
    TOKEN0_PRICE_USD: ("token0priceusd", "price0usd"),
    TOKEN1_PRICE_USD: ("token1priceusd", "price1usd"),
}


@dataclass(frozen=True)
class TableOptions:
    """How to read a generic table.

    mapping: {contract field: source column}; one source column may feed several fields.
    invert_price: the file's prices are token1 in token0 (the contract wants token0 in
    token1): use 1/price, high and low swapped.
    """

    mapping: dict[str, str] | None = None
    sep: str = ","
    thousands: str | None = None
    date_format: str | None = None
    invert_price: bool = False


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _could_fill(field: str, columns: list[str]) -> list[str]:
    """Source columns whose names suggest they hold ``field``."""
    like = _LIKE.get(field, (_norm(field),))
    return [c for c in columns if _norm(c) in like or any(
        len(w) > 3 and w in _norm(c) for w in like)]


def _select(raw: pd.DataFrame, mapping: dict[str, str], path: Path) -> dict[str, str]:
    """{field: source column} from the mapping plus columns already named like the contract."""
    unknown = [f for f in mapping if f not in TABLE_FIELDS]
    if unknown:
        raise DataValidationError(
            f"mapping names unknown field(s) {unknown}; fields are {list(TABLE_FIELDS)}",
            source=str(path), field=",".join(unknown), rule="mapping")
    absent = {f: s for f, s in mapping.items() if s not in raw.columns}
    if absent:
        f, s = next(iter(absent.items()))
        raise DataValidationError(
            f"mapping sends column '{s}' to '{f}' but the file has no such column; its columns "
            f"are {list(raw.columns)}", source=str(path), field=f, rule="mapping")
    chosen = dict(mapping)
    for f in TABLE_FIELDS:
        if f not in chosen and f in raw.columns:
            chosen[f] = f
    lacking = [f for f in TABLE_REQUIRED if f not in chosen]
    if lacking:
        free = [c for c in raw.columns if c not in chosen.values()]
        hints = []
        for f in lacking:
            cands = _could_fill(f, free)
            hints.append(f"'{f}' (could be filled by: {', '.join(cands)})" if cands
                         else f"'{f}' (no column looks like it)")
        raise DataValidationError(
            f"required field(s) not found: {'; '.join(hints)}. Map them with --mapping "
            f"'{{\"{lacking[0]}\": \"<column>\"}}'; unmapped columns: {free}",
            source=str(path), field=",".join(lacking), rule="required column")
    return chosen


def read_table_file(path: Path, opts: TableOptions) -> RawPart:
    """A generic table in contract columns; OHLC from the one price where only a price is given.

    Naive date strings are taken as UTC; unix seconds are accepted too. Pool ids default to
    the file name.
    """
    raw, _ = load_rows(path, opts.sep, opts.thousands)
    chosen = _select(raw, opts.mapping or {}, path)
    out = pd.DataFrame({TIMESTAMP: parse_times(raw, chosen[TIMESTAMP], path, opts.date_format)})
    out[POOL_ID] = (raw[chosen[POOL_ID]].astype(str).str.strip() if POOL_ID in chosen
                    else path.stem)
    for f, src in chosen.items():
        if f not in (TIMESTAMP, POOL_ID):
            out[f] = to_float(raw, src, path, f)
    one_price = HIGH not in chosen or LOW not in chosen or chosen[HIGH] == chosen[LOW]
    if HIGH not in chosen or LOW not in chosen:  # half a range is no range: derive both
        out = out.drop(columns=[HIGH, LOW], errors="ignore")
    if opts.invert_price:
        p = {c: 1.0 / out[c].where(out[c] > 0) for c in (OPEN, HIGH, LOW, CLOSE) if c in out}
        for c, src in ((OPEN, OPEN), (CLOSE, CLOSE), (HIGH, LOW), (LOW, HIGH)):
            if src in p:
                out[c] = p[src].fillna(0.0)
    if OPEN not in out:
        out[OPEN] = out[CLOSE]
    if HIGH not in out or LOW not in out:
        out[HIGH] = np.fmax(out[OPEN], out[CLOSE])
        out[LOW] = np.fmin(out[OPEN], out[CLOSE])
    return RawPart(tag_rows(out, path), None, FEES_USD in out.columns, one_price)
