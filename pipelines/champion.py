"""Champion of a target in the model registry, and whether a training run replaces it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from models.registry import ALIAS, registered_name

__all__ = ["Champion", "Decision", "challenge", "current_champion", "params_tag"]


@dataclass(frozen=True)
class Champion:
    """The registry's current champion of a target, as its version tags describe it."""

    version: str
    kind: str
    score: float
    folds: str
    features: str
    params: str


@dataclass(frozen=True)
class Decision:
    """Which kind, if any, becomes a target's champion, and why."""

    kind: str | None
    reason: str


def params_tag(params: dict[str, Any]) -> str:
    """The parameters of a kind as a version tag (sorted JSON)."""
    return json.dumps(params, sort_keys=True, default=str)


def challenge(
    scores: dict[str, float], params: dict[str, str], champion: Champion | None,
    folds: str, features: str, min_improvement: float,
) -> Decision:
    """Decide whether the run's best kind replaces the champion of a target.

    Parameters
    ----------
    scores : lower-is-better score per kind, on this run's folds
    params : the parameters tag of each kind in this run
    champion : the current champion, or None
    folds, features : digests of this run's folds and feature table
    min_improvement : relative margin by which a candidate must beat the champion's score

    On the champion's own folds and features, its recorded score is the bar. On new data, the
    champion's kind re-scored in this run is the bar, and a refit of the champion itself (same
    kind and parameters) replaces it. An identical retrain never beats itself.
    """
    finite = {k: s for k, s in scores.items() if math.isfinite(s)}
    if not finite:
        return Decision(None, "no kind has a finite score")
    best = min(finite, key=lambda k: finite[k])
    if champion is None:
        return Decision(best, "no champion yet")
    same_data = champion.folds == folds and champion.features == features
    if same_data:
        bar = champion.score
    elif champion.kind in finite:
        if best == champion.kind and params.get(best) == champion.params:
            return Decision(best, f"champion v{champion.version} refit on new data")
        bar = finite[champion.kind]
    else:
        return Decision(None, f"champion v{champion.version} ({champion.kind}) was not scored "
                              "on these folds; train its kind too to compare")
    if finite[best] < bar - min_improvement * abs(bar):
        return Decision(best, f"beats champion v{champion.version} ({champion.kind}): "
                              f"{finite[best]:.6g} < {bar:.6g}")
    return Decision(None, f"champion v{champion.version} ({champion.kind}) holds: "
                          f"{bar:.6g}, best of run {best} {finite[best]:.6g}")


def current_champion(client: Any, target: str) -> Champion | None:
    """The registry's champion of a target, or None when it has none yet."""
    try:
        mv = client.get_model_version_by_alias(registered_name(target), ALIAS)
    except Exception:  # noqa: BLE001 - no model or no alias yet
        return None
    tags = mv.tags or {}
    return Champion(version=str(mv.version), kind=tags.get("kind", ""),
                    score=float(tags.get("score", "inf")), folds=tags.get("folds", ""),
                    features=tags.get("features", ""), params=tags.get("params", ""))
