"""Backtest settings and result: the `[backtest]` table of a TOML config and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.schema import parse_duration
from models.allocation.config import DEFAULT_CAPITAL_USD, DEFAULT_MIN_TRADE_USD

__all__ = ["BacktestConfig", "BacktestResult"]


class BacktestConfig(BaseModel):
    """Walk-forward backtest settings ([backtest] table of a TOML config).

    Durations are strings such as "24h" or "7d"; None picks a default for the panel frequency.
    Gas is per chain (the economics core's table) unless `gas_usd` gives a flat USD figure.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: Literal["baseline", "lightgbm", "torch"] = "baseline"
    rebalance: str | None = Field(default=None, description="reallocation cadence "
                                  "(None: 24h on hourly panels, 7d on daily)")
    retrain: str | None = Field(default=None, description="model refit cadence "
                                "(None: 7d hourly, 28d daily)")
    reselect_every: int = Field(default=4, ge=1, description="refits between full model "
                                "selections on inner folds (hyper-parameters, baseline "
                                "combination, calibration); the refits between keep the "
                                "latest choice and refit on the new window. 1: every refit")
    min_train: str | None = Field(default=None, description="history before the first "
                                  "decision (None: 7d hourly, 90d daily)")
    capital_usd: float = Field(default=DEFAULT_CAPITAL_USD, gt=0,
                               description="starting capital, USD")
    allocator: dict[str, Any] = Field(default_factory=dict,
                                      description="AllocatorConfig keyword overrides")
    gas_usd: float | None = Field(default=None, ge=0, description="flat gas per pool touched, "
                                  "USD (None: per-chain table of the economics core)")
    min_trade_usd: float = Field(default=DEFAULT_MIN_TRADE_USD, ge=0,
                                 description="smaller moves are skipped")
    routed_costs: bool = Field(default=True, description="charge each rebalancing zap's swap "
                               "(fee + impact) routed over every pool of the pair at that bar "
                               "(false: through the pool alone); the single-pool figure is "
                               "kept per bar as `slippage_single_pool`")
    top_k: int = Field(default=5, ge=1, description="pools held by trailing_apr (top_k mode)")
    apr_mode: Literal["top_k", "proportional"] = "top_k"
    apr_window: str = "7d"
    preemption_lags: int = Field(default=5, ge=1,
                                 description="rebalance periods looked at before stress onsets")
    seed: int = 0
    fit_decisions: bool = Field(default=False, description="fit the allocator's decision "
                                "layer walk-forward on the run's own past decisions (off by "
                                "default: measured, it did not beat the shipped defaults)")
    decision_refit: int = Field(default=13, ge=1, description="decisions between refits")
    decision_lookback: int = Field(default=26, ge=4, description="past decisions replayed")
    decision_trials: int = Field(default=10, ge=1, description="Optuna trials per refit")
    oracle_check: bool = Field(default=True, description="fail when a strategy beats the "
                               "hindsight oracle (off only for deliberately garbled data)")
    run_id: str | None = None
    log_mlflow: bool = True
    write_report: bool = True

    @field_validator("run_id")
    @classmethod
    def _safe_run_id(cls, v: str | None) -> str | None:
        """A run id becomes a folder name: letters, digits, '-', '_' and inner '.' only."""
        if v is None:
            return v
        from features.sources.store import safe_slug

        return safe_slug(v, "run_id")

    def durations(self, freq: str) -> tuple[pd.Timedelta, pd.Timedelta, pd.Timedelta]:
        """(rebalance, retrain, min_train) for a panel frequency."""
        daily = pd.Timedelta(freq) >= pd.Timedelta(days=1)
        return (parse_duration(self.rebalance or ("7d" if daily else "24h")),
                parse_duration(self.retrain or ("28d" if daily else "7d")),
                parse_duration(self.min_train or ("90d" if daily else "7d")))


@dataclass
class BacktestResult:
    """Outcome of a backtest: metrics, per-period values, executed weights, report location."""

    metrics: dict[str, dict[str, float]]
    periods: pd.DataFrame
    weights: pd.DataFrame
    preemption: pd.DataFrame
    config: BacktestConfig
    report_dir: Path | None = None
    run_id: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    fallbacks: list[tuple[pd.Timestamp, list[str]]] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def routing_savings(self) -> pd.DataFrame:
        """Per strategy: rebalancing swap cost routed and through each pool alone, USD.

        Empty unless the backtest charged routed costs (`routed_costs`).
        """
        p = self.periods
        if "slippage_single_pool" not in p.columns:
            return pd.DataFrame(columns=["routed_usd", "single_pool_usd", "saved_usd",
                                         "saved_share"])
        g = p.groupby("strategy")[["slippage", "slippage_single_pool"]].sum(min_count=1)
        out = pd.DataFrame({"routed_usd": -g["slippage"],
                            "single_pool_usd": -g["slippage_single_pool"]})
        out["saved_usd"] = out["single_pool_usd"] - out["routed_usd"]
        single = out["single_pool_usd"].where(out["single_pool_usd"] > 0)
        out["saved_share"] = out["saved_usd"] / single
        return out

    def summary_columns(self) -> list[str]:
        """Column names of `summary_rows`."""
        from pipelines.backtest.metrics import METRICS

        return ["strategy", *METRICS]

    def summary_rows(self) -> list[list[Any]]:
        """One row per strategy: name then every metric (fractions of starting capital)."""
        from pipelines.backtest.metrics import METRICS

        return [[s, *[float(m.get(k, float("nan"))) for k in METRICS]]
                for s, m in self.metrics.items()]
