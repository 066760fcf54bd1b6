"""The simulator's flow split is the routing flow model: trades split as the optimal router
splits them across a pair's parallel pools."""

from __future__ import annotations

import numpy as np
import pytest

from features.amm import TRADE_FRACTIONS, routed_flow_shares
from models.routing import DEFAULT_TRADE_FRACTIONS, volume_share
from models.routing.fast import parallel_split
from tests.test_routing import states, v2


def test_flow_shares_equal_the_closed_form_split_per_pair() -> None:
    rng = np.random.default_rng(3)
    depth = rng.uniform(1e5, 1e8, 12)
    fee = rng.choice([1e-4, 4e-4, 5e-4, 3e-3, 1e-2], 12)
    group = np.array([2, 0, 0, 1, 2, 1, 0, 2, 2, 1, 3, 0])
    got = routed_flow_shares(depth, fee, group)
    ref = np.zeros(12)
    for g in range(4):
        on = group == g
        total = depth[on].sum()
        for f in TRADE_FRACTIONS:
            d, _ = parallel_split(depth[on], depth[on], 1 - fee[on],
                                  np.full(on.sum(), np.inf), f * total)
            ref[on] += d / (f * total) / len(TRADE_FRACTIONS)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.bincount(group, got), 1.0, rtol=1e-9)
    assert got[10] == pytest.approx(1.0)  # a pool alone in its pair takes all its flow


def test_flow_shares_match_the_routing_flow_model() -> None:
    assert DEFAULT_TRADE_FRACTIONS == TRADE_FRACTIONS
    pools = [v2("a", 1000, 2.0e6, 0.003), v2("b", 400, 0.8e6, 0.0005),
             v2("c", 3000, 6.0e6, 0.01)]
    model = volume_share(states(pools))
    depth = np.array([2.0e6, 0.8e6, 6.0e6])  # USD on either side at the common price
    sim = routed_flow_shares(depth, np.array([0.003, 0.0005, 0.01]), np.zeros(3, int))
    np.testing.assert_allclose(sim, model.loc[["a", "b", "c"]].to_numpy(), rtol=1e-6)


def test_deeper_pools_attract_flow_and_dearer_ones_lose_it() -> None:
    fee, group = np.array([5e-4, 3e-3]), np.zeros(2, int)
    base = routed_flow_shares(np.array([1e6, 1e6]), fee, group)
    deeper = routed_flow_shares(np.array([1e6, 3e6]), fee, group)
    assert base[0] > base[1] > 0 and deeper[1] > base[1]
    np.testing.assert_allclose(routed_flow_shares(np.array([1e6, 0.0]), fee, group),
                               [1.0, 0.0], atol=1e-12)


def test_a_pool_with_an_invalid_fee_takes_no_flow_and_the_pair_still_sums_to_one() -> None:
    depth, group = np.array([1e6, 2e6, 3e6]), np.zeros(3, int)
    got = routed_flow_shares(depth, np.array([5e-4, np.nan, 3e-3]), group)
    assert got[1] == 0.0 and got.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(got[[0, 2]], routed_flow_shares(
        depth[[0, 2]], np.array([5e-4, 3e-3]), np.zeros(2, int)), rtol=1e-12)
