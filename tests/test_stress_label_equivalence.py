"""The compiled forward LP-stress label equals the array formulation it replaced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features._wide import rolling_count
from features.labels import StressLabels, forward_lp_stress


def _lead(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan, dtype=float)
    if k < x.shape[0]:
        out[:-k] = x[k:]
    return out


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan, dtype=float)
    if k < x.shape[0]:
        out[k:] = x[:-k]
    return out


def _paths(x: np.ndarray, h: int) -> np.ndarray:
    return np.stack([_lead(x, k) - x for k in range(1, h + 1)])


def _trailing_quantile(worst: np.ndarray, h: int, q: float, history: int,
                       min_history: int) -> np.ndarray:
    done = pd.DataFrame(_lag(worst, h))
    qt = done.rolling(history, min_periods=max(1, min_history)).quantile(q, interpolation="lower")
    return qt.to_numpy(float)


def _pooled_quantile(worst: np.ndarray, h: int, q: float, history: int,
                     min_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Per period, the "lower" q-quantile of every pool's lagged values in the trailing span
    together, by sorting them (broadcast to every pool), and how many values it read."""
    done = _lag(worst, h)
    qt = np.full(done.shape, np.nan)
    n = np.zeros(done.shape, np.int64)
    for t in range(done.shape[0]):
        v = done[max(0, t - history + 1): t + 1].ravel()
        v = np.sort(v[np.isfinite(v)])
        n[t] = len(v)
        if len(v) >= max(1, min_history):
            qt[t] = v[int(q * (len(v) - 1))]
    return qt, n


def _first_crossing(excess: np.ndarray) -> np.ndarray:
    hit = excess.any(axis=0)
    return np.where(hit, excess.argmax(axis=0) + 1, 0)


def reference_lp_stress(p0_usd: np.ndarray, p1_usd: np.ndarray, tvl: np.ndarray,
                        stable_pair: np.ndarray, h: int, *, quantile: float = 0.95,
                        history: int = 4380, min_history: int = 168,
                        min_divergence: float = 0.05, min_flight: float = 0.15,
                        peg_break: float = 0.02, pooled: bool = False) -> StressLabels:
    """forward_lp_stress as stacked (h x periods x pools) arrays and a pandas rolling quantile
    (``pooled``: a sorted quantile of every pool's values together)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lp0, lp1 = np.log(p0_usd), np.log(p1_usd)
        ratio = lp0 - lp1
        net = np.log(np.where(tvl > 0, tvl, np.nan)) - 0.5 * (lp0 + lp1)
    div = np.abs(_paths(ratio, h))
    out = -_paths(net, h)
    complete = np.isfinite(div).all(axis=0) & np.isfinite(out).all(axis=0)
    div_worst = np.where(complete, div.max(axis=0, initial=-np.inf), np.nan)
    out_worst = np.where(complete, out.max(axis=0, initial=-np.inf), np.nan)
    if pooled:
        div_q, n_done = _pooled_quantile(div_worst, h, quantile, history, min_history)
        flt_q, _ = _pooled_quantile(out_worst, h, quantile, history, min_history)
        scaled = n_done >= max(1, min_history)
    else:
        div_q = _trailing_quantile(div_worst, h, quantile, history, min_history)
        flt_q = _trailing_quantile(out_worst, h, quantile, history, min_history)
        scaled = rolling_count(_lag(div_worst, h), history) >= max(1, min_history)
    div_thr = np.fmax(div_q, min_divergence)
    flt_thr = np.fmax(flt_q, min_flight)
    k_div = _first_crossing(div > div_thr)
    k_flt = _first_crossing(out > flt_thr)
    k_peg = np.zeros_like(k_div)
    if np.any(stable_pair):
        dev = np.fmax(np.abs(p0_usd - 1), np.abs(p1_usd - 1))
        peg = np.stack([_lead(dev, k) for k in range(1, h + 1)]) > peg_break
        k_peg = np.where(np.asarray(stable_pair, bool)[None, :], _first_crossing(peg), 0)
    ks = np.stack([k_div, k_flt, k_peg])
    cause = sum(np.where(k > 0, bit, 0) for k, bit in zip(ks, (1, 2, 4), strict=True))
    onset = np.where(ks > 0, ks, h + 1).min(axis=0)
    valid = complete & scaled
    stress = np.where(valid, (onset <= h).astype(float), np.nan)
    return StressLabels(
        stress=stress,
        onset=np.where(valid & (onset <= h), onset.astype(float), np.nan),
        cause=np.where(valid, cause, 0).astype(np.int8),
        divergence_threshold=np.where(valid, div_thr, np.nan),
        flight_threshold=np.where(valid, flt_thr, np.nan))


def simulated_panel(periods: int, pools: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random-walk prices and TVL with jumps, gaps, late and early-ending pools, zero TVL,
    non-positive prices and stablecoin pairs that wander off the peg."""
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.001, 0.03, pools)
    jumps = rng.standard_t(3, (periods, pools)) * vol
    p0 = np.exp(np.cumsum(jumps, axis=0))
    p1 = np.exp(np.cumsum(rng.normal(0, 0.01, (periods, pools)), axis=0))
    tvl = 1e6 * np.exp(np.cumsum(rng.normal(0, 0.02, (periods, pools)), axis=0))
    stable = np.zeros(pools, bool)
    stable[: max(1, pools // 4)] = True
    s = np.flatnonzero(stable)
    p0[:, s] = 1 + rng.normal(0, 0.01, (periods, len(s)))
    p1[:, s] = 1 + rng.normal(0, 0.005, (periods, len(s)))
    for p in range(pools):
        start = int(rng.integers(0, periods // 2)) if p % 3 == 1 else 0
        end = int(rng.integers(periods // 2, periods)) if p % 4 == 2 else periods
        for x in (p0, p1, tvl):
            x[:start, p] = np.nan
            x[end:, p] = np.nan
    for x in (p0, p1, tvl):  # scattered gaps
        x[rng.random(x.shape) < 0.002] = np.nan
    tvl[rng.random(tvl.shape) < 0.001] = 0.0
    p0[rng.random(p0.shape) < 0.0005] = 0.0
    p1[: 40, -1] = np.nan  # a pool shorter than any window at the end
    p1[80:, -1] = np.nan
    return p0, p1, tvl, stable


CASES = [  # periods, pools, seed, h, keyword arguments
    (1500, 13, 0, 24, {"history": 4380, "min_history": 168}),
    (1500, 13, 1, 24, {"history": 300, "min_history": 50, "quantile": 0.9}),
    (900, 9, 2, 5, {"history": 97, "min_history": 1, "quantile": 0.5}),
    (700, 7, 3, 1, {"history": 60, "min_history": 10, "quantile": 0.99,
                    "min_divergence": 0.0, "min_flight": 0.0}),
    (400, 6, 4, 12, {"history": 25, "min_history": 0, "quantile": 0.3, "peg_break": 0.005}),
    (30, 4, 5, 40, {"history": 10, "min_history": 2}),  # horizon longer than the panel
]


@pytest.mark.parametrize(("periods", "pools", "seed", "h", "kw"), CASES)
def test_compiled_stress_equals_reference(periods: int, pools: int, seed: int, h: int,
                                          kw: dict[str, float]) -> None:
    p0, p1, tvl, stable = simulated_panel(periods, pools, seed)
    got = forward_lp_stress(p0, p1, tvl, stable, h, **kw)  # type: ignore[arg-type]
    with np.errstate(invalid="ignore"):
        want = reference_lp_stress(p0, p1, tvl, stable, h, **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.stress, want.stress)
    np.testing.assert_array_equal(got.onset, want.onset)
    np.testing.assert_array_equal(got.cause, want.cause)
    assert got.cause.dtype == want.cause.dtype
    for a, b in ((got.divergence_threshold, want.divergence_threshold),
                 (got.flight_threshold, want.flight_threshold)):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, equal_nan=True)
    if h <= periods // 4:  # the panel does label stress, of every kind
        assert np.nansum(want.stress) > 0
        assert (want.cause & 4).any() and (want.cause & 1).any()


def test_no_stable_pool_and_float32_inputs_match() -> None:
    p0, p1, tvl, _ = simulated_panel(600, 5, 7)
    stable = np.zeros(5, bool)
    args = (p0.astype(np.float32), p1.astype(np.float32), tvl.astype(np.float32), stable, 6)
    got = forward_lp_stress(*args, history=200, min_history=20)
    with np.errstate(invalid="ignore"):
        want = reference_lp_stress(*args, history=200, min_history=20)
    np.testing.assert_array_equal(got.stress, want.stress)
    np.testing.assert_array_equal(got.onset, want.onset)
    np.testing.assert_array_equal(got.cause, want.cause)
    np.testing.assert_array_equal(got.divergence_threshold, want.divergence_threshold)


@pytest.mark.parametrize(("periods", "pools", "seed", "h", "kw"), CASES[1:])
def test_pooled_thresholds_equal_a_sorted_reference(periods: int, pools: int, seed: int, h: int,
                                                     kw: dict[str, float]) -> None:
    p0, p1, tvl, stable = simulated_panel(periods, pools, seed)
    got = forward_lp_stress(p0, p1, tvl, stable, h, pooled=True, **kw)  # type: ignore[arg-type]
    with np.errstate(invalid="ignore"):
        want = reference_lp_stress(p0, p1, tvl, stable, h, pooled=True,
                                   **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.stress, want.stress)
    np.testing.assert_array_equal(got.onset, want.onset)
    np.testing.assert_array_equal(got.cause, want.cause)
    np.testing.assert_allclose(got.divergence_threshold, want.divergence_threshold, rtol=0,
                               atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got.flight_threshold, want.flight_threshold, rtol=0, atol=1e-12,
                               equal_nan=True)
    if h > periods // 4:  # the panel is too short to label
        assert np.isnan(got.stress).all()
        return
    # one threshold per period for every pool that has a label
    thr = np.where(np.isfinite(got.stress), got.divergence_threshold, np.nan)
    rows = np.isfinite(thr).sum(axis=1) > 1
    assert rows.any()
    assert np.all(np.nanmax(thr[rows], axis=1) == np.nanmin(thr[rows], axis=1))


def test_pooled_thresholds_of_one_pool_are_its_own() -> None:
    p0, p1, tvl, stable = simulated_panel(800, 1, 11)
    kw = {"history": 200, "min_history": 20, "quantile": 0.9}
    own = forward_lp_stress(p0, p1, tvl, stable, 6, **kw)  # type: ignore[arg-type]
    pooled = forward_lp_stress(p0, p1, tvl, stable, 6, pooled=True, **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(own.stress, pooled.stress)
    np.testing.assert_array_equal(own.divergence_threshold, pooled.divergence_threshold)
