"""Names the models share: forecast targets, model kinds, metrics and the score that ranks them.

Kept free of heavy imports so that the command line can offer these as choices.
"""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["Target", "ModelKind", "DEFAULT_KINDS", "BASELINE_KINDS", "LEARNED_KINDS",
           "QUANTILE_METRICS", "STRESS_METRICS", "METRIC_LABELS", "SCORE_METRIC", "MEAN_COLUMN",
           "metrics_for", "score_of", "kinds_for", "is_baseline"]

MEAN_COLUMN = "mean"  # the conditional mean a quantile forecaster gives beside q10/q50/q90


class Target(StrEnum):
    """What a model forecasts over the label horizon."""

    fee_yield = "fee_yield"  # fees per dollar of TVL, fraction per horizon
    volatility = "volatility"  # annualised realised volatility
    stress = "stress"  # probability that an LP deposit is in stress (features.labels)


class ModelKind(StrEnum):
    """Families of forecasters, one model per target in each."""

    baseline = "baseline"  # the default classical model: EWMA fees, HAR volatility, base rate
    seasonal_naive = "seasonal_naive"  # the trailing value over the horizon
    ewma = "ewma"  # exponentially weighted fee yield or volatility
    har = "har"  # heterogeneous autoregression of realised volatility
    garch = "garch"  # GARCH(1,1) per pool
    lightgbm = "lightgbm"  # pooled LightGBM, combined with the baselines where that wins
    torch = "torch"  # GRU over each pool's recent rows


BASELINE_KINDS = (ModelKind.seasonal_naive, ModelKind.ewma, ModelKind.har, ModelKind.garch,
                  ModelKind.baseline)
LEARNED_KINDS = (ModelKind.lightgbm, ModelKind.torch)
DEFAULT_KINDS = (ModelKind.baseline, ModelKind.lightgbm, ModelKind.torch)

# kinds that forecast a target; the others have no model for it
_KINDS_FOR = {
    "fee_yield": (ModelKind.seasonal_naive, ModelKind.ewma, ModelKind.baseline,
                  ModelKind.lightgbm, ModelKind.torch),
    "volatility": (ModelKind.seasonal_naive, ModelKind.ewma, ModelKind.har, ModelKind.garch,
                   ModelKind.baseline, ModelKind.lightgbm, ModelKind.torch),
    "stress": (ModelKind.seasonal_naive, ModelKind.baseline, ModelKind.lightgbm,
               ModelKind.torch),
}

QUANTILE_METRICS = ("mase", "mase_mean", "pinball", "coverage_80")
# the alarm's share of rows and threshold stand beside its event scores, so that an alarm
# that is always on cannot look good
STRESS_METRICS = ("auc", "pr_auc", "brier", "base_rate", "median_lead_periods", "event_recall",
                  "false_alarms_per_pool_year", "events", "alarm_share", "alarm_threshold")
METRIC_LABELS = {"mase": "MASE", "mase_mean": "MASE(mean)", "pinball": "pinball",
                 "coverage_80": "cover80", "auc": "AUC", "pr_auc": "PR-AUC", "brier": "Brier",
                 "base_rate": "base rate", "median_lead_periods": "lead",
                 "event_recall": "recall", "false_alarms_per_pool_year": "FA/pool-yr",
                 "events": "events", "alarm_share": "alarm share",
                 "alarm_threshold": "alarm P>="}
# lower is better: MASE of the median forecast, Brier score of P(stress)
SCORE_METRIC = {Target.fee_yield: "mase", Target.volatility: "mase", Target.stress: "brier"}


def metrics_for(target: str) -> tuple[str, ...]:
    """Names of the metrics that score a target."""
    return STRESS_METRICS if Target(target) is Target.stress else QUANTILE_METRICS


def score_of(metrics: dict[str, float], target: str) -> float:
    """The lower-is-better score that ranks models of a target (NaN scores rank last)."""
    value = float(metrics.get(SCORE_METRIC[Target(target)], math.nan))
    return value if math.isfinite(value) else math.inf


def kinds_for(target: str) -> tuple[ModelKind, ...]:
    """Model kinds that forecast a target (HAR and GARCH only forecast volatility)."""
    return _KINDS_FOR[Target(target).value]


def is_baseline(kind: str) -> bool:
    """True for the classical baselines every learned model is compared against."""
    return ModelKind(kind) in BASELINE_KINDS
