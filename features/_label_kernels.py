"""Compiled kernels of the forward-looking labels: worst forward moves, the stress label with
its first threshold crossing, and forward ratios over (time x pool) grids (the trailing
quantile thresholds are in `features._quantile_kernels`).

Only `features.labels` may use them (they look forward by design). Like `features._kernels`
they walk time in the outer loop, are single-threaded and release the GIL.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["forward_worst", "stress_outputs", "log_moves", "forward_ratio"]


@njit(cache=True, nogil=True, error_model="numpy")
def forward_worst(ratio, net, h, div_worst, out_worst, t0, t1):  # type: ignore[no-untyped-def]
    """Worst forward move of each (t, pool) window (t, t + h], t in [t0, t1): max
    |ratio[t+k] - ratio[t]| into ``div_worst`` and max -(net[t+k] - net[t]) into
    ``out_worst``, k = 1..h; NaN in both unless every move of the window is finite.

    Both are read off the window's extremes (|r - r0| and -(m - m0) are monotone on each side
    of r0, so the worst move is the one to the highest or lowest value, the same float), kept
    as suffix extremes of blocks of h periods and a running prefix of the next block: a few
    operations per value whatever h.
    """
    n_t, n_p = ratio.shape
    t_end = min(t1, n_t - h)  # windows that end inside the grid
    for t in range(max(t0, t_end), t1):
        for p in range(n_p):
            div_worst[t, p] = np.nan
            out_worst[t, p] = np.nan
    if h < 1:  # an empty window: no move at all
        for t in range(t0, t_end):
            for p in range(n_p):
                div_worst[t, p] = -np.inf
                out_worst[t, p] = -np.inf
        return div_worst, out_worst
    smax = np.empty((h, n_p))
    smin = np.empty((h, n_p))
    mmin = np.empty((h, n_p))
    sok = np.empty((h, n_p), np.bool_)
    pmax = np.empty(n_p)
    pmin = np.empty(n_p)
    pmm = np.empty(n_p)
    pok = np.empty(n_p, np.bool_)
    for s in range(t0 + 1, t_end + 1, h):  # block [s, s + h) of window starts t + 1
        for i in range(h - 1, -1, -1):
            r, m = ratio[s + i], net[s + i]
            for p in range(n_p):
                fin = r[p] - r[p] == 0.0 and m[p] - m[p] == 0.0
                if i == h - 1:
                    smax[i, p], smin[i, p], mmin[i, p], sok[i, p] = r[p], r[p], m[p], fin
                else:
                    smax[i, p] = max(r[p], smax[i + 1, p])
                    smin[i, p] = min(r[p], smin[i + 1, p])
                    mmin[i, p] = min(m[p], mmin[i + 1, p])
                    sok[i, p] = fin and sok[i + 1, p]
        for i in range(min(h, t_end + 1 - s)):
            t = s + i - 1
            r0, m0, dw, ow = ratio[t], net[t], div_worst[t], out_worst[t]
            if i > 0:  # the window reaches row s + h + i - 1 of the next block
                r, m = ratio[s + h + i - 1], net[s + h + i - 1]
                for p in range(n_p):
                    fin = r[p] - r[p] == 0.0 and m[p] - m[p] == 0.0
                    if i == 1:
                        pmax[p], pmin[p], pmm[p], pok[p] = r[p], r[p], m[p], fin
                    else:
                        pmax[p] = max(r[p], pmax[p])
                        pmin[p] = min(r[p], pmin[p])
                        pmm[p] = min(m[p], pmm[p])
                        pok[p] = fin and pok[p]
            for p in range(n_p):
                hi, lo, ml, ok = smax[i, p], smin[i, p], mmin[i, p], sok[i, p]
                if i > 0:
                    hi, lo, ml, ok = max(hi, pmax[p]), min(lo, pmin[p]), min(ml, pmm[p]), \
                        ok and pok[p]
                if ok and r0[p] - r0[p] == 0.0 and m0[p] - m0[p] == 0.0:
                    dw[p] = max(abs(hi - r0[p]), abs(lo - r0[p]))
                    ow[p] = -(ml - m0[p])
                else:
                    dw[p] = np.nan
                    ow[p] = np.nan
    return div_worst, out_worst



@njit(cache=True, nogil=True, inline="always")
def _fmax(a, b):  # type: ignore[no-untyped-def]
    """np.fmax of two floats (the other one where one is NaN; b on a tie)."""
    if b != b:
        return a
    if a != a:
        return b
    return a if a > b else b


@njit(cache=True, nogil=True, error_model="numpy")
def stress_outputs(ratio, net, dev, scol, h, div_worst, out_worst, div_q, flt_q, n_done,
                   qstep, minp, min_div, min_flt, peg_break, stress, onset, cause,
                   div_thr, flt_thr, t0, t1):  # type: ignore[no-untyped-def]
    """The stress label of each (t, pool), t in [t0, t1), from the worst forward moves and the
    trailing quantiles (a row per pool, pool p's at row p qstep; n_done values read).

    A window is labelled where complete (finite worst moves) and scaled (``minp`` values);
    its thresholds are the quantiles floored at ``min_div`` / ``min_flt``. It crosses the
    divergence (flight) threshold where its worst move exceeds it, and a peg break where a
    stable pool's (``scol`` >= 0: its column of ``dev``) deviation exceeds ``peg_break`` in
    it. Writes ``stress`` (1, 0, NaN unlabelled), ``onset`` (first k of a crossing, NaN
    unless stressed), ``cause`` (bits 1 divergence, 2 flight, 4 peg; 0 unlabelled) and the
    thresholds (NaN unlabelled)."""
    n_p = ratio.shape[1]
    for t in range(t0, t1):
        r0, m0, dw, ow = ratio[t], net[t], div_worst[t], out_worst[t]
        st, on, ca, dt, ft = stress[t], onset[t], cause[t], div_thr[t], flt_thr[t]
        for p in range(n_p):
            qi = p * qstep
            d, f = dw[p], ow[p]
            if not (d - d == 0.0 and n_done[qi, t] >= minp):
                st[p], on[p], ca[p], dt[p], ft[p] = np.nan, np.nan, 0, np.nan, np.nan
                continue
            dth = _fmax(div_q[qi, t], min_div)
            fth = _fmax(flt_q[qi, t], min_flt)
            dt[p], ft[p] = dth, fth
            c = 0
            if d > dth:
                c |= 1
            if f > fth:
                c |= 2
            s = scol[p]
            if s >= 0:
                for k in range(1, h + 1):
                    if dev[t + k, s] > peg_break:
                        c |= 4
                        break
            ca[p] = c
            if c == 0:
                st[p], on[p] = 0.0, np.nan
                continue
            st[p] = 1.0
            for k in range(1, h + 1):
                if (abs(ratio[t + k, p] - r0[p]) > dth or -(net[t + k, p] - m0[p]) > fth
                        or (s >= 0 and dev[t + k, s] > peg_break)):
                    on[p] = k
                    break
    return stress, onset, cause, div_thr, flt_thr


@njit(cache=True, nogil=True, error_model="numpy")
def log_moves(lp0, lp1, ltvl, tvl, ratio, net):  # type: ignore[no-untyped-def]
    """Log price ratio lp0 - lp1 into ``ratio`` and log TVL net of the price effect of a 50/50
    position, log TVL (NaN unless TVL > 0) - (lp0 + lp1) / 2, into ``net`` (may be the
    inputs: each cell is read before it is written)."""
    for t in range(lp0.shape[0]):
        a, b, lt, v, r, m = lp0[t], lp1[t], ltvl[t], tvl[t], ratio[t], net[t]
        for p in range(a.shape[0]):
            x, y = a[p], b[p]
            m[p] = (lt[p] if v[p] > 0 else np.nan) - 0.5 * (x + y)
            r[p] = x - y
    return ratio, net


@njit(cache=True, nogil=True, error_model="numpy")
def forward_ratio(num, den, h, mode, scale, out, t0, t1):  # type: ignore[no-untyped-def]
    """Forward labels of rows [t0, t1) from a value h periods later (NaN past the end).

    mode 0: num[t+h] / den[t] where den[t] > 0, else NaN (a trailing sum h later per unit at
    t); 1: sqrt(num[t+h] / h x scale) (annualised volatility from a trailing sum of squares);
    2: constant-product value versus HODL minus 1 at r = (num[t+h] / num[t]) /
    (den[t+h] / den[t]), 2 sqrt(r) / (1 + r) - 1.
    """
    n_t, n_p = out.shape
    for t in range(t0, t1):
        o, u, d = out[t], num[t], den[t]
        if t + h >= n_t:
            for p in range(n_p):
                o[p] = np.nan
            continue
        uh, dh = num[t + h], den[t + h]
        for p in range(n_p):
            if mode == 0:
                o[p] = uh[p] / d[p] if d[p] > 0 else np.nan
            elif mode == 1:
                o[p] = np.sqrt(uh[p] / h * scale)
            else:
                r = (uh[p] / u[p]) / (dh[p] / d[p])
                o[p] = 2.0 * np.sqrt(r) / (1.0 + r) - 1
    return out
