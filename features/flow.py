"""Flow signals: volume, fees, fee yield, turnover, LP net flow, tx counts, shares within a pair."""

from __future__ import annotations

import numpy as np

from features import names
from features._wide import ewm_mean, lag, rolling_mean, rolling_sum

__all__ = ["fee_yield", "turnover", "tvl_flow_split", "pair_share", "flow_features"]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with NaN where b <= 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def fee_yield(fees: np.ndarray, tvl: np.ndarray, w: int) -> np.ndarray:
    """Fees earned per dollar of liquidity over the last w periods (fraction)."""
    return _safe_div(rolling_sum(fees, w), rolling_mean(tvl, w))


def turnover(volume: np.ndarray, tvl: np.ndarray, w: int) -> np.ndarray:
    """Swap volume per dollar of liquidity over the last w periods."""
    return _safe_div(rolling_sum(volume, w), rolling_mean(tvl, w))


def tvl_flow_split(
    tvl: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the period's log TVL change into a price effect and LP net flow.

    The price effect is that of a 50/50 constant-product position: half the log change of each
    token's USD price; the remainder is liquidity added or withdrawn.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        dlog_tvl = np.log(tvl) - np.log(lag(tvl))
        price = 0.5 * (np.log(p0) - np.log(lag(p0)) + np.log(p1) - np.log(lag(p1)))
    dlog_tvl = np.where(np.isfinite(dlog_tvl), dlog_tvl, np.nan)
    return dlog_tvl, price, dlog_tvl - price


def pair_share(x: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Each pool's share of its pair's total (membership: pools x pairs one-hot)."""
    xs = np.nan_to_num(x)
    totals = xs @ membership @ membership.T
    return _safe_div(np.where(np.isnan(x), np.nan, xs), totals)


def flow_features(
    volume: np.ndarray, fees: np.ndarray, tvl: np.ndarray, tx: np.ndarray | None,
    p0: np.ndarray, p1: np.ndarray, membership: np.ndarray, windows: dict[str, int],
    ppy: float, halflives: dict[str, int], freq: str,
) -> dict[str, np.ndarray]:
    """All flow features, named by the durations they cover (e.g. fee_yield_24h).

    Parameters
    ----------
    volume, fees, tvl : (periods x pools) swap volume, LP fees and TVL, USD
    tx : (periods x pools) swap counts, or None when the panel has none
    p0, p1 : (periods x pools) token USD prices
    membership : (pools x pairs) one-hot pair membership
    windows : trailing windows, duration label -> periods
    ppy : periods per year (fee APR)
    halflives : EWMA half-lives of the per-period fee yield, duration label -> periods
    freq : panel frequency (names the per-period features)
    """
    fy1 = names.period(names.FEE_YIELD, freq)
    out: dict[str, np.ndarray] = {
        "log_volume": np.log1p(volume), names.LOG_TVL: np.log(np.where(tvl > 0, tvl, np.nan)),
        fy1: _safe_div(fees, tvl),
    }
    _, price_eff, netflow = tvl_flow_split(tvl, p0, p1)
    out[names.period("tvl_price_effect", freq)] = price_eff
    out[names.period("lp_netflow", freq)] = netflow
    vshare = pair_share(volume, membership)
    tshare = pair_share(tvl, membership)
    out[names.period("pair_volume_share", freq)] = vshare
    out["pair_tvl_share"] = tshare
    if tx is not None:
        out["log_tx_count"] = np.log1p(tx)
    for name, w in windows.items():
        fy = fee_yield(fees, tvl, w)
        out[names.window(names.FEE_YIELD, name)] = fy
        out[names.window("fee_apr", name)] = fy * ppy / w
        out[names.window("turnover", name)] = turnover(volume, tvl, w)
        out[names.window("lp_netflow", name)] = rolling_sum(netflow, w)
        out[names.window("tvl_price_effect", name)] = rolling_sum(price_eff, w)
        out[names.window("pair_volume_share", name)] = rolling_mean(vshare, w)
        out[names.window("pair_tvl_share_chg", name)] = tshare - lag(tshare, w)
        mean_volume = rolling_mean(volume, w)
        out[names.window("volume_chg", name)] = np.log1p(mean_volume) - np.log1p(
            lag(mean_volume, w))
        if tx is not None:
            out[names.window("tx_count_mean", name)] = np.log1p(rolling_mean(tx, w))
    for hl, n in halflives.items():
        out[names.ewm(names.FEE_YIELD_EWM, hl)] = ewm_mean(out[fy1], n)
    return out
