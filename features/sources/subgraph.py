"""Uniswap subgraph exports: v3 poolHourData/poolDayData and v2 pairHourData/pairDayData."""

from __future__ import annotations

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
    TVL_USD,
    TX_COUNT,
    VOLUME_USD,
    DataValidationError,
)
from features.sources.rows import load_rows, parse_times, tag_rows, to_float

__all__ = ["RawPart", "read_subgraph_file", "read_v2_file", "V3_FIELDS", "V2_FIELDS"]

# subgraph field -> contract column. liquidity stays raw; tick is the int tick at period end.
V3_FIELDS = {"tvlUSD": TVL_USD, "volumeUSD": VOLUME_USD, "feesUSD": FEES_USD,
             "txCount": TX_COUNT, "liquidity": LIQUIDITY, "tick": TICK}
V2_FIELDS = {"reserveUSD": TVL_USD, "dailyVolumeUSD": VOLUME_USD,
             "hourlyVolumeUSD": VOLUME_USD, "dailyTxns": TX_COUNT, "hourlyTxns": TX_COUNT}
TIME_FIELDS = (("periodStartUnix", "1h"), ("hourStartUnix", "1h"), ("date", "1d"))
Q96 = float(2**96)


@dataclass
class RawPart:
    """One export file in contract columns, before cleaning.

    ``freq`` is what the file says (None: infer from the timestamps); ``has_fees`` is False
    when fees must come from volume x fee tier; ``one_price`` is True when open/high/low were
    not in the file and were set to the one price it has; ``placeholder_open`` is True when
    open == close marks a placeholder; ``range_over_trades`` is True when high/low are taken
    over the trades only (see the cleaning rules).
    """

    frame: pd.DataFrame
    freq: str | None
    has_fees: bool
    one_price: bool = False
    placeholder_open: bool = True
    range_over_trades: bool = False


def _times(raw: pd.DataFrame, path: Path, date_format: str | None) -> tuple[pd.Series, str]:
    """Timestamps (UTC) from the subgraph time field, and the frequency it implies."""
    for col, freq in TIME_FIELDS:
        if col in raw.columns:
            return parse_times(raw, col, path, date_format), freq
    raise DataValidationError(
        f"no time field ({', '.join(c for c, _ in TIME_FIELDS)}); columns are "
        f"{list(raw.columns)[:12]}", source=str(path), field="date", rule="required column")


def read_subgraph_file(path: Path, date_format: str | None = None) -> RawPart:
    """One Uniswap v3 poolHourData/poolDayData export in contract columns.

    The subgraph's OHLC is ``token0Price`` (token0 per one token1); the contract's price is
    token0 in token1, so prices are inverted (and high/low swap). ``liquidity`` (active
    liquidity L, raw units) and ``tick`` (int) are kept where the export has them;
    ``sqrtPrice`` (Q64.96) is stored as ``sqrt_price`` = sqrtPrice / 2**96, the square root
    of token1 per token0 in raw units (so 1.0001**tick ~= sqrt_price**2).
    """
    raw, key = load_rows(path)
    ts, freq = _times(raw, path, date_format)
    if key is not None:
        freq = "1h" if "hour" in key.lower() else "1d"
    out = pd.DataFrame({TIMESTAMP: ts})
    pool = raw["pool"].iloc[0] if "pool" in raw.columns else path.stem
    pid = str(pool.get("id", path.stem) if isinstance(pool, dict) else pool).lower()
    out[POOL_ID] = raw["pool_id"].astype(str) if "pool_id" in raw.columns else pid
    one_price = False
    if "close" in raw.columns:
        inv = {OPEN: "open", HIGH: "low", LOW: "high", CLOSE: "close"}
        for c, src in inv.items():
            v = to_float(raw, src if src in raw.columns else "close", path)
            out[c] = np.where(v > 0, 1.0 / v.where(v > 0, 1.0), 0.0)
        one_price = not {"open", "high", "low"} <= set(raw.columns)
    elif "token1Price" in raw.columns:
        p = to_float(raw, "token1Price", path)
        for c in (OPEN, HIGH, LOW, CLOSE):
            out[c] = p
        one_price = True
    else:
        raise DataValidationError("no price field (close or token1Price)", source=str(path),
                                  field="close", rule="required column")
    for src, dst in V3_FIELDS.items():
        if src in raw.columns:
            out[dst] = to_float(raw, src, path, dst)
    if "sqrtPrice" in raw.columns:
        out[SQRT_PRICE] = to_float(raw, "sqrtPrice", path, SQRT_PRICE) / Q96
    absent = [f for f, c in (("volumeUSD", VOLUME_USD), ("tvlUSD", TVL_USD)) if c not in out]
    if absent:
        raise DataValidationError(f"export lacks {' and '.join(absent)}", source=str(path),
                                  field=",".join(absent), rule="required column")
    return RawPart(tag_rows(out, path), freq, FEES_USD in out, one_price)


def read_v2_file(path: Path, date_format: str | None = None) -> RawPart:
    """One Uniswap v2 pairHourData/pairDayData export in contract columns.

    Price = reserve1 / reserve0 (token0 in token1); open = previous close, high/low = the
    larger/smaller of open and close (the export has no intra-period range).
    """
    raw, _ = load_rows(path)
    ts, freq = _times(raw, path, date_format)
    out = pd.DataFrame({TIMESTAMP: ts})
    pid = next((str(raw[c].iloc[0]) for c in ("pair", "pairAddress", "pool_id") if c in raw),
               path.stem.lower())
    out[POOL_ID] = pid
    for src, dst in V2_FIELDS.items():
        if src in raw.columns:
            out[dst] = to_float(raw, src, path, dst)
    if not {"reserve0", "reserve1"} <= set(raw.columns):
        raise DataValidationError("v2 export lacks reserve0/reserve1", source=str(path),
                                  field="reserve0,reserve1", rule="required column")
    out[CLOSE] = to_float(raw, "reserve1", path) / to_float(raw, "reserve0", path)
    out = tag_rows(out, path).sort_values(TIMESTAMP, kind="stable")
    out[OPEN] = out[CLOSE].shift(1).fillna(out[CLOSE])
    out[HIGH] = np.fmax(out[OPEN], out[CLOSE])
    out[LOW] = np.fmin(out[OPEN], out[CLOSE])
    return RawPart(out.reset_index(drop=True), freq, False)
