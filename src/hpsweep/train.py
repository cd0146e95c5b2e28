"""Training engine entry point: ``train_run`` and ``Pruned``.

The implementation lives in :mod:`hpsweep.training` (engine, schedule, checkpoint,
writer, device, augment); this module is the stable import path.
"""

from .ids import code_version
from .training.engine import STATUSES, Pruned, evaluate, train_run

__all__ = ["STATUSES", "Pruned", "code_version", "evaluate", "train_run"]
