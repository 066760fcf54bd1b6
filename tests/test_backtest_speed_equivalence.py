"""The backtest's fast paths equal the plain computations they replace."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.economics.concentrated import (
    amounts_for_liquidity,
    centred_range,
    in_range_fraction_ohlc,
    liquidity_for_value,
    position_value,
)
from models.economics.paths import liquidity_per_value, position_paths
from pipelines.backtest.metrics import stress_bars_from_truth
from pipelines.backtest.strategies import AllocatorStrategy, DecisionContext


def _loop(rel: np.ndarray, g1: np.ndarray, hi_rel: np.ndarray, lo_rel: np.ndarray,
          width: np.ndarray, fee: np.ndarray, after: int | None) -> tuple[np.ndarray, ...]:
    """v3 paths valued one period at a time (the plain recursion)."""
    n, p = rel.shape
    price = np.ones(p)
    lower, upper = centred_range(price, width)
    count = np.zeros(p, int)
    lp, hodl, mult, inr = (np.ones((n, p)) for _ in range(4))
    rec, cost = np.zeros((n, p), bool), np.zeros((n, p))
    for t in range(n):
        liq = liquidity_for_value(np.ones(p), price, lower, upper)
        x0, y0 = amounts_for_liquidity(liq, price, lower, upper)
        new = price * rel[t]
        lp[t] = position_value(liq, new, lower, upper) * g1[t]
        hodl[t] = (x0 * new + y0) * g1[t]
        high = np.maximum(new * hi_rel[t], np.maximum(price, new))
        low = np.minimum(new * lo_rel[t], np.minimum(price, new))
        inr[t] = in_range_fraction_ohlc(price, high, low, new, lower, upper)
        mult[t] = liquidity_per_value(liq, price, lower, upper)
        count = np.where((new < lower) | (new > upper), count + 1, 0)
        if after is not None and (count >= after).any():
            go = count >= after
            cost[t] = np.where(go, 0.5 * fee, 0.0)
            lp[t] = lp[t] * (1.0 - cost[t])
            nl, nu = centred_range(new, width)
            lower, upper = np.where(go, nl, lower), np.where(go, nu, upper)
            count = np.where(go, 0, count)
            rec[t] = go
        price = new
    return lp, hodl, mult, inr, rec, cost


@pytest.mark.parametrize("after", [1, 3, None])
def test_concentrated_paths_equal_the_period_by_period_recursion(after: int | None) -> None:
    rng = np.random.default_rng(4)
    n, p = 600, 9
    g0, g1 = np.exp(rng.normal(0, 0.03, (n, p))), np.exp(rng.normal(0, 0.01, (n, p)))
    hi, lo = 1 + np.abs(rng.normal(0, 0.02, (n, p))), 1 - np.abs(rng.normal(0, 0.02, (n, p)))
    g0[40:43, 2] = np.nan  # a gap in the prices
    width = rng.uniform(0.05, 0.9, p)
    fee = rng.choice([0.0005, 0.003, 0.01], p)
    meta = pd.DataFrame({"protocol": "uniswap_v3", "fee_tier": fee})
    got = position_paths(g0, g1, meta, ohlc_rel=(hi, lo), width=width, recenter_after=after)
    want = _loop(g0 / g1, g1, hi, lo, width, fee, after)
    fields = ("lp", "hodl", "liq_per_value", "in_range", "recentred", "recentre_cost")
    for name, ref in zip(fields, want, strict=True):
        np.testing.assert_array_equal(getattr(got, name), ref, err_msg=name)
    if after == 1:
        assert got.recentred.sum() > 10  # the ranges do move


def _truth(times: pd.DatetimeIndex, pools: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = pd.MultiIndex.from_product([pools + ["other"], times]).to_frame(index=False)
    rows.columns = ["pool_id", "timestamp"]
    return rows.assign(stress=rng.random(len(rows)) < 0.2).sample(frac=0.9, random_state=seed)


def _pivot(truth: pd.DataFrame, times: pd.DatetimeIndex, pools: list[str]) -> np.ndarray:
    t = truth[truth["pool_id"].isin(pools)]
    wide = t.pivot_table(index="timestamp", columns="pool_id", values="stress", aggfunc="max")
    return wide.reindex(index=times, columns=pools).fillna(0).to_numpy(bool)


def test_stress_bars_equal_the_pivot_with_and_without_repeated_rows() -> None:
    times = pd.date_range("2024-01-01", periods=50, freq="h", tz="UTC")
    pools = ["a", "b", "c"]
    truth = _truth(pd.DatetimeIndex([*times[:45], times[-1] + pd.Timedelta("1h")]),
                   pools, 1)
    got = stress_bars_from_truth(truth, times, pools)
    np.testing.assert_array_equal(got, _pivot(truth, times, pools))
    assert got.any() and not got[45:49].any()
    twice = pd.concat([truth, truth.assign(stress=~truth["stress"])])  # max over repeats
    np.testing.assert_array_equal(stress_bars_from_truth(twice, times, pools),
                                  _pivot(twice, times, pools))


@dataclasses.dataclass
class _Cfg:
    capital_usd: float = 1.0


@dataclasses.dataclass
class _Alloc:
    weights: pd.Series
    fallback_chain: list[str]


def test_allocator_strategy_hands_the_allocator_the_pandas_inputs() -> None:
    pools = ["p0", "p1", "p2", "p3"]
    meta = pd.DataFrame({"pool_id": pools, "token0": ["A", "B", "A", "C"],
                         "token1": ["B", "C", "C", "D"]}).set_index("pool_id")
    fc = pd.DataFrame({"fee_yield": [0.1, 0.2, 0.3]}, index=pd.Index(["p3", "p0", "p2"],
                                                                     name="pool_id"))
    seen: list[tuple[pd.DataFrame, pd.Series, pd.DataFrame]] = []

    def allocate(f: pd.DataFrame, cur: pd.Series, m: pd.DataFrame, cfg: _Cfg) -> _Alloc:
        seen.append((f, cur, m))
        return _Alloc(pd.Series([0.5, np.nan], index=["p2", "p3"]), [])

    s = AllocatorStrategy(_Cfg(), allocate_fn=allocate)
    for _ in range(2):  # the second decision reuses the kept metadata rows
        ctx = DecisionContext(t=pd.Timestamp("2024-01-02", tz="UTC"), pools=pools,
                              available=np.array([True, True, True, False]),
                              tvl_usd=np.ones(4), trailing_apr=np.ones(4),
                              current=np.array([0.1, 0.2, 0.3, 0.4]), meta=meta, first=False,
                              forecasts=fc, equity=10.0)
        w = s.decide(ctx)
        np.testing.assert_array_equal(w, [0.0, 0.0, 0.5, 0.0])
        f, cur, m = seen[-1]
        want_f = fc.loc[fc.index.intersection(pd.Index(pools)[ctx.available])]
        pd.testing.assert_frame_equal(f, want_f)
        pd.testing.assert_series_equal(cur, pd.Series(ctx.current, index=pools).loc[f.index])
        pd.testing.assert_frame_equal(m, meta.loc[f.index].reset_index())


def test_reused_metadata_work_leaves_the_allocators_backtest_unchanged() -> None:
    from features.build import build_features
    from features.sources.simulator import simulate_market
    from models.allocation import allocate
    from pipelines.backtest.engine import BacktestConfig, allocator_config, run_backtest

    panel, _ = simulate_market(n_pools=12, days=40, seed=4)
    fs = build_features(panel)
    cfg = BacktestConfig(min_train="14d")
    acfg = allocator_config(cfg, fs.horizon)
    fast = run_backtest(panel, fs, cfg, strategies=[AllocatorStrategy(acfg)])
    plain = run_backtest(panel, fs, cfg, strategies=[AllocatorStrategy(
        acfg, allocate_fn=lambda *a: allocate(*a))])  # not the default: no reuse
    assert len(fast.weights) > 10
    pd.testing.assert_frame_equal(fast.periods, plain.periods, check_exact=True)
    pd.testing.assert_frame_equal(fast.weights, plain.weights, check_exact=True)
