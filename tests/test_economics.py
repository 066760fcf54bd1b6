"""LP economics core: hand-computed v3 range math, fees, IL per invariant, LVR and move costs.

Worked example used throughout: price 4 (sqrt 2) on the range [1, 9] (sqrt 1 and 3).
Per unit of liquidity the position holds 1/2 - 1/3 = 1/6 token0 and 2 - 1 = 1 token1, worth
4/6 + 1 = 5/3 token1; a full-range unit holds 1/2 and 2, worth 2 sqrt(4) = 4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.economics import (
    GAS_USD,
    EconomicsInputError,
    amounts_for_liquidity,
    centred_range,
    concentrated_value_ratio,
    cp_value_ratio,
    diluted_fees,
    fee_share,
    full_range_value,
    gas_usd,
    human_liquidity,
    impermanent_loss,
    in_range,
    in_range_fraction_grouped,
    in_range_fraction_ohlc,
    in_range_fraction_path,
    liquidity_for_amounts,
    liquidity_for_value,
    lvr_fraction,
    lvr_rate,
    position_value,
    price_to_tick,
    range_efficiency,
    rebalance_cost,
    sqrt_price_x96_to_price,
    stableswap_value_ratio,
    swap_depth_usd,
    swap_impact_usd,
    tick_to_price,
    usd_liquidity,
    value_ratio,
    weighted_value_ratio,
)

prices = st.floats(min_value=1e-4, max_value=1e4, allow_nan=False)
ratios = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


# ---------------------------------------------------------------- concentrated (Uniswap v3)

def test_tick_price_conversions() -> None:
    """tick 0 is price 1; USDC(6)/WETH(18) tick 200000 is 1.0001**200000 / 1e12 WETH per USDC."""
    assert float(tick_to_price(0)) == 1.0
    assert float(tick_to_price(200_000, 6, 18)) == pytest.approx(1.0001**200_000 * 1e-12,
                                                                  rel=1e-12)
    assert float(tick_to_price(200_000, 6, 18)) == pytest.approx(4.8468e-4, rel=1e-4)
    assert float(price_to_tick(tick_to_price(-123_456.5, 6, 18), 6, 18)) == pytest.approx(
        -123_456.5, abs=1e-6)
    assert float(sqrt_price_x96_to_price(2**96 * 3)) == pytest.approx(9.0)
    # raw L of 1e15 between a 6- and an 18-decimal token is 1e15 / 1e12 = 1000 in human units
    assert float(human_liquidity(1e15, 6, 18)) == pytest.approx(1000.0)


def test_liquidity_from_amounts_in_range_below_above() -> None:
    """In range min(L0, L1); below only token0 counts; above only token1."""
    # in range: L0 = 1 / (1/2 - 1/3) = 6, L1 = 6 / (2 - 1) = 6
    assert float(liquidity_for_amounts(1.0, 6.0, 4.0, 1.0, 9.0)) == pytest.approx(6.0)
    # surplus token0: L1 = 3 binds
    assert float(liquidity_for_amounts(1.0, 3.0, 4.0, 1.0, 9.0)) == pytest.approx(3.0)
    # below (price 0.25): L = 2 / (1/1 - 1/3) = 3, token1 ignored
    assert float(liquidity_for_amounts(2.0, 100.0, 0.25, 1.0, 9.0)) == pytest.approx(3.0)
    # above (price 16): L = 4 / (3 - 1) = 2, token0 ignored
    assert float(liquidity_for_amounts(100.0, 4.0, 16.0, 1.0, 9.0)) == pytest.approx(2.0)
    # vectorised over prices, and at the edges (lower: token0 only, upper: token1 only)
    got = liquidity_for_amounts(2.0, 4.0, np.array([0.25, 1.0, 9.0, 16.0]), 1.0, 9.0)
    np.testing.assert_allclose(got, [3.0, 3.0, 2.0, 2.0])


def test_amounts_at_and_beyond_the_bounds() -> None:
    """Inside (1, 6); at/below lower all token0 (4, 0); at/above upper all token1 (0, 12)."""
    p = np.array([0.25, 1.0, 4.0, 9.0, 16.0])
    a0, a1 = amounts_for_liquidity(6.0, p, 1.0, 9.0)
    np.testing.assert_allclose(a0, [4.0, 4.0, 1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(a1, [0.0, 0.0, 6.0, 12.0, 12.0], atol=1e-12)


def test_full_range_amounts_and_value() -> None:
    """Full range [0, inf): L / sqrt(p) token0 and L sqrt(p) token1, worth 2 L sqrt(p)."""
    a0, a1 = amounts_for_liquidity(6.0, 4.0, 0.0, np.inf)
    assert (float(a0), float(a1)) == pytest.approx((3.0, 12.0))
    assert float(position_value(6.0, 4.0, 0.0, np.inf)) == pytest.approx(24.0)
    assert float(full_range_value(6.0, 4.0)) == pytest.approx(24.0)


def test_position_value_worked_example_and_edges() -> None:
    """L = 6 at price 4 is worth 1 x 4 + 6 = 10; the value is continuous at both edges."""
    assert float(position_value(6.0, 4.0, 1.0, 9.0)) == pytest.approx(10.0)
    eps = 1e-9
    for edge in (1.0, 9.0):
        inside = edge * (1 + eps) if edge == 1.0 else edge * (1 - eps)
        outside = edge * (1 - eps) if edge == 1.0 else edge * (1 + eps)
        v_in = float(position_value(6.0, inside, 1.0, 9.0))
        v_out = float(position_value(6.0, outside, 1.0, 9.0))
        assert v_in == pytest.approx(v_out, rel=1e-8)
        assert v_in == pytest.approx(float(position_value(6.0, edge, 1.0, 9.0)), rel=1e-8)
    # at lower: 4 token0 x 1 = 4; at upper: 12 token1
    assert float(position_value(6.0, 1.0, 1.0, 9.0)) == pytest.approx(4.0)
    assert float(position_value(6.0, 9.0, 1.0, 9.0)) == pytest.approx(12.0)


def test_liquidity_for_value_worked_example() -> None:
    """10 token1 of value at price 4 on [1, 9] buys L = 10 / (5/3) = 6."""
    assert float(liquidity_for_value(10.0, 4.0, 1.0, 9.0)) == pytest.approx(6.0)
    # below the range a unit of L is worth (1 - 1/3) x 0.25 = 1/6 token1
    assert float(liquidity_for_value(1.0, 0.25, 1.0, 9.0)) == pytest.approx(6.0)


def test_range_efficiency_worked_example_and_centred_formula() -> None:
    """Efficiency 4 / (5/3) = 2.4 in the worked example; 1/(1 - (1+w)^-1/2) when centred."""
    assert float(range_efficiency(4.0, 1.0, 9.0)) == pytest.approx(2.4)
    assert float(range_efficiency(0.5, 1.0, 9.0)) == 0.0
    assert float(range_efficiency(10.0, 1.0, 9.0)) == 0.0
    for w in (0.01, 0.1, 0.5, 2.0):
        lo, hi = centred_range(1800.0, w)
        assert (float(lo), float(hi)) == pytest.approx((1800.0 / (1 + w), 1800.0 * (1 + w)))
        assert float(range_efficiency(1800.0, lo, hi)) == pytest.approx(
            1.0 / (1.0 - (1.0 + w) ** -0.5), rel=1e-12)
    assert float(range_efficiency(1800.0, *centred_range(1800.0, 0.5))) == pytest.approx(
        5.4495, abs=1e-4)


def test_range_efficiency_tends_to_one_as_the_range_widens() -> None:
    """Wider ranges are less efficient, reaching exactly 1 for the full range."""
    widths = np.array([0.1, 1.0, 10.0, 1e3, 1e6, 1e12])
    eff = range_efficiency(5.0, *centred_range(5.0, widths))
    assert np.all(np.diff(eff) < 0)
    assert eff[-1] == pytest.approx(1.0, abs=1e-5)
    assert float(range_efficiency(5.0, 0.0, np.inf)) == 1.0


def test_bad_range_names_the_element() -> None:
    """lower >= upper raises with the offending element and values."""
    with pytest.raises(EconomicsInputError, match=r"element \(1,\).*lower=5.0, upper=4.0"):
        position_value(1.0, 2.0, np.array([1.0, 5.0]), np.array([3.0, 4.0]))


def test_in_range_and_path_fraction() -> None:
    """Edges count as in range; a path 1..5 on [2, 4] is in range 3 points out of 5."""
    np.testing.assert_array_equal(in_range([1.0, 2.0, 3.0, 4.0, 5.0], 2.0, 4.0),
                                  [False, True, True, True, False])
    assert float(in_range_fraction_path([1.0, 2.0, 3.0, 4.0, 5.0], 2.0, 4.0)) == 0.6
    # two pools along axis 0 (periods x pools), NaN points skipped
    path = np.array([[1.0, 10.0], [3.0, np.nan], [5.0, 12.0], [3.5, 30.0]])
    np.testing.assert_allclose(in_range_fraction_path(path, [2.0, 9.0], [4.0, 20.0]),
                               [0.5, 2 / 3])


def test_in_range_fraction_grouped_by_hour() -> None:
    """Minutes grouped into hours: per-hour share of minutes inside the range."""
    p = np.array([1.0, 3.0, 3.0, 3.0, 5.0, 5.0])
    g = np.array([0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(in_range_fraction_grouped(p, 2.0, 4.0, g), [0.5, 1.0, 0.0])


def test_in_range_fraction_ohlc_cases() -> None:
    """Inside bar 1, outside bar 0, and a hand-computed straddling bar 5/9."""
    lo, hi = np.exp(-1.0), np.exp(1.0)
    # [low, high] inside
    assert float(in_range_fraction_ohlc(1.0, 2.0, 0.5, 1.5, lo, hi)) == 1.0
    # whole bar above / below
    assert float(in_range_fraction_ohlc(4.0, 5.0, 3.0, 3.5, lo, hi)) == 0.0
    assert float(in_range_fraction_ohlc(0.2, 0.3, 0.1, 0.25, lo, hi)) == 0.0
    # log path 0 -> -0.5 (nearer extreme) -> 2 -> 0.5: length 0.5 + 2.5 + 1.5 = 4.5,
    # inside [-1, 1]: 0.5 + 1.5 + 0.5 = 2.5
    f = float(in_range_fraction_ohlc(1.0, np.exp(2.0), np.exp(-0.5), np.exp(0.5), lo, hi))
    assert f == pytest.approx(5.0 / 9.0)
    # a flat bar counts when its close is in range; a missing price gives NaN
    assert float(in_range_fraction_ohlc(2.0, 2.0, 2.0, 2.0, lo, hi)) == 1.0
    assert np.isnan(in_range_fraction_ohlc(np.nan, 2.0, 1.0, 1.5, lo, hi))


@settings(max_examples=200, deadline=None)
@given(o=prices, a=prices, b=prices, c=prices, lo=prices, width=st.floats(0.001, 100.0))
def test_ohlc_fraction_bounds_property(o: float, a: float, b: float, c: float, lo: float,
                                       width: float) -> None:
    """The OHLC fraction lies in [0, 1] and is 1 whenever the bar's extremes are in range."""
    high, low = max(o, a, b, c), min(o, a, b, c)
    f = float(in_range_fraction_ohlc(o, high, low, c, lo, lo * (1 + width)))
    assert 0.0 <= f <= 1.0
    if lo <= low and high <= lo * (1 + width):
        assert f == 1.0
    if high < lo or low > lo * (1 + width):
        assert f == 0.0


@settings(max_examples=200, deadline=None)
@given(p=prices, lo=prices, width=st.floats(0.001, 100.0), liq=st.floats(1e-3, 1e6))
def test_amounts_nonnegative_and_value_round_trip(p: float, lo: float, width: float,
                                                  liq: float) -> None:
    """Amounts are >= 0, value = a0 p + a1, liquidity_for_value inverts position_value."""
    hi = lo * (1 + width)
    a0, a1 = amounts_for_liquidity(liq, p, lo, hi)
    assert float(a0) >= 0.0 and float(a1) >= 0.0
    v = float(position_value(liq, p, lo, hi))
    assert v == pytest.approx(float(a0) * p + float(a1), rel=1e-9)
    assert float(liquidity_for_value(v, p, lo, hi)) == pytest.approx(liq, rel=1e-9)
    assert float(liquidity_for_amounts(a0, a1, p, lo, hi)) == pytest.approx(liq, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(lo=prices, width=st.floats(0.001, 100.0), eps=st.floats(1e-12, 1e-7))
def test_value_continuous_at_edges_property(lo: float, width: float, eps: float) -> None:
    """Value just inside an edge equals value just outside it."""
    hi = lo * (1 + width)
    for edge in (lo, hi):
        v_minus = float(position_value(1.0, edge * (1 - eps), lo, hi))
        v_plus = float(position_value(1.0, edge * (1 + eps), lo, hi))
        assert v_minus == pytest.approx(v_plus, rel=10 * eps + 1e-12)


# ---------------------------------------------------------------- fees

def test_fee_share_and_dilution() -> None:
    """L = 1 beside L_active = 3 earns 1/4 of fees: 25 of 100, 12.5 half the time in range."""
    assert float(fee_share(1.0, 3.0)) == 0.25
    assert float(fee_share(0.0, 0.0)) == 0.0
    assert float(diluted_fees(100.0, 3.0, 1.0)) == pytest.approx(25.0)
    assert float(diluted_fees(100.0, 3.0, 1.0, 0.5)) == pytest.approx(12.5)
    # TVL approximation: 9000 TVL, 1000 USD position at efficiency 2.4 -> 2400 / 11400
    share = fee_share(usd_liquidity(1000.0, 2.4), usd_liquidity(9000.0, 1.0))
    assert float(share) == pytest.approx(2400.0 / 11400.0)


def test_fee_share_zero_outside_the_range() -> None:
    """Out of range the position's active liquidity (value x efficiency) is 0: no fees."""
    p = np.array([0.5, 4.0, 10.0])
    active = usd_liquidity(1000.0, range_efficiency(p, 1.0, 9.0))
    np.testing.assert_allclose(diluted_fees(50.0, 9000.0, active), [0.0, 50 * 2400 / 11400,
                                                                    0.0])
    np.testing.assert_allclose(diluted_fees(50.0, 9000.0, 2400.0, in_range(p, 1.0, 9.0)),
                               [0.0, 50 * 2400 / 11400, 0.0])


@settings(max_examples=200, deadline=None)
@given(fees=st.floats(0, 1e7), active=st.floats(0, 1e9), pos=st.floats(0, 1e9))
def test_diluted_fees_property(fees: float, active: float, pos: float) -> None:
    """diluted_fees = fees x L / (L + L_active), never more than the pool's fees."""
    got = float(diluted_fees(fees, active, pos))
    expected = fees * (pos / (pos + active)) if pos + active > 0 else 0.0
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert 0.0 <= got <= fees * (1 + 1e-12)


# ---------------------------------------------------------------- invariants

def test_v2_il_of_a_doubling() -> None:
    """A 2x move costs a constant-product LP 2 sqrt(2) / 3 - 1 = -5.72 %."""
    assert float(impermanent_loss(2.0, "uniswap_v2")) == pytest.approx(-0.0572, abs=1e-4)
    assert float(impermanent_loss(2.0)) == pytest.approx(2 * np.sqrt(2) / 3 - 1, abs=1e-14)
    assert float(cp_value_ratio(0.5)) == pytest.approx(float(cp_value_ratio(2.0)))


@pytest.mark.parametrize("r", [0.5, 0.8, 0.95, 1.05, 1.25, 2.0])
def test_v3_range_loses_more_than_v2(r: float) -> None:
    """A centred +-50 % range loses more than full range; inside, by its efficiency exactly."""
    lo, hi = centred_range(1.0, 0.5)
    conc = -float(impermanent_loss(r, "uniswap_v3", lower_ratio=lo, upper_ratio=hi))
    full = -float(impermanent_loss(r, "uniswap_v2"))
    assert conc > full > 0
    if lo <= r <= hi:
        assert conc == pytest.approx(float(range_efficiency(1.0, lo, hi)) * full, rel=1e-9)


def test_v3_full_range_equals_v2_and_one_sided_deposit() -> None:
    """The full range is constant product; a range entirely above entry holds token0 only."""
    r = np.array([0.3, 1.0, 2.0, 7.0])
    np.testing.assert_allclose(concentrated_value_ratio(r, 0.0, np.inf), cp_value_ratio(r),
                               rtol=1e-12)
    np.testing.assert_allclose(value_ratio(r, "uniswap_v3"), cp_value_ratio(r), rtol=1e-12)
    # range [2, 3] x entry: all token0 until r = 2, so LP = HODL there
    np.testing.assert_allclose(concentrated_value_ratio([0.5, 1.5, 2.0], 2.0, 3.0), 1.0)


def test_weighted_pool_loses_less_than_50_50() -> None:
    """80/20 at r = 2: 2^0.8 / 1.8 = 0.96728 against 0.94281 for 50/50."""
    assert float(weighted_value_ratio(2.0, 0.8)) == pytest.approx(2**0.8 / 1.8, rel=1e-12)
    assert float(weighted_value_ratio(2.0, 0.8)) == pytest.approx(0.96728, abs=1e-5)
    for r in (0.25, 0.5, 2.0, 4.0):
        assert float(impermanent_loss(r, "weighted", weight0=0.8)) > float(
            impermanent_loss(r, "uniswap_v2"))
    grid = np.geomspace(0.01, 100, 41)
    np.testing.assert_allclose(weighted_value_ratio(grid, 0.5), cp_value_ratio(grid),
                               rtol=1e-12)
    with pytest.raises(EconomicsInputError, match="weight0"):
        weighted_value_ratio(2.0, 1.0)


def _curve_point(amplification: float, x: float) -> tuple[float, float]:
    """(price, value ratio) of the two-coin Curve pool (D = 1) holding x of token0.

    Solves the invariant for y as a quadratic (Ann = 2 A): 4 Ann x y^2 +
    (4 Ann x^2 + 4 x - 4 Ann x) y - 1 = 0, independently of the module's bisection.
    """
    ann = 2.0 * amplification
    a, b = 4 * ann * x, 4 * ann * x * x + 4 * x - 4 * ann * x
    y = 2.0 / (b + np.sqrt(b * b + 4 * a))  # stable form of the positive root
    q = 1.0 / (4 * x * y)
    p = (ann + q / x) / (ann + q / y)
    return p, (p * x + y) / (0.5 * (p + 1.0))


@pytest.mark.parametrize("amplification", [1.0, 100.0, 2000.0])
def test_stableswap_follows_the_curve_invariant(amplification: float) -> None:
    """Tabulated ratio matches points solved on the invariant; small moves ~ (A + 1)/8 u^2."""
    for x in (0.05, 0.3, 0.45, 0.499, 0.5, 0.51, 0.7, 0.95, 0.999):
        p, v = _curve_point(amplification, x)
        assert float(stableswap_value_ratio(p, amplification)) == pytest.approx(v, abs=1e-4)
    u = 1e-4
    il = 1.0 - float(stableswap_value_ratio(np.exp(u), amplification))
    assert il == pytest.approx((amplification + 1) / 8 * u * u, rel=1e-2)


def test_stableswap_depeg_and_limits() -> None:
    """Higher A loses more through a depeg; A = 0 is constant product; r = 1 loses nothing."""
    r = np.array([0.9, 0.97, 0.99, 1.01, 1.05])
    np.testing.assert_allclose(stableswap_value_ratio(r, 0.0), cp_value_ratio(r))
    assert np.all(stableswap_value_ratio(r, 200.0) < stableswap_value_ratio(r, 20.0))
    assert np.all(stableswap_value_ratio(r, 20.0) < cp_value_ratio(r))
    assert float(stableswap_value_ratio(1.0)) == 1.0
    # a 12 % depeg with A = 100: the pool ends almost all in the cheap coin, close to
    # 0.88 / ((0.88 + 1) / 2) = 0.936
    assert 0.936 < float(stableswap_value_ratio(0.88, 100.0)) < 0.96


@settings(max_examples=300, deadline=None)
@given(r=ratios, w0=st.floats(0.01, 0.99), lo=st.floats(0.01, 0.999), up=st.floats(1.001, 100),
       amp=st.floats(0.0, 5000.0))
def test_value_ratio_at_most_one(r: float, w0: float, lo: float, up: float,
                                 amp: float) -> None:
    """LP value never beats HODL, for every invariant."""
    assert float(cp_value_ratio(r)) <= 1.0 + 1e-12
    assert float(weighted_value_ratio(r, w0)) <= 1.0 + 1e-12
    assert float(concentrated_value_ratio(r, lo, up)) <= 1.0 + 1e-12
    assert 0.0 <= float(stableswap_value_ratio(r, amp)) <= 1.0


def test_value_ratio_dispatch_per_pool() -> None:
    """One array call prices every pool with its own invariant; unknown names are rejected."""
    proto = np.array(["uniswap_v2", "uniswap_v3", "stableswap", "weighted"], dtype=object)
    r = np.array([[2.0, 2.0, 1.01, 2.0], [0.5, 1.2, 0.99, 0.5]])
    got = value_ratio(r, proto, lower_ratio=np.array([np.nan, 0.5, np.nan, np.nan]),
                      upper_ratio=np.array([np.nan, 1.5, np.nan, np.nan]),
                      weight0=np.array([np.nan, np.nan, np.nan, 0.8]), amplification=50.0)
    np.testing.assert_allclose(got[:, 0], cp_value_ratio(r[:, 0]))
    np.testing.assert_allclose(got[:, 1], concentrated_value_ratio(r[:, 1], 0.5, 1.5))
    np.testing.assert_allclose(got[:, 2], stableswap_value_ratio(r[:, 2], 50.0))
    np.testing.assert_allclose(got[:, 3], weighted_value_ratio(r[:, 3], 0.8))
    with pytest.raises(EconomicsInputError, match="curve_v9"):
        value_ratio(1.1, np.array(["uniswap_v2", "curve_v9"]))


# ---------------------------------------------------------------- LVR

def test_lvr_fraction_hand_value() -> None:
    """80 % vol for a day, efficiency 2.4, half in range: 0.64/8/365 x 2.4 x 0.5 = 2.6301e-4."""
    got = float(lvr_fraction(0.8, 1 / 365, efficiency=2.4, in_range_fraction=0.5))
    assert got == pytest.approx(0.096 / 365, rel=1e-12)
    assert got == pytest.approx(2.6301e-4, abs=1e-8)
    assert float(lvr_fraction(0.8, 1.0)) == pytest.approx(0.08)


def test_lvr_rate_is_the_derivative_based_loss() -> None:
    """sigma^2 p^2 / 2 |x'(p)| / V equals sigma^2 / 8 x efficiency inside, 0 outside."""
    sig, p, liq = 0.6, 4.0, 6.0
    x_prime = -liq / (2 * p**1.5)  # d/dp of L (1/sqrt(p) - 1/sqrt(pb))
    direct = sig**2 * p**2 / 2 * abs(x_prime) / float(position_value(liq, p, 1.0, 9.0))
    assert float(lvr_rate(sig, p, 1.0, 9.0)) == pytest.approx(direct, rel=1e-12)
    assert float(lvr_rate(sig, p, 1.0, 9.0)) == pytest.approx(0.36 / 8 * 2.4)
    assert float(lvr_rate(sig, 20.0, 1.0, 9.0)) == 0.0
    assert float(lvr_rate(sig, 20.0)) == pytest.approx(0.045)


# ---------------------------------------------------------------- costs

def test_gas_table_lookup() -> None:
    """Per-chain table with default, case-insensitive; flat figure; None means the table."""
    np.testing.assert_allclose(gas_usd(["ethereum", "Arbitrum", "zksync"]),
                               [15.0, GAS_USD["arbitrum"], GAS_USD["default"]])
    np.testing.assert_allclose(gas_usd(["ethereum", "base"], 2.0), [2.0, 2.0])
    np.testing.assert_allclose(gas_usd(np.array(["x", "ethereum"]), {"ethereum": 9.0}),
                               [GAS_USD["default"], 9.0])
    assert float(gas_usd("ethereum", None)) == 15.0


def test_rebalance_cost_worked_example() -> None:
    """Gas once per moved pool, the fee tier on half the move, s^2 / (R + s) impact."""
    gas, fee, impact = rebalance_cost(
        np.array([10_000.0, -4_000.0, 0.0]), np.array([1e6, 1e5, 1e6]),
        np.array([0.003, 0.0005, 0.003]), chains=["ethereum", "arbitrum", "ethereum"],
        gas={"ethereum": 15.0, "default": 0.5})
    np.testing.assert_allclose(gas, [15.0, 0.5, 0.0])
    np.testing.assert_allclose(fee, [15.0, 1.0, 0.0])
    np.testing.assert_allclose(impact, [5000.0**2 / 1_005_000.0, 2000.0**2 / 102_000.0, 0.0])
    assert impact[0] == pytest.approx(24.8756, abs=1e-4)


def test_zero_move_costs_nothing() -> None:
    """No move: no gas, no fee, no impact; moves below min_move_usd count as none."""
    costs = rebalance_cost(np.zeros(3), np.full(3, 1e6), 0.003, chains=["ethereum"] * 3)
    for part in costs:
        np.testing.assert_array_equal(part, 0.0)
    gas, fee, _ = rebalance_cost(np.array([0.004, 50.0]), 1e6, 0.003, chains=None, gas=15.0,
                                 min_move_usd=0.01)
    np.testing.assert_allclose(gas, [0.0, 15.0])
    np.testing.assert_allclose(fee, [0.0, 0.075])


def test_swap_impact_and_depth() -> None:
    """Impact s^2 / (R + s); depth per invariant."""
    assert float(swap_impact_usd(1000.0, 9000.0)) == pytest.approx(100.0)
    assert float(swap_impact_usd(-1000.0, 0.0)) == pytest.approx(1000.0)
    assert float(swap_impact_usd(0.0, 0.0)) == 0.0
    depth = swap_depth_usd(np.full(4, 1e6), ["uniswap_v2", "uniswap_v3", "stableswap",
                                             "weighted"], efficiency=3.0, weight0=0.8)
    np.testing.assert_allclose(depth, [5e5, 1.5e6, 5e6, 2 * 0.8 * 0.2 * 1e6])
    got = swap_depth_usd(1e6, "uniswap_v3", active_liquidity_usd=4e6)
    assert float(got) == pytest.approx(2e6)


def test_weighted_depth_matches_balancer_second_order_loss() -> None:
    """Execution loss of a small Balancer swap equals s^2 / depth with depth = 2 w0 w1 TVL."""
    tvl, w_in, s = 1e6, 0.8, 100.0
    b_in, b_out, k = w_in * tvl, (1 - w_in) * tvl, w_in / (1 - w_in)  # USD reserves, price 1
    out = b_out * (1 - (b_in / (b_in + s)) ** k)
    spot = b_out * k / b_in  # output per unit input at the margin (1 in USD terms)
    loss = s * spot - out
    depth = float(swap_depth_usd(tvl, "weighted", weight0=w_in))
    assert loss == pytest.approx(float(swap_impact_usd(s, depth)), rel=1e-3)


# ---------------------------------------------------------------- real minute data

MINUTE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "demeter-minute"


@pytest.mark.skipif(not MINUTE_DIR.is_dir(), reason="real minute data not available")
def test_ohlc_fraction_tracks_the_minute_path_on_real_data() -> None:
    """Polygon USDC/WETH minutes: hourly OHLC in-range share against the minutes' own share.

    Ranges of +-0.5 % and +-1 % are centred on the previous hour's close. The OHLC path
    (open -> extremes -> close at constant log speed) over-weights the extremes, so it is
    slightly low on average; per hour it stays within about 0.15 of the minute count.
    """
    cols = ["timestamp", "closeTick", "openTick", "lowestTick", "highestTick"]
    df = pd.concat([pd.read_csv(f, usecols=cols) for f in sorted(MINUTE_DIR.glob("*.csv"))])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df = df.sort_values("timestamp")
    codes, _ = pd.factorize(df["timestamp"].dt.floor("h"))
    g = df.groupby(codes)
    # WETH per USDC (token0 USDC, 6 decimals; token1 WETH, 18)
    o = tick_to_price(g["openTick"].first().to_numpy(), 6, 18)
    h = tick_to_price(g["highestTick"].max().to_numpy(), 6, 18)
    lw = tick_to_price(g["lowestTick"].min().to_numpy(), 6, 18)
    c = tick_to_price(g["closeTick"].last().to_numpy(), 6, 18)
    minutes = tick_to_price(df["closeTick"].to_numpy(), 6, 18)
    centre = np.r_[o[0], c[:-1]]
    for width in (0.005, 0.01):
        lo, hi = centred_range(centre, width)
        f_ohlc = in_range_fraction_ohlc(o, h, lw, c, lo, hi)
        f_path = in_range_fraction_grouped(minutes, lo[codes], hi[codes], codes)
        assert 0.0 < f_ohlc.mean() < f_path.mean() < f_ohlc.mean() + 0.06
        assert np.mean(np.abs(f_ohlc - f_path)) < 0.15
