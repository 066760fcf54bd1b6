"""Flow signals: volume, fees, fee yield, turnover, LP net flow, tx counts, shares within a pair.

Features that are only stored come out as float32 (their float64 value rounded once); the
per-period series later stages read (fee yield, net flow, pair shares) stay float64.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import DTypeLike

from features import _kernels as kern
from features import names
from features._flow_kernels import FLOW_OUTPUTS, flow_window
from features._wide import ewm_mean, lag, rolling_mean, rolling_sum, run_all

__all__ = ["fee_yield", "turnover", "tvl_flow_split", "pair_share", "flow_features"]

_STORED = np.float32  # dtype of features nothing else reads


def _safe_div(a: np.ndarray, b: np.ndarray, dtype: DTypeLike = np.float64) -> np.ndarray:
    """a / b with NaN where b <= 0."""
    out: np.ndarray = np.full(np.broadcast_shapes(np.shape(a), np.shape(b)), np.nan, dtype=dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(a, b, out=out, where=b > 0)
    return out


def _log1p_stored(x: np.ndarray) -> np.ndarray:
    """log(1 + x) of non-negative amounts, as stored (float32); numpy's vectorised log."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(1.0 + x).astype(_STORED)


def fee_yield(fees: np.ndarray, tvl: np.ndarray, w: int) -> np.ndarray:
    """Fees earned per dollar of liquidity over the last w periods (fraction)."""
    return _safe_div(rolling_sum(fees, w), rolling_mean(tvl, w))


def turnover(volume: np.ndarray, tvl: np.ndarray, w: int) -> np.ndarray:
    """Swap volume per dollar of liquidity over the last w periods."""
    return _safe_div(rolling_sum(volume, w), rolling_mean(tvl, w))


def _change(lx: np.ndarray, k: int = 1) -> np.ndarray:
    """lx - lag(lx, k) (NaN in the first k periods)."""
    out = np.full(lx.shape, np.nan)
    if k < lx.shape[0]:
        np.subtract(lx[k:], lx[:-k], out=out[k:])
    return out


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def tvl_flow_split(
    tvl: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the period's log TVL change into a price effect and LP net flow.

    The price effect is that of a 50/50 constant-product position: half the log change of each
    token's USD price; the remainder is liquidity added or withdrawn.
    """
    return _flow_split(_log(tvl), p0, p1)


def _flow_split(log_tvl: np.ndarray, p0: np.ndarray,
                p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore"):
        dlog_tvl = _change(log_tvl)
        dlog_tvl[~np.isfinite(dlog_tvl)] = np.nan
        lp0, lp1 = _log(p0), _log(p1)
        price = 0.5 * (lp0 - lag(lp0) + lp1 - lag(lp1))
    return dlog_tvl, price, dlog_tvl - price


def pair_share(x: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """Each pool's share of its pair's total (membership: pools x pairs one-hot)."""
    m = np.asarray(membership)
    xs = np.nan_to_num(np.asarray(x, dtype=np.float64))
    one_hot = m.ndim == 2 and bool(((m == 0) | (m == 1)).all()) and bool(
        (m.sum(axis=1) == 1).all())
    if one_hot:  # a sum per pair, in one pass
        group = np.ascontiguousarray(m.argmax(axis=1), dtype=np.int64)
        totals = kern.group_sum(xs, group, m.shape[1], np.empty((xs.shape[0], m.shape[1])))
        totals = totals[:, group]
    else:  # a general weighting: the matrix products
        totals = xs @ m @ m.T
    xs[np.isnan(x)] = np.nan
    return _safe_div(xs, totals)


def flow_features(
    volume: np.ndarray, fees: np.ndarray, tvl: np.ndarray, tx: np.ndarray | None,
    p0: np.ndarray, p1: np.ndarray, membership: np.ndarray, windows: dict[str, int],
    ppy: float, halflives: dict[str, int], freq: str,
    shares: tuple[np.ndarray, np.ndarray] | None = None,
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
    shares : (periods x pools) each pool's share of its pair's volume and TVL, when computed
        over more pools than these (a partition of the market); default: over these pools
    """
    fy1 = names.period(names.FEE_YIELD, freq)
    log_tvl = _log(tvl)
    out: dict[str, np.ndarray] = {
        "log_volume": _log1p_stored(volume),
        names.LOG_TVL: np.where(tvl > 0, log_tvl, np.nan).astype(_STORED),
        fy1: _safe_div(fees, tvl),
    }
    _, price_eff, netflow = _flow_split(log_tvl, p0, p1)
    del log_tvl
    out[names.period("tvl_price_effect", freq)] = price_eff
    out[names.period("lp_netflow", freq)] = netflow
    vshare, tshare = (shares if shares is not None
                      else (pair_share(volume, membership), pair_share(tvl, membership)))
    out[names.period("pair_volume_share", freq)] = vshare
    out["pair_tvl_share"] = tshare
    if tx is not None:
        out["log_tx_count"] = _log1p_stored(tx)
    g_tvl, g_fees, g_vol, g_net, g_price, g_vs, g_ts = (
        np.ascontiguousarray(a, dtype=np.float64)
        for a in (tvl, fees, volume, netflow, price_eff, vshare, tshare))
    txs = (np.ascontiguousarray(tx, dtype=np.float64) if tx is not None
           else np.empty((0, volume.shape[1])))
    def window(w: int) -> list[np.ndarray]:
        """The window's features in FLOW_OUTPUTS order (tx_count_mean only with tx counts)."""
        means = (np.empty(volume.shape), np.empty(volume.shape if tx is not None else (0, 0)))
        outs = tuple(np.empty(volume.shape, _STORED) for _ in FLOW_OUTPUTS[:-2])
        flow_window(g_tvl, g_fees, g_vol, g_net, g_price, g_vs, g_ts, txs, int(w),
                    max(1, (w + 1) // 2), float(ppy), outs, means)
        log_mean_volume = np.log(means[0], out=means[0])
        chg = np.full(volume.shape, np.nan, _STORED)
        if w < len(chg):
            np.subtract(log_mean_volume[w:], log_mean_volume[:-w], out=chg[w:])
        tx_mean = [np.log(means[1], out=means[1]).astype(_STORED)] if tx is not None else []
        return [*outs, chg, *tx_mean]

    # the windows are independent: on the build's threads
    tasks = [functools.partial(window, w) for w in windows.values()]
    for name, cols in zip(windows, run_all(tasks), strict=True):
        for k, v in zip(FLOW_OUTPUTS, cols, strict=False):
            out[names.window(k, name)] = v
    for hl, n in halflives.items():
        out[names.ewm(names.FEE_YIELD_EWM, hl)] = ewm_mean(out[fy1], n, dtype=_STORED)
    return out
