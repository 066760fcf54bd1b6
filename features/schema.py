"""The pool panel contract: column names, frequency handling and validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

__all__ = [
    "POOL_ID", "TIMESTAMP", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME_USD", "FEES_USD", "TVL_USD",
    "TOKEN0_PRICE_USD", "TOKEN1_PRICE_USD", "LIQUIDITY", "TX_COUNT", "MISSING",
    "PANEL_COLUMNS", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "META_COLUMNS", "PROTOCOLS",
    "PROTOCOL", "CHAIN", "TOKEN0", "TOKEN1", "FEE_TIER", "PRICE_PATH", "STABLECOINS",
    "DataValidationError", "Panel", "parse_duration", "window_periods", "validate_panel",
    "validate_meta", "reindex_panel", "FREQUENCIES",
]

POOL_ID = "pool_id"
TIMESTAMP = "timestamp"
OPEN, HIGH, LOW, CLOSE = "open", "high", "low", "close"
VOLUME_USD = "volume_usd"
FEES_USD = "fees_usd"
TVL_USD = "tvl_usd"
TOKEN0_PRICE_USD = "token0_price_usd"
TOKEN1_PRICE_USD = "token1_price_usd"
LIQUIDITY = "liquidity"
TX_COUNT = "tx_count"
MISSING = "missing"

REQUIRED_COLUMNS = [
    POOL_ID, TIMESTAMP, OPEN, HIGH, LOW, CLOSE, VOLUME_USD, FEES_USD, TVL_USD,
    TOKEN0_PRICE_USD, TOKEN1_PRICE_USD,
]
OPTIONAL_COLUMNS = [LIQUIDITY, TX_COUNT]
PANEL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + [MISSING]

PROTOCOL = "protocol"
CHAIN = "chain"
TOKEN0 = "token0"
TOKEN1 = "token1"
FEE_TIER = "fee_tier"
PRICE_PATH = "price_path"
META_COLUMNS = [POOL_ID, PROTOCOL, CHAIN, TOKEN0, TOKEN1, FEE_TIER]
PROTOCOLS = ("uniswap_v2", "uniswap_v3", "stableswap", "weighted")
STABLECOINS = frozenset({"USDC", "USDT", "DAI", "FRAX", "LUSD", "BUSD", "TUSD", "USDP", "GUSD"})

FREQUENCIES = {"1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1)}


class DataValidationError(ValueError):
    """Pool data that breaks the contract, with where and which rule."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        pool: str | None = None,
        timestamp: Any = None,
        row: int | None = None,
        field: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.source, self.pool, self.timestamp = source, pool, timestamp
        self.row, self.field, self.rule = row, field, rule
        where = [
            f"{k}={v}"
            for k, v in (
                ("file", source), ("pool", pool), ("timestamp", timestamp), ("row", row),
                ("field", field), ("rule", rule),
            )
            if v is not None
        ]
        super().__init__(f"{message} [{', '.join(where)}]" if where else message)


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
        return FREQUENCIES[self.freq]

    @property
    def pools(self) -> list[str]:
        """Pool ids in metadata order."""
        return list(self.meta[POOL_ID])


def parse_duration(value: str | pd.Timedelta) -> pd.Timedelta:
    """Parse a duration such as '24h' or '7d' into a Timedelta."""
    if isinstance(value, str):
        import re

        value = re.sub(r"(\d)d\b", r"\1D", value.strip())  # pandas deprecates lowercase 'd'
    try:
        td = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid duration {value!r}: expected e.g. '6h', '24h', '7d'") from exc
    if td <= pd.Timedelta(0):
        raise ValueError(f"invalid duration {value!r}: must be positive")
    return td


def window_periods(duration: str | pd.Timedelta, freq: str) -> int:
    """Number of whole panel periods in a duration (0 when shorter than two periods)."""
    n = int(parse_duration(duration) // FREQUENCIES[freq])
    return n if n >= 2 else 0


def _fail(
    df: pd.DataFrame, mask: np.ndarray | pd.Series, message: str, field_name: str, rule: str,
    source: str,
) -> None:
    """Raise DataValidationError for the first row flagged by mask."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    i = int(np.flatnonzero(mask)[0])
    row = df.iloc[i]
    raise DataValidationError(
        f"{message} ({int(mask.sum())} row(s) affected)",
        source=source,
        pool=str(row[POOL_ID]) if POOL_ID in df.columns else None,
        timestamp=row[TIMESTAMP] if TIMESTAMP in df.columns else None,
        row=i,
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
        TX_COUNT: pa.Column(float, _NONNEG, nullable=True, required=False),
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
    return meta.reset_index(drop=True)


def validate_panel(
    df: pd.DataFrame, meta: pd.DataFrame, freq: str, source: str = "<memory>"
) -> pd.DataFrame:
    """Validate a long panel against the contract; return it sorted by pool and time.

    Rows flagged ``missing`` may hold NaN; every other row needs every required column.
    Raises DataValidationError naming file, pool, timestamp, row, field and rule.
    """
    if freq not in FREQUENCIES:
        raise DataValidationError(
            f"unknown frequency {freq!r}; expected one of {list(FREQUENCIES)}",
            source=source, rule="declared frequency",
        )
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
    for col in (VOLUME_USD, FEES_USD, TVL_USD):
        _fail(df, df[col] < 0, f"negative {col}", col, "non-negative", source)
    for col in (OPEN, HIGH, LOW, CLOSE, TOKEN0_PRICE_USD, TOKEN1_PRICE_USD):
        _fail(df, df[col] <= 0, f"non-positive {col}", col, "positive price", source)
    _fail(df, df[HIGH] < df[LOW], "high < low", HIGH, "high >= low", source)
    for col in OPTIONAL_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
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
    """Reindex each pool to a regular grid from its first to last period; flag new rows missing."""
    step = FREQUENCIES[freq]
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
    return out[[c for c in PANEL_COLUMNS if c in out.columns]]
