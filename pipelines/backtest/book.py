"""The ledger of one strategy: LP positions and cash, booked bar by bar with the economics core."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from models.economics.costs import GAS_USD, rebalance_cost
from models.economics.fees import diluted_fees
from models.routing import routed_zap_costs
from pipelines.backtest.market import MarketData

__all__ = ["StrategyBook", "PARTS", "SINGLE_POOL"]

PARTS = ["market", "fee_income", "il", "lvr", "gas", "slippage", "turnover_usd"]
SINGLE_POOL = "slippage_single_pool"  # routed books: what the swaps cost through each pool alone


class StrategyBook:
    """One strategy's LP positions and cash, accounted bar by bar at the panel's frequency.

    Fees accrue to cash, shared by liquidity with the pool (`fees.diluted_fees`); positions
    move with the pool invariant's value growth, split into the HODL `market` move and `il`
    (value versus HODL, re-centring included). `lvr` is the loss-versus-rebalancing estimate
    inside `il`, reported, not charged twice. `slippage` is the swap fee plus price impact of
    each rebalancing swap, `gas` one transaction per pool touched.

    With `routed`, each pool's zap swap is charged at its cost routed over every pool joining
    the pair at that bar (`routing.swap_cost_usd`, one hop), never above the cost through the
    pool alone (the executor takes the cheaper quote); the single-pool cost is recorded per
    bar in the `slippage_single_pool` part (signed like `slippage`).
    """

    def __init__(self, market: MarketData, capital_usd: float,
                 gas_usd: float | Mapping[str, float] | None, min_trade_usd: float,
                 routed: bool = False) -> None:
        self.m, self.capital = market, capital_usd
        self.gas_usd, self.min_trade = gas_usd, min_trade_usd
        self.routed = routed
        n, p = market.shape
        self.value = np.zeros(p)
        self.cash = capital_usd
        self.cursor = 0
        self.parts = {k: np.zeros(n) for k in (PARTS + [SINGLE_POOL] if routed else PARTS)}
        self.pool_fees = np.zeros(p)
        self.pool_il = np.zeros(p)
        self.equity = np.full(n, capital_usd)
        self.cash_path = np.full(n, capital_usd)
        self.held = np.zeros((n, p), np.float32)
        self.trades: list[tuple[pd.Timestamp, np.ndarray]] = []

    @property
    def equity_now(self) -> float:
        """Cash plus position value at the cursor (USD)."""
        return float(self.cash + self.value.sum())

    def weights_now(self) -> np.ndarray:
        """Current drifted weights (fraction of equity; the rest is cash)."""
        eq = self.equity_now
        return self.value / eq if eq > 0 else np.zeros_like(self.value)

    def advance_to(self, b: int) -> None:
        """Account bars cursor .. b - 1 with the positions held now."""
        a, m = self.cursor, self.m
        if b <= a:
            return
        cp = np.cumprod(m.lp_ratio[a:b], axis=0)
        v_start = self.value * np.vstack([np.ones((1, cp.shape[1])), cp[:-1]])
        v_end = self.value * cp
        fee = diluted_fees(m.fees[a:b], m.active_prev[a:b], v_start * m.liq_per_value[a:b],
                           m.in_range[a:b])
        il = v_start * (m.lp_ratio[a:b] - m.hodl_ratio[a:b])
        self.parts["market"][a:b] = (v_start * (m.hodl_ratio[a:b] - 1.0)).sum(1)
        self.parts["il"][a:b] = il.sum(1)
        self.parts["lvr"][a:b] = -(v_start * m.lvr_rate[a:b]).sum(1)
        self.parts["fee_income"][a:b] = fee.sum(1)
        self.pool_fees += fee.sum(0)
        self.pool_il += il.sum(0)
        cash = self.cash + np.cumsum(fee.sum(1))
        eq = cash + v_end.sum(1)
        eq_start = np.concatenate([[self.cash + self.value.sum()], eq[:-1]])
        self.held[a:b] = v_start / np.where(eq_start > 0, eq_start, 1.0)[:, None]
        self.equity[a:b], self.cash_path[a:b] = eq, cash
        self.value, self.cash, self.cursor = v_end[-1], float(cash[-1]), b

    def pool_costs(self, e: int, delta: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gas, swap fee, price impact) in USD per pool of moving `delta` USD per pool at
        bar e, each swap through its own pool."""
        m = self.m
        gas, fee, impact = rebalance_cost(delta, m.swap_depth(e), m.fee_tier,
                                          chains=m.names("chain"),
                                          gas=GAS_USD if self.gas_usd is None else self.gas_usd)
        return gas, fee, impact

    def trade_costs(self, e: int, delta: np.ndarray) -> tuple[float, float]:
        """(gas, swap fee + impact) in USD of moving `delta` USD per pool at bar e."""
        gas, fee, impact = self.pool_costs(e, delta)
        return float(np.sum(gas)), float(np.sum(fee) + np.sum(impact))

    def routed_swap_costs(self, e: int, delta: np.ndarray, single: np.ndarray) -> np.ndarray:
        """Swap fee + impact per pool, USD, of each zap routed over all pools at bar e
        (`routing.routed_zap_costs`; never above the pool's own cost `single`)."""
        m = self.m
        return routed_zap_costs(m.pool_states(e), m.pools, m.names("token0"),
                                m.names("token1"), m.names("chain"), delta, single)

    def execute(self, e: int, target: np.ndarray | None) -> None:
        """Trade to target weights at the start of bar e; charge gas and slippage there."""
        if target is None or e >= self.m.n_bars:
            return
        eq = self.equity_now
        w = np.clip(np.nan_to_num(np.asarray(target, float)), 0.0, None)
        if w.sum() > 1.0:
            w = w / w.sum()
        delta = w * eq - self.value
        delta[np.abs(delta) < self.min_trade] = 0.0
        if self.routed:
            gas_p, fee, impact = self.pool_costs(e, delta)
            single = fee + impact
            gas, slip = float(np.sum(gas_p)), float(np.sum(self.routed_swap_costs(e, delta,
                                                                                  single)))
            self.parts[SINGLE_POOL][e] -= float(np.sum(single))
        else:
            gas, slip = self.trade_costs(e, delta)
        cost = gas + slip
        new = self.value + delta
        spare = eq - new.sum() - cost
        if spare < 0:  # fund costs by trimming buys pro rata
            buys = np.clip(delta, 0.0, None)
            cut = min(1.0, -spare / buys.sum()) if buys.sum() > 0 else 0.0
            new -= buys * cut
            spare = eq - new.sum() - cost
        self.parts["gas"][e] -= gas
        self.parts["slippage"][e] -= slip
        self.parts["turnover_usd"][e] += float(np.abs(new - self.value).sum())
        self.value, self.cash = new, spare
        self.trades.append((self.m.times[e], new / eq if eq > 0 else new * 0))

    def held_weights(self) -> np.ndarray:
        """Weights held during each bar (periods x pools)."""
        return self.held

    def frame(self, name: str, start: int) -> pd.DataFrame:
        """Per-period rows from bar `start` on: equity, cash and the signed USD components."""
        sl = slice(start, None)
        d = {"timestamp": self.m.times[sl], "strategy": name, "equity": self.equity[sl],
             "cash": self.cash_path[sl]}
        d.update({k: v[sl] for k, v in self.parts.items()})
        return pd.DataFrame(d)

    def weights_frame(self, name: str) -> pd.DataFrame:
        """Executed weights: one row per trade date, one column per pool."""
        if not self.trades:
            return pd.DataFrame(columns=["timestamp", "strategy", *self.m.pools])
        w = pd.DataFrame(np.vstack([x for _, x in self.trades]), columns=self.m.pools)
        w.insert(0, "strategy", name)
        w.insert(0, "timestamp", [t for t, _ in self.trades])
        return w
