"""Time-ordered train / tail splits with a purge gap of the label horizon (never shuffled)."""

from __future__ import annotations

import numpy as np

__all__ = ["purged_tail_split"]


def purged_tail_split(
    time_codes: np.ndarray, tail_frac: float, horizon_periods: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (head, tail): the last ``tail_frac`` of time, and the rows before it purged.

    Parameters
    ----------
    time_codes : per-row period index on the panel's time grid (0 = first period).
    tail_frac : share of the time span held out at the end (calibration / validation), 0-1.
    horizon_periods : label horizon h in periods; a label at t covers (t, t + h].

    Returns
    -------
    head : rows with t + h < first tail period, so no head label window reaches a tail row.
    tail : rows at or after the first tail period.
    """
    codes = np.asarray(time_codes)
    if not 0 < tail_frac < 1:
        raise ValueError(f"tail_frac must be in (0, 1), got {tail_frac}")
    if horizon_periods < 0:
        raise ValueError(f"horizon_periods must be >= 0, got {horizon_periods}")
    if len(codes) == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    tail = codes >= np.quantile(codes, 1 - tail_frac)
    first = codes[tail].min()
    return codes + horizon_periods < first, tail
