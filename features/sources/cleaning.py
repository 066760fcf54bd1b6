"""Explicit, documented cleaning rules for real exports, each counted in a report.

Every rule is a function over one pool's raw frame. Rules are of two kinds:

- trims (``TRIMS``) never alter or drop an observation the export actually states: they
  reorder, re-stamp, drop rows before the pool exists, or replace a known placeholder. They
  are always applied and reported, also under ``--strict``.
- repairs change or drop stated values. In strict mode a repair that would touch any row
  raises DataValidationError naming the file, pool, timestamp, row (in that file) and rule;
  ``range_outlier`` instead keeps the stated high/low and reports them (``wide_range_kept``).

Rules (in the order applied):
- ``sort_rows`` (trim): rows sorted by time (exports come newest-first or oldest-first).
- ``period_floor`` (trim): every row stamped at one and the same offset inside the period
  (daily data at 08:00, say): timestamps floored to the period start.
- ``duplicate_period``: repeated timestamps keep the last row.
- ``off_frequency``: rows not on the declared frequency grid are dropped.
- ``non_finite``: rows with an infinite number are blanked and flagged missing.
- ``dead_start`` (trim): leading rows with TVL <= 0 or a price <= 0 (pool not live yet) are
  dropped.
- ``zero_price``: later rows with a price <= 0 or TVL <= 0 are blanked and flagged missing.
- ``stale_open`` (trim): open == 0 or open == close exactly (the subgraph's placeholder) is
  replaced by the previous period's close, high/low widened to contain it. Skipped for
  formats whose open is a real observation (demeter ticks).
- ``range_outlier``: high above ``k`` x max(open, close) is clipped to max(open, close); low
  below min(open, close) / ``k`` to min(open, close) (default k = 2).
- ``ohlc_envelope``: stated high/low that do not contain the stated open/close are widened.
- ``range_closure`` (trim): the same widening for formats whose high/low are taken over the
  trades only and so may leave out the open or close tick (demeter minute files).
- ``one_price`` (trim): the export has one price per period; open/high/low are set from it
  (flagged: no intra-period range).
- ``fees_from_fee_tier`` (trim): fees = volume x fee tier where the export has no fees.
- ``unpriced_start`` (trim): leading rows before any pool path to a USD price exists: blanked
  and flagged missing.
- ``unpriced``: later rows whose token USD price cannot be derived at that time are blanked
  and flagged missing.

A rule that leaves a pool with no rows is an error naming that rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import (
    CLOSE,
    FEES_USD,
    HIGH,
    LOW,
    MISSING,
    OPEN,
    POOL_ID,
    SOURCE_FILE,
    SOURCE_ROW,
    TIMESTAMP,
    TVL_USD,
    VOLUME_USD,
    DataValidationError,
    freq_step,
)

__all__ = ["CleaningReport", "clean_pool", "RULES", "TRIMS", "touch", "drop_rows"]

RULES = {
    "sort_rows": "rows sorted oldest-first",
    "period_floor": "all rows stamped at one offset inside the period: floored to its start",
    "duplicate_period": "repeated timestamps: kept the last row",
    "off_frequency": "timestamps off the frequency grid: dropped",
    "non_finite": "rows with an infinite number: blanked, flagged missing",
    "dead_start": "leading rows with TVL or price <= 0: dropped",
    "zero_price": "later rows with TVL or price <= 0: blanked, flagged missing",
    "stale_open": "open == 0 or == close (placeholder): set to previous close",
    "range_outlier": "high/low beyond k x open/close: clipped",
    "wide_range_kept": "high/low beyond k x open/close: kept as exported (--strict)",
    "ohlc_envelope": "stated high/low not containing open/close: widened",
    "range_closure": "high/low over trades only: widened to contain open/close",
    "one_price": "one price per period: open/high/low set from it (flagged)",
    "fees_from_fee_tier": "no fees in export: fees = volume x fee tier",
    "unpriced_start": "leading rows with no USD price path yet: blanked, flagged missing",
    "unpriced": "no pool path to a USD price at that time: blanked, flagged missing",
}
TRIMS = frozenset({"sort_rows", "period_floor", "dead_start", "stale_open", "wide_range_kept",
                   "range_closure", "one_price", "fees_from_fee_tier", "unpriced_start"})


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
        return {"counts": dict(self.counts), "by_pool": self.by_pool,
                "trims": sorted(TRIMS)}


def _where(df: pd.DataFrame, i: int, source: str) -> tuple[str, int]:
    """File and row in it of frame row i (provenance columns when present)."""
    if SOURCE_FILE in df.columns and isinstance(df[SOURCE_FILE].iloc[i], str):
        r = df[SOURCE_ROW].iloc[i]
        return df[SOURCE_FILE].iloc[i], int(r) if pd.notna(r) else i
    return source, i


def touch(report: CleaningReport, df: pd.DataFrame, mask: np.ndarray, rule: str, pool: str,
          source: str, strict: bool) -> None:
    """Count (or, strict and a repair, refuse) the rows a rule touches."""
    mask = np.asarray(mask, bool)
    n = int(mask.sum())
    if n and strict and rule not in TRIMS:
        i = int(np.flatnonzero(mask)[0])
        where, row = _where(df, i, source)
        raise DataValidationError(
            f"cleaning rule '{rule}' ({RULES[rule]}) would touch {n} row(s); refused in --strict",
            source=where, pool=pool, timestamp=df[TIMESTAMP].iloc[i], row=row, rule=rule)
    report.add(pool, rule, n)


def drop_rows(report: CleaningReport, df: pd.DataFrame, mask: np.ndarray, rule: str, pool: str,
              source: str, strict: bool) -> pd.DataFrame:
    """Drop the rows a rule flags; an error naming the rule if none would remain."""
    mask = np.asarray(mask, bool)
    touch(report, df, mask, rule, pool, source, strict)
    if len(df) and mask.all():
        raise DataValidationError(
            f"no rows left for this pool: rule '{rule}' ({RULES[rule]}) removed all "
            f"{len(df)} remaining row(s)", source=_where(df, 0, source)[0], pool=pool, rule=rule)
    return df[~mask].reset_index(drop=True)


def _blank(df: pd.DataFrame, bad: np.ndarray) -> None:
    """Blank the values of flagged rows and mark them missing (in place)."""
    keep = (TIMESTAMP, MISSING, POOL_ID, SOURCE_FILE, SOURCE_ROW)
    cols = [c for c in df.columns if c not in keep]
    df.loc[bad, cols] = np.nan
    df[MISSING] = (df[MISSING].to_numpy(bool) if MISSING in df.columns else False) | bad


def clean_pool(
    df: pd.DataFrame, pool: str, freq: str, fee_tier: float, has_fees: bool, source: str,
    report: CleaningReport, strict: bool = False, k: float = 2.0, one_price: bool = False,
    placeholder_open: bool = True, range_over_trades: bool = False,
) -> pd.DataFrame:
    """Apply every rule to one pool's raw frame (contract columns, numeric) and return it.

    ``placeholder_open``: open == close marks the subgraph's placeholder (stale_open applies).
    ``range_over_trades``: high/low may leave out open/close by construction (range_closure
    instead of ohlc_envelope).
    """
    unsorted = not df[TIMESTAMP].is_monotonic_increasing
    touch(report, df, np.full(len(df), unsorted), "sort_rows", pool, source, strict)
    df = df.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    step = freq_step(freq)
    offset = df[TIMESTAMP].dt.as_unit("ns").astype("int64").to_numpy() % step.value
    fixed = len(df) > 1 and offset[0] != 0 and (offset == offset[0]).all()
    touch(report, df, np.full(len(df), fixed), "period_floor", pool, source, strict)
    if fixed:
        df[TIMESTAMP] = df[TIMESTAMP] - pd.Timedelta(int(offset[0]), unit="ns")
    dup = df.duplicated(TIMESTAMP, keep="last").to_numpy()
    df = drop_rows(report, df, dup, "duplicate_period", pool, source, strict)
    off = (df[TIMESTAMP].dt.as_unit("ns").astype("int64") % step.value != 0).to_numpy()
    df = drop_rows(report, df, off, "off_frequency", pool, source, strict)
    num = df.select_dtypes("number").drop(columns=[SOURCE_ROW], errors="ignore")
    inf = np.isinf(num.to_numpy(float)).any(axis=1)
    touch(report, df, inf, "non_finite", pool, source, strict)
    df[MISSING] = False
    _blank(df, inf)
    bad = ((df[TVL_USD] <= 0) | (df[CLOSE] <= 0) | df[CLOSE].isna()).to_numpy()
    df = drop_rows(report, df, np.cumprod(bad).astype(bool), "dead_start", pool, source, strict)
    bad = ((df[TVL_USD] <= 0) | (df[CLOSE] <= 0) | df[CLOSE].isna()).to_numpy()
    touch(report, df, bad & ~df[MISSING].to_numpy(bool), "zero_price", pool, source, strict)
    _blank(df, bad)
    if one_price:
        touch(report, df, ~bad, "one_price", pool, source, strict)
    env = ((df[HIGH] < np.fmax(df[OPEN], df[CLOSE])) | (df[LOW] > np.fmin(df[OPEN], df[CLOSE]))
           | df[HIGH].isna() | df[LOW].isna()).to_numpy() & ~bad
    touch(report, df, env, "range_closure" if range_over_trades else "ohlc_envelope", pool,
          source, strict)
    prev = df[CLOSE].shift(1)
    stale = (((df[OPEN] <= 0) | df[OPEN].isna() | (df[OPEN] == df[CLOSE])) & prev.notna()
             & ~bad).to_numpy() & placeholder_open
    touch(report, df, stale, "stale_open", pool, source, strict)
    df.loc[stale, OPEN] = prev[stale]
    df[OPEN] = df[OPEN].where(df[OPEN] > 0, df[CLOSE])  # first row: no previous close
    top = np.fmax(df[OPEN], df[CLOSE])
    bottom = np.fmin(df[OPEN], df[CLOSE])
    hi_out = (df[HIGH] > k * top).to_numpy()
    lo_out = (df[LOW] < bottom / k).to_numpy()
    if strict:
        touch(report, df, hi_out | lo_out, "wide_range_kept", pool, source, strict)
    else:
        touch(report, df, hi_out | lo_out, "range_outlier", pool, source, strict)
        df.loc[hi_out, HIGH] = top[hi_out]
        df.loc[lo_out, LOW] = bottom[lo_out]
    df[HIGH] = np.fmax(df[HIGH], top)
    df[LOW] = np.fmin(df[LOW], bottom)
    if not has_fees:
        report.add(pool, "fees_from_fee_tier", int((~bad).sum()))
        df[FEES_USD] = df[VOLUME_USD] * fee_tier
    return df
