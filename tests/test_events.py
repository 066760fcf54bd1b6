"""Stress events: onsets from the forward label, alarm lead times and false alarms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models.events import YEAR, event_scores, stress_events

STEP = pd.Timedelta("1h")


def _pool(name: str, y: Sequence[float], onset: Sequence[float] | None = None) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(y), freq="1h", tz="UTC")
    f = pd.DataFrame({"pool_id": name, "timestamp": ts, "y": np.asarray(y, float)})
    f["onset"] = np.nan if onset is None else np.asarray(onset, float)
    return f


def test_events_merge_runs_closer_than_a_horizon_and_place_the_onset() -> None:
    y = [0] * 10 + [1, 1, 1] + [0, 0] + [1] + [0] * 10 + [1, 1] + [0] * 5
    onset = [np.nan] * 10 + [3, 2, 1] + [np.nan] * 2 + [1] + [np.nan] * 10 + [2, 1] + [np.nan] * 5
    ev = stress_events(_pool("a", y, onset), horizon_periods=3, step=STEP)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    assert ev["onset"].tolist() == [t0 + 13 * STEP, t0 + 28 * STEP]  # runs 2 apart: one event
    assert ev["rows"].tolist() == [6, 2]


def test_lead_is_counted_from_the_first_alarm_in_the_horizon_before_the_onset() -> None:
    h = 4
    y = [0] * 20 + [1] * 4 + [0] * 20 + [1] * 4 + [0] * 20
    onset = [np.nan] * 20 + [4, 3, 2, 1] + [np.nan] * 20 + [4, 3, 2, 1] + [np.nan] * 20
    f = _pool("a", y, onset)
    p = np.zeros(len(y))
    p[21:24] = 0.9  # first event: alarms from 3 periods before its onset at 24
    p[5:7] = 0.9  # an alarm episode with no stress: false
    s = event_scores(f, p, 0.5, h, STEP)
    assert s["events"] == 2 and s["event_recall"] == 0.5
    assert s["median_lead_periods"] == 1.5  # leads 3 and 0 (missed)
    assert np.isclose(s["false_alarms_per_pool_year"], 1 / (len(y) * STEP / YEAR))


def test_without_onsets_an_event_starts_one_horizon_after_its_first_stressed_row() -> None:
    y = [0] * 10 + [1] * 3 + [0] * 10
    p = np.zeros(len(y))
    p[9] = 0.8  # 4 periods before the onset at 10 + 3
    s = event_scores(_pool("a", y), p, 0.5, 3, STEP, onset=None)
    assert s["events"] == 1 and s["median_lead_periods"] == 0.0  # outside the 3-period window
    p[10] = 0.8
    assert event_scores(_pool("a", y), p, 0.5, 3, STEP, onset=None)["median_lead_periods"] == 3


def test_events_are_found_per_pool() -> None:
    a = _pool("a", [0] * 8 + [1, 1] + [0] * 8, [np.nan] * 8 + [2, 1] + [np.nan] * 8)
    b = _pool("b", [0] * 18)
    f = pd.concat([b, a]).sample(frac=1.0, random_state=0)  # order does not matter
    p = np.where((f["pool_id"] == "a") & (f["timestamp"] == a["timestamp"][8]), 0.7, 0.1)
    s = event_scores(f, p, 0.5, 2, STEP)
    assert s["events"] == 1 and s["median_lead_periods"] == 2.0  # onset at row 10
    assert s["false_alarms_per_pool_year"] == 0.0


def test_an_alarm_that_never_stops_shows_in_the_alarm_share() -> None:
    h = 3
    y = [0] * 10 + [1, 1, 1] + [0] * 11
    onset = [np.nan] * 10 + [3, 2, 1] + [np.nan] * 11
    s = event_scores(_pool("a", y, onset), np.ones(len(y)), 0.5, h, STEP)
    assert s["false_alarms_per_pool_year"] == 0.0 and s["median_lead_periods"] == h
    assert s["alarm_share"] == 1.0
    p = np.zeros(len(y))
    p[[11, 12]] = 0.9
    assert np.isclose(event_scores(_pool("a", y, onset), p, 0.5, h, STEP)["alarm_share"],
                      2 / len(y))
