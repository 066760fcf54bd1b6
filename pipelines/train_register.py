"""Registration after a training run: decide each target, refit what the decision asks for
(in worker processes when a pool is given), log the refits and move the champion alias.
A stress model's version is tagged with its alarm threshold (``alarm_threshold``), which the
service can read whatever the model's save format holds."""

from __future__ import annotations

import json
import math
from typing import Any

import mlflow
import pandas as pd

from features.build import FeatureSet
from models.alarm import FIXED
from models.base import BaseForecaster
from models.pool import TaskPool
from models.pyfunc import log_forecaster
from models.registry import ALIAS, registered_name
from pipelines.champion import Decision, challenge, current_champion, params_tag
from pipelines.train_config import TrainConfig, TrainResult
from pipelines.train_tasks import TrainInputs, refit_kind, refit_on

__all__ = ["register"]


def register(client: Any, cfg: TrainConfig, fs: FeatureSet, d: TrainInputs,
              scores: dict[str, dict[str, float]], digest: str, runs: dict[str, str],
              res: TrainResult, chosen: dict[tuple[str, str], Any], pool: TaskPool | None,
              shared: dict[str, Any]) -> None:
    """Decide every target, refit what the decisions ask for (on the pool if any) and
    register it; the refit keeps each kind's latest selecting fold unless ``reselect_final``."""
    decided = {t: _decide(client, t, scores[t], cfg, fs, digest, res) for t in cfg.targets}

    def selection(kind: str, target: str) -> Any:
        return None if cfg.reselect_final else chosen.get((str(kind), str(target)))

    alarm = {"alarm_threshold": cfg.alarm_threshold, "alarm_x": cfg.alarm_share_x}
    fits: dict[tuple[str, str], Any] = {} if pool is None else {
        (str(k), str(t)): pool.submit(refit_kind, (str(k), str(t)), params=cfg.params(k),
                                      selection=selection(k, t), **alarm, **shared)
        for t, (_, _, ks) in decided.items() for k in ks}
    for target, (decision, champ, ks) in decided.items():
        for kind in ks:
            if pool is None:
                model = refit_on(d, kind, target, seed=cfg.seed, params=cfg.params(kind),
                                 selection=selection(kind, target),
                                 alarm_threshold=cfg.alarm_threshold, alarm_x=cfg.alarm_share_x)
            else:
                model = fits.pop((str(kind), str(target))).result()
            _register_model(client, target, kind, model, scores[target], cfg, fs, d.X,
                            digest, runs, res, decision, champ)


def _decide(client: Any, target: str, scores: dict[str, float], cfg: TrainConfig,
            fs: FeatureSet, digest: str, res: TrainResult) -> tuple[Decision, Any, list[str]]:
    """The champion decision of a target, the current champion and the kinds to register."""
    params = {k: params_tag(cfg.params(k)) for k in scores}
    champ = current_champion(client, target)
    decision = challenge(scores, params, champ, digest, fs.digest, cfg.min_improvement)
    res.decisions[str(target)] = decision.reason
    kinds = list(scores) if cfg.register_all else [decision.kind] if decision.kind else []
    return decision, champ, kinds


def alarm_tags(model: BaseForecaster) -> dict[str, str]:
    """Version tags of a stress model's alarm threshold and the rule it was chosen by, as the
    model records them (none for a model without a threshold)."""
    thr = float(getattr(model, "alarm_threshold_", math.nan))
    if not math.isfinite(thr):
        return {}
    basis = str(getattr(model, "alarm_basis_", FIXED))
    x = float(getattr(model, "alarm_x_", math.nan))
    return {"alarm_threshold": repr(thr), "alarm_rule": (
        FIXED if basis == FIXED else f"auto: {x:g} x training base rate, chosen on {basis}")}


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
    tags.update(alarm_tags(model))
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
