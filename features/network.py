"""Cross-pool signals: market aggregates, beta/correlation, contagion, lead-lag, peg deviation."""

from __future__ import annotations

import warnings

import numpy as np

from features import names
from features._wide import lag, rolling_corr, rolling_max, rolling_sum

__all__ = ["token_adjacency", "market_aggregates", "contagion_exposure", "neighbour_mean",
           "peg_deviation", "network_features"]


def token_adjacency(token0: list[str], token1: list[str]) -> np.ndarray:
    """Pools x pools matrix: 1 where two different pools share a token."""
    t0, t1 = np.asarray(token0), np.asarray(token1)
    share = ((t0[:, None] == t0[None, :]) | (t0[:, None] == t1[None, :])
             | (t1[:, None] == t0[None, :]) | (t1[:, None] == t1[None, :]))
    np.fill_diagonal(share, False)
    return share.astype(float)


def _nanmean_rows(x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-period mean across pools ignoring NaN (optionally weighted)."""
    w = np.ones_like(x) if weights is None else np.nan_to_num(weights)
    valid = ~np.isnan(x) & (w > 0)
    num = np.where(valid, x * w, 0.0).sum(axis=1)
    den = np.where(valid, w, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def market_aggregates(
    ret: np.ndarray, rv: np.ndarray, volume: np.ndarray, netflow: np.ndarray, tvl: np.ndarray
) -> dict[str, np.ndarray]:
    """Market-wide per-period series: return, median volatility, log volume, net LP flow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mkt_rv = np.nanmedian(rv, axis=1)
    return {
        "mkt_ret": _nanmean_rows(ret),
        "mkt_rv": mkt_rv,
        "mkt_log_volume": np.log1p(np.nansum(volume, axis=1)),
        "mkt_netflow": _nanmean_rows(netflow, tvl),
    }


def neighbour_mean(x: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Mean over the other pools that share a token (NaN-aware)."""
    valid = (~np.isnan(x)).astype(float)
    num = np.nan_to_num(x) @ adjacency
    den = valid @ adjacency
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def contagion_exposure(stress_score: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Largest stress score among the other pools that share a token with each pool."""
    out = np.full_like(stress_score, np.nan)
    s = np.where(np.isnan(stress_score), -np.inf, stress_score)
    for j in range(adjacency.shape[0]):
        nb = np.flatnonzero(adjacency[:, j])
        if len(nb):
            m = s[:, nb].max(axis=1)
            out[:, j] = np.where(np.isfinite(m), m, np.nan)
    return out


def peg_deviation(p0: np.ndarray, p1: np.ndarray, stable0: np.ndarray,
                  stable1: np.ndarray) -> np.ndarray:
    """Absolute deviation from 1 USD of the pool's stablecoin legs (NaN if none)."""
    d0 = np.where(stable0[None, :], np.abs(p0 - 1), np.nan)
    d1 = np.where(stable1[None, :], np.abs(p1 - 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.fmax(d0, d1)


def network_features(
    ret: np.ndarray, rv_short: np.ndarray, rv_long: np.ndarray, volume: np.ndarray,
    netflow: np.ndarray, tvl: np.ndarray, p0: np.ndarray, p1: np.ndarray,
    adjacency: np.ndarray, stable0: np.ndarray, stable1: np.ndarray,
    corr_window: int, short_window: int, window_labels: tuple[str, str], freq: str,
) -> dict[str, np.ndarray]:
    """All cross-pool features; window_labels = (short window, correlation window) durations."""
    short, corr_label = window_labels
    T, P = ret.shape
    mkt = market_aggregates(ret, rv_short, volume, netflow, tvl)
    out: dict[str, np.ndarray] = {}
    for k, v in mkt.items():
        out[k] = np.repeat(v[:, None], P, axis=1)
    out[names.window("mkt_netflow", short)] = np.repeat(
        rolling_sum(mkt["mkt_netflow"][:, None], short_window)[:, 0:1], P, axis=1)
    corr, beta = rolling_corr(ret, out["mkt_ret"], corr_window)
    out[names.window("mkt_corr", corr_label)] = corr
    out[names.window("mkt_beta", corr_label)] = beta
    with np.errstate(invalid="ignore", divide="ignore"):
        vol_ratio = rv_short / rv_long
    flow_short = rolling_sum(netflow, short_window)
    # stress score: volatility well above its own norm, or liquidity leaving
    stress_score = np.log(np.where(vol_ratio > 0, vol_ratio, np.nan)) - 10 * np.fmin(
        flow_short, 0)
    out["stress_score"] = stress_score
    out["contagion_max"] = contagion_exposure(stress_score, adjacency)
    out["contagion_mean"] = neighbour_mean(stress_score, adjacency)
    out["neighbour_netflow"] = neighbour_mean(flow_short, adjacency)
    out[names.period("leadlag_neighbour_ret", freq)] = neighbour_mean(lag(ret), adjacency)
    peg = peg_deviation(p0, p1, stable0, stable1)
    out["peg_dev"] = peg
    out[names.window("peg_dev_max", short)] = rolling_max(peg, short_window)
    out["neighbour_peg_dev"] = neighbour_mean(peg, adjacency)
    return out
