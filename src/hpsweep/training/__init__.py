"""The training engine (see engine.py); ``hpsweep.train`` re-exports its public API."""

from .engine import Pruned, evaluate, train_run

__all__ = ["Pruned", "evaluate", "train_run"]
