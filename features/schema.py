"""The pool panel contract: column names, frequency handling and validation.

DataValidationError (features.errors) and the frequency helpers (features.frequency) are
re-exported here, so ``from features.schema import freq_step`` is the one import to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.errors import DataValidationError
from features.frequency import (
    FREQUENCIES,
    check_freq,
    duration_periods,
    freq_step,
    parse_duration,
    window_periods,
)

__all__ = [
    "POOL_ID", "TIMESTAMP", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME_USD", "FEES_USD", "TVL_USD",
    "FEES_TOKEN0", "FEES_TOKEN1",
    "TOKEN0_PRICE_USD", "TOKEN1_PRICE_USD", "LIQUIDITY", "TICK", "SQRT_PRICE", "TX_COUNT",
    "MISSING", "PANEL_COLUMNS", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "META_COLUMNS",
    "OPTIONAL_META_COLUMNS", "PROTOCOLS", "PROTOCOL", "CHAIN", "TOKEN0", "TOKEN1", "FEE_TIER",
    "DECIMALS0", "DECIMALS1", "PRICE_PATH", "STABLECOINS", "DataValidationError", "Panel",
    "parse_duration", "window_periods", "duration_periods", "freq_step", "check_freq",
    "validate_panel", "validate_meta", "reindex_panel", "FREQUENCIES", "FLOW_COLUMNS",
    "SOURCE_FILE", "SOURCE_ROW",
]

POOL_ID = "pool_id"
TIMESTAMP = "timestamp"
OPEN, HIGH, LOW, CLOSE = "open", "high", "low", "close"
VOLUME_USD = "volume_usd"
FEES_USD = "fees_usd"
# a period's pool fees in each token (human units), where the source has them (minute files)
FEES_TOKEN0, FEES_TOKEN1 = "fees_token0", "fees_token1"
TVL_USD = "tvl_usd"
TOKEN0_PRICE_USD = "token0_price_usd"
TOKEN1_PRICE_USD = "token1_price_usd"
LIQUIDITY = "liquidity"  # active liquidity L, raw units as the subgraph exports it
TICK = "tick"  # current tick: 1.0001**tick = token1 per token0 in raw (smallest) units
# sqrt of token1 per token0 in raw units = sqrtPriceX96 / 2**96 (the X96 value divided out)
SQRT_PRICE = "sqrt_price"
TX_COUNT = "tx_count"
MISSING = "missing"
# provenance of a row while importing (file, 0-based data row in it); dropped before storing
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"

REQUIRED_COLUMNS = [
    POOL_ID, TIMESTAMP, OPEN, HIGH, LOW, CLOSE, VOLUME_USD, FEES_USD, TVL_USD,
    TOKEN0_PRICE_USD, TOKEN1_PRICE_USD,
]
OPTIONAL_COLUMNS = [LIQUIDITY, TICK, SQRT_PRICE, TX_COUNT, FEES_TOKEN0, FEES_TOKEN1]
# summed when resampling; the rest is state
FLOW_COLUMNS = [VOLUME_USD, FEES_USD, TX_COUNT, FEES_TOKEN0, FEES_TOKEN1]
PANEL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + [MISSING]

PROTOCOL = "protocol"
CHAIN = "chain"
TOKEN0 = "token0"
TOKEN1 = "token1"
FEE_TIER = "fee_tier"
PRICE_PATH = "price_path"
DECIMALS0 = "decimals0"
DECIMALS1 = "decimals1"
META_COLUMNS = [POOL_ID, PROTOCOL, CHAIN, TOKEN0, TOKEN1, FEE_TIER]
OPTIONAL_META_COLUMNS = [DECIMALS0, DECIMALS1]  # token decimals, where known
PROTOCOLS = ("uniswap_v2", "uniswap_v3", "stableswap", "weighted")
STABLECOINS = frozenset({"USDC", "USDT", "DAI", "FRAX", "LUSD", "BUSD", "TUSD", "USDP", "GUSD"})

@dataclass
class Panel:
    """A validated pool panel with its metadata and declared frequency."""

    frame: pd.DataFrame
    meta: pd.DataFrame
    freq: str
    source: str = "<memory>"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> pd.Timedelta:
        """One period of the panel as a Timedelta."""
        return freq_step(self.freq)

    @property
    def pools(self) -> list[str]:
        """Pool ids in metadata order."""
        return list(self.meta[POOL_ID])


def _fail(
    df: pd.DataFrame, mask: np.ndarray | pd.Series, message: str, field_name: str, rule: str,
    source: str,
) -> None:
    """Raise DataValidationError for the first row flagged by mask.

    Where the frame carries SOURCE_FILE / SOURCE_ROW (kept by the importer through the combine
    of many files), the error names that file and the row in it, not the panel row.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    i = int(np.flatnonzero(mask)[0])
    row = df.iloc[i]
    where, at = source, i
    if SOURCE_FILE in df.columns and isinstance(row[SOURCE_FILE], str):
        where = row[SOURCE_FILE]
        at = int(row[SOURCE_ROW]) if pd.notna(row.get(SOURCE_ROW)) else i
    raise DataValidationError(
        f"{message} ({int(mask.sum())} row(s) affected)",
        source=where,
        pool=str(row[POOL_ID]) if POOL_ID in df.columns else None,
        timestamp=row[TIMESTAMP] if TIMESTAMP in df.columns else None,
        row=at,
        field=field_name,
        rule=rule,
    )


_NONNEG = pa.Check.ge(0)
PANEL_SCHEMA = pa.DataFrameSchema(
    {
        POOL_ID: pa.Column(str, nullable=False),
        TIMESTAMP: pa.Column("datetime64[ns, UTC]", nullable=False),
        OPEN: pa.Column(float, pa.Check.gt(0), nullable=True),
        HIGH: pa.Column(float, pa.Check.gt(0), nullable=True),
        LOW: pa.Column(float, pa.Check.gt(0), nullable=True),
        CLOSE: pa.Column(float, pa.Check.gt(0), nullable=True),
        VOLUME_USD: pa.Column(float, _NONNEG, nullable=True),
        FEES_USD: pa.Column(float, _NONNEG, nullable=True),
        TVL_USD: pa.Column(float, _NONNEG, nullable=True),
        TOKEN0_PRICE_USD: pa.Column(float, pa.Check.gt(0), nullable=True),
        TOKEN1_PRICE_USD: pa.Column(float, pa.Check.gt(0), nullable=True),
        LIQUIDITY: pa.Column(float, _NONNEG, nullable=True, required=False),
        TICK: pa.Column("Int64", nullable=True, required=False),
        SQRT_PRICE: pa.Column(float, _NONNEG, nullable=True, required=False),
        TX_COUNT: pa.Column(float, _NONNEG, nullable=True, required=False),
        FEES_TOKEN0: pa.Column(float, _NONNEG, nullable=True, required=False),
        FEES_TOKEN1: pa.Column(float, _NONNEG, nullable=True, required=False),
        MISSING: pa.Column(bool, nullable=False, required=False),
    },
    checks=[pa.Check(lambda d: d[HIGH].isna() | (d[HIGH] >= d[LOW]), error="high >= low")],
    unique=[POOL_ID, TIMESTAMP],
    strict=False,
    coerce=False,
)


def validate_meta(meta: pd.DataFrame, source: str = "pools.csv") -> pd.DataFrame:
    """Check pool metadata: required columns, known protocols, unique ids, fee tier in [0, 1)."""
    missing = [c for c in META_COLUMNS if c not in meta.columns]
    if missing:
        raise DataValidationError(
            f"pool metadata lacks column(s) {missing}; expected {META_COLUMNS}",
            source=source, field=",".join(missing), rule="required column",
        )
    meta = meta.copy()
    meta[POOL_ID] = meta[POOL_ID].astype(str)
    for i, (pid, proto) in enumerate(zip(meta[POOL_ID], meta[PROTOCOL], strict=True)):
        if proto not in PROTOCOLS:
            raise DataValidationError(
                f"unknown protocol {proto!r}; expected one of {PROTOCOLS}",
                source=source, pool=pid, row=i, field=PROTOCOL, rule="known protocol",
            )
    dup = meta[POOL_ID].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataValidationError(
            "duplicate pool_id in metadata", source=source, pool=meta[POOL_ID].iloc[i], row=i,
            field=POOL_ID, rule="unique pool",
        )
    fee = pd.to_numeric(meta[FEE_TIER], errors="coerce")
    bad = fee.isna() | (fee < 0) | (fee >= 1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"fee_tier {meta[FEE_TIER].iloc[i]!r} is not a fraction in [0, 1) (0.003 = 0.3 %)",
            source=source, pool=meta[POOL_ID].iloc[i], row=i, field=FEE_TIER, rule="fee tier",
        )
    meta[FEE_TIER] = fee.astype(float)
    for col in OPTIONAL_META_COLUMNS:
        if col not in meta.columns:
            continue
        dec = pd.to_numeric(meta[col], errors="coerce")
        bad = dec.notna() & ((dec < 0) | (dec > 36) | (dec % 1 != 0))
        bad |= dec.isna() & meta[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"{col} {meta[col].iloc[i]!r} is not a whole number of token decimals (0..36)",
                source=source, pool=meta[POOL_ID].iloc[i], row=i, field=col, rule="decimals")
        meta[col] = dec.astype("Int64")
    return meta.reset_index(drop=True)


def validate_panel(
    df: pd.DataFrame, meta: pd.DataFrame, freq: str, source: str = "<memory>",
    latest: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Validate a long panel against the contract; return it sorted by pool and time.

    Rows flagged ``missing`` may hold NaN; every other row needs every required column, and
    every numeric value must be finite. With ``latest`` (e.g. now + one period for real data),
    timestamps after it are refused. Raises DataValidationError naming file, pool, timestamp,
    row, field and rule.
    """
    freq = check_freq(freq, source=source)
    absent = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if absent:
        raise DataValidationError(
            f"panel lacks required column(s) {absent}", source=source, field=",".join(absent),
            rule="required column",
        )
    ts = df[TIMESTAMP]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) or str(ts.dt.tz) != "UTC":
        raise DataValidationError(
            f"timestamps must be timezone-aware UTC, got dtype {ts.dtype}",
            source=source, field=TIMESTAMP, rule="UTC timestamps",
        )
    df = df.copy()
    if df[TIMESTAMP].dt.unit != "ns":
        df[TIMESTAMP] = df[TIMESTAMP].dt.as_unit("ns")
    known = set(meta[POOL_ID].astype(str))
    _fail(df, ~df[POOL_ID].astype(str).isin(known), "pool not in metadata", POOL_ID,
          "known pool", source)
    if latest is not None:
        _fail(df, df[TIMESTAMP] > latest, f"timestamp in the future (after {latest})",
              TIMESTAMP, "not in the future", source)
    step = FREQUENCIES[freq]
    ns = df[TIMESTAMP].astype("int64").to_numpy()
    off = ns % step.value != 0
    _fail(df, off, f"timestamp not aligned to the declared {freq} frequency", TIMESTAMP,
          "on frequency", source)
    _fail(df, df.duplicated([POOL_ID, TIMESTAMP], keep="first"),
          "duplicate (pool_id, timestamp)", TIMESTAMP, "unique period", source)
    missing = df[MISSING].to_numpy(bool) if MISSING in df.columns else np.zeros(len(df), bool)
    for col in REQUIRED_COLUMNS[2:]:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        _fail(df, df[col].isna().to_numpy() & ~missing, "NaN in required column", col,
              "not null", source)
        _fail(df, np.isinf(df[col].to_numpy()), f"infinite {col}", col, "finite", source)
    for col in (VOLUME_USD, FEES_USD, TVL_USD):
        _fail(df, df[col] < 0, f"negative {col}", col, "non-negative", source)
    for col in (OPEN, HIGH, LOW, CLOSE, TOKEN0_PRICE_USD, TOKEN1_PRICE_USD):
        _fail(df, df[col] <= 0, f"non-positive {col}", col, "positive price", source)
    _fail(df, df[HIGH] < df[LOW], "high < low", HIGH, "high >= low", source)
    for col in OPTIONAL_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
            _fail(df, np.isinf(df[col].to_numpy()), f"infinite {col}", col, "finite", source)
            if col == TICK:
                _fail(df, (df[col] % 1 != 0) & df[col].notna(), "non-integer tick", col,
                      "integer tick", source)
                df[col] = df[col].astype("Int64")
            else:
                _fail(df, df[col] < 0, f"negative {col}", col, "non-negative", source)
    if MISSING not in df.columns:
        df[MISSING] = False
    df[POOL_ID] = df[POOL_ID].astype(str)
    df = df.sort_values([POOL_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    try:  # the declarative schema, as a second line of defence and documentation
        PANEL_SCHEMA.validate(df, lazy=False)
    except pa.errors.SchemaError as exc:
        raise DataValidationError(f"schema check failed: {exc}", source=source,
                                  rule="schema") from exc
    return df


def reindex_panel(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Reindex each pool to a regular grid from its first to last period; flag new rows missing.

    Import provenance columns (SOURCE_FILE, SOURCE_ROW) are kept where present (NaN on new rows).
    """
    step = freq_step(freq)
    parts = []
    for pid, g in df.groupby(POOL_ID, sort=True):
        grid = pd.date_range(g[TIMESTAMP].min(), g[TIMESTAMP].max(), freq=step, name=TIMESTAMP)
        r = g.set_index(TIMESTAMP).reindex(grid)
        was = r[MISSING].astype("boolean") if MISSING in r.columns else None
        r[MISSING] = r[POOL_ID].isna() | (was.fillna(True).astype(bool) if was is not None
                                          else False)
        r[POOL_ID] = pid
        parts.append(r.reset_index())
    out = pd.concat(parts, ignore_index=True) if parts else df.assign(**{MISSING: False})
    out[MISSING] = out[MISSING].astype(bool)
    return out[[c for c in PANEL_COLUMNS + [SOURCE_FILE, SOURCE_ROW] if c in out.columns]]
