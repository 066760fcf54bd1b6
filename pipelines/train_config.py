"""Settings of a training run and what it returns (scores per model and target, registry)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.names import (
    DEFAULT_KINDS,
    METRIC_LABELS,
    ModelKind,
    Target,
    is_baseline,
    metrics_for,
)

__all__ = ["TrainConfig", "TrainResult"]


class TrainConfig(BaseModel):
    """Training settings ([train] table of a TOML config)."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelKind] = Field(default=list(DEFAULT_KINDS))
    baselines: bool = Field(default=True, description=(
        "also score every baseline kind on the same folds (a baseline can be champion)"))
    targets: list[Target] = Field(default=list(Target))
    n_folds: int = Field(default=3, ge=1)
    gap: str | None = Field(default=None, description="purge gap; None = the label horizon")
    seed: int = 0
    alarm_threshold: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = Field(
        default="auto", description=(
            "P(stress) that counts as an alarm (event lead times, false alarms, alarm share); "
            "auto: each fitted model chooses its own on its training window, so that it alarms "
            "on alarm_share_x times the window's stress base rate of its inner-fold "
            "out-of-sample scores (models.alarm), and each fold is scored at its model's"))
    alarm_share_x: float = Field(default=2.0, gt=0, description=(
        "with alarm_threshold auto: the share of rows in alarm aimed at, as a multiple of the "
        "training window's stress base rate"))
    lightgbm: dict[str, Any] = Field(default_factory=dict)
    torch: dict[str, Any] = Field(default_factory=dict)
    register_models: bool = Field(default=True, description="register champion candidates")
    register_all: bool = Field(default=False, description="register every refit model")
    min_improvement: float = Field(default=1e-3, ge=0, description=(
        "relative score improvement a candidate needs over the champion"))
    threads: int | None = Field(default=None, ge=1, description=(
        "threads per fit; None: env LPA_THREADS, else the CPUs available"))
    workers: int = Field(default=1, ge=1, description=(
        "worker processes that evaluate and refit (kind, target) pairs side by side, each "
        "with the CPUs over the workers as threads; 1: every fit in this process"))
    reselect_every: int = Field(default=2, ge=1, description=(
        "outer folds between model selections on inner folds: the folds between refit the "
        "choice and calibration of the latest selecting fold before them (made on earlier "
        "rows only), as the backtest's reselect_every; 1: every fold selects"))
    reselect_final: bool = Field(default=False, description=(
        "the registered refit on every row selects on inner folds again; False: it keeps the "
        "choice and calibration of the evaluation's latest selecting fold (made on rows "
        "before that fold's cutoff)"))

    def params(self, kind: str) -> dict[str, Any]:
        """Keyword arguments of a model kind."""
        return dict({ModelKind.lightgbm: self.lightgbm, ModelKind.torch: self.torch}.get(
            ModelKind(kind), {}))


@dataclass
class TrainResult:
    """Scores per (model, target) on the walk-forward folds and what the registry got."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    champions: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    folds_digest: str = ""
    report_dir: Path | None = None

    def _metric_names(self) -> list[str]:
        targets = {r["target"] for r in self.rows}
        return list(dict.fromkeys(m for t in Target if t in targets for m in metrics_for(t)))

    def summary_columns(self) -> list[str]:
        """Column names of the summary table."""
        return ["model", "target", *[METRIC_LABELS[m] for m in self._metric_names()],
                "score / best baseline", "registry"]

    def summary_rows(self) -> list[list[Any]]:
        """Rows of the summary table: per target, every kind best first, each against the best
        baseline of the target on the same folds (its score over the baseline's, < 1 beats)."""
        names = self._metric_names()
        out = []
        for target in dict.fromkeys(r["target"] for r in self.rows):
            rows = sorted((r for r in self.rows if r["target"] == target),
                          key=lambda r: r["score"])
            base = [r["score"] for r in rows if is_baseline(r["model"])
                    and math.isfinite(r["score"])]
            bar = min(base) if base else math.nan
            for r in rows:
                rel = r["score"] / bar if math.isfinite(r["score"]) and bar > 0 else math.nan
                out.append([r["model"], r["target"], *[r.get(k, "") for k in names],
                            round(rel, 3) if math.isfinite(rel) else "",
                            r.get("registry", "")])
        return out
