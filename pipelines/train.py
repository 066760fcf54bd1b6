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
from pathlib import Path
from typing import Any

import mlflow
from rich.progress import Progress

from features.build import FeatureSet, read_features
from models.cv import Fold, folds_digest
from models.evaluate import CUTOFF, FOLD, Evaluation
from models.lgb_grid import SELECTION_PROTOCOL
from models.names import (
    BASELINE_KINDS,
    ModelKind,
    Target,
    is_baseline,
    kinds_for,
    metrics_for,
    score_of,
)
from models.pool import active_pool, task_pool
from models.threads import use_threads
from pipelines.champion import Champion, Decision, challenge
from pipelines.config import configure_mlflow
from pipelines.plots import plot_calibration, plot_forecast, plot_importance
from pipelines.runtime import quiet_mlflow
from pipelines.train_config import TrainConfig, TrainResult
from pipelines.train_register import register
from pipelines.train_tasks import TrainInputs, evaluate_kind, evaluate_on, train_inputs

__all__ = ["TrainConfig", "TrainResult", "Champion", "Decision", "train", "challenge",
           "run_kinds", "metrics_document"]


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
                                alarm_x=cfg.alarm_share_x,
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
            _log_setup(cfg, fs, folds, digest, d.gap, len(X))
            task = bar.add_task("train", total=len(plan) * len(folds))
            for kind in kinds:
                with mlflow.start_run(run_name=kind, nested=True) as child:
                    runs[kind] = child.info.run_id
                    mlflow.log_params({"kind": kind, "baseline": is_baseline(kind),
                                       **{f"p_{k}": v for k, v in cfg.params(kind).items()}})
                    for target in [t for k, t in plan if k == kind]:
                        bar.update(task, description=f"{kind} / {target}")
                        if pool is None:
                            ev = _evaluate(kind, target, d, cfg, lambda: bar.advance(task))
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
                register(client, cfg, fs, d, scores, digest, runs, res, chosen, pool, shared)
    return res


def _log_folds(target: str, ev: Evaluation) -> None:
    """Per-fold metrics of an evaluation, as its fold callback logs them in-process."""
    info = {FOLD, CUTOFF, "test_start", "test_end", "train_rows", "test_rows"}
    for i, row in enumerate(ev.folds.to_dict("records")):
        mlflow.log_metrics({f"{target}.fold.{k}": float(v) for k, v in row.items()
                            if k not in info and math.isfinite(float(v))}, step=i)


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


def _evaluate(kind: str, target: str, d: TrainInputs, cfg: TrainConfig,
              advance: Any) -> Evaluation:
    """Score one kind on one target in this process; fold metrics go to the active run."""

    def on_fold(i: int, m: dict[str, float]) -> None:
        mlflow.log_metrics({f"{target}.fold.{k}": v for k, v in m.items() if math.isfinite(v)},
                           step=i)
        advance()

    return evaluate_on(d, kind, target, seed=cfg.seed, params=cfg.params(kind),
                       alarm_threshold=cfg.alarm_threshold, alarm_x=cfg.alarm_share_x,
                       reselect_every=cfg.reselect_every, on_fold=on_fold)
