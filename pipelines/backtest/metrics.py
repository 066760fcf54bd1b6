"""Backtest metrics: returns, cost breakdown, risk, stress behaviour and oracle capture."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["METRICS", "COMPONENTS", "periods_per_year", "strategy_metrics", "all_metrics",
           "stress_bars_from_labels", "stress_bars_from_truth", "preemption_table"]

# P&L components of the per-period frame, in USD, signed (gains > 0, losses < 0).
COMPONENTS = ["market", "fee_income", "il", "lvr", "gas", "slippage"]
METRICS = ["net_return", "fee_income", "il", "lvr", "gas", "slippage", "turnover", "volatility",
           "sharpe", "max_drawdown", "cvar_5", "stress_return", "oracle_capture"]


def periods_per_year(freq: str) -> float:
    """Panel periods in a year (8760 hourly, 365 daily)."""
    return {"1h": 24.0 * 365.0, "1d": 365.0}[freq]


def _cvar(returns: np.ndarray, level: float = 0.05) -> float:
    """Mean of the worst `level` share of per-period returns (a negative number on losses)."""
    r = np.sort(returns[np.isfinite(returns)])
    if r.size == 0:
        return float("nan")
    k = max(1, int(np.ceil(level * r.size)))
    return float(r[:k].mean())


def strategy_metrics(
    periods: pd.DataFrame, capital_usd: float, freq: str, stress: np.ndarray | None = None
) -> dict[str, float]:
    """Metrics of one strategy from its per-period rows.

    Parameters
    ----------
    periods : rows of one strategy in time order with columns `equity` (USD, end of period),
        `turnover_usd` and the signed USD components in `COMPONENTS`.
    capital_usd : starting capital, USD; return-type metrics are fractions of it.
    freq : panel frequency ("1h" or "1d"), for annualisation.
    stress : bool per row, True inside a realised stress window (None: stress_return is NaN).

    Returns
    -------
    dict metric -> value. `max_drawdown` is a positive fraction of the peak; `cvar_5` is the mean
    of the worst 5 % per-period returns; `volatility` and `sharpe` are annualised (risk-free 0);
    `turnover` is traded notional (buys + sells) over starting capital.
    """
    equity = periods["equity"].to_numpy(float)
    prev = np.concatenate([[capital_usd], equity[:-1]])
    rets = np.where(prev > 0, equity / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)
    ppy = periods_per_year(freq)
    out: dict[str, float] = {"net_return": float(equity[-1] / capital_usd - 1.0)
                             if equity.size else 0.0}
    for c in COMPONENTS[1:]:
        out[c] = float(periods[c].sum() / capital_usd)
    out["turnover"] = float(periods["turnover_usd"].sum() / capital_usd)
    sd = float(np.std(rets, ddof=1)) if rets.size > 1 else float("nan")
    out["volatility"] = sd * np.sqrt(ppy)
    out["sharpe"] = float(np.mean(rets) / sd * np.sqrt(ppy)) if sd and sd > 0 else float("nan")
    peak = np.maximum.accumulate(np.concatenate([[capital_usd], equity]))
    out["max_drawdown"] = float(-(np.concatenate([[capital_usd], equity]) / peak - 1.0).min())
    out["cvar_5"] = _cvar(rets)
    if stress is not None and stress.any():
        out["stress_return"] = float(np.prod(1.0 + rets[stress]) - 1.0)
    else:
        out["stress_return"] = float("nan")
    out["oracle_capture"] = float("nan")
    return out


def all_metrics(
    periods: pd.DataFrame, capital_usd: float, freq: str, stress: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """Metrics for every strategy of a long per-period frame, with oracle capture filled in.

    oracle_capture = (net_s - net_equal_weight) / (net_oracle - net_equal_weight): the share of
    the hindsight oracle's excess over equal weight that a strategy keeps (NaN when the oracle
    does not beat equal weight).
    """
    out: dict[str, dict[str, float]] = {}
    for name, g in periods.groupby("strategy", sort=False):
        out[str(name)] = strategy_metrics(g, capital_usd, freq, stress)
    if "oracle" in out and "equal_weight" in out:
        ew = out["equal_weight"]["net_return"]
        span = out["oracle"]["net_return"] - ew
        for m in out.values():
            m["oracle_capture"] = float((m["net_return"] - ew) / span) if span > 1e-12 \
                else float("nan")
    return out


def stress_bars_from_truth(truth: pd.DataFrame, times: pd.DatetimeIndex,
                           pools: list[str]) -> np.ndarray:
    """Realised pool-level stress (bool, periods x pools) from the simulator's ground truth."""
    t = truth[truth["pool_id"].isin(pools)]
    wide = t.pivot_table(index="timestamp", columns="pool_id", values="stress", aggfunc="max")
    wide = wide.reindex(index=times, columns=pools)
    return wide.fillna(0).to_numpy(bool)


def stress_bars_from_labels(fwd_stress: np.ndarray, horizon_bars: int) -> np.ndarray:
    """Realised stress bars (periods x pools) recovered from forward stress labels.

    A label at s says stress occurs in (s, s + h]. Bar u is inside a stress window when every
    label in [u - h, u - 1] is positive: for an event spanning [e1, e2] that is exactly e1..e2.
    """
    lab = np.nan_to_num(np.asarray(fwd_stress, float), nan=0.0) > 0.5
    n, _ = lab.shape
    h = max(1, int(horizon_bars))
    out = np.zeros_like(lab)
    # count of positive labels in the trailing window [u - h, u - 1] via cumulative sums
    cs = np.vstack([np.zeros((1, lab.shape[1])), np.cumsum(lab, axis=0)])
    u = np.arange(h, n)
    out[h:] = (cs[u] - cs[u - h]) >= h
    return out


def preemption_table(
    weights: dict[str, np.ndarray],
    stress_bars: np.ndarray,
    available: np.ndarray,
    lags: list[int],
    p_stress: np.ndarray | None = None,
) -> pd.DataFrame:
    """Average weight held in a pool `lag` periods before each labelled stress onset.

    Parameters
    ----------
    weights : strategy -> held weights per bar (periods x pools, fraction of equity).
    stress_bars : realised stress per bar and pool (bool, periods x pools).
    available : pools tradable per bar (bool); the equal share is 1 / available pools.
    lags : offsets before onset, in bars.
    p_stress : allocator's predicted stress probability in force per bar (optional).

    Returns
    -------
    One row per lag: `lag_bars`, `events`, `equal_share`, one `w_<strategy>` column per strategy
    and `p_stress` (mean predicted probability for the event pool) when given.
    """
    sb = stress_bars.astype(bool)
    onset = sb & ~np.vstack([np.zeros((1, sb.shape[1]), bool), sb[:-1]])
    ti, pi = np.nonzero(onset)
    rows = []
    for lag in lags:
        keep = ti - lag >= 0
        tt, pp = ti[keep] - lag, pi[keep]
        row: dict[str, float] = {"lag_bars": float(lag), "events": float(keep.sum())}
        navail = available[tt].sum(axis=1) if tt.size else np.array([])
        row["equal_share"] = float(np.mean(1.0 / np.maximum(navail, 1))) if tt.size else np.nan
        for name, w in weights.items():
            row[f"w_{name}"] = float(np.mean(w[tt, pp])) if tt.size else float("nan")
        if p_stress is not None:
            ps = p_stress[tt, pp]
            row["p_stress"] = float(np.mean(ps[np.isfinite(ps)])) if np.isfinite(ps).any() \
                else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
