"""The one LP-economics core: v3 range math, fee share, value versus HODL, LVR, move costs.

Prices are token1 per token0 in human units; values are in token1 units unless a name says
`_usd`. Every function is pure, vectorised numpy and broadcasts its arguments.
"""

from models.economics._checks import EconomicsInputError
from models.economics.concentrated import (
    amounts_for_liquidity,
    centred_range,
    full_range_value,
    human_liquidity,
    in_range,
    in_range_fraction_grouped,
    in_range_fraction_ohlc,
    in_range_fraction_path,
    liquidity_for_amounts,
    liquidity_for_value,
    position_value,
    price_to_tick,
    range_efficiency,
    sqrt_price_x96_to_price,
    tick_to_price,
)
from models.economics.costs import (
    GAS_USD,
    STABLE_DEPTH_MULTIPLIER,
    gas_usd,
    rebalance_cost,
    swap_depth_usd,
    swap_impact_usd,
)
from models.economics.fees import (
    FEE_SHARE_FROM_LIQUIDITY,
    FEE_SHARE_FROM_TVL,
    diluted_fees,
    fee_share,
    usd_liquidity,
)
from models.economics.invariants import (
    DEFAULT_AMPLIFICATION,
    PROTOCOLS,
    STABLESWAP,
    UNISWAP_V2,
    UNISWAP_V3,
    WEIGHTED,
    concentrated_value_ratio,
    cp_value_ratio,
    impermanent_loss,
    smooth_stableswap_value_ratio,
    stableswap_value_ratio,
    value_ratio,
    weighted_value_ratio,
)
from models.economics.lvr import lvr_fraction, lvr_rate

__all__ = [
    "EconomicsInputError",
    # concentrated
    "tick_to_price", "price_to_tick", "sqrt_price_x96_to_price", "human_liquidity",
    "liquidity_for_amounts", "amounts_for_liquidity", "position_value", "full_range_value",
    "liquidity_for_value", "range_efficiency", "in_range", "in_range_fraction_path",
    "in_range_fraction_grouped", "in_range_fraction_ohlc", "centred_range",
    # fees
    "FEE_SHARE_FROM_LIQUIDITY", "FEE_SHARE_FROM_TVL", "fee_share", "diluted_fees",
    "usd_liquidity",
    # invariants
    "UNISWAP_V2", "UNISWAP_V3", "STABLESWAP", "WEIGHTED", "PROTOCOLS", "DEFAULT_AMPLIFICATION",
    "cp_value_ratio", "weighted_value_ratio", "stableswap_value_ratio",
    "smooth_stableswap_value_ratio", "concentrated_value_ratio", "value_ratio",
    "impermanent_loss",
    # lvr
    "lvr_fraction", "lvr_rate",
    # costs
    "GAS_USD", "STABLE_DEPTH_MULTIPLIER", "gas_usd", "swap_depth_usd", "swap_impact_usd",
    "rebalance_cost",
]
