"""Names the models share: forecast targets, model kinds, metrics and the score that ranks them.

Kept free of heavy imports so that the command line can offer these as choices.
"""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["Target", "ModelKind", "DEFAULT_KINDS", "QUANTILE_METRICS", "STRESS_METRICS",
           "METRIC_LABELS", "SCORE_METRIC", "metrics_for", "score_of"]


class Target(StrEnum):
    """What a model forecasts over the label horizon."""

    fee_yield = "fee_yield"  # fees per dollar of TVL, fraction per horizon
    volatility = "volatility"  # annualised realised volatility
    stress = "stress"  # probability that the stress rule fires


class ModelKind(StrEnum):
    """Families of forecasters, one model per target in each."""

    baseline = "baseline"  # EWMA proxies, HAR, the per-pool stress base rate
    seasonal_naive = "seasonal_naive"  # the trailing value over the horizon
    lightgbm = "lightgbm"
    torch = "torch"  # GRU over each pool's recent rows


DEFAULT_KINDS = (ModelKind.baseline, ModelKind.lightgbm, ModelKind.torch)

QUANTILE_METRICS = ("mase", "pinball", "coverage")
STRESS_METRICS = ("auc", "pr_auc", "brier", "base_rate", "lead_time")
METRIC_LABELS = {"mase": "MASE", "pinball": "pinball", "coverage": "cover80", "auc": "AUC",
                 "pr_auc": "PR-AUC", "brier": "Brier", "base_rate": "base rate",
                 "lead_time": "lead"}
# lower is better: mean pinball loss over q10/q50/q90, Brier score of P(stress)
SCORE_METRIC = {Target.fee_yield: "pinball", Target.volatility: "pinball",
                Target.stress: "brier"}


def metrics_for(target: str) -> tuple[str, ...]:
    """Names of the metrics that score a target."""
    return STRESS_METRICS if Target(target) is Target.stress else QUANTILE_METRICS


def score_of(metrics: dict[str, float], target: str) -> float:
    """The lower-is-better score that ranks models of a target (NaN scores rank last)."""
    value = float(metrics.get(SCORE_METRIC[Target(target)], math.nan))
    return value if math.isfinite(value) else math.inf
