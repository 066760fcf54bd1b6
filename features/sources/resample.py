"""Aggregate a long panel to a coarser frequency (minutes to hours, hours to days)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import (
    CLOSE,
    FLOW_COLUMNS,
    HIGH,
    LOW,
    MISSING,
    OPEN,
    PANEL_COLUMNS,
    POOL_ID,
    TICK,
    TIMESTAMP,
    freq_step,
)

__all__ = ["resample_panel"]


def resample_panel(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Aggregate each pool's rows into periods of ``freq`` (period start, UTC).

    Flows (volume, fees, swaps) are summed, open is the first, high the max, low the min and
    every state column (close, TVL, liquidity, tick, sqrt price, token USD prices) the last
    value of the period. Rows flagged missing are left out; a period whose rows are all
    missing is itself missing (NaN, never filled). Sums cover the live rows only.

    Returns
    -------
    DataFrame in contract columns with a ``missing`` flag and ``rows_in_period`` (live rows
    that went into each period, for the caller's report).
    """
    step = freq_step(freq)
    live = frame[~frame[MISSING].to_numpy(bool)] if MISSING in frame.columns else frame
    cols = [c for c in PANEL_COLUMNS if c in frame.columns and c not in (POOL_ID, TIMESTAMP,
                                                                        MISSING)]
    how = {c: ("sum" if c in FLOW_COLUMNS else "first" if c == OPEN else "max" if c == HIGH
               else "min" if c == LOW else "last") for c in cols}
    keys = [live[POOL_ID], live[TIMESTAMP].dt.floor(step).rename(TIMESTAMP)]
    g = live[cols].groupby(keys, sort=True)
    out = g.agg(how)
    flows = [c for c in cols if c in FLOW_COLUMNS]
    if flows:  # sum of nothing is missing, not zero
        out[flows] = g[flows].sum(min_count=1)
    out["rows_in_period"] = g.size()
    out = out.reset_index()
    if TICK in out.columns:
        out[TICK] = out[TICK].astype("Int64")
    out[MISSING] = out[CLOSE].isna().to_numpy() if CLOSE in out else np.zeros(len(out), bool)
    return out
