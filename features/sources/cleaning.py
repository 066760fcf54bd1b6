"""Explicit, documented cleaning rules for real exports, each counted in a report.

Every rule is a function over one pool's raw frame. In strict mode a rule that would touch any
row raises DataValidationError naming the file, pool, timestamp, row and rule instead.

Rules (in the order applied):
- ``sort_rows``: rows sorted by time (exports come newest-first or oldest-first).
- ``duplicate_period``: repeated timestamps keep the last row.
- ``off_frequency``: rows not on the declared frequency grid are dropped.
- ``dead_start``: leading rows with TVL <= 0 or a price <= 0 (pool not live yet) are dropped.
- ``zero_price``: later rows with a price <= 0 or TVL <= 0 are blanked and flagged missing.
- ``stale_open``: open == 0 or open == close exactly (the export's placeholder) is replaced by
  the previous period's close.
- ``range_outlier``: high above ``k`` x max(open, close) is clipped to max(open, close); low
  below min(open, close) / ``k`` to min(open, close) (default k = 2).
- ``ohlc_envelope``: high/low widened to contain open and close.
- ``fees_from_fee_tier``: fees = volume x fee tier where the export has no fees.
- ``unpriced``: rows whose token USD price cannot be derived at that time (no live pool path
  to a stablecoin yet) are blanked and flagged missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import (
    CLOSE,
    FEES_USD,
    FREQUENCIES,
    HIGH,
    LOW,
    MISSING,
    OPEN,
    TIMESTAMP,
    TVL_USD,
    VOLUME_USD,
    DataValidationError,
)

__all__ = ["CleaningReport", "clean_pool", "RULES", "touch"]

RULES = {
    "sort_rows": "rows sorted oldest-first",
    "duplicate_period": "repeated timestamps: kept the last row",
    "off_frequency": "timestamps off the frequency grid: dropped",
    "dead_start": "leading rows with TVL or price <= 0: dropped",
    "zero_price": "later rows with TVL or price <= 0: blanked, flagged missing",
    "stale_open": "open == 0 or == close: set to previous close",
    "range_outlier": "high/low beyond k x open/close: clipped",
    "ohlc_envelope": "high/low widened to contain open/close",
    "fees_from_fee_tier": "no fees in export: fees = volume x fee tier",
    "unpriced": "no pool path to a stablecoin at that time: blanked, flagged missing",
}


@dataclass
class CleaningReport:
    """Rows touched per rule, per pool."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    by_pool: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, pool: str, rule: str, n: int) -> None:
        """Record n rows touched by a rule for a pool."""
        self.counts[rule] = self.counts.get(rule, 0) + int(n)
        self.by_pool.setdefault(pool, {})[rule] = self.by_pool.get(pool, {}).get(rule, 0) + int(n)

    def rows(self) -> list[tuple[str, str, int]]:
        """(rule, description, rows touched) for every rule."""
        return [(r, RULES[r], self.counts.get(r, 0)) for r in RULES]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"counts": dict(self.counts), "by_pool": self.by_pool}


def touch(report: CleaningReport, df: pd.DataFrame, mask: np.ndarray, rule: str, pool: str,
           source: str, strict: bool) -> None:
    """Count (or, strict, refuse) the rows a rule touches."""
    n = int(np.asarray(mask, bool).sum())
    if n and strict:
        i = int(np.flatnonzero(mask)[0])
        raise DataValidationError(
            f"cleaning rule '{rule}' ({RULES[rule]}) would touch {n} row(s); refused in --strict",
            source=source, pool=pool, timestamp=df[TIMESTAMP].iloc[i], row=i, rule=rule)
    report.add(pool, rule, n)


def clean_pool(
    df: pd.DataFrame, pool: str, freq: str, fee_tier: float, has_fees: bool, source: str,
    report: CleaningReport, strict: bool = False, k: float = 2.0,
) -> pd.DataFrame:
    """Apply every rule to one pool's raw frame (contract columns, numeric) and return it."""
    unsorted = not df[TIMESTAMP].is_monotonic_increasing
    touch(report, df, np.full(len(df), unsorted) if unsorted else np.zeros(len(df), bool),
           "sort_rows", pool, source, strict=False)  # order is not data: never an error
    df = df.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    dup = df.duplicated(TIMESTAMP, keep="last").to_numpy()
    touch(report, df, dup, "duplicate_period", pool, source, strict)
    df = df[~dup].reset_index(drop=True)
    step = FREQUENCIES[freq]
    off = (df[TIMESTAMP].dt.as_unit("ns").astype("int64") % step.value != 0).to_numpy()
    touch(report, df, off, "off_frequency", pool, source, strict)
    df = df[~off].reset_index(drop=True)
    bad = ((df[TVL_USD] <= 0) | (df[CLOSE] <= 0) | df[CLOSE].isna()).to_numpy()
    lead = np.cumprod(bad).astype(bool)
    touch(report, df, lead, "dead_start", pool, source, strict)
    df = df[~lead].reset_index(drop=True)
    bad = ((df[TVL_USD] <= 0) | (df[CLOSE] <= 0) | df[CLOSE].isna()).to_numpy()
    touch(report, df, bad, "zero_price", pool, source, strict)
    df[MISSING] = bad
    cols = [c for c in df.columns if c not in (TIMESTAMP, MISSING, "pool_id")]
    df.loc[bad, cols] = np.nan
    prev = df[CLOSE].shift(1)
    stale = (((df[OPEN] <= 0) | df[OPEN].isna() | (df[OPEN] == df[CLOSE])) & prev.notna()
             & ~bad).to_numpy()
    touch(report, df, stale, "stale_open", pool, source, strict)
    df.loc[stale, OPEN] = prev[stale]
    df[OPEN] = df[OPEN].where(df[OPEN] > 0, df[CLOSE])  # first row: no previous close
    top = np.fmax(df[OPEN], df[CLOSE])
    bottom = np.fmin(df[OPEN], df[CLOSE])
    hi_out = (df[HIGH] > k * top).to_numpy()
    lo_out = (df[LOW] < bottom / k).to_numpy()
    touch(report, df, hi_out | lo_out, "range_outlier", pool, source, strict)
    df.loc[hi_out, HIGH] = top[hi_out]
    df.loc[lo_out, LOW] = bottom[lo_out]
    env = ((df[HIGH] < top) | (df[LOW] > bottom) | df[HIGH].isna() | df[LOW].isna()).to_numpy()
    env = env & ~bad
    touch(report, df, env, "ohlc_envelope", pool, source, strict)
    df[HIGH] = np.fmax(df[HIGH], top)
    df[LOW] = np.fmin(df[LOW], bottom)
    if not has_fees:
        report.add(pool, "fees_from_fee_tier", int((~bad).sum()))
        df[FEES_USD] = df[VOLUME_USD] * fee_tier
    return df
