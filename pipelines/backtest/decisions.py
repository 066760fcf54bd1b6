"""The allocator's decision layer, fitted walk-forward on the past decisions of the run only.

At a refit time t the fitter replays the allocator over the last `lookback` decisions whose
forecasts were made before t, booking each candidate setting with the same ledger on the bars
already seen (<= t), and keeps the setting with the best LP alpha (fees + IL - costs: what the
allocator controls). Optuna's TPE sampler (seeded, in memory) searches the space; the first
trial is always the current setting, so a refit never picks something it did not score.
Nothing at or after t enters: the forecasts are the ones the run made at the time, and the
ledger never advances past the decision bar.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.allocation import DEFAULT_CAPITAL_USD, AllocatorConfig
from pipelines.backtest.book import StrategyBook
from pipelines.backtest.market import MarketData
from pipelines.backtest.strategies import AllocatorStrategy, DecisionContext

__all__ = ["DecisionFitter", "decision_space"]

ALPHA = ("fee_income", "il", "gas", "slippage")


def decision_space(trial: Any) -> dict[str, float]:
    """Optuna search space of the decision layer."""
    return {
        "cost_horizons": trial.suggest_float("cost_horizons", 1.0, 32.0, log=True),
        "stress_loss": trial.suggest_float("stress_loss", 0.0, 0.05),
        "max_deploy": trial.suggest_float("max_deploy", 0.5, 1.0),
    }


@dataclass
class DecisionFitter:
    """Walk-forward fit of the allocator's decision parameters.

    Parameters
    ----------
    base : the allocator settings the fitted parameters override.
    every : refit after this many decisions; lookback : past decisions replayed per fit.
    trials : Optuna trials per fit; seed : sampler seed.
    """

    base: AllocatorConfig
    every: int = 13
    lookback: int = 26
    trials: int = 10
    seed: int = 0
    history: list[tuple[int, pd.DataFrame]] = field(default_factory=list)
    fits: list[dict[str, Any]] = field(default_factory=list)
    current_: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, bar: int, forecasts: pd.DataFrame | None) -> None:
        """Remember the forecasts made at a decision bar (known at that bar)."""
        if forecasts is not None:
            self.history.append((bar, forecasts))

    def config(self) -> AllocatorConfig:
        """The allocator settings in force now."""
        return dataclasses.replace(self.base, **self.current_)  # type: ignore[arg-type]

    def _score(self, market: MarketData, past: list[tuple[int, pd.DataFrame]], now: int,
               params: dict[str, float]) -> float:
        """LP alpha (fraction of capital) of the allocator replayed on past decisions."""
        cfg = dataclasses.replace(self.base, **params)  # type: ignore[arg-type]
        book = StrategyBook(market, DEFAULT_CAPITAL_USD, cfg.gas_usd, cfg.min_trade_usd)
        strategy = AllocatorStrategy(cfg)  # the same decision path as the live strategy
        for bar, fc in past:
            book.advance_to(bar + 1)
            if fc.index.intersection(pd.Index(market.pools)[market.available[bar]]).empty:
                continue
            ctx = DecisionContext(
                t=market.times[bar], pools=market.pools, available=market.available[bar],
                tvl_usd=np.nan_to_num(market.tvl[bar]), trailing_apr=np.zeros(len(market.pools)),
                current=book.weights_now(), meta=market.meta, first=False, forecasts=fc,
                equity=book.equity_now)
            book.execute(bar + 1, strategy.decide(ctx))
        book.advance_to(now + 1)
        alpha = sum(book.parts[p][: now + 1].sum() for p in ALPHA)
        return float(alpha / DEFAULT_CAPITAL_USD)

    def maybe_fit(self, market: MarketData, k: int, now: int) -> None:
        """Refit at every `every`-th decision from the decisions recorded before `now`."""
        past = [(b, f) for b, f in self.history if b < now][-self.lookback:]
        if k == 0 or k % self.every or len(past) < 4:
            return
        import optuna

        t0 = time.perf_counter()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=self.seed + k))
        start = {"cost_horizons": self.base.cost_horizons,
                 "stress_loss": self.base.stress_loss, "max_deploy": self.base.max_deploy,
                 **self.current_}
        study.enqueue_trial(start)
        study.optimize(lambda tr: self._score(market, past, now, decision_space(tr)),
                       n_trials=self.trials)
        self.current_ = {k2: float(v) for k2, v in study.best_params.items()}
        self.fits.append({"bar": now, "timestamp": market.times[now],
                          "validation_lp_alpha": float(study.best_value),
                          "default_lp_alpha": float(study.trials[0].value or np.nan),
                          **self.current_})
        self.seconds += time.perf_counter() - t0

    def table(self) -> pd.DataFrame:
        """One row per refit: when, the parameters chosen and their validation LP alpha."""
        return pd.DataFrame(self.fits)
