"""Forward-looking targets over a horizon h. The only module that looks forward.

Every label at t is computed from data in (t, t + h] and the state at t it is measured against
(prices and TVL at t, and thresholds scaled by the pool's history known at t); it is NaN when
the window is not complete in the panel. Labels are stored apart from features and are never
model inputs.

LP stress (``forward_lp_stress``): an LP who deposits at t is in stress over (t, t + h] when,
at some period of the window,
- divergence: the pool's relative price has moved so far from its price at t that LP value
  versus HODL has fallen by more than the pool usually sees over a horizon,
- liquidity flight: TVL net of the price effect has fallen by more than the pool usually sees,
- peg break (pools of two stablecoins): a leg is more than ``peg_break`` away from 1 USD.
"Usually" is a trailing quantile of the same forward quantity over the pool's completed past
windows, known at t (causal scaling), with a floor so that calm pools do not label noise.
Each stressed row also gets the periods until the first crossing (the onset) and the causes.

Why divergence stands for LP value versus HODL: for constant-product, stableswap and symmetric
concentrated pools the value ratio is a decreasing function of |log r| alone (r: price ratio
to entry). A quantile commutes with a monotone map, so "the loss exceeds the trailing q-quantile
of past losses" is the same event as "|log r| exceeds the trailing q-quantile of past |log r|".
The label therefore needs no copy of the value formula of ``models.economics.invariants``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from features import _label_kernels as kern
from features import _quantile_kernels as qkern
from features._wide import feature_threads, rolling_count, rolling_max, rolling_sum, run_all
from features.amm import cp_value_ratio

__all__ = ["forward_window_sum", "forward_fee_yield", "forward_volatility", "forward_il",
           "forward_lp_stress", "StressLabels", "LABEL_COLUMNS", "FWD_FEE_YIELD",
           "FWD_VOLATILITY", "FWD_IL", "FWD_STRESS", "FWD_STRESS_ONSET", "FWD_STRESS_CAUSE",
           "CAUSE_DIVERGENCE", "CAUSE_FLIGHT", "CAUSE_PEG", "CAUSE_NAMES"]

FWD_FEE_YIELD = "fwd_fee_yield"
FWD_VOLATILITY = "fwd_volatility"
FWD_IL = "fwd_il"
FWD_STRESS = "fwd_stress"
FWD_STRESS_ONSET = "fwd_stress_onset"  # periods from t to the first crossing, 1..h
FWD_STRESS_CAUSE = "fwd_stress_cause"  # bit mask of the conditions that crossed
LABEL_COLUMNS = [FWD_FEE_YIELD, FWD_VOLATILITY, FWD_IL, FWD_STRESS]

CAUSE_DIVERGENCE, CAUSE_FLIGHT, CAUSE_PEG = 1, 2, 4
CAUSE_NAMES = {CAUSE_DIVERGENCE: "divergence", CAUSE_FLIGHT: "flight", CAUSE_PEG: "peg"}


def _lead(x: np.ndarray, k: int) -> np.ndarray:
    """Value k periods later (NaN past the end)."""
    out = np.full_like(x, np.nan, dtype=float)
    if k < x.shape[0]:
        out[:-k] = x[k:]
    return out


def forward_window_sum(x: np.ndarray, h: int) -> np.ndarray:
    """Sum of x over (t, t + h]; NaN unless all h values are present."""
    s = _lead(rolling_sum(x, h, min_periods=h), h)
    return s


def _forward_count(x: np.ndarray, h: int) -> np.ndarray:
    """Valid values of x in (t, t + h]."""
    return _lead(rolling_count(x, h), h)


def _forward_max(x: np.ndarray, h: int) -> np.ndarray:
    """Max of x over (t, t + h], NaN if the window is incomplete."""
    m = _lead(rolling_max(x, h), h)
    return np.where(_forward_count(x, h) >= h, m, np.nan)


def forward_fee_yield(fees: np.ndarray, tvl: np.ndarray, h: int) -> np.ndarray:
    """Fees over (t, t + h] per dollar of TVL at t (fraction per horizon)."""
    if _is_grid(fees, tvl):
        return _forward_ratio(rolling_sum(fees, h, min_periods=h), tvl, h, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tvl > 0, forward_window_sum(fees, h) / np.where(tvl > 0, tvl, 1), np.nan)


def forward_volatility(ret: np.ndarray, h: int, ppy: float) -> np.ndarray:
    """Annualised realised volatility of returns over (t, t + h]."""
    if _is_grid(ret) and h >= 1:
        sums = rolling_sum(ret * ret, h, min_periods=h)
        return _forward_ratio(sums, sums, h, 1, ppy)
    return np.sqrt(forward_window_sum(ret * ret, h) / h * ppy)


def forward_il(p0: np.ndarray, p1: np.ndarray, h: int) -> np.ndarray:
    """Constant-product LP value vs HODL minus 1 over (t, t + h] (<= 0)."""
    if _is_grid(p0, p1) and h >= 1:
        return _forward_ratio(p0, p1, h, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (_lead(p0, h) / p0) / (_lead(p1, h) / p1)
    return cp_value_ratio(r) - 1


def _is_grid(*xs: np.ndarray) -> bool:
    """All are C-ordered float64 (periods x pools) grids of one shape (the compiled path)."""
    return all(isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.float64
               and x.flags.c_contiguous and x.shape == xs[0].shape for x in xs)


def _forward_ratio(num: np.ndarray, den: np.ndarray, h: int, mode: int,
                   scale: float = 1.0) -> np.ndarray:
    """``kern.forward_ratio`` over a new grid, rows spread over the build threads."""
    out = np.empty(num.shape)
    _by_time(partial(kern.forward_ratio, num, den, int(h), mode, float(scale), out), len(out))
    return out


@dataclass(frozen=True)
class StressLabels:
    """Forward LP-stress label of each (period, pool) and what it is made of.

    Attributes
    ----------
    stress : 1.0 stressed in (t, t + h], 0.0 not, NaN incomplete window or too little history
    onset : periods from t to the first crossing (1..h) where stressed, else NaN
    cause : bit mask of the conditions that crossed in the window (CAUSE_*), 0 when calm
    divergence_threshold, flight_threshold : the thresholds in force at t (log units)
    """

    stress: np.ndarray
    onset: np.ndarray
    cause: np.ndarray
    divergence_threshold: np.ndarray
    flight_threshold: np.ndarray


def _trailing_quantiles(series: list[np.ndarray], h: int, q: float, history: int,
                        min_history: int, pooled: bool = False
                        ) -> tuple[list[np.ndarray], np.ndarray]:
    """Per (periods x pools) array: the q-quantile ("lower") of the forward worst values of
    windows completed by t (those at t - h or earlier, over the last ``history`` periods; NaN
    with fewer than ``min_history`` values), as a (pools x periods) array, and how many values
    the first one read (the series are NaN together). ``pooled``: one quantile per period over
    the windows of every pool together, as a (1 x periods) array. Pools are spread over the
    build threads (each one's quantile reads that pool alone)."""
    args = (int(h), int(history), int(max(1, min_history)), float(q))
    cols = [np.ascontiguousarray(w, dtype=np.float64) for w in series]
    if pooled:
        outs = [(np.empty((1, len(x))), np.empty((1, len(x)), np.int64)) for x in cols]
        run_all([partial(_pooled_quantiles, x, args, o[0], n[0])
                 for x, (o, n) in zip(cols, outs, strict=True)])
        return [o for o, _ in outs], outs[0][1]
    n_t, n_p = cols[0].shape
    quant = [np.empty((n_p, n_t)) for _ in cols]
    counts = [np.empty((n_p, n_t), np.int64) for _ in cols]
    run_all([partial(_sorted_quantiles, x, a, b, args, out[a:b], count[a:b])
             for x, out, count in zip(cols, quant, counts, strict=True)
             for a, b in _ranges(n_p)])
    return quant, counts[0]


def _pooled_quantiles(x: np.ndarray, args: tuple[int, int, int, float], out: np.ndarray,
                      count: np.ndarray) -> None:
    """Trailing quantiles of every pool of x (periods x pools) together into out and count
    (periods): the values are ranked by one sort of integer keys."""
    flat = x.reshape(-1, 1)  # period-major: a column of periods x pools values
    bits = max(1, (len(flat) - 1).bit_length())
    keys = qkern.order_keys(flat, 0, 1, bits, np.empty((1, len(flat)), np.uint64))[0]
    keys.sort()
    qkern.lagged_quantile_pooled(flat[:, 0], len(x), keys, bits, *args, out, count)


def _sorted_quantiles(x: np.ndarray, a: int, b: int, args: tuple[int, int, int, float],
                      out: np.ndarray, count: np.ndarray) -> None:
    """Trailing quantiles of the pools a..b-1 of x (periods x pools) into out and count
    (pools x periods): each pool's values are ranked by one sort of integer keys."""
    bits = max(1, (x.shape[0] - 1).bit_length())
    keys = qkern.order_keys(x, a, b, bits, np.empty((b - a, x.shape[0]), np.uint64))
    keys.sort(axis=1)
    qkern.lagged_quantile_sorted(x, a, keys, bits, *args, out, count)


def _ranges(n: int) -> list[tuple[int, int]]:
    """[a, b) ranges that split 0..n in one per build thread (fewer when n is smaller)."""
    cuts = np.linspace(0, n, min(feature_threads(), max(n, 1)) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _by_time(kernel: Callable[[int, int], object], n_t: int) -> None:
    """Run a kernel over the rows [t0, t1) of a (time x pool) grid, the rows spread over the
    build threads (each row's window reads ahead, but writes only its own row)."""
    run_all([partial(kernel, a, b) for a, b in _ranges(n_t)])


def _log_moves(p0_usd: np.ndarray, p1_usd: np.ndarray, tvl: np.ndarray, ratio: np.ndarray,
               net: np.ndarray, a: int, b: int) -> None:
    """Rows a..b-1 of the log price ratio and of the log TVL net of the price effect of a
    50/50 position (features.flow.tvl_flow_split), in the inputs' precision."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lp0, lp1, tv = np.log(p0_usd[a:b]), np.log(p1_usd[a:b]), tvl[a:b]
        if _is_grid(p0_usd, p1_usd, tvl):  # the combination in one pass
            kern.log_moves(lp0, lp1, np.log(tv), tv, ratio[a:b], net[a:b])
            return
        ratio[a:b] = lp0 - lp1
        net[a:b] = np.log(np.where(tv > 0, tv, np.nan)) - 0.5 * (lp0 + lp1)


def forward_lp_stress(
    p0_usd: np.ndarray, p1_usd: np.ndarray, tvl: np.ndarray, stable_pair: np.ndarray, h: int,
    *, quantile: float = 0.95, history: int = 4380, min_history: int = 168,
    min_divergence: float = 0.05, min_flight: float = 0.15, peg_break: float = 0.02,
    pooled: bool = False,
) -> StressLabels:
    """LP stress in (t, t + h] for a depositor at t, with onset and causes (see module doc).

    Parameters
    ----------
    p0_usd, p1_usd : (periods x pools) token USD prices
    tvl : (periods x pools) TVL, USD
    stable_pair : (pools,) bool, both tokens are stablecoins (peg breaks count)
    h : horizon, periods
    quantile : trailing quantile of the pool's past forward worst values that a window must
        exceed (0.95: the worst 5 % of the pool's own horizons)
    history, min_history : trailing span of past windows read, and the fewest needed, periods
    min_divergence : floor of the divergence threshold, |log price ratio| (0.05 ~ 5 %)
    min_flight : floor of the flight threshold, log TVL net of price (0.15 ~ 14 % outflow)
    peg_break : deviation of a stablecoin leg from 1 USD that breaks the peg, USD
    pooled : thresholds from the completed windows of every pool in the arrays together (one
        market-wide scale: a loss counts as stress by its size, whichever pool it hits; the
        history fills ``min_history`` values pools-times faster); False: each pool's own
    """
    n_t, n_p = np.shape(p0_usd)
    ratio, net = np.empty((n_t, n_p)), np.empty((n_t, n_p))
    _by_time(partial(_log_moves, p0_usd, p1_usd, tvl, ratio, net), len(ratio))
    h = int(h)
    div_worst, out_worst = np.empty(ratio.shape), np.empty(ratio.shape)
    _by_time(partial(kern.forward_worst, ratio, net, h, div_worst, out_worst), len(ratio))
    (div_q, flt_q), n_done = _trailing_quantiles([div_worst, out_worst], h, quantile, history,
                                                 min_history, pooled)
    stable = np.asarray(stable_pair, bool).reshape(-1)
    scol = np.full(n_p, -1, np.int64)
    if stable.any():  # each stable pool's deviation from the peg, in its column of dev
        scol[stable] = np.arange(int(stable.sum()))
        with np.errstate(invalid="ignore"):
            dev = np.ascontiguousarray(np.fmax(np.abs(p0_usd[:, stable] - 1),
                                               np.abs(p1_usd[:, stable] - 1)), dtype=np.float64)
    else:
        dev = np.empty((0, 0))
    shape = ratio.shape
    out = StressLabels(stress=np.empty(shape), onset=np.empty(shape),
                       cause=np.empty(shape, np.int8), divergence_threshold=np.empty(shape),
                       flight_threshold=np.empty(shape))
    _by_time(partial(kern.stress_outputs, ratio, net, dev, scol, h, div_worst, out_worst,
                     div_q, flt_q, n_done, 0 if pooled else 1, int(max(1, min_history)),
                     float(min_divergence), float(min_flight), float(peg_break), out.stress,
                     out.onset, out.cause, out.divergence_threshold, out.flight_threshold),
             len(ratio))
    return out
