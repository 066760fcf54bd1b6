"""Training job: walk-forward evaluation, MLflow tracking, registry and the champion alias.

Every model kind, and every baseline (seasonal naive, EWMA, HAR, GARCH, the default baseline)
unless ``baselines`` is off, is scored per target on the same walk-forward folds. Per target,
the best kind of the run on those folds (by ``models.names.SCORE_METRIC``) is the candidate,
so a baseline is the candidate when it is best; it is registered and takes the champion alias
only when it beats the current champion by a strict margin (see :func:`challenge`).
``register_all`` registers every refit model too, without moving the alias. The scores are
written to ``reports/train-<run>/metrics.json`` as ``{model: {target: {metric: value}}}``.
"""

from __future__ import annotations

import json
import math
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from features.build import FeatureSet, read_features
from features.schema import parse_duration
from models.base import BaseForecaster
from models.cv import Fold, folds_digest
from models.evaluate import CUTOFF, FOLD, Evaluation, evaluate, keep_selection
from models.gbm_dask import make_forecaster  # the plain factory unless a Dask client is active
from models.lgb_grid import SELECTION_PROTOCOL
from models.names import (
    BASELINE_KINDS,
    DEFAULT_KINDS,
    METRIC_LABELS,
    ModelKind,
    Target,
    is_baseline,
    kinds_for,
    metrics_for,
    score_of,
)
from models.pool import TaskPool, active_pool, task_pool
from models.pyfunc import log_forecaster
from models.registry import ALIAS, registered_name
from models.threads import use_threads
from pipelines.champion import Champion, Decision, challenge, current_champion, params_tag
from pipelines.config import configure_mlflow
from pipelines.plots import plot_calibration, plot_forecast, plot_importance
from pipelines.runtime import quiet_mlflow
from pipelines.train_tasks import TrainInputs, evaluate_kind, refit_kind, train_inputs

__all__ = ["TrainConfig", "TrainResult", "Champion", "Decision", "train", "challenge",
           "run_kinds", "metrics_document"]


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
    alarm_threshold: float = Field(default=0.25, description=(
        "P(stress) that counts as an alarm (event lead times, false alarms)"))
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



def _log_plots(kind: str, target: str, ev: Evaluation) -> None:
    P = ev.predictions
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if target == Target.stress:
            plot_calibration(P["y"].to_numpy(), P["p_stress"].to_numpy(),
                             d / f"calibration_{kind}.png", f"{kind} stress")
        else:
            plot_forecast(P, d / f"forecast_{kind}.png", f"{kind} {target}")
        imp = getattr(ev.model, "feature_importance", None)
        if imp is not None:
            plot_importance(imp(), d / f"importance_{kind}.png", f"{kind} {target} (last fold)")
        mlflow.log_artifacts(str(d), artifact_path=f"plots/{target}")


def _log_setup(cfg: TrainConfig, fs: FeatureSet, folds: list[Fold], digest: str, gap: Any,
               rows: int) -> None:
    mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
    mlflow.log_params({"n_folds": cfg.n_folds, "gap": str(gap), "horizon": str(fs.horizon),
                       "freq": fs.freq, "feature_set": fs.version, "features": fs.digest,
                       "folds": digest, "rows": rows})
    mlflow.log_dict({"folds": [{"cutoff": str(f.cutoff), "test_start": str(f.test_start),
                                "test_end": str(f.test_end), "train_rows": len(f.train_idx),
                                "test_rows": len(f.test_idx)} for f in folds]}, "folds.json")


def train(workdir: Path, config: TrainConfig | None = None, progress: bool = True) -> TrainResult:
    """Evaluate each model kind walk-forward, log everything, register and pick champions.

    With a task pool active (``models.pool.use_pool``) or ``workers`` > 1, the (kind, target)
    evaluations and the registered refits run side by side in worker processes; this process
    logs and registers their results in the same order as a run without workers."""
    cfg = config or TrainConfig()
    fs = read_features(workdir)
    d = train_inputs(fs, cfg.n_folds, cfg.gap, [str(t) for t in cfg.targets])
    X, folds = d.X, d.folds
    gap = parse_duration(cfg.gap) if cfg.gap else fs.horizon
    # the scores depend on the folds and on how models are selected on them: a champion
    # scored under another selection protocol is not compared by its recorded score
    digest = f"{folds_digest(folds)}-reselect{cfg.reselect_every}-{SELECTION_PROTOCOL}"
    res = TrainResult(folds_digest=digest)
    kinds = run_kinds(cfg)
    plan = [(k, t) for k in kinds for t in cfg.targets if k in kinds_for(t)]
    with quiet_mlflow(), use_threads(cfg.threads), ExitStack() as stack:
        pool = active_pool() or stack.enter_context(task_pool(cfg.workers))
        shared = {"workdir": str(Path(workdir).resolve()), "digest": fs.digest,
                  "n_folds": cfg.n_folds, "gap": cfg.gap, "seed": cfg.seed}
        pending = {} if pool is None else {
            (k, t): pool.submit(evaluate_kind, (str(k), str(t)), params=cfg.params(k),
                                alarm_threshold=cfg.alarm_threshold,
                                reselect_every=cfg.reselect_every, **shared)
            for k, t in sorted(plan, key=lambda kt: is_baseline(kt[0]))}  # costly first
        configure_mlflow(workdir, "lpa-train")
        client = mlflow.MlflowClient()
        scores: dict[str, dict[str, float]] = {t: {} for t in cfg.targets}
        runs: dict[str, str] = {}
        chosen: dict[tuple[str, str], Any] = {}  # (kind, target) -> latest selecting fold
        with mlflow.start_run(run_name="train") as parent, Progress(
                disable=not progress) as bar:
            res.run_id = parent.info.run_id
            _log_setup(cfg, fs, folds, digest, gap, len(X))
            task = bar.add_task("train", total=len(plan) * len(folds))
            for kind in kinds:
                with mlflow.start_run(run_name=kind, nested=True) as child:
                    runs[kind] = child.info.run_id
                    mlflow.log_params({"kind": kind, "baseline": is_baseline(kind),
                                       **{f"p_{k}": v for k, v in cfg.params(kind).items()}})
                    for target in [t for k, t in plan if k == kind]:
                        bar.update(task, description=f"{kind} / {target}")
                        if pool is None:
                            ev = _evaluate(kind, target, fs, X, d.labels[str(target)], folds,
                                           cfg, lambda: bar.advance(task), d.onset)
                        else:
                            ev = pending.pop((kind, target)).result()
                            _log_folds(target, ev)
                            bar.advance(task, len(folds))
                        mlflow.log_metrics({f"{target}.{k}": v for k, v in ev.metrics.items()
                                            if math.isfinite(v)})
                        scores[target][kind] = score_of(ev.metrics, target)
                        chosen[(str(kind), str(target))] = ev.selection
                        res.rows.append({"model": str(kind), "target": str(target),
                                         **ev.metrics, "score": scores[target][kind]})
                        _log_plots(kind, target, ev)
            res.report_dir = _write_metrics(workdir, res)
            mlflow.log_artifact(str(res.report_dir / "metrics.json"))
            if cfg.register_models:
                _register(client, cfg, fs, d, scores, digest, runs, res, chosen, pool, shared)
    return res


def _log_folds(target: str, ev: Evaluation) -> None:
    """Per-fold metrics of an evaluation, as its fold callback logs them in-process."""
    info = {FOLD, CUTOFF, "test_start", "test_end", "train_rows", "test_rows"}
    for i, row in enumerate(ev.folds.to_dict("records")):
        mlflow.log_metrics({f"{target}.fold.{k}": float(v) for k, v in row.items()
                            if k not in info and math.isfinite(float(v))}, step=i)


def _register(client: Any, cfg: TrainConfig, fs: FeatureSet, d: TrainInputs,
              scores: dict[str, dict[str, float]], digest: str, runs: dict[str, str],
              res: TrainResult, chosen: dict[tuple[str, str], Any], pool: TaskPool | None,
              shared: dict[str, Any]) -> None:
    """Decide every target, refit what the decisions ask for (on the pool if any) and
    register it; the refit keeps each kind's latest selecting fold unless ``reselect_final``."""
    decided = {t: _decide(client, t, scores[t], cfg, fs, digest, res) for t in cfg.targets}

    def selection(kind: str, target: str) -> Any:
        return None if cfg.reselect_final else chosen.get((str(kind), str(target)))

    fits: dict[tuple[str, str], Any] = {} if pool is None else {
        (str(k), str(t)): pool.submit(refit_kind, (str(k), str(t)), params=cfg.params(k),
                                      selection=selection(k, t), **shared)
        for t, (_, _, ks) in decided.items() for k in ks}
    for target, (decision, champ, ks) in decided.items():
        for kind in ks:
            if pool is None:
                model = make_forecaster(kind, target, fs.freq, fs.horizon_periods,
                                        seed=cfg.seed, **cfg.params(kind))
                if not cfg.reselect_final:
                    model = keep_selection(model, selection(kind, target))
                model.fit(d.X, d.labels[str(target)])
            else:
                model = fits.pop((str(kind), str(target))).result()
            _register_model(client, target, kind, model, scores[target], cfg, fs, d.X,
                            digest, runs, res, decision, champ)


def run_kinds(cfg: TrainConfig) -> list[ModelKind]:
    """The kinds a run scores: the configured ones, then every baseline unless switched off."""
    kinds = list(dict.fromkeys(ModelKind(k) for k in cfg.models))
    if cfg.baselines:
        kinds += [k for k in BASELINE_KINDS if k not in kinds]
    return kinds


def metrics_document(res: TrainResult) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{model: {target: {metric: value}}}`` of a run (non-finite values as None)."""
    doc: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in res.rows:
        vals = {m: (float(r[m]) if math.isfinite(float(r[m])) else None)
                for m in metrics_for(r["target"]) if m in r}
        doc.setdefault(r["model"], {})[r["target"]] = vals
    return doc


def _write_metrics(workdir: Path, res: TrainResult) -> Path:
    """Write ``reports/train-<run>/metrics.json`` in the work directory; return the folder."""
    out = Path(workdir) / "reports" / f"train-{res.run_id}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics_document(res), indent=1))
    return out


def _evaluate(kind: str, target: str, fs: FeatureSet, X: pd.DataFrame, y: pd.Series,
              folds: list[Fold], cfg: TrainConfig, advance: Any,
              onset: pd.Series | None = None) -> Evaluation:
    """Score one kind on one target in this process; fold metrics go to the active run."""

    def on_fold(i: int, m: dict[str, float]) -> None:
        mlflow.log_metrics({f"{target}.fold.{k}": v for k, v in m.items() if math.isfinite(v)},
                           step=i)
        advance()

    return evaluate(lambda: make_forecaster(kind, target, fs.freq, fs.horizon_periods,
                                            seed=cfg.seed, **cfg.params(kind)),
                    X, y, folds, target=target, freq=fs.freq,
                    horizon_periods=fs.horizon_periods, alarm_threshold=cfg.alarm_threshold,
                    on_fold=on_fold, onset=onset, reselect_every=cfg.reselect_every)


def _decide(client: Any, target: str, scores: dict[str, float], cfg: TrainConfig,
            fs: FeatureSet, digest: str, res: TrainResult) -> tuple[Decision, Any, list[str]]:
    """The champion decision of a target, the current champion and the kinds to register."""
    params = {k: params_tag(cfg.params(k)) for k in scores}
    champ = current_champion(client, target)
    decision = challenge(scores, params, champ, digest, fs.digest, cfg.min_improvement)
    res.decisions[str(target)] = decision.reason
    kinds = list(scores) if cfg.register_all else [decision.kind] if decision.kind else []
    return decision, champ, kinds


def _register_model(client: Any, target: str, kind: str, model: BaseForecaster,
                    scores: dict[str, float], cfg: TrainConfig, fs: FeatureSet,
                    X: pd.DataFrame, digest: str, runs: dict[str, str], res: TrainResult,
                    decision: Decision, champ: Any) -> None:
    """Log and register one refitted model; give it the alias if it is the decision's."""
    name = registered_name(target)
    tags = {"kind": str(kind), "score": repr(scores[kind]), "folds": digest,
            "features": fs.digest, "params": params_tag(cfg.params(kind)),
            "target": str(target), "feature_set": fs.version, "horizon": str(fs.horizon),
            "freq": fs.freq}
    with mlflow.start_run(run_id=runs[kind], nested=True):
        info = log_forecaster(model, f"{target}_{kind}", X, registered_model_name=name,
                              tags=tags)
    version = str(info.registered_model_version)
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    row = next(r for r in res.rows if r["model"] == kind and r["target"] == target)
    row["registry"] = f"v{version}"
    if kind == decision.kind:
        client.set_registered_model_alias(name, ALIAS, version)
        client.set_model_version_tag(name, version, "promoted_over", json.dumps(
            {"previous": None if champ is None else champ.version,
             "previous_score": None if champ is None else champ.score,
             "reason": decision.reason}))
        row["registry"] = f"v{version} champion"
        res.champions[str(target)] = f"{kind} v{version}"
