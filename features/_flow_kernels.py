"""Compiled fused kernel of the flow features of one trailing window.

One pass over the (time x pool) grids computes every windowed flow feature of a window: the
running sums and counts of TVL, fees, volume, net flow, price effect, volume share and tx
counts, and the ratios and changes made of them, written straight into float32 outputs. Each
running sum does what :func:`features._kernels.window_stat` does, operation for operation, so
the values equal the unfused composition of rolling sums, means and numpy ratios. Logarithms
are left to numpy's vectorised ``log`` (of 1 + x: a third of the cost of ``log1p``, the same
value to float32 precision for the non-negative volumes and counts they read).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["FLOW_OUTPUTS", "flow_window"]

# the windowed flow features, in order; flow_window computes all but the last two
FLOW_OUTPUTS = ("fee_yield", "fee_apr", "turnover", "lp_netflow", "tvl_price_effect",
                "pair_volume_share", "pair_tvl_share_chg", "volume_chg", "tx_count_mean")


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add(row, s, n):  # type: ignore[no-untyped-def]
    """Add one grid row to the running sums (a missing value adds nothing)."""
    for p in range(row.shape[0]):
        v = np.float64(row[p])
        ok = v == v
        s[p] += v if ok else 0.0
        n[p] += 1.0 if ok else 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _remove(row, s, n):  # type: ignore[no-untyped-def]
    """Remove one grid row from the running sums; an emptied window sums to exactly zero."""
    for p in range(row.shape[0]):
        v = np.float64(row[p])
        ok = v == v
        s[p] -= v if ok else 0.0
        n[p] -= 1.0 if ok else 0.0
        if n[p] == 0:
            s[p] = 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def flow_window(tvl, fees, vol, netflow, price, vshare, tshare, tx, w, minp, ppy, outs,
                one_plus_means):  # type: ignore[no-untyped-def]
    """The windowed flow features of window w (periods) into ``outs`` (FLOW_OUTPUTS but the
    two logarithmic ones) and 1 + the window's mean volume and mean tx count into
    ``one_plus_means`` (their logarithms, taken by the caller, make the other two).

    Inputs are (T, P) float grids (``tx`` (0, P) when there are no tx counts; its mean is then
    left as is). Sums and means are NaN with fewer than ``minp`` (at least one) values; ratios
    are NaN where the mean TVL is not positive; changes are NaN in the first w periods.
    """
    n_t, n_p = tvl.shape
    has_tx = tx.shape[0] > 0
    s = np.zeros((7, n_p))  # the six inputs and tx
    n = np.zeros((7, n_p))  # counts in float64: exact, and vectorisable without int64 casts
    lo = max(minp, 1)
    fy_o, apr_o, turn_o, net_o, price_o, vs_o, tchg_o = outs
    mv_o, mtx_o = one_plus_means
    for t in range(n_t):
        _add(tvl[t], s[0], n[0])
        _add(fees[t], s[1], n[1])
        _add(vol[t], s[2], n[2])
        _add(netflow[t], s[3], n[3])
        _add(price[t], s[4], n[4])
        _add(vshare[t], s[5], n[5])
        if has_tx:
            _add(tx[t], s[6], n[6])
        if t >= w:
            b = t - w
            _remove(tvl[b], s[0], n[0])
            _remove(fees[b], s[1], n[1])
            _remove(vol[b], s[2], n[2])
            _remove(netflow[b], s[3], n[3])
            _remove(price[b], s[4], n[4])
            _remove(vshare[b], s[5], n[5])
            if has_tx:
                _remove(tx[t - w], s[6], n[6])
        s0, s1, s2, s3, s4, s5, s6 = s[0], s[1], s[2], s[3], s[4], s[5], s[6]
        n0, n1, n2, n3, n4, n5, n6 = n[0], n[1], n[2], n[3], n[4], n[5], n[6]
        fy_r, apr_r, turn_r, net_r = fy_o[t], apr_o[t], turn_o[t], net_o[t]
        price_r, vs_r, mv_r = price_o[t], vs_o[t], mv_o[t]
        for p in range(n_p):  # branch-free: every quotient computed, then NaN selected
            mean_tvl = s0[p] / n0[p]
            mean_tvl = mean_tvl if n0[p] >= lo else np.nan
            fy = (s1[p] if n1[p] >= lo else np.nan) / mean_tvl
            fy = fy if mean_tvl > 0 else np.nan
            fy_r[p] = fy
            apr_r[p] = fy * ppy / w
            turn = (s2[p] if n2[p] >= lo else np.nan) / mean_tvl
            turn_r[p] = turn if mean_tvl > 0 else np.nan
            net_r[p] = s3[p] if n3[p] >= lo else np.nan
            price_r[p] = s4[p] if n4[p] >= lo else np.nan
            vs = s5[p] / n5[p]
            vs_r[p] = vs if n5[p] >= lo else np.nan
            mv = 1.0 + s2[p] / n2[p]
            mv_r[p] = mv if n2[p] >= lo else np.nan
        tchg_r = tchg_o[t]
        if t >= w:
            now, then = tshare[t], tshare[t - w]
            for p in range(n_p):
                tchg_r[p] = np.float64(now[p]) - np.float64(then[p])
        else:
            for p in range(n_p):
                tchg_r[p] = np.nan
        if has_tx:
            mtx_r = mtx_o[t]
            for p in range(n_p):
                mtx_r[p] = 1.0 + s6[p] / n6[p] if n6[p] >= lo else np.nan
    return outs
