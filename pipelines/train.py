"""Training job: walk-forward evaluation, MLflow tracking, registry and the champion alias."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from features.build import FeatureSet, read_features
from features.schema import parse_duration
from models.base import BaseForecaster
from models.cv import Fold, folds_digest, walk_forward_splits
from models.forecasts import TARGETS, make_forecaster, model_matrix, seasonal_naive
from models.metrics import coverage, mase, median_lead_time, pinball_loss, stress_scores
from models.pyfunc import log_forecaster
from models.registry import ALIAS, registered_name
from pipelines.config import configure_mlflow
from pipelines.plots import plot_calibration, plot_forecast, plot_importance

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate_kind", "score_of"]


class TrainConfig(BaseModel):
    """Training settings ([train] table of a TOML config)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default=["baseline", "lightgbm", "torch"])
    targets: list[str] = Field(default=list(TARGETS))
    n_folds: int = Field(default=3, ge=1)
    gap: str | None = Field(default=None, description="purge gap; None = the label horizon")
    seed: int = 0
    alarm_threshold: float = Field(default=0.5, description="P(stress) that counts as an alarm")
    lightgbm: dict[str, Any] = Field(default_factory=dict)
    torch: dict[str, Any] = Field(default_factory=dict)
    register_models: bool = True


@dataclass
class TrainResult:
    """Scores per (model, target) on the walk-forward folds and champion moves."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    champions: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    folds_digest: str = ""

    def summary_columns(self) -> list[str]:
        """Column names of the summary table."""
        return ["model", "target", "MASE", "pinball", "cover80", "AUC", "PR-AUC", "Brier",
                "lead", "champion"]

    def summary_rows(self) -> list[list[Any]]:
        """Rows of the summary table."""
        keys = ["mase", "pinball", "coverage", "auc", "pr_auc", "brier", "lead_time"]
        return [[r["model"], r["target"], *[r.get(k, "") for k in keys],
                 "yes" if r.get("champion") else ""] for r in self.rows]


def score_of(metrics: dict[str, float], target: str) -> float:
    """Lower-is-better score used to compare models: pinball loss, or Brier for stress."""
    return metrics["brier"] if target == "stress" else metrics["pinball"]


def _params(cfg: TrainConfig, kind: str) -> dict[str, Any]:
    return dict(cfg.lightgbm if kind == "lightgbm" else cfg.torch if kind == "torch" else {})


def evaluate_kind(
    kind: str, target: str, fs: FeatureSet, X: pd.DataFrame, folds: list[Fold],
    cfg: TrainConfig, params: dict[str, Any] | None = None, on_fold: Any = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Fit and score one model kind on every fold; return metrics and test predictions."""
    y_all = fs.labels[TARGETS[target]].to_numpy(float)
    preds = []
    for i, f in enumerate(folds):
        m = make_forecaster(kind, target, fs.freq, fs.horizon_periods, seed=cfg.seed,
                            **(params if params is not None else _params(cfg, kind)))
        m.fit(X.iloc[f.train_idx], pd.Series(y_all[f.train_idx]))
        p = m.predict(X.iloc[f.test_idx])
        p["y"] = y_all[f.test_idx]
        p["fold"] = i
        preds.append(p)
        if on_fold is not None:
            on_fold(i, _metrics(target, p, X.loc[p.index], fs, cfg))
    P = pd.concat(preds)
    return _metrics(target, P, X.loc[P.index], fs, cfg), P


def _metrics(target: str, P: pd.DataFrame, X: pd.DataFrame, fs: FeatureSet,
             cfg: TrainConfig) -> dict[str, float]:
    y = P["y"].to_numpy(float)
    if target == "stress":
        out = stress_scores(y, P["p_stress"].to_numpy())
        frame = X[["pool_id"]].assign(fwd_stress=y)
        out["lead_time"] = median_lead_time(frame, P["p_stress"].to_numpy(),
                                            cfg.alarm_threshold, fs.horizon_periods)
        return out
    ok = np.isfinite(y)
    q = {c: P[c].to_numpy(float)[ok] for c in ("q10", "q50", "q90")}
    naive = seasonal_naive(X, target, fs.freq, fs.horizon_periods)[ok]
    return {
        "mase": mase(y[ok], q["q50"], naive),
        "pinball": float(np.mean([pinball_loss(y[ok], q[c], a)
                                  for c, a in (("q10", 0.1), ("q50", 0.5), ("q90", 0.9))])),
        "coverage": coverage(y[ok], q["q10"], q["q90"]),
    }


def _current_champion(client: Any, target: str) -> Any:
    try:
        return client.get_model_version_by_alias(registered_name(target), ALIAS)
    except Exception:  # noqa: BLE001 - no model or no alias yet
        return None


def _log_plots(kind: str, target: str, P: pd.DataFrame, X: pd.DataFrame,
               model: BaseForecaster) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if target == "stress":
            plot_calibration(P["y"].to_numpy(), P["p_stress"].to_numpy(),
                             d / f"calibration_{kind}.png", f"{kind} stress")
        else:
            plot_forecast(P.join(X[["pool_id", "timestamp"]]), d / f"forecast_{kind}.png",
                          f"{kind} {target}")
        imp = getattr(model, "feature_importance", None)
        if imp is not None:
            plot_importance(imp(), d / f"importance_{kind}.png", f"{kind} {target}")
        mlflow.log_artifacts(str(d), artifact_path=f"plots/{target}")


def train(workdir: Path, config: TrainConfig | None = None, progress: bool = True) -> TrainResult:
    """Evaluate each model kind walk-forward, log everything, register and pick champions."""
    cfg = config or TrainConfig()
    fs = read_features(workdir)
    X = model_matrix(fs)
    gap = parse_duration(cfg.gap) if cfg.gap else fs.horizon
    folds = walk_forward_splits(X["timestamp"], cfg.n_folds, gap, fs.horizon)
    digest = folds_digest(folds)
    configure_mlflow(workdir, "lpa-train")
    client = mlflow.MlflowClient()
    res = TrainResult(folds_digest=digest)
    scores: dict[tuple[str, str], float] = {}
    with mlflow.start_run(run_name="train") as parent, Progress(disable=not progress) as bar:
        res.run_id = parent.info.run_id
        mlflow.log_dict(cfg.model_dump(), "config.json")
        mlflow.log_params({"n_folds": cfg.n_folds, "gap": str(gap), "horizon": str(fs.horizon),
                           "freq": fs.freq, "feature_set": fs.version, "folds": digest,
                           "rows": len(X)})
        mlflow.log_dict({"folds": [{"cutoff": str(f.cutoff), "test_start": str(f.test_start),
                                    "test_end": str(f.test_end), "train_rows": len(f.train_idx),
                                    "test_rows": len(f.test_idx)} for f in folds]},
                        "folds.json")
        task = bar.add_task("train", total=len(cfg.models) * len(cfg.targets) * len(folds))
        for kind in cfg.models:
            with mlflow.start_run(run_name=kind, nested=True):
                mlflow.log_params({"kind": kind, **{f"p_{k}": v for k, v in
                                                    _params(cfg, kind).items()}})
                for target in cfg.targets:
                    bar.update(task, description=f"{kind} / {target}")

                    def on_fold(i: int, m: dict[str, float], t: str = target) -> None:
                        mlflow.log_metrics({f"{t}.fold.{k}": v for k, v in m.items()
                                            if math.isfinite(v)}, step=i)
                        bar.advance(task)

                    metrics, P = evaluate_kind(kind, target, fs, X, folds, cfg, on_fold=on_fold)
                    mlflow.log_metrics({f"{target}.{k}": v for k, v in metrics.items()
                                        if math.isfinite(v)})
                    score = score_of(metrics, target)
                    scores[(kind, target)] = score
                    row = {"model": kind, "target": target, **metrics, "score": score}
                    final = make_forecaster(kind, target, fs.freq, fs.horizon_periods,
                                            seed=cfg.seed, **_params(cfg, kind))
                    final.fit(X, fs.labels[TARGETS[target]])
                    _log_plots(kind, target, P, X, final)
                    if cfg.register_models:
                        row["champion"] = _register(client, final, kind, target, X, score,
                                                    digest, scores, fs)
                        if row["champion"]:
                            res.champions[target] = f"{kind} v{row['champion']}"
                    res.rows.append(row)
    return res


def _register(client: Any, model: BaseForecaster, kind: str, target: str, X: pd.DataFrame,
              score: float, digest: str, scores: dict[tuple[str, str], float],
              fs: FeatureSet) -> str | None:
    """Register the refit model; move the champion alias only if it beats the champion."""
    name = registered_name(target)
    tags = {"kind": kind, "score": f"{score:.10g}", "folds": digest, "target": target,
            "feature_set": fs.version, "horizon": str(fs.horizon), "freq": fs.freq}
    info = log_forecaster(model, f"{target}_{kind}", X, registered_model_name=name, tags=tags)
    version = str(info.registered_model_version)
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    champ = _current_champion(client, target)
    if champ is None:
        best = math.inf
    elif champ.tags.get("folds") == digest:
        best = float(champ.tags.get("score", "inf"))
    elif (champ.tags.get("kind"), target) in scores:
        best = scores[(champ.tags["kind"], target)]  # champion's kind re-scored on these folds
    else:
        best = scores.get(("baseline", target), math.inf)
    if score < best:
        client.set_registered_model_alias(name, ALIAS, version)
        client.set_model_version_tag(name, version, "promoted_over", json.dumps(
            {"previous": None if champ is None else str(champ.version), "previous_score": best}))
        return version
    return None
