"""What a job sets around itself: quiet MLflow output while it runs, OpenMP's wait policy."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from models.threads import prefer_passive_waiting

__all__ = ["quiet_mlflow", "prefer_passive_waiting", "QUIET_LOGGERS"]

# MLflow's INFO lines (runs, registrations, store migrations) and its artefact progress bars
QUIET_LOGGERS = ("mlflow", "alembic", "optuna")
_QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@contextmanager
def quiet_mlflow(level: int = logging.WARNING) -> Iterator[None]:
    """Within the block MLflow prints nothing of its own (no INFO lines, no "Created version"
    notes, no artefact progress bars) and its store migrations and Optuna log warnings and
    errors only; the previous settings come back afterwards."""
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    env = {k: os.environ.get(k) for k in _QUIET_ENV}
    stream = MLFLOW_LOGGING_STREAM.enabled
    try:
        for lg in loggers:
            lg.setLevel(max(level, lg.getEffectiveLevel()))
        os.environ.update(_QUIET_ENV)
        MLFLOW_LOGGING_STREAM.enabled = False  # MLflow's own notes bypass its logger
        yield
    finally:
        MLFLOW_LOGGING_STREAM.enabled = stream
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
