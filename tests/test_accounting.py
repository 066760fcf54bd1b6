"""LP accounting: diluted fees, value versus HODL per invariant, LVR and move costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.backtest.accounting import (
    capital_efficiency,
    concentrated_in_range,
    concentrated_value_ratio,
    cp_value_ratio,
    diluted_fees,
    impermanent_loss,
    lp_paths,
    lvr_fraction,
    stableswap_value_ratio,
    trade_costs,
    value_ratios,
    value_vs_hodl,
)

PROTOCOLS = ["uniswap_v2", "uniswap_v3", "stableswap", "weighted"]
ratios = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False)


def _meta(protocols: list[str], fee_tier: float = 0.003) -> pd.DataFrame:
    """Metadata rows for the given protocols."""
    return pd.DataFrame({"protocol": protocols, "fee_tier": [fee_tier] * len(protocols)})


def test_fee_dilution_worked_example() -> None:
    """Fees 1000 on TVL 9000: a 1000 USD position earns 1000 x 1000 / 10000 = 100."""
    assert float(diluted_fees(1000.0, 9000.0, 1000.0)) == pytest.approx(100.0)
    assert float(diluted_fees(1000.0, 9000.0, 0.0)) == 0.0
    # concave: doubling the position less than doubles the fees
    assert float(diluted_fees(1000.0, 9000.0, 2000.0)) < 200.0


def test_cp_il_of_a_doubling() -> None:
    """A 2x price move costs a constant-product LP 5.72 % versus HODL."""
    assert float(impermanent_loss(2.0)) == pytest.approx(2 * np.sqrt(2) / 3 - 1, abs=1e-12)
    assert float(impermanent_loss(2.0)) == pytest.approx(-0.0572, abs=1e-4)


@pytest.mark.parametrize("r", [0.5, 0.8, 0.95, 1.05, 1.25, 2.0, 4.0])
def test_concentrated_il_exceeds_full_range(r: float) -> None:
    """A range position loses more than full range; in range by exactly its capital efficiency."""
    width = 0.5
    conc = 1.0 - float(concentrated_value_ratio(r, width))
    full = 1.0 - float(cp_value_ratio(r))
    assert conc > full > 0
    if concentrated_in_range(r, width):
        assert conc == pytest.approx(float(capital_efficiency(width)) * full, rel=1e-9)


def test_wide_range_tends_to_full_range() -> None:
    """A very wide range behaves like constant product."""
    assert float(concentrated_value_ratio(2.0, 1e8)) == pytest.approx(float(cp_value_ratio(2.0)),
                                                                      abs=1e-3)


def test_out_of_range_earns_no_fees() -> None:
    """Price leaving the range sets the fee multiplier to 0 while it stays outside."""
    assert float(concentrated_in_range(3.0, 0.5)) == 0.0
    assert float(concentrated_in_range(1.2, 0.5)) == 1.0
    g0 = np.array([[1.0], [3.0], [1.0], [1.0], [1.0 / 3.0]])
    g1 = np.ones_like(g0)
    p = lp_paths(g0, g1, _meta(["uniswap_v3"]), width=0.5, recenter_after=None)
    assert p.fee_mult[0, 0] == pytest.approx(float(capital_efficiency(0.5)))
    assert p.in_range[2, 0] == 0.0 and p.in_range[3, 0] == 0.0
    assert float(diluted_fees(500.0, 1e6, 1e4, p.fee_mult[2, 0])) == 0.0
    assert 0.0 < p.in_range[1, 0] < 1.0  # the exit period is partly in range
    assert p.in_range[4, 0] > 0.0  # back inside at the end of the last period


def test_v3_path_matches_closed_form_without_recentring() -> None:
    """Compounded per-period v3 growth equals the closed-form range value times HODL."""
    rng = np.random.default_rng(1)
    g0 = np.exp(rng.normal(0, 0.05, (200, 3)))
    g1 = np.exp(rng.normal(0, 0.01, (200, 3)))
    p = lp_paths(g0, g1, _meta(["uniswap_v3"] * 3), width=0.3, recenter_after=None)
    c0, c1 = np.cumprod(g0, 0), np.cumprod(g1, 0)
    want = concentrated_value_ratio(c0 / c1, 0.3) * 0.5 * (c0 + c1)
    np.testing.assert_allclose(np.cumprod(p.lp, 0), want, rtol=1e-9)


def test_cp_and_stableswap_paths() -> None:
    """CP growth is sqrt(g0 g1) (the engine's placeholder); stableswap value is path-free."""
    rng = np.random.default_rng(2)
    g0 = np.exp(rng.normal(0, 0.02, (100, 2)))
    g1 = np.exp(rng.normal(0, 0.02, (100, 2)))
    lp, hodl, lvr = value_ratios(g0, g1, _meta(["uniswap_v2", "stableswap"]))
    np.testing.assert_allclose(lp[:, 0], np.sqrt(g0[:, 0] * g1[:, 0]))
    np.testing.assert_allclose(hodl, 0.5 * (g0 + g1))
    np.testing.assert_allclose(lvr[:, 0], 1 - cp_value_ratio(g0[:, 0] / g1[:, 0]))
    c0, c1 = np.cumprod(g0[:, 1]), np.cumprod(g1[:, 1])
    np.testing.assert_allclose(np.cumprod(lp[:, 1]),
                               0.5 * (c0 + c1) * stableswap_value_ratio(c0 / c1), rtol=1e-9)
    assert (lvr >= -1e-15).all()


def test_stableswap_flat_near_peg_then_cp_like() -> None:
    """Stableswap IL is far below CP near the peg and close to it through a depeg."""
    assert 1 - float(stableswap_value_ratio(1.002)) < 0.05 * (1 - float(cp_value_ratio(1.002)))
    assert 1 - float(stableswap_value_ratio(0.5)) > 0.95 * (1 - float(cp_value_ratio(0.5)))


def test_lvr_scaling() -> None:
    """LVR = sigma^2 / 8 per year for CP, times capital efficiency for a v3 range."""
    assert float(lvr_fraction(0.8, 1.0)) == pytest.approx(0.08)
    v3 = float(lvr_fraction(0.8, 0.5, "uniswap_v3", width=0.5))
    assert v3 == pytest.approx(0.04 * float(capital_efficiency(0.5)))


def test_recentring_charges_half_the_fee_tier() -> None:
    """A v3 range re-centres after leaving its range and pays half the position x fee tier."""
    g0 = np.array([[1.0], [2.0], [1.0]])
    p = lp_paths(g0, np.ones_like(g0), _meta(["uniswap_v3"], 0.003), width=0.5,
                 recenter_after=1)
    assert p.recentred[1, 0] and not p.recentred[0, 0]
    q = lp_paths(g0, np.ones_like(g0), _meta(["uniswap_v3"], 0.003), width=0.5,
                 recenter_after=None)
    assert p.lp[1, 0] == pytest.approx(q.lp[1, 0] * (1 - 0.0015))
    # the re-centred range is back in range; the passive one stays out and earns nothing
    assert p.in_range[2, 0] == 1.0 and q.in_range[2, 0] == 0.0


def test_gas_once_per_pool_moved() -> None:
    """Gas is charged once per pool whose position changes, per chain."""
    delta = np.array([1000.0, -500.0, 0.0, 20.0])
    tvl = np.full(4, 1e7)
    fee = np.full(4, 0.003)
    gas, _ = trade_costs(delta, tvl, fee, 15.0)
    assert gas == pytest.approx(45.0)
    gas, _ = trade_costs(delta, tvl, fee, {"ethereum": 15.0},
                         chain=["ethereum", "arbitrum", "ethereum", "ethereum"])
    assert gas == pytest.approx(15.0 + 0.5 + 15.0)


def test_slippage_is_half_the_notional_at_fee_plus_cp_impact() -> None:
    """Swap of half the move pays the fee tier and the exact CP execution loss."""
    d, tvl, fee = 200_000.0, 1e6, 0.003
    _, slip = trade_costs(np.array([d]), np.array([tvl]), np.array([fee]), 0.0)
    s = d / 2
    assert slip == pytest.approx(s * fee + s * s / (tvl / 2 + s))
    _, slip_ss = trade_costs(np.array([d]), np.array([tvl]), np.array([fee]), 0.0,
                             protocol=["stableswap"], stable_impact=0.1)
    assert slip_ss == pytest.approx(s * fee + 0.1 * s * s / (tvl / 2 + s))
    assert slip_ss < slip


def test_capital_efficiency_agrees_with_the_allocator() -> None:
    """The allocator's copy of the efficiency formula matches accounting."""
    from models._alloc_inputs import capital_efficiency as alloc_eff

    for w in (0.05, 0.1, 0.5, 2.0):
        assert alloc_eff(w) == pytest.approx(float(capital_efficiency(w)))


@settings(max_examples=200, deadline=None)
@given(r=ratios, proto=st.sampled_from(PROTOCOLS),
       width=st.floats(min_value=0.01, max_value=10.0))
def test_value_ratio_never_above_hodl(r: float, proto: str, width: float) -> None:
    """No invariant beats HODL on the price move alone: value / HODL <= 1."""
    assert float(value_vs_hodl(r, proto, width=width)) <= 1.0 + 1e-12


@settings(max_examples=200, deadline=None)
@given(r=ratios)
def test_cp_il_symmetric_in_log_price(r: float) -> None:
    """CP (and stableswap) IL depends on |log r| only."""
    assert float(impermanent_loss(r)) == pytest.approx(float(impermanent_loss(1 / r)), abs=1e-12)
    assert float(impermanent_loss(r, "stableswap")) == pytest.approx(
        float(impermanent_loss(1 / r, "stableswap")), abs=1e-12)
