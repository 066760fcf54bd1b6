"""Labels look only forward, over exactly (t, t + h]."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.labels import (
    CAUSE_DIVERGENCE,
    CAUSE_FLIGHT,
    CAUSE_PEG,
    FWD_STRESS_CAUSE,
    FWD_STRESS_ONSET,
    LABEL_COLUMNS,
    forward_fee_yield,
    forward_il,
    forward_lp_stress,
    forward_window_sum,
)
from features.schema import FEES_USD, POOL_ID, TIMESTAMP, Panel
from features.sources.simulator import simulate_market
from models.forecasts import model_matrix

ALL_LABELS = [*LABEL_COLUMNS, FWD_STRESS_ONSET, FWD_STRESS_CAUSE]


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
    np.testing.assert_allclose(later.loc[upto, ALL_LABELS].to_numpy(float),
                               fs.labels.loc[upto, ALL_LABELS].to_numpy(float))
    # the last h periods of every pool have no label
    last = fs.labels.groupby(POOL_ID).tail(fs.horizon_periods)
    assert last[LABEL_COLUMNS].isna().all().all()
    assert set(LABEL_COLUMNS).isdisjoint(fs.features.columns)


def _calm(n: int, pools: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """USD prices of two tokens and TVL with 0.4 % noise per period, (n x pools) each."""
    rng = np.random.default_rng(seed)
    p0 = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, (n, pools)), axis=0))
    p1 = np.ones((n, pools))
    tvl = 1e6 * np.sqrt(p0 / p0[0])  # a 50/50 pool with no flows: TVL moves with the prices
    return p0, p1, tvl


def test_lp_stress_onset_and_cause_of_a_divergence() -> None:
    p0, p1, tvl = _calm(120)
    p0[80:] *= 1.25  # the relative price jumps 25 % at period 80
    tvl[80:] *= np.sqrt(1.25)  # the price effect only: no LP leaves
    lab = forward_lp_stress(p0, p1, tvl, np.array([False]), 5, history=200, min_history=20)
    y, onset, cause = lab.stress[:, 0], lab.onset[:, 0], lab.cause[:, 0]
    np.testing.assert_array_equal(y[75:80], 1.0)  # a deposit in the 5 periods before the jump
    np.testing.assert_array_equal(onset[75:80], [5, 4, 3, 2, 1])  # ... sees it at period 80
    assert (cause[75:80] == CAUSE_DIVERGENCE).all()
    assert np.nansum(y[25:75]) == 0  # the noise never crosses the 5 % floor
    assert np.isnan(y[:24]).all() and np.isfinite(y[24])  # 20 completed windows: t - h >= 19
    assert np.isnan(y[-5:]).all()  # incomplete forward window


def test_lp_stress_liquidity_flight_is_net_of_the_price_effect() -> None:
    p0, p1, tvl = _calm(120)
    p0[60:] *= 0.7  # a 30 % price drop: TVL falls with it, but no LP leaves
    tvl[60:] *= np.sqrt(0.7)
    tvl[90:] *= 0.6  # LPs withdraw 40 % at period 90
    lab = forward_lp_stress(p0, p1, tvl, np.array([False]), 4, history=200, min_history=20,
                            min_divergence=10.0)  # divergence disabled
    y, cause = lab.stress[:, 0], lab.cause[:, 0]
    assert np.nansum(y[50:86]) == 0  # the price drop alone is no flight
    np.testing.assert_array_equal(y[86:90], 1.0)
    assert (cause[86:90] == CAUSE_FLIGHT).all()


def test_lp_stress_peg_break_only_on_stable_pairs() -> None:
    n = 80
    p0 = np.ones((n, 2))
    p0[50:55] = 0.97  # token0 loses 3 % of its peg for 5 periods
    p1 = np.ones((n, 2))
    tvl = np.full((n, 2), 1e6)
    lab = forward_lp_stress(p0, p1, tvl, np.array([True, False]), 3, history=200,
                            min_history=10, min_divergence=10.0)
    assert lab.stress[47:50, 0].tolist() == [1.0, 1.0, 1.0]
    assert (lab.cause[47:50, 0] == CAUSE_PEG).all()
    assert not (lab.cause[:, 1] & CAUSE_PEG).any()


def test_lp_stress_threshold_is_scaled_to_the_pools_own_history() -> None:
    """The same 12 % move is stress in a calm pool and ordinary in a wild one."""
    rng = np.random.default_rng(3)
    n = 200
    steps = np.column_stack([rng.normal(0, 0.005, n), rng.normal(0, 0.08, n)])
    p0 = 100 * np.exp(np.cumsum(steps, axis=0))
    p0[150:] *= 1.12
    p1 = np.ones((n, 2))
    tvl = 1e6 * np.sqrt(p0 / p0[0])
    lab = forward_lp_stress(p0, p1, tvl, np.array([False, False]), 3, history=400,
                            min_history=30)
    calm, wild = lab.divergence_threshold[147], lab.divergence_threshold[147]
    assert calm[0] < np.log(1.12) < wild[1]
    assert lab.stress[147, 0] == 1.0 and lab.onset[147, 0] == 3
    assert (lab.cause[147, 1] & CAUSE_DIVERGENCE) == 0


@pytest.mark.parametrize("pooled", [False, True])
def test_stress_thresholds_use_only_windows_completed_by_t(pooled: bool) -> None:
    """Changing prices after t + h moves no label, threshold or onset at or before t."""
    p0, p1, tvl = _calm(150, pools=2, seed=4)
    h, t = 6, 100
    a = forward_lp_stress(p0, p1, tvl, np.array([False, False]), h, history=300,
                          min_history=20, pooled=pooled)
    q0 = p0.copy()
    q0[t + h + 1:] *= np.exp(np.random.default_rng(5).normal(0, 0.3, q0[t + h + 1:].shape))
    b = forward_lp_stress(q0, p1, tvl, np.array([False, False]), h, history=300,
                          min_history=20, pooled=pooled)
    for name in ("stress", "onset", "cause", "divergence_threshold", "flight_threshold"):
        np.testing.assert_array_equal(getattr(a, name)[: t + 1], getattr(b, name)[: t + 1])


def test_pooled_threshold_is_one_market_scale() -> None:
    """With pooled thresholds a 12 % move is stress in the calm pool and in the wild one alike
    only if it beats the market's past moves: one threshold, between the two pools' own."""
    rng = np.random.default_rng(3)
    n = 200
    steps = np.column_stack([rng.normal(0, 0.005, n), rng.normal(0, 0.08, n)])
    p0 = 100 * np.exp(np.cumsum(steps, axis=0))
    p1 = np.ones((n, 2))
    tvl = 1e6 * np.sqrt(p0 / p0[0])
    kw = {"history": 400, "min_history": 30, "min_divergence": 0.0}
    own = forward_lp_stress(p0, p1, tvl, np.array([False, False]), 3, **kw)  # type: ignore[arg-type]
    pooled = forward_lp_stress(p0, p1, tvl, np.array([False, False]), 3, pooled=True,
                               **kw)  # type: ignore[arg-type]
    thr = pooled.divergence_threshold[147]
    assert thr[0] == thr[1]
    assert own.divergence_threshold[147, 0] < thr[0] < own.divergence_threshold[147, 1]


def test_model_inputs_look_only_backward() -> None:
    """Features and model inputs at or before t are the same whether or not the panel goes on
    past t: only the labels look forward."""
    panel, _ = simulate_market(n_pools=4, days=20, seed=9)
    t = panel.frame[TIMESTAMP].min() + pd.Timedelta("12D")
    cut = Panel(frame=panel.frame[panel.frame[TIMESTAMP] <= t].reset_index(drop=True),
                meta=panel.meta, freq=panel.freq)
    full_fs, cut_fs = build_features(panel), build_features(cut)
    full, part = model_matrix(full_fs), model_matrix(cut_fs)
    full = full[full[TIMESTAMP] <= t].reset_index(drop=True)
    pd.testing.assert_frame_equal(full, part, check_dtype=False)


@pytest.mark.parametrize("seed", range(6))
def test_trailing_quantile_kernel_matches_a_sorted_window(seed: int) -> None:
    from features.labels import _sorted_quantiles

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 400))
    if seed % 2:
        x = np.round(x, 1)  # ties
    if seed % 3 == 0:
        x = np.cumsum(x, axis=1)  # a trend: the window drifts through the ranks
    x[rng.random(x.shape) < 0.2] = np.nan
    q = [0.0, 0.5, 0.95, 1.0, 0.8, 0.9][seed]
    lag, w, minp = int(rng.integers(0, 30)), int(rng.integers(5, 150)), 10
    out, count = np.empty(x.shape), np.empty(x.shape, np.int64)  # pools x periods
    _sorted_quantiles(np.ascontiguousarray(x.T), 0, len(x), (lag, w, minp, q), out, count)
    for p in range(x.shape[0]):
        for t in range(x.shape[1]):
            # the window: values lagged by `lag`, over the trailing w periods
            win = x[p, max(0, t - lag - w + 1):max(0, t - lag + 1)]
            win = np.sort(win[np.isfinite(win)])
            assert count[p, t] == len(win)
            want = win[int(q * (len(win) - 1))] if len(win) >= minp else np.nan
            assert out[p, t] == want or (np.isnan(want) and np.isnan(out[p, t])), (p, t)
