"""Panel frequencies ('1min', '1h', '1d') and durations ('24h', '7d') in periods."""

from __future__ import annotations

import re

import pandas as pd

from features.errors import DataValidationError

__all__ = ["FREQUENCIES", "check_freq", "freq_step", "parse_duration", "duration_periods",
           "window_periods"]

FREQUENCIES = {
    "1min": pd.Timedelta(minutes=1), "1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1),
}


def parse_duration(value: str | pd.Timedelta) -> pd.Timedelta:
    """Parse a duration such as '24h' or '7d' into a Timedelta."""
    if isinstance(value, str):
        value = re.sub(r"(\d)d\b", r"\1D", value.strip())  # pandas deprecates lowercase 'd'
    try:
        td = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid duration {value!r}: expected e.g. '6h', '24h', '7d'") from exc
    if td <= pd.Timedelta(0):
        raise ValueError(f"invalid duration {value!r}: must be positive")
    return td


def check_freq(freq: str, source: str | None = None) -> str:
    """Return the canonical panel frequency ('1min', '1h' or '1d'); raise on anything else."""
    canon = str(freq).strip().lower()
    canon = {"1t": "1min", "60min": "1h", "24h": "1d"}.get(canon, canon)
    if canon not in FREQUENCIES:
        raise DataValidationError(
            f"unknown frequency {freq!r}; accepted frequencies: {', '.join(FREQUENCIES)}",
            source=source, field="freq", rule="declared frequency")
    return canon


def freq_step(freq: str) -> pd.Timedelta:
    """One period of a panel frequency as a Timedelta (usable as a pandas ``freq``)."""
    return FREQUENCIES[check_freq(freq)]


def duration_periods(duration: str | pd.Timedelta, freq: str) -> int:
    """Number of whole panel periods in a duration, e.g. ('24h', '1h') -> 24, ('7d', '1d') -> 7."""
    return int(parse_duration(duration) // freq_step(freq))


def window_periods(duration: str | pd.Timedelta, freq: str) -> int:
    """Number of whole panel periods in a duration (0 when shorter than two periods)."""
    n = duration_periods(duration, freq)
    return n if n >= 2 else 0
