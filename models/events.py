"""Stress events and their early warning: onsets, alarm lead times and false alarms.

An event is a run of consecutive rows of a pool whose forward stress label is 1; runs closer
than one horizon are one event. Its onset is the first period at which the stress condition is
crossed (``fwd_stress_onset`` periods after the run's first row; without that column, the
run's first row plus one horizon, the latest the crossing can be). An alarm is a row whose
P(stress) reaches the threshold. For each onset: did an alarm fire in the horizon before it and
how many periods ahead of it (the lead); an alarm episode (consecutive alarm rows of a pool)
with no stressed row in it is a false alarm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["stress_events", "event_scores", "YEAR"]

YEAR = pd.Timedelta(days=365.25)


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions of the runs of True in a 1-d bool array."""
    d = np.diff(np.r_[0, flag.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist(),
                    strict=True))


def _pool_positions(ts: pd.Series, step: pd.Timedelta) -> np.ndarray:
    """Period number of each row from the pool's first row (gaps keep their length)."""
    t = pd.to_datetime(ts)
    return ((t - t.iloc[0]) // step).to_numpy(np.int64)


def stress_events(
    frame: pd.DataFrame, horizon_periods: int, step: pd.Timedelta, label: str = "y",
    onset: str | None = "onset", cause: str | None = "cause",
) -> pd.DataFrame:
    """One row per stress event: pool_id, start (first stressed row), onset, cause, rows.

    Parameters
    ----------
    frame : rows of one or more pools with pool_id, timestamp and the label columns
    horizon_periods : label horizon h, periods (runs less than h apart merge)
    step : the panel's period
    label, onset, cause : columns of the 0/1 label, the periods to the first crossing and the
        cause bit mask (either may be absent or None)
    """
    cols = ["pool_id", "start", "onset", "cause", "rows"]
    out: list[dict[str, object]] = []
    for pool, g in frame.sort_values(["pool_id", "timestamp"]).groupby("pool_id", sort=False):
        pos = _pool_positions(g["timestamp"], step)
        y = np.nan_to_num(g[label].to_numpy(float)) == 1
        full = np.zeros(pos[-1] + 1, bool)
        full[pos] = y
        off = np.full(pos[-1] + 1, np.nan)
        if onset and onset in g:
            off[pos] = g[onset].to_numpy(float)
        cz = np.zeros(pos[-1] + 1, np.int64)
        if cause and cause in g:
            cz[pos] = np.nan_to_num(g[cause].to_numpy(float)).astype(np.int64)
        t0 = pd.Timestamp(g["timestamp"].iloc[0])
        merged: list[list[int]] = []
        for a, b in _runs(full):
            if merged and a - merged[-1][1] <= horizon_periods:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            k = off[a] if np.isfinite(off[a]) else horizon_periods
            out.append({"pool_id": pool, "start": t0 + a * step, "onset": t0 + (a + int(k)) * step,
                        "cause": int(np.bitwise_or.reduce(cz[a:b + 1])), "rows": b - a + 1})
    return pd.DataFrame(out, columns=cols)


def event_scores(
    frame: pd.DataFrame, p: np.ndarray, threshold: float | np.ndarray, horizon_periods: int,
    step: pd.Timedelta, label: str = "y", onset: str | None = "onset",
) -> dict[str, float]:
    """Event-level scores of stress probabilities ``p`` (aligned to ``frame``'s rows).

    ``threshold`` is the P(stress) at which a row alarms: one number, or one per row (each
    walk-forward fold's own threshold; a NaN threshold never alarms).

    Returns
    -------
    events : onsets whose warning window (the h periods before) lies inside the rows scored
    event_recall : share of those onsets with an alarm in their warning window
    median_lead_periods : median periods from the first alarm of the window to the onset,
        0 for an onset without one
    false_alarms_per_pool_year : alarm episodes with no stressed row, per pool-year scored
    alarm_share : share of the scored rows in alarm (an alarm that never stops has no false
        alarm episode and a lead on every onset; this shows what it costs)
    """
    f = frame[["pool_id", "timestamp", label] + ([onset] if onset and onset in frame else [])]
    f = f.assign(_p=np.asarray(p, float),
                 _t=np.broadcast_to(np.asarray(threshold, float), (len(f),)))
    leads: list[float] = []
    false_alarms = 0
    years = 0.0
    alarm_rows = scored_rows = 0
    events = stress_events(f, horizon_periods, step, label=label, onset=onset, cause=None)
    for pool, g in f.sort_values(["pool_id", "timestamp"]).groupby("pool_id", sort=False):
        pos = _pool_positions(g["timestamp"], step)
        alarm = np.zeros(pos[-1] + 1, bool)
        alarm[pos] = g["_p"].to_numpy(float) >= g["_t"].to_numpy(float)
        scored = np.zeros(pos[-1] + 1, bool)
        scored[pos] = np.isfinite(g[label].to_numpy(float))
        stressed = np.zeros(pos[-1] + 1, bool)
        stressed[pos] = np.nan_to_num(g[label].to_numpy(float)) == 1
        years += scored.sum() * step / YEAR
        alarm_rows += int((alarm & scored).sum())
        scored_rows += int(scored.sum())
        t0 = pd.Timestamp(g["timestamp"].iloc[0])
        for on in events.loc[events["pool_id"] == pool, "onset"]:
            k = int((on - t0) // step)
            lo = k - horizon_periods
            if lo < 0 or k > len(scored) or not scored[lo:k].all():
                continue  # warning window not fully inside the scored rows
            hits = np.flatnonzero(alarm[lo:k])
            leads.append(float(horizon_periods - hits[0]) if len(hits) else 0.0)
        for a, b in _runs(alarm & scored):
            false_alarms += int(not stressed[a:b + 1].any())
    n = len(leads)
    return {"events": float(n),
            "event_recall": float(np.mean([x > 0 for x in leads])) if n else float("nan"),
            "median_lead_periods": float(np.median(leads)) if n else float("nan"),
            "false_alarms_per_pool_year": false_alarms / years if years > 0 else float("nan"),
            "alarm_share": alarm_rows / scored_rows if scored_rows else float("nan")}
