"""Pool invariant formulas the feature layer needs; the economics core builds on them.

Kept here, at the bottom of the dependency order, so that the stored labels and the model
package's economics share one definition.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cp_value_ratio"]


def cp_value_ratio(r: np.ndarray) -> np.ndarray:
    """Constant-product 50/50 LP value / HODL value at price ratio r: 2 sqrt(r) / (1 + r)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(2.0 * np.sqrt(r) / (1.0 + r), dtype=float)
