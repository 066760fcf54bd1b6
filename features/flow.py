"""Flow signals: volume, fees, fee yield, turnover, LP net flow, tx counts, shares within a pair."""

from __future__ import annotations

import numpy as np

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
    ppy: float, halflife: int,
) -> dict[str, np.ndarray]:
    """All flow features, named by their window."""
    out: dict[str, np.ndarray] = {
        "log_volume": np.log1p(volume), "log_tvl": np.log(np.where(tvl > 0, tvl, np.nan)),
        "fee_yield_1": _safe_div(fees, tvl),
    }
    _, price_eff, netflow = tvl_flow_split(tvl, p0, p1)
    out["tvl_price_effect_1"] = price_eff
    out["lp_netflow_1"] = netflow
    vshare = pair_share(volume, membership)
    tshare = pair_share(tvl, membership)
    out["pair_volume_share_1"] = vshare
    out["pair_tvl_share_1"] = tshare
    if tx is not None:
        out["log_tx_count"] = np.log1p(tx)
    for name, w in windows.items():
        out[f"fee_yield_{name}"] = fee_yield(fees, tvl, w)
        out[f"fee_apr_{name}"] = out[f"fee_yield_{name}"] * ppy / w
        out[f"turnover_{name}"] = turnover(volume, tvl, w)
        out[f"lp_netflow_{name}"] = rolling_sum(netflow, w)
        out[f"tvl_price_effect_{name}"] = rolling_sum(price_eff, w)
        out[f"pair_volume_share_{name}"] = rolling_mean(vshare, w)
        out[f"pair_tvl_share_chg_{name}"] = tshare - lag(tshare, w)
        out[f"volume_chg_{name}"] = np.log1p(rolling_mean(volume, w)) - np.log1p(
            lag(rolling_mean(volume, w), w))
        if tx is not None:
            out[f"tx_count_mean_{name}"] = np.log1p(rolling_mean(tx, w))
    out[f"fee_yield_ewm_hl{halflife}"] = ewm_mean(out["fee_yield_1"], halflife)
    return out
