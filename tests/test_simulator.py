"""Simulator properties: reproducible, valid, stress and contagion visible, flow follows depth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.amm import routed_flow_shares
from features.schema import (
    CLOSE,
    POOL_ID,
    TIMESTAMP,
    TOKEN0,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    VOLUME_USD,
    validate_panel,
)
from features.sources.simulator import simulate_market


@pytest.fixture(scope="module")
def market() -> tuple:
    return simulate_market(n_pools=24, days=120, seed=3)


def test_reproducible_for_a_seed() -> None:
    a, ta = simulate_market(n_pools=6, days=10, seed=7)
    b, tb = simulate_market(n_pools=6, days=10, seed=7)
    c, _ = simulate_market(n_pools=6, days=10, seed=8)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    pd.testing.assert_frame_equal(ta, tb)
    assert not np.allclose(a.frame[CLOSE], c.frame[CLOSE])


def test_panel_is_valid_hourly_and_daily(market: tuple) -> None:
    panel, truth = market
    validate_panel(panel.frame, panel.meta, "1h")
    assert len(panel.meta) == 24 and panel.meta[POOL_ID].is_unique
    assert len(panel.frame) == 24 * 120 * 24 == len(truth)
    assert {"regime", "stress", "depeg"} <= set(truth.columns)
    assert not ({"regime", "stress", "depeg"} & set(panel.frame.columns))
    daily, dtruth = simulate_market(n_pools=6, days=20, seed=1, freq="1d")
    assert daily.freq == "1d" and len(daily.frame) == 6 * 20 == len(dtruth)
    assert (daily.frame[TIMESTAMP].dt.hour == 0).all()


def _log_ret_abs(panel_frame: pd.DataFrame) -> pd.Series:
    lr = np.log(panel_frame[CLOSE]).groupby(panel_frame[POOL_ID]).diff().abs()
    return lr


def test_stress_raises_volatility_and_outflows(market: tuple) -> None:
    panel, truth = market
    f = panel.frame.assign(absret=_log_ret_abs(panel.frame).to_numpy(),
                           stress=truth["stress"].to_numpy())
    f["flow"] = np.log(f[TVL_USD]).groupby(f[POOL_ID]).diff()
    volatile = f[~f[POOL_ID].str.contains("USDC-USDT|DAI-USDC|DAI-USDT")]
    calm, hot = volatile[~volatile.stress], volatile[volatile.stress]
    assert hot.absret.mean() > 1.5 * calm.absret.mean()
    assert hot.flow.mean() < calm.flow.mean() - 1e-3


def test_contagion_reaches_pools_sharing_a_token(market: tuple) -> None:
    panel, truth = market
    meta = panel.meta.set_index(POOL_ID)
    s = truth.pivot(index=TIMESTAMP, columns=POOL_ID, values="stress")
    # pools sharing a token are stressed together far more often than pools sharing none
    shared, disjoint = [], []
    ids = list(meta.index)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ta = {meta.loc[a, TOKEN0], meta.loc[a, TOKEN1]}
            tb = {meta.loc[b, TOKEN0], meta.loc[b, TOKEN1]}
            both = (s[a] & s[b]).mean() / max(min(s[a].mean(), s[b].mean()), 1e-9)
            (shared if ta & tb else disjoint).append(both)
    assert np.mean(shared) > 2 * np.mean(disjoint)


def test_volume_follows_depth_and_fee_within_a_pair(market: tuple) -> None:
    """The pool that optimal routing favours (depth and fee together) trades the most."""
    panel, _ = market
    f = panel.frame.merge(panel.meta, on=POOL_ID)
    f["pair"] = f[TOKEN0] + "/" + f[TOKEN1] + "@" + f["chain"]
    wins = []
    for _, g in f.groupby("pair"):
        if g[POOL_ID].nunique() < 2:
            continue
        med = g.groupby(POOL_ID)[[TVL_USD, VOLUME_USD, "fee_tier", "protocol"]].agg(
            {TVL_USD: "median", VOLUME_USD: "median", "fee_tier": "first", "protocol": "first"})
        per_tvl = np.where(med["protocol"] == "uniswap_v3", 2.0,
                           np.where(med["protocol"] == "stableswap", 5.0, 0.5))
        routed = routed_flow_shares(med[TVL_USD].to_numpy() * per_tvl,
                                    med["fee_tier"].to_numpy(float), np.zeros(len(med), int))
        wins.append(med.index[int(np.argmax(routed))] == med[VOLUME_USD].idxmax())
    assert len(wins) >= 3 and np.mean(wins) >= 0.75


def test_depeg_visible_in_stablecoin_price(market: tuple) -> None:
    panel, truth = market
    f = panel.frame.assign(depeg=truth["depeg"].to_numpy())
    stable_leg = f[f[POOL_ID].str.contains("USDC-USDT|DAI-USDC|DAI-USDT")]
    if not stable_leg.depeg.any():
        pytest.skip("no depeg drawn for this seed")
    dev_in = (stable_leg[TOKEN1_PRICE_USD] - 1).abs()
    assert stable_leg.depeg.sum() > 0
    assert (np.log(stable_leg[CLOSE]).abs()[stable_leg.depeg].max()
            > 5 * np.log(stable_leg[CLOSE]).abs()[~stable_leg.depeg].median())
    assert dev_in.notna().all()


def test_early_warning_before_stress_onset(market: tuple) -> None:
    panel, truth = market
    f = panel.frame.assign(absret=_log_ret_abs(panel.frame).to_numpy(),
                           stress=truth["stress"].to_numpy())
    pre, calm = [], []
    for _, g in f.groupby(POOL_ID):
        st = g.stress.to_numpy()
        onsets = np.flatnonzero(st[1:] & ~st[:-1]) + 1
        ar = g.absret.to_numpy()
        for o in onsets:
            if o >= 24:
                pre.append(np.nanmean(ar[o - 24:o]))
        near = np.zeros(len(st), bool)
        for o in onsets:
            near[max(0, o - 96):o + 120] = True
        calm.append(np.nanmean(ar[~near & ~st]))
    assert len(pre) >= 5
    assert np.mean(pre) > 1.2 * np.nanmean(calm)
