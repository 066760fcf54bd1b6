"""What the command line offers as choices: enums, so --help lists them and a bad value fails
before any work starts."""

from __future__ import annotations

from enum import StrEnum

from models.names import ModelKind, Target

__all__ = ["TrainChoice", "TunableKind", "Target", "ALL"]

ALL = "all"


class TrainChoice(StrEnum):
    """`lpa train --model`: one kind, or all default kinds."""

    all = ALL
    baseline = ModelKind.baseline.value
    seasonal_naive = ModelKind.seasonal_naive.value
    lightgbm = ModelKind.lightgbm.value
    torch = ModelKind.torch.value


class TunableKind(StrEnum):
    """`lpa tune --model`: the kinds with a hyper-parameter search space."""

    lightgbm = ModelKind.lightgbm.value
    torch = ModelKind.torch.value
