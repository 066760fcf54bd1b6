"""Labels look only forward, over exactly (t, t + h]."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.build import build_features
from features.labels import LABEL_COLUMNS, forward_fee_yield, forward_il, forward_window_sum
from features.schema import FEES_USD, POOL_ID, TIMESTAMP, Panel
from features.sources.simulator import simulate_market


def test_forward_sum_and_fee_yield_hand_computed() -> None:
    fees = np.array([[1.0], [2.0], [3.0], [4.0]])
    tvl = np.array([[10.0], [10.0], [10.0], [10.0]])
    np.testing.assert_allclose(forward_window_sum(fees, 2)[:, 0], [5, 7, np.nan, np.nan])
    np.testing.assert_allclose(forward_fee_yield(fees, tvl, 2)[:, 0], [0.5, 0.7, np.nan, np.nan])


def test_il_of_a_doubling_is_5_72_percent() -> None:
    p0 = np.array([[1.0], [2.0]])
    p1 = np.array([[1.0], [1.0]])
    assert math.isclose(forward_il(p0, p1, 1)[0, 0], 2 * math.sqrt(2) / 3 - 1)
    assert math.isclose(forward_il(p0, p1, 1)[0, 0], -0.0572, abs_tol=5e-5)


def test_labels_depend_only_on_the_forward_window() -> None:
    panel, _ = simulate_market(n_pools=4, days=20, seed=9)
    fs = build_features(panel)
    h = fs.horizon
    t = panel.frame[TIMESTAMP].min() + pd.Timedelta("8D")
    f = panel.frame.copy()
    # change fees strictly inside (t, t + h]: the label at t moves
    inside = (f[TIMESTAMP] > t) & (f[TIMESTAMP] <= t + h)
    f.loc[inside, FEES_USD] *= 3
    moved = build_features(Panel(frame=f, meta=panel.meta, freq=panel.freq)).labels
    at_t = fs.labels[TIMESTAMP] == t
    assert (moved.loc[at_t, "fwd_fee_yield"].to_numpy()
            > fs.labels.loc[at_t, "fwd_fee_yield"].to_numpy()).all()
    # change everything after t + h: no label at or before t moves
    g = panel.frame.copy()
    late = g[TIMESTAMP] > t + h
    for c in ("fees_usd", "tvl_usd", "close", "high", "low", "open", "token0_price_usd"):
        g.loc[late, c] *= 1.7
    later = build_features(Panel(frame=g, meta=panel.meta, freq=panel.freq)).labels
    upto = fs.labels[TIMESTAMP] <= t
    np.testing.assert_allclose(later.loc[upto, LABEL_COLUMNS].to_numpy(float),
                               fs.labels.loc[upto, LABEL_COLUMNS].to_numpy(float))
    # the last h periods of every pool have no label
    last = fs.labels.groupby(POOL_ID).tail(fs.horizon_periods)
    assert last[LABEL_COLUMNS].isna().all().all()
    assert set(LABEL_COLUMNS).isdisjoint(fs.features.columns)
