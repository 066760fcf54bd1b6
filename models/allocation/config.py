"""Allocator settings and the defaults every job shares (capital, minimum trade, range width)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from models.allocation.inputs import AllocationError
from models.economics.paths import DEFAULT_WIDTH

__all__ = ["AllocatorConfig", "DEFAULT_CAPITAL_USD", "DEFAULT_MIN_TRADE_USD"]

DEFAULT_CAPITAL_USD = 1_000_000.0
DEFAULT_MIN_TRADE_USD = 100.0


@dataclass(frozen=True)
class AllocatorConfig:
    """Allocator settings (fractions of capital unless stated).

    Parameters
    ----------
    capital_usd : equity allocated now (USD): sets dilution, impact and the minimum trade.
    horizon_years : length of the forecast horizon, which is also the holding period priced.
    max_weight : per-pool cap; max_token_weight : cap on the summed weight of pools holding a
        token; max_turnover : cap on sum |w - w_prev| per decision; max_deploy : cap on sum w.
    min_trade_usd : moves smaller than this are skipped (USD).
    gas_usd : USD per pool touched: None (the economics core's per-chain table), a flat
        figure, or a per-chain dict with an optional "default".
    risk_aversion : weight of the downside term (fee forecast q50 - q10 spread). 0 by default:
        the objective is the expected P&L the backtest books.
    stress_loss : loss of position value if a pool enters stress (fraction), charged as
        P(stress) x stress_loss. 0 by default: kept only where fitted walk-forward.
    contagion : share of a stressed pool's probability passed to pools sharing a token.
    v3_width : half-width of concentrated ranges (fraction), centred at the current price.
    cost_horizons : horizons over which a move's one-off cost is spread: the expected number
        of decisions a position is held. 4 is a judgement call until it is fitted walk-forward
        (1 would demand that every entry pays for itself before the next decision).
    solver : cvxpy solver name of the reference path.
    routed_costs : price each zap's swap as routed over its pair's pools in the decision
        (`costs.pair_swap_terms`: the pair's summed depth and lowest fee), as the backtest
        ledger charges it; False prices it through the pool alone.
    """

    capital_usd: float = DEFAULT_CAPITAL_USD
    horizon_years: float = 1.0 / 365.0
    max_weight: float = 0.25
    max_token_weight: float = 0.5
    max_turnover: float = 2.0
    max_deploy: float = 1.0
    min_trade_usd: float = DEFAULT_MIN_TRADE_USD
    gas_usd: float | Mapping[str, float] | None = None
    risk_aversion: float = 0.0
    stress_loss: float = 0.0
    contagion: float = 0.3
    v3_width: float = DEFAULT_WIDTH
    cost_horizons: float = 4.0
    solver: str = "CLARABEL"
    routed_costs: bool = True

    def __post_init__(self) -> None:
        """Reject settings outside their domain."""
        for name in ("max_weight", "max_token_weight", "max_deploy"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise AllocationError(f"{name} must be in (0, 1]", field=name)
        for name in ("risk_aversion", "max_turnover", "min_trade_usd", "stress_loss"):
            if getattr(self, name) < 0:
                raise AllocationError(f"{name} must be >= 0", field=name)
        for name in ("capital_usd", "horizon_years", "cost_horizons", "v3_width"):
            if getattr(self, name) <= 0:
                raise AllocationError(f"{name} must be > 0", field=name)
        if not 0.0 <= self.contagion <= 1.0:
            raise AllocationError("contagion must be in [0, 1]", field="contagion")
