"""Cross-pool signals: market aggregates, beta/correlation, contagion, lead-lag, peg deviation.

Neighbours are the other pools that share a token. Given the pools' tokens
(:func:`token_groups`), neighbour sums and maxima go through per-token and per-pair totals in
one pass over the grid (O(periods x pools)); a dense adjacency matrix
(:func:`token_adjacency`) is also accepted and costs O(periods x pools^2). Market-wide series
are returned as read-only broadcast views (one value per period, the same for every pool).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from features import _kernels as kern
from features import _network_kernels as netk
from features import names
from features._wide import lag, rolling_corr, rolling_max, rolling_sum, run_all

__all__ = ["TokenGroups", "token_groups", "token_adjacency", "market_aggregates",
           "contagion_exposure", "neighbour_mean", "peg_deviation", "network_features"]

_STORED = np.float32  # dtype of features nothing else reads


@dataclass(frozen=True)
class TokenGroups:
    """Which tokens each pool holds: the neighbour structure without a pools x pools matrix.

    tokens : (pools x 2) token numbers of token0 and token1.
    pair : (pools,) number of the pool's unordered token pair.
    """

    tokens: np.ndarray
    pair: np.ndarray

    def dense(self) -> np.ndarray:
        """Pools x pools matrix: 1 where two different pools share a token."""
        t0, t1 = self.tokens[:, 0], self.tokens[:, 1]
        share = ((t0[:, None] == t0[None, :]) | (t0[:, None] == t1[None, :])
                 | (t1[:, None] == t0[None, :]) | (t1[:, None] == t1[None, :]))
        np.fill_diagonal(share, False)
        return share.astype(float)


def token_groups(token0: list[str], token1: list[str]) -> TokenGroups:
    """Token and pair numbers of each pool, from its token0 and token1 symbols."""
    if len(token0) != len(token1):
        raise ValueError(f"token_groups: {len(token0)} token0 symbols but {len(token1)} "
                         "token1 symbols")
    both = np.asarray(list(token0) + list(token1), dtype=object).astype(str)
    _, codes = np.unique(both, return_inverse=True)
    tokens = codes.reshape(2, -1).T.astype(np.int64)
    lo, hi = tokens.min(axis=1), tokens.max(axis=1)
    _, pair = np.unique(lo * (tokens.max() + 1 if tokens.size else 1) + hi,
                        return_inverse=True)
    return TokenGroups(tokens=np.ascontiguousarray(tokens), pair=pair.astype(np.int64))


def token_adjacency(token0: list[str], token1: list[str]) -> np.ndarray:
    """Pools x pools matrix: 1 where two different pools share a token."""
    return token_groups(token0, token1).dense()


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
    mkt_rv = netk.row_nanmedian(np.ascontiguousarray(rv), np.empty(rv.shape[0]))
    return {
        "mkt_ret": _nanmean_rows(ret),
        "mkt_rv": mkt_rv,
        "mkt_log_volume": np.log1p(np.nansum(volume, axis=1)),
        "mkt_netflow": _nanmean_rows(netflow, tvl),
    }


def _neighbours(x: np.ndarray, adjacency: np.ndarray | TokenGroups, want_max: bool,
                dtype: DTypeLike = np.float64) -> np.ndarray:
    xf = np.ascontiguousarray(x, dtype=np.float64)
    out: np.ndarray = np.empty(xf.shape, dtype=dtype)
    if isinstance(adjacency, TokenGroups):
        if not want_max:
            return netk.neighbour_mean(xf, adjacency.tokens, adjacency.pair, out)
        return kern.group_neighbours(xf, adjacency.tokens, adjacency.pair, want_max, out)
    if want_max:
        cols, rows = np.nonzero(np.asarray(adjacency).T)  # neighbours of each pool, listed
        indptr = np.searchsorted(cols, np.arange(xf.shape[1] + 1)).astype(np.int64)
        return kern.listed_max(xf, indptr, rows.astype(np.int64), out)
    valid = (~np.isnan(xf)).astype(float)
    num = np.nan_to_num(xf) @ adjacency
    den = valid @ adjacency
    with np.errstate(invalid="ignore", divide="ignore"):
        out[...] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return out


def neighbour_mean(x: np.ndarray, adjacency: np.ndarray | TokenGroups,
                   dtype: DTypeLike = np.float64) -> np.ndarray:
    """Mean over the other pools that share a token (NaN-aware)."""
    return _neighbours(x, adjacency, False, dtype)


def contagion_exposure(stress_score: np.ndarray, adjacency: np.ndarray | TokenGroups,
                       dtype: DTypeLike = np.float64) -> np.ndarray:
    """Largest stress score among the other pools that share a token with each pool."""
    return _neighbours(stress_score, adjacency, True, dtype)


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
    adjacency: np.ndarray | TokenGroups, stable0: np.ndarray, stable1: np.ndarray,
    corr_window: int, short_window: int, window_labels: tuple[str, str], freq: str,
) -> dict[str, np.ndarray]:
    """All cross-pool features; window_labels = (short window, correlation window) durations.

    ``adjacency`` is the pools' :class:`TokenGroups` (linear cost) or their dense
    :func:`token_adjacency` matrix.
    """
    short, corr_label = window_labels
    shape = ret.shape
    mkt = market_aggregates(ret, rv_short, volume, netflow, tvl)
    out: dict[str, np.ndarray] = {}
    for k, v in mkt.items():
        out[k] = np.broadcast_to(v[:, None], shape)
    out[names.window("mkt_netflow", short)] = np.broadcast_to(
        rolling_sum(mkt["mkt_netflow"][:, None], short_window), shape)
    corr, beta = rolling_corr(ret, mkt["mkt_ret"], corr_window, dtype=_STORED)
    out[names.window("mkt_corr", corr_label)] = corr
    out[names.window("mkt_beta", corr_label)] = beta
    with np.errstate(invalid="ignore", divide="ignore"):
        vol_ratio = rv_short / rv_long
        flow_short = rolling_sum(netflow, short_window)
        # stress score: volatility well above its own norm, or liquidity leaving
        stress_score = np.log(np.where(vol_ratio > 0, vol_ratio, np.nan)) - 10 * np.fmin(
            flow_short, 0)
    del vol_ratio
    out["stress_score"] = stress_score
    peg = peg_deviation(p0, p1, stable0, stable1)
    # the neighbour passes are independent compiled kernels: on the build's threads
    (out["contagion_max"], out["contagion_mean"], out["neighbour_netflow"],
     out[names.period("leadlag_neighbour_ret", freq)], peg_max, peg_nb) = run_all([
        lambda: contagion_exposure(stress_score, adjacency, _STORED),
        lambda: neighbour_mean(stress_score, adjacency, _STORED),
        lambda: neighbour_mean(flow_short, adjacency, _STORED),
        lambda: neighbour_mean(lag(ret), adjacency, _STORED),
        lambda: rolling_max(peg, short_window, dtype=_STORED),
        lambda: neighbour_mean(peg, adjacency, _STORED)])
    out["peg_dev"] = peg
    out[names.window("peg_dev_max", short)] = peg_max
    out["neighbour_peg_dev"] = peg_nb
    return out
