"""The allocator with the flow response: liquidity we add attracts swap flow as well as diluting.

`allocate` takes each pool's fee forecast as given, so adding liquidity only dilutes the fee
share. Under optimal routing (`models.routing.volume_share`) a deeper pool also captures more of
its pair's volume, at the expense of the pair's other pools. `allocate_with_flow` scales each
pool's forecast fees by volume share after our deposits / volume share before them and
re-solves until the weights settle (a damped fixed point: the solver does not see the
multiplier's slope, so the result is the allocation consistent with the flow it attracts, not
the exact optimum of the flow-aware objective).

A backtest on historical data cannot book this effect: the recorded volume did not see our
deposits. It is for forward-looking recommendations and for simulated markets that route flow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.allocation.allocate import Allocation, allocate
from models.allocation.config import AllocatorConfig
from models.routing import PoolStates, RoutingError, volume_share

__all__ = ["flow_multipliers", "allocate_with_flow"]

_FEE_COLUMNS = ("fee_yield", "fee_yield_q10", "fee_yield_q90")


def flow_multipliers(states: PoolStates, deposits_usd: pd.Series) -> pd.Series:
    """Per pool of `deposits_usd`: its pair's volume share after our deposits / before them.

    Pools without a state, alone in their pair on their chain, or whose pair cannot be routed
    get 1 (no flow response).
    """
    dep = deposits_usd.astype(float).clip(lower=0.0).fillna(0.0)
    out = pd.Series(1.0, index=dep.index, name="flow_multiplier")
    ids = [p for p in dep.index if p in set(states.pool_id.tolist())]
    if not ids:
        return out
    sub = states.select([str(p) for p in ids])
    key = [(str(c), frozenset((str(a), str(b))))
           for c, a, b in zip(sub.chain, sub.token0, sub.token1, strict=True)]
    groups: dict[tuple[str, frozenset[str]], list[str]] = {}
    for pid, k in zip(ids, key, strict=True):
        groups.setdefault(k, []).append(str(pid))
    for members in groups.values():
        if len(members) < 2 or not (dep.loc[members] > 0).any():
            continue
        pair = states.select(members)
        try:
            before = volume_share(pair)
            after = volume_share(pair, {str(k): float(v) for k, v in dep.loc[members].items()})
        except RoutingError:
            continue
        ratio = after / before.where(before > 0)
        out.loc[members] = ratio.reindex(members).fillna(1.0).to_numpy()
    return out


def allocate_with_flow(forecasts: pd.DataFrame, current_weights: pd.Series | None,
                       meta: pd.DataFrame, config: AllocatorConfig, states: PoolStates, *,
                       rounds: int = 4, damping: float = 0.5,
                       tol: float = 1e-3) -> tuple[Allocation, pd.Series]:
    """Allocate with each pool's forecast fees scaled by the flow our deposits attract.

    Parameters
    ----------
    forecasts, current_weights, meta, config : as `allocate`.
    states : the pools' current tradable states (`PoolStates`), for the flow model.
    rounds : re-solves at most; damping : weight of the new deposits in each round's update;
    tol : stop when no weight moves by more than this.

    Returns
    -------
    (allocation priced with the last multipliers, flow multiplier per pool).
    """
    alloc = allocate(forecasts, current_weights, meta, config)
    mult = pd.Series(1.0, index=forecasts.index, name="flow_multiplier")
    w = alloc.weights.reindex(forecasts.index).fillna(0.0)
    for _ in range(max(rounds, 0)):
        mult = flow_multipliers(states, w * config.capital_usd)
        fc = forecasts.copy()
        for col in _FEE_COLUMNS:
            if col in fc.columns:
                fc[col] = fc[col] * mult.reindex(fc.index).to_numpy()
        alloc = allocate(fc, current_weights, meta, config)
        new = alloc.weights.reindex(forecasts.index).fillna(0.0)
        moved = float(np.abs(new - w).max()) if len(new) else 0.0
        w = (1.0 - damping) * w + damping * new
        if moved < tol:
            break
    return alloc, mult
