"""Loss versus rebalancing (LVR): what an LP loses to arbitrageurs as the price diffuses.

Conventions
-----------
volatility : annualised volatility of the log pool price (token1 per token0), fraction.
LVR is a fraction of the position's value (token1 units) over the holding time.

Derivation (Milionis et al., 2022): for a price following geometric Brownian motion the
instantaneous LVR is sigma^2 p^2 / 2 |x'(p)| per unit time, x(p) the position's token0
holding. Full range: x = L / sqrt(p), value 2 L sqrt(p), so LVR / value = sigma^2 / 8.
Inside a v3 range x = L (1/sqrt(p) - 1/sqrt(pb)) has the same derivative while the value is
L (2 sqrt(p) - sqrt(pa) - p / sqrt(pb)), so

    LVR / value = sigma^2 / 8 x 2 sqrt(p) / (2 sqrt(p) - sqrt(pa) - p / sqrt(pb))
                = sigma^2 / 8 x range_efficiency(p, pa, pb),

and 0 outside the range (x is constant there).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from models.economics._checks import FloatArray, as_float
from models.economics.concentrated import range_efficiency

__all__ = ["lvr_fraction", "lvr_rate"]


def lvr_fraction(volatility: ArrayLike, years: ArrayLike, efficiency: ArrayLike = 1.0,
                 in_range_fraction: ArrayLike = 1.0) -> FloatArray:
    """Expected LVR as a fraction of position value: sigma^2 / 8 x years x efficiency x in range.

    Parameters
    ----------
    volatility : annualised volatility of the pool price, fraction (0.8 = 80 %).
    years : holding time, years.
    efficiency : 1 for a full-range (constant-product) position; a concentrated position's
        `range_efficiency` inside its range.
    in_range_fraction : fraction of the holding time the price is inside the range.

    Returns
    -------
    LVR over the holding time, fraction of position value (>= 0).
    """
    sig = as_float(volatility)
    return as_float(sig * sig / 8.0 * as_float(years) * as_float(efficiency)
                    * as_float(in_range_fraction))


def lvr_rate(volatility: ArrayLike, price: ArrayLike, lower: ArrayLike = 0.0,
             upper: ArrayLike = np.inf) -> FloatArray:
    """Instantaneous LVR of a range position at `price`, fraction of value per year.

    sigma^2 / 8 x range_efficiency(price, lower, upper): 0 outside the range.
    """
    return lvr_fraction(volatility, 1.0, range_efficiency(price, lower, upper))
