"""Optimizers and learning-rate schedules."""

from tf_simclr.optim.lars import (
    DEFAULT_EXCLUDE,
    LARS,
    OPTIMIZERS,
    AdamL2,
    build_optimizer,
)
from tf_simclr.optim.schedules import WarmupCosineDecay, scaled_learning_rate

__all__ = [
    "DEFAULT_EXCLUDE",
    "LARS",
    "OPTIMIZERS",
    "AdamL2",
    "WarmupCosineDecay",
    "build_optimizer",
    "scaled_learning_rate",
]
