"""Per-state reuse of the allocator's inputs: a request on a prepared pool set decides and
prices exactly as a cold ``allocate`` does, and the reused arrays cannot be changed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.allocation import AllocationError, AllocatorConfig, allocate
from models.allocation.allocate import allocate_prepared
from models.allocation.inputs import check_forecasts, with_current
from tests.test_allocator_inputs import _market as random_market


def _market(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forecasts and metadata of n random pools (the allocator-input tests' market)."""
    fc, _, meta = random_market(n, seed)
    return fc, meta


@pytest.mark.parametrize("seed", range(4))
def test_prepared_pool_set_decides_like_a_cold_allocate(seed: int) -> None:
    fc, meta = _market(20, seed)
    prepared = check_forecasts(fc, meta)
    rng = np.random.default_rng(100 + seed)
    for _ in range(6):  # varied capital, positions and risk on the same prepared inputs
        cur = np.zeros(len(fc))
        held = rng.choice(len(fc), 4, replace=False)
        cur[held] = rng.dirichlet(np.ones(4)) * rng.uniform(0.2, 0.9)
        cfg = AllocatorConfig(capital_usd=float(10 ** rng.uniform(5, 7.5)),
                              risk_aversion=float(rng.choice([0.0, 1.0])),
                              stress_loss=float(rng.choice([0.0, 0.2])), gas_usd=5.0)
        warm = allocate_prepared(with_current(prepared, cur), cfg)
        cold = allocate(fc, pd.Series(cur, index=fc.index), meta, cfg)
        pd.testing.assert_series_equal(warm.weights, cold.weights, rtol=0, atol=0)
        pd.testing.assert_frame_equal(warm.expected, cold.expected, rtol=0, atol=0)
        assert warm.reasons == cold.reasons and warm.fallback_chain == cold.fallback_chain
        for c, v in warm.expected_columns.items():
            np.testing.assert_array_equal(np.asarray(v), cold.expected[c].to_numpy())
    assert any(k[0] == "fixed" for k in prepared.memo if isinstance(k, tuple))


def test_reused_arrays_are_read_only_and_the_callers_frame_is_not() -> None:
    fc, meta = _market(6, 9)
    prepared = check_forecasts(fc, meta)
    allocate_prepared(with_current(prepared, np.zeros(6)), AllocatorConfig())
    with pytest.raises(ValueError):
        prepared.values["fee_yield"][0] = 1.0
    names, _, inc = prepared.token_incidence()
    with pytest.raises(ValueError):
        inc[0, 0] = 5.0
    fc.loc["pool-000", "fee_yield"] = 0.5  # the caller's forecasts stay theirs to change
    assert fc.loc["pool-000", "fee_yield"] == 0.5 and names == sorted(names)


def test_current_weights_are_checked_per_request() -> None:
    fc, meta = _market(5, 2)
    prepared = check_forecasts(fc, meta)
    with pytest.raises(AllocationError, match="pool-001.*current_weights"):
        with_current(prepared, np.array([0.0, -0.2, 0.0, 0.0, 0.0]))
    with pytest.raises(AllocationError, match="current_weights"):
        with_current(prepared, np.zeros(4))
    a = with_current(prepared, pd.Series({"pool-003": 0.4}))
    np.testing.assert_array_equal(a.prev, [0.0, 0.0, 0.0, 0.4, 0.0])
    assert a.memo is prepared.memo and not prepared.prev.any()
