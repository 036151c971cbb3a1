"""The training engine: schedules, optimisers, checkpoints, metrics and the trainer.

The engine knows methods only through :mod:`selfsup.engine.protocol`.
"""

from selfsup.engine.checkpoint import load_checkpoint, save_checkpoint
from selfsup.engine.optim import LARS, build_optimizer, parameter_groups
from selfsup.engine.protocol import Method, StepResult
from selfsup.engine.schedules import (
    cosine_schedule,
    linear_schedule,
    scale_learning_rate,
    warmup_cosine,
)
from selfsup.engine.trainer import (
    NonFiniteLossError,
    PeriodicCallback,
    Trainer,
    TrainerSettings,
    TrainSummary,
)

__all__ = [
    "LARS",
    "Method",
    "NonFiniteLossError",
    "PeriodicCallback",
    "StepResult",
    "TrainSummary",
    "Trainer",
    "TrainerSettings",
    "build_optimizer",
    "cosine_schedule",
    "linear_schedule",
    "load_checkpoint",
    "parameter_groups",
    "save_checkpoint",
    "scale_learning_rate",
    "warmup_cosine",
]
