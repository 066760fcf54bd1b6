"""LP fee income: the share of a pool's fees earned by a position's active liquidity.

Conventions
-----------
Fees accrue pro rata to active (in-range) liquidity. A position with liquidity L_pos in a
pool whose active liquidity is L_active (WITHOUT the position) earns the fraction
L_pos / (L_active + L_pos) of the pool's fees while in range and nothing outside it.
Liquidity comes from one of two sources, named by the constants below:

FEE_SHARE_FROM_LIQUIDITY ("liquidity") : the panel's `liquidity` column (human units, see
    `concentrated.human_liquidity`) and the position's L from `concentrated`.
FEE_SHARE_FROM_TVL ("tvl_approx") : no `liquidity` column; both sides in "full-range USD"
    (`usd_liquidity`): pool ~ tvl_usd x the pool's average range efficiency (1 for v2-style
    pools), position ~ position_usd x its `range_efficiency`. An approximation: TVL also
    counts out-of-range liquidity.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from models.economics._checks import FloatArray, as_float

__all__ = ["FEE_SHARE_FROM_LIQUIDITY", "FEE_SHARE_FROM_TVL", "fee_share", "diluted_fees",
           "usd_liquidity"]

FEE_SHARE_FROM_LIQUIDITY = "liquidity"
FEE_SHARE_FROM_TVL = "tvl_approx"


def fee_share(position_liquidity: ArrayLike, active_liquidity: ArrayLike) -> FloatArray:
    """Share of the pool's fees earned in range: L_pos / (L_active + L_pos).

    Parameters
    ----------
    position_liquidity : the position's liquidity (>= 0), same units as active_liquidity.
    active_liquidity : the pool's active liquidity without the position (>= 0).

    Returns
    -------
    Fraction in [0, 1]; 0 where both are 0.
    """
    pos = as_float(position_liquidity)
    den = as_float(active_liquidity) + pos
    return as_float(np.divide(pos, den, out=np.zeros(den.shape), where=den > 0))


def diluted_fees(pool_fees: ArrayLike, active_liquidity: ArrayLike,
                 position_liquidity: ArrayLike, in_range_fraction: ArrayLike = 1.0) -> FloatArray:
    """Fees earned by a position: pool_fees x fee_share x in_range_fraction.

    The one definition of the diluted fee: adding the position dilutes the incumbents, so the
    income is concave in the position size.

    Parameters
    ----------
    pool_fees : the pool's fees over the period (USD or any unit; the result has the same).
    active_liquidity : the pool's active liquidity without the position.
    position_liquidity : the position's liquidity (same units).
    in_range_fraction : fraction of the period the position was in range (0..1).

    Returns
    -------
    Fees earned by the position over the period, unit of `pool_fees`.
    """
    share = fee_share(position_liquidity, active_liquidity)
    return as_float(as_float(pool_fees) * share * as_float(in_range_fraction))


def usd_liquidity(value_usd: ArrayLike, efficiency: ArrayLike) -> FloatArray:
    """Liquidity in full-range USD units: value_usd x efficiency.

    Used when a panel has no `liquidity` column: the pool's active liquidity ~
    tvl_usd x pool efficiency, the position's ~ position_usd x `range_efficiency`.
    """
    return as_float(as_float(value_usd) * as_float(efficiency))
