"""The fused LP-stress kernels (worst moves from window extremes, quantiles ranked by sorted
integer keys, the label written in one pass) equal a plain numpy formulation."""

from __future__ import annotations

import numpy as np
import pytest

from features import _label_kernels as kern
from features._wide import make_grid, rolling_sum
from features.labels import (
    _sorted_quantiles,
    forward_fee_yield,
    forward_il,
    forward_lp_stress,
    forward_volatility,
)
from features.sources.simulator import simulate_market
from features.stages import wide_inputs


def _worst(ratio: np.ndarray, net: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Max |ratio[t+k] - ratio[t]| and max -(net[t+k] - net[t]), k = 1..h, NaN unless all
    the window's moves are finite."""
    n_t = ratio.shape[0]
    dw, ow = np.full(ratio.shape, np.nan), np.full(ratio.shape, np.nan)
    with np.errstate(invalid="ignore"):
        for t in range(n_t - h):
            d = np.abs(ratio[t + 1:t + h + 1] - ratio[t])
            o = -(net[t + 1:t + h + 1] - net[t])
            ok = np.isfinite(d).all(axis=0) & np.isfinite(o).all(axis=0)
            dw[t] = np.where(ok, d.max(axis=0, initial=-np.inf), np.nan)
            ow[t] = np.where(ok, o.max(axis=0, initial=-np.inf), np.nan)
    return dw, ow


def _quantile(x: np.ndarray, h: int, q: float, history: int, minp: int,
              pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lower q-quantile of the values at t - h - history + 1 .. t - h (every pool's together
    when pooled) by sorting each window, and the number of values (periods x pools)."""
    out, n = np.full(x.shape, np.nan), np.zeros(x.shape, np.int64)
    for t in range(x.shape[0]):
        win = x[max(0, t - h - history + 1):max(0, t - h + 1)]
        for p in range(x.shape[1]):
            v = win.ravel() if pooled else win[:, p]
            v = np.sort(v[~np.isnan(v)])
            n[t, p] = len(v)
            if len(v) >= max(1, minp):
                out[t, p] = v[int(q * (len(v) - 1))]
    return out, n


def reference(p0: np.ndarray, p1: np.ndarray, tvl: np.ndarray, stable: np.ndarray, h: int,
              q: float, history: int, minp: int, min_div: float, min_flt: float, peg: float,
              pooled: bool) -> dict[str, np.ndarray]:
    """Stress, onset, cause and thresholds as plain array operations and loops."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lp0, lp1 = np.log(p0), np.log(p1)
        ratio = (lp0 - lp1).astype(np.float64)
        net = (np.log(np.where(tvl > 0, tvl, np.nan)) - 0.5 * (lp0 + lp1)).astype(np.float64)
        dev = np.fmax(np.abs(p0 - 1), np.abs(p1 - 1)).astype(np.float64)
    dw, ow = _worst(ratio, net, h)
    dq, n = _quantile(dw, h, q, history, minp, pooled)
    fq, _ = _quantile(ow, h, q, history, minp, pooled)
    dthr, fthr = np.fmax(dq, min_div), np.fmax(fq, min_flt)
    valid = np.isfinite(dw) & (n >= max(1, minp))
    onset, cause = np.full(dw.shape, np.nan), np.zeros(dw.shape, np.int8)
    with np.errstate(invalid="ignore"):
        for t, p in zip(*np.nonzero(valid), strict=True):
            k = np.arange(t + 1, t + h + 1)
            div = np.abs(ratio[k, p] - ratio[t, p]) > dthr[t, p]
            flt = -(net[k, p] - net[t, p]) > fthr[t, p]
            brk = (dev[k, p] > peg) & stable[p]
            cause[t, p] = 1 * div.any() + 2 * flt.any() + 4 * brk.any()
            hit = div | flt | brk
            if hit.any():
                onset[t, p] = np.argmax(hit) + 1
    return {"stress": np.where(valid, (cause > 0).astype(float), np.nan), "onset": onset,
            "cause": cause, "divergence_threshold": np.where(valid, dthr, np.nan),
            "flight_threshold": np.where(valid, fthr, np.nan)}


def _market(seed: int, pools: int = 14, days: int = 14) -> tuple[np.ndarray, ...]:
    """Simulated prices and TVL with gaps, NaN, zero and negative TVL and stable legs."""
    panel, _ = simulate_market(n_pools=pools, days=days, seed=seed)
    w = wide_inputs(panel.frame, make_grid(panel.frame, panel.freq))
    p0, p1, tvl = (np.array(w[c], dtype=float)
                   for c in ("token0_price_usd", "token1_price_usd", "tvl_usd"))
    n_t, n_p = p0.shape
    rng = np.random.default_rng(seed)
    for a in (p0, p1, tvl):
        a[:40, 0] = np.nan  # a pool that starts late
        a[-50:, 1] = np.nan  # and one that ends early
    p0[rng.random(p0.shape) < 0.01] = np.nan
    p1[rng.random(p1.shape) < 0.01] = np.nan
    tvl[rng.random(tvl.shape) < 0.02] = 0.0
    tvl[:, 2] = 0.0
    tvl[30, 3], p0[10, 4], p1[20, 5] = -5.0, np.inf, 0.0
    p0[:, 6] = 1 + 0.01 * rng.standard_normal(n_t)
    p1[:, 6] = 1 + 0.005 * rng.standard_normal(n_t)
    p0[:, 7], p1[:, 7] = 1 + 0.001 * rng.standard_normal(n_t), 1.0
    p0[:, 8], p1[:, 8], tvl[:, 8] = 1.0, 1.0, 1e6  # nothing moves: worst moves of zero
    stable = np.zeros(n_p, bool)
    stable[[0, 6, 7, 8]] = True
    return p0, p1, tvl, stable


@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize(("seed", "h", "q", "history", "minp"),
                         [(0, 24, 0.9, 4380, 48), (1, 5, 0.95, 60, 10), (2, 3, 0.5, 7, 0),
                          (3, 1, 0.0, 1, 1), (4, 12, 1.0, 100, 24)])
def test_stress_label_equals_the_array_reference(pooled: bool, seed: int, h: int, q: float,
                                                 history: int, minp: int) -> None:
    p0, p1, tvl, stable = _market(seed)
    params = {"min_div": 0.02, "min_flt": 0.05, "peg": 0.004}
    want = reference(p0, p1, tvl, stable, h, q, history, minp, pooled=pooled, **params)
    got = forward_lp_stress(p0, p1, tvl, stable, h, quantile=q, history=history,
                            min_history=minp, min_divergence=params["min_div"],
                            min_flight=params["min_flt"], peg_break=params["peg"],
                            pooled=pooled)
    assert np.nansum(want["stress"]) > 0  # some windows are stressed
    for name, value in want.items():
        np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)
    assert got.cause.dtype == np.int8


@pytest.mark.parametrize("seed", range(4))
def test_worst_moves_from_extremes_equal_every_move(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_t, n_p = 90, 5
    ratio = np.cumsum(rng.normal(size=(n_t, n_p)), axis=0)
    net = np.cumsum(rng.normal(size=(n_t, n_p)), axis=0)
    if seed % 2:
        ratio, net = np.round(ratio), np.round(net)  # ties between the window's moves
    ratio[rng.random(ratio.shape) < 0.03] = np.nan
    net[rng.random(net.shape) < 0.02] = -np.inf
    for h in (1, 2, 7, 30, 89, 95):
        dw, ow = np.full(ratio.shape, 5.0), np.full(ratio.shape, 5.0)
        for t0, t1 in ((0, 40), (40, n_t)):  # split as over the build threads
            kern.forward_worst(ratio, net, h, dw, ow, t0, t1)
        want_d, want_o = _worst(ratio, net, h)
        np.testing.assert_array_equal(dw, want_d, err_msg=f"h={h}")
        np.testing.assert_array_equal(ow, want_o, err_msg=f"h={h}")  # -0.0 == 0.0 on ties


def test_key_ranking_orders_values_that_share_the_kept_bits() -> None:
    rng = np.random.default_rng(7)
    n_t = 300
    base = np.array([1.0, -1.0, 0.0, 1e-300])
    x = np.empty((n_t, 3))
    # values a few units of the last place apart: their keys keep too few bits to order them
    x[:, 0] = 1.0 + rng.integers(-200, 200, n_t) * np.finfo(float).eps
    x[:, 1] = base[rng.integers(0, 4, n_t)] * (1 + rng.integers(0, 50, n_t) * 1e-15)
    x[:, 2] = rng.normal(size=n_t)
    x[::17, 2], x[5, 2], x[6, 2], x[7, 1] = np.nan, np.inf, -np.inf, -0.0
    lag, w, minp, q = 3, 40, 5, 0.7
    out, count = np.empty((3, n_t)), np.empty((3, n_t), np.int64)
    _sorted_quantiles(x, 0, 3, (lag, w, minp, q), out, count)
    want, n = _quantile(x, lag, q, w, minp, pooled=False)
    np.testing.assert_array_equal(out, want.T)
    np.testing.assert_array_equal(count, n.T)


def _lead(x: np.ndarray, h: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    out[:-h] = x[h:]
    return out


@pytest.mark.parametrize("h", [1, 6, 24])
def test_forward_yield_volatility_and_il_equal_the_array_formulas(h: int) -> None:
    rng = np.random.default_rng(h)
    shape = (120, 7)
    fees, ret = rng.exponential(size=shape), rng.normal(0, 0.01, size=shape)
    tvl = rng.exponential(1e6, size=shape)
    p0, p1 = np.exp(rng.normal(size=shape)), np.exp(rng.normal(size=shape))
    for a in (fees, ret, tvl, p0, p1):
        a[rng.random(shape) < 0.03] = np.nan
    tvl[rng.random(shape) < 0.03], tvl[5, 2], p0[9, 1], p1[11, 3] = 0.0, -1.0, 0.0, np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        fee = np.where(tvl > 0, _lead(rolling_sum(fees, h, h), h) / np.where(tvl > 0, tvl, 1),
                       np.nan)
        vol = np.sqrt(_lead(rolling_sum(ret * ret, h, h), h) / h * 8760.0)
        r = (_lead(p0, h) / p0) / (_lead(p1, h) / p1)
        il = 2.0 * np.sqrt(r) / (1.0 + r) - 1
    np.testing.assert_array_equal(forward_fee_yield(fees, tvl, h), fee)
    np.testing.assert_array_equal(forward_volatility(ret, h, 8760.0), vol)
    np.testing.assert_array_equal(forward_il(p0, p1, h), il)
    # float32 inputs take the array path: the same values from the same float32 inputs
    f32 = [a.astype(np.float32) for a in (fees, tvl, p0, p1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        r32 = (_lead(f32[2], h) / f32[2]) / (_lead(f32[3], h) / f32[3])
        il32 = 2.0 * np.sqrt(r32) / (1.0 + r32) - 1
    np.testing.assert_array_equal(forward_il(f32[2], f32[3], h), il32)
