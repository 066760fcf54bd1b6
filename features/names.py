"""Feature column names derived from durations: the one place that spells them.

A name carries the duration it covers, never a count of periods (24 periods are a day on an
hourly panel and more than three weeks on a daily one): ``rv_24h``, ``fee_yield_7d``,
``ewma_vol_hl12h``. A feature over the last period carries the period's own duration
(``ret_1h`` on an hourly panel, ``ret_24h`` on a daily one). Models ask these functions for a
column instead of spelling it.
"""

from __future__ import annotations

import pandas as pd

from features.schema import FREQUENCIES, parse_duration

__all__ = ["duration_label", "window", "ewm", "period", "ratio", "har_columns", "HAR_WINDOWS",
           "RET", "RV", "EWMA_VOL", "FEE_YIELD", "FEE_YIELD_EWM", "HAR", "LOG_TVL"]

RET = "ret"
RV = "rv"
EWMA_VOL = "ewma_vol"
FEE_YIELD = "fee_yield"
FEE_YIELD_EWM = "fee_yield_ewm"
HAR = "har"
LOG_TVL = "log_tvl"
HAR_WINDOWS = ("24h", "7d", "30d")  # daily, weekly, monthly components of the HAR model

_DAY, _HOUR, _MINUTE = pd.Timedelta(days=1), pd.Timedelta(hours=1), pd.Timedelta(minutes=1)


def duration_label(duration: str | pd.Timedelta) -> str:
    """Canonical label of a duration: '7d' for two days or more in whole days, else '24h', '5min'.

    Spellings of one duration share a label ('1d' and '24h' -> '24h', '168h' -> '7d').
    Raises ValueError for a duration that is not a whole number of minutes.
    """
    td = parse_duration(duration)
    if td >= 2 * _DAY and td % _DAY == pd.Timedelta(0):
        return f"{td // _DAY}d"
    if td % _HOUR == pd.Timedelta(0):
        return f"{td // _HOUR}h"
    if td % _MINUTE == pd.Timedelta(0):
        return f"{td // _MINUTE}min"
    raise ValueError(f"duration {duration!r} is not a whole number of minutes")


def window(stem: str, duration: str | pd.Timedelta) -> str:
    """Column of a feature over a trailing window, e.g. ('rv', '1d') -> 'rv_24h'."""
    return f"{stem}_{duration_label(duration)}"


def ewm(stem: str, halflife: str | pd.Timedelta) -> str:
    """Column of an exponentially weighted feature, e.g. ('ewma_vol', '12h') -> 'ewma_vol_hl12h'."""
    return f"{stem}_hl{duration_label(halflife)}"


def period(stem: str, freq: str) -> str:
    """Column of a feature over the panel's last period, e.g. ('ret', '1h') -> 'ret_1h'."""
    return window(stem, FREQUENCIES[freq])


def ratio(stem: str, short: str | pd.Timedelta, long: str | pd.Timedelta) -> str:
    """Column comparing two windows, e.g. ('rv_ratio', '6h', '30d') -> 'rv_ratio_6h_30d'."""
    return f"{stem}_{duration_label(short)}_{duration_label(long)}"


def har_columns() -> list[str]:
    """Columns of the HAR components (realised volatility over a day, a week, a month)."""
    return [window(HAR, w) for w in HAR_WINDOWS]
