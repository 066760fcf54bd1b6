"""Backtest metrics: returns, cost breakdown, risk, stress behaviour and oracle capture."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import freq_step

__all__ = ["METRICS", "COMPONENTS", "periods_per_year", "strategy_metrics", "all_metrics",
           "stress_bars_from_labels", "stress_bars_from_truth", "preemption_table",
           "check_oracle", "within_caps", "window_returns", "OracleBeatenError",
           "STRESS_WINDOWS", "SUMMARY"]

# P&L components of the per-period frame, in USD, signed (gains > 0, losses < 0).
COMPONENTS = ["market", "fee_income", "il", "lvr", "gas", "slippage"]
METRICS = ["net_return", "market", "lp_alpha", "fee_income", "il", "lvr", "gas", "slippage",
           "turnover", "volatility", "sharpe", "max_drawdown", "cvar_5", "stress_return",
           "oracle_capture", "alpha_capture"]
# the columns a terminal summary shows
SUMMARY = ["net_return", "market", "lp_alpha", "fee_income", "il", "gas", "slippage",
           "turnover", "sharpe", "max_drawdown", "stress_return", "oracle_capture",
           "alpha_capture"]
# LP alpha: what providing liquidity added on top of holding the same tokens
ALPHA_PARTS = ["fee_income", "il", "gas", "slippage"]
# named market stress windows (UTC dates, inclusive) reported when a run covers them
STRESS_WINDOWS = {"terra": ("2022-05-05", "2022-05-20"), "ftx": ("2022-11-06", "2022-11-16"),
                  "usdc_depeg": ("2023-03-09", "2023-03-15")}


class OracleBeatenError(RuntimeError):
    """A strategy beat the hindsight oracle: the plan and the ledger disagree on the economics."""


def periods_per_year(freq: str) -> float:
    """Panel periods in a year (8760 hourly, 365 daily)."""
    return float(pd.Timedelta(days=365) / freq_step(freq))


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
    for c in COMPONENTS:
        out[c] = float(periods[c].sum() / capital_usd)
    out["lp_alpha"] = float(sum(periods[c].sum() for c in ALPHA_PARTS) / capital_usd)
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
    out["oracle_capture"] = out["alpha_capture"] = float("nan")
    return out


def all_metrics(
    periods: pd.DataFrame, capital_usd: float, freq: str, stress: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """Metrics for every strategy of a long per-period frame, with oracle capture filled in.

    oracle_capture = (net_s - net_equal_weight) / (net_oracle - net_equal_weight): the share of
    the hindsight oracle's excess over equal weight that a strategy keeps (NaN when the oracle
    does not beat equal weight); alpha_capture the same on LP alpha against "oracle_lp_alpha".
    """
    out: dict[str, dict[str, float]] = {}
    for name, g in periods.groupby("strategy", sort=False):
        out[str(name)] = strategy_metrics(g, capital_usd, freq, stress)
    bounds = (("net_return", "oracle_capture", "oracle"),
              ("lp_alpha", "alpha_capture", "oracle_lp_alpha"))
    for metric, name, bound in bounds:
        if bound not in out or "equal_weight" not in out:
            continue
        ew = out["equal_weight"][metric]
        span = out[bound][metric] - ew
        for m in out.values():
            m[name] = float((m[metric] - ew) / span) if span > 1e-12 else float("nan")
    return out


def within_caps(name: str) -> bool:
    """Whether a strategy keeps the allocator's caps (the allocators and `*_capped`)."""
    return name.startswith("allocator") or name.endswith("_capped")


def check_oracle(metrics: dict[str, dict[str, float]], tol: float = 1e-9) -> list[str]:
    """Raise OracleBeatenError when a strategy within the caps beats a hindsight plan's
    bound; list the other misses as warnings.

    Each oracle's `plan_bound` is the optimum of a relaxation of the ledger under the
    allocator's caps (fees never understated, swap costs floored, gas left out), so a capped
    strategy above it means the plan and the ledger price P&L differently: an error. The
    uncapped baselines (equal weight, TVL weighted, ...) may hold more of a pool or token
    than the caps allow, and the executed plan pays gas and the ledger's full swap costs, so
    either can edge past: warnings.
    """
    warnings = []
    for bound, metric in (("oracle", "net_return"), ("oracle_lp_alpha", "lp_alpha")):
        if bound not in metrics:
            continue
        top = metrics[bound].get("plan_bound", float("nan"))
        rivals = {k: v[metric] for k, v in metrics.items() if not k.startswith("oracle")}
        over = {k: round(v, 6) for k, v in rivals.items() if np.isfinite(top) and v > top + tol}
        hard = {k: v for k, v in over.items() if within_caps(k)}
        if hard:
            raise OracleBeatenError(
                f"strategies within the caps beat the hindsight {bound}'s bound on {metric} "
                f"({top:.4f}): {hard}; the plan and the ledger price P&L differently")
        if over:
            warnings.append(f"uncapped strategies beat the hindsight {bound}'s bound on "
                            f"{metric} ({top:.4f}): {over} (they exceed the caps it plans "
                            "under)")
        done = metrics[bound][metric]
        beat = {k: round(v, 6) for k, v in rivals.items() if v > done + tol and k not in over}
        if beat:
            warnings.append(f"strategies beat the hindsight {bound} as executed on {metric} "
                            f"({done:.4f}), not its bound ({top:.4f}): {beat} (the executed "
                            "plan pays gas and the ledger's full swap costs)")
    return warnings


def window_returns(periods: pd.DataFrame, capital_usd: float, stress: np.ndarray,
                   times: pd.DatetimeIndex) -> pd.DataFrame:
    """Net return and LP alpha per strategy by calendar year and by stress window.

    Windows: each calendar year, the named market windows (`STRESS_WINDOWS`) a run covers, and
    "stress_bars" (every bar with a realised pool stress). Fractions of the equity at the
    window's start.
    """
    ts = pd.DatetimeIndex(periods["timestamp"])
    spans: list[tuple[str, np.ndarray]] = []
    for y in sorted(set(ts.year)):
        spans.append((str(y), np.asarray(ts.year == y)))
    for name, (a, b) in STRESS_WINDOWS.items():
        lo, hi = pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC") + pd.Timedelta(days=1)
        mask = np.asarray((ts >= lo) & (ts < hi))
        if mask.any():
            spans.append((name, mask))
    bar_stress = pd.Series(np.asarray(stress).any(axis=1), index=times)
    spans.append(("stress_bars", bar_stress.reindex(ts).fillna(False).to_numpy(bool)))
    rows = []
    for strat, g in periods.groupby("strategy", sort=False):
        idx = periods.index.get_indexer(g.index)
        eq = g["equity"].to_numpy(float)
        prev = np.concatenate([[capital_usd], eq[:-1]])
        ret = np.where(prev > 0, eq / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)
        alpha = g[ALPHA_PARTS].sum(axis=1).to_numpy(float) / np.where(prev > 0, prev, 1.0)
        for name, mask in spans:
            mk = mask[idx]
            if mk.any():
                rows.append({"strategy": strat, "window": name,
                             "net_return": float(np.prod(1.0 + ret[mk]) - 1.0),
                             "lp_alpha": float(alpha[mk].sum())})
    return pd.DataFrame(rows)


def stress_bars_from_truth(truth: pd.DataFrame, times: pd.DatetimeIndex,
                           pools: list[str]) -> np.ndarray:
    """Realised pool-level stress (bool, periods x pools) from the simulator's ground truth."""
    codes, names = pd.factorize(truth["pool_id"])
    col = np.where(codes >= 0, pd.Index(pools).get_indexer(pd.Index(names))[codes], -1)
    row = pd.DatetimeIndex(times).get_indexer(pd.DatetimeIndex(truth["timestamp"]))
    keep = (col >= 0) & (row >= 0)
    cell = row[keep] * len(pools) + col[keep]
    once = np.bincount(cell, minlength=len(times) * len(pools)).max(initial=0) <= 1
    if truth["stress"].dtype == bool and keep.any() and once:
        out = np.zeros(len(times) * len(pools), bool)  # one row per cell: max is the value
        out[cell] = truth["stress"].to_numpy(bool)[keep]
        return out.reshape(len(times), len(pools))
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
